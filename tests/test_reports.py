"""Tables, LaTeX, the paper comparison and figures of `xadbench report` / `xadbench figures`.

Everything is built by hand here: a results store with known values and a small folder of fake
predictions, so no model is trained. Standard deviations are sample std (ddof=1).
"""
from __future__ import annotations

import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from PIL import Image
from typer.testing import CliRunner

from xadbench.errors import XadError
from xadbench.registry import methods
from xadbench.reports import figures as figs
from xadbench.reports import table_formats as fmt
from xadbench.reports import tables as tab
from xadbench.cli.report_commands import figures, report
from xadbench.reports.report import FigureOptions, write_report
from xadbench.run_folder import load_predictions, results_store, save_predictions

CLASSES = ("bottle", "metal_nut")
METHODS = ("fcdd", "grad", "ae")
SEEDS = (0, 1, 2)


def value(class_name: str, method: str, seed: int, metric: str) -> float:
    """Known, distinct values: fcdd best on pixel AUC, grad best on bottle's image AUC."""
    base = {"fcdd": 0.90, "grad": 0.70, "ae": 0.80}[method] + (0.03 if class_name == "bottle" else 0.0)
    if metric == "image_auc" and method == "grad" and class_name == "bottle":
        base = 0.96
    return round(base + 0.01 * seed * (1 + METHODS.index(method)), 6)


def row(job_id: str, dataset: str, class_name: str, method: str, seed: int, metric: str, val: float,
        protocol: str = "unsupervised", **extra) -> dict:
    return {"job_id": job_id, "dataset": dataset, "class": class_name, "method": method, "seed": seed,
            "preset": "cpu", "protocol": protocol, "blur": "gaussian", "metric": metric, "value": val,
            "oe": "", "oe_limit": "", "oe_exclude": "", "k": "", "weights": "none", "n_train": 10, "n_test": 12, "fit_s": 1.0,
            "predict_s": 0.1, "params": "{}", **extra}


def write_results(run_dir: Path, rows: list[dict]) -> Path:
    """A run folder whose results store holds exactly `rows` (written as `xadbench run` does)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    for old in [*run_dir.glob("results.sqlite*"), *run_dir.glob("results.csv")]:
        old.unlink()
    store = results_store(run_dir).open()
    jobs: dict[str, list[dict]] = {}
    for r in rows:
        jobs.setdefault(r["job_id"], []).append(r)
    for job_id, job_rows in jobs.items():
        store.add_job(job_id, job_rows, checkpoint=False)
    store.export_csv()
    return run_dir


@pytest.fixture
def run_dir(tmp_path: Path) -> Path:
    rows = [row(f"{c}-{m}-{s}", "mvtec", c, m, s, metric, value(c, m, s, metric))
            for c in CLASSES for m in METHODS for s in SEEDS for metric in ("image_auc", "pixel_auc")]
    return write_results(tmp_path / "run", rows)


def read_table(run_dir: Path, metric: str, protocol: str = "unsupervised", dataset: str = "mvtec",
               options: str = "_ci-off") -> pd.DataFrame:
    """A table as `write_report(..., ci="off")` writes it (file names carry the options)."""
    return pd.read_csv(run_dir / "tables" / f"{dataset}_{protocol}_cpu_gaussian_{metric}{options}.csv", index_col="class")


def tex_rows(text: str) -> dict[str, list[str]]:
    """First cell → the other cells, for every tabular row."""
    body = text[text.index("\\toprule"):text.index("\\bottomrule")]
    rows = {}
    for line in body.splitlines():
        if line.endswith("\\\\"):
            cells = [c.strip() for c in re.split(r"(?<!\\)&", line[:-2])]
            rows[cells[0]] = cells[1:]
    return rows


# ---------------------------------------------------------------- tables


def test_cells_are_mean_and_sample_std_over_seeds(run_dir):
    write_report(run_dir, figures=False, ci="off")
    table = read_table(run_dir, "pixel_auc")
    for c in CLASSES:
        for m in METHODS:
            seeds = np.array([value(c, m, s, "pixel_auc") for s in SEEDS])
            label = methods.display_name(m)
            assert table.at[c, label] == pytest.approx(seeds.mean())
            assert table.at[c, f"{label} std"] == pytest.approx(seeds.std(ddof=1))


def test_mean_and_sigma_rows_are_over_class_means(run_dir):
    tables = {t.key["metric"]: t for t in tab.report_tables(run_dir)}
    table = tables["image_auc"].mean
    for m in METHODS:
        means = [np.mean([value(c, m, s, "image_auc") for s in SEEDS]) for c in CLASSES]
        assert table.at["Mean", methods.display_name(m)] == pytest.approx(np.mean(means))
        assert table.at["σ", methods.display_name(m)] == pytest.approx(np.std(means, ddof=1))
    assert list(table.index) == [*CLASSES, "Mean", "σ"]
    write_report(run_dir, figures=False, ci="off")
    # The CSV keeps the Mean (its bootstrap interval does not follow from the class rows), not σ.
    assert list(read_table(run_dir, "image_auc").index) == [*CLASSES, "Mean"]


def test_without_a_bootstrap_nothing_is_bold(run_dir):
    """No predictions, so no paired bootstrap: the highest value of a row is not called best
    (tests/test_intervals.py checks the marks where there is a bootstrap)."""
    write_report(run_dir, figures=False, ci="off")
    text = (run_dir / "tables" / "mvtec_unsupervised_cpu_gaussian_image_auc_ci-off.tex").read_text()
    assert "\\bfseries" not in text and "\\underline{" not in text
    assert "no method is marked best" in (run_dir / "tables" / "notes_ci-off.md").read_text()
    assert "FCDD mark" not in read_table(run_dir, "image_auc").columns


def test_single_seed_shows_no_plus_minus(tmp_path):
    rows = [row(f"{c}-{m}", "mvtec", c, m, 0, "pixel_auc", value(c, m, 0, "pixel_auc"))
            for c in CLASSES for m in METHODS]
    run = write_results(tmp_path / "one-seed", rows)
    write_report(run, figures=False, ci="off")
    text = (run / "tables" / "mvtec_unsupervised_cpu_gaussian_pixel_auc_ci-off.tex").read_text()
    assert "\\pm" not in text.split("\\toprule")[1] and "(" not in tex_rows(text)["bottle"][0]
    assert tex_rows(text)["bottle"][0] == "0.930"
    assert "1 seed." in text
    assert "one seed, so no spread over seeds is shown" in (run / "tables" / "notes_ci-off.md").read_text()
    assert read_table(run, "pixel_auc")["FCDD std"].isna().all()


def test_single_method_table_bolds_nothing_and_caption_is_in_words(tmp_path):
    rows = [row(f"{c}-fcdd", "mvtec", c, "fcdd", 0, "pixel_auc", value(c, "fcdd", 0, "pixel_auc"), image_size=128)
            for c in CLASSES]
    run = write_results(tmp_path / "one-method", rows)
    write_report(run, figures=False, ci="off")
    text = (run / "tables" / "mvtec_unsupervised_cpu_gaussian_pixel_auc_ci-off.tex").read_text()
    assert "bfseries" not in text
    caption = text[text.index("\\caption{"):].splitlines()[0]
    assert "MVTec-AD" in caption and "cpu preset (128 px)" in caption and "Bold" not in caption
    notes = (run / "tables" / "notes_ci-off.md").read_text()
    assert "cpu preset (128 px images)" in notes and "FCDD's not blurred" in notes


def test_latex_is_well_formed_and_escaped(run_dir):
    paths = write_report(run_dir, compare="paper", figures=False, ci="off").table_paths
    assert {p.suffix for p in paths} == {".csv", ".tex", ".md"}
    for path in (p for p in paths if p.suffix == ".tex"):
        text = path.read_text()
        envs = re.findall(r"\\(begin|end)\{([\w*]+)\}", text)
        stack = []
        for kind, name in envs:
            if kind == "begin":
                stack.append(name)
            else:
                assert stack.pop() == name
        assert stack == [] and {n for k, n in envs if k == "begin"} in ({"table", "tabular"}, {"table*", "tabular"})
        unescaped = re.sub(r"\\[{}]", "", text)
        depth = 0
        for char in unescaped:
            depth += {"{": 1, "}": -1}.get(char, 0)
            assert depth >= 0
        assert depth == 0
        assert "\\toprule" in text and "\\midrule" in text and "\\bottomrule" in text
        for tabular in text.split("\\begin{tabular}")[1:]:
            spec = re.match(r"\{(.+)\}$", tabular, re.M).group(1)
            columns = len(re.sub(r"\[[^]]*\]", "", spec))  # l, then an S[table-format=...] per column
            assert re.fullmatch(r"l(S\[table-format=-?\d\.\d(\(\d\))?[^]]*\])+", spec), spec
            for line in tabular[:tabular.index("\\end{tabular}")].splitlines():
                if line.endswith(" \\\\") and "\\multicolumn" not in line:
                    assert len(re.split(r"(?<!\\)&", line)) == columns, line
        assert "metal\\_nut" in text and "metal_nut" not in text.replace("metal\\_nut", "")
        body = "\n".join(line for line in text.splitlines() if not line.startswith("%"))
        assert not re.search(r"[%#_]", re.sub(r"\\[%#_&$]", "", body)), "unescaped special character"


def test_tex_escape_covers_specials():
    assert fmt.tex_escape("metal_nut 50% A&B #1 $x {y} ~^\\") == (
        "metal\\_nut 50\\% A\\&B \\#1 \\$x \\{y\\} \\textasciitilde{}\\textasciicircum{}\\textbackslash{}")


def test_compare_paper_adds_published_numbers(run_dir):
    rows = pd.read_csv(run_dir / "results.csv").to_dict("records")
    rows += [row(f"semi-{c}-{s}", "mvtec", c, "fcdd", s, "pixel_auc", 0.9, protocol="semi-supervised")
             for c in CLASSES for s in SEEDS]
    rows += [row(f"cifar-{m}", "cifar10", "airplane", m, 0, "image_auc", 0.8) for m in METHODS]
    write_results(run_dir, rows)
    write_report(run_dir, compare="paper", figures=False, ci="off")

    pixel = read_table(run_dir, "pixel_auc", options="_ci-off_paper")
    assert pixel.at["bottle", "AE-L2 (paper)"] == 0.86
    assert pixel.at["bottle", "FCDD (paper)"] == 0.97
    assert pixel.at["metal_nut", "FCDD (paper)"] == 0.94
    pixel_table = next(t for t in tab.report_tables(run_dir, compare="paper")
                       if t.key["metric"] == "pixel_auc" and t.key["protocol"] == "unsupervised")
    assert pixel_table.paper.at["Mean", "FCDD (paper)"] == pytest.approx((0.97 + 0.94) / 2)
    assert not any("paper" in c for c in read_table(run_dir, "image_auc", options="_ci-off_paper").columns)  # no MVTec detection AUC
    semi = read_table(run_dir, "pixel_auc", protocol="semi-supervised", options="_ci-off_paper")
    assert semi.at["bottle", "FCDD (semi-supervised) (paper)"] == 0.96
    cifar = read_table(run_dir, "image_auc", dataset="cifar10", options="_ci-off_paper")
    assert cifar.at["airplane", "FCDD (paper)"] == 0.95
    assert cifar.at["airplane", "AE (paper)"] == 0.59
    assert "Grad (paper)" not in pixel.columns

    tex = (run_dir / "tables" / "mvtec_unsupervised_cpu_gaussian_pixel_auc_ci-off_paper.tex").read_text()
    notes = (run_dir / "tables" / "notes_ci-off_paper.md").read_text()
    assert "Table 2" in notes and "(paper): published values" in tex
    # cpu preset and random init beside the paper's numbers: the notes say so.
    assert "differs from the paper" in notes and "Preset cpu" in notes and "Random init" not in notes
    assert tex_rows(tex)["bottle"][-2:] == ["0.97", "0.86"]
    assert "{\\shortstack{FCDD\\\\(paper)}} & {\\shortstack{AE-L2\\\\(paper)}}" in tex
    # Without --compare the published columns stay out.
    write_report(run_dir, figures=False, ci="off")
    assert not any("paper" in c for c in read_table(run_dir, "pixel_auc").columns)


def test_paper_results_file_is_consistent():
    paper = pd.read_csv(tab.PAPER_RESULTS, comment="#")
    assert list(paper.columns) == ["table", "dataset", "class", "method", "metric", "value"]
    per_table = paper[~paper["class"].isin(["Mean", "σ"])].groupby("table")["class"].nunique()
    assert per_table.to_dict() == {"Table 2": 15, "Table 6": 10, "Table 7": 10, "Table 8": 30}
    assert paper["value"].between(0, 1).all()
    # Each published mean agrees with the mean of its (rounded) class values: a transcription check.
    for (table, method), group in paper[paper["table"] != "Table 1"].groupby(["table", "method"]):
        classes = group[~group["class"].isin(["Mean", "σ"])]["value"]
        if len(classes):
            assert abs(classes.mean() - group[group["class"] == "Mean"]["value"].item()) <= 0.01, (table, method)
    table1 = paper[paper["table"] == "Table 1"].set_index(["dataset", "method"])["value"]
    assert table1[("CIFAR-10", "FCDD")] == 0.95 and table1[("ImageNet-30", "FCDD")] == 0.94
    assert table1[("Fashion-MNIST", "FCDD")] == 0.89


def test_class_and_dataset_names_map_to_the_paper(tmp_path):
    rows = [row("a", "/data/mvtec_ad", "metal_nut", "fcdd", 0, "pixel_auc", 0.9),
            row("b", "fmnist", "t-shirt_top", "fcdd", 0, "image_auc", 0.9),
            row("c", "imagenet", "rotary_dial_telephone", "ae", 0, "image_auc", 0.9)]
    run = write_results(tmp_path / "names", rows)
    tables = {t.key["dataset"]: t.paper for t in tab.report_tables(run, "paper")}
    assert tables["/data/mvtec_ad"].at["metal_nut", "FCDD (paper)"] == 0.94
    assert tables["fmnist"].at["t-shirt_top", "FCDD (paper)"] == 0.82
    assert tables["imagenet"].at["rotary_dial_telephone", "AE (paper)"] == 0.58


def test_method_variants_get_their_own_columns(tmp_path):
    # as `run` records them: the job's seed and device are among a trained method's params
    rows = [row(f"{limit}-{s}", "cifar10", "airplane", "fcdd", s, "image_auc", 0.8 + 0.01 * s, oe="cifar100",
                oe_limit=limit, params='{"device": "%s", "epochs": 3, "seed": %d}' % ("cpu" if s else "cuda", s))
            for limit in ("8", "all") for s in SEEDS]
    run = write_results(tmp_path / "variants", rows)
    (table,) = tab.report_tables(run)
    assert list(table.mean.columns) == ["FCDD (oe_limit=8)", "FCDD (oe_limit=all)"]


def test_a_caption_says_how_many_seeds_each_method_ran(tmp_path):
    rows = [row(f"fcdd-{s}", "mvtec", "bottle", "fcdd", s, "image_auc", 0.9) for s in (0,)]
    rows += [row(f"grad-{s}", "mvtec", "bottle", "grad", s, "image_auc", 0.7 + 0.01 * s) for s in SEEDS]
    (table,) = tab.report_tables(write_results(tmp_path / "mixed", rows))
    assert list(table.mean.columns) == ["FCDD", "Grad"]
    assert "mean over each method's seeds (FCDD 1, Grad 3)" in fmt.caption_words(table)
    rows += [row("ae-0", "mvtec", "bottle", "ae", 0, "image_auc", 0.8)]
    (table,) = tab.report_tables(write_results(tmp_path / "three", rows))
    assert "mean over each method's seeds (Grad 3, the others 1)" in fmt.caption_words(table)
    (table,) = tab.report_tables(write_results(tmp_path / "same", [r for r in rows if r["method"] == "grad"]))
    assert "mean over 3 seeds, their sample standard deviation" in fmt.caption_words(table)


def test_report_errors_name_the_problem(tmp_path, run_dir):
    with pytest.raises(XadError, match="does not exist"):
        write_report(tmp_path / "nowhere", figures=False, ci="off")
    (tmp_path / "bare").mkdir()
    with pytest.raises(XadError, match=r"bare holds no results \(results.sqlite\)"):
        write_report(tmp_path / "bare", figures=False, ci="off")
    write_results(tmp_path / "empty", [])
    with pytest.raises(XadError, match="no results yet"):
        write_report(tmp_path / "empty", figures=False, ci="off")
    with pytest.raises(XadError, match="--compare 'arxiv'"):
        write_report(run_dir, compare="arxiv", figures=False, ci="off")


# ---------------------------------------------------------------- figures


def fake_predictions(run_dir: Path, n: int = 12, size: int = 32, masks: bool = True) -> Path:
    """One MVTec-like class, one seed, three methods; grey inputs with a bright square defect."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * (n // 2) + [1] * (n - n // 2), dtype=np.int8)
    truth = np.zeros((n, size, size), bool)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(4, size - 10, 2)
        truth[i, y:y + 6, x:x + 6] = True
    images = (rng.normal(110, 10, (n, 1, size, size)) + 120 * truth[:, None]).clip(0, 255).astype(np.uint8)
    rows = []
    for m, strength in (("fcdd", 3.0), ("grad", 1.0), ("ae", 2.0)):
        maps = rng.normal(0, 1, (n, size, size)) + strength * truth
        preds = {"score": maps.mean(axis=(1, 2)).astype(np.float32), "anomaly_map": maps.astype(np.float16),
                 "label": labels, "key": np.array([f"test/{i:02d}.png" for i in range(n)]),
                 "category": np.where(labels == 1, "defect", "good"), "image": images,
                 "method_smooth": np.array(m == "fcdd"), "blur_size": np.array(62), "blur_sigma": np.array(12.0),
                 "profile": np.array("mvtec")}
        if masks:
            preds["mask"] = truth
        save_predictions(run_dir / "predictions" / f"job-{m}.npz", preds)
        rows += [row(f"job-{m}", "mvtec", "metal_nut", m, 0, "image_auc", 0.9)]
    return write_results(run_dir, rows)


@pytest.mark.slow
def test_figures_are_drawn_from_saved_predictions(tmp_path):
    run = fake_predictions(tmp_path / "run")
    paths = write_report(run, tables=False).figure_paths
    names = sorted(p.name for p in paths)
    grid = "grid_mvtec_metal_nut_unsupervised_cpu_seed0_local-eta0.97_blur-gaussian_viridis"
    assert names == [f"{grid}.pdf", f"{grid}.png", f"{grid}.tex",
                     *(f"overview_mvtec_unsupervised_cpu_blur-gaussian.{s}" for s in ("pdf", "png", "svg", "tex")),
                     *(f"pro_mvtec_metal_nut_unsupervised_cpu_blur-gaussian.{s}" for s in ("pdf", "png", "svg", "tex")),
                     *(f"roc_image_mvtec_metal_nut_unsupervised_cpu.{s}" for s in ("pdf", "png", "svg", "tex")),
                     *(f"roc_pixel_mvtec_metal_nut_unsupervised_cpu_blur-gaussian.{s}" for s in ("pdf", "png", "svg", "tex"))]
    assert all(p.parent == run / "figures" and p.stat().st_size > 1000 for p in paths if p.suffix != ".tex")
    assert (run / "figures" / names[0]).read_bytes().startswith(b"%PDF")
    assert (run / "figures" / names[-2]).read_text().lstrip().startswith("<?xml")
    snippet = (run / "figures" / names[2]).read_text()  # the caption beside the image, not in it
    assert f"\\includegraphics[width=\\textwidth]{{{grid}.pdf}}" in snippet and "\\caption{mvtec / metal\\_nut" in snippet
    assert "$\\eta$=0.97" in snippet and "η" not in snippet  # pdflatex takes no η outside math

    grid = np.asarray(Image.open(run / "figures" / names[1]).convert("RGB")).astype(int)
    height, width, _ = grid.shape
    assert 800 < width < 4000 and 300 < height < 2000 and width > height  # 12 columns × 5 rows
    # Inputs and masks are grey, so strongly coloured pixels left of the colour bar are heatmap cells;
    # they must vary (a constant or blank heatmap row would show one colour).
    heat = grid[:, : int(width * 0.85)]
    coloured = heat[(heat.max(axis=-1) - heat.min(axis=-1)) > 100]
    assert len(coloured) > 5000
    assert len(np.unique(coloured, axis=0)) > 100
    assert coloured.std(axis=0).min() > 30


def test_grid_shows_every_methods_scores_and_curve_legends_show_the_tables_values(tmp_path):
    from xadbench.reports.intervals import run_intervals

    run = fake_predictions(tmp_path / "run")
    results = pd.read_csv(run / "results.csv")
    write_results(run, pd.concat([results, results.assign(metric="pixel_auc", value=0.5)]).to_dict("records"))
    intervals = run_intervals(run, 100)
    drawn = {d.kind: d for d in figs.render_figures(run, samples=3, intervals=intervals, n_resamples=100)}
    texts = {t.get_text() for t in drawn["grid"].figure.axes[0].texts}
    for m in METHODS:
        preds = load_predictions(run / "predictions" / f"job-{m}.npz")
        columns = np.concatenate([figs.pick_columns(load_predictions(run / "predictions" / "job-fcdd.npz")["score"],
                                                    preds["label"], label, 3) for label in (0, 1)])
        assert {f"{v:.3g}" for v in preds["score"][columns]} <= texts, m
    tables = {t.key["metric"]: t for t in tab.report_tables(run, intervals=intervals)}
    for kind, metric in (("roc_image", "image_auc"), ("roc_pixel", "pixel_auc"), ("pro", "aupro")):
        legend = [t.get_text() for t in drawn[kind].figure.axes[0].get_legend().get_texts()]
        names = [methods.display_name(m) for m in METHODS]
        assert legend == [f"{n}: {fmt.cell_text(tables[metric], 'metal_nut', n)}" for n in names], kind


def test_overview_plots_each_methods_mean_and_std_over_seeds(run_dir):
    results = tab.load_results(run_dir)
    results = pd.concat([results, results[results["method"] == "fcdd"].assign(
        method="centre", column="centre", job_id=lambda r: "centre-" + r["job_id"], value=0.5)])
    (drawn,) = figs.overview_figures(results, "gaussian")
    assert drawn.stem == "overview_mvtec_unsupervised_cpu_blur-gaussian" and drawn.formats == (".png", ".pdf", ".svg")
    axes = drawn.figure.axes
    assert [ax.get_title() for ax in axes] == ["Detection AUC", "Pixel-wise AUC"]
    legend = [t.get_text() for t in axes[-1].get_legend().get_texts()]
    assert legend == ["centre", "FCDD", "Grad", "AE"]  # references first
    for ax, metric in zip(axes, ("image_auc", "pixel_auc")):
        # Per hue level seaborn draws the means over classes as one line, then one error bar per class.
        lines = [line for line in ax.lines if len(line.get_xdata()) == len(CLASSES)]
        for label, line in zip(legend, lines[::len(CLASSES) + 1]):
            method = {"centre": "centre", **{methods.display_name(m): m for m in METHODS}}[label]
            seeds = {c: [0.5] * len(SEEDS) if method == "centre" else [value(c, method, s, metric) for s in SEEDS]
                     for c in CLASSES}
            np.testing.assert_allclose(line.get_ydata(), [np.mean(seeds[c]) for c in CLASSES])
        bars = [line for line in ax.lines if len(line.get_xdata()) == 2 and line.get_xdata()[0] == line.get_xdata()[1]]
        spreads = sorted(round(line.get_ydata()[1] - line.get_ydata()[0], 6) for line in bars)
        expected = sorted([round(2 * np.std([value(c, m, s, metric) for s in SEEDS], ddof=1), 6)
                           for m in METHODS for c in CLASSES] + [0.0] * len(CLASSES))  # centre: no spread
        np.testing.assert_allclose(spreads, expected, atol=1e-6)


def test_grid_heatmaps_are_normalised_and_vary(tmp_path):
    run = fake_predictions(tmp_path / "run")
    preds = load_predictions(run / "predictions" / "job-ae.npz")
    columns = figs.pick_columns(preds["score"], preds["label"], 1, 4)
    for norm in ("local", "global"):
        maps = figs.grid_heatmaps(preds, columns, norm, 0.97, "gaussian")
        assert maps.shape == (4, 32, 32) and maps.min() >= 0 and maps.max() <= 1
        assert maps.std() > 0.05


def test_pick_columns_spreads_evenly_over_the_score_order():
    scores = np.arange(20, dtype=float)[::-1]
    labels = np.array([0, 1] * 10)
    picked = figs.pick_columns(scores, labels, 1, 4)
    assert list(scores[picked]) == [0.0, 6.0, 12.0, 18.0]
    assert len(figs.pick_columns(scores, labels, 0, 50)) == 10


def test_display_defaults_follow_appendix_c():
    assert figs.display_defaults("mvtec") == ("local", 0.97)
    assert figs.display_defaults("cifar10") == ("local", 0.85)
    assert figs.display_defaults("fmnist") == ("global", 0.85)
    assert figs.display_defaults("imagenet") == ("global", 0.97)
    assert figs.display_defaults("voc") == ("global", 0.99)


def test_figures_without_masks_draw_no_pixel_roc(tmp_path):
    run = fake_predictions(tmp_path / "run", masks=False)
    names = {p.name for p in write_report(run, tables=False, figure_options=FigureOptions(norm="global", eta=0.9, blur="none", samples=3)).figure_paths}
    assert "roc_image_mvtec_metal_nut_unsupervised_cpu.png" in names
    assert not any(n.startswith("roc_pixel") for n in names)


def test_figure_errors_name_the_problem(tmp_path, run_dir):
    with pytest.raises(XadError, match="--norm 'minmax'"):
        write_report(run_dir, tables=False, figure_options=FigureOptions(norm="minmax")).figure_paths
    with pytest.raises(XadError, match="--eta 1.5"):
        write_report(run_dir, tables=False, figure_options=FigureOptions(eta=1.5)).figure_paths
    with pytest.raises(XadError, match="--blur 'box'"):
        write_report(run_dir, tables=False, figure_options=FigureOptions(blur="box")).figure_paths
    with pytest.raises(XadError, match="--cmap 'viridsi'.*did you mean 'viridis'"):
        write_report(run_dir, tables=False, figure_options=FigureOptions(cmap="viridsi")).figure_paths
    with pytest.raises(XadError, match="holds none of the predictions"):
        write_report(run_dir, tables=False).figure_paths
    with pytest.raises(XadError, match="does not exist"):
        write_report(tmp_path / "nowhere", tables=False).figure_paths


# ---------------------------------------------------------------- command line


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report)
    app.command("figures")(figures)
    return app


@pytest.mark.slow
def test_cli_report_and_figures(cli, tmp_path):
    run = fake_predictions(tmp_path / "run")
    runner = CliRunner()
    done = runner.invoke(cli, ["report", str(run), "--compare", "paper"])
    assert done.exit_code == 0, done.output
    assert "tables:" in done.output and "One class, no mean" in done.output
    assert (run / "tables" / "mvtec_unsupervised_cpu_gaussian_image_auc_paper.tex").is_file()
    done = runner.invoke(cli, ["figures", str(run), "--norm", "local", "--eta", "0.9", "--samples", "2"])
    assert done.exit_code == 0, done.output
    assert (run / "figures" / "grid_mvtec_metal_nut_unsupervised_cpu_seed0_local-eta0.9_blur-gaussian_viridis.png").is_file()
    done = runner.invoke(cli, ["figures", str(run), "--cmap", "viridis", "--blur", "none", "--samples", "2"])
    assert done.exit_code == 0, done.output
    assert (run / "figures" / "grid_mvtec_metal_nut_unsupervised_cpu_seed0_local-eta0.97_blur-none_viridis.png").is_file()


def test_cli_help_has_examples_and_errors_are_xad_errors(cli, tmp_path):
    runner = CliRunner()
    for command in ("report", "figures"):
        done = runner.invoke(cli, [command, "--help"])
        assert done.exit_code == 0 and f"xadbench {command} runs/" in done.output
    done = runner.invoke(cli, ["report", str(tmp_path / "missing")])
    assert done.exit_code == 1 and isinstance(done.exception, XadError)
    done = runner.invoke(cli, ["figures", str(tmp_path), "--norm", "max"])  # a choice: a usage error
    assert done.exit_code == 2 and "--norm" in done.output and "'max' is not one of" in done.output


def test_oe_exclusion_variants_are_not_pooled_as_seeds(tmp_path):
    rows = [row(f"j{i}", "folder", "cat", "fcdd", 0, "image_auc", val, oe="imagenette", oe_limit="all", oe_exclude=excl)
            for i, (excl, val) in enumerate([("", 0.74), ("n03417042,n02102040", 0.73)])]
    (table,) = tab.report_tables(write_results(tmp_path / "run", rows))
    assert list(table.mean.columns) == ["FCDD (oe_exclude=)", "FCDD (oe_exclude=n03417042,n02102040)"]


def test_siunitx_cells_and_column_formats():
    """Hand-worked: the S column reserves sign, integer digits and decimals of its values."""
    assert fmt.siunitx_column(pd.Series([0.912, 0.5])) == "S[table-format=1.3, detect-weight, mode=text]"
    assert fmt.siunitx_column(pd.Series([-0.25, 12.5, np.nan]), uncertainty=True) == (
        "S[table-format=-2.3(3), uncertainty-mode=separate, detect-weight, mode=text]")
    assert fmt.siunitx_number(0.9123, 0.0131) == "0.912 \\pm 0.013"
    assert fmt.siunitx_number(0.81, after="$^\\dagger$") == "0.810{$^\\dagger$}"
    assert fmt.siunitx_number(0.5, underline=True) == "{\\underline{\\num{0.500}}}"
    assert fmt.siunitx_number(np.nan, 0.1) == "{--}"


@pytest.mark.parametrize("names", [("ae",), ("fcdd", "ae")])
def test_overview_of_one_and_two_methods(run_dir, names):
    """A run of one method has one hue level: seaborn's dodge divided by zero there."""
    results = tab.load_results(run_dir)
    results = results[results["method"].isin(names)]
    (drawn,) = figs.overview_figures(results, "gaussian")
    legend = [t.get_text() for t in drawn.figure.axes[-1].get_legend().get_texts()]
    assert legend == [methods.display_name(m) for m in names]
    for ax, metric in zip(drawn.figure.axes, ("image_auc", "pixel_auc")):
        lines = [line for line in ax.lines if len(line.get_xdata()) == len(CLASSES)]
        for method, line in zip(names, lines[::len(CLASSES) + 1]):
            np.testing.assert_allclose(line.get_ydata(), [np.mean([value(c, method, s, metric) for s in SEEDS])
                                                          for c in CLASSES])


def test_curves_and_overview_are_drawn_at_print_size_with_readable_fonts(tmp_path, run_dir):
    """Printed at the size drawn (a column: 3.5 in; the text width: 7.2 in), every text is at least
    6 pt; no title carries the caption."""
    from matplotlib.text import Text

    run = fake_predictions(tmp_path / "run")
    drawn = list(figs.render_figures(run, n_resamples=100))
    drawn += list(figs.overview_figures(tab.load_results(run_dir), "gaussian"))
    assert {d.kind for d in drawn} == {"grid", "roc_image", "roc_pixel", "pro", "overview"}
    for d in drawn:
        width = d.figure.get_size_inches()[0]
        assert width == pytest.approx(7.2 if d.kind in ("overview", "grid") else 3.5), d.stem
        texts = [t for t in d.figure.findobj(Text) if t.get_visible() and t.get_text().strip()]
        assert texts and min(t.get_fontsize() for t in texts) >= 6, d.stem
        assert not d.figure._suptitle and all(not ax.get_title() for ax in d.figure.axes if d.kind != "overview")

"""Bootstrap interval tables, paired comparisons and the `report --ci` / `compare` commands, on
hand-made predictions files (no training); values checked against sklearn on the resampled
images."""
from __future__ import annotations

import io
import re
import shutil
import subprocess
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import typer
from sklearn.metrics import roc_auc_score
from typer.testing import CliRunner

from xadbench.errors import XadError
from xadbench.heatmaps import PostProcessor
from xadbench.metrics.bootstrap import stratified_weights
from xadbench.metrics.registry import list_metrics
from xadbench.reports import intervals as iv
from xadbench.cli.report_commands import compare, report
from xadbench.reports.table_formats import format_interval
from xadbench.run_folder import results_store, save_predictions

N, SIZE = 16, 16
DEFECTS = ("crack", "hole")


def job_id(method: str, seed: int) -> str:
    """A job id of the store's form (16 hex digits)."""
    return f"{sorted(['ae', 'fcdd', 'pixelstats']).index(method):08x}{seed:08x}"


def make_run(run_dir: Path, strengths: dict[str, float], seeds=(0, 1), n_resamples_hint: int = 0) -> Path:
    """One class, methods with a defect signal of the given strength, several seeds; nominal
    images first, then two defect types."""
    rng = np.random.default_rng(0)
    labels = np.array([0] * 6 + [1] * (N - 6), dtype=np.int8)
    categories = np.array(["good"] * 6 + [DEFECTS[i % 2] for i in range(N - 6)])
    truth = np.zeros((N, SIZE, SIZE), bool)
    for i in np.flatnonzero(labels):
        y, x = rng.integers(0, SIZE - 5, 2)
        truth[i, y:y + rng.integers(2, 5), x:x + rng.integers(2, 5)] = True
    rows = []
    for method, strength in strengths.items():
        for seed in seeds:
            maps = rng.normal(0, 1, (N, SIZE, SIZE)) + strength * truth
            job = job_id(method, seed)
            save_predictions(run_dir / "predictions" / f"{job}.npz", {
                "score": (maps.max(axis=(1, 2)) + rng.normal(0, 0.5, N)).astype(np.float32),
                "anomaly_map": maps.astype(np.float16), "label": labels,
                "key": np.array([f"test/{i:02d}.png" for i in range(N)]), "category": categories,
                "image": np.zeros((N, 1, SIZE, SIZE), np.uint8), "method_smooth": np.array(False),
                "blur_size": np.array(5), "blur_sigma": np.array(1.0), "profile": np.array("mvtec"),
                "mask": truth})
            rows.append({"job_id": job, "dataset": "mvtec", "class": "bottle", "method": method, "seed": seed,
                         "preset": "cpu", "protocol": "unsupervised", "blur": "gaussian", "metric": "image_auc",
                         "value": 0.5, "oe": "", "oe_limit": "", "oe_exclude": "", "k": "", "weights": "none",
                         "n_train": 1, "n_test": N, "fit_s": 0, "predict_s": 0, "params": "{}"})
    store = results_store(run_dir).open()
    for row in rows:  # one row per job, written as `xadbench run` writes them
        store.add_job(row["job_id"], [row], checkpoint=False)
    store.export_csv()
    return run_dir


def _maps(run_dir: Path, job: str):
    p = np.load(run_dir / "predictions" / f"{job}.npz")
    maps = PostProcessor(size=5, sigma=1.0, maps_smoothed=False)(p["anomaly_map"].astype(np.float32), "gaussian").astype(np.float16)
    return p["score"], p["label"].astype(bool), maps, p["mask"], p["category"]


def _table(tables, metric, by_defect=False):
    return next(t for t in tables if t.key["metric"] == metric and t.by_defect == by_defect)


def test_cells_are_seed_means_of_the_metrics_of_the_resampled_images(tmp_path):
    run = make_run(tmp_path / "run", {"fcdd": 1.5})
    tables = iv.interval_tables(run, n_resamples=100, seed=0, metrics=("image_auc", "pixel_auc"))
    weights = stratified_weights(_maps(run, job_id("fcdd", 0))[1], 100, iv.class_seed("bottle", 0))
    for metric in ("image_auc", "pixel_auc"):
        cell = _table(tables, metric).cell("bottle", "FCDD")
        full, resampled = [], []
        for seed in (0, 1):
            scores, labels, maps, masks, _ = _maps(run, job_id("fcdd", seed))

            def value(index):
                if metric == "image_auc":
                    return roc_auc_score(labels[index], scores[index])
                return roc_auc_score(masks[index].ravel(), maps[index].ravel())

            full.append(value(np.arange(N)))
            resampled.append([value(np.repeat(np.arange(N), w.astype(int))) for w in weights[:3]])
        assert cell.value == pytest.approx(np.mean(full), abs=1e-12)
        assert cell.seed_std == pytest.approx(np.std(full, ddof=1), abs=1e-12)
        assert np.allclose(cell.resamples[:3], np.mean(resampled, axis=0), atol=1e-9)
        assert cell.n_seeds == 2 and len(cell.resamples) == 100
        assert (cell.low, cell.high) == pytest.approx(tuple(np.percentile(cell.resamples, [2.5, 97.5])))


def test_defect_rows_take_one_type_and_all_nominal_images(tmp_path):
    run = make_run(tmp_path / "run", {"fcdd": 1.5}, seeds=(0,))
    table = _table(iv.interval_tables(run, n_resamples=100, metrics=("pixel_auc",)), "pixel_auc", by_defect=True)
    assert table.rows == [f"bottle/{d}" for d in DEFECTS]
    scores, labels, maps, masks, categories = _maps(run, job_id("fcdd", 0))
    for defect in DEFECTS:
        chosen = (categories == "good") | (categories == defect)
        expected = roc_auc_score(masks[chosen].ravel(), maps[chosen].ravel())
        assert table.cell(f"bottle/{defect}", "FCDD").value == pytest.approx(expected, abs=1e-12)


def test_marks_bold_a_significant_best_else_the_tied_group(tmp_path):
    far = iv.interval_tables(make_run(tmp_path / "far", {"fcdd": 3.0, "ae": 0.3}), n_resamples=300, metrics=("pixel_auc",))
    assert _table(far, "pixel_auc").marks("bottle") == {"FCDD": iv.BEST}
    # Image AUC of 16 images with the same signal: far too few images to tell them apart.
    close = iv.interval_tables(make_run(tmp_path / "close", {"fcdd": 1.0, "ae": 1.0}), n_resamples=300, metrics=("image_auc",))
    table = _table(close, "image_auc")
    marks = table.marks("bottle")
    assert set(marks.values()) == {iv.TIED} and set(marks) == {"FCDD", "AE"}
    diff, low, high = table.difference("bottle", "FCDD", "AE")
    paired = table.cell("bottle", "FCDD").resamples - table.cell("bottle", "AE").resamples
    assert (low, high) == pytest.approx(tuple(np.percentile(paired, [2.5, 97.5])))
    assert low <= 0 <= high


def test_marks_follow_the_lower_bound_of_the_paired_difference_hand_worked():
    """Resampled values chosen so that the 2.5th percentile of each paired difference is known:
    A − B runs evenly over [lo, lo + 0.2] on 1,001 resamples, so its lower bound is lo + 0.005."""
    def table(lo: float) -> iv.IntervalTable:
        base = np.linspace(0.6, 0.7, 1001)
        a = iv.Cell(0.9, 0, 1, np.nan, 1, base + 0.3)
        b = iv.Cell(0.8, 0, 1, np.nan, 1, base + 0.3 - np.linspace(lo, lo + 0.2, 1001))
        c = iv.Cell(0.5, 0, 1, np.nan, 1, base)  # A − C ≥ 0.3 on every resample
        return iv.IntervalTable({}, ["x"], ["A", "B", "C"], {("x", "A"): a, ("x", "B"): b, ("x", "C"): c})

    assert table(0.001).marks("x") == {"A": iv.BEST}                  # lower bound +0.006
    assert table(-0.01).marks("x") == {"A": iv.TIED, "B": iv.TIED}    # lower bound −0.005: tied
    assert table(-0.006).marks("x") == {"A": iv.TIED, "B": iv.TIED}   # −0.001: still tied


def test_reference_columns_come_first_and_are_never_marked(tmp_path):
    run = make_run(tmp_path / "run", {"fcdd": 0.5, "pixelstats": 3.0}, seeds=(0,))
    table = _table(iv.interval_tables(run, n_resamples=100, metrics=("pixel_auc",)), "pixel_auc")
    assert table.columns[0] == "pixelstats" and table.references == ["pixelstats"]
    assert "pixelstats" not in table.marks("bottle")


@pytest.fixture
def cli() -> typer.Typer:
    app = typer.Typer()
    app.command("report")(report)
    app.command("compare")(compare)
    return app


def test_interval_styles():
    assert format_interval(0.9123, 0.89, 0.931) == "0.912 [0.890, 0.931]"
    assert format_interval(0.9123, 0.89, 0.931, "halfwidth") == "0.912 ± 0.021"


def test_cli_report_ci_and_compare(cli, tmp_path):
    run = make_run(tmp_path / "run", {"fcdd": 2.0, "ae": 1.0}, seeds=(0,))
    runner = CliRunner()
    done = runner.invoke(cli, ["report", str(run), "--ci", "halfwidth", "--resamples", "100", "--compare", "paper"])
    assert done.exit_code == 0, done.output
    tex = (run / "tables" / "mvtec_unsupervised_cpu_gaussian_aupro_ci-halfwidth_paper.tex").read_text()
    # siunitx: the half-width as the value's uncertainty; the significant best in \bfseries
    assert re.search(r"\d\.\d{3} \\pm \d\.\d{3}", tex) and "\\bfseries 0." in tex and "bottle" in tex
    assert (run / "tables" / "mvtec_unsupervised_cpu_gaussian_pixel_auc_defects_ci-halfwidth_paper.csv").is_file()
    assert not list((run / "tables").glob("*_ci.*"))  # one set of tables, not two
    rows = pd.read_csv(run / "intervals.csv")
    assert set(rows["metric"]) == set(list_metrics(headline=True))
    assert (rows["ci_low"] <= rows["value"]).all() and (rows["value"] <= rows["ci_high"]).all()
    done = runner.invoke(cli, ["compare", str(run), "--metric", "image_auc", "--resamples", "100"])
    assert done.exit_code == 0, done.output
    assert "DeLong" in done.output and "row − column" in done.output
    # The matrix is saved beside the tables: its numbers are the intervals' paired differences.
    saved = pd.read_csv(run / "tables" / "compare_mvtec_unsupervised_cpu_gaussian_image_auc_bottle.csv")
    table = _table(iv.run_intervals(run, 100), "image_auc")
    difference, low, high = table.difference("bottle", "FCDD", "AE")
    pair = saved[(saved["a"] == "FCDD") & (saved["b"] == "AE")].iloc[0]
    assert (pair["difference"], pair["low"], pair["high"]) == (difference, low, high)
    tex = (run / "tables" / "compare_mvtec_unsupervised_cpu_gaussian_image_auc_bottle.tex").read_text()
    assert "image\\_auc: bottle" in tex and "−" not in tex
    if shutil.which("pdflatex"):
        doc = tmp_path / "doc.tex"
        doc.write_text(f"\\documentclass{{article}}\\usepackage{{booktabs}}\\begin{{document}}\n\\input{{{(run / 'tables' / 'compare_mvtec_unsupervised_cpu_gaussian_image_auc_bottle.tex').as_posix()}}}\n\\end{{document}}\n")
        made = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", doc.name], cwd=tmp_path,
                              capture_output=True, text=True, timeout=60)
        assert made.returncode == 0, made.stdout[-2000:]


@pytest.mark.parametrize("args,option", [(["report", "--ci", "wide"], "--ci"), (["report", "--resamples", "10"], "--resamples"),
                                          (["compare", "--metric", "f1"], "--metric")])
def test_cli_bad_options_are_one_line_errors(cli, tmp_path, args, option):
    run = make_run(tmp_path / "run", {"fcdd": 2.0}, seeds=(0,))
    done = CliRunner().invoke(cli, [args[0], str(run), *args[1:]])
    if args[1] in ("--resamples", "--metric"):  # --metric: checked against the metric registry
        assert isinstance(done.exception, XadError) and option in str(done.exception)
    else:  # a choice: click's usage error names the option and the choices
        assert done.exit_code == 2 and f"Invalid value for '{option}'" in done.output and "is not one of" in done.output
    assert not (run / "intervals.csv").exists()


# ---------------------------------------------------------------- the results store and the tables


def test_intervals_are_stored_in_the_results_store_and_recomputed_when_stale(tmp_path, monkeypatch):
    import sqlite3

    run = make_run(tmp_path / "run", {"fcdd": 2.0, "ae": 1.0}, seeds=(0, 1))
    computed = iv.run_intervals(run, 100, seed=3)
    with sqlite3.connect(run / "results.sqlite") as conn:
        stored = pd.read_sql("SELECT * FROM intervals", conn)
    cells = iv.interval_rows(computed)
    assert len(stored) == len(cells) and set(stored["resamples"]) == {100} and set(stored["ci_seed"]) == {3}
    assert np.allclose(stored["ci_low"], cells["ci_low"]) and np.allclose(stored["ci_high"], cells["ci_high"])

    def no_bootstrap(*args, **kwargs):
        raise AssertionError("recomputed although stored")

    monkeypatch.setattr(iv, "interval_tables", no_bootstrap)
    read = iv.run_intervals(run, 100, seed=3)
    assert [(t.key, t.by_defect, t.rows, t.columns, t.references) for t in read] == \
           [(t.key, t.by_defect, t.rows, t.columns, t.references) for t in computed]
    for before, after in zip(computed, read):
        for key, cell in before.cells.items():
            if key[0] in before.rows:
                assert np.array_equal(after.cells[key].resamples, cell.resamples)
                assert (after.cells[key].value, after.cells[key].low) == (cell.value, cell.low)
        assert [after.marks(r) for r in after.rows] == [before.marks(r) for r in before.rows]
    assert iv.interval_rows(read).equals(cells)
    with pytest.raises(AssertionError, match="recomputed"):  # other bootstrap settings are not stored
        iv.run_intervals(run, 200, seed=3)
    # A job rerun (its predictions rewritten) makes the stored intervals stale.
    path = run / "predictions" / f"{job_id('fcdd', 0)}.npz"
    save_predictions(path, dict(np.load(path)))
    with pytest.raises(AssertionError, match="recomputed"):
        iv.run_intervals(run, 100, seed=3)


def _tex_row(text: str, name: str, line_below: bool = False) -> list[str]:
    """The cells of row `name` of a LaTeX table, or of the (\\scriptsize) line under it."""
    lines = text.splitlines()
    index = next(i for i, line in enumerate(lines) if line.startswith(name + " &")) + line_below
    return [c.strip() for c in lines[index][:-2].split(" & ")[1:]]


def test_every_table_bolds_only_a_significant_best_and_underlines_a_tie(tmp_path):
    from rich.console import Console

    from xadbench.reports.html import table_html
    from xadbench.reports.table_formats import summary_table, to_csv, to_latex
    from xadbench.reports.tables import report_tables

    far = make_run(tmp_path / "far", {"fcdd": 3.0, "ae": 0.3, "pixelstats": 4.0})
    intervals = iv.interval_tables(far, 200, metrics=("pixel_auc",))
    table = _table(report_tables(far, intervals=intervals), "pixel_auc")
    interval = _table(intervals, "pixel_auc")
    cell = interval.cell("bottle", "FCDD")
    assert table.mean.at["bottle", "FCDD"] == cell.value  # the bootstrap's value, not results' 0.5
    tex = _tex_row(to_latex(table), "bottle")  # pixelstats, FCDD, AE; siunitx cells
    expected = f"{cell.value:.3f} [{cell.low:.3f}, {cell.high:.3f}] ({cell.seed_std:.3f})"
    assert tex[1] == f"\\bfseries {cell.value:.3f}"
    assert _tex_row(to_latex(table), "bottle", line_below=True)[1] == \
           f"{{\\scriptsize [{cell.low:.3f}, {cell.high:.3f}] ({cell.seed_std:.3f})}}"
    assert not tex[2].startswith(("\\bfseries", "{\\underline"))
    assert not tex[0].startswith("\\bfseries")  # pixelstats, a reference, is higher but never marked
    csv = pd.read_csv(io.StringIO(to_csv(table)), index_col="class", keep_default_na=False)
    assert (csv.at["bottle", "FCDD mark"], csv.at["bottle", "AE mark"], csv.at["bottle", "pixelstats mark"]) == \
           ("best", "", "")
    assert float(csv.at["bottle", "FCDD low"]) == pytest.approx(cell.low)
    assert f"<b>{expected}</b>" in table_html(table)
    console = Console(width=400, record=True)
    console.print(summary_table([table]))
    assert expected in console.export_text()
    half = _table(report_tables(far, intervals=intervals, style="halfwidth"), "pixel_auc")
    assert _tex_row(to_latex(half), "bottle")[1].startswith(f"\\bfseries {cell.value:.3f} \\pm {(cell.high - cell.low) / 2:.3f}")

    close = make_run(tmp_path / "close", {"fcdd": 1.0, "ae": 1.0})
    table = _table(report_tables(close, intervals=iv.interval_tables(close, 200, metrics=("image_auc",))), "image_auc")
    tex = _tex_row(to_latex(table), "bottle")
    assert all(c.startswith("{\\underline{") for c in tex) and "\\bfseries" not in to_latex(table)
    assert table_html(table).count("<u>") == 2 and "<b>" not in table_html(table)


# ---------------------------------------------------------------- curves with bootstrap bands


def test_roc_at_fixed_false_positive_rates_hand_worked():
    from xadbench.metrics.bootstrap import image_counts, roc_resamples

    # ROC points (0, 0), (0, 0.5), (0.5, 0.5), (0.5, 1), (1, 1): a vertical step takes its top.
    pos, neg = image_counts(np.array([0.1, 0.4, 0.35, 0.8]), np.array([0, 0, 1, 1]))
    tpr = roc_resamples(pos, neg, np.ones((1, 4)), np.array([0, 0.25, 0.5, 0.75, 1]))
    assert tpr[0].tolist() == [0.5, 0.5, 1.0, 1.0, 1.0]
    # A tie between a positive and a negative is a diagonal segment, as sklearn draws it.
    pos, neg = image_counts(np.array([0.2, 0.5, 0.5, 0.9]), np.array([0, 0, 1, 1]))
    assert roc_resamples(pos, neg, np.ones((1, 4)), np.array([0.25]))[0].tolist() == [0.75]


def test_resampled_roc_curves_match_sklearn_on_the_repeated_images():
    from sklearn.metrics import roc_curve

    from xadbench.metrics.bootstrap import curve_at, merge_columns, roc_resamples
    from xadbench.metrics.counts import ImageCounts

    rng = np.random.default_rng(1)
    masks = rng.random((10, 8, 8)) < 0.2
    maps = (rng.normal(0, 1, masks.shape) + masks).round(1).astype(np.float16)  # many ties
    counts = ImageCounts(list(maps), list(masks))
    weights = np.vstack([np.ones(10), stratified_weights(np.arange(10) % 2, 4, 0)])
    grid = np.linspace(0, 1, 101)
    tpr = roc_resamples(counts.pos, counts.neg, weights, grid)
    for w, row in zip(weights, tpr):
        chosen = np.repeat(np.arange(10), w.astype(int))
        fpr_sk, tpr_sk, _ = roc_curve(masks[chosen].ravel(), maps[chosen].ravel().astype(np.float64),
                                      drop_intermediate=False)
        assert np.allclose(row, curve_at(fpr_sk[None], tpr_sk[None], grid)[0], atol=1e-12)
        # Merged thresholds keep a subset of the exact curve's points (the band's curves are chords).
        merged_pos, merged_neg = merge_columns([counts.pos, counts.neg], 5)
        assert merged_pos.shape[1] <= 5
        tp = np.cumsum((w @ merged_pos)[::-1]) / (w @ merged_pos).sum()
        fp = np.cumsum((w @ merged_neg)[::-1]) / (w @ merged_neg).sum()
        exact = set(zip(np.round(fpr_sk, 12), np.round(tpr_sk, 12)))
        assert set(zip(np.round(fp, 12), np.round(tp, 12))) <= exact


def test_a_newly_declared_metric_makes_the_stored_intervals_stale(tmp_path, monkeypatch):
    from dataclasses import replace

    from xadbench.metrics import registry
    from xadbench.reports.run import Run

    run = make_run(tmp_path / "run", {"fcdd": 2.0}, seeds=(0,))
    before = iv.job_set(Run.load(run))
    copy = replace(registry.get_metric("image_auc"), name="image_auc_again")
    monkeypatch.setitem(registry._METRICS, copy.name, copy)
    assert iv.job_set(Run.load(run)) != before  # recomputed, so the new metric gets its intervals


def test_compare_labels_reference_rows_and_columns(tmp_path):
    from rich.console import Console

    from xadbench.reports.compare import compare_matrices

    run = make_run(tmp_path / "run", {"fcdd": 2.0, "pixelstats": 1.0}, seeds=(0,))
    console = Console(width=300, record=True)
    for matrix in compare_matrices(run, "pixel_auc", 100, 0):
        console.print(matrix.rich())
    lines = console.export_text().splitlines()
    assert any(line.startswith("│ pixelstats (reference) │") for line in lines)  # its row
    assert any(" pixelstats (reference) ┃" in line and " FCDD ┃" in line for line in lines)  # the header
    assert "FCDD (reference)" not in console.export_text()

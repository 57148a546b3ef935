"""Every LaTeX table a report writes compiles, without an overfull box, in a one-column and a
two-column `article` with only the packages its header names: for the widest run the issue asks
for (8 methods and both references, 15 classes, several seeds, the paper's columns) and for a
one-method run. The run folders are synthetic (results rows and predictions written as `xadbench
run` writes them), the tables come from the real report code. `python -m tests.test_latex_compile
OUT` writes the compiled page of the main table as OUT/table.png (docs/table.png)."""
from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from xadbench.registry import methods as methods_registry
from xadbench.reports import table_formats as fmt
from xadbench.reports.intervals import run_intervals
from xadbench.reports.tables import report_tables
from xadbench.run_folder import results_store, save_predictions

MVTEC = ("bottle", "cable", "capsule", "carpet", "grid", "hazelnut", "leather", "metal_nut", "pill", "screw",
         "tile", "toothbrush", "transistor", "wood", "zipper")
EIGHT = ("fcdd", "grad", "ae", "grad-cam", "grad-ig", "grad-smooth", "patchcore", "padim")
DOCUMENT_CLASSES = ("article", "[twocolumn]article")


def synthetic_run(run_dir: Path, methods: tuple[str, ...], classes: tuple[str, ...], seeds: dict[str, int],
                  n: int = 8, size: int = 16) -> Path:
    """A run folder of `methods` × `classes`: per job its results rows (image and pixel AUC, and
    the own mean map's pixel AUC, so some cells are flagged) and a predictions file whose maps
    show each anomalous image's square defect with a method's own strength."""
    rng = np.random.default_rng(0)
    store = results_store(run_dir).open()
    labels = np.array([0] * (n // 2) + [1] * (n - n // 2), dtype=np.int8)
    for c, class_name in enumerate(classes):
        truth = np.zeros((n, size, size), bool)
        for i in np.flatnonzero(labels):
            y, x = rng.integers(2, size - 6, 2)
            truth[i, y:y + 4, x:x + 4] = True
        for m, method in enumerate(methods):
            for seed in range(seeds.get(method, 1)):
                job_id = f"{class_name}-{method}-{seed}"
                maps = rng.normal(0, 1, (n, size, size)) + (0.5 + m / 2) * truth
                save_predictions(run_dir / "predictions" / f"{job_id}.npz", {
                    "score": maps.mean(axis=(1, 2)).astype(np.float32), "anomaly_map": maps.astype(np.float16),
                    "label": labels, "mask": truth, "image": np.full((n, 1, size, size), 128, np.uint8), "key": np.array([f"test/{i:02d}.png" for i in range(n)]),
                    "category": np.where(labels == 1, "crack", "good"),
                    "method_smooth": np.array(method == "fcdd"), "blur_size": np.array(5), "blur_sigma": np.array(1.0),
                    "profile": np.array("mvtec")})
                values = {"image_auc": 0.6 + 0.04 * m, "pixel_auc": 0.7 + 0.03 * m + 0.01 * c / len(classes)}
                if not methods_registry.get(method).constant_map:  # as the runner: centre is its own mean map
                    values["pixel_auc_mean_map"] = 0.75 - 0.01 * m
                store.add_job(job_id, [
                    {"job_id": job_id, "dataset": "mvtec", "class": class_name, "method": method, "seed": seed,
                     "preset": "cpu", "protocol": "unsupervised", "blur": "gaussian", "metric": metric,
                     "value": value + 0.01 * seed, "oe": "", "oe_limit": "", "oe_exclude": "", "k": "",
                     "weights": "none", "n_train": 10, "n_test": n, "fit_s": 1.0, "predict_s": 0.1, "params": "{}",
                     "image_size": size} for metric, value in values.items()], checkpoint=False)
    store.export_csv()
    return run_dir


def write_run_tables(run_dir: Path, style: str, compare: str | None) -> list[Path]:
    """The report's tables of a run, written as `xadbench report` writes them."""
    intervals = run_intervals(run_dir, 100, 0) if style != "off" else []
    return [p for p in fmt.write_tables(run_dir, report_tables(run_dir, compare, intervals, style))
            if p.suffix == ".tex"]


def compile_tables(tables: list[Path], document_class: str, workdir: Path) -> tuple[int, str, Path]:
    """One document that \\input's every table (a \\clearpage after each, so floats never pile
    up), compiled with pdflatex: its exit code, log and PDF."""
    workdir.mkdir(parents=True, exist_ok=True)
    options, name = re.fullmatch(r"(\[\w+\])?(\w+)", document_class).groups()
    body = "\n".join(f"\\input{{{p.resolve().as_posix()}}}\\clearpage" for p in tables)
    (workdir / "doc.tex").write_text(f"\\documentclass{options or ''}{{{name}}}\n{fmt.LATEX_PACKAGES}\n"
                                     f"\\pagestyle{{empty}}\\begin{{document}}\n{body}\n\\end{{document}}\n")
    done = subprocess.run(["pdflatex", "-interaction=nonstopmode", "-halt-on-error", "doc.tex"],
                          cwd=workdir, capture_output=True, text=True, timeout=300)
    return done.returncode, (workdir / "doc.log").read_text(errors="replace"), workdir / "doc.pdf"


def problems(log: str) -> list[str]:
    """The lines of a pdflatex log that say a box is overfull, a float too large, or an error."""
    return [line for line in log.splitlines()
            if line.startswith(("Overfull", "!")) or "Float too large" in line or "LaTeX Error" in line]


def latex_with_siunitx() -> bool:
    return bool(shutil.which("pdflatex") and shutil.which("kpsewhich")
                and subprocess.run(["kpsewhich", "siunitx.sty"], capture_output=True).returncode == 0)


needs_latex = pytest.mark.skipif(not latex_with_siunitx(), reason="no pdflatex with siunitx and booktabs installed")


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("latex")
    return {"wide": synthetic_run(root / "wide", ("centre", "pixelstats", *EIGHT), MVTEC, {"grad": 3}),
            "one": synthetic_run(root / "one", ("ae",), ("wood",), {})}


@needs_latex
@pytest.mark.slow
def test_every_table_compiles_without_an_overfull_box(runs, tmp_path):
    """Each run's tables in every --ci style (and with the paper's columns) in one document per
    document class: four pdflatex calls."""
    for name, run_dir in runs.items():
        tables = [p for style, compare in (("interval", "paper"), ("halfwidth", None), ("off", None))
                  for p in write_run_tables(run_dir, style, compare)]
        assert sum(p.name.startswith("main") for p in tables) == 3 and len(tables) > 10
        for document_class in DOCUMENT_CLASSES:
            code, log, pdf = compile_tables(tables, document_class, tmp_path / f"{name}-{document_class[-9:]}")
            print(f"{name} run: {len(tables)} tables in \\documentclass{document_class}: exit {code}, "
                  f"{log.count('Overfull')} overfull boxes, {len(problems(log))} problems")
            assert code == 0 and pdf.is_file(), log[-3000:]
            assert problems(log) == [], (name, document_class, problems(log))


def test_captions_are_short_and_files_say_their_options(tmp_path):
    run_dir = synthetic_run(tmp_path / "run", ("centre", "fcdd", "ae"), ("bottle", "wood"), {"ae": 2})
    written = {style: write_run_tables(run_dir, style, None) for style in ("interval", "halfwidth", "off")}
    names = [{p.name for p in paths} for paths in written.values()]
    assert not (names[0] & names[1]) and not (names[0] & names[2]) and not (names[1] & names[2])
    assert {"main.tex", "main_ci-halfwidth.tex", "main_ci-off.tex"} <= set().union(*names)
    for path in (p for paths in written.values() for p in paths):
        for caption in re.findall(r"\\caption\{(.*)\}$", path.read_text(), re.M):
            assert len(caption.split()) <= 40, (path.name, caption)
    notes = (run_dir / "tables" / "notes.md").read_text()
    assert notes.count("stratified bootstrap resamples") == 1  # one explanation for the group's tables


def test_main_table_is_classes_by_methods_with_a_mean_row_per_headline_metric(tmp_path):
    run_dir = synthetic_run(tmp_path / "run", ("centre", "fcdd", "ae"), ("bottle", "wood"), {})
    write_run_tables(run_dir, "off", None)
    text = (run_dir / "tables" / "main_ci-off.tex").read_text()
    assert [t for t in re.findall(r"\\itshape ([^}]*)\}", text)] == ["Detection AUC", "Pixel-wise AUC"]
    rows = [line.split(" & ") for line in text.splitlines() if line.startswith(("bottle", "wood", "Mean"))]
    # Two metrics × (bottle, wood, Mean); columns centre, FCDD, AE; hand-computed from synthetic_run.
    values = [[float(re.sub(r"[^0-9.]", "", c.replace("$^\\dagger$", ""))) for c in row[1:]] for row in rows]
    expected_image = [[0.6, 0.64, 0.68]] * 3
    pixel = [[0.7 + 0.03 * m + 0.01 * c / 2 for m in range(3)] for c in range(2)]
    expected_pixel = [*pixel, list(np.mean(pixel, axis=0))]
    np.testing.assert_allclose(values, [*expected_image, *expected_pixel], atol=6e-4)
    csv = (run_dir / "tables" / "main_ci-off.csv").read_text().splitlines()
    assert csv[0].startswith("dataset,protocol,preset,blur,metric,class,centre,")
    assert len(csv) == 1 + 2 * 3  # two metrics × (two classes, Mean)


def render_png(pdf: Path, png: Path, page: int = 1) -> Path:
    """The PDF's `page` at 200 dpi as PNG (pdftoppm), cropped to what is printed on it."""
    from PIL import Image, ImageOps

    subprocess.run(["pdftoppm", "-png", "-r", "200", "-f", str(page), "-l", str(page), "-singlefile",
                    str(pdf), str(png.with_suffix(""))], check=True, timeout=120)
    image = Image.open(png).convert("L")
    left, top, right, bottom = ImageOps.invert(image).getbbox()
    image.crop((left - 20, top - 20, right + 20, bottom + 20)).save(png)
    return png


if __name__ == "__main__":  # the picture in docs/: the main table of a 4-method × 5-class run
    out = Path(sys.argv[1])
    run_dir = synthetic_run(out / "run", ("centre", "pixelstats", "fcdd", "grad", "ae"), MVTEC[:5], {"grad": 3})
    main = [p for p in write_run_tables(run_dir, "interval", None) if p.name == "main.tex"]
    code, log, pdf = compile_tables(main, "[twocolumn]article", out / "doc")
    print(f"exit {code}, problems {problems(log)}")
    print(render_png(pdf, out / "table.png"))

"""The first minutes of a new user: a dry run makes every check a real run makes before its
first job, a bare `run` says what it would start, closed pipes end quietly, and the one-line
errors of issue 25's bug-lines (local --cpus-per-job, a broken Ray, compare with one method)."""
from __future__ import annotations

import json
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from tests.test_names import make_mvtec_class
from xadbench import backbones
from xadbench.cli import app


@pytest.fixture
def root(tmp_path):
    make_mvtec_class(tmp_path / "root", "bottle")
    return tmp_path / "root"


def one_line_error(args, expected):
    result = CliRunner().invoke(app, args)
    lines = result.output.splitlines()
    assert result.exit_code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert expected in lines[0], lines[0]
    return lines[0]


def run_args(root, out, *more):
    return ["run", "--dataset", "mvtec", "--root", str(root), "--out", str(out), *more]


def test_a_dry_run_checks_the_classes_and_the_root(root, tmp_path):
    """What the real run catches, the dry run catches too (it listed 'to run botle')."""
    one_line_error(run_args(root, tmp_path / "run", "--methods", "pixelstats", "--classes", "botle", "--dry-run"),
                   "class 'botle' not found")
    one_line_error(run_args(tmp_path / "nope", tmp_path / "run", "--methods", "pixelstats", "--classes", "bottle",
                            "--dry-run"), f"data set root {tmp_path / 'nope'} does not exist or is not a folder; "
                                          "pass --root <folder")
    assert not (tmp_path / "run").exists()


def test_missing_imagenet_weights_are_found_before_the_first_job(root, tmp_path, monkeypatch):
    """Offline with an empty torchvision cache: the dry run and the run stop before any job,
    naming --weights and --no-pretrained; --no-pretrained needs no weights."""
    monkeypatch.setattr(backbones.torch.hub, "get_dir", lambda: str(tmp_path / "hub"))
    monkeypatch.setattr(backbones, "_reachable", lambda host, *a, **k: False)
    for more in (["--dry-run"], ["--no-report"]):
        one_line_error(run_args(root, tmp_path / "run", "--methods", "fcdd", *more),
                       "ImageNet weights for VGG11-BN are not in torchvision's cache")
    assert not (tmp_path / "run").exists()
    result = CliRunner().invoke(app, run_args(root, tmp_path / "run", "--methods", "fcdd", "--no-pretrained",
                                              "--dry-run"))
    assert result.exit_code == 0 and "to run  bottle" in result.output, result.output


def test_classes_are_folders_directly_under_the_root(root, tmp_path):
    make_mvtec_class(tmp_path / "other", "cap")  # exists: the path would have been read
    for name in ("../other/cap", "..", "bottle/../bottle"):
        one_line_error(run_args(root, tmp_path / "run", "--methods", "pixelstats", "--classes", name),
                       f"--classes {name!r}: a class is the name of a folder directly under {root}, not a path")
    assert not (tmp_path / "run").exists()


def test_a_bare_run_says_what_it_would_run_and_starts_nothing(root, tmp_path):
    line = one_line_error(run_args(root, tmp_path / "run"), "no --methods given")
    assert line == ("error: no --methods given: `xadbench run --methods fcdd,grad,ae` would run 7 jobs (centre, "
                    "pixelstats, fcdd, grad, ae on 1 class of mvtec); list them with --dry-run, or try "
                    "`make demo-quick` for a one-minute start")
    assert not (tmp_path / "run").exists()


def test_local_cpus_per_job_is_checked_against_the_machine(root, tmp_path):
    one_line_error(run_args(root, tmp_path / "run", "--methods", "pixelstats", "--cpus-per-job", "1e9"),
                   "--cpus-per-job 1e+09: this machine has")


def test_a_broken_ray_install_is_one_line(root, tmp_path, monkeypatch):
    """Ray is there but its import fails (a missing shared library, say): not a bug-line."""
    fake = tmp_path / "site" / "ray"
    fake.mkdir(parents=True)
    (fake / "__init__.py").write_text("raise ImportError('libray.so: cannot open shared object file')\n")
    monkeypatch.syspath_prepend(str(tmp_path / "site"))
    monkeypatch.delitem(sys.modules, "ray", raising=False)
    one_line_error(run_args(root, tmp_path / "run", "--methods", "pixelstats", "--executor", "ray"),
                   "--executor ray: Ray is installed but cannot be imported (ImportError: libray.so: cannot open "
                   "shared object file)")


def test_a_closed_pipe_ends_quietly():
    """`xadbench methods list | head -2`: the reader goes away; no "error: Broken pipe", exit 0."""
    process = subprocess.Popen([sys.executable, "-c", "from xadbench.cli import main; main()", "methods", "list"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()
    assert process.stderr.read() == b"" and process.wait(timeout=60) == 0


def test_compare_on_a_one_method_run_says_there_is_nothing_to_compare(root, tmp_path):
    done = CliRunner().invoke(app, run_args(root, tmp_path / "run", "--methods", "pixelstats", "--no-references",
                                            "--no-sanity", "--no-report"))
    assert done.exit_code == 0, done.output
    one_line_error(["compare", str(tmp_path / "run")], "nothing to compare: pixel_auc has one method")


def test_every_config_file_of_a_folder_is_kept(root, tmp_path):
    """A second `run --config` into the same folder keeps the first invocation's options."""
    for name, methods in (("a.toml", "pixelstats"), ("b.toml", "centre")):
        (tmp_path / name).write_text(f'methods = "{methods}"\nsanity = false\nreport = false\n')
        done = CliRunner().invoke(app, ["run", "--config", str(tmp_path / name), "--dataset", "mvtec", "--root",
                                        str(root), "--out", str(tmp_path / "run"), "--no-references"])
        assert done.exit_code == 0, done.output
    entries = json.loads((tmp_path / "run" / "config.json").read_text())
    assert [e["config"]["text"] for e in entries] == [(tmp_path / n).read_text() for n in ("a.toml", "b.toml")]
    assert (tmp_path / "run" / "run-config.toml").read_text() == (tmp_path / "b.toml").read_text()


def test_malformed_provenance_in_config_json_is_shown_not_a_bug_line(tmp_path):
    """config.json edited by hand: provenance a string, hardware a string, weights a list, argv
    a string; report --html says so on the page instead of ending in an AttributeError."""
    import pandas as pd

    from xadbench.reports.html import provenance_section
    from xadbench.run_folder import RESULT_COLUMNS

    (tmp_path / "config.json").write_text(json.dumps([
        {"command": "run", "argv": "oops", "provenance": "abc"},
        {"command": "run", "argv": ["run"], "provenance": {"command": "xadbench run", "hardware": "broken",
                                                          "weights": ["x"]}},
    ]))
    page = provenance_section(tmp_path, pd.DataFrame(columns=RESULT_COLUMNS))
    assert "The provenance in config.json is malformed (not a JSON object): <code>&quot;abc&quot;</code>" in page
    assert "<dd>xadbench run</dd>" in page and "no GPU" in page

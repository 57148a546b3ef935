"""The command line through Typer's CliRunner: listings, one-line errors, run → report."""
import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from xadbench.cli import app
from xadbench.metrics.registry import list_metrics

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def one_line_error(result, text):
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output


def test_lists_show_builtin_plugins():
    methods = invoke("methods", "list")
    assert methods.exit_code == 0 and "pixelstats" in methods.output and "none" in methods.output
    datasets = invoke("datasets", "list")
    assert datasets.exit_code == 0 and "mvtec" in datasets.output and "synthetic" in datasets.output


@pytest.mark.parametrize("command", [["run"], ["report"], ["figures"], ["methods", "list"], ["data", "synth"]])
def test_every_command_has_help_with_an_example(command):
    result = invoke(*command, "--help")
    assert result.exit_code == 0 and "Example" in result.output


def test_unknown_method_is_one_line(tmp_path):
    one_line_error(invoke("run", "--methods", "fcdx", "--out", str(tmp_path)), "unknown method 'fcdx'")


def test_missing_data_folder_is_one_line(tmp_path):
    result = invoke("run", "--methods", "pixelstats", "--dataset", "mvtec", "--root", str(tmp_path / "nope"))
    one_line_error(result, "nope")


def test_bad_option_is_one_line():
    one_line_error(invoke("run", "--no-such-option"), "No such option")
    one_line_error(invoke("run", "--protocol", "weird"), "'weird' is not one of 'unsupervised', 'semi-supervised'")
    one_line_error(invoke("run", "--seeds", "a,b"), "--seeds")


def test_missing_weights_file_is_one_line(tmp_path):
    one_line_error(invoke("run", "--weights", str(tmp_path / "w.pt")), "w.pt: no such file")


@pytest.mark.slow
def test_run_then_report_write_results_and_tables(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--methods", "pixelstats", "--dataset", "synthetic", "--classes", "fabric,wood",
                    "--blur", "both", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert set(table["class"]) == {"fabric", "wood"} and set(table["blur"]) == {"gaussian", "none"}
    assert set(table["method"]) == {"centre", "pixelstats"}  # the references join a run with masks
    aucs = table[table["metric"].str.contains("auc")]
    assert {"image_auc", "pixel_auc", "per_image_pixel_auc", "pixel_auc_mean_map"} <= set(aucs["metric"])
    assert aucs["value"].dropna().between(0, 1).all()
    assert set(aucs.loc[aucs["value"].isna(), "method"]) == {"centre", "pixelstats"}  # no network to randomise
    assert set(aucs.loc[aucs["value"].isna(), "metric"]) == {"pixel_auc_randomised"}
    assert {"deletion_area", "faithfulness_gain"} <= set(table["metric"])  # sanity is on for the cpu preset
    assert list((out / "tables").glob("*.tex")) and list((out / "tables").glob("*.csv"))
    assert list((out / "figures").glob("*.png"))
    again = invoke("run", "--methods", "pixelstats", "--dataset", "synthetic", "--classes", "fabric,wood",
                   "--blur", "both", "--out", str(out))
    assert again.exit_code == 0 and "already in results" in again.output
    assert len(pd.read_csv(out / "results.csv")) == len(table)
    report = invoke("report", str(out))
    assert report.exit_code == 0, report.output
    evaluated = invoke("evaluate", str(out), "--no-report")
    assert evaluated.exit_code == 0 and "scored 4 jobs" in evaluated.output, evaluated.output
    rescored = pd.read_csv(out / "results.csv")
    key = ["job_id", "blur", "metric"]
    merged = table.merge(rescored, on=key, suffixes=("", "_again"))
    assert len(merged) == len(table) == len(rescored)
    np.testing.assert_allclose(merged["value_again"], merged["value"], rtol=1e-6)  # NaN where NaN


@pytest.mark.slow
def test_run_without_references_or_sanity(tmp_path):
    out = tmp_path / "run"
    result = invoke("run", "--methods", "pixelstats", "--dataset", "synthetic", "--classes", "fabric",
                    "--no-references", "--no-sanity", "--no-report", "--out", str(out))
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "results.csv")
    assert set(table["method"]) == {"pixelstats"}
    # without sanity checks a job is scored with exactly the registry's headline metrics
    assert set(table["metric"]) == set(list_metrics(headline=True))
    evaluated = invoke("evaluate", str(out), "--no-report")  # --sanity's default: as the run scored the job
    assert evaluated.exit_code == 0, evaluated.output
    assert set(pd.read_csv(out / "results.csv")["metric"]) == set(table["metric"])


@pytest.mark.slow
def test_data_synth_writes_the_mvtec_layout(tmp_path):
    result = invoke("data", "synth", "--out", str(tmp_path / "synth"))
    assert result.exit_code == 0, result.output
    assert (tmp_path / "synth" / "fabric" / "train" / "good").is_dir()
    assert list((tmp_path / "synth" / "fabric" / "ground_truth").rglob("*_mask.png"))

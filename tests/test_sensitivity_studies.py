"""The σ study (appendix B) and the receptive-field study (appendix A) as commands on the job
grid: one trained FCDD model rescored per σ, appendix A's nets as ordinary jobs, the paper's
numbers beside ours, and bad options refused before any job starts."""
import pandas as pd
import pytest
from typer.testing import CliRunner

from xadbench import run_folder
from xadbench.cli import app
from xadbench.studies import receptive_field, sigma

#: Table 5 of the paper, typed here from the paper (σ at 224 px → mean pixel AUC).
TABLE_5 = {4: 0.8567, 6: 0.8836, 8: 0.9030, 10: 0.9124, 12: 0.9164, 14: 0.9217, 16: 0.9208}
#: The cpu preset's σ for MVTec-AD-like data is 7 px at 128 px: 12.25 px at the paper's 224 px.
TRAINED_SIGMA_AT_224 = 7 * 224 / 128


@pytest.mark.slow
def test_sigma_study_rescores_one_model_and_matches_the_runner_at_the_trained_sigma(tmp_path):
    out = tmp_path / "sigma"
    result = CliRunner().invoke(app, ["study", "sigma", "--dataset", "synthetic", "--classes", "wood", "--epochs", "1",
                                      "--no-pretrained", "--device", "cpu", "--sigmas", f"4,{TRAINED_SIGMA_AT_224},16",
                                      "--compare", "paper", "--out", str(out)])
    assert result.exit_code == 0, result.output
    stored = run_folder.read_results(out)
    assert stored["job_id"].nunique() == 1  # one model, no retraining per σ
    table = pd.read_csv(out / "tables" / "sigma.csv")
    assert list(table["sigma_paper"]) == [4, TRAINED_SIGMA_AT_224, 16]
    assert list(table["sigma_px"].round(3)) == [round(4 * 128 / 224, 3), 7.0, round(16 * 128 / 224, 3)]
    runner_auc = stored.loc[stored["metric"] == "pixel_auc", "value"].iloc[0]
    rescored = pd.read_csv(out / "tables" / "sigma_runs.csv")["pixel_auc"]
    assert rescored.iloc[1] == pytest.approx(runner_auc, abs=1e-6)  # the runner's own score at 7 px
    assert rescored.iloc[0] != pytest.approx(rescored.iloc[2], abs=1e-4)  # σ changes the maps
    paper = table["paper pixel_auc (mean of all classes)"]
    assert paper.iloc[0] == TABLE_5[4] and paper.iloc[2] == TABLE_5[16] and pd.isna(paper.iloc[1])
    assert (out / "figures" / "sigma.png").stat().st_size > 10_000


@pytest.mark.slow
def test_receptive_field_study_trains_appendix_a_nets_as_jobs(tmp_path):
    out = tmp_path / "rf"
    result = CliRunner().invoke(app, ["study", "receptive-field", "--dataset", "synthetic", "--classes", "wood",
                                      "--kernels", "3,5", "--no-reference", "--epochs", "1", "--device", "cpu",
                                      "--compare", "paper", "--out", str(out)])
    assert result.exit_code == 0, result.output
    table = pd.read_csv(out / "tables" / "receptive_field.csv")
    assert list(table["net"]) == ["k=3", "k=5"] and list(table["receptive_field"]) == [53, 91]  # Table 4's fields
    assert list(table["paper pixel_auc (mean of all classes)"]) == [0.88, 0.85]
    params = [dict(s.params) for s in receptive_field.plan_jobs("synthetic", ["wood"], (3, 5), reference=False)]
    assert [p["kernel"] for p in params] == [3, 5] and all(p["epochs"] == 6 for p in params)  # the study's cpu schedule
    assert run_folder.read_results(out)["job_id"].nunique() == 2
    assert (out / "figures" / "receptive_field.png").is_file()


@pytest.mark.parametrize("args, message", [
    (["sigma", "--sigmas", "4,-2"], "--sigmas"),
    (["sigma", "--epochs", "0"], "--epochs 0"),
    (["sigma", "--classes", "nosuchclass"], "nosuchclass"),
    (["receptive-field", "--kernels", "3,4"], "--kernels"),
    (["receptive-field", "--dataset", "fmnist"], "receptive-field study has nets"),
])
def test_bad_options_fail_in_one_line_before_any_job(tmp_path, args, message):
    out = tmp_path / "out"
    result = CliRunner().invoke(app, ["study", *args, "--dataset" if "--dataset" not in args else "--seeds",
                                      "synthetic" if "--dataset" not in args else "0", "--out", str(out)])
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert result.exit_code == 1 and len(lines) == 1 and message in lines[0], result.output
    assert not (out / "results.csv").exists()


def test_parsers():
    assert sigma.parse_sigmas("4, 6,4") == (4.0, 6.0)
    assert receptive_field.parse_kernels(None, "vgg") == (3, 5, 7, 9, 11, 13)
    assert receptive_field.parse_kernels(None, "cifar10")[-1] == 17

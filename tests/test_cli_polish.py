"""--version, -h, choices with hints, `methods show`, `run --config FILE.toml` and `--dry-run`."""
from importlib import metadata

import pandas as pd
import pytest
from typer.testing import CliRunner

from xadbench.cli import app

runner = CliRunner()


def invoke(*args):
    return runner.invoke(app, list(args))


def test_version_and_short_help():
    done = invoke("--version")
    assert done.exit_code == 0 and done.output.strip() == f"xadbench {metadata.version('xadbench')}"
    for command in (["-h"], ["run", "-h"], ["methods", "show", "-h"], ["study", "oe-size", "-h"]):
        done = invoke(*command)
        assert done.exit_code == 0 and "Usage" in done.output, command


def test_choices_are_shown_and_typos_get_a_hint():
    assert "<cpu|paper>" in invoke("run", "--help").output
    for option, typo, meant in (("--preset", "papr", "paper"), ("--protocol", "semi", "semi-supervised"),
                                ("--blur", "gausian", "gaussian")):
        done = invoke("run", option, typo, "--dry-run")
        lines = [line for line in done.output.splitlines() if line.strip()]
        assert done.exit_code == 1 and len(lines) == 1, done.output
        assert f"did you mean '{meant}'?" in lines[0] and option in lines[0]


def test_help_shows_brackets_as_written_and_more_choices():
    # Help is plain text: brackets are not eaten as markup.
    assert "pip install 'xadbench[ray]'" in " ".join(invoke("run", "-h").output.split())
    assert "'value [low, high]'" in " ".join(invoke("report", "-h").output.split())
    assert "<auto|local|global>" in invoke("figures", "-h").output
    for command, option, typo, meant in ((["figures", "."], "--norm", "locl", "local"),
                                         (["figures", "."], "--blur", "gauss", "gaussian"),
                                         (["run", "--dry-run"], "--executor", "rey", "ray"),
                                         (["compare", "."], "--metric", "pixel_aux", "pixel_auc"),
                                         (["report", "."], "--ci", "halfwith", "halfwidth")):
        done = invoke(*command, option, typo)
        assert done.exit_code == 1 and f"did you mean '{meant}'?" in done.output and option in done.output


def test_methods_show_lists_hyperparameters_presets_and_reference():
    done = invoke("methods", "show", "fcdd")
    assert done.exit_code == 0, done.output
    assert "Liznerski et al., ICLR 2021" in done.output and "supervision:  masks" in done.output
    # Appendix E: MVTec-AD 200 epochs with 10 passes over the data each.
    paper_mvtec = next(line for line in done.output.splitlines() if line.strip().startswith("paper mvtec"))
    assert "epochs=200" in paper_mvtec and "passes_per_epoch=10" in paper_mvtec
    assert "batch_size = " in done.output
    assert "(fixed by this variant)" in invoke("methods", "show", "grad-ig").output
    assert invoke("methods", "show", "fcdx").exit_code == 1


def test_dry_run_prints_the_grid_and_writes_nothing(tmp_path):
    out = tmp_path / "run"
    done = invoke("run", "--methods", "pixelstats,ae", "--classes", "wood,cap", "--seeds", "0,1", "--dry-run",
                  "--out", str(out))
    assert done.exit_code == 0, done.output
    jobs = [line for line in done.output.splitlines() if line.startswith("to run")]
    # 2 classes × 2 methods × 2 seeds, and the added centre reference (deterministic) once per class
    assert len(jobs) == 10 and "10 jobs" in done.output and "0 done, 10 to run" in done.output
    assert not out.exists()


@pytest.mark.slow
def test_config_file_sets_options_the_command_line_overrides_and_is_saved(tmp_path):
    out = tmp_path / "run"
    config = tmp_path / "my-run.toml"
    config.write_text(f'methods = "pixelstats"\nclasses = ["wood"]\nreferences = false\nsanity = false\n'
                      f'report = false\nout = "{out.as_posix()}"\n')
    dry = invoke("run", "--config", str(config), "--dry-run", "--classes", "cap,wood")
    assert dry.exit_code == 0, dry.output
    assert [line.split()[2] for line in dry.output.splitlines() if line.startswith("to run")] == ["cap", "wood"]
    done = invoke("run", "--config", str(config))
    assert done.exit_code == 0, done.output
    results = pd.read_csv(out / "results.csv")
    assert set(results["class"]) == {"wood"} and set(results["method"]) == {"pixelstats"}
    assert (out / "run-config.toml").read_text() == config.read_text()
    again = invoke("run", "--config", str(config), "--dry-run")
    assert "1 done, 0 to run" in again.output
    config.write_text('method = "fcdd"\n')
    bad = invoke("run", "--config", str(config))
    assert bad.exit_code == 1 and "unknown option 'method'; did you mean 'methods'?" in bad.output

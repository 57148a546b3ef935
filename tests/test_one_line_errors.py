"""Every failure of a command is one line on stderr with a non-zero exit; warnings are one line
each, printed once (xadbench.cli.errors.OneLineErrors and show_warning)."""
import warnings

import numpy as np
import pytest
from typer.testing import CliRunner

from xadbench import runner as runner_module
from xadbench.cli import app
from xadbench.cli.errors import INTERRUPTED_EXIT
from xadbench.registry import methods

cli = CliRunner()


def lines(result):
    return [line for line in result.output.splitlines() if line.strip()]


def one_line_error(result, text, exit_code=1):
    assert result.exit_code == exit_code, result.output
    errors = [line for line in lines(result) if line.startswith("error")]
    # Progress bars may come before it; the error is the one last line.
    assert len(errors) == 1 and lines(result)[-1] == errors[0] and text in errors[0], result.output
    assert "Traceback" not in result.output


def run_pixelstats(out, *extra):
    return cli.invoke(app, ["run", "--methods", "pixelstats", "--dataset", "synthetic", "--classes", "fabric",
                            "--no-report", "--out", str(out), *extra])


@pytest.mark.slow
def test_a_plugin_that_raises_in_fit_is_named_with_the_call(tmp_path, monkeypatch):
    def broken_fit(self, train, on_epoch=None):
        raise RuntimeError("weights\nnot found")

    # The class the registry hands out (another test may have re-imported the module).
    monkeypatch.setattr(methods.get("pixelstats"), "fit", broken_fit)
    one_line_error(run_pixelstats(tmp_path / "run"),
                   "method 'pixelstats' failed in fit: RuntimeError: weights not found")


@pytest.mark.slow
def test_a_plugin_that_raises_in_predict_is_named_with_the_call(tmp_path, monkeypatch):
    monkeypatch.setattr(methods.get("pixelstats"), "predict", lambda self, images: 1 / 0)
    one_line_error(run_pixelstats(tmp_path / "run"), "method 'pixelstats' failed in predict: ZeroDivisionError")


def test_ctrl_c_says_what_was_kept_and_how_to_resume(tmp_path, monkeypatch):
    def interrupted(spec, on_epoch=None, on_phase=None):
        raise KeyboardInterrupt

    monkeypatch.setattr(runner_module, "run_job", interrupted)
    out = tmp_path / "run"
    one_line_error(run_pixelstats(out), f"interrupted: every finished job is kept in {out}; rerun the same "
                                        "command to resume", exit_code=INTERRUPTED_EXIT)


@pytest.mark.parametrize("error, text", [
    (PermissionError(13, "Permission denied", "/data/bottle/train"), "permission denied: /data/bottle/train"),
    (OSError(28, "No space left on device", "/runs/x/results.csv"), "/runs/x/results.csv: No space left on device"),
    (FileNotFoundError(2, "No such file or directory", "/gone"), "no such file or folder: /gone"),
    (TypeError("a\nbug"), "unexpected TypeError: a bug (a bug in xadbench or a plugin; set XADBENCH_TRACEBACK=1"),
])
def test_os_errors_and_bugs_are_one_line(tmp_path, monkeypatch, error, text):
    def failing(spec, on_epoch=None, on_phase=None):
        raise error

    monkeypatch.setattr(runner_module, "run_job", failing)
    one_line_error(run_pixelstats(tmp_path / "run"), text)


def test_the_traceback_variable_lets_a_bug_through(tmp_path, monkeypatch):
    monkeypatch.setattr(runner_module, "run_job", lambda spec, on_epoch=None, on_phase=None: [][1])
    monkeypatch.setenv("XADBENCH_TRACEBACK", "1")
    result = run_pixelstats(tmp_path / "run")
    assert isinstance(result.exception, IndexError)


@pytest.mark.slow
def test_warnings_are_one_line_each_and_once(tmp_path, monkeypatch):
    real_run_job = runner_module.run_job

    def warning_run_job(spec, on_epoch=None, on_phase=None):
        for _ in range(3):
            warnings.warn("mask values\n  were thresholded", stacklevel=1)
        warnings.warn("another thing", RuntimeWarning, stacklevel=1)
        return real_run_job(spec, on_epoch, on_phase)

    monkeypatch.setattr(runner_module, "run_job", warning_run_job)
    result = run_pixelstats(tmp_path / "run")
    assert result.exit_code == 0, result.output
    shown = [line for line in lines(result) if line.startswith("warning") or "Warning" in line]
    assert shown == ["warning: mask values were thresholded", "warning: RuntimeWarning: another thing"], result.output
    again = run_pixelstats(tmp_path / "other")  # a second command in the same process shows them again
    assert "warning: mask values were thresholded" in again.output


@pytest.mark.slow
def test_an_empty_predictions_file_is_named(tmp_path):
    out = tmp_path / "run"
    assert run_pixelstats(out).exit_code == 0
    predictions = next((out / "predictions").glob("*.npz"))
    predictions.write_bytes(b"")
    one_line_error(cli.invoke(app, ["figures", str(out)]), f"{predictions}: unreadable predictions (EOFError")


def test_an_unexpected_error_in_a_listing_is_one_line(monkeypatch):
    from xadbench.registry import datasets

    monkeypatch.setattr(type(datasets), "describe", lambda self: np.array([])[0])
    one_line_error(cli.invoke(app, ["datasets", "list"]), "unexpected IndexError")

"""The executor options of `xadbench run`: checked before any work, one line each; the local
executor: its thread count, and a job that raises stops the run with no claim left behind."""
import importlib.util
import sqlite3

import pytest
import torch
from typer.testing import CliRunner

from xadbench import executors, grid, run_folder, runner
from xadbench.cli import app
from xadbench.errors import XadError
from xadbench.executors import LocalExecutor
from xadbench.runner import JobSpec, Progress


def one_line_error(args, text):
    result = CliRunner().invoke(app, ["run", "--methods", "pixelstats", "--out", "never-written", *args])
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and text in lines[0], result.output


@pytest.mark.parametrize("args, text", [
    (["--executor", "dask"], "Invalid value for '--executor': 'dask' is not one of 'local', 'ray'"),
    (["--cpus-per-job", "0"], "--cpus-per-job 0: use a number above 0"),
    (["--executor", "ray", "--gpus-per-job", "-1"], "--gpus-per-job -1: use a number of 0 or above"),
    (["--address", "auto"], "--address is an option of --executor ray"),
    (["--gpus-per-job", "1"], "--gpus-per-job is an option of --executor ray"),
    (["--cpus-per-job", "1.5"], "--cpus-per-job 1.5: a local run uses a whole number of threads"),
])
def test_bad_executor_options_are_one_line(args, text, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    one_line_error(args, text)
    assert not (tmp_path / "never-written").exists()


@pytest.mark.parametrize("args, text", [
    (["--device", "cuda:1"], "--device cuda:1: with --executor ray use --device cuda"),
    (["--device", "cpu", "--gpus-per-job", "0.5"], "--gpus-per-job 0.5 with --device cpu"),
    (["--device", "cuda", "--gpus-per-job", "0"], "--device cuda with --gpus-per-job 0"),
])
def test_ray_device_options_are_checked_before_ray_starts(args, text, tmp_path, monkeypatch):
    pytest.importorskip("ray")
    monkeypatch.chdir(tmp_path)
    one_line_error(["--executor", "ray", *args], text)


def test_without_ray_installed_the_error_names_the_extra(tmp_path, monkeypatch):
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "ray" else real(name, *a))
    monkeypatch.chdir(tmp_path)
    one_line_error(["--executor", "ray"], "pip install 'xadbench[ray]'")


def test_ray_defaults_one_cpu_and_a_gpu_only_with_cuda():
    pytest.importorskip("ray")
    cpu = executors.make_executor("ray", None, None, None, "auto")
    assert (cpu.cpus_per_job, cpu.gpus_per_job) == (1.0, 0.0)
    cuda = executors.make_executor("ray", "auto", 2, None, "cuda")
    assert (cuda.cpus_per_job, cuda.gpus_per_job, cuda.address) == (2, 1.0, "auto")


class Record(Progress):
    def __init__(self):
        self.finished, self.failed = [], []

    def job_finished(self, spec, rows, skipped):
        self.finished.append(spec.job_id)

    def job_failed(self, spec, message):
        self.failed.append((spec.job_id, message))


def test_a_local_job_that_raises_stops_the_run_keeping_the_finished_jobs_and_no_claim(tmp_path):
    good, broken, third = runner.identify([JobSpec("synthetic", "fabric", "pixelstats"),
                                           JobSpec("synthetic", "wood", "pixelstats", params=(("no_such_parameter", 1),)),
                                           JobSpec("synthetic", "cap", "pixelstats")])
    progress = Record()
    with pytest.raises(XadError, match="method 'pixelstats' has no parameter 'no_such_parameter'"):
        grid.run_grid([good, broken, third], tmp_path, progress)
    assert progress.finished == [good.job_id] and not progress.failed
    assert run_folder.finished_jobs(tmp_path) == {good.job_id}
    with sqlite3.connect(tmp_path / "results.sqlite") as store:  # no claim left for another run to wait on
        assert store.execute("SELECT job_id FROM jobs WHERE finished IS NULL").fetchall() == []


def test_the_local_executor_sets_torch_threads_for_its_jobs_only(monkeypatch):
    before = torch.get_num_threads()
    threads = 3 if before != 3 else 2
    seen = []
    monkeypatch.setattr(runner, "run_job", lambda spec, on_epoch=None, on_phase=None: seen.append(torch.get_num_threads()))
    outcomes = list(LocalExecutor(threads).run([(0, JobSpec("synthetic", "fabric", "pixelstats"))], 1, Progress()))
    assert seen == [threads] and len(outcomes) == 1 and torch.get_num_threads() == before


def test_an_address_where_no_ray_head_answers_is_one_line_before_anything_is_written(tmp_path, monkeypatch):
    pytest.importorskip("ray")
    import socket

    with socket.socket() as probe:  # a port nothing listens on once the probe is closed
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    monkeypatch.chdir(tmp_path)
    one_line_error(["--executor", "ray", "--address", f"127.0.0.1:{port}"], f"--address 127.0.0.1:{port}: no Ray head answers")
    one_line_error(["--executor", "ray", "--address", "headnode"], "--address headnode: use HOST:PORT")
    assert not (tmp_path / "never-written").exists()

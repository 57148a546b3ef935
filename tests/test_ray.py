"""The grid on a real Ray: one machine (ray.init(num_cpus=2)) and a simulated two-node cluster
(ray.cluster_utils.Cluster). Each compares the stored results with a local run of the same jobs
(one torch thread per job in both, so CPU results must agree to the last bit) and injects faults:
a job that raises, a worker killed mid-job, a driver killed mid-grid.

Ray's workers get `install_fault_hooks` as their setup hook: it forbids every write under
CONTROL/runs (where the tests put their run folders: only the driver may write there) and lets a
test slow a chosen job down (to kill its worker or the driver while it runs)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
from PIL import Image
from typer.testing import CliRunner

ray = pytest.importorskip("ray", reason="the [ray] extra is not installed (pip install 'xadbench[ray]')")
import ray.cluster_utils  # noqa: E402

from xadbench import grid, run_folder, runner  # noqa: E402
from xadbench.cli import app  # noqa: E402
from xadbench.executors import MAX_RETRIES, LocalExecutor, RayExecutor  # noqa: E402
from xadbench.grid import JobsFailed  # noqa: E402
from xadbench.runner import JobSpec, Progress  # noqa: E402

pytestmark = pytest.mark.ray

#: Ray's object store is a fraction of RAM by default; these jobs' results need a few MB.
OBJECT_STORE = 80 * 1024**2
CLASSES = ("a", "b", "c", "d")
TIMING_COLUMNS = ["fit_s", "predict_s", "sanity_s"]


def install_fault_hooks() -> None:
    """Runs in every Ray worker process before its first task (pickled by value, so the worker
    needs no access to this module)."""
    import os
    import sys
    import time
    from pathlib import Path

    from xadbench import runner

    control = Path(os.environ["XADBENCH_TEST_CONTROL"])
    runs = str(control / "runs")
    write_flags = os.O_WRONLY | os.O_RDWR | os.O_CREAT | os.O_APPEND | os.O_TRUNC

    def forbid_run_folder_writes(event, args):
        if event in ("open", "os.mkdir", "os.rename", "os.replace", "os.remove", "shutil.rmtree"):
            path = args[0]
            if not isinstance(path, (str, bytes, os.PathLike)) or not os.fsdecode(path).startswith(runs):
                return
            if event == "open" and not ((args[1] and any(c in args[1] for c in "wax+")) or (args[2] & write_flags)):
                return
            raise PermissionError(f"a Ray worker tried to write {os.fsdecode(path)}")

    sys.addaudithook(forbid_run_folder_writes)
    run_job = runner.run_job

    def run_job_with_faults(spec, on_epoch=None):
        import torch

        (control / "attempts" / f"{spec.job_id}.{os.getpid()}").write_text(str(torch.get_num_threads()))
        if (control / f"slow-{spec.job_id}").exists():
            (control / f"running-{spec.job_id}").write_text(str(os.getpid()))
            time.sleep(120)
        return run_job(spec, on_epoch)

    runner.run_job = run_job_with_faults


ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])


@pytest.fixture(scope="module")
def data(tmp_path_factory) -> str:
    """A tiny folder-per-class tree: four classes of 12×12 grey images, each class its own
    brightness pattern plus noise (a job takes milliseconds; Ray's own costs dominate)."""
    root = tmp_path_factory.mktemp("tiny")
    rng = np.random.default_rng(0)
    for k, name in enumerate(CLASSES):
        pattern = np.linspace(0, 1, 12)[None, :] * (k + 1) / len(CLASSES)
        for split, count in (("train", 8), ("test", 4)):
            (root / split / name).mkdir(parents=True)
            for i in range(count):
                image = np.clip(pattern + rng.normal(0, 0.1, (12, 12)), 0, 1)
                Image.fromarray((image * 255).astype(np.uint8), mode="L").save(root / split / name / f"{i}.png")
    return str(root)


def specs(data: str, seeds=(0,)) -> list[JobSpec]:
    return runner.identify([JobSpec(data, c, "pixelstats", seed=s) for c in CLASSES for s in seeds])


def stored(out: Path, job_ids: set[str]) -> pd.DataFrame:
    """A run folder's rows of `job_ids` in a fixed order, without the timing columns."""
    rows = run_folder.read_results(out).drop(columns=TIMING_COLUMNS)
    rows = rows[rows["job_id"].isin(job_ids)]
    return rows.sort_values(["job_id", "blur", "metric"]).reset_index(drop=True)


def assert_same_results(out: Path, reference: Path, jobs: list[JobSpec]) -> None:
    """`out` holds exactly `jobs`, with the reference's rows (values equal as floats, bit for
    bit), predictions arrays and checkpoints."""
    ids = {s.job_id for s in jobs}
    assert run_folder.finished_jobs(out) == ids
    pd.testing.assert_frame_equal(stored(out, ids), stored(reference, ids), check_exact=True)
    assert sorted(p.stem for p in (out / "predictions").glob("*.npz")) == sorted(ids)
    for job_id in ids:
        name = f"{job_id}.npz"
        with np.load(out / "predictions" / name) as got, np.load(reference / "predictions" / name) as want:
            assert sorted(got.files) == sorted(want.files)
            for key in want.files:
                assert got[key].tobytes() == want[key].tobytes() and got[key].dtype == want[key].dtype, (name, key)
    checkpoints = sorted(p.name for p in (reference / "checkpoints").glob("*.pt") if p.stem in ids)
    assert sorted(p.name for p in (out / "checkpoints").glob("*.pt")) == checkpoints
    for name in checkpoints:
        got, want = (torch.load(folder / "checkpoints" / name, weights_only=True) for folder in (out, reference))
        for key, value in want["state"].items():
            if isinstance(value, torch.Tensor):
                assert torch.equal(got["state"][key], value), (name, key)
            else:
                assert got["state"][key] == value, (name, key)


def attempts(control: Path, job_id: str) -> set[str]:
    """The worker PIDs that started the job."""
    return {p.suffix[1:] for p in (control / "attempts").glob(f"{job_id}.*")}


@pytest.fixture(scope="module")
def control(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("ray-control")
    (path / "attempts").mkdir()
    (path / "runs").mkdir()
    return path


@pytest.fixture(scope="module")
def reference(tmp_path_factory, data) -> Path:
    """Two seeds of every synthetic class run locally with one torch thread (the folder is
    outside CONTROL/runs: it is written by this process)."""
    out = tmp_path_factory.mktemp("local")
    grid.run_grid(specs(data, seeds=(0, 1)), out, executor=LocalExecutor(threads=1))
    return out


def runtime_env(control: Path) -> dict:
    return {"env_vars": {"XADBENCH_TEST_CONTROL": str(control)}, "worker_process_setup_hook": install_fault_hooks}


class Record(Progress):
    def __init__(self):
        self.started, self.finished, self.skipped, self.failed = [], [], [], []

    def job_started(self, index, total, spec):
        self.started.append(spec.job_id)

    def job_finished(self, spec, rows, skipped):
        (self.skipped if skipped else self.finished).append(spec.job_id)

    def job_failed(self, spec, message):
        self.failed.append((spec.job_id, message))


@pytest.fixture(scope="class")
def local_ray(control, reference):
    ray.init(num_cpus=2, object_store_memory=OBJECT_STORE, include_dashboard=False, log_to_driver=False,
             runtime_env=runtime_env(control))
    yield
    ray.shutdown()


@pytest.fixture(scope="class")
def two_nodes(control, reference):
    """A head node with no CPUs for jobs and one worker node with two: every job runs on the
    worker node, whose setup hook refuses any write into the run folders."""
    cluster = ray.cluster_utils.Cluster(initialize_head=True, head_node_args={
        "num_cpus": 0, "object_store_memory": OBJECT_STORE, "include_dashboard": False})
    cluster.add_node(num_cpus=2, object_store_memory=OBJECT_STORE)
    ray.init(address=cluster.address, log_to_driver=False, runtime_env=runtime_env(control))
    yield cluster
    ray.shutdown()
    cluster.shutdown()


@pytest.mark.usefixtures("local_ray")
@pytest.mark.slow  # each class starts Ray (about 10 s on 2 cores)
class TestOneMachine:

    def test_a_ray_grid_stores_what_a_local_grid_stores_bit_for_bit(self, data, control, reference):
        out = control / "runs" / "happy"
        progress = Record()
        grid.run_grid(specs(data, seeds=(0, 1)), out, progress, RayExecutor(cpus_per_job=1))
        assert sorted(progress.finished) == sorted(s.job_id for s in specs(data, seeds=(0, 1))) and not progress.failed
        assert_same_results(out, reference, specs(data, seeds=(0, 1)))
        again = Record()
        grid.run_grid(specs(data, seeds=(0, 1)), out, again, RayExecutor(cpus_per_job=1))
        assert not again.started and len(again.skipped) == 8

    def test_each_task_runs_torch_with_its_cpus_as_threads(self, data, control):
        jobs = specs(data, seeds=(7,))[:2]
        for spec, cpus in zip(jobs, (2, 1)):
            grid.run_grid([spec], control / "runs" / f"threads-{cpus}", executor=RayExecutor(cpus_per_job=cpus))
            [attempt] = (control / "attempts").glob(f"{spec.job_id}.*")
            assert attempt.read_text() == str(cpus)

    def test_fault_hooks_stop_a_worker_writing_into_a_run_folder(self, control):
        """The check the other tests rely on can fail: a task that writes there is refused."""
        def write(path):
            Path(path).write_text("x")

        with pytest.raises(ray.exceptions.RayTaskError, match="PermissionError"):
            ray.get(ray.remote(write).remote(str(control / "runs" / "forbidden.txt")))
        assert not (control / "runs" / "forbidden.txt").exists()

    def test_a_job_that_raises_fails_alone_and_the_grid_reports_it_at_the_end(self, data, control, reference):
        out = control / "runs" / "raises"
        [broken] = runner.identify([JobSpec(data, "b", "pixelstats", params=(("no_such_parameter", 1),))])
        jobs = [specs(data)[0], broken, specs(data)[2]]
        progress = Record()
        with pytest.raises(JobsFailed, match=f"1 of 3 jobs failed \\(job ids {broken.job_id}\\)"):
            grid.run_grid(jobs, out, progress, RayExecutor(cpus_per_job=1))
        assert len(progress.failed) == 1 and progress.failed[0][0] == broken.job_id
        message = progress.failed[0][1]
        assert "no parameter 'no_such_parameter'" in message and "\n" not in message
        assert len(attempts(control, broken.job_id)) == 1  # an error in the job is not retried
        assert_same_results(out, reference, [jobs[0], jobs[2]])

    def test_a_job_whose_worker_is_killed_is_retried_and_stores_the_same_result(self, data, control, reference):
        out = control / "runs" / "killed-worker"
        jobs = specs(data)
        victim = jobs[1].job_id
        (control / f"slow-{victim}").touch()
        killed = []

        def kill_when_running():
            running = control / f"running-{victim}"
            deadline = time.monotonic() + 60
            while not running.exists() and time.monotonic() < deadline:
                time.sleep(0.05)
            time.sleep(0.2)
            (control / f"slow-{victim}").unlink()  # the retry runs at normal speed
            pid = int(running.read_text())
            os.kill(pid, signal.SIGKILL)
            killed.append(pid)

        killer = threading.Thread(target=kill_when_running)
        killer.start()
        progress = Record()
        grid.run_grid(jobs, out, progress, RayExecutor(cpus_per_job=1))
        killer.join()
        assert killed and not progress.failed
        assert len(attempts(control, victim)) == 2 and str(killed[0]) in attempts(control, victim)
        assert MAX_RETRIES >= 1
        assert_same_results(out, reference, jobs)

    def test_a_rerun_after_the_driver_was_killed_runs_only_the_unfinished_jobs(self, data, control, reference):
        """The driver is a separate `xadbench run --executor ray --address ...` joined to this
        Ray instance, killed (SIGKILL) as soon as a job is stored; the rerun goes on from there."""
        out = control / "runs" / "killed-driver"
        jobs = specs(data, seeds=(0, 1))
        address = ray.get_runtime_context().gcs_address
        argv = ["run", "--methods", "pixelstats", "--dataset", data, "--seeds", "0,1", "--out", str(out),
                "--no-report", "--no-sanity", "--executor", "ray", "--cpus-per-job", "1"]
        driver = subprocess.Popen([sys.executable, "-c", "from xadbench.cli import main; main()", *argv,
                                   "--address", address], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            deadline = time.monotonic() + 90
            done: set[str] = set()
            while not done and time.monotonic() < deadline and driver.poll() is None:
                done = run_folder.finished_jobs(out)
                time.sleep(0.02)
        finally:
            driver.send_signal(signal.SIGKILL)
            driver.wait()
        done = run_folder.finished_jobs(out)
        assert 0 < len(done) < len(jobs), "the driver was not killed mid-grid"
        result = CliRunner().invoke(app, argv)  # joins the Ray instance this process is connected to
        assert result.exit_code == 0, result.output
        lines = result.output.splitlines()
        assert sum(line.startswith("skip  ") for line in lines) == len(done)
        assert sum(line.startswith("done  ") for line in lines) == len(jobs) - len(done)
        assert_same_results(out, reference, jobs)


@pytest.mark.usefixtures("two_nodes")
@pytest.mark.slow  # each class starts Ray (about 10 s on 2 cores)
class TestTwoNodes:
    def test_jobs_on_a_worker_node_come_back_to_the_driver_which_alone_writes(self, data, control, reference):
        out = control / "runs" / "two-nodes"
        progress = Record()
        grid.run_grid(specs(data), out, progress, RayExecutor(cpus_per_job=1))
        assert len(progress.finished) == 4 and not progress.failed
        job_nodes = {n["NodeID"] for n in ray.nodes() if n["Alive"] and n["Resources"].get("CPU", 0) > 0}
        assert len(job_nodes) == 1 and len(ray.nodes()) == 2
        assert_same_results(out, reference, specs(data))

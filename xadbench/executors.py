"""Executors: where the jobs of a grid run.

`run_grid` (xadbench.grid) is the driver: it decides which jobs still have to run and stores
each finished one. An executor only runs jobs and hands back, as each finishes, its `JobResult`
(or, with Ray, a `JobFailure`: one line); it never writes the run folder. `LocalExecutor` runs them one after
another in this process; `RayExecutor` runs each as a Ray task (https://docs.ray.io, ray core
tasks) on this machine or on a cluster, with the job's result coming back through Ray's object
store, so workers need the data but no shared file system for outputs.
"""
from __future__ import annotations

import importlib.util
import logging
import math
import os
import socket
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any

import torch

from xadbench import runner
from xadbench.errors import XadError
from xadbench.method import torch_threads
from xadbench.runner import JobResult, JobSpec, Progress

EXECUTORS = ("local", "ray")
RAY_EXTRA = "pip install 'xadbench[ray]'"
#: How often Ray reruns a job whose worker process or node died (a job that raises is not rerun).
MAX_RETRIES = 3
NO_MORE_JOBS = object()


@dataclass(frozen=True)
class JobFailure:
    """A Ray job that raised, or whose worker died more often than it is retried: one line."""

    message: str


Outcome = JobResult | JobFailure


def describe_error(exc: BaseException) -> str:
    """One line for a failed job: a user error's own message, else the exception's type and the
    first line of its message."""
    if isinstance(exc, XadError):
        return str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[0]}" if text else type(exc).__name__


class LocalExecutor:
    """Runs the jobs one after another in this process (the default). A job that raises stops the
    run with its error, as a local run always did: here the next jobs would mostly fail the same
    way (bad data, a bug), and the CLI turns the error into its one line. `threads`: torch's
    thread count while the jobs run (None: leave torch's own setting)."""

    def __init__(self, threads: int | None = None):
        self.threads = threads

    def __enter__(self) -> "LocalExecutor":
        return self

    def __exit__(self, *exc: Any) -> None:
        pass

    def run(self, jobs: Iterable[tuple[int, JobSpec] | None], total: int, progress: Progress) -> Iterator[tuple[JobSpec, Outcome]]:
        """Run `jobs` in order; a None among them means "nothing to run yet", so wait a moment."""
        for item in jobs:
            if item is None:
                time.sleep(runner.POLL_S)
                continue
            index, spec = item
            progress.job_started(index, total, spec)
            with torch_threads(self.threads):
                outcome = runner.run_job(spec, on_epoch=progress.epoch, on_phase=progress.phase)
            yield spec, outcome


def run_job_task(spec: JobSpec, threads: int) -> JobResult:
    """The Ray task: one job on a worker, torch limited to the task's CPUs so that the tasks
    sharing a machine do not fight over its cores."""
    torch.set_num_threads(threads)
    return runner.run_job(spec)


class RayExecutor:
    """Runs each job as a Ray task with `cpus_per_job` CPUs (torch's thread count: that number,
    at least 1) and `gpus_per_job` GPUs; `address` joins a running cluster ("auto", or the head's
    host:port), None starts a Ray instance on this machine for the run (or uses the one this
    process is already connected to). At most as many jobs are in flight as the cluster can run
    at once; a job whose worker dies is rerun up to MAX_RETRIES times; a job that raises becomes
    a JobFailure and the others go on (on a cluster a failure is often one node's, and stopping
    would throw away the jobs in flight)."""

    def __init__(self, address: str | None = None, cpus_per_job: float = 1.0, gpus_per_job: float = 0.0):
        self.ray = import_ray()
        self.address = address
        self.cpus_per_job = cpus_per_job
        self.gpus_per_job = gpus_per_job
        self.started_ray = False

    def __enter__(self) -> "RayExecutor":
        self.connect()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self.started_ray:
            self.ray.shutdown()
            self.started_ray = False

    def connect(self) -> None:
        """Join the cluster (or start a local instance) and check that some node can run a job."""
        ray = self.ray
        if not ray.is_initialized():
            check_reachable(self.address)
            try:
                ray.init(address=self.address, include_dashboard=False, log_to_driver=False,
                         logging_level=logging.WARNING)
            except (ConnectionError, RuntimeError, ValueError) as exc:
                where = f"--address {self.address}" if self.address else "a local Ray instance"
                raise XadError(f"{where}: cannot start or join Ray ({describe_error(exc)})") from None
            self.started_ray = True
        nodes = [node["Resources"] for node in ray.nodes() if node["Alive"]]
        for name, wanted in (("CPU", self.cpus_per_job), ("GPU", self.gpus_per_job)):
            largest = max((node.get(name, 0.0) for node in nodes), default=0.0)
            if wanted > largest:
                option = f"--{name.lower()}s-per-job"
                raise XadError(f"{option} {wanted:g}: no node of the Ray cluster has that many {name}s "
                               f"(the largest has {largest:g})")

    def slots(self) -> int:
        """How many jobs the cluster can run at once with each job's resources."""
        available = self.ray.cluster_resources()
        slots = math.floor(available.get("CPU", 0.0) / self.cpus_per_job + 1e-9)
        if self.gpus_per_job > 0:
            slots = min(slots, math.floor(available.get("GPU", 0.0) / self.gpus_per_job + 1e-9))
        return max(slots, 1)

    def run(self, jobs: Iterable[tuple[int, JobSpec] | None], total: int, progress: Progress) -> Iterator[tuple[JobSpec, Outcome]]:
        """Submit `jobs` as slots free up, yield each outcome as it arrives; a None among the jobs
        means "nothing to submit yet": the finished jobs are collected, then it asks again."""
        ray = self.ray
        self.connect()
        task = ray.remote(run_job_task).options(
            num_cpus=self.cpus_per_job, num_gpus=self.gpus_per_job,
            max_retries=MAX_RETRIES, retry_exceptions=False,
        )
        threads = max(1, int(self.cpus_per_job))
        pending = iter(jobs)
        in_flight: dict[Any, JobSpec] = {}
        exhausted = False
        while True:
            while not exhausted and len(in_flight) < self.slots():
                item = next(pending, NO_MORE_JOBS)
                if item is NO_MORE_JOBS:
                    exhausted = True
                if item is None or item is NO_MORE_JOBS:
                    break
                index, spec = item
                progress.job_started(index, total, spec)
                in_flight[task.remote(spec, threads)] = spec
            if not in_flight:
                if exhausted:
                    return
                time.sleep(runner.POLL_S)
                continue
            finished, _ = ray.wait(list(in_flight), num_returns=1, timeout=runner.POLL_S)
            for ref in finished:
                spec = in_flight.pop(ref)
                try:
                    outcome: Outcome = ray.get(ref)
                except ray.exceptions.RayTaskError as exc:  # the job raised on its worker
                    outcome = JobFailure(describe_error(exc.cause if exc.cause is not None else exc))
                except ray.exceptions.RayError as exc:  # its worker or node died MAX_RETRIES + 1 times
                    outcome = JobFailure(describe_error(exc))
                yield spec, outcome


def check_reachable(address: str | None) -> None:
    """A HOST:PORT address must accept a connection within seconds (Ray itself keeps retrying
    an unreachable head for minutes); "auto", ray:// addresses and None are left to Ray."""
    if address is None or address == "auto" or "://" in address:
        return
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit():
        raise XadError(f"--address {address}: use HOST:PORT of the Ray head (e.g. 10.0.0.1:6379) or auto")
    try:
        socket.create_connection((host, int(port)), timeout=5).close()
    except OSError as exc:
        raise XadError(f"--address {address}: no Ray head answers there ({describe_error(exc)}); "
                       f"start one with `ray start --head --port {port}`") from None


def import_ray() -> Any:
    if importlib.util.find_spec("ray") is None:
        raise XadError(f"--executor ray needs Ray, which is not installed: {RAY_EXTRA}")
    try:
        import ray
    except Exception as exc:  # installed but broken: a missing dependency, a mismatched build...
        raise XadError(f"--executor ray: Ray is installed but cannot be imported ({type(exc).__name__}: "
                       f"{' '.join(str(exc).split())}); reinstall it: {RAY_EXTRA}") from None
    return ray


def make_executor(name: str, address: str | None, cpus_per_job: float | None, gpus_per_job: float | None,
                  device: str) -> LocalExecutor | RayExecutor:
    """The executor the run options ask for, every option checked before any work (one line
    naming the option otherwise). Ray's defaults: 1 CPU per job, and 1 GPU when --device is cuda."""
    if name not in EXECUTORS:
        raise XadError(f"--executor {name!r}: use local or ray")
    if cpus_per_job is not None and not (cpus_per_job > 0 and math.isfinite(cpus_per_job)):
        raise XadError(f"--cpus-per-job {cpus_per_job:g}: use a number above 0, e.g. 1 or 0.5")
    if gpus_per_job is not None and not (gpus_per_job >= 0 and math.isfinite(gpus_per_job)):
        raise XadError(f"--gpus-per-job {gpus_per_job:g}: use a number of 0 or above, e.g. 1 or 0.5")
    if name == "local":
        for option, value in (("--address", address), ("--gpus-per-job", gpus_per_job)):
            if value is not None:
                raise XadError(f"{option} is an option of --executor ray")
        if cpus_per_job is not None and cpus_per_job != int(cpus_per_job):
            raise XadError(f"--cpus-per-job {cpus_per_job:g}: a local run uses a whole number of threads")
        cores = os.cpu_count() or 1
        if cpus_per_job is not None and cpus_per_job > cores:
            raise XadError(f"--cpus-per-job {cpus_per_job:g}: this machine has {cores} CPUs; a local run uses "
                           f"at most that many threads")
        return LocalExecutor(None if cpus_per_job is None else int(cpus_per_job))
    if device.startswith("cuda:"):
        raise XadError(f"--device {device}: with --executor ray use --device cuda (Ray gives each job its GPU)")
    if gpus_per_job is None:
        gpus_per_job = 1.0 if device == "cuda" else 0.0
    if gpus_per_job > 0 and device == "cpu":
        raise XadError(f"--gpus-per-job {gpus_per_job:g} with --device cpu: the jobs would hold GPUs they do not use")
    if device == "cuda" and gpus_per_job == 0:
        raise XadError("--device cuda with --gpus-per-job 0: Ray hides the GPUs from jobs that do not reserve one")
    return RayExecutor(address, 1.0 if cpus_per_job is None else cpus_per_job, gpus_per_job)

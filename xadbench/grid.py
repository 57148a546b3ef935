"""The grid: planning a run's jobs and running them.

`plan_grid` builds the jobs of a run (classes × methods × seeds, the reference maps, the seed
policy) for `xadbench run` and the studies. `run_grid` runs a grid on an executor
(xadbench.executors: in this process, or as Ray tasks on a cluster) and stores every finished
job itself: it checks the folder first (`run_folder.prepare_run`), claims each job in the store
before starting it, and skips finished jobs, so a killed run resumes and concurrent runs share
the work.
"""
from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from xadbench.errors import XadError
from xadbench.executors import JobFailure, LocalExecutor
from xadbench.registry import methods as method_registry
from xadbench.run_folder import prepare_run
from xadbench.runner import JobSpec, Progress, identify, save_job_result, without_unused_outlier_exposure
from xadbench.store import CLAIMED, FINISHED, ResultStore

#: The reference maps (`Method.reference`) a grid adds beside the methods where the data set has
#: pixel ground truth: the floor every number is read against.
ADDED_REFERENCES = ("centre", "pixelstats")
#: Seeds of a seed-sensitive method (`Method.seed_sensitive`) under the cpu preset without --seeds.
SENSITIVE_SEEDS = (0, 1, 2)


def default_seeds(method_names: Sequence[str], preset: str) -> dict[str, tuple[int, ...]]:
    """Each method's seeds when --seeds is not given: (0,), and SENSITIVE_SEEDS for a method that
    declares `seed_sensitive` under the cpu preset (its spread over seeds is then in every table)."""
    return {name: SENSITIVE_SEEDS if preset == "cpu" and getattr(method_registry.get(name), "seed_sensitive", False)
            else (0,)
            for name in method_names}


def plan_grid(classes: Sequence[str], method_names: Sequence[str], *, seeds: Sequence[int] | None = None,
              params: Mapping[str, tuple[tuple[str, Any], ...]] | None = None, references: bool = False,
              **common: Any) -> list[JobSpec]:
    """The jobs of a run, with their ids: one per (class, method, seed), after one per (class,
    reference map, seed) when `references`.

    Parameters
    ----------
    classes, method_names
        The classes of the data set and the registered methods to run on each.
    seeds
        Every job's seeds; None: the seed policy, `default_seeds`. The reference maps added by
        `references` are deterministic, so they run once, with the first seed (0 by default).
    params
        Hyperparameters (`JobSpec.params`) per method name; the reference maps take none.
    references
        Add the reference maps (`ADDED_REFERENCES`) not among `method_names`; a caller
        asks for them where the data set has pixel ground truth.
    **common
        The other `JobSpec` fields, the same for every job (dataset, preset, protocol, ...).

    Returns
    -------
    list of JobSpec
        The grid in run order, each without Outlier Exposure its method cannot use.
    """
    params = params or {}
    method_seeds = default_seeds(method_names, common.get("preset", "cpu")) if seeds is None else (
        dict.fromkeys(method_names, tuple(seeds)))
    added = [r for r in ADDED_REFERENCES if r not in method_names] if references else []
    reference_seeds = (0,) if seeds is None else tuple(seeds)[:1]
    specs = [JobSpec(class_name=c, method=m, seed=s, **common) for c in classes for m in added for s in reference_seeds]
    specs += [JobSpec(class_name=c, method=m, seed=s, params=params.get(m, ()), **common)
              for c in classes for m in method_names for s in method_seeds[m]]
    return identify(without_unused_outlier_exposure(spec) for spec in specs)


class JobsFailed(XadError):
    """Some jobs of a grid failed (each was reported as it failed); the others are stored."""


def claimed_jobs(store: ResultStore, specs: Sequence[JobSpec], progress: Progress,
                 claimed: set[str]) -> Iterator[tuple[int, JobSpec] | None]:
    """(index, spec) of each job this process claims in the store, in grid order, as the
    executor asks for them (its id added to `claimed`). A finished job is reported as skipped; a
    job another live process claimed is left to it and asked for again later (taken over should
    that process die): None is yielded when nothing can be claimed now."""
    pending, waited = list(enumerate(specs)), set()
    while pending:
        waiting = []
        for index, spec in pending:
            claim = store.claim(spec.job_id)
            if claim == FINISHED:
                progress.job_finished(spec, [], skipped=True)
            elif claim == CLAIMED:
                claimed.add(spec.job_id)
                yield index, spec
            else:
                if spec.job_id not in waited:
                    progress.job_waiting(spec, claim)
                    waited.add(spec.job_id)
                waiting.append((index, spec))
        pending = waiting
        if pending:
            yield None


def run_grid(specs: Sequence[JobSpec], out: Path, progress: Progress | None = None, executor: Any = None) -> pd.DataFrame:
    """Run every job of `specs` that the run folder's store does not hold yet and store each as it
    finishes: this process is the only writer of the run folder, wherever the jobs run. A job is
    claimed in the store before it starts, so concurrent runs into one folder share the work
    (`claimed_jobs`). A job that an executor reports failed (Ray) is released, the others go on,
    and JobsFailed at the end names the failed ones; an exception the executor raises (a local
    job's error) stops the run with every claim released.

    Parameters
    ----------
    specs
        The grid (`plan_grid`, or specs with their ids from `runner.identify`; computed here
        where missing).
    out
        The run folder.
    progress
        Told of each job as it starts, finishes, waits or fails (default: nothing shown).
    executor
        Where the jobs run (`xadbench.executors`; default: one after another in this process).

    Returns
    -------
    pandas.DataFrame
        Every row of the run folder's store, this grid's and any earlier run's.
    """
    specs = identify(specs)
    progress = progress or Progress()
    executor = executor or LocalExecutor()
    out = Path(out)
    store = prepare_run(out)
    claimed: set[str] = set()
    failed = []
    try:
        for spec, outcome in executor.run(claimed_jobs(store, specs, progress, claimed), len(specs), progress):
            if isinstance(outcome, JobFailure):
                store.release(spec.job_id)
                failed.append(spec)
                progress.job_failed(spec, outcome.message)
            else:
                save_job_result(out, spec.job_id, outcome)
                progress.job_finished(spec, outcome.rows, skipped=False)
            claimed.discard(spec.job_id)
    finally:
        for job_id in claimed:  # jobs that were running when the run stopped
            store.release(job_id)
    if failed:
        raise JobsFailed(f"{len(failed)} of {len(specs)} jobs failed (job ids {', '.join(s.job_id for s in failed)}); "
                         f"the others are stored in {out}, and a rerun of the same command runs only the failed ones")
    return store.read()

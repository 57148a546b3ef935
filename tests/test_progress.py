"""A run's progress where standard error is a log: plain lines as jobs start and finish, with the
grid's total (a resumed run counts what it skips), phase times, the headline metrics only, the
elapsed time and an ETA; epoch lines at most every EPOCH_LOG_S seconds; no epoch line for a
method that does not train."""
from __future__ import annotations

import pytest

from xadbench.cli import console as display
from xadbench.runner import JobSpec


class Clock:
    """A stand-in for time.monotonic that moves only when told to."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def rows(job_id: str) -> list[dict]:
    common = {"job_id": job_id, "blur": "gaussian", "fit_s": 12.4, "predict_s": 0.2, "sanity_s": 38.0}
    return [{**common, "metric": "image_auc", "value": 0.9123}, {**common, "metric": "pixel_auc", "value": 0.8},
            {**common, "metric": "randomised_ssim_top", "value": float("nan")},
            {**common, "metric": "pixel_auc_mean_map", "value": 0.5}]


@pytest.fixture
def clock(monkeypatch) -> Clock:
    clock = Clock()
    monkeypatch.setattr(display.time, "monotonic", clock)
    return clock


def test_log_lines_carry_total_phases_headline_metrics_and_eta(clock, capsys):
    specs = [JobSpec("synthetic", c, "fcdd", job_id=c) for c in ("wood", "tile", "grid", "zipper")]
    with display.LogProgress(len(specs)) as progress:
        progress.job_finished(specs[0], [], skipped=True)  # resumed: already in results
        progress.job_started(1, 4, specs[1])
        for epoch in range(1, 41):  # 40 epochs of 2 s: a line at 30 s and at 60 s, no more
            clock.now += 2
            progress.epoch(epoch, 40, 0.5 / epoch)
        clock.now += 20  # 100 s for the job
        progress.job_finished(specs[1], rows("tile"), skipped=False)
        progress.job_started(2, 4, specs[2])
        progress.epoch(1, 1, 0.0)  # a method that does not train
        clock.now += 50
        progress.job_failed(specs[2], "boom")
    lines = capsys.readouterr().err.splitlines()
    assert lines[0] == "run   4 jobs"
    assert lines[1] == "skip  1/4 synthetic/wood fcdd seed 0: already in results"
    assert lines[2] == "start 2/4 synthetic/tile fcdd seed 0 (elapsed 0:00:00, ETA ?)"
    assert lines[3:5] == ["      epoch 15/40 loss 0.0333 (elapsed 0:00:30, ETA ?)",
                          "      epoch 30/40 loss 0.0167 (elapsed 0:01:00, ETA ?)"]
    # One job ran in 100 s and two are left: ETA 200 s. Headline metrics only, NaN left out.
    assert lines[5] == ("done  2/4 synthetic/tile fcdd seed 0: fit 12s, predict 0s, sanity 38s; "
                        "image_auc=0.912 pixel_auc=0.800 (elapsed 0:01:40, ETA 0:03:20)")
    assert lines[6] == "start 3/4 synthetic/grid fcdd seed 0 (elapsed 0:01:40, ETA 0:03:20)"
    # Two jobs ran (one failed) in 150 s, one left: ETA 75 s.
    assert lines[7] == "FAIL  3/4 synthetic/grid fcdd seed 0 (job grid): boom (elapsed 0:02:30, ETA 0:01:15)"
    assert lines[8] == "end   3/4 jobs, 1 failed, elapsed 0:02:30"
    assert len(lines) == 9


def test_terminal_bars_know_the_total_of_a_resumed_run_and_hide_a_one_epoch_bar(clock):
    spec = JobSpec("synthetic", "wood", "centre", job_id="a")
    with display.RichProgress(3) as progress:
        progress.job_finished(JobSpec("synthetic", "tile", "centre", job_id="b"), [], skipped=True)
        jobs = progress.bar.tasks[progress.jobs]
        assert (jobs.completed, jobs.total) == (1, 3)
        progress.job_started(1, 3, spec)
        progress.phase("fit")
        progress.epoch(1, 1, 0.0)
        assert not progress.bar.tasks[progress.epochs].visible
        progress.phase("scoring and sanity checks")
        assert jobs.fields["info"].endswith("synthetic/wood centre seed 0: scoring and sanity checks")
        progress.epoch(3, 40, 0.1)
        assert progress.bar.tasks[progress.epochs].visible

"""What reproducibility means on a CPU: a job is bit-identical when rerun with the same thread
count (floating-point reductions keep their order), and every result row records the thread
count and the device that produced it."""
import numpy as np
import pytest
import torch

from xadbench import runner
from xadbench.runner import JobSpec

TIMINGS = ("fit_s", "predict_s", "sanity_s")


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    yield
    torch.set_num_threads(before)


@pytest.mark.slow
def test_a_trained_job_is_bit_identical_for_a_fixed_thread_count(threads):
    count = 2
    torch.set_num_threads(count)
    spec = JobSpec(dataset="synthetic", class_name="fabric", method="grad", sanity=False, pretrained=False,
                   params=(("epochs", 1), ("batch_size", 16)))
    first, second = runner.run_job(spec), runner.run_job(spec)
    for key in ("score", "anomaly_map"):
        assert np.array_equal(first.predictions[key], second.predictions[key])
    strip = [{k: v for k, v in row.items() if k not in TIMINGS} for row in first.rows]
    assert strip == [{k: v for k, v in row.items() if k not in TIMINGS} for row in second.rows]
    assert {row["threads"] for row in first.rows} == {count}
    assert {row["device"] for row in first.rows} == {"cpu"}


def test_the_cpu_preset_runs_seed_sensitive_methods_with_three_seeds_unless_seeds_are_given(tmp_path):
    """grad declares `seed_sensitive`: without --seeds the cpu preset runs it with seeds 0, 1, 2
    (so its spread over seeds is in every table), the other methods and references with seed 0;
    --seeds and the paper preset are taken as they are."""
    from typer.testing import CliRunner

    from xadbench.cli import app
    from xadbench.registry import methods

    assert methods.get("grad").seed_sensitive and methods.get("grad-ig").seed_sensitive
    assert not methods.get("fcdd").seed_sensitive

    def grid(*options):
        # --no-pretrained: the dry run checks the ImageNet weights, which an offline machine lacks
        done = CliRunner().invoke(app, ["run", "--methods", "fcdd,grad", "--classes", "wood", "--dry-run", "--no-pretrained",
                                        "--out", str(tmp_path / "run"), *options])
        assert done.exit_code == 0, done.output
        jobs = [line.split() for line in done.output.splitlines() if line.startswith("to run")]
        return sorted((job[3], int(job[5])) for job in jobs)  # (method, seed)

    assert grid() == [("centre", 0), ("fcdd", 0), ("grad", 0), ("grad", 1), ("grad", 2), ("pixelstats", 0)]
    assert grid("--seeds", "4") == [("centre", 4), ("fcdd", 4), ("grad", 4), ("pixelstats", 4)]
    # the reference maps are deterministic: once, with the first seed, not once per seed
    assert grid("--seeds", "1,2") == [("centre", 1), ("fcdd", 1), ("fcdd", 2), ("grad", 1), ("grad", 2),
                                      ("pixelstats", 1)]
    assert grid("--preset", "paper") == [("centre", 0), ("fcdd", 0), ("grad", 0), ("pixelstats", 0)]

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

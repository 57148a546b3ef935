"""Validation before work starts: options, --set values against each method's signature and
declared constraints, --out, and every asked-for class, all before the first job."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest
from typer.testing import CliRunner

from tests.conftest import registered_method_or_skip
from tests.test_mvtec import make_class
from xadbench.cli import app
from xadbench.errors import XadError
from xadbench.profiles import PRESETS, PROFILES
from xadbench.registry import methods
from xadbench.validation import Interval, check_method_params, check_out_folder, method_params

cli = CliRunner()


def one_line_error(result, text):
    assert result.exit_code == 1, result.output
    shown = [line for line in result.output.splitlines() if line.strip()]
    assert len(shown) == 1 and shown[0].startswith("error: ") and text in shown[0], result.output


def run(out, *args):
    return cli.invoke(app, ["run", "--no-report", "--out", str(out), *args])


@pytest.mark.parametrize("args, text", [
    (["--methods", "fcdd", "--set", "epochs=0"], "--set fcdd.epochs=0: epochs must be >= 1"),
    (["--methods", "fcdd", "--set", "epochs=-1"], "--set fcdd.epochs=-1: epochs must be >= 1"),
    (["--methods", "fcdd", "--set", "epochs=1.5"], "--set fcdd.epochs=1.5: method 'fcdd' wants an integer for epochs"),
    (["--methods", "fcdd", "--set", "epochs=true"], "method 'fcdd' wants an integer for epochs"),
    (["--methods", "fcdd", "--set", "lr=abc"], "--set fcdd.lr=abc: method 'fcdd' wants a number for lr"),
    (["--methods", "fcdd", "--set", "lr=0"], "--set fcdd.lr=0: lr must be > 0"),
    (["--methods", "fcdd", "--set", "lr=NaN"], "--set lr=NaN: NaN is not a finite number"),
    (["--methods", "fcdd", "--set", "lr=Infinity"], "--set lr=Infinity: Infinity is not a finite number"),
    (["--methods", "fcdd", "--set", "batch_size=0"], "--set fcdd.batch_size=0: batch_size must be >= 1"),
    (["--methods", "fcdd", "--set", "optimizer=rmsprop"], "optimizer must be one of sgd, adam"),
    (["--methods", "fcdd", "--set", "schedule=cosine"], "unknown schedule 'cosine'"),
    (["--methods", "ae", "--set", "device=cuda:7"], "--set ae.device=cuda:7"),
    (["--methods", "pixelstats,fcdd", "--set", "epoch=1"], "--set epoch=1: none of pixelstats, fcdd has a parameter 'epoch'"),
    (["--methods", "pixelstats,fcdd", "--set", "pixelstats.epochs=1"], "method 'pixelstats' has no parameter 'epochs'; parameters: eps"),
    (["--methods", "pixelstats", "--set", "fcdd.epochs=1"], "--set fcdd.epochs=1: method 'fcdd' is not in --methods (pixelstats)"),
    (["--methods", "grad-ig", "--set", "attribution=saliency"], "method 'grad-ig' fixes attribution='integrated_gradients'"),
    (["--methods", "pixelstats", "--set", "=3"], "expected KEY=VALUE or METHOD.KEY=VALUE"),
    (["--methods", "pixelstats", "--seeds", "-1"], "seed -1 is out of range; seeds are integers in 0 ... 4294967295"),
    (["--methods", "pixelstats", "--seeds", str(2**32)], "seed 4294967296 is out of range"),
    (["--methods", "pixelstats", "--k", "-1"], "--k -1: the number of labelled anomalies per category must be >= 0"),
    (["--methods", "pixelstats", "--oe-limit", "-5"], "--oe-limit -5: use a number of images >= 1 or 'all'"),
    (["--methods", "pixelstats", "--oe-limit", "0"], "--oe-limit 0: use a number of images >= 1 or 'all'"),
    (["--methods", "pixelstats", "--oe-limit", "many"], "--oe-limit 'many': use a number of images >= 1 or 'all'"),
    (["--methods", "pixelstats", "--device", "tpu"], "--device 'tpu': not a device"),
])
def test_bad_options_fail_before_anything_is_written(tmp_path, args, text):
    out = tmp_path / "run"
    one_line_error(run(out, "--classes", "fabric", *args), text)
    assert not out.exists()


def test_cuda_without_a_gpu_is_one_line(tmp_path, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    one_line_error(run(tmp_path / "run", "--methods", "pixelstats", "--device", "cuda"),
                   "--device cuda: no CUDA device is available here; use --device cpu or auto")


def test_an_unscoped_set_goes_only_to_methods_that_have_the_key():
    params = method_params(["pixelstats", "fcdd", "ae"], ["epochs=3", "fcdd.lr=0.5", "eps=0.1"])
    assert params == {"pixelstats": (("eps", 0.1),), "fcdd": (("epochs", 3), ("lr", 0.5)), "ae": (("epochs", 3),)}


@pytest.mark.parametrize("name", methods.names())
def test_every_preset_meets_its_methods_constraints(name):
    plugin = registered_method_or_skip(name)
    for preset in PRESETS:
        for profile in PROFILES:
            check_method_params(name, plugin, plugin.preset(preset, profile), option="preset")


def test_interval_ends():
    positive = Interval(float, 0, closed="neither")
    assert positive.problem(1e-9) is None and positive.problem(0) == "must be > 0"
    assert positive.problem(float("inf")) == "must be a finite number"
    at_least_one = Interval(int, 1)
    assert at_least_one.problem(1) is None and at_least_one.problem(0) == "must be >= 1"
    assert at_least_one.problem(2.0) == "must be a finite integer"
    assert Interval(int, 0, 3, closed="left").problem(3) == "must be >= 0 and < 3"


def test_out_that_is_a_file_or_under_a_file_is_one_line(tmp_path):
    (tmp_path / "file").write_text("x")
    one_line_error(run(tmp_path / "file", "--methods", "pixelstats"), "--out " + str(tmp_path / "file") + ": is a file")
    one_line_error(run(tmp_path / "file" / "sub", "--methods", "pixelstats"),
                   f"{tmp_path / 'file'} is a file, so no folder can be made under it")


def test_out_where_writing_is_denied_is_one_line(tmp_path, monkeypatch):
    """Root may write into a chmod 555 folder, so the write probe is made to fail as it does for
    another user (PermissionError)."""
    def denied(*args, **kwargs):
        raise PermissionError(13, "Permission denied", str(tmp_path))

    with monkeypatch.context() as patch:
        patch.setattr(tempfile, "TemporaryFile", denied)
        with pytest.raises(XadError, match=r"--out .*/run: cannot write into .* \(permission denied\)"):
            check_out_folder(tmp_path / "run")
    assert not (tmp_path / "run").exists()


def test_a_broken_mask_in_the_third_class_fails_before_the_first_job(tmp_path):
    for name in ("alpha", "beta", "gamma"):
        make_class(tmp_path / "data", name)
    mask = tmp_path / "data" / "gamma" / "ground_truth" / "crack" / "001_mask.png"
    mask.write_bytes(mask.read_bytes()[:60])
    out = tmp_path / "run"
    result = run(out, "--methods", "pixelstats", "--dataset", "mvtec", "--root", str(tmp_path / "data"),
                 "--classes", "alpha,beta,gamma")
    one_line_error(result, f"cannot decode image {mask}")
    assert not out.exists()


def test_an_unknown_class_fails_before_the_first_job(tmp_path):
    make_class(tmp_path / "data", "alpha")
    out = tmp_path / "run"
    one_line_error(run(out, "--methods", "pixelstats", "--dataset", "mvtec", "--root", str(tmp_path / "data"),
                       "--classes", "alpha,alpah"), "class 'alpah' not found")
    assert not out.exists()


RUN_AS_OTHER_USER = shutil.which("setpriv") is not None and os.geteuid() == 0


@pytest.mark.slow
@pytest.mark.skipif(os.geteuid() == 0 and not RUN_AS_OTHER_USER, reason="root without setpriv: reads are never denied")
def test_unreadable_entries_as_a_real_other_user():
    """Real permissions: as root the CLI runs as user nobody (setpriv), otherwise as ourselves.
    An unreadable sibling class is not touched when --classes names another; an unreadable image
    of an asked-for class is one line saying permission denied."""
    base = Path(tempfile.mkdtemp(prefix="xadbench-perm-"))
    try:
        os.chmod(base, 0o777)
        data = base / "data"
        for name in ("alpha", "beta"):
            make_class(data, name)
        for path in [data, *data.rglob("*")]:
            os.chmod(path, 0o777 if path.is_dir() else 0o666)
        os.chmod(data / "beta", 0)
        os.chmod(data / "alpha" / "test" / "crack" / "001.png", 0)
        prefix = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"] if RUN_AS_OTHER_USER else []
        env = {**os.environ, "HOME": str(base), "XADBENCH_CACHE": str(base / "cache"), "OMP_NUM_THREADS": "1"}

        def xadbench(*args):
            return subprocess.run([*prefix, sys.executable, "-c", "from xadbench.cli import main; main()", "run",
                                   "--no-report", "--methods",
                                   "pixelstats", "--dataset", "mvtec", "--root", str(data), *args],
                                  capture_output=True, text=True, env=env, cwd=base)

        result = xadbench("--classes", "alpha", "--out", str(base / "run"))
        assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr
        assert result.stderr.strip().splitlines()[-1] == (
            f"error: cannot read {data / 'alpha' / 'test' / 'crack' / '001.png'}: permission denied"), result.stderr
        os.chmod(data / "alpha" / "test" / "crack" / "001.png", 0o666)
        result = xadbench("--classes", "alpha", "--out", str(base / "run"))
        assert result.returncode == 0, result.stderr
    finally:
        for path in [base, *base.rglob("*")]:
            os.chmod(path, 0o777)
        shutil.rmtree(base)

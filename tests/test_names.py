"""Names are data: a class, data set or method name becomes a file name through
files.safe_name (unchanged when safe and short, else cleaned plus a hash), and a file name that
is not UTF-8 is hashed as the file system has it."""
from __future__ import annotations

import hashlib
import os

import numpy as np

from xadbench import decode_cache
from xadbench.files import NAME_LIMIT, safe_name
from xadbench.reports import figures


def test_a_safe_short_name_is_kept_as_it_is():
    assert safe_name("metal_nut") == "metal_nut"
    assert safe_name("grid_mvtec_bottle_seed0_blur-gaussian") == "grid_mvtec_bottle_seed0_blur-gaussian"


def test_unsafe_names_that_clean_alike_get_different_hashes():
    """x<1 and x>1 both clean to x-1; the hash of the original (computed here with hashlib)
    tells them apart, so their figures no longer overwrite each other."""
    for name in ("x<1", "x>1"):
        assert safe_name(name) == f"x-1-{hashlib.sha256(name.encode()).hexdigest()[:10]}"
    assert figures._slug("roc", "x<1", "cpu") != figures._slug("roc", "x>1", "cpu")
    assert safe_name("..") != ".." and "/" not in safe_name("../other/cap")


def test_a_long_name_is_cut_to_fit_with_its_hash():
    for length in (210, 240):
        name = "c" * length
        assert safe_name(name) == "c" * (NAME_LIMIT - 11) + "-" + hashlib.sha256(name.encode()).hexdigest()[:10]
        assert len(safe_name(name)) == NAME_LIMIT


def test_the_decode_cache_takes_long_names_and_file_names_that_are_not_utf8(tmp_path, monkeypatch):
    """A 240-character class (the cache folder's name was over 255 bytes) and an image whose
    file name is not UTF-8 (fingerprint could not encode it) are cached and read back."""
    monkeypatch.setenv("XADBENCH_CACHE", str(tmp_path / "cache"))
    monkeypatch.delenv(decode_cache.SWITCH, raising=False)
    image = os.path.join(os.fsencode(tmp_path), b"\xff\xfe.png")
    with open(image, "wb") as handle:
        handle.write(b"pixels")
    files = [tmp_path / os.fsdecode(os.path.basename(image))]
    arrays = decode_cache.cached_arrays("kind", tmp_path, "d" * 240, 8, files, lambda: {"x": np.arange(3)})
    assert np.array_equal(arrays["x"], np.arange(3))
    (entry,) = (tmp_path / "cache" / "decoded" / "kind").iterdir()
    assert entry.name.startswith(safe_name("d" * 240) + "-8px-") and len(entry.name) < 150


# ---------------------------------------------------------------- names on the terminal
ESCAPES = "a\x1b]0;PWNED\x07\x1b[31mred[bold]"  # an OSC title, a bell, a colour, rich markup


def test_control_characters_in_names_reach_the_terminal_escaped(tmp_path):
    """A class folder named with terminal escape sequences: the dry run's job grid, the
    progress lines and an error line show them as \\xNN text, never as the raw bytes."""
    from typer.testing import CliRunner

    from xadbench.cli import app
    from xadbench.cli.console import RichProgress
    from xadbench.runner import JobSpec
    from xadbench.terminal import printable

    make_mvtec_class(tmp_path / "root", ESCAPES)
    shown = "a\\x1b]0;PWNED\\x07\\x1b[31mred[bold]"
    assert printable(ESCAPES) == shown
    base = ["run", "--methods", "pixelstats", "--dataset", "mvtec", "--root", str(tmp_path / "root"),
            "--out", str(tmp_path / "run")]
    for args in (base + ["--dry-run"], base + ["--classes", ESCAPES + "x"]):
        result = CliRunner().invoke(app, args)
        assert "\x1b" not in result.output and "\x07" not in result.output and shown in result.output, result.output
    spec = JobSpec(dataset="mvtec", class_name=ESCAPES, method="pixelstats")
    assert RichProgress(total=1).describe(spec) == "mvtec/a\\x1b]0;PWNED\\x07\\x1b[31mred\\[bold] pixelstats seed 0"


def make_mvtec_class(root, name):
    """One class in the MVTec-AD layout: 16 x 16 noise, 2 train, 1 good and 1 defective test
    image with its mask."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for file in ("train/good/0.png", "train/good/1.png", "test/good/0.png", "test/crack/0.png"):
        (root / name / file).parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray(rng.integers(0, 256, (16, 16, 3), dtype=np.uint8)).save(root / name / file)
    mask = np.zeros((16, 16), np.uint8)
    mask[4:10, 3:9] = 255
    (root / name / "ground_truth" / "crack").mkdir(parents=True, exist_ok=True)
    Image.fromarray(mask).save(root / name / "ground_truth" / "crack" / "0_mask.png")

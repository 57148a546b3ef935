"""Shared pieces of the one-vs-rest data sets (paper section 4.1).

The protocol: one class is nominal; training sees only its training images (label 0), and the
whole test split is scored, with label 0 for that class and 1 for every other class. Every
sample's `category` is its original class name.

Images become float32 (C, H, W) in [0, 1] at image_size × image_size, resized with PIL (whose
resampling filters widen with the scale factor, i.e. antialias when shrinking). They are decoded
on access (`LazySamples`), so a large split is never held whole as float32.
"""
from __future__ import annotations

import difflib
import re
import warnings
from collections.abc import Sequence
from functools import partial
from pathlib import Path

import numpy as np
import torch
from PIL import Image

from xadbench.errors import DataError
from xadbench.types import LazySamples, Sample

IMAGE_EXTENSIONS = frozenset({".png", ".jpg", ".jpeg", ".bmp", ".tif", ".tiff", ".webp", ".gif", ".ppm", ".pgm"})
# Files that operating systems drop into folders; skipped without a warning.
SYSTEM_FILES = frozenset({"Thumbs.db", "desktop.ini"})


def one_line(text: object) -> str:
    return " ".join(str(text).split())


def slug(name: str) -> str:
    """A readable class name usable on the command line: "T-shirt/top" -> "t-shirt_top"."""
    return re.sub(r"[^a-z0-9-]+", "_", name.lower()).strip("_")


def check_image_size(image_size: int) -> None:
    if not isinstance(image_size, int) or isinstance(image_size, bool) or image_size < 1:
        raise ValueError(f"image_size must be a positive int, got {image_size!r}")


def resolve_class(name: str, classes: Sequence[str], dataset: str) -> str:
    """The class `name` refers to: its exact name, its `slug`, or its index in `classes`."""
    if name in classes:
        return name
    by_slug = {slug(c): c for c in classes}
    if slug(name) in by_slug:
        return by_slug[slug(name)]
    if name.isdigit() and int(name) < len(classes):
        return classes[int(name)]
    close = difflib.get_close_matches(slug(name), list(by_slug), n=1)
    hint = f" (did you mean {by_slug[close[0]]!r}?)" if close else ""
    raise DataError(
        f"{dataset} has no class {name!r}{hint}; classes (by name or index 0-{len(classes) - 1}): "
        f"{', '.join(classes)}"
    )


def to_tensor(image: Image.Image, image_size: int) -> torch.Tensor:
    """A PIL image (mode L or RGB) as float32 (C, image_size, image_size) in [0, 1]."""
    if image.size != (image_size, image_size):
        image = image.resize((image_size, image_size), Image.Resampling.BILINEAR)
    array = np.asarray(image, dtype=np.float32) / 255.0
    array = array[None] if array.ndim == 2 else array.transpose(2, 0, 1)
    return torch.from_numpy(np.ascontiguousarray(array))


#: Full scale of the integer modes PIL gives images of more than 8 bits per sample: 16-bit PNG
#: and TIFF open as "I;16" (or its byte-order variants), older PNG readers give "I" for them.
SIXTEEN_BIT_MODES = frozenset({"I;16", "I;16L", "I;16B", "I;16N", "I"})
SIXTEEN_BIT_FULL = 65535


def native_values(image: Image.Image) -> tuple[np.ndarray, float]:
    """A single-band image's samples at their own bit depth and the value that means white:
    65535 for 16-bit modes, 1.0 for float images ("F", taken to hold [0, 1]), 255 otherwise
    (other modes are converted to 8-bit greyscale first)."""
    if image.mode in SIXTEEN_BIT_MODES:
        return np.asarray(image).astype(np.int64), SIXTEEN_BIT_FULL
    if image.mode == "F":
        return np.asarray(image, dtype=np.float64), 1.0
    return np.asarray(image.convert("L")), 255


def _to_8bit(image: Image.Image) -> Image.Image:
    """High-bit-depth greyscale (16-bit, float) scaled to 8-bit "L" by its full scale; PIL's own
    conversion clips such values at 255, which turns a 16-bit image white."""
    if image.mode not in SIXTEEN_BIT_MODES and image.mode != "F":
        return image
    values, full = native_values(image)
    return Image.fromarray(np.clip(np.round(values * (255 / full)), 0, 255).astype(np.uint8), "L")


def unreadable(path: Path, exc: BaseException) -> DataError:
    """The one-line error for a file that cannot be read: permission denied, another OS error,
    or (anything PIL raises) a corrupt or truncated file."""
    if isinstance(exc, PermissionError):
        return DataError(f"cannot read {path}: permission denied")
    if isinstance(exc, OSError) and exc.errno is not None:
        return DataError(f"cannot read {path}: {one_line(exc.strerror)}")
    return DataError(
        f"cannot decode image {path} ({type(exc).__name__}: {one_line(exc)}); the file is "
        "corrupt or truncated: replace it or delete it"
    )


def decode(path: Path, mode: str) -> Image.Image:
    """Fully decode an image file (so truncated files fail here) and convert it to `mode`;
    16-bit and float greyscale are scaled to 8 bits first (`_to_8bit`)."""
    try:
        with Image.open(path) as im:
            im.load()
            return _to_8bit(im).convert(mode)
    except Exception as exc:  # PIL raises many types for bad files; all mean the same here
        raise unreadable(path, exc) from None


def _file_sample(path: Path, key: str, label: int, category: str, mode: str, image_size: int) -> Sample:
    return Sample(to_tensor(decode(path, mode), image_size), label, None, key, category)


def file_samples(
    files: Sequence[tuple[Path, int, str]], root: Path, image_size: int, mode: str = "RGB"
) -> LazySamples:
    """(path, label, category) triples as samples decoded on access; keys are paths relative
    to `root`."""
    return LazySamples([
        partial(_file_sample, path, path.relative_to(root).as_posix(), label, category, mode, image_size)
        for path, label, category in files
    ])


def _array_sample(images: np.ndarray, index: int, key: str, label: int, category: str, image_size: int) -> Sample:
    return Sample(to_tensor(Image.fromarray(images[index]), image_size), label, None, key, category)


def array_samples(
    images: np.ndarray, indices: Sequence[int], labels: Sequence[int], categories: Sequence[str],
    split: str, image_size: int,
) -> LazySamples:
    """Samples from uint8 images (N, H, W) or (N, H, W, 3), converted on access; keys are
    "<split>/<index>"."""
    return LazySamples([
        partial(_array_sample, images, int(i), f"{split}/{int(i)}", int(label), category, image_size)
        for i, label, category in zip(indices, labels, categories)
    ])


def is_hidden(path: Path) -> bool:
    return path.name.startswith(".") or path.name in SYSTEM_FILES


def list_images(folder: Path, skipped: list[Path]) -> list[Path]:
    """The image files directly in `folder`, sorted; other visible entries go to `skipped`."""
    images = []
    for path in sorted(folder.iterdir()):
        if is_hidden(path):
            continue
        if path.is_file() and path.suffix.lower() in IMAGE_EXTENSIONS:
            images.append(path)
        else:
            skipped.append(path)
    return images


def warn_skipped(skipped: Sequence[Path], root: Path) -> None:
    """One warning for all non-image entries met while listing a data set."""
    if skipped:
        shown = ", ".join(p.relative_to(root).as_posix() for p in skipped[:3])
        more = f" and {len(skipped) - 3} more" if len(skipped) > 3 else ""
        warnings.warn(
            f"{root}: skipped {len(skipped)} entries that are not image files: {shown}{more} "
            f"(only {'/'.join(sorted(IMAGE_EXTENSIONS))} files are read)",
            stacklevel=3,
        )

"""xadbench: an explainability benchmark suite for deep anomaly detection on images.

The public names load on first use (PEP 562), so `import xadbench.cli` (and `xadbench --help`)
does not import torch.
"""
import importlib

from xadbench.errors import XadError

__version__ = "0.1.0"

_LAZY = {
    "Dataset": "xadbench.dataset",
    "LazySamples": "xadbench.types",
    "Method": "xadbench.method",
    "Prediction": "xadbench.types",
    "Sample": "xadbench.types",
    "Task": "xadbench.types",
    "TrainData": "xadbench.types",
    "Variant": "xadbench.method",
}
__all__ = [*sorted(_LAZY), "XadError"]


def __getattr__(name: str):
    if name in _LAZY:
        return getattr(importlib.import_module(_LAZY[name]), name)
    raise AttributeError(f"module 'xadbench' has no attribute {name!r}")

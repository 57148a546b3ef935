"""xadbench: an explainability benchmark suite for deep anomaly detection on images."""
from xadbench.dataset import Dataset
from xadbench.errors import XadError
from xadbench.method import Method, Variant
from xadbench.types import LazySamples, Prediction, Sample, Task, TrainData

__version__ = "0.1.0"
__all__ = [
    "Dataset",
    "LazySamples",
    "Method",
    "Prediction",
    "Sample",
    "Task",
    "TrainData",
    "Variant",
    "XadError",
]

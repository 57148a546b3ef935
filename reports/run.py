"""A run folder loaded once for its reports (`reports.report.write_report`): its results rows,
its predictions files (each read once, when first asked for) and its bootstrap intervals per
bootstrap setting (`reports.intervals.run_intervals`). Tables, intervals, figures, the HTML page
and `compare` all read the run through one `Run`."""
from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from xadbench.reports.tables import load_results
from xadbench.run_folder import load_predictions


#: How many bytes of predictions arrays a `Run` keeps in memory at most.
PREDICTIONS_KEPT_BYTES = 1 << 30


@dataclass
class Run:
    """A loaded run folder. `results`: its rows (`tables.load_results`); `predictions(job_id)`:
    a job's predictions file, read once; `intervals`: the interval tables computed or read so far,
    by bootstrap setting (filled by `intervals.run_intervals`)."""

    path: Path
    results: pd.DataFrame
    intervals: dict[tuple[Any, ...], list] = field(default_factory=dict, repr=False)
    _predictions: OrderedDict[str, dict[str, np.ndarray]] = field(default_factory=OrderedDict, repr=False)

    @classmethod
    def load(cls, run: Run | Path | str) -> Run:
        """The run folder at a path, loaded (a `Run` is returned as it is)."""
        if isinstance(run, Run):
            return run
        return cls(Path(run), load_results(Path(run)))

    def prediction_path(self, job_id: str) -> Path:
        return self.path / "predictions" / f"{job_id}.npz"

    def has_predictions(self, job_id: str) -> bool:
        return job_id in self._predictions or self.prediction_path(job_id).is_file()

    def predictions(self, job_id: str) -> dict[str, np.ndarray]:
        """The job's predictions file (`run_folder.load_predictions`), read on first use and kept
        while the files kept hold at most PREDICTIONS_KEPT_BYTES (the least recently used go
        first), so a large run's report does not hold every file in memory."""
        if job_id in self._predictions:
            self._predictions.move_to_end(job_id)
            return self._predictions[job_id]
        loaded = load_predictions(self.prediction_path(job_id))
        self._predictions[job_id] = loaded
        while len(self._predictions) > 1 and _nbytes(self._predictions.values()) > PREDICTIONS_KEPT_BYTES:
            self._predictions.popitem(last=False)
        return loaded


def _nbytes(files) -> int:
    return sum(array.nbytes for p in files for array in p.values())

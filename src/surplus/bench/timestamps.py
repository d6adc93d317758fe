"""Timestamps as integers, for the data loaders' fast sorting, gridding and interpolation."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt
import pandas as pd


def epoch_ns(index: pd.DatetimeIndex) -> npt.NDArray[np.int64]:
    """Nanoseconds since the epoch (UTC if tz-aware, wall clock if naive)."""
    values: npt.NDArray[np.int64] = (
        index.as_unit("ns").to_numpy(dtype="datetime64[ns]").view(np.int64)
    )
    return values

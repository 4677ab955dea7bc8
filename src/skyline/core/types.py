"""Small shared types."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

FloatArray = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class Series:
    """One metric's points, sorted by time with unique timestamps."""

    name: str
    timestamps: FloatArray
    values: FloatArray

    def __len__(self) -> int:
        return int(self.timestamps.shape[0])

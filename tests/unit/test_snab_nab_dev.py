"""The scorer reproduces the published check values (reference/nab-scoring.md) from NAB's
published raw outputs in the nab-dev subset. nab-dev lives beside the repository
(<repo>/../shared/nab-dev) and is never part of it: without it this test skips."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from skyline.snab.corpus import parse_rows, parse_windows, result_path
from skyline.snab.scorer import ScoredFile, locate_windows, score_corpus

NAB_DEV = Path(__file__).resolve().parents[2].parent / "shared" / "nab-dev"

# detector: (standard, reward_low_FP_rate, reward_low_FN_rate) on 31 files, 53 windows
CHECK_VALUES = {
    "skyline": (43.01, 31.84, 48.17),
    "numenta": (69.52, 62.88, 74.02),
    "earthgeckoSkyline": (51.57, 47.28, 54.50),
    "null": (0.00, 0.00, 0.00),
}
PROFILES = ("standard", "reward_low_FP_rate", "reward_low_FN_rate")

pytestmark = pytest.mark.skipif(not NAB_DEV.is_dir(),
                                reason=f"the NAB development subset is not at {NAB_DEV}")


@pytest.mark.parametrize("detector", list(CHECK_VALUES))
def test_published_results_score_the_check_values(detector):
    windows = parse_windows((NAB_DEV / "labels" / "combined_windows.json").read_text())
    files = []
    for key, pairs in windows.items():
        path = NAB_DEV / "published-results" / Path(*result_path(detector, key).parts)
        rows = parse_rows(path.read_text(), str(path), results=True)
        assert rows.scores is not None
        files.append(ScoredFile(key, rows.scores, locate_windows(key, rows.micros, pairs)))
    result = score_corpus(files)
    assert (len(result.files), result.n_windows) == (31, 53)
    for profile, expected in zip(PROFILES, CHECK_VALUES[detector], strict=True):
        assert result.profiles[profile].score == pytest.approx(expected, abs=0.01), profile
    if detector == "skyline":
        assert result.profiles["standard"].threshold == pytest.approx(0.714286, abs=1e-6)
    if detector == "null":
        assert all(math.isinf(p.threshold) for p in result.profiles.values())

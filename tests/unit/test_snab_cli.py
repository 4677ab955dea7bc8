"""`skyline bench nab` end to end on a tiny corpus written to a temporary directory."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from skyline.cli.main import cli


def _write(path: Path, stamps: list[str], values: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("timestamp,value\n" + "".join(
        f"{t},{v:.4f}\n" for t, v in zip(stamps, values, strict=True)))


def _stamps(n: int) -> list[str]:
    base = np.datetime64("2021-03-01T00:00:00", "s")
    return [str(base + np.timedelta64(300 * i, "s")).replace("T", " ") for i in range(n)]


@pytest.fixture
def corpus(tmp_path: Path) -> tuple[Path, Path]:
    rng = np.random.default_rng(7)
    a = 50 + rng.normal(0, 1, 400)
    a[300:304] += 25  # the labelled anomaly
    a[200] += 12  # an unlabelled one: a false positive
    stamps = _stamps(400)
    _write(tmp_path / "data" / "synth" / "a.csv", stamps, a)
    _write(tmp_path / "data" / "synth" / "b.csv", _stamps(150), 5 + rng.normal(0, 1, 150))
    labels = tmp_path / "windows.json"
    labels.write_text(json.dumps({
        "synth/a.csv": [[stamps[290] + ".000000", stamps[320] + ".000000"]],
        "synth/b.csv": []}))
    return tmp_path / "data", labels


def _run(*args: str | Path) -> tuple[int, str, str]:
    result = CliRunner().invoke(cli, [str(a) for a in args])
    return result.exit_code, result.stdout, result.stderr


def test_replay_writes_nab_results_and_scores_them(corpus, tmp_path):
    data, labels = corpus
    out = tmp_path / "results"
    code, stdout, stderr = _run("bench", "nab", data, "--labels", labels, "--variant",
                                "classic-9", "--variant", "default", "--out", out, "--json")
    assert code == 0, stderr
    report = json.loads(stdout)
    assert set(report["variants"]) == {"classic-9", "default"}

    # NAB layout, one row per data row, data rows echoed verbatim
    written = (out / "classic-9" / "synth" / "classic-9_a.csv").read_text().splitlines()
    source = (data / "synth" / "a.csv").read_text().splitlines()
    assert written[0] == "timestamp,value,anomaly_score"
    assert len(written) == len(source)
    assert [w.rsplit(",", 1)[0] for w in written[1:]] == source[1:]
    scores = np.array([float(w.rsplit(",", 1)[1]) for w in written[1:]])
    assert scores[300] > np.median(scores)  # the spike is seen as it arrives

    c9 = report["variants"]["classic-9"]
    assert (c9["files"], c9["windows"]) == (2, 1)
    standard = c9["profiles"]["standard"]
    assert standard["tp"] == 1 and standard["score"] > 50
    # the default variant's 100-point minimum: the first 99 rows of each file are TooShort
    assert report["variants"]["default"]["abstained"]["synth/b.csv"] == {"TooShort": 99}
    assert report["variants"]["default"]["rows"] == 550

    # scoring the written results again gives the same figures
    code, stdout, stderr = _run("bench", "nab", "--score-only", out, "--labels", labels,
                                "--json")
    assert code == 0, stderr
    again = json.loads(stdout)["variants"]
    for name in ("classic-9", "default"):
        assert again[name]["profiles"] == report["variants"][name]["profiles"]

    # the in-sample thresholds, applied as given thresholds, reproduce the same scores
    tuned = tmp_path / "tuned.json"
    tuned.write_text(stdout)
    code, stdout, stderr = _run("bench", "nab", "--score-only", out / "classic-9", "--labels",
                                labels, "--thresholds-from", tuned, "--json")
    assert code == 0, stderr
    given = json.loads(stdout)
    assert given["thresholds"] == "given"
    assert given["variants"]["classic-9"]["profiles"] == c9["profiles"]


def test_human_output_has_a_table_per_profile(corpus, tmp_path):
    data, labels = corpus
    code, stdout, stderr = _run("bench", "nab", data, "--labels", labels, "--variant",
                                "default", "--out", tmp_path / "r")
    assert code == 0, stderr
    for profile in ("standard", "reward_low_FP_rate", "reward_low_FN_rate"):
        assert f"\n{profile}  (threshold optimised in-sample)" in stdout
    assert "TooShort" in stdout and "replayed 550 rows of 2 files" in stdout


def test_a_data_file_without_labels_is_refused(corpus, tmp_path):
    data, labels = corpus
    labels.write_text(json.dumps({"synth/a.csv": []}))
    code, _, stderr = _run("bench", "nab", data, "--labels", labels, "--out", tmp_path / "r")
    assert code == 1
    assert "no label windows for 1 data file(s): synth/b.csv" in stderr


def test_missing_results_are_refused_rather_than_scored(corpus, tmp_path):
    data, labels = corpus
    out = tmp_path / "r"
    assert _run("bench", "nab", data, "--labels", labels, "--variant", "classic-9",
                "--out", out)[0] == 0
    (out / "classic-9" / "synth" / "classic-9_b.csv").unlink()
    code, _, stderr = _run("bench", "nab", "--score-only", out, "--labels", labels)
    assert code == 1 and "no file for 1 labelled file(s): synth/b.csv" in stderr


def test_replay_or_score_only_not_both(corpus, tmp_path):
    data, labels = corpus
    assert _run("bench", "nab", "--labels", labels)[0] == 2
    assert _run("bench", "nab", data, "--score-only", tmp_path, "--labels", labels)[0] == 2

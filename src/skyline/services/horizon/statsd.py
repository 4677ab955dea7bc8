"""StatsD over UDP: counters, gauges, timers, histograms and sets, aggregated over a flush
interval into metrics, as Etsy's statsd does (its names, its percentile rule).

A line is `name:value|type[|@rate][|#tag:value,...]`; one datagram holds lines separated by
newlines, and a line without tags may carry several `:value|type` samples. Every flush turns
the aggregates into points stamped with the flush time (whole seconds):

- counter `c`:       `<prefix>.counters.<name>.count` (sum of value/rate) and `.rate` (per s)
- gauge `g`:         `<prefix>.gauges.<name>` (`+n`/`-n` change it, a plain number sets it)
- timer `ms`:        `<prefix>.timers.<name>.<stat>`
- histogram `h`:     `<prefix>.histograms.<name>.<stat>`
- set `s`:           `<prefix>.sets.<name>.count` (distinct values seen)

Timer and histogram stats: count (sampled: each value counts 1/rate), count_ps, lower, upper,
mean, median, std (population), sum, and for each percentile p (90 -> `90`, 99.9 -> `99_9`):
count_p, mean_p, upper_p, sum_p over the lowest round(p% of n) values.
"""

from __future__ import annotations

import math
import re
from collections import Counter
from collections.abc import Sequence

import numpy as np

from skyline.ingest.names import labelled_name

# rejection reasons (counted as rejected_statsd_<reason>)
BAD_LINE = "bad_line"  # no `name:value|type`
BAD_NAME = "bad_name"  # nothing left of the name after sanitising
BAD_VALUE = "bad_value"  # not a finite number (sets take any value)
BAD_TYPE = "bad_type"
BAD_RATE = "bad_rate"  # sample rate not in (0, 1]
BAD_TAGS = "bad_tags"  # a tag that is not key:value
BAD_ENCODING = "bad_encoding"
TOO_MANY_NAMES = "too_many_names"  # statsd.max_names names are aggregated already
NAME_TOO_LONG = "name_too_long"
SET_TOO_LARGE = "set_too_large"  # MAX_SET_VALUES distinct values in one interval already
MAX_KEY = 5120  # characters of a name with its labels (the ingest limits' sum)
MAX_SET_VALUES = 100_000

_SPACES = re.compile(r"\s+")
_NOT_KEY = re.compile(r"[^a-zA-Z_\-0-9.]")
_LABEL_NAME_BAD = re.compile(r"[^A-Za-z0-9_]")


class _Bad(Exception):
    def __init__(self, reason: str):
        self.reason = reason


def sanitise(name: str) -> str:
    """statsd's key rule: whitespace runs become `_`, `/` becomes `-`, and anything but
    letters, digits, `_`, `-` and `.` is removed."""
    return _NOT_KEY.sub("", _SPACES.sub("_", name).replace("/", "-"))


def pct_name(p: float) -> str:
    return str(int(p)) if float(p).is_integer() else str(p).replace(".", "_")


def _tags(text: str) -> dict[str, str]:
    labels = {}
    for tag in text.split(","):
        key, sep, value = tag.partition(":")
        if not sep or not key or not value:
            raise _Bad(BAD_TAGS)
        key = _LABEL_NAME_BAD.sub("_", key)
        labels["_" + key if key[0].isdigit() else key] = value
    return labels


def _number(text: str) -> float:
    try:
        x = float(text)
    except ValueError:
        raise _Bad(BAD_VALUE) from None
    if not math.isfinite(x):
        raise _Bad(BAD_VALUE)
    return x


def timer_stats(values: Sequence[float], count: float, interval: float,
                percentiles: Sequence[float]) -> dict[str, float]:
    """Etsy statsd's timer statistics of one interval's values (`count` is the sampled count,
    each value counting 1/rate)."""
    out = {"count": count, "count_ps": count / interval}
    n = len(values)
    if n == 0:
        return out
    v = np.sort(np.asarray(values, dtype=np.float64))
    cum = np.cumsum(v)
    for p in percentiles:
        k = n if n == 1 else math.floor(p / 100 * n + 0.5)  # JavaScript's Math.round
        if k == 0:
            continue
        name = pct_name(p)
        out[f"count_{name}"] = k
        out[f"mean_{name}"] = float(cum[k - 1]) / k
        out[f"upper_{name}"] = float(v[k - 1])
        out[f"sum_{name}"] = float(cum[k - 1])
    total = float(cum[-1])
    mean = total / n
    mid = n // 2
    out.update(
        lower=float(v[0]), upper=float(v[-1]), sum=total, mean=mean,
        median=float(v[mid]) if n % 2 else float(v[mid - 1] + v[mid]) / 2,
        std=float(np.sqrt(np.mean((v - mean) ** 2))),
    )
    return out


class Aggregator:
    """One interval's statsd state. Keys are sanitised names, with `{labels}` when the line
    had tags."""

    def __init__(self, *, prefix: str, percentiles: Sequence[float], delete_idle: bool,
                 forget_after_flushes: int = 360, max_names: int = 100_000):
        self.prefix = prefix
        self.percentiles = list(percentiles)
        self.delete_idle = delete_idle
        # names are forgotten after this many flushes without input, and at most max_names
        # are aggregated at once: one-off names cannot make the state grow for ever
        self.forget_after = max(1, forget_after_flushes)
        self.max_names = max_names
        self._flushes = 0
        self.last_seen: dict[str, int] = {}
        self.counters: dict[str, float] = {}
        self.gauges: dict[str, float] = {}
        self.gauges_touched: set[str] = set()
        self.timers: dict[str, list[float]] = {}
        self.timer_counts: dict[str, float] = {}
        self.histograms: dict[str, list[float]] = {}
        self.histogram_counts: dict[str, float] = {}
        self.sets: dict[str, set[str]] = {}

    # input ------------------------------------------------------------------------------------
    def feed(self, datagram: bytes, rejected: Counter[str]) -> int:
        """Aggregate one datagram; returns how many lines it held."""
        lines = 0
        for raw in datagram.split(b"\n"):
            raw = raw.strip()
            if not raw:
                continue
            lines += 1
            try:
                self.line(raw.decode())
            except UnicodeDecodeError:
                rejected[BAD_ENCODING] += 1
            except _Bad as e:
                rejected[e.reason] += 1
        return lines

    def line(self, line: str) -> None:
        name, sep, rest = line.partition(":")
        if not sep or not rest:
            raise _Bad(BAD_LINE)
        key = sanitise(name)
        if not key:
            raise _Bad(BAD_NAME)
        if "|#" in rest:  # tags hold ':' themselves, so one sample only
            rest, _, tags = rest.partition("|#")
            key = labelled_name(key, _tags(tags))
            samples = [rest]
        else:
            samples = rest.split(":")
        parsed = [self._sample(s) for s in samples]  # all or nothing for one line
        for value, kind, rate in parsed:
            self._apply(key, value, kind, rate)

    @staticmethod
    def _sample(sample: str) -> tuple[str, str, float]:
        fields = sample.split("|")
        if len(fields) < 2 or not fields[0]:
            raise _Bad(BAD_LINE)
        value, kind = fields[0], fields[1]
        if kind not in ("c", "g", "ms", "h", "s"):
            raise _Bad(BAD_TYPE)
        rate = 1.0
        for extra in fields[2:]:  # other extensions (DogStatsD's |c:, |T) are ignored
            if extra.startswith("@"):
                try:
                    rate = float(extra[1:])
                except ValueError:
                    raise _Bad(BAD_RATE) from None
                if not 0 < rate <= 1:
                    raise _Bad(BAD_RATE)
        if kind != "s":
            _number(value)  # refuse the line before anything of it is applied
        return value, kind, rate

    def _apply(self, key: str, value: str, kind: str, rate: float) -> None:
        seen = self.last_seen
        if key not in seen:
            if len(key) > MAX_KEY:
                raise _Bad(NAME_TOO_LONG)
            if len(seen) >= self.max_names:
                raise _Bad(TOO_MANY_NAMES)
        seen[key] = self._flushes
        if kind == "c":
            self.counters[key] = self.counters.get(key, 0.0) + float(value) / rate
        elif kind == "g":
            x = float(value)
            if value[0] in "+-":
                x += self.gauges.get(key, 0.0)
            self.gauges[key] = x
            self.gauges_touched.add(key)
        elif kind == "s":
            members = self.sets.setdefault(key, set())
            if len(members) >= MAX_SET_VALUES and value not in members:
                raise _Bad(SET_TOO_LARGE)
            members.add(value)
        else:
            values, counts = ((self.timers, self.timer_counts) if kind == "ms"
                              else (self.histograms, self.histogram_counts))
            values.setdefault(key, []).append(float(value))
            counts[key] = counts.get(key, 0.0) + 1 / rate

    # output -----------------------------------------------------------------------------------
    def _name(self, namespace: str, key: str, stat: str = "") -> str:
        base, brace, labels = key.partition("{")
        dotted = f"{self.prefix}.{namespace}.{base}" + (f".{stat}" if stat else "")
        return f"{dotted}{brace}{labels}"

    def flush(self, interval: float) -> tuple[list[str], list[float]]:
        """The interval's metrics as (names, values), and the state reset for the next one.
        `interval` is the seconds the aggregates cover (for rates)."""
        names: list[str] = []
        values: list[float] = []

        def emit(name: str, value: float) -> None:
            names.append(name)
            values.append(value)

        for key, total in self.counters.items():
            emit(self._name("counters", key, "count"), total)
            emit(self._name("counters", key, "rate"), total / interval)
        for key, x in self.gauges.items():
            if not self.delete_idle or key in self.gauges_touched:
                emit(self._name("gauges", key), x)
        for namespace, samples, counts in (("timers", self.timers, self.timer_counts),
                                           ("histograms", self.histograms,
                                            self.histogram_counts)):
            for key, count in counts.items():
                stats = timer_stats(samples.get(key, ()), count, interval, self.percentiles)
                for stat, x in stats.items():
                    emit(self._name(namespace, key, stat), x)
        for key, seen in self.sets.items():
            emit(self._name("sets", key, "count"), float(len(seen)))
        self._reset()
        return names, values

    def _reset(self) -> None:
        self.gauges_touched = set()
        self._flushes += 1
        self._forget()
        if self.delete_idle:
            self.counters, self.timers, self.timer_counts = {}, {}, {}
            self.histograms, self.histogram_counts, self.sets = {}, {}, {}
            self.gauges = {}
            return
        # statsd's defaults: seen names go on reporting zeros, gauges their last value
        self.counters = dict.fromkeys(self.counters, 0.0)
        self.timers = {}
        self.timer_counts = dict.fromkeys(self.timer_counts, 0.0)
        self.histograms = {}
        self.histogram_counts = dict.fromkeys(self.histogram_counts, 0.0)
        self.sets = {k: set() for k in self.sets}

    def _forget(self) -> None:
        """Drop the names that received nothing for forget_after flushes."""
        oldest = self._flushes - self.forget_after
        stale = [k for k, at in self.last_seen.items() if at < oldest]
        for k in stale:
            del self.last_seen[k]
            for table in (self.counters, self.gauges, self.timers, self.timer_counts,
                          self.histograms, self.histogram_counts, self.sets):
                table.pop(k, None)

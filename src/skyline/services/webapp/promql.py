"""The subset of PromQL the Prometheus-compatible API serves (pure; linear time).

    query      := selector [ "[" duration "]" ] [ comparison number ]
    selector   := [ metric_name ] [ "{" [ matcher { "," matcher } [ "," ] ] "}" ]
    matcher    := label_name ( "=" | "!=" | "=~" | "!~" ) string
    comparison := ">" | ">=" | "<" | "<=" | "==" | "!="

A metric name is Prometheus' (`[a-zA-Z_:][a-zA-Z0-9_:]*`); a dotted Graphite name is selected
as `{__name__="a.b.c"}`. Strings are double-, single- or back-quoted with Prometheus' escapes.
Regular expressions are RE2, anchored at both ends as Prometheus anchors them, so matching
takes linear time whatever a client sends. Anything else (functions, aggregations,
arithmetic, offset, @, subqueries) raises Unsupported, which the API answers in Prometheus'
own error shape.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt
import re2

MAX_QUERY_LENGTH = 16_384
_NAME = re.compile(r"[a-zA-Z_:][a-zA-Z0-9_:]*")
_LABEL = re.compile(r"[a-zA-Z_][a-zA-Z0-9_]*")
_DURATION = re.compile(r"(?:(\d+)(ms|y|w|d|h|m|s))+$")
_DURATION_PART = re.compile(r"(\d+)(ms|y|w|d|h|m|s)")
_UNITS = {"ms": 0.001, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800, "y": 31536000}
_NUMBER = re.compile(r"[-+]?(?:\d+\.?\d*(?:[eE][-+]?\d+)?|\.\d+(?:[eE][-+]?\d+)?|[iI]nf|NaN)")
_COMPARISONS = (">=", "<=", "==", "!=", ">", "<")
_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v",
            "\\": "\\", '"': '"', "'": "'"}


class Unsupported(ValueError):
    """The query is not (or not yet) in the served subset, or is malformed."""


@dataclass(frozen=True)
class Matcher:
    label: str
    op: str  # = != =~ !~
    value: str
    regex: re2._Regexp | None = field(default=None, compare=False)

    def matches(self, got: str) -> bool:
        if self.op == "=":
            return got == self.value
        if self.op == "!=":
            return got != self.value
        assert self.regex is not None
        hit = self.regex.fullmatch(got) is not None
        return hit if self.op == "=~" else not hit


@dataclass(frozen=True)
class Selector:
    matchers: tuple[Matcher, ...]
    range: float | None = None  # seconds of a range vector selector `x[5m]`
    comparison: tuple[str, float] | None = None

    def name(self) -> str | None:
        """The metric name when the selector fixes it with `=`."""
        for m in self.matchers:
            if m.label == "__name__" and m.op == "=":
                return m.value
        return None

    def label_value(self, label: str) -> str | None:
        for m in self.matchers:
            if m.label == label and m.op == "=":
                return m.value
        return None

    def matches(self, labels: dict[str, str]) -> bool:
        # an absent label matches as the empty string, as in Prometheus
        return all(m.matches(labels.get(m.label, "")) for m in self.matchers)

    def compare(self, values: npt.NDArray[np.float64]) -> npt.NDArray[np.bool_]:
        """The comparison's mask over an array of values (all True without one)."""
        v = np.asarray(values)
        if self.comparison is None:
            return np.ones(v.shape, dtype=bool)
        op, x = self.comparison
        with np.errstate(invalid="ignore"):
            return {">": v > x, ">=": v >= x, "<": v < x, "<=": v <= x, "==": v == x,
                    "!=": v != x}[op]


def parse_duration(text: str) -> float:
    """Prometheus' durations (`5m`, `1h30m`, `500ms`) or plain seconds (`15`, `0.5`)."""
    t = text.strip()
    try:
        x = float(t)
    except ValueError:
        pass
    else:
        if not math.isfinite(x) or x < 0:
            raise Unsupported(f"invalid duration {text!r}")
        return x
    if not _DURATION.match(t):
        raise Unsupported(f"invalid duration {text!r}: use e.g. 15s, 5m, 1h30m or seconds")
    return sum(int(n) * _UNITS[u] for n, u in _DURATION_PART.findall(t))


class _Reader:
    def __init__(self, text: str):
        self.s = text
        self.i = 0

    def ws(self) -> None:
        while self.i < len(self.s) and self.s[self.i] in " \t\r\n":
            self.i += 1

    def peek(self, token: str) -> bool:
        self.ws()
        return self.s.startswith(token, self.i)

    def take(self, token: str) -> bool:
        if self.peek(token):
            self.i += len(token)
            return True
        return False

    def expect(self, token: str) -> None:
        if not self.take(token):
            raise self.error(f"expected {token!r}")

    def match(self, pattern: re.Pattern[str]) -> str | None:
        self.ws()
        m = pattern.match(self.s, self.i)
        if not m:
            return None
        self.i = m.end()
        return m.group(0)

    def error(self, what: str) -> Unsupported:
        near = self.s[self.i : self.i + 20]
        return Unsupported(f"{what} at character {self.i + 1} (near {near!r})"
                           if near else f"{what} at the end of the query")

    def string(self) -> str:
        self.ws()
        if self.i >= len(self.s) or self.s[self.i] not in "\"'`":
            raise self.error("expected a quoted string")
        quote = self.s[self.i]
        self.i += 1
        out: list[str] = []
        while self.i < len(self.s):
            c = self.s[self.i]
            if c == quote:
                self.i += 1
                return "".join(out)
            if c == "\\" and quote != "`":
                self.i += 1
                if self.i >= len(self.s):
                    break
                e = self.s[self.i]
                if e in _ESCAPES:
                    out.append(_ESCAPES[e])
                elif e in "xuU" or e.isdigit():
                    out.append(self._code(e))
                    continue
                else:
                    raise self.error(f"unknown escape \\{e}")
                self.i += 1
                continue
            out.append(c)
            self.i += 1
        raise self.error("unterminated string")

    def _code(self, kind: str) -> str:
        n = {"x": 2, "u": 4, "U": 8}.get(kind, 3)
        start = self.i + (0 if kind.isdigit() else 1)
        digits = self.s[start : start + n]
        base = 8 if kind.isdigit() else 16
        try:
            code = int(digits, base)
            if len(digits) != n:
                raise ValueError
            ch = chr(code)
        except ValueError:
            raise self.error("bad escape") from None
        self.i = start + n
        return ch


def _re2_options() -> re2.Options:
    o = re2.Options()
    o.log_errors = False  # the error goes to the client, not to stderr
    o.dot_nl = True  # as Prometheus: `.` matches a newline too
    return o


_RE2_OPTIONS = _re2_options()


def _matcher(label: str, op: str, value: str) -> Matcher:
    regex = None
    if op in ("=~", "!~"):
        try:
            # RE2: linear time; Prometheus anchors a matcher's regex at both ends (fullmatch)
            regex = re2.compile(value, options=_RE2_OPTIONS)
        except re2.error as e:
            msg = e.args[0].decode() if e.args and isinstance(e.args[0], bytes) else str(e)
            raise Unsupported(f"invalid regular expression {value!r}: {msg}") from None
    return Matcher(label, op, value, regex)


def parse(query: str) -> Selector:
    """The selector a query names; Unsupported (with the reason) otherwise."""
    if len(query) > MAX_QUERY_LENGTH:
        raise Unsupported(f"the query is over {MAX_QUERY_LENGTH} characters")
    r = _Reader(query)
    matchers: list[Matcher] = []
    name = r.match(_NAME)
    if name is not None:
        if r.peek("("):
            raise Unsupported(f"function or aggregation {name}(...) is not supported: "
                              "Skyline's Prometheus API serves series selectors only "
                              "(docs/grafana.md)")
        if name in ("by", "without", "offset", "bool", "on", "ignoring"):
            raise Unsupported(f"{name!r} is not supported (docs/grafana.md)")
        matchers.append(Matcher("__name__", "=", name))
    if r.take("{"):
        while not r.take("}"):
            label = r.match(_LABEL)
            if label is None:
                raise r.error("expected a label name")
            op = next((o for o in ("=~", "!~", "!=", "=") if r.take(o)), None)
            if op is None:
                raise r.error("expected =, !=, =~ or !~")
            matchers.append(_matcher(label, op, r.string()))
            if not r.take(","):
                r.expect("}")
                break
    elif name is None:
        r.ws()
        raise r.error("expected a metric name or {")
    if not matchers or all(m.matches("") for m in matchers):
        raise Unsupported("vector selector must contain at least one non-empty matcher")
    rng = None
    if r.take("["):
        r.ws()
        end = r.s.find("]", r.i)
        if end < 0:
            raise r.error("unterminated [")
        rng = parse_duration(r.s[r.i : end])
        if rng <= 0:
            raise Unsupported("a range must be positive")
        r.i = end + 1
    comparison = None
    op = next((o for o in _COMPARISONS if r.take(o)), None)
    if op is not None:
        if rng is not None:
            raise Unsupported("a comparison of a range vector is not supported")
        if r.take("bool"):
            raise Unsupported("the bool modifier is not supported")
        num = r.match(_NUMBER)
        if num is None:
            raise r.error("expected a number after the comparison (only `selector "
                          "<op> number` is supported)")
        comparison = (op, float(num))
    r.ws()
    if r.i != len(r.s):
        raise r.error("unsupported expression: Skyline's Prometheus API serves series "
                      "selectors, optionally compared with a number (docs/grafana.md)")
    return Selector(tuple(matchers), rng, comparison)


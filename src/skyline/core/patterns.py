"""The one namespace matcher used everywhere a metric name is matched.

A pattern is either a glob over the dotted name, matched against the whole name
(`*` matches within one dotted element, `**` across elements, `?` one character other
than a dot), or a regular expression written `re:<regex>`, which is searched anywhere in
the name (anchor it with ^ and $ for a whole-name match).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

from skyline.core.errors import PatternError

REGEX_PREFIX = "re:"
_REGEX_CHARS = set("^$*+?[](){}|\\")


# A labelled series is `name{k="v",...}`; its label set belongs to the last element, so the
# dots inside label values are not element separators.
_LABEL_SET = r'\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}'
_IN_ELEMENT = rf"[^.{{]*(?:{_LABEL_SET}[^.{{]*)*"  # unrolled: no backtracking blow-up


def glob_to_regex(glob: str) -> str:
    out: list[str] = []
    in_labels = False  # inside a literal `{...}` of the pattern: `*` stops only at `}`
    i = 0
    while i < len(glob):
        c = glob[i]
        if c == "*":
            if glob.startswith("**", i):
                out.append(".*")
                i += 2
                continue
            out.append(r"[^}]*" if in_labels else _IN_ELEMENT)
        elif c == "?":
            out.append(r"[^}]" if in_labels else r"[^.]")
        else:
            if c == "{":
                in_labels = True
            elif c == "}":
                in_labels = False
            out.append(re.escape(c))
        i += 1
    return "^" + "".join(out) + r"\Z"


@lru_cache(maxsize=4096)
def compile_pattern(pattern: str) -> re.Pattern[str]:
    if not isinstance(pattern, str) or not pattern:
        raise PatternError(f"empty pattern {pattern!r}")
    if pattern.startswith(REGEX_PREFIX):
        body = pattern[len(REGEX_PREFIX) :]
        try:
            return re.compile(body)
        except re.error as e:
            raise PatternError(f"invalid regular expression {body!r}: {e}") from None
    return re.compile(glob_to_regex(pattern))


def validate(pattern: str) -> None:
    compile_pattern(pattern)


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).search(name) is not None


class PatternSet:
    """An ordered list of patterns compiled once; answers 'any' and 'first' questions."""

    def __init__(self, patterns: Iterable[str] = ()):
        self.patterns: tuple[str, ...] = tuple(patterns)
        self._compiled = [compile_pattern(p) for p in self.patterns]

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def __len__(self) -> int:
        return len(self.patterns)

    def any(self, name: str) -> bool:
        return any(c.search(name) is not None for c in self._compiled)

    def first(self, name: str) -> int | None:
        """Index of the first pattern that matches, or None."""
        for i, c in enumerate(self._compiled):
            if c.search(name) is not None:
                return i
        return None

    def all(self, name: str) -> list[int]:
        return [i for i, c in enumerate(self._compiled) if c.search(name) is not None]

    def filter(self, names: Iterable[str]) -> list[str]:
        return [n for n in names if self.any(n)]


def skipped(name: str, skip: PatternSet, do_not_skip: PatternSet) -> bool:
    """SKIP_LIST semantics: skipped when a skip pattern matches and no do-not-skip one does."""
    return skip.any(name) and not do_not_skip.any(name)


def from_upstream(pattern: str) -> str:
    """Convert an upstream Skyline namespace pattern to ours.

    Upstream (earthgecko's matched_or_regexed_in_list) matched an entry when it was a substring
    of the name, or when every dotted element of the entry appeared among the name's elements,
    or when the entry, read as a regular expression, matched at the start of the name. The
    result is one regex keeping those readings: the substring always; the dotted elements when
    the entry has two or more, all distinct and non-empty (otherwise upstream's element test
    could never succeed); the regular expression, anchored at the start, only when the entry
    holds regex characters other than `.` and compiles.
    """
    if pattern.startswith(REGEX_PREFIX):
        return pattern
    readings = [re.escape(pattern)]
    elements = pattern.split(".")
    if len(elements) > 1 and "" not in elements and len(set(elements)) == len(elements):
        lookaheads = "".join(rf"(?=(?:.*\.)?{re.escape(e)}(?:\.|$))" for e in elements)
        readings.append("^" + lookaheads)
    if any(c in _REGEX_CHARS for c in pattern):
        regex = f"^(?:{pattern})"
        try:
            re.compile(regex)
        except re.error:
            pass  # upstream, too, ignored an entry that is not a valid regex
        else:
            readings.append(regex)
    return REGEX_PREFIX + "|".join(readings)


def from_upstream_list(patterns: Sequence[str]) -> list[str]:
    return [from_upstream(p) for p in patterns]

"""The one namespace matcher used everywhere a metric name is matched.

A pattern is either a glob over the dotted name, matched against the whole name
(`*` matches within one dotted element, `**` across elements, `?` one character other
than a dot), or a regular expression written `re:<regex>`, which is searched anywhere in
the name (anchor it with ^ and $ for a whole-name match).

Patterns come from people who may not be trusted (API searches, silences), so every pattern
runs on RE2, an automaton engine whose time is linear in the name whatever the pattern: a
backtracking engine (Python's `re`) takes time exponential in the pattern on names such as
`^zz([a-z_.]+)*!` against `zzaaaa...` and freezes the process. RE2 has no look-around and no
back-references; such regexes are refused with a clear message. Patterns are also capped in
length (MAX_PATTERN_LENGTH), globs in wildcards (MAX_WILDCARDS), and each compiled automaton
in memory (RE2_MAX_MEM), so a pattern costs bounded memory too.
"""

from __future__ import annotations

import itertools
import re
from collections.abc import Iterable, Sequence
from functools import lru_cache

import re2
from re2 import _re2  # the bound C++ object: 5x cheaper per call than re2's Python wrapper

from skyline.core.errors import PatternError

REGEX_PREFIX = "re:"
MAX_PATTERN_LENGTH = 1024
MAX_WILDCARDS = 32
RE2_MAX_MEM = 512 * 1024  # bytes of automaton per compiled pattern (compile and DFA cache)
_CACHE_PATTERNS = 256  # so the compiled-pattern cache holds at most ~128 MiB of automata
_REGEX_CHARS = set("^$*+?[](){}|\\")
#: upstream entries with more dotted elements than this lose the any-order element reading
#: (it is spelled as every ordering of the elements: k! alternatives)
MAX_UPSTREAM_ELEMENTS = 4

_UNANCHORED = _re2.RE2.Anchor.UNANCHORED


def _options() -> re2.Options:
    o = re2.Options()
    o.log_errors = False  # RE2 would print every refused pattern on stderr
    o.max_mem = RE2_MAX_MEM
    o.never_capture = True  # only "does it match" is asked: the fastest automaton
    return o


# A labelled series is `name{k="v",...}`; its label set belongs to the last element, so the
# dots inside label values are not element separators.
_LABEL_SET = r'\{(?:[^"}]|"(?:[^"\\]|\\.)*")*\}'
_IN_ELEMENT = rf"[^.{{]*(?:{_LABEL_SET}[^.{{]*)*"


def glob_to_regex(glob: str) -> str:
    """The RE2 regex a glob stands for, anchored at both ends of the name."""
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
    return "^" + "".join(out) + "$"


def _wildcards(glob: str) -> int:
    return glob.count("?") + len(re.findall(r"\*\*|\*", glob))


class Pattern:
    """One compiled pattern: `matches(name)`, `filter(names)`."""

    __slots__ = ("text", "regex", "_one")

    def __init__(self, text: str):
        self.text = text
        if text.startswith(REGEX_PREFIX):
            self.regex = text[len(REGEX_PREFIX):]
            what = f"invalid regular expression {self.regex!r}"
        else:
            if _wildcards(text) > MAX_WILDCARDS:
                raise PatternError(f"pattern {_short(text)} has more than {MAX_WILDCARDS} "
                                   "wildcards (* ** ?)")
            self.regex = glob_to_regex(text)
            what = f"pattern {_short(text)}"
        self._one = self._compile(self.regex, what)

    @staticmethod
    def _compile(regex: str, what: str) -> _re2.RE2:
        rx = _re2.RE2(regex.encode(), _options())
        if not rx.ok():
            err = rx.error()
            reason = err.decode(errors="replace") if isinstance(err, bytes) else str(err)
            if "pattern too large" in reason:
                reason = "too complex (its automaton would exceed the memory allowed)"
            raise PatternError(f"{what}: {reason} (RE2 syntax: no look-around or "
                               "back-references)")
        return rx

    def matches(self, name: str) -> bool:
        b = name.encode()
        return self._one.Match(_UNANCHORED, b, 0, len(b))[0][0] >= 0

    def filter(self, names: Iterable[str]) -> list[str]:
        """The names this pattern matches, in their order."""
        match = self._one.Match
        out = []
        for name in names:
            b = name.encode()
            if match(_UNANCHORED, b, 0, len(b))[0][0] >= 0:
                out.append(name)
        return out

    def __reduce__(self) -> tuple[type[Pattern], tuple[str]]:
        return (Pattern, (self.text,))

    def __repr__(self) -> str:
        return f"Pattern({self.text!r})"


def _short(text: str) -> str:
    return repr(text if len(text) <= 80 else text[:77] + "...")


@lru_cache(maxsize=_CACHE_PATTERNS)
def _compiled(pattern: str) -> Pattern:
    return Pattern(pattern)


def compile_pattern(pattern: str) -> Pattern:
    """The compiled pattern; PatternError (with the reason) when it is empty, too long, has
    too many wildcards or is not a valid RE2 regular expression."""
    if not isinstance(pattern, str) or not pattern:
        raise PatternError(f"empty pattern {pattern!r}")
    if len(pattern) > MAX_PATTERN_LENGTH:
        raise PatternError(f"pattern {_short(pattern)} is {len(pattern)} characters long; "
                           f"at most {MAX_PATTERN_LENGTH}")
    return _compiled(pattern)


def validate(pattern: str) -> None:
    compile_pattern(pattern)


def matches(pattern: str, name: str) -> bool:
    return compile_pattern(pattern).matches(name)


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
        return any(c.matches(name) for c in self._compiled)

    def first(self, name: str) -> int | None:
        """Index of the first pattern that matches, or None."""
        for i, c in enumerate(self._compiled):
            if c.matches(name):
                return i
        return None

    def all(self, name: str) -> list[int]:
        return [i for i, c in enumerate(self._compiled) if c.matches(name)]

    def filter(self, names: Iterable[str]) -> list[str]:
        """The names any pattern matches, in their order (one pass per pattern)."""
        if len(self._compiled) == 1:
            return self._compiled[0].filter(names)
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
    the entry has two to MAX_UPSTREAM_ELEMENTS, all distinct and non-empty (otherwise
    upstream's element test could never succeed; beyond that the orderings are too many to
    spell without look-ahead, which RE2 lacks); the regular expression, anchored at the start,
    only when the entry holds regex characters other than `.` and RE2 compiles it.
    """
    if pattern.startswith(REGEX_PREFIX):
        return pattern
    readings = [re.escape(pattern)]
    elements = pattern.split(".")
    if (1 < len(elements) <= MAX_UPSTREAM_ELEMENTS and "" not in elements
            and len(set(elements)) == len(elements)):
        orders = [r"\.(?:.*\.)?".join(re.escape(e) for e in order)
                  for order in itertools.permutations(elements)]
        readings.append(r"(?:^|\.)(?:" + "|".join(orders) + r")(?:\.|$)")
    if any(c in _REGEX_CHARS for c in pattern):
        regex = f"^(?:{pattern})"
        if _re2.RE2(regex.encode(), _options()).ok():
            readings.append(regex)
        # else: upstream, too, ignored an entry that is not a valid regex
    return REGEX_PREFIX + "|".join(readings)


def from_upstream_list(patterns: Sequence[str]) -> list[str]:
    return [from_upstream(p) for p in patterns]

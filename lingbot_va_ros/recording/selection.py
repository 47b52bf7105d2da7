"""Which topics to record: exact names plus globs, with one meaning for the built-in recorder and for the
regular expressions handed to ``ros2 bag record``.

Glob syntax (ROS names): ``*`` matches within one name segment, ``**`` across segments, ``?`` one character.
"""
from __future__ import annotations

import re
from typing import Iterable

_GLOB_CHARS = set("*?[")


def is_glob(pattern: str) -> bool:
    return any(c in _GLOB_CHARS for c in pattern)


def glob_to_regex(pattern: str) -> str:
    """An unanchored regex body, valid in both Python and ECMAScript (rosbag2 uses std::regex)."""
    out, i = [], 0
    while i < len(pattern):
        c = pattern[i]
        if pattern.startswith("**", i):
            out.append(".*")
            i += 2
            continue
        if c == "*":
            out.append("[^/]*")
        elif c == "?":
            out.append("[^/]")
        elif c == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(c))
            else:
                body = pattern[i + 1:end].replace("\\", "\\\\")
                out.append(f"[^{body[1:]}]" if body.startswith("!") else f"[{body}]")
                i = end
        else:
            out.append(re.escape(c))
        i += 1
    return "".join(out)


def anchored_alternation(patterns: Iterable[str]) -> str:
    """One anchored regex matching any of the given names/globs: ``^(a|b)$``."""
    bodies = [glob_to_regex(p) if is_glob(p) else re.escape(p) for p in patterns]
    return f"^({'|'.join(bodies)})$" if bodies else ""


class TopicSelector:
    def __init__(self, include: Iterable[str], exclude: Iterable[str] = ()):
        self.include = list(include)
        self.exclude = list(exclude)
        self._include = re.compile(anchored_alternation(self.include)) if self.include else None
        self._exclude = re.compile(anchored_alternation(self.exclude)) if self.exclude else None

    def matches(self, topic: str) -> bool:
        if self._include is None or not self._include.match(topic):
            return False
        return not (self._exclude is not None and self._exclude.match(topic))

    @property
    def exact_names(self) -> list[str]:
        return [p for p in self.include if not is_glob(p)]

    @property
    def globs(self) -> list[str]:
        return [p for p in self.include if is_glob(p)]

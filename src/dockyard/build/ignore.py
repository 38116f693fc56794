""".dockerignore: Docker's pattern rules (moby/patternmatcher).

Each non-comment line is a pattern, cleaned like a path, a leading ``/``
dropped; ``!`` makes it an exception. ``*`` and ``?`` match within one path
component, ``**`` any number of components, ``[...]`` a character class,
``\\`` escapes. A path is excluded when the last pattern that matches it --
or one of its parent directories -- is not an exception.
"""

from __future__ import annotations

import posixpath
import re

from dockyard.build import BuildError
from dockyard.records import record

_REGEX_SPECIAL = set(".+()|{}$^")


def read_patterns(text: str) -> list[str]:
    """The patterns of a .dockerignore file, normalized as Docker's CLI does."""
    patterns = []
    for line in text.splitlines():
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        invert = line.startswith("!")
        if invert:
            line = line[1:].strip()
        if line:
            line = posixpath.normpath(line)
            if len(line) > 1 and line.startswith("/"):
                line = line.lstrip("/") or "."
        patterns.append("!" + line if invert else line)
    return patterns


@record
class _Pattern:
    text: str
    exclusion: bool
    regex: re.Pattern[str]


def _compile(pattern: str) -> re.Pattern[str]:
    out = ["^"]
    i = 0
    n = len(pattern)
    while i < n:
        ch = pattern[i]
        i += 1
        if ch == "*":
            if i < n and pattern[i] == "*":
                i += 1
                if i < n and pattern[i] == "/":
                    i += 1
                out.append(".*" if i >= n else "(.*/)?")
            else:
                out.append("[^/]*")
        elif ch == "?":
            out.append("[^/]")
        elif ch in _REGEX_SPECIAL:
            out.append("\\" + ch)
        elif ch == "\\":
            if i < n:
                out.append(re.escape(pattern[i]))
                i += 1
            else:
                out.append("\\\\")
        elif ch == "[":
            out.append("[")
            if i < n and pattern[i] == "^":
                out.append("^")
                i += 1
        elif ch == "]":
            out.append("]")
        else:
            out.append(re.escape(ch))
    out.append("$")
    try:
        return re.compile("".join(out), re.DOTALL)
    except re.error:
        raise BuildError(f"syntax error in pattern: {pattern}") from None


class Matcher:
    """Decides which context paths ("dir/file", no leading slash) are excluded."""

    def __init__(self, patterns: list[str]) -> None:
        self.patterns: list[_Pattern] = []
        for text in patterns:
            exclusion = text.startswith("!")
            body = text[1:] if exclusion else text
            if not body:
                raise BuildError('illegal exclusion pattern: "!"')
            body = posixpath.normpath(body)
            self.patterns.append(_Pattern(body, exclusion, _compile(body)))
        self.has_exceptions = any(p.exclusion for p in self.patterns)

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def excluded(self, path: str) -> bool:
        """``MatchesOrParentMatches``: the file or one of its parents is excluded."""
        path = path.strip("/")
        parent = posixpath.dirname(path)
        parents = parent.split("/") if parent else []
        matched = False
        for pattern in self.patterns:
            if pattern.exclusion != matched:
                continue
            hit = bool(pattern.regex.match(path))
            if not hit and parents:
                for i in range(len(parents)):
                    if pattern.regex.match("/".join(parents[: i + 1])):
                        hit = True
                        break
            if hit:
                matched = not pattern.exclusion
        return matched

    def may_include_below(self, directory: str) -> bool:
        """Whether an exception pattern might re-include something below an excluded dir."""
        if not self.has_exceptions:
            return False
        directory = directory.strip("/")
        for pattern in self.patterns:
            if not pattern.exclusion:
                continue
            text = pattern.text
            if "**" in text or text.startswith("*"):
                return True
            prefix = text.split("/")
            parts = directory.split("/")
            if len(prefix) <= len(parts):
                continue
            if all(re.match(_compile(p).pattern, d) for p, d in zip(prefix, parts, strict=False)):
                return True
        return False

"""Variable substitution in Dockerfile words, with Docker's rules (its shell lexer).

Only a subset of sh: quotes (``'...'`` literal, ``"..."`` with ``$`` expansion
and ``\\`` escaping ``"``, ``$`` and the escape character), the escape
character outside quotes, ``$VAR``, ``${VAR}``, ``${VAR:-w}``, ``${VAR-w}``,
``${VAR:+w}``, ``${VAR+w}``, ``${VAR:?msg}``, ``${VAR?msg}``, ``${VAR#p}``,
``${VAR##p}``, ``${VAR%p}``, ``${VAR%%p}`` and ``${VAR/p/r}``, ``${VAR//p/r}``.
``process_word`` keeps one string; ``process_words`` also splits on unquoted
white space (the result of an unquoted ``$VAR`` is split too).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping

from dockyard.build import BuildError

_EOF = ""
_SPECIAL_PARAMS = set("@*#?-$!0")


class ShellError(BuildError):
    """A malformed word: unterminated quote, bad substitution, ``${X:?}`` unset."""


class _Words:
    """Collects words for ``process_words``: unquoted white space separates them."""

    def __init__(self) -> None:
        self.words: list[str] = []
        self.word: list[str] = []
        self.in_word = False

    def add_char(self, ch: str) -> None:
        if ch.isspace():
            if self.in_word and self.word:
                self.words.append("".join(self.word))
                self.word = []
                self.in_word = False
        else:
            self.add_raw(ch)

    def add_raw(self, text: str) -> None:
        self.word.append(text)
        self.in_word = True

    def add_string(self, text: str) -> None:
        for ch in text:
            self.add_char(ch)

    def result(self) -> list[str]:
        if self.word:
            self.words.append("".join(self.word))
            self.word = []
            self.in_word = False
        return self.words


class Lexer:
    """Docker's word processor; ``escape`` is the Dockerfile's escape character."""

    def __init__(
        self,
        escape: str = "\\",
        *,
        raw_quotes: bool = False,
        raw_escapes: bool = False,
        skip_unset: bool = False,
        skip_quotes: bool = False,
    ) -> None:
        self.escape = escape
        self.raw_quotes = raw_quotes
        self.raw_escapes = raw_escapes
        self.skip_unset = skip_unset
        self.skip_quotes = skip_quotes

    def process_word(self, word: str, env: Mapping[str, str]) -> str:
        return _Scan(self, word, env).process()[0]

    def process_words(self, word: str, env: Mapping[str, str]) -> list[str]:
        return _Scan(self, word, env).process()[1]

    def used_names(self, word: str, env: Mapping[str, str]) -> set[str]:
        """The variables of ``env`` the word refers to (for the cache and warnings)."""
        scan = _Scan(self, word, env)
        scan.process()
        return scan.used


class _Scan:
    def __init__(self, lexer: Lexer, text: str, env: Mapping[str, str]) -> None:
        self.lx = lexer
        self.text = text
        self.pos = 0
        self.env = env
        self.raw_escapes = lexer.raw_escapes
        self.used: set[str] = set()

    def peek(self) -> str:
        return self.text[self.pos] if self.pos < len(self.text) else _EOF

    def next(self) -> str:
        if self.pos >= len(self.text):
            return _EOF
        ch = self.text[self.pos]
        self.pos += 1
        return ch

    def process(self) -> tuple[str, list[str]]:
        return self.stop_on(_EOF, self.lx.raw_escapes)

    def stop_on(self, stop: str, raw_escapes: bool) -> tuple[str, list[str]]:
        result: list[str] = []
        words = _Words()
        saved, self.raw_escapes = self.raw_escapes, raw_escapes
        try:
            handlers: dict[str, Callable[[], str]] = {"$": self.dollar, "<": self.heredoc_marker}
            if not self.lx.skip_quotes:
                handlers["'"] = self.single_quote
                handlers['"'] = self.double_quote
            while self.peek() != _EOF:
                ch = self.peek()
                if stop and ch == stop:
                    self.next()
                    return "".join(result), words.result()
                handler = handlers.get(ch)
                if handler is not None:
                    text = handler()
                    result.append(text)
                    if ch == "$":
                        words.add_string(text)
                    else:
                        words.add_raw(text)
                    continue
                ch = self.next()
                if ch == self.lx.escape:
                    if self.raw_escapes:
                        words.add_raw(ch)
                        result.append(ch)
                    ch = self.next()
                    if ch == _EOF:
                        break
                    words.add_raw(ch)
                else:
                    words.add_char(ch)
                result.append(ch)
        finally:
            self.raw_escapes = saved
        if stop:
            raise ShellError(f"unexpected end of statement while looking for matching {stop}")
        return "".join(result), words.result()

    def single_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lx.raw_quotes else []
        while True:
            ch = self.next()
            if ch == _EOF:
                raise ShellError(
                    "unexpected end of statement while looking for matching single-quote"
                )
            if ch == "'":
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            out.append(ch)

    def double_quote(self) -> str:
        opening = self.next()
        out = [opening] if self.lx.raw_quotes else []
        while True:
            ch = self.peek()
            if ch == _EOF:
                raise ShellError(
                    "unexpected end of statement while looking for matching double-quote"
                )
            if ch == '"':
                self.next()
                if self.lx.raw_quotes:
                    out.append(ch)
                return "".join(out)
            if ch == "$":
                out.append(self.dollar())
                continue
            ch = self.next()
            if ch == self.lx.escape:
                if self.raw_escapes:
                    out.append(ch)
                following = self.peek()
                if following == _EOF:
                    continue
                if following in ('"', "$", self.lx.escape):
                    ch = self.next()
            out.append(ch)

    def heredoc_marker(self) -> str:
        self.next()
        if self.peek() != "<":
            return "<"
        self.next()
        space = []
        while self.peek() in (" ", "\t"):
            space.append(self.next())
        return "<<" + "".join(space)

    def name(self) -> str:
        out: list[str] = []
        while self.peek() != _EOF:
            ch = self.peek()
            if not out and ch.isdigit():
                while self.peek() != _EOF and self.peek().isdigit():
                    out.append(self.next())
                return "".join(out)
            if not out and ch in _SPECIAL_PARAMS:
                return self.next()
            if not (ch.isalnum() or ch == "_"):
                break
            out.append(self.next())
        return "".join(out)

    def lookup(self, name: str) -> tuple[str, bool]:
        if name in self.env:
            self.used.add(name)
            return self.env[name], True
        return "", False

    def dollar(self) -> str:
        self.next()
        if self.peek() != "{":
            name = self.name()
            if not name:
                return "$"
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "$" + name
            return value
        self.next()
        if self.peek() == _EOF:
            raise ShellError("syntax error: missing '}'")
        if self.peek() in ("{", "}", ":"):
            raise ShellError("syntax error: bad substitution")
        name = self.name()
        ch = self.next()
        if ch == _EOF:
            raise ShellError("syntax error: missing '}'")
        if ch == "}":
            value, found = self.lookup(name)
            if not found and self.lx.skip_unset:
                return "${" + name + "}"
            return value
        if ch == "/":
            return self._replace(name)
        modifier = ch
        null_is_unset = False
        if ch == ":":
            null_is_unset = True
            ch = self.next()
            modifier += ch
        if ch not in ("+", "-", "?", "#", "%"):
            raise ShellError(f"unsupported modifier ({modifier}) in substitution")
        pattern_op = ch in ("#", "%")
        if null_is_unset and pattern_op:
            raise ShellError(f"unsupported modifier ({modifier}) in substitution")
        try:
            word, _ = self.stop_on("}", pattern_op)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if self.lx.skip_unset and not found:
            return "${" + name + modifier + word + "}"
        empty = not found or (null_is_unset and value == "")
        if ch == "-":
            return word if empty else value
        if ch == "+":
            return "" if empty else word
        if ch == "?":
            if not found:
                raise ShellError(f"{name}: {word or 'is not allowed to be unset'}")
            if null_is_unset and value == "":
                raise ShellError(f"{name}: {word or 'is not allowed to be empty'}")
            return value
        greedy = word.startswith(ch)
        if greedy:
            word = word[1:]
        return _trim(value, word, suffix=ch == "%", greedy=greedy)

    def _replace(self, name: str) -> str:
        replace_all = self.peek() == "/"
        if replace_all:
            self.next()
        try:
            pattern, _ = self.stop_on("/", True)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '/' in ${}") from None
            raise
        try:
            replacement, _ = self.stop_on("}", True)
        except ShellError:
            if self.peek() == _EOF:
                raise ShellError("syntax error: missing '}'") from None
            raise
        value, found = self.lookup(name)
        if self.lx.skip_unset and not found:
            return "${" + name + "/" + pattern + "/" + replacement + "}"
        regex = _pattern_regex(pattern, greedy=True)
        return regex.sub(lambda _m: replacement, value, count=0 if replace_all else 1)


def _pattern_regex(pattern: str, *, greedy: bool, anchor: str = "") -> re.Pattern[str]:
    """A shell glob (``*``, ``?``, ``[...]``, ``\\x``) as a regular expression."""
    out: list[str] = []
    i = 0
    while i < len(pattern):
        ch = pattern[i]
        if ch == "\\" and i + 1 < len(pattern):
            out.append(re.escape(pattern[i + 1]))
            i += 2
            continue
        if ch == "*":
            out.append(".*" if greedy else ".*?")
        elif ch == "?":
            out.append(".")
        elif ch == "[":
            end = pattern.find("]", i + 1)
            if end < 0:
                out.append(re.escape(ch))
            else:
                body = pattern[i + 1 : end]
                if body.startswith("!"):
                    body = "^" + body[1:]
                out.append("[" + body.replace("\\", "\\\\") + "]")
                i = end
        else:
            out.append(re.escape(ch))
        i += 1
    body = "".join(out)
    if anchor == "start":
        body = "^(?:" + body + ")"
    elif anchor == "end":
        body = "(?:" + body + ")$"
    try:
        return re.compile(body, re.DOTALL)
    except re.error as err:
        raise ShellError(f"invalid pattern ({pattern}) in substitution: {err}") from None


def _trim(value: str, pattern: str, *, suffix: bool, greedy: bool) -> str:
    """``${V#p}``/``${V##p}`` (prefix) and ``${V%p}``/``${V%%p}`` (suffix)."""
    if not suffix:
        regex = _pattern_regex(pattern, greedy=greedy, anchor="start")
        match = regex.match(value)
        return value[match.end() :] if match else value
    # the shortest suffix match is the latest start; the longest the earliest
    regex = _pattern_regex(pattern, greedy=True, anchor="end")
    starts = range(len(value) + 1) if greedy else range(len(value), -1, -1)
    for start in starts:
        if regex.fullmatch(value, start):
            return value[:start]
    return value


def env_map(env: list[str]) -> dict[str, str]:
    """``["K=V", ...]`` as a dict (later entries win)."""
    out: dict[str, str] = {}
    for item in env:
        key, _, value = item.partition("=")
        out[key] = value
    return out

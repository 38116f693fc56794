"""Variable interpolation in Compose files and the ``.env`` file format.

Compose substitutes ``$VAR``, ``${VAR}``, ``${VAR:-default}``, ``${VAR-default}``,
``${VAR:?error}``, ``${VAR?error}``, ``${VAR:+alt}``, ``${VAR+alt}`` and ``$$`` in
every string value of the file (never in keys), before validation, so that a
substituted value is checked like a written one. Defaults and alternatives may
themselves contain substitutions.
"""

from __future__ import annotations

import re
import sys
from collections.abc import Callable, Mapping
from typing import Any

from dockyard.errors import InvalidArgument

_NAME = re.compile(r"[_a-zA-Z][_a-zA-Z0-9]*")

Lookup = Callable[[str], "str | None"]


class InterpolationError(InvalidArgument):
    """A ``${VAR:?message}`` whose variable is missing, or a malformed ``${...}``."""


def _find_close(text: str, start: int) -> int:
    """Index of the ``}`` closing the ``${`` whose body starts at ``start``."""
    depth = 1
    i = start
    while i < len(text):
        if text.startswith("$$", i):
            i += 2
            continue
        if text.startswith("${", i):
            depth += 1
            i += 2
            continue
        if text[i] == "}":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    return -1


def substitute(text: str, lookup: Lookup, warn: Callable[[str], None] | None = None) -> str:
    """``text`` with every variable reference replaced, by Compose's rules.

    An unset variable without a default becomes "" (with a warning, as Compose);
    ``:?``/``?`` raise InterpolationError with the user's message.
    """
    if "$" not in text:
        return text
    out: list[str] = []
    i = 0
    while i < len(text):
        ch = text[i]
        if ch != "$":
            j = text.find("$", i)
            j = len(text) if j < 0 else j
            out.append(text[i:j])
            i = j
            continue
        nxt = text[i + 1 : i + 2]
        if nxt == "$":
            out.append("$")
            i += 2
            continue
        if nxt == "{":
            close = _find_close(text, i + 2)
            if close < 0:
                raise InterpolationError(f'invalid interpolation format for "{text}": missing }}')
            out.append(_expand(text[i + 2 : close], text, lookup, warn))
            i = close + 1
            continue
        match = _NAME.match(text, i + 1)
        if not match:
            out.append("$")  # a lone "$" stays, as Compose leaves it
            i += 1
            continue
        out.append(_value(match.group(0), lookup, warn))
        i = match.end()
    return "".join(out)


def _value(name: str, lookup: Lookup, warn: Callable[[str], None] | None) -> str:
    value = lookup(name)
    if value is None:
        if warn is not None:
            warn(f'The "{name}" variable is not set. Defaulting to a blank string.')
        return ""
    return value


def _expand(body: str, whole: str, lookup: Lookup, warn: Callable[[str], None] | None) -> str:
    match = _NAME.match(body)
    if not match:
        raise InterpolationError(f'invalid interpolation format for "{whole}": "${{{body}}}"')
    name = match.group(0)
    rest = body[match.end() :]
    if not rest:
        return _value(name, lookup, warn)
    value = lookup(name)
    for op in (":-", ":?", ":+", "-", "?", "+"):
        if rest.startswith(op):
            arg = rest[len(op) :]
            break
    else:
        raise InterpolationError(f'invalid interpolation format for "{whole}": "${{{body}}}"')
    unset_or_empty = value is None or (op.startswith(":") and value == "")
    if op in (":-", "-"):
        return substitute(arg, lookup, warn) if unset_or_empty else str(value)
    if op in (":+", "+"):
        return "" if unset_or_empty else substitute(arg, lookup, warn)
    if unset_or_empty:  # ":?" or "?"
        message = substitute(arg, lookup, warn)
        raise InterpolationError(
            f"required variable {name} is missing a value" + (f": {message}" if message else "")
        )
    return str(value)


def interpolate_tree(
    data: Any, lookup: Lookup, path: str = "", warn: Callable[[str], None] | None = None
) -> Any:
    """A copy of a loaded YAML tree with every string value substituted.

    Errors name the path of the value: ``services.web.image: required variable ...``.
    """
    if isinstance(data, str):
        try:
            return substitute(data, lookup, warn)
        except InterpolationError as err:
            where = f" {path}" if path else ""
            raise InterpolationError(f"error while interpolating{where}: {err}") from None
    if isinstance(data, dict):
        return {
            k: interpolate_tree(v, lookup, f"{path}.{k}" if path else str(k), warn)
            for k, v in data.items()
        }
    if isinstance(data, list):
        return [interpolate_tree(v, lookup, f"{path}[{i}]", warn) for i, v in enumerate(data)]
    return data


def warn_stderr(message: str) -> None:
    print(f"WARN[0000] {message}", file=sys.stderr)


# -- .env files ------------------------------------------------------------------------

_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "\\": "\\", '"': '"', "$": "$$"}


def parse_dotenv(
    text: str, lookup: Lookup | None = None, source: str = ".env"
) -> dict[str, str | None]:
    """``KEY=VALUE`` lines as Compose reads them (``export`` prefix, comments, quotes).

    Single quotes are literal; double quotes know ``\\n``-style escapes and
    substitute variables; unquoted values lose a `` #`` comment and substitute
    variables. A bare ``KEY`` has the value None (take it from the environment).
    Earlier keys of the file are visible to later substitutions.
    """
    values: dict[str, str | None] = {}

    def look(name: str) -> str | None:
        if name in values and values[name] is not None:
            return values[name]
        return lookup(name) if lookup else None

    lines = text.splitlines()
    i = 0
    while i < len(lines):
        raw = lines[i]
        i += 1
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        if line.startswith("export ") or line.startswith("export\t"):
            line = line[7:].lstrip()
        key, sep, rest = line.partition("=")
        key = key.strip()
        if not _NAME.fullmatch(key) and not re.fullmatch(r"[^\s=#]+", key):
            raise InvalidArgument(
                f"{source} line {i}: unexpected character in variable name {key!r}"
            )
        if not sep:
            values[key] = None
            continue
        rest = rest.lstrip()
        if rest[:1] in ("'", '"'):
            quote = rest[0]
            body = rest[1:]
            while not _closed(body, quote) and i < len(lines):
                body += "\n" + lines[i]
                i += 1
            end = _closing_index(body, quote)
            if end < 0:
                raise InvalidArgument(f"{source} line {i}: unterminated quoted value for {key}")
            inner = body[:end]
            if quote == "'":
                values[key] = inner
            else:
                values[key] = substitute(_unescape(inner), look)
            continue
        comment = re.search(r"\s#", rest)
        if comment:
            rest = rest[: comment.start()]
        values[key] = substitute(rest.strip(), look)
    return values


def _closing_index(body: str, quote: str) -> int:
    i = 0
    while i < len(body):
        if body[i] == "\\" and quote == '"':
            i += 2
            continue
        if body[i] == quote:
            return i
        i += 1
    return -1


def _closed(body: str, quote: str) -> bool:
    return _closing_index(body, quote) >= 0


def _unescape(text: str) -> str:
    out = []
    i = 0
    while i < len(text):
        if text[i] == "\\" and i + 1 < len(text) and text[i + 1] in _ESCAPES:
            out.append(_ESCAPES[text[i + 1]])
            i += 2
            continue
        out.append(text[i])
        i += 1
    return "".join(out)


def read_env_file(
    path: str, lookup: Lookup | None = None, *, what: str = "env file"
) -> dict[str, str | None]:
    """A ``.env``-format file; a missing one is an error naming its path."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except FileNotFoundError:
        raise InvalidArgument(f"{what} {path} not found: no such file or directory") from None
    except OSError as err:
        raise InvalidArgument(f"{what} {path}: {err.strerror or err}") from None
    return parse_dotenv(text, lookup, source=path)


def chain(*maps: Mapping[str, str | None]) -> Lookup:
    """A lookup trying each mapping in turn (earlier ones win); None values are unset."""

    def look(name: str) -> str | None:
        for m in maps:
            value = m.get(name)
            if value is not None:
                return value
        return None

    return look

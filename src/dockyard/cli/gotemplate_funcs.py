"""The functions Docker's ``--format`` templates can call: Go's builtins and Docker's.

Each entry of FUNCS is (callable, fixed parameter types, variadic type or None); types
are "val" (any value, a missing one kept), "any" (missing -> None), "str" and "int",
and the executor checks arguments against them as Go does with reflection.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

from dockyard.cli import gofmt
from dockyard.cli.gofmt import MISSING


class FuncError(Exception):
    """Raised by a template function; reported as ``error calling NAME: MSG``."""


PRIMITIVES = (str, int, float, bool, bytes, bytearray, list, tuple, set, frozenset, type(None))


def truth(v: Any) -> bool:
    """Go's template truth: false, 0, nil and empty containers are false; structs are true."""
    if v is None or v is MISSING:
        return False
    if isinstance(v, (bool, int, float)):
        return v != 0
    if isinstance(v, (str, bytes, bytearray, list, tuple, set, frozenset, Mapping)):
        return len(v) > 0
    return True


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _eq(a: Any, *others: Any) -> bool:
    if not others:
        raise FuncError("missing argument for comparison")
    for b in others:
        nil_a, nil_b = a is None or a is MISSING, b is None or b is MISSING
        if nil_a or nil_b:
            if nil_a and nil_b:
                return True
            continue
        if _is_num(a) and _is_num(b):
            if a == b:
                return True
            continue
        if type(a) is not type(b) and not (isinstance(a, str) and isinstance(b, str)):
            raise FuncError("incompatible types for comparison")
        if isinstance(a, (list, dict, set, bytearray)):
            raise FuncError(f"non-comparable type {gofmt.sprint_value(a)}: {gofmt.type_name(a)}")
        if a == b:
            return True
    return False


def _lt(a: Any, b: Any) -> bool:
    for v in (a, b):
        if not (_is_num(v) or isinstance(v, str)):
            raise FuncError("invalid type for comparison")
    if _is_num(a) != _is_num(b):
        raise FuncError("incompatible types for comparison")
    return bool(a < b)


def _le(a: Any, b: Any) -> bool:
    return _lt(a, b) or _eq(a, b)


def _index_arg(i: Any, cap: int) -> int:
    if i is None or i is MISSING:
        raise FuncError("cannot index slice/array with nil")
    if not isinstance(i, int) or isinstance(i, bool):
        raise FuncError(f"cannot index slice/array with type {gofmt.type_name(i)}")
    if i < 0 or i > cap:
        raise FuncError(f"index out of range: {i}")
    return i


def _index(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise FuncError("index of untyped nil")
    for i in indexes:
        if item is None or item is MISSING:
            raise FuncError("index of nil pointer")
        if isinstance(item, str):
            item = item.encode()
        if isinstance(item, (list, tuple, bytes, bytearray)):
            x = _index_arg(i, len(item))
            if x >= len(item):
                raise FuncError(f"index out of range: {x}")
            item = item[x]
        elif isinstance(item, Mapping):
            if i in item:
                item = item[i]
            elif all(isinstance(v, str) for v in item.values()):
                item = ""  # zero value of map[string]string, e.g. labels
            else:
                item = MISSING
        else:
            raise FuncError(f"can't index item of type {gofmt.type_name(item)}")
    return item


def _slice(item: Any, *indexes: Any) -> Any:
    if item is None or item is MISSING:
        raise FuncError("slice of untyped nil")
    if len(indexes) > 3:
        raise FuncError(f"too many slice indexes: {len(indexes)}")
    was_str = isinstance(item, str)
    if was_str:
        if len(indexes) == 3:
            raise FuncError("cannot 3-index slice a string")
        item = item.encode()
    elif not isinstance(item, (list, tuple, bytes, bytearray)):
        raise FuncError(f"can't slice item of type {gofmt.type_name(item)}")
    idx = [0, len(item), len(item)]
    for k, i in enumerate(indexes):
        idx[k] = _index_arg(i, len(item))
    if idx[0] > idx[1]:
        raise FuncError(f"invalid slice index: {idx[0]} > {idx[1]}")
    if len(indexes) == 3 and idx[1] > idx[2]:
        raise FuncError(f"invalid slice index: {idx[1]} > {idx[2]}")
    out = item[idx[0] : idx[1]]
    return out.decode("utf-8", "replace") if was_str else out


def _len(item: Any) -> int:
    if item is None or item is MISSING:
        raise FuncError("len of nil pointer")
    if isinstance(item, str):
        return len(item.encode())
    if isinstance(item, (bytes, bytearray, list, tuple, set, frozenset, Mapping)):
        return len(item)
    raise FuncError(f"len of type {gofmt.type_name(item)}")


def _eval_args(args: tuple[Any, ...]) -> str:
    """The text html/js/urlquery escape (Go's evalArgs: nil prints as <no value>)."""
    if len(args) == 1 and isinstance(args[0], str):
        return args[0]
    return gofmt.sprint(*("<no value>" if a is None else a for a in args))


def _html(*args: Any) -> str:
    s = _eval_args(args)
    table = {'"': "&#34;", "'": "&#39;", "&": "&amp;", "<": "&lt;", ">": "&gt;", "\0": "\ufffd"}
    return "".join(table.get(c, c) for c in s)


def _js(*args: Any) -> str:
    s = _eval_args(args)
    table = {
        "\\": "\\\\",
        "'": "\\'",
        '"': '\\"',
        "<": "\\u003C",
        ">": "\\u003E",
        "&": "\\u0026",
        "=": "\\u003D",
    }
    out = []
    for c in s:
        if c in table:
            out.append(table[c])
        elif ord(c) < 0x20:
            out.append(f"\\u00{ord(c):02X}")
        elif ord(c) >= 0x80 and not c.isprintable():
            out.append(f"\\u{ord(c):04X}")
        else:
            out.append(c)
    return "".join(out)


def _urlquery(*args: Any) -> str:
    from urllib.parse import quote_plus

    return quote_plus(_eval_args(args), safe="")


def _call(fn: Any, *args: Any) -> Any:
    if fn is None or fn is MISSING:
        raise FuncError("call of nil")
    if not callable(fn):
        raise FuncError(f"non-function of type {gofmt.type_name(fn)}")
    return fn(*(None if a is MISSING else a for a in args))


def _json(v: Any) -> str:
    try:
        return gofmt.json_encode(v)
    except ValueError as e:
        raise FuncError(str(e)) from None


def _split(s: str, sep: str) -> list[str]:
    return list(s) if sep == "" else s.split(sep)


def _join(elems: Any, sep: str) -> str:
    if elems is None:
        return ""
    if isinstance(elems, (list, tuple)):
        return sep.join(x if isinstance(x, str) else gofmt.sprint(x) for x in elems)
    if isinstance(elems, Mapping):
        return sep.join(sorted(gofmt.sprint(x) for x in elems.values()))
    raise FuncError(f"expected slice, got {gofmt.type_name(elems)}")


def _map_runes(s: str, upper: bool) -> str:
    if s.isascii():
        return s.upper() if upper else s.lower()
    out = []
    for c in s:
        m = c.upper() if upper else c.lower()
        out.append(m if len(m) == 1 else c)
    return "".join(out)


def _title(s: str) -> str:
    """strings.Title: upper-case letters that follow a separator (Go's isSeparator)."""
    out, prev = [], " "
    for c in s:
        if prev.isascii():
            sep = not (prev.isalnum() or prev == "_")
        else:
            sep = not prev.isalnum() and prev.isspace()
        t = c.title() if sep else c
        out.append(t if len(t) == 1 else c)
        prev = c
    return "".join(out)


def _pad(s: str, prefix: int, suffix: int) -> str:
    if s == "":
        return s
    if prefix < 0 or suffix < 0:
        raise FuncError("strings: negative Repeat count")
    return " " * prefix + s + " " * suffix


def _truncate(s: str, length: int) -> str:
    b = s.encode()
    if len(b) < length:
        return s
    if length < 0:
        raise FuncError(f"runtime error: slice bounds out of range [:{length}]")
    return b[:length].decode("utf-8", "replace")


Sig = tuple[Callable[..., Any], tuple[str, ...], str | None]

FUNCS: dict[str, Sig] = {
    "and": (lambda *a: a[-1], ("val",), "val"),
    "or": (lambda *a: a[-1], ("val",), "val"),
    "not": (lambda v: not truth(v), ("val",), None),
    "len": (_len, ("val",), None),
    "index": (_index, ("val",), "val"),
    "slice": (_slice, ("val",), "val"),
    "eq": (_eq, ("val",), "val"),
    "ne": (lambda a, b: not _eq(a, b), ("val", "val"), None),
    "lt": (_lt, ("val", "val"), None),
    "le": (_le, ("val", "val"), None),
    "gt": (lambda a, b: not _le(a, b), ("val", "val"), None),
    "ge": (lambda a, b: not _lt(a, b), ("val", "val"), None),
    "print": (gofmt.sprint, (), "any"),
    "printf": (gofmt.sprintf, ("str",), "any"),
    "println": (gofmt.sprintln, (), "any"),
    "html": (_html, (), "any"),
    "js": (_js, (), "any"),
    "urlquery": (_urlquery, (), "any"),
    "call": (_call, ("val",), "val"),
    # Docker's additions (docker/cli templates.basicFunctions)
    "json": (_json, ("any",), None),
    "split": (_split, ("str", "str"), None),
    "join": (_join, ("any", "str"), None),
    "title": (_title, ("str",), None),
    "lower": (lambda s: _map_runes(s, False), ("str",), None),
    "upper": (lambda s: _map_runes(s, True), ("str",), None),
    "pad": (_pad, ("str", "int", "int"), None),
    "truncate": (_truncate, ("str", "int"), None),
}

# Docker renders table headers with these replacements, so "{{upper .Name}}" heads "NAME".
HEADER_FUNCS: dict[str, Sig] = dict(FUNCS)
HEADER_FUNCS.update(
    {
        "json": (lambda v: v, ("str",), None),
        "split": (lambda v, _s: v, ("str", "str"), None),
        "join": (lambda v, _s: v, ("str", "str"), None),
        "title": (lambda v: v, ("str",), None),
        "lower": (lambda v: v, ("str",), None),
        "upper": (lambda v: v, ("str",), None),
        "truncate": (lambda v, _n: v, ("str", "int"), None),
    }
)

FUNCTION_NAMES = frozenset(FUNCS)

GO_TYPES = {"str": "string", "int": "int"}

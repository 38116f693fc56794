"""Go's fmt and encoding/json value rendering, for Docker-compatible ``--format`` output.

Templates print Python values the way Go prints the Go values Docker has: maps as
``map[k:v]``, slices as ``[a b]``, floats in Go's shortest form, JSON compact with Go's
escaping. Kept apart from the template engine so both stay small.
"""

from __future__ import annotations

import datetime as _dt
import math
from collections.abc import Mapping
from typing import Any

from dockyard.records import fields, is_record


class _Missing:
    """Go's invalid reflect.Value: a missing map key; prints as ``<no value>``."""

    _instance: _Missing | None = None

    def __new__(cls) -> _Missing:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "MISSING"

    def __bool__(self) -> bool:
        return False


MISSING = _Missing()


def type_name(v: Any) -> str:
    """The Go type name Docker would show for a value (in error messages)."""
    if v is None or v is MISSING:
        return "<nil>"
    declared = getattr(v, "__go_type__", None)
    if isinstance(declared, str):
        return declared
    if isinstance(v, bool):
        return "bool"
    if isinstance(v, int):
        return "int"
    if isinstance(v, float):
        return "float64"
    if isinstance(v, str):
        return "string"
    if isinstance(v, (bytes, bytearray)):
        return "[]uint8"
    if isinstance(v, (list, tuple)):
        return "[]interface {}"
    if isinstance(v, Mapping):
        return "map[string]interface {}"
    return type(v).__name__


def _is_record(v: Any) -> bool:
    return is_record(v) and not isinstance(v, type)


def _public_fields(v: Any) -> list[tuple[str, Any]]:
    """(name, value) pairs of a struct-like object, in declaration order."""
    if _is_record(v):
        return [(f.name, getattr(v, f.name)) for f in fields(v) if not f.name.startswith("_")]
    attrs = getattr(v, "__dict__", None) or {}
    return [(k, val) for k, val in attrs.items() if not k.startswith("_")]


def _sorted_items(m: Mapping[Any, Any]) -> list[tuple[Any, Any]]:
    try:
        return sorted(m.items(), key=lambda kv: kv[0])
    except TypeError:
        return sorted(m.items(), key=lambda kv: str(kv[0]))


def _has_own_str(v: Any) -> bool:
    return type(v).__str__ is not object.__str__ and not _is_record(v)


# ---------------------------------------------------------------------------
# numbers


def _shortest(f: float) -> tuple[str, int]:
    """Shortest round-trip digits of abs(f) and Go's decimal point position (digs.dp)."""
    mant, _, exp = repr(abs(f)).partition("e")
    whole, _, frac = mant.partition(".")
    all_digits = whole + frac
    stripped = all_digits.lstrip("0")
    if not stripped:
        return "0", 1
    dp = len(whole) - (len(all_digits) - len(stripped)) + int(exp or 0)
    return stripped.rstrip("0"), dp


def _exp_form(digits: str, dp: int, upper: bool = False) -> str:
    exp = dp - 1 if digits != "0" else 0
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    e = "E" if upper else "e"
    return f"{mant}{e}{'-' if exp < 0 else '+'}{abs(exp):02d}"


def _fixed_form(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * -dp + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def format_float(f: float, upper: bool = False) -> str:
    """Go's %v for float64: shortest digits, exponent form when exp < -4 or exp >= 6."""
    if math.isnan(f):
        return "NaN"
    if math.isinf(f):
        return "+Inf" if f > 0 else "-Inf"
    digits, dp = _shortest(f)
    if digits == "0":
        body = "0"
    elif dp - 1 < -4 or dp - 1 >= 6:
        body = _exp_form(digits, dp, upper)
    else:
        body = _fixed_form(digits, dp)
    return ("-" if math.copysign(1.0, f) < 0 else "") + body


def _json_float(f: float) -> str:
    if math.isnan(f) or math.isinf(f):
        raise ValueError(f"json: unsupported value: {format_float(f)}")
    if f == 0:
        return "-0" if math.copysign(1.0, f) < 0 else "0"
    digits, dp = _shortest(f)
    a = abs(f)
    if a < 1e-6 or a >= 1e21:
        body = _exp_form(digits, dp)
        if body[-4:-1] == "e-0":  # Go writes 1e-7, not 1e-07
            body = body[:-2] + body[-1]
    else:
        body = _fixed_form(digits, dp)
    return ("-" if f < 0 else "") + body


# ---------------------------------------------------------------------------
# %v


def _fmt_time(t: _dt.datetime) -> str:
    """Go's time.Time String(): ``2006-01-02 15:04:05.999999999 -0700 MST``."""
    s = t.strftime("%Y-%m-%d %H:%M:%S")
    if t.microsecond:
        s += f".{t.microsecond:06d}".rstrip("0")
    if t.tzinfo is None:
        return s + " +0000 UTC"
    off = t.strftime("%z") or "+0000"
    name = t.tzname() or ""
    if name in ("UTC", "UTC+00:00") or (off == "+0000" and name.startswith("UTC")):
        name = "UTC"
    return f"{s} {off} {name}"


def sprint_value(v: Any) -> str:
    """Go's %v of a value as text/template prints it."""
    if v is MISSING:
        return "<no value>"
    if v is None:
        return "<nil>"
    if isinstance(v, str):
        return v
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return format_float(v)
    if isinstance(v, (bytes, bytearray)):
        return "[" + " ".join(str(b) for b in v) + "]"
    if isinstance(v, (list, tuple, set, frozenset)):
        return "[" + " ".join(sprint_value(x) for x in v) + "]"
    if isinstance(v, Mapping):
        return (
            "map["
            + " ".join(f"{sprint_value(k)}:{sprint_value(x)}" for k, x in _sorted_items(v))
            + "]"
        )
    if isinstance(v, _dt.datetime):
        return _fmt_time(v)
    if _has_own_str(v):
        return str(v)
    return "{" + " ".join(sprint_value(x) for _, x in _public_fields(v)) + "}"


def sprint(*args: Any) -> str:
    """fmt.Sprint: spaces between operands when neither side is a string."""
    out: list[str] = []
    for i, a in enumerate(args):
        if i > 0 and not isinstance(a, str) and not isinstance(args[i - 1], str):
            out.append(" ")
        out.append(sprint_value(a))
    return "".join(out)


def sprintln(*args: Any) -> str:
    """fmt.Sprintln: always spaces, trailing newline."""
    return " ".join(sprint_value(a) for a in args) + "\n"


# ---------------------------------------------------------------------------
# quoting


_ESC = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def quote(s: str, ascii_only: bool = False) -> str:
    """strconv.Quote (or QuoteToASCII): a double-quoted Go string literal."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch in ('"', "\\"):
            out.append("\\" + ch)
        elif ch in _ESC:
            out.append(_ESC[ch])
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        elif (ch.isprintable() or ch == " ") and not (ascii_only and o >= 0x80):
            out.append(ch)
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


def _quote_rune(o: int, ascii_only: bool = False) -> str:
    """strconv.QuoteRune (or QuoteRuneToASCII); invalid runes become U+FFFD."""
    if o == ord("'"):
        return "'\\''"
    if o == ord('"'):
        return "'\"'"
    return "'" + quote(_rune(o), ascii_only)[1:-1] + "'"


def go_syntax(v: Any) -> str:
    """Go's %#v for the common values: quoted strings, typed slice and map literals."""
    if isinstance(v, str):
        return quote(v)
    if isinstance(v, (list, tuple)):
        return "[]interface {}{" + ", ".join(go_syntax(x) for x in v) + "}"
    if isinstance(v, Mapping):
        inner = ", ".join(f"{go_syntax(k)}:{go_syntax(x)}" for k, x in _sorted_items(v))
        return "map[string]interface {}{" + inner + "}"
    if v is None or v is MISSING:
        return "<nil>"
    return sprint_value(v)


# ---------------------------------------------------------------------------
# printf


class _Spec:
    __slots__ = ("minus", "plus", "sharp", "sharp_v", "space", "zero", "width", "prec", "verb")

    def __init__(self) -> None:
        self.minus = self.plus = self.sharp = self.sharp_v = self.space = self.zero = False
        self.width: int | None = None
        self.prec: int | None = None
        self.verb = "v"


def _pad(s: str, spec: _Spec, zero: bool = True) -> str:
    """Pad to the width (in runes): left with spaces, or zeros for the 0 flag (Go 1.19
    pads strings with zeros too), right with spaces for the - flag."""
    if spec.width is None or len(s) >= spec.width:
        return s
    n = spec.width - len(s)
    if spec.minus:
        return s + " " * n
    return ("0" if spec.zero and zero else " ") * n + s


def _with_width(spec: _Spec, width: int) -> _Spec:
    narrower = _Spec()
    narrower.zero, narrower.minus, narrower.width = spec.zero, spec.minus, width
    return narrower


def _bad(spec: _Spec, v: Any) -> str:
    """Go's bad-verb form ``%!d(string=x)``: the value in %v under the same flags."""
    if v is None:
        return f"%!{spec.verb}(<nil>)"
    as_v = _Spec()
    as_v.minus, as_v.plus, as_v.space, as_v.zero = spec.minus, spec.plus, spec.space, spec.zero
    as_v.width, as_v.prec, as_v.sharp = spec.width, spec.prec, spec.sharp
    return f"%!{spec.verb}({type_name(v)}={format_arg(v, as_v)})"


def _rune(v: int) -> str:
    return chr(v) if 0 <= v <= 0x10FFFF and not 0xD800 <= v <= 0xDFFF else "\ufffd"


def _fmt_int(v: int, spec: _Spec) -> str:
    verb = spec.verb
    if verb == "c":
        return _pad(_rune(v), spec)
    if verb == "q":
        return _pad(_quote_rune(v, spec.plus), spec)
    if verb == "U":
        s = f"U+{v % 2**64:0{max(4, spec.prec or 0)}X}"
        valid = 0 <= v <= 0x10FFFF and _rune(v).isprintable()
        quoted = f" '{chr(v)}'" if spec.sharp and valid else ""
        return _pad(s + quoted, spec, zero=False)
    base = {"d": 10, "v": 10, "x": 16, "X": 16, "o": 8, "O": 8, "b": 2}.get(verb)
    if base is None:
        return _bad(spec, v)
    a = abs(v)
    digits = {10: str(a), 16: f"{a:x}", 8: f"{a:o}", 2: f"{a:b}"}[base]
    if verb == "X":
        digits = digits.upper()
    sign = "-" if v < 0 else ("+" if spec.plus else (" " if spec.space else ""))
    if spec.prec == 0 and a == 0:
        return _pad("", spec, zero=False)  # Go prints nothing for %.0d of 0
    if spec.prec is not None:
        digits = digits.rjust(spec.prec, "0")
    elif spec.zero and spec.width and not spec.minus:
        digits = digits.rjust(spec.width - len(sign), "0")  # before any 0x, as Go does
    prefix = ""
    if verb == "O" or (spec.sharp and verb == "o" and not digits.startswith("0")):
        prefix = "0o" if verb == "O" else "0"
    elif spec.sharp and verb in ("x", "X"):
        prefix = "0" + verb
    elif spec.sharp and verb == "b":
        prefix = "0b"
    return _pad(sign + prefix + digits, spec, zero=False)


def _hex_float(v: float, verb: str) -> str:
    """Go's %x/%X for floats: shortest hex mantissa, ``0x1.8p+01``-style exponent."""
    if v == 0:
        body = "0x0p+00"
    else:
        mant, _, exp = float.hex(abs(v)).partition("p")
        mant = mant.rstrip("0").rstrip(".")
        body = f"{mant}p{exp[0] if exp[0] in '+-' else '+'}{int(exp.lstrip('+-')):02d}"
    body = ("-" if math.copysign(1.0, v) < 0 else "") + body
    return body.upper() if verb == "X" else body


def _fmt_float(v: float, spec: _Spec) -> str:
    verb = spec.verb
    if verb not in "vgGeEfFxXb":
        return _bad(spec, v)
    if math.isnan(v) or math.isinf(v):
        if math.isnan(v):
            s = "+NaN" if spec.plus else " NaN" if spec.space else "NaN"
        else:
            s = "-Inf" if v < 0 else " Inf" if spec.space and not spec.plus else "+Inf"
        return _pad(s, spec, zero=False)
    alt = "#" if spec.sharp else ""
    if verb in "xX" and spec.prec is None:
        s = _hex_float(v, verb)
    elif verb == "b":
        mant, exp = math.frexp(abs(v))
        s = f"{int(mant * 2**53)}p{exp - 53:+d}" if v else "0p-1074"
        s = ("-" if v < 0 else "") + s
    elif verb in "vgG" and spec.prec is None and not spec.sharp:
        s = format_float(v, upper=verb == "G")
    elif verb in "vgG":
        prec = 6 if spec.prec is None else spec.prec
        s = f"%{alt}.{prec}{'G' if verb == 'G' else 'g'}" % v
    elif verb in "eEfF":
        s = (
            f"%{alt}.{6 if spec.prec is None else spec.prec}{verb.lower() if verb == 'F' else verb}"
            % v
        )
    else:
        return _bad(spec, v)
    if not s.startswith("-"):
        s = ("+" if spec.plus else (" " if spec.space else "")) + s
    if spec.zero and s[:1] in ("+", "-", " ") and spec.width and not spec.minus:
        return s[0] + _pad(s[1:], _with_width(spec, spec.width - 1))  # sign before zeros
    return _pad(s, spec)


def _fmt_str(s: str, spec: _Spec) -> str:
    verb = spec.verb
    if verb in ("s", "v"):
        return _pad(s if spec.prec is None else s[: spec.prec], spec)
    if verb == "q":
        s = s if spec.prec is None else s[: spec.prec]
        if (
            spec.sharp
            and "`" not in s
            and all(c == "\t" or (c.isprintable() and c != "\ufeff") for c in s)
        ):
            return _pad("`" + s + "`", spec)
        return _pad(quote(s, ascii_only=spec.plus), spec)
    if verb in ("x", "X"):
        data = s.encode("utf-8", "replace")
        if spec.prec is not None:
            data = data[: spec.prec]
        if not data:
            return _pad("", spec)
        parts = [f"{b:02x}" if verb == "x" else f"{b:02X}" for b in data]
        pre = ("0" + verb) if spec.sharp else ""
        joined = " ".join(pre + p for p in parts) if spec.space else pre + "".join(parts)
        return _pad(joined, spec)
    return _bad(spec, s)


def format_arg(v: Any, spec: _Spec) -> str:
    """Format one printf operand for one verb (Go's pp.printArg)."""
    verb = spec.verb
    if verb == "T":
        name = type_name(v)
        return _pad(name if spec.prec is None or v is None else name[: spec.prec], spec)
    if spec.sharp_v and (isinstance(v, (str, list, tuple, Mapping, float))):
        return _pad(go_syntax(v), spec)
    if v is None or v is MISSING:
        return _pad("<nil>", spec) if verb == "v" else _bad(spec, None)
    if isinstance(v, bool):
        return _pad("true" if v else "false", spec) if verb in ("v", "t") else _bad(spec, v)
    if isinstance(v, int):
        return _fmt_int(v, spec)
    if isinstance(v, float):
        return _fmt_float(v, spec)
    if isinstance(v, str):
        return _fmt_str(v, spec)
    if isinstance(v, (bytes, bytearray)) and verb in ("s", "q", "x", "X"):
        return _fmt_str(bytes(v).decode("utf-8", "replace"), spec)
    if isinstance(v, (list, tuple, bytes, bytearray)):
        return "[" + " ".join(format_arg(x, spec) for x in v) + "]"
    if isinstance(v, Mapping):
        inner = " ".join(
            f"{format_arg(k, spec)}:{format_arg(x, spec)}" for k, x in _sorted_items(v)
        )
        return "map[" + inner + "]"
    if verb in ("v", "s") and (_has_own_str(v) or isinstance(v, _dt.datetime)):
        return _fmt_str(sprint_value(v), spec)
    if verb in ("v", "s", "d", "q", "x"):
        return "{" + " ".join(format_arg(x, spec) for _, x in _public_fields(v)) + "}"
    return _bad(spec, v)


def _arg_index(fmt: str, i: int, argi: int, nargs: int) -> int:
    """Go's explicit argument index ``%[n]d`` (1-based); the current index otherwise."""
    if not fmt.startswith("[", i):
        return argi
    j = fmt.find("]", i)
    num = fmt[i + 1 : j] if j > 0 else ""
    if num.isdigit() and 0 < int(num) <= nargs:
        return int(num) - 1
    return nargs  # a bad index reports as a missing operand


def sprintf(fmt: str, *args: Any) -> str:
    """fmt.Sprintf with Go's verbs, flags, width/precision (incl. ``*``) and error forms."""
    out: list[str] = []
    i, n, argi = 0, len(fmt), 0
    reordered = False  # Go does not report EXTRA operands once %[n] was used
    while i < n:
        j = fmt.find("%", i)
        if j < 0:
            out.append(fmt[i:])
            break
        out.append(fmt[i:j])
        i = j + 1
        spec = _Spec()
        while i < n and fmt[i] in "-+# 0":
            c = fmt[i]
            spec.minus |= c == "-"
            spec.plus |= c == "+"
            spec.sharp |= c == "#"
            spec.space |= c == " "
            spec.zero |= c == "0"
            i += 1
        argi = _arg_index(fmt, i, argi, len(args))
        if i < n and fmt[i] == "[":
            reordered = True
            i = fmt.index("]", i) + 1 if "]" in fmt[i:] else n
        if i < n and fmt[i] == "*":
            i += 1
            if (
                argi < len(args)
                and isinstance(args[argi], int)
                and not isinstance(args[argi], bool)
            ):
                spec.width = args[argi]
                if spec.width < 0:
                    spec.minus, spec.width = True, -spec.width
            else:
                out.append("%!(BADWIDTH)")
            argi += 1
        else:
            k = i
            while i < n and fmt[i].isdigit():
                i += 1
            if i > k:
                spec.width = int(fmt[k:i])
        if i < n and fmt[i] == ".":
            i += 1
            if i < n and fmt[i] == "*":
                i += 1
                if (
                    argi < len(args)
                    and isinstance(args[argi], int)
                    and not isinstance(args[argi], bool)
                ):
                    spec.prec = args[argi] if args[argi] >= 0 else None
                if spec.prec is None:
                    out.append("%!(BADPREC)")
                argi += 1
            else:
                k = i
                while i < n and fmt[i].isdigit():
                    i += 1
                spec.prec = int(fmt[k:i]) if i > k else 0
        argi = _arg_index(fmt, i, argi, len(args))
        if i < n and fmt[i] == "[":
            reordered = True
            i = fmt.index("]", i) + 1 if "]" in fmt[i:] else n
        if i >= n:
            out.append("%!(NOVERB)")
            break
        spec.verb = fmt[i]
        i += 1
        if spec.verb == "v":
            spec.plus = False  # Go's %+v only names struct fields
            spec.sharp, spec.sharp_v = False, spec.sharp  # %#v is Go syntax
        if spec.verb == "%":
            out.append("%")
            continue
        if argi >= len(args):
            out.append(f"%!{spec.verb}(MISSING)")
            continue
        out.append(format_arg(args[argi], spec))
        argi += 1
    if argi < len(args) and not reordered:
        extra = ", ".join(
            "<nil>" if a is None else f"{type_name(a)}={sprint_value(a)}" for a in args[argi:]
        )
        out.append(f"%!(EXTRA {extra})")
    return "".join(out)


# ---------------------------------------------------------------------------
# JSON


def _json_str(s: str, escape_html: bool) -> str:
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif o < 0x20:
            out.append(
                {"\n": "\\n", "\r": "\\r", "\t": "\\t", "\b": "\\b", "\f": "\\f"}.get(
                    ch, f"\\u{o:04x}"
                )
            )
        elif escape_html and ch in "<>&":
            out.append(f"\\u{o:04x}")
        elif o in (0x2028, 0x2029):
            out.append(f"\\u{o:04x}")
        elif 0xD800 <= o <= 0xDFFF:
            out.append("\\ufffd")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def _rfc3339nano(t: _dt.datetime) -> str:
    if t.tzinfo is None:
        t = t.replace(tzinfo=_dt.UTC)
    s = t.strftime("%Y-%m-%dT%H:%M:%S")
    if t.microsecond:
        s += f".{t.microsecond:06d}".rstrip("0")
    off = t.utcoffset() or _dt.timedelta(0)
    if not off:
        return s + "Z"
    z = t.strftime("%z")
    return s + z[:3] + ":" + z[3:5]


def json_encode(v: Any, escape_html: bool = False, sort_keys: bool = False) -> str:
    """Compact JSON as Go's encoding/json writes it.

    Dicts keep their insertion order (they usually stand for Go structs) unless sort_keys
    is set (Go maps). An object with ``__go_json__()`` supplies its own encoded JSON, as a
    Go MarshalJSON method does.
    """
    if v is None or v is MISSING:
        return "null"
    if isinstance(v, str):
        return _json_str(v, escape_html)
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, int):
        return str(int(v))
    if isinstance(v, float):
        return _json_float(v)
    hook = getattr(v, "__go_json__", None)
    if hook is not None and callable(hook):
        return str(hook())
    if isinstance(v, (bytes, bytearray)):
        import base64

        return '"' + base64.b64encode(bytes(v)).decode() + '"'
    if isinstance(v, (list, tuple, set, frozenset)):
        return "[" + ",".join(json_encode(x, escape_html, sort_keys) for x in v) + "]"
    if isinstance(v, Mapping):
        items = _sorted_items(v) if sort_keys else list(v.items())
        return (
            "{"
            + ",".join(
                _json_str(k if isinstance(k, str) else sprint_value(k), escape_html)
                + ":"
                + json_encode(x, escape_html, sort_keys)
                for k, x in items
            )
            + "}"
        )
    if isinstance(v, _dt.datetime):
        return '"' + _rfc3339nano(v) + '"'
    if _has_own_str(v) and not getattr(v, "__dict__", None):
        return _json_str(str(v), escape_html)
    fields = _public_fields(v)
    return (
        "{"
        + ",".join(
            _json_str(k, escape_html) + ":" + json_encode(x, escape_html, sort_keys)
            for k, x in fields
        )
        + "}"
    )

"""Output helpers shared by all commands, matching the Docker CLI byte for byte.

Sizes and durations follow docker/go-units, duration parsing Go's time.ParseDuration,
tables Go's text/tabwriter as docker/cli configures it, and ``--format`` handling
docker/cli's formatter package (table/json/custom templates, header rows).
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from typing import Any

from dockyard.cli import gofmt
from dockyard.errors import InvalidArgument

# ---------------------------------------------------------------------------
# sizes (go-units size.go)

_DECIMAL_UNITS = ("B", "kB", "MB", "GB", "TB", "PB", "EB", "ZB", "YB")
_BINARY_UNITS = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB", "ZiB", "YiB")


def confirm(warning: str, *, inline: bool = False) -> bool:
    """Docker's prune prompt: the warning, then "Are you sure...? [y/N]" read from stdin
    (end of input is a no)."""
    import sys

    sys.stdout.write(
        warning + (" " if inline else "\n") + "Are you sure you want to continue? [y/N] "
    )
    sys.stdout.flush()
    answer = sys.stdin.readline() if sys.stdin and not sys.stdin.closed else ""
    return answer.strip().lower() in ("y", "yes")


def remove_each(refs: Sequence[str], remove: Callable[[str], bool]) -> int:
    """``network rm``/``volume rm``: each name printed once removed (``remove`` returns
    False for one to skip quietly), one "Error:" line per failure, the last raised."""
    import sys

    from dockyard.errors import DockyardError

    errors: list[str] = []
    for ref in refs:
        try:
            if remove(ref):
                print(ref)
        except DockyardError as err:
            errors.append(str(err))
    sys.stdout.flush()
    for message in errors[:-1]:
        print(f"Error: {message}", file=sys.stderr)
    if errors:
        raise DockyardError(errors[-1], exit_code=1)
    return 0


def _scaled(size: float, base: float, units: tuple[str, ...]) -> tuple[float, str]:
    i = 0
    while size >= base and i < len(units) - 1:
        size /= base
        i += 1
    return size, units[i]


def human_size(size: float, precision: int = 3) -> str:
    """Decimal size as ``docker images``/``ps`` show it: ``4.26MB``, ``1kB``, ``0B``.

    docker/cli uses go-units HumanSizeWithPrecision(size, 3) for image, container and
    network sizes; pass precision=4 for go-units HumanSize (prune totals, system df).
    """
    value, unit = _scaled(float(size), 1000.0, _DECIMAL_UNITS)
    return f"{value:.{precision}g}{unit}"


def bytes_size(size: float) -> str:
    """Binary size (go-units BytesSize), as ``docker stats`` shows memory: ``1.5MiB``."""
    value, unit = _scaled(float(size), 1024.0, _BINARY_UNITS)
    return f"{value:.4g}{unit}"


def _go_parse_float(num: str) -> float:
    """strconv.ParseFloat for the decimal forms a size may take."""
    import re

    digits = r"\d+(?:_\d+)*"
    if not re.fullmatch(
        rf"[+-]?({digits}(?:\.(?:{digits})?)?|\.{digits})(?:[eE][+-]?{digits})?", num
    ):
        raise InvalidArgument(f"strconv.ParseFloat: parsing {gofmt.quote(num)}: invalid syntax")
    return float(num)


def _parse_size(text: str, multipliers: Mapping[str, int]) -> int:
    num, sep, sfx = text.partition(" ")
    if not sep:
        last = max(text.rfind(c) for c in "0123456789.")
        if last < 0:
            raise InvalidArgument(f"invalid size: '{text}'")
        num, sfx = text[: last + 1], text[last + 1 :]
    size = _go_parse_float(num)
    if size < 0:
        raise InvalidArgument(f"invalid size: '{text}'")
    if sfx:
        low = sfx.lower()
        if len(sfx) > 3:
            raise InvalidArgument(f"invalid suffix: '{sfx}'")
        if low[0] == "b":
            if len(low) > 1:
                raise InvalidArgument(f"invalid suffix: '{low}'")
        elif low[0] in multipliers and (len(low) == 1 or low[1:] in ("b", "ib")):
            size *= multipliers[low[0]]
        else:
            raise InvalidArgument(f"invalid suffix: '{low}'")
    if size >= 2**63:
        raise InvalidArgument(f"invalid size: '{text}'")
    return int(size)


_BINARY = {"k": 1 << 10, "m": 1 << 20, "g": 1 << 30, "t": 1 << 40, "p": 1 << 50}
_DECIMAL = {"k": 10**3, "m": 10**6, "g": 10**9, "t": 10**12, "p": 10**15}


def parse_size(text: str) -> int:
    """go-units RAMInBytes: ``512m``, ``1g``, ``1.5GB``, ``100k``, ``1024`` (binary units).

    Used for --memory, --shm-size and friends; raises InvalidArgument with go-units'
    message (``invalid size: 'x'`` / ``invalid suffix: 'x'``) for the caller to wrap.
    """
    return _parse_size(text, _BINARY)


def parse_size_decimal(text: str) -> int:
    """go-units FromHumanSize: like parse_size but k/M/G are powers of 1000."""
    return _parse_size(text, _DECIMAL)


# ---------------------------------------------------------------------------
# durations (go-units duration.go, Go's time package)


def human_duration(seconds: float) -> str:
    """go-units HumanDuration: ``Less than a second``, ``About a minute``, ``3 weeks`` ..."""
    secs = int(seconds)
    if secs < 1:
        return "Less than a second"
    if secs == 1:
        return "1 second"
    if secs < 60:
        return f"{secs} seconds"
    minutes = int(seconds / 60)
    if minutes == 1:
        return "About a minute"
    if minutes < 60:
        return f"{minutes} minutes"
    hours = int(seconds / 3600 + 0.5)
    if hours == 1:
        return "About an hour"
    if hours < 48:
        return f"{hours} hours"
    if hours < 24 * 7 * 2:
        return f"{hours // 24} days"
    if hours < 24 * 30 * 2:
        return f"{hours // 24 // 7} weeks"
    if hours < 24 * 365 * 2:
        return f"{hours // 24 // 30} months"
    return f"{int(seconds / 3600) // 24 // 365} years"


def _epoch(t: _dt.datetime | float) -> float:
    if isinstance(t, _dt.datetime):
        if t.tzinfo is None:
            t = t.replace(tzinfo=_dt.UTC)
        return t.timestamp()
    return float(t)


def time_ago(t: _dt.datetime | float, now: float | None = None) -> str:
    """``3 seconds ago`` for a time (datetime, naive = UTC, or epoch seconds)."""
    current = time.time() if now is None else now
    return human_duration(current - _epoch(t)) + " ago"


_NS_UNITS = {
    "ns": 1,
    "us": 1_000,
    "\u00b5s": 1_000,  # micro sign
    "\u03bcs": 1_000,  # Greek mu
    "ms": 1_000_000,
    "s": 1_000_000_000,
    "m": 60_000_000_000,
    "h": 3_600_000_000_000,
}


def parse_duration_ns(text: str) -> int:
    """Go's time.ParseDuration in nanoseconds: ``1h30m``, ``1.5s``, ``-2us``, ``0``."""
    invalid = InvalidArgument(f"time: invalid duration {gofmt.quote(text)}")
    s, neg = text, False
    if s[:1] in ("-", "+"):
        neg, s = s[0] == "-", s[1:]
    if s == "0":
        return 0
    if not s:
        raise invalid
    total = 0
    while s:
        if not (s[0] == "." or s[0].isdigit()):
            raise invalid
        i = 0
        while i < len(s) and "0" <= s[i] <= "9":
            i += 1
        whole, s = s[:i], s[i:]
        v = int(whole) if whole else 0
        if v > 1 << 63:
            raise invalid
        frac, scale, post = 0, 1.0, False
        if s[:1] == ".":
            i = 1
            while i < len(s) and "0" <= s[i] <= "9":
                if frac <= ((1 << 63) - 1) // 10:
                    frac, scale = frac * 10 + int(s[i]), scale * 10
                i += 1
            post, s = i > 1, s[i:]
        if not whole and not post:
            raise invalid
        i = 0
        while i < len(s) and not (s[i] == "." or "0" <= s[i] <= "9"):
            i += 1
        if i == 0:
            raise InvalidArgument(f"time: missing unit in duration {gofmt.quote(text)}")
        unit_name, s = s[:i], s[i:]
        unit = _NS_UNITS.get(unit_name)
        if unit is None:
            raise InvalidArgument(
                f"time: unknown unit {gofmt.quote(unit_name)} in duration {gofmt.quote(text)}"
            )
        if v > (1 << 63) // unit:
            raise invalid
        v *= unit
        if frac > 0:
            v += int(float(frac) * (float(unit) / scale))
        total += v
        if total > 1 << 63:
            raise invalid
    if not neg and total > (1 << 63) - 1:
        raise invalid
    return -total if neg else total


def parse_duration(text: str) -> float:
    """Go's time.ParseDuration, in seconds (``500ms`` -> 0.5)."""
    return parse_duration_ns(text) / 1e9


def go_duration_string(ns: int) -> str:
    """Go's Duration.String(): ``1h30m0s``, ``1.5s``, ``500ms``, ``2µs``, ``0s``."""
    u, sign = abs(int(ns)), "-" if ns < 0 else ""
    if u == 0:
        return "0s"

    def frac(value: int, prec: int) -> tuple[str, int]:
        digits = f"{value % 10**prec:0{prec}d}".rstrip("0")
        return ("." + digits if digits else ""), value // 10**prec

    if u < 1_000_000_000:
        prec, unit = (0, "ns") if u < 1_000 else (3, "µs") if u < 1_000_000 else (6, "ms")
        f, whole = frac(u, prec) if prec else ("", u)
        return f"{sign}{whole}{f}{unit}"
    f, secs = frac(u, 9)
    out = f"{secs % 60}{f}s"
    mins = secs // 60
    if mins:
        out = f"{mins % 60}m{out}"
        if mins // 60:
            out = f"{mins // 60}h{out}"
    return sign + out


# ---------------------------------------------------------------------------
# tables (Go text/tabwriter, as docker/cli's formatter sets it up)


def _display_width(text: str) -> int:
    """Terminal cells a string takes (go-runewidth): wide East Asian = 2, combining = 0."""
    if text.isascii():
        return len(text)
    import unicodedata

    width = 0
    for ch in text:
        if unicodedata.combining(ch) or unicodedata.category(ch) in ("Mn", "Me", "Cf", "Cc"):
            continue
        width += 2 if unicodedata.east_asian_width(ch) in ("W", "F") else 1
    return width


_Cell = tuple[str, int, bool]  # text, display width, terminated by a hard tab


def tabwrite(
    text: str, minwidth: int = 10, tabwidth: int = 1, padding: int = 3, padchar: str = " "
) -> str:
    """Align tab-terminated cells like Go's tabwriter.NewWriter(out, 10, 1, 3, ' ', 0).

    Tab-terminated cells in adjacent lines form a column as wide as its widest cell plus
    padding (at least minwidth); the text after a line's last tab is not padded.
    """
    del tabwidth  # only matters when padding with tabs
    out: list[str] = []
    lines: list[list[_Cell]] = [[]]
    start = 0
    for i, ch in enumerate(text):
        if ch in "\t\v\n\f":
            cell = text[start:i]
            lines[-1].append((cell, _display_width(cell), ch == "\t"))
            start = i + 1
            if ch in "\n\f":
                lines.append([])
                if ch == "\f":
                    _format_block(lines, [], 0, len(lines), out, minwidth, padding, padchar)
                    lines = [[]]
    rest = text[start:]
    if rest:
        lines[-1].append((rest, _display_width(rest), False))
    _format_block(lines, [], 0, len(lines), out, minwidth, padding, padchar)
    return "".join(out)


def _format_block(
    lines: list[list[_Cell]],
    widths: list[int],
    line0: int,
    line1: int,
    out: list[str],
    minwidth: int,
    padding: int,
    padchar: str,
) -> None:
    column = len(widths)
    this = line0
    while this < line1:
        if column >= len(lines[this]) - 1:
            this += 1
            continue
        _write_lines(lines, widths, line0, this, out, padchar)
        line0 = this
        width = minwidth
        while this < line1 and column < len(lines[this]) - 1:
            width = max(width, lines[this][column][1] + padding)
            this += 1
        widths.append(width)
        _format_block(lines, widths, line0, this, out, minwidth, padding, padchar)
        widths.pop()
        line0 = this
    _write_lines(lines, widths, line0, line1, out, padchar)


def _write_lines(
    lines: list[list[_Cell]],
    widths: list[int],
    line0: int,
    line1: int,
    out: list[str],
    padchar: str,
) -> None:
    for i in range(line0, line1):
        for j, (cell, width, _htab) in enumerate(lines[i]):
            out.append(cell)
            if j < len(widths):
                out.append(padchar * (widths[j] - width))
        if i + 1 < len(lines):
            out.append("\n")


def tabwriter(rows: Iterable[Sequence[str]]) -> str:
    """Align rows of cells (the last cell of a row is left unpadded); newline-terminated."""
    return tabwrite("".join("\t".join(row) + "\n" for row in rows))


# ---------------------------------------------------------------------------
# --format (docker/cli cli/command/formatter)


class HeaderContext(dict[str, str]):
    """The value a table template is run against to render its header row.

    Maps field names to header text (Docker's SubHeaderContext); ``{{.Label "x"}}``
    heads its column with the label's last dotted part. Without an explicit header for
    a field, ``auto`` derives one from the name (``CreatedSince`` -> ``CREATED SINCE``).
    """

    def __init__(self, headers: Mapping[str, str] | None = None, auto: bool = False) -> None:
        super().__init__(headers or {})
        self.auto = auto

    def __contains__(self, key: object) -> bool:
        return self.auto or super().__contains__(key)

    def __missing__(self, key: str) -> str:
        if not self.auto:
            raise KeyError(key)
        words, cur = [], ""
        for ch in key:
            if ch.isupper() and cur and not cur[-1].isupper():
                words.append(cur)
                cur = ""
            cur += ch
        words.append(cur)
        return " ".join(words).upper()

    def Label(self, name: str) -> str:  # noqa: N802 - the template method name
        """Header for ``{{.Label "com.example.x"}}`` columns."""
        return name.split(".")[-1].replace("-", " ").replace("_", " ")


class _Row(dict[str, Any]):
    """A dict list item, behaving like Docker's formatter contexts.

    ``{{json .}}`` marshals it as they do (keys sorted, ``<>&`` escaped, keys starting
    with "_" left out) and ``{{.Label "k"}}`` reads the ``_labels`` mapping (or a
    ``Labels`` mapping, or a ``Labels`` string of ``k=v,k2=v2``).
    """

    def __init__(self, item: Mapping[str, Any], go_type: str) -> None:
        super().__init__(item)
        self.__go_type__ = go_type  # missing fields are errors, named like Docker's type

    def __go_json__(self) -> str:
        public = {k: v for k, v in self.items() if not (isinstance(k, str) and k.startswith("_"))}
        return gofmt.json_encode(public, escape_html=True, sort_keys=True)

    def Label(self, name: str) -> str:  # noqa: N802 - the template method name
        """The value of one label, "" when unset (ContainerContext.Label)."""
        labels = self.get("_labels", self.get("Labels"))
        if isinstance(labels, Mapping):
            return str(labels.get(name, ""))
        if isinstance(labels, str):
            for pair in labels.split(","):
                key, _, value = pair.partition("=")
                if key == name:
                    return value
        return ""


def is_table(fmt: str) -> bool:
    """Docker treats any format starting with "table" as a table."""
    return fmt.startswith("table")


def template_text(fmt: str) -> str:
    """The Go template Docker runs for a --format value (Format.templateString)."""
    if fmt == "table":
        return ""
    if fmt == "json":
        return "{{json .}}"
    if fmt.startswith("table"):
        fmt = fmt[len("table") :]
    return fmt.strip(" ").replace("\\t", "\t").replace("\\n", "\n")


def format_output(
    items: Iterable[Any],
    fmt: str | None,
    default_table: str,
    *,
    headers: Mapping[str, str] | None = None,
    quiet_field: str | None = None,
    context_type: str = "*formatter.Context",
) -> str:
    """Render list output the way docker/cli's formatter does.

    ``fmt`` is the --format value: None, "" or "table" use ``default_table`` (e.g.
    ``"table {{.ID}}\\t{{.Image}}"``); "table TEMPLATE" prints a header row (field ->
    header text from ``headers``) and aligns columns; "json" prints one JSON object per
    item; anything else is a template printed once per item. ``quiet_field`` (for -q)
    prints just that field per item, whatever the format. Returns newline-terminated
    text; raises TemplateError (an InvalidArgument) for a bad template.

    Dict items act like Docker's formatter contexts: an unknown field is an error naming
    ``context_type`` (e.g. "*formatter.ContainerContext"), ``{{.Label "k"}}`` reads the
    item's ``_labels`` mapping, and keys starting with "_" stay out of JSON.
    """
    from dockyard.cli.gotemplate import compile as compile_template

    if quiet_field is not None:
        fmt = "{{." + quiet_field + "}}"
    elif not fmt or fmt == "table":
        fmt = default_table
    tmpl = compile_template(template_text(fmt))
    rows = [
        tmpl.execute(_Row(item, context_type) if type(item) is dict else item) + "\n"
        for item in items
    ]
    if not is_table(fmt):
        return "".join(rows)
    header = tmpl.execute_header(HeaderContext(headers, auto=headers is None))
    return tabwrite(header + "\n" + "".join(rows))


def go_json_indent(value: Any) -> str:
    """json.MarshalIndent(v, "", "    ") as the Docker CLI prints inspect output."""
    import json

    text = json.dumps(value, indent=4, ensure_ascii=False)
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def print_inspect(objects: list[Any], fmt: str | None) -> None:
    """``inspect`` output: a JSON array, or one rendered template per object."""
    import sys

    if fmt:
        from dockyard.cli.gotemplate import render

        for obj in objects:
            sys.stdout.write(render(fmt, obj) + "\n")
    else:
        sys.stdout.write(go_json_indent(objects) + "\n")


def inspect_refs(refs: list[str], lookup: Any, fmt: str | None) -> list[str]:
    """Print ``inspect`` output for every ref ``lookup`` finds; returns the ones it did not.

    ``lookup(ref)`` returns the object to show or raises NotFound.
    """
    from dockyard.errors import NotFound

    found: list[Any] = []
    missing: list[str] = []
    for ref in refs:
        try:
            found.append(lookup(ref))
        except NotFound:
            missing.append(ref)
    print_inspect(found, fmt)
    return missing

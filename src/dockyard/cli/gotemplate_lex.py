"""Lexing for Go templates: tokens and literal decoding as Go's text/template/parse does."""

from __future__ import annotations

from typing import Any

from dockyard.cli import gofmt

_SPACE = " \t\r\n"
_KEYWORDS = {
    "block",
    "break",
    "continue",
    "define",
    "else",
    "end",
    "if",
    "range",
    "template",
    "with",
}
_PUNCT_TERM = set(".,|:)(")

# ---------------------------------------------------------------------------
# lexer: tokens are (kind, value, pos); kinds mirror Go's item types


def _is_alnum(c: str) -> bool:
    return c == "_" or c.isalnum()


def _fmt_rune(c: str) -> str:
    """Go's %#U: ``U+0040 '@'``."""
    return f"U+{ord(c):04X} '{c}'" if c.isprintable() else f"U+{ord(c):04X}"


class Lexer:
    """Splits a template into (kind, value, pos) tokens; a lex error is an error token."""

    def __init__(self, src: str) -> None:
        self.src = src
        self.toks: list[tuple[str, str, int]] = []

    def at_right(self, p: int) -> tuple[bool, bool]:
        s = self.src
        if p < len(s) and s[p] in _SPACE and s.startswith("-}}", p + 1):
            return True, True
        return s.startswith("}}", p), False

    def error(self, msg: str, pos: int) -> None:
        self.toks.append(("error", msg, pos))
        self.toks.append(("eof", "", len(self.src)))

    def run(self) -> list[tuple[str, str, int]]:
        s, n, i = self.src, len(self.src), 0
        while True:
            j = s.find("{{", i)
            end = n if j < 0 else j
            ltrim = j >= 0 and j + 3 < n and s[j + 2] == "-" and s[j + 3] in _SPACE
            text_end = end
            if ltrim:
                while text_end > i and s[text_end - 1] in _SPACE:
                    text_end -= 1
            if text_end > i:
                self.toks.append(("text", s[i:text_end], i))
            if j < 0:
                self.toks.append(("eof", "", n))
                return self.toks
            p = j + 2 + (2 if ltrim else 0)
            if s.startswith("/*", p):
                k = s.find("*/", p + 2)
                if k < 0:
                    self.error("unclosed comment", p)
                    return self.toks
                k += 2
                delim, trim = self.at_right(k)
                if not delim:
                    self.error("comment ends before closing delimiter", k)
                    return self.toks
                i = k + (2 if trim else 0) + 2
            else:
                self.toks.append(("left", "{{", j))
                i = self.action(p)
                if i < 0:
                    return self.toks
                trim = self.toks[-1][1] == "-}}"
                self.toks[-1] = ("right", "}}", self.toks[-1][2])
            if trim:
                while i < n and s[i] in _SPACE:
                    i += 1

    def action(self, p: int) -> int:
        s, n, depth, toks = self.src, len(self.src), 0, self.toks
        while True:
            delim, trim = self.at_right(p)
            if delim:
                if depth:
                    self.error("unclosed left paren", p)
                    return -1
                toks.append(("right", "-}}" if trim else "}}", p))
                return p + (4 if trim else 2)
            if p >= n:
                self.error("unclosed action", p)
                return -1
            c, start = s[p], p
            if c in _SPACE:
                while p < n and s[p] in _SPACE:
                    p += 1
                if self.at_right(p - 1) == (True, True):
                    p -= 1
                    if p == start:
                        continue
                toks.append(("space", s[start:p], start))
            elif c == "=":
                toks.append(("assign", "=", p))
                p += 1
            elif c == ":":
                if not s.startswith(":=", p):
                    self.error("expected :=", p)
                    return -1
                toks.append(("declare", ":=", p))
                p += 2
            elif c == "|":
                toks.append(("pipe", "|", p))
                p += 1
            elif c in "\"'":
                p += 1
                while True:
                    if p >= n or s[p] == "\n":
                        what = "quoted string" if c == '"' else "character constant"
                        self.error(f"unterminated {what}", start)
                        return -1
                    if s[p] == "\\":
                        p += 1
                        if p >= n or s[p] == "\n":
                            continue
                    elif s[p] == c:
                        break
                    p += 1
                p += 1
                toks.append(("string" if c == '"' else "char", s[start:p], start))
            elif c == "`":
                k = s.find("`", p + 1)
                if k < 0:
                    self.error("unterminated raw quoted string", start)
                    return -1
                p = k + 1
                toks.append(("raw", s[start:p], start))
            elif c in "$." and not (c == "." and (p + 1 >= n or s[p + 1].isdigit())):
                p += 1
                if self.at_term(p):
                    toks.append(("var" if c == "$" else "dot", c, start))
                    continue
                while p < n and _is_alnum(s[p]):
                    p += 1
                if not self.at_term(p):
                    self.error(f"bad character {_fmt_rune(s[p])}", start)
                    return -1
                toks.append(("var" if c == "$" else "field", s[start:p], start))
            elif c in "+-." or c.isdigit():
                p = self.number(p)
                if p < 0:
                    return -1
            elif _is_alnum(c):
                while p < n and _is_alnum(s[p]):
                    p += 1
                word = s[start:p]
                if not self.at_term(p):
                    self.error(f"bad character {_fmt_rune(s[p])}", start)
                    return -1
                kind = "kw" if word in _KEYWORDS else "ident"
                kind = {"true": "bool", "false": "bool", "nil": "nil"}.get(word, kind)
                toks.append((kind, word, start))
            elif c == "(":
                depth += 1
                toks.append(("lparen", c, p))
                p += 1
            elif c == ")":
                depth -= 1
                toks.append(("rparen", c, p))
                if depth < 0:
                    self.error(f"unexpected right paren {_fmt_rune(c)}", p)
                    return -1
                p += 1
            elif ord(c) < 0x80 and c.isprintable():
                toks.append(("char_" + c, c, p))
                p += 1
            else:
                self.error(f"unrecognized character in action: {_fmt_rune(c)}", p)
                return -1

    def at_term(self, p: int) -> bool:
        s = self.src
        if p >= len(s) or s[p] in _SPACE or s[p] in _PUNCT_TERM:
            return True
        return s.startswith("}}", p)

    def scan_number(self, p: int) -> tuple[int, bool]:
        """Go's scanNumber: the end of a number at p, and whether no letter follows it."""
        s, n = self.src, len(self.src)
        if p < n and s[p] in "+-":
            p += 1
        digits = "0123456789_"
        if s.startswith("0", p) and s[p + 1 : p + 2] in ("x", "X", "o", "O", "b", "B"):
            digits = {"x": "0123456789abcdefABCDEF_", "o": "01234567_", "b": "01_"}[
                s[p + 1].lower()
            ]
            p += 2
        while p < n and s[p] in digits:
            p += 1
        if p < n and s[p] == ".":
            p += 1
            while p < n and s[p] in digits:
                p += 1
        exp = "eE" if len(digits) == 11 else "pP" if len(digits) == 23 else ""
        if exp and p < n and s[p] in exp:
            p += 1
            if p < n and s[p] in "+-":
                p += 1
            while p < n and s[p] in "0123456789_":
                p += 1
        if p < n and s[p] == "i":
            p += 1
        if p < n and _is_alnum(s[p]):
            return p + 1, False
        return p, True

    def number(self, start: int) -> int:
        s = self.src
        p, ok = self.scan_number(start)
        if ok and p < len(s) and s[p] in "+-":  # a complex constant such as 1+2i
            p, ok = self.scan_number(p)
            ok = ok and s[p - 1] == "i"
        if not ok:
            self.error(f"bad number syntax: {gofmt.quote(s[start:p])}", start)
            return -1
        self.toks.append(("number", s[start:p], start))
        return p


# ---------------------------------------------------------------------------
# literals and token text


def line_of(src: str, pos: int) -> int:
    return src.count("\n", 0, pos) + 1


def tok_str(tok: tuple[str, str, int]) -> str:
    kind, val, _ = tok
    if kind == "eof":
        return "EOF"
    if kind in ("kw", "dot", "nil"):
        return f"<{val}>"
    if len(val) > 10:
        return gofmt.quote(val[:10]) + "..."
    return gofmt.quote(val)


_ESCAPES = {"a": "\a", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t", "v": "\v", "\\": "\\"}


def unquote(text: str) -> str:
    """strconv.Unquote for the quoted and raw strings the lexer accepted."""
    if text[0] == "`":
        return text[1:-1].replace("\r", "")
    q, body, out, i = text[0], text[1:-1], [], 0
    while i < len(body):
        c = body[i]
        if c != "\\":
            if c == q:
                raise ValueError("invalid syntax")
            out.append(c)
            i += 1
            continue
        e = body[i + 1 : i + 2]
        if e in _ESCAPES or e == q:
            out.append(_ESCAPES.get(e, e))
            i += 2
        elif e in ("x", "u", "U"):
            size = {"x": 2, "u": 4, "U": 8}[e]
            hexd = body[i + 2 : i + 2 + size]
            if len(hexd) != size or any(h not in "0123456789abcdefABCDEF" for h in hexd):
                raise ValueError("invalid syntax")
            out.append(chr(int(hexd, 16)))
            i += 2 + size
        elif e and e in "01234567":
            octd = body[i + 1 : i + 4]
            if len(octd) != 3 or any(h not in "01234567" for h in octd) or int(octd, 8) > 255:
                raise ValueError("invalid syntax")
            out.append(chr(int(octd, 8)))
            i += 4
        else:
            raise ValueError("invalid syntax")
    return "".join(out)


def number_value(text: str) -> tuple[Any, int | None]:
    """(ideal value, int value if integral) of a number or char constant; ValueError if bad."""
    if text.startswith("'"):
        s = unquote(text)
        if len(s) != 1:
            raise ValueError(f"malformed character constant: {text}")
        return ord(s), ord(s)
    if text.endswith("i"):
        raise ValueError(f"complex numbers are not supported: {text!r}")
    body = text.lstrip("+-")
    neg = text.startswith("-")
    low = body.lower()
    is_hex = low.startswith("0x")
    try:
        if (
            is_hex
            and "p" not in low
            or not any(c in low for c in ".ep")
            or low.startswith(("0b", "0o"))
        ):
            if len(body) > 1 and body[0] == "0" and body[1].isdigit():
                v = int(body.replace("_", ""), 8)
            else:
                v = int(body, 0)
            if v > 0xFFFFFFFFFFFFFFFF:
                raise ValueError(f"integer overflow: {gofmt.quote(text)}")
            v = -v if neg else v
            return v, v
        f = float.fromhex(body) if is_hex else float(body.replace("_", ""))
    except ValueError as e:
        if "overflow" in str(e):
            raise
        raise ValueError(f"illegal number syntax: {gofmt.quote(text)}") from None
    f = -f if neg else f
    return f, int(f) if f.is_integer() else None

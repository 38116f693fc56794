"""Dockerfile text to instruction nodes, following Docker's own parser (BuildKit's).

Lines: parser directives (``# syntax=``, ``# escape=``, ``# check=``) only
at the top; whole-line comments (also inside continuations); the escape
character at the end of a line continues it (continuation lines keep their
leading white space); empty continuation lines are skipped; heredocs
(``<<EOF``, ``<<-EOF``, quoted names turn expansion off) follow RUN, COPY and
ADD lines. Each instruction's arguments are split as Docker's line parsers
do: JSON form or one shell string (RUN/CMD/ENTRYPOINT/SHELL), JSON or words
(COPY/ADD/VOLUME), key/value triples (ENV/LABEL), words (ARG), one string.
Unknown instructions parse (as Docker's parser does) and fail in
``instructions``. Every node carries its first and last line for messages.
"""

from __future__ import annotations

import json
import re

from dockyard.build import BuildError
from dockyard.records import field, record

_WHITESPACE = re.compile(r"[\t\v\f\r ]+")
_HEREDOC = re.compile(r"^(\d*)<<(-?)\s*([^<]*)$")
_DIRECTIVE = re.compile(r"^([a-zA-Z][a-zA-Z0-9]*)\s*=\s*(.+?)\s*$")
_LEADING_TABS = re.compile(r"(?m)^\t+")
_DIRECTIVES = ("syntax", "escape", "check")
HEREDOC_COMMANDS = ("run", "copy", "add")


class ParseError(BuildError):
    """A Dockerfile that cannot be parsed; the message names the file and line."""

    def __init__(self, message: str, filename: str = "Dockerfile", line: int = 0) -> None:
        self.reason = message
        self.filename = filename
        self.line = line
        where = f"{filename}:{line}: " if line else f"{filename}: "
        super().__init__(where + message)


@record
class Heredoc:
    name: str
    content: str = ""
    expand: bool = True
    chomp: bool = False  # <<- : leading tabs removed
    fd: int = 0


@record
class Node:
    """One instruction as parsed (Docker's ``parser.Node``, flattened)."""

    cmd: str  # the instruction word as written ("RUN", "copy", ...)
    original: str  # the logical line (continuations joined)
    flags: list[str]  # leading ``--name[=value]`` words
    args: list[str]  # per instruction kind, see the module docstring
    json: bool = False  # JSON (exec) form
    heredocs: list[Heredoc] = field(default_factory=list)
    start_line: int = 0
    end_line: int = 0
    sub: Node | None = None  # the trigger of ONBUILD
    comments: list[str] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.cmd.lower()


@record
class Dockerfile:
    nodes: list[Node]
    escape: str = "\\"
    directives: dict[str, str] = field(default_factory=dict)
    warnings: list[str] = field(default_factory=list)
    filename: str = "Dockerfile"


class _Directives:
    def __init__(self) -> None:
        self.escape = "\\"
        self.continuation = _continuation_regex("\\")
        self.done = False
        self.seen: dict[str, str] = {}

    def possible_directive(self, line: str) -> bool:
        if self.done:
            return False
        if not line.startswith("#"):
            self.done = True
            return False
        match = _DIRECTIVE.match(line[1:].lstrip())
        key = match.group(1).lower() if match else ""
        if not match or key not in _DIRECTIVES:
            self.done = True
            return False
        if key in self.seen:
            raise BuildError(f"only one {key} parser directive can be used")
        value = match.group(2)
        self.seen[key] = value
        if key == "escape":
            if value not in ("`", "\\"):
                raise BuildError(f"invalid escape token '{value}' does not match ` or \\")
            self.escape = value
            self.continuation = _continuation_regex(value)
        return True


def _continuation_regex(escape: str) -> re.Pattern[str]:
    e = re.escape(escape)
    return re.compile(rf"([^{e}]){e}[ \t]*$|^{e}[ \t]*$")


def _is_comment(line: str) -> bool:
    return line.lstrip().startswith("#")


def parse(data: str | bytes, filename: str = "Dockerfile") -> Dockerfile:
    """Parse a whole Dockerfile; raises ParseError with the file and line."""
    if isinstance(data, bytes):
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError:
            text = data.decode("latin-1")
    else:
        text = data
    text = text.removeprefix("\ufeff")
    lines = [line + "\n" for line in text.split("\n")]
    if lines[-1] == "\n":
        lines.pop()  # the text ended with a newline (or was empty)
    else:
        lines[-1] = lines[-1][:-1]
    d = _Directives()
    nodes: list[Node] = []
    warnings: list[str] = []
    comments: list[str] = []
    i = 0
    current = 0

    def fail(message: str, line: int) -> ParseError:
        return ParseError(message, filename, line)

    while i < len(lines):
        raw = lines[i]
        i += 1
        current += 1
        if _is_comment(raw):
            comment = raw.strip()[1:].strip()
            comments = [*comments, comment] if comment else []
        stripped = raw.rstrip("\r\n").lstrip()
        try:
            if d.possible_directive(stripped) and comments:
                comments = comments[:-1]
        except BuildError as err:
            raise fail(str(err), current) from None
        line = "" if _is_comment(stripped) else stripped
        start = current
        line, end_of_line = _trim_continuation(line, d)
        if end_of_line and not line:
            continue
        parts = [line]
        empty_continuation = False
        while not end_of_line and i < len(lines):
            raw = lines[i]
            i += 1
            current += 1
            if _is_comment(raw):
                continue
            piece = raw.rstrip("\r\n")
            if not piece.strip():
                empty_continuation = True
                continue
            piece, end_of_line = _trim_continuation(piece, d)
            parts.append(piece)
        logical = "".join(parts)
        if empty_continuation:
            warnings.append(f"Empty continuation line found in: {logical}")
        try:
            node = _node_from_line(logical, d)
        except BuildError as err:
            raise fail(str(err), start) from None
        if _can_contain_heredoc(node) and "<<" in logical:
            try:
                docs = _heredocs_from_line(logical)
            except BuildError as err:
                raise fail(str(err), start) from None
            for doc in docs:
                content: list[str] = []
                terminated = False
                while i < len(lines):
                    raw = lines[i]
                    i += 1
                    current += 1
                    candidate = raw.rstrip("\r\n")
                    if doc.chomp:
                        candidate = candidate.lstrip("\t")
                    if candidate == doc.name:
                        terminated = True
                        break
                    content.append(raw)
                if not terminated:
                    raise fail("unterminated heredoc", start)
                doc.content = "".join(content)
                target = node.sub if node.sub is not None else node
                target.heredocs.append(doc)
                if target is not node:
                    node.heredocs.append(doc)
        node.start_line, node.end_line = start, current
        node.comments = comments
        nodes.append(node)
        comments = []
    if not nodes:
        raise fail("file with no instructions", 0)
    return Dockerfile(nodes, d.escape, dict(d.seen), warnings, filename)


def _trim_continuation(line: str, d: _Directives) -> tuple[str, bool]:
    if d.continuation.search(line):
        return d.continuation.sub(r"\1", line, count=1), False
    return line, True


def _split_command(line: str, d: _Directives) -> tuple[str, list[str], str]:
    parts = _WHITESPACE.split(line.strip(), maxsplit=1)
    flags: list[str] = []
    rest = ""
    if len(parts) == 2:
        rest, flags = _extract_flags(parts[1], d.escape)
    return parts[0], flags, rest.strip()


def _extract_flags(line: str, escape: str) -> tuple[str, list[str]]:
    """Leading ``--flag[=value]`` words (quotes and escapes removed) and the rest."""
    words: list[str] = []
    pos = 0
    n = len(line)
    while True:
        while pos < n and line[pos].isspace():
            pos += 1
        if pos >= n:
            return "", words
        if not line.startswith("--", pos):
            return line[pos:], words
        word: list[str] = []
        blank_ok = False
        quote = ""
        while pos < n:
            ch = line[pos]
            if quote:
                if ch == quote:
                    quote = ""
                elif ch == escape and pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
                elif ch != escape:
                    word.append(ch)
                pos += 1
                continue
            if ch.isspace():
                break
            if ch in ("'", '"'):
                quote = ch
                blank_ok = True
            elif ch == escape:
                if pos + 1 < n:
                    pos += 1
                    word.append(line[pos])
            else:
                word.append(ch)
            pos += 1
        text = "".join(word)
        if text == "--":
            return line[pos:], words
        if blank_ok or text:
            words.append(text)


def parse_words(rest: str, escape: str) -> list[str]:
    """Split on white space outside quotes, keeping quotes and escapes in the words."""
    words: list[str] = []
    word: list[str] = []
    blank_ok = False
    quote = ""
    in_word = False
    pos = 0
    n = len(rest)
    while pos < n:
        ch = rest[pos]
        if not in_word and not quote:
            if ch.isspace():
                pos += 1
                continue
            in_word = True
        if quote:
            if ch == quote:
                quote = ""
            elif ch == escape and quote != "'":
                if pos + 1 == n:
                    pos += 1
                    continue
                word.append(ch)
                pos += 1
                ch = rest[pos]
            word.append(ch)
            pos += 1
            continue
        if ch.isspace():
            if blank_ok or word:
                words.append("".join(word))
            word, blank_ok, in_word = [], False, False
            pos += 1
            continue
        if ch in ("'", '"'):
            quote = ch
            blank_ok = True
        elif ch == escape:
            if pos + 1 == n:
                pos += 1
                continue
            word.append(ch)
            pos += 1
            ch = rest[pos]
        word.append(ch)
        pos += 1
    if in_word and (blank_ok or word):
        words.append("".join(word))
    return words


class _NotStringArray(BuildError):
    pass


def _parse_json(rest: str) -> list[str] | None:
    rest = rest.lstrip()
    if not rest.startswith("["):
        return None
    try:
        value = json.loads(rest)
    except ValueError:
        return None
    if not isinstance(value, list):
        return None
    if not all(isinstance(v, str) for v in value):
        raise _NotStringArray(
            "when using JSON array syntax, arrays must be comprised of strings only"
        )
    return value


def _name_val(rest: str, key: str, escape: str) -> list[str]:
    """ENV/LABEL: ``[k, v, sep, ...]`` with sep "=" (new form) or "" (legacy ``K V``)."""
    words = parse_words(rest, escape)
    if not words:
        return []
    if "=" not in words[0]:
        parts = _WHITESPACE.split(rest, maxsplit=1)
        if len(parts) < 2:
            raise BuildError(f"{key} must have two arguments")
        return [parts[0], parts[1], ""]
    out: list[str] = []
    for word in words:
        if "=" not in word:
            raise BuildError(
                f'Syntax error - can\'t find = in "{word}". Must be of the form: name=value'
            )
        name, _, value = word.partition("=")
        out += [name, value, "="]
    return out


def _node_from_line(line: str, d: _Directives) -> Node:
    cmd, flags, rest = _split_command(line, d)
    kind = cmd.lower()
    is_json = False
    args: list[str]
    sub: Node | None = None
    if kind in ("run", "cmd", "entrypoint", "shell"):
        parsed = _parse_json(rest) if rest else None
        is_json = parsed is not None
        args = parsed if parsed is not None else ([rest] if rest else [])
    elif kind in ("copy", "add", "volume"):
        parsed = _parse_json(rest)
        is_json = parsed is not None
        args = parsed if parsed is not None else (_WHITESPACE.split(rest) if rest else [])
    elif kind in ("env", "label"):
        args = _name_val(rest, kind.upper(), d.escape)
    elif kind == "arg":
        args = parse_words(rest, d.escape)
    elif kind in ("expose", "from"):
        args = _WHITESPACE.split(rest) if rest else []
    elif kind == "healthcheck":
        args, is_json = _health_args(rest)
    elif kind == "onbuild":
        args = [rest] if rest else []
        if rest:
            sub = _node_from_line(rest, d)
    elif kind in ("maintainer", "stopsignal", "user", "workdir"):
        args = [rest] if rest else []
    else:
        args = [rest] if rest else []
    return Node(cmd, line, flags, args, is_json, sub=sub)


def _health_args(rest: str) -> tuple[list[str], bool]:
    parts = rest.split(None, 1)
    if not parts:
        return [], False
    kind = parts[0]
    tail = parts[1] if len(parts) > 1 else ""
    if not tail:
        return [kind], False
    parsed = _parse_json(tail)
    if parsed is not None:
        return [kind, *parsed], True
    return [kind, tail], False


def _can_contain_heredoc(node: Node) -> bool:
    target = node.sub if node.name == "onbuild" and node.sub is not None else node
    return target.name in HEREDOC_COMMANDS and not target.json


def parse_heredoc(word: str) -> Heredoc | None:
    """The heredoc a word such as ``<<EOF``, ``<<-"EOF"`` or ``3<<X`` opens, if any."""
    from dockyard.build.shell import Lexer

    match = _HEREDOC.match(word)
    if not match or not match.group(3):
        return None
    rest = match.group(3)
    words = Lexer(skip_unset=True).process_words(rest, {})
    if len(words) != 1:
        return None
    raw = Lexer(skip_unset=True, raw_quotes=True).process_words(rest, {})
    if len(raw) != 1:
        raise BuildError(f"internal lexing of heredoc produced inconsistent results: {rest}")
    name = words[0]
    quotes = name.count("'") + name.count('"')
    raw_quotes = raw[0].count("'") + raw[0].count('"')
    return Heredoc(
        name,
        expand=quotes == raw_quotes,
        chomp=match.group(2) == "-",
        fd=int(match.group(1) or 0),
    )


def _heredocs_from_line(line: str) -> list[Heredoc]:
    from dockyard.build.shell import Lexer

    lexer = Lexer(raw_quotes=True, raw_escapes=True, skip_unset=True)
    try:
        words = lexer.process_words(line, {})
    except BuildError:
        words = []
    docs = []
    for word in words:
        doc = parse_heredoc(word)
        if doc is not None:
            docs.append(doc)
    return docs


def chomp_heredoc(content: str) -> str:
    """``<<-``: leading tabs removed from every line of the content."""
    return _LEADING_TABS.sub("", content)

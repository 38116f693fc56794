"""Go text/template, as Docker's ``--format`` flags use it.

Lexing and parsing follow Go's text/template/parse closely so that errors read like
Docker's (``template parsing error: template: :1: function "foo" not defined``). Data
are Python values: dicts stand for Go maps, records and other objects for structs
(attributes, methods called with arguments), lists for slices. Execution and the
function set live in :mod:`~dockyard.cli.gotemplate_exec` and
:mod:`~dockyard.cli.gotemplate_funcs`, lexing in :mod:`~dockyard.cli.gotemplate_lex`.
"""

from __future__ import annotations

import functools
from typing import Any

from dockyard.cli import gofmt
from dockyard.cli.gofmt import MISSING
from dockyard.cli.gotemplate_lex import Lexer, line_of, number_value, tok_str, unquote
from dockyard.errors import InvalidArgument


class TemplateError(InvalidArgument):
    """A --format template that does not parse or fails while executing."""

    def __init__(self, detail: str, at_parse: bool = False) -> None:
        super().__init__("template parsing error: " + detail)
        self.detail = detail  # Go's error text, without Docker's prefix
        self.at_parse = at_parse  # docker inspect exits 64 for these, 1 for execution errors


# ---------------------------------------------------------------------------
# nodes (Go's parse.Node kinds; str() gives the source form used in error messages)


class _Node:
    __slots__ = ("pos",)

    def __init__(self, pos: int) -> None:
        self.pos = pos


class _Text(_Node):
    __slots__ = ("text",)

    def __init__(self, pos: int, text: str) -> None:
        self.pos, self.text = pos, text


class _Field(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: list[str]) -> None:
        self.pos, self.idents = pos, idents

    def __str__(self) -> str:
        return "".join("." + i for i in self.idents)


class _Var(_Node):
    __slots__ = ("idents",)

    def __init__(self, pos: int, idents: list[str]) -> None:
        self.pos, self.idents = pos, idents

    def __str__(self) -> str:
        return ".".join(self.idents)


class _Chain(_Node):
    __slots__ = ("node", "fields")

    def __init__(self, pos: int, node: _Node, fields: list[str]) -> None:
        self.pos, self.node, self.fields = pos, node, fields

    def __str__(self) -> str:
        inner = f"({self.node})" if isinstance(self.node, _Pipe) else str(self.node)
        return inner + "".join("." + f for f in self.fields)


class _Ident(_Node):
    __slots__ = ("name",)

    def __init__(self, pos: int, name: str) -> None:
        self.pos, self.name = pos, name

    def __str__(self) -> str:
        return self.name


class _Const(_Node):
    """Dot, nil, bool, number and string literals: ``text`` is the source spelling."""

    __slots__ = ("kind", "text", "value")

    def __init__(self, pos: int, kind: str, text: str, value: Any) -> None:
        self.pos, self.kind, self.text, self.value = pos, kind, text, value

    def __str__(self) -> str:
        return self.text


class _Cmd(_Node):
    __slots__ = ("args",)

    def __init__(self, pos: int) -> None:
        self.pos = pos
        self.args: list[_Node] = []

    def __str__(self) -> str:
        return " ".join(f"({a})" if isinstance(a, _Pipe) else str(a) for a in self.args)


class _Pipe(_Node):
    __slots__ = ("decl", "is_assign", "cmds")

    def __init__(self, pos: int) -> None:
        self.pos, self.is_assign = pos, False
        self.decl: list[str] = []
        self.cmds: list[_Cmd] = []

    def __str__(self) -> str:
        head = (", ".join(self.decl) + (" = " if self.is_assign else " := ")) if self.decl else ""
        return head + " | ".join(str(c) for c in self.cmds)


class _Action(_Node):
    __slots__ = ("pipe",)

    def __init__(self, pos: int, pipe: _Pipe) -> None:
        self.pos, self.pipe = pos, pipe


class _Branch(_Node):
    """{{if}}, {{with}} and {{range}}."""

    __slots__ = ("kind", "pipe", "body", "orelse")

    def __init__(
        self, pos: int, kind: str, pipe: _Pipe, body: list[_Node], orelse: list[_Node] | None
    ) -> None:
        self.pos, self.kind, self.pipe, self.body, self.orelse = pos, kind, pipe, body, orelse


class _Jump(_Node):
    """{{break}} or {{continue}}."""

    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        self.pos, self.kind = pos, kind


class _End(_Node):
    """{{end}} or {{else}}, as the parser meets them."""

    __slots__ = ("kind",)

    def __init__(self, pos: int, kind: str) -> None:
        self.pos, self.kind = pos, kind

    def __str__(self) -> str:
        return "{{" + self.kind + "}}"


# ---------------------------------------------------------------------------
# parser


class _Parser:
    def __init__(self, src: str, funcs: frozenset[str]) -> None:
        self.src = src
        self.toks = Lexer(src).run()
        self.i = 0
        self.funcs = funcs
        self.vars = ["$"]
        self.range_depth = 0
        self.action_line = 0
        self.far = 0  # the furthest token looked at: Go reports errors at its line

    def error(self, msg: str, tok: tuple[str, str, int] | None = None) -> TemplateError:
        del tok  # Go's parser reports the line of its look-ahead, not of the culprit
        line = line_of(self.src, self.toks[self.far][2])
        return TemplateError(f"template: :{line}: {msg}", at_parse=True)

    def next(self) -> tuple[str, str, int]:
        tok = self.toks[self.i]
        self.far = max(self.far, self.i)
        if tok[0] != "eof":
            self.i += 1
        return tok

    def peek(self) -> tuple[str, str, int]:
        self.far = max(self.far, self.i)
        return self.toks[self.i]

    def next_ns(self) -> tuple[str, str, int]:
        tok = self.next()
        while tok[0] == "space":
            tok = self.next()
        return tok

    def peek_ns(self) -> tuple[str, str, int]:
        j = self.i
        while self.toks[j][0] == "space":
            j += 1
        self.far = max(self.far, j)
        return self.toks[j]

    def unexpected(self, tok: tuple[str, str, int], context: str) -> TemplateError:
        if tok[0] == "error":
            msg, line = tok[1], line_of(self.src, tok[2])
            if self.action_line and self.action_line != line:
                extra = f" in action started at :{self.action_line}"
                msg += extra[len(" in action") :] if msg.endswith(" action") else extra
            return self.error(msg, tok)
        return self.error(f"unexpected {tok_str(tok)} in {context}", tok)

    def parse(self) -> list[_Node]:
        nodes: list[_Node] = []
        while self.peek()[0] != "eof":
            n = self.text_or_action()
            if isinstance(n, _End):
                raise self.error(f"unexpected {n}")
            nodes.append(n)
        return nodes

    def text_or_action(self) -> _Node:
        tok = self.next_ns()
        if tok[0] == "text":
            return _Text(tok[2], tok[1])
        if tok[0] == "left":
            self.action_line = line_of(self.src, tok[2])
            try:
                return self.action()
            finally:
                self.action_line = 0
        raise self.unexpected(tok, "input")

    def item_list(self) -> tuple[list[_Node], _End]:
        nodes: list[_Node] = []
        while self.peek_ns()[0] != "eof":
            n = self.text_or_action()
            if isinstance(n, _End):
                return nodes, n
            nodes.append(n)
        raise self.error("unexpected EOF", self.peek())

    def expect(self, kind: str, context: str) -> tuple[str, str, int]:
        tok = self.next_ns()
        if tok[0] != kind:
            raise self.unexpected(tok, context)
        return tok

    def action(self) -> _Node:
        tok = self.next_ns()
        if tok[0] == "kw":
            kw = tok[1]
            if kw in ("break", "continue"):
                t = self.next_ns()
                if t[0] != "right":
                    raise self.unexpected(t, "{{" + kw + "}}")
                if not self.range_depth:
                    raise self.error(f"{{{{{kw}}}}} outside {{{{range}}}}", t)
                return _Jump(tok[2], kw)
            if kw == "end":
                return _End(self.expect("right", "end")[2], "end")
            if kw == "else":
                if self.peek_ns()[0] == "kw" and self.peek_ns()[1] in ("if", "with"):
                    return _End(tok[2], "else")
                return _End(self.expect("right", "else")[2], "else")
            if kw in ("if", "with", "range"):
                return self.control(kw, tok)
            raise self.error(f"{{{{{kw}}}}} is not supported in --format templates", tok)
        self.i -= 1
        pos = self.peek_ns()[2]
        return _Action(pos, self.pipeline("command", "right"))

    def control(self, kind: str, tok: tuple[str, str, int]) -> _Node:
        mark = len(self.vars)
        try:
            pipe = self.pipeline(kind, "right")
            if kind == "range":
                self.range_depth += 1
            body, nxt = self.item_list()
            if kind == "range":
                self.range_depth -= 1
            orelse: list[_Node] | None = None
            if nxt.kind == "else":
                p = self.peek_ns()
                if kind in ("if", "with") and p[0] == "kw" and p[1] == kind:
                    self.next_ns()
                    orelse = [self.control(kind, p)]
                else:
                    orelse, nxt = self.item_list()
                    if nxt.kind != "end":
                        raise self.error(f"expected end; found {nxt}")
            return _Branch(pipe.pos, kind, pipe, body, orelse)
        finally:
            del self.vars[mark:]

    def pipeline(self, context: str, end: str) -> _Pipe:
        pipe = _Pipe(self.peek_ns()[2])
        while self.peek_ns()[0] == "var":
            save = self.i
            v = self.next_ns()
            nxt = self.peek_ns()
            if nxt[0] in ("assign", "declare"):
                pipe.is_assign = nxt[0] == "assign"
                self.next_ns()
                pipe.decl.append(v[1])
                self.vars.append(v[1])
                break
            if nxt[0] == "char_,":
                self.next_ns()
                pipe.decl.append(v[1])
                self.vars.append(v[1])
                if context == "range" and len(pipe.decl) < 2:
                    if self.peek_ns()[0] in ("var", "right", "rparen"):
                        continue
                    raise self.error("range can only initialize variables")
                raise self.error(f"too many declarations in {context}")
            self.i = save
            break
        while True:
            tok = self.next_ns()
            if tok[0] == end:
                if not pipe.cmds:
                    raise self.error(f"missing value for {context}", tok)
                for k, c in enumerate(pipe.cmds[1:]):
                    a = c.args[0]
                    if isinstance(a, _Const):
                        raise self.error(f"non executable command in pipeline stage {k + 2}", tok)
                return pipe
            if tok[0] in (
                "bool",
                "char",
                "dot",
                "field",
                "ident",
                "number",
                "nil",
                "raw",
                "string",
                "var",
                "lparen",
            ):
                self.i -= 1
                pipe.cmds.append(self.command())
            else:
                raise self.unexpected(tok, context)

    def command(self) -> _Cmd:
        cmd = _Cmd(self.peek_ns()[2])
        while True:
            self.peek_ns()
            while self.peek()[0] == "space":
                self.next()
            operand = self.operand()
            if operand is not None:
                cmd.args.append(operand)
            tok = self.next()
            if tok[0] == "space":
                continue
            if tok[0] in ("right", "rparen"):
                self.i -= 1
            elif tok[0] != "pipe":
                raise self.unexpected(tok, "operand")
            break
        if not cmd.args:
            raise self.error("empty command")
        return cmd

    def operand(self) -> _Node | None:
        node = self.term()
        if node is None or self.peek()[0] != "field":
            return node
        pos = self.peek()[2]
        fields: list[str] = []
        while self.peek()[0] == "field":
            fields.append(self.next()[1][1:])
        if isinstance(node, _Field):
            return _Field(pos, node.idents + fields)
        if isinstance(node, _Var):
            return _Var(pos, node.idents + fields)
        if isinstance(node, _Const):
            raise self.error(f"unexpected . after term {gofmt.quote(str(node))}")
        return _Chain(pos, node, fields)

    def term(self) -> _Node | None:
        tok = self.next_ns()
        kind, val, pos = tok
        if kind == "ident":
            if val not in self.funcs:
                raise self.error(f"function {gofmt.quote(val)} not defined", tok)
            return _Ident(pos, val)
        if kind == "dot":
            return _Const(pos, "dot", ".", None)
        if kind == "nil":
            return _Const(pos, "nil", "nil", None)
        if kind == "var":
            if val not in self.vars:
                raise self.error(f"undefined variable {gofmt.quote(val)}", tok)
            return _Var(pos, [val])
        if kind == "field":
            return _Field(pos, [val[1:]])
        if kind == "bool":
            return _Const(pos, "bool", val, val == "true")
        if kind in ("number", "char"):
            try:
                value, ival = number_value(val)
            except ValueError as e:
                raise self.error(str(e), tok) from None
            return _Const(pos, "number", val, (value, ival))
        if kind == "lparen":
            return self.pipeline("parenthesized pipeline", "rparen")
        if kind in ("string", "raw"):
            try:
                return _Const(pos, "string", val, unquote(val))
            except ValueError as e:
                raise self.error(str(e), tok) from None
        self.i -= 1
        return None


# ---------------------------------------------------------------------------
# templates


class Template:
    """A parsed template; execute it once per item."""

    def __init__(self, source: str, nodes: list[_Node]) -> None:
        self.source = source
        self.nodes = nodes

    def execute(self, data: Any, *, missingkey_error: bool = False) -> str:
        """Render ``data``; raise TemplateError as Docker reports execution errors.

        ``missingkey_error`` is Go's Option("missingkey=error"), which ``docker inspect``
        uses when it re-runs a failed template on the raw JSON: a missing map key is
        then an error instead of ``<no value>``.
        """
        from dockyard.cli import gotemplate_exec

        out: list[str] = []
        gotemplate_exec.run(self, data, out, header=False, missingkey_error=missingkey_error)
        return "".join(out)

    def execute_header(self, headers: Any) -> str:
        """Render a table header row: Docker's header functions, errors cut the output short."""
        from dockyard.cli import gotemplate_exec

        out: list[str] = []
        try:
            gotemplate_exec.run(self, headers, out, header=True)
        except TemplateError:
            pass
        return "".join(out)


def _function_names() -> frozenset[str]:
    from dockyard.cli import gotemplate_funcs

    return gotemplate_funcs.FUNCTION_NAMES


@functools.lru_cache(maxsize=256)
def compile(text: str) -> Template:  # noqa: A001 - mirrors re.compile
    """Parse a Go template (cached); raise TemplateError on a syntax error."""
    return Template(text, _Parser(text, _function_names()).parse())


def render(text: str, data: Any) -> str:
    """Parse (cached) and execute a template against one value."""
    return compile(text).execute(data)


__all__ = ["MISSING", "Template", "TemplateError", "compile", "render"]

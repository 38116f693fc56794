"""Executing parsed Go templates, following Go's text/template/exec.go.

Semantics follow Go's text/template/exec.go: methods before map keys, missing map keys
yield ``<no value>``, functions get typed arguments, errors name the failing node.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from dockyard.cli import gofmt
from dockyard.cli.gofmt import MISSING
from dockyard.cli.gotemplate import (
    Template,
    TemplateError,
    _Action,
    _Branch,
    _Chain,
    _Cmd,
    _Const,
    _Field,
    _Ident,
    _Jump,
    _Node,
    _Pipe,
    _Text,
    _Var,
)
from dockyard.cli.gotemplate_funcs import (
    FUNCS,
    GO_TYPES,
    HEADER_FUNCS,
    PRIMITIVES,
    FuncError,
    Sig,
    truth,
)


class _NoFinal:
    """No piped-in value (Go's missingVal)."""


_NOFINAL: Any = _NoFinal()


class _Break(Exception):
    pass


class _Continue(Exception):
    pass


# ---------------------------------------------------------------------------
# evaluation


class _State:
    __slots__ = ("src", "vars", "out", "funcs", "strict")

    def __init__(self, tmpl: Template, data: Any, out: list[str], funcs: dict[str, Sig]) -> None:
        self.strict = False  # Go's missingkey=error
        self.src = tmpl.source
        self.vars: list[list[Any]] = [["$", data]]
        self.out = out
        self.funcs = funcs

    def error(self, node: _Node, msg: str) -> TemplateError:
        before = self.src[: node.pos]
        nl = before.rfind("\n")
        col = len(before[nl + 1 :].encode())
        line = before.count("\n") + 1
        return TemplateError(f'template: :{line}:{col}: executing "" at <{node}>: {msg}')

    # -- walking

    def walk(self, dot: Any, nodes: list[_Node]) -> None:
        for node in nodes:
            if isinstance(node, _Text):
                self.out.append(node.text)
            elif isinstance(node, _Action):
                val = self.pipeline(dot, node.pipe)
                if not node.pipe.decl:
                    self.out.append(gofmt.sprint_value(val))
            elif isinstance(node, _Branch):
                mark = len(self.vars)
                try:
                    if node.kind == "range":
                        self.walk_range(dot, node)
                    else:
                        val = self.pipeline(dot, node.pipe)
                        if truth(val):
                            self.walk(val if node.kind == "with" else dot, node.body)
                        elif node.orelse is not None:
                            self.walk(dot, node.orelse)
                finally:
                    del self.vars[mark:]
            elif isinstance(node, _Jump):
                raise _Break() if node.kind == "break" else _Continue()

    def walk_range(self, dot: Any, node: _Branch) -> None:
        val = self.pipeline(dot, node.pipe)
        items: Iterable[tuple[Any, Any]]
        if val is None or val is MISSING:
            items = ()
        elif isinstance(val, Mapping):
            try:
                keys = sorted(val)
            except TypeError:
                keys = list(val)
            items = [(k, val[k]) for k in keys]
        elif isinstance(val, int) and not isinstance(val, bool):
            if len(node.pipe.decl) > 1:
                raise self.error(node, f"can't use {val} to iterate over more than one variable")
            items = [(i, i) for i in range(val)]
        elif isinstance(val, (str, bytes, bytearray, float, bool)) or not isinstance(val, Iterable):
            where = node.pipe.cmds[-1]
            raise self.error(where, f"range can't iterate over {gofmt.sprint_value(val)}")
        else:
            items = enumerate(val)
        mark = len(self.vars)
        ran = False
        for key, elem in items:
            ran = True
            decl = node.pipe.decl
            if decl and node.pipe.is_assign:
                self.set_var(node, decl[-1], elem)
                if len(decl) > 1:
                    self.set_var(node, decl[0], key)
            elif decl:
                self.vars[-1][1] = elem
                if len(decl) > 1:
                    self.vars[-2][1] = key
            try:
                self.walk(elem, node.body)
            except _Continue:
                pass
            except _Break:
                break
            finally:
                del self.vars[mark:]
        if not ran and node.orelse is not None:
            self.walk(dot, node.orelse)

    # -- pipelines and commands

    def pipeline(self, dot: Any, pipe: _Pipe) -> Any:
        value = _NOFINAL
        for cmd in pipe.cmds:
            value = self.command(dot, cmd, value)
        for name in pipe.decl:
            if pipe.is_assign:
                self.set_var(pipe, name, value)
            else:
                self.vars.append([name, value])
        return value

    def command(self, dot: Any, cmd: _Cmd, final: Any) -> Any:
        first = cmd.args[0]
        if isinstance(first, _Field):
            return self.field_chain(dot, dot, first, first.idents, cmd.args, final)
        if isinstance(first, _Chain):
            return self.chain(dot, first, cmd.args, final)
        if isinstance(first, _Ident):
            return self.function(dot, first, cmd, cmd.args, final)
        if isinstance(first, _Var):
            return self.variable(dot, first, cmd.args, final)
        if len(cmd.args) > 1 or final is not _NOFINAL:
            raise self.error(first, f"can't give argument to non-function {first}")
        if isinstance(first, _Pipe):
            return self.pipeline(dot, first)
        assert isinstance(first, _Const)
        if first.kind == "dot":
            return dot
        if first.kind == "nil":
            raise self.error(first, "nil is not a command")
        if first.kind == "number":
            return first.value[0]
        return first.value

    def chain(self, dot: Any, chain: _Chain, args: list[_Node], final: Any) -> Any:
        if isinstance(chain.node, _Const) and chain.node.kind == "nil":
            raise self.error(chain, f"indirection through explicit nil in {chain}")
        recv = self.arg(dot, "val", chain.node)
        return self.field_chain(dot, recv, chain, chain.fields, args, final)

    def variable(self, dot: Any, var: _Var, args: list[_Node], final: Any) -> Any:
        value = self.var_value(var, var.idents[0])
        if len(var.idents) == 1:
            if len(args) > 1 or final is not _NOFINAL:
                raise self.error(var, f"can't give argument to non-function {var}")
            return value
        return self.field_chain(dot, value, var, var.idents[1:], args, final)

    def var_value(self, node: _Node, name: str) -> Any:
        for entry in reversed(self.vars):
            if entry[0] == name:
                return entry[1]
        raise self.error(node, f"undefined variable: {name}")

    def set_var(self, node: _Node, name: str, value: Any) -> None:
        for entry in reversed(self.vars):
            if entry[0] == name:
                entry[1] = value
                return
        raise self.error(node, f"undefined variable: {name}")

    def field_chain(
        self, dot: Any, recv: Any, node: _Node, idents: list[str], args: list[_Node], final: Any
    ) -> Any:
        for name in idents[:-1]:
            recv = self.field(dot, name, node, [], _NOFINAL, recv)
        return self.field(dot, idents[-1], node, args, final, recv)

    def field(
        self, dot: Any, name: str, node: _Node, args: list[_Node], final: Any, recv: Any
    ) -> Any:
        if recv is MISSING:
            if self.strict:
                raise self.error(node, f'nil data; no entry for key "{name}"')
            return MISSING
        if recv is None:
            raise self.error(node, f"nil pointer evaluating interface {{}}.{name}")
        method = _method(recv, name)
        if method is not None:
            return self.call(dot, method, name, node, node, args, final, builtin=False)
        has_args = len(args) > 1 or final is not _NOFINAL
        if isinstance(recv, Mapping):
            if has_args:
                raise self.error(node, f"{name} is not a method but has arguments")
            if name in recv:
                return recv[name]
            if self.strict:
                raise self.error(node, f'map has no entry for key "{name}"')
            if getattr(recv, "__go_type__", None):  # a struct-like record, not a map
                raise self.error(
                    node, f"can't evaluate field {name} in type {gofmt.type_name(recv)}"
                )
            return MISSING
        if not isinstance(recv, PRIMITIVES) and not name.startswith("_"):
            try:
                value = getattr(recv, name)
            except AttributeError:
                pass
            else:
                if has_args:
                    raise self.error(
                        node, f"{name} has arguments but cannot be invoked as function"
                    )
                return value
        raise self.error(node, f"can't evaluate field {name} in type {gofmt.type_name(recv)}")

    def function(self, dot: Any, ident: _Ident, cmd: _Node, args: list[_Node], final: Any) -> Any:
        sig = self.funcs.get(ident.name)
        if sig is None:
            raise self.error(ident, f'"{ident.name}" is not a defined function')
        return self.call(dot, sig, ident.name, ident, cmd, args, final, builtin=True)

    def call(
        self,
        dot: Any,
        fn: Any,
        name: str,
        node: _Node,
        cmd: _Node,
        args: list[_Node],
        final: Any,
        builtin: bool,
    ) -> Any:
        args = args[1:]
        if not builtin:
            values = [self.arg(dot, "any", a) for a in args]
            if final is not _NOFINAL:
                values.append(None if final is MISSING else final)
            try:
                return fn(*values)
            except Exception as e:  # Go recovers a panicking method the same way
                raise self.error(cmd, f"error calling {name}: {e}") from None
        func, params, variadic = fn
        num_in = len(args) + (final is not _NOFINAL)
        if variadic is not None:
            if num_in < len(params):
                raise self.error(
                    node,
                    f"wrong number of args for {name}: want at least {len(params)} got {len(args)}",
                )
        elif num_in != len(params):
            raise self.error(
                node, f"wrong number of args for {name}: want {len(params)} got {num_in}"
            )
        if name in ("and", "or"):
            v: Any = MISSING
            for a in args:
                v = self.arg(dot, "val", a)
                if truth(v) == (name == "or"):
                    return v
            return final if final is not _NOFINAL else v
        values = []
        for k, a in enumerate(args):
            values.append(self.arg(dot, params[k] if k < len(params) else variadic or "any", a))
        if final is not _NOFINAL:
            k = num_in - 1
            values.append(
                self.check(cmd, params[k] if k < len(params) else variadic or "any", final)
            )
        try:
            return func(*values)
        except (FuncError, ArithmeticError, ValueError, TypeError) as e:
            raise self.error(cmd, f"error calling {name}: {e}") from None

    def arg(self, dot: Any, typ: str, node: _Node) -> Any:
        if isinstance(node, _Const):
            kind = node.kind
            if kind == "dot":
                return self.check(node, typ, dot)
            if kind == "nil":
                if typ in ("val", "any"):
                    return None
                raise self.error(node, f"cannot assign nil to {GO_TYPES[typ]}")
            value = node.value[0] if kind == "number" else node.value
            if typ == "str" and kind != "string":
                raise self.error(node, f"expected string; found {node}")
            if typ == "int":
                if kind != "number" or node.value[1] is None:
                    raise self.error(node, f"expected integer; found {node}")
                return node.value[1]
            return value
        if isinstance(node, _Field):
            value = self.field_chain(dot, dot, node, node.idents, [node], _NOFINAL)
        elif isinstance(node, _Var):
            value = self.variable(dot, node, [node], _NOFINAL)
        elif isinstance(node, _Pipe):
            value = self.pipeline(dot, node)
        elif isinstance(node, _Ident):
            value = self.function(dot, node, node, [node], _NOFINAL)
        elif isinstance(node, _Chain):
            value = self.chain(dot, node, [node], _NOFINAL)
        else:
            raise self.error(node, f"can't handle {node} for arg")
        return self.check(node, typ, value)

    def check(self, node: _Node, typ: str, value: Any) -> Any:
        if typ == "val":
            return value
        if typ == "any":
            return None if value is MISSING else value
        if value is MISSING:
            raise self.error(node, f"invalid value; expected {GO_TYPES[typ]}")
        ok = (
            isinstance(value, str)
            if typ == "str"
            else isinstance(value, int) and not isinstance(value, bool)
        )
        if not ok:
            raise self.error(
                node,
                f"wrong type for value; expected {GO_TYPES[typ]}; got {gofmt.type_name(value)}",
            )
        return value


def _method(recv: Any, name: str) -> Callable[..., Any] | None:
    """A method Go would find on the receiver (methods win over map keys and fields)."""
    if name.startswith("_") or isinstance(recv, PRIMITIVES):
        return None
    cls_attr = getattr(type(recv), name, None)
    if cls_attr is None or not callable(cls_attr) or isinstance(cls_attr, type):
        return None
    if isinstance(recv, Mapping) and (hasattr(dict, name) or hasattr(Mapping, name)):
        return None
    bound = getattr(recv, name)
    return bound if callable(bound) else None


def run(
    tmpl: Template, data: Any, out: list[str], header: bool, missingkey_error: bool = False
) -> None:
    """Execute ``tmpl`` on ``data``, appending text to ``out`` (partial output on error)."""
    state = _State(tmpl, data, out, HEADER_FUNCS if header else FUNCS)
    state.strict = missingkey_error
    try:
        state.walk(data, tmpl.nodes)
    except RecursionError:
        raise TemplateError("template: : exceeded maximum template depth") from None

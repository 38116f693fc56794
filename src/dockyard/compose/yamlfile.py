"""Reading Compose YAML: line and column in every error, duplicate keys refused.

Besides the data, loading returns where each value sits (``services.web.ports[0]``
-> line/column), so that a schema error found after interpolation and merging
can still point into the file. The ``!reset`` and ``!override`` tags of the
merge rules become the Reset and Override markers.
"""

from __future__ import annotations

from typing import Any

import yaml

from dockyard.errors import InvalidArgument
from dockyard.records import record


class ComposeFileError(InvalidArgument):
    """A Compose file that cannot be used; the message names the file and place."""


@record(frozen=True)
class Mark:
    file: str
    line: int  # 1-based
    column: int  # 1-based

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.column}"


class Reset:
    """``!reset``: the merged value is removed (or emptied)."""

    def __repr__(self) -> str:
        return "!reset"


RESET = Reset()


@record
class Override:
    """``!override VALUE``: replace instead of merging."""

    value: Any


class _Loader(yaml.SafeLoader):
    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, yaml.Node] = {}
        for key_node, _ in node.value:
            if key_node.tag == "tag:yaml.org,2002:merge":
                continue
            key = self.construct_object(key_node, deep=True)
            try:
                hash(key)
            except TypeError:
                raise yaml.constructor.ConstructorError(
                    None, None, "found an unhashable key", key_node.start_mark
                ) from None
            if key in seen:
                first = seen[key].start_mark
                raise yaml.constructor.ConstructorError(
                    None,
                    None,
                    f'mapping key "{key}" already defined at line {first.line + 1}',
                    key_node.start_mark,
                )
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def _reset(loader: _Loader, node: yaml.Node) -> Reset:
    return RESET


def _override(loader: _Loader, node: yaml.Node) -> Override:
    if isinstance(node, yaml.MappingNode):
        return Override(loader.construct_mapping(node, deep=True))
    if isinstance(node, yaml.SequenceNode):
        return Override(loader.construct_sequence(node, deep=True))
    return Override(loader.construct_scalar(node))


_Loader.add_constructor("!reset", _reset)
_Loader.add_constructor("!override", _override)


def _mark(source: str, m: Any) -> Mark:
    return Mark(source, m.line + 1, m.column + 1)


def _walk(node: yaml.Node, path: str, source: str, marks: dict[str, Mark], depth: int) -> None:
    if depth > 64:
        return
    if isinstance(node, yaml.MappingNode):
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                continue
            child = f"{path}.{key_node.value}" if path else str(key_node.value)
            marks.setdefault(child, _mark(source, key_node.start_mark))
            _walk(value_node, child, source, marks, depth + 1)
    elif isinstance(node, yaml.SequenceNode):
        for i, item in enumerate(node.value):
            child = f"{path}[{i}]"
            marks.setdefault(child, _mark(source, item.start_mark))
            _walk(item, child, source, marks, depth + 1)


def load_yaml(text: str, source: str) -> tuple[Any, dict[str, Mark]]:
    """The document in ``text`` and the position of every value in it.

    Invalid YAML raises ComposeFileError: ``FILE: yaml: line L, column C: PROBLEM``.
    """
    loader = _Loader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None, {}
        data = loader.construct_document(node)
    except yaml.MarkedYAMLError as err:
        mark = err.problem_mark or err.context_mark
        where = f"line {mark.line + 1}, column {mark.column + 1}: " if mark else ""
        problem = err.problem or err.context or "invalid YAML"
        raise ComposeFileError(f"{source}: yaml: {where}{problem}") from None
    except yaml.YAMLError as err:
        raise ComposeFileError(f"{source}: yaml: {err}") from None
    finally:
        loader.dispose()
    marks: dict[str, Mark] = {}
    _walk(node, "", source, marks, 0)
    return data, marks


def dump_yaml(data: Any) -> str:
    """YAML as ``compose config`` prints it: block style, keys in the given order."""

    class _Dumper(yaml.SafeDumper):
        def increase_indent(self, flow: bool = False, indentless: bool = False) -> None:
            super().increase_indent(flow, False)  # indent list items under their key

    def str_presenter(dumper: yaml.SafeDumper, value: str) -> yaml.ScalarNode:
        if "\n" in value:
            return dumper.represent_scalar("tag:yaml.org,2002:str", value, style="|")
        return dumper.represent_scalar("tag:yaml.org,2002:str", value)

    _Dumper.add_representer(str, str_presenter)
    return yaml.dump(
        data, Dumper=_Dumper, sort_keys=False, default_flow_style=False, allow_unicode=True
    )

"""Parsed nodes to typed instructions grouped in stages (Docker's ``instructions``).

Validation and messages follow BuildKit: unknown instructions and flags,
argument counts, stage names, JSON-only SHELL, HEALTHCHECK options. Variable
expansion happens later, at dispatch, when the environment is known.
"""

from __future__ import annotations

import re

from dockyard.build import BuildError
from dockyard.build.parser import (
    Dockerfile,
    Heredoc,
    Node,
    ParseError,
    chomp_heredoc,
    parse_heredoc,
)
from dockyard.records import field, record

_STAGE_NAME = re.compile(r"^[a-z][a-z0-9\-_.]*$")
INSTRUCTIONS = (
    "add arg cmd copy entrypoint env expose from healthcheck label maintainer onbuild run "
    "shell stopsignal user volume workdir"
).split()


@record
class KeyValue:
    key: str
    value: str | None  # None: ARG without a default
    legacy: bool = False  # ``ENV K V`` form


@record
class Instruction:
    node: Node

    @property
    def line(self) -> int:
        return self.node.start_line

    @property
    def text(self) -> str:
        return self.node.original


@record
class Env(Instruction):
    pairs: list[KeyValue] = field(default_factory=list)


@record
class Label(Instruction):
    pairs: list[KeyValue] = field(default_factory=list)


@record
class Maintainer(Instruction):
    name: str = ""


@record
class Arg(Instruction):
    pairs: list[KeyValue] = field(default_factory=list)


@record
class CommandLine(Instruction):
    """RUN, CMD, ENTRYPOINT: exec form, or one shell string (prepend_shell)."""

    cmdline: list[str] = field(default_factory=list)
    prepend_shell: bool = True
    files: list[Heredoc] = field(default_factory=list)


@record
class Run(CommandLine):
    network: str = ""  # --network=default|none|host
    mounts: list[str] = field(default_factory=list)  # --mount specs


@record
class Cmd(CommandLine):
    pass


@record
class Entrypoint(CommandLine):
    pass


@record
class Shell(Instruction):
    shell: list[str] = field(default_factory=list)


@record
class Workdir(Instruction):
    path: str = ""


@record
class User(Instruction):
    user: str = ""


@record
class Volume(Instruction):
    volumes: list[str] = field(default_factory=list)


@record
class Expose(Instruction):
    ports: list[str] = field(default_factory=list)


@record
class StopSignal(Instruction):
    signal: str = ""


@record
class Healthcheck(Instruction):
    test: list[str] = field(default_factory=list)
    interval: int = 0  # nanoseconds
    timeout: int = 0
    start_period: int = 0
    start_interval: int = 0
    retries: int = 0


@record
class Onbuild(Instruction):
    expression: str = ""


@record
class SourceContent:
    """A heredoc source of COPY/ADD: a file named ``path`` holding ``data``."""

    path: str
    data: str
    expand: bool


@record
class Copy(Instruction):
    """COPY and ADD (``is_add``)."""

    sources: list[str] = field(default_factory=list)
    contents: list[SourceContent] = field(default_factory=list)
    dest: str = ""
    chown: str = ""
    chmod: str = ""
    source: str = ""  # --from
    link: bool = False
    parents: bool = False
    excludes: list[str] = field(default_factory=list)
    is_add: bool = False
    checksum: str = ""
    unpack: bool | None = None

    @property
    def keyword(self) -> str:
        return "ADD" if self.is_add else "COPY"


@record
class Stage:
    base: str  # image reference (unexpanded), "scratch" or a stage name
    name: str  # lowercased "AS" name, or ""
    platform: str
    node: Node
    index: int
    commands: list[Instruction] = field(default_factory=list)

    @property
    def display_name(self) -> str:
        return self.name or f"stage-{self.index}"


class _Flags:
    """BuildKit's BFlags: ``--name=value`` / ``--name`` words, each declared first."""

    def __init__(self, words: list[str]) -> None:
        self.words = words
        self.kinds: dict[str, str] = {}
        self.values: dict[str, list[str]] = {}

    def string(self, name: str) -> None:
        self.kinds[name] = "string"

    def strings(self, name: str) -> None:
        self.kinds[name] = "strings"

    def boolean(self, name: str) -> None:
        self.kinds[name] = "bool"

    def parse(self) -> None:
        for word in self.words:
            if not word.startswith("--"):
                raise BuildError(f"arg should start with -- : {word}")
            name, eq, value = word[2:].partition("=")
            kind = self.kinds.get(name)
            if kind is None:
                raise BuildError(f"unknown flag: {name}")
            if name in self.values and kind != "strings":
                raise BuildError(f"duplicate flag specified: {name}")
            if kind == "bool":
                value = value.lower() if eq else "true"
                if value not in ("true", "false"):
                    raise BuildError(f"expecting boolean value for flag {name}, not: {value}")
            elif not eq:
                raise BuildError(f"missing a value on flag: {name}")
            self.values.setdefault(name, []).append(value)

    def get(self, name: str, default: str = "") -> str:
        return self.values.get(name, [default])[-1]

    def all(self, name: str) -> list[str]:
        return self.values.get(name, [])

    def used(self, name: str) -> bool:
        return name in self.values


def parse_stages(dockerfile: Dockerfile) -> tuple[list[Stage], list[Arg]]:
    """The stages, and the ARGs before the first FROM (the "meta" args)."""
    stages: list[Stage] = []
    meta: list[Arg] = []
    for node in dockerfile.nodes:
        try:
            parsed = parse_instruction(node)
        except ParseError:
            raise
        except BuildError as err:
            raise ParseError(
                f"{err} ({node.original.strip()})", dockerfile.filename, node.start_line
            ) from None
        if isinstance(parsed, Stage):
            parsed.index = len(stages)
            stages.append(parsed)
        elif not stages:
            if isinstance(parsed, Arg):
                meta.append(parsed)
                continue
            raise ParseError(
                "no build stage in current context (a FROM must come first)",
                dockerfile.filename,
                node.start_line,
            )
        else:
            stages[-1].commands.append(parsed)
    if not stages:
        raise ParseError("dockerfile contains no stages to build", dockerfile.filename)
    return stages, meta


def parse_instruction(node: Node) -> Instruction | Stage:
    kind = node.name
    flags = _Flags(node.flags)
    args = node.args
    if kind == "from":
        return _from(node, flags)
    if kind in ("env", "label"):
        flags.parse()
        pairs = _kvps(args, kind.upper())
        return Env(node, pairs) if kind == "env" else Label(node, pairs)
    if kind == "maintainer":
        flags.parse()
        if len(args) != 1:
            raise BuildError("MAINTAINER requires exactly one argument")
        return Maintainer(node, args[0])
    if kind == "arg":
        flags.parse()
        if not args:
            raise BuildError("ARG requires at least one argument")
        pairs = []
        for word in args:
            key, eq, value = word.partition("=")
            if eq and not key:
                raise BuildError("ARG names can not be blank")
            pairs.append(KeyValue(key, value if eq else None))
        return Arg(node, pairs)
    if kind in ("copy", "add"):
        return _copy(node, flags, is_add=kind == "add")
    if kind == "run":
        flags.string("network")
        flags.strings("mount")
        flags.string("security")
        flags.parse()
        run = Run(node, *_command_line(node, empty_as_nil=False))
        run.network = flags.get("network")
        run.mounts = flags.all("mount")
        if flags.get("security") not in ("", "sandbox"):
            raise BuildError("RUN --security=insecure is not supported")
        return run
    if kind in ("cmd", "entrypoint"):
        flags.parse()
        line = _command_line(node, empty_as_nil=kind == "entrypoint")
        return Cmd(node, *line) if kind == "cmd" else Entrypoint(node, *line)
    if kind == "shell":
        flags.parse()
        if not args:
            raise BuildError("SHELL requires at least one argument")
        if not node.json:
            raise BuildError(f"SHELL requires the arguments to be in JSON form ({node.original})")
        return Shell(node, list(args))
    if kind in ("workdir", "user", "stopsignal"):
        if len(args) != 1:
            raise BuildError(f"{kind.upper()} requires exactly one argument")
        flags.parse()
        if kind == "workdir":
            return Workdir(node, args[0])
        return User(node, args[0]) if kind == "user" else StopSignal(node, args[0])
    if kind == "volume":
        flags.parse()
        if not args:
            raise BuildError("VOLUME requires at least one argument")
        volumes = [v.strip() for v in args]
        if any(not v for v in volumes):
            raise BuildError("VOLUME specified can not be an empty string")
        return Volume(node, volumes)
    if kind == "expose":
        flags.parse()
        if not args:
            raise BuildError("EXPOSE requires at least one argument")
        return Expose(node, sorted(args))
    if kind == "healthcheck":
        return _healthcheck(node, flags)
    if kind == "onbuild":
        return _onbuild(node, flags)
    raise BuildError(f"unknown instruction: {node.cmd}")


def _kvps(args: list[str], name: str) -> list[KeyValue]:
    if not args:
        raise BuildError(f"{name} requires at least one argument")
    pairs = []
    for i in range(0, len(args), 3):
        if not args[i]:
            raise BuildError(f"{name} names can not be blank")
        pairs.append(KeyValue(args[i], args[i + 1], legacy=args[i + 2] == ""))
    return pairs


def _from(node: Node, flags: _Flags) -> Stage:
    args = node.args
    name = ""
    if len(args) == 3 and args[1].lower() == "as":
        name = args[2].lower()
        if not _STAGE_NAME.match(name):
            raise BuildError(
                f'invalid name for build stage: "{args[2]}", '
                "name can't start with a number or contain symbols"
            )
    elif len(args) != 1:
        raise BuildError("FROM requires either one or three arguments")
    flags.string("platform")
    flags.parse()
    return Stage(args[0], name, flags.get("platform"), node, 0)


def _command_line(node: Node, *, empty_as_nil: bool) -> tuple[list[str], bool, list[Heredoc]]:
    args = list(node.args) if node.json else ([" ".join(node.args)] if node.args else [])
    return args, not node.json, list(node.heredocs)


def _copy(node: Node, flags: _Flags, *, is_add: bool) -> Copy:
    name = "ADD" if is_add else "COPY"
    if len(node.args) < 2:
        raise BuildError(
            f"{name} requires at least two arguments, but only one was provided. "
            "Destination could not be determined"
        )
    flags.string("chown")
    flags.string("chmod")
    flags.boolean("link")
    flags.strings("exclude")
    if is_add:
        flags.boolean("keep-git-dir")
        flags.string("checksum")
        flags.boolean("unpack")
    else:
        flags.string("from")
        flags.boolean("parents")
    flags.parse()
    dest = node.args[-1]
    if parse_heredoc(dest) is not None:
        raise BuildError(f"{name} cannot accept a heredoc as a destination")
    docs = {doc.name: doc for doc in node.heredocs}
    sources: list[str] = []
    contents: list[SourceContent] = []
    for src in node.args[:-1]:
        doc = parse_heredoc(src) if not node.json else None
        if doc is None:
            sources.append(src)
            continue
        content = docs[doc.name].content if doc.name in docs else ""
        if doc.chomp:
            content = chomp_heredoc(content)
        contents.append(SourceContent(doc.name, content, doc.expand))
    copy = Copy(node, sources, contents, dest, is_add=is_add)
    copy.chown = flags.get("chown")
    copy.chmod = flags.get("chmod")
    copy.link = flags.get("link") == "true"
    copy.excludes = flags.all("exclude")
    if is_add:
        copy.checksum = flags.get("checksum")
        if flags.used("unpack"):
            copy.unpack = flags.get("unpack") == "true"
    else:
        copy.source = flags.get("from")
        copy.parents = flags.get("parents") == "true"
    return copy


def parse_duration(text: str) -> int:
    """Go's time.ParseDuration ("1m30s", "500ms", "1.5h") in nanoseconds."""
    units = {
        "ns": 1,
        "us": 1_000,
        "µs": 1_000,
        "μs": 1_000,
        "ms": 1_000_000,
        "s": 1_000_000_000,
        "m": 60_000_000_000,
        "h": 3_600_000_000_000,
    }
    if text in ("0", "+0", "-0"):
        return 0
    pattern = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|μs|ms|s|m|h)")
    body = text.lstrip("+-")
    pos = 0
    total = 0.0
    while pos < len(body):
        match = pattern.match(body, pos)
        if not match:
            raise BuildError(f'time: invalid duration "{text}"')
        total += float(match.group(1)) * units[match.group(2)]
        pos = match.end()
    if not body:
        raise BuildError(f'time: invalid duration "{text}"')
    return -int(total) if text.startswith("-") else int(total)


def _healthcheck(node: Node, flags: _Flags) -> Healthcheck:
    args = node.args
    if not args:
        raise BuildError("HEALTHCHECK requires at least one argument")
    kind = args[0].upper()
    rest = args[1:]
    if kind == "NONE":
        if rest:
            raise BuildError("HEALTHCHECK NONE takes no arguments")
        flags.parse()
        return Healthcheck(node, ["NONE"])
    for name in ("interval", "timeout", "start-period", "start-interval", "retries"):
        flags.string(name)
    flags.parse()
    if kind != "CMD":
        raise BuildError(f'Unknown type "{kind}" in HEALTHCHECK (try CMD)')
    cmd = list(rest) if node.json else ([" ".join(rest)] if rest else [])
    if not cmd:
        raise BuildError("Missing command after HEALTHCHECK CMD")
    check = Healthcheck(node, ["CMD" if node.json else "CMD-SHELL", *cmd])

    def interval(name: str) -> int:
        text = flags.get(name)
        if not text:
            return 0
        value = parse_duration(text)
        if 0 < value < 1_000_000 or value < 0:
            raise BuildError(f'Interval "{name}" cannot be less than 1ms')
        return value

    check.interval = interval("interval")
    check.timeout = interval("timeout")
    check.start_period = interval("start-period")
    check.start_interval = interval("start-interval")
    retries = flags.get("retries")
    if retries:
        try:
            check.retries = int(retries)
        except ValueError:
            raise BuildError(f'strconv.ParseInt: parsing "{retries}": invalid syntax') from None
        if check.retries < 0:
            raise BuildError(f"--retries cannot be negative ({check.retries})")
    return check


def _onbuild(node: Node, flags: _Flags) -> Onbuild:
    if not node.args or node.sub is None:
        raise BuildError("ONBUILD requires at least one argument")
    flags.parse()
    trigger = node.sub.cmd.upper()
    if trigger == "ONBUILD":
        raise BuildError("Chaining ONBUILD via `ONBUILD ONBUILD` isn't allowed")
    if trigger in ("MAINTAINER", "FROM"):
        raise BuildError(f"{trigger} isn't allowed as an ONBUILD trigger")
    expression = re.sub(r"(?i)^\s*ONBUILD\s*", "", node.original, count=1)
    for doc in node.heredocs:
        expression += "\n" + doc.content + doc.name
    return Onbuild(node, expression)

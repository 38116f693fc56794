"""One stage of a build: each instruction's effect on the image, cached step by step.

Every instruction becomes an image (a child of the previous one) whose config
and history entry are what BuildKit writes; RUN/COPY/ADD/WORKDIR also make a
layer (dropped, with ``empty_layer``, when nothing changed). A step whose key
is in the cache is not run: its image is taken as is.
"""

from __future__ import annotations

import copy
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.build import BuildError
from dockyard.build import imageconfig as ic
from dockyard.build import instructions as ins
from dockyard.build.cache import BuildCache, step_key
from dockyard.build.context import BuildContext, ChecksumCache
from dockyard.build.shell import Lexer, ShellError
from dockyard.build.steps import Engine, RunRequest, StepFailed, commit_image
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.build.progress import Progress, Vertex
    from dockyard.images.store import Image, LayerRecord

PROXY_ARGS = (
    "HTTP_PROXY http_proxy HTTPS_PROXY https_proxy FTP_PROXY ftp_proxy NO_PROXY no_proxy "
    "ALL_PROXY all_proxy"
).split()


@record
class BuildOptions:
    tags: list[str] = field(default_factory=list)
    build_args: dict[str, str] = field(default_factory=dict)
    target: str = ""
    no_cache: bool = False
    labels: dict[str, str] = field(default_factory=dict)
    network: str = "bridge"
    add_hosts: list[str] = field(default_factory=list)
    pull: bool = False


@record
class StageState:
    """Where a stage is: its current image and what the next step starts from."""

    image: Image | None
    config: dict[str, Any]  # image config without rootfs/created
    layers: list[LayerRecord]
    env: dict[str, str]  # the build environment: Env plus ARG values
    build_args: list[ins.KeyValue]
    cmd_set: bool = False


@record
class Shared:
    """What all stage threads of one build share."""

    bctx: BuildContext
    opts: BuildOptions
    progress: Progress
    escape: str
    filename: str
    global_args: dict[str, str]
    stages: list[ins.Stage]
    multi: bool
    arch: str
    variant: str
    runtime: str | None
    results: dict[int, StageState] = field(default_factory=dict)
    images: dict[str, Image] = field(default_factory=dict)  # external images by reference
    cancelled: threading.Event = field(default_factory=threading.Event)
    used_args: set[str] = field(default_factory=set)
    engines: list[Engine] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)


def config_of(image: Image) -> dict[str, Any]:
    return {k: v for k, v in image.config.items() if k not in ("rootfs", "created")}


def stage_ref(shared: Shared, name: str, before: int) -> int | None:
    """The index of the stage ``name`` (a name or an index) refers to, if any."""
    if name.isdigit():
        index = int(name)
        if index >= len(shared.stages):
            raise BuildError(f"invalid stage index {index}")
        return index
    for stage in shared.stages[:before]:
        if stage.name and stage.name == name.lower():
            return stage.index
    return None


class StageBuilder:
    def __init__(self, shared: Shared, stage: ins.Stage, eng: Engine, base: StageState) -> None:
        self.shared = shared
        self.stage = stage
        self.eng = eng
        self.state = base
        self.cache = BuildCache(eng.ctx.db, eng.ctx.images)
        self.checksums = ChecksumCache(None if shared.bctx.temporary else eng.ctx.db)
        self.lexer = Lexer(shared.escape)
        self.step = 1
        self.total = 1

    # -- driving ------------------------------------------------------------------

    def run(self, commands: list[ins.Instruction], from_label: str | None) -> StageState:
        visible = (ins.Run, ins.Copy, ins.Workdir)
        self.total = (1 if from_label else 0) + sum(isinstance(c, visible) for c in commands)
        if from_label:
            vertex = self.shared.progress.vertex(self.label(from_label))
            self.step += 1
            vertex.done()
        for command in commands:
            if self.shared.cancelled.is_set():
                from dockyard.build.steps import Cancelled

                raise Cancelled("build cancelled")
            try:
                self.dispatch(command)
            except (StepFailed, KeyboardInterrupt):
                raise
            except BuildError as err:
                if getattr(err, "located", False):
                    raise
                located = BuildError(
                    f"{self.shared.filename}:{command.line}: {_first_line(command.text)}: {err}"
                )
                located.located = True  # type: ignore[attr-defined]
                raise located from None
        return self.state

    def label(self, text: str) -> str:
        prefix = f"{self.stage.display_name} " if self.shared.multi else ""
        return f"[{prefix}{self.step}/{self.total}] {text}"

    def expand(self, word: str) -> str:
        try:
            return self.lexer.process_word(word, self.state.env)
        except ShellError as err:
            raise BuildError(str(err)) from None

    def dispatch(self, c: ins.Instruction) -> None:
        section = copy.deepcopy(self.state.config.get("config") or {})
        if isinstance(c, ins.Env):
            parts = []
            env = list(section.get("Env") or [])
            for kv in c.pairs:
                key, value = self.expand(kv.key), self.expand(kv.value or "")
                env = ic.add_env(env, key, value)
                self.state.env[key] = value
                parts.append(f"{key}={value}")
            section["Env"] = env
            self.commit("ENV " + " ".join(parts), section)
        elif isinstance(c, ins.Label):
            labels = dict(section.get("Labels") or {})
            parts = []
            for kv in c.pairs:
                key, value = self.expand(kv.key), self.expand(kv.value or "")
                labels[key] = value
                parts.append(f"{key}={value}")
            section["Labels"] = labels
            self.commit("LABEL " + " ".join(parts), section)
        elif isinstance(c, ins.Arg):
            self.arg(c)
        elif isinstance(c, ins.Maintainer):
            self.commit(f"MAINTAINER {c.name}", section, top={"author": c.name})
        elif isinstance(c, (ins.Cmd, ins.Entrypoint)):
            args = ic.with_shell(section, c.cmdline) if c.prepend_shell else list(c.cmdline)
            name = "CMD" if isinstance(c, ins.Cmd) else "ENTRYPOINT"
            if isinstance(c, ins.Cmd):
                section["Cmd"] = args
                section["ArgsEscaped"] = True
                self.state.cmd_set = True
            else:
                section["Entrypoint"] = args or None
                if not self.state.cmd_set:
                    section.pop("Cmd", None)
            self.commit(f"{name} {ic.go_quote_list(args)}", section)
        elif isinstance(c, ins.Healthcheck):
            check: dict[str, Any] = {"Test": c.test}
            timing: tuple[tuple[str, int], ...] = (
                ("Interval", c.interval),
                ("Timeout", c.timeout),
                ("StartPeriod", c.start_period),
                ("StartInterval", c.start_interval),
                ("Retries", c.retries),
            )
            for field_name, amount in timing:
                if amount:
                    check[field_name] = amount
            section["Healthcheck"] = check
            self.commit(ic.healthcheck_history(check), section)
        elif isinstance(c, ins.Expose):
            words: list[str] = []
            for port in c.ports:
                try:
                    words += self.lexer.process_words(port, self.state.env)
                except ShellError as err:
                    raise BuildError(str(err)) from None
            ports = ic.parse_ports(words)
            exposed = dict(section.get("ExposedPorts") or {})
            for port in ports:
                exposed[port] = {}
            section["ExposedPorts"] = exposed
            self.commit(f"EXPOSE {ic.go_list(ports)}", section)
        elif isinstance(c, ins.User):
            section["User"] = self.expand(c.user)
            self.commit(f"USER {section['User']}", section)
        elif isinstance(c, ins.Volume):
            volumes = dict(section.get("Volumes") or {})
            items = [self.expand(v) for v in c.volumes]
            for v in items:
                if not v:
                    raise BuildError("VOLUME specified can not be an empty string")
                volumes[v] = {}
            section["Volumes"] = volumes
            self.commit(f"VOLUME {ic.go_list(items)}", section)
        elif isinstance(c, ins.StopSignal):
            from dockyard.runtime.runc import parse_signal

            signal = self.expand(c.signal)
            parse_signal(signal)
            section["StopSignal"] = signal
            self.commit(f"STOPSIGNAL {signal}", section)
        elif isinstance(c, ins.Shell):
            section["Shell"] = list(c.shell)
            self.commit(f"SHELL {ic.go_list(c.shell)}", section)
        elif isinstance(c, ins.Onbuild):
            section["OnBuild"] = [*(section.get("OnBuild") or []), c.expression]
            self.commit(f"ONBUILD {c.expression}", section)
        elif isinstance(c, ins.Workdir):
            self.workdir(c, section)
        elif isinstance(c, ins.Run):
            self.run_instruction(c, section)
        elif isinstance(c, ins.Copy):
            from dockyard.build.copyplan import dispatch_copy

            dispatch_copy(self, c, section)
        else:  # pragma: no cover - parse_instruction knows every kind
            raise BuildError(f"unknown instruction: {c.node.cmd}")

    # -- steps -------------------------------------------------------------------------

    def commit(
        self,
        created_by: str,
        section: dict[str, Any],
        *,
        label: str | None = None,
        action: Callable[[Vertex | None], LayerRecord | None] | None = None,
        extra: str = "",
        top: dict[str, Any] | None = None,
    ) -> None:
        """Make (or take from the cache) the image of one step."""
        state = self.state
        config = dict(state.config)
        config.update(top or {})
        config["config"] = ic.normalize(section)
        parent = state.image.id if state.image else f"scratch:{self.shared.arch}"
        key = step_key(
            parent, created_by, {k: v for k, v in config.items() if k != "history"}, extra
        )
        vertex = self.shared.progress.vertex(self.label(label)) if label else None
        if label:
            self.step += 1
        if not self.shared.opts.no_cache:
            hit = self.cache.lookup(key)
            if hit is not None:
                state.image = hit
                state.config = config_of(hit)
                state.layers = self.eng.ctx.images.layer_records(hit)
                if vertex:
                    vertex.cached()
                return
        try:
            layer = action(vertex) if action else None
            image = commit_image(self.eng, state.image, config, state.layers, created_by, layer)
        except BaseException as err:
            if vertex:
                vertex.error(_vertex_message(err))
            raise
        self.cache.store(key, image.id)
        state.image = image
        state.config = config_of(image)
        state.layers = self.eng.ctx.images.layer_records(image)
        if vertex:
            vertex.done()

    def ensure_image(self) -> Image:
        """The current image; a scratch stage gets an empty one for its first container."""
        if self.state.image is None:
            self.state.image = commit_image(
                self.eng, None, dict(self.state.config), [], "", None, history=False
            )
        return self.state.image

    def lower_dirs(self) -> list[Path]:
        if self.state.image is None:
            return []
        return self.eng.ctx.images.layer_dirs(self.state.image)

    def arg(self, c: ins.Arg) -> None:
        parts = []
        provided = self.shared.opts.build_args
        for kv in c.pairs:
            key = kv.key
            value = kv.value
            self.shared.used_args.add(key)
            if key in provided:
                value = provided[key]
            elif value is not None:
                value = self.expand(value)
            elif key in self.shared.global_args:
                value = self.shared.global_args[key]
            if value is not None:
                self.state.env[key] = value
            self.state.build_args.append(ins.KeyValue(key, value))
            parts.append(key if value is None else f"{key}={value}")
        self.commit("ARG " + " ".join(parts), copy.deepcopy(self.state.config.get("config") or {}))

    def workdir(self, c: ins.Workdir, section: dict[str, Any]) -> None:
        wd = ic.normalize_workdir(str(section.get("WorkingDir") or "/"), self.expand(c.path))
        section["WorkingDir"] = wd
        user = str(section.get("User") or "")

        def action(_vertex: Vertex | None) -> LayerRecord | None:
            if wd == "/":
                return None
            from dockyard.build.copy import mkdir_all, resolve_chown
            from dockyard.build.steps import fs_step

            def act(root: Path) -> None:
                mkdir_all(root, wd, resolve_chown(root, user) if user else None)

            return fs_step(self.eng, self.lower_dirs(), act)

        self.commit(f"WORKDIR {wd}", section, label=f"WORKDIR {wd}", action=action)

    def run_instruction(self, c: ins.Run, section: dict[str, Any]) -> None:
        from dockyard.build.runmounts import plan_mounts

        args = list(c.cmdline)
        script: tuple[str, str] | None = None  # a heredoc with a shebang: (name, content)
        if c.files:
            args, script = _heredoc_args(c, args)
        if c.prepend_shell:
            args = ic.with_shell(section, args)
        created_by = "RUN " + self._run_string(args) + " # buildkit"
        network = self._network(c.network)
        env = [f"{k}={v}" for k, v in self.state.env.items()]
        env += [
            f"{k}={v}"
            for k, v in self.shared.opts.build_args.items()
            if k in PROXY_ARGS and k not in self.state.env
        ]
        workdir = str(section.get("WorkingDir") or "/")
        plan = plan_mounts(self, c.mounts, workdir)
        req = RunRequest(args, env, network, list(self.shared.opts.add_hosts), " ".join(args))

        def action(vertex: Vertex | None) -> LayerRecord | None:
            from contextlib import ExitStack

            from dockyard.build.runmounts import open_mounts
            from dockyard.build.steps import run_step, script_mount

            image = self.ensure_image()
            sink = vertex.output if vertex else (lambda _s, _d: None)
            with ExitStack() as stack:
                req.mounts = open_mounts(self, plan, stack)
                req.mount_targets = plan.targets
                if script is not None:
                    req.mounts.append(script_mount(self.eng.paths, *script, stack))
                return run_step(self.eng, image, req, sink, self.shared.cancelled)

        label = "RUN " + _first_line(c.text).split(None, 1)[-1] if c.text.strip() else "RUN"
        extra = [f"network={network}", *plan.key, *(script or ())]
        self.commit(
            created_by, section, label=_display(label), action=action, extra="\n".join(extra)
        )

    def _run_string(self, args: list[str]) -> str:
        """``|2 A=1 B=2 /bin/sh -c cmd``: the build args in scope, as BuildKit records."""
        pairs: dict[str, str] = {}
        for kv in self.state.build_args:
            value = self.state.env.get(kv.key, kv.value or "")
            pairs[kv.key] = value
        prefix = [f"|{len(pairs)}", *(f"{k}={v}" for k, v in pairs.items())] if pairs else []
        return " ".join([*prefix, *args])

    def _network(self, flag: str) -> str:
        from dockyard.network.options import parse_network_mode

        if flag in ("", "default"):
            return self.shared.opts.network
        if flag not in ("none", "host"):
            raise BuildError(f"unsupported network mode {flag!r} for RUN --network")
        return parse_network_mode(flag)


def _heredoc_args(c: ins.Run, args: list[str]) -> tuple[list[str], tuple[str, str] | None]:
    """RUN with heredocs as BuildKit runs it: ``RUN <<EOF`` alone runs the content as the
    shell's script (or, with a shebang, as a file at /dev/pipes/NAME); any other form
    passes the whole text with its heredocs to the shell."""
    from dockyard.build.parser import chomp_heredoc, parse_heredoc

    if len(args) != 1 or not c.prepend_shell:
        raise BuildError(f"parsing produced an invalid run command: {args}")
    doc = parse_heredoc(args[0])
    if doc is not None:
        data = c.files[0].content
        if c.files[0].chomp:
            data = chomp_heredoc(data)
        if data.startswith("#!"):
            name = c.files[0].name
            return [f"/dev/pipes/{name}"], (name, data)
        return [data], None
    text = args[0]
    for f in c.files:
        text += "\n" + f.content + f.name
    return [text], None


def _first_line(text: str) -> str:
    return text.strip().split("\n", 1)[0]


def _display(text: str) -> str:
    words = text.split(None, 1)
    return words[0].upper() + (" " + words[1] if len(words) > 1 else "")


def _vertex_message(err: BaseException) -> str:
    if isinstance(err, StepFailed):
        return f'process "{err.command}" did not complete successfully: exit code: {err.code}'
    if isinstance(err, KeyboardInterrupt):
        return "interrupted"
    return str(err)

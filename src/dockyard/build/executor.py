"""A whole build: Dockerfile, build args, target, stages, result image and tags.

Only the stages the target needs are built (its base stages and ``COPY
--from`` sources, transitively); a stage starts as soon as the stages it
needs are done, so independent stages build at the same time, each in its own
thread with its own store connection. The first failure (or Ctrl-C) stops
the rest: running build containers are killed and removed, nothing is tagged.
"""

from __future__ import annotations

import concurrent.futures as cf
import copy
from typing import TYPE_CHECKING

from dockyard.build import BuildError
from dockyard.build import instructions as ins
from dockyard.build.dispatch import (
    BuildOptions,
    Shared,
    StageBuilder,
    StageState,
    config_of,
    stage_ref,
)
from dockyard.build.parser import parse
from dockyard.build.shell import Lexer, ShellError
from dockyard.build.steps import Engine, cleanup_stale_rootfs, commit_image, kill_containers
from dockyard.records import record

if TYPE_CHECKING:
    from dockyard.build.context import BuildContext
    from dockyard.build.progress import Progress
    from dockyard.cli.context import Context
    from dockyard.images.store import Image

MAX_PARALLEL_STAGES = 4


@record
class _Plan:
    stage: ins.Stage
    base_stage: int | None  # index of the stage it is built FROM
    base_image: str | None  # external image reference (None: scratch or a stage)
    deps: set[int]


def build(ctx: Context, bctx: BuildContext, opts: BuildOptions, progress: Progress) -> Image:
    """Build the Dockerfile in ``bctx``; returns the (tagged) result image."""
    from dockyard.images import reference as refmod
    from dockyard.images.store import host_platform

    for tag in opts.tags:
        try:
            parsed = refmod.parse_tagged(tag)
        except Exception:
            raise BuildError(
                f'invalid argument "{tag}" for "-t, --tag" flag: invalid reference format'
            ) from None
        if parsed.digest:
            raise BuildError(f'invalid argument "{tag}" for "-t, --tag" flag: tag with digest')
    cleanup_stale_rootfs(ctx.paths)  # scratch dirs of builds that were killed
    vertex = progress.vertex(f"[internal] load build definition from {bctx.dockerfile_name}")
    vertex.info(f"transferring dockerfile: {len(bctx.dockerfile)}B done")
    dockerfile = parse(bctx.dockerfile, bctx.dockerfile_name)
    vertex.done()
    for warning in dockerfile.warnings:
        progress.warn(f"[WARNING]: {warning}")
    stages, meta = ins.parse_stages(dockerfile)
    arch, variant = host_platform()
    shared = Shared(
        bctx=bctx,
        opts=opts,
        progress=progress,
        escape=dockerfile.escape,
        filename=bctx.dockerfile_name,
        global_args={},
        stages=stages,
        multi=len(stages) > 1,
        arch=arch,
        variant=variant,
        runtime=ctx.runtime_name,
    )
    shared.global_args = _meta_args(shared, meta)
    target = _target(stages, opts.target)
    plans = _plan(shared, target)
    _resolve_images(ctx, shared, plans)
    _run_stages(ctx, shared, plans)
    result = shared.results[target.index]
    image = _finish(ctx, shared, result)
    unused = sorted(
        k
        for k in opts.build_args
        if k not in shared.used_args and k not in _PREDEFINED and k not in shared.global_args
    )
    if unused:
        progress.warn(f"[Warning] One or more build-args [{' '.join(unused)}] were not consumed")
    export = progress.vertex("exporting to image")
    export.info("exporting layers done")
    export.info(f"writing image {image.id} done")
    for tag in opts.tags:
        name = refmod.parse_tagged(tag).string()
        ctx.images.tag(image.id, name)
        export.info(f"naming to {name} done")
    export.done()
    return ctx.images.get(image.id)


_PREDEFINED = {
    *"HTTP_PROXY http_proxy HTTPS_PROXY https_proxy FTP_PROXY ftp_proxy NO_PROXY no_proxy".split(),
    "ALL_PROXY",
    "all_proxy",
}


def _platform_args(arch: str, variant: str) -> dict[str, str]:
    platform = f"linux/{arch}" + (f"/{variant}" if variant else "")
    out = {}
    for prefix in ("BUILD", "TARGET"):
        out[f"{prefix}PLATFORM"] = platform
        out[f"{prefix}OS"] = "linux"
        out[f"{prefix}ARCH"] = arch
        out[f"{prefix}VARIANT"] = variant
    return out


def _meta_args(shared: Shared, meta: list[ins.Arg]) -> dict[str, str]:
    """ARGs before the first FROM: usable in FROM lines, and inherited by a stage's ARG."""
    args = _platform_args(shared.arch, shared.variant)
    lexer = Lexer(shared.escape)
    provided = shared.opts.build_args
    for cmd in meta:
        for kv in cmd.pairs:
            shared.used_args.add(kv.key)
            if kv.key in provided:
                args[kv.key] = provided[kv.key]
            elif kv.value is not None:
                try:
                    args[kv.key] = lexer.process_word(kv.value, args)
                except ShellError as err:
                    raise BuildError(f"{shared.filename}:{cmd.line}: {err}") from None
    return args


def _target(stages: list[ins.Stage], name: str) -> ins.Stage:
    if not name:
        return stages[-1]
    for stage in stages:
        if stage.name == name.lower():
            return stage
    names = ", ".join(s.name for s in stages if s.name) or "none"
    raise BuildError(f'target stage "{name}" could not be found (stages: {names})')


def _plan(shared: Shared, target: ins.Stage) -> dict[int, _Plan]:
    """The stages the target needs, with what each waits for."""
    lexer = Lexer(shared.escape)
    plans: dict[int, _Plan] = {}
    todo = [target.index]
    while todo:
        index = todo.pop()
        if index in plans:
            continue
        stage = shared.stages[index]
        try:
            base = lexer.process_word(stage.base, shared.global_args)
        except ShellError as err:
            raise BuildError(f"{shared.filename}:{stage.node.start_line}: {err}") from None
        if not base:
            raise BuildError(
                f"{shared.filename}:{stage.node.start_line}: base name ({stage.base}) "
                "should not be blank"
            )
        stage.base = base
        plan = _Plan(stage, None, None, set())
        named = [s for s in shared.stages[:index] if s.name and s.name == base]
        if named:
            plan.base_stage = named[-1].index
            plan.deps.add(named[-1].index)
        elif base.lower() != "scratch":
            plan.base_image = base
        for cmd in stage.commands:
            if isinstance(cmd, ins.Copy) and cmd.source and "$" not in cmd.source:
                ref = stage_ref(shared, cmd.source, len(shared.stages))
                if ref is not None:
                    if ref >= index:
                        raise BuildError(
                            f"{shared.filename}:{cmd.line}: cannot copy from stage "
                            f'"{cmd.source}", it needs to be defined before current stage '
                            f'"{stage.display_name}"'
                        )
                    plan.deps.add(ref)
        plans[index] = plan
        todo.extend(plan.deps)
    return plans


def _resolve_images(ctx: Context, shared: Shared, plans: dict[int, _Plan]) -> None:
    """Every external image the needed stages use (FROM, COPY --from), pulled if missing."""
    refs: list[tuple[str, int]] = []
    for index in sorted(plans):
        plan = plans[index]
        if plan.base_image:
            refs.append((plan.base_image, plan.stage.node.start_line))
        for cmd in plan.stage.commands:
            if isinstance(cmd, ins.Copy) and cmd.source and "$" not in cmd.source:
                if stage_ref(shared, cmd.source, len(shared.stages)) is None:
                    refs.append((cmd.source, cmd.line))
    for ref, line in refs:
        if ref in shared.images:
            continue
        shared.images[ref] = _resolve_image(ctx, shared, ref, line)


def _resolve_image(ctx: Context, shared: Shared, ref: str, line: int) -> Image:
    from dockyard.errors import DockyardError, NotFound
    from dockyard.images import reference as refmod

    try:
        name = refmod.parse(ref).with_default_tag().string()
    except Exception:
        raise BuildError(f"{shared.filename}:{line}: invalid reference format: {ref!r}") from None
    vertex = shared.progress.vertex(f"[internal] load metadata for {name}")
    try:
        if shared.opts.pull:
            raise NotFound(ref)
        image = ctx.images.resolve(ref)
    except NotFound:
        from dockyard.registry.pull import ensure_image

        try:
            image = ensure_image(
                ctx,
                ref,
                quiet=shared.progress.quiet,
                policy="always" if shared.opts.pull else "missing",
            )
        except DockyardError as err:
            vertex.error(str(err))
            raise BuildError(
                f"{shared.filename}:{line}: failed to resolve source metadata for {name}: {err}"
            ) from None
    vertex.done()
    return image


def _run_stages(ctx: Context, shared: Shared, plans: dict[int, _Plan]) -> None:
    pending = dict(plans)
    running: dict[cf.Future[StageState], int] = {}
    errors: list[BaseException] = []
    pool = cf.ThreadPoolExecutor(max_workers=min(MAX_PARALLEL_STAGES, len(plans)))
    try:
        while pending or running:
            if not errors:
                for index in sorted(pending):
                    plan = pending[index]
                    if plan.deps <= set(shared.results):
                        running[pool.submit(_build_stage, ctx, shared, plan)] = index
                        del pending[index]
            else:
                pending.clear()
            if not running:
                if pending:
                    raise BuildError("circular dependency between build stages")
                break
            done, _ = cf.wait(list(running), timeout=0.5, return_when=cf.FIRST_COMPLETED)
            for future in done:
                index = running.pop(future)
                try:
                    shared.results[index] = future.result()
                except BaseException as err:  # noqa: BLE001 - re-raised below
                    errors.append(err)
                    shared.cancelled.set()
    except KeyboardInterrupt:
        shared.cancelled.set()
        for eng in list(shared.engines):
            kill_containers(ctx.paths, shared.runtime, set(eng.active))
        cf.wait(list(running))
        raise
    finally:
        pool.shutdown(wait=True)
    if errors:
        real = [e for e in errors if type(e).__name__ != "Cancelled"]
        raise (real or errors)[0]


def _build_stage(ctx: Context, shared: Shared, plan: _Plan) -> StageState:
    eng = Engine.open(ctx.paths, shared.runtime, reaper=True)
    with shared.lock:
        shared.engines.append(eng)
    try:
        return _run_stage(shared, plan, eng)
    finally:
        with shared.lock:
            shared.engines.remove(eng)
        eng.close()


def _run_stage(shared: Shared, plan: _Plan, eng: Engine) -> StageState:
    from dockyard.build.imageconfig import env_dict, initial_config

    from_label: str | None = None
    if plan.base_stage is not None:
        parent = shared.results[plan.base_stage]
        base_config = copy.deepcopy(parent.config)
        image = parent.image
        env = dict(parent.env)
        build_args = list(parent.build_args)
    elif plan.base_image is not None:
        image = shared.images[plan.base_image]
        base_config = config_of(image)
        env = {}
        build_args = []
        from dockyard.images import reference as refmod

        from_label = f"FROM {refmod.parse(plan.base_image).with_default_tag().string()}"
    else:
        image, base_config, env, build_args = None, None, {}, []
    triggers = list(((base_config or {}).get("config") or {}).get("OnBuild") or [])
    config = initial_config(base_config, shared.arch, shared.variant)
    if not env:
        env = env_dict(config["config"].get("Env") or [])
    else:
        env.update(
            {k: v for k, v in env_dict(config["config"].get("Env") or []).items() if k not in env}
        )
    layers = eng.ctx.images.layer_records(image) if image else []
    state = StageState(image, config, layers, env, build_args)
    builder = StageBuilder(shared, plan.stage, eng, state)
    commands = _triggers(shared, plan.stage, triggers) + list(plan.stage.commands)
    return builder.run(commands, from_label)


def _triggers(shared: Shared, stage: ins.Stage, triggers: list[str]) -> list[ins.Instruction]:
    """The base image's ONBUILD instructions, run first."""
    out: list[ins.Instruction] = []
    for text in triggers:
        dockerfile = parse(text, shared.filename)
        if len(dockerfile.nodes) != 1:
            raise BuildError("onbuild trigger should be a single expression")
        node = dockerfile.nodes[0]
        node.start_line = node.end_line = stage.node.start_line
        parsed = ins.parse_instruction(node)
        if isinstance(parsed, ins.Stage):
            raise BuildError("FROM isn't allowed as an ONBUILD trigger")
        out.append(parsed)
    return out


def _finish(ctx: Context, shared: Shared, result: StageState) -> Image:
    """The target stage's image, with ``--label`` values added."""
    eng = Engine(ctx)
    labels = shared.opts.labels
    if result.image is None or labels:
        builder = StageBuilder(shared, shared.stages[-1], eng, result)
        if labels:
            section = copy.deepcopy(result.config.get("config") or {})
            section["Labels"] = {**(section.get("Labels") or {}), **labels}
            text = " ".join(f"{k}={v}" for k, v in labels.items())
            builder.commit(f"LABEL {text}", section)
        else:
            result.image = commit_image(eng, None, dict(result.config), [], "", None, history=False)
    assert result.image is not None
    return result.image

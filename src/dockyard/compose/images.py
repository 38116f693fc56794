"""The images a project's services run: found locally, pulled, or built.

A service with ``build`` and no ``image`` runs ``PROJECT-SERVICE``; it is
built when missing (or with ``--build``), never with ``--no-build``. Other
images are pulled by their ``pull_policy`` (or ``--pull``). Built images carry
the project and service labels, as Compose's do.
"""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from typing import TYPE_CHECKING, Any

from dockyard.compose.convert import L_PROJECT, L_SERVICE, L_VERSION
from dockyard.compose.model import COMPOSE_VERSION, Project
from dockyard.compose.runner import Progress
from dockyard.errors import DockyardError, NotFound

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def _local(ctx: Context, ref: str) -> str | None:
    try:
        return ctx.images.resolve(ref).id
    except NotFound:
        return None


def ensure_images(
    ctx: Context,
    project: Project,
    services: list[str],
    *,
    build: str = "auto",
    pull: str | None = None,
    quiet: bool = False,
    progress: Progress,
) -> dict[str, str]:
    """Service -> image ID for every service, building and pulling what is missing."""
    ids: dict[str, str] = {}
    to_build: list[str] = []
    for name in services:
        svc = project.services[name]
        image = project.image_name(name)
        policy = pull or str(svc.get("pull_policy") or "missing")
        if policy == "if_not_present":
            policy = "missing"
        has_build = "build" in svc
        if has_build and build != "never" and (build == "always" or policy == "build"):
            to_build.append(name)
            continue
        found = _local(ctx, image)
        if found is not None and policy != "always":
            ids[name] = found
            continue
        if has_build and found is None:
            if build == "never":
                raise NotFound(
                    f'image "{image}" of service "{name}" is not built: run without --no-build'
                )
            to_build.append(name)
            continue
        if policy == "never" and found is None:
            raise NotFound(f'No such image: {image} (service "{name}" has pull_policy never)')
        ids[name] = pull_image(ctx, name, image, policy, quiet, progress)
    built: dict[str, str] = {}
    for name in to_build:
        image = project.image_name(name)
        if image not in built:
            built[image] = build_service(ctx, project, name, progress=progress)
        ids[name] = built[image]
    return ids


def pull_image(
    ctx: Context, service: str, image: str, policy: str, quiet: bool, progress: Progress
) -> str:
    from dockyard.registry.pull import ensure_image

    if not quiet:
        progress.event("Image", image, "Pulling")
    found = ensure_image(
        ctx, image, quiet=True, policy="always" if policy == "always" else "missing"
    )
    if not quiet:
        progress.event("Image", image, "Pulled")
    return str(found.id)


def build_args(project: Project, service: str) -> dict[str, Any]:
    """What ``dockyard build`` is asked for one service (see ``build_service``)."""
    svc = project.services[service]
    build = dict(svc.get("build") or {})
    labels = dict(build.get("labels") or {})
    labels.update({L_PROJECT: project.name, L_SERVICE: service, L_VERSION: COMPOSE_VERSION})
    return {
        "context": str(build.get("context") or project.working_dir),
        "dockerfile": build.get("dockerfile"),
        "dockerfile_inline": build.get("dockerfile_inline"),
        "args": dict(build.get("args") or {}),
        "target": build.get("target"),
        "labels": labels,
        "tags": [project.image_name(service), *(build.get("tags") or [])],
        "no_cache": bool(build.get("no_cache", False)),
        "pull": bool(build.get("pull", False)),
    }


def build_service(
    ctx: Context,
    project: Project,
    service: str,
    *,
    progress: Progress,
    no_cache: bool = False,
    pull: bool = False,
    quiet: bool = False,
    extra_args: dict[str, str] | None = None,
) -> str:
    """Build one service's image and return its ID."""
    spec = build_args(project, service)
    spec["args"].update(extra_args or {})
    spec["no_cache"] = spec["no_cache"] or no_cache
    spec["pull"] = spec["pull"] or pull
    progress.event("Service", service, "Building")
    try:
        from dockyard.build.dispatch import BuildOptions  # noqa: F401
    except ImportError:  # an engine without the build package: the command instead
        _build_subprocess(ctx, spec, quiet)
    else:
        _build_in_process(ctx, spec, quiet)
    progress.event("Service", service, "Built")
    image_id = _local(ctx, spec["tags"][0])
    if image_id is None:
        raise DockyardError(f'building service "{service}" produced no image {spec["tags"][0]}')
    return image_id


def _build_in_process(ctx: Context, spec: dict[str, Any], quiet: bool) -> None:
    """The build package's API, as ``dockyard build`` calls it."""
    from dockyard.build.context import load_context
    from dockyard.build.dispatch import BuildOptions
    from dockyard.build.executor import build
    from dockyard.build.progress import Progress as BuildProgress

    context = spec["context"]
    inline = None
    dockerfile = None
    if spec.get("dockerfile_inline"):
        inline = tempfile.NamedTemporaryFile("w", suffix=".Dockerfile", delete=False)
        inline.write(spec["dockerfile_inline"])
        inline.close()
        dockerfile = inline.name
    elif spec.get("dockerfile"):
        dockerfile = os.path.join(context, spec["dockerfile"])
    opts = BuildOptions(
        tags=list(spec["tags"]),
        build_args={k: str(v) for k, v in spec["args"].items()},
        target=spec.get("target") or "",
        no_cache=bool(spec.get("no_cache")),
        labels={k: str(v) for k, v in spec["labels"].items()},
        pull=bool(spec.get("pull")),
    )
    ctx.paths.ensure()
    try:
        bctx = load_context(context, dockerfile, stdin=None, tmp_dir=ctx.paths.tmp)
        try:
            build(ctx, bctx, opts, BuildProgress(sys.stderr, quiet=quiet))
        finally:
            bctx.close()
    finally:
        if inline is not None:
            os.unlink(inline.name)


def _build_subprocess(ctx: Context, spec: dict[str, Any], quiet: bool) -> None:
    """``dockyard build`` in a child process, with the flags Compose's build section maps to."""
    context = spec["context"]
    argv = [
        sys.executable,
        "-m",
        "dockyard",
        "--root",
        str(ctx.paths.root),
        "--runroot",
        str(ctx.paths.runroot),
        "build",
    ]
    inline = None
    if spec.get("dockerfile_inline"):
        inline = tempfile.NamedTemporaryFile("w", suffix=".Dockerfile", delete=False)
        inline.write(spec["dockerfile_inline"])
        inline.close()
        argv += ["-f", inline.name]
    elif spec.get("dockerfile"):
        argv += ["-f", os.path.join(context, spec["dockerfile"])]
    for tag in spec["tags"]:
        argv += ["-t", tag]
    for key, value in spec["args"].items():
        argv += ["--build-arg", f"{key}={value}"]
    for key, value in spec["labels"].items():
        argv += ["--label", f"{key}={value}"]
    if spec.get("target"):
        argv += ["--target", spec["target"]]
    if spec.get("no_cache"):
        argv.append("--no-cache")
    if spec.get("pull"):
        argv.append("--pull")
    if quiet:
        argv.append("-q")
    argv.append(context)
    try:
        proc = subprocess.run(
            argv, stdout=subprocess.DEVNULL if quiet else sys.stderr, stderr=sys.stderr
        )
    finally:
        if inline is not None:
            os.unlink(inline.name)
    if proc.returncode != 0:
        raise DockyardError(
            f"failed to build {spec['tags'][0]}: dockyard build exited {proc.returncode}"
        )

"""``RUN --mount``: bind (context, stage or image), cache, tmpfs; secret and ssh absent.

- ``type=bind`` (the default): ``source`` from the build context (what
  .dockerignore leaves) or ``from`` a stage or image, read-only unless ``rw``
  (then a throw-away copy). Its content is part of the step's cache key.
- ``type=cache``: a directory kept under ``<root>/build-cache`` by ``id``
  (default: the target) across builds; never part of a layer or a key.
- ``type=tmpfs``: an empty tmpfs.
- ``type=secret``/``ssh``: no secrets or agents are given to builds, so like
  BuildKit without them the mount is left out, or fails when ``required``.

Mount points the engine had to create are left out of the step's layer.
"""

from __future__ import annotations

import csv
import hashlib
import os
import posixpath
import shutil
import tempfile
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING

from dockyard.build import BuildError
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.build.dispatch import StageBuilder
    from dockyard.containers.spec import Mount
    from dockyard.images.store import Image

CACHE_DIR = "build-cache"
_KEYS = {
    "type", "target", "dst", "destination", "source", "src", "from", "id", "readonly", "ro",
    "rw", "readwrite", "sharing", "mode", "uid", "gid", "size", "required", "env",
}  # fmt: skip


@record
class PlannedMount:
    kind: str  # bind | cache | tmpfs
    target: str
    source: str = ""
    image: Image | None = None  # bind from a stage or image
    from_ref: str = ""
    writable: bool = False
    cache_id: str = ""
    mode: int = 0o755
    uid: int = 0
    gid: int = 0
    size: str = ""


@record
class MountPlan:
    mounts: list[PlannedMount] = field(default_factory=list)
    key: list[str] = field(default_factory=list)  # what the mounts add to the step's key

    @property
    def targets(self) -> list[str]:
        return [m.target for m in self.mounts]


def _fields(spec: str) -> dict[str, str]:
    try:
        row = next(csv.reader([spec]))
    except (csv.Error, StopIteration):
        raise BuildError(f"invalid --mount: {spec}") from None
    out: dict[str, str] = {}
    for item in row:
        key, eq, value = item.partition("=")
        key = key.strip().lower()
        if key not in _KEYS:
            raise BuildError(f"unexpected key '{key}' in '{item}'")
        out[key] = value if eq else "true"
    return out


def plan_mounts(b: StageBuilder, specs: list[str], workdir: str) -> MountPlan:
    """Parse ``--mount`` flags; checksums of bind sources go into the plan's key."""
    from dockyard.build.context import sources_checksum
    from dockyard.build.dispatch import stage_ref

    plan = MountPlan()
    for spec in specs:
        f = _fields(spec)
        kind = f.get("type", "bind")
        target = f.get("target") or f.get("dst") or f.get("destination") or ""
        if kind in ("secret", "ssh"):
            if f.get("required", "false").lower() in ("true", "1"):
                raise BuildError(f"RUN --mount=type={kind}: no {kind} was given to the build")
            continue
        if not target:
            raise BuildError(f"RUN --mount: target is required ({spec})")
        target = posixpath.normpath(posixpath.join(workdir or "/", b.expand(target)))
        mount = PlannedMount(kind, target)
        if kind == "bind":
            mount.source = b.expand(f.get("source") or f.get("src") or "/")
            mount.writable = any(f.get(k) == "true" for k in ("rw", "readwrite"))
            mount.from_ref = f.get("from", "")
            if mount.from_ref:
                index = stage_ref(b.shared, mount.from_ref, b.stage.index)
                if index is not None:
                    result = b.shared.results.get(index)
                    if result is None or index >= b.stage.index:
                        raise BuildError(f'RUN --mount from stage "{mount.from_ref}": not built')
                    mount.image = result.image
                else:
                    image = b.shared.images.get(mount.from_ref)
                    if image is None:
                        raise BuildError(f"failed to resolve source metadata for {mount.from_ref}")
                    mount.image = image
                plan.key.append(
                    f"bind {target} {mount.image.id if mount.image else '-'} "
                    f"{mount.source} {mount.writable}"
                )
            else:
                rels = b.shared.bctx.resolve(mount.source)
                digest = sources_checksum(b.shared.bctx, rels, b.checksums)
                plan.key.append(f"bind {target} context {mount.source} {digest} {mount.writable}")
        elif kind == "cache":
            if f.get("from"):
                raise BuildError("RUN --mount=type=cache,from=... is not supported")
            mount.cache_id = f.get("id") or target
            mount.mode = int(f.get("mode", "755"), 8)
            mount.uid = int(f.get("uid", "0"))
            mount.gid = int(f.get("gid", "0"))
            mount.writable = f.get("readonly", f.get("ro", "false")) != "true"
        elif kind == "tmpfs":
            mount.size = f.get("size", "")
            plan.key.append(f"tmpfs {target}")
        else:
            raise BuildError(f"unsupported mount type {kind!r}")
        plan.mounts.append(mount)
    return plan


def open_mounts(b: StageBuilder, plan: MountPlan, stack: ExitStack) -> list[Mount]:
    """Engine mounts for a plan; what they need is released by ``stack``."""
    from dockyard.build.steps import scratch_rootfs
    from dockyard.containers.spec import Mount
    from dockyard.fsutil import resolve_in_root

    out: list[Mount] = []
    paths = b.eng.paths
    for m in plan.mounts:
        if m.kind == "tmpfs":
            options = {"tmpfs-size": m.size} if m.size else {}
            out.append(Mount("tmpfs", m.target, options=options))
            continue
        if m.kind == "cache":
            digest = hashlib.sha256(m.cache_id.encode()).hexdigest()[:32]
            host = paths.root / CACHE_DIR / digest
            if not host.is_dir():
                host.mkdir(parents=True, exist_ok=True)
                os.chmod(host, m.mode)
                os.chown(host, m.uid, m.gid)
            out.append(Mount("bind", m.target, str(host), read_only=not m.writable))
            continue
        if m.from_ref:
            lowers = b.eng.ctx.images.layer_dirs(m.image) if m.image else []
            _, root = stack.enter_context(scratch_rootfs(paths, lowers))
            source = str(resolve_in_root(root, m.source))
        else:
            source = _context_source(b, m, stack)
        if m.writable and m.from_ref:
            source = _throwaway_copy(paths.tmp, source, stack)
        if not os.path.exists(source):
            raise BuildError(f"RUN --mount: source {m.source} does not exist")
        out.append(Mount("bind", m.target, source, read_only=not m.writable))
    return out


def _context_source(b: StageBuilder, m: PlannedMount, stack: ExitStack) -> str:
    """The context path to bind; a filtered or writable view is a copy, so neither
    ignored files nor writes reach the user's directory."""
    bctx = b.shared.bctx
    rels = bctx.resolve(m.source)
    rel = rels[0]
    host = bctx.host_path(rel)
    if not m.writable and not bctx.matcher:
        return host
    tmp = Path(tempfile.mkdtemp(prefix="build-mount-", dir=b.eng.paths.tmp))
    stack.callback(shutil.rmtree, tmp, True)
    entries = bctx.walk(rel)
    top = next(entries)
    if not os.path.isdir(top.path):
        target = tmp / "file"
        shutil.copy2(top.path, target)
        return str(target)
    for entry in entries:
        dest = tmp / entry.rel
        if entry.st.st_mode & 0o170000 == 0o040000:
            dest.mkdir(exist_ok=True)
        elif os.path.islink(entry.path):
            os.symlink(os.readlink(entry.path), dest)
        else:
            shutil.copy2(entry.path, dest)
    return str(tmp)


def _throwaway_copy(tmp_dir: Path, source: str, stack: ExitStack) -> str:
    tmp = Path(tempfile.mkdtemp(prefix="build-mount-", dir=tmp_dir))
    stack.callback(shutil.rmtree, tmp, True)
    if os.path.isdir(source):
        target = tmp / "dir"
        shutil.copytree(source, target, symlinks=True)
    else:
        target = tmp / "file"
        shutil.copy2(source, target)
    return str(target)


def prune_cache_mounts(root: Path) -> int:
    """``builder prune``: drop the cache mounts' directories; returns bytes freed."""
    directory = root / CACHE_DIR
    if not directory.is_dir():
        return 0
    from dockyard.fsutil import tree_size

    size = tree_size(directory)
    shutil.rmtree(directory, ignore_errors=True)
    return size

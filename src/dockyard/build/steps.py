"""The filesystem work of build steps, on the engine's own pieces.

RUN: a container of the engine (ContainerManager create + attached start),
its output streamed to the progress display, its upper directory taken as the
layer (``rootfs.commit_layer``), the container always removed -- also after
a failure or Ctrl-C. COPY/ADD/WORKDIR: an overlay of the step's image mounted
on a scratch container directory, changed in place, its upper directory
taken as the layer; nothing runs in it. Every step ends as an image in the
store (a child of the previous step's image), which is what the cache keeps.
"""

from __future__ import annotations

import os
import shutil
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.build import BuildError
from dockyard.containers.state import pid_alive
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.config import Paths
    from dockyard.containers.manager import Container
    from dockyard.containers.spec import Mount
    from dockyard.images.store import Image, LayerRecord

HISTORY_COMMENT = "buildkit.dockerfile.v0"
OWNER_FILE = "build-owner"  # in a scratch rootfs dir: the PID of the build using it


class StepFailed(BuildError):
    """A RUN command exited non-zero."""

    def __init__(self, command: str, code: int) -> None:
        super().__init__(f"The command '{command}' returned a non-zero code: {code}")
        self.command = command
        self.code = code


class Cancelled(BuildError):
    """Another stage failed or the user interrupted the build."""


class Reaper:
    """Removes finished build containers in the background (network teardown is slow),
    while the build goes on; ``close`` waits until all are gone."""

    def __init__(self, paths: Paths, runtime: str | None) -> None:
        import queue

        self.paths = paths
        self.runtime = runtime
        self.queue: queue.Queue[str | None] = queue.Queue()
        self.thread: threading.Thread | None = None

    def submit(self, container_id: str) -> None:
        if self.thread is None:
            self.thread = threading.Thread(target=self._loop, name="build-reaper", daemon=True)
            self.thread.start()
        self.queue.put(container_id)

    def _loop(self) -> None:
        eng = Engine.open(self.paths, self.runtime)
        try:
            while (container_id := self.queue.get()) is not None:
                _remove_container(eng, container_id)
        finally:
            eng.ctx.close()

    def close(self) -> None:
        if self.thread is not None:
            self.queue.put(None)
            self.thread.join()
            self.thread = None


@record
class Engine:
    """The engine services of one build thread (SQLite connections are per thread)."""

    ctx: Context
    active: set[str] = field(default_factory=set)  # running build container IDs
    reaper: Reaper | None = None

    @property
    def paths(self) -> Paths:
        return self.ctx.paths

    @classmethod
    def open(cls, paths: Paths, runtime: str | None, *, reaper: bool = False) -> Engine:
        from dockyard.cli.context import Context

        eng = cls(Context(str(paths.root), str(paths.runroot), runtime))
        if reaper:
            eng.reaper = Reaper(paths, runtime)
        return eng

    def close(self) -> None:
        try:
            if self.reaper is not None:
                self.reaper.close()
        finally:
            self.ctx.close()


@record
class RunRequest:
    argv: list[str]
    env: list[str]  # "K=V", over the image's Env
    network: str  # bridge | none | host | a network name
    extra_hosts: list[str] = field(default_factory=list)  # "name:ip"
    display: str = ""  # "/bin/sh -c make" for the failure message
    mounts: list[Mount] = field(default_factory=list)  # RUN --mount, heredoc scripts
    mount_targets: list[str] = field(default_factory=list)  # kept out of the layer


def run_step(
    eng: Engine,
    image: Image,
    req: RunRequest,
    output: Callable[[int, bytes], None],
    cancelled: threading.Event,
) -> LayerRecord:
    """Run one RUN command in a container from ``image``; returns its layer."""
    from dockyard.containers import rootfs
    from dockyard.containers.spec import ContainerSpec, LogConfig
    from dockyard.runtime.monitor import ERROR, EXIT, STDERR, STDOUT, AttachClient, start_error

    manager = eng.ctx.containers
    spec = ContainerSpec(
        image=image.id,
        entrypoint=[],
        cmd=req.argv,
        env=req.env,
        network_mode=req.network,
        extra_hosts=req.extra_hosts,
        mounts=list(req.mounts),
        log_config=LogConfig(max_size=1024 * 1024, max_file=1),
        labels={"com.dockyard.build": "1"},
        image_volumes="ignore",  # as BuildKit: a RUN's writes below a VOLUME stay in its layer
    )
    container = manager.create(spec, image)
    eng.active.add(container.id)
    removed = False
    try:
        if cancelled.is_set():
            raise Cancelled("build cancelled")
        manager.start(container, attach=True)
        code: int | None = None
        with AttachClient.connect(eng.paths.container_run_dir(container.id)) as client:
            client.start()
            for ftype, payload in client.frames():
                if ftype in (STDOUT, STDERR):
                    output(ftype, payload)
                elif ftype == EXIT:
                    code = int(payload or b"0")
                    break
                elif ftype == ERROR:
                    raise start_error(payload.decode(errors="replace"))
        if code is None:
            code = _final_exit_code(eng, container)
        eng.active.discard(container.id)
        if cancelled.is_set():
            raise Cancelled("build cancelled")
        if code != 0:
            raise StepFailed(req.display, code)
        exclude = _created_mount_points(
            rootfs.upper_dir(eng.paths, container.id),
            eng.ctx.images.layer_dirs(image),
            list(req.mount_targets),
        )
        stream = rootfs.commit_layer(eng.paths, container.id, exclude)
        try:
            layer = eng.ctx.images.ingest_layer(stream)
        finally:
            stream.close()
        if eng.reaper is not None:
            eng.reaper.submit(container.id)
            removed = True
        return layer
    except BaseException:
        if container.id in eng.active:
            _kill(eng, container)
        raise
    finally:
        eng.active.discard(container.id)
        if not removed:
            _remove_container(eng, container.id)


def _created_mount_points(upper: Path, lowers: list[Path], volumes: list[str]) -> list[str]:
    """Directories the engine created only as mount points (RUN --mount targets): left
    out of the layer, as BuildKit does. The image's VOLUMEs are not mounted at all."""
    out: list[str] = []
    for volume in volumes:
        parts = [p for p in volume.split("/") if p]
        for depth in range(1, len(parts) + 1):
            rel = "/".join(parts[:depth])
            if any(os.path.lexists(lower / rel) for lower in lowers):
                continue
            if _only_chain(upper / rel, parts[depth:]):
                out.append("/" + rel)
            break
    return out


def _only_chain(path: Path, rest: list[str]) -> bool:
    """``path`` is a directory holding nothing but the empty chain ``rest``."""
    try:
        names = os.listdir(path)
    except OSError:
        return False
    if not rest:
        return not names
    return names == [rest[0]] and _only_chain(path / rest[0], rest[1:])


def _final_exit_code(eng: Engine, container: Container) -> int:
    from dockyard.runtime.monitor import read_state, start_error

    state = read_state(eng.paths.container_run_dir(container.id))
    if state and state.status == "failed":
        raise start_error(state.error)
    if state and state.status == "exited":
        return state.exit_code
    raise BuildError("lost the connection to the build container's monitor")


def _kill(eng: Engine, container: Container) -> None:
    from dockyard.errors import DockyardError

    try:
        eng.ctx.containers.runc.kill(container.id, "KILL")
    except DockyardError:
        pass


def _remove_container(eng: Engine, container_id: str) -> None:
    """Tear down and delete a build container, whatever state it is in; never raises."""
    from dockyard.errors import DockyardError

    manager = eng.ctx.containers
    try:
        manager.remove(manager.get(container_id, refresh=False), force=True, volumes=True)
    except (DockyardError, OSError):
        from dockyard.containers import rootfs

        try:
            rootfs.remove(eng.paths, container_id)
        except (DockyardError, OSError):
            pass


def kill_containers(paths: Paths, runtime: str | None, ids: set[str]) -> None:
    """Ctrl-C: stop the build's running containers (their threads then clean up)."""
    if not ids:
        return
    from dockyard.config import find_runtime
    from dockyard.errors import DockyardError
    from dockyard.runtime.runc import Runc

    try:
        runc = Runc(find_runtime(runtime), paths.runtime_state)
    except DockyardError:
        return
    for cid in list(ids):
        try:
            runc.kill(cid, "KILL")
        except DockyardError:
            pass


def script_mount(paths: Paths, name: str, content: str, stack: Any) -> Mount:
    """A heredoc script with a shebang, bound read-only at /dev/pipes/NAME."""
    import tempfile

    from dockyard.containers.spec import Mount

    paths.tmp.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="build-script-", dir=paths.tmp)
    stack.callback(os.unlink, path)
    with os.fdopen(fd, "w") as f:
        f.write(content)
    os.chmod(path, 0o755)
    return Mount("bind", f"/dev/pipes/{name}", path, read_only=True)


# -- filesystem steps -------------------------------------------------------------


@contextmanager
def scratch_rootfs(paths: Paths, lower_dirs: list[Path]) -> Iterator[tuple[str, Path]]:
    """An overlay of ``lower_dirs`` with a fresh upper dir, removed afterwards."""
    from dockyard import ids
    from dockyard.containers import rootfs

    work_id = ids.new_id()
    base = rootfs.prepare(paths, work_id)
    try:
        (base / OWNER_FILE).write_text(str(os.getpid()))
        merged = rootfs.mount(paths, work_id, lower_dirs)
        yield work_id, merged
    finally:
        try:
            rootfs.remove(paths, work_id)
        except OSError:
            rootfs.unmount(paths, work_id)
            shutil.rmtree(base, ignore_errors=True)


def fs_step(eng: Engine, lower_dirs: list[Path], action: Callable[[Path], None]) -> LayerRecord:
    """Apply ``action(merged_root)`` on an overlay of the image; returns the layer."""
    from dockyard.containers import rootfs

    with scratch_rootfs(eng.paths, lower_dirs) as (work_id, merged):
        action(merged)
        rootfs.unmount(eng.paths, work_id)
        stream = rootfs.commit_layer(eng.paths, work_id)
        try:
            return eng.ctx.images.ingest_layer(stream)
        finally:
            stream.close()


def cleanup_stale_rootfs(paths: Paths) -> int:
    """Remove scratch rootfs dirs left by builds that were killed; returns how many."""
    from dockyard.containers import rootfs

    removed = 0
    try:
        entries = list(os.scandir(paths.containers))
    except FileNotFoundError:
        return 0
    for entry in entries:
        owner = Path(entry.path) / OWNER_FILE
        try:
            pid = int(owner.read_text())
        except (OSError, ValueError):
            continue
        if pid == os.getpid() or pid_alive(pid):
            continue
        try:
            rootfs.remove(paths, entry.name)
            removed += 1
        except OSError:
            continue
    return removed


# -- images -----------------------------------------------------------------------


def commit_image(
    eng: Engine,
    parent: Image | None,
    config: dict[str, Any],
    layers: list[LayerRecord],
    created_by: str,
    new_layer: LayerRecord | None,
    *,
    history: bool = True,
) -> Image:
    """Register the image of one step: ``config`` (the image config without rootfs)
    with a history entry for ``created_by``; an empty new layer is dropped and the
    entry marked ``empty_layer``, as Docker does."""
    from dockyard.images.layers import EMPTY_TAR_DIFF_ID
    from dockyard.images.store import now_rfc3339

    created = now_rfc3339()
    empty = new_layer is None or new_layer.diff_id == EMPTY_TAR_DIFF_ID
    entry: dict[str, Any] = {
        "created": created,
        "created_by": created_by,
        "comment": HISTORY_COMMENT,
    }
    if empty:
        entry["empty_layer"] = True
    out = dict(config)
    out["created"] = created
    out["history"] = [*(config.get("history") or []), *([entry] if history else [])]
    all_layers = list(layers) if empty or new_layer is None else [*layers, new_layer]
    ordered = {k: out[k] for k in sorted(out) if k != "rootfs"}
    try:
        return eng.ctx.images.create_image(
            ordered, all_layers, [], parent=parent.id if parent else None
        )
    except BaseException:
        if new_layer is not None:
            eng.ctx.images.discard_layers([new_layer])
        raise

"""Container lifecycle over the store, the rootfs, the runtime and the monitor.

``create`` records a container and its filesystem; ``start`` mounts the
rootfs, writes the OCI bundle and hands the container to its monitor, which
outlives this process; ``cleanup`` runs after the container exits (from the
monitor's exit command, from ``stop``/``rm``, or lazily from any command
that finds a dead monitor) and is idempotent under a per-container lock.
"""

from __future__ import annotations

import builtins
import fcntl
import json
import os
import sqlite3
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard import events
from dockyard.config import Paths, find_runtime
from dockyard.containers import rootfs
from dockyard.containers.spec import ContainerSpec
from dockyard.containers.state import (
    LIVE_STATUSES,
    ContainerState,
    merge_monitor_state,
    monitor_is_alive,
    now_rfc3339,
    pid_alive,
    read_monitor_state,
)
from dockyard.db import Database
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.fsutil import tree_size
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.images.store import Image, ImageStore
    from dockyard.network.manager import NetworkManager
    from dockyard.runtime.runc import Runc
    from dockyard.volumes.manager import VolumeManager


@record
class Container:
    """A container record with its state refreshed from the monitor."""

    id: str
    name: str
    image_id: str
    image: str
    created: str
    spec: ContainerSpec
    config: dict[str, Any]
    state: ContainerState = field(default_factory=ContainerState)

    @property
    def running(self) -> bool:
        return self.state.running

    @property
    def short_id(self) -> str:
        return self.id[:12]


class ContainerManager:
    def __init__(
        self,
        paths: Paths,
        db: Database,
        images: ImageStore | None = None,
        runtime: str | None = None,
    ) -> None:
        self.paths = paths
        self.db = db
        self._images = images
        self._runtime_name = runtime

    @property
    def images(self) -> ImageStore:
        """The image store, opened on first use (``ps`` does not need it)."""
        if self._images is None:
            from dockyard.images.store import ImageStore

            self._images = ImageStore(self.paths, self.db)
        return self._images

    # -- plumbing -----------------------------------------------------------

    @property
    def runtime_binary(self) -> str:
        if not hasattr(self, "_runtime_binary"):
            self._runtime_binary = find_runtime(self._runtime_name)
        return self._runtime_binary

    @property
    def runc(self) -> Runc:
        from dockyard.runtime.runc import Runc

        return Runc(self.runtime_binary, self.paths.runtime_state)

    @contextmanager
    def lock(self, container_id: str, blocking: bool = True) -> Iterator[bool]:
        """An exclusive per-container lock; yields False when non-blocking and taken."""
        self.paths.locks.mkdir(parents=True, exist_ok=True)
        fd = os.open(self.paths.locks / container_id, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
        finally:
            os.close(fd)

    def _row_to_container(self, row: sqlite3.Row) -> Container:
        return Container(
            id=row["id"],
            name=row["name"],
            image_id=row["image_id"],
            image=row["image"],
            created=row["created"],
            spec=ContainerSpec.from_dict(json.loads(row["spec"])),
            config=json.loads(row["config"]),
            state=ContainerState.from_dict(json.loads(row["state"])),
        )

    def _save_state(self, container: Container) -> None:
        with self.db.transaction() as conn:
            conn.execute(
                "UPDATE containers SET state = ? WHERE id = ?",
                (json.dumps(container.state.to_dict()), container.id),
            )

    # -- queries ------------------------------------------------------------

    def get(self, ref: str, refresh: bool = True) -> Container:
        """A container by full ID, name or unique ID prefix."""
        ref = ref.removeprefix("/")
        rows = self.db.query("SELECT * FROM containers WHERE id = ? OR name = ?", (ref, ref))
        if not rows and ref and all(c in "0123456789abcdef" for c in ref):
            rows = self.db.query(
                "SELECT * FROM containers WHERE id >= ? AND id < ?", (ref, ref + "g")
            )
            if len(rows) > 1:
                raise InvalidArgument(f"multiple containers found with provided prefix: {ref}")
        if not rows:
            raise NotFound(f"No such container: {ref}")
        rows.sort(key=lambda r: r["id"] != ref)  # a full ID wins over a name
        container = self._row_to_container(rows[0])
        return self.refresh(container) if refresh else container

    def list(self) -> builtins.list[Container]:
        rows = self.db.query("SELECT * FROM containers ORDER BY created DESC")
        return [self.refresh(self._row_to_container(r)) for r in rows]

    def _is_running(self, container_id: str) -> bool:
        """Running, or busy in another command (starting, stopping): not stale."""
        with self.lock(container_id, blocking=False) as free:
            if not free:
                return True
        try:
            return self.get(container_id).running
        except NotFound:
            return False

    def refresh(self, container: Container) -> Container:
        """Bring a live container's state up to date from its monitor's files."""
        state = container.state
        if state.status not in LIVE_STATUSES:
            return container
        run_dir = self.paths.container_run_dir(container.id)
        values = read_monitor_state(run_dir)
        final = values is not None and values.get("status") in ("exited", "failed")
        if not final and monitor_is_alive(run_dir):
            if values:
                container.state = merge_monitor_state(state, values)
            if container.state.status == "running" and (run_dir / "paused").exists():
                container.state.status = "paused"
            container.state.health = _read_health(run_dir)
            return container
        # The container exited (its monitor may still be finishing), or the machine restarted.
        if final and values:
            container.state = merge_monitor_state(state, values)
        elif values and pid_alive(int(values.get("pid") or 0)):
            container.state = merge_monitor_state(state, values)  # orphaned but running
            return container
        else:
            container.state.status = "exited"
            container.state.exit_code = 255
            container.state.finished_at = now_rfc3339()
        container.state.pid = 0
        container.state.health = _read_health(run_dir) if container.state.health else None
        self._cleanup_quietly(container)
        return container

    # -- create -------------------------------------------------------------

    def resolve_image(self, ref: str) -> Image:
        return self.images.resolve(ref)

    def create(self, spec: ContainerSpec, image: Image | None = None) -> Container:
        """Record a new container with its own filesystem layer (not yet mounted)."""
        if spec.auto_remove and spec.restart_policy.name not in ("", "no"):
            raise InvalidArgument("Conflicting options: --restart and --rm")
        from dockyard import ids
        from dockyard.containers.config import container_config
        from dockyard.runtime.process import expand_host_env
        from dockyard.runtime.seccomp import normalize_security_opts

        # Values from the caller's environment and files are fixed now, as Docker's CLI does.
        spec.env = expand_host_env(spec.env)
        spec.security_opt = normalize_security_opts(spec.security_opt)
        if image is None:
            image = self.resolve_image(spec.image)
        name = ids.validate_container_name(spec.name) if spec.name else None
        if name and self.db.query("SELECT id FROM containers WHERE name = ?", (name,)):
            raise _name_conflict(name, self.db)
        container_id = ids.new_id()
        hostname = spec.hostname or container_id[:12]
        config = container_config(spec, image.config, hostname)
        created = now_rfc3339()
        rootfs.prepare(self.paths, container_id)
        try:
            for attempt in range(20):
                candidate = name or ids.random_name() + ("" if attempt < 10 else str(attempt))
                try:
                    with self.db.transaction() as conn:
                        conn.execute(
                            "INSERT INTO containers (id, name, image_id, image, created, spec,"
                            " config, state) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                            (
                                container_id,
                                candidate,
                                image.id,
                                spec.image,
                                created,
                                json.dumps(spec.to_dict()),
                                json.dumps(config),
                                json.dumps(ContainerState().to_dict()),
                            ),
                        )
                    name = candidate
                    break
                except sqlite3.IntegrityError:
                    if spec.name:
                        raise _name_conflict(candidate, self.db) from None
            else:
                raise Conflict("could not generate a unique container name")
        except BaseException:
            rootfs.remove(self.paths, container_id)
            raise
        container = Container(container_id, name, image.id, spec.image, created, spec, config)
        events.container(self.paths.root, container, "create")
        return container

    # -- start --------------------------------------------------------------

    def start(self, container: Container, *, attach: bool = False) -> Container:
        """Mount, write the bundle, and hand the container to a new monitor.

        With ``attach`` the monitor waits for an attach client's START frame, so
        the caller sees all output from the first byte.
        """
        with self.lock(container.id):
            container = self.refresh(container)
            if container.state.status in LIVE_STATUSES:
                return container
            if container.state.status == "removing":
                raise Conflict(
                    f"container {container.id} is marked for removal and cannot be started"
                )
            try:
                self._start_locked(container, attach=attach)
            except BaseException as err:
                self._undo_start(container, err)
                raise
        events.container(self.paths.root, container, "start")
        return container

    def _start_locked(self, container: Container, *, attach: bool) -> None:
        from dockyard.runtime import monitor
        from dockyard.runtime import spec as oci
        from dockyard.runtime.process import resolve_process

        paths = self.paths
        image = self.images.get(container.image_id)
        merged = rootfs.mount(paths, container.id, self.images.layer_dirs(image))
        run_dir = paths.container_run_dir(container.id)
        if run_dir.exists():
            _remove_tree(run_dir)
        run_dir.mkdir(parents=True)
        extra_mounts, netns_path, hostname = self._prepare_network_and_volumes(
            container, image, merged
        )
        process = resolve_process(container.spec, image.config, merged, hostname=hostname)
        bundle = paths.container_dir(container.id)
        config = oci.generate(
            container.spec,
            image.config,
            container_id=container.id,
            rootfs=merged,
            process=process,
            hostname=hostname,
            extra_mounts=extra_mounts,
            netns_path=netns_path,
        )
        oci.write_bundle(bundle, config)
        spec = container.spec
        health = container.config.get("Healthcheck") or {}
        health_cmd = _health_argv(health.get("Test") or [])
        restart = spec.restart_policy
        cfg = monitor.MonitorConfig(
            id=container.id,
            runtime=self.runtime_binary,
            runtime_root=str(paths.runtime_state),
            bundle=str(bundle),
            state_dir=str(run_dir),
            log_path=str(self.log_path(container.id)),
            log_max_size=spec.log_config.max_size,
            log_max_file=spec.log_config.max_file,
            tty=spec.tty,
            stdin=spec.stdin_open,
            wait_attach=attach,
            restart=restart.name or "no",
            restart_max=restart.max_retries,
            health_cmd=health_cmd,
            health_interval=int(health.get("Interval") or 0),
            health_timeout=int(health.get("Timeout") or 0),
            health_retries=int(health.get("Retries") or 0),
            health_start_period=int(health.get("StartPeriod") or 0),
            exit_command=self.exit_command(container.id)
            if not attach or restart.name not in ("", "no")
            else [],
        )
        monitor_pid = monitor.spawn(cfg)
        state = container.state
        state.status = "running"
        state.monitor_pid = monitor_pid
        state.exit_code = 0
        state.error = ""
        state.oom_killed = False
        state.started_at = now_rfc3339()
        state.finished_at = "0001-01-01T00:00:00Z"
        state.restart_count = 0
        state.health = None
        self._save_state(container)

    @property
    def networks(self) -> NetworkManager:
        from dockyard.network.manager import NetworkManager

        return NetworkManager(self.paths, self.db)

    @property
    def volumes(self) -> VolumeManager:
        from dockyard.volumes.manager import VolumeManager

        return VolumeManager(self.paths, self.db)

    def _prepare_network_and_volumes(
        self, container: Container, image: Image, merged: Path
    ) -> tuple[builtins.list[dict[str, Any]], str | None, str]:
        """Volumes and network for this run: OCI mounts, the netns to join, the hostname."""
        spec = container.spec
        mounts: list[dict[str, Any]] = []
        if spec.mounts or spec.volumes_from or (image.config.get("config") or {}).get("Volumes"):
            from dockyard.volumes.parse import parse_volumes_from

            inherited = []
            for value in spec.volumes_from:
                ref, mode = parse_volumes_from(value)
                source = self.get(ref, refresh=False)
                inherited.extend(self.volumes.volumes_from_mounts(source.id, source.spec, mode))
            mounts = self.volumes.prepare_mounts(
                container.id, spec, image.config, merged, inherited
            )
        setup = self.networks.prepare(container.id, container.name, spec, image.config)
        hostname = setup.hostname or container.config.get("Hostname") or container.id[:12]
        return [*setup.extra_mounts, *mounts], setup.netns_path, hostname

    def _undo_start(self, container: Container, err: BaseException) -> None:
        self._teardown(container)
        state = container.state
        # a container that never ran stays "created", as Docker leaves it
        state.status = "created" if state.started_at.startswith("0001") else "exited"
        if isinstance(err, DockyardError):
            state.error = str(err)
            state.exit_code = err.exit_code
        try:
            self._save_state(container)
        except sqlite3.Error:
            pass

    def exit_command(self, container_id: str) -> builtins.list[str]:
        """What the monitor runs after the container's final exit."""
        return [
            sys.executable,
            "-m",
            "dockyard",
            "--root",
            str(self.paths.root),
            "--runroot",
            str(self.paths.runroot),
            "container",
            "cleanup",
            container_id,
        ]

    def log_path(self, container_id: str) -> Path:
        return self.paths.container_dir(container_id) / f"{container_id}-json.log"

    # -- stop / kill / cleanup ----------------------------------------------

    def _teardown(self, container: Container) -> None:
        """Release what a run holds: runtime state, mounts, network. Never raises."""
        run_dir = self.paths.container_run_dir(container.id)
        if (self.paths.runtime_state / container.id).exists() and not monitor_is_alive(run_dir):
            # (a live monitor deletes the runtime's state itself once its clients have the exit)
            try:
                self.runc.delete(container.id, force=True)
            except DockyardError:
                pass
        self._teardown_network(container)
        try:
            rootfs.unmount(self.paths, container.id)
        except OSError:
            pass
        _remove_tree(run_dir)

    def _teardown_network(self, container: Container) -> None:
        self.networks.teardown(container.id)

    def cleanup(self, container: Container, *, blocking: bool = True) -> None:
        """After exit: persist the final state, release resources, honour --rm."""
        with self.lock(container.id, blocking=blocking) as locked:
            if not locked:
                return
            self._cleanup_locked(container)

    def _cleanup_quietly(self, container: Container) -> None:
        try:
            self.cleanup(container, blocking=False)
        except (DockyardError, OSError, sqlite3.Error):
            pass

    def _cleanup_locked(self, container: Container) -> None:
        run_dir = self.paths.container_run_dir(container.id)
        values = read_monitor_state(run_dir)
        final = values is not None and values.get("status") in ("exited", "failed")
        if not final and monitor_is_alive(run_dir):
            return  # still running (or restarting): nothing to clean
        if values is None and container.state.status not in LIVE_STATUSES:
            return  # cleaned up already
        if values:
            container.state = merge_monitor_state(container.state, values)
        if container.state.status in LIVE_STATUSES:
            container.state.status = "exited"
        code = str(container.state.exit_code)
        events.container(self.paths.root, container, "die", exitCode=code)
        container.state.pid = 0
        container.state.monitor_pid = 0
        if container.state.finished_at.startswith("0001"):
            container.state.finished_at = now_rfc3339()
        health = _read_health(run_dir)
        if health:
            container.state.health = health
        if not self.db.query("SELECT 1 FROM containers WHERE id = ?", (container.id,)):
            self._teardown(container)
            return
        if container.spec.auto_remove:
            self._remove_locked(container, volumes=True)
            return
        self._teardown(container)
        self._save_state(container)

    def _signal(self, container: Container, signal: str | int) -> None:
        from dockyard.runtime.runc import parse_signal

        try:
            self.runc.kill(container.id, signal)
        except DockyardError as err:
            if "not running" in str(err) or "does not exist" in str(err):
                return
            raise
        number = str(parse_signal(signal))
        events.container(self.paths.root, container, "kill", signal=number)

    def wait_exit(self, container: Container, timeout: float | None) -> bool:
        """Wait until the monitor reports the container exited; False on timeout."""
        run_dir = self.paths.container_run_dir(container.id)
        deadline = None if timeout is None else time.monotonic() + timeout
        delay = 0.005
        while True:
            values = read_monitor_state(run_dir)
            if values is None or values.get("status") in ("exited", "failed"):
                return True
            if not monitor_is_alive(run_dir):
                return True
            if deadline is not None and time.monotonic() >= deadline:
                return False
            time.sleep(delay)
            delay = min(delay * 2, 0.05)

    def stop(
        self, container: Container, timeout: int | None = None, signal: str | None = None
    ) -> None:
        """SIGTERM (or the stop signal), then SIGKILL after the timeout, as Docker."""
        with self.lock(container.id):
            container = self.refresh(container)
            if not container.running:
                return
            run_dir = self.paths.container_run_dir(container.id)
            (run_dir / "stop-requested").touch()
            if container.state.status == "paused":
                self.runc.resume(container.id)
                (run_dir / "paused").unlink(missing_ok=True)
            if container.state.status == "restarting":
                # between two runs: the monitor cancels the restart on SIGTERM
                _signal_monitor(run_dir)
                self.wait_exit(container, None)
                self._cleanup_locked(container)
                return
            if timeout is None:
                timeout = (
                    container.spec.stop_timeout if container.spec.stop_timeout is not None else 10
                )
            stop_signal = signal or container.config.get("StopSignal") or "SIGTERM"
            if timeout != 0:
                self._signal(container, stop_signal)
            if timeout < 0:
                self.wait_exit(container, None)
            elif not self.wait_exit(container, timeout):
                self._signal(container, "KILL")
                self.wait_exit(container, None)
            self._cleanup_locked(container)
        events.container(self.paths.root, container, "stop")

    def kill(self, container: Container, signal: str = "KILL") -> None:
        from dockyard.runtime.runc import parse_signal

        number = parse_signal(signal)
        if not container.running:
            raise Conflict(
                f"cannot kill container: {container.id}: container {container.id} is not running"
            )
        run_dir = self.paths.container_run_dir(container.id)
        if number in (9, 15) or signal.upper().removeprefix("SIG") in ("KILL", "TERM"):
            (run_dir / "stop-requested").touch()
        self._signal(container, number)

    def pause(self, container: Container) -> None:
        if not container.running:
            raise Conflict(f"Container {container.id} is not running")
        if container.state.status == "paused":
            raise Conflict(f"Container {container.id} is already paused")
        self.runc.pause(container.id)
        (self.paths.container_run_dir(container.id) / "paused").touch()
        events.container(self.paths.root, container, "pause")

    def unpause(self, container: Container) -> None:
        if container.state.status != "paused":
            raise Conflict(f"Container {container.id} is not paused")
        self.runc.resume(container.id)
        (self.paths.container_run_dir(container.id) / "paused").unlink(missing_ok=True)
        events.container(self.paths.root, container, "unpause")

    # -- remove / rename / prune --------------------------------------------

    def remove(self, container: Container, *, force: bool = False, volumes: bool = False) -> None:
        with self.lock(container.id):
            container = self.refresh(container)
            if container.running:
                if not force:
                    raise Conflict(
                        f'cannot remove container "/{container.name}": container is '
                        f"{container.state.status}: stop the container before removing or "
                        "force remove"
                    )
                run_dir = self.paths.container_run_dir(container.id)
                (run_dir / "stop-requested").touch()
                if container.state.status == "restarting":
                    _signal_monitor(run_dir)
                if container.state.status == "paused":
                    try:
                        self.runc.resume(container.id)
                    except DockyardError:
                        pass
                self._signal(container, "KILL")
                self.wait_exit(container, 10)
            self._remove_locked(container, volumes=volumes)

    def _remove_locked(self, container: Container, *, volumes: bool) -> None:
        # Mark first, so a crash half-way leaves a record that `rm` can finish.
        container.state.status = "removing"
        self._save_state(container)
        self._teardown(container)
        self._release_volumes(container, volumes)
        rootfs.remove(self.paths, container.id)
        with self.db.transaction() as conn:
            conn.execute("DELETE FROM containers WHERE id = ?", (container.id,))
        events.container(self.paths.root, container, "destroy")
        if not self.db.query(
            "SELECT 1 FROM tags WHERE image_id = ? LIMIT 1", (container.image_id,)
        ):
            self.images.gc()  # an untagged image kept only for this container can go now
        try:
            os.unlink(self.paths.locks / container.id)
        except OSError:
            pass

    def _release_volumes(self, container: Container, remove_anonymous: bool) -> None:
        self.networks.forget(container.id)
        self.volumes.release(container.id, remove_anonymous)

    def inspect_extras(self, container: Container) -> dict[str, Any]:
        """The parts of ``inspect`` that the network and volume subsystems know."""
        image_config: dict[str, Any] = {}
        try:
            image_config = self.images.get(container.image_id).config
        except DockyardError:
            pass
        extras: dict[str, Any] = {
            "NetworkSettings": self.networks.settings(container.id, container.spec, image_config),
            "Mounts": self.volumes.mounts_for_inspect(container.id, container.spec),
        }
        return extras

    def rename(self, container: Container, new_name: str) -> None:
        from dockyard import ids

        new_name = ids.validate_container_name(new_name)
        if new_name == container.name:
            raise Conflict("Renaming a container with the same name as its current name")
        try:
            with self.db.transaction() as conn:
                conn.execute(
                    "UPDATE containers SET name = ? WHERE id = ?", (new_name, container.id)
                )
        except sqlite3.IntegrityError:
            raise _name_conflict(new_name, self.db) from None
        old_name, container.name = container.name, new_name
        events.container(self.paths.root, container, "rename", oldName=f"/{old_name}")

    def release_stale_networks(self) -> None:
        """Network state of containers that no longer run (a crash between steps)."""
        self.networks.cleanup_stale(self._is_running)

    def prune(self) -> tuple[builtins.list[str], int]:
        removed: builtins.list[str] = []
        reclaimed = 0
        self.release_stale_networks()
        for container in self.list():
            if container.running:
                continue
            reclaimed += tree_size(self.paths.container_dir(container.id) / "upper")
            try:
                self.remove(container)
                removed.append(container.id)
            except DockyardError:
                continue
        return removed, reclaimed

    def restart(self, container: Container, timeout: int | None = None) -> None:
        self.stop(container, timeout)
        self.start(self.get(container.id))


def _signal_monitor(run_dir: Path) -> None:
    import signal

    try:
        os.kill(int((run_dir / "monitor.pid").read_text()), signal.SIGTERM)
    except (OSError, ValueError):
        pass


def _read_health(run_dir: Path) -> dict[str, Any] | None:
    try:
        return json.loads((run_dir / "health.json").read_text())
    except (OSError, ValueError):
        return None


def _health_argv(test: list[str]) -> list[str]:
    if not test or test[0] == "NONE":
        return []
    if test[0] == "CMD":
        return list(test[1:])
    if test[0] == "CMD-SHELL":
        return ["/bin/sh", "-c", " ".join(test[1:])]
    return list(test)


def _name_conflict(name: str, db: Database) -> Conflict:
    rows = db.query("SELECT id FROM containers WHERE name = ?", (name,))
    owner = rows[0]["id"] if rows else "unknown"
    return Conflict(
        f'Conflict. The container name "/{name}" is already in use by container "{owner}". '
        "You have to remove (or rename) that container to be able to reuse that name."
    )


def _remove_tree(path: Path) -> None:
    import shutil

    shutil.rmtree(path, ignore_errors=True)

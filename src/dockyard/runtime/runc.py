"""A thin driver over the OCI runtime CLI (runc, or crun which takes the same commands).

Only what is needed besides the monitor (which runs ``create``/``run``
itself): signalling, state, pause/resume, process lists, stats and the argv
for ``exec``. Runtime errors come back as DockyardErrors carrying the
runtime's own message without its log decoration (``time=... level=error
msg="..."``), so users see e.g. "container abc is not running".
"""

from __future__ import annotations

import json
import os
import re
import signal as _signal
import subprocess
from pathlib import Path
from typing import Any

from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound, RuntimeFailure

DEFAULT_TIMEOUT = 60.0
_SIGRTMIN = 34  # as glibc (and Docker) count them: 32 and 33 are libc-internal
_SIGRTMAX = 64


def _signal_table() -> dict[str, int]:
    """Docker's Linux signal names (without SIG) -> numbers, incl. RTMIN+n / RTMAX-n."""
    table: dict[str, int] = {}
    for name, sig in _signal.Signals.__members__.items():
        if name.startswith("SIG") and not name.startswith("SIG_") and "RT" not in name:
            table[name[3:]] = int(sig)
    table["RTMIN"] = _SIGRTMIN
    table["RTMAX"] = _SIGRTMAX
    for n in range(1, 16):
        table[f"RTMIN+{n}"] = _SIGRTMIN + n
        table[f"RTMAX-{n}"] = _SIGRTMAX - n
    return table


SIGNALS: dict[str, int] = _signal_table()


def parse_signal(name_or_number: str | int) -> int:
    """``SIGTERM``, ``TERM``, ``sigkill``, ``15`` -> signal number (Docker's rules)."""
    raw = str(name_or_number).strip()
    if raw.lstrip("-").isdigit():
        number = int(raw)
        if not 0 < number <= _SIGRTMAX:
            raise InvalidArgument(f"Invalid signal: {raw}")
        return number
    key = raw.upper()
    key = key[3:] if key.startswith("SIG") else key
    if key not in SIGNALS:
        raise InvalidArgument(f"Invalid signal: {raw}")
    return SIGNALS[key]


_MSG = re.compile(r'msg="((?:[^"\\]|\\.)*)"')


def clean_error(stderr: str) -> str:
    """The runtime's message(s) without logrus/crun decoration, one line."""
    messages: list[str] = []
    for line in stderr.splitlines():
        line = line.strip()
        if not line:
            continue
        match = _MSG.search(line)
        if match:
            text = match.group(1)
            try:
                text = json.loads(f'"{text}"')
            except ValueError:
                text = text.replace('\\"', '"')
        elif line.startswith("{"):
            try:
                text = str(json.loads(line).get("msg", line))
            except (ValueError, AttributeError):
                text = line
        else:
            text = re.sub(r"^(?:crun|runc):\s*", "", line)
        if text and text not in messages:
            messages.append(text)
    return "; ".join(messages) or "unknown error"


class Runc:
    """The runtime binary with its state directory (``--root``)."""

    def __init__(self, binary: str, root: Path | str) -> None:
        self.binary = binary
        self.root = Path(root)
        self.name = os.path.basename(binary)
        self._features: dict[str, Any] | None = None

    # -- plumbing ------------------------------------------------------------

    def base_argv(self) -> list[str]:
        return [self.binary, "--root", str(self.root)]

    def _run(
        self, *args: str, container_id: str = "", timeout: float = DEFAULT_TIMEOUT
    ) -> subprocess.CompletedProcess[str]:
        argv = [*self.base_argv(), *args]
        try:
            proc = subprocess.run(
                argv, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
            )
        except FileNotFoundError:
            raise RuntimeFailure(
                f"OCI runtime {self.binary} not found: install runc (apt-get install runc)"
            ) from None
        except subprocess.TimeoutExpired:
            raise RuntimeFailure(
                f"{self.name} {args[0]} {container_id} did not finish within {timeout:g}s"
            ) from None
        if proc.returncode != 0:
            raise self._error(args[0], container_id, proc.stderr or proc.stdout)
        return proc

    def _error(self, command: str, container_id: str, output: str) -> DockyardError:
        message = clean_error(output)
        lower = message.lower()
        if "does not exist" in lower:
            return NotFound(f"container {container_id} does not exist in the runtime")
        if "not running" in lower or "process already finished" in lower:
            return Conflict(f"container {container_id} is not running")
        if "is paused" in lower and command != "resume":
            return Conflict(f"container {container_id} is paused")
        if "not paused" in lower:
            return Conflict(f"container {container_id} is not paused")
        return RuntimeFailure(f"{self.name} {command} {container_id}: {message}")

    # -- commands ------------------------------------------------------------

    def kill(self, container_id: str, signal: str | int = "KILL", all: bool = False) -> None:
        """Send a signal to the container's init (or, with ``all``, every process)."""
        number = parse_signal(signal)
        args = ["kill"]
        if all:
            args.append("--all")
        self._run(*args, container_id, str(number), container_id=container_id)

    def state(self, container_id: str) -> dict[str, Any] | None:
        """The runtime's state (``status``: created/running/paused/stopped), None if unknown."""
        try:
            proc = self._run("state", container_id, container_id=container_id)
        except NotFound:
            return None
        try:
            data = json.loads(proc.stdout)
        except ValueError:
            raise RuntimeFailure(
                f"{self.name} state {container_id}: unreadable output {proc.stdout[:200]!r}"
            ) from None
        return data if isinstance(data, dict) else None

    def delete(self, container_id: str, force: bool = False) -> None:
        """Remove the runtime's state; a container it does not know is already gone."""
        args = ["delete", "--force", container_id] if force else ["delete", container_id]
        try:
            self._run(*args, container_id=container_id)
        except NotFound:
            return

    def pause(self, container_id: str) -> None:
        self._run("pause", container_id, container_id=container_id)

    def resume(self, container_id: str) -> None:
        self._run("resume", container_id, container_id=container_id)

    def update(self, container_id: str, resources_file: Path) -> None:
        """Apply new cgroup limits (an OCI ``linux.resources`` JSON file) to a live container."""
        self._run(
            "update", "--resources", str(resources_file), container_id, container_id=container_id
        )

    def start(self, container_id: str) -> None:
        """Start a created container (the process waiting in ``runc create``)."""
        self._run("start", container_id, container_id=container_id)

    def ps(self, container_id: str) -> list[int]:
        """Host PIDs of the container's processes."""
        proc = self._run("ps", "--format", "json", container_id, container_id=container_id)
        try:
            pids = json.loads(proc.stdout or "null")
        except ValueError:
            raise RuntimeFailure(
                f"{self.name} ps {container_id}: unreadable output {proc.stdout[:200]!r}"
            ) from None
        return [int(p) for p in pids or []]

    def stats(self, container_id: str) -> dict[str, Any]:
        """One sample of cgroup statistics (cpu, memory, pids, blkio, ...)."""
        proc = self._run("events", "--stats", container_id, container_id=container_id)
        for line in proc.stdout.splitlines():
            line = line.strip()
            if not line:
                continue
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if isinstance(event, dict) and event.get("type") == "stats":
                data = event.get("data")
                return data if isinstance(data, dict) else {}
        raise RuntimeFailure(f"{self.name} events --stats {container_id}: no statistics returned")

    def list_containers(self) -> list[dict[str, Any]]:
        """Every container the runtime knows under this root."""
        proc = self._run("list", "--format", "json")
        try:
            data = json.loads(proc.stdout or "null")
        except ValueError:
            return []
        return list(data or [])

    def features(self) -> dict[str, Any]:
        """``runc features`` (runc >= 1.1, crun >= 1.8); {} if the runtime lacks it."""
        if self._features is None:
            try:
                proc = self._run("features", timeout=10)
                self._features = json.loads(proc.stdout)
            except (DockyardError, ValueError):
                self._features = {}
        return self._features

    # -- argv builders (the caller runs them, wiring stdio as it needs) -----

    def create_argv(
        self,
        container_id: str,
        bundle: Path | str,
        *,
        pid_file: str | None = None,
        console_socket: str | None = None,
    ) -> list[str]:
        argv = [*self.base_argv(), "create", "--bundle", str(bundle)]
        if pid_file:
            argv += ["--pid-file", pid_file]
        if console_socket:
            argv += ["--console-socket", console_socket]
        return [*argv, container_id]

    def exec_argv(
        self,
        container_id: str,
        args: list[str],
        *,
        tty: bool = False,
        env: list[str] | None = None,
        cwd: str | None = None,
        user: str | None = None,
        detach: bool = False,
        additional_gids: list[int] | None = None,
        process_json: str | None = None,
        console_socket: str | None = None,
        pid_file: str | None = None,
    ) -> list[str]:
        """argv for ``runtime exec``; with ``process_json`` the process comes from that file.

        ``user`` is "uid" or "uid:gid" (already resolved in the container).
        """
        argv = [*self.base_argv(), "exec"]
        if detach:
            argv.append("--detach")
        if console_socket:
            argv += ["--console-socket", console_socket]
        if pid_file:
            argv += ["--pid-file", pid_file]
        if process_json:
            return [*argv, "--process", process_json, container_id]
        if not args:
            raise InvalidArgument("exec needs a command")
        if tty:
            argv.append("--tty")
        for entry in env or []:
            argv += ["--env", entry]
        if cwd:
            argv += ["--cwd", cwd]
        if user:
            argv += ["--user", user]
        if additional_gids:
            if self.name.startswith("crun"):
                raise RuntimeFailure(
                    "crun exec cannot set additional groups from flags: pass a process.json"
                )
            for gid in additional_gids:
                argv += ["--additional-gids", str(gid)]
        return [*argv, container_id, *args]

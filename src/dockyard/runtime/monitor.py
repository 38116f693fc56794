"""The per-container monitor (``monitor/monitor.c``): build it, spawn it, read it, attach to it.

One small C process per container keeps the container's stdio, writes its
json-file log, serves attach clients, runs healthchecks, applies the restart
policy and records the exit code -- so no dockyard process has to stay
around. It is C because it must cost well under 1 MB per idle container.

spawn() runs ``dockyard-monitor --sync-fd N --id ... [flags of MonitorConfig]``;
the monitor forks into its own session (the spawned process exits at once),
then writes ``ready`` (wait_attach), ``ok <container pid>`` or ``error <msg>``
on the sync fd. The runtime runs as ``RUNTIME --root R --log STATE/runc.log
--log-format json run --detach ...`` (with a tty: ``create`` with
``--console-socket``, window size set, then ``start``).

Files in the state dir (``Paths.container_run_dir(id)``), all written by the monitor:

- ``monitor.pid``; ``attach.sock`` (0600) while it runs;
- ``state``: ``key=value`` lines (status, pid, started_at, finished_at,
  exit_code, restart_count, oom_killed, error, monitor_pid), replaced
  atomically; times RFC3339Nano UTC, "" when unset. status: created
  (waiting for START, or starting), running, restarting, exited, failed
  (start failed; ``error`` has the runtime's message, exit_code stays -1:
  ``start_error(error).exit_code`` gives Docker's 125/126/127);
- ``health.json`` (Docker's State.Health shape) when a healthcheck is set;
- ``monitor.log`` (its own diagnostics), ``runc.log`` (the runtime's log).

The caller creates ``stop-requested`` (request_stop()) before stopping or
killing the container so that no restart happens; the monitor removes a
stale one when it starts. SIGTERM to the monitor: before START it exits;
during a restart back-off it cancels the restart (final state exited);
while the container runs it is ignored (stop the container instead). If
the monitor was SIGKILLed, ``state`` may still say running: check
monitor_alive().

Attach frames, both directions: ``[type:u8, 0, 0, 0, length:u32 BE] + payload``;
types STDIN..ERROR below. Output frames go to every client attached at the
time; EXIT (exit code in ASCII) or ERROR comes last, then the monitor closes.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.records import field, record

if TYPE_CHECKING:
    import socket

from dockyard.errors import (
    CommandNotExecutable,
    CommandNotFound,
    DockyardError,
    InvalidArgument,
    RuntimeFailure,
)

SOURCE = Path(__file__).resolve().parent / "monitor" / "monitor.c"
BINARY_PREFIX = "dockyard-monitor"

# Frame types (monitor.c: enum frame_type)
STDIN, STDOUT, STDERR, RESIZE, CLOSE_STDIN, EXIT, START, ERROR = range(8)
_HEADER = struct.Struct(">BxxxI")
_CHUNK = 65536  # largest STDIN frame we send


def monitor_binary() -> str:
    """Path of the compiled monitor, building it on first use."""
    from dockyard import cbuild

    return cbuild.binary(SOURCE, BINARY_PREFIX, "container monitor")


@record
class MonitorConfig:
    """Everything the monitor is told on its command line (durations in ns)."""

    id: str
    runtime: str
    runtime_root: str | os.PathLike[str]
    bundle: str | os.PathLike[str]
    state_dir: str | os.PathLike[str]
    log_path: str | os.PathLike[str] | None = None  # None: no log (driver "none")
    log_max_size: int = 0  # bytes; 0: never rotate
    log_max_file: int = 1
    tty: bool = False
    stdin: bool = False  # keep the container's stdin open (-i)
    wait_attach: bool = False  # start only when an attach client sends START
    restart: str = "no"  # no | always | unless-stopped | on-failure
    restart_max: int = 0  # on-failure retries; 0: unlimited
    health_cmd: list[str] = field(default_factory=list)  # argv run in the container
    health_interval: int = 0  # 0: 30s
    health_timeout: int = 0  # 0: 30s
    health_retries: int = 0  # 0: 3
    health_start_period: int = 0
    exit_command: list[str] = field(default_factory=list)  # exec'd when all is over

    def argv(self, binary: str, sync_fd: int | None = None) -> list[str]:
        args = [binary]
        if sync_fd is not None:  # first, so that even usage errors reach the caller
            args += ["--sync-fd", str(sync_fd)]
        args += ["--id", self.id, "--runtime", self.runtime]
        args += ["--runtime-root", os.fspath(self.runtime_root), "--bundle", os.fspath(self.bundle)]
        args += ["--state-dir", os.fspath(self.state_dir)]
        if self.log_path is not None:
            args += ["--log-path", os.fspath(self.log_path)]
            args += ["--log-max-size", str(self.log_max_size)]
            args += ["--log-max-file", str(self.log_max_file)]
        args += [f for f, on in (("--tty", self.tty), ("--stdin", self.stdin)) if on]
        if self.wait_attach:
            args.append("--wait-attach")
        args += ["--restart", self.restart, "--restart-max", str(self.restart_max)]
        for arg in self.health_cmd:
            args += ["--health-cmd", arg]
        if self.health_cmd:
            for flag, value in (
                ("--health-interval", self.health_interval),
                ("--health-timeout", self.health_timeout),
                ("--health-retries", self.health_retries),
                ("--health-start-period", self.health_start_period),
            ):
                args += [flag, str(value)]
        for arg in self.exit_command:
            args += ["--exit-command", arg]
        return args


def start_error(message: str) -> DockyardError:
    """The runtime's start failure as Docker reports it: 127, 126 or 125."""
    text = f"failed to create task for container: {message}"
    low = message.lower()
    if "executable file not found" in low or ("no such file or directory" in low and "exec" in low):
        return CommandNotFound(text)
    if "exec" in low and any(
        s in low for s in ("permission denied", "exec format error", "is a directory")
    ):
        return CommandNotExecutable(text)
    return RuntimeFailure(text)


def spawn(cfg: MonitorConfig, *, timeout: float = 120.0) -> int:
    """Start a monitor; returns its pid once the container runs (or, with
    wait_attach, once it waits for START). Start failures raise start_error()."""
    binary = monitor_binary()
    state_dir = os.fspath(cfg.state_dir)
    os.makedirs(state_dir, mode=0o700, exist_ok=True)
    r, w = os.pipe()  # both close-on-exec: threads spawning other monitors must not inherit w
    sync_fd = 3
    try:
        if w == sync_fd:  # dup2 onto itself would keep close-on-exec set
            w2 = os.dup(w)
            os.close(w)
            w = w2
        actions: list[tuple[Any, ...]] = [
            (os.POSIX_SPAWN_OPEN, fd, "/dev/null", os.O_RDWR, 0) for fd in (0, 1, 2)
        ]
        actions.append((os.POSIX_SPAWN_DUP2, w, sync_fd))
        first = os.posix_spawn(
            binary, cfg.argv(binary, sync_fd), os.environ, file_actions=actions, setsid=True
        )
    finally:
        os.close(w)
    try:
        os.waitpid(first, 0)  # the monitor forks off and this first process exits at once
        line = _read_line(r, timeout)
    finally:
        os.close(r)
    word, _, rest = line.partition(" ")
    if word == "error":
        raise start_error(rest)
    if word not in ("ok", "ready"):
        detail = _last_line(os.path.join(state_dir, "monitor.log")) or "no reason given"
        raise RuntimeFailure(f"container monitor failed to start: {detail}")
    return int(Path(state_dir, "monitor.pid").read_text())


def _read_line(fd: int, timeout: float) -> str:
    import select

    data = b""
    while not data.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], timeout)
        if not ready:
            raise RuntimeFailure(f"container monitor did not report within {timeout:.0f}s")
        chunk = os.read(fd, 4096)
        if not chunk:
            break
        data += chunk
    return data.decode(errors="replace").strip()


def _last_line(path: str) -> str:
    try:
        with open(path, "rb") as f:
            lines = f.read()[-4096:].decode(errors="replace").strip().splitlines()
    except OSError:
        return ""
    return lines[-1] if lines else ""


@record
class MonitorState:
    """The monitor's ``state`` file; times are RFC3339Nano UTC strings ("" if unset)."""

    status: str = ""
    pid: int = 0
    started_at: str = ""
    finished_at: str = ""
    exit_code: int = -1
    restart_count: int = 0
    oom_killed: bool = False
    error: str = ""
    monitor_pid: int = 0


_INT_FIELDS = ("pid", "exit_code", "restart_count", "monitor_pid")


def read_state(state_dir: str | os.PathLike[str]) -> MonitorState | None:
    """The last state the monitor recorded, or None if it never wrote one."""
    try:
        with open(os.path.join(state_dir, "state"), encoding="utf-8", errors="replace") as f:
            text = f.read()
    except FileNotFoundError:
        return None
    state = MonitorState()
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if not sep:
            continue
        if key in _INT_FIELDS:
            setattr(state, key, int(value or 0))
        elif key == "oom_killed":
            state.oom_killed = value == "1"
        elif key in ("status", "started_at", "finished_at", "error"):
            setattr(state, key, value)
    return state


def read_health(state_dir: str | os.PathLike[str]) -> dict[str, Any] | None:
    """health.json: {"Status", "FailingStreak", "Log": [{Start, End, ExitCode, Output}]}."""
    import json

    try:
        with open(os.path.join(state_dir, "health.json"), "rb") as f:
            data: dict[str, Any] = json.load(f)
    except (FileNotFoundError, ValueError):
        return None
    return data


def monitor_alive(state_dir: str | os.PathLike[str]) -> bool:
    """Whether this state dir's monitor still runs (robust against pid reuse)."""
    state_dir = os.path.abspath(state_dir)
    try:
        pid = int(Path(state_dir, "monitor.pid").read_text())
        os.kill(pid, 0)
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().split(b"\0")
    except (OSError, ValueError):
        return False
    if not os.path.basename(argv[0]).startswith(BINARY_PREFIX.encode()):
        return False
    try:
        return argv[argv.index(b"--state-dir") + 1] == os.fsencode(state_dir)
    except (ValueError, IndexError):
        return False


def request_stop(state_dir: str | os.PathLike[str]) -> None:
    """Tell the monitor not to restart the container (call before stop/kill)."""
    Path(state_dir, "stop-requested").touch()


class AttachClient:
    """A connection to a monitor's attach socket."""

    def __init__(self, sock: socket.socket, state_dir: str = "") -> None:
        self.sock = sock
        self.state_dir = state_dir
        self._buf = b""

    @classmethod
    def connect(cls, state_dir: str | os.PathLike[str]) -> AttachClient:
        """Connect; raises OSError (e.g. ENOENT/ECONNREFUSED) when no monitor listens."""
        import socket

        path = os.path.join(os.path.abspath(state_dir), "attach.sock")
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM | socket.SOCK_CLOEXEC)
        try:
            if len(os.fsencode(path)) < 100:
                sock.connect(path)
            else:  # sun_path holds 108 bytes: go through the directory's fd
                dirfd = os.open(os.path.dirname(path), os.O_PATH | os.O_DIRECTORY)
                try:
                    sock.connect(f"/proc/self/fd/{dirfd}/attach.sock")
                finally:
                    os.close(dirfd)
        except OSError:
            sock.close()
            raise
        return cls(sock, os.fspath(state_dir))

    def fileno(self) -> int:
        return self.sock.fileno()

    def send(self, ftype: int, payload: bytes = b"") -> None:
        self.sock.sendall(_HEADER.pack(ftype, len(payload)) + payload)

    def start(self) -> None:
        self.send(START)

    def send_stdin(self, data: bytes) -> None:
        for i in range(0, len(data), _CHUNK):
            self.send(STDIN, data[i : i + _CHUNK])

    def close_stdin(self) -> None:
        self.send(CLOSE_STDIN)

    def resize(self, rows: int, cols: int) -> None:
        self.send(RESIZE, f"{rows} {cols}".encode())

    def feed(self, data: bytes) -> list[tuple[int, bytes]]:
        """Add received bytes; return the frames now complete."""
        buf = self._buf + data
        frames = []
        while len(buf) >= 8:
            ftype, length = _HEADER.unpack_from(buf)
            if len(buf) < 8 + length:
                break
            frames.append((ftype, buf[8 : 8 + length]))
            buf = buf[8 + length :]
        self._buf = buf
        return frames

    def frames(self) -> Iterator[tuple[int, bytes]]:
        """Frames as they arrive (blocking) until the monitor closes the connection."""
        while True:
            data = self.sock.recv(_CHUNK)
            if not data:
                return
            yield from self.feed(data)

    def close(self) -> None:
        self.sock.close()

    def __enter__(self) -> AttachClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_CTRL_PUNCT = {"@": 0, "[": 27, "\\": 28, "]": 29, "^": 30, "_": 31}


def parse_detach_keys(spec: str) -> bytes:
    """Docker's --detach-keys: comma-separated "ctrl-<x>" or single characters."""
    out = bytearray()
    for part in spec.split(","):
        if len(part) == 1:
            out.append(ord(part))
        elif part.startswith("ctrl-") and len(part) == 6 and "a" <= part[5] <= "z":
            out.append(ord(part[5]) - ord("a") + 1)
        elif part.startswith("ctrl-") and len(part) == 6 and part[5] in _CTRL_PUNCT:
            out.append(_CTRL_PUNCT[part[5]])
        else:
            raise InvalidArgument(f"invalid detach keys: {spec!r}")
    return bytes(out)


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        view = view[os.write(fd, view) :]


def _terminal_size(*fds: int) -> tuple[int, int] | None:
    for fd in fds:
        try:
            size = os.get_terminal_size(fd)
            return size.lines, size.columns
        except OSError:
            continue
    return None


def attach_session(
    state_dir: str | os.PathLike[str],
    *,
    stdin: bool,
    tty: bool,
    start: bool,
    detach_keys: str = "ctrl-p,ctrl-q",
) -> int | None:
    """Attach our stdio to the container until it exits; returns its exit code.

    With ``start`` the monitor was spawned with wait_attach and starts the
    container now (start errors raise like spawn()). With tty and stdin on a
    terminal, the terminal is raw for the session and its size follows
    SIGWINCH; the detach keys then end the session and None is returned
    (the container keeps running). Our stdin EOF closes the container's stdin.
    """
    try:
        client = AttachClient.connect(state_dir)
    except OSError:
        state = read_state(state_dir)
        if state and state.status == "exited":
            return state.exit_code
        if state and state.status == "failed":
            raise start_error(state.error) from None
        raise RuntimeFailure("cannot attach: the container is not running") from None
    import signal

    keys = parse_detach_keys(detach_keys) if tty and stdin else b""
    saved_tty: list[Any] | None = None
    wake_r = wake_w = -1
    old_wakeup = old_winch = None
    try:
        if tty and stdin and os.isatty(0):
            import termios
            import tty as ttymod

            saved_tty = termios.tcgetattr(0)
            ttymod.setraw(0, termios.TCSANOW)
        if tty:
            size = _terminal_size(1, 0)
            if size:
                client.resize(*size)
            try:  # SIGWINCH wakes the poll loop through a pipe
                wake_r, wake_w = os.pipe2(os.O_NONBLOCK | os.O_CLOEXEC)
                old_wakeup = signal.set_wakeup_fd(wake_w)
                old_winch = signal.signal(signal.SIGWINCH, lambda *_: None)
            except ValueError:  # not the main thread: no resize tracking
                pass
        if start:
            client.start()
        return _session_loop(client, stdin, tty, keys, wake_r)
    finally:
        if saved_tty is not None:
            import termios

            termios.tcsetattr(0, termios.TCSADRAIN, saved_tty)
        if old_winch is not None:
            signal.signal(signal.SIGWINCH, old_winch)
        if old_wakeup is not None:
            signal.set_wakeup_fd(old_wakeup)
        for fd in (wake_r, wake_w):
            if fd >= 0:
                os.close(fd)
        client.close()


def _session_loop(
    client: AttachClient, stdin: bool, tty: bool, keys: bytes, wake_r: int
) -> int | None:
    import select

    poller = select.poll()
    sock_fd = client.fileno()
    poller.register(sock_fd, select.POLLIN)
    if stdin:
        poller.register(0, select.POLLIN)
    if wake_r >= 0:
        poller.register(wake_r, select.POLLIN)
    matched = 0  # detach key bytes seen so far
    while True:
        for fd, _ in poller.poll():
            if fd == sock_fd:
                data = client.sock.recv(_CHUNK)
                if not data:
                    return _lost_connection(client)
                for ftype, payload in client.feed(data):
                    if ftype == STDOUT:
                        _write_all(1, payload)
                    elif ftype == STDERR:
                        _write_all(2, payload)
                    elif ftype == EXIT:
                        return int(payload or b"0")
                    elif ftype == ERROR:
                        raise start_error(payload.decode(errors="replace"))
            elif fd == wake_r:
                os.read(wake_r, 512)
                size = _terminal_size(1, 0)
                if size:
                    client.resize(*size)
            elif fd == 0:
                data = os.read(0, _CHUNK)
                if not data:
                    poller.unregister(0)
                    client.close_stdin()
                    continue
                if keys:  # hold back what may be the start of the detach sequence
                    out = bytearray()
                    for b in data:
                        if b == keys[matched]:
                            matched += 1
                            if matched == len(keys):
                                if out:
                                    client.send_stdin(bytes(out))
                                return None
                            continue
                        out += keys[:matched]
                        matched = 1 if b == keys[0] else 0
                        if not matched:
                            out.append(b)
                    data = bytes(out)
                if data:
                    client.send_stdin(data)


def _lost_connection(client: AttachClient) -> int:
    """The monitor closed without an EXIT frame: trust its state file, if final."""
    state = read_state(client.state_dir) if client.state_dir else None
    if state and state.status == "exited":
        return state.exit_code
    if state and state.status == "failed":
        raise start_error(state.error)
    raise RuntimeFailure("lost the connection to the container monitor")

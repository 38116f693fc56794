"""The per-container monitor (C) and its Python side, on real runc with hand-made bundles."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from conftest import make_busybox_tar

from dockyard.errors import CommandNotExecutable, CommandNotFound, RuntimeFailure
from dockyard.runtime import monitor as mon

RUNC = "/usr/sbin/runc"
REPO_SRC = Path(__file__).resolve().parent.parent / "src"


def wait_for(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


@pytest.fixture(scope="session")
def rootfs_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_tar(tmp_path_factory.mktemp("bb") / "busybox.tar")


class Box:
    """Makes bundles + monitor configs under tmp_path and cleans up whatever ran."""

    def __init__(self, tmp_path: Path, rootfs_tar: Path) -> None:
        self.tmp = tmp_path
        self.runc_root = tmp_path / "runc"
        self.runc_root.mkdir()
        self.rootfs = tmp_path / "rootfs"
        self.rootfs.mkdir()
        with tarfile.open(rootfs_tar) as tar:
            tar.extractall(self.rootfs)
        subprocess.run([RUNC, "spec"], cwd=tmp_path, check=True)
        self.spec = json.loads((tmp_path / "config.json").read_text())
        (tmp_path / "config.json").unlink()
        self.spec["linux"]["namespaces"] = [
            ns for ns in self.spec["linux"]["namespaces"] if ns["type"] != "network"
        ]
        self.ids: list[str] = []
        self.state_dirs: list[Path] = []

    def config(
        self, args: list[str], *, tty: bool = False, state_name: str = "state", **kw: object
    ) -> mon.MonitorConfig:
        cid = f"dytest-{uuid.uuid4().hex[:12]}"
        bundle = self.tmp / f"bundle-{cid}"
        bundle.mkdir()
        spec = json.loads(json.dumps(self.spec))
        spec["root"] = {"path": str(self.rootfs), "readonly": False}
        spec["process"]["args"] = args
        spec["process"]["terminal"] = tty
        resources = kw.pop("resources", None)
        if resources:
            spec["linux"]["resources"] = resources
        (bundle / "config.json").write_text(json.dumps(spec))
        state_dir = self.tmp / f"{state_name}-{cid}"
        self.ids.append(cid)
        self.state_dirs.append(state_dir)
        return mon.MonitorConfig(
            id=cid,
            runtime=RUNC,
            runtime_root=self.runc_root,
            bundle=bundle,
            state_dir=state_dir,
            log_path=state_dir / "json.log",
            tty=tty,
            **kw,  # type: ignore[arg-type]
        )

    def runc(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [RUNC, "--root", str(self.runc_root), *args], capture_output=True, text=True
        )

    def cleanup(self) -> None:
        for state_dir in self.state_dirs:
            if mon.monitor_alive(state_dir):
                os.kill(int((state_dir / "monitor.pid").read_text()), signal.SIGKILL)
        for cid in self.ids:
            self.runc("kill", cid, "KILL")
            self.runc("delete", "--force", cid)


@pytest.fixture
def box(tmp_path: Path, rootfs_tar: Path) -> Iterator[Box]:
    b = Box(tmp_path, rootfs_tar)
    yield b
    b.cleanup()


def wait_exited(cfg: mon.MonitorConfig, timeout: float = 15.0) -> mon.MonitorState:
    def final() -> bool:
        st = mon.read_state(cfg.state_dir)
        return bool(st and st.status in ("exited", "failed"))

    assert wait_for(final, timeout), mon.read_state(cfg.state_dir)
    state = mon.read_state(cfg.state_dir)
    assert state is not None
    assert wait_for(lambda: not mon.monitor_alive(cfg.state_dir))
    return state


def log_entries(cfg: mon.MonitorConfig) -> list[dict[str, str]]:
    assert cfg.log_path is not None
    return [json.loads(line) for line in Path(cfg.log_path).read_text().splitlines()]


def test_binary_is_built_once_and_named_by_source_hash() -> None:
    path = mon.monitor_binary()
    assert os.access(path, os.X_OK)
    assert os.path.basename(path).startswith("dockyard-monitor-")
    assert mon.monitor_binary() == path


def test_concurrent_builds_are_atomic(tmp_path: Path) -> None:
    from concurrent.futures import ThreadPoolExecutor

    from dockyard import cbuild

    target = tmp_path / "dockyard-monitor-test"
    with ThreadPoolExecutor(4) as pool:
        paths = list(pool.map(lambda _: cbuild._build(mon.SOURCE, target, "monitor"), range(4)))
    assert paths == [str(target)] * 4 and os.access(target, os.X_OK)
    assert sorted(p.name for p in tmp_path.iterdir()) == [target.name]  # no temp files left


def test_detached_start_records_exit_code(box: Box) -> None:
    cfg = box.config(["sh", "-c", "sleep 0.2; exit 7"])
    monitor_pid = mon.spawn(cfg)
    state = mon.read_state(cfg.state_dir)
    assert state and state.status == "running" and state.pid > 0
    assert state.monitor_pid == monitor_pid and state.started_at.endswith("Z")
    assert mon.monitor_alive(cfg.state_dir)
    state = wait_exited(cfg)
    assert state.status == "exited" and state.exit_code == 7 and not state.oom_killed
    assert state.finished_at > state.started_at
    assert not (Path(cfg.state_dir) / "attach.sock").exists()
    assert cfg.id not in box.runc("list").stdout  # the monitor ran runc delete


def test_stdout_and_stderr_are_logged_separately(box: Box) -> None:
    script = "echo out; echo err >&2; printf 'tab\\there <&> \\001\\n'; printf 'no newline'"
    cfg = box.config(["sh", "-c", script])
    mon.spawn(cfg)
    wait_exited(cfg)
    entries = log_entries(cfg)
    by_stream = {s: [e["log"] for e in entries if e["stream"] == s] for s in ("stdout", "stderr")}
    assert by_stream == {
        "stdout": ["out\n", "tab\there <&> \x01\n", "no newline"],
        "stderr": ["err\n"],
    }
    raw = Path(cfg.log_path or "").read_text()
    assert "\\u0009" in raw and "\\u003c\\u0026\\u003e" in raw and "\\u0001" in raw
    for e in entries:  # RFC3339Nano UTC
        assert e["time"].endswith("Z") and e["time"][10] == "T"


def test_long_lines_are_split_into_16k_partials(box: Box) -> None:
    cfg = box.config(["sh", "-c", "head -c 40000 /dev/zero | tr '\\0' x; echo; printf '\\377\\n'"])
    mon.spawn(cfg)
    wait_exited(cfg)
    logs = [e["log"] for e in log_entries(cfg)]
    assert [len(x) for x in logs] == [16384, 16384, 40000 - 32768 + 1, 2]
    assert logs[3] == "\ufffd\n"


def test_log_rotation(box: Box) -> None:
    from dockyard.containers.logs import read_logs

    cfg = box.config(
        ["sh", "-c", "i=0; while [ $i -lt 300 ]; do echo line$i; i=$((i+1)); done"],
        log_max_size=2000,
        log_max_file=3,
    )
    mon.spawn(cfg)
    wait_exited(cfg)
    log = Path(cfg.log_path or "")
    assert log.exists() and log.with_name("json.log.1").exists()
    assert log.with_name("json.log.2").exists() and not log.with_name("json.log.3").exists()
    for p in (log.with_name("json.log.1"), log.with_name("json.log.2")):
        assert 2000 <= p.stat().st_size < 2200
    r, w = os.pipe()
    read_logs(log, stdout=w, stderr=w)
    os.close(w)
    with os.fdopen(r) as f:
        lines = f.read().split()
    first = int(lines[0][4:])
    assert lines == [f"line{i}" for i in range(first, 300)]


def test_restart_on_failure_gives_up_after_max(box: Box) -> None:
    cfg = box.config(["sh", "-c", "echo run; exit 3"], restart="on-failure", restart_max=2)
    mon.spawn(cfg)
    state = wait_exited(cfg)
    assert state.status == "exited" and state.exit_code == 3 and state.restart_count == 2
    assert [e["log"] for e in log_entries(cfg)] == ["run\n"] * 3


def test_restart_always_is_stopped_by_stop_requested(box: Box) -> None:
    cfg = box.config(
        ["sh", "-c", "trap 'exit 5' TERM; sleep 0.3; while true; do sleep 0.05; done"],
        restart="always",
    )
    mon.spawn(cfg)
    first = mon.read_state(cfg.state_dir)
    assert first
    box.runc("kill", cfg.id, "KILL")  # no stop requested: restarted

    def restarted() -> bool:
        st = mon.read_state(cfg.state_dir)
        return bool(st and st.status == "running" and st.restart_count == 1)

    assert wait_for(restarted)
    state = mon.read_state(cfg.state_dir)
    assert state and state.pid != first.pid and state.started_at > first.started_at
    mon.request_stop(cfg.state_dir)
    time.sleep(0.35)  # past the trap being set
    box.runc("kill", cfg.id, "TERM")
    state = wait_exited(cfg)
    assert state.exit_code == 5 and state.restart_count == 1


def test_sigterm_cancels_a_pending_restart(box: Box) -> None:
    cfg = box.config(["sh", "-c", "sleep 11; exit 1"], restart="always")
    pid = mon.spawn(cfg)
    box.runc("kill", cfg.id, "KILL")
    assert wait_for(
        lambda: (
            (mon.read_state(cfg.state_dir) or mon.MonitorState()).status
            in ("restarting", "running")
        )
    )
    st = mon.read_state(cfg.state_dir)
    if st and st.status == "running":  # the 100 ms back-off already passed: once more
        box.runc("kill", cfg.id, "KILL")
    assert wait_for(
        lambda: (mon.read_state(cfg.state_dir) or mon.MonitorState()).status == "restarting", 5
    )
    os.kill(pid, signal.SIGTERM)
    state = wait_exited(cfg)
    assert state.status == "exited" and state.exit_code == 137


def test_healthcheck_healthy(box: Box) -> None:
    cfg = box.config(
        ["sleep", "30"], health_cmd=["sh", "-c", "echo ok"], health_interval=100_000_000
    )
    mon.spawn(cfg)
    assert (mon.read_health(cfg.state_dir) or {}).get("Status") in ("starting", "healthy")
    assert wait_for(lambda: (mon.read_health(cfg.state_dir) or {}).get("Status") == "healthy")
    health = mon.read_health(cfg.state_dir)
    assert health and health["FailingStreak"] == 0
    entry = health["Log"][-1]
    assert entry["ExitCode"] == 0 and entry["Output"] == "ok\n" and entry["End"] >= entry["Start"]
    assert wait_for(lambda: len((mon.read_health(cfg.state_dir) or {})["Log"]) == 5)
    time.sleep(0.3)
    assert len((mon.read_health(cfg.state_dir) or {})["Log"]) == 5  # only the last 5 kept


def test_healthcheck_unhealthy_after_retries(box: Box) -> None:
    cfg = box.config(
        ["sleep", "30"],
        health_cmd=["sh", "-c", "echo bad >&2; exit 1"],
        health_interval=100_000_000,
        health_retries=2,
    )
    mon.spawn(cfg)

    def status() -> str:
        return str((mon.read_health(cfg.state_dir) or {}).get("Status"))

    assert wait_for(lambda: status() == "unhealthy")
    health = mon.read_health(cfg.state_dir)
    assert health and health["FailingStreak"] >= 2
    assert health["Log"][0] == {**health["Log"][0], "ExitCode": 1, "Output": "bad\n"}


def test_healthcheck_timeout_and_start_period(box: Box) -> None:
    cfg = box.config(
        ["sleep", "30"],
        health_cmd=["sleep", "5"],
        health_interval=100_000_000,
        health_timeout=300_000_000,
        health_retries=1,
        health_start_period=60_000_000_000,
    )
    mon.spawn(cfg)
    assert wait_for(lambda: (mon.read_health(cfg.state_dir) or {}).get("Log"), 5)
    health = mon.read_health(cfg.state_dir)
    assert health and health["Status"] == "starting" and health["FailingStreak"] == 0
    assert health["Log"][0]["ExitCode"] == -1
    assert health["Log"][0]["Output"] == "Health check exceeded timeout (300ms)"
    ps = box.runc("ps", cfg.id).stdout
    assert "sleep 5" not in ps  # the timed-out probe was killed


def test_attach_start_and_stdin(box: Box) -> None:
    cfg = box.config(["cat"], stdin=True, wait_attach=True)
    mon.spawn(cfg)
    st = mon.read_state(cfg.state_dir)
    assert st and st.status == "created"
    with mon.AttachClient.connect(cfg.state_dir) as client:
        client.start()
        client.send_stdin(b"hello\n")
        client.send_stdin(b"x" * 200_000)
        client.close_stdin()
        frames = list(client.frames())
    out = b"".join(p for t, p in frames if t == mon.STDOUT)
    assert out == b"hello\n" + b"x" * 200_000
    assert frames[-1] == (mon.EXIT, b"0")
    assert wait_exited(cfg).exit_code == 0


def test_clients_attach_any_time_and_several_at_once(box: Box) -> None:
    cfg = box.config(
        ["sh", "-c", "read a; echo got $a; read b; echo got $b >&2; exit 4"], stdin=True
    )
    mon.spawn(cfg)
    c1 = mon.AttachClient.connect(cfg.state_dir)
    c1.send_stdin(b"one\n")
    c1.sock.settimeout(10)
    assert c1.feed(c1.sock.recv(100)) == [(mon.STDOUT, b"got one\n")]
    c2 = mon.AttachClient.connect(cfg.state_dir)
    c2.send_stdin(b"two\n")
    f1, f2 = list(c1.frames()), list(c2.frames())
    assert f1 == f2 == [(mon.STDERR, b"got two\n"), (mon.EXIT, b"4")]


def test_tty_mode_and_resize(box: Box, tmp_path: Path) -> None:
    script = 'tty; stty size; read line; stty size; echo "<$line>"'
    # a state dir path longer than sun_path (108 bytes) for both sockets
    cfg = box.config(
        ["sh", "-c", script], tty=True, stdin=True, wait_attach=True, state_name="s" * 90
    )
    assert len(str(cfg.state_dir)) > 110
    mon.spawn(cfg)
    with mon.AttachClient.connect(cfg.state_dir) as client:
        client.resize(33, 101)
        client.start()
        out = b""
        frames = client.frames()
        while out.count(b"\n") < 2:
            t, p = next(frames)
            assert t == mon.STDOUT
            out += p
        client.resize(40, 120)
        client.send_stdin(b"hi\r")
        for t, p in frames:
            out += p if t == mon.STDOUT else b""
            if t == mon.EXIT:
                assert p == b"0"
    assert out.startswith(b"/dev/pts/0\r\n33 101\r\n")
    assert out.endswith(b"40 120\r\n<hi>\r\n")
    assert all(e["stream"] == "stdout" for e in log_entries(cfg))


def run_session(
    cfg: mon.MonitorConfig, data: bytes, **kw: object
) -> subprocess.CompletedProcess[bytes]:
    code = (
        "import sys; from dockyard.runtime.monitor import attach_session\n"
        f"rc = attach_session({str(cfg.state_dir)!r}, **{kw!r})\n"
        "sys.exit(100 if rc is None else rc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_SRC)}
    return subprocess.run(
        [sys.executable, "-c", code], input=data, capture_output=True, env=env, timeout=30
    )


def test_attach_session_with_pipes(box: Box) -> None:
    cfg = box.config(["sh", "-c", "cat; echo err >&2; exit 3"], stdin=True, wait_attach=True)
    mon.spawn(cfg)
    proc = run_session(cfg, b"piped input\n", stdin=True, tty=False, start=True)
    assert (proc.returncode, proc.stdout, proc.stderr) == (3, b"piped input\n", b"err\n")
    # attaching after the end reports the recorded exit code
    wait_exited(cfg)
    proc = run_session(cfg, b"", stdin=False, tty=False, start=False)
    assert proc.returncode == 3


def test_attach_session_detach_keys_in_tty_mode(box: Box) -> None:
    cfg = box.config(["cat"], tty=True, stdin=True, wait_attach=True)
    mon.spawn(cfg)
    proc = run_session(cfg, b"abc\x10x\x10\x11ignored", stdin=True, tty=True, start=True)
    assert proc.returncode == 100  # detached: None
    time.sleep(0.5)  # the container keeps running
    st = mon.read_state(cfg.state_dir)
    assert st and st.status == "running"
    box.runc("kill", cfg.id, "KILL")
    wait_exited(cfg)
    assert "".join(e["log"] for e in log_entries(cfg)) == "abc^Px"  # the pty's echo


def test_attach_session_start_error(box: Box) -> None:
    cfg = box.config(["nonexist"], wait_attach=True)
    mon.spawn(cfg)
    code = (
        "from dockyard.runtime.monitor import attach_session\n"
        "from dockyard.errors import DockyardError\n"
        "try:\n"
        f"    attach_session({str(cfg.state_dir)!r}, stdin=False, tty=False, start=True)\n"
        "except DockyardError as e:\n"
        "    print(type(e).__name__, e.exit_code, e)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO_SRC)}
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=30
    ).stdout
    assert out.startswith("CommandNotFound 127 failed to create task for container: ")
    assert 'exec: "nonexist": executable file not found in $PATH' in out
    assert wait_exited(cfg).status == "failed"


def test_exit_command_runs_after_final_state(box: Box, tmp_path: Path) -> None:
    marker = tmp_path / "exit-command-ran"
    cfg = box.config(["sh", "-c", "exit 2"])
    cfg.exit_command = ["/bin/sh", "-c", f"cat {cfg.state_dir}/state > {marker}", "x"]
    mon.spawn(cfg)
    assert wait_for(lambda: marker.exists() and marker.stat().st_size > 0)
    text = marker.read_text()
    assert "status=exited\n" in text and "exit_code=2\n" in text


def test_command_not_found_maps_to_127(box: Box) -> None:
    cfg = box.config(["nonexist"])
    with pytest.raises(CommandNotFound) as info:
        mon.spawn(cfg)
    assert info.value.exit_code == 127
    assert str(info.value) == (
        "failed to create task for container: runc run failed: unable to start container "
        'process: exec: "nonexist": executable file not found in $PATH'
    )
    state = wait_exited(cfg)
    assert state.status == "failed" and "executable file not found" in state.error
    assert cfg.id not in box.runc("list").stdout


def test_command_not_executable_maps_to_126(box: Box) -> None:
    with pytest.raises(CommandNotExecutable) as info:
        mon.spawn(box.config(["/etc/passwd"]))
    assert info.value.exit_code == 126 and "permission denied" in str(info.value)


def test_start_error_mapping() -> None:
    assert isinstance(
        mon.start_error('exec: "/x": stat /x: no such file or directory'), CommandNotFound
    )
    assert isinstance(mon.start_error('exec: "/bin": is a directory'), CommandNotExecutable)
    assert isinstance(mon.start_error("exec /a: exec format error"), CommandNotExecutable)
    err = mon.start_error("error mounting cgroup: device or resource busy")
    assert isinstance(err, RuntimeFailure) and err.exit_code == 125


def test_bad_invocation_is_reported(box: Box) -> None:
    cfg = box.config(["true"], restart="sometimes")
    with pytest.raises(RuntimeFailure, match="--restart must be"):
        mon.spawn(cfg)


def test_oom_killed_is_recorded(box: Box) -> None:
    limit = 16 * 1024 * 1024
    cfg = box.config(
        ["sh", "-c", "x=$(head -c 200000000 /dev/zero | tr '\\0' a); echo survived"],
        resources={"memory": {"limit": limit, "swap": limit}},
    )
    mon.spawn(cfg)
    state = wait_exited(cfg, 30)
    assert state.oom_killed and state.exit_code != 0


def test_idle_monitor_memory(box: Box) -> None:
    """The engine's budget is 1 MB PSS per idle container; the monitor is all we keep."""
    cfg = box.config(["sleep", "1000"], stdin=True, log_max_size=10 << 20, log_max_file=3)
    pid = mon.spawn(cfg)
    time.sleep(0.3)
    rollup = Path(f"/proc/{pid}/smaps_rollup").read_text()
    pss_kb = int(next(line.split()[1] for line in rollup.splitlines() if line.startswith("Pss:")))
    print(f"idle monitor PSS: {pss_kb} kB")
    assert pss_kb < 1024


def test_slow_client_gets_everything_by_back_pressure(box: Box) -> None:
    size = 6 * 1024 * 1024  # well past the monitor's 1 MiB per-client backlog
    cfg = box.config(
        ["sh", "-c", f"head -c {size} /dev/zero | tr '\\0' x; echo; echo done"], wait_attach=True
    )
    mon.spawn(cfg)
    with mon.AttachClient.connect(cfg.state_dir) as client:
        client.start()
        time.sleep(1.0)  # not reading: the container must wait, not lose output
        st = mon.read_state(cfg.state_dir)
        assert st and st.status == "running"
        frames = list(client.frames())
    out = b"".join(p for t, p in frames if t == mon.STDOUT)
    assert out == b"x" * size + b"\ndone\n" and frames[-1] == (mon.EXIT, b"0")
    logged = "".join(e["log"] for e in log_entries(cfg))
    assert len(logged) == size + 6


def test_container_gets_no_fds_and_default_signals(box: Box) -> None:
    cfg = box.config(["ls", "/proc/self/fd"])
    mon.spawn(cfg)
    wait_exited(cfg)
    assert [e["log"] for e in log_entries(cfg)] == ["0\n", "1\n", "2\n", "3\n"]
    cfg = box.config(["grep", "-E", "^Sig(Blk|Ign)", "/proc/self/status"])
    mon.spawn(cfg)
    wait_exited(cfg)
    out = "".join(e["log"] for e in log_entries(cfg)).split()
    assert out == ["SigBlk:", "0000000000000000", "SigIgn:", "0000000000000000"]

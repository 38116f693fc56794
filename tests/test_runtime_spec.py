"""OCI config generation (Docker's defaults) checked inside real runc containers.

Each container test writes a bundle by hand from the busybox rootfs, runs it
with ``runc --root <tmp> run`` and looks at /proc from the inside. The merge
rules of image config and spec are plain unit tests.
"""

from __future__ import annotations

import json
import os
import resource
import shutil
import subprocess
import tarfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from conftest import make_busybox_tar

from dockyard.containers.spec import ContainerSpec, Resources, Ulimit
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.runtime import seccomp
from dockyard.runtime import spec as oci
from dockyard.runtime.process import resolve_process
from dockyard.runtime.runc import Runc, clean_error, parse_signal

RUNC = shutil.which("runc") or "/usr/sbin/runc"
DOCKER_DEFAULT_CAPS = "00000000a80425fb"

needs_runc = pytest.mark.skipif(
    os.geteuid() != 0 or not os.access(RUNC, os.X_OK), reason="needs root and runc"
)


@pytest.fixture(scope="session")
def rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("rtspec")
    tar_path = make_busybox_tar(base / "busybox.tar")
    root = base / "rootfs"
    root.mkdir()
    with tarfile.open(tar_path) as tar:
        if hasattr(tarfile, "fully_trusted_filter"):
            tar.extractall(root, filter="fully_trusted")
        else:
            tar.extractall(root)
    return root


@pytest.fixture
def state_root(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "runc"
    root.mkdir()
    yield root
    for cid in os.listdir(root):
        subprocess.run([RUNC, "--root", str(root), "kill", cid, "KILL"], capture_output=True)
        subprocess.run([RUNC, "--root", str(root), "delete", "--force", cid], capture_output=True)
    # runc leaves the (empty) parent cgroup of our cgroupsPath behind.
    for parent in Path("/sys/fs/cgroup").glob("*/dockyard-test"):
        try:
            parent.rmdir()
        except OSError:
            pass  # still in use by a concurrent test
    try:
        Path("/sys/fs/cgroup/dockyard-test").rmdir()
    except OSError:
        pass


def _config(
    rootfs: Path, cid: str, spec: ContainerSpec, image: dict[str, Any] | None = None
) -> dict[str, Any]:
    image = image or {}
    process = resolve_process(spec, image, rootfs, hostname=spec.hostname or cid[:12])
    return oci.generate(
        spec,
        image,
        container_id=cid,
        rootfs=rootfs,
        process=process,
        hostname=spec.hostname or cid[:12],
        cgroups_path=f"/dockyard-test/{cid}",
    )


Run = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def run(rootfs: Path, state_root: Path, tmp_path: Path) -> Run:
    """Run ``sh -c SCRIPT`` in a fresh container built from ``spec_kwargs``."""

    def go(script: str, **spec_kwargs: Any) -> subprocess.CompletedProcess[str]:
        cid = "t" + uuid.uuid4().hex[:12]
        spec = ContainerSpec(image="busybox", cmd=["sh", "-c", script], **spec_kwargs)
        bundle = tmp_path / cid
        oci.write_bundle(bundle, _config(rootfs, cid, spec))
        try:
            return subprocess.run(
                [RUNC, "--root", str(state_root), "run", "--bundle", str(bundle), cid],
                capture_output=True,
                text=True,
                timeout=60,
                stdin=subprocess.DEVNULL,
            )
        finally:
            subprocess.run(
                [RUNC, "--root", str(state_root), "delete", "--force", cid], capture_output=True
            )

    return go


def _status(output: str, field: str) -> str:
    for line in output.splitlines():
        if line.startswith(field + ":"):
            return line.split()[1]
    raise AssertionError(f"{field} not in {output!r}")


# -- in-container checks ------------------------------------------------------


@needs_runc
def test_default_capabilities_and_seccomp(run: Run) -> None:
    out = run("cat /proc/self/status; ip link show lo >/dev/null && echo SOCKET-OK")
    assert out.returncode == 0, out.stderr
    assert "SOCKET-OK" in out.stdout  # socket(AF_NETLINK) is allowed
    assert _status(out.stdout, "CapEff") == DOCKER_DEFAULT_CAPS
    assert _status(out.stdout, "CapBnd") == DOCKER_DEFAULT_CAPS
    assert _status(out.stdout, "CapPrm") == DOCKER_DEFAULT_CAPS
    assert _status(out.stdout, "CapInh") == "0000000000000000"
    assert _status(out.stdout, "Seccomp") == "2"
    assert _status(out.stdout, "NoNewPrivs") == "0"


@needs_runc
def test_cap_drop_and_add(run: Run) -> None:
    out = run(
        "grep -E 'CapEff|CapBnd' /proc/self/status",
        cap_drop=["chown", "CAP_NET_RAW"],
        cap_add=["net_admin"],
    )
    assert out.returncode == 0, out.stderr
    expected = (int(DOCKER_DEFAULT_CAPS, 16) & ~(1 << 0) & ~(1 << 13)) | (1 << 12)
    assert int(_status(out.stdout, "CapEff"), 16) == expected
    assert int(_status(out.stdout, "CapBnd"), 16) == expected
    out = run("grep CapEff /proc/self/status", cap_drop=["ALL"], cap_add=["kill"])
    assert int(_status(out.stdout, "CapEff"), 16) == 1 << 5


def test_unknown_capability_is_refused() -> None:
    with pytest.raises(InvalidArgument, match='unknown capability: "CAP_BOGUS"'):
        oci.capabilities(["bogus"], [], False)
    assert oci.capabilities(["ALL"], ["sys_admin"], False) == [
        c for c in oci.host_bounding_set() if c != "CAP_SYS_ADMIN"
    ]


@needs_runc
def test_masked_and_readonly_paths(run: Run) -> None:
    out = run("cat /proc/self/mountinfo; echo x > /proc/sys/kernel/domainname && echo WROTE")
    assert "WROTE" not in out.stdout
    assert "Read-only file system" in out.stderr
    points = {line.split()[4] for line in out.stdout.splitlines() if len(line.split()) > 4}
    for path in oci.MASKED_PATHS + oci.READONLY_PATHS:
        if os.path.exists(path):  # e.g. /proc/kcore only exists with CONFIG_PROC_KCORE
            assert path in points, path
    out = run("wc -c < /proc/keys; wc -c < /proc/timer_list")
    assert out.stdout.split() == ["0", "0"]


@needs_runc
def test_no_new_privileges(run: Run) -> None:
    for opt in ("no-new-privileges", "no-new-privileges=true", "no-new-privileges:true"):
        out = run("grep NoNewPrivs /proc/self/status", security_opt=[opt])
        assert _status(out.stdout, "NoNewPrivs") == "1", opt
    out = run("grep NoNewPrivs /proc/self/status", security_opt=["no-new-privileges=false"])
    assert _status(out.stdout, "NoNewPrivs") == "0"
    with pytest.raises(InvalidArgument, match="invalid --security-opt 2"):
        oci.parse_security_opts(["no-new-privileges=maybe"])
    with pytest.raises(InvalidArgument, match="invalid --security-opt"):
        oci.parse_security_opts(["bogus=1"])


@needs_runc
def test_seccomp_blocks_user_namespaces_unless_unconfined(run: Run, tmp_path: Path) -> None:
    # Creating a user namespace needs no capability: only seccomp stops it.
    out = run("unshare -U true && echo OK")
    assert "OK" not in out.stdout
    assert "Operation not permitted" in out.stderr
    out = run(
        "grep Seccomp: /proc/self/status; unshare -U true && echo OK",
        security_opt=["seccomp=unconfined"],
    )
    assert _status(out.stdout, "Seccomp") == "0"
    assert "OK" in out.stdout
    out = run("unshare -U true && echo OK", cap_add=["SYS_ADMIN"])
    assert "OK" in out.stdout, out.stderr
    # A Docker-format profile file: allow everything except uname.
    profile = {
        "defaultAction": "SCMP_ACT_ALLOW",
        "archMap": [{"architecture": "SCMP_ARCH_X86_64", "subArchitectures": ["SCMP_ARCH_X86"]}],
        "syscalls": [{"names": ["uname"], "action": "SCMP_ACT_ERRNO", "errnoRet": 1}],
    }
    path = tmp_path / "profile.json"
    path.write_text(json.dumps(profile))
    out = run("uname -s; unshare -U true && echo OK", security_opt=[f"seccomp={path}"])
    assert "Linux" not in out.stdout
    assert "OK" in out.stdout


@needs_runc
def test_hostname_and_env(run: Run) -> None:
    out = run("hostname; echo $HOSTNAME $HOME $PATH $FOO", hostname="web1", env=["FOO=bar"])
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[0] == "web1"
    assert lines[1].split() == ["web1", "/root", oci_default_path(), "bar"]


def oci_default_path() -> str:
    from dockyard.runtime.process import DEFAULT_PATH

    return DEFAULT_PATH


@needs_runc
def test_user_resolution(run: Run) -> None:
    out = run("id -u; id -g; id -G; echo $HOME", user="app")
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["1000", "1000", "1000", "10", "/home/app"]
    out = run("id -u; id -g", user="daemon:wheel")
    assert out.stdout.split() == ["1", "10"]
    out = run("id -u; id -g; echo $HOME", user="4242:4343")
    assert out.stdout.split() == ["4242", "4343", "/"]


@needs_runc
def test_ulimit_applied_and_refused_above_host(run: Run) -> None:
    out = run("ulimit -n; ulimit -Hn", ulimits=[Ulimit("nofile", 256, 512)])
    assert out.stdout.split() == ["256", "512"]
    _, host_hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if host_hard == resource.RLIM_INFINITY or oci._has_cap("CAP_SYS_RESOURCE"):
        pytest.skip("this host could grant any nofile limit")
    with pytest.raises(InvalidArgument, match="exceeds this host's hard limit"):
        run("true", ulimits=[Ulimit("nofile", 1024, host_hard + 1)])


@needs_runc
def test_resources_in_cgroups(run: Run) -> None:
    res = Resources(memory=64 << 20, nano_cpus=500_000_000, pids_limit=42, shm_size=8 << 20)
    if os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        script = "cat /sys/fs/cgroup/pids.max /sys/fs/cgroup/memory.max; cat /sys/fs/cgroup/cpu.max"
        expected = ["42", str(64 << 20), "50000", "100000"]
    else:
        script = (
            "cat /sys/fs/cgroup/pids/pids.max /sys/fs/cgroup/memory/memory.limit_in_bytes"
            " /sys/fs/cgroup/cpu/cpu.cfs_quota_us /sys/fs/cgroup/cpu/cpu.cfs_period_us"
        )
        expected = ["42", str(64 << 20), "50000", "100000"]
    out = run(script + "; df -k /dev/shm | tail -1", resources=res)
    assert out.returncode == 0, out.stderr
    words = out.stdout.split()
    assert words[:4] == expected
    assert words[5] == "8192"  # /dev/shm size in KiB


@needs_runc
def test_read_only_root(run: Run) -> None:
    out = run("touch /newfile && echo WROTE; touch /dev/shm/ok && echo SHM", read_only=True)
    assert "WROTE" not in out.stdout
    assert "Read-only file system" in out.stderr
    assert "SHM" in out.stdout


@needs_runc
def test_privileged(run: Run) -> None:
    out = run("cat /proc/self/status; grep ' /sys ' /proc/self/mounts; ls /dev", privileged=True)
    assert out.returncode == 0, out.stderr
    host_bnd = oci._status_mask("CapBnd")
    assert int(_status(out.stdout, "CapEff"), 16) == host_bnd
    assert int(_status(out.stdout, "CapBnd"), 16) == host_bnd
    assert _status(out.stdout, "Seccomp") == "0"
    sys_line = next(line for line in out.stdout.splitlines() if " /sys " in line)
    assert " rw," in sys_line
    assert "null" in out.stdout.split()


@needs_runc
def test_init_runs_tini(run: Run) -> None:
    if not any(os.access(p, os.X_OK) for p in oci.INIT_BINARIES):
        pytest.skip("tini-static not installed (apt-get install tini)")
    out = run("cat /proc/1/cmdline | tr '\\0' ' '; echo; echo $$", init=True)
    assert out.returncode == 0, out.stderr
    first, pid = out.stdout.splitlines()
    assert first.startswith("/sbin/docker-init -- sh -c")
    assert pid != "1"


@needs_runc
def test_runc_driver(rootfs: Path, state_root: Path, tmp_path: Path) -> None:
    runc = Runc(RUNC, state_root)
    cid = "d" + uuid.uuid4().hex[:12]
    spec = ContainerSpec(image="busybox", cmd=["sleep", "300"])
    bundle = tmp_path / "bundle"
    oci.write_bundle(bundle, _config(rootfs, cid, spec))
    assert runc.state(cid) is None
    # The detached container keeps its stdio: give it /dev/null, not our pipes.
    subprocess.run(
        [*runc.base_argv(), "run", "--detach", "--bundle", str(bundle), cid],
        check=True,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        timeout=60,
    )
    state = runc.state(cid)
    assert state is not None and state["status"] == "running"
    assert runc.ps(cid) == [state["pid"]]
    stats = runc.stats(cid)
    assert "pids" in stats and stats["pids"]["current"] >= 1
    runc.pause(cid)
    assert (runc.state(cid) or {})["status"] == "paused"
    runc.resume(cid)
    argv = runc.exec_argv(
        cid, ["sh", "-c", "id -u; echo $X; pwd"], env=["X=1"], cwd="/tmp", user="1000:1000"
    )
    out = subprocess.run(argv, capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL)
    assert out.stdout.split() == ["1000", "1", "/tmp"], out.stderr
    assert runc.features().get("ociVersionMax")
    runc.kill(cid, "SIGTERM")  # PID 1 without a handler ignores it, as under Docker
    time.sleep(0.2)
    assert (runc.state(cid) or {})["status"] == "running"
    runc.kill(cid, "9", all=True)
    deadline = time.monotonic() + 10
    while (runc.state(cid) or {}).get("status") != "stopped" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert (runc.state(cid) or {})["status"] == "stopped"
    with pytest.raises(Conflict, match="is not running"):
        runc.kill(cid, "KILL")
    runc.delete(cid)
    assert runc.state(cid) is None
    runc.delete(cid)  # already gone: no error
    with pytest.raises(NotFound):
        runc.pause(cid)


# -- unit tests -----------------------------------------------------------------


def test_clean_error() -> None:
    raw = 'time="2024-01-01T00:00:00Z" level=error msg="container \\"x\\" does not exist"\n'
    assert clean_error(raw) == 'container "x" does not exist'
    assert clean_error("crun: container `x` is not running\n") == "container `x` is not running"


def test_parse_signal() -> None:
    assert parse_signal("SIGTERM") == 15
    assert parse_signal("TERM") == 15
    assert parse_signal("sigkill") == 9
    assert parse_signal("15") == 15
    assert parse_signal(9) == 9
    assert parse_signal("RTMIN+1") == 35
    assert parse_signal("SIGRTMAX") == 64
    for bad in ("0", "SIGFOO", "", "65", "-1"):
        with pytest.raises(InvalidArgument, match="Invalid signal"):
            parse_signal(bad)


def _merge(rootfs: Path, image: dict[str, Any], **kw: Any) -> list[str]:
    return resolve_process(ContainerSpec(image="x", **kw), {"config": image}, rootfs).args


def test_entrypoint_and_cmd_merge(rootfs: Path) -> None:
    image = {"Entrypoint": ["/entry"], "Cmd": ["serve"]}
    assert _merge(rootfs, image) == ["/entry", "serve"]
    assert _merge(rootfs, image, cmd=["debug"]) == ["/entry", "debug"]
    assert _merge(rootfs, image, entrypoint=["sh"]) == ["sh"]  # image Cmd dropped
    assert _merge(rootfs, image, entrypoint=["sh"], cmd=["-c", "x"]) == ["sh", "-c", "x"]
    assert _merge(rootfs, image, entrypoint=[], cmd=["ls"]) == ["ls"]
    with pytest.raises(DockyardError, match="no command specified"):
        _merge(rootfs, image, entrypoint=[])
    assert _merge(rootfs, {"Cmd": ["sh"]}) == ["sh"]
    with pytest.raises(DockyardError, match="no command specified"):
        _merge(rootfs, {})


def test_env_merge(rootfs: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FROM_HOST", "h")
    monkeypatch.delenv("NOT_SET_ANYWHERE", raising=False)
    image = {"Env": ["PATH=/img/bin", "A=1", "B=2", "NOT_SET_ANYWHERE=img"], "Cmd": ["sh"]}
    spec = ContainerSpec(
        image="x", env=["B=3", "C=4", "FROM_HOST", "NOT_SET_ANYWHERE"], tty=True, user="app"
    )
    env = resolve_process(spec, {"config": image}, rootfs, hostname="h1").env
    assert env == [
        "PATH=/img/bin",
        "HOSTNAME=h1",
        "TERM=xterm",
        "A=1",
        "B=3",
        "C=4",
        "FROM_HOST=h",
        "HOME=/home/app",
    ]
    env = resolve_process(ContainerSpec(image="x", cmd=["sh"]), {}, rootfs).env
    assert env[0] == f"PATH={oci_default_path()}"
    assert "HOME=/root" in env and not any(e.startswith("TERM=") for e in env)
    env = resolve_process(ContainerSpec(image="x", cmd=["sh"], env=["HOME=/h"]), {}, rootfs).env
    assert [e for e in env if e.startswith("HOME=")] == ["HOME=/h"]


def test_working_dir_and_user(rootfs: Path) -> None:
    image = {"WorkingDir": "/srv", "User": "daemon", "Cmd": ["sh"]}
    proc = resolve_process(ContainerSpec(image="x"), {"config": image}, rootfs)
    assert (proc.cwd, proc.uid, proc.gid, proc.user) == ("/srv", 1, 1, "daemon")
    proc = resolve_process(
        ContainerSpec(image="x", working_dir="/tmp", user="root"), {"config": image}, rootfs
    )
    assert (proc.cwd, proc.uid) == ("/tmp", 0)
    proc = resolve_process(ContainerSpec(image="x", cmd=["sh"]), {}, rootfs)
    assert (proc.cwd, proc.uid, proc.gid, proc.additional_gids) == ("/", 0, 0, [])
    with pytest.raises(InvalidArgument, match="absolute path"):
        resolve_process(ContainerSpec(image="x", cmd=["sh"], working_dir="rel"), {}, rootfs)
    with pytest.raises(
        DockyardError, match="unable to find user nosuch: no matching entries in passwd file"
    ) as err:
        resolve_process(ContainerSpec(image="x", cmd=["sh"], user="nosuch"), {}, rootfs)
    assert err.value.exit_code == 125
    with pytest.raises(DockyardError, match="unable to find group nogrp"):
        resolve_process(ContainerSpec(image="x", cmd=["sh"], user="app:nogrp"), {}, rootfs)


def test_passwd_symlink_stays_in_rootfs(tmp_path: Path) -> None:
    root = tmp_path / "root"
    (root / "etc").mkdir(parents=True)
    (root / "real").write_text("evil:x:4000:4000::/e:/bin/sh\n")
    # Absolute and ../ links must resolve inside the rootfs, not on the host.
    os.symlink("/../../../../etc/passwd", root / "etc" / "passwd")
    with pytest.raises(DockyardError, match="unable to find user root"):
        resolve_process(ContainerSpec(image="x", cmd=["sh"], user="root"), {}, root)
    os.unlink(root / "etc" / "passwd")
    os.symlink("../../../real", root / "etc" / "passwd")
    proc = resolve_process(ContainerSpec(image="x", cmd=["sh"], user="evil"), {}, root)
    assert proc.uid == 4000


def test_config_shape(rootfs: Path) -> None:
    spec = ContainerSpec(
        image="x", cmd=["sh"], tty=True, annotations={"a": "b"}, domainname="example.org"
    )
    cfg = _config(rootfs, "c1", spec)
    assert cfg["ociVersion"] == "1.0.2"
    assert cfg["process"]["terminal"] is True
    assert cfg["process"]["oomScoreAdj"] == 0
    assert cfg["annotations"] == {"a": "b"}
    assert cfg["domainname"] == "example.org"
    types = [ns["type"] for ns in cfg["linux"]["namespaces"]]
    assert {"pid", "ipc", "uts", "mount", "network"} <= set(types)
    if not os.path.exists("/sys/fs/cgroup/cgroup.controllers"):
        assert "cgroup" not in types
    dests = [m["destination"] for m in cfg["mounts"]]
    assert dests[:7] == [
        "/proc",
        "/dev",
        "/dev/pts",
        "/sys",
        "/sys/fs/cgroup",
        "/dev/mqueue",
        "/dev/shm",
    ]
    host = _config(rootfs, "c2", ContainerSpec(image="x", cmd=["sh"], network_mode="host"))
    assert "network" not in [ns["type"] for ns in host["linux"]["namespaces"]]
    assert "sysctl" not in host["linux"]
    joined = oci.generate(
        spec,
        {},
        container_id="c3",
        rootfs=rootfs,
        process=resolve_process(spec, {}, rootfs),
        hostname="h",
        netns_path="/run/netns/x",
        extra_mounts=[
            {"destination": "/dev/shm", "type": "bind", "source": "/tmp", "options": ["rbind"]}
        ],
    )
    assert {"type": "network", "path": "/run/netns/x"} in joined["linux"]["namespaces"]
    assert [m["type"] for m in joined["mounts"] if m["destination"] == "/dev/shm"] == ["bind"]
    assert joined["linux"]["cgroupsPath"] == "/dockyard/c3"


def test_resource_validation() -> None:
    with pytest.raises(InvalidArgument, match="Minimum memory limit"):
        oci.linux_resources(Resources(memory=1024), False)
    with pytest.raises(InvalidArgument, match="Memory limit when using Memoryswap"):
        oci.linux_resources(Resources(memory_swap=1 << 30), False)
    with pytest.raises(InvalidArgument, match="larger than memory limit"):
        oci.linux_resources(Resources(memory=1 << 30, memory_swap=1 << 20), False)
    with pytest.raises(InvalidArgument, match="Range of CPUs"):
        oci.linux_resources(Resources(nano_cpus=10**12), False)
    res = oci.linux_resources(Resources(memory=1 << 30, cpu_shares=512, pids_limit=7), False)
    assert res["memory"]["limit"] == 1 << 30
    if oci.host_supports_swap_limit():
        assert res["memory"]["swap"] == 2 << 30
    assert res["cpu"] == {"shares": 512}
    assert res["pids"] == {"limit": 7}


def test_default_seccomp_profile_rules() -> None:
    def allowed(profile: dict[str, Any], name: str) -> list[dict[str, Any]]:
        return [r for r in profile["syscalls"] if name in r["names"]]

    default = seccomp.default_profile(oci.DEFAULT_CAPABILITIES)
    assert default["defaultAction"] == "SCMP_ACT_ERRNO"
    if os.uname().machine == "x86_64":
        assert default["architectures"] == ["SCMP_ARCH_X86_64", "SCMP_ARCH_X86", "SCMP_ARCH_X32"]
        assert allowed(default, "arch_prctl")
    assert allowed(default, "read") and allowed(default, "chroot")
    assert not allowed(default, "mount") and not allowed(default, "keyctl")
    (clone,) = allowed(default, "clone")
    assert clone["args"][0]["op"] == "SCMP_CMP_MASKED_EQ"
    (clone3,) = allowed(default, "clone3")
    assert clone3["action"] == "SCMP_ACT_ERRNO" and clone3["errnoRet"] == 38
    assert sorted(r["args"][0]["value"] for r in allowed(default, "personality")) == [
        0,
        8,
        0x20000,
        0x20008,
        0xFFFFFFFF,
    ]
    admin = seccomp.default_profile([*oci.DEFAULT_CAPABILITIES, "CAP_SYS_ADMIN", "CAP_SYS_PTRACE"])
    assert allowed(admin, "mount") and allowed(admin, "setns") and allowed(admin, "ptrace")
    assert [r.get("args") for r in allowed(admin, "clone")] == [None]
    assert all(r["action"] == "SCMP_ACT_ALLOW" for r in allowed(admin, "clone3"))
    assert seccomp.seccomp_section(None, oci.DEFAULT_CAPABILITIES, privileged=True) is None
    assert seccomp.seccomp_section("unconfined", [], privileged=False) is None
    with pytest.raises(InvalidArgument, match="opening seccomp profile"):
        seccomp.seccomp_section("/nonexistent/profile.json", [], privileged=False)


def test_normalize_security_opts_inlines_profile(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"defaultAction": "SCMP_ACT_ALLOW"}')
    opts = oci.normalize_security_opts([f"seccomp={path}", "no-new-privileges"])
    assert opts == ['seccomp={"defaultAction": "SCMP_ACT_ALLOW"}', "no-new-privileges"]
    section = seccomp.seccomp_section(oci.parse_security_opts(opts).seccomp, [], privileged=False)
    assert section == {"defaultAction": "SCMP_ACT_ALLOW", "syscalls": []}


def test_generation_is_cheap(rootfs: Path) -> None:
    spec = ContainerSpec(image="x", cmd=["sh"], user="app", env=["A=1"])
    start = time.perf_counter()
    for _ in range(50):
        _config(rootfs, "perf", spec)
    assert (time.perf_counter() - start) / 50 < 0.01

"""`dockyard cp` through the CLI: both directions, volumes, bind mounts and tmpfs included."""

from __future__ import annotations

import io
import os
import tarfile
import time
from pathlib import Path

from conftest import Runner


def _wait_for_file(dy: Runner, name: str, path: str) -> None:
    deadline = time.monotonic() + 10
    while dy("exec", name, "test", "-e", path).returncode != 0:
        assert time.monotonic() < deadline, f"{path} never appeared in {name}"
        time.sleep(0.05)


def _mounts() -> str:
    with open("/proc/self/mountinfo") as f:
        return f.read()


def test_cp_reaches_volumes_binds_and_tmpfs_of_a_running_container(
    dy: Runner, busybox_image: str, tmp_path: Path
) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    dy(
        "run", "-d", "--name", "live", "-v", "cpdata:/data", "-v", f"{bind}:/bind",
        "--tmpfs", "/scratch", busybox_image,
        "sh", "-c", "echo vol > /data/v; echo tmp > /scratch/t; touch /ready; sleep 100",
        check=True,
    )  # fmt: skip
    _wait_for_file(dy, "live", "/ready")
    out = tmp_path / "v"
    dy("cp", "live:/data/v", str(out), check=True)
    assert out.read_text() == "vol\n"
    tar = dy("cp", "live:/scratch/t", "-", check=True)
    assert "tmp\n" in tar.stdout  # a tar stream holding the tmpfs file

    src = tmp_path / "in.txt"
    src.write_text("in\n")
    dy("cp", str(src), "live:/data/in.txt", check=True)
    dy("cp", str(src), "live:/bind/", check=True)
    dy("cp", str(src), "live:/scratch/", check=True)
    assert dy("exec", "live", "cat", "/data/in.txt", "/scratch/in.txt").stdout == "in\nin\n"
    assert (bind / "in.txt").read_text() == "in\n"
    # the container was paused for the copy and runs again afterwards
    assert dy("inspect", "-f", "{{.State.Status}}", "live").stdout == "running\n"


def test_cp_into_a_running_container_stays_inside_it(
    dy: Runner, busybox_image: str, tmp_path: Path
) -> None:
    dy("run", "-d", "--name", "trap", busybox_image, "sleep", "100", check=True)
    dy("exec", "trap", "ln", "-s", "/etc", "/escape", check=True)
    dy("exec", "trap", "ln", "-s", "../../../../..", "/up", check=True)
    name = f"dockyard-cp-{os.getpid()}"
    src = tmp_path / name
    src.write_text("x")
    dy("cp", str(src), "trap:/escape/", check=True)
    dy("cp", str(src), "trap:/up/tmp/", check=True)
    assert not Path("/etc", name).exists() and not Path("/tmp", name).exists()
    assert dy("exec", "trap", "ls", f"/etc/{name}", f"/tmp/{name}").returncode == 0


def test_cp_reaches_volumes_and_binds_of_a_stopped_container(
    dy: Runner, busybox_image: str, tmp_path: Path
) -> None:
    bind = tmp_path / "bind"
    bind.mkdir()
    dy(
        "run", "--name", "done", "-v", "cpkept:/data", "-v", f"{bind}:/bind", busybox_image,
        "sh", "-c", "echo kept > /data/k",
        check=True,
    )  # fmt: skip
    before = _mounts()
    out = tmp_path / "k"
    dy("cp", "done:/data/k", str(out), check=True)
    assert out.read_text() == "kept\n"
    src = tmp_path / "later.txt"
    src.write_text("later\n")
    dy("cp", str(src), "done:/data/", check=True)
    dy("cp", str(src), "done:/bind/", check=True)
    assert (bind / "later.txt").read_text() == "later\n"
    listing = dy("cp", "done:/data/.", "-", check=True)
    with tarfile.open(fileobj=io.BytesIO(listing.stdout.encode("latin-1"))) as tar:
        assert {"k", "later.txt"} <= set(tar.getnames())
    assert _mounts() == before  # the helper's mounts went with its namespace
    dy("start", "-a", "done", check=True)
    check = dy("run", "--rm", "-v", "cpkept:/data", busybox_image, "cat", "/data/later.txt")
    assert check.stdout == "later\n"


def test_cp_errors(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    dy("create", "--name", "idle", busybox_image, "true", check=True)
    missing = dy("cp", "idle:/no/such/file", str(tmp_path / "x"))
    assert missing.returncode == 1
    assert missing.stderr == "Error: Could not find the file /no/such/file in container\n"
    nosrc = dy("cp", str(tmp_path / "absent"), "idle:/")
    assert nosrc.returncode == 1 and nosrc.stderr.count("\n") == 1
    unknown = dy("cp", str(tmp_path), "ghost:/")
    assert unknown.returncode == 1 and "No such container" in unknown.stderr

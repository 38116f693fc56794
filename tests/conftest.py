"""Shared fixtures: a busybox image tarball, a throw-away store, the CLI as a subprocess."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
REPO = Path(__file__).resolve().parent.parent


def make_busybox_tar(dest: Path) -> Path:
    """A rootfs tarball of Debian's busybox-static: /bin/busybox and its applet links."""
    applets = subprocess.run(
        [BUSYBOX, "--list-full"], check=True, capture_output=True, text=True
    ).stdout.split()
    data = Path(BUSYBOX).read_bytes()
    with tarfile.open(dest, "w") as tar:
        for d in (
            "bin",
            "sbin",
            "usr",
            "usr/bin",
            "usr/sbin",
            "etc",
            "tmp",
            "root",
            "proc",
            "sys",
            "dev",
            "var",
            "home",
        ):
            info = tarfile.TarInfo(d)
            info.type = tarfile.DIRTYPE
            info.mode = 0o1777 if d == "tmp" else 0o755
            tar.addfile(info)
        info = tarfile.TarInfo("bin/busybox")
        info.size = len(data)
        info.mode = 0o755
        tar.addfile(info, io.BytesIO(data))
        for applet in applets:
            if applet in ("bin/busybox",):
                continue
            link = tarfile.TarInfo(applet)
            link.type = tarfile.SYMTYPE
            link.linkname = "/bin/busybox"
            tar.addfile(link)
        for name, text in (
            (
                "etc/passwd",
                "root:x:0:0:root:/root:/bin/sh\n"
                "daemon:x:1:1:daemon:/usr/sbin:/bin/false\n"
                "nobody:x:65534:65534:nobody:/home:/bin/false\n"
                "app:x:1000:1000:app:/home/app:/bin/sh\n",
            ),
            (
                "etc/group",
                "root:x:0:\ndaemon:x:1:\nwheel:x:10:app\napp:x:1000:\nnogroup:x:65534:\n",
            ),
        ):
            raw = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return dest


@pytest.fixture(scope="session")
def busybox_tar(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return make_busybox_tar(tmp_path_factory.mktemp("busybox") / "busybox.tar")


def _cleanup_store(env: dict[str, str]) -> None:
    """Kill whatever the test left running, remove its network objects, unmount."""
    from dockyard.config import Paths
    from dockyard.reset import stop_everything

    stop_everything(Paths(Path(env["DOCKYARD_ROOT"]), Path(env["DOCKYARD_RUNROOT"])))


@pytest.fixture
def dockyard_env(tmp_path: Path) -> Iterator[dict[str, str]]:
    """Environment for a throw-away store under tmp_path; everything is cleaned up after."""
    env = dict(os.environ)
    env["DOCKYARD_ROOT"] = str(tmp_path / "root")
    env["DOCKYARD_RUNROOT"] = str(tmp_path / "run")
    yield env
    _cleanup_store(env)


Runner = Callable[..., subprocess.CompletedProcess[str]]


@pytest.fixture
def dy(dockyard_env: dict[str, str]) -> Runner:
    """Run ``dockyard ARGS...`` as a user would; returns the CompletedProcess (text mode)."""

    def run(
        *args: str, input: str | None = None, check: bool = False, timeout: float = 60
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "dockyard", *args],
            env=dockyard_env,
            input=input,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"dockyard {' '.join(args)} exited {proc.returncode}: {proc.stderr}"
            )
        return proc

    return run


@pytest.fixture
def busybox_image(dy: Runner, busybox_tar: Path) -> str:
    """The busybox test image, imported as ``busybox:latest`` into the test's store."""
    dy("import", str(busybox_tar), "busybox:latest", check=True)
    return "busybox:latest"

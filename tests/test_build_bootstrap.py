"""``dockyard bootstrap``: a Debian base image from the host's mirror, and a Python web app
built FROM it, run with a published port. Slow (debootstrap): the bootstrapped image is
made once per session and kept under /var/cache/dockyard-tests for the day."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner, _cleanup_store

from dockyard.build.bootstrap import host_mirror

CACHE_DIR = Path("/var/cache/dockyard-tests")

APP = """\
import bottle

@bottle.route("/")
def index():
    return "hello from bottle %s\\n" % bottle.__version__

bottle.run(host="0.0.0.0", port=8000, quiet=True)
"""

# pip in the container trusts the host's CA bundle: the machine may reach PyPI
# through a TLS-intercepting proxy whose CA only the host knows.
WEBAPP = """\
FROM debian:bookworm
RUN apt-get update && apt-get install -y --no-install-recommends python3 python3-pip \\
    && rm -rf /var/lib/apt/lists/*
COPY ca-bundle.crt /etc/ssl/certs/build-ca-bundle.crt
RUN pip install --break-system-packages --no-cache-dir \\
    --cert /etc/ssl/certs/build-ca-bundle.crt bottle
WORKDIR /app
COPY app.py .
EXPOSE 8000
CMD ["python3", "app.py"]
"""


def test_host_mirror_reads_sources_list_and_deb822(tmp_path: Path) -> None:
    apt = tmp_path / "etc/apt"
    (apt / "sources.list.d").mkdir(parents=True)
    (apt / "sources.list").write_text(
        "# comment\ndeb [arch=amd64] http://security.debian.org/debian-security bookworm-security main\n"
    )
    (apt / "sources.list.d/debian.sources").write_text(
        "Types: deb\nURIs: http://mirror.example/debian/\nSuites: bookworm bookworm-updates\n"
        "Components: main\n"
    )
    assert host_mirror(tmp_path) == "http://mirror.example/debian"
    (apt / "sources.list").write_text("deb http://ftp.example/debian bookworm main\n")
    assert host_mirror(tmp_path) == "http://ftp.example/debian"
    assert host_mirror(tmp_path / "nothing") == "http://deb.debian.org/debian"


def _mirror_reachable(mirror: str) -> bool:
    try:
        with urllib.request.urlopen(f"{mirror}/dists/bookworm/Release", timeout=20) as response:
            return bool(response.status == 200)
    except OSError:
        return False


@pytest.fixture(scope="session")
def debian_tarball() -> Iterator[Path]:
    """``dockyard save`` of a bootstrapped debian:bookworm (made at most once a day)."""
    cached = CACHE_DIR / f"debian-bookworm-{time.strftime('%Y%m%d')}.tar"
    if cached.exists():
        yield cached
        return
    if not _mirror_reachable(host_mirror()):
        pytest.skip(f"the Debian mirror {host_mirror()} is not reachable")
    base = Path(tempfile.mkdtemp(prefix="dockyard-bootstrap-"))
    env = dict(os.environ, DOCKYARD_ROOT=str(base / "root"), DOCKYARD_RUNROOT=str(base / "run"))
    try:
        proc = subprocess.run(
            [sys.executable, "-m", "dockyard", "bootstrap", "debian:bookworm"],
            env=env,
            capture_output=True,
            text=True,
            timeout=900,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        CACHE_DIR.mkdir(parents=True, exist_ok=True)
        for old in CACHE_DIR.glob("debian-bookworm-*.tar"):
            old.unlink()
        partial = cached.with_suffix(".part")
        subprocess.run(
            [sys.executable, "-m", "dockyard", "save", "-o", str(partial), "debian:bookworm"],
            env=env,
            check=True,
            capture_output=True,
        )
        partial.rename(cached)
    finally:
        _cleanup_store(env)
        shutil.rmtree(base, ignore_errors=True)
    yield cached


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_python_web_app_from_bootstrapped_debian(
    dy: Runner, debian_tarball: Path, tmp_path: Path
) -> None:
    dy("load", "-i", str(debian_tarball), check=True)
    inspect = dy("image", "inspect", "debian:bookworm", "--format", "{{json .Config.Cmd}}")
    assert inspect.stdout.strip() == '["bash"]'
    lists = dy(
        "run",
        "--rm",
        "debian:bookworm",
        "sh",
        "-c",
        "ls /var/lib/apt/lists | grep -v -e '^partial$' -e '^lock$' | wc -l; "
        ". /etc/os-release; echo $VERSION_CODENAME; ls /dev | wc -l",
        timeout=120,
    )
    assert lists.stdout.split() == ["0", "bookworm", lists.stdout.split()[2]], lists.stderr
    ctx = tmp_path / "app"
    ctx.mkdir()
    (ctx / "app.py").write_text(APP)
    (ctx / "Dockerfile").write_text(WEBAPP)
    shutil.copy("/etc/ssl/certs/ca-certificates.crt", ctx / "ca-bundle.crt")
    proc = dy("build", "-t", "webapp", str(ctx), timeout=900)
    assert proc.returncode == 0, proc.stderr[-3000:]
    port = _free_port()
    run = dy("run", "-d", "--name", "web", "-p", f"127.0.0.1:{port}:8000", "webapp", timeout=60)
    assert run.returncode == 0, run.stderr
    try:
        body = ""
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5) as response:
                    body = response.read().decode()
                break
            except OSError:
                time.sleep(0.3)
        assert body.startswith("hello from bottle "), dy("logs", "web").stderr
    finally:
        dy("rm", "-f", "web")

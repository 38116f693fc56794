"""`build URL`: Git repositories (with #ref:dir) and tar or Dockerfile URLs, served on
loopback by the test itself (git daemon, http.server)."""

from __future__ import annotations

import functools
import http.server
import io
import os
import socket
import subprocess
import tarfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import Runner


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_AUTHOR_NAME="t", GIT_AUTHOR_EMAIL="t@t", GIT_COMMITTER_NAME="t",
               GIT_COMMITTER_EMAIL="t@t")  # fmt: skip
    subprocess.run(["git", *args], cwd=cwd, env=env, check=True, capture_output=True)


@pytest.fixture
def git_server(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A repository with a branch and a subdirectory, served by `git daemon` on loopback."""
    work = tmp_path / "work"
    (work / "app").mkdir(parents=True)
    (work / "Dockerfile").write_text("FROM busybox\nCOPY note /note\n")
    (work / "note").write_text("main\n")
    (work / "app/Dockerfile").write_text("FROM busybox\nCOPY . /app/\n")
    (work / "app/hello.txt").write_text("from app\n")
    _git(work, "init", "-q", "-b", "main")
    _git(work, "add", ".")
    _git(work, "commit", "-q", "-m", "one")
    _git(work, "checkout", "-q", "-b", "feature")
    (work / "note").write_text("feature\n")
    _git(work, "commit", "-q", "-am", "two")
    _git(work, "checkout", "-q", "main")  # the served HEAD
    served = tmp_path / "served"
    served.mkdir()
    subprocess.run(
        ["git", "clone", "-q", "--bare", str(work), str(served / "repo.git")], check=True
    )
    port = _free_port()
    daemon = subprocess.Popen(
        [
            "git",
            "daemon",
            "--reuseaddr",
            "--export-all",
            f"--base-path={served}",
            "--listen=127.0.0.1",
            f"--port={port}",
            str(served),
        ],  # fmt: skip
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "git daemon did not start"
                time.sleep(0.05)
        yield f"git://127.0.0.1:{port}/repo.git", work
    finally:
        daemon.terminate()
        daemon.wait()


def test_build_from_git(
    dy: Runner, busybox_image: str, git_server: tuple[str, Path], dockyard_env: dict[str, str]
) -> None:
    url, _ = git_server
    dy("build", "-q", "-t", "fromgit", url, check=True)  # the default branch, the root
    assert dy("run", "--rm", "fromgit", "cat", "/note", check=True).stdout == "main\n"
    dy("build", "-q", "-t", "feature", f"{url}#feature", check=True)
    assert dy("run", "--rm", "feature", "cat", "/note", check=True).stdout == "feature\n"
    dy("build", "-q", "-t", "sub", f"{url}#main:app", check=True)
    out = dy("run", "--rm", "sub", "cat", "/app/hello.txt", check=True).stdout
    assert out == "from app\n"
    dy("build", "-q", "-t", "dashf", "-f", "app/Dockerfile", url, check=True)
    missing = dy("build", "-q", f"{url}#nosuchbranch")
    assert missing.returncode == 1 and "unable to 'git clone'" in missing.stderr
    assert missing.stderr.count("\n") == 1
    escape = dy("build", "-q", f"{url}#main:../..")
    assert escape.returncode == 1 and "outside the repository" in escape.stderr
    tmp = Path(dockyard_env["DOCKYARD_ROOT"]) / "tmp"
    assert not [p for p in tmp.iterdir() if p.name.startswith("build-git-")]  # clones removed


def test_build_from_url(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    site = tmp_path / "site"
    site.mkdir()
    (site / "Dockerfile").write_text("FROM busybox\nRUN echo plain > /plain\n")
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("Dockerfile", "FROM busybox\nCOPY data /data\n"), ("data", "tar\n")):
            info = tarfile.TarInfo(name)
            info.size = len(text)
            tar.addfile(info, io.BytesIO(text.encode()))
    (site / "ctx.tar.gz").write_bytes(buf.getvalue())
    handler = functools.partial(http.server.SimpleHTTPRequestHandler, directory=str(site))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    base = f"http://127.0.0.1:{server.server_address[1]}"
    try:
        dy("build", "-q", "-t", "fromtar", f"{base}/ctx.tar.gz", check=True)
        assert dy("run", "--rm", "fromtar", "cat", "/data", check=True).stdout == "tar\n"
        dy("build", "-q", "-t", "plain", f"{base}/Dockerfile", check=True)
        assert dy("run", "--rm", "plain", "cat", "/plain", check=True).stdout == "plain\n"
        gone = dy("build", "-q", f"{base}/missing.tar")
        assert gone.returncode == 1 and "404" in gone.stderr
    finally:
        server.shutdown()
        server.server_close()

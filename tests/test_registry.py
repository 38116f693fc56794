"""push and pull against a real docker-registry on loopback."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from pathlib import Path

import pytest
from test_registry_support import (  # noqa: F401 - fixtures
    Registry,
    docker_config_fixture,
    import_image,
    layered_image,
    needs_registry,
    open_store,
    registry_fixture,
    sha256,
    tar_bytes,
    write_oci_layout,
)

pytestmark = [needs_registry, pytest.mark.usefixtures("docker_config")]

SKOPEO = shutil.which("skopeo")


def fresh_env(env: dict[str, str], tmp_path: Path, name: str) -> dict[str, str]:
    other = dict(env)
    other["DOCKYARD_ROOT"] = str(tmp_path / name / "root")
    other["DOCKYARD_RUNROOT"] = str(tmp_path / name / "run")
    return other


def run_dy(
    env: dict[str, str], *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    import sys

    return subprocess.run(
        [sys.executable, "-m", "dockyard", *args],
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def repo_digests(env: dict[str, str]) -> dict[str, list[str]]:
    store = open_store(env)
    try:
        return {img.id: img.repo_digests for img in store.list()}
    finally:
        store.db.close()


@pytest.fixture
def pushed(registry: Registry, dockyard_env: dict[str, str], busybox_tar: Path, dy) -> dict:
    ref = f"{registry.host}/busybox:latest"
    image_id = import_image(dockyard_env, busybox_tar, ref)
    proc = dy("push", ref)
    assert proc.returncode == 0, proc.stderr
    return {"ref": ref, "id": image_id, "out": proc.stdout}


def test_push_output_and_repo_digest(pushed: dict, dockyard_env: dict[str, str], registry) -> None:
    lines = pushed["out"].splitlines()
    assert lines[0] == f"The push refers to repository [{registry.host}/busybox]"
    assert any(line.endswith(": Preparing") for line in lines)
    assert any(line.endswith(": Pushed") for line in lines)
    last = lines[-1]
    assert last.startswith("latest: digest: sha256:") and " size: " in last
    digest = last.split()[2]
    assert f"{registry.host}/busybox@{digest}" in repo_digests(dockyard_env)[pushed["id"]]


def test_second_push_only_checks(pushed: dict, dy, dockyard_env: dict[str, str]) -> None:
    proc = dy("push", pushed["ref"])
    assert proc.returncode == 0, proc.stderr
    assert "Layer already exists" in proc.stdout
    assert "Pushed" not in proc.stdout
    # in-process timing of the push itself (interpreter start-up excluded)
    import io

    from dockyard.images.reference import parse
    from dockyard.registry.progress import Progress
    from dockyard.registry.push import push

    old = dict(os.environ)
    os.environ.update(dockyard_env)
    store = open_store(dockyard_env)
    try:
        push(store, parse(pushed["ref"]), progress=Progress(io.StringIO()))
        start = time.perf_counter()
        push(store, parse(pushed["ref"]), progress=Progress(io.StringIO()))
        assert time.perf_counter() - start < 0.1
    finally:
        store.db.close()
        os.environ.clear()
        os.environ.update(old)


def test_pull_by_tag_and_digest_into_fresh_store(
    pushed: dict, dockyard_env: dict[str, str], tmp_path: Path
) -> None:
    env = fresh_env(dockyard_env, tmp_path, "other")
    proc = run_dy(env, "pull", pushed["ref"])
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[0] == "latest: Pulling from busybox"
    assert any(line.endswith(": Pulling fs layer") for line in lines)
    assert any(line.endswith(": Pull complete") for line in lines)
    assert lines[-3].startswith("Digest: sha256:")
    assert lines[-2] == f"Status: Downloaded newer image for {pushed['ref']}"
    assert lines[-1] == pushed["ref"]
    digest = lines[-3].split()[1]
    digests = repo_digests(env)
    assert pushed["id"] in digests  # same config, same image ID
    assert digests[pushed["id"]] == [f"{pushed['ref'].rsplit(':', 1)[0]}@{digest}"]

    again = run_dy(env, "pull", pushed["ref"])
    assert again.returncode == 0, again.stderr
    assert f"Status: Image is up to date for {pushed['ref']}" in again.stdout

    by_digest = pushed["ref"].rsplit(":", 1)[0] + "@" + digest
    env2 = fresh_env(dockyard_env, tmp_path, "third")
    proc = run_dy(env2, "pull", by_digest)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.splitlines()[0] == f"{digest}: Pulling from busybox"
    assert pushed["id"] in repo_digests(env2)
    quiet = run_dy(env2, "pull", "-q", pushed["ref"])
    assert quiet.stdout == pushed["ref"] + "\n"


def test_pulled_image_shows_repo_digest_in_cli(
    pushed: dict, dockyard_env: dict[str, str], tmp_path: Path
) -> None:
    env = fresh_env(dockyard_env, tmp_path, "cli")
    assert run_dy(env, "pull", "-q", pushed["ref"]).returncode == 0
    inspect = run_dy(env, "image", "inspect", pushed["ref"])
    if "unknown command" in inspect.stderr:
        pytest.skip("image inspect is not implemented yet")
    data = json.loads(inspect.stdout)
    assert data[0]["RepoDigests"][0].startswith(pushed["ref"].rsplit(":", 1)[0] + "@sha256:")
    images = run_dy(env, "images", "--digests")
    assert "sha256:" in images.stdout


def test_run_pulled_image(pushed: dict, dockyard_env: dict[str, str], tmp_path: Path) -> None:
    env = fresh_env(dockyard_env, tmp_path, "runner")
    proc = run_dy(env, "run", "--rm", pushed["ref"], "echo", "hi")
    if proc.returncode != 0 and ("unknown command" in proc.stderr or "Traceback" in proc.stderr):
        pytest.skip(f"run is not usable yet: {proc.stderr.strip().splitlines()[-1]}")
    try:
        assert proc.returncode == 0, proc.stderr
        assert proc.stdout == "hi\n"
        assert f"Unable to find image '{pushed['ref']}' locally" in proc.stderr
        assert "Pull complete" in proc.stderr
    finally:
        from conftest import _cleanup_store

        _cleanup_store(env)


def test_push_all_tags_and_pull_all_tags(
    registry: Registry, dockyard_env: dict[str, str], busybox_tar: Path, dy, tmp_path: Path
) -> None:
    repo = f"{registry.host}/multi"
    import_image(dockyard_env, busybox_tar, f"{repo}:one")
    layered_image(dockyard_env, busybox_tar, f"{repo}:two", [tar_bytes({"two.txt": b"2"})])
    proc = dy("push", "--all-tags", repo)
    assert proc.returncode == 0, proc.stderr
    assert "one: digest: sha256:" in proc.stdout and "two: digest: sha256:" in proc.stdout
    env = fresh_env(dockyard_env, tmp_path, "all")
    proc = run_dy(env, "pull", "-a", repo)
    assert proc.returncode == 0, proc.stderr
    assert "one: Pulling from multi" in proc.stdout and "two: Pulling from multi" in proc.stdout
    store = open_store(env)
    try:
        tags = sorted(t for img in store.list() for t in img.tags)
    finally:
        store.db.close()
    assert tags == [f"{repo}:one", f"{repo}:two"]


def test_cross_repository_mount(pushed: dict, dockyard_env: dict[str, str], registry, dy) -> None:
    other = f"{registry.host}/copy:latest"
    store = open_store(dockyard_env)
    try:
        store.tag(pushed["ref"], other)
    finally:
        store.db.close()
    proc = dy("push", other)
    assert proc.returncode == 0, proc.stderr
    assert "Mounted from busybox" in proc.stdout


def test_multi_layer_pull_in_parallel(
    registry: Registry, dockyard_env: dict[str, str], busybox_tar: Path, dy, tmp_path: Path
) -> None:
    ref = f"{registry.host}/layers:v1"
    extra = [tar_bytes({f"f{i}.bin": os.urandom(300_000)}) for i in range(5)]
    image_id = layered_image(dockyard_env, busybox_tar, ref, extra)
    assert dy("push", ref).returncode == 0
    env = fresh_env(dockyard_env, tmp_path, "layers")
    proc = run_dy(env, "pull", ref)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.count("Pull complete") == 6
    assert "Waiting" in proc.stdout  # more layers than download slots
    assert image_id in repo_digests(env)
    store = open_store(env)
    try:
        image = store.resolve(ref)
        assert all(d.is_dir() for d in store.layer_dirs(image))
        assert (store.layer_dirs(image)[3] / "f2.bin").stat().st_size == 300_000
    finally:
        store.db.close()


def test_manifest_inspect(pushed: dict, dy) -> None:
    proc = dy("manifest", "inspect", pushed["ref"])
    assert proc.returncode == 0, proc.stderr
    data = json.loads(proc.stdout)
    assert data["mediaType"] == "application/vnd.docker.distribution.manifest.v2+json"
    assert data["config"]["digest"] == pushed["id"]
    assert data["layers"][0]["mediaType"] == "application/vnd.docker.image.rootfs.diff.tar.gzip"


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_skopeo_sees_the_same_digest(pushed: dict) -> None:
    digest = pushed["out"].splitlines()[-1].split()[2]
    proc = subprocess.run(
        [SKOPEO, "inspect", "--tls-verify=false", f"docker://{pushed['ref']}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout)["Digest"] == digest


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
@pytest.mark.parametrize("compression", ["gzip", "zstd"])
def test_pull_what_skopeo_copied(
    registry: Registry,
    dockyard_env: dict[str, str],
    busybox_tar: Path,
    dy,
    tmp_path: Path,
    compression: str,
) -> None:
    layer = busybox_tar.read_bytes()
    layout = write_oci_layout(tmp_path / "layout", "v1", [("linux", "amd64", layer)], index=False)
    dest = f"{registry.host}/skopeo-{compression}:v1"
    proc = subprocess.run(
        [
            SKOPEO,
            "copy",
            "--dest-tls-verify=false",
            f"--dest-compress-format={compression}",
            "--dest-compress",
            f"oci:{layout}:v1",
            f"docker://{dest}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    pulled = dy("pull", dest)
    assert pulled.returncode == 0, pulled.stderr
    store = open_store(dockyard_env)
    try:
        image = store.resolve(dest)
        assert image.layers == [sha256(layer)]
        assert (store.layer_dirs(image)[0] / "bin" / "busybox").is_file()
    finally:
        store.db.close()


@pytest.mark.skipif(SKOPEO is None, reason="skopeo is not installed")
def test_pull_index_chooses_platform(
    registry: Registry, dockyard_env: dict[str, str], dy, tmp_path: Path
) -> None:
    amd = tar_bytes({"arch": b"amd64\n"})
    arm = tar_bytes({"arch": b"arm64\n"})
    layout = write_oci_layout(
        tmp_path / "multi", "v1", [("linux", "arm64", arm), ("linux", "amd64", amd)], index=True
    )
    dest = f"{registry.host}/multiarch:v1"
    proc = subprocess.run(
        [
            SKOPEO,
            "copy",
            "--all",
            "--dest-tls-verify=false",
            f"oci:{layout}:v1",
            f"docker://{dest}",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    inspect = dy("manifest", "inspect", dest)
    assert json.loads(inspect.stdout)["mediaType"] == "application/vnd.oci.image.index.v1+json"
    from dockyard.registry.manifest import host_platform

    host = host_platform().architecture
    assert dy("pull", dest).returncode == 0
    store = open_store(dockyard_env)
    try:
        image = store.resolve(dest)
        want = {"amd64": amd, "arm64": arm}.get(host)
        if want is not None:
            assert image.layers == [sha256(want)]
    finally:
        store.db.close()
    proc = dy("pull", "--platform", "linux/arm64", dest)
    assert proc.returncode == 0, proc.stderr
    store = open_store(dockyard_env)
    try:
        assert store.resolve(dest).layers == [sha256(arm)]
        assert store.resolve(dest).config["architecture"] == "arm64"
    finally:
        store.db.close()
    proc = dy("pull", "--platform", "linux/s390x", dest)
    assert proc.returncode == 1
    assert "no matching manifest for linux/s390x" in proc.stderr


def test_ensure_image_pulls_what_is_missing(
    pushed: dict,
    dockyard_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    from dockyard.errors import NotFound
    from dockyard.registry.pull import ensure_image

    env = fresh_env(dockyard_env, tmp_path, "ensure")
    for key in ("DOCKYARD_ROOT", "DOCKYARD_RUNROOT", "DOCKER_CONFIG"):
        monkeypatch.setenv(key, env[key])
    store = open_store(env)
    try:
        with pytest.raises(NotFound):
            ensure_image(store, pushed["ref"], policy="never")
        image = ensure_image(store, pushed["ref"])
        assert image.id == pushed["id"]
        err = capsys.readouterr().err
        assert err.startswith(f"Unable to find image '{pushed['ref']}' locally\n")
        assert f"Status: Downloaded newer image for {pushed['ref']}" in err
        assert ensure_image(store, pushed["ref"]).id == pushed["id"]  # now local: no output
        assert capsys.readouterr().err == ""
        image = ensure_image(store, pushed["ref"], policy="always", quiet=True)
        assert image.id == pushed["id"]
    finally:
        store.db.close()


def test_push_same_image_to_another_registry(
    pushed: dict, dockyard_env: dict[str, str], dy, tmp_path: Path
) -> None:
    from test_registry_support import start_registry

    second = start_registry(tmp_path / "second")
    try:
        other = f"{second.host}/busybox:latest"
        store = open_store(dockyard_env)
        try:
            store.tag(pushed["ref"], other)
        finally:
            store.db.close()
        proc = dy("push", other)
        assert proc.returncode == 0, proc.stderr
        assert "Pushed" in proc.stdout
        first_digest = pushed["out"].splitlines()[-1].split()[2]
        assert proc.stdout.splitlines()[-1].split()[2] == first_digest  # same gzip bytes
    finally:
        second.stop()


class _CuttingProxy:
    """A TCP relay to the registry that breaks the first connection carrying more than
    ``cut_after`` response bytes: a network failure in the middle of a layer."""

    def __init__(self, upstream: tuple[str, int], cut_after: int) -> None:
        import socket
        import threading

        self.upstream = upstream
        self.cut_after = cut_after
        self.cuts = 0
        self.server = socket.create_server(("127.0.0.1", 0))
        self.port = self.server.getsockname()[1]
        self.lock = threading.Lock()
        threading.Thread(target=self._accept, daemon=True).start()

    def _accept(self) -> None:
        import socket
        import threading

        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.upstream)
            threading.Thread(target=self._pump, args=(client, upstream, False), daemon=True).start()
            threading.Thread(target=self._pump, args=(upstream, client, True), daemon=True).start()

    def _pump(self, src, dst, response: bool) -> None:  # type: ignore[no-untyped-def]
        sent = 0
        try:
            while data := src.recv(65536):
                if response:
                    sent += len(data)
                    with self.lock:
                        cut = sent > self.cut_after and self.cuts == 0
                        if cut:
                            self.cuts += 1
                    if cut:
                        break
                dst.sendall(data)
        except OSError:
            pass
        for sock in (src, dst):  # shutdown wakes the other pump's recv, close alone would not
            try:
                sock.shutdown(2)
            except OSError:
                pass
            sock.close()

    def close(self) -> None:
        self.server.close()


def test_pull_resumes_a_broken_download(
    registry: Registry, dockyard_env: dict[str, str], busybox_tar: Path, dy, tmp_path: Path
) -> None:
    """A connection that breaks inside a layer is picked up where it stopped (Range)."""
    ref = f"{registry.host}/big:v1"
    image_id = layered_image(
        dockyard_env, busybox_tar, ref, [tar_bytes({"blob": os.urandom(6 << 20)})]
    )
    assert dy("push", ref).returncode == 0
    host, port = registry.host.split(":")
    proxy = _CuttingProxy((host, int(port)), cut_after=2 << 20)
    try:
        env = fresh_env(dockyard_env, tmp_path, "resume")
        proc = run_dy(env, "pull", f"127.0.0.1:{proxy.port}/big:v1")
        assert proc.returncode == 0, proc.stderr
        assert proxy.cuts == 1 and "Retrying in 0.5 seconds" in proc.stdout
        assert image_id in repo_digests(env)
    finally:
        proxy.close()

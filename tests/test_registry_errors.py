"""Bad input and broken transfers: one clear line, exit 1, nothing half-stored."""

from __future__ import annotations

import http.server
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from test_registry_support import (  # noqa: F401 - fixtures
    Registry,
    docker_config_fixture,
    free_port,
    import_image,
    needs_registry,
    open_store,
    registry_fixture,
    sha256,
    tar_bytes,
)

pytestmark = pytest.mark.usefixtures("docker_config")


# --- a scriptable fake registry -------------------------------------------------


class FakeRegistry:
    """Serves fixed manifests and blobs over plain HTTP on loopback.

    ``truncate`` names blobs sent with their full Content-Length but only half the
    bytes; ``stall`` names blobs whose second half waits until ``release`` is set.
    """

    def __init__(self) -> None:
        self.manifests: dict[str, tuple[str, bytes]] = {}
        self.blobs: dict[str, bytes] = {}
        self.truncate: set[str] = set()
        self.stall: set[str] = set()
        self.release = threading.Event()
        self.stalled = threading.Event()
        reg = self

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:  # noqa: N802
                reg.handle(self)

            def do_HEAD(self) -> None:  # noqa: N802
                reg.handle(self, head=True)

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def add_image(self, repo: str, tag: str, layers: list[bytes], media_type: str = "") -> str:
        """Register an image (uncompressed layers unless media_type says otherwise)."""
        layer_type = media_type or "application/vnd.oci.image.layer.v1.tar"
        config = json.dumps(
            {
                "architecture": "amd64",
                "os": "linux",
                "config": {"Cmd": ["sh"]},
                "rootfs": {"type": "layers", "diff_ids": [sha256(x) for x in layers]},
            }
        ).encode()
        self.blobs[sha256(config)] = config
        for layer in layers:
            self.blobs[sha256(layer)] = layer
        manifest = json.dumps(
            {
                "schemaVersion": 2,
                "mediaType": "application/vnd.oci.image.manifest.v1+json",
                "config": {
                    "mediaType": "application/vnd.oci.image.config.v1+json",
                    "digest": sha256(config),
                    "size": len(config),
                },
                "layers": [
                    {"mediaType": layer_type, "digest": sha256(x), "size": len(x)} for x in layers
                ],
            }
        ).encode()
        entry = ("application/vnd.oci.image.manifest.v1+json", manifest)
        self.manifests[f"{repo}:{tag}"] = entry
        self.manifests[f"{repo}:{sha256(manifest)}"] = entry
        return sha256(manifest)

    def handle(self, req: http.server.BaseHTTPRequestHandler, head: bool = False) -> None:
        path = req.path.split("?")[0]
        if path == "/v2/":
            self._send(req, 200, b"{}", "application/json", head)
            return
        if "/manifests/" in path:
            repo, ref = path[4:].split("/manifests/")
            found = self.manifests.get(f"{repo}:{ref}")
            if found:
                self._send(req, 200, found[1], found[0], head)
                return
        if "/blobs/" in path:
            digest = path.rsplit("/", 1)[1]
            if digest in self.blobs:
                self._send_blob(req, digest, head)
                return
        body = json.dumps({"errors": [{"code": "MANIFEST_UNKNOWN", "message": "manifest unknown"}]})
        self._send(req, 404, body.encode(), "application/json", head)

    def _send(self, req: Any, status: int, body: bytes, ctype: str, head: bool) -> None:
        req.send_response(status)
        req.send_header("Content-Type", ctype)
        req.send_header("Content-Length", str(len(body)))
        req.send_header("Docker-Distribution-API-Version", "registry/2.0")
        if status == 200 and "manifest" in ctype:
            req.send_header("Docker-Content-Digest", sha256(body))
        req.end_headers()
        if not head:
            req.wfile.write(body)

    def _send_blob(self, req: Any, digest: str, head: bool) -> None:
        data = self.blobs[digest]
        req.send_response(200)
        req.send_header("Content-Type", "application/octet-stream")
        req.send_header("Content-Length", str(len(data)))
        req.end_headers()
        if head:
            return
        half = len(data) // 2
        if digest in self.truncate:
            req.wfile.write(data[:half])
            req.wfile.flush()
            req.close_connection = True
            return
        if digest in self.stall:
            req.wfile.write(data[:half])
            req.wfile.flush()
            self.stalled.set()
            self.release.wait(60)
            req.wfile.write(data[half:])
            return
        req.wfile.write(data)

    def stop(self) -> None:
        self.release.set()
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def fake() -> Iterator[FakeRegistry]:
    reg = FakeRegistry()
    yield reg
    reg.stop()


def assert_nothing_stored(env: dict[str, str], *digests: str) -> None:
    """No image, no registered layer, none of the blobs, no unpacked or temporary leftovers."""
    root = Path(env["DOCKYARD_ROOT"])
    store = open_store(env)
    try:
        assert store.list() == []
        assert store.db.query("SELECT * FROM layers") == []
        for digest in digests:
            assert not store.content.has(digest)
    finally:
        store.db.close()
    layers = root / "layers"
    assert not layers.exists() or list(layers.iterdir()) == []
    tmp = root / "tmp"
    assert not tmp.exists() or list(tmp.iterdir()) == []


def one_error_line(proc: subprocess.CompletedProcess[str]) -> str:
    assert proc.returncode == 1, (proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    assert lines[0].startswith("Error: ")
    return lines[0]


def test_unknown_tag_and_repository(registry: Registry, dy, dockyard_env, busybox_tar) -> None:
    ref = f"{registry.host}/busybox:latest"
    import_image(dockyard_env, busybox_tar, ref)
    assert dy("push", ref).returncode == 0
    line = one_error_line(dy("pull", f"{registry.host}/busybox:nope"))
    assert f"manifest for {registry.host}/busybox:nope not found: manifest unknown" in line
    line = one_error_line(dy("pull", f"{registry.host}/nothere"))
    assert "not found" in line and "manifest unknown" in line
    assert one_error_line(dy("push", f"{registry.host}/missing:tag")) == (
        f"Error: An image does not exist locally with the tag: {registry.host}/missing"
    )


def test_unreachable_registry_fails_fast(dy) -> None:
    port = free_port()
    start = time.monotonic()
    line = one_error_line(dy("pull", f"127.0.0.1:{port}/busybox"))
    assert time.monotonic() - start < 5
    assert f"127.0.0.1:{port}" in line and "connection refused" in line


def test_invalid_reference_is_rejected(dy) -> None:
    proc = dy("pull", "Busybox")
    assert proc.returncode != 0
    assert "invalid reference format" in proc.stderr


@needs_registry
def test_corrupted_blob_is_refused(
    registry: Registry, dy, dockyard_env: dict[str, str], busybox_tar: Path, tmp_path: Path
) -> None:
    ref = f"{registry.host}/busybox:latest"
    import_image(dockyard_env, busybox_tar, ref)
    assert dy("push", ref).returncode == 0
    manifest = json.loads(dy("manifest", "inspect", ref).stdout)
    layer = manifest["layers"][0]["digest"]
    blob = registry.blob_path(layer)
    data = bytearray(blob.read_bytes())
    for i in range(1000, len(data), 4096):  # same size, different bytes
        data[i] ^= 0xFF
    blob.write_bytes(bytes(data))

    env = dict(dockyard_env, DOCKYARD_ROOT=str(tmp_path / "fresh"))
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "pull", ref],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    line = one_error_line(proc)
    assert f"verification failed for digest {layer}" in line
    assert_nothing_stored(env, layer)


def test_truncated_download(fake: FakeRegistry, dy, dockyard_env: dict[str, str]) -> None:
    good = tar_bytes({"a.txt": b"a" * 10000})
    bad = tar_bytes({"b.bin": os.urandom(200_000)})
    fake.add_image("trunc", "v1", [good, bad])
    fake.truncate.add(sha256(bad))
    line = one_error_line(dy("pull", f"{fake.host}/trunc:v1"))
    assert "unexpected EOF" in line and sha256(bad) in line
    assert_nothing_stored(dockyard_env, sha256(bad), sha256(good))


def test_unknown_media_types(fake: FakeRegistry, dy, dockyard_env: dict[str, str]) -> None:
    fake.add_image("odd", "v1", [tar_bytes({"x": b"x"})], media_type="application/x-strange")
    line = one_error_line(dy("pull", f"{fake.host}/odd:v1"))
    assert "unsupported layer media type application/x-strange" in line
    fake.manifests["weird:v1"] = ("application/x-weird", b'{"schemaVersion": 2}')
    line = one_error_line(dy("pull", f"{fake.host}/weird:v1"))
    assert "unsupported manifest media type" in line
    fake.manifests["old:v1"] = (
        "application/vnd.docker.distribution.manifest.v1+prettyjws",
        b'{"schemaVersion": 1, "fsLayers": []}',
    )
    line = one_error_line(dy("pull", f"{fake.host}/old:v1"))
    assert "schema version 1" in line
    assert_nothing_stored(dockyard_env)


def test_gzip_and_zstd_layers_from_fake_registry(fake: FakeRegistry, dy, dockyard_env) -> None:
    zstandard = pytest.importorskip("zstandard")

    plain = tar_bytes({"z.txt": b"zstd layer\n"})
    fake.add_image(
        "zst",
        "v1",
        [zstandard.ZstdCompressor().compress(plain)],
        media_type="application/vnd.oci.image.layer.v1.tar+zstd",
    )
    # add_image computed diff IDs over the compressed bytes: fix the config by hand
    manifest = json.loads(fake.manifests["zst:v1"][1])
    config = json.loads(fake.blobs[manifest["config"]["digest"]])
    config["rootfs"]["diff_ids"] = [sha256(plain)]
    raw = json.dumps(config).encode()
    fake.blobs[sha256(raw)] = raw
    manifest["config"] = {
        "mediaType": manifest["config"]["mediaType"],
        "digest": sha256(raw),
        "size": len(raw),
    }
    body = json.dumps(manifest).encode()
    fake.manifests["zst:v1"] = (fake.manifests["zst:v1"][0], body)
    proc = dy("pull", f"{fake.host}/zst:v1")
    assert proc.returncode == 0, proc.stderr
    store = open_store(dockyard_env)
    try:
        image = store.resolve(f"{fake.host}/zst:v1")
        assert (store.layer_dirs(image)[0] / "z.txt").read_text() == "zstd layer\n"
        assert image.repo_digests == [f"{fake.host}/zst@{sha256(body)}"]
    finally:
        store.db.close()


def test_interrupted_pull_then_second_pull_completes(
    fake: FakeRegistry, dockyard_env: dict[str, str], dy
) -> None:
    small = tar_bytes({"small.txt": b"s" * 5000})
    big = tar_bytes({"big.bin": os.urandom(400_000)})
    fake.add_image("slow", "v1", [small, big])
    fake.stall.add(sha256(big))
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "pull", f"{fake.host}/slow:v1"],
        env=dockyard_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    try:
        assert fake.stalled.wait(30), "the download never started"
        time.sleep(0.3)
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    store = open_store(dockyard_env)
    try:
        assert store.list() == []
    finally:
        store.db.close()
    fake.stall.clear()
    fake.release.set()
    again = dy("pull", f"{fake.host}/slow:v1")
    assert again.returncode == 0, again.stderr
    store = open_store(dockyard_env)
    try:
        image = store.resolve(f"{fake.host}/slow:v1")
        assert image.layers == [sha256(small), sha256(big)]
        assert all(d.is_dir() for d in store.layer_dirs(image))
    finally:
        store.db.close()


class NoChunkedProxy:
    """A proxy to a real registry that refuses streamed uploads (411), like some front ends."""

    def __init__(self, upstream_port: int) -> None:
        import http.client

        proxy = self
        self.refused = 0

        class Handler(http.server.BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def _forward(self) -> None:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    proxy.refused += 1
                    self.send_response(411)
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    self.close_connection = True
                    return
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length) if length else None
                conn = http.client.HTTPConnection("127.0.0.1", upstream_port, timeout=60)
                headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
                conn.request(self.command, self.path, body=body, headers=headers)
                resp = conn.getresponse()
                data = resp.read()
                self.send_response(resp.status)
                for key, value in resp.getheaders():
                    if key.lower() not in ("connection", "transfer-encoding", "content-length"):
                        self.send_header(key, value)
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(data)
                conn.close()

            do_GET = do_HEAD = do_POST = do_PUT = do_PATCH = do_DELETE = _forward  # noqa: N815

            def log_message(self, *args: Any) -> None:
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.port = self.httpd.server_address[1]
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def stop(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


@needs_registry
def test_push_falls_back_to_monolithic_upload(
    registry: Registry, dy, dockyard_env: dict[str, str], busybox_tar: Path
) -> None:
    proxy = NoChunkedProxy(registry.port)
    try:
        ref = f"127.0.0.1:{proxy.port}/mono:latest"
        import_image(dockyard_env, busybox_tar, ref)
        proc = dy("push", ref)
        assert proc.returncode == 0, proc.stderr
        assert proxy.refused >= 1
        assert "Pushed" in proc.stdout
        pulled = dy("pull", f"localhost:{registry.port}/mono:latest")
        assert pulled.returncode == 0, pulled.stderr
    finally:
        proxy.stop()

"""Bad input and broken transfers: one clear line, exit 1, nothing half-stored."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_registry_support import (  # noqa: F401 - fixtures
    FakeRegistry,
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

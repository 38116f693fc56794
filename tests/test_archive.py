"""docker save / docker load: formats, roundtrips, and all-or-nothing loading."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.config import Paths
from dockyard.containers import rootfs
from dockyard.db import Database
from dockyard.errors import DockyardError
from dockyard.images.store import ImageStore

FIXTURE = Path(__file__).resolve().parent / "fixtures" / "handmade-docker-save.tar"
FIXTURE_ID = "sha256:413af57194584630628ba3acf196a072592a3dbe7e17c3cbe5d27b47c14c7aff"


def _new_store(root: Path) -> ImageStore:
    paths = Paths(root / "root", root / "run")
    paths.ensure()
    return ImageStore(paths, Database(paths.db))


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    s = _new_store(tmp_path / "a")
    yield s
    s.db.close()


def _assert_empty(store: ImageStore) -> None:
    """Nothing registered, and no file left behind."""
    assert store.list() == []
    assert store.db.query("SELECT * FROM layers") == []
    assert store.db.query("SELECT * FROM tags") == []
    assert [n for n in os.listdir(store.paths.layers) if n not in ("l", "empty")] == []
    assert list(store.content.iter()) == []
    assert os.listdir(store.paths.tmp) == []


def _members(data: bytes) -> dict[str, bytes]:
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return {
            m.name: tar.extractfile(m).read()  # type: ignore[union-attr]
            for m in tar.getmembers()
            if m.isreg()
        }


def _retar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_load_handmade_docker_save_fixture(store: ImageStore) -> None:
    with open(FIXTURE, "rb") as f:
        assert store.load(f) == ["Loaded image: handmade:1.0"]
    image = store.resolve("handmade:1.0")
    assert (
        image.id
        == FIXTURE_ID
        == "sha256:"
        + hashlib.sha256(_members(FIXTURE.read_bytes())[FIXTURE_ID[7:] + ".json"]).hexdigest()
    )
    assert image.container_config["Cmd"] == ["/bin/hello"]
    history = store.history("handmade:1.0")
    assert [h.id for h in history] == [FIXTURE_ID, "<missing>", "<missing>"]
    assert history[0].comment == "second layer" and history[1].size == 0
    lower, upper = store.layer_dirs(image)
    assert os.lstat(upper / "greeting.txt").st_rdev == 0
    assert os.getxattr(upper / "etc", "trusted.overlay.opaque") == b"y"
    cid = "1" * 64
    rootfs.prepare(store.paths, cid)
    try:
        merged = rootfs.mount(store.paths, cid, store.layer_dirs(image))
        assert not (merged / "greeting.txt").exists()
        assert (merged / "bye.txt").read_text() == "bye\n"
        assert not (merged / "etc/motd").exists()
        assert (merged / "etc/new.conf").read_text() == "key=value\n"
        assert os.readlink(merged / "bin/hello") == "/greeting.txt"
    finally:
        rootfs.remove(store.paths, cid)
    # loading again changes nothing and reuses the layers
    with open(FIXTURE, "rb") as f:
        assert store.load(f) == ["Loaded image: handmade:1.0"]
    assert len(store.list()) == 1


def test_save_writes_docker_and_oci_layout(store: ImageStore) -> None:
    with open(FIXTURE, "rb") as f:
        store.load(f)
    store.tag("handmade:1.0", "localhost:5000/team/handmade:2")
    out = io.BytesIO()
    store.save(["handmade:1.0", "localhost:5000/team/handmade:2"], out)
    files = _members(out.getvalue())
    assert json.loads(files["oci-layout"]) == {"imageLayoutVersion": "1.0.0"}
    (entry,) = json.loads(files["manifest.json"])
    assert entry["Config"] == f"blobs/sha256/{FIXTURE_ID[7:]}"
    assert entry["RepoTags"] == ["handmade:1.0", "localhost:5000/team/handmade:2"]
    for path in entry["Layers"]:
        assert path in files
    index = json.loads(files["index.json"])
    names = [m["annotations"]["io.containerd.image.name"] for m in index["manifests"]]
    assert names == ["docker.io/library/handmade:1.0", "localhost:5000/team/handmade:2"]
    assert [m["annotations"]["org.opencontainers.image.ref.name"] for m in index["manifests"]] == [
        "1.0",
        "2",
    ]
    manifest_digest = index["manifests"][0]["digest"]
    manifest = json.loads(files[f"blobs/sha256/{manifest_digest[7:]}"])
    assert manifest["config"]["digest"] == FIXTURE_ID
    for name, data in files.items():  # every blob matches its name
        if name.startswith("blobs/sha256/"):
            assert hashlib.sha256(data).hexdigest() == name.rsplit("/", 1)[1]
    assert json.loads(files["repositories"])["handmade"]["1.0"]


def test_save_load_roundtrip_into_fresh_store(tmp_path: Path, busybox_tar: Path) -> None:
    first = _new_store(tmp_path / "first")
    with open(busybox_tar, "rb") as f:
        base = first.import_tar(f, ["CMD sh"], "", "busybox")
    second_img = first.import_tar(io.BytesIO(_retar({"x": b"x"})), [], "", "tiny:1")
    out = io.BytesIO()
    first.save(["busybox", second_img.id], out)
    entries = json.loads(_members(out.getvalue())["manifest.json"])
    assert entries[1]["RepoTags"] is None  # saved by ID: no tags, as Docker
    fresh = _new_store(tmp_path / "fresh")
    out.seek(0)
    assert fresh.load(out) == ["Loaded image: busybox:latest", f"Loaded image ID: {second_img.id}"]
    loaded = fresh.resolve("busybox")
    assert loaded.id == base.id and loaded.layers == base.layers
    assert loaded.config == base.config and loaded.size == base.size
    assert fresh.resolve(second_img.id).tags == []
    # gzip-compressed archives load too
    third = _new_store(tmp_path / "third")
    assert (
        third.load(io.BytesIO(gzip.compress(out.getvalue())))[0] == "Loaded image: busybox:latest"
    )


def _oci_only(archive: bytes) -> dict[str, bytes]:
    files = _members(archive)
    del files["manifest.json"]
    files.pop("repositories", None)
    return files


def test_load_oci_layout(tmp_path: Path, busybox_tar: Path) -> None:
    first = _new_store(tmp_path / "first")
    with open(busybox_tar, "rb") as f:
        image = first.import_tar(f, [], "", "registry.local/bb:9")
    out = io.BytesIO()
    first.save(["registry.local/bb:9"], out)
    fresh = _new_store(tmp_path / "fresh")
    assert fresh.load(io.BytesIO(_retar(_oci_only(out.getvalue())))) == [
        "Loaded image: registry.local/bb:9"
    ]
    assert fresh.resolve("registry.local/bb:9").id == image.id


def test_load_oci_multiplatform_gzip_layout(store: ImageStore) -> None:
    """An index pointing at an index of platforms, gzip layers, ref.name as the name."""
    layer = _retar({"hello": b"oci\n"})
    blob = gzip.compress(layer)
    config = json.dumps(
        {
            "architecture": "amd64",
            "os": "linux",
            "created": "2024-01-01T00:00:00Z",
            "config": {"Cmd": ["/hello"]},
            "rootfs": {
                "type": "layers",
                "diff_ids": ["sha256:" + hashlib.sha256(layer).hexdigest()],
            },
        }
    ).encode()

    def digest(data: bytes) -> str:
        return "sha256:" + hashlib.sha256(data).hexdigest()

    manifest = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.manifest.v1+json",
            "config": {
                "mediaType": "application/vnd.oci.image.config.v1+json",
                "digest": digest(config),
                "size": len(config),
            },
            "layers": [
                {
                    "mediaType": "application/vnd.oci.image.layer.v1.tar+gzip",
                    "digest": digest(blob),
                    "size": len(blob),
                }
            ],
        }
    ).encode()
    import platform as _platform

    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(_platform.machine(), _platform.machine())
    inner = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": "sha256:" + "0" * 64,
                    "size": 1,
                    "platform": {"architecture": "s390x", "os": "linux"},
                },
                {
                    "mediaType": "application/vnd.oci.image.manifest.v1+json",
                    "digest": digest(manifest),
                    "size": len(manifest),
                    "platform": {"architecture": arch, "os": "linux"},
                },
            ],
        }
    ).encode()
    index = json.dumps(
        {
            "schemaVersion": 2,
            "mediaType": "application/vnd.oci.image.index.v1+json",
            "manifests": [
                {
                    "mediaType": "application/vnd.oci.image.index.v1+json",
                    "digest": digest(inner),
                    "size": len(inner),
                    "annotations": {"org.opencontainers.image.ref.name": "example.com/oci/app:3"},
                }
            ],
        }
    ).encode()
    files = {"oci-layout": b'{"imageLayoutVersion":"1.0.0"}', "index.json": index}
    for data in (layer, blob, config, manifest, inner):
        files[f"blobs/sha256/{digest(data)[7:]}"] = data
    del files[f"blobs/sha256/{digest(layer)[7:]}"]
    assert store.load(io.BytesIO(gzip.compress(_retar(files)))) == [
        "Loaded image: example.com/oci/app:3"
    ]
    image = store.resolve("example.com/oci/app:3")
    assert image.id == digest(config)
    assert (store.layer_dirs(image)[0] / "hello").read_text() == "oci\n"
    assert store.layer_records(image)[0].blob_digest == digest(blob)


def test_truncated_archive_leaves_nothing(
    store: ImageStore, busybox_tar: Path, tmp_path: Path
) -> None:
    other = _new_store(tmp_path / "other")
    with open(busybox_tar, "rb") as f:
        other.import_tar(f, [], "", "busybox")
    with open(FIXTURE, "rb") as f:
        other.load(f)
    out = io.BytesIO()
    other.save(["handmade:1.0", "busybox"], out)
    data = out.getvalue()
    for cut in (len(data) // 2, len(data) - 3000, 700):
        with pytest.raises(DockyardError) as err:
            store.load(io.BytesIO(data[:cut]))
        assert "\n" not in str(err.value)
        assert "truncated" in str(err.value) or "missing" in str(err.value)
        _assert_empty(store)
    with pytest.raises(DockyardError):
        store.load(io.BytesIO(gzip.compress(data)[: len(data) // 3]))
    _assert_empty(store)
    with pytest.raises(DockyardError, match="not a tar|empty"):
        store.load(io.BytesIO(b"this is not an archive at all" * 40))
    _assert_empty(store)


def test_bad_layer_in_second_image_registers_nothing(store: ImageStore, tmp_path: Path) -> None:
    files = _members(FIXTURE.read_bytes())
    manifest = json.loads(files["manifest.json"])
    good_config = json.loads(files[FIXTURE_ID[7:] + ".json"])
    bad_config = dict(
        good_config,
        rootfs={
            "type": "layers",
            "diff_ids": [good_config["rootfs"]["diff_ids"][0], "sha256:" + "f" * 64],
        },
    )
    bad_bytes = json.dumps(bad_config).encode()
    bad_name = hashlib.sha256(bad_bytes).hexdigest() + ".json"
    files[bad_name] = bad_bytes
    manifest.append({"Config": bad_name, "RepoTags": ["broken:1"], "Layers": manifest[0]["Layers"]})
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(DockyardError, match="invalid diffID"):
        store.load(io.BytesIO(_retar(files)))
    _assert_empty(store)
    # a manifest naming a file the archive lacks
    manifest = [dict(manifest[0], Layers=["nope/layer.tar", manifest[0]["Layers"][1]])]
    files["manifest.json"] = json.dumps(manifest).encode()
    with pytest.raises(DockyardError, match="nope/layer.tar is missing"):
        store.load(io.BytesIO(_retar(files)))
    _assert_empty(store)


def test_load_moves_existing_tag(store: ImageStore) -> None:
    store.import_tar(io.BytesIO(_retar({"f": b"1"})), [], "", "handmade:1.0")
    old = store.resolve("handmade:1.0").id
    with open(FIXTURE, "rb") as f:
        messages = store.load(f)
    assert messages == [
        f"The image handmade:1.0 already exists, renaming the old one with ID {old} to empty string",
        "Loaded image: handmade:1.0",
    ]
    assert store.get(old).tags == []


def test_cli_save_load(dockyard_env: dict[str, str], tmp_path: Path) -> None:
    def run(*args: str, data: bytes | None = None) -> subprocess.CompletedProcess[bytes]:
        return subprocess.run(
            [sys.executable, "-m", "dockyard", *args],
            input=data,
            capture_output=True,
            env=dockyard_env,
            timeout=60,
        )

    proc = run("load", "-i", str(FIXTURE))
    assert proc.returncode == 0 and proc.stdout == b"Loaded image: handmade:1.0\n", proc.stderr
    saved = run("save", "handmade")  # a repository name saves all its tags
    assert saved.returncode == 0, saved.stderr
    assert json.loads(_members(saved.stdout)["manifest.json"])[0]["RepoTags"] == ["handmade:1.0"]
    target = tmp_path / "out.tar"
    assert run("save", "-o", str(target), "handmade:1.0").returncode == 0
    assert _members(target.read_bytes()).keys() == _members(saved.stdout).keys()
    assert [p for p in os.listdir(tmp_path) if p.startswith(".docker_temp_")] == []
    assert run("rmi", "handmade:1.0").returncode == 0
    proc = run("load", "-q", data=gzip.compress(saved.stdout))
    assert proc.stdout == b"Loaded image: handmade:1.0\n", proc.stderr
    bad = run("load", data=saved.stdout[:5000])
    assert bad.returncode == 1 and bad.stderr.decode().count("\n") == 1
    assert b"Error:" in bad.stderr
    missing = run("save", "nosuch:1")
    assert missing.returncode != 0 and b"No such image: nosuch:1" in missing.stderr

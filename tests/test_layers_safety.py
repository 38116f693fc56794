"""Layer unpacking must never write outside its target, whatever the archive holds."""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import stat
import tarfile
from collections.abc import Callable
from pathlib import Path

import pytest

from dockyard.config import Paths
from dockyard.db import Database
from dockyard.errors import InvalidArgument, UnsafePath
from dockyard.images import layers
from dockyard.images.store import ImageStore

Entry = Callable[[tarfile.TarFile], None]


def _file(name: str, data: bytes = b"payload", **attrs: object) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.size = len(data)
        info.mode = 0o644
        for key, value in attrs.items():
            setattr(info, key, value)
        tar.addfile(info, io.BytesIO(data))

    return add


def _link(name: str, target: str, kind: bytes = tarfile.SYMTYPE) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = kind
        info.linkname = target
        tar.addfile(info)

    return add


def _dir(name: str, mode: int = 0o755) -> Entry:
    def add(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo(name)
        info.type = tarfile.DIRTYPE
        info.mode = mode
        tar.addfile(info)

    return add


def make_tar(*entries: Entry) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        for entry in entries:
            entry(tar)
    return buf.getvalue()


def snapshot(root: Path, skip: Path) -> set[str]:
    """Every path below root except those below ``skip``."""
    found = set()
    for dirpath, dirnames, filenames in os.walk(root):
        if Path(dirpath) == skip or skip in Path(dirpath).parents:
            continue
        for name in dirnames + filenames:
            found.add(os.path.join(dirpath, name))
    return found


@pytest.fixture
def area(tmp_path: Path) -> tuple[Path, Path]:
    """(target dir, an 'outside' dir beside it holding a secret file)."""
    target = tmp_path / "target"
    target.mkdir()
    outside = tmp_path / "outside"
    outside.mkdir()
    (outside / "secret").write_text("secret")
    return target, outside


def unpack_refused(data: bytes, target: Path, tmp_path: Path) -> None:
    before = snapshot(tmp_path, target)
    secret = tmp_path / "outside" / "secret"
    with pytest.raises(UnsafePath):
        layers.unpack(io.BytesIO(data), target)
    assert snapshot(tmp_path, target) == before, "something was written outside the target"
    assert secret.read_text() == "secret"
    assert os.stat(secret).st_nlink == 1


def test_dotdot_entry_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, _ = area
    unpack_refused(make_tar(_file("../escaped")), target, tmp_path)
    unpack_refused(make_tar(_file("a/../../escaped")), target, tmp_path)
    assert not (tmp_path / "escaped").exists()


def test_absolute_entry_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, outside = area
    unpack_refused(make_tar(_file(str(outside / "abs"))), target, tmp_path)
    assert not (outside / "abs").exists()


def test_write_through_planted_symlink_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, outside = area
    data = make_tar(_link("evil", str(outside)), _file("evil/file"))
    unpack_refused(data, target, tmp_path)
    assert not (outside / "file").exists()
    # the absolute symlink itself is fine: inside a container it points inside
    assert os.readlink(target / "evil") == str(outside)


def test_write_through_existing_symlink_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, outside = area
    os.symlink(outside, target / "preexisting")
    unpack_refused(make_tar(_file("preexisting/secret", b"owned")), target, tmp_path)


def test_symlink_chain_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, outside = area
    data = make_tar(_link("a", "b"), _link("b", str(outside)), _file("a/file"))
    unpack_refused(data, target, tmp_path)
    data = make_tar(_dir("d"), _link("d/up", "/"), _file("d/up/tmp/x"))
    unpack_refused(data, target, tmp_path)


def test_relative_symlink_leading_out_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, _ = area
    unpack_refused(make_tar(_link("evil", "../outside")), target, tmp_path)
    unpack_refused(make_tar(_dir("a"), _link("a/evil", "../../outside/secret")), target, tmp_path)
    # relative links that stay inside are fine
    layers.unpack(io.BytesIO(make_tar(_dir("a"), _link("a/ok", "../a"))), target)
    assert os.readlink(target / "a/ok") == "../a"


def test_hardlink_outside_refused(area: tuple[Path, Path], tmp_path: Path) -> None:
    target, outside = area
    unpack_refused(make_tar(_link("passwd", "/etc/passwd", tarfile.LNKTYPE)), target, tmp_path)
    unpack_refused(make_tar(_link("s", "../outside/secret", tarfile.LNKTYPE)), target, tmp_path)
    data = make_tar(_link("d", str(outside)), _link("x", "d/secret", tarfile.LNKTYPE))
    unpack_refused(data, target, tmp_path)
    assert not (target / "x").exists()


def test_file_replaces_planted_symlink_without_following(area: tuple[Path, Path]) -> None:
    target, outside = area
    data = make_tar(_link("f", str(outside / "secret")), _file("f", b"new"))
    layers.unpack(io.BytesIO(data), target)
    assert (outside / "secret").read_text() == "secret"
    assert stat.S_ISREG(os.lstat(target / "f").st_mode)
    assert (target / "f").read_bytes() == b"new"


def test_whiteouts_become_overlay_whiteouts(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()
    data = make_tar(
        _dir("etc"), _file("etc/.wh.passwd", b""), _dir("opt"), _file("opt/.wh..wh..opq", b"")
    )
    layers.unpack(io.BytesIO(data), target)
    st = os.lstat(target / "etc/passwd")
    assert stat.S_ISCHR(st.st_mode) and st.st_rdev == 0
    assert os.getxattr(target / "opt", "trusted.overlay.opaque") == b"y"
    assert not (target / "etc/.wh.passwd").exists()


def test_metadata_preserved(tmp_path: Path) -> None:
    target = tmp_path / "t"
    target.mkdir()

    def with_xattr(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("bin/tool")
        data = b"#!/bin/sh\n"
        info.size = len(data)
        info.mode = 0o4755
        info.uid, info.gid = 1000, 1001
        info.mtime = 1_600_000_000
        info.pax_headers = {"SCHILY.xattr.user.origin": "test"}
        tar.addfile(info, io.BytesIO(data))

    def device(tar: tarfile.TarFile) -> None:
        info = tarfile.TarInfo("dev/null")
        info.type = tarfile.CHRTYPE
        info.devmajor, info.devminor = 1, 3
        info.mode = 0o666
        tar.addfile(info)

    data = make_tar(_dir("bin", 0o750), with_xattr, _dir("dev"), device)
    layers.unpack(io.BytesIO(data), target)
    st = os.stat(target / "bin/tool")
    assert stat.S_IMODE(st.st_mode) == 0o4755
    assert (st.st_uid, st.st_gid) == (1000, 1001)
    assert int(st.st_mtime) == 1_600_000_000
    assert os.getxattr(target / "bin/tool", "user.origin") == b"test"
    assert stat.S_IMODE(os.stat(target / "bin").st_mode) == 0o750
    dev = os.lstat(target / "dev/null")
    assert stat.S_ISCHR(dev.st_mode) and os.major(dev.st_rdev) == 1 and os.minor(dev.st_rdev) == 3


def test_diff_id_plain_gzip_zstd(tmp_path: Path) -> None:
    data = make_tar(_dir("a"), _file("a/b", b"x" * 5000))
    diff_id = "sha256:" + hashlib.sha256(data).hexdigest()
    variants = {"none": data, "gzip": gzip.compress(data)}
    try:
        import zstandard

        variants["zstd"] = zstandard.ZstdCompressor().compress(data)
    except ImportError:
        pass
    for name, blob in variants.items():
        target = tmp_path / name
        target.mkdir()
        teed: list[bytes] = []
        result = layers.unpack(io.BytesIO(blob), target, tee=teed.append)
        assert result.diff_id == diff_id
        assert result.compression == name
        assert b"".join(teed) == blob
        assert result.size == 5000
        assert (target / "a/b").read_bytes() == b"x" * 5000


def test_truncated_and_garbage_refused(tmp_path: Path) -> None:
    data = make_tar(_file("a", os.urandom(3000)), _file("b", os.urandom(3000)))
    for cut in (100, 700, 2000, 4000):
        target = tmp_path / f"cut{cut}"
        target.mkdir()
        with pytest.raises(InvalidArgument):
            layers.unpack(io.BytesIO(data[:cut]), target)
    target = tmp_path / "gz"
    target.mkdir()
    with pytest.raises(InvalidArgument):
        layers.unpack(io.BytesIO(gzip.compress(data)[:4000]), target)


def test_overlay_upper_roundtrip(tmp_path: Path) -> None:
    upper = tmp_path / "upper"
    (upper / "etc").mkdir(parents=True)
    (upper / "etc/new").write_text("n")
    os.mknod(upper / "etc/gone", stat.S_IFCHR | 0o600, 0)
    (upper / "opaque").mkdir()
    os.setxattr(upper / "opaque", "trusted.overlay.opaque", b"y")
    (upper / "opaque/kept").write_text("k")
    os.link(upper / "etc/new", upper / "etc/hard")
    out = io.BytesIO()
    layers.tar_overlay_upper(upper, out)
    names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
    assert "etc/.wh.gone" in names and "opaque/.wh..wh..opq" in names
    assert out.getvalue().endswith(b"\0" * 1024)
    target = tmp_path / "layer"
    target.mkdir()
    layers.unpack(io.BytesIO(out.getvalue()), target)
    assert os.lstat(target / "etc/gone").st_rdev == 0
    assert os.getxattr(target / "opaque", "trusted.overlay.opaque") == b"y"
    assert os.stat(target / "etc/hard").st_ino == os.stat(target / "etc/new").st_ino


def test_empty_layer_has_dockers_diff_id(tmp_path: Path) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    out = io.BytesIO()
    layers.tar_overlay_upper(empty, out)
    assert "sha256:" + hashlib.sha256(out.getvalue()).hexdigest() == layers.EMPTY_TAR_DIFF_ID


def test_failed_ingest_leaves_nothing(tmp_path: Path) -> None:
    paths = Paths(tmp_path / "root", tmp_path / "run")
    paths.ensure()
    store = ImageStore(paths, Database(paths.db))
    outside = tmp_path / "outside"
    outside.mkdir()
    data = make_tar(_file("ok", b"fine"), _link("evil", str(outside)), _file("evil/x"))
    with pytest.raises(UnsafePath):
        store.ingest_layer(io.BytesIO(data))
    assert os.listdir(paths.layers) == []
    assert os.listdir(paths.blobs / "sha256") == []
    assert os.listdir(paths.tmp) == []
    assert os.listdir(outside) == []

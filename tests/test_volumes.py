"""Volumes: flag parsing, the volume commands, copy-up, driver-option volumes, runc mounts.

Library tests drive VolumeManager against a throw-away store; the runc tests
start real containers (runc directly, from bundles made here) with the mounts
prepare_mounts returns; the end-to-end tests use ``dockyard run`` when it works.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tarfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from dockyard.config import Paths
from dockyard.containers.spec import ContainerSpec, Mount
from dockyard.db import Database
from dockyard.errors import Conflict, DockyardError, InvalidArgument, NotFound
from dockyard.volumes import (
    VolumeManager,
    host_config_fields,
    mountops,
    parse_mount_flag,
    parse_storage_flags,
    parse_tmpfs_flag,
    parse_volume_flag,
    parse_volumes_from,
)
from dockyard.volumes.attach import merge_tmpfs_options, tmpfs_mount
from dockyard.volumes.copyup import copy_tree, secure_join

RUNC = shutil.which("runc") or "/usr/sbin/runc"
needs_root = pytest.mark.skipif(os.geteuid() != 0, reason="needs root (mounts, runc)")


# -- parsing ----------------------------------------------------------------------


def test_volume_flag_named_bind_anonymous() -> None:
    m = parse_volume_flag("data:/srv/data")
    assert (m.type, m.source, m.target, m.read_only) == ("volume", "data", "/srv/data", False)
    m = parse_volume_flag("data:/srv/data:ro")
    assert m.read_only and m.options["mode"] == "ro"
    m = parse_volume_flag("/host/dir:/in/ctr:ro,Z")
    assert (m.type, m.source, m.read_only) == ("bind", "/host/dir", True)
    assert m.options["propagation"] == "rprivate" and m.options["create-source"] == "true"
    m = parse_volume_flag("/host//dir/:/in/../x/:rw,rslave")
    assert (m.source, m.target, m.read_only) == ("/host/dir", "/x", False)
    assert m.options["propagation"] == "rslave"
    m = parse_volume_flag("/anon")
    assert (m.type, m.source, m.target) == ("volume", "", "/anon")
    assert parse_volume_flag("vol:/x:nocopy").options["nocopy"] == "true"


def test_volume_flag_relative_source_becomes_absolute(tmp_path: Path) -> None:
    cwd = os.getcwd()
    os.chdir(tmp_path)
    try:
        m = parse_volume_flag("./sub:/x")
    finally:
        os.chdir(cwd)
    assert (m.type, m.source) == ("bind", str(tmp_path / "sub"))


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "invalid empty volume spec"),
        ("a:b:c:d", "invalid volume specification: 'a:b:c:d'"),
        (":/b", "invalid volume specification: ':/b'"),
        ("/data:ro", "invalid volume specification: '/data:ro'"),
        ("vol:/x:xx", "invalid mode: xx"),
        ("vol:/x:ro,rw", "invalid mode: ro,rw"),
        ("vol:/x:Z,z", "invalid mode: Z,z"),
        ("vol::b", "invalid mode: b"),
        (
            "vol:x",
            "invalid volume specification: 'vol:x': invalid mount config for type \"volume\": "
            "invalid mount path: 'x' mount path must be absolute",
        ),
        (
            "vol:/",
            "invalid volume specification: 'vol:/': invalid mount config for type \"volume\": "
            "invalid specification: destination can't be '/'",
        ),
        (
            "vol:/x:rshared",
            "invalid volume specification: 'vol:/x:rshared': invalid mount config for type "
            '"volume": field BindOptions must not be specified',
        ),
        (
            "/h:/x:nocopy",
            "invalid volume specification: '/h:/x:nocopy': invalid mount config for type "
            '"bind": field VolumeOptions must not be specified',
        ),
        ("x:/y", "create x: volume name is too short"),
        ("~/x:/y", 'create ~/x: "~/x" includes invalid characters for a local volume name'),
        ("relative", "invalid mount path: 'relative' mount path must be absolute"),
    ],
)
def test_volume_flag_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_volume_flag(value)
    assert message in str(info.value)
    assert info.value.exit_code == 125


def test_mount_flag_forms(tmp_path: Path) -> None:
    m = parse_mount_flag(f"type=bind,source={tmp_path},target=/x,readonly,bind-propagation=rslave")
    assert (m.type, m.source, m.target, m.read_only) == ("bind", str(tmp_path), "/x", True)
    assert m.options["propagation"] == "rslave"
    m = parse_mount_flag(f"type=bind,src={tmp_path},dst=/x,ro=false,bind-nonrecursive")
    assert not m.read_only and m.options["nonrecursive"] == "true"
    m = parse_mount_flag("src=vol1,destination=/d,volume-nocopy,volume-opt=type=tmpfs")
    assert (m.type, m.source, m.target) == ("volume", "vol1", "/d")
    assert m.options["nocopy"] == "true" and m.options["opt.type"] == "tmpfs"
    m = parse_mount_flag("type=volume,dst=/anon,volume-label=a=b,readonly=1")
    assert m.source == "" and m.read_only and m.options["label.a"] == "b"
    m = parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=64m,tmpfs-mode=1770")
    assert m.options["tmpfs-size"] == str(64 << 20) and m.options["tmpfs-mode"] == "1770"
    assert parse_mount_flag('"type=volume",dst=/q').target == "/q"  # CSV quoting


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("", "EOF"),
        ("src=foo", "target is required"),
        ("type=volume,dst=/x,bogus=1", "unexpected key 'bogus' in 'bogus=1'"),
        ("type=volume,dst=/x,readonly=maybe", "invalid value for readonly: maybe"),
        ("type=volume,dst=/x,novalue", "invalid field 'novalue' must be a key=value pair"),
        (
            "type=volume,dst=/x,bind-propagation=rshared",
            "cannot mix 'bind-*' options with mount type 'volume'",
        ),
        (
            "type=bind,src=/tmp,dst=/x,tmpfs-size=1m",
            "cannot mix 'tmpfs-*' options with mount type 'bind'",
        ),
        (
            "type=tmpfs,dst=/x,volume-nocopy",
            "cannot mix 'volume-*' options with mount type 'tmpfs'",
        ),
        ("type=tmpfs,dst=/x,tmpfs-size=abc", "invalid value for tmpfs-size: abc"),
        ("type=tmpfs,dst=/x,tmpfs-mode=999", "invalid value for tmpfs-mode: 999"),
    ],
)
def test_mount_flag_cli_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_mount_flag(value)
    assert str(info.value) == f'invalid argument "{value}" for "--mount" flag: {message}'
    assert info.value.exit_code == 125


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("type=bind,src=/nonexistent-dockyard,dst=/x",
         'invalid mount config for type "bind": bind source path does not exist: '
         "/nonexistent-dockyard"),
        ("type=bind,dst=/x", 'invalid mount config for type "bind": field Source must not be empty'),
        ("type=bind,src=/tmp,dst=/x,bind-propagation=bogus",
         'invalid mount config for type "bind": invalid propagation mode: bogus'),
        ("type=tmpfs,src=foo,dst=/x",
         'invalid mount config for type "tmpfs": field Source must not be specified'),
        ("type=foo,dst=/x", 'invalid mount config for type "foo": mount type unknown'),
        ("type=volume,dst=x",
         'invalid mount config for type "volume": invalid mount path: \'x\' mount path must be '
         "absolute"),
        ("type=volume,dst=/", 'invalid mount config for type "volume": invalid specification: '
         "destination can't be '/'"),
        ("type=volume,src=/abs,dst=/x", 'create /abs: "/abs" includes invalid characters'),
        ("type=volume,dst=/x,volume-subpath=a",
         'invalid mount config for type "volume": must not set Subpath when using anonymous '
         "volumes"),
        ("type=volume,src=vv,dst=/x,volume-subpath=../a",
         'invalid mount config for type "volume": subpath must be a relative path within the '
         "volume"),
    ],
)  # fmt: skip
def test_mount_flag_config_errors(value: str, message: str) -> None:
    with pytest.raises(InvalidArgument) as info:
        parse_mount_flag(value)
    assert str(info.value).startswith(message)


def test_tmpfs_flag() -> None:
    m = parse_tmpfs_flag("/run")
    assert (m.type, m.target, m.options["data"]) == ("tmpfs", "/run", "")
    m = parse_tmpfs_flag("/cache:size=64m,mode=1777,exec,uid=1000")
    assert m.options["data"] == "size=64m,mode=1777,exec,uid=1000"
    for bad, message in [
        ("x", "invalid mount path: 'x' mount path must be absolute"),
        ("/", "invalid specification: destination can't be '/'"),
        ("/x:bogus", 'invalid tmpfs option "bogus"'),
        ("/x:size=abc", 'invalid tmpfs option "size=abc"'),
        ("/x:color=red", 'invalid tmpfs option "color"'),
    ]:
        with pytest.raises(InvalidArgument, match=message.replace("(", r"\(")):
            parse_tmpfs_flag(bad)


def test_tmpfs_oci_options_follow_docker() -> None:
    plain = tmpfs_mount(parse_tmpfs_flag("/t"))
    assert plain == {
        "destination": "/t",
        "type": "tmpfs",
        "source": "tmpfs",
        "options": ["noexec", "nosuid", "nodev", "rprivate"],
    }
    assert tmpfs_mount(parse_tmpfs_flag("/t:size=1m,exec"))["options"] == [
        "nosuid", "nodev", "rprivate", "size=1m", "exec",
    ]  # fmt: skip
    mounted = tmpfs_mount(parse_mount_flag("type=tmpfs,dst=/t,tmpfs-size=2m,tmpfs-mode=700,ro"))
    assert mounted["options"] == [
        "noexec",
        "nosuid",
        "nodev",
        "rprivate",
        "ro",
        "mode=700",
        "size=2m",
    ]
    assert merge_tmpfs_options(["size=1m", "noexec", "size=2m", "exec"]) == ["size=2m", "exec"]


def test_volumes_from_parsing() -> None:
    assert parse_volumes_from("c1") == ("c1", "rw")
    assert parse_volumes_from("c1:ro") == ("c1", "ro")
    assert parse_volumes_from("c1:ro,z") == ("c1", "ro,z")
    with pytest.raises(InvalidArgument, match="cannot be an empty string"):
        parse_volumes_from("")
    for mode in ("rshared", "nocopy", "bogus", "ro,rw"):
        with pytest.raises(InvalidArgument, match=f"invalid mode: {mode}"):
            parse_volumes_from(f"c1:{mode}")


def test_storage_flags_duplicates_and_precedence(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="^Duplicate mount point: /x$"):
        parse_storage_flags(["aa:/x", "bb:/x"], [], [])
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        parse_storage_flags(["aa:/x/"], ["type=volume,src=bb,dst=/x"], [])
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        parse_storage_flags([], ["type=volume,src=bb,dst=/x", "type=tmpfs,dst=/x"], [])
    with pytest.raises(InvalidArgument, match="Duplicate mount point: /x"):
        parse_storage_flags(["aa:/x"], [], ["/x"])
    # an anonymous volume yields to anything else at its path; identical -v count once
    mounts = parse_storage_flags(["/x", "/x", "/y", "aa:/x"], [], ["/y:size=1m"])
    assert [(m.type, m.target, m.source) for m in mounts] == [
        ("volume", "/x", "aa"),
        ("tmpfs", "/y", ""),
    ]
    mounts = parse_storage_flags(["/only"], [], ["/t", "/t:exec"])
    assert [(m.type, m.target) for m in mounts] == [("tmpfs", "/t"), ("volume", "/only")]
    assert mounts[0].options["data"] == "exec"


def test_host_config_fields() -> None:
    mounts = parse_storage_flags(
        ["nv:/data", "/anon", "/h:/h:ro,z"],
        ["type=volume,src=v2,dst=/v2,volume-nocopy,readonly", "type=tmpfs,dst=/t2,tmpfs-size=2m"],
        ["/t1:size=1m,exec"],
    )
    assert host_config_fields(mounts) == {
        "Binds": ["nv:/data", "/h:/h:ro,z"],
        "Tmpfs": {"/t1": "size=1m,exec"},
        "Mounts": [
            {"Type": "volume", "Source": "v2", "Target": "/v2", "ReadOnly": True,
             "VolumeOptions": {"NoCopy": True}},
            {"Type": "tmpfs", "Target": "/t2", "TmpfsOptions": {"SizeBytes": 2 << 20}},
        ],
    }  # fmt: skip


def test_secure_join_stays_inside(tmp_path: Path) -> None:
    root = tmp_path / "rootfs"
    (root / "real").mkdir(parents=True)
    os.symlink("/etc", root / "abs")
    os.symlink("../../../../..", root / "up")
    os.symlink("real", root / "rel")
    assert secure_join(root, "/abs/passwd") == root / "etc/passwd"
    assert secure_join(root, "/up/etc") == root / "etc"
    assert secure_join(root, "/rel/x/../y") == root / "real/y"
    assert secure_join(root, "/../../..") == root


# -- the store ------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[tuple[Paths, Database, VolumeManager]]:
    paths = Paths(tmp_path / "root", tmp_path / "run")
    paths.ensure()
    db = Database(paths.db)
    try:
        yield paths, db, VolumeManager(paths, db)
    finally:
        db.close()
        _unmount_under(str(tmp_path))


def _unmount_under(prefix: str) -> None:
    points = []
    with open("/proc/self/mountinfo") as f:
        for line in f:
            point = line.split()[4]
            if point.startswith(prefix):
                points.append(point)
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def add_container(db: Database, container_id: str, spec: ContainerSpec) -> None:
    """A containers row as the engine records one (for in-use checks); other columns: '{}'."""
    values: dict[str, str] = {
        "id": container_id,
        "name": f"c-{container_id[:8]}",
        "image_id": "sha256:x",
        "image": spec.image,
        "created": "2024-01-01T00:00:00Z",
        "spec": json.dumps(spec.to_dict()),
    }
    for column in db.query("PRAGMA table_info(containers)"):
        if column["notnull"] and column["dflt_value"] is None:
            values.setdefault(column["name"], "{}")
    names = ", ".join(values)
    marks = ", ".join("?" for _ in values)
    with db.transaction() as conn:
        conn.execute(f"INSERT INTO containers ({names}) VALUES ({marks})", tuple(values.values()))


def drop_container(db: Database, container_id: str) -> None:
    with db.transaction() as conn:
        conn.execute("DELETE FROM containers WHERE id = ?", (container_id,))


def make_rootfs(path: Path) -> Path:
    """An image-like tree: /data with owned files, modes, links, xattrs; /file is a file."""
    data = path / "data"
    (data / "sub").mkdir(parents=True)
    (data / "owned.txt").write_text("image content\n")
    os.chown(data / "owned.txt", 1000, 1000)
    os.chmod(data / "owned.txt", 0o640)
    (data / "sub" / "setuid").write_text("x")
    os.chmod(data / "sub" / "setuid", 0o4755)
    os.symlink("/etc/passwd", data / "abs-link")
    os.symlink("owned.txt", data / "rel-link")
    os.link(data / "owned.txt", data / "hard.txt")
    os.mkfifo(data / "fifo")
    os.setxattr(data / "owned.txt", "user.origin", b"image")
    os.setxattr(data / "owned.txt", "trusted.marker", b"t")
    os.chown(data, 1000, 1000)
    os.chmod(data, 0o750)
    os.utime(data / "sub" / "setuid", (1_000_000_000, 1_000_000_000))
    (path / "file").write_text("not a dir")
    (path / "empty").mkdir()
    os.chown(path / "empty", 33, 33)
    return path


@needs_root
def test_copy_tree_preserves_metadata(tmp_path: Path) -> None:
    root = make_rootfs(tmp_path / "rootfs")
    dst = tmp_path / "vol"
    dst.mkdir()
    copy_tree(root / "data", dst)
    st = os.stat(dst)
    assert (st.st_uid, st.st_gid, st.st_mode & 0o7777) == (1000, 1000, 0o750)
    owned = os.stat(dst / "owned.txt")
    assert (owned.st_uid, owned.st_gid, owned.st_mode & 0o7777) == (1000, 1000, 0o640)
    assert (dst / "owned.txt").read_text() == "image content\n"
    assert os.stat(dst / "sub" / "setuid").st_mode & 0o7777 == 0o4755
    assert os.stat(dst / "sub" / "setuid").st_mtime == 1_000_000_000
    assert os.readlink(dst / "abs-link") == "/etc/passwd"
    assert os.readlink(dst / "rel-link") == "owned.txt"
    assert os.stat(dst / "hard.txt").st_ino == owned.st_ino
    assert (dst / "fifo").is_fifo()
    assert os.getxattr(dst / "owned.txt", "user.origin") == b"image"
    assert os.getxattr(dst / "owned.txt", "trusted.marker") == b"t"


def test_create_get_list_remove(store: tuple[Paths, Database, VolumeManager]) -> None:
    paths, db, vm = store
    vol = vm.create("data1", labels={"team": "a"})
    assert Path(vol.mountpoint) == paths.volumes / "data1" / "_data"
    assert Path(vol.mountpoint).is_dir()
    assert vm.create("data1").labels == {"team": "a"}  # existing: returned as it is
    anon = vm.create()
    assert len(anon.name) == 64 and anon.anonymous
    info = vm.inspect("data1")
    assert list(info) == ["CreatedAt", "Driver", "Labels", "Mountpoint", "Name", "Options", "Scope"]
    assert info["Labels"] == {"team": "a"} and info["Options"] is None
    assert [v.name for v in vm.list({"label": ["team=a"]})] == ["data1"]
    assert [v.name for v in vm.list({"name": ["^data"]})] == ["data1"]
    with pytest.raises(InvalidArgument, match="Invalid filter 'size'"):
        vm.list({"size": ["1"]})
    with pytest.raises(InvalidArgument, match=r"Invalid filter 'dangling=\[maybe\]'"):
        vm.list({"dangling": ["maybe"]})
    spec = ContainerSpec(image="busybox", mounts=[Mount("volume", "/d", "data1")])
    add_container(db, "c" * 64, spec)
    assert vm.in_use("data1") == ["c" * 64]
    assert [v.name for v in vm.list({"dangling": ["true"]})] == [anon.name]
    with pytest.raises(Conflict, match=f"remove data1: volume is in use - \\[{'c' * 64}\\]"):
        vm.remove("data1", force=True)
    drop_container(db, "c" * 64)
    vm.remove("data1")
    assert not (paths.volumes / "data1").exists()
    with pytest.raises(NotFound, match="get data1: no such volume"):
        vm.remove("data1")
    vm.remove("data1", force=True)


def test_create_errors(store: tuple[Paths, Database, VolumeManager]) -> None:
    _, _, vm = store
    with pytest.raises(InvalidArgument, match='create x1: invalid option: "bogus"'):
        vm.create("x1", options={"bogus": "1"})
    with pytest.raises(InvalidArgument, match='create x2: missing required option: "device"'):
        vm.create("x2", options={"type": "tmpfs"})
    with pytest.raises(DockyardError, match='plugin "nope" not found'):
        vm.create("x3", driver="nope")
    assert vm.list() == []


def test_prune_anonymous_unless_all(store: tuple[Paths, Database, VolumeManager]) -> None:
    _, db, vm = store
    named = vm.create("keepme")
    anon = vm.create()
    used = vm.create()
    with_opts = vm.create(options={"type": "tmpfs", "device": "tmpfs"})
    (Path(anon.mountpoint) / "blob").write_bytes(b"x" * 5000)
    add_container(db, "d" * 64, ContainerSpec(image="i", mounts=[Mount("volume", "/u", used.name)]))
    removed, size = vm.prune()
    assert removed == [anon.name] and size == 5000
    removed, _ = vm.prune(filters={"label!": ["nothing"]})
    assert removed == []
    removed, _ = vm.prune(all=True)
    assert removed == [named.name]
    assert {v.name for v in vm.list()} == {used.name, with_opts.name}


@pytest.fixture
def rootfs(tmp_path: Path) -> Path:
    return make_rootfs(tmp_path / "rootfs")


@needs_root
def test_prepare_mounts_copy_up(store: tuple[Paths, Database, VolumeManager], rootfs: Path) -> None:
    paths, db, vm = store
    spec = ContainerSpec(
        image="img",
        mounts=parse_storage_flags(["named:/data", "/empty", "nc:/data2:nocopy"], [], []),
    )
    image: dict[str, Any] = {"config": {"Volumes": {"/data": {}, "/empty": {}, "/missing": {}}}}
    cid = "a" * 64
    (rootfs / "data2").mkdir()
    (rootfs / "data2" / "f").write_text("skip me")
    add_container(db, cid, spec)
    mounts = vm.prepare_mounts(cid, spec, image, rootfs, [])
    by_dest = {m["destination"]: m for m in mounts}
    assert set(by_dest) == {"/data", "/empty", "/data2", "/missing"}
    data = Path(by_dest["/data"]["source"])
    assert data == paths.volumes / "named" / "_data"
    assert by_dest["/data"]["options"] == ["rbind", "rprivate"]
    assert (data / "owned.txt").read_text() == "image content\n"
    assert os.stat(data).st_uid == 1000 and os.stat(data).st_mode & 0o777 == 0o750
    assert os.stat(by_dest["/empty"]["source"]).st_uid == 33  # ownership of an empty dir
    assert os.listdir(by_dest["/data2"]["source"]) == []  # nocopy
    # restart: same anonymous volumes, no second copy even when emptied
    (data / "owned.txt").unlink()
    again = {m["destination"]: m["source"] for m in vm.prepare_mounts(cid, spec, image, rootfs, [])}
    assert again == {d: m["source"] for d, m in by_dest.items()}
    assert not (data / "owned.txt").exists()
    # another container: the named volume is not empty, so nothing is copied over it
    (data / "mine").write_text("keep")
    other = "b" * 64
    add_container(db, other, spec)
    vm.prepare_mounts(other, spec, image, rootfs, [])
    assert sorted(os.listdir(data)) == ["abs-link", "fifo", "hard.txt", "mine", "rel-link", "sub"]
    shown = vm.mounts_for_inspect(cid, spec)
    named = next(m for m in shown if m["Destination"] == "/data")
    assert named == {
        "Type": "volume", "Name": "named", "Source": str(data), "Destination": "/data",
        "Driver": "local", "Mode": "z", "RW": True, "Propagation": "",
    }  # fmt: skip
    anon = next(m for m in shown if m["Destination"] == "/empty")
    assert anon["Mode"] == "" and len(anon["Name"]) == 64
    # rm -v: anonymous volumes go, named ones stay
    anon_names = {m["Name"] for m in shown if m["Name"] != "named" and m["Name"] != "nc"}
    vm.release(other, remove_anonymous=True)
    drop_container(db, other)
    vm.release(cid, remove_anonymous=True)
    drop_container(db, cid)
    names = {v.name for v in vm.list()}
    assert names == {"named", "nc"} and not anon_names & names
    assert vm.in_use("named") == []


@needs_root
def test_prepare_mounts_binds_and_errors(
    store: tuple[Paths, Database, VolumeManager], rootfs: Path, tmp_path: Path
) -> None:
    _, _, vm = store
    missing = tmp_path / "made" / "by" / "v"
    spec = ContainerSpec(image="i", mounts=parse_storage_flags([f"{missing}:/h:ro"], [], ["/t"]))
    mounts = vm.prepare_mounts("e" * 64, spec, {}, rootfs, [])
    assert missing.is_dir()  # -v creates a missing host path
    assert {"destination": "/h", "type": "bind", "source": str(missing),
            "options": ["rbind", "ro", "rprivate"]} in mounts  # fmt: skip
    gone = tmp_path / "gone"
    gone.mkdir()
    spec = ContainerSpec(image="i", mounts=[parse_mount_flag(f"type=bind,src={gone},dst=/g")])
    gone.rmdir()
    with pytest.raises(InvalidArgument, match=f"bind source path does not exist: {gone}"):
        vm.prepare_mounts("f" * 64, spec, {}, rootfs, [])
    spec = ContainerSpec(image="i", mounts=[parse_volume_flag("/file")])
    with pytest.raises(DockyardError, match="cannot mount volume over existing file"):
        vm.prepare_mounts("f" * 64, spec, {}, rootfs, [])


def test_prepare_mounts_fast_path_touches_no_database(tmp_path: Path) -> None:
    vm = VolumeManager(Paths(tmp_path / "r", tmp_path / "rr"), None)  # type: ignore[arg-type]
    spec = ContainerSpec(image="busybox")
    started = time.perf_counter()
    for _ in range(1000):
        assert vm.prepare_mounts("x", spec, {"config": {"Env": []}}, tmp_path, []) == []
    assert time.perf_counter() - started < 0.5


@needs_root
def test_tmpfs_backed_volume(store: tuple[Paths, Database, VolumeManager], rootfs: Path) -> None:
    _, db, vm = store
    vol = vm.create("tv", options={"type": "tmpfs", "device": "tmpfs", "o": "size=1m"})
    assert not mountops.is_mountpoint(vol.mountpoint)
    spec = ContainerSpec(image="i", mounts=[parse_volume_flag("tv:/data")])
    add_container(db, "1" * 64, spec)
    vm.prepare_mounts("1" * 64, spec, {}, rootfs, [])
    assert mountops.is_mountpoint(vol.mountpoint)
    fs = subprocess.run(["stat", "-f", "-c", "%T %b %S", vol.mountpoint], capture_output=True,
                        text=True, check=True).stdout.split()  # fmt: skip
    assert fs[0] == "tmpfs" and int(fs[1]) * int(fs[2]) == 1 << 20
    assert (Path(vol.mountpoint) / "owned.txt").exists()  # copied up into the tmpfs
    vm.release("1" * 64, remove_anonymous=True)
    drop_container(db, "1" * 64)
    assert not mountops.is_mountpoint(vol.mountpoint)  # last user gone: unmounted
    assert vm.find("tv") is not None
    vm.remove("tv")


@needs_root
def test_bind_backed_volume(
    store: tuple[Paths, Database, VolumeManager], rootfs: Path, tmp_path: Path
) -> None:
    _, _, vm = store
    host = tmp_path / "hostdir"
    host.mkdir()
    (host / "hello").write_text("from host")
    vol = vm.create("bv", options={"type": "none", "o": "bind", "device": str(host)})
    spec = ContainerSpec(image="i", mounts=[parse_volume_flag("bv:/srv:nocopy")])
    vm.prepare_mounts("2" * 64, spec, {}, rootfs, [])
    assert (Path(vol.mountpoint) / "hello").read_text() == "from host"
    vm.remove("bv")
    assert not mountops.is_mountpoint(vol.mountpoint)
    assert (host / "hello").exists()  # removing the volume never deletes the device's files


@needs_root
def test_volumes_from_mounts(store: tuple[Paths, Database, VolumeManager], rootfs: Path) -> None:
    _, db, vm = store
    src_spec = ContainerSpec(image="i", mounts=parse_storage_flags(["shared:/s", "/anon"], [], []))
    add_container(db, "3" * 64, src_spec)  # created, never started
    borrowed = vm.volumes_from_mounts("3" * 64, src_spec, "ro")
    assert {(m.target, m.read_only) for m in borrowed} == {("/s", True), ("/anon", True)}
    anon = next(m.source for m in borrowed if m.target == "/anon")
    assert len(anon) == 64
    spec = ContainerSpec(image="i")
    mounts = vm.prepare_mounts("4" * 64, spec, {}, rootfs, borrowed)
    assert all("ro" in m["options"] for m in mounts)
    # the source, started later, uses the same anonymous volume
    src = {
        m["destination"]: m["source"] for m in vm.prepare_mounts("3" * 64, src_spec, {}, rootfs, [])
    }
    assert src["/anon"] == str(vm.data_dir(anon))


# -- runc: the mounts work in real containers ----------------------------------------


@pytest.fixture(scope="module")
def busybox_rootfs(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from conftest import make_busybox_tar

    base = tmp_path_factory.mktemp("bbroot")
    tar = make_busybox_tar(base / "bb.tar")
    root = base / "rootfs"
    root.mkdir()
    with tarfile.open(tar) as archive:
        archive.extractall(root, filter="tar")
    (root / "data").mkdir()
    (root / "data" / "from-image").write_text("image\n")
    return root


class Runc:
    """Runs one-shot containers with given extra mounts; deletes them afterwards."""

    def __init__(self, base: Path, rootfs: Path) -> None:
        self.base, self.rootfs, self.state = base, rootfs, base / "runc-state"
        self.ids: list[str] = []

    def run(self, mounts: list[dict[str, Any]], script: str) -> subprocess.CompletedProcess[str]:
        cid = f"dyvoltest-{os.getpid()}-{len(self.ids)}"
        self.ids.append(cid)
        bundle = self.base / cid
        bundle.mkdir()
        subprocess.run([RUNC, "spec"], cwd=bundle, check=True)
        config = json.loads((bundle / "config.json").read_text())
        config["root"] = {"path": str(self.rootfs), "readonly": True}
        caps = ["CAP_CHOWN", "CAP_DAC_OVERRIDE", "CAP_FOWNER", "CAP_SETUID", "CAP_SETGID"]
        config["process"].update(terminal=False, args=["/bin/sh", "-c", script])
        for kind in ("bounding", "effective", "permitted"):
            config["process"]["capabilities"][kind] += caps
        config["mounts"] += mounts
        (bundle / "config.json").write_text(json.dumps(config))
        return subprocess.run(
            [RUNC, "--root", str(self.state), "run", "--bundle", str(bundle), cid],
            capture_output=True, text=True, timeout=60, stdin=subprocess.DEVNULL,
        )  # fmt: skip

    def cleanup(self) -> None:
        for cid in self.ids:
            subprocess.run([RUNC, "--root", str(self.state), "delete", "--force", cid],
                           capture_output=True)  # fmt: skip


@pytest.fixture
def runc(tmp_path: Path, busybox_rootfs: Path) -> Iterator[Runc]:
    if os.geteuid() != 0 or not os.path.exists(RUNC):
        pytest.skip("needs root and runc")
    runner = Runc(tmp_path, busybox_rootfs)
    try:
        yield runner
    finally:
        runner.cleanup()


def test_runc_named_volume_shared_between_containers(
    store: tuple[Paths, Database, VolumeManager], runc: Runc, busybox_rootfs: Path
) -> None:
    _, _, vm = store
    spec = ContainerSpec(image="bb", mounts=parse_storage_flags(["shared:/data"], [], []))
    writer = vm.prepare_mounts("5" * 64, spec, {}, busybox_rootfs, [])
    out = runc.run(writer, "cat /data/from-image && echo written > /data/new")
    assert out.returncode == 0, out.stderr
    assert out.stdout == "image\n"  # copy-up of the image's /data
    spec_ro = ContainerSpec(image="bb", mounts=parse_storage_flags(["shared:/data:ro"], [], []))
    reader = vm.prepare_mounts("6" * 64, spec_ro, {}, busybox_rootfs, [])
    out = runc.run(reader, "cat /data/new; echo more > /data/x || echo refused")
    assert out.stdout.splitlines() == ["written", "refused"], out.stderr
    assert "Read-only file system" in out.stderr


def test_runc_bind_and_tmpfs(
    store: tuple[Paths, Database, VolumeManager], runc: Runc, busybox_rootfs: Path, tmp_path: Path
) -> None:
    _, _, vm = store
    host = tmp_path / "host"
    host.mkdir()
    (host / "in").write_text("hi\n")
    flags = parse_storage_flags([f"{host}:/h"], [], ["/t:size=1m", "/tx:exec"])
    mounts = vm.prepare_mounts(
        "7" * 64, ContainerSpec(image="bb", mounts=flags), {}, busybox_rootfs, []
    )
    script = (
        "cat /h/in; echo out > /h/out; grep -E ' /t | /tx ' /proc/mounts;"
        "for d in /t /tx; do printf '#!/bin/sh\\necho exec\\n' > $d/s; chmod +x $d/s; done;"
        "/t/s || echo noexec; /tx/s"
    )
    out = runc.run(mounts, script)
    lines = out.stdout.splitlines()
    assert lines[0] == "hi" and (host / "out").read_text() == "out\n"
    t_line = next(line for line in lines if " /t " in line)
    assert (
        "noexec" in t_line and "nosuid" in t_line and "nodev" in t_line and "size=1024k" in t_line
    )
    assert lines[-2:] == ["noexec", "exec"], out.stderr


# -- the CLI ------------------------------------------------------------------------


def test_cli_volume_commands(dy: Any) -> None:
    assert dy("volume", "create", "v1").stdout == "v1\n"
    anon = dy("volume", "create", check=True).stdout.strip()
    assert len(anon) == 64
    made = dy("volume", "create", "--label", "a=b", "--label", "c", "-d", "local",
              "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=10m", "tv")  # fmt: skip
    assert made.returncode == 0, made.stderr
    listed = dy("volume", "ls", check=True).stdout.splitlines()
    assert listed[0] == "DRIVER    VOLUME NAME"
    assert listed[1:] == sorted(f"local     {n}" for n in (anon, "v1", "tv"))
    assert dy("volume", "ls", "-q", "-f", "label=a=b").stdout == "tv\n"
    assert dy("volume", "list", "-q", "--filter", "name=v1").stdout == "v1\n"
    assert dy("volume", "ls", "-q", "--filter", "dangling=true").stdout.split() == sorted(
        [anon, "tv", "v1"]
    )
    assert (
        dy("volume", "ls", "--format", "{{.Name}} {{.Labels}}", "-f", "name=tv").stdout
        == "tv a=b,c=\n"
    )
    row = json.loads(dy("volume", "ls", "--format", "json", "-f", "name=v1").stdout)
    assert row["Name"] == "v1" and row["Driver"] == "local" and row["Scope"] == "local"
    info = json.loads(dy("volume", "inspect", "tv", check=True).stdout)
    assert info[0]["Options"] == {"device": "tmpfs", "o": "size=10m", "type": "tmpfs"}
    assert info[0]["Labels"] == {"a": "b", "c": ""}
    assert info[0]["Mountpoint"].endswith("/volumes/tv/_data")
    assert dy("volume", "inspect", "-f", "{{.Name}}:{{.Driver}}", "v1").stdout == "v1:local\n"
    missing = dy("volume", "inspect", "v1", "nope")
    assert missing.returncode == 1 and "get nope: no such volume" in missing.stderr
    for args, message in [
        (["create", "-o", "bogus=1", "x1"], 'create x1: invalid option: "bogus"'),
        (["create", "x"], "volume name is too short"),
        (["ls", "--filter", "dangling=maybe"], "Invalid filter 'dangling=[maybe]'"),
        (["ls", "--filter", "bogus=1"], "Invalid filter 'bogus'"),
        (["rm", "nope"], "get nope: no such volume"),
    ]:
        proc = dy("volume", *args)
        assert proc.returncode == 1 and message in proc.stderr, (args, proc.stderr)
    bad_flag = dy("volume", "ls", "--filter", "dangling")
    assert bad_flag.returncode == 125 and "bad format of filter" in bad_flag.stderr
    removed = dy("volume", "rm", "v1", "nope")
    assert removed.returncode == 1 and removed.stdout == "v1\n"
    assert dy("volume", "rm", "-f", "nope").returncode == 0
    declined = dy("volume", "prune", input="n\n")
    assert declined.returncode == 0 and "Deleted" not in declined.stdout
    assert "WARNING! This will remove anonymous local volumes" in declined.stdout
    pruned = dy("volume", "prune", "-f", check=True).stdout
    assert pruned == f"Deleted Volumes:\n{anon}\n\nTotal reclaimed space: 0B\n"
    assert (
        dy("volume", "prune", "--all", "--force").stdout == "Total reclaimed space: 0B\n"
    )  # tv has options
    assert dy("volume", "remove", "tv").stdout == "tv\n"
    assert dy("volume", "ls", "-q").stdout == ""


def test_cli_volume_data_survives(dy: Any, dockyard_env: dict[str, str]) -> None:
    dy("volume", "create", "keep", check=True)
    mountpoint = json.loads(dy("volume", "inspect", "keep").stdout)[0]["Mountpoint"]
    Path(mountpoint, "state").write_text("42")
    assert dy("volume", "create", "keep").returncode == 0  # idempotent, data untouched
    assert Path(mountpoint, "state").read_text() == "42"


# -- end to end, through `dockyard run` ---------------------------------------------------


@pytest.fixture
def run_works(dy: Any, busybox_tar: Path) -> str:
    """busybox:latest in the test's store, or a skip while ``import``/``run`` do not work."""
    imported = dy("import", str(busybox_tar), "busybox:latest")
    probe = dy("run", "--rm", "busybox:latest", "true") if imported.returncode == 0 else imported
    if probe.returncode != 0:
        pytest.skip(f"dockyard import/run not working yet: {probe.stderr.strip()[-200:]}")
    return "busybox:latest"


def settle(dy: Any) -> None:
    """Wait (briefly) until no container is left: ``run --rm`` removal may still be finishing."""
    deadline = time.monotonic() + 15
    while dy("ps", "-aq").stdout.strip() and time.monotonic() < deadline:
        time.sleep(0.2)


def test_e2e_named_volume_between_containers(dy: Any, run_works: str) -> None:
    img = run_works
    dy("run", "--rm", "-v", "e2e:/data", img, "sh", "-c", "echo hello > /data/f", check=True)
    out = dy("run", "--rm", "-v", "e2e:/data:ro", img, "cat", "/data/f", check=True)
    assert out.stdout == "hello\n"
    refused = dy("run", "--rm", "-v", "e2e:/data:ro", img, "sh", "-c", "echo x > /data/g")
    assert refused.returncode != 0 and "Read-only file system" in refused.stderr
    settle(dy)
    dy("create", "--name", "holder", "-v", "e2e:/data", img, "true", check=True)
    in_use = dy("volume", "rm", "-f", "e2e")
    assert in_use.returncode == 1 and "remove e2e: volume is in use - [" in in_use.stderr
    dy("rm", "holder", check=True)
    assert dy("volume", "rm", "e2e").returncode == 0


def test_e2e_bind_anonymous_and_volumes_from(dy: Any, run_works: str, tmp_path: Path) -> None:
    img = run_works
    host = tmp_path / "bind"
    out = dy("run", "--rm", "-v", f"{host}:/b", img, "sh", "-c", "echo in > /b/f; echo ok")
    assert out.returncode == 0 and (host / "f").read_text() == "in\n", out.stderr
    bad = dy("run", "--rm", "--mount", f"type=bind,src={tmp_path}/nope,dst=/x", img, "true")
    assert bad.returncode == 125
    assert (
        f'invalid mount config for type "bind": bind source path does not exist: {tmp_path}/nope'
        in bad.stderr
    )
    dup = dy("run", "--rm", "-v", "aa:/x", "-v", "bb:/x", img, "true")
    assert dup.returncode == 125 and "Duplicate mount point: /x" in dup.stderr
    dy("run", "--name", "src", "-v", "/anon", img, "sh", "-c", "echo shared > /anon/f", check=True)
    anon = dy("volume", "ls", "-q", check=True).stdout.split()
    assert len(anon) == 1
    got = dy("run", "--rm", "--volumes-from", "src:ro", img, "cat", "/anon/f", check=True)
    assert got.stdout == "shared\n"
    settle(dy)
    dy("rm", "-v", "src", check=True)
    assert dy("volume", "ls", "-q").stdout == ""
    dy(
        "run",
        "--rm",
        "--tmpfs",
        "/scratch:size=1m",
        img,
        "sh",
        "-c",
        "grep ' /scratch ' /proc/mounts",
        check=True,
    )


def test_e2e_anonymous_removed_with_rm_and_tmpfs_volume(dy: Any, run_works: str) -> None:
    img = run_works
    dy("run", "--rm", "-v", "/anon", img, "sh", "-c", "echo x > /anon/f", check=True)
    settle(dy)
    assert dy("volume", "ls", "-q").stdout == ""  # --rm removes anonymous volumes
    dy("run", "--name", "keeper", "-v", "/anon", "-v", "named:/n", img, "true", check=True)
    names = dy("volume", "ls", "-q").stdout.split()
    assert len(names) == 2 and "named" in names
    dy("rm", "keeper", check=True)  # without -v anonymous volumes stay
    assert len(dy("volume", "ls", "-q").stdout.split()) == 2
    dy("volume", "prune", "-f", check=True)
    assert dy("volume", "ls", "-q").stdout == "named\n"
    dy("volume", "create", "-o", "type=tmpfs", "-o", "device=tmpfs", "-o", "o=size=1m", "tv",
       check=True)  # fmt: skip
    script = "grep ' /t ' /proc/mounts"
    out = dy("run", "--name", "tvuser", "-v", "tv:/t", img, "sh", "-c", script, check=True)
    assert out.stdout.startswith("tmpfs /t tmpfs") and "size=1024k" in out.stdout
    mountpoint = json.loads(dy("volume", "inspect", "tv").stdout)[0]["Mountpoint"]
    assert mountops.is_mountpoint(mountpoint)
    dy("rm", "tvuser", check=True)
    assert not mountops.is_mountpoint(mountpoint)  # the last user is gone

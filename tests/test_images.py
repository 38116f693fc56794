"""The image store and the image commands (images, inspect, tag, rmi, history, import, commit)."""

from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import tarfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from dockyard.config import Paths
from dockyard.containers import cp, rootfs
from dockyard.db import Database
from dockyard.errors import Conflict, InvalidArgument, NotFound
from dockyard.images import reference
from dockyard.images.changes import apply_changes
from dockyard.images.store import ImageStore

# -- references -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "name", "tag", "digest", "familiar"),
    [
        ("redis", "docker.io/library/redis", None, None, "redis"),
        ("redis:7", "docker.io/library/redis", "7", None, "redis:7"),
        ("user/app", "docker.io/user/app", None, None, "user/app"),
        (
            "docker.io/library/busybox:latest",
            "docker.io/library/busybox",
            "latest",
            None,
            "busybox:latest",
        ),
        ("index.docker.io/library/busybox", "docker.io/library/busybox", None, None, "busybox"),
        ("host:5000/ns/app:tag", "host:5000/ns/app", "tag", None, "host:5000/ns/app:tag"),
        ("localhost/app", "localhost/app", None, None, "localhost/app"),
        ("localhost:5000/x:1", "localhost:5000/x", "1", None, "localhost:5000/x:1"),
        ("Example.com/a/b", "Example.com/a/b", None, None, "Example.com/a/b"),
        ("a.b-c/d__e/f.g", "a.b-c/d__e/f.g", None, None, "a.b-c/d__e/f.g"),
        (
            "busybox@sha256:" + "a" * 64,
            "docker.io/library/busybox",
            None,
            "sha256:" + "a" * 64,
            "busybox@sha256:" + "a" * 64,
        ),
        (
            "busybox:1@sha256:" + "b" * 64,
            "docker.io/library/busybox",
            "1",
            "sha256:" + "b" * 64,
            "busybox:1@sha256:" + "b" * 64,
        ),
    ],
)
def test_reference_parse(
    text: str, name: str, tag: str | None, digest: str | None, familiar: str
) -> None:
    ref = reference.parse(text)
    assert (ref.name, ref.tag, ref.digest) == (name, tag, digest)
    assert ref.familiar() == familiar


@pytest.mark.parametrize(
    "text",
    [
        "",
        "UPPER",
        "a:b:c",
        "-bad",
        "a//b",
        "busybox@sha256:abc",
        "a/b:",
        ":tag",
        "a b",
        "busybox:" + "t" * 129,
        "x/" + "a" * 260,
    ],
)
def test_reference_invalid(text: str) -> None:
    with pytest.raises(InvalidArgument) as err:
        reference.parse(text)
    message = str(err.value)
    assert "invalid reference format" in message or "must not be more than" in message


def test_reference_defaults_and_matching() -> None:
    assert reference.parse_tagged("redis").string() == "docker.io/library/redis:latest"
    assert "must be lowercase" in _error(lambda: reference.parse("Busybox"))
    assert "64-byte hexadecimal" in _error(lambda: reference.parse("a" * 64))
    ref = reference.parse("docker.io/library/busybox:latest")
    assert reference.match("busy*", ref)
    assert reference.match("busybox:lat*", ref)
    assert not reference.match("*/busybox", ref)
    assert not reference.match("library/*", reference.parse("library/x"))
    assert reference.match("localhost:5000/*", reference.parse("localhost:5000/x:1"))


def _error(fn: object) -> str:
    try:
        fn()  # type: ignore[operator]
    except InvalidArgument as err:
        return str(err)
    raise AssertionError("no error")


# -- --change --------------------------------------------------------------------------------


def test_apply_changes_dockerfile_syntax() -> None:
    config = apply_changes(
        {"Env": ["PATH=/bin"]},
        [
            'CMD ["echo", "hi there"]',
            "ENTRYPOINT /bin/sh -c",
            'ENV A=1 B="two words" PATH=$PATH:/usr/bin',
            "ENV LEGACY value with spaces",
            "WORKDIR /srv",
            "WORKDIR app",
            "USER nobody:nogroup",
            "EXPOSE 80 53/udp 8000-8001",
            'LABEL version="1.0" maintainer=me',
            'VOLUME ["/data", "/logs"]',
            "STOPSIGNAL SIGINT",
            "HEALTHCHECK --interval=5s --retries=2 CMD wget -q localhost",
        ],
    )
    assert config["Cmd"] == ["echo", "hi there"]
    assert config["Entrypoint"] == ["/bin/sh", "-c", "/bin/sh -c"]
    assert config["Env"] == ["PATH=/bin:/usr/bin", "A=1", "B=two words", "LEGACY=value with spaces"]
    assert config["WorkingDir"] == "/srv/app"
    assert config["User"] == "nobody:nogroup"
    assert config["ExposedPorts"] == {"80/tcp": {}, "53/udp": {}, "8000/tcp": {}, "8001/tcp": {}}
    assert config["Labels"] == {"version": "1.0", "maintainer": "me"}
    assert config["Volumes"] == {"/data": {}, "/logs": {}}
    assert config["StopSignal"] == "SIGINT"
    assert config["Healthcheck"] == {
        "Test": ["CMD-SHELL", "wget -q localhost"],
        "Interval": 5_000_000_000,
        "Retries": 2,
    }
    with pytest.raises(InvalidArgument, match="RUN is not a valid change command"):
        apply_changes({}, ["RUN echo"])


# -- store level ------------------------------------------------------------------------------


@pytest.fixture
def store(tmp_path: Path) -> Iterator[ImageStore]:
    paths = Paths(tmp_path / "root", tmp_path / "run")
    paths.ensure()
    db = Database(paths.db)
    yield ImageStore(paths, db)
    db.close()


def _store_for(env: dict[str, str]) -> ImageStore:
    paths = Paths(Path(env["DOCKYARD_ROOT"]), Path(env["DOCKYARD_RUNROOT"]))
    paths.ensure()
    return ImageStore(paths, Database(paths.db))


def _tar(files: dict[str, bytes]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w") as tar:
        for name, data in files.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(data))
    return buf.getvalue()


def test_import_resolve_and_layer_dirs(store: ImageStore, busybox_tar: Path) -> None:
    with open(busybox_tar, "rb") as f:
        image = store.import_tar(f, ["CMD sh"], "", "busybox")
    assert image.tags == ["docker.io/library/busybox:latest"]
    assert image.repo_tags == ["busybox:latest"]
    assert image.config["config"]["Cmd"] == ["/bin/sh", "-c", "sh"]
    assert image.config["history"][0]["comment"] == "Imported from -"
    for ref in (
        "busybox",
        "busybox:latest",
        "docker.io/library/busybox",
        image.id,
        image.id[7:],
        image.id[7:19],
        image.id[:15],
    ):
        assert store.resolve(ref).id == image.id
    with pytest.raises(NotFound, match="No such image: nothere"):
        store.resolve("nothere")
    (layer,) = store.layer_dirs(image)
    assert (layer / "bin/busybox").is_file()
    assert os.readlink(layer / "bin/sh") == "/bin/busybox"
    expected = 0  # Docker's layer size: files and symlinks (their target length)
    for dirpath, _dirs, files in os.walk(layer):
        expected += sum(os.lstat(os.path.join(dirpath, f)).st_size for f in files)
    assert image.size == expected
    # a second import of the same content shares the unpacked layer
    with open(busybox_tar, "rb") as f:
        again = store.import_tar(f, [], "again", "other:1")
    assert again.id != image.id and again.layers == image.layers
    assert [n for n in os.listdir(store.paths.layers) if n != "l"] == [image.layers[0][7:]]
    assert store.get(image.id).tags == ["docker.io/library/busybox:latest"]


def test_remove_keeps_shared_layers_and_gc(store: ImageStore) -> None:
    base = store.import_tar(io.BytesIO(_tar({"a": b"1"})), [], "", "one")
    two = store.import_tar(io.BytesIO(_tar({"a": b"1"})), [], "", "two")
    store.tag("one", "alias:x")
    assert store.remove("alias:x") == [("Untagged", "alias:x")]
    assert store.remove("one") == [("Untagged", "one:latest"), ("Deleted", base.id)]
    assert store.layer_dirs(two)[0].is_dir()
    records = store.remove("two")
    assert records == [("Untagged", "two:latest"), ("Deleted", two.id), ("Deleted", two.layers[0])]
    assert os.listdir(store.paths.layers) == ["l"] or os.listdir(store.paths.layers) == []
    assert list(store.content.iter()) == []
    assert os.listdir(store.paths.tmp) == []


def test_rmi_conflicts(store: ImageStore) -> None:
    image = store.import_tar(io.BytesIO(_tar({"f": b"x"})), [], "", "app:1")
    store.tag("app:1", "other:2")
    short = image.id[7:19]
    with pytest.raises(
        Conflict,
        match=f"unable to delete {short} \\(must be forced\\) - image is "
        "referenced in multiple repositories",
    ):
        store.remove(short)
    _add_container(store, "c" * 64, image.id, "exited")
    assert store.remove("other:2") == [("Untagged", "other:2")]
    with pytest.raises(
        Conflict,
        match='unable to remove repository reference "app:1" \\(must '
        f"force\\) - container cccccccccccc is using its referenced "
        f"image {short}",
    ):
        store.remove("app:1")
    _set_state(store, "c" * 64, "running")
    with pytest.raises(Conflict, match="cannot be forced\\) - image is being used by running"):
        store.remove(image.id, force=True)
    _set_state(store, "c" * 64, "exited")
    # forced: the image goes, but its layers stay for the container
    assert store.remove("app:1", force=True) == [("Untagged", "app:1"), ("Deleted", image.id)]
    assert store.layer_dirs(image)[0].is_dir()
    assert store.get(image.id).layers == image.layers  # the container can still start
    with pytest.raises(NotFound):
        store.resolve(image.id)
    store.db.conn.execute("DELETE FROM containers")
    assert store.gc() > 0
    assert not store.layer_dirs(image)[0].exists()


def _add_container(store: ImageStore, cid: str, image_id: str, status: str) -> None:
    with store.db.transaction() as conn:
        conn.execute(
            "INSERT INTO containers (id, name, image_id, image, created, spec, config, state)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
            (
                cid,
                "c" + cid[:6],
                image_id,
                "app:1",
                "2024-01-01T00:00:00Z",
                "{}",
                "{}",
                json.dumps({"status": status}),
            ),
        )


def _set_state(store: ImageStore, cid: str, status: str) -> None:
    with store.db.transaction() as conn:
        conn.execute(
            "UPDATE containers SET state = ? WHERE id = ?", (json.dumps({"status": status}), cid)
        )


def test_commit_from_overlay(store: ImageStore, busybox_tar: Path) -> None:
    with open(busybox_tar, "rb") as f:
        base = store.import_tar(f, ["CMD sh"], "", "busybox")
    cid = "d" * 64
    rootfs.prepare(store.paths, cid)
    try:
        merged = rootfs.mount(store.paths, cid, store.layer_dirs(base))
        (merged / "hello").write_text("hi\n")
        os.unlink(merged / "bin/ls")
        with open(merged / "etc/passwd", "a") as f:
            f.write("extra:x:5:5::/:/bin/sh\n")
        assert rootfs.changes(store.paths, cid) == [
            ("C", "/bin"),
            ("D", "/bin/ls"),
            ("C", "/etc/passwd"),
            ("A", "/hello"),
        ]
        image = store.commit(
            cid,
            base=base,
            changes=["ENV X=1"],
            author="me <me@x>",
            message="snapshot",
            tags=["snap:1"],
            container_config={"Cmd": ["cat", "/hello"], "Hostname": "abc"},
        )
    finally:
        rootfs.remove(store.paths, cid)
    assert image.parent == base.id
    assert image.layers[:1] == base.layers and len(image.layers) == 2
    assert image.config["config"] == {"Cmd": ["cat", "/hello"], "Hostname": "abc", "Env": ["X=1"]}
    assert "comment" not in image.config  # as Docker: the message goes to the history
    assert image.config["author"] == "me <me@x>"
    history = store.history("snap:1")
    assert [h.id for h in history] == [image.id, base.id]
    assert history[0].created_by == "cat /hello" and history[0].comment == "snapshot"
    top = store.layer_dirs(image)[1]
    assert (top / "hello").read_text() == "hi\n"
    assert os.lstat(top / "bin/ls").st_rdev == 0  # a whiteout
    cid2 = "e" * 64
    rootfs.prepare(store.paths, cid2)
    try:
        merged = rootfs.mount(store.paths, cid2, store.layer_dirs(image))
        assert (merged / "hello").read_text() == "hi\n"
        assert not (merged / "bin/ls").exists() and (merged / "bin/cat").exists()
    finally:
        rootfs.remove(store.paths, cid2)
    with pytest.raises(Conflict, match="image has dependent child images"):
        store.remove(base.id, force=True)
    # untagging the parent leaves it as an intermediate image
    assert store.remove("busybox") == [("Untagged", "busybox:latest")]
    records = store.remove("snap:1")
    assert ("Deleted", image.id) in records and ("Deleted", base.id) in records
    assert store.list() == []


def test_empty_commit_adds_no_layer(store: ImageStore) -> None:
    base = store.import_tar(io.BytesIO(_tar({"f": b"x"})), [], "", "base")
    cid = "f" * 64
    rootfs.prepare(store.paths, cid)
    try:
        image = store.commit(cid, base=base, changes=['CMD ["true"]'], tags=[])
    finally:
        rootfs.remove(store.paths, cid)
    assert image.layers == base.layers
    assert image.config["history"][-1]["empty_layer"] is True
    assert store.history(image.id)[0].size == 0


def test_rootfs_copy_semantics(store: ImageStore, tmp_path: Path) -> None:
    base = store.import_tar(io.BytesIO(_tar({"etc/conf": b"c", "data/x": b"x"})), [], "", "b")
    cid = "a" * 64
    rootfs.prepare(store.paths, cid)
    dirs = store.layer_dirs(base)
    try:
        with rootfs.mounted(store.paths, cid, dirs) as merged:
            os.symlink("/etc", merged / "link")
            os.symlink("../../../../..", merged / "up")
        view = cp.FilesystemView(store.paths, cid, dirs)
        src = tmp_path / "src"
        (src / "sub").mkdir(parents=True)
        (src / "sub/f").write_text("f")
        (tmp_path / "one").write_text("1")
        cp.copy_to(view, str(src), "/data")  # dir into existing dir
        cp.copy_to(view, str(src) + "/.", "/newdir")  # created
        cp.copy_to(view, str(tmp_path / "one"), "/link/")  # via symlink
        cp.copy_to(view, str(tmp_path / "one"), "/up/renamed")
        with pytest.raises(InvalidArgument):
            cp.copy_to(view, str(src), "/etc/conf")
        with rootfs.mounted(store.paths, cid, dirs) as merged:
            assert (merged / "data/src/sub/f").read_text() == "f"
            assert (merged / "newdir/sub/f").read_text() == "f"
            assert (merged / "etc/one").read_text() == "1"
            assert (merged / "renamed").read_text() == "1"  # ".." stops at the root
            assert os.stat(merged / "etc/one").st_uid == 0
        out = io.BytesIO()
        info = cp.copy_from(view, "/data", out)
        assert info.is_dir and info.name == "data"
        names = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
        assert names[0] == "data" and "data/src/sub/f" in names
        dest = tmp_path / "host"
        dest.mkdir()
        cp.copy_to_host(view, "/up/etc/conf", str(dest / "c"))
        assert (dest / "c").read_text() == "c"
        assert not (tmp_path / "etc").exists()
        out = io.BytesIO()
        rootfs.export(store.paths, cid, dirs, out)
        exported = tarfile.open(fileobj=io.BytesIO(out.getvalue())).getnames()
        assert {"etc/conf", "data/x", "newdir/sub/f", ".dockerenv"} <= set(exported)
    finally:
        rootfs.remove(store.paths, cid)
    assert not store.paths.container_dir(cid).exists()


# -- CLI --------------------------------------------------------------------------------------


TABLE_HEADER = re.compile(r"^REPOSITORY +TAG +IMAGE ID +CREATED +SIZE$")


def test_images_table(dy, busybox_image: str) -> None:  # type: ignore[no-untyped-def]
    out = dy("images", check=True).stdout.splitlines()
    assert TABLE_HEADER.match(out[0])
    assert re.match(
        r"^busybox +latest +[0-9a-f]{12} +(Less than a second|\d+ seconds) ago +"
        r"\d+(\.\d+)?MB$",
        out[1],
    )
    # columns line up under the header
    assert out[1].index("latest") == out[0].index("TAG")
    full = dy("images", "--no-trunc", "-q", check=True).stdout.split()
    assert len(full) == 1 and full[0].startswith("sha256:")
    assert dy("images", "-q", check=True).stdout.split() == [full[0][7:19]]
    out = dy("images", "--format", "{{.Repository}}:{{.Tag}} {{.ID}}", check=True).stdout
    assert out == f"busybox:latest {full[0][7:19]}\n"
    out = dy("images", "--format", "table {{.Repository}}\t{{.Size}}", check=True).stdout
    assert out.splitlines()[0].split() == ["REPOSITORY", "SIZE"]
    out = dy("images", "--digests", check=True).stdout.splitlines()
    assert out[0].split()[:3] == ["REPOSITORY", "TAG", "DIGEST"] and "<none>" in out[1]


def test_images_filters(dy, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    dy("import", "-c", "LABEL tier=base", str(busybox_tar), "first:1", check=True)
    dy("import", str(busybox_tar), "second:1", check=True)
    dy("import", str(busybox_tar), "second:1", check=True)  # the old second:1 dangles

    def repos(*flags: str) -> list[str]:
        out = dy("images", "--format", "{{.Repository}}:{{.Tag}}", *flags, check=True).stdout
        return out.split()

    assert repos() == ["second:1", "<none>:<none>", "first:1"]
    assert repos("-f", "dangling=true") == ["<none>:<none>"]
    assert repos("-f", "dangling=false") == ["second:1", "first:1"]
    assert repos("-f", "label=tier=base") == ["first:1"]
    assert repos("-f", "reference=sec*") == ["second:1"]
    assert repos("first") == ["first:1"]
    assert repos("-f", "before=second:1") == ["<none>:<none>", "first:1"]
    assert repos("-f", "since=first:1") == ["second:1", "<none>:<none>"]
    bad = dy("images", "-f", "nope=1")
    assert bad.returncode != 0 and "invalid filter 'nope'" in bad.stderr
    pruned = dy("image", "prune", "-f", check=True).stdout
    assert pruned.startswith("Deleted Images:\ndeleted: sha256:")
    assert "Total reclaimed space: 0B" in pruned  # the layer is shared
    assert repos() == ["second:1", "first:1"]
    out = dy("image", "prune", "-a", "-f", check=True).stdout
    assert "untagged: first:1" in out and "untagged: second:1" in out
    assert re.search(r"Total reclaimed space: \d+(\.\d+)?MB", out)
    assert repos() == []


def test_inspect_tag_rmi_history(dy, busybox_image: str) -> None:  # type: ignore[no-untyped-def]
    data = json.loads(dy("image", "inspect", busybox_image, check=True).stdout)
    assert len(data) == 1
    item = data[0]
    assert list(item)[:6] == ["Id", "RepoTags", "RepoDigests", "Parent", "Comment", "Created"]
    assert item["RepoTags"] == ["busybox:latest"] and item["RepoDigests"] == []
    assert item["Os"] == "linux" and item["RootFS"]["Type"] == "layers"
    assert item["Config"]["Cmd"] is None and item["Config"]["Hostname"] == ""
    assert item["Metadata"]["LastTagTime"] != "0001-01-01T00:00:00Z"
    image_id = item["Id"]
    fmt = dy("image", "inspect", "-f", "{{.Id}} {{.Os}}", busybox_image, check=True).stdout
    assert fmt == f"{image_id} linux\n"
    missing = dy("image", "inspect", busybox_image, "nosuch")
    assert missing.returncode == 1 and "No such image: nosuch" in missing.stderr
    assert json.loads(missing.stdout)[0]["Id"] == image_id

    dy("tag", busybox_image, "localhost:5000/tools/bb:1.0", check=True)
    dy("tag", image_id[7:19], "again", check=True)
    bad = dy("tag", "nosuch", "x")
    assert bad.returncode != 0 and "No such image: nosuch:latest" in bad.stderr
    bad = dy("tag", busybox_image, "Bad:Name")
    assert "invalid reference format" in bad.stderr
    out = dy("images", "--format", "{{.Repository}}:{{.Tag}}", check=True).stdout.split()
    assert sorted(out) == ["again:latest", "busybox:latest", "localhost:5000/tools/bb:1.0"]

    history = dy("history", busybox_image, check=True).stdout.splitlines()
    assert re.match(r"^IMAGE +CREATED +CREATED BY +SIZE +COMMENT$", history[0])
    assert history[1].startswith(image_id[7:19]) and history[1].endswith("Imported from -")
    raw = dy(
        "history",
        "-H=false",
        "--no-trunc",
        "--format",
        "{{.ID}} {{.Size}}",
        busybox_image,
        check=True,
    ).stdout.split()
    assert raw[0] == image_id and int(raw[1]) > 1_000_000
    assert dy("history", "-q", busybox_image, check=True).stdout.split() == [image_id[7:19]]

    err = dy("rmi", image_id[7:19])
    assert err.returncode == 1
    assert (
        f"Error response from daemon: conflict: unable to delete {image_id[7:19]} (must be "
        "forced) - image is referenced in multiple repositories"
    ) in err.stderr
    out = dy("rmi", "again", "localhost:5000/tools/bb:1.0", "nosuch")
    assert out.stdout == "Untagged: again:latest\nUntagged: localhost:5000/tools/bb:1.0\n"
    assert out.returncode == 1 and "No such image: nosuch:latest" in out.stderr
    out = dy("rmi", busybox_image, check=True).stdout.splitlines()
    assert out[:2] == ["Untagged: busybox:latest", f"Deleted: {image_id}"]
    assert dy("images", "-q", check=True).stdout == ""


def test_import_stdin_changes_and_message(dy, busybox_tar: Path) -> None:  # type: ignore[no-untyped-def]
    result = dy(
        "import",
        "-m",
        "from stdin",
        "-c",
        'CMD ["sh"]',
        "--change",
        "ENV FOO=bar",
        str(busybox_tar),
        "imported:v1",
        check=True,
    )
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", result.stdout)
    item = json.loads(dy("image", "inspect", "imported:v1", check=True).stdout)[0]
    assert item["Config"]["Cmd"] == ["sh"] and item["Config"]["Env"] == ["FOO=bar"]
    assert item["Comment"] == "from stdin"
    bad = dy("import", "-c", "RUN x", str(busybox_tar))
    assert bad.returncode != 0 and "RUN is not a valid change command" in bad.stderr
    bad = dy("import", str(busybox_tar.parent / "missing.tar"))
    assert bad.returncode != 0 and "no such file or directory" in bad.stderr


def test_import_gzip_from_stdin(dockyard_env: dict[str, str], busybox_tar: Path) -> None:
    import gzip
    import subprocess
    import sys

    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "import", "-", "gz:1"],
        input=gzip.compress(busybox_tar.read_bytes()),
        capture_output=True,
        env=dockyard_env,
    )
    assert proc.returncode == 0, proc.stderr
    store = _store_for(dockyard_env)
    image = store.resolve("gz:1")
    assert store.layer_records(image)[0].media_type.endswith("+gzip")
    assert (store.layer_dirs(image)[0] / "bin/busybox").is_file()


def test_cli_commit(dy, dockyard_env: dict[str, str], busybox_image: str) -> None:  # type: ignore[no-untyped-def]
    from dockyard.containers.manager import ContainerManager
    from dockyard.containers.spec import ContainerSpec

    store = _store_for(dockyard_env)
    manager = ContainerManager(store.paths, store.db, store)
    container = manager.create(
        ContainerSpec(image=busybox_image, name="work", cmd=["sh"], env=["MODE=test"])
    )
    upper = store.paths.container_dir(container.id) / "upper"
    (upper / "note.txt").write_text("committed\n")
    out = dy(
        "commit", "-a", "Ann", "-m", "first", "-c", "EXPOSE 8080", "work", "snap:1", check=True
    )
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", out.stdout)
    item = json.loads(dy("image", "inspect", "snap:1", check=True).stdout)[0]
    assert item["Author"] == "Ann" and item["Parent"].startswith("sha256:")
    assert item["Config"]["ExposedPorts"] == {"8080/tcp": {}}
    assert "MODE=test" in item["Config"]["Env"] and item["Config"]["Cmd"] == ["sh"]
    assert len(item["RootFS"]["Layers"]) == 2
    top = Path(store.layer_dirs(store.resolve("snap:1"))[1])
    assert (top / "note.txt").read_text() == "committed\n"
    history = dy(
        "history", "--format", "{{.CreatedBy}}|{{.Comment}}", "snap:1", check=True
    ).stdout.splitlines()
    assert history[0] == "sh|first"
    rm = dy("rmi", busybox_image)
    assert rm.returncode == 1 and "container" in rm.stderr and "(must force)" in rm.stderr
    manager.remove(manager.get("work"), force=True)


def test_run_committed_image_end_to_end(dy, busybox_image: str) -> None:  # type: ignore[no-untyped-def]
    probe = dy("run", "--rm", busybox_image, "true")
    if probe.returncode != 0:
        pytest.skip(f"dockyard run is not working here: {probe.stderr.strip()[-200:]}")
    dy(
        "run",
        "--name",
        "maker",
        busybox_image,
        "sh",
        "-c",
        "echo made > /made; rm /bin/ls",
        check=True,
    )
    dy("commit", "-c", 'CMD ["cat", "/made"]', "maker", "made:1", check=True)
    assert dy("run", "--rm", "made:1", check=True).stdout == "made\n"
    assert dy("run", "--rm", "made:1", "ls").returncode != 0
    dy("rm", "maker", check=True)


def test_concurrent_imports_share_one_layer(
    dockyard_env: dict[str, str], busybox_tar: Path
) -> None:
    import subprocess
    import sys

    procs = [
        subprocess.Popen(
            [sys.executable, "-m", "dockyard", "import", str(busybox_tar), f"par:{i}"],
            env=dockyard_env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for i in range(4)
    ]
    for proc in procs:
        _, err = proc.communicate(timeout=120)
        assert proc.returncode == 0, err
    store = _store_for(dockyard_env)
    images = store.list()
    assert len(images) == 4 and len({tuple(i.layers) for i in images}) == 1
    assert [n for n in os.listdir(store.paths.layers) if n != "l"] == [images[0].layers[0][7:]]
    assert os.listdir(store.paths.tmp) == []
    conn = sqlite3.connect(store.paths.db)
    assert conn.execute("SELECT count(*) FROM layers").fetchone()[0] == 1
    conn.close()


def test_mount_many_layers_fits_one_page(store: ImageStore) -> None:
    """Docker allows ~125 layers; the overlay options must still fit in 4096 bytes."""
    records = [
        store.ingest_layer(
            io.BytesIO(_tar({f"layer{i:03d}": str(i).encode(), "shared": b"%d" % i}))
        )
        for i in range(125)
    ]
    image = store.create_image({"architecture": "amd64", "os": "linux"}, records, ["deep:1"])
    cid = "7" * 64
    rootfs.prepare(store.paths, cid)
    try:
        merged = rootfs.mount(store.paths, cid, store.layer_dirs(image))
        assert (merged / "layer000").read_text() == "0"
        assert (merged / "layer124").read_text() == "124"
        assert (merged / "shared").read_text() == "124"
    finally:
        rootfs.remove(store.paths, cid)


def test_mount_empty_image(store: ImageStore) -> None:
    image = store.create_image({"architecture": "amd64", "os": "linux"}, [], ["scratchy:1"])
    cid = "8" * 64
    rootfs.prepare(store.paths, cid)
    try:
        merged = rootfs.mount(store.paths, cid, store.layer_dirs(image))
        assert sorted(os.listdir(merged)) == [".dockerenv", "dev", "etc", "proc", "sys"]
        assert rootfs.mount(store.paths, cid, []) == merged  # mounting twice is a no-op
    finally:
        rootfs.remove(store.paths, cid)
    rootfs.unmount(store.paths, cid)  # not mounted any more: fine


def test_layer_tar_headers_are_written_as_docker_writes_them(tmp_path: Path) -> None:
    """Mode with Go 1.8's file-type bits, zero device numbers, the opaque marker with
    the directory's permissions and owner and no mtime: field for field as Docker 20.10."""
    from dockyard.images.tarwriter import tar_overlay_upper

    upper = tmp_path / "upper"
    (upper / "d/sub").mkdir(parents=True)
    (upper / "d/f").write_text("x")
    os.chmod(upper / "d/f", 0o4755)
    os.link(upper / "d/f", upper / "d/h")
    os.symlink("f", upper / "d/l")
    os.mkfifo(upper / "d/p")
    os.chmod(upper / "d/sub", 0o750)
    opaque = True
    try:
        os.setxattr(upper / "d/sub", "trusted.overlay.opaque", b"y")
    except OSError:
        opaque = False
    out = io.BytesIO()
    tar_overlay_upper(upper, out)
    data = out.getvalue()
    fields = {}
    offset = 0
    while data[offset : offset + 512] != b"\0" * 512:
        block = data[offset : offset + 512]
        fields[block[:100].rstrip(b"\0").decode()] = (
            block[100:108],
            block[329:345],
            block[136:148],
        )
        size = int(block[124:136].rstrip(b"\0 ") or b"0", 8)
        offset += 512 + (size + 511) // 512 * 512
    assert fields["d/"][0] == b"0040755\0"
    assert fields["d/f"][0] == b"0104755\0" and fields["d/h"][0] == b"0104755\0"
    assert fields["d/l"][0] == b"0120777\0" and fields["d/p"][0] == b"0010644\0"
    assert all(dev == b"0000000\x000000000\x00" for _, dev, _ in fields.values())
    if opaque:
        assert fields["d/sub/.wh..wh..opq"][0] == b"0000750\0"
        assert fields["d/sub/.wh..wh..opq"][2] == b"00000000000\0"
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # checksums hold
        assert {m.name for m in tar} >= {"d", "d/f", "d/h", "d/l", "d/p"}

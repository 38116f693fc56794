"""``dockyard build`` end to end on the busybox test image: what every instruction does to
the image (compared with what Docker writes), the layer cache, stages, contexts, errors."""

from __future__ import annotations

import json
import os
import re
import tarfile
from pathlib import Path

import pytest
from conftest import Runner


def write(ctx: Path, files: dict[str, str]) -> Path:
    for name, text in files.items():
        path = ctx / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return ctx


def build(dy: Runner, ctx: Path, *flags: str, ok: bool = True, input: str | None = None):
    proc = dy("build", *flags, str(ctx), input=input, timeout=120)
    if ok and proc.returncode != 0:
        raise AssertionError(f"build failed ({proc.returncode}): {proc.stderr}")
    return proc


def image_id(dy: Runner, ref: str) -> str:
    return dy("image", "inspect", ref, "--format", "{{.Id}}", check=True).stdout.strip()


def raw_config(env: dict[str, str], dy: Runner, ref: str) -> dict:
    blob = Path(env["DOCKYARD_ROOT"]) / "blobs/sha256" / image_id(dy, ref).removeprefix("sha256:")
    return json.loads(blob.read_bytes())


def leftovers(env: dict[str, str], dy: Runner) -> tuple[str, list[str], list[str]]:
    """Containers, container dirs and mounts a build might have left."""
    root = env["DOCKYARD_ROOT"]
    ps = dy("ps", "-aq", check=True).stdout.strip()
    dirs = os.listdir(Path(root) / "containers") if (Path(root) / "containers").exists() else []
    with open("/proc/self/mountinfo") as f:
        mounts = [line.split()[4] for line in f if line.split()[4].startswith(root)]
    return ps, dirs, mounts


# -- every instruction -------------------------------------------------------------------

ALL_INSTRUCTIONS = """\
FROM busybox
LABEL maintainer="me" version=1.0
ENV APP_HOME=/srv/app PATH=/srv/bin:$PATH
ENV LEGACY value with spaces
ARG BUILD_NUM=7
ARG UNSET_ARG
WORKDIR $APP_HOME
WORKDIR sub
USER app
EXPOSE 8000 9000/udp 7000-7002
VOLUME ["/data", "/logs"]
VOLUME /cache
STOPSIGNAL SIGINT
HEALTHCHECK --interval=30s --timeout=3s --start-period=1m30s --retries=4 CMD wget -q -O- http://localhost:8000/ || exit 1
SHELL ["/bin/sh", "-ec"]
RUN echo build $BUILD_NUM > /tmp/num
ENTRYPOINT ["/bin/sh", "-c"]
CMD echo hi from $APP_HOME
"""

# What Docker (BuildKit) writes for ALL_INSTRUCTIONS (checked against a Docker engine).
EXPECTED_CONFIG = {
    "User": "app",
    "ExposedPorts": {
        "7000/tcp": {},
        "7001/tcp": {},
        "7002/tcp": {},
        "8000/tcp": {},
        "9000/udp": {},
    },
    "Env": [
        "PATH=/srv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        "APP_HOME=/srv/app",
        "LEGACY=value with spaces",
    ],
    "Entrypoint": ["/bin/sh", "-c"],
    "Cmd": ["/bin/sh", "-ec", "echo hi from $APP_HOME"],
    "Volumes": {"/cache": {}, "/data": {}, "/logs": {}},
    "WorkingDir": "/srv/app/sub",
    "Labels": {"maintainer": "me", "version": "1.0"},
    "StopSignal": "SIGINT",
    "ArgsEscaped": True,
    "Healthcheck": {
        "Test": ["CMD-SHELL", "wget -q -O- http://localhost:8000/ || exit 1"],
        "Interval": 30_000_000_000,
        "Timeout": 3_000_000_000,
        "StartPeriod": 90_000_000_000,
        "Retries": 4,
    },
    "Shell": ["/bin/sh", "-ec"],
}
EXPECTED_HISTORY = [
    ("LABEL maintainer=me version=1.0", True),
    (
        "ENV APP_HOME=/srv/app PATH=/srv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        True,
    ),
    ("ENV LEGACY=value with spaces", True),
    ("ARG BUILD_NUM=7", True),
    ("ARG UNSET_ARG", True),
    ("WORKDIR /srv/app", False),
    ("WORKDIR /srv/app/sub", False),
    ("USER app", True),
    ("EXPOSE [7000/tcp 7001/tcp 7002/tcp 8000/tcp 9000/udp]", True),
    ("VOLUME [/data /logs]", True),
    ("VOLUME [/cache]", True),
    ("STOPSIGNAL SIGINT", True),
    (
        "HEALTHCHECK {Test:[CMD-SHELL wget -q -O- http://localhost:8000/ || exit 1] "
        "Interval:30s Timeout:3s StartPeriod:1m30s StartInterval:0s Retries:4}",
        True,
    ),
    ("SHELL [/bin/sh -ec]", True),
    (
        "RUN |2 BUILD_NUM=7 UNSET_ARG= /bin/sh -ec echo build $BUILD_NUM > /tmp/num # buildkit",
        False,
    ),
    ('ENTRYPOINT ["/bin/sh" "-c"]', True),
    ('CMD ["/bin/sh" "-ec" "echo hi from $APP_HOME"]', True),
]


def test_every_instruction_writes_what_docker_writes(
    dy: Runner, busybox_image: str, dockyard_env: dict[str, str], tmp_path: Path
) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": ALL_INSTRUCTIONS})
    proc = build(dy, ctx, "-t", "every", "--network", "none")
    assert "[2/4] WORKDIR $APP_HOME" in proc.stderr or "WORKDIR" in proc.stderr
    config = raw_config(dockyard_env, dy, "every")
    assert config["config"] == EXPECTED_CONFIG
    assert list(config["config"]) == list(EXPECTED_CONFIG)  # Docker's field order
    assert "comment" not in config and "container_config" not in config
    history = [
        (h["created_by"], bool(h.get("empty_layer")))
        for h in config["history"]
        if h.get("comment") == "buildkit.dockerfile.v0"
    ]
    assert history == EXPECTED_HISTORY
    assert len(config["rootfs"]["diff_ids"]) == 4  # busybox, 2 WORKDIRs, RUN (no VOLUME dirs)
    out = dy(
        "run",
        "--rm",
        "--entrypoint",
        "sh",
        "every",
        "-c",
        "pwd; id -u; cat /tmp/num; stat -c '%U %a' /srv/app/sub; ls /data 2>&1 | head -1",
        check=True,
    ).stdout
    assert out.split("\n")[:4] == ["/srv/app/sub", "1000", "build 7", "root 755"]
    shown = dy("history", "every", "--no-trunc", "--format", "{{.CreatedBy}}", check=True).stdout
    assert shown.splitlines()[0] == 'CMD ["/bin/sh" "-ec" "echo hi from $APP_HOME"]'


def test_cmd_entrypoint_and_onbuild(
    dy: Runner, busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str]
) -> None:
    base = write(
        tmp_path / "base",
        {
            "Dockerfile": (
                'FROM busybox\nCMD ["old"]\nENTRYPOINT ["/bin/echo"]\n'
                "ONBUILD RUN echo triggered > /onbuild\nONBUILD ENV FROM_TRIGGER=1\n"
            )
        },
    )
    build(dy, base, "-t", "obbase")
    config = raw_config(dockyard_env, dy, "obbase")["config"]
    assert config["Cmd"] == ["old"]  # set in this stage: ENTRYPOINT keeps it
    assert config["OnBuild"] == ["RUN echo triggered > /onbuild", "ENV FROM_TRIGGER=1"]
    child = write(
        tmp_path / "child", {"Dockerfile": 'FROM obbase\nENTRYPOINT ["/bin/echo", "hello"]\n'}
    )
    proc = build(dy, child, "-t", "obchild")
    assert "RUN echo triggered" in proc.stderr
    config = raw_config(dockyard_env, dy, "obchild")["config"]
    assert "OnBuild" not in config and "FROM_TRIGGER=1" in config["Env"]
    assert "Cmd" not in config  # an inherited CMD is reset by ENTRYPOINT
    assert config["Entrypoint"] == ["/bin/echo", "hello"]
    assert dy("run", "--rm", "obchild", check=True).stdout == "hello\n"
    out = dy("run", "--rm", "--entrypoint", "cat", "obchild", "/onbuild", check=True).stdout
    assert out == "triggered\n"


# -- COPY / ADD -----------------------------------------------------------------------------


def test_copy_and_add_semantics(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    ctx = tmp_path / "ctx"
    write(
        ctx,
        {
            "src/a.txt": "a\n",
            "src/sub/b.txt": "b\n",
            "src/skipme/x": "x\n",
            "src/a.tmp": "t\n",
            "src/keep.tmp": "keep\n",
            "other/o1.txt": "1\n",
            "other/o2.txt": "2\n",
            ".dockerignore": "src/skipme\n**/*.tmp\n!src/keep.tmp\nDockerfile\n",
        },
    )
    (ctx / "src/sub/b.txt").chmod(0o600)
    os.symlink("a.txt", ctx / "src/link")
    os.symlink("src/a.txt", ctx / "toplink")
    tar_src = tmp_path / "tarsrc"
    write(tar_src, {"t.txt": "t\n"})
    with tarfile.open(ctx / "arch.tar.gz", "w:gz") as tar:
        tar.add(tar_src / "t.txt", arcname="t.txt")
    (ctx / "Dockerfile").write_text(
        "FROM busybox AS first\n"
        "RUN mkdir -p /built && echo built > /built/f && chown 1000:1000 /built/f\n"
        "FROM busybox\n"
        "WORKDIR /w\n"
        "COPY src /app/\n"
        "COPY src/a.txt single\n"
        "COPY src/a.txt /dir/\n"
        "COPY other/*.txt /multi/\n"
        "COPY --chown=app --chmod=640 src/sub /owned\n"
        "COPY --chown=1000:10 src/a.txt /owned2/\n"
        "ADD arch.tar.gz /extracted/\n"
        "COPY arch.tar.gz /notextracted/\n"
        "COPY toplink /followed\n"
        "COPY --from=first /built /frombuilt\n"
        "COPY <<EOF /heredoc.txt\nhome is $HOME and path ${PATH%%:*}\nEOF\n"
        "COPY <<'EOF' /literal.txt\nno $HOME\nEOF\n"
        "COPY . /ctx/\n"
    )
    build(dy, ctx, "-t", "copies")
    script = (
        "cd / && find app single dir multi owned owned2 extracted notextracted followed "
        "frombuilt ctx w | sort | while read f; do stat -c '%n %a %u:%g %F' $f; done; "
        "cat /w/single /followed /heredoc.txt /literal.txt; readlink /app/link"
    )
    out = dy("run", "--rm", "copies", "sh", "-c", script, check=True).stdout.splitlines()
    listing = [
        line
        for line in out
        if line.startswith(
            (
                "app",
                "single",
                "dir",
                "multi",
                "owned",
                "extracted",
                "notextracted",
                "followed",
                "frombuilt",
                "ctx",
                "w",
            )
        )
    ]
    assert listing == [
        "app 755 0:0 directory",
        "app/a.txt 644 0:0 regular file",
        "app/keep.tmp 644 0:0 regular file",
        "app/link 777 0:0 symbolic link",
        "app/sub 755 0:0 directory",
        "app/sub/b.txt 600 0:0 regular file",
        "ctx 755 0:0 directory",
        "ctx/.dockerignore 644 0:0 regular file",
        "ctx/arch.tar.gz 644 0:0 regular file",
        "ctx/other 755 0:0 directory",
        "ctx/other/o1.txt 644 0:0 regular file",
        "ctx/other/o2.txt 644 0:0 regular file",
        "ctx/src 755 0:0 directory",
        "ctx/src/a.txt 644 0:0 regular file",
        "ctx/src/keep.tmp 644 0:0 regular file",
        "ctx/src/link 777 0:0 symbolic link",
        "ctx/src/sub 755 0:0 directory",
        "ctx/src/sub/b.txt 600 0:0 regular file",
        "ctx/toplink 777 0:0 symbolic link",
        "dir 755 0:0 directory",
        "dir/a.txt 644 0:0 regular file",
        "extracted 755 0:0 directory",
        "extracted/t.txt 644 0:0 regular file",
        "followed 644 0:0 regular file",
        "frombuilt 755 0:0 directory",
        "frombuilt/f 644 1000:1000 regular file",
        "multi 755 0:0 directory",
        "multi/o1.txt 644 0:0 regular file",
        "multi/o2.txt 644 0:0 regular file",
        "notextracted 755 0:0 directory",
        "notextracted/arch.tar.gz 644 0:0 regular file",
        "owned 640 1000:1000 directory",
        "owned/b.txt 640 1000:1000 regular file",
        "owned2 755 1000:10 directory",
        "owned2/a.txt 644 1000:10 regular file",
        "w 755 0:0 directory",
        "w/single 644 0:0 regular file",
    ]
    assert out[-5:] == ["a", "a", "home is  and path /usr/local/sbin", "no $HOME", "a.txt"]


def test_add_url_from_loopback_server(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    import http.server
    import threading
    from functools import partial

    served = tmp_path / "served"
    write(served, {"file.txt": "downloaded\n"})
    handler = partial(http.server.SimpleHTTPRequestHandler, directory=str(served))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        url = f"http://127.0.0.1:{server.server_address[1]}"
        ctx = write(
            tmp_path / "ctx",
            {
                "Dockerfile": (
                    f"FROM busybox\nADD {url}/file.txt /dl/\nADD {url}/file.txt /renamed\n"
                )
            },
        )
        build(dy, ctx, "-t", "urls")
        out = dy(
            "run",
            "--rm",
            "urls",
            "sh",
            "-c",
            "stat -c '%n %a' /dl/file.txt /renamed; cat /renamed",
            check=True,
        ).stdout
        assert out == "/dl/file.txt 600\n/renamed 600\ndownloaded\n"
        assert "CACHED" in build(dy, ctx, "-t", "urls").stderr
        (served / "file.txt").write_text("changed\n")
        rebuilt = build(dy, ctx, "-t", "urls")
        assert "CACHED" not in rebuilt.stderr  # the content is part of the key
        bad = write(tmp_path / "bad", {"Dockerfile": f"FROM busybox\nADD {url}/missing /x\n"})
        proc = build(dy, bad, ok=False)
        assert proc.returncode == 1 and "404" in proc.stderr
    finally:
        server.shutdown()
        server.server_close()


def test_copy_outside_the_context_is_refused(
    dy: Runner, busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str]
) -> None:
    (tmp_path / "secret").write_text("secret\n")
    ctx = tmp_path / "ctx"
    ctx.mkdir()
    os.symlink("../secret", ctx / "link-out")
    os.symlink("/etc", ctx / "abs-out")
    for source in ("../secret", "link-out", "abs-out/passwd", "/../secret"):
        (ctx / "Dockerfile").write_text(f"FROM busybox\nCOPY {source} /x\n")
        proc = build(dy, ctx, "-t", "escape", ok=False)
        assert proc.returncode == 1
        assert "outside the build context" in proc.stderr, proc.stderr
    assert dy("images", "-q", "escape").stdout == ""
    assert leftovers(dockyard_env, dy) == ("", [], [])


# -- cache -----------------------------------------------------------------------------------


def test_cache_reuses_steps_and_reruns_from_a_changed_file(
    dy: Runner, busybox_image: str, tmp_path: Path
) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "FROM busybox\nRUN echo one > /one\nCOPY early.txt /\n"
                "RUN echo two > /two\nCOPY late.txt /\nRUN cat /late.txt\n"
            ),
            "early.txt": "early\n",
            "late.txt": "late\n",
        },
    )
    first = build(dy, ctx, "-t", "cached")
    assert "CACHED" not in first.stderr
    first_id = image_id(dy, "cached")
    again = build(dy, ctx, "-t", "cached")
    assert again.stderr.count("CACHED") == 5
    assert image_id(dy, "cached") == first_id
    os.utime(ctx / "early.txt", (1, 1))  # times are not content: still cached
    assert build(dy, ctx).stderr.count("CACHED") == 5
    (ctx / "late.txt").write_text("later\n")
    changed = build(dy, ctx, "-t", "cached").stderr
    steps = re.findall(r"#\d+ \[(\d)/6\] .*\n#\d+ (CACHED|DONE|\d)", changed)
    assert [s for s, state in steps if state == "CACHED"] == ["2", "3", "4"]
    assert "#" in changed and "later" in changed  # the last RUN ran again
    (ctx / "early.txt").chmod(0o600)  # metadata is part of the key
    assert build(dy, ctx).stderr.count("CACHED") == 1
    no_cache = build(dy, ctx, "--no-cache").stderr
    assert "CACHED" not in no_cache
    assert dy("builder", "prune", "-f", check=True).stdout.startswith(
        "Deleted build cache objects:"
    )
    assert "CACHED" not in build(dy, ctx).stderr


# -- stages ---------------------------------------------------------------------------------


MULTISTAGE = """\
ARG BASE=busybox
FROM $BASE AS base
ARG GREETING=hello
RUN echo "$GREETING" > /greeting

FROM base AS builder
RUN echo "built with ${GREETING:-nothing}" > /artifact

FROM busybox AS broken
RUN exit 3

FROM busybox AS final
ARG BASE
COPY --from=builder /artifact /greeting /out/
RUN echo "base=$BASE greeting=${GREETING:-unset}" > /out/args
"""


def test_multistage_builds_only_what_the_target_needs(
    dy: Runner, busybox_image: str, tmp_path: Path
) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": MULTISTAGE})
    proc = build(dy, ctx, "-t", "multi", "--build-arg", "GREETING=hi", "--target", "final")
    assert "broken" not in proc.stderr
    out = dy(
        "run", "--rm", "multi", "cat", "/out/artifact", "/out/greeting", "/out/args", check=True
    ).stdout
    assert out == "built with hi\nhi\nbase=busybox greeting=unset\n"
    builder = build(dy, ctx, "-t", "only-builder", "--target", "builder")
    assert "[final" not in builder.stderr and "broken" not in builder.stderr
    assert dy("run", "--rm", "only-builder", "cat", "/artifact", check=True).stdout == (
        "built with hello\n"
    )
    failing = build(dy, ctx, "--target", "broken", ok=False)
    assert failing.returncode == 1
    assert "The command '/bin/sh -c exit 3' returned a non-zero code: 3" in failing.stderr


def test_independent_stages_build_at_once(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "FROM busybox AS a\nRUN sleep 1; echo a > /a\n"
                "FROM busybox AS b\nRUN sleep 1; echo b > /b\n"
                "FROM busybox\nCOPY --from=a /a /\nCOPY --from=b /b /\n"
            )
        },
    )
    err = build(dy, ctx, "-t", "parallel").stderr
    start_a = err.index("[a 2/2] RUN")
    start_b = err.index("[b 2/2] RUN")
    first_done = min(
        err.index(f"#{n} DONE", max(start_a, start_b) - 200)
        for n in re.findall(r"#(\d+) \[[ab] 2/2\]", err)
    )
    assert max(start_a, start_b) < first_done  # both started before either finished
    assert dy("run", "--rm", "parallel", "cat", "/a", "/b", check=True).stdout == "a\nb\n"


# -- failures ---------------------------------------------------------------------------------


def test_failing_run_stops_the_build_and_leaves_nothing(
    dy: Runner, busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str]
) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "FROM busybox\nRUN echo before\nRUN echo output of the failing step; false\n"
                "RUN echo never\n"
            )
        },
    )
    proc = build(dy, ctx, "-t", "failed", ok=False)
    assert proc.returncode == 1
    assert "output of the failing step" in proc.stderr
    assert proc.stderr.rstrip().endswith(
        "Error: The command '/bin/sh -c echo output of the failing step; false' "
        "returned a non-zero code: 1"
    )
    assert "never" not in proc.stderr.replace("RUN echo never", "")
    assert dy("images", "-q", "failed").stdout == ""
    assert leftovers(dockyard_env, dy) == ("", [], [])
    quiet = build(dy, ctx, "-q", ok=False)
    assert quiet.returncode == 1 and "output of the failing step" in quiet.stderr


@pytest.mark.parametrize(
    ("dockerfile", "flags", "message"),
    [
        ('FROM busybox\nRUN ["a", 1]\n', [], "Dockerfile:2: when using JSON array syntax"),
        ("FROM busybox\nFOO bar\n", [], "Dockerfile:2: unknown instruction: FOO"),
        ("FROM busybox\nCOPY missing.txt /\n", [], "Dockerfile:2: COPY missing.txt /: "),
        ("FROM busybox\n", ["--target", "nope"], 'target stage "nope" could not be found'),
        ("FROM nope-no-such-image:1\n", [], "Dockerfile:1: failed to resolve source metadata"),
        (
            "FROM busybox AS a\nCOPY --from=later /x /\nFROM busybox AS later\n",
            ["--target", "a"],
            'cannot copy from stage "later"',
        ),
        ("FROM busybox\nENV A=${B\n", [], "Dockerfile:2: ENV A=${B: syntax error: missing '}'"),
        ("FROM busybox\nCOPY a b c\n", [], "must be a directory and end with a /"),
    ],
)
def test_bad_input_is_one_line_exit_1(
    dy: Runner,
    busybox_image: str,
    tmp_path: Path,
    dockyard_env: dict[str, str],
    dockerfile: str,
    flags: list[str],
    message: str,
) -> None:
    ctx = write(tmp_path / "ctx", {"Dockerfile": dockerfile, "a": "a", "b": "b"})
    proc = build(dy, ctx, "-t", "bad", *flags, "-q", ok=False)
    assert proc.returncode == 1
    assert message in proc.stderr, proc.stderr
    assert proc.stderr.startswith("Error: ") and proc.stderr.count("\n") == 1, proc.stderr
    assert dy("images", "-q", "bad").stdout == ""
    assert leftovers(dockyard_env, dy) == ("", [], [])


def test_interrupt_removes_the_build_container(
    dy: Runner, busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str]
) -> None:
    import signal
    import subprocess
    import sys
    import time

    ctx = write(tmp_path / "ctx", {"Dockerfile": "FROM busybox\nRUN echo started; sleep 60\n"})
    proc = subprocess.Popen(
        [sys.executable, "-m", "dockyard", "build", str(ctx)],
        env=dockyard_env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not dy("ps", "-q").stdout.strip():
            time.sleep(0.1)
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
    assert proc.returncode == 130, err
    assert leftovers(dockyard_env, dy) == ("", [], [])


# -- contexts and flags -----------------------------------------------------------------------


def test_stdin_contexts_and_flags(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    dockerfile = "FROM busybox\nARG V=default\nRUN echo $V > /v\n"
    proc = dy("build", "-q", "-t", "from-stdin", "-", input=dockerfile, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert re.fullmatch(r"sha256:[0-9a-f]{64}\n", proc.stdout)
    ctx = write(
        tmp_path / "ctx",
        {"data.txt": "data\n", "sub/Other.Dockerfile": "FROM busybox\nCOPY data.txt /\n"},
    )
    piped = dy(
        "build",
        "-q",
        "-t",
        "df-stdin",
        "-f",
        "-",
        str(ctx),
        input="FROM busybox\nCOPY data.txt /d\n",
        timeout=120,
    )
    assert piped.returncode == 0, piped.stderr
    assert dy("run", "--rm", "df-stdin", "cat", "/d", check=True).stdout == "data\n"
    build(dy, ctx, "-f", str(ctx / "sub/Other.Dockerfile"), "-t", "other-file")
    iid = tmp_path / "iid"
    proc = dy(
        "build",
        "--iidfile",
        str(iid),
        "-t",
        "a:1",
        "-t",
        "b:2",
        "--label",
        "x=y",
        "--build-arg",
        "V=given",
        "--build-arg",
        "UNUSED=1",
        str(_write_df(tmp_path, dockerfile)),
    )
    assert proc.returncode == 0, proc.stderr
    assert "[Warning] One or more build-args [UNUSED] were not consumed" in proc.stderr
    assert iid.read_text() == image_id(dy, "a:1") == image_id(dy, "b:2")
    labels = dy("image", "inspect", "b:2", "--format", "{{json .Config.Labels}}", check=True)
    assert json.loads(labels.stdout) == {"x": "y"}
    assert dy("run", "--rm", "a:1", "cat", "/v", check=True).stdout == "given\n"


def _write_df(tmp_path: Path, text: str) -> Path:
    ctx = tmp_path / "plain"
    ctx.mkdir(exist_ok=True)
    (ctx / "Dockerfile").write_text(text)
    return ctx


def test_tar_context_on_stdin(
    busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str], dy: Runner
) -> None:
    import io
    import subprocess
    import sys

    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w:gz") as tar:
        for name, text in (("Dockerfile", "FROM busybox\nCOPY hello /\n"), ("hello", "from tar\n")):
            data = text.encode()
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    proc = subprocess.run(
        [sys.executable, "-m", "dockyard", "build", "-t", "tarctx", "-"],
        input=buf.getvalue(),
        env=dockyard_env,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    assert dy("run", "--rm", "tarctx", "cat", "/hello", check=True).stdout == "from tar\n"
    assert not list((Path(dockyard_env["DOCKYARD_ROOT"]) / "tmp").glob("build-context-*"))


def test_heredoc_run_and_arg_scope(
    dy: Runner, busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str]
) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "ARG GLOBAL=g\nFROM busybox\nARG GLOBAL\nARG LOCAL=l-$GLOBAL\n"
                'RUN <<EOF\necho "global=$GLOBAL" > /args\necho "local=$LOCAL" >> /args\nEOF\n'
                "RUN sh <<SCRIPT\necho from-script >> /args\nSCRIPT\n"
                'ENV LOCAL=overridden\nRUN echo "now $LOCAL" >> /args\n'
            )
        },
    )
    build(dy, ctx, "-t", "heredocs")
    out = dy("run", "--rm", "heredocs", "cat", "/args", check=True).stdout
    assert out == "global=g\nlocal=l-g\nfrom-script\nnow overridden\n"
    history = [h.get("created_by", "") for h in raw_config(dockyard_env, dy, "heredocs")["history"]]
    assert "ARG GLOBAL=g" in history and "ARG LOCAL=l-g" in history
    assert any(h.startswith("RUN |2 GLOBAL=g LOCAL=l-g /bin/sh -c") for h in history)
    env = raw_config(dockyard_env, dy, "heredocs")["config"]["Env"]
    assert "LOCAL=overridden" in env and not any(e.startswith("GLOBAL=") for e in env)


def test_run_mounts_and_heredoc_scripts(
    dy: Runner, busybox_image: str, tmp_path: Path, dockyard_env: dict[str, str]
) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "tools/hello.sh": "echo hello from the context\n",
            "ignored.txt": "secret\n",
            ".dockerignore": "ignored.txt\n",
            "Dockerfile": (
                "FROM busybox\n"
                "RUN --mount=type=cache,target=/cache "
                "echo run >> /cache/runs; wc -l < /cache/runs > /runs\n"
                "RUN --mount=type=bind,source=tools,target=/tools sh /tools/hello.sh > /hello\n"
                "RUN --mount=type=bind,target=/ctx ls /ctx > /ctx-listing\n"
                "RUN --mount=type=tmpfs,target=/scratch touch /scratch/x && ls /scratch > /t\n"
                "RUN --mount=type=secret,id=token test ! -e /run/secrets/token\n"
                'RUN <<EOF\n#!/bin/sh\necho "script at $0" > /script\nEOF\n'
            ),
        },
    )
    build(dy, ctx, "-t", "mounts")
    out = dy(
        "run",
        "--rm",
        "mounts",
        "sh",
        "-c",
        "cat /runs /hello /ctx-listing /t /script; ls -d /cache /tools /ctx /scratch 2>&1 | wc -l",
        check=True,
    ).stdout.splitlines()
    assert out[0] == "1" and out[1] == "hello from the context"
    assert "ignored.txt" not in out and "tools" in out
    assert "x" in out and "script at /dev/pipes/EOF" in out
    assert out[-1].strip() == "4"  # four "No such file" lines: mount points left out
    build(dy, ctx, "-t", "mounts", "--no-cache")
    assert dy("run", "--rm", "mounts", "cat", "/runs", check=True).stdout == "2\n"
    (ctx / "tools/hello.sh").write_text("echo changed\n")
    rebuilt = build(dy, ctx, "-t", "mounts").stderr
    assert re.search(r"RUN --mount=type=bind,source=tools[^\n]*\n#\d+ DONE", rebuilt)  # reran
    assert "Total reclaimed space" in dy("builder", "prune", "-f", check=True).stdout
    assert not (Path(dockyard_env["DOCKYARD_ROOT"]) / "build-cache").exists()


def test_network_and_add_host(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "Dockerfile": (
                "FROM busybox\nRUN grep myhost /etc/hosts > /hosts; ls /sys/class/net > /nets\n"
                "RUN --network=none ls /sys/class/net > /none\n"
                "COPY --from=busybox:latest /etc/group /group-from-image\n"
            )
        },
    )
    build(dy, ctx, "-t", "nets", "--add-host", "myhost:10.1.2.3")
    out = dy("run", "--rm", "nets", "cat", "/hosts", "/nets", "/none", check=True).stdout
    lines = out.splitlines()
    assert lines[0].split() == ["10.1.2.3", "myhost"]
    assert "eth0" in lines[1:-1] and lines[-1] == "lo"
    proc = build(dy, ctx, "-t", "nets-none", "--network", "none", "--add-host", "h:10.0.0.1")
    assert proc.returncode == 0
    out = dy("run", "--rm", "nets-none", "cat", "/nets", "/group-from-image", check=True).stdout
    assert out.startswith("lo\nroot:x:0:")


def test_copy_exclude(dy: Runner, busybox_image: str, tmp_path: Path) -> None:
    ctx = write(
        tmp_path / "ctx",
        {
            "src/a.txt": "a\n",
            "src/b.log": "b\n",
            "src/sub/c.txt": "c\n",
            "Dockerfile": "FROM busybox\nCOPY --exclude=*.log --exclude=sub src /x/\n",
        },
    )
    build(dy, ctx, "-t", "excluded")
    out = dy("run", "--rm", "excluded", "find", "/x", check=True).stdout.split()
    assert sorted(out) == ["/x", "/x/a.txt"]


def test_run_writes_below_a_volume_stay_in_the_image(
    dy: Runner, busybox_image: str, dockyard_env: dict[str, str], tmp_path: Path
) -> None:
    """As BuildKit: a RUN mounts none of the image's VOLUMEs, so what it writes there is
    in its layer (the classic builder threw it away), and a later container's anonymous
    volume is filled from it."""
    dockerfile = "FROM busybox\nVOLUME /data\nRUN mkdir -p /data && echo seed > /data/seed\n"
    ctx = write(tmp_path / "ctx", {"Dockerfile": dockerfile})
    build(dy, ctx, "-t", "seeded", "--network", "none")
    out = dy("run", "--rm", "seeded", "cat", "/data/seed", check=True).stdout
    assert out == "seed\n"
    assert dy("volume", "ls", "-q", check=True).stdout == ""  # --rm took the anonymous one

"""``dockyard bootstrap debian:SUITE``: a Debian base image without a registry.

Made the way Debian's official images are (debuerreotype): ``debootstrap
--variant=minbase`` from the host's configured Debian mirror, then apt lists
and caches removed, the Docker apt settings and ``policy-rc.d`` added,
host-specific files emptied, ``/dev`` left empty; the tree becomes a
one-layer image tagged ``debian:SUITE`` with ``CMD ["bash"]``.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from dockyard.build import BuildError

if TYPE_CHECKING:
    from dockyard.cli.context import Context
    from dockyard.images.store import Image

DEFAULT_MIRROR = "http://deb.debian.org/debian"
SUITES = ("bookworm", "bullseye", "buster", "trixie", "sid", "stable", "testing", "unstable")
_APT_CONF = {
    "docker-clean": (
        'DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }};\n'
        'APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb '
        '/var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; }};\n'
        'Dir::Cache::pkgcache "";\nDir::Cache::srcpkgcache "";\n'
    ),
    "docker-autoremove-suggests": 'Apt::AutoRemove::SuggestsImportant "false";\n',
    "docker-no-languages": 'Acquire::Languages "none";\n',
    "docker-gzip-indexes": 'Acquire::GzipIndexes "true";\n',
}
_DPKG_EXCLUDES = (
    "path-exclude /usr/share/doc/*\npath-include /usr/share/doc/*/copyright\n"
    "path-exclude /usr/share/man/*\npath-exclude /usr/share/info/*\n"
    "path-exclude /usr/share/locale/*\n"
)


def host_mirror(root: Path = Path("/")) -> str:
    """The Debian archive the host's apt uses (sources.list or deb822 .sources)."""
    candidates: list[str] = []
    lists = [root / "etc/apt/sources.list"]
    extra = root / "etc/apt/sources.list.d"
    if extra.is_dir():
        lists += sorted(extra.glob("*.list")) + sorted(extra.glob("*.sources"))
    for path in lists:
        try:
            text = path.read_text(errors="replace")
        except OSError:
            continue
        if path.suffix == ".sources":
            candidates += _deb822_uris(text)
        else:
            for line in text.splitlines():
                words = re.sub(r"\[[^\]]*\]", "", line.split("#", 1)[0]).split()
                if len(words) >= 3 and words[0] == "deb":
                    candidates.append(f"{words[1]} {words[2]}")
    for item in candidates:
        uri, _, suite = item.partition(" ")
        if "security" in uri or "-security" in suite or "debian" not in uri:
            continue
        return uri.rstrip("/")
    return DEFAULT_MIRROR


def _deb822_uris(text: str) -> list[str]:
    out = []
    for stanza in re.split(r"\n\s*\n", text):
        fields: dict[str, str] = {}
        for line in stanza.splitlines():
            if line.startswith("#") or ":" not in line:
                continue
            key, _, value = line.partition(":")
            fields[key.strip().lower()] = value.strip()
        if "deb" not in fields.get("types", "deb").split() or fields.get("enabled") == "no":
            continue
        suites = fields.get("suites", "").split()
        for uri in fields.get("uris", "").split():
            out += [f"{uri} {s}" for s in suites or [""]]
    return out


def _ensure_debootstrap(out: TextIO | None) -> str:
    found = shutil.which("debootstrap") or (
        "/usr/sbin/debootstrap" if os.path.exists("/usr/sbin/debootstrap") else None
    )
    if found:
        return found
    if out:
        out.write("debootstrap not found: installing it with apt-get\n")
    env = dict(os.environ, DEBIAN_FRONTEND="noninteractive")
    proc = subprocess.run(
        ["apt-get", "install", "-y", "--no-install-recommends", "debootstrap"],
        env=env,
        capture_output=True,
        text=True,
    )
    found = shutil.which("debootstrap") or "/usr/sbin/debootstrap"
    if proc.returncode != 0 or not os.path.exists(found):
        raise BuildError(
            "debootstrap is not installed and apt-get could not install it: "
            + (proc.stderr.strip().splitlines() or ["unknown error"])[-1]
        )
    return found


def bootstrap(
    ctx: Context,
    ref: str = "debian:bookworm",
    *,
    include: list[str] | None = None,
    mirror: str | None = None,
    variant: str = "minbase",
    out: TextIO | None = None,
) -> Image:
    from dockyard.images import reference as refmod

    parsed = refmod.parse(ref).with_default_tag()
    name = refmod.familiar(parsed.string())
    repo, _, suite = name.rpartition(":")
    if repo.rsplit("/", 1)[-1] != "debian":
        raise BuildError(f"bootstrap makes Debian images (debian:SUITE), not {ref}")
    if suite == "latest":
        suite = "stable"
    if not re.fullmatch(r"[a-z][a-z0-9.-]*", suite):
        raise BuildError(f"invalid Debian suite: {suite}")
    mirror = (mirror or host_mirror()).rstrip("/")
    debootstrap = _ensure_debootstrap(out)
    ctx.paths.ensure()
    target = Path(tempfile.mkdtemp(prefix="bootstrap-", dir=ctx.paths.tmp))
    try:
        command = [debootstrap, f"--variant={variant}"]
        if include:
            command.append("--include=" + ",".join(include))
        command += [suite, str(target), mirror]
        if out:
            out.write("+ " + " ".join(command) + "\n")
            out.flush()
        proc = subprocess.Popen(
            command,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=dict(os.environ, DEBIAN_FRONTEND="noninteractive", LC_ALL="C"),
        )
        assert proc.stdout is not None
        tail: list[str] = []
        for raw in proc.stdout:
            line = raw.decode(errors="replace")
            tail = [*tail[-19:], line]
            if out:
                out.write(line)
                out.flush()
        if proc.wait() != 0:
            raise BuildError(
                f"debootstrap failed (exit {proc.returncode}): {''.join(tail[-3:]).strip()}"
            )
        _unmount_below(target)
        _minimize(target, suite, mirror)
        return _import(ctx, target, parsed.string(), suite, mirror, variant, include or [])
    finally:
        _unmount_below(target)
        shutil.rmtree(target, ignore_errors=True)


def _unmount_below(path: Path) -> None:
    """debootstrap mounts /proc and /sys in the target; make sure nothing stays."""
    real = os.path.realpath(path)
    points = []
    try:
        with open("/proc/self/mountinfo") as f:
            for line in f:
                point = line.split()[4].replace("\\040", " ")
                if point == real or point.startswith(real + "/"):
                    points.append(point)
    except OSError:
        return
    for point in sorted(points, key=len, reverse=True):
        subprocess.run(["umount", "-l", point], capture_output=True)


def _minimize(root: Path, suite: str, mirror: str) -> None:
    """What debuerreotype does to a fresh tree for the Docker images."""
    for sub in ("var/lib/apt/lists", "var/cache/apt/archives"):
        directory = root / sub
        if directory.is_dir():
            for entry in directory.iterdir():
                if entry.name in ("partial", "lock"):
                    continue
                if entry.is_dir() and not entry.is_symlink():
                    shutil.rmtree(entry)
                else:
                    entry.unlink()
    for leftover in (root / "var/cache/apt").glob("*.bin"):
        leftover.unlink()
    dev = root / "dev"
    if dev.is_dir():
        for entry in dev.iterdir():
            if entry.is_dir() and not entry.is_symlink():
                shutil.rmtree(entry)
            else:
                entry.unlink()
    for name in ("etc/resolv.conf", "etc/hostname", "etc/machine-id"):
        path = root / name
        if path.is_symlink():
            path.unlink()
        path.write_text("")
    (root / "etc/hosts").write_text(
        "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n"
    )
    conf = root / "etc/apt/apt.conf.d"
    conf.mkdir(parents=True, exist_ok=True)
    for name, text in _APT_CONF.items():
        (conf / name).write_text(text)
    dpkg = root / "etc/dpkg/dpkg.cfg.d"
    dpkg.mkdir(parents=True, exist_ok=True)
    (dpkg / "docker").write_text(_DPKG_EXCLUDES)
    policy = root / "usr/sbin/policy-rc.d"
    policy.write_text("#!/bin/sh\nexit 101\n")
    policy.chmod(0o755)
    for log in (root / "var/log").rglob("*"):
        if log.is_file() and not log.is_symlink():
            log.write_bytes(b"")
    suites = [suite] + ([f"{suite}-updates"] if suite not in ("sid", "unstable") else [])
    sources = root / "etc/apt/sources.list.d/debian.sources"
    sources.parent.mkdir(parents=True, exist_ok=True)
    text = (
        f"Types: deb\nURIs: {mirror}\nSuites: {' '.join(suites)}\nComponents: main\n"
        "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
    )
    security = host_security_mirror()
    if security and suite not in ("sid", "unstable"):
        text += (
            f"\nTypes: deb\nURIs: {security}\nSuites: {suite}-security\nComponents: main\n"
            "Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg\n"
        )
    sources.write_text(text)
    legacy = root / "etc/apt/sources.list"
    if legacy.exists():
        legacy.unlink()


def host_security_mirror() -> str | None:
    try:
        texts = [p.read_text() for p in Path("/etc/apt/sources.list.d").glob("*.sources")]
    except OSError:
        texts = []
    for text in texts:
        for item in _deb822_uris(text):
            uri, _, suite = item.partition(" ")
            if suite.endswith("-security"):
                return uri.rstrip("/")
    return None


def _import(
    ctx: Context,
    root: Path,
    name: str,
    suite: str,
    mirror: str,
    variant: str,
    include: list[str],
) -> Image:
    from dockyard.build.steps import HISTORY_COMMENT
    from dockyard.images.layers import tar_tree
    from dockyard.images.store import host_platform, now_rfc3339

    with tempfile.TemporaryFile(dir=ctx.paths.tmp) as tar:
        tar_tree(root, tar)
        tar.seek(0)
        layer = ctx.images.ingest_layer(tar)
    try:
        created = now_rfc3339()
        arch, arch_variant = host_platform()
        extra = f" --include={','.join(include)}" if include else ""
        config: dict[str, Any] = {
            "architecture": arch,
            "config": {
                "Env": ["PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"],
                "Cmd": ["bash"],
            },
            "created": created,
            "history": [
                {
                    "created": created,
                    "created_by": f"# debootstrap --variant={variant}{extra} {suite} {mirror}",
                    "comment": "dockyard bootstrap",
                },
                {
                    "created": created,
                    "created_by": 'CMD ["bash"]',
                    "comment": HISTORY_COMMENT,
                    "empty_layer": True,
                },
            ],
            "os": "linux",
        }
        if arch_variant:
            config["variant"] = arch_variant
        return ctx.images.create_image(config, [layer], [name])
    except BaseException:
        ctx.images.discard_layers([layer])
        raise

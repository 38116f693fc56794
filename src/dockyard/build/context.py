"""The build context: a directory (or a tar or Dockerfile from stdin) seen through .dockerignore.

COPY/ADD sources are resolved here: wildcards match per path component (Go's
``filepath.Match``), excluded paths do not exist, and nothing may escape the
context (``../x`` or a symlink pointing out of it is refused). Checksums of
what a step copies are content digests; a per-file cache keyed by
(path, device, inode, size, mtime, ctime) avoids rereading unchanged files,
as BuildKit's does.
"""

from __future__ import annotations

import hashlib
import os
import posixpath
import re
import shutil
import stat
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO

from dockyard.build import BuildError
from dockyard.build.ignore import Matcher, read_patterns
from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.db import Database

_WILDCARD = re.compile(r"[*?\[]")
_CHUNK = 1024 * 1024
_CHECKSUM_SCHEMA = """
CREATE TABLE IF NOT EXISTS build_checksums (
    path TEXT PRIMARY KEY,           -- absolute host path of a context file
    stat TEXT NOT NULL,              -- "dev:ino:size:mtime_ns:ctime_ns" when hashed
    digest TEXT NOT NULL             -- sha256 of its content
)
"""


@record
class Entry:
    """One file of a copy source: its path below the source and its host path."""

    rel: str  # "" for the source itself
    path: str
    st: os.stat_result


@record
class BuildContext:
    """Where COPY/ADD read from, and the Dockerfile's text."""

    root: Path | None  # None: no context (a Dockerfile from stdin)
    dockerfile: bytes
    dockerfile_name: str  # as shown in messages ("Dockerfile", "app.Dockerfile")
    matcher: Matcher = field(default_factory=lambda: Matcher([]))
    owned: Path | None = None  # a directory of ours to delete (a stdin tar, a clone)
    size: int = 0

    @property
    def temporary(self) -> bool:
        """The context lives only for this build (no checksum cache across builds)."""
        return self.owned is not None

    def close(self) -> None:
        if self.owned is not None:
            shutil.rmtree(self.owned, ignore_errors=True)
            self.owned = None
            self.root = None

    # -- sources --------------------------------------------------------------

    def _need_root(self, src: str) -> Path:
        if self.root is None:
            raise BuildError(
                f'failed to compute cache key: "{src}" not found: the build has no context '
                "(the Dockerfile came from stdin)"
            )
        return self.root

    def resolve(self, src: str) -> list[str]:
        """The context paths (relative, "" for the root) a COPY source names."""
        root = self._need_root(src)
        stripped = src.lstrip("/")
        clean = posixpath.normpath(stripped) if stripped else "."
        if clean == ".." or clean.startswith("../"):
            raise BuildError(f"forbidden path outside the build context: {src}")
        rel = "" if clean == "." else clean
        if not _WILDCARD.search(rel):
            self._check_inside(root, rel, src)
            if rel and (self.matcher.excluded(rel) or not os.path.lexists(root / rel)):
                raise BuildError(f'"{src}" not found in the build context')
            return [rel]
        matches = [m for m in self._glob(root, rel.split("/"), "") if not self.matcher.excluded(m)]
        for m in matches:
            self._check_inside(root, m, src)
        matches.sort()
        if not matches:
            raise BuildError(f'no source files were specified: "{src}" matches nothing')
        return matches

    def _glob(self, root: Path, parts: list[str], prefix: str) -> Iterator[str]:
        import fnmatch

        head, rest = parts[0], parts[1:]
        base = root / prefix if prefix else root
        if not _WILDCARD.search(head):
            candidates = [head] if os.path.lexists(base / head) else []
        else:
            try:
                names = sorted(os.listdir(base))
            except (NotADirectoryError, FileNotFoundError):
                return
            pattern = head.replace("[^", "[!")
            candidates = [n for n in names if fnmatch.fnmatchcase(n, pattern)]
        for name in candidates:
            path = f"{prefix}/{name}" if prefix else name
            if rest:
                yield from self._glob(root, rest, path)
            else:
                yield path

    def _check_inside(self, root: Path, rel: str, src: str) -> None:
        real_root = os.path.realpath(root)
        real = os.path.realpath(os.path.join(real_root, rel))
        if real != real_root and not real.startswith(real_root + "/"):
            raise BuildError(
                f"forbidden path outside the build context: {src} (it resolves to {real})"
            )

    def host_path(self, rel: str) -> str:
        """The host path of a resolved source, symlinks followed (inside the context)."""
        root = self._need_root(rel)
        return os.path.realpath(os.path.join(root, rel))

    def walk(self, rel: str) -> Iterator[Entry]:
        """The source itself (followed if a symlink) then everything below it, sorted,
        leaving out what .dockerignore excludes."""
        path = self.host_path(rel)
        st = os.stat(path)
        yield Entry("", path, st)
        if stat.S_ISDIR(st.st_mode):
            real_root = os.path.realpath(self._need_root(rel))
            base = os.path.relpath(path, real_root)
            yield from self._walk_dir(path, "", "" if base == "." else base)

    def _walk_dir(self, path: str, rel: str, ctx_rel: str) -> Iterator[Entry]:
        try:
            entries = sorted(os.scandir(path), key=lambda e: e.name)
        except OSError as err:
            raise BuildError(f"cannot read build context {path}: {err.strerror}") from None
        for entry in entries:
            child_ctx = f"{ctx_rel}/{entry.name}" if ctx_rel else entry.name
            child_rel = f"{rel}/{entry.name}" if rel else entry.name
            is_dir = entry.is_dir(follow_symlinks=False)
            if self.matcher and self.matcher.excluded(child_ctx):
                if is_dir and self.matcher.may_include_below(child_ctx):
                    yield from self._walk_dir(entry.path, child_rel, child_ctx)
                continue
            yield Entry(child_rel, entry.path, entry.stat(follow_symlinks=False))
            if is_dir:
                yield from self._walk_dir(entry.path, child_rel, child_ctx)


def load_context(
    path: str,
    dockerfile: str | None,
    *,
    stdin: BinaryIO | None,
    tmp_dir: Path,
) -> BuildContext:
    """``docker build PATH|URL|-`` with ``-f``: the context and the Dockerfile's bytes."""
    from dockyard.build import remote

    if remote.is_git_url(path):
        checkout, root = remote.fetch_git(path, tmp_dir)
        try:
            if dockerfile and dockerfile != "-":  # inside the repository, as Docker has it
                dockerfile = str(root / dockerfile.lstrip("/"))
                if not os.path.realpath(dockerfile).startswith(os.path.realpath(checkout) + "/"):
                    raise BuildError(f"forbidden path outside the build context: {dockerfile}")
            ctx = load_context(str(root), dockerfile, stdin=stdin, tmp_dir=tmp_dir)
        except BaseException:
            shutil.rmtree(checkout, ignore_errors=True)
            raise
        ctx.owned = checkout
        return ctx
    if remote.is_remote(path):
        import io

        return _stdin_context(io.BytesIO(remote.download(path)), dockerfile, tmp_dir)
    dockerfile_from_stdin = dockerfile == "-"
    if path == "-":
        if dockerfile_from_stdin:
            raise BuildError(
                "invalid argument: can't use stdin for both build context and dockerfile"
            )
        assert stdin is not None
        return _stdin_context(stdin, dockerfile, tmp_dir)
    root = Path(path)
    if not root.is_dir():
        if root.exists():
            raise BuildError(f"unable to prepare context: path {path!r} is not a directory")
        raise BuildError(f"unable to prepare context: path {path!r} not found")
    if dockerfile_from_stdin:
        assert stdin is not None
        text = stdin.read()
        name = "Dockerfile"
        ignore_file = root / ".dockerignore"
    else:
        df_path = Path(dockerfile) if dockerfile else root / "Dockerfile"
        if not dockerfile and not df_path.exists() and (root / "dockerfile").exists():
            df_path = root / "dockerfile"
        try:
            text = df_path.read_bytes()
        except FileNotFoundError:
            raise BuildError(
                f"failed to read dockerfile: open {df_path}: no such file or directory"
            ) from None
        except IsADirectoryError:
            raise BuildError(f"failed to read dockerfile: {df_path} is a directory") from None
        name = df_path.name
        specific = Path(str(df_path) + ".dockerignore")
        ignore_file = specific if specific.is_file() else root / ".dockerignore"
    patterns = _ignore_patterns(ignore_file)
    if not dockerfile_from_stdin:
        patterns = _keep_build_files(patterns, root, dockerfile)
    return BuildContext(root.absolute(), text, name, Matcher(patterns))


def _ignore_patterns(path: Path) -> list[str]:
    try:
        return read_patterns(path.read_text(errors="replace"))
    except FileNotFoundError:
        return []


def _keep_build_files(patterns: list[str], root: Path, dockerfile: str | None) -> list[str]:
    """Docker removes the Dockerfile and .dockerignore from the context only if ignored;
    nothing to do here: the matcher already hides them then."""
    return patterns


def _stdin_context(stdin: BinaryIO, dockerfile: str | None, tmp_dir: Path) -> BuildContext:
    """``docker build -`` (or a URL's body): a tar (maybe compressed) context, or just
    a Dockerfile."""
    from dockyard.images.layers import detect_compression

    data = stdin.read()
    is_tar = detect_compression(data[:6]) != "none" or data[257:262] == b"ustar"
    if not is_tar:
        return BuildContext(None, data, "Dockerfile")
    import io

    from dockyard.images.layers import unpack

    tmp_dir.mkdir(parents=True, exist_ok=True)
    root = Path(tempfile.mkdtemp(prefix="build-context-", dir=tmp_dir))
    try:
        unpack(io.BytesIO(data), root, whiteouts=False, same_owner=False)
        name = dockerfile or "Dockerfile"
        df_path = root / name.lstrip("/")
        if os.path.realpath(df_path) != str(df_path) and not os.path.realpath(df_path).startswith(
            os.path.realpath(root) + "/"
        ):
            raise BuildError(f"forbidden path outside the build context: {name}")
        try:
            text = df_path.read_bytes()
        except FileNotFoundError:
            raise BuildError(
                f"failed to read dockerfile: {name}: not found in the context tar"
            ) from None
        patterns = _ignore_patterns(root / ".dockerignore")
        ctx = BuildContext(root, text, df_path.name, Matcher(patterns), owned=root)
        ctx.size = len(data)
        return ctx
    except BaseException:
        shutil.rmtree(root, ignore_errors=True)
        raise


# -- checksums -------------------------------------------------------------------


class ChecksumCache:
    """Content digests of context files, remembered by their stat (path, dev, ino, size,
    mtime, ctime) so that an unchanged file is never read twice."""

    def __init__(self, db: Database | None) -> None:
        self.db = db
        self.pending: dict[str, tuple[str, str]] = {}
        self._ready = False

    def _ensure(self) -> None:
        if self._ready or self.db is None:
            return
        rows = self.db.query(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'build_checksums'"
        )
        if not rows:
            with self.db.transaction() as conn:
                conn.execute(_CHECKSUM_SCHEMA)
        self._ready = True

    def digest(self, path: str, st: os.stat_result) -> str:
        key = f"{st.st_dev}:{st.st_ino}:{st.st_size}:{st.st_mtime_ns}:{st.st_ctime_ns}"
        if self.db is not None:
            self._ensure()
            rows = self.db.query("SELECT stat, digest FROM build_checksums WHERE path = ?", (path,))
            if rows and rows[0]["stat"] == key:
                return str(rows[0]["digest"])
        digest = file_digest(path)
        if self.db is not None:
            self.pending[path] = (key, digest)
        return digest

    def flush(self) -> None:
        if not self.pending or self.db is None:
            return
        with self.db.transaction() as conn:
            conn.executemany(
                "INSERT OR REPLACE INTO build_checksums (path, stat, digest) VALUES (?, ?, ?)",
                [(p, k, d) for p, (k, d) in self.pending.items()],
            )
        self.pending.clear()

    def clear(self) -> int:
        if self.db is None:
            return 0
        self._ensure()
        with self.db.transaction() as conn:
            return conn.execute("DELETE FROM build_checksums").rowcount


def file_digest(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def sources_checksum(ctx: BuildContext, sources: list[str], cache: ChecksumCache) -> str:
    """A digest of everything COPY would take from ``sources``: names, types, modes,
    link targets and contents (not owners: the context is copied as root; not times)."""
    h = hashlib.sha256()
    for src in sources:
        h.update(f"\0source {src}\0".encode())
        for entry in ctx.walk(src):
            mode = entry.st.st_mode
            h.update(f"{entry.rel}\0{stat.S_IFMT(mode):o}\0{stat.S_IMODE(mode):o}\0".encode())
            if stat.S_ISREG(mode):
                h.update(cache.digest(entry.path, entry.st).encode())
            elif stat.S_ISLNK(mode):
                h.update(os.readlink(entry.path).encode())
            h.update(b"\n")
    cache.flush()
    return h.hexdigest()

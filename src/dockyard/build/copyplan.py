"""COPY and ADD as build steps: sources resolved and checksummed for the cache key
first, then copied (``build.copy``) into an overlay of the step's image.

Sources: the build context (through .dockerignore, never outside it), another
stage or an image (``--from``, read from an overlay of its layers), heredocs,
and for ADD URLs (downloaded with urllib; the content's digest is part of
the key, as Docker checksums downloads) and local tar archives (extracted).
"""

from __future__ import annotations

import hashlib
import json
import os
import posixpath
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from contextlib import ExitStack
from pathlib import Path
from typing import TYPE_CHECKING, Any

from dockyard.build import BuildError
from dockyard.build import imageconfig as ic
from dockyard.build import instructions as ins
from dockyard.build.context import Entry, sources_checksum
from dockyard.build.copy import (
    CopyItem,
    copy_into,
    is_archive,
    parse_chmod,
    resolve_chown,
    walk_host,
)
from dockyard.build.dispatch import stage_ref
from dockyard.build.ignore import Matcher
from dockyard.build.shell import Lexer, ShellError
from dockyard.records import record

if TYPE_CHECKING:
    from dockyard.build.dispatch import StageBuilder
    from dockyard.build.progress import Vertex
    from dockyard.images.store import Image, LayerRecord

_WILDCARD = re.compile(r"[*?\[]")
_URL = re.compile(r"^https?://")


@record
class _Download:
    url: str
    path: str
    name: str
    digest: str
    mtime_ns: int | None


def dispatch_copy(b: StageBuilder, c: ins.Copy, section: dict[str, Any]) -> None:
    keyword = c.keyword
    sources = [b.expand(s) for s in c.sources]
    dest_text = b.expand(c.dest)
    chown = b.expand(c.chown)
    chmod_text = b.expand(c.chmod)
    chmod = parse_chmod(chmod_text)
    dest = ic.dest_path(str(section.get("WorkingDir") or "/"), dest_text)
    contents = [(sc.path, _expand_content(b, sc)) for sc in c.contents]
    words = [keyword]
    if chown:
        words.append(f"--chown={chown}")
    if chmod_text:
        words.append(f"--chmod={chmod_text}")
    words += sources + [f"<<{name}" for name, _ in contents] + [dest_text]
    created_by = " ".join(words) + " # buildkit"
    label = (
        keyword
        + " "
        + " ".join([*c.node.flags, *sources, *(f"<<{n}" for n, _ in contents), dest_text])
    )
    if c.parents:
        raise BuildError("COPY --parents is not supported")
    excludes = [b.expand(e) for e in c.excludes]
    skip = Matcher(excludes) if excludes else None
    extra: dict[str, Any] = {"dest": dest, "contents": contents, "exclude": excludes}
    downloads: list[_Download] = []
    source_image: Image | None = None
    rels: list[str] = []
    with ExitStack() as stack:
        if c.source:
            source_image = _source_image(b, c.source)
            extra["from"] = source_image.id if source_image else "scratch"
            extra["sources"] = sources
        else:
            for src in sources:
                if _URL.match(src):
                    if not c.is_add:
                        raise BuildError("source can't be a URL for COPY")
                    dl = _download(b, src, c.checksum)
                    stack.callback(os.unlink, dl.path)
                    downloads.append(dl)
                else:
                    rels += b.shared.bctx.resolve(src)
            if rels:
                extra["context"] = sources_checksum(b.shared.bctx, rels, b.checksums)
            extra["urls"] = [(d.url, d.digest, d.mtime_ns) for d in downloads]
            extra["unpack"] = c.unpack
            extra["keyword"] = keyword

        def action(_vertex: Vertex | None) -> LayerRecord | None:
            from dockyard.build.steps import fs_step, scratch_rootfs

            with ExitStack() as inner:
                src_root: Path | None = None
                if c.source:
                    lowers = b.eng.ctx.images.layer_dirs(source_image) if source_image else []
                    _, src_root = inner.enter_context(scratch_rootfs(b.eng.paths, lowers))

                def act(root: Path) -> None:
                    owner = resolve_chown(root, chown)
                    items: list[CopyItem] = []
                    if src_root is not None:
                        for src in sources:
                            items += _image_items(src_root, src, keyword)
                    else:
                        items += [_context_item(b, rel, c) for rel in rels]
                        items += [
                            CopyItem(d.name, content_path=d.path, mode=0o600, mtime_ns=d.mtime_ns)
                            for d in downloads
                        ]
                    if skip is not None:
                        for item in items:
                            item.entries = _without(item.entries, skip)
                    items += [
                        CopyItem(posixpath.basename(name) or name, content=data.encode())
                        for name, data in contents
                    ]
                    copy_into(root, items, dest, owner=owner, chmod=chmod, keyword=keyword)

                return fs_step(b.eng, b.lower_dirs(), act)

        b.commit(
            created_by,
            section,
            label=label,
            action=action,
            extra=json.dumps(extra, sort_keys=True, default=str),
        )


def _without(entries: Iterator[Entry] | None, skip: Matcher) -> Iterator[Entry] | None:
    """``--exclude``: leave out what the patterns match below each source."""
    if entries is None:
        return None
    return (e for e in entries if not e.rel or not skip.excluded(e.rel))


def _expand_content(b: StageBuilder, sc: ins.SourceContent) -> str:
    if not sc.expand:
        return sc.data
    try:
        return Lexer("\\", skip_quotes=True).process_word(sc.data, b.state.env)
    except ShellError as err:
        raise BuildError(str(err)) from None


def _source_image(b: StageBuilder, name: str) -> Image | None:
    if "$" in name:
        raise BuildError(
            "variable expansion is not supported for --from, define a new stage with FROM "
            "using ARG from global scope as a workaround"
        )
    index = stage_ref(b.shared, name, b.stage.index)
    if index is not None:
        if index >= b.stage.index:
            raise BuildError(
                f'cannot copy from stage "{name}", it needs to be defined before current stage '
                f'"{b.stage.display_name}"'
            )
        result = b.shared.results.get(index)
        if result is None:
            raise BuildError(f'stage "{name}" was not built')
        return result.image
    image = b.shared.images.get(name)
    if image is None:
        raise BuildError(f"failed to resolve source metadata for {name}")
    return image


def _context_item(b: StageBuilder, rel: str, c: ins.Copy) -> CopyItem:
    bctx = b.shared.bctx
    host = bctx.host_path(rel)
    name = posixpath.basename(rel) or "."
    if os.path.isdir(host):
        return CopyItem(name, entries=bctx.walk(rel), is_dir=True)
    if c.is_add and c.unpack is not False and is_archive(host):
        return CopyItem(name, archive=host)
    return CopyItem(name, entries=bctx.walk(rel))


def _image_items(root: Path, src: str, keyword: str) -> list[CopyItem]:
    """Sources in another stage's or image's filesystem (``--from``)."""
    from dockyard.fsutil import resolve_in_root

    clean = posixpath.normpath("/" + src)
    if _WILDCARD.search(clean):
        matches = _glob_in_root(root, clean)
        if not matches:
            raise BuildError(f"no source files were specified ({src})")
    else:
        matches = [clean]
    items = []
    for path in matches:
        host = resolve_in_root(root, path)
        if not os.path.lexists(host):
            raise BuildError(f'failed to compute cache key: "{path}" not found: not found')
        name = posixpath.basename(path) or "."
        is_dir = os.path.isdir(host) and not os.path.islink(host)
        items.append(
            CopyItem(name, entries=walk_host(os.fspath(host)), keep_owner=True, is_dir=is_dir)
        )
    return items


def _glob_in_root(root: Path, pattern: str) -> list[str]:
    import fnmatch

    from dockyard.fsutil import resolve_in_root

    found = ["/"]
    for part in [p for p in pattern.split("/") if p]:
        following: list[str] = []
        for prefix in found:
            base = prefix.rstrip("/")
            if not _WILDCARD.search(part):
                following.append(f"{base}/{part}")
                continue
            try:
                names = sorted(os.listdir(resolve_in_root(root, prefix)))
            except OSError:
                continue
            glob = part.replace("[^", "[!")
            following += [f"{base}/{n}" for n in names if fnmatch.fnmatchcase(n, glob)]
        found = following
    return [p for p in found if os.path.lexists(resolve_in_root(root, p, follow_last=False))]


def _download(b: StageBuilder, url: str, checksum: str) -> _Download:
    """ADD URL: fetch into the store's tmp dir; name from the URL path, time from Last-Modified."""
    import urllib.error
    import urllib.parse
    import urllib.request
    from email.utils import parsedate_to_datetime

    name = posixpath.basename(urllib.parse.urlparse(url).path) or "__unnamed__"
    if name in (".", "/"):
        name = "__unnamed__"
    tmp_dir = b.eng.paths.tmp
    tmp_dir.mkdir(parents=True, exist_ok=True)
    fd, path = tempfile.mkstemp(prefix="build-download-", dir=tmp_dir)
    h = hashlib.sha256()
    mtime_ns: int | None = None
    out = os.fdopen(fd, "wb")
    try:
        request = urllib.request.Request(url, headers={"User-Agent": "dockyard-build"})
        with urllib.request.urlopen(request, timeout=60) as response, out:
            shutil.copyfileobj(_hashing(response, h), out)
            modified = response.headers.get("Last-Modified")
            if modified:
                try:
                    mtime_ns = int(parsedate_to_datetime(modified).timestamp()) * 1_000_000_000
                except (TypeError, ValueError):
                    mtime_ns = None
    except urllib.error.HTTPError as err:
        out.close()
        os.unlink(path)
        raise BuildError(
            f"failed to download {url}: invalid response status {err.code} {err.reason}"
        ) from None
    except (urllib.error.URLError, OSError, ValueError) as err:
        out.close()
        os.unlink(path)
        reason = getattr(err, "reason", None) or err
        raise BuildError(f"failed to download {url}: {reason}") from None
    except BaseException:
        out.close()
        os.unlink(path)
        raise
    digest = "sha256:" + h.hexdigest()
    if checksum and checksum != digest:
        os.unlink(path)
        raise BuildError(f"digest mismatch {digest}: {checksum}")
    return _Download(url, path, name, digest, mtime_ns or time.time_ns())


class _hashing:
    """A reader that hashes what passes through."""

    def __init__(self, raw: Any, h: Any) -> None:
        self.raw = raw
        self.h = h

    def read(self, n: int = -1) -> bytes:
        data = self.raw.read(n)
        self.h.update(data)
        return bytes(data)

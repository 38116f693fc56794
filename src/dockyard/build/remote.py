"""Remote build contexts, as ``docker build URL`` takes them.

- A Git repository: ``git://``, ``git@``, ``github.com/`` or an ``http(s)://`` URL ending
  in ``.git``, with an optional ``#REF:DIR`` (branch, tag or commit; a subdirectory as
  the context). It is fetched shallowly into a directory of the store's tmp, as
  BuildKit does, with submodules.
- Any other ``http(s)://`` URL: a (maybe compressed) tar of the context, or else the
  text of a Dockerfile with no context.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from dockyard.build import BuildError

_GIT_PREFIXES = ("git://", "git@", "github.com/")
_TIMEOUT = 600  # seconds, for one git command or one download


def is_git_url(url: str) -> bool:
    """Docker's urlutil.IsGitURL."""
    if url.startswith(_GIT_PREFIXES):
        return True
    return url.startswith(("http://", "https://")) and url.partition("#")[0].endswith(".git")


def is_remote(url: str) -> bool:
    return is_git_url(url) or url.startswith(("http://", "https://"))


def fetch_git(url: str, tmp_dir: Path) -> tuple[Path, Path]:
    """Fetch ``url`` (with ``#ref:dir``); returns (the checkout to delete, the context dir)."""
    remote, _, fragment = url.partition("#")
    ref, _, subdir = fragment.partition(":")
    if remote.startswith("github.com/"):
        remote = "https://" + remote
    tmp_dir.mkdir(parents=True, exist_ok=True)
    checkout = Path(tempfile.mkdtemp(prefix="build-git-", dir=tmp_dir))
    try:
        _git(checkout, "init", "-q")
        _git(checkout, "remote", "add", "origin", remote)
        _git(checkout, "fetch", "-q", "--depth", "1", "origin", ref or "HEAD")
        _git(checkout, "checkout", "-q", "FETCH_HEAD")
        if (checkout / ".gitmodules").exists():
            _git(checkout, "submodule", "update", "-q", "--init", "--recursive", "--depth", "1")
        root = checkout
        if subdir:
            real = os.path.realpath(checkout)
            root = Path(os.path.realpath(checkout / subdir.strip("/")))
            if str(root) != real and not str(root).startswith(real + "/"):
                raise BuildError(f"subdirectory {subdir!r} of {remote} is outside the repository")
            if not root.is_dir():
                raise BuildError(f"subdirectory {subdir!r} not found in {remote}")
        return checkout, root
    except BaseException:
        shutil.rmtree(checkout, ignore_errors=True)
        raise


def _git(cwd: Path, *args: str) -> None:
    env = dict(os.environ, GIT_TERMINAL_PROMPT="0", GIT_ASKPASS="true")
    try:
        proc = subprocess.run(
            ["git", *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=_TIMEOUT
        )
    except FileNotFoundError:
        raise BuildError("git is not installed: apt-get install git") from None
    except subprocess.TimeoutExpired:
        raise BuildError(f"git {args[0]} did not finish within {_TIMEOUT}s") from None
    if proc.returncode != 0:
        detail = (proc.stderr or proc.stdout).strip().splitlines()
        raise BuildError(
            "unable to prepare context: unable to 'git clone' to temporary context directory: "
            + (detail[-1] if detail else f"git {args[0]} failed")
        )


def download(url: str) -> bytes:
    """The body at ``url`` (a context tar or a Dockerfile)."""
    import urllib.error
    import urllib.request

    try:
        with urllib.request.urlopen(url, timeout=_TIMEOUT) as response:  # noqa: S310 - the user's URL
            data: bytes = response.read()
            return data
    except urllib.error.HTTPError as err:
        raise BuildError(
            f"unable to prepare context: unable to download remote context {url}: "
            f"{err.code} {err.reason}"
        ) from None
    except (urllib.error.URLError, OSError) as err:
        reason = getattr(err, "reason", err)
        raise BuildError(
            f"unable to prepare context: unable to download remote context {url}: {reason}"
        ) from None

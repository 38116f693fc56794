"""Docker image references: parsing, normalization and the familiar display form.

Follows the grammar of distribution/reference (what the Docker CLI and daemon
use): ``redis`` means ``docker.io/library/redis:latest``, a first component
with a ``.`` or ``:`` or equal to ``localhost`` is a registry host, and names
must be lowercase. Errors carry Docker's wording ("invalid reference format").
"""

from __future__ import annotations

import re

from dockyard.errors import InvalidArgument
from dockyard.records import record

DEFAULT_DOMAIN = "docker.io"
LEGACY_DEFAULT_DOMAIN = "index.docker.io"
OFFICIAL_PREFIX = "library/"
DEFAULT_TAG = "latest"
NAME_TOTAL_LENGTH_MAX = 255

_ALNUM = r"[a-z0-9]+"
_SEPARATOR = r"(?:[._]|__|[-]+)"
_PATH_COMPONENT = rf"{_ALNUM}(?:{_SEPARATOR}{_ALNUM})*"
_DOMAIN_COMPONENT = r"(?:[a-zA-Z0-9]|[a-zA-Z0-9][a-zA-Z0-9-]*[a-zA-Z0-9])"
_IPV6 = r"\[(?:[a-fA-F0-9:]+)\]"
_DOMAIN = rf"(?:{_DOMAIN_COMPONENT}(?:\.{_DOMAIN_COMPONENT})*|{_IPV6})(?::[0-9]+)?"
_TAG = r"[\w][\w.-]{0,127}"
_DIGEST = r"[A-Za-z][A-Za-z0-9]*(?:[-_+.][A-Za-z][A-Za-z0-9]*)*:[0-9a-fA-F]{32,}"
_NAME = rf"(?:{_DOMAIN}/)?{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*"

_REFERENCE_RE = re.compile(rf"^({_NAME})(?::({_TAG}))?(?:@({_DIGEST}))?$")
_DOMAIN_RE = re.compile(rf"^{_DOMAIN}$")
_PATH_RE = re.compile(rf"^{_PATH_COMPONENT}(?:/{_PATH_COMPONENT})*$")
_TAG_RE = re.compile(rf"^{_TAG}$")
_ID_RE = re.compile(r"^[a-f0-9]{64}$")
_DIGEST_RE = re.compile(rf"^{_DIGEST}$")

INVALID = "invalid reference format"


@record(frozen=True)
class Reference:
    """A normalized reference: ``domain/path[:tag][@digest]``."""

    domain: str
    path: str
    tag: str | None = None
    digest: str | None = None

    @property
    def name(self) -> str:
        """The full repository name, e.g. ``docker.io/library/busybox``."""
        return f"{self.domain}/{self.path}"

    def string(self) -> str:
        """The full normalized form, e.g. ``docker.io/library/busybox:latest``."""
        out = self.name
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def __str__(self) -> str:
        return self.string()

    def familiar_name(self) -> str:
        """The short repository name users type: ``busybox``, ``user/app``, ``host:5000/x``."""
        if self.domain == DEFAULT_DOMAIN:
            path = self.path
            if path.startswith(OFFICIAL_PREFIX) and "/" not in path[len(OFFICIAL_PREFIX) :]:
                return path[len(OFFICIAL_PREFIX) :]
            return path
        return self.name

    def familiar(self) -> str:
        """The short form with tag and digest: ``busybox:latest``, ``localhost:5000/x:1``."""
        out = self.familiar_name()
        if self.tag is not None:
            out += f":{self.tag}"
        if self.digest is not None:
            out += f"@{self.digest}"
        return out

    def with_default_tag(self) -> Reference:
        """``latest`` added when there is neither tag nor digest (Docker's TagNameOnly)."""
        if self.tag is None and self.digest is None:
            return Reference(self.domain, self.path, DEFAULT_TAG, None)
        return self

    def with_tag(self, tag: str) -> Reference:
        return Reference(self.domain, self.path, tag, None)

    def name_only(self) -> Reference:
        return Reference(self.domain, self.path)

    @property
    def is_name_only(self) -> bool:
        return self.tag is None and self.digest is None


def _split_domain(name: str) -> tuple[str, str]:
    """Docker's splitDockerDomain: the first component is a host only if it looks like one."""
    slash = name.find("/")
    if slash == -1:
        domain, rest = DEFAULT_DOMAIN, name
    else:
        first = name[:slash]
        if (
            "." not in first
            and ":" not in first
            and first != "localhost"
            and first.lower() == first
        ):
            domain, rest = DEFAULT_DOMAIN, name
        else:
            domain, rest = first, name[slash + 1 :]
    if domain == LEGACY_DEFAULT_DOMAIN:
        domain = DEFAULT_DOMAIN
    if domain == DEFAULT_DOMAIN and "/" not in rest:
        rest = OFFICIAL_PREFIX + rest
    return domain, rest


def parse(text: str) -> Reference:
    """Parse and normalize a reference the way ``docker`` does (ParseNormalizedNamed).

    No default tag is added; call :meth:`Reference.with_default_tag` for that.
    """
    if not text:
        raise InvalidArgument(INVALID)
    if _ID_RE.match(text):
        raise InvalidArgument(
            f"invalid repository name ({text}), cannot specify 64-byte hexadecimal strings"
        )
    # Split off digest and tag before the domain heuristic looks at the name.
    remainder, _, digest = text.partition("@")
    if digest and not _DIGEST_RE.match(digest):
        raise InvalidArgument(INVALID)
    name, tag = remainder, None
    colon = remainder.rfind(":")
    if colon > remainder.rfind("/"):
        name, tag = remainder[:colon], remainder[colon + 1 :]
        if not _TAG_RE.match(tag):
            raise InvalidArgument(INVALID)
    domain, path = _split_domain(name)
    if path.lower() != path:
        raise InvalidArgument(f"{INVALID}: repository name ({path}) must be lowercase")
    if not _DOMAIN_RE.match(domain) or not _PATH_RE.match(path):
        raise InvalidArgument(INVALID)
    if len(domain) + 1 + len(path) > NAME_TOTAL_LENGTH_MAX:
        raise InvalidArgument(
            f"repository name must not be more than {NAME_TOTAL_LENGTH_MAX} characters"
        )
    if digest:
        algorithm, _, hexpart = digest.partition(":")
        if algorithm == "sha256" and (
            len(hexpart) != 64 or not all(c in "0123456789abcdef" for c in hexpart)
        ):
            raise InvalidArgument(f"{INVALID}: invalid checksum digest length")
    return Reference(domain, path, tag, digest or None)


def parse_tagged(text: str) -> Reference:
    """Parse and add ``latest`` when neither tag nor digest is given."""
    return parse(text).with_default_tag()


def is_image_id(text: str) -> bool:
    """A full image ID, with or without ``sha256:``."""
    return bool(_ID_RE.match(text.removeprefix("sha256:")))


def familiar(text: str) -> str:
    """The familiar form of an already normalized reference string (or the input on error)."""
    try:
        return parse(text).familiar()
    except InvalidArgument:
        return text


def match(pattern: str, ref: Reference) -> bool:
    """Docker's FamiliarMatch: ``path.Match`` on ``name:tag`` and on the bare name."""
    regex = _path_match_regex(pattern)
    if regex is None:
        return False
    return bool(regex.match(ref.familiar()) or regex.match(ref.familiar_name()))


def _path_match_regex(pattern: str) -> re.Pattern[str] | None:
    """Go's ``path.Match`` syntax as a regex (``*`` and ``?`` never match ``/``)."""
    out, i = "", 0
    while i < len(pattern):
        c = pattern[i]
        if c == "*":
            out += "[^/]*"
        elif c == "?":
            out += "[^/]"
        elif c == "\\" and i + 1 < len(pattern):
            i += 1
            out += re.escape(pattern[i])
        elif c == "[":
            end = pattern.find("]", i + 2 if pattern[i + 1 : i + 2] in ("^", "]") else i + 1)
            if end == -1:
                return None
            body = pattern[i + 1 : end]
            negate = body.startswith("^")
            body = body[1:] if negate else body
            out += "[" + ("^/" if negate else "") + body.replace("\\", "\\\\") + "]"
            i = end
        else:
            out += re.escape(c)
        i += 1
    try:
        return re.compile(f"^{out}$")
    except re.error:
        return None

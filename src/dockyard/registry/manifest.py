"""Manifest media types, parsing, platform choice and the manifests we push."""

from __future__ import annotations

import json
import os
from typing import Any

from dockyard.errors import InvalidArgument
from dockyard.records import record
from dockyard.registry.auth import RegistryError

DOCKER_MANIFEST = "application/vnd.docker.distribution.manifest.v2+json"
DOCKER_LIST = "application/vnd.docker.distribution.manifest.list.v2+json"
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_INDEX = "application/vnd.oci.image.index.v1+json"
DOCKER_CONFIG = "application/vnd.docker.container.image.v1+json"
OCI_CONFIG = "application/vnd.oci.image.config.v1+json"
DOCKER_LAYER = "application/vnd.docker.image.rootfs.diff.tar.gzip"
DOCKER_FOREIGN_LAYER = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
OCI_LAYER = "application/vnd.oci.image.layer.v1.tar"
OCI_LAYER_GZIP = "application/vnd.oci.image.layer.v1.tar+gzip"
OCI_LAYER_ZSTD = "application/vnd.oci.image.layer.v1.tar+zstd"
SCHEMA1 = (
    "application/vnd.docker.distribution.manifest.v1+prettyjws",
    "application/vnd.docker.distribution.manifest.v1+json",
)

MANIFESTS = (DOCKER_MANIFEST, OCI_MANIFEST)
INDEXES = (DOCKER_LIST, OCI_INDEX)
ACCEPT = ", ".join((DOCKER_LIST, OCI_INDEX, DOCKER_MANIFEST, OCI_MANIFEST))

LAYER_TYPES = {
    DOCKER_LAYER: "gzip",
    DOCKER_FOREIGN_LAYER: "gzip",
    OCI_LAYER: "",
    OCI_LAYER_GZIP: "gzip",
    OCI_LAYER_ZSTD: "zstd",
    "application/vnd.oci.image.layer.nondistributable.v1.tar": "",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+gzip": "gzip",
    "application/vnd.oci.image.layer.nondistributable.v1.tar+zstd": "zstd",
    "application/vnd.docker.image.rootfs.diff.tar": "",
}


def compression_of(media_type: str) -> str:
    """``gzip``, ``zstd`` or ``""`` for a layer media type; unknown types are refused."""
    if media_type not in LAYER_TYPES:
        raise RegistryError(f"unsupported layer media type {media_type}")
    return LAYER_TYPES[media_type]


def sniff_compression(head: bytes) -> str:
    if head.startswith(b"\x1f\x8b"):
        return "gzip"
    if head.startswith(b"\x28\xb5\x2f\xfd"):
        return "zstd"
    return ""


@record(frozen=True)
class Descriptor:
    media_type: str
    digest: str
    size: int
    platform: dict[str, Any] | None = None
    annotations: dict[str, str] | None = None
    urls: tuple[str, ...] = ()

    @classmethod
    def from_json(cls, data: Any) -> Descriptor:
        if not isinstance(data, dict) or not isinstance(data.get("digest"), str):
            raise RegistryError("invalid manifest: descriptor without digest")
        return cls(
            str(data.get("mediaType", "")),
            data["digest"],
            int(data.get("size", 0)),
            data.get("platform"),
            data.get("annotations"),
            tuple(data.get("urls") or ()),
        )

    def to_json(self) -> dict[str, Any]:
        return {"mediaType": self.media_type, "size": self.size, "digest": self.digest}


@record
class Manifest:
    """A parsed manifest or index, with the exact bytes it came as."""

    media_type: str
    raw: bytes
    data: dict[str, Any]

    @property
    def is_index(self) -> bool:
        return self.media_type in INDEXES

    @property
    def config(self) -> Descriptor:
        return Descriptor.from_json(self.data.get("config"))

    @property
    def layers(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.data.get("layers") or []]

    @property
    def manifests(self) -> list[Descriptor]:
        return [Descriptor.from_json(d) for d in self.data.get("manifests") or []]


def parse_manifest(raw: bytes, content_type: str = "") -> Manifest:
    """Parse and classify; schema 1 and unknown types get Docker's clear refusal."""
    try:
        data = json.loads(raw)
    except ValueError as err:
        raise RegistryError(f"invalid manifest JSON: {err}") from err
    if not isinstance(data, dict):
        raise RegistryError("invalid manifest: not a JSON object")
    content_type = content_type.split(";")[0].strip()
    media_type = str(data.get("mediaType") or "")
    if not media_type:
        if content_type in MANIFESTS + INDEXES:
            media_type = content_type
        elif data.get("schemaVersion") == 1 or content_type in SCHEMA1:
            media_type = SCHEMA1[0]
        elif "manifests" in data:
            media_type = OCI_INDEX
        elif "config" in data and "layers" in data:
            media_type = OCI_MANIFEST
    if media_type in SCHEMA1:
        raise RegistryError(
            "support for image manifest schema version 1 has been removed; "
            "push the image again with a current client"
        )
    if media_type not in MANIFESTS + INDEXES:
        raise RegistryError(f"unsupported manifest media type: {media_type or content_type!r}")
    return Manifest(media_type, raw, data)


# --- platforms -----------------------------------------------------------

_ARCH = {
    "x86_64": ("amd64", ""),
    "amd64": ("amd64", ""),
    "aarch64": ("arm64", "v8"),
    "arm64": ("arm64", "v8"),
    "armv7l": ("arm", "v7"),
    "armv6l": ("arm", "v6"),
    "i386": ("386", ""),
    "i686": ("386", ""),
    "ppc64le": ("ppc64le", ""),
    "s390x": ("s390x", ""),
    "riscv64": ("riscv64", ""),
}


@record(frozen=True)
class Platform:
    os: str
    architecture: str
    variant: str = ""

    def __str__(self) -> str:
        return "/".join(p for p in (self.os, self.architecture, self.variant) if p)


def host_platform() -> Platform:
    machine = os.uname().machine
    arch, variant = _ARCH.get(machine, (machine, ""))
    return Platform("linux", arch, variant)


def parse_platform(text: str | None) -> Platform:
    """``linux/arm64/v8``, ``linux/amd64`` or ``arm64`` (the OS defaults to linux)."""
    if not text:
        return host_platform()
    parts = text.lower().split("/")
    if len(parts) == 1:
        parts = ["linux", parts[0]]
    if len(parts) > 3 or not all(parts):
        raise InvalidArgument(f'"{text}": unknown operating system or architecture')
    arch = _ARCH.get(parts[1], (parts[1], ""))[0]
    return Platform(parts[0], arch, parts[2] if len(parts) == 3 else "")


def _matches(entry: dict[str, Any], want: Platform) -> bool:
    """Same OS and architecture; a variant only matters when one is asked for."""
    arch = str(entry.get("architecture", ""))
    arch, default_variant = _ARCH.get(arch, (arch, ""))
    if entry.get("os") != want.os or arch != want.architecture:
        return False
    variant = str(entry.get("variant") or default_variant)
    return not want.variant or not variant or variant == want.variant


def choose(index: Manifest, want: Platform) -> Descriptor:
    """The index entry for a platform, as Docker picks it (first match wins)."""
    for entry in index.manifests:
        if entry.media_type and entry.media_type not in MANIFESTS:
            continue
        if entry.platform and _matches(entry.platform, want):
            return entry
    raise RegistryError(f"no matching manifest for {want} in the manifest list entries")


def build_manifest(config: Descriptor, layers: list[Descriptor]) -> bytes:
    """A manifest as Docker writes it: schema 2, or OCI when a layer type needs it."""
    oci = any(d.media_type.startswith("application/vnd.oci.") for d in layers)
    media_type = OCI_MANIFEST if oci else DOCKER_MANIFEST
    body = {
        "schemaVersion": 2,
        "mediaType": media_type,
        "config": {
            "mediaType": OCI_CONFIG if oci else DOCKER_CONFIG,
            "size": config.size,
            "digest": config.digest,
        },
        "layers": [d.to_json() for d in layers],
    }
    return json.dumps(body, indent=3).encode()

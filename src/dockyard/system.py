"""The whole store at once: ``system df`` (disk usage) and ``system prune``.

Figures follow Docker's: image sizes count each layer once and an image in use
keeps only what it does not share; a container's size is its writable layer; a
volume in use by any container is active.
"""

from __future__ import annotations

from collections import Counter
from typing import TYPE_CHECKING

from dockyard.records import field, record

if TYPE_CHECKING:
    from dockyard.containers.manager import ContainerManager


@record
class Usage:
    """One line of ``system df``."""

    kind: str  # Images | Containers | Local Volumes | Build Cache
    total: int
    active: int
    size: int
    reclaimable: int


@record
class PruneReport:
    """What ``system prune`` removed, section by section, and the bytes it freed."""

    containers: list[str] = field(default_factory=list)
    networks: list[str] = field(default_factory=list)
    volumes: list[str] = field(default_factory=list)
    images: list[tuple[str, str]] = field(default_factory=list)  # (Untagged|Deleted, ref)
    build_cache: list[str] = field(default_factory=list)
    reclaimed: int = 0


def disk_usage(manager: ContainerManager) -> list[Usage]:
    """Images, containers, local volumes and build cache, as ``docker system df``."""
    from dockyard.build.cache import BuildCache
    from dockyard.fsutil import tree_size
    from dockyard.volumes.attach import volume_users

    images = manager.images.list()
    layer_size = {
        r["diff_id"]: int(r["size"]) for r in manager.db.query("SELECT diff_id, size FROM layers")
    }
    users = Counter(d for image in images for d in set(image.layers))  # images per layer
    images_size = sum(layer_size.get(d, 0) for d in users)
    containers = manager.list()
    in_use = {c.image_id for c in containers}
    kept = 0
    for image in images:
        if image.id in in_use:
            layers = set(image.layers)
            shared = sum(layer_size.get(d, 0) for d in layers if users[d] > 1)
            kept += sum(layer_size.get(d, 0) for d in layers) - shared
    sizes = {c.id: tree_size(manager.paths.container_dir(c.id) / "upper") for c in containers}
    running = sum(1 for c in containers if c.running)
    stopped_size = sum(sizes[c.id] for c in containers if not c.running)

    vm = manager.volumes
    volumes = vm.list()
    linked = volume_users(vm)
    volume_size = {v.name: tree_size(vm.data_dir(v.name)) for v in volumes}

    cache = BuildCache(manager.db, manager.images)
    cache_only = set(cache.only_cached())
    outside = {d for image in images if image.id not in cache_only for d in image.layers}
    cache_layers = {d for image in images if image.id in cache_only for d in image.layers}
    cache_size = sum(layer_size.get(d, 0) for d in cache_layers - outside)
    return [
        Usage(
            "Images",
            len(images),
            len(in_use & {i.id for i in images}),
            images_size,
            max(images_size - kept, 0),
        ),
        Usage("Containers", len(containers), running, sum(sizes.values()), stopped_size),
        Usage(
            "Local Volumes",
            len(volumes),
            sum(1 for v in volumes if linked.get(v.name)),
            sum(volume_size.values()),
            sum(s for name, s in volume_size.items() if not linked.get(name)),
        ),
        Usage("Build Cache", len(cache.entries()), 0, cache_size, cache_size),
    ]


def prune(
    manager: ContainerManager,
    *,
    all_images: bool = False,
    volumes: bool = False,
    filters: dict[str, list[str]] | None = None,
) -> PruneReport:
    """``docker system prune``: stopped containers, unused networks, (anonymous unused
    volumes,) dangling (or all unused) images and the build cache, in Docker's order."""
    from dockyard.build import cache

    filters = filters or {}
    report = PruneReport()
    report.containers, reclaimed = manager.prune()  # releases stale networks first
    report.reclaimed += reclaimed
    network_filters = {k: v for k, v in filters.items() if k in ("until", "label", "label!")}
    report.networks = manager.networks.prune(network_filters)
    if volumes:
        volume_filters = {k: v for k, v in filters.items() if k in ("label", "label!")}
        report.volumes, reclaimed = manager.volumes.prune(all=False, filters=volume_filters)
        report.reclaimed += reclaimed
    image_filters = {k: v for k, v in filters.items() if k in ("until", "label", "label!")}
    report.images, reclaimed = manager.images.prune(all=all_images, filters=image_filters)
    report.reclaimed += reclaimed
    report.build_cache, reclaimed = cache.prune(manager.db, manager.images, manager.paths)
    report.reclaimed += reclaimed
    return report

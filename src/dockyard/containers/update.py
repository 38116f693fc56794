"""``docker update``: new resource limits and restart policy for an existing container.

Limits reach a running container through the runtime (``runc update``, the cgroup
files), the restart policy through a file its monitor reads at the next exit; both
are recorded in the spec, so the next start and ``inspect`` have them too.
"""

from __future__ import annotations

import json
import os
from typing import TYPE_CHECKING

from dockyard import events, records
from dockyard.containers.spec import RestartPolicy
from dockyard.errors import DockyardError, InvalidArgument

if TYPE_CHECKING:
    from dockyard.containers.manager import Container, ContainerManager


def update_container(
    manager: ContainerManager,
    container: Container,
    *,
    resources: dict[str, int] | None = None,
    restart: RestartPolicy | None = None,
) -> None:
    """Change ``resources`` (fields of ``Resources``) and/or the restart policy."""
    try:
        _update(manager, container, resources, restart)
    except DockyardError as err:
        raise type(err)(f"Cannot update container {container.id}: {err}") from None


def _update(
    manager: ContainerManager,
    container: Container,
    resources: dict[str, int] | None,
    restart: RestartPolicy | None,
) -> None:
    from dockyard.runtime.spec import linux_resources

    with manager.lock(container.id):
        container = manager.refresh(container)
        spec = container.spec
        if restart is not None:
            if spec.auto_remove and restart.name != "no":
                raise InvalidArgument(
                    "Restart policy cannot be updated because AutoRemove is enabled "
                    "for the container"
                )
            spec.restart_policy = restart
        if resources:
            new = records.replace(spec.resources, **resources)
            if "memory_swap" not in resources and 0 < new.memory_swap < new.memory:
                raise InvalidArgument(
                    "Memory limit should be smaller than already set memoryswap limit, "
                    "update the memoryswap at the same time"
                )
            config = linux_resources(new, spec.privileged)  # Docker's checks and messages
            spec.resources = new
        if container.running:
            run_dir = manager.paths.container_run_dir(container.id)
            if resources:
                config.pop("devices", None)
                path = run_dir / "resources.json"
                path.write_text(json.dumps(config))
                try:
                    manager.runc.update(container.id, path)
                finally:
                    path.unlink(missing_ok=True)
            if restart is not None:
                _write_policy(run_dir / "restart-policy", restart)
        with manager.db.transaction() as conn:
            conn.execute(
                "UPDATE containers SET spec = ? WHERE id = ?",
                (json.dumps(spec.to_dict()), container.id),
            )
        events.container(manager.paths.root, container, "update")


def _write_policy(path: os.PathLike[str], policy: RestartPolicy) -> None:
    value = policy.name
    if policy.name == "on-failure" and policy.max_retries:
        value += f":{policy.max_retries}"
    tmp = f"{os.fspath(path)}.tmp"
    with open(tmp, "w") as f:
        f.write(value + "\n")
    os.replace(tmp, path)

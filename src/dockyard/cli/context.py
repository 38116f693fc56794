"""What a command needs from the engine, created on first use."""

from __future__ import annotations

from functools import cached_property
from typing import TYPE_CHECKING

from dockyard.config import Paths, default_paths

if TYPE_CHECKING:
    from dockyard.containers.manager import ContainerManager
    from dockyard.db import Database
    from dockyard.images.store import ImageStore


class Context:
    """Paths and lazily opened engine services for one command invocation."""

    def __init__(
        self,
        root: str | None = None,
        runroot: str | None = None,
        runtime: str | None = None,
        debug: bool = False,
    ) -> None:
        self.paths: Paths = default_paths(root, runroot)
        self.runtime_name = runtime
        self.debug = debug

    @cached_property
    def db(self) -> Database:
        from dockyard.db import Database

        self.paths.ensure()
        return Database(self.paths.db)

    @cached_property
    def images(self) -> ImageStore:
        if "containers" in self.__dict__:
            return self.containers.images
        from dockyard.images.store import ImageStore

        return ImageStore(self.paths, self.db)

    @cached_property
    def containers(self) -> ContainerManager:
        from dockyard.containers.manager import ContainerManager

        manager = ContainerManager(self.paths, self.db, runtime=self.runtime_name)
        if "images" in self.__dict__:
            manager._images = self.images
        return manager

    def close(self) -> None:
        if "db" in self.__dict__:
            self.db.close()

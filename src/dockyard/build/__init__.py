"""``dockyard build``: Dockerfiles to images, with a layer cache, and base-image bootstrap.

parser (lines to instruction nodes) -> instructions (typed, per stage) ->
executor (stages, cache, progress) -> steps (RUN in engine containers,
COPY/ADD/WORKDIR on an overlay of the step's image) -> the image store.
"""

from __future__ import annotations

from dockyard.errors import DockyardError


class BuildError(DockyardError):
    """A build failed: ``docker build`` exits 1 for every build error."""

    exit_code = 1

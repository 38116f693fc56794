"""Errors a user can act on, each carrying the exit code Docker gives for it."""

from __future__ import annotations

ENGINE_ERROR = 125  # dockyard itself failed (bad flag, unknown image, ...)
CANNOT_EXECUTE = 126  # the container command exists but cannot be invoked
NOT_FOUND_EXIT = 127  # the container command was not found


class DockyardError(Exception):
    """Base error: the message is printed as one line on stderr."""

    exit_code = ENGINE_ERROR

    def __init__(self, message: str, exit_code: int | None = None) -> None:
        super().__init__(message)
        if exit_code is not None:
            self.exit_code = exit_code


class NotFound(DockyardError):
    """An image, container, network or volume that does not exist."""


class Conflict(DockyardError):
    """A name already taken, an image in use, a container in the wrong state."""


class InvalidArgument(DockyardError):
    """A flag value or input that cannot be parsed."""


class UnsafePath(DockyardError):
    """An archive entry or copy that would write outside its target directory."""


class RuntimeFailure(DockyardError):
    """The OCI runtime refused or failed an operation."""


class CommandNotFound(DockyardError):
    """The container's command does not exist (exit 127)."""

    exit_code = NOT_FOUND_EXIT


class CommandNotExecutable(DockyardError):
    """The container's command exists but cannot be executed (exit 126)."""

    exit_code = CANNOT_EXECUTE

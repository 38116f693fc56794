"""Running per-service work at once where the dependency graph allows it.

The engine is safe for concurrent use from separate processes; within this
one, each worker thread opens its own Context (its own SQLite connection:
connections must not cross threads). Progress lines go to stderr as
Compose prints them without a terminal (`` Container p-web-1  Started``).
"""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from contextlib import contextmanager
from typing import IO, TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    from dockyard.cli.context import Context

T = TypeVar("T")


class Progress:
    """`` Container NAME  Started`` lines, one at a time from any thread."""

    def __init__(self, quiet: bool = False, stream: IO[str] | None = None) -> None:
        self.quiet = quiet
        self.lock = threading.Lock()
        self.stream = stream

    def event(self, kind: str, name: str, status: str) -> None:
        if self.quiet:
            return
        with self.lock:
            out = self.stream or sys.stderr
            print(f" {kind} {name}  {status}", file=out, flush=True)

    def message(self, text: str) -> None:
        with self.lock:
            print(text, file=self.stream or sys.stderr, flush=True)


class Contexts:
    """Hands each thread a Context of its own on the parent's store."""

    def __init__(self, parent: Context) -> None:
        self.parent = parent
        self.main = threading.get_ident()

    @contextmanager
    def get(self) -> Iterator[Context]:
        if threading.get_ident() == self.main:
            yield self.parent
            return
        from dockyard.cli.context import Context

        ctx = Context(
            root=str(self.parent.paths.root),
            runroot=str(self.parent.paths.runroot),
            runtime=self.parent.runtime_name,
            debug=self.parent.debug,
        )
        try:
            yield ctx
        finally:
            ctx.close()


def run_graph(
    nodes: list[str],
    deps: Callable[[str], Iterable[str]],
    work: Callable[[str], None],
    *,
    max_workers: int | None = None,
) -> None:
    """``work(node)`` for each node, once the nodes it depends on have finished.

    Independent nodes run at once. After a failure nothing new starts; the
    running ones finish, then the first error is raised.
    """
    wanted = set(nodes)
    needs = {n: {d for d in deps(n) if d in wanted and d != n} for n in nodes}
    pending = list(nodes)
    done: set[str] = set()
    errors: list[BaseException] = []
    running: dict[Future[None], str] = {}
    workers = max_workers or max(1, min(32, len(nodes)))
    with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="compose") as pool:
        while pending or running:
            if not errors:
                for node in list(pending):
                    if needs[node] <= done:
                        pending.remove(node)
                        running[pool.submit(work, node)] = node
            if not running:
                break
            finished, _ = wait(list(running), return_when=FIRST_COMPLETED)
            for future in finished:
                node = running.pop(future)
                error = future.exception()
                if error is None:
                    done.add(node)
                else:
                    errors.append(error)
    if errors:
        raise errors[0]


def run_all(items: list[T], work: Callable[[T], None]) -> None:
    """``work(item)`` for every item at once; the first error is raised after all finish."""
    if len(items) <= 1:
        for item in items:
            work(item)
        return
    errors: list[BaseException] = []
    with ThreadPoolExecutor(max_workers=min(32, len(items))) as pool:
        for future in [pool.submit(work, item) for item in items]:
            error = future.exception()
            if error is not None:
                errors.append(error)
    if errors:
        raise errors[0]

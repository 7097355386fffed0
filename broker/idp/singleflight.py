"""One task per key, shared by every caller that asks while it runs.

Each caller awaits the task through `asyncio.shield`, so one caller's cancellation (its deadline) never
cancels the work the others wait for; the task runs to its own end (the STS client's timeout at the latest)
and its result or error is retrieved even when nobody waits any more. Keys are issuers from the
configuration, so the map stays small.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from functools import partial
from typing import Any, Generic, TypeVar

T = TypeVar("T")


class SingleFlight(Generic[T]):
    def __init__(self) -> None:
        self._tasks: dict[str, asyncio.Task[T]] = {}

    def start(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> asyncio.Task[T]:
        """The running task for `key`, or a new one running `work()`."""
        task = self._tasks.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(work())
            self._tasks[key] = task
            task.add_done_callback(partial(self._forget, key))
        return task

    async def run(self, key: str, work: Callable[[], Coroutine[Any, Any, T]]) -> T:
        """Joins (or starts) the task for `key` and waits for it, without letting a cancellation reach it."""
        return await asyncio.shield(self.start(key, work))

    def _forget(self, key: str, task: asyncio.Task[T]) -> None:
        if self._tasks.get(key) is task:
            del self._tasks[key]
        if not task.cancelled():
            task.exception()  # retrieved, so a task nobody waits for any more is not reported as lost

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

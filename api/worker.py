"""One thread that owns the matcher: every backend call of the service runs here, in order.

Backends are not thread-safe and already use every core for one call, so running
requests one at a time is both correct and the fastest order. The queue in front is
bounded: when it is full `submit` refuses at once (the route answers 503) instead of
letting work pile up behind a slow model.
"""

from __future__ import annotations

import asyncio
import queue
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from coarse_loftr.inference.errors import ResourceBusy

T = TypeVar("T")


class WorkerBusy(ResourceBusy):
    """The queue is full: try again later."""


class InferenceWorker:
    def __init__(self, queue_size: int, name: str = "inference") -> None:
        self._jobs: queue.Queue = queue.Queue(maxsize=queue_size)
        self._thread = threading.Thread(target=self._loop, name=name, daemon=True)
        self._thread.start()

    @property
    def pending(self) -> int:
        """Jobs waiting (not counting the one running)."""
        return self._jobs.qsize()

    def submit(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> asyncio.Future[T]:
        """Queue `fn(*args, **kwargs)`; the returned future (of the running loop) gets its
        result or exception. Raises WorkerBusy when the queue is full."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[T] = loop.create_future()
        try:
            self._jobs.put_nowait((loop, future, fn, args, kwargs))
        except queue.Full:
            raise WorkerBusy("the inference queue is full") from None
        return future

    def close(self, timeout: float = 10.0) -> None:
        """Finish the queued jobs, then stop the thread."""
        self._jobs.put((None, None, None, (), {}))
        self._thread.join(timeout)

    def _loop(self) -> None:
        while True:
            loop, future, fn, args, kwargs = self._jobs.get()
            if fn is None:
                return
            # A client that went away cancelled its future: skip the work.
            if future.cancelled():
                continue
            try:
                outcome, failed = fn(*args, **kwargs), False
            except BaseException as error:  # handed to the awaiting request
                outcome, failed = error, True
            try:
                loop.call_soon_threadsafe(_settle, future, outcome, failed)
            except RuntimeError:  # the loop closed while this job ran (shutdown)
                pass


def _settle(future: asyncio.Future, outcome: Any, failed: bool) -> None:
    if future.done():
        return
    if failed:
        future.set_exception(outcome)
    else:
        future.set_result(outcome)

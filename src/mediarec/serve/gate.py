"""Back-pressure: per-key rate limits and the bounded queue in front of the LLM stage.

The LLM (llama.cpp on the same two cores) answers one request at a time in seconds; retrieval and
the learned stage answer in milliseconds. So LLM work goes to one worker thread behind a queue of
fixed depth, and a request that finds it full is answered at once (429 with Retry-After, or the
retrieval list marked degraded when it asked for that) instead of waiting without bound. The event
loop never runs model code: the fast path has its own small thread pool.
"""

from __future__ import annotations

import math
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Any, Callable


class RateLimiter:
    """A token bucket per key: ``rate`` requests per second, bursts of ``2 * rate``."""

    def __init__(self) -> None:
        self._buckets: dict[str, tuple[float, float]] = {}  # key id -> (tokens, last refill)
        self._lock = threading.Lock()

    def take(self, key: str, rate: float) -> float:
        """0 when the request may go; else the seconds until one token is back (Retry-After)."""
        now = time.monotonic()
        burst = max(1.0, 2 * rate)
        with self._lock:
            tokens, last = self._buckets.get(key, (burst, now))
            tokens = min(burst, tokens + (now - last) * rate)
            if tokens >= 1:
                self._buckets[key] = (tokens - 1, now)
                return 0.0
            self._buckets[key] = (tokens, now)
            return (1 - tokens) / rate


class Full(Exception):
    """The LLM queue is full; ``retry_after`` estimates when a slot frees (seconds)."""

    def __init__(self, retry_after: int):
        super().__init__("the LLM queue is full")
        self.retry_after = retry_after


class LLMGate:
    """At most ``depth`` LLM requests admitted (one running, the rest waiting), run one at a time."""

    def __init__(self, depth: int = 4):
        self.depth = max(1, depth)
        self.admitted = 0
        self._lock = threading.Lock()
        self._pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="mediarec-llm")
        self._mean = 5.0  # seconds one LLM request takes (a moving average; a first guess until measured)

    def submit(self, fn: Callable[[], Any]) -> Future:
        """Queue ``fn`` for the LLM worker, or raise :class:`Full`."""
        with self._lock:
            if self.admitted >= self.depth:
                raise Full(max(1, math.ceil(self._mean * self.admitted)))
            self.admitted += 1

        def run() -> Any:
            t0 = time.perf_counter()
            try:
                return fn()
            finally:
                with self._lock:
                    self.admitted -= 1
                    self._mean = 0.8 * self._mean + 0.2 * (time.perf_counter() - t0)

        try:
            return self._pool.submit(run)
        except RuntimeError:  # shut down
            with self._lock:
                self.admitted -= 1
            raise Full(1)

    def close(self) -> None:
        """Drop the queued work and wait for the running one (the model must outlive it)."""
        self._pool.shutdown(wait=True, cancel_futures=True)

"""Has a file stopped changing? Size and mtime compared across scans.

A file is *stable* once two observations at least `settle_s` apart saw the same size and
mtime. `stable_for_s` says for how long it has been seen unchanged (by this process, on the
monotonic clock); `unchanged_since_mtime_s` adds the file's own word: an mtime older than now by
that much, confirmed by two equal observations, means nothing wrote it since (used for movies
whose acquisition metadata is not there yet, which must look unchanged for a longer time).
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field


@dataclass
class Observation:
    size: int
    mtime_ns: int
    first_seen: float  # monotonic seconds when this (size, mtime) was first observed
    count: int = 1


@dataclass
class StabilityTracker:
    """Observations of files that are not yet registered, keyed by their relative path."""

    settle_s: float = 1.0
    clock: object = field(default=time.monotonic, repr=False)
    wall_clock: object = field(default=time.time, repr=False)
    _seen: dict[str, Observation] = field(default_factory=dict, repr=False)

    def observe(self, key: str, size: int, mtime_ns: int) -> Observation:
        now = self.clock()
        previous = self._seen.get(key)
        if previous is not None and previous.size == size and previous.mtime_ns == mtime_ns:
            previous.count += 1
            return previous
        observation = Observation(size, mtime_ns, now)
        self._seen[key] = observation
        return observation

    def stable_for_s(self, key: str) -> float | None:
        """Seconds the file has been seen unchanged, or None until a second equal observation."""
        observation = self._seen.get(key)
        if observation is None or observation.count < 2:
            return None
        return self.clock() - observation.first_seen

    def is_stable(self, key: str, settle_s: float | None = None) -> bool:
        stable_for = self.stable_for_s(key)
        return stable_for is not None and stable_for >= (self.settle_s if settle_s is None
                                                         else settle_s)

    def unchanged_for_s(self, key: str) -> float | None:
        """Like stable_for_s, but also trusting the mtime: the larger of the time this process
        has seen the file unchanged and the age of its mtime (None before two equal
        observations)."""
        stable_for = self.stable_for_s(key)
        if stable_for is None:
            return None
        observation = self._seen[key]
        mtime_age = self.wall_clock() - observation.mtime_ns / 1e9
        return max(stable_for, mtime_age)

    def forget(self, key: str) -> None:
        self._seen.pop(key, None)

    def __contains__(self, key: str) -> bool:
        return key in self._seen

    def __len__(self) -> int:
        return len(self._seen)

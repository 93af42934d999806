"""Exponential backoff for calls to a server that may be down: 0.5 s, doubling, capped."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass


@dataclass(frozen=True)
class Backoff:
    initial_s: float = 0.5
    factor: float = 2.0
    cap_s: float = 30.0

    def delays(self) -> Iterator[float]:
        """The waits before the 2nd, 3rd, … attempt: 0.5, 1, 2, 4, …, 30, 30, …"""
        delay = self.initial_s
        while True:
            yield min(delay, self.cap_s)
            delay = min(delay * self.factor, self.cap_s)

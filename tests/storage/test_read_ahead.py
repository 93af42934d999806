"""The read-ahead of checked copies (storage/transfer.py): chunks come in order, the source's
errors reach the consumer, and a consumer that stops early stops the reading thread and closes
the source."""

from __future__ import annotations

import threading
import time

import pytest

from cryovault.storage.transfer import read_ahead


def test_chunks_arrive_in_order_and_are_read_ahead():
    read: list[int] = []

    def source():
        for n in range(50):
            read.append(n)
            yield bytes([n]) * 10

    chunks = read_ahead(source(), depth=2)
    first = next(chunks)
    deadline = time.monotonic() + 5
    while len(read) < 3 and time.monotonic() < deadline:  # the thread reads ahead, bounded
        time.sleep(0.01)
    assert first == bytes([0]) * 10 and 2 <= len(read) <= 4
    assert [first, *chunks] == [bytes([n]) * 10 for n in range(50)]


def test_a_read_error_is_raised_in_the_consumer():
    def source():
        yield b"a"
        raise OSError("the archive volume went away")

    chunks = read_ahead(source())
    assert next(chunks) == b"a"
    with pytest.raises(OSError, match="went away"):
        next(chunks)


def test_stopping_early_stops_the_thread_and_closes_the_source():
    closed = threading.Event()

    def source():
        try:
            for _ in range(10_000):
                yield bytes(10)
        finally:
            closed.set()

    before = {t.ident for t in threading.enumerate() if t.name == "cryovault-read-ahead"}
    chunks = read_ahead(source())
    next(chunks)
    chunks.close()
    assert closed.wait(5)
    running = {t.ident for t in threading.enumerate() if t.name == "cryovault-read-ahead"}
    assert running <= before

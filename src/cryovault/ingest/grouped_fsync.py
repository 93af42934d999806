"""Committing many staged writes at once with their fsyncs issued together (grouped into few
journal commits on a local file system), all or nothing."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, wait

from cryovault.storage.backends import StagedWrite, Storage

SYNC_THREADS = 8
_sync_pool: ThreadPoolExecutor | None = None
_sync_pool_lock = threading.Lock()


def commit_together(storage: Storage, staged: Sequence[tuple[StagedWrite, str]]) -> None:
    """Commit staged writes at their keys without syncing their directory (the caller syncs
    it once). On a local file system the commits run in a few threads: fsyncs issued
    together are written by one journal commit (about 0.2 ms a file instead of 3 ms one after
    the other on ext4). All or nothing: on an error the others are aborted or deleted."""
    global _sync_pool
    if not staged:
        return
    if storage.kind != "local" or len(staged) == 1:
        outcomes: list[BaseException | None] = []
        for write, key in staged:
            try:
                write.commit(key, sync_directory=False)
                outcomes.append(None)
            except BaseException as exc:  # noqa: BLE001 (re-raised below)
                outcomes.append(exc)
                break
        outcomes += [RuntimeError("not committed")] * (len(staged) - len(outcomes))
    else:
        with _sync_pool_lock:
            if _sync_pool is None:
                _sync_pool = ThreadPoolExecutor(SYNC_THREADS,
                                                thread_name_prefix="cryovault-fsync")
        futures = [_sync_pool.submit(write.commit, key, sync_directory=False)
                   for write, key in staged]
        wait(futures)
        outcomes = [future.exception() for future in futures]
    failure = next((exc for exc in outcomes if exc is not None), None)
    if failure is None:
        return
    for (write, key), outcome in zip(staged, outcomes, strict=True):
        if outcome is None:
            storage.delete(key)
        else:
            write.abort()
    raise failure


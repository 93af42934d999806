"""One block of memory that the large arrays of motion correction take turns to use.

Touching memory for the first time is expensive (the kernel has to find and zero every page;
on the virtual machines of the benchmarks it costs about 3 s per GB, as much as the Fourier
transforms of a whole 4K movie). The global stack (pass 1) and the patch stacks (pass 2) are
never needed at the same time, so they share one block, and the pyramid's cropped copies use
its tail.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import numpy as np

try:  # numpy ≥ 2
    from numpy._core import multiarray as _numpy_multiarray
except ImportError:  # pragma: no cover - numpy 1.x
    from numpy.core import multiarray as _numpy_multiarray  # type: ignore[no-redef]


class Workspace:
    """A block of `nbytes`, handed out as arrays that view it (allocated on first use)."""

    def __init__(self, nbytes: int) -> None:
        self.nbytes = int(nbytes)
        self._block: np.ndarray | None = None

    def take(self, shape: tuple[int, ...], dtype: type | np.dtype, offset: int = 0) -> np.ndarray:
        """An uninitialised array of `shape` viewing the block from byte `offset` (aligned to
        64 bytes), or a new array when it does not fit."""
        dtype = np.dtype(dtype)
        offset = -(-offset // 64) * 64
        size = int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
        if offset + size > self.nbytes:
            return np.empty(shape, dtype=dtype)
        if self._block is None:
            self._block = np.empty(self.nbytes, dtype=np.uint8)
        return self._block[offset:offset + size].view(dtype).reshape(shape)

    def tail(self, offset: int, dtype: type | np.dtype) -> np.ndarray:
        """The rest of the block from byte `offset`, flat (empty when nothing is left)."""
        dtype = np.dtype(dtype)
        offset = -(-offset // 64) * 64
        count = max(0, (self.nbytes - offset) // dtype.itemsize)
        if count == 0:
            return np.empty(0, dtype=dtype)
        return self.take((count,), dtype, offset)


@contextmanager
def without_huge_page_advice() -> Iterator[None]:
    """Run the body with numpy's `madvise(MADV_HUGEPAGE)` on large arrays turned off, then
    restore it. With the kernel's usual `transparent_hugepage/defrag = madvise`, every first
    touch of such an array may stall in memory compaction: measured on the 2-CPU benchmark
    machine, 700 MB took 1.8 s to touch with the advice and 0.3 s without, and a whole 4K
    motion correction spent 5.1 s instead of 2.0 s in the kernel. (A private numpy switch;
    without it this does nothing.)"""
    switch = getattr(_numpy_multiarray, "_set_madvise_hugepage", None)
    if switch is None:
        yield
        return
    before = bool(switch(False))
    try:
        yield
    finally:
        switch(before)

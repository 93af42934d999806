"""CPU threads: running blocks of numpy work on several cores, with BLAS kept single-threaded.

The alignment multiplies many small matrices (a few rows of spectra by a 5-column window).
OpenBLAS splits each such product over all cores and its threads spin while they wait: with
small products, and worse on a machine shared with other jobs, that costs ten times the work
itself (measured: 3 s instead of 0.02 s for one iteration's row sums). So the BLAS thread pool
is set to one thread while the alignment runs, and the parallelism comes from running separate
blocks of rows in Python threads instead (numpy releases the GIL inside its loops and BLAS).

OpenBLAS is reached through its own `*_set_num_threads` entry point in the libraries already
loaded into the process (found in /proc/self/maps, as threadpoolctl does); where none is found
(another BLAS, another OS) the context manager does nothing.
"""

from __future__ import annotations

import ctypes
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from typing import TypeVar

T = TypeVar("T")

_SETTERS = ("scipy_openblas_set_num_threads64_", "scipy_openblas_set_num_threads",
            "openblas_set_num_threads64_", "openblas_set_num_threads")
_GETTERS = ("scipy_openblas_get_num_threads64_", "scipy_openblas_get_num_threads",
            "openblas_get_num_threads64_", "openblas_get_num_threads")


def _openblas_controls() -> list[tuple[Callable[..., object], Callable[[], int]]]:
    try:
        with open("/proc/self/maps", encoding="ascii", errors="replace") as maps:
            paths = sorted({line.split()[-1] for line in maps
                            if "openblas" in line.lower() and "/" in line})
    except OSError:
        return []
    controls = []
    for path in paths:
        try:
            library = ctypes.CDLL(path)
        except OSError:
            continue
        setter = next((getattr(library, n) for n in _SETTERS if hasattr(library, n)), None)
        getter = next((getattr(library, n) for n in _GETTERS if hasattr(library, n)), None)
        if setter is not None and getter is not None:
            getter.restype = ctypes.c_int
            controls.append((setter, getter))
    return controls


@contextmanager
def single_threaded_blas() -> Iterator[None]:
    """Run the body with every loaded OpenBLAS limited to one thread, then restore."""
    controls = _openblas_controls()
    before = [int(getter()) for _, getter in controls]
    for setter, _ in controls:
        setter(ctypes.c_int(1))
    try:
        yield
    finally:
        for (setter, _), threads in zip(controls, before, strict=True):
            setter(ctypes.c_int(threads))


def split(count: int, parts: int) -> list[tuple[int, int]]:
    """[start, stop) ranges cutting range(count) into at most `parts` nearly equal pieces."""
    parts = max(1, min(parts, count))
    bounds = [round(i * count / parts) for i in range(parts + 1)]
    return [(bounds[i], bounds[i + 1]) for i in range(parts) if bounds[i + 1] > bounds[i]]


def run_parallel(function: Callable[[int, int], T], count: int, workers: int) -> list[T]:
    """function(start, stop) over `workers` pieces of range(count), in threads; the results in
    order (one piece runs in the calling thread)."""
    pieces: Sequence[tuple[int, int]] = split(count, workers)
    if len(pieces) == 1:
        return [function(*pieces[0])]
    with ThreadPoolExecutor(max_workers=len(pieces) - 1) as pool:
        futures = [pool.submit(function, *piece) for piece in pieces[1:]]
        first = function(*pieces[0])
        return [first] + [future.result() for future in futures]

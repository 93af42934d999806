"""Thread splitting, the BLAS thread switch, and the shared memory block."""

import numpy as np

from cryovault.science.threads import (
    _openblas_controls,
    run_parallel,
    single_threaded_blas,
    split,
)
from cryovault.science.workspace import Workspace, without_huge_page_advice


def test_split_covers_the_range_once():
    for count in (0, 1, 5, 100):
        for parts in (1, 2, 3, 8):
            pieces = split(count, parts)
            covered = [i for a, b in pieces for i in range(a, b)]
            assert covered == list(range(count))
            assert len(pieces) <= max(1, parts)


def test_run_parallel_returns_results_in_order():
    assert run_parallel(lambda a, b: list(range(a, b)), 10, 3) == [[0, 1, 2], [3, 4, 5, 6],
                                                                   [7, 8, 9]]
    assert run_parallel(lambda a, b: (a, b), 4, 1) == [(0, 4)]


def test_single_threaded_blas_restores_the_thread_count():
    controls = _openblas_controls()
    before = [getter() for _, getter in controls]
    with single_threaded_blas():
        assert all(getter() == 1 for _, getter in controls)
        np.ones((64, 64)) @ np.ones((64, 64))
    assert [getter() for _, getter in controls] == before


def test_workspace_hands_out_views_of_one_block():
    space = Workspace(1 << 16)
    first = space.take((16, 16), np.complex64)
    second = space.take((8,), np.float64, offset=16 * 16 * 8)
    first[:] = 1
    assert np.shares_memory(first, space.tail(0, np.uint8))
    assert not np.shares_memory(first, second)
    assert space.take((1 << 20,), np.uint8).size == 1 << 20  # too big: an array of its own
    assert space.tail(1 << 16, np.complex64).size == 0
    again = space.take((16, 16), np.complex64)
    assert np.shares_memory(first, again)


def test_huge_page_switch_is_restored():
    from numpy._core import multiarray

    switch = multiarray._set_madvise_hugepage
    before = switch(True)
    switch(before)
    with without_huge_page_advice():
        inside = switch(False)
        switch(inside)
        assert inside is False
    after = switch(before)
    assert after == before

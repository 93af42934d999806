"""The watcher against the real server (in a thread on a free port): real EPU and SerialEM
files fill an EPU run and a Tomo run, each file registered exactly once across runs."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np

from cryovault.ingest.watcher.agent import Watcher, WatchOptions
from cryovault.ingest.watcher.backoff import Backoff
from cryovault.ingest.watcher.epu import EpuLayout
from cryovault.ingest.watcher.tomo import TomoLayout
from cryovault.science.simulate import write_mrc_movie
from tests.ingest.test_watcher_agent import (  # noqa: F401 (fixture)
    ACQUISITION,
    EXPECTED,
    SESSION,
    SQUARE,
    _movie,
    visit,
)
from tests.live_server import live_server

MDOC = Path("/work/shared/fixtures/mdoc/serialem_tilt_series_TS_01.mdoc")


def _run_dataset(user, workflow_type: str, dataset_type: str) -> str:
    workflow = user.create("workflow", "Watched", workflow_type=workflow_type)
    imaging = next(s for s in user.children(workflow["id"]) if s["name"] == "Imaging")
    return user.create("dataset", "Run 1", imaging["id"], dataset_type=dataset_type)["id"]


def _options(url: str, user, dataset_id: str, tmp_path: Path) -> WatchOptions:
    return WatchOptions(server=url, token=user.token, dataset_id=dataset_id,
                        state_path=tmp_path / "state.json", once=True, settle_s=0.05,
                        movie_settle_s=0.5, workers=4, retry_limit_s=10.0)


def _listing(user, dataset_id: str) -> list[dict]:
    items, cursor = [], None
    while True:
        response = user.get(f"/api/v1/datasets/{dataset_id}/ingest/files",
                            params={"limit": 3, **({"cursor": cursor} if cursor else {})})
        assert response.status_code == 200, response.text
        body = response.json()
        items += body["items"]
        cursor = body["next_cursor"]
        if not cursor:
            return items


def test_the_watcher_fills_an_epu_run(alice, app, visit, tmp_path):  # noqa: F811
    dataset_id = _run_dataset(alice, "spa", "epu_run")
    _movie(visit / SESSION / SQUARE / "Data" / f"{ACQUISITION}_fractions.tiff", 50)
    fast = Backoff(0.05, 2.0, 0.5)
    with live_server(app) as url:
        report = Watcher(EpuLayout(visit / SESSION), _options(url, alice, dataset_id, tmp_path),
                         backoff=fast).run()
        assert report.fatal is None and report.registered == len(EXPECTED)
        assert report.acquisitions == 1
        (tmp_path / "state.json").unlink()
        again = Watcher(EpuLayout(visit / SESSION), _options(url, alice, dataset_id, tmp_path),
                        backoff=fast).run()
    assert again.registered == 0 and again.already_registered == 0  # skipped from the listing
    files = _listing(alice, dataset_id)
    assert sorted(f["path"] for f in files) == EXPECTED
    assert {f["session"] for f in files} == {SESSION}
    page = alice.get(f"/api/v1/datasets/{dataset_id}/micrographs").json()
    assert page["total"] == 1 and page["items"][0]["name"] == ACQUISITION
    assert page["items"][0]["status"] == "completed"


def test_the_watcher_fills_a_tomo_run(alice, app, tmp_path):
    dataset_id = _run_dataset(alice, "et", "tomo_run")
    folder = tmp_path / "tomo" / "HGK149_20151130"
    (folder / "frames").mkdir(parents=True)
    shutil.copyfile(MDOC, folder / "TS_01.mdoc")
    frames = np.random.default_rng(1).poisson(2.0, (8, 8, 8)).astype(np.uint16)
    for name in ("TS_01_000_0.0.mrc", "TS_01_001_3.0.mrc", "TS_01_002_-3.0.mrc"):
        write_mrc_movie(folder / "frames" / name, frames, 2.0)
    write_mrc_movie(folder / "frames" / "TS_01_003_-6.0.mrc", frames[:5], 2.0)  # 5 of 8
    with live_server(app) as url:
        report = Watcher(TomoLayout(folder), _options(url, alice, dataset_id, tmp_path),
                         backoff=Backoff(0.05, 2.0, 0.5)).run()
    assert report.fatal is None and report.waiting == 1
    paths = sorted(f["path"] for f in _listing(alice, dataset_id))
    assert paths == ["TS_01.mdoc", "frames/TS_01_000_0.0.mrc", "frames/TS_01_001_3.0.mrc",
                     "frames/TS_01_002_-3.0.mrc"]
    series = alice.get(f"/api/v1/datasets/{dataset_id}/tilt-series").json()
    assert series["total"] == 1 and series["items"][0]["name"] == "TS_01"

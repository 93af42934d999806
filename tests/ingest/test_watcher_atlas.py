"""Mapping the atlas path EpuSession.dm names (a Windows path on the microscope PC) onto the
local visit folder, with the real path of the EPU 3.9.1 fixture."""

from __future__ import annotations

import shutil
from pathlib import Path

import defusedxml.ElementTree as ET
import pytest

from cryovault.ingest.watcher.atlas import (
    AtlasLocation,
    locate_atlas,
    map_atlas_path,
    windows_parts,
)

FIXTURE = Path("/work/shared/fixtures/epu/epu-dir-example/EpuSession.dm")
SESSION = "Supervisor_20250108_101446_62_cm40593-1_EPU"
ATLAS_SESSION = "Supervisor_20250108_101551_cm40593-1_Atlas"


def _local(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


@pytest.fixture(scope="module")
def real_paths() -> tuple[str, str]:
    """(AtlasId, StorageFolders Path) as written in the fixture, read independently of the
    parsers under test elsewhere."""
    root = ET.parse(FIXTURE).getroot()
    atlas = next(e.text for e in root.iter() if _local(e.tag) == "AtlasId" and e.text)
    storage = next(e for e in root.iter() if _local(e.tag) == "StorageFolders")
    path = next(e.text for e in storage.iter() if _local(e.tag) == "Path" and e.text)
    return atlas, path


def _visit(tmp_path: Path, atlas_folder="atlas", samples=("Sample7",)) -> Path:
    visit = tmp_path / "cm40593-1"
    session = visit / SESSION
    session.mkdir(parents=True)
    shutil.copy(FIXTURE, session / "EpuSession.dm")
    for sample in samples:
        atlas = visit / atlas_folder / ATLAS_SESSION / sample / "Atlas"
        atlas.mkdir(parents=True)
        (atlas / "Atlas.dm").write_bytes(b"<AtlasSessionXml/>")
        (atlas / "Atlas_123.jpg").write_bytes(b"\xff\xd8")
        (atlas.parent / "Sample.dm").write_bytes(b"<SampleXml/>")
    return session


def test_the_fixture_names_its_atlas_with_a_windows_path(real_paths):
    atlas, storage = real_paths
    assert atlas == ("Z:\\DoseFractions\\cm40593-1\\atlas\\Supervisor_20250108_101551_"
                     "cm40593-1_Atlas\\Sample7\\Atlas\\Atlas.dm")
    assert storage == "Z:\\DoseFractions\\cm40593-1"
    assert windows_parts(storage) == ("DoseFractions", "cm40593-1")


def test_the_part_below_the_storage_root_is_mapped_onto_the_visit(tmp_path, real_paths):
    atlas, storage = real_paths
    session = _visit(tmp_path)
    assert map_atlas_path(atlas, storage, session) == (
        "atlas", ATLAS_SESSION, "Sample7", "Atlas", "Atlas.dm")
    location = locate_atlas(atlas, storage, session)
    assert location == AtlasLocation(session.parent / "atlas" / ATLAS_SESSION / "Sample7"
                                     / "Atlas" / "Atlas.dm",
                                     session.parent / "atlas" / ATLAS_SESSION, "Sample7")
    assert location.virtual_path == "Atlas/Sample7/Atlas/Atlas.dm"


def test_names_match_case_insensitively_like_windows(tmp_path, real_paths):
    atlas, storage = real_paths
    session = _visit(tmp_path, atlas_folder="Atlas")
    location = locate_atlas(atlas.replace("Sample7", "SAMPLE7"), storage.lower(), session)
    assert location is not None and location.sample_folder == "Sample7"
    assert location.atlas_dm.is_file()


def test_without_the_storage_root_the_visit_name_anchors_the_path(tmp_path, real_paths):
    atlas, _ = real_paths
    session = _visit(tmp_path)
    assert map_atlas_path(atlas, None, session)[0] == "atlas"
    unc = atlas.replace("Z:\\DoseFractions", "\\\\storage01\\offload")
    assert map_atlas_path(unc, "Y:\\elsewhere", session)[:2] == ("atlas", ATLAS_SESSION)
    assert locate_atlas(unc, "Y:\\elsewhere", session).sample_folder == "Sample7"


def test_when_the_mapped_path_is_absent_the_atlas_folder_is_searched(tmp_path):
    session = _visit(tmp_path, samples=("Sample3", "Sample7", "Sample9"))
    hint = "D:\\somewhere\\else\\Supervisor_X_Atlas\\Sample7\\Atlas\\Atlas.dm"
    location = locate_atlas(hint, "D:\\somewhere", session)
    assert location is not None and location.sample_folder == "Sample7"
    (session.parent / "atlas" / ATLAS_SESSION / "Sample7" / "Atlas" / "Atlas.dm").unlink()
    (session.parent / "atlas" / ATLAS_SESSION / "Sample9" / "Atlas" / "Atlas.dm").touch()
    newest = locate_atlas(hint, "D:\\somewhere", session)
    assert newest is not None and newest.sample_folder == "Sample9"


def test_no_atlas_anywhere(tmp_path, real_paths):
    atlas, storage = real_paths
    session = tmp_path / "visit" / SESSION
    session.mkdir(parents=True)
    assert locate_atlas(atlas, storage, session) is None
    assert locate_atlas(None, None, session) is None
    assert map_atlas_path("Z:\\other\\path\\Atlas.dm", "Z:\\DoseFractions", session) is None


def test_only_the_sessions_own_sample_is_sent(tmp_path, real_paths):
    atlas, storage = real_paths
    location = locate_atlas(atlas, storage, _visit(tmp_path, samples=("Sample3", "Sample7")))
    assert location.accepts("ScreeningSession.dm")
    assert location.accepts("Sample7/Atlas/Atlas_123.jpg")
    assert location.accepts("Sample7/Sample.dm")
    assert not location.accepts("Sample3/Atlas/Atlas.dm")
    assert not location.accepts("Sample70/Atlas/Atlas.dm")

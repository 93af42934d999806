"""The instruments' layouts: roles and upload order, frame counts from the acquisition
metadata (EPU XML, .mdoc), the EPU atlas found from the real EpuSession.dm."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from cryovault.ingest.watcher.epu import EpuLayout
from cryovault.ingest.watcher.tomo import TomoLayout

FIXTURES = Path("/work/shared/fixtures")
EXAMPLE = FIXTURES / "epu" / "epu-dir-example"
SESSION = "Supervisor_20250108_101446_62_cm40593-1_EPU"
SQUARE = "Images-Disc1/GridSquare_8999138"
ACQUISITION = "FoilHole_9015883_Data_9017347_6_20250108_154915"


def _session(tmp_path: Path) -> Path:
    session = tmp_path / "cm40593-1" / SESSION
    (session / SQUARE / "Data").mkdir(parents=True)
    shutil.copyfile(EXAMPLE / "EpuSession.dm", session / "EpuSession.dm")
    shutil.copyfile(EXAMPLE / SQUARE / "Data" / f"{ACQUISITION}.xml",
                    session / SQUARE / "Data" / f"{ACQUISITION}.xml")
    return session


def test_epu_upload_order(tmp_path):
    layout = EpuLayout(_session(tmp_path))
    order = ["EpuSession.dm", "Atlas/Sample7/Atlas/Atlas.dm", "Metadata/GridSquare_1.dm",
             f"{SQUARE}/GridSquare_20250108_151151.xml",
             f"{SQUARE}/FoilHoles/FoilHole_9015889_20250108_154715.xml",
             f"{SQUARE}/Data/{ACQUISITION}.xml", f"{SQUARE}/Data/{ACQUISITION}.jpg",
             f"{SQUARE}/Data/{ACQUISITION}.mrc", f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff"]
    priorities = [layout.role(path).priority for path in order]
    assert priorities == sorted(priorities) and len(set(priorities)) == len(priorities)
    movie = layout.role(f"{SQUARE}/Data/{ACQUISITION}_EER.eer")
    assert movie.is_movie and movie.check_structure and not movie.rewritten
    assert layout.role(f"{SQUARE}/Data/{ACQUISITION}.mrc").check_structure
    assert layout.role("EpuSession.dm").rewritten
    assert layout.role("Metadata/GridSquare_1.dm").rewritten
    assert not layout.role(f"{SQUARE}/Data/{ACQUISITION}.xml").rewritten
    assert layout.role("bad\\name.xml").refused_reason


def test_epu_frames_come_from_the_acquisition_xml(tmp_path):
    session = _session(tmp_path)
    layout = EpuLayout(session, tmp_path / "offload")
    movie = f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff"
    assert layout.expected_frames(movie, tmp_path / "anywhere") == 50  # NumberOffractions
    assert layout.expected_frames(f"{SQUARE}/Data/FoilHole_1_Data_2_3_20250101_010101"
                                  "_fractions.tiff", tmp_path) is None  # no XML yet
    xml = session / SQUARE / "Data" / f"{ACQUISITION}.xml"
    xml.write_bytes(xml.read_bytes().replace(b"NumberOffractions>50<",
                                             b"NumberOffractions>40<"))
    later = xml.stat().st_mtime + 1  # same size: only the mtime tells it changed
    os.utime(xml, (later, later))
    assert layout.expected_frames(movie, tmp_path) == 40  # read again when it changes
    xml.write_bytes(b"<MicroscopeImage")  # being rewritten: not readable now
    assert layout.expected_frames(movie, tmp_path) is None


def test_epu_roots_gain_the_atlas_once_the_session_file_names_it(tmp_path):
    session = _session(tmp_path)
    offload = tmp_path / "offload" / SESSION
    offload.mkdir(parents=True)
    layout = EpuLayout(session, offload)
    assert [r.label for r in layout.roots()] == ["session", "movies"]
    movies_root = layout.roots()[1]
    assert movies_root.accept(f"{SQUARE}/Data/{ACQUISITION}_fractions.tiff")
    assert not movies_root.accept(f"{SQUARE}/Data/{ACQUISITION}.xml")
    layout.refresh()
    assert layout.atlas is None  # not on disk yet
    atlas = session.parent / "atlas" / "Supervisor_20250108_101551_cm40593-1_Atlas"
    (atlas / "Sample7" / "Atlas").mkdir(parents=True)
    (atlas / "Sample7" / "Atlas" / "Atlas.dm").write_bytes(b"<AtlasSessionXml/>")
    layout.refresh()
    assert layout.atlas is None  # the session file did not change: not looked at again
    (session / "EpuSession.dm").write_bytes((session / "EpuSession.dm").read_bytes() + b" ")
    layout.refresh()
    assert layout.atlas is not None and layout.atlas.session_folder == atlas
    assert [(r.label, r.prefix) for r in layout.roots()][-1] == ("atlas", "Atlas/")
    assert EpuLayout(session, session).roots()[1:] == []  # --movies = the session: one root


def test_tomo_frames_come_from_the_mdoc(tmp_path):
    folder = tmp_path / "tomo"
    (folder / "frames").mkdir(parents=True)
    layout = TomoLayout(folder)
    movie = "frames/TS_01_001_3.0.mrc"
    assert layout.expected_frames(movie, folder / movie) is None  # no .mdoc yet
    shutil.copyfile(FIXTURES / "mdoc" / "serialem_tilt_series_TS_01.mdoc", folder / "TS_01.mdoc")
    assert layout.expected_frames(movie, folder / movie) == 8  # NumSubFrames
    assert layout.expected_frames("frames/TS_02_001_3.0.mrc", folder) is None
    assert layout.role("TS_01.mdoc").rewritten and layout.role("TS_01.mdoc").priority == 0
    assert layout.role(movie).is_movie and layout.role(movie).priority > 0

"""Where a file sits in an EPU session folder and what it is (FORMATS.md §1.2)."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest

from cryovault.ingest.epu.layout import (
    MOVIE_SUFFIXES,
    EpuPath,
    acquisition_name_of,
    classify_epu_path,
)
from cryovault.ingest.errors import IngestFormatError

TREE = Path("/work/shared/fixtures/epu/real_epu_visit_tree.txt")
ACQ = "FoilHole_9015883_Data_9017347_6_20250108_154915"
DATA = f"Images-Disc1/GridSquare_8999138/Data/{ACQ}"


@pytest.mark.parametrize(("path", "expected"), [
    ("EpuSession.dm", EpuPath("session")),
    ("Metadata/GridSquare_4590776.dm", EpuPath("grid_square_metadata", "4590776")),
    ("Images-Disc1/GridSquare_8999138/GridSquare_20250108_151151.xml",
     EpuPath("grid_square_xml", "8999138")),
    ("Images-Disc1/GridSquare_8999138/GridSquare_20250108_151151.jpg",
     EpuPath("grid_square_image", "8999138")),
    ("Images-Disc2/GridSquare_8999138/FoilHoles/FoilHole_9015889_20250108_154715.xml",
     EpuPath("foil_hole_xml", "8999138", "9015889")),
    ("Images-Disc1/GridSquare_8999138/FoilHoles/FoilHole_9015889_20250108_154715.jpg",
     EpuPath("foil_hole_image", "8999138", "9015889")),
    (f"{DATA}.xml", EpuPath("acquisition_xml", "8999138", "9015883", ACQ)),
    (f"{DATA}.jpg", EpuPath("acquisition_jpg", "8999138", "9015883", ACQ)),
    (f"{DATA}.mrc", EpuPath("integrated", "8999138", "9015883", ACQ)),
    (f"{DATA}.tiff", EpuPath("integrated", "8999138", "9015883", ACQ)),
    (f"{DATA}_fractions.tiff", EpuPath("movie", "8999138", "9015883", ACQ)),
    (f"{DATA}_Fractions.tiff", EpuPath("movie", "8999138", "9015883", ACQ)),
    (f"{DATA}_Fractions.mrc", EpuPath("movie", "8999138", "9015883", ACQ)),
    (f"{DATA}_EER.eer", EpuPath("movie", "8999138", "9015883", ACQ)),
    # EPU 3.7 names: <area>_<image acquisition setting>; older EPU: HHMM times
    ("Images-Disc1/GridSquare_4590776/Data/FoilHole_5665438_Data_4601896_4601898_20240406_102527"
     "_fractions.tiff", EpuPath("movie", "4590776", "5665438",
                                "FoilHole_5665438_Data_4601896_4601898_20240406_102527")),
    ("Images-Disc1/GridSquare_1/Data/FoilHole_2_Data_3_4_20190101_1200_Fractions.mrc",
     EpuPath("movie", "1", "2", "FoilHole_2_Data_3_4_20190101_1200")),
    ("Atlas/ScreeningSession.dm", EpuPath("screening_session")),
    ("Atlas/Atlas/Atlas.dm", EpuPath("atlas")),
    ("Atlas/Sample7/Atlas/Atlas.dm", EpuPath("atlas", cassette_slot=7)),
    ("Atlas/Sample7/Sample.dm", EpuPath("sample", cassette_slot=7)),
    ("Atlas/Sample7/Atlas/Atlas_123.jpg", EpuPath("atlas_image", cassette_slot=7)),
    ("Atlas/Sample7/Atlas/Atlas_123.mrc", EpuPath("atlas_image", cassette_slot=7)),
    ("Atlas/Sample7/Atlas/Atlas_123.xml", EpuPath("atlas_image_xml", cassette_slot=7)),
    ("Atlas/Sample3/Atlas/Tile_30333442_0_30333429.jpg", EpuPath("atlas_tile", cassette_slot=3)),
    ("Atlas/Sample3/Atlas/Tile_30333442_0_30333429.xml", EpuPath("atlas_tile", cassette_slot=3)),
    ("Atlas/Sample3/notes.txt", EpuPath("other", cassette_slot=3)),
    ("gain_20250108.mrc", EpuPath("gain")),
    ("20250108_Gain.tiff", EpuPath("gain")),
    ("Images-Disc1/GridSquare_1/Data/EF-Falcon.gain", EpuPath("gain")),
    ("Images-Disc1/GridSquare_1/Data/FoilHole_2_Data_3_4_20190101_120000.mrc.bz2",
     EpuPath("other", "1", "2")),
    ("Images-Disc1/GridSquare_1/Data/notes.txt", EpuPath("other", "1")),
    ("Images-Disc1/Data/FoilHole_2_Data_3_4_20190101_120000.xml", EpuPath("other")),
    ("Metadata/GridSquare_4590776.dm.tmp", EpuPath("other")),
    ("EpuSession.dm.bak", EpuPath("other")),
    ("Sub/EpuSession.dm", EpuPath("other")),
    ("./Metadata//GridSquare_5.dm", EpuPath("grid_square_metadata", "5")),
])
def test_classify(path, expected):
    assert classify_epu_path(path) == expected


@pytest.mark.parametrize(("path", "message"), [
    ("/Images-Disc1/GridSquare_1/Data/x.xml", "relative to the session folder"),
    ("C:/EPU/EpuSession.dm", "relative to the session folder"),
    ("Images-Disc1/../../etc/passwd", "'..' is not allowed"),
    ("..", "'..' is not allowed"),
    ("Images-Disc1\\GridSquare_1\\x.xml", "backslashes are not allowed"),
    ("", "the file path is empty"),
    ("./", "names no file"),
    ("Metadata/Grid\nSquare.dm", "control characters"),
])
def test_path_tricks_are_refused(path, message):
    with pytest.raises(IngestFormatError, match=message):
        classify_epu_path(path)


def test_acquisition_name_of():
    for suffix in (".xml", ".jpg", ".mrc", ".tiff", *MOVIE_SUFFIXES):
        assert acquisition_name_of(ACQ + suffix) == ACQ
    assert acquisition_name_of(f"{DATA}_EER.eer") == ACQ
    assert acquisition_name_of(f"{ACQ}_Fractions.mrc.mdoc") is None
    assert acquisition_name_of(f"{ACQ}_DW.mrc") is None
    assert acquisition_name_of("FoilHole_9015889_20250108_154715.jpg") is None
    assert acquisition_name_of("GridSquare_20250108_151151.xml") is None


def _real_visit_paths() -> list[str]:
    """The files of the real EPU visit listing as a watcher would send them: relative to the
    EPU session folder, or ``Atlas/`` + relative to the atlas session folder."""
    parents: list[str] = []
    paths: list[str] = []
    for line in TREE.read_text(encoding="utf-8").splitlines()[1:]:
        match = re.match(r"^((?:│\xa0\xa0 |│   |    )*)(?:├── |└── )(.*)$", line)
        if match is None:
            continue
        depth = len(match.group(1)) // 4
        parents = [*parents[:depth], match.group(2)]
        if "." not in parents[-1] or depth == 0:
            continue  # folders, and the listing's own log at the top
        if parents[0] == "atlas":
            paths.append("/".join(["Atlas", *parents[2:]]))
        else:
            paths.append("/".join(parents[1:]))
    return paths


def test_every_file_of_a_real_epu_visit_is_recognised():
    paths = _real_visit_paths()
    kinds = Counter(classify_epu_path(path).kind for path in paths)
    assert len(paths) == 10_104  # 10,105 files less the listing's own log
    assert kinds == {
        "acquisition_xml": 4228, "acquisition_jpg": 4228, "grid_square_metadata": 1194,
        "atlas_tile": 184, "foil_hole_xml": 102, "foil_hole_image": 102,
        "grid_square_xml": 19, "grid_square_image": 19, "atlas": 7, "sample": 6,
        "atlas_image": 5, "atlas_image_xml": 5, "session": 4, "screening_session": 1,
    }

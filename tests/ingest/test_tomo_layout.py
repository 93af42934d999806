"""Tomography file names: tilt-series .mdoc, tilt movies and their position, gain references."""

from __future__ import annotations

from pathlib import Path

import pytest

from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.tomo.layout import (
    TomoPath,
    classify_tomo_path,
    position_of_mdoc,
    position_of_movie,
)
from cryovault.ingest.tomo.parsers import parse_tilt_series_mdoc

MDOC = Path("/work/shared/fixtures/mdoc")


@pytest.mark.parametrize(("path", "expected"), [
    ("Position_1.mdoc", TomoPath("mdoc", "Position_1")),
    ("Position_1_2.mdoc", TomoPath("mdoc", "Position_1_2")),
    ("Batch/TS_01.mrc.mdoc", TomoPath("mdoc", "TS_01")),
    ("TS_01.st.mdoc", TomoPath("mdoc", "TS_01")),
    # Tomography 5 ≥ 5.12
    ("Position_1_001_-0.00_20240101_120000_fractions.tiff", TomoPath("tilt_movie", "Position_1")),
    ("Frames/Position_12_049_-58.00_20231021_000416_EER.eer",
     TomoPath("tilt_movie", "Position_12")),
    ("Position_1_2_013_24.00_20240101_121500_Fractions.mrc",
     TomoPath("tilt_movie", "Position_1_2")),
    # Tomography 5.7: angle in brackets
    ("Position_4_007[-12.00]_20220101_101010_fractions.tiff", TomoPath("tilt_movie", "Position_4")),
    # SerialEM
    ("frames/TS_01_003_-3.0.tif", TomoPath("tilt_movie", "TS_01")),
    ("TS_01_040_60.0.mrc", TomoPath("tilt_movie", "TS_01")),
    ("s_mmm_00993_33.0_Oct08_07.39.05.tif", TomoPath("tilt_movie", "s_mmm")),
    # a single movie's frame .mdoc is not a tilt series
    ("frames/TS_01_003_-3.0.tif.mdoc", TomoPath("other")),
    ("s_mmm_00993_33.0_Oct08_07.39.05.tif.mdoc", TomoPath("other")),
    ("EF-Falcon.gain", TomoPath("gain")),
    ("SuperRef_s_mmm_00000_-15.0_Oct08_01.59.24.dm4", TomoPath("gain")),
    ("CountRef_TS_01.mrc", TomoPath("gain")),
    ("gain_ref.tiff", TomoPath("gain")),
    ("TS_01.mrc", TomoPath("other")),  # the stack
    ("Position_1.mrc", TomoPath("other")),
    ("Position_1_001_-0.00_20240101_120000_fractions.tiff.tmp", TomoPath("other")),
    ("notes.txt", TomoPath("other")),
    (".mdoc", TomoPath("other")),
])
def test_classify(path, expected):
    assert classify_tomo_path(path) == expected


@pytest.mark.parametrize(("path", "message"), [
    ("/data/Position_1.mdoc", "relative to the session folder"),
    ("../Position_1.mdoc", "'..' is not allowed"),
    ("Frames\\Position_1_001_-0.00_20240101_120000_EER.eer", "backslashes are not allowed"),
    ("", "the file path is empty"),
])
def test_path_tricks_are_refused(path, message):
    with pytest.raises(IngestFormatError, match=message):
        classify_tomo_path(path)


def test_position_of_mdoc():
    assert position_of_mdoc("Position_1.mdoc") == "Position_1"
    assert position_of_mdoc("a/b/TS_01.mrc.mdoc") == "TS_01"
    assert position_of_mdoc("Position_1") == "Position_1"


def test_positions_of_the_real_serialem_movies():
    series = parse_tilt_series_mdoc((MDOC / "serialem_tilt_series_TS_01.mdoc").read_bytes(),
                                    "TS_01.mrc.mdoc")
    names = [tilt.sub_frame_path for tilt in series.tilts]
    assert all(classify_tomo_path(f"frames/{name}") == TomoPath("tilt_movie", "TS_01")
               for name in names)
    # SerialEM frame names configured with a navigator label after the root name: the name
    # cannot tell where the position ends (the .mdoc's SubFramePath links them instead).
    assert position_of_movie("chrom_07_ts_010_167_000_-0.0.mrc") == "chrom_07_ts_010_167"
    assert position_of_movie("Position_1.mdoc") is None

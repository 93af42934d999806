"""Where a file sits in an EPU session folder, and what it therefore is (FORMATS.md §1.2).

Paths are POSIX, relative to the EPU session folder (``Supervisor_<date>_<time>_<name>_EPU``).
Files of the atlas session are sent under the virtual prefix ``Atlas/`` followed by their path
relative to the atlas session folder (``Supervisor_<date>_<time>_<name>_atlas``).

Recognised layout (names and case as EPU writes them; anything else is "other"):

    EpuSession.dm                                                         session
    Metadata/GridSquare_<gs>.dm                                           grid_square_metadata
    Images-Disc<k>/GridSquare_<gs>/GridSquare_<date>_<time>.xml           grid_square_xml
    Images-Disc<k>/GridSquare_<gs>/GridSquare_<date>_<time>.jpg|mrc|tif(f) grid_square_image
    Images-Disc<k>/GridSquare_<gs>/FoilHoles/FoilHole_<fh>_<date>_<time>.xml  foil_hole_xml
    …/FoilHoles/FoilHole_<fh>_<date>_<time>.jpg|mrc|tif(f)                foil_hole_image
    Images-Disc<k>/GridSquare_<gs>/Data/<acq>.xml                         acquisition_xml
    …/Data/<acq>.jpg                                                      acquisition_jpg
    …/Data/<acq>.mrc|tiff|tif                                             integrated
    …/Data/<acq>_fractions.tiff|_Fractions.tiff|_Fractions.mrc|_EER.eer   movie
    *.gain anywhere; *gain*.mrc|tif(f)|dm4 in the session folder          gain
    Atlas/ScreeningSession.dm                                             screening_session
    Atlas/[Sample<n>/]Atlas/Atlas.dm                                      atlas
    Atlas/[Sample<n>/]Atlas/Atlas_<id>.jpg|mrc|tif(f)                     atlas_image
    Atlas/[Sample<n>/]Atlas/Atlas_<id>.xml                                atlas_image_xml
    Atlas/[Sample<n>/]Atlas/Tile_<id>_<index>_<atlas id>.*                atlas_tile
    Atlas/Sample<n>/Sample.dm                                             sample

with ``<acq>`` = ``FoilHole_<fh>_Data_<area>_<n>_<YYYYMMDD>_<HHMMSS>`` (the acquisition name;
older EPU writes ``_<HHMM>``). ``<n>`` is the autoloader (cassette) slot.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryovault.ingest.relative_paths import is_gain_reference_name, split_relative_path

ATLAS_PREFIX = "Atlas"
# Movie suffixes as EPU writes them (K3/TIFF: either case of "fractions"; older: MRC; Falcon: EER)
MOVIE_SUFFIXES = ("_fractions.tiff", "_Fractions.tiff", "_Fractions.mrc", "_EER.eer")
INTEGRATED_EXTENSIONS = (".mrc", ".tiff", ".tif")
IMAGE_EXTENSIONS = ("jpg", "jpeg", "mrc", "tif", "tiff")

_ACQUISITION = re.compile(r"^(FoilHole_(\d+)_Data_\d+_\d+_\d{8}_\d{4,6})(.*)$")
_DISC = re.compile(r"^Images-Disc\d+$")
_GRID_SQUARE_DIR = re.compile(r"^GridSquare_(\d+)$")
_GRID_SQUARE_IMAGE = re.compile(r"^GridSquare_\d{8}_\d{4,6}\.(\w+)$")
_FOIL_HOLE_IMAGE = re.compile(r"^FoilHole_(\d+)_\d{8}_\d{4,6}\.(\w+)$")
_GRID_SQUARE_METADATA = re.compile(r"^GridSquare_(\d+)\.dm$")
_SAMPLE_DIR = re.compile(r"^Sample(\d+)$")
_ATLAS_IMAGE = re.compile(r"^Atlas_\d+\.(\w+)$")
_ATLAS_TILE = re.compile(r"^Tile_\d+_\d+_\d+\.\w+$")


@dataclass(frozen=True)
class EpuPath:
    kind: str
    grid_square_id: str | None = None
    foil_hole_id: str | None = None
    acquisition: str | None = None  # e.g. FoilHole_9015883_Data_9017347_6_20250108_154915
    cassette_slot: int | None = None


def acquisition_name_of(filename: str) -> str | None:
    """The acquisition (data base name) a file of ``Data/`` belongs to: its XML, JPEG,
    integrated image or movie; None for any other name. Accepts a name or a POSIX path."""
    name = filename.rsplit("/", 1)[-1]
    match = _ACQUISITION.match(name)
    if match is None:
        return None
    suffix = match.group(3)
    if suffix in (".xml", ".jpg") or suffix in INTEGRATED_EXTENSIONS or suffix in MOVIE_SUFFIXES:
        return match.group(1)
    return None


def classify_epu_path(relative_path: str) -> EpuPath:
    """What the file at ``relative_path`` (POSIX, relative to the EPU session folder) is.

    Raises IngestFormatError for paths that could leave the folder (absolute, ``..``,
    backslashes, drive letters)."""
    parts = split_relative_path(relative_path)
    if parts[0] == ATLAS_PREFIX and len(parts) > 1:
        return _classify_atlas(parts[1:])
    name = parts[-1]
    if len(parts) == 1:
        if name == "EpuSession.dm":
            return EpuPath("session")
        if is_gain_reference_name(name):
            return EpuPath("gain")
        return EpuPath("other")
    if name.lower().endswith(".gain"):
        return EpuPath("gain")
    if len(parts) == 2 and parts[0] == "Metadata":
        match = _GRID_SQUARE_METADATA.match(name)
        if match:
            return EpuPath("grid_square_metadata", grid_square_id=match.group(1))
        return EpuPath("other")
    if not _DISC.match(parts[0]) or len(parts) < 3:
        return EpuPath("other")
    square = _GRID_SQUARE_DIR.match(parts[1])
    if square is None:
        return EpuPath("other")
    square_id = square.group(1)
    if len(parts) == 3:
        match = _GRID_SQUARE_IMAGE.match(name)
        if match and match.group(1) == "xml":
            return EpuPath("grid_square_xml", grid_square_id=square_id)
        if match and match.group(1).lower() in IMAGE_EXTENSIONS:
            return EpuPath("grid_square_image", grid_square_id=square_id)
        return EpuPath("other", grid_square_id=square_id)
    if len(parts) != 4:
        return EpuPath("other", grid_square_id=square_id)
    if parts[2] == "FoilHoles":
        match = _FOIL_HOLE_IMAGE.match(name)
        if match and match.group(2) == "xml":
            return EpuPath("foil_hole_xml", square_id, foil_hole_id=match.group(1))
        if match and match.group(2).lower() in IMAGE_EXTENSIONS:
            return EpuPath("foil_hole_image", square_id, foil_hole_id=match.group(1))
        return EpuPath("other", grid_square_id=square_id)
    if parts[2] == "Data":
        return _classify_data(name, square_id)
    return EpuPath("other", grid_square_id=square_id)


def _classify_data(name: str, square_id: str) -> EpuPath:
    match = _ACQUISITION.match(name)
    if match is None:
        return EpuPath("other", grid_square_id=square_id)
    acquisition, hole_id, suffix = match.groups()
    if suffix == ".xml":
        kind = "acquisition_xml"
    elif suffix == ".jpg":
        kind = "acquisition_jpg"
    elif suffix in MOVIE_SUFFIXES:
        kind = "movie"
    elif suffix in INTEGRATED_EXTENSIONS:
        kind = "integrated"
    else:
        return EpuPath("other", grid_square_id=square_id, foil_hole_id=hole_id)
    return EpuPath(kind, grid_square_id=square_id, foil_hole_id=hole_id, acquisition=acquisition)


def _classify_atlas(parts: tuple[str, ...]) -> EpuPath:
    """``parts`` relative to the atlas session folder."""
    if parts == ("ScreeningSession.dm",):
        return EpuPath("screening_session")
    slot: int | None = None
    sample = _SAMPLE_DIR.match(parts[0])
    if sample is not None:
        slot = int(sample.group(1))
        parts = parts[1:]
        if parts == ("Sample.dm",):
            return EpuPath("sample", cassette_slot=slot)
    if len(parts) != 2 or parts[0] != "Atlas":
        return EpuPath("other", cassette_slot=slot)
    name = parts[1]
    if name == "Atlas.dm":
        return EpuPath("atlas", cassette_slot=slot)
    if _ATLAS_TILE.match(name):
        return EpuPath("atlas_tile", cassette_slot=slot)
    image = _ATLAS_IMAGE.match(name)
    if image and image.group(1) == "xml":
        return EpuPath("atlas_image_xml", cassette_slot=slot)
    if image and image.group(1).lower() in IMAGE_EXTENSIONS:
        return EpuPath("atlas_image", cassette_slot=slot)
    return EpuPath("other", cassette_slot=slot)

"""What a file in a tomography session folder is, and which tilt series (position) it is for.

Paths are POSIX, relative to the session folder; files are recognised by name wherever they
sit (Tomography 5 and SerialEM put movies beside the .mdoc or in a frames folder).

    <position>.mdoc, <position>.mrc.mdoc, <position>.st.mdoc       mdoc (a tilt series)
    <movie>.mdoc (e.g. TS_01_000_0.0.tif.mdoc: one movie's frames)  other
    tilt movies (below)                                              tilt_movie
    *.gain, *gain*.mrc|tif(f)|dm4, SuperRef_*/CountRef_*.dm4|mrc     gain

Tilt-movie names (the tilt series' position is what comes before the tilt number):

    Tomography 5 ≥ 5.12: <position>_<NNN>_<angle>_<YYYYMMDD>_<HHMMSS>_<EER|fractions|Fractions>
                         .eer|.tiff|.tif|.mrc   (Position_1_001_-0.00_20240101_120000_EER.eer)
    Tomography 5.7:      <position>_<NNN>[<angle>]<anything>.eer|.tiff|.tif|.mrc
    SerialEM:            <position>_<NNN>_<angle>[_<anything>].tif|.tiff|.mrc|.eer
                         (TS_01_003_-3.0.tif; <angle> has a decimal point)

SerialEM's frame-file names are configurable: when a facility adds fields after the position
(e.g. a navigator label: ``chrom_07_ts_010_167_000_-0.0.mrc`` for ``chrom_07_ts_010.mdoc``) the
position found here is longer than the .mdoc's; the .mdoc's ``SubFramePath`` is then the
reliable link from a tilt to its movie.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from cryovault.ingest.relative_paths import is_gain_reference_name, split_relative_path

_MOVIE_EXTENSION = r"\.(?:eer|tiff?|mrc)"
_ANGLE = r"[+-]?\d+\.\d+"
_TOMO5 = re.compile(
    rf"^(?P<position>.+)_\d+_{_ANGLE}_\d{{8}}_\d{{6}}_(?:EER|[Ff]ractions){_MOVIE_EXTENSION}$")
_TOMO5_BRACKETS = re.compile(
    rf"^(?P<position>.+?)_\d+\[[+-]?\d+(?:\.\d+)?\].*{_MOVIE_EXTENSION}$")
_SERIALEM = re.compile(rf"^(?P<position>.+?)_\d{{3,}}_{_ANGLE}(?:_.*)?{_MOVIE_EXTENSION}$")
_STACK_SUFFIXES = (".mrc", ".st")


@dataclass(frozen=True)
class TomoPath:
    kind: str  # "mdoc" | "tilt_movie" | "gain" | "other"
    position: str | None = None


def position_of_movie(filename: str) -> str | None:
    """The tilt series (position) a tilt movie belongs to, from its name; None if the name is
    not a tilt movie's. Accepts a name or a POSIX path."""
    name = filename.rsplit("/", 1)[-1]
    for pattern in (_TOMO5, _TOMO5_BRACKETS, _SERIALEM):
        match = pattern.match(name)
        if match:
            return match.group("position")
    return None


def position_of_mdoc(filename: str) -> str:
    """``Position_1.mdoc`` → ``Position_1``; ``TS_01.mrc.mdoc`` → ``TS_01`` (SerialEM names the
    .mdoc after its stack). A name without ``.mdoc`` is returned as it is."""
    name = filename.rsplit("/", 1)[-1]
    if name.lower().endswith(".mdoc"):
        name = name[: -len(".mdoc")]
        for suffix in _STACK_SUFFIXES:
            if name.lower().endswith(suffix) and len(name) > len(suffix):
                name = name[: -len(suffix)]
                break
    return name


def classify_tomo_path(relative_path: str) -> TomoPath:
    """What the file at ``relative_path`` is. Raises IngestFormatError for paths that could
    leave the session folder (absolute, ``..``, backslashes, drive letters)."""
    name = split_relative_path(relative_path)[-1]
    if name.lower().endswith(".mdoc"):
        stem = name[: -len(".mdoc")]
        if not stem or position_of_movie(stem) is not None:
            return TomoPath("other")  # a single movie's frame .mdoc, not a tilt series
        return TomoPath("mdoc", position_of_mdoc(name))
    if is_gain_reference_name(name):
        return TomoPath("gain")
    position = position_of_movie(name)
    if position is not None:
        return TomoPath("tilt_movie", position)
    return TomoPath("other")

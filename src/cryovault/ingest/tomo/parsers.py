"""Tilt-series ``.mdoc`` (Tomography 5 and SerialEM) → ``TiltSeriesRecord`` (FORMATS.md §2).

The text is read with ``mdocfile`` (``Mdoc.from_string``); this module adds the checks, the
units and the dates. What is read (keys as the programs write them; what a simulator must write):

  global header (before the first section), ``key = value``: PixelSpacing (Å), Voltage (kV),
    ImageFile, ImageSize (w h), DataMode, Montage, Version; title lines ``[T = …]`` (SerialEM
    frame sets: a bare ``T = …`` line):
      ``[T = Tomography: <microscope>    DD-Mon-YYYY  HH:MM:SS]`` or
      ``[T = SerialEM: <microscope>    DD-Mon-YY  HH:MM:SS]``;
      ``[T =   TiltAxisAngle = -90.18  Binning = 1  SpotSize = 7]`` (Tomography 5) or
      ``[T = Tilt axis angle = 85.3, binning = 4  spot = 8  camera = 2]`` (SerialEM).
  one section per image, ``[ZValue = n]`` (or ``[FrameSet = n]``; ``[MontSection = n]`` are
    montage summaries and are skipped) with: TiltAngle (°, required), StagePosition (x y, µm),
    StageZ (µm), ExposureDose (e⁻/Å²), PriorRecordDose, PixelSpacing (Å), Defocus and
    TargetDefocus (µm, negative = underfocus), ImageShift (x y), RotationAngle (°),
    ExposureTime (s), Binning, Magnification, SubFramePath (Windows path or empty),
    NumSubFrames, DateTime; every other key is kept as text in ``extra``.

Lines may end in CRLF and carry trailing spaces; missing values are ``NaN`` or empty (→ None).
Dates: ``DD-Mon-YYYY`` and, with a two-digit year, ``DD-Mon-YY`` for SerialEM but ``YY-Mon-DD``
for Tomography 5 (its older versions). The .mdoc has no time zone: its times are taken in
``instrument_timezone`` (UTC unless the caller knows the microscope PC's zone).
"""

from __future__ import annotations

import logging
import math
import re
from datetime import UTC, datetime, tzinfo
from pathlib import PurePath

from mdocfile.data_models import Mdoc, MdocSectionData
from pydantic import ValidationError

from cryovault.ingest.epu.records import StagePosition
from cryovault.ingest.errors import IngestFormatError
from cryovault.ingest.tomo.layout import position_of_mdoc
from cryovault.ingest.tomo.records import TiltRecord, TiltSeriesRecord

# mdocfile logs a warning for every section with FrameDosesAndNumber and for every key it does
# not model; both are normal in real files.
logging.getLogger("mdocfile").setLevel(logging.ERROR)

MICROMETRE_TO_ANGSTROM = 1e4
_SECTION = re.compile(r"^\[(ZValue|FrameSet|MontSection)\s*=\s*(-?\d+)\s*\]$")
_TITLE = re.compile(
    r"^(?P<software>SerialEM|Tomography)\s*:\s*(?P<microscope>.*?)\s*"
    r"(?P<date>\d{1,2}-[A-Za-z]{3}-\d{2,4}\s+\d{1,2}:\d{2}:\d{2})?\s*$")
_TILT_AXIS = re.compile(r"tilt\s*axis\s*angle\s*=\s*([-+]?\d+(?:\.\d+)?)", re.IGNORECASE)
_VERSION = re.compile(r"Version\s+(\d+(?:\.\d+)+)")
_DATE = re.compile(r"^(\d{1,2})-([A-Za-z]{3})-(\d{2,4})\s+(\d{1,2}):(\d{2}):(\d{2})$")
_MONTHS = {name: number for number, name in enumerate(
    ("jan", "feb", "mar", "apr", "may", "jun", "jul", "aug", "sep", "oct", "nov", "dec"), 1)}
_MAPPED = {"ZValue", "FrameSet", "MontSection", "TiltAngle", "StagePosition", "StageZ",
           "ExposureDose", "PriorRecordDose", "PixelSpacing", "Defocus", "TargetDefocus",
           "ImageShift", "RotationAngle", "ExposureTime", "Binning", "Magnification",
           "SubFramePath", "NumSubFrames", "DateTime"}


def parse_tilt_series_mdoc(data: bytes, name: str, *,
                           instrument_timezone: tzinfo = UTC) -> TiltSeriesRecord:
    """Parse a tilt-series ``.mdoc``. ``name`` is the position (``Position_1``); a file name
    (``Position_1.mdoc``, ``TS_01.mrc.mdoc``) is reduced to it."""
    series = position_of_mdoc(name.strip()) if isinstance(name, str) else None
    if not series:
        raise IngestFormatError("a tilt series needs a name (its .mdoc file name)")
    label = f"{series}.mdoc"
    text = _text(data, label)
    _check_lines(text, label)
    try:
        mdoc = Mdoc.from_string(text)
    except ValidationError as exc:
        raise IngestFormatError(f"{label}: {_validation_message(exc, text)}") from None
    except (ValueError, TypeError) as exc:
        raise IngestFormatError(f"{label}: not a readable .mdoc ({exc})") from None

    header = mdoc.global_data
    titles = tuple(title.strip()[1:-1].split("=", 1)[1].strip() for title in mdoc.titles)
    bare_title = (header.model_extra or {}).get("T")
    if bare_title:
        titles = (str(bare_title).strip(), *titles)
    software, microscope, started = _title_facts(titles)
    tomography = software == "Tomography"

    tilts: list[TiltRecord] = []
    for index, section in enumerate(mdoc.section_data):
        if section.MontSection is not None:
            continue
        tilts.append(_tilt(section, index, label, tomography, instrument_timezone,
                           header.PixelSpacing))
    if not tilts:
        raise IngestFormatError(f"{label}: no image sections ([ZValue = n])",
                                possibly_incomplete=True)
    started_at = None
    if started is not None:
        started_at = _moment(started, tomography, instrument_timezone, label, "title")
    voltage = _finite(header.Voltage)
    if voltage is None:
        voltage = _finite(getattr(mdoc.section_data[0], "Voltage", None))
    version = _VERSION.search(header.Version or "")
    return TiltSeriesRecord(
        name=series,
        pixel_size_angstrom=_finite(header.PixelSpacing) or tilts[0].pixel_size_angstrom,
        voltage_kv=voltage,
        tilt_axis_angle_deg=_tilt_axis(titles),
        image_size=tuple(header.ImageSize) if header.ImageSize else None,  # type: ignore[arg-type]
        data_mode=header.DataMode,
        microscope=microscope,
        detector=None,
        tilts=tuple(tilts),
        acquisition_software=software,
        software_version=version.group(1) if version else None,
        image_file=header.ImageFile.name if header.ImageFile else None,
        montage=bool(header.Montage),
        titles=titles,
        started_at=started_at,
    )


def _text(data: bytes, label: str) -> str:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IngestFormatError(f"{label}: expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise IngestFormatError(f"{label}: the file is empty", possibly_incomplete=True)
    if b"\x00" in data:
        raise IngestFormatError(f"{label}: not a text file (it contains NUL bytes)")
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError:
        return data.decode("cp1252", errors="replace")


def _check_lines(text: str, label: str) -> None:
    """Every line is blank, ``key = value``, a title or a section header."""
    sections = 0
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        if line.startswith("["):
            if not line.endswith("]") or "=" not in line:
                raise IngestFormatError(
                    f"{label}: line {number} is not a '[key = value]' header: {line[:60]!r}")
            if _SECTION.match(line):
                sections += 1
            elif not line[1:].lstrip().startswith("T"):
                raise IngestFormatError(
                    f"{label}: line {number}: unknown section {line[:60]!r}")
            continue
        key, equals, _ = line.partition("=")
        if not equals or not key.strip() or " " in key.strip():
            raise IngestFormatError(
                f"{label}: line {number} is not 'key = value': {line[:60]!r}")
        if sections == 0 and line.count("=") > 1 and key.strip() != "T":
            raise IngestFormatError(
                f"{label}: line {number}: more than one '=' in a header line: {line[:60]!r}")
    if sections == 0:
        raise IngestFormatError(
            f"{label}: no [ZValue = n] section: not a tilt-series .mdoc, or it is still being "
            "written", possibly_incomplete=True)


def _validation_message(exc: ValidationError, text: str) -> str:
    error = exc.errors()[0]
    key = str(error["loc"][0]) if error.get("loc") else "a value"
    if key == "FrameDosesAndNumbers":
        key = "FrameDosesAndNumber"
    value = error.get("input")
    where = ""
    for number, raw in enumerate(text.splitlines(), 1):
        line_key, _, line_value = raw.strip().partition("=")
        if line_key.strip() == key and (not isinstance(value, str)
                                        or line_value.strip() == value.strip()):
            where = f"line {number}: "
            break
    return f"{where}{key} = {value!r} is not valid ({error.get('msg', 'bad value')})"


def _finite(value: object) -> float | None:
    if value is None:
        return None
    number = float(value)  # type: ignore[arg-type]
    return None if math.isnan(number) or math.isinf(number) else number


def _clean(value: float | None) -> float | None:
    return None if value is None else float(f"{value:.12g}")


def _underfocus_angstrom(defocus_um: float | None) -> float | None:
    """µm, negative = underfocus → Å, positive = underfocus."""
    return None if defocus_um is None else _clean(-defocus_um * MICROMETRE_TO_ANGSTROM)


def _tilt(section: MdocSectionData, index: int, label: str, tomography: bool,
          timezone: tzinfo, default_pixel: float | None) -> TiltRecord:
    if section.ZValue is not None:
        z_value, header = section.ZValue, f"[ZValue = {section.ZValue}]"
    elif section.FrameSet is not None:
        z_value, header = section.FrameSet, f"[FrameSet = {section.FrameSet}]"
    else:
        z_value, header = index, f"section {index + 1}"
    angle = _finite(section.TiltAngle)
    if angle is None:
        raise IngestFormatError(f"{label}: {header} has no TiltAngle")
    stage_xy = section.StagePosition or (None, None)
    image_shift = section.ImageShift or (None, None)
    when = None
    if section.DateTime:
        when = _moment(section.DateTime, tomography, timezone, label, f"{header} DateTime")
    return TiltRecord(
        z_value=z_value,
        tilt_angle_deg=angle,
        acquired_at=when,
        sub_frame_path=_basename(section.SubFramePath),
        exposure_dose_e_per_angstrom2=_finite(section.ExposureDose),
        pixel_size_angstrom=_finite(section.PixelSpacing) or _finite(default_pixel),
        defocus_angstrom=_underfocus_angstrom(_finite(section.Defocus)),
        target_defocus_angstrom=_underfocus_angstrom(_finite(section.TargetDefocus)),
        image_shift_x=_finite(image_shift[0]),
        image_shift_y=_finite(image_shift[1]),
        stage=StagePosition(x_um=_finite(stage_xy[0]), y_um=_finite(stage_xy[1]),
                            z_um=_finite(section.StageZ), alpha_deg=angle, beta_deg=None),
        number_of_frames=section.NumSubFrames,
        exposure_time_s=_finite(section.ExposureTime),
        extra=_extra(section),
        prior_dose_e_per_angstrom2=_finite(section.PriorRecordDose),
        magnification=_finite(section.Magnification),
        rotation_angle_deg=_finite(section.RotationAngle),
        binning=_finite(section.Binning),
    )


def _basename(path: PurePath | str | None) -> str | None:
    """The file name of a Windows or POSIX path (``D:\\…\\TS_01_000_0.0.mrc``)."""
    if path is None:
        return None
    name = re.split(r"[\\/]", str(path))[-1].strip()
    return None if name in ("", ".") else name


def _extra(section: MdocSectionData) -> dict[str, str]:
    """Every key not mapped to a field, as text; NaN (a missing value) is left out."""
    result: dict[str, str] = {}
    values = section.model_dump()
    values.update(section.model_extra or {})
    for key, value in values.items():
        if key in _MAPPED or value is None:
            continue
        if key == "FrameDosesAndNumbers":
            key = "FrameDosesAndNumber"
            value = "  ".join(f"{_number_text(dose)} {count}" for dose, count in value)
        elif isinstance(value, tuple | list):
            if all(isinstance(item, float) and math.isnan(item) for item in value):
                continue
            value = " ".join(_number_text(item) for item in value)
        elif isinstance(value, bool):
            value = "1" if value else "0"
        elif isinstance(value, float):
            if math.isnan(value):
                continue
            value = _number_text(value)
        text = str(value).strip()
        if text:
            result[key] = text
    return result


def _number_text(value: object) -> str:
    if isinstance(value, float):
        return "NaN" if math.isnan(value) else f"{value:g}"
    return str(value)


def _title_facts(titles: tuple[str, ...]) -> tuple[str | None, str | None, str | None]:
    """(software, microscope, date text) from the first title that names the software."""
    for title in titles:
        match = _TITLE.match(title)
        if match:
            return (match.group("software"), match.group("microscope") or None,
                    match.group("date"))
    return None, None, None


def _tilt_axis(titles: tuple[str, ...]) -> float | None:
    for title in titles:
        match = _TILT_AXIS.search(title)
        if match:
            return float(match.group(1))
    return None


def _moment(value: str, tomography: bool, timezone: tzinfo, label: str,
            where: str) -> datetime:
    match = _DATE.match(value.strip())
    if match is None:
        raise IngestFormatError(
            f"{label}: {where} {value!r} is not a date like 'DD-Mon-YYYY  HH:MM:SS'")
    first, month_name, last, hour, minute, second = match.groups()
    month = _MONTHS.get(month_name.lower())
    if len(last) == 4:
        day, year = int(first), int(last)
    elif tomography:  # Tomography 5 before 2024 wrote YY-Mon-DD
        year, day = 2000 + int(first), int(last)
    else:  # SerialEM: DD-Mon-YY
        day, year = int(first), 2000 + int(last)
    try:
        if month is None:
            raise ValueError(f"unknown month {month_name!r}")
        local = datetime(year, month, day, int(hour), int(minute), int(second),
                         tzinfo=timezone)
    except ValueError as exc:
        raise IngestFormatError(f"{label}: {where} {value!r} is not a valid date ({exc})") from None
    return local.astimezone(UTC)

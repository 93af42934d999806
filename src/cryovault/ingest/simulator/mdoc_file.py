"""Tomography 5 `.mdoc` files, written as Tomography 5 writes them.

Global header (`DataMode`, `ImageSize`, `ImageFile`, `PixelSpacing`, `Voltage`), two title lines
(`[T = Tomography: <MICROSCOPE>    DD-Mon-YYYY  HH:MM:SS]`, `[T =   TiltAxisAngle = φ  Binning = 1
SpotSize = n]`), then one `[ZValue = i]` section per tilt in acquisition order with the keys and
number formats of the real files (µm for stage and defocus, e⁻/Å² for doses, trailing spaces
after multi-valued keys, CRLF line ends, `SubFramePath` the Windows path of the movie,
`NumSubFrames` 1 for EER as Tomography 5 writes it).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def mdoc_time(moment: datetime) -> str:
    """`24-Jul-2024  13:38:23` (two spaces, English month whatever the locale, as Tomography 5
    writes DateTime)."""
    return (f"{moment.day:02d}-{_MONTHS[moment.month - 1]}-{moment.year}  "
            f"{moment:%H:%M:%S}")


@dataclass(frozen=True)
class MdocTilt:
    """One `[ZValue]` section."""

    tilt_angle_deg: float
    stage_x_um: float
    stage_y_um: float
    stage_z_um: float
    exposure_dose: float
    defocus_um: float  # signed, negative = underfocus
    target_defocus_um: float
    image_shift: tuple[float, float]
    exposure_time_s: float
    min_max_mean: tuple[float, float, float]
    prior_record_dose: float
    sub_frame_path: str
    num_sub_frames: int
    frame_dose: float
    frames_in_file: int
    acquired_at: datetime


@dataclass(frozen=True)
class MdocHeader:
    """The global part."""

    image_size: tuple[int, int]
    image_file: str
    pixel_spacing_angstrom: float
    voltage_kv: float
    microscope: str
    tilt_axis_angle_deg: float
    started_at: datetime
    magnification: int = 42000
    spot_size: int = 7


def mdoc_text(header: MdocHeader, tilts: list[MdocTilt]) -> bytes:
    """The whole file (CRLF line ends)."""
    width, height = header.image_size
    lines = [
        "DataMode = 6",
        f"ImageSize = {width} {height} ",
        f"ImageFile = {header.image_file}",
        f"PixelSpacing = {header.pixel_spacing_angstrom:.2f}",
        f"Voltage = {header.voltage_kv:.2f}",
        "",
        f"[T = Tomography: {header.microscope}    {mdoc_time(header.started_at)}]",
        "",
        f"[T =   TiltAxisAngle = {header.tilt_axis_angle_deg:.2f}  Binning = 1  "
        f"SpotSize = {header.spot_size}]",
        "",
    ]
    rotation = header.tilt_axis_angle_deg + 90.0
    for index, tilt in enumerate(tilts):
        lines += [
            f"[ZValue = {index}]",
            f"TiltAngle = {tilt.tilt_angle_deg:.2f}",
            f"StagePosition = {tilt.stage_x_um:.2f} {tilt.stage_y_um:.2f} ",
            f"StageZ = {tilt.stage_z_um:.2f}",
            f"Magnification = {header.magnification}",
            "Intensity = 0.44",
            f"ExposureDose = {tilt.exposure_dose:.2f}",
            f"PixelSpacing = {header.pixel_spacing_angstrom:.2f}",
            f"SpotSize = {header.spot_size}",
            f"Defocus = {tilt.defocus_um:.2f}",
            f"ImageShift = {tilt.image_shift[0]:.2f} {tilt.image_shift[1]:.2f} ",
            f"RotationAngle = {rotation:.2f}",
            f"ExposureTime = {tilt.exposure_time_s:.2f}",
            "Binning = 1",
            "MagIndex = 27",
            "CountsPerElectron = 1.00",
            "MinMaxMean = " + " ".join(f"{v:.2f}" for v in tilt.min_max_mean) + " ",
            f"TargetDefocus = {tilt.target_defocus_um:.2f}",
            f"PriorRecordDose = {tilt.prior_record_dose:.2f}",
            f"SubFramePath = {tilt.sub_frame_path}",
            f"NumSubFrames = {tilt.num_sub_frames}",
            f"FrameDosesAndNumber = {tilt.frame_dose:.2f} {tilt.frames_in_file}  ",
            f"DateTime = {mdoc_time(tilt.acquired_at)}",
            "FilterSlitAndLoss = 10.00 0.00 ",
            "ChannelName = ",
            "CameraLength = NaN",
            "",
        ]
    return ("\r\n".join(lines) + "\r\n").encode("ascii")

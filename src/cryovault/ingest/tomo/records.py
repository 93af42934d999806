"""What the tilt-series parser returns: frozen dataclasses with the unit in every field name.

Units: Å for pixel size and defocus (positive = underfocus; the .mdoc has µm, negative =
underfocus), µm for the stage, degrees for angles, e⁻/Å² for dose, s for time, kV for voltage,
timezone-aware UTC datetimes. ``None`` means the file did not say (or wrote NaN).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

from cryovault.ingest.epu.records import StagePosition

MDOC_IMAGE_SHIFT_UNIT = "SerialEM image-shift units (about µm on Thermo Fisher microscopes)"


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None


@dataclass(frozen=True)
class TiltRecord:
    """One ``[ZValue = n]`` (or ``[FrameSet = n]``) section: one tilt image / movie."""

    z_value: int  # position in the stack = acquisition order
    tilt_angle_deg: float
    acquired_at: datetime | None
    sub_frame_path: str | None  # the movie's file name (basename of SubFramePath)
    exposure_dose_e_per_angstrom2: float | None
    pixel_size_angstrom: float | None
    defocus_angstrom: float | None  # the microscope's defocus readout
    target_defocus_angstrom: float | None  # the defocus the acquisition aimed at
    image_shift_x: float | None  # MDOC_IMAGE_SHIFT_UNIT
    image_shift_y: float | None
    stage: StagePosition  # x/y/z in µm; alpha = the tilt angle
    number_of_frames: int | None  # NumSubFrames as written (Tomography 5 writes 1 for EER)
    exposure_time_s: float | None
    extra: dict[str, str] = field(default_factory=dict)
    prior_dose_e_per_angstrom2: float | None = None  # PriorRecordDose: dose before this tilt
    magnification: float | None = None
    rotation_angle_deg: float | None = None  # image rotation (RotationAngle)
    binning: float | None = None  # 0.5 = super-resolution

    def metadata(self) -> dict[str, object]:
        values: dict[str, object | None] = {
            "z_value": self.z_value,
            "tilt_angle_deg": self.tilt_angle_deg,
            "acquired_at": _iso(self.acquired_at),
            "sub_frame_path": self.sub_frame_path,
            "exposure_dose_e_per_angstrom2": self.exposure_dose_e_per_angstrom2,
            "prior_dose_e_per_angstrom2": self.prior_dose_e_per_angstrom2,
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "defocus_angstrom": self.defocus_angstrom,
            "target_defocus_angstrom": self.target_defocus_angstrom,
            "image_shift_x": self.image_shift_x,
            "image_shift_y": self.image_shift_y,
            "image_shift_unit": MDOC_IMAGE_SHIFT_UNIT if self.image_shift_x is not None else None,
            "stage_x_um": self.stage.x_um,
            "stage_y_um": self.stage.y_um,
            "stage_z_um": self.stage.z_um,
            "number_of_frames": self.number_of_frames,
            "exposure_time_s": self.exposure_time_s,
            "magnification": self.magnification,
            "rotation_angle_deg": self.rotation_angle_deg,
            "binning": self.binning,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class TiltSeriesRecord:
    """A tilt-series ``.mdoc`` (Tomography 5 or SerialEM): the series and its tilts in
    acquisition (stack) order."""

    name: str  # the position, from the .mdoc's file name
    pixel_size_angstrom: float | None
    voltage_kv: float | None
    tilt_axis_angle_deg: float | None  # as the title line states it (conventions differ, §2.3)
    image_size: tuple[int, int] | None  # (width, height) px
    data_mode: int | None
    microscope: str | None  # the name in the title line, e.g. "GLACIOS-9951630"
    detector: str | None  # the .mdoc names no detector; None unless a section says
    tilts: tuple[TiltRecord, ...]
    acquisition_software: str | None = None  # "Tomography" or "SerialEM"
    software_version: str | None = None
    image_file: str | None = None  # the stack (ImageFile), when one is saved
    montage: bool = False
    titles: tuple[str, ...] = ()
    started_at: datetime | None = None  # the first title's date

    @property
    def tilt_angles_deg(self) -> tuple[float, ...]:
        return tuple(tilt.tilt_angle_deg for tilt in self.tilts)

    def metadata(self) -> dict[str, object]:
        angles = self.tilt_angles_deg
        doses = [t.exposure_dose_e_per_angstrom2 for t in self.tilts
                 if t.exposure_dose_e_per_angstrom2 is not None]
        times = [t.acquired_at for t in self.tilts if t.acquired_at is not None]
        first = self.tilts[0] if self.tilts else None
        values: dict[str, object | None] = {
            "tilt_series": self.name,
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "voltage_kv": self.voltage_kv,
            "tilt_axis_angle_deg": self.tilt_axis_angle_deg,
            "image_width_px": self.image_size[0] if self.image_size else None,
            "image_height_px": self.image_size[1] if self.image_size else None,
            "data_mode": self.data_mode,
            "microscope": self.microscope,
            "detector": self.detector,
            "acquisition_software": self.acquisition_software,
            "software_version": self.software_version,
            "image_file": self.image_file,
            "montage": self.montage or None,
            "number_of_tilts": len(self.tilts),
            "min_tilt_angle_deg": min(angles) if angles else None,
            "max_tilt_angle_deg": max(angles) if angles else None,
            "total_dose_e_per_angstrom2": round(sum(doses), 6) if doses else None,
            "exposure_time_s": first.exposure_time_s if first else None,
            "target_defocus_angstrom": first.target_defocus_angstrom if first else None,
            "magnification": first.magnification if first else None,
            "started_at": _iso(min(times) if times else self.started_at),
            "finished_at": _iso(max(times) if times else None),
        }
        return {key: value for key, value in values.items() if value is not None}

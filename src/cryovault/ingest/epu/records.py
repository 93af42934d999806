"""What the EPU parsers return: frozen dataclasses with the unit in every field name.

Conventions (DESIGN.md): lengths on the specimen in Å (pixel size, defocus) or µm (stage),
angles in degrees, dose in e⁻/Å², times in s, voltage in kV, moments as timezone-aware UTC
datetimes. Defocus is positive for underfocus (EPU writes metres, negative = underfocus).
Ids are EPU's integer ids kept as strings. ``None`` means the file did not say.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime

EPU_IMAGE_SHIFT_UNIT = "microscope image-shift units (unitless, as EPU writes them)"


@dataclass(frozen=True)
class StagePosition:
    x_um: float | None
    y_um: float | None
    z_um: float | None
    alpha_deg: float | None
    beta_deg: float | None

    def metadata(self, prefix: str = "stage_") -> dict[str, object]:
        values = {"x_um": self.x_um, "y_um": self.y_um, "z_um": self.z_um,
                  "alpha_deg": self.alpha_deg, "beta_deg": self.beta_deg}
        return {prefix + key: value for key, value in values.items() if value is not None}


NO_STAGE_POSITION = StagePosition(None, None, None, None, None)


@dataclass(frozen=True)
class ImageRecord:
    """One EPU ``MicroscopeImage`` XML: a grid-square image, a foil-hole image, a data
    acquisition (micrograph/movie) or an atlas image/tile."""

    name: str
    acquired_at: datetime | None
    pixel_size_angstrom: float | None  # pixel of *this* image (binning included), see FORMATS §1.8
    width_px: int | None
    height_px: int | None
    stage: StagePosition
    image_shift_x: float | None  # EPU_IMAGE_SHIFT_UNIT
    image_shift_y: float | None
    defocus_target_angstrom: float | None  # CustomData AppliedDefocus: the defocus EPU aimed at
    applied_defocus_angstrom: float | None  # the same CustomData value (EPU's own name for it)
    dose_e_per_angstrom2: float | None
    exposure_time_s: float | None
    number_of_fractions: int | None
    magnification: float | None  # nominal
    voltage_kv: float | None
    microscope: str | None
    detector: str | None  # commercial name, e.g. "BioQuantum K3"
    phase_plate: bool | None
    extra: dict[str, str] = field(default_factory=dict)
    unique_id: str | None = None
    software: str | None = None  # e.g. "EPU"
    software_version: str | None = None  # e.g. "3.9.1.8206"
    instrument_id: str | None = None
    camera: str | None = None  # EPU's camera id, e.g. "EF-CCD"
    binning: int | None = None
    dose_per_fraction_e_per_angstrom2: float | None = None
    electron_counting: bool | None = None
    super_resolution_factor: int | None = None
    beam_shift_x: float | None = None  # microscope units; with beam-shift clustering EPU's
    beam_shift_y: float | None = None  # per-exposure shift shows up here
    objective_defocus_readout_angstrom: float | None = None  # optics/Defocus: scope readout
    spot_size: int | None = None
    energy_filter_slit_width_ev: float | None = None  # None when no slit is inserted
    foil_hole_x_px: float | None = None  # FoilHoles/*.xml only: the hole EPU found in
    foil_hole_y_px: float | None = None  # this image (FindFoilHoleCenterResults)
    foil_hole_diameter_px: float | None = None

    @property
    def image_shift_unit(self) -> str:
        return EPU_IMAGE_SHIFT_UNIT

    def metadata(self) -> dict[str, object]:
        """The SPA-1 metadata as a flat JSON-serialisable dict; None values are left out."""
        values: dict[str, object | None] = {
            "pixel_size_angstrom": self.pixel_size_angstrom,
            "width_px": self.width_px,
            "height_px": self.height_px,
            "dose_e_per_angstrom2": self.dose_e_per_angstrom2,
            "dose_per_fraction_e_per_angstrom2": self.dose_per_fraction_e_per_angstrom2,
            "defocus_target_angstrom": self.defocus_target_angstrom,
            "applied_defocus_angstrom": self.applied_defocus_angstrom,
            "exposure_time_s": self.exposure_time_s,
            "number_of_fractions": self.number_of_fractions,
            **self.stage.metadata(),
            "image_shift_x": self.image_shift_x,
            "image_shift_y": self.image_shift_y,
            "image_shift_unit": EPU_IMAGE_SHIFT_UNIT if self.image_shift_x is not None else None,
            "beam_shift_x": self.beam_shift_x,
            "beam_shift_y": self.beam_shift_y,
            "magnification": self.magnification,
            "voltage_kv": self.voltage_kv,
            "spot_size": self.spot_size,
            "binning": self.binning,
            "microscope": self.microscope,
            "detector": self.detector,
            "camera": self.camera,
            "electron_counting": self.electron_counting,
            "super_resolution_factor": self.super_resolution_factor,
            "energy_filter_slit_width_ev": self.energy_filter_slit_width_ev,
            "phase_plate": self.phase_plate,
            "acquired_at": self.acquired_at.isoformat() if self.acquired_at else None,
            "software": self.software,
            "software_version": self.software_version,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class EpuSessionRecord:
    """``EpuSession.dm``: the session's settings (the first sample of the session)."""

    name: str
    epu_version: str | None
    started_at: datetime | None
    atlas_path: str | None  # as written, usually a Windows path ending in Atlas.dm
    storage_root: str | None  # as written, e.g. "Z:\\DoseFractions\\cm40593-1"
    image_file_format: str | None  # "Mrc" / "Tiff": the integrated image next to each XML
    dose_fractions_format: str | None  # None when EPU saves no movies
    session_id: str | None = None
    cassette_slot: int | None = None  # autoloader slot
    grid_name: str | None = None  # AutoloaderDescription (what the user typed for the grid)
    grid_type: str | None = None  # e.g. "HoleyCarbon"
    grid_geometry: str | None = None  # e.g. "Square"
    clustering_mode: str | None = None
    hole_size_um: float | None = None
    hole_spacing_um: float | None = None
    grid_square_ids: tuple[str, ...] = ()  # squares EPU keeps a Metadata/GridSquare_<id>.dm for
    data_acquisition_area_ids: tuple[str, ...] = ()  # the <a> in FoilHole_<h>_Data_<a>_…
    defocus_targets_angstrom: tuple[float, ...] = ()  # the defocus list EPU cycles through
    exposure_time_s: float | None = None  # the "Data Acquisition" preset
    number_of_fractions: int | None = None
    spot_size: int | None = None
    binning: int | None = None
    camera: str | None = None
    extra: dict[str, str] = field(default_factory=dict)

    def metadata(self) -> dict[str, object]:
        values: dict[str, object | None] = {
            "epu_session": self.name,
            "epu_version": self.epu_version,
            "started_at": self.started_at.isoformat() if self.started_at else None,
            "atlas_path": self.atlas_path,
            "storage_root": self.storage_root,
            "image_file_format": self.image_file_format,
            "dose_fractions_format": self.dose_fractions_format,
            "cassette_slot": self.cassette_slot,
            "grid_name": self.grid_name,
            "grid_type": self.grid_type,
            "clustering_mode": self.clustering_mode,
            "hole_size_um": self.hole_size_um,
            "hole_spacing_um": self.hole_spacing_um,
            "grid_squares": len(self.grid_square_ids),
            "defocus_targets_angstrom": list(self.defocus_targets_angstrom) or None,
            "exposure_time_s": self.exposure_time_s,
            "number_of_fractions": self.number_of_fractions,
            "spot_size": self.spot_size,
            "binning": self.binning,
            "camera": self.camera,
        }
        return {key: value for key, value in values.items() if value is not None}


@dataclass(frozen=True)
class AtlasGridSquare:
    grid_square_id: str
    x_px: float | None  # centre in the atlas image
    y_px: float | None
    stage: StagePosition
    state: str | None  # as EPU states it, when the atlas file says (Atlas.dm 3.x does not)
    category: int | None = None  # EPU's grid-square category (its size/brightness class)
    width_px: float | None = None  # size of the square in the atlas image
    height_px: float | None = None
    aligned_stage: StagePosition = NO_STAGE_POSITION


@dataclass(frozen=True)
class AtlasTile:
    tile_id: str
    name: str | None  # image base name, e.g. "Tile_4590157_0_4590151"
    x_px: float | None  # top-left corner of the tile in the atlas image
    y_px: float | None
    width_px: float | None
    height_px: float | None
    stage: StagePosition


@dataclass(frozen=True)
class AtlasRecord:
    """``Atlas.dm`` (AtlasSessionXml)."""

    name: str
    acquired_at: datetime | None
    pixel_size_angstrom: float | None  # estimated, see parse_atlas
    width_px: int | None  # Atlas.dm does not give the atlas image size: None
    height_px: int | None
    grid_squares: tuple[AtlasGridSquare, ...]
    atlas_id: str | None = None
    started_at: datetime | None = None
    description: str | None = None  # e.g. "Atlas for autoloader slot 4"
    cassette_slot: int | None = None
    storage_folder: str | None = None  # as written (Windows path)
    image_name: str | None = None  # e.g. "Atlas_4590151" (the Atlas_<id>.jpg/.xml/.mrc)
    image_file_format: str | None = None
    software_version: str | None = None  # schema assembly version, when written
    tiles: tuple[AtlasTile, ...] = ()


@dataclass(frozen=True)
class FoilHoleTarget:
    foil_hole_id: str
    x_px: float | None  # centre in the grid-square image
    y_px: float | None
    diameter_px: float | None
    selected: bool | None
    stage: StagePosition
    state: str | None = None  # e.g. "Defined", "InProgress", "Completed"
    is_near_grid_bar: bool | None = None
    quality: float | None = None
    image_name: str | None = None  # FoilHole_<id>_<date>_<time> (the hole's own image)
    acquisition_names: tuple[str, ...] = ()  # FoilHole_<id>_Data_… base names acquired here


@dataclass(frozen=True)
class GridSquareTargets:
    """``Metadata/GridSquare_<id>.dm``: a grid square and its foil-hole targets."""

    grid_square_id: str
    foil_holes: tuple[FoilHoleTarget, ...]
    state: str | None = None  # e.g. "InProgress", "Completed"
    selected: bool | None = None
    unusable: bool | None = None
    stage: StagePosition = NO_STAGE_POSITION
    atlas_node_id: str | None = None
    image_name: str | None = None  # GridSquare_<date>_<time>
    image_file_format: str | None = None
    hole_spacing_um: float | None = None
    order: int | None = None

"""Parsers of the files EPU writes: bytes in, frozen records (``records.py``) out.

Raw EPU files are single-line XML without declaration; re-indented copies have one: both are
read. Elements are matched by local name (namespace prefixes vary), ``z:Ref`` is followed and
``i:nil`` is null (see ``datacontract.py``). Units: m → Å (pixel size, defocus) or µm (stage),
rad → °, e⁻/m² × 1e-20 → e⁻/Å², V → kV. Defocus sign flipped: positive = underfocus.

Element paths read (local names; "a|b" = first present; what a simulator must write):

EpuSession.dm — root ``EpuSessionXml`` (version from the root's ``z:Assembly`` "Version=…"):
  Name (required), Id, StartDateTime, AutoloaderSlot, AutoloaderDescription, ClusteringMode,
  DoseFractionsOutputFormat (nil/empty/"None" = no movies), ImageFileFormat,
  StorageFolders/_items/StorageFolderXml[1]/Path, other scalar children → extra;
  Samples/_items/SampleXml[first non-nil]/: AtlasId, GridType, GridGeometry,
    FilterHolesSettings/{HoleSize,HoleSpacing} (m),
    GridSquares//KeyValuePairOfint…/key (grid-square ids),
    TargetAreaTemplate/DataAcquisitionAreas//KeyValuePairOfintDataAcquisitionAreaXml…/
      {key, value/ImageAcquisitionSettingXml/Defocus/double* (m)},
    MicroscopeSettings/KeyValuePairs/KeyValuePairOfExperimentSettingsId…[key=Acquisition]/value/
      Acquisition/camera/{ExposureTime, Binning/x, Name, CameraSpecificInput (dictionary)
      [FractionationSettings]/NumberOffractions}, Optics/SpotIndex.
Atlas.dm — root ``AtlasSessionXml``: Id, Name, Description, StartDateTime, StorageFolder,
  Atlas/ (required): AcquisitionDateTime, AtlasImageReference/{BaseFileName,FileFormat},
  …//TileXml: Id, AtlasPixelPosition/{x,y,width,height}, StagePosition/{X,Y,Z,A,B},
    TileImageReference/BaseFileName, Nodes//KeyValuePairOfintNodeXml…/{key = grid-square id,
    value/{PositionOnTheAtlas/{Center/{x,y}, Size/{width,height}}, StagePosition,
    AlignedStagePosition, Category, State (optional)}}.
Metadata/GridSquare_<id>.dm — root ``GridSquareXml``: Id (required), AtlasNodeId, State,
  Selected, Unusable, Order, HoleSpacing (m), Position/{X,Y,Z,A,B}, Image/{BaseFileName,FileFormat},
  TargetLocations//KeyValuePairOfintTargetLocationXml…/{key (required) = foil-hole id, value/{
    PixelCenter/{x,y}, PixelWidthHeight/width, Selected, State, IsNearGridBar, Quality,
    StagePosition/{X,Y,Z,A,B}, Image/BaseFileName,
    ParticleAcquisitions//KeyValuePairOfintParticleAcquisitionDataXml…/value/Image/BaseFileName}}.
GridSquare_*.xml, FoilHoles/*.xml, Data/*.xml, Atlas_*.xml — root ``MicroscopeImage``:
  name, uniqueID, SpatialScale/pixelSize/x/numericValue (m), microscopeData (required)/
    acquisition/acquisitionDateTime, acquisition/camera/{ExposureTime, Name, Binning/x,
      ReadoutArea/{width,height}, CameraSpecificInput (dictionary): FractionationSettings/
      NumberOffractions, ElectronCountingEnabled, SuperResolutionFactor},
    core/{ApplicationSoftware,ApplicationSoftwareVersion}, gun/AccelerationVoltage (V),
    instrument/{InstrumentModel,InstrumentID}, stage/Position/{X,Y,Z (m),A,B (rad)},
    optics/{ImageShift/{_x,_y}, BeamShift/{_x,_y}, Defocus, SpotIndex,
      TemMagnification/NominalMagnification, EnergyFilter/{EnergySelectionSlitInserted,
      EnergySelectionSlitWidth}};
  CustomData (dictionary KeyValueOfstringanyType/{Key,Value}): AppliedDefocus (m), Dose (e⁻/m²),
    DetectorCommercialName | Detectors[<camera>].CommercialName, Detectors[<camera>].
    ElectronCounted, PhasePlateUsed, FindFoilHoleCenterResults/{Center/{x,y}, Size/width};
    other scalar entries → extra.
"""

from __future__ import annotations

import math
import re
from xml.etree.ElementTree import Element

import numpy as np

from cryovault.ingest.epu.datacontract import Document, assembly_version, load
from cryovault.ingest.epu.records import (
    AtlasGridSquare,
    AtlasRecord,
    AtlasTile,
    EpuSessionRecord,
    FoilHoleTarget,
    GridSquareTargets,
    ImageRecord,
    StagePosition,
)
from cryovault.ingest.errors import IngestFormatError

METRE_TO_ANGSTROM = 1e10
METRE_TO_MICROMETRE = 1e6
PER_SQUARE_METRE_TO_PER_SQUARE_ANGSTROM = 1e-20
_NO_MOVIES = {"", "none"}
_SLOT_IN_DESCRIPTION = re.compile(r"slot\s+(\d+)", re.IGNORECASE)
_SLOT_IN_FOLDER = re.compile(r"(?:^|[\\/])Sample(\d+)(?:[\\/]|$)")


def _clean(value: float) -> float:
    """Drop the binary noise a unit conversion adds (-2.1e-6 m → 21000 Å, not 20999.999…996)."""
    return float(f"{value:.12g}")


def _scaled(value: float | None, factor: float) -> float | None:
    return None if value is None else _clean(value * factor)


def _degrees(value: float | None) -> float | None:
    return None if value is None else _clean(math.degrees(value))


def _stage(doc: Document, position: Element | None) -> StagePosition:
    """``{X,Y,Z}`` in m and ``{A,B}`` in rad → µm and degrees."""
    return StagePosition(
        x_um=_scaled(doc.number(position, "X"), METRE_TO_MICROMETRE),
        y_um=_scaled(doc.number(position, "Y"), METRE_TO_MICROMETRE),
        z_um=_scaled(doc.number(position, "Z"), METRE_TO_MICROMETRE),
        alpha_deg=_degrees(doc.number(position, "A")),
        beta_deg=_degrees(doc.number(position, "B")),
    )


def _underfocus_angstrom(defocus_m: float | None) -> float | None:
    """EPU: metres, negative = underfocus → Å, positive = underfocus."""
    return None if defocus_m is None else _clean(-defocus_m * METRE_TO_ANGSTROM)


def _scalars(doc: Document, entries: dict[str, Element], prefix: str = "") -> dict[str, str]:
    """Dictionary entries with a plain text value, as strings."""
    result: dict[str, str] = {}
    for key, element in entries.items():
        if len(element) == 0:
            value = doc.text(element)
            if value is not None:
                result[prefix + key] = value
    return result


# -- EpuSession.dm -------------------------------------------------------------------------------


def parse_epu_session(data: bytes, *, source: str | None = None) -> EpuSessionRecord:
    """``EpuSession.dm`` → the session's settings. ``source`` names the file in messages."""
    doc = load(data, source or "EpuSession.dm", "EpuSessionXml", "EPU session file")
    root = doc.root
    name = doc.text(root, "Name")
    if name is None:
        raise IngestFormatError(f"{doc.label}: missing Name (the EPU session name)")
    storage = next(doc.children(doc.find(root, "StorageFolders", "_items"), "StorageFolderXml"),
                   None)
    sample = next(doc.children(doc.find(root, "Samples", "_items"), "SampleXml"), None)
    holes = doc.child(sample, "FilterHolesSettings")
    movies = doc.text(root, "DoseFractionsOutputFormat")
    if movies is not None and movies.strip().lower() in _NO_MOVIES:
        movies = None

    area_ids: list[str] = []
    defoci: list[float] = []
    areas = doc.find(sample, "TargetAreaTemplate", "DataAcquisitionAreas")
    for pair in doc.descendants(areas, "KeyValuePairOfintDataAcquisitionAreaXml"):
        area_id = doc.text(pair, "key")
        if area_id is not None and area_id not in area_ids:
            area_ids.append(area_id)
        values = doc.find(pair, "value", "ImageAcquisitionSettingXml", "Defocus")
        for item in doc.children(values, "double"):
            value = _underfocus_angstrom(doc.number(item, what="Defocus/double"))
            if value is not None and value not in defoci:
                defoci.append(value)

    preset = _preset(doc, sample, "Acquisition")
    camera = doc.find(preset, "Acquisition", "camera")
    camera_inputs = doc.key_values(doc.child(camera, "CameraSpecificInput"))
    mapped = {"Name", "Id", "StartDateTime", "AutoloaderSlot", "AutoloaderDescription",
              "ClusteringMode", "DoseFractionsOutputFormat", "ImageFileFormat"}
    extra = {local: value for child in root
             if len(child) == 0 and (local := child.tag.rsplit("}", 1)[-1]) not in mapped
             and (value := doc.text(child)) is not None}
    return EpuSessionRecord(
        name=name,
        epu_version=assembly_version(root),
        started_at=doc.timestamp(root, "StartDateTime"),
        atlas_path=doc.text(sample, "AtlasId"),
        storage_root=doc.text(storage, "Path"),
        image_file_format=doc.text(root, "ImageFileFormat"),
        dose_fractions_format=movies,
        session_id=doc.text(root, "Id"),
        cassette_slot=doc.integer(root, "AutoloaderSlot"),
        grid_name=doc.text(root, "AutoloaderDescription"),
        grid_type=doc.text(sample, "GridType"),
        grid_geometry=doc.text(sample, "GridGeometry"),
        clustering_mode=doc.text(root, "ClusteringMode"),
        hole_size_um=_scaled(doc.number(holes, "HoleSize"), METRE_TO_MICROMETRE),
        hole_spacing_um=_scaled(doc.number(holes, "HoleSpacing"), METRE_TO_MICROMETRE),
        grid_square_ids=tuple(
            key for pair in doc.descendants(doc.child(sample, "GridSquares"), "KeyValuePairOfint")
            if (key := doc.text(pair, "key")) is not None),
        data_acquisition_area_ids=tuple(area_ids),
        defocus_targets_angstrom=tuple(defoci),
        exposure_time_s=doc.number(camera, "ExposureTime"),
        number_of_fractions=_fractions(doc, camera_inputs),
        spot_size=doc.integer(preset, "Optics", "SpotIndex"),
        binning=doc.integer(camera, "Binning", "x"),
        camera=doc.text(camera, "Name"),
        extra=extra,
    )


def _preset(doc: Document, sample: Element | None, preset: str) -> Element | None:
    """``MicroscopeSettings`` entry for one preset (Atlas, GridSquare, Hole, Acquisition …)."""
    settings = doc.child(doc.child(sample, "MicroscopeSettings"), "KeyValuePairs")
    for pair in doc.children(settings, "KeyValuePairOfExperimentSettingsId"):
        if doc.text(pair, "key") == preset:
            return doc.child(pair, "value")
    return None


def _fractions(doc: Document, camera_inputs: dict[str, Element]) -> int | None:
    settings = camera_inputs.get("FractionationSettings")
    for name in ("NumberOffractions", "NumberOfFractions"):
        value = doc.integer(settings, name)
        if value is not None:
            return value
    return None


# -- MicroscopeImage XML -------------------------------------------------------------------------


def parse_image_xml(data: bytes, name: str | None = None, *,
                    source: str | None = None) -> ImageRecord:
    """A ``MicroscopeImage`` XML (grid square, foil hole, data acquisition, atlas image).

    ``name`` is the record's name, usually the file's base name; without it the XML's own
    ``name`` element is used (EPU writes "Empty" there).
    """
    doc = load(data, source or "EPU image XML", "MicroscopeImage", "EPU image metadata XML")
    root = doc.root
    scope = doc.require(root, "microscopeData")
    acquisition = doc.child(scope, "acquisition")
    camera = doc.child(acquisition, "camera")
    optics = doc.child(scope, "optics")
    custom = doc.key_values(doc.child(root, "CustomData"))
    camera_inputs = doc.key_values(doc.child(camera, "CameraSpecificInput"))
    camera_name = doc.text(camera, "Name") or doc.text(custom.get("BinaryResult.Detector"))

    def custom_number(key: str) -> float | None:
        return doc.number(custom.get(key), what=f"CustomData[{key}]")

    def custom_boolean(key: str) -> bool | None:
        return doc.boolean(custom.get(key), what=f"CustomData[{key}]")

    detector = doc.text(custom.get("DetectorCommercialName"))
    if detector is None and camera_name is not None:
        detector = doc.text(custom.get(f"Detectors[{camera_name}].CommercialName"))
    counting = None
    if camera_name is not None:
        counting = custom_boolean(f"Detectors[{camera_name}].ElectronCounted")
    if counting is None:
        counting = doc.boolean(camera_inputs.get("ElectronCountingEnabled"),
                               what="CameraSpecificInput[ElectronCountingEnabled]")

    pixel = doc.find(root, "SpatialScale", "pixelSize", "x")
    unit = doc.text(pixel, "unit", "_x003C_Symbol_x003E_k__BackingField")
    if unit is not None and unit != "m":
        raise IngestFormatError(f"{doc.label}: pixel size unit {unit!r} is not metres")
    pixel_size = _scaled(doc.number(pixel, "numericValue"), METRE_TO_ANGSTROM)

    dose = _scaled(custom_number("Dose"), PER_SQUARE_METRE_TO_PER_SQUARE_ANGSTROM)
    fractions = _fractions(doc, camera_inputs)
    target = _underfocus_angstrom(custom_number("AppliedDefocus"))
    slit_inserted = doc.boolean(optics, "EnergyFilter", "EnergySelectionSlitInserted")
    hole = custom.get("FindFoilHoleCenterResults")
    voltage = doc.number(scope, "gun", "AccelerationVoltage")
    unique_id = doc.text(root, "uniqueID")
    extra = _scalars(doc, custom)
    extra.update(_scalars(doc, camera_inputs, prefix="camera."))
    return ImageRecord(
        name=name or doc.text(root, "name") or unique_id or "",
        acquired_at=doc.timestamp(acquisition, "acquisitionDateTime"),
        pixel_size_angstrom=pixel_size,
        width_px=doc.integer(camera, "ReadoutArea", "width"),
        height_px=doc.integer(camera, "ReadoutArea", "height"),
        stage=_stage(doc, doc.find(scope, "stage", "Position")),
        image_shift_x=doc.number(optics, "ImageShift", "_x"),
        image_shift_y=doc.number(optics, "ImageShift", "_y"),
        defocus_target_angstrom=target,
        applied_defocus_angstrom=target,
        dose_e_per_angstrom2=dose,
        exposure_time_s=doc.number(camera, "ExposureTime"),
        number_of_fractions=fractions,
        magnification=doc.number(optics, "TemMagnification", "NominalMagnification"),
        voltage_kv=_scaled(voltage, 1e-3),
        microscope=doc.text(scope, "instrument", "InstrumentModel"),
        detector=detector,
        phase_plate=custom_boolean("PhasePlateUsed"),
        extra=extra,
        unique_id=unique_id,
        software=doc.text(scope, "core", "ApplicationSoftware"),
        software_version=doc.text(scope, "core", "ApplicationSoftwareVersion"),
        instrument_id=doc.text(scope, "instrument", "InstrumentID"),
        camera=camera_name,
        binning=doc.integer(camera, "Binning", "x"),
        dose_per_fraction_e_per_angstrom2=(
            _clean(dose / fractions) if dose is not None and fractions else None),
        electron_counting=counting,
        super_resolution_factor=doc.integer(
            camera_inputs.get("SuperResolutionFactor"),
            what="CameraSpecificInput[SuperResolutionFactor]"),
        beam_shift_x=doc.number(optics, "BeamShift", "_x"),
        beam_shift_y=doc.number(optics, "BeamShift", "_y"),
        objective_defocus_readout_angstrom=_underfocus_angstrom(doc.number(optics, "Defocus")),
        spot_size=doc.integer(optics, "SpotIndex"),
        energy_filter_slit_width_ev=(
            doc.number(optics, "EnergyFilter", "EnergySelectionSlitWidth")
            if slit_inserted else None),
        foil_hole_x_px=doc.number(hole, "Center", "x"),
        foil_hole_y_px=doc.number(hole, "Center", "y"),
        foil_hole_diameter_px=doc.number(hole, "Size", "width"),
    )


# -- Atlas.dm ------------------------------------------------------------------------------------


def parse_atlas(data: bytes, *, source: str | None = None) -> AtlasRecord:
    """``Atlas.dm`` → the atlas, its tiles and the grid squares EPU found on it.

    The file does not state the atlas image's pixel size; it is estimated from the grid
    squares: the least-squares affine map from their centres in the atlas (px) to their stage
    positions (m), scale = √|det|. It needs three squares that are not on one line; else None.
    The atlas image XML (``Atlas_<id>.xml``) gives the exact value where EPU wrote one.
    """
    doc = load(data, source or "Atlas.dm", "AtlasSessionXml", "EPU atlas file")
    root = doc.root
    atlas = doc.require(root, "Atlas")
    tiles: dict[str, AtlasTile] = {}
    squares: dict[str, AtlasGridSquare] = {}
    for tile in doc.descendants(atlas, "TileXml"):
        tile_id = doc.text(tile, "Id")
        if tile_id is None:
            raise IngestFormatError(f"{doc.label}: an atlas tile has no Id")
        place = doc.child(tile, "AtlasPixelPosition")
        tiles.setdefault(tile_id, AtlasTile(
            tile_id=tile_id,
            name=doc.text(tile, "TileImageReference", "BaseFileName"),
            x_px=doc.number(place, "x"), y_px=doc.number(place, "y"),
            width_px=doc.number(place, "width"), height_px=doc.number(place, "height"),
            stage=_stage(doc, doc.child(tile, "StagePosition")),
        ))
        for pair in doc.descendants(doc.child(tile, "Nodes"), "KeyValuePairOfintNodeXml"):
            square_id = doc.text(pair, "key")
            node = doc.child(pair, "value")
            if square_id is None:
                raise IngestFormatError(f"{doc.label}: a grid square of tile {tile_id} has no key")
            if node is None or square_id in squares:
                continue
            where = doc.child(node, "PositionOnTheAtlas")
            category = doc.text(node, "Category")
            squares[square_id] = AtlasGridSquare(
                grid_square_id=square_id,
                x_px=doc.number(where, "Center", "x"),
                y_px=doc.number(where, "Center", "y"),
                stage=_stage(doc, doc.child(node, "StagePosition")),
                state=doc.text(node, "State"),
                category=int(category) if category is not None and category.isdigit() else None,
                width_px=doc.number(where, "Size", "width"),
                height_px=doc.number(where, "Size", "height"),
                aligned_stage=_stage(doc, doc.child(node, "AlignedStagePosition")),
            )
    description = doc.text(root, "Description")
    folder = doc.text(root, "StorageFolder")
    image_name = doc.text(atlas, "AtlasImageReference", "BaseFileName")
    atlas_id = doc.text(root, "Id") or doc.text(atlas, "Id")
    name = (doc.text(root, "Name") or doc.text(atlas, "Name") or image_name
            or (f"Atlas {atlas_id}" if atlas_id else "Atlas"))
    return AtlasRecord(
        name=name,
        acquired_at=doc.timestamp(atlas, "AcquisitionDateTime"),
        pixel_size_angstrom=_atlas_pixel_size_angstrom(tuple(squares.values())),
        width_px=None,
        height_px=None,
        grid_squares=tuple(squares.values()),
        atlas_id=atlas_id,
        started_at=doc.timestamp(root, "StartDateTime"),
        description=description,
        cassette_slot=_cassette_slot(description, folder),
        storage_folder=folder,
        image_name=image_name,
        image_file_format=doc.text(atlas, "AtlasImageReference", "FileFormat"),
        software_version=assembly_version(root),
        tiles=tuple(tiles.values()),
    )


def _cassette_slot(description: str | None, folder: str | None) -> int | None:
    match = _SLOT_IN_DESCRIPTION.search(description or "") or _SLOT_IN_FOLDER.search(folder or "")
    return int(match.group(1)) if match else None


def _atlas_pixel_size_angstrom(squares: tuple[AtlasGridSquare, ...]) -> float | None:
    points = [(s.x_px, s.y_px, s.stage.x_um, s.stage.y_um) for s in squares]
    usable = np.array([p for p in points if None not in p], dtype=float)
    if len(usable) < 3:
        return None
    design = np.column_stack([usable[:, 0], usable[:, 1], np.ones(len(usable))])
    if np.linalg.matrix_rank(design) < 3:
        return None
    coefficients, *_ = np.linalg.lstsq(design, usable[:, 2:4], rcond=None)
    scale_um = math.sqrt(abs(float(np.linalg.det(coefficients[:2].T))))
    return _clean(scale_um * 1e4) if scale_um > 0 else None


# -- Metadata/GridSquare_<id>.dm -----------------------------------------------------------------


def parse_grid_square_metadata(data: bytes, *, source: str | None = None) -> GridSquareTargets:
    """``Metadata/GridSquare_<id>.dm`` → the square and its foil-hole targets (a square never
    visited has none)."""
    doc = load(data, source or "GridSquare .dm", "GridSquareXml",
               "EPU grid-square metadata file")
    root = doc.root
    square_id = doc.text(root, "Id")
    if square_id is None:
        raise IngestFormatError(f"{doc.label}: missing Id (the grid-square id)")
    holes: dict[str, FoilHoleTarget] = {}
    locations = doc.child(root, "TargetLocations")
    for pair in doc.descendants(locations, "KeyValuePairOfintTargetLocationXml"):
        hole_id = doc.text(pair, "key")
        if hole_id is None:
            raise IngestFormatError(f"{doc.label}: a foil-hole target has no key (its id)")
        target = doc.child(pair, "value")
        if target is None or hole_id in holes:
            continue
        acquisitions = doc.child(target, "ParticleAcquisitions")
        holes[hole_id] = FoilHoleTarget(
            foil_hole_id=hole_id,
            x_px=doc.number(target, "PixelCenter", "x"),
            y_px=doc.number(target, "PixelCenter", "y"),
            diameter_px=doc.number(target, "PixelWidthHeight", "width"),
            selected=doc.boolean(target, "Selected"),
            stage=_stage(doc, doc.child(target, "StagePosition")),
            state=doc.text(target, "State"),
            is_near_grid_bar=doc.boolean(target, "IsNearGridBar"),
            quality=doc.number(target, "Quality"),
            image_name=doc.text(target, "Image", "BaseFileName"),
            acquisition_names=tuple(
                base for item in doc.descendants(
                    acquisitions, "KeyValuePairOfintParticleAcquisitionDataXml")
                if (base := doc.text(item, "value", "Image", "BaseFileName")) is not None),
        )
    return GridSquareTargets(
        grid_square_id=square_id,
        foil_holes=tuple(holes.values()),
        state=doc.text(root, "State"),
        selected=doc.boolean(root, "Selected"),
        unusable=doc.boolean(root, "Unusable"),
        stage=_stage(doc, doc.child(root, "Position")),
        atlas_node_id=doc.text(root, "AtlasNodeId"),
        image_name=doc.text(root, "Image", "BaseFileName"),
        image_file_format=doc.text(root, "Image", "FileFormat"),
        hole_spacing_um=_scaled(doc.number(root, "HoleSpacing"), METRE_TO_MICROMETRE),
        order=doc.integer(root, "Order"),
    )

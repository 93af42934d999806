"""`EpuSession.dm`: the session file EPU writes at the start and rewrites as it goes.

Root `EpuSessionXml` (namespace `Applications.Epu.Persistence`, `z:Assembly` naming the EPU
version) with the members a reader needs, nested as in EPU 3.9.1: `Id` (Common.Types),
`AutoloaderSlot`, `ClusteringMode`, `DoseFractionsOutputFormat` (nil when no movies are saved),
`ImageFileFormat`, `Name`, `Samples/_items/SampleXml/{AtlasId (Windows path of the Atlas.dm),
FilterHolesSettings/{HoleSize, HoleSpacing}, GridGeometry, GridSquares/m_serializationArray/
KeyValuePairOfintSerializedReferenceOfGridSquareXml_…/{key, value/FileName}, GridType,
MicroscopeSettings/KeyValuePairs/KeyValuePairOfExperimentSettingsIdMicroscopeSettings…/
{key (Atlas, GridSquare, Hole, Acquisition), value/{b:Acquisition/…camera…, b:Optics}},
StartDateTime, TargetAreaTemplate/DataAcquisitionAreas/m_serializationArray/
KeyValuePairOfintDataAcquisitionAreaXml…/{key, value/{Id, ImageAcquisitionSettingXml/{Id,
Defocus/double…, ExposureTime}, ShiftInPixels}}}`, `StartDateTime`, `StorageFolders/_items/
StorageFolderXml/{DiscId, Path}`.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryovault.ingest.simulator.datacontract import (
    ARRAYS,
    COMMON_TYPES,
    DRAWING,
    EPU_PERSISTENCE,
    GENERIC,
    SERVICES,
    SHARED_OBJECTS,
    SYSTEM,
    Node,
    el,
    nil,
    to_xml,
)
from cryovault.ingest.simulator.epu_plan import (
    FOIL_HOLE_PIXEL_M,
    HOLE_DIAMETER_M,
    HOLE_PITCH_M,
    AcquisitionArea,
)
from cryovault.ingest.simulator.microscope_image import (
    EPU_VERSION,
    ImageSettings,
    Instrument,
    camera_node,
    dotnet_time,
    optics_node,
)

_DICTIONARY_TYPE = ("System.Collections.Generic.Dictionary`2[[System.String, mscorlib, "
                    "Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089],"
                    "[System.Object, mscorlib, Version=4.0.0.0, Culture=neutral, "
                    "PublicKeyToken=b77a5c561934e089]]")


@dataclass(frozen=True)
class SessionDescription:
    """What the session file says."""

    session_id: int
    sample_id: int
    template_id: int
    name: str
    started_at: datetime
    autoloader_slot: int
    atlas_path_windows: str
    storage_root_windows: str
    image_file_format: str  # "Mrc"
    dose_fractions_format: str | None  # None: no movies saved
    grid_square_ids: tuple[int, ...]
    areas: tuple[AcquisitionArea, ...]
    defocus_list_m: tuple[float, ...]
    exposure_time_s: float
    presets: tuple[tuple[str, ImageSettings], ...]  # Atlas, GridSquare, Hole, Acquisition
    instrument: Instrument
    ended_at: datetime | None = None


def _common_id(value: int) -> Node:
    return el("Id", value, ns=COMMON_TYPES)


def _preset(key: str, settings: ImageSettings, instrument: Instrument) -> Node:
    """One MicroscopeSettings entry: the acquisition and optics of a preset."""
    acquisition = el("Acquisition", None,
                     el("acquisitionDateTime", dotnet_time(settings.acquired_at),
                        ns=SHARED_OBJECTS, prefix="c"),
                     el("analyticalDetectors", None,
                        el("_items", None, ns=SHARED_OBJECTS, prefix="c",
                           attrs=[("z:Size", "0")]),
                        el("_size", 0, ns=SHARED_OBJECTS, prefix="c"),
                        el("_version", 0, ns=SHARED_OBJECTS, prefix="c"),
                        ns=SHARED_OBJECTS, prefix="c", ref_id=True),
                     camera_node(settings, instrument, prefix="c", dictionary=True),
                     ns=SERVICES, prefix="b", declare={"c": SHARED_OBJECTS}, ref_id=True)
    value = el("value", None, acquisition,
               el("DisplayName", key, ns=SERVICES, prefix="b"),
               optics_node(settings, prefix="c", name="Optics"), ns=GENERIC,
               declare={"b": SERVICES, "c": SHARED_OBJECTS}, ref_id=True)
    # Optics lives in the Services namespace with Fei.SharedObjects members
    optics = value.children[-1]
    optics.ns, optics.prefix = SERVICES, "b"
    return el("KeyValuePairOfExperimentSettingsIdMicroscopeSettingsCG2rZ1D8", None,
              el("key", key), value, ns=GENERIC)


def _area(area: AcquisitionArea, defocus_list_m: tuple[float, ...],
          exposure_time_s: float) -> Node:
    defocus = el("Defocus", None, *[el("double", value, ns=ARRAYS, prefix="a")
                                    for value in defocus_list_m],
                 attrs=[("z:Type", "System.Double[]"), ("z:Assembly", "0"),
                        ("z:Size", str(len(defocus_list_m)))], ref_id=True)
    value = el("value", None, _common_id(area.area_id),
               el("ImageAcquisitionSettingXml", None, _common_id(area.setting_id), defocus,
                  el("ExposureTime", exposure_time_s, ns=EPU_PERSISTENCE),
                  ns=EPU_PERSISTENCE, ref_id=True),
               el("ShiftInPixels", None,
                  el("height", area.shift_y_px, ns=DRAWING, prefix="c"),
                  el("width", area.shift_x_px, ns=DRAWING, prefix="c"),
                  ns=EPU_PERSISTENCE, declare={"c": DRAWING}),
               ns=GENERIC, prefix="b", ref_id=True)
    return el("KeyValuePairOfintDataAcquisitionAreaXmlBpEWF4JT", None,
              el("key", area.area_id, ns=GENERIC, prefix="b"), value, ns=GENERIC, prefix="b")


def epu_session_xml(session: SessionDescription) -> bytes:
    """The whole EpuSession.dm document."""
    grid_squares = el("m_serializationArray", None, ns=ARRAYS, prefix="a",
                      declare={"b": GENERIC},
                      attrs=[("z:Size", str(len(session.grid_square_ids)))], ref_id=True)
    for grid_square_id in session.grid_square_ids:
        grid_squares.add(el(
            "KeyValuePairOfintSerializedReferenceOfGridSquareXml_PsqDC3X0m6koiAE_P", None,
            el("key", grid_square_id, ns=GENERIC, prefix="b"),
            el("value", None, el("FileName", f"Metadata\\GridSquare_{grid_square_id}.dm",
                                 ns=COMMON_TYPES, prefix="c", ref_id=True),
               ns=GENERIC, prefix="b", declare={"c": COMMON_TYPES}, ref_id=True),
            ns=GENERIC, prefix="b"))
    presets = el("KeyValuePairs", None, ns="", ref_id=True,
                 attrs=[("z:Size", str(len(session.presets)))])
    presets.extend(_preset(key, settings, session.instrument)
                   for key, settings in session.presets)
    areas = el("m_serializationArray", None, ns=ARRAYS, prefix="a", declare={"b": GENERIC},
               attrs=[("z:Size", str(len(session.areas)))], ref_id=True)
    areas.extend(_area(area, session.defocus_list_m, session.exposure_time_s)
                 for area in session.areas)
    sample = el(
        "SampleXml", None, _common_id(session.sample_id),
        el("AlignmentTimeStamp", dotnet_time(session.started_at)),
        el("AllowDarkFoilHolesOnGridSquareMagnification", False),
        el("AtlasId", session.atlas_path_windows, ref_id=True),
        el("EndDateTime", dotnet_time(session.ended_at)) if session.ended_at
        else nil("EndDateTime"),
        el("FilterHolesSettings", None, _common_id(session.sample_id + 1),
           el("I0", 0), el("IsCalibrated", False), el("MaximumIntensity", 726.8),
           el("MinimumIntensity", 509.3), nil("ReferenceBeamCurrent"),
           el("SmartIceThicknessMaximumIntensity", 0),
           el("SmartIceThicknessMinimumIntensity", 0),
           el("HoleSize", HOLE_DIAMETER_M), el("HoleSpacing", HOLE_PITCH_M),
           el("Rotation", 0), ref_id=True),
        el("GridGeometry", "Square"),
        el("GridSquares", None,
           el("m_comparer", None, ns=ARRAYS, prefix="a", ref_id=True,
              attrs=[("z:Type", "System.Collections.Generic.GenericEqualityComparer`1"
                      "[[System.Int32, mscorlib]]"), ("z:Assembly", "0")]),
           el("m_keyRehashCount", 0, ns=ARRAYS, prefix="a"), grid_squares,
           el("m_serializationCapacity", max(31, len(session.grid_square_ids) * 2 + 1),
              ns=ARRAYS, prefix="a"),
           el("m_serializationConcurrencyLevel", 16, ns=ARRAYS, prefix="a"),
           declare={"a": ARRAYS}, ref_id=True),
        el("GridType", "HoleyCarbon"),
        el("IsSmartGridSquareCategorizationApplied", False),
        el("MicroscopeSettings", None,
           el("Version", len(session.presets), ns="", ref_id=True,
              attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
           el("HashSize", 17, ns="", ref_id=True,
              attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
           presets, declare={"a": ARRAYS}, ref_id=True,
           attrs=[("z:Type", "System.Collections.Generic.Dictionary`2"), ("z:Assembly", "0")]),
        nil("SpecimenCarrierKind"),
        el("StartDateTime", dotnet_time(session.started_at)),
        el("TargetAreaTemplate", None, _common_id(session.template_id),
           el("AutoplaceAutofocus", False),
           el("DataAcquisitionAreas", None,
              el("m_keyRehashCount", 0, ns=ARRAYS, prefix="a"), areas,
              el("m_serializationCapacity", 31, ns=ARRAYS, prefix="a"),
              el("m_serializationConcurrencyLevel", 12, ns=ARRAYS, prefix="a"),
              declare={"a": ARRAYS}, ref_id=True),
           el("DelayAfterImageShift", 0.5), el("DelayAfterStageShift", 5),
           nil("DriftStabilizationArea"), el("MaximumImageShift", 5e-06),
           el("TemplateImagePixelSize", None,
              el("height", FOIL_HOLE_PIXEL_M, ns=DRAWING, prefix="a"),
              el("width", FOIL_HOLE_PIXEL_M, ns=DRAWING, prefix="a"),
              declare={"a": DRAWING}),
           ref_id=True),
        ref_id=True)
    samples = el("Samples", None,
                 el("_items", None, sample, nil("SampleXml"), nil("SampleXml"),
                    nil("SampleXml"), attrs=[("z:Size", "4")], ref_id=True),
                 el("_size", 1), el("_version", 1), ref_id=True)
    storage = el("StorageFolders", None,
                 el("_items", None,
                    el("StorageFolderXml", None, _common_id(session.session_id + 1),
                       el("DiscId", 1), el("Path", session.storage_root_windows, ref_id=True),
                       nil("SessionName"), ref_id=True),
                    nil("StorageFolderXml"), nil("StorageFolderXml"), nil("StorageFolderXml"),
                    attrs=[("z:Size", "4")], ref_id=True),
                 el("_size", 1), el("_version", 1), ref_id=True)
    fractions = (el("DoseFractionsOutputFormat", session.dose_fractions_format, ref_id=True)
                 if session.dose_fractions_format else nil("DoseFractionsOutputFormat"))
    root = el(
        "EpuSessionXml", None, _common_id(session.session_id),
        el("AutoFocusEnabled", False), el("AutoStageTimeEnabled", False),
        el("AutoZeroLossEnabled", False), el("AutoZeroLossPeriodicity", "PT1H"),
        el("AutoloaderDescription", None, ref_id=True),
        el("AutoloaderSlot", session.autoloader_slot),
        el("ClusteringMode", "ClusteringWithImageBeamShift"),
        el("ClusteringRadius", 1.2e-05), fractions,
        el("EmailNotificationEnabled", False), el("EnableSmartHoleSelection", False),
        el("IceThicknessEnabled", False), el("ImageFileFormat", session.image_file_format),
        el("IsManuallySelected", True), el("IsSmartFilterGridSquareDecisionKnown", False),
        nil("MicroscopeName"), el("Name", session.name, ref_id=True),
        nil("NumberOfTargetLocationsToSelect"), el("PhasePlateAccelerateEnabled", False),
        el("PhasePlateActivationTime", "PT20S"), el("PhasePlateEnabled", False),
        el("PhasePlatePeriodicity", 50), nil("RecipientsEmailList"),
        el("RemoveHolesCloseToGridBarOnAutomaticRun", True), samples,
        el("SkipGridSquareEnabled", False), el("SmartFoilHoleFindingEnabled", False),
        el("SmartGridSquareEnabled", False),
        el("StartDateTime", session.started_at.strftime("%Y-%m-%dT%H:%M:%S.%f") + "0Z"),
        storage, el("TiltAngle", 0), el("TiltedAcquisitionEnabled", False),
        el("Version", None, el("_Build", 0, ns=SYSTEM, prefix="a"),
           el("_Major", 3, ns=SYSTEM, prefix="a"), el("_Minor", 0, ns=SYSTEM, prefix="a"),
           el("_Revision", 0, ns=SYSTEM, prefix="a"), declare={"a": SYSTEM}, ref_id=True),
        attrs=[("z:Type", "Applications.Epu.Persistence.EpuSessionXml"),
               ("z:Assembly", f"Applications.Epu.Persistence, Version={EPU_VERSION}, "
                "Culture=neutral, PublicKeyToken=null")],
        ref_id=True)
    return to_xml(root, root_ns=EPU_PERSISTENCE)

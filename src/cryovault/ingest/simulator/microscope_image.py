"""EPU image metadata: the `MicroscopeImage` XML beside every EPU image.

One schema for the atlas, grid-square, foil-hole and data-acquisition images (FORMATS.md §1.7),
written member for member as EPU 3.9 writes it: root `MicroscopeImage` in the
`Fei.SharedObjects` namespace; `CustomData` (Arrays `KeyValueOfstringanyType`: Dose in e⁻/m²,
AppliedDefocus in m, DetectorCommercialName, FindFoilHoleCenterResults …);
`SpatialScale/pixelSize/{x,y}/numericValue` (m); `microscopeData/{acquisition/
{acquisitionDateTime, camera/{Binning, CameraSpecificInput (FractionationSettings/
NumberOffractions), ExposureTime, Name, ReadoutArea}}, core, gun/AccelerationVoltage (V),
instrument, optics/{BeamShift, Defocus, ImageShift, TemMagnification …}, stage/Position/
{A,B,X,Y,Z} (rad, m)}`.

`camera_node` and `optics_node` are shared with the EpuSession.dm presets, which serialise the
same objects.
"""

from __future__ import annotations

import math
import uuid
from dataclasses import dataclass, field
from datetime import datetime

from cryovault.ingest.simulator.datacontract import (
    ARRAYS,
    DRAWING,
    FEI_TYPES,
    GENERIC,
    MEDIA,
    OMP,
    SHARED_OBJECTS,
    Node,
    el,
    key_value_any,
    key_value_node,
    nil,
    to_xml,
    unit_metre,
    vector,
)

EPU_VERSION = "3.9.1.8206"


def dotnet_time(moment: datetime) -> str:
    """ISO 8601 with 7 fractional digits and the offset, as EPU writes times."""
    text = moment.isoformat(timespec="microseconds")
    head, _, offset = text.partition("+")
    return f"{head}0+{offset or '00:00'}"


@dataclass(frozen=True)
class Instrument:
    """The microscope and camera the simulated data come from."""

    model: str = "TITAN52330001"
    instrument_id: str = "3300"
    voltage_v: float = 300000.0
    camera_name: str = "EF-CCD"  # EPU's camera id ("BM-Falcon" for a Falcon)
    commercial_name: str = "BioQuantum K3"
    camera_location: str = "EnergyFilter"
    electron_counted: bool = True


K3 = Instrument()
FALCON = Instrument(camera_name="BM-Falcon", commercial_name="Falcon 4i",
                    camera_location="BottomMounted")


@dataclass(frozen=True)
class FoilHoleFinding:
    """EPU's `FindFoilHoleCenterResults` (foil-hole images): centre and size in px."""

    center_x_px: float
    center_y_px: float
    diameter_px: float
    quality: float = 0.85


@dataclass(frozen=True)
class ImageSettings:
    """Everything that varies between the image kinds and from one image to the next."""

    acquired_at: datetime
    pixel_size_m: float
    width_px: int
    height_px: int
    exposure_time_s: float
    dose_e_per_m2: float
    applied_defocus_m: float
    objective_defocus_m: float
    nominal_magnification: int
    stage_m_rad: tuple[float, float, float, float, float]  # X, Y, Z (m), A, B (rad)
    number_of_fractions: int | None = None
    image_shift: tuple[float, float] = (0.0, 0.0)
    beam_shift: tuple[float, float] = (0.0, 0.0)
    beam_diameter_m: float = 8.3e-07
    low_magnification: bool = False  # LM objective lens mode, MicroProbe (atlas, square)
    slit_inserted: bool = True
    rotation_rad: float = 0.0  # image x axis against the stage x axis
    foil_hole: FoilHoleFinding | None = None
    unique_id: str = field(default_factory=lambda: str(uuid.uuid4()))

    @property
    def dose_on_camera(self) -> float:
        """e⁻ per pixel of this image (Dose × pixel size², as EPU's DoseOnCamera)."""
        return self.dose_e_per_m2 * self.pixel_size_m ** 2


def _camera_inputs(settings: ImageSettings, instrument: Instrument
                   ) -> list[tuple[str, object, str]]:
    """CameraSpecificInput entries: (key, value, .NET type); FractionationSettings' value is
    the number of fractions (None: not fractionated)."""
    return [("AlignIntegratedImageEnabled", False, "Boolean"),
            ("SuperResolutionFactor", 1, "Int64"),
            ("FractionationSettings", settings.number_of_fractions, "EquidistantFractionation"),
            ("ElectronCountingEnabled", instrument.electron_counted, "Boolean"),
            ("ApplyDefinedShutter", True, "Boolean"), ("CetaFramesSummed", 1, "Int64"),
            ("CetaNoiseReductionEnabled", False, "Boolean"), ("FixedReadoutArea", "Full", "String")]


_XSD_TYPES = {"Boolean": "boolean", "Int64": "long", "String": "string"}


def _camera_specific_arrays(settings: ImageSettings, instrument: Instrument,
                            prefix: str | None, ns: object) -> Node:
    """The image XML layout: Arrays `KeyValueOfstringanyType/{Key, Value i:type}`."""
    specific = el("CameraSpecificInput", None, ns=ns, prefix=prefix, declare={"a": ARRAYS})
    for key, value, kind in _camera_inputs(settings, instrument):
        if key != "FractionationSettings":
            specific.add(key_value_any(key, value, _XSD_TYPES[kind]))
        elif value is None:
            specific.add(key_value_any(key, None, ""))
        else:
            specific.add(key_value_node(key, el(
                "Value", None, el("NumberOffractions", value, ns=OMP, prefix="b"), ns=ARRAYS,
                prefix="a", attrs=[("i:type", "b:EquidistantFractionation")],
                declare={"b": OMP})))
    return specific


def _camera_specific_dictionary(settings: ImageSettings, instrument: Instrument,
                                prefix: str | None, ns: object) -> Node:
    """The .dm layout: a serialised Dictionary, `KeyValuePairs/KeyValuePairOfstringanyType/
    {key, value z:Type}`."""
    entries = _camera_inputs(settings, instrument)
    pairs = el("KeyValuePairs", None, ns="", ref_id=True,
               attrs=[("z:Type", "System.Collections.Generic.KeyValuePair`2[]"),
                      ("z:Assembly", "0"), ("z:Size", str(len(entries)))])
    for key, value, kind in entries:
        if key != "FractionationSettings":
            item = el("value", value, ref_id=True,
                      attrs=[("z:Type", f"System.{kind}"), ("z:Assembly", "0")])
        elif value is None:
            item = nil("value")
        else:
            item = el("value", None, el("NumberOffractions", value, ns=OMP), ref_id=True,
                      attrs=[("z:Type", "Fei.Applications.Common.Omp.Interface."
                              "EquidistantFractionation"),
                             ("z:Assembly", "Fei.Applications.Common.Omp.Interface, "
                              "Version=28.2.8.2269, Culture=neutral, PublicKeyToken=null")])
        pairs.add(el("KeyValuePairOfstringanyType", None, el("key", key, ref_id=True), item,
                     ns=GENERIC))
    return el("CameraSpecificInput", None,
              el("Version", len(entries), ns="", ref_id=True,
                 attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
              el("HashSize", 17, ns="", ref_id=True,
                 attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
              pairs, ns=ns, prefix=prefix, ref_id=True,
              attrs=[("z:Type", "System.Collections.Generic.Dictionary`2[[System.String, "
                      "mscorlib],[System.Object, mscorlib]]"), ("z:Assembly", "0")])


def camera_node(settings: ImageSettings, instrument: Instrument, *, prefix: str | None = None,
                ns: object = SHARED_OBJECTS, dictionary: bool = False) -> Node:
    """`camera`: binning 1 (counting, no super-resolution), exposure, readout area.
    `dictionary`: CameraSpecificInput as the .dm files serialise it (else as image XML)."""
    specific = (_camera_specific_dictionary if dictionary else _camera_specific_arrays)(
        settings, instrument, prefix, ns)

    def m(name: str, value: object = None, *children: Node | None) -> Node:
        return el(name, value, *children, ns=ns, prefix=prefix)

    binning = el("Binning", None, el("x", 1, ns=DRAWING, prefix="a"),
                 el("y", 1, ns=DRAWING, prefix="a"), ns=ns, prefix=prefix,
                 declare={"a": DRAWING})
    readout = el("ReadoutArea", None, el("height", settings.height_px, ns=DRAWING, prefix="a"),
                 el("width", settings.width_px, ns=DRAWING, prefix="a"),
                 el("x", 0, ns=DRAWING, prefix="a"), el("y", 0, ns=DRAWING, prefix="a"),
                 ns=ns, prefix=prefix, declare={"a": DRAWING})
    return m("camera", None, binning, m("CameraLocation", instrument.camera_location), specific,
             m("DarkGainCorrection", "None"), m("ExposureTime", settings.exposure_time_s),
             m("FixedReadoutArea", "Full"), m("Inserted", True),
             m("Name", instrument.camera_name), m("PreExposurePauseTime", 0),
             m("PreExposureSupported", False), m("PreExposureTime", 0), readout,
             m("Shutter", "PreSpecimen"))


def optics_node(settings: ImageSettings, *, prefix: str | None = None,
                ns: object = SHARED_OBJECTS, name: str = "optics") -> Node:
    """`optics`: defocus readout, shifts, magnification, spot, energy filter."""

    def m(member: str, value: object = None, *children: Node | None) -> Node:
        return el(member, value, *children, ns=ns, prefix=prefix)

    def vec(member: str, xy: tuple[float, float]) -> Node:
        return vector(member, xy[0], xy[1], ns=ns, outer_prefix=prefix)

    lm = settings.low_magnification
    energy_filter = m("EnergyFilter", None, m("AccelerationVoltageOffset", 0),
                      m("DriftTubeVoltage", 0),
                      m("EnergySelectionSlitInserted", settings.slit_inserted),
                      m("EnergySelectionSlitWidth", 20), m("EnergyShift", "-0"),
                      nil("EntranceApertureDiameter", ns=ns, prefix=prefix),
                      nil("EntranceApertureType", ns=ns, prefix=prefix))
    return m(name, None,
             nil("Apertures", ns=ns, prefix=prefix), nil("BeamConvergence", ns=ns, prefix=prefix),
             m("BeamDiameter", settings.beam_diameter_m), vec("BeamShift", settings.beam_shift),
             vec("BeamTilt", (0.011, -0.015)), m("Cameralength", 0),
             m("ColumnOperatingMode", "TEM"), m("ColumnOperatingTemSubMode", "BrightField"),
             vec("CondenserStigmator", (0.0, 0.0)), m("Defocus", settings.objective_defocus_m),
             m("DiffractionFocus", 0), vec("DiffractionShift", (0.0, 0.0)),
             vec("DiffractionStigmator", (0.0, 0.0)), m("EFTEMOn", True), energy_filter,
             m("Focus", settings.objective_defocus_m - 8.0e-05),
             el("GunStigmator", None, ns=ns, prefix=prefix, declare={"a": FEI_TYPES},
                attrs=[("i:nil", "true")]),
             m("IlluminationMode", "Parallel"), nil("IlluminationProbeSubMode", ns=ns,
                                                    prefix=prefix),
             vec("ImageShift", settings.image_shift), m("Intensity", 0),
             m("ObjectiveLensMode", "LM" if lm else "HM"),
             vec("ObjectiveStigmator", (0.0, 0.0)),
             m("ProbeMode", "MicroProbe" if lm else "NanoProbe"), m("ProjectorMode", "Imaging"),
             m("SpotIndex", 8 if lm else 5), m("StemDefocus", 0),
             nil("StemFieldOfView", ns=ns, prefix=prefix),
             nil("StemMagnification", ns=ns, prefix=prefix),
             m("TemMagnification", None, m("NominalMagnification",
                                           settings.nominal_magnification)),
             m("XLModeOn", False))


def microscope_image_xml(settings: ImageSettings, instrument: Instrument) -> bytes:
    """The complete `MicroscopeImage` document (one line, no declaration, like EPU)."""
    custom = el("CustomData", None, declare={"a": ARRAYS})
    dose_rate = settings.dose_on_camera / max(settings.exposure_time_s, 1e-9)
    custom.add(key_value_any("DoseOnCamera", float(settings.dose_on_camera), "double"),
               key_value_any("Aperture[C1].Name", "2000", "string"),
               key_value_any("Aperture[C2].Name", "50", "string"),
               key_value_any("Aperture[C3].Name", "None", "string"),
               key_value_any("Aperture[OBJ].Name", "None" if settings.low_magnification
                             else "100", "string"),
               key_value_any("Aperture[SA].Name", "None", "string"),
               key_value_any("StemMagnification", False, "boolean"),
               key_value_any(f"Detectors[{instrument.camera_name}].CommercialName",
                             instrument.commercial_name, "string"),
               key_value_any(f"Detectors[{instrument.camera_name}].ElectronCounted",
                             instrument.electron_counted, "boolean"),
               key_value_any("DoseRate", float(dose_rate), "double"),
               key_value_any("IlluminationIntensity", 0, "double"),
               key_value_any("Dose", float(settings.dose_e_per_m2), "double"),
               key_value_any("PhasePlateUsed", False, "boolean"),
               key_value_any("BinaryResult.Detector", instrument.camera_name, "string"),
               key_value_any("DetectorCommercialName", instrument.commercial_name, "string"))
    if settings.foil_hole is not None:
        hole = settings.foil_hole
        shape = el("Value", None,
                   el("Center", None, el("x", hole.center_x_px, ns=DRAWING, prefix="c"),
                      el("y", hole.center_y_px, ns=DRAWING, prefix="c"), ns=FEI_TYPES,
                      prefix="b", declare={"c": DRAWING}),
                   el("Quality", hole.quality, ns=FEI_TYPES, prefix="b"),
                   el("Rotation", -3.086187417975387, ns=FEI_TYPES, prefix="b"),
                   el("Shear", 0, ns=FEI_TYPES, prefix="b"),
                   el("Size", None, el("height", hole.diameter_px, ns=DRAWING, prefix="c"),
                      el("width", hole.diameter_px, ns=DRAWING, prefix="c"), ns=FEI_TYPES,
                      prefix="b", declare={"c": DRAWING}),
                   ns=ARRAYS, prefix="a", attrs=[("i:type", "b:Shape2D")],
                   declare={"b": FEI_TYPES})
        custom.add(key_value_node("FindFoilHoleCenterResults", shape))
    custom.add(key_value_any("AppliedDefocus", float(settings.applied_defocus_m), "double"))

    px = settings.pixel_size_m
    cos_r, sin_r = math.cos(settings.rotation_rad), math.sin(settings.rotation_rad)
    transform = el("ReferenceTransformation", None,
                   el("matrix", None,
                      el("_m11", -px * cos_r, ns=MEDIA, prefix="a"),
                      el("_m12", -px * sin_r, ns=MEDIA, prefix="a"),
                      el("_m21", -px * sin_r, ns=MEDIA, prefix="a"),
                      el("_m22", px * cos_r, ns=MEDIA, prefix="a"),
                      el("_offsetX", 0, ns=MEDIA, prefix="a"),
                      el("_offsetY", 0, ns=MEDIA, prefix="a"),
                      el("_padding", 0, ns=MEDIA, prefix="a"),
                      el("_type", "TRANSFORM_IS_UNKNOWN", ns=MEDIA, prefix="a"),
                      declare={"a": MEDIA}),
                   unit_metre())

    def scale_axis(name: str, value: float) -> Node:
        return el(name, None, el("numericValue", value), unit_metre())

    spatial = el("SpatialScale", None,
                 el("offset", None, scale_axis("x", 0.0), scale_axis("y", 0.0)),
                 el("pixelSize", None, scale_axis("x", px), scale_axis("y", px)))
    x, y, z, a, b = settings.stage_m_rad
    acquisition = el("acquisition", None,
                     el("acquisitionDateTime", dotnet_time(settings.acquired_at)),
                     el("analyticalDetectors"),
                     camera_node(settings, instrument),
                     el("plateCamera", None, el("ExposureTime", 0), el("Use", False)),
                     el("scanSettings", None, el("DwellTime", 0),
                        el("ReducedArea", None, declare={"a": DRAWING},
                           attrs=[("i:nil", "true")]),
                        el("Resolution", None, el("height", 0, ns=DRAWING, prefix="a"),
                           el("width", 0, ns=DRAWING, prefix="a"), declare={"a": DRAWING}),
                        el("ScanArea", None, el("height", 0, ns=DRAWING, prefix="a"),
                           el("width", 0, ns=DRAWING, prefix="a"),
                           el("x", 0, ns=DRAWING, prefix="a"),
                           el("y", 0, ns=DRAWING, prefix="a"), declare={"a": DRAWING}),
                        el("ScanRotation", 0)),
                     el("scanningDetector", None, el("DetectorType", "SecondaryElectrons"),
                        nil("Gain"), el("Inserted", False), nil("Name"), nil("Offset")))
    microscope = el("microscopeData", None, acquisition,
                    el("core", None, el("ApplicationSoftware", "EPU"),
                       el("ApplicationSoftwareVersion", EPU_VERSION),
                       el("Guid", str(uuid.uuid4()))),
                    el("gun", None, el("AccelerationVoltage", instrument.voltage_v),
                       el("ExtractorVoltage", 4250), nil("Filament"), el("GunLens", 4),
                       el("Sourcetype", "FieldEmission"), nil("WehneltBias")),
                    el("instrument", None, nil("AcquisitionSoftware"),
                       nil("AcquisitionSoftwareVersion"), el("ComputerName", instrument.model),
                       el("InstrumentID", instrument.instrument_id),
                       el("InstrumentModel", instrument.model)),
                    optics_node(settings),
                    el("sample", None, nil("Description"), nil("ID")),
                    el("stage", None, el("Holder", "Unspecified"),
                       el("Position", None, el("A", a), el("B", b), el("X", x), el("Y", y),
                          el("Z", z)),
                       el("SampleLoader", "None")),
                    el("vacuum", None, el("ProjectionChamberPressure", 0),
                       el("SamplePressure", 0), el("VacuumMode", "Ready")))
    root = el("MicroscopeImage", None, el("name", "Empty"),
              el("uniqueID", settings.unique_id), custom, nil("IntensityScale"), transform,
              spatial, microscope)
    return to_xml(root, root_ns=SHARED_OBJECTS)

"""`Metadata/GridSquare_<id>.dm`: a grid square and its foil-hole targets (GridSquareXml).

EPU writes one for every square of the session when the session starts (no image, no
targets yet), and rewrites a square's file when it finds its holes and again when it has
exposed them. Nested as in EPU 3.7/3.9 (FORMATS.md §1.6): root `GridSquareXml` (namespace
`Applications.Epu.Persistence`) → `Id`, `AtlasNodeId`, `GridSquareImagePath`, `GridSquareShape/
{center, max, min, vertices/PointF}`, `HoleSpacing`, `Image/{BaseFileName, FileFormat}`,
`ImageFolderName`, `Order`, `Position/{A,B,X,Y,Z}`, `Rotation`, `Selected`, `State`,
`TargetLocations/{Id, GridSquareId, TargetLocations (nil), TargetLocationsEfficient/
m_serializationArray/KeyValuePairOfintTargetLocationXmlBpEWF4JT/{key, value/{Id,
CorrectedStagePosition, FilterProperties, FoilHoleImagePath, GridSquareId, Image, IsNearGridBar,
ParticleAcquisitions/KeyValuePairs/KeyValuePairOfintParticleAcquisitionDataXmlBpEWF4JT/
value/{Id, DataAcquisitionAreaId, GridSquareId, Image/BaseFileName, ImageAcquisitionSettingId,
TargetLocationId}, PixelCenter/{x,y}, PixelWidthHeight/{height,width}, Selected, StagePosition,
State}}}`, `Unusable`.
"""

from __future__ import annotations

from dataclasses import dataclass

from cryovault.ingest.simulator.datacontract import (
    ARRAYS,
    COMMON_TYPES,
    DRAWING,
    EPU_PERSISTENCE,
    GENERIC,
    SHARED_TYPES,
    Node,
    el,
    nil,
    point,
    size,
    stage_position,
    to_xml,
)
from cryovault.ingest.simulator.epu_plan import (
    GRID_SQUARE_EDGE_PX,
    GRID_SQUARE_PIXEL_M,
    HOLE_PITCH_M,
    SQUARE_OPENING_M,
    STAGE_Z_M,
    Acquisition,
    FoilHole,
    SquareVisit,
)
from cryovault.ingest.simulator.microscope_image import EPU_VERSION


@dataclass(frozen=True)
class SquareFileContext:
    """What the file needs besides the visit: ids and where things live on Windows."""

    collection_id: int
    order: int
    image_folder_windows: str  # …\Images-Disc1\GridSquare_<id>


def _image_reference(name: str | None, prefix: str = "c") -> Node:
    if name is None:
        return nil("Image", declare={prefix: COMMON_TYPES})
    return el("Image", None, el("BaseFileName", name, ns=COMMON_TYPES, prefix=prefix,
                                ref_id=True),
              el("FileFormat", "Mrc", ns=COMMON_TYPES, prefix=prefix),
              declare={prefix: COMMON_TYPES}, ref_id=True)


def _particle_acquisition(acquisition: Acquisition) -> Node:
    value = el("value", None, el("Id", acquisition.particle_acquisition_id, ns=COMMON_TYPES),
               el("DataAcquisitionAreaId", acquisition.area.area_id, ns=EPU_PERSISTENCE,
                  prefix="c"),
               el("GridSquareId", acquisition.grid_square_id, ns=EPU_PERSISTENCE, prefix="c"),
               el("Image", None, el("BaseFileName", acquisition.name, ns=COMMON_TYPES,
                                    prefix="d", ref_id=True),
                  el("FileFormat", "Mrc", ns=COMMON_TYPES, prefix="d"), ns=EPU_PERSISTENCE,
                  prefix="c", declare={"d": COMMON_TYPES}, ref_id=True),
               el("ImageAcquisitionSettingId", acquisition.area.setting_id,
                  ns=EPU_PERSISTENCE, prefix="c"),
               el("ImageFolderName", "Images-Disc1", ns=EPU_PERSISTENCE, prefix="c",
                  ref_id=True),
               el("TargetLocationId", acquisition.foil_hole_id, ns=EPU_PERSISTENCE,
                  prefix="c"),
               ns=GENERIC, prefix="b", declare={"c": EPU_PERSISTENCE}, ref_id=True)
    return el("KeyValuePairOfintParticleAcquisitionDataXmlBpEWF4JT", None,
              el("key", acquisition.particle_acquisition_id, ns=GENERIC, prefix="b"), value,
              ns=GENERIC, prefix="b")


def _target(hole: FoilHole, visit: SquareVisit, context: SquareFileContext,
            order: int) -> Node:
    acquisitions = [a for a in visit.acquisitions if a.foil_hole_id == hole.foil_hole_id]
    chosen = any(h.foil_hole_id == hole.foil_hole_id for h in visit.chosen)
    image_name = visit.foil_hole_images.get(hole.foil_hole_id)
    state = "Completed" if acquisitions else ("Selected" if chosen else "Defined")
    pairs = el("KeyValuePairs", None, ns="", ref_id=True,
               attrs=[("z:Type", "System.Collections.Generic.KeyValuePair`2[]"),
                      ("z:Assembly", "0"), ("z:Size", str(len(acquisitions)))])
    pairs.extend(_particle_acquisition(a) for a in acquisitions)
    particle_acquisitions = el(
        "ParticleAcquisitions", None,
        el("Version", len(acquisitions), ns="", ref_id=True,
           attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
        el("HashSize", 7, ns="", ref_id=True,
           attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
        pairs, ref_id=True,
        attrs=[("z:Type", "System.Collections.Generic.Dictionary`2"), ("z:Assembly", "0")])
    image_path = (el("FoilHoleImagePath",
                     f"{context.image_folder_windows}\\FoilHoles\\{image_name}.jpg",
                     ref_id=True) if image_name else nil("FoilHoleImagePath"))
    intensity = 400.0 + 500.0 * hole.ice_transmission
    value = el("value", None, el("Id", hole.foil_hole_id, ns=COMMON_TYPES),
               nil("BeamShiftId"),
               stage_position("CorrectedStagePosition", 0.0, 0.0, 0.0, 0.0, 0.0),
               el("FilterProperties", None, el("PixelIntensityMean", intensity),
                  el("PixelIntensityStDev", 0.05 * intensity), ref_id=True),
               image_path, el("GridSquareId", visit.square.grid_square_id),
               _image_reference(image_name), el("ImageFolderName", "Images-Disc1", ref_id=True),
               el("IsNearGridBar", hole.near_grid_bar), el("IsPositionCorrected", False),
               el("IsPositionRefined", False), nil("IsRecommendedSelection"),
               el("Order", order), particle_acquisitions,
               point("PixelCenter", hole.x_px, hole.y_px, prefix="c"),
               size("PixelWidthHeight", hole.diameter_px, hole.diameter_px, prefix="c"),
               nil("PositionInCluster", declare={"c": DRAWING}),
               el("PrimaryId", hole.foil_hole_id), el("Quality", 1), el("Rotation", 0),
               el("SecondaryTargetLocationdIds", None,
                  el("_items", None, ns=ARRAYS, prefix="a", attrs=[("z:Size", "0")],
                     ref_id=True),
                  el("_size", 0, ns=ARRAYS, prefix="a"),
                  el("_version", 0, ns=ARRAYS, prefix="a"), ref_id=True),
               el("Selected", chosen), el("Shear", 0), nil("SmartIceThicknessResult"),
               stage_position("StagePosition", hole.stage_x_m, hole.stage_y_m, STAGE_Z_M, 0.0,
                              0.0),
               el("State", state),
               ns=GENERIC, prefix="b", ref_id=True)
    return el("KeyValuePairOfintTargetLocationXmlBpEWF4JT", None,
              el("key", hole.foil_hole_id, ns=GENERIC, prefix="b"), value, ns=GENERIC,
              prefix="b")


def _shape() -> Node:
    """The square's opening in its image: a polygon (EPU lists its vertices)."""
    half = SQUARE_OPENING_M / GRID_SQUARE_PIXEL_M / 2
    centre = GRID_SQUARE_EDGE_PX / 2
    low, high = max(centre - half, 0.0), min(centre + half, GRID_SQUARE_EDGE_PX - 1.0)
    vertices = el("vertices", None, ns=SHARED_TYPES, prefix="a", declare={"b": DRAWING},
                  attrs=[("z:Size", "4")], ref_id=True)
    for x, y in ((low, low), (high, low), (high, high), (low, high)):
        vertices.add(el("PointF", None, el("x", x, ns=DRAWING, prefix="b"),
                        el("y", y, ns=DRAWING, prefix="b"), ns=DRAWING, prefix="b"))
    return el("GridSquareShape", None,
              point("center", centre, centre, prefix="b", ns=SHARED_TYPES, outer_prefix="a"),
              point("max", high, high, prefix="b", ns=SHARED_TYPES, outer_prefix="a"),
              point("min", low, low, prefix="b", ns=SHARED_TYPES, outer_prefix="a"),
              vertices, declare={"a": SHARED_TYPES}, ref_id=True)


def grid_square_xml(visit: SquareVisit, context: SquareFileContext) -> bytes:
    """The whole GridSquare_<id>.dm document for the visit's current state."""
    square = visit.square
    holes = visit.holes if visit.image_name else []
    targets = el("m_serializationArray", None, ns=ARRAYS, prefix="a", declare={"b": GENERIC},
                 attrs=[("z:Size", str(len(holes)))], ref_id=True)
    targets.extend(_target(hole, visit, context, order) for order, hole in enumerate(holes))
    image_path = (el("GridSquareImagePath",
                     f"{context.image_folder_windows}\\{visit.image_name}.jpg", ref_id=True)
                  if visit.image_name else nil("GridSquareImagePath"))
    root = el(
        "GridSquareXml", None, el("Id", square.grid_square_id, ns=COMMON_TYPES),
        el("AtlasNodeId", square.grid_square_id), el("AutoEucentricPerformed", False),
        nil("BalancedRank"), nil("BeamCurrent"), nil("CategoryName"), nil("CategoryNumber"),
        image_path, _shape() if visit.image_name else nil("GridSquareShape"),
        nil("HolePositionCorrection"), el("HoleSpacing", HOLE_PITCH_M),
        _image_reference(visit.image_name, prefix="a"),
        el("ImageFolderName", "Images-Disc1", ref_id=True), nil("IsRecommendedSelection"),
        el("IsSmartFindHolesDecisionKnown", False), el("IsSmartHoleDecisionKnown", False),
        el("IsSmartIceThicknessDecisionKnown", False), el("Order", context.order),
        stage_position("Position", square.stage_x_m, square.stage_y_m, STAGE_Z_M, 0.0, 0.0,
                       prefix="a"),
        nil("RankInsideCategory"), el("Rotation", 0), el("Selected", True),
        nil("StartDateTime"), el("State", visit.state),
        el("TargetLocations", None, el("Id", context.collection_id, ns=COMMON_TYPES),
           el("GridSquareId", square.grid_square_id),
           nil("TargetLocations", declare={"a": ARRAYS}),
           el("TargetLocationsEfficient", None,
              el("m_keyRehashCount", 0, ns=ARRAYS, prefix="a"), targets,
              el("m_serializationCapacity", max(31, 2 * len(holes) + 1), ns=ARRAYS,
                 prefix="a"),
              el("m_serializationConcurrencyLevel", 12, ns=ARRAYS, prefix="a"),
              declare={"a": ARRAYS}, ref_id=True),
           ref_id=True,
           attrs=[("z:Type", "Applications.Epu.Persistence.FoilHoleCollectionXml"),
                  ("z:Assembly", f"Applications.Epu.Persistence, Version={EPU_VERSION}, "
                   "Culture=neutral, PublicKeyToken=null")]),
        el("Unusable", square.condition != "good"),
        attrs=[("z:Type", "Applications.Epu.Persistence.GridSquareXml"),
               ("z:Assembly", f"Applications.Epu.Persistence, Version={EPU_VERSION}, "
                "Culture=neutral, PublicKeyToken=null")],
        ref_id=True)
    return to_xml(root, root_ns=EPU_PERSISTENCE)

"""`Atlas.dm`: the atlas session file (AtlasSessionXml), written before the EPU session.

Nested as in the real file (FORMATS.md §1.5): root `AtlasSessionXml` (namespace
`…GridAtlas.Persistence`) → `Id`, `Atlas/{Id, AcquisitionDateTime, AcquisitionSettings,
AtlasImageReference/{BaseFileName = Atlas_<id>, FileFormat}, TilesEfficient/_items/TileXml/
{Id, AtlasPixelPosition/{height,width,x,y}, Nodes/KeyValuePairs/KeyValuePairOfintNodeXml30oatNZW/
{key = grid-square id, value/{Id, b:AlignedStagePosition, b:Category, b:FeatureVector,
b:PositionOnTheAtlas/{c:Center/{x,y} (atlas px), c:Physical (m), c:Quality, c:Rotation, c:Shear,
c:Size/{width,height} (px)}, b:StagePosition/{A,B,X,Y,Z} (m, rad), b:TilePositions}},
StagePosition, TileImageReference/{BaseFileName = Tile_<id>_<index>_<atlasId>, FileFormat}}}`,
`Description`, `ImageFileFormat`, `Name`, `StartDateTime`, `StorageFolder` (Windows path).
Each grid square is a node of the tile that holds its centre.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from cryovault.ingest.simulator.datacontract import (
    ARRAYS,
    ATLAS_DATAMODEL,
    ATLAS_PERSISTENCE,
    COMMON_TYPES,
    DRAWING,
    GENERIC,
    SHARED_OBJECTS,
    SYSTEM,
    Node,
    el,
    nil,
    point,
    rectangle,
    size,
    stage_position,
    to_xml,
)
from cryovault.ingest.simulator.epu_plan import (
    ATLAS_EDGE_PX,
    ATLAS_PIXEL_M,
    ATLAS_TILES,
    STAGE_Z_M,
    AtlasSquare,
)
from cryovault.ingest.simulator.microscope_image import dotnet_time

_NODE_DICTIONARY = ("System.Collections.Generic.Dictionary`2[[System.Int32, mscorlib, "
                    "Version=4.0.0.0, Culture=neutral, PublicKeyToken=b77a5c561934e089],"
                    "[Applications.SciencesAppsShared.GridAtlas.Persistence.NodeXml, "
                    "Applications.SciencesAppsShared.GridAtlas.Persistence, Version=1.34.0.6930,"
                    " Culture=neutral, PublicKeyToken=null]]")


@dataclass(frozen=True)
class AtlasDescription:
    """What the Atlas.dm says."""

    session_id: int
    atlas_image_id: int
    tile_ids: tuple[int, ...]
    started_at: datetime
    acquired_at: datetime
    autoloader_slot: int
    storage_folder_windows: str
    squares: tuple[AtlasSquare, ...]

    @property
    def image_name(self) -> str:
        return f"Atlas_{self.atlas_image_id}"

    def tile_name(self, index: int) -> str:
        return f"Tile_{self.tile_ids[index]}_{index}_{self.atlas_image_id}"


def _position_on_atlas(square: AtlasSquare) -> Node:
    half_m = square.size_px * ATLAS_PIXEL_M / 2
    return el("PositionOnTheAtlas", None,
              point("Center", square.center_x_px, square.center_y_px, prefix="d",
                    ns=ATLAS_DATAMODEL, outer_prefix="c"),
              rectangle("Physical", square.stage_x_m - half_m, square.stage_y_m - half_m,
                        2 * half_m, 2 * half_m, prefix="d", ns=ATLAS_DATAMODEL,
                        outer_prefix="c"),
              el("Quality", 1.0 if square.condition == "good" else 0.4, ns=ATLAS_DATAMODEL,
                 prefix="c"),
              el("Rotation", 0, ns=ATLAS_DATAMODEL, prefix="c"),
              el("Shear", 0, ns=ATLAS_DATAMODEL, prefix="c"),
              size("Size", square.size_px, square.size_px, prefix="d", ns=ATLAS_DATAMODEL,
                   outer_prefix="c"),
              ns=ATLAS_PERSISTENCE, prefix="b", declare={"c": ATLAS_DATAMODEL})


def _node(square: AtlasSquare) -> Node:
    stage = (square.stage_x_m, square.stage_y_m, 0.0, 0.0, 0.0)
    category = {"good": 1, "thick": 2, "broken": 3}[square.condition]
    value = el("value", None, el("Id", square.grid_square_id, ns=COMMON_TYPES),
               stage_position("AlignedStagePosition", *stage, outer_prefix="b",
                              outer_ns=ATLAS_PERSISTENCE),
               el("Category", category, ns=ATLAS_PERSISTENCE, prefix="b"),
               el("FeatureVector", None,
                  *[el("double", round(v, 6), ns=ARRAYS, prefix="a")
                    for v in (square.ice_transmission, 1 - square.ice_transmission, 0.0)],
                  ns=ATLAS_PERSISTENCE, prefix="b", attrs=[("z:Size", "3")], ref_id=True),
               _position_on_atlas(square),
               stage_position("StagePosition", *stage, outer_prefix="b",
                              outer_ns=ATLAS_PERSISTENCE),
               el("TilePositions", None,
                  el("_items", None, nil("TilePositionXml", ns=ATLAS_PERSISTENCE, prefix="b"),
                     ns=ATLAS_PERSISTENCE, prefix="b", attrs=[("z:Size", "1")], ref_id=True),
                  el("_size", 0, ns=ATLAS_PERSISTENCE, prefix="b"),
                  el("_version", 0, ns=ATLAS_PERSISTENCE, prefix="b"),
                  ns=ATLAS_PERSISTENCE, prefix="b", ref_id=True),
               declare={"b": ATLAS_PERSISTENCE}, ref_id=True)
    return el("KeyValuePairOfintNodeXml30oatNZW", None, el("key", square.grid_square_id),
              value, ns=GENERIC)


def _tile(atlas: AtlasDescription, index: int) -> Node:
    tile_px = ATLAS_EDGE_PX // ATLAS_TILES
    column, row = index % ATLAS_TILES, index // ATLAS_TILES
    members = [s for s in atlas.squares if s.tile_index == index]
    pairs = el("KeyValuePairs", None, ns="", ref_id=True,
               attrs=[("z:Type", "System.Collections.Generic.KeyValuePair`2[]"),
                      ("z:Assembly", "0"), ("z:Size", str(len(members)))])
    pairs.extend(_node(square) for square in members)
    centre_x = (column + 0.5) * tile_px - ATLAS_EDGE_PX / 2
    centre_y = (row + 0.5) * tile_px - ATLAS_EDGE_PX / 2
    return el("TileXml", None, el("Id", atlas.tile_ids[index], ns=COMMON_TYPES),
              rectangle("AtlasPixelPosition", column * tile_px, row * tile_px, tile_px,
                        tile_px, prefix="a"),
              el("Nodes", None,
                 el("Version", len(members), ns="", ref_id=True,
                    attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
                 el("HashSize", 17, ns="", ref_id=True,
                    attrs=[("z:Type", "System.Int32"), ("z:Assembly", "0")]),
                 pairs, declare={"a": ARRAYS}, ref_id=True,
                 attrs=[("z:Type", _NODE_DICTIONARY), ("z:Assembly", "0")]),
              stage_position("StagePosition", centre_x * ATLAS_PIXEL_M,
                             centre_y * ATLAS_PIXEL_M, STAGE_Z_M, 0.0, 0.0, prefix="a"),
              el("TileImageReference", None,
                 el("BaseFileName", atlas.tile_name(index), ns=COMMON_TYPES, prefix="a",
                    ref_id=True),
                 el("FileFormat", "Mrc", ns=COMMON_TYPES, prefix="a"),
                 declare={"a": COMMON_TYPES}, ref_id=True),
              ref_id=True)


def atlas_xml(atlas: AtlasDescription) -> bytes:
    """The whole Atlas.dm document."""
    tiles = el("_items", None, attrs=[("z:Size", str(ATLAS_TILES ** 2))], ref_id=True)
    tiles.extend(_tile(atlas, index) for index in range(ATLAS_TILES ** 2))
    settings = el("AcquisitionSettings", None,
                  el("acquisitionDateTime", dotnet_time(atlas.acquired_at),
                     ns=SHARED_OBJECTS, prefix="a"),
                  el("camera", None,
                     el("Binning", None, el("x", 2, ns=DRAWING, prefix="b"),
                        el("y", 2, ns=DRAWING, prefix="b"), ns=SHARED_OBJECTS, prefix="a",
                        declare={"b": DRAWING}),
                     el("ExposureTime", 1, ns=SHARED_OBJECTS, prefix="a"),
                     el("Name", "EF-CCD", ns=SHARED_OBJECTS, prefix="a", ref_id=True),
                     ns=SHARED_OBJECTS, prefix="a", ref_id=True),
                  declare={"a": SHARED_OBJECTS}, ref_id=True)
    inner = el("Atlas", None, el("Id", atlas.session_id, ns=COMMON_TYPES),
               el("AcquiredWithImageBeamShift", False),
               el("AcquisitionDateTime", dotnet_time(atlas.acquired_at)), settings,
               el("AtlasImageReference", None,
                  el("BaseFileName", atlas.image_name, ns=COMMON_TYPES, prefix="a",
                     ref_id=True),
                  el("FileFormat", "Mrc", ns=COMMON_TYPES, prefix="a"),
                  declare={"a": COMMON_TYPES}, ref_id=True),
               el("IsStem", False), nil("Name"), el("NrTiles", ATLAS_TILES ** 2),
               el("StartPosition", "CloseToCenter"),
               el("TilesEfficient", None, tiles, el("_size", ATLAS_TILES ** 2),
                  el("_version", ATLAS_TILES ** 2), ref_id=True),
               ref_id=True)
    root = el("AtlasSessionXml", None, el("Id", atlas.session_id, ns=COMMON_TYPES), inner,
              el("Description", f"Atlas for autoloader slot {atlas.autoloader_slot}",
                 ref_id=True),
              el("ImageFileFormat", "Mrc"), el("Name", "Atlas", ref_id=True),
              el("StartDateTime", dotnet_time(atlas.started_at)),
              el("StorageFolder", atlas.storage_folder_windows, ref_id=True),
              el("Version", None, el("_Build", 0, ns=SYSTEM, prefix="a"),
                 el("_Major", 3, ns=SYSTEM, prefix="a"), el("_Minor", 0, ns=SYSTEM, prefix="a"),
                 el("_Revision", -1, ns=SYSTEM, prefix="a"), declare={"a": SYSTEM},
                 ref_id=True),
              attrs=[("z:Type", "Applications.SciencesAppsShared.GridAtlas.Persistence."
                      "AtlasSessionXml"),
                     ("z:Assembly", "Applications.SciencesAppsShared.GridAtlas.Persistence, "
                      "Version=1.34.0.6930, Culture=neutral, PublicKeyToken=null")],
              ref_id=True)
    return to_xml(root, root_ns=ATLAS_PERSISTENCE)

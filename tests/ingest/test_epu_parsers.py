"""EPU parsers against the real EPU files in /work/shared/fixtures/epu (values read by hand from
the files; FORMATS.md §1) and against broken or hostile input."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime
from pathlib import Path

import pytest

from cryovault.errors import Invalid
from cryovault.ingest.epu.parsers import (
    parse_atlas,
    parse_epu_session,
    parse_grid_square_metadata,
    parse_image_xml,
)
from cryovault.ingest.errors import IngestFormatError

EPU = Path("/work/shared/fixtures/epu")
SESSION = EPU / "epu-dir-example" / "EpuSession.dm"
SQUARE_DIR = EPU / "epu-dir-example" / "Images-Disc1" / "GridSquare_8999138"
ACQUISITION_XML = SQUARE_DIR / "Data" / "FoilHole_9015883_Data_9017347_6_20250108_154915.xml"
FOIL_HOLE_XML = SQUARE_DIR / "FoilHoles" / "FoilHole_9015889_20250108_154715.xml"
GRID_SQUARE_XML = SQUARE_DIR / "GridSquare_20250108_151151.xml"
ATLAS = EPU / "atlas" / "Atlas.dm"
SQUARE_METADATA = EPU / "metadata" / "GridSquare_4590776.dm"

EXTERNAL_ENTITY = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY e SYSTEM "file:///etc/passwd">]>'
                   b"<MicroscopeImage><name>&e;</name></MicroscopeImage>")
ENTITY_BOMB = (b'<?xml version="1.0"?><!DOCTYPE x [<!ENTITY a "aaaaaaaaaa">'
               b'<!ENTITY b "&a;&a;&a;&a;&a;&a;&a;&a;&a;&a;">]>'
               b"<MicroscopeImage>&b;</MicroscopeImage>")

PARSERS = [parse_epu_session, parse_atlas, parse_grid_square_metadata, parse_image_xml]


def _single_line(pretty: bytes) -> bytes:
    """The raw form EPU writes: no declaration, no whitespace between elements."""
    text = re.sub(rb"^<\?xml[^>]*\?>\s*", b"", pretty)
    return re.sub(rb">\s+<", b"><", text).strip()


# -- EpuSession.dm -------------------------------------------------------------------------------


def test_epu_session_3_9_1():
    session = parse_epu_session(SESSION.read_bytes())
    assert session.name == "Supervisor_20250108_101446_62_cm40593-1_EPU"
    assert session.epu_version == "3.9.1.8206"
    assert session.started_at == datetime(2025, 1, 8, 15, 10, 39, 480727, tzinfo=UTC)
    assert session.atlas_path == ("Z:\\DoseFractions\\cm40593-1\\atlas\\Supervisor_20250108_101551"
                                  "_cm40593-1_Atlas\\Sample7\\Atlas\\Atlas.dm")
    assert session.storage_root == "Z:\\DoseFractions\\cm40593-1"
    assert session.image_file_format == "Mrc"
    assert session.dose_fractions_format == "Tiff Lzw Non-Gain normalized"
    assert session.session_id == "9015527"
    assert session.cassette_slot == 6
    assert session.grid_name is None  # AutoloaderDescription is empty in this session
    assert session.grid_type == "HoleyCarbon"
    assert session.clustering_mode == "ClusteringWithImageBeamShift"
    assert session.hole_size_um == pytest.approx(1.3438822911617223)
    assert session.hole_spacing_um == pytest.approx(2.6513848367645296)
    assert len(session.grid_square_ids) == 228
    assert "8999138" in session.grid_square_ids and "8999666" in session.grid_square_ids
    assert len(session.data_acquisition_area_ids) == 6
    assert "9017347" in session.data_acquisition_area_ids  # the <area> of the Data/ file name
    # -2.4 µm … -0.9 µm in 0.3 µm steps; the other five areas point to the same list (z:Ref)
    assert session.defocus_targets_angstrom == (24000.0, 21000.0, 18000.0, 15000.0, 12000.0,
                                                9000.0)
    assert session.exposure_time_s == 0.89
    assert session.number_of_fractions == 50
    assert session.spot_size == 5
    assert session.binning == 2
    assert session.camera == "EF-CCD"
    assert session.extra["PhasePlateEnabled"] == "false"
    assert json.loads(json.dumps(session.metadata()))["grid_squares"] == 228


def test_epu_session_raw_single_line_form_reads_the_same():
    pretty = SESSION.read_bytes()
    raw = _single_line(pretty)
    assert b"\n" not in raw and not raw.startswith(b"<?xml")
    assert parse_epu_session(raw) == parse_epu_session(pretty)


def test_epu_session_without_movies_or_version():
    xml = (b'<EpuSessionXml xmlns="http://schemas.datacontract.org/2004/07/Applications.Epu.'
           b'Persistence" xmlns:i="http://www.w3.org/2001/XMLSchema-instance">'
           b"<DoseFractionsOutputFormat i:nil=\"true\"/><Name>Session_B</Name></EpuSessionXml>")
    session = parse_epu_session(xml)
    assert session.name == "Session_B"
    assert session.epu_version is None
    assert session.dose_fractions_format is None
    assert session.grid_square_ids == () and session.atlas_path is None


def test_epu_session_without_name_is_refused():
    xml = b"<EpuSessionXml><ImageFileFormat>Mrc</ImageFileFormat></EpuSessionXml>"
    with pytest.raises(IngestFormatError, match="EpuSession.dm: missing Name"):
        parse_epu_session(xml)


# -- MicroscopeImage XML -------------------------------------------------------------------------


def test_acquisition_xml_k3():
    image = parse_image_xml(ACQUISITION_XML.read_bytes(), ACQUISITION_XML.stem)
    assert image.name == "FoilHole_9015883_Data_9017347_6_20250108_154915"
    assert image.unique_id == "a57ec324-5326-43a3-8dc6-ee3424aa5814"
    assert image.acquired_at == datetime(2025, 1, 8, 15, 49, 18, 115828, tzinfo=UTC)
    assert image.pixel_size_angstrom == pytest.approx(1.0558814239614023)
    assert (image.width_px, image.height_px) == (2880, 2046)
    assert image.dose_e_per_angstrom2 == pytest.approx(14.410836806690226)
    assert image.number_of_fractions == 50
    assert image.dose_per_fraction_e_per_angstrom2 == pytest.approx(14.410836806690226 / 50)
    assert image.defocus_target_angstrom == pytest.approx(27000.0)  # AppliedDefocus -2.7E-06 m
    assert image.applied_defocus_angstrom == pytest.approx(27000.0)
    assert image.objective_defocus_readout_angstrom == pytest.approx(-4841.6022919657485)
    assert image.exposure_time_s == 0.89
    assert image.stage.x_um == pytest.approx(-97.152028)
    assert image.stage.y_um == pytest.approx(-152.721848)
    assert image.stage.z_um == pytest.approx(85.7108440352)
    assert image.stage.alpha_deg == pytest.approx(-0.00043148193122001131 * 180 / 3.141592653589793)
    assert image.stage.beta_deg == pytest.approx(0.0168283325 * 180 / 3.141592653589793)
    assert (image.image_shift_x, image.image_shift_y) == (0.0, 0.0)
    assert image.beam_shift_x == pytest.approx(0.060867246240377426)
    assert image.beam_shift_y == pytest.approx(-0.15422800183296204)
    assert image.magnification == 165000
    assert image.voltage_kv == 300
    assert image.microscope == "TITAN52336320"
    assert image.instrument_id == "3632"
    assert image.detector == "BioQuantum K3"
    assert image.camera == "EF-CCD"
    assert image.binning == 2
    assert image.super_resolution_factor == 2
    assert image.electron_counting is True
    assert image.phase_plate is False
    assert image.spot_size == 5
    assert image.energy_filter_slit_width_ev == 20
    assert image.software == "EPU" and image.software_version == "3.9.1.8206"
    assert image.extra["Aperture[C2].Name"] == "50"
    assert image.extra["camera.FixedReadoutArea"] == "Full"


def test_acquisition_metadata_is_flat_json_with_units_in_the_keys():
    values = parse_image_xml(ACQUISITION_XML.read_bytes()).metadata()
    assert json.loads(json.dumps(values)) == values
    assert None not in values.values()
    assert values["pixel_size_angstrom"] == pytest.approx(1.0558814239614023)
    assert values["dose_e_per_angstrom2"] == pytest.approx(14.410836806690226)
    assert values["defocus_target_angstrom"] == pytest.approx(27000.0)
    assert values["exposure_time_s"] == 0.89
    assert values["number_of_fractions"] == 50
    assert values["stage_x_um"] == pytest.approx(-97.152028)
    assert values["stage_alpha_deg"] == pytest.approx(-0.0247221, abs=1e-6)
    assert values["image_shift_x"] == 0.0 and values["image_shift_y"] == 0.0
    assert values["microscope"] == "TITAN52336320"
    assert values["detector"] == "BioQuantum K3"
    assert values["acquired_at"] == "2025-01-08T15:49:18.115828+00:00"
    assert values["magnification"] == 165000 and values["voltage_kv"] == 300


def test_grid_square_xml():
    image = parse_image_xml(GRID_SQUARE_XML.read_bytes())
    assert image.name == "Empty"  # what EPU writes in <name> when no name is given
    assert image.acquired_at == datetime(2025, 1, 8, 15, 11, 49, 670928, tzinfo=UTC)
    assert image.pixel_size_angstrom == pytest.approx(415.62760344504568)
    assert image.magnification == 470
    assert image.defocus_target_angstrom == pytest.approx(500000.0)  # -5E-05 m
    assert image.number_of_fractions is None  # FractionationSettings is nil
    assert image.dose_per_fraction_e_per_angstrom2 is None
    assert image.stage.x_um == pytest.approx(-98.8056647)
    assert image.foil_hole_x_px is None


def test_foil_hole_xml_gives_the_hole_found_in_it():
    image = parse_image_xml(FOIL_HOLE_XML.read_bytes())
    assert image.acquired_at == datetime(2025, 1, 8, 15, 47, 11, 882393, tzinfo=UTC)
    assert image.pixel_size_angstrom == pytest.approx(16.359115173614214)
    assert image.magnification == 11500
    assert image.defocus_target_angstrom == pytest.approx(200000.0)
    assert image.foil_hole_x_px == pytest.approx(1495.524)
    assert image.foil_hole_y_px == pytest.approx(1275.29517)
    assert image.foil_hole_diameter_px == pytest.approx(772.894165)


def test_image_xml_raw_single_line_form_reads_the_same():
    pretty = ACQUISITION_XML.read_bytes()
    assert parse_image_xml(_single_line(pretty)) == parse_image_xml(pretty)


def test_image_xml_of_unknown_version_keeps_what_is_there():
    xml = (b'<MicroscopeImage xmlns="http://schemas.datacontract.org/2004/07/Fei.SharedObjects">'
           b"<microscopeData><acquisition><acquisitionDateTime>2026-02-03T04:05:06+02:00"
           b"</acquisitionDateTime></acquisition><gun><AccelerationVoltage>200000"
           b"</AccelerationVoltage></gun></microscopeData></MicroscopeImage>")
    image = parse_image_xml(xml, "FoilHole_1_Data_2_3_20260203_040506")
    assert image.acquired_at == datetime(2026, 2, 3, 2, 5, 6, tzinfo=UTC)
    assert image.voltage_kv == 200
    assert image.pixel_size_angstrom is None and image.dose_e_per_angstrom2 is None
    assert image.stage.x_um is None
    assert image.metadata() == {"voltage_kv": 200.0, "acquired_at": "2026-02-03T02:05:06+00:00"}


def test_image_xml_value_that_is_not_a_number_is_named():
    xml = ACQUISITION_XML.read_bytes().replace(b">1.4410836806690226E+21<", b">lots<")
    with pytest.raises(IngestFormatError, match=r"CustomData\[Dose\] is not a number: 'lots'"):
        parse_image_xml(xml)


def test_image_xml_without_microscope_data_is_refused():
    with pytest.raises(IngestFormatError, match="missing microscopeData"):
        parse_image_xml(b"<MicroscopeImage><name>Empty</name></MicroscopeImage>")


# -- Atlas.dm ------------------------------------------------------------------------------------


def test_atlas():
    atlas = parse_atlas(ATLAS.read_bytes())
    assert atlas.name == "Atlas"
    assert atlas.atlas_id == "3436163"
    assert atlas.description == "Atlas for autoloader slot 4"
    assert atlas.cassette_slot == 4
    assert atlas.storage_folder == (
        "Z:\\nt32457-6\\atlas\\Supervisor_20240404_093820_Pete_Miriam_HexAuFoil\\Sample4")
    assert atlas.acquired_at == datetime(2024, 4, 5, 9, 17, 53, 987880, tzinfo=UTC)  # +01:00
    assert atlas.started_at == datetime(2024, 4, 4, 8, 38, 40, 867629, tzinfo=UTC)
    assert atlas.image_name == "Atlas_4590151" and atlas.image_file_format == "Mrc"
    assert len(atlas.tiles) == 35  # 64 slots, 29 of them nil
    first_tile = atlas.tiles[0]
    assert first_tile.tile_id == "4590157" and first_tile.name == "Tile_4590157_0_4590151"
    assert (first_tile.x_px, first_tile.y_px) == (1584, 1687)
    assert (first_tile.width_px, first_tile.height_px) == (833, 592)
    assert len(atlas.grid_squares) == 222
    squares = {square.grid_square_id: square for square in atlas.grid_squares}
    square = squares["4590306"]
    assert (square.x_px, square.y_px) == (pytest.approx(2236.751), pytest.approx(1741.15442))
    assert (square.width_px, square.height_px) == (pytest.approx(143.233978),
                                                   pytest.approx(134.156143))
    assert square.category == 1
    assert square.state is None  # Atlas.dm 3.x states no grid-square state
    assert square.stage.x_um == pytest.approx(-117.46241943910718)
    assert square.stage.y_um == pytest.approx(-109.44153473246843)
    assert square.aligned_stage.x_um == pytest.approx(-130.26106171309948)
    assert "4590776" in squares  # the square of Metadata/GridSquare_4590776.dm
    # Stage distance / atlas-pixel distance between neighbouring tiles gives 4.69–4.84e-7 m;
    # the fit over all 222 squares gives 4.7515e-7 m per atlas pixel.
    assert atlas.pixel_size_angstrom == pytest.approx(4751.52, rel=1e-4)
    assert atlas.width_px is None and atlas.height_px is None


def test_atlas_without_enough_squares_has_no_pixel_size():
    xml = (b"<AtlasSessionXml><Name>Atlas</Name><Atlas><TilesEfficient><_items><TileXml><Id>7</Id>"
           b"<Nodes><KeyValuePairs><KeyValuePairOfintNodeXml30oatNZW><key>11</key><value>"
           b"<PositionOnTheAtlas><Center><x>10</x><y>20</y></Center></PositionOnTheAtlas>"
           b"<State>Completed</State></value></KeyValuePairOfintNodeXml30oatNZW></KeyValuePairs>"
           b"</Nodes></TileXml></_items></TilesEfficient></Atlas></AtlasSessionXml>")
    atlas = parse_atlas(xml)
    assert atlas.pixel_size_angstrom is None
    assert [(s.grid_square_id, s.x_px, s.y_px, s.state) for s in atlas.grid_squares] == [
        ("11", 10.0, 20.0, "Completed")]


def test_atlas_without_atlas_element_is_refused():
    with pytest.raises(IngestFormatError, match="Atlas.dm: missing Atlas"):
        parse_atlas(b"<AtlasSessionXml><Name>Atlas</Name></AtlasSessionXml>")


# -- Metadata/GridSquare_<id>.dm -----------------------------------------------------------------


def test_grid_square_metadata():
    square = parse_grid_square_metadata(SQUARE_METADATA.read_bytes())
    assert square.grid_square_id == "4590776"
    assert square.atlas_node_id == "4590776"
    assert square.state == "InProgress"
    assert square.selected is True and square.unusable is False
    assert square.image_name == "GridSquare_20240406_102420"
    assert square.image_file_format == "Tiff"
    assert square.hole_spacing_um == pytest.approx(4.1280022158274845)
    assert square.stage.x_um == pytest.approx(-49.194160965271294)
    assert square.order == 5
    holes = square.foil_holes
    assert len(holes) == 570
    assert sum(hole.selected for hole in holes) == 276
    assert [hole.state for hole in holes].count("Completed") == 217
    assert [hole.state for hole in holes].count("Defined") == 352
    assert sum(len(hole.acquisition_names) == 4 for hole in holes) == 217
    first, last = holes[0], holes[-1]
    assert first.foil_hole_id == "5665438"
    assert (first.x_px, first.y_px, first.diameter_px) == (1396, 972, pytest.approx(51.28809))
    assert first.selected is True and first.state == "Completed"
    assert first.image_name == "FoilHole_5665438_20240406_102451"
    assert first.acquisition_names[0] == "FoilHole_5665438_Data_4601896_4601898_20240406_102527"
    assert first.stage.x_um == pytest.approx(-42.565477384562446)
    assert first.stage.alpha_deg == pytest.approx(-0.013723441077168726)
    assert last.foil_hole_id == "5666007"
    assert (last.x_px, last.y_px) == (pytest.approx(2826.3916), pytest.approx(1986.7616))
    assert last.selected is False and last.state == "Defined" and last.is_near_grid_bar is True
    assert last.acquisition_names == ()


def test_grid_square_never_visited_has_no_targets():
    xml = (b'<GridSquareXml xmlns:i="http://www.w3.org/2001/XMLSchema-instance"><Id>42</Id>'
           b'<State>Defined</State><TargetLocations i:nil="true"/></GridSquareXml>')
    square = parse_grid_square_metadata(xml)
    assert (square.grid_square_id, square.state, square.foil_holes) == ("42", "Defined", ())


def test_grid_square_without_id_is_refused():
    with pytest.raises(IngestFormatError, match="missing Id"):
        parse_grid_square_metadata(b"<GridSquareXml><State>Defined</State></GridSquareXml>")


def test_z_ref_points_to_the_element_with_that_id():
    xml = (b'<GridSquareXml xmlns:i="http://www.w3.org/2001/XMLSchema-instance" '
           b'xmlns:z="http://schemas.microsoft.com/2003/10/Serialization/"><Id>5</Id>'
           b'<Image z:Id="9"><BaseFileName>GridSquare_20250101_010203</BaseFileName></Image>'
           b'<TargetLocations><TargetLocationsEfficient><m_serializationArray>'
           b"<KeyValuePairOfintTargetLocationXmlBpEWF4JT><key>77</key><value>"
           b'<Image z:Ref="9" i:nil="true"/><Selected>true</Selected></value>'
           b"</KeyValuePairOfintTargetLocationXmlBpEWF4JT></m_serializationArray>"
           b"</TargetLocationsEfficient></TargetLocations></GridSquareXml>")
    square = parse_grid_square_metadata(xml)
    assert square.foil_holes[0].image_name == "GridSquare_20250101_010203"
    assert square.foil_holes[0].selected is True


# -- broken and hostile input --------------------------------------------------------------------


@pytest.mark.parametrize("parse", PARSERS)
def test_external_entities_are_refused(parse):
    with pytest.raises(IngestFormatError, match="external entities are not allowed"):
        parse(EXTERNAL_ENTITY)


@pytest.mark.parametrize("parse", PARSERS)
def test_entity_expansion_is_refused(parse):
    with pytest.raises(IngestFormatError, match="entity declarations are not allowed"):
        parse(ENTITY_BOMB)


@pytest.mark.parametrize("parse", PARSERS)
def test_empty_file_is_refused_as_possibly_incomplete(parse):
    with pytest.raises(IngestFormatError, match="the file is empty") as caught:
        parse(b"")
    assert caught.value.possibly_incomplete


@pytest.mark.parametrize(("parse", "path"), [
    (parse_epu_session, SESSION), (parse_atlas, ATLAS),
    (parse_grid_square_metadata, SQUARE_METADATA), (parse_image_xml, ACQUISITION_XML)])
def test_truncated_file_is_refused_as_possibly_incomplete(parse, path):
    data = path.read_bytes()
    with pytest.raises(IngestFormatError, match="not well-formed XML at line") as caught:
        parse(data[: len(data) // 2])
    assert caught.value.possibly_incomplete
    assert "may still be being written" in caught.value.message


def test_truncated_raw_file_names_the_column():
    raw = _single_line(SESSION.read_bytes())
    with pytest.raises(IngestFormatError, match=r"^EpuSession.dm: not well-formed XML at line 1, "
                                                r"column \d+"):
        parse_epu_session(raw[:523])


@pytest.mark.parametrize(("parse", "data", "message"), [
    (parse_image_xml, SESSION, "unknown EPU image metadata XML: no MicroscopeImage root "
                               "(found <EpuSessionXml>)"),
    (parse_epu_session, ACQUISITION_XML, "no EpuSessionXml root (found <MicroscopeImage>)"),
    (parse_atlas, SQUARE_METADATA, "no AtlasSessionXml root (found <GridSquareXml>)"),
    (parse_grid_square_metadata, ATLAS, "no GridSquareXml root (found <AtlasSessionXml>)"),
])
def test_wrong_root_is_refused(parse, data, message):
    with pytest.raises(IngestFormatError, match=re.escape(message)) as caught:
        parse(data.read_bytes())
    assert not caught.value.possibly_incomplete


def test_binary_garbage_is_refused_and_is_an_invalid():
    with pytest.raises(Invalid, match="not well-formed XML"):
        parse_image_xml(b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR")

"""STAR / CSV / TSV table previews, text and JSON previews, on real fixtures and damaged input."""

from __future__ import annotations

import json

import pytest

from cryovault.formats.tables import (
    UnreadableTable,
    read_json_preview,
    read_table_preview,
    read_text_preview,
)
from tests.formats.samples import FIXTURES, STAR_FIXTURES

# --------------------------------------------------------------------------------------------
# STAR (real RELION files)
# --------------------------------------------------------------------------------------------


def test_postprocess_star_simple_and_loop_blocks():
    preview = read_table_preview(STAR_FIXTURES / "relion_postprocess.star")
    assert preview.format == "star"
    assert [(b.name, b.kind, b.total_rows) for b in preview.blocks] == [
        ("general", "simple", 1), ("fsc", "loop", 49), ("guinier", "loop", 49)]
    general = preview.blocks[0]
    assert general.columns[0] == "rlnFinalResolution"
    values = dict(zip(general.columns, general.rows[0], strict=True))
    assert float(values["rlnFinalResolution"]) == pytest.approx(16.363636)
    assert values["rlnMaskName"] == "mask.mrc"
    fsc = preview.blocks[1]
    assert fsc.columns[:3] == ("rlnSpectralIndex", "rlnResolution", "rlnAngstromResolution")
    assert len(fsc.columns) == 7
    assert fsc.rows[1][:3] == ("1", "0.001389", "720.0")
    assert not preview.truncated


def test_pipeline_star_every_block_and_row_limit():
    preview = read_table_preview(STAR_FIXTURES / "relion_default_pipeline.star", max_rows=5)
    names = [b.name for b in preview.blocks]
    assert names == ["pipeline_general", "pipeline_processes", "pipeline_nodes",
                     "pipeline_input_edges", "pipeline_output_edges"]
    processes = preview.blocks[1]
    assert processes.total_rows == 31 and len(processes.rows) == 5 and processes.truncated
    assert processes.rows[0][0] == "Import/job001/"
    assert preview.truncated
    assert preview.blocks[2].total_rows == 74


def test_relion31_particles_keep_string_columns():
    preview = read_table_preview(STAR_FIXTURES / "relion31_optics_and_particles.star")
    particles = preview.blocks[1]
    assert particles.columns == ("rlnImageName", "rlnMicrographName", "rlnCoordinateX",
                                 "rlnCoordinateY", "rlnCoordinateZ")
    assert particles.rows[0][:2] == ("000001@0001_sum_particles.mrcs", "0001_sum.mrc")
    assert float(particles.rows[1][2]) == 685.0


def test_relion5_tomograms_star():
    preview = read_table_preview(STAR_FIXTURES / "tomo" / "relion5_aligntiltseries_tomograms.star")
    (block,) = preview.blocks
    assert block.name == "global" and block.total_rows == 14 and len(block.columns) == 17
    row = dict(zip(block.columns, block.rows[0], strict=True))
    assert row["rlnTomoName"] == "20250409_Position_42_2"
    assert int(row["rlnTomoSizeZ"]) == 1392


def test_damaged_star_files(tmp_path):
    source = (STAR_FIXTURES / "relion_postprocess.star").read_bytes()
    cut = tmp_path / "cut.star"
    cut.write_bytes(source[:3000])
    with pytest.raises(UnreadableTable, match=r"cannot read cut.star: line \d+: a row of block "
                                              "'fsc' has 4 values but the block has 7 columns; "
                                              "the file may be truncated"):
        read_table_preview(cut)
    cases = {
        "binary.star": (b"data_x\n\x00\x01\x02\x03", "binary"),
        "nostar.star": (b"just some words\n", "no data block"),
        "empty.star": (b"", "empty"),
        "quote.star": (b'data_a\n_rlnName "unclosed\n', "line 2 has an unclosed quotation"),
        "orphan.star": (b"data_a\n1 2 3\n", "values outside a loop_"),
        "item.star": (b"data_a\n_rlnA\n", "item _rlnA of block 'a' should have exactly one"),
        "latin.star": ("data_a\n_rlnA é\n".encode("latin-1") * 3, "not UTF-8"),
    }
    for name, (content, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(content)
        with pytest.raises(UnreadableTable, match=message):
            read_table_preview(path)


def test_empty_blocks_are_listed(tmp_path):
    path = tmp_path / "e.star"
    path.write_text("data_a\n\nloop_\n_rlnA #1\n_rlnB #2\n1 2\n\ndata_nothing\n")
    preview = read_table_preview(path)
    assert [(b.name, b.kind, b.total_rows) for b in preview.blocks] == [
        ("a", "loop", 1), ("nothing", "simple", 0)]
    header_only = tmp_path / "h.star"
    header_only.write_text("data_particles\n\nloop_\n_rlnA #1\n_rlnB #2\n")
    (block,) = read_table_preview(header_only).blocks
    assert (block.columns, block.total_rows, block.rows) == (("rlnA", "rlnB"), 0, ())


# --------------------------------------------------------------------------------------------
# CSV / TSV
# --------------------------------------------------------------------------------------------


def test_csv_with_header_quotes_and_embedded_newlines(tmp_path):
    path = tmp_path / "grids.csv"
    path.write_text('grid,ice,comment\nG1,thin,"good, many holes"\nG2,thick,"two\nlines"\n'
                    "G3,thin,\n")
    preview = read_table_preview(path)
    (block,) = preview.blocks
    assert block.columns == ("grid", "ice", "comment")
    assert block.rows == (("G1", "thin", "good, many holes"), ("G2", "thick", "two\nlines"),
                          ("G3", "thin", ""))
    assert block.total_rows == 3 and not block.truncated


def test_semicolon_csv_without_header_and_row_limit(tmp_path):
    path = tmp_path / "numbers.csv"
    path.write_text("".join(f"{i};{i * 0.5};{i * i}\n" for i in range(1000)))
    (block,) = read_table_preview(path, max_rows=10).blocks
    assert block.columns == ("column 1", "column 2", "column 3")
    assert block.rows[3] == ("3", "1.5", "9")
    assert block.total_rows == 1000 and len(block.rows) == 10 and block.truncated


def test_tsv_and_kind_override(tmp_path):
    path = tmp_path / "ctf.txt"
    path.write_text("micrograph\tdefocus_u_angstrom\nmic_001\t12000.5\nmic_002\t15000\n")
    preview = read_table_preview(path, "tsv")
    assert preview.format == "tsv"
    (block,) = preview.blocks
    assert block.columns == ("micrograph", "defocus_u_angstrom")
    assert block.rows[1] == ("mic_002", "15000")


def test_csv_with_byte_order_mark_and_ragged_rows(tmp_path):
    path = tmp_path / "excel.csv"
    path.write_bytes("\ufeffname,value\na,1\nb,2,extra\n".encode())
    (block,) = read_table_preview(path).blocks
    assert block.columns == ("name", "value", "column 3")
    assert block.rows == (("a", "1"), ("b", "2", "extra"))


def test_binary_and_empty_csv(tmp_path):
    binary = tmp_path / "b.csv"
    binary.write_bytes(b"a,b\n\x00\x00\x01")
    with pytest.raises(UnreadableTable, match="cannot read b.csv: it is binary"):
        read_table_preview(binary)
    empty = tmp_path / "e.csv"
    empty.write_bytes(b"")
    (block,) = read_table_preview(empty).blocks
    assert block.total_rows == 0 and block.columns == ()
    with pytest.raises(UnreadableTable, match="could not be opened"):
        read_table_preview(tmp_path / "missing.csv")
    with pytest.raises(ValueError, match="unknown table kind"):
        read_table_preview(empty, "xlsx")


# --------------------------------------------------------------------------------------------
# Text and JSON
# --------------------------------------------------------------------------------------------


def test_text_preview_of_real_files_and_truncation(tmp_path):
    log = FIXTURES / "logs" / "motioncor2_1.6.4_eer.log"
    whole = read_text_preview(log)
    assert not whole.truncated and whole.encoding == "utf-8"
    assert "EER stack" in whole.text
    assert whole.size_bytes == log.stat().st_size
    head = read_text_preview(log, max_bytes=100)
    assert head.truncated and len(head.text.encode()) <= 100
    assert whole.text.startswith(head.text)


def test_text_cut_inside_a_character_and_latin1(tmp_path):
    path = tmp_path / "notes.txt"
    path.write_text("Å" * 10)  # 2 bytes each
    preview = read_text_preview(path, max_bytes=5)
    assert preview.text == "ÅÅ" and preview.truncated and preview.encoding == "utf-8"
    latin = tmp_path / "latin.txt"
    latin.write_bytes("Température: 22 °C, humidité 45 %\n".encode("latin-1"))
    preview = read_text_preview(latin)
    assert preview.encoding == "latin-1" and preview.text.startswith("Température")
    mostly = tmp_path / "mostly.txt"
    mostly.write_bytes(("ok " * 200).encode() + b"\xff" + b" fine\n")
    preview = read_text_preview(mostly)
    assert preview.encoding == "utf-8" and "\ufffd" in preview.text


def test_binary_is_not_text(tmp_path):
    path = tmp_path / "x.log"
    path.write_bytes(b"abc\x00def")
    with pytest.raises(UnreadableTable, match="binary file, not text"):
        read_text_preview(path)


def test_json_preview(tmp_path):
    path = tmp_path / "m.json"
    path.write_text(json.dumps({"grid": "G1", "defocus_um": [-1.0, -2.0], "ok": True}))
    preview = read_json_preview(path)
    assert preview.pretty and not preview.truncated
    assert preview.text.splitlines()[1] == '  "grid": "G1",'
    assert json.loads(preview.text)["defocus_um"] == [-1.0, -2.0]

    big = tmp_path / "big.json"
    big.write_text(json.dumps(list(range(10_000))))
    limited = read_json_preview(big, max_bytes=1000)
    assert not limited.pretty and limited.truncated and len(limited.text) == 1000

    bad = tmp_path / "bad.json"
    bad.write_text('{"a": 1,\n "b": }\n')
    with pytest.raises(UnreadableTable, match="not valid JSON: Expecting value at line 2, "
                                              "column 7"):
        read_json_preview(bad)
    huge = tmp_path / "huge.json"
    huge.write_text("[" + "9" * 5000 + "]")
    with pytest.raises(UnreadableTable, match="cannot read huge.json: it is not valid JSON"):
        read_json_preview(huge)
    binary = tmp_path / "bin.json"
    binary.write_bytes(b"\xff\xfe\x00\x01")
    with pytest.raises(UnreadableTable, match="cannot read bin.json"):
        read_json_preview(binary)

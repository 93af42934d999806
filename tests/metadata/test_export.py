"""Metadata export as CSV, JSON and XML (SPEC MD-4): every format parsed back and compared."""

from __future__ import annotations

import csv
import io
import json

import pytest
from defusedxml import ElementTree as SafeET

from cryovault.metadata.export import COLUMNS, default_filename
from tests.helpers import assert_error

NASTY = 'a,b;"quoted" <tag attr="x"> & ]]> \'single\' line\nbreak — ünïcødé ✓ =cmd|\' /C calc\'!A0'
ENTRIES = [
    {"name": "Microscope", "type": "string", "value": "Titan Krios G4", "group": "Instrument"},
    {"name": "Pixel size", "type": "double", "value": 0.83, "quantity": "length",
     "unit": "angstrom", "group": "Acquisition"},
    {"name": "Frames", "type": "integer", "value": 40, "group": "Acquisition"},
    {"name": "Phase plate", "type": "boolean", "value": False},
    {"name": "Session date", "type": "date", "value": "2024-05-31"},
    {"name": "Tilt <&> \"axis\"", "type": "double", "value": -85.3, "quantity": "angle",
     "unit": "degree"},
    {"name": "Remarks", "type": "string", "value": NASTY},
]


@pytest.fixture
def element(alice):
    folder = alice.create("folder", 'Export "test" <1>/2'.replace("/", "-"),
                          description="desc with \x01 control and <xml>")
    for body in ENTRIES:
        response = alice.post(f"/api/v1/elements/{folder['id']}/metadata", json=body)
        assert response.status_code == 201, response.text
    return folder


def expected_rows(alice, element) -> list[dict[str, str]]:
    listing = alice.get(f"/api/v1/elements/{element['id']}/metadata").json()
    rows = [{"group": "General", "name": f["name"], "type": "string", "value": f["value"],
             "unit": "", "quantity": "", "base_value": "", "base_unit": ""}
            for f in listing["general"]]
    for group in listing["groups"]:
        for e in group["entries"]:
            value = e["value"]
            text = ("true" if value else "false") if e["type"] == "boolean" else (
                repr(float(value)) if e["type"] == "double" else str(value))
            rows.append({
                "group": group["name"], "name": e["name"], "type": e["type"], "value": text,
                "unit": e["unit_symbol"] or "", "quantity": e["quantity"] or "",
                "base_value": repr(e["base_value"]) if e["unit"] else "",
                "base_unit": e["base_unit"] or "",
            })
    return rows


def download(alice, element, fmt, **params):
    response = alice.get(f"/api/v1/elements/{element['id']}/metadata/export",
                         params={"format": fmt, **params})
    assert response.status_code == 200, response.text
    return response


def test_csv_parses_back(alice, element):
    response = download(alice, element, "csv")
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.content.decode("utf-8"), newline="")))
    assert rows == expected_rows(alice, element)
    assert any(r["value"] == NASTY for r in rows)


def test_json_parses_back(alice, element):
    document = json.loads(download(alice, element, "json").content)
    assert document["element"] == {"id": element["id"], "name": element["name"],
                                   "kind": "folder"}
    assert document["metadata"] == expected_rows(alice, element)


def test_xml_parses_back_with_everything_escaped(alice, element):
    content = download(alice, element, "xml").content
    root = SafeET.fromstring(content)
    assert root.tag == "metadata" and root.get("element-id") == element["id"]
    assert root.get("element-name") == element["name"]
    rows = [{key: (e.text or "") if key == "value" else e.get(key, "") for key in COLUMNS}
            for e in root.findall("entry")]
    expected = expected_rows(alice, element)
    # XML 1.0 cannot carry U+0001: it is replaced, everything else comes back intact.
    for row in expected:
        row["value"] = row["value"].replace("\x01", "\ufffd")
    assert rows == expected
    assert b"<tag" not in content and b"<xml>" not in content


def test_file_name_defaults_to_the_element_name(alice, element):
    for fmt in ("csv", "json", "xml"):
        disposition = download(alice, element, fmt).headers["content-disposition"]
        assert disposition.startswith("attachment;")
        assert "filename*=UTF-8''Export%20_test_%20_1_-2." + fmt in disposition
    named = download(alice, element, "csv", filename="run 1 métadonnées")
    assert "filename*=UTF-8''run%201%20m%C3%A9tadonn%C3%A9es.csv" in \
        named.headers["content-disposition"]
    assert default_filename("../../etc/passwd", "json") == "_.._etc_passwd.json"
    assert default_filename("...", "xml") == "metadata.xml"


def test_unknown_format_is_422(alice, element):
    assert_error(alice.get(f"/api/v1/elements/{element['id']}/metadata/export",
                           params={"format": "xlsx"}), 422, "csv, json or xml")

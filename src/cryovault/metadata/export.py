"""Metadata export of one element as CSV, JSON or XML (SPEC MD-4).

All three carry the same rows (metadata/service.py: export_rows): the General fields, then every
entry with its group, type, value as entered, unit, quantity and the value in SI base units.
XML is written with xml.etree.ElementTree, which escapes markup; characters that XML 1.0 cannot
carry at all (most control characters) are replaced by U+FFFD so the file always parses.
"""

from __future__ import annotations

import csv
import io
import json
import re
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass

from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR
from cryovault.errors import Invalid
from cryovault.metadata.service import export_rows, list_metadata

FORMATS = {"csv": "text/csv; charset=utf-8", "json": "application/json",
           "xml": "application/xml"}
COLUMNS = ("group", "name", "type", "value", "unit", "quantity", "base_value", "base_unit")
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")
_NOT_FILENAME = re.compile(r'[\x00-\x1f\x7f"\\/:*?<>|]+')


@dataclass(frozen=True)
class ExportFile:
    filename: str
    media_type: str
    content: bytes


def default_filename(element_name: str, fmt: str) -> str:
    stem = _NOT_FILENAME.sub("_", element_name).strip(" .") or "metadata"
    return f"{stem[:200]}.{fmt}"


def export_metadata(db: Session, actor: Actor, element_id: uuid.UUID, fmt: str,
                    filename: str | None = None) -> ExportFile:
    fmt = (fmt or "").lower()
    if fmt not in FORMATS:
        raise Invalid(f"unknown export format {fmt!r}: choose csv, json or xml")
    # Exporting is a collaborator's right (SPEC AC-2).
    require_access(db, actor, element_id, COLLABORATOR, "export the metadata of")
    listing = list_metadata(db, actor, element_id)
    rows = export_rows(listing)
    element = listing.element
    if fmt == "csv":
        content = to_csv(rows)
    elif fmt == "json":
        content = to_json(str(element.id), element.name, element.kind, rows)
    else:
        content = to_xml(str(element.id), element.name, element.kind, rows)
    name = default_filename(filename or element.name, fmt)
    if filename and not name.endswith(f".{fmt}"):
        name = f"{name}.{fmt}"
    return ExportFile(name, FORMATS[fmt], content)


def to_csv(rows: list[dict[str, str]]) -> bytes:
    buffer = io.StringIO(newline="")
    writer = csv.DictWriter(buffer, fieldnames=COLUMNS, lineterminator="\r\n")
    writer.writeheader()
    writer.writerows(rows)
    return buffer.getvalue().encode("utf-8")


def to_json(element_id: str, name: str, kind: str, rows: list[dict[str, str]]) -> bytes:
    document = {"element": {"id": element_id, "name": name, "kind": kind}, "metadata": rows}
    return json.dumps(document, ensure_ascii=False, indent=2).encode("utf-8")


def _xml_text(value: str) -> str:
    return _NOT_XML.sub("\ufffd", value)


def to_xml(element_id: str, name: str, kind: str, rows: list[dict[str, str]]) -> bytes:
    root = ET.Element("metadata", {"element-id": element_id, "element-name": _xml_text(name),
                                   "element-kind": kind})
    for row in rows:
        attributes = {key: _xml_text(row[key]) for key in COLUMNS if key != "value" and row[key]}
        entry = ET.SubElement(root, "entry", attributes)
        entry.text = _xml_text(row["value"])
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)

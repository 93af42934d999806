"""Reading XML written by .NET's DataContractSerializer, as EPU writes all its files.

What this module knows about that serialisation (FORMATS.md §1.3):

- elements are matched on their *local* name: the namespace prefixes (``a:``, ``b:`` …) change
  from place to place and between EPU versions;
- ``i:nil="true"`` marks a null; ``z:Ref="n"`` (usually together with ``i:nil``) stands for the
  element carrying ``z:Id="n"`` elsewhere in the document;
- numbers use the invariant culture (``1.2E-05``, ``NaN``); times are ISO 8601 with up to 7
  fractional digits and an offset or ``Z``.

XML is parsed with defusedxml: entity declarations and external references are refused.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterator
from datetime import UTC, datetime
from xml.etree.ElementTree import Element, ParseError

from defusedxml import DefusedXmlException, EntitiesForbidden, ExternalReferenceForbidden
from defusedxml.ElementTree import fromstring

from cryovault.ingest.errors import IngestFormatError

XSI_NIL = "{http://www.w3.org/2001/XMLSchema-instance}nil"
XSI_TYPE = "{http://www.w3.org/2001/XMLSchema-instance}type"
Z_ID = "{http://schemas.microsoft.com/2003/10/Serialization/}Id"
Z_REF = "{http://schemas.microsoft.com/2003/10/Serialization/}Ref"
Z_ASSEMBLY = "{http://schemas.microsoft.com/2003/10/Serialization/}Assembly"

_FRACTION = re.compile(r"(\.\d{6})\d+")
_ASSEMBLY_VERSION = re.compile(r"Version=(\d+(?:\.\d+)*)")


def local_name(tag: str) -> str:
    return tag.rsplit("}", 1)[-1]


def assembly_version(element: Element) -> str | None:
    """``3.9.1.8206`` from ``z:Assembly="Applications.Epu.Persistence, Version=3.9.1.8206, …"``."""
    match = _ASSEMBLY_VERSION.search(element.get(Z_ASSEMBLY, ""))
    return match.group(1) if match else None


def _is_nil(element: Element) -> bool:
    return element.get(XSI_NIL, "").strip().lower() == "true"


class Document:
    """One parsed file: its root and the lookups the parsers need, with errors naming the file."""

    def __init__(self, root: Element, label: str) -> None:
        self.root = root
        self.label = label
        self._ids: dict[str, Element] | None = None

    # -- structure -----------------------------------------------------------------------------

    def resolve(self, element: Element | None) -> Element | None:
        """The element itself, the one a ``z:Ref`` points to, or None for a null."""
        if element is None:
            return None
        reference = element.get(Z_REF)
        if reference is not None:
            if self._ids is None:
                self._ids = {e.get(Z_ID, ""): e for e in self.root.iter() if e.get(Z_ID)}
            target = self._ids.get(reference)
            return None if target is None or _is_nil(target) else target
        return None if _is_nil(element) else element

    def child(self, element: Element | None, name: str) -> Element | None:
        if element is None:
            return None
        for candidate in element:
            if local_name(candidate.tag) == name:
                return self.resolve(candidate)
        return None

    def find(self, element: Element | None, *path: str) -> Element | None:
        for name in path:
            element = self.child(element, name)
            if element is None:
                return None
        return element

    def require(self, element: Element | None, *path: str) -> Element:
        found = self.find(element, *path)
        if found is None:
            raise IngestFormatError(f"{self.label}: missing {'/'.join(path)}")
        return found

    def children(self, element: Element | None, prefix: str) -> Iterator[Element]:
        """Non-null children whose local name starts with ``prefix`` (hash-suffixed generic
        collection items such as ``KeyValuePairOfintNodeXml30oatNZW``)."""
        if element is None:
            return
        for candidate in element:
            if local_name(candidate.tag).startswith(prefix):
                resolved = self.resolve(candidate)
                if resolved is not None:
                    yield resolved

    def descendants(self, element: Element | None, prefix: str) -> Iterator[Element]:
        """Like :meth:`children` at any depth (the wrappers around collections vary)."""
        if element is None:
            return
        for candidate in element.iter():
            if candidate is not element and local_name(candidate.tag).startswith(prefix):
                resolved = self.resolve(candidate)
                if resolved is not None:
                    yield resolved

    # -- values --------------------------------------------------------------------------------

    def text(self, element: Element | None, *path: str, what: str | None = None) -> str | None:
        """Stripped text, or None when the element is missing, null or empty."""
        found = self.find(element, *path) if path else self.resolve(element)
        if found is None or found.text is None:
            return None
        value = found.text.strip()
        return value or None

    def number(
        self, element: Element | None, *path: str, what: str | None = None
    ) -> float | None:
        value = self.text(element, *path)
        if value is None:
            return None
        try:
            number = float(value)
        except ValueError:
            raise IngestFormatError(
                f"{self.label}: {what or '/'.join(path) or 'value'} is not a number: {value[:40]!r}"
            ) from None
        return None if math.isnan(number) or math.isinf(number) else number

    def integer(
        self, element: Element | None, *path: str, what: str | None = None
    ) -> int | None:
        number = self.number(element, *path, what=what)
        if number is None:
            return None
        if not number.is_integer():
            name = what or "/".join(path) or "value"
            raise IngestFormatError(f"{self.label}: {name} is not a whole number: {number}")
        return int(number)

    def boolean(
        self, element: Element | None, *path: str, what: str | None = None
    ) -> bool | None:
        value = self.text(element, *path)
        if value is None:
            return None
        lowered = value.lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise IngestFormatError(
            f"{self.label}: {what or '/'.join(path) or 'value'} is not true/false: {value[:40]!r}")

    def timestamp(
        self, element: Element | None, *path: str, what: str | None = None
    ) -> datetime | None:
        """A timezone-aware UTC datetime; a value without offset is taken as UTC, and .NET's
        ``0001-01-01T00:00:00`` (never set) gives None."""
        value = self.text(element, *path)
        if value is None:
            return None
        try:
            moment = datetime.fromisoformat(_FRACTION.sub(r"\1", value))
        except ValueError:
            raise IngestFormatError(
                f"{self.label}: {what or '/'.join(path) or 'value'} is not an ISO 8601 time: "
                f"{value[:40]!r}"
            ) from None
        if moment.year <= 1:
            return None
        if moment.tzinfo is None:
            return moment.replace(tzinfo=UTC)
        return moment.astimezone(UTC)

    def key_values(self, element: Element | None) -> dict[str, Element]:
        """A serialised ``Dictionary<string, object>``: key text → value element (null values
        left out). Handles both layouts EPU uses: ``KeyValueOfstringanyType/{Key,Value}``
        directly inside the element and ``KeyValuePairs/KeyValuePairOfstringanyType/{key,value}``.
        """
        result: dict[str, Element] = {}
        if element is None:
            return result
        pairs = list(self.children(element, "KeyValueOf"))
        pairs += list(self.children(self.child(element, "KeyValuePairs"), "KeyValuePairOf"))
        for pair in pairs:
            key = self.text(pair, "Key") or self.text(pair, "key")
            value = self.child(pair, "Value")
            if value is None:
                value = self.child(pair, "value")
            if key is not None and value is not None:
                result[key] = value
        return result


def load(data: bytes, label: str, root_name: str, what: str) -> Document:
    """Parse ``data`` safely and check its root element.

    ``label`` names the file in messages (e.g. ``EpuSession.dm``); ``what`` describes the kind
    of file for a wrong-root message (e.g. ``EPU session file``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise IngestFormatError(f"{label}: expected the file's bytes, got {type(data).__name__}")
    data = bytes(data)
    if not data.strip():
        raise IngestFormatError(f"{label}: the file is empty", possibly_incomplete=True)
    try:
        root = fromstring(data, forbid_dtd=False, forbid_entities=True, forbid_external=True)
    except (EntitiesForbidden, ExternalReferenceForbidden) as exc:
        external = isinstance(exc, ExternalReferenceForbidden) or bool(
            getattr(exc, "sysid", None) or getattr(exc, "pubid", None))
        reason = "external entities are not allowed" if external else (
            "entity declarations are not allowed")
        raise IngestFormatError(f"{label}: {reason}") from None
    except DefusedXmlException as exc:
        raise IngestFormatError(f"{label}: refused unsafe XML ({exc})") from None
    except ParseError as exc:
        line, column = exc.position
        message = str(exc).split(":", 1)[0]
        incomplete = message in ("no element found", "unclosed token")
        hint = " (the file may still be being written)" if incomplete else ""
        raise IngestFormatError(
            f"{label}: not well-formed XML at line {line}, column {column + 1}: {message}{hint}",
            possibly_incomplete=incomplete,
        ) from None
    except (ValueError, UnicodeError) as exc:
        raise IngestFormatError(f"{label}: not readable as XML ({exc})") from None
    found = local_name(root.tag)
    if found != root_name:
        raise IngestFormatError(f"unknown {what}: no {root_name} root (found <{found}>)")
    return Document(root, label)

"""Typed metadata values (SPEC MD-3): parsing and validation of each type.

A value arrives as JSON (a string, number or boolean) or as a form field (always a string) and is
checked against its type; the canonical text form is what the index and exports carry.
"""

from __future__ import annotations

import math
import unicodedata
from dataclasses import dataclass
from datetime import date

from cryovault.errors import Invalid

TYPES = ("string", "boolean", "date", "double", "integer")
NUMERIC = frozenset({"double", "integer"})
MAX_STRING = 10_000
MAX_NAME = 255
MIN_DATE, MAX_DATE = date(1900, 1, 1), date(2199, 12, 31)
MAX_INTEGER = 2**53 - 1  # every integer up to this is exact in a double and in JSON clients
MAX_DOUBLE = 1e300
_TRUE = {"true", "yes", "1", "on"}
_FALSE = {"false", "no", "0", "off"}


@dataclass(frozen=True)
class ParsedValue:
    text: str  # canonical text: "true", "2024-05-01", "35.5", "12"
    number: float | None


def validate_type(value_type: str) -> str:
    if value_type not in TYPES:
        raise Invalid(f"unknown type {value_type!r}: choose one of {', '.join(TYPES)}")
    return value_type


def validate_name(name: str) -> str:
    name = (name or "").strip()
    if not name:
        raise Invalid("a metadata name must not be empty")
    if len(name) > MAX_NAME:
        raise Invalid(f"a metadata name must not be longer than {MAX_NAME} characters")
    if any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in name):
        raise Invalid("a metadata name must not contain control characters")
    return name


def name_key(name: str) -> str:
    return name.casefold()[:255]


def format_double(number: float) -> str:
    return repr(float(number))


def parse_value(value_type: str, value: object) -> ParsedValue:
    validate_type(value_type)
    if value is None:
        raise Invalid(f"a {value_type} value is required")
    if value_type == "string":
        return ParsedValue(_string(value), None)
    if value_type == "boolean":
        return ParsedValue("true" if _boolean(value) else "false", None)
    if value_type == "date":
        return ParsedValue(_date(value).isoformat(), None)
    if value_type == "integer":
        number = _integer(value)
        return ParsedValue(str(number), float(number))
    number = _double(value)
    return ParsedValue(format_double(number), number)


def _string(value: object) -> str:
    if not isinstance(value, str):
        raise Invalid("a string value must be text")
    if len(value) > MAX_STRING:
        raise Invalid(f"a string value must not be longer than {MAX_STRING} characters")
    if any(unicodedata.category(ch) == "Cc" and ch not in "\t\n\r" for ch in value):
        raise Invalid("a string value must not contain control characters")
    if any(0xD800 <= ord(ch) <= 0xDFFF for ch in value):
        raise Invalid("a string value must be valid Unicode text")
    return value


def _boolean(value: object) -> bool:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
        return value.strip().lower() in _TRUE
    raise Invalid(f"{_show(value)} is not a boolean: use true or false")


def _date(value: object) -> date:
    if not isinstance(value, str):
        raise Invalid(f"{_show(value)} is not a date: use YYYY-MM-DD")
    try:
        parsed = date.fromisoformat(value.strip())
    except ValueError:
        raise Invalid(f"{_show(value)} is not a date: use YYYY-MM-DD (e.g. 2024-05-31)") from None
    if not MIN_DATE <= parsed <= MAX_DATE:
        raise Invalid(f"date {parsed.isoformat()} is out of range: dates go from "
                      f"{MIN_DATE.isoformat()} to {MAX_DATE.isoformat()}")
    return parsed


def _integer(value: object) -> int:
    if isinstance(value, bool):
        raise Invalid(f"{_show(value)} is not an integer")
    if isinstance(value, int):
        number = value
    elif isinstance(value, float) and value.is_integer():
        number = int(value)
    elif isinstance(value, str):
        try:
            number = int(value.strip().replace("_", "x"))  # no "1_000": digits only
        except ValueError:
            raise Invalid(f"{_show(value)} is not an integer (whole number)") from None
    else:
        raise Invalid(f"{_show(value)} is not an integer (whole number)")
    if abs(number) > MAX_INTEGER:
        raise Invalid(f"an integer must lie between -{MAX_INTEGER} and {MAX_INTEGER}")
    return number


def _double(value: object) -> float:
    if isinstance(value, bool):
        raise Invalid(f"{_show(value)} is not a number")
    if isinstance(value, int | float):
        number = float(value)
    elif isinstance(value, str):
        text = value.strip()
        if not text or "_" in text:
            raise Invalid(f"{_show(value)} is not a number")
        try:
            number = float(text)
        except ValueError:
            raise Invalid(f"{_show(value)} is not a number (e.g. 1.5 or 2e-3)") from None
    else:
        raise Invalid(f"{_show(value)} is not a number")
    if not math.isfinite(number) or abs(number) > MAX_DOUBLE:
        raise Invalid(f"a double must be a finite number no larger than {MAX_DOUBLE:g}")
    return number


def _show(value: object) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "…"

"""Typed metadata through the API (SPEC MD-2, MD-3): round trips of every type, every unit
change of every quantity, bad input as clear 422s, permissions."""

from __future__ import annotations

import math

import pytest
from fastapi.testclient import TestClient

from cryovault.metadata.quantities import get_quantity, quantities, ureg
from tests.helpers import assert_error


def meta_url(element: dict, suffix: str = "") -> str:
    return f"/api/v1/elements/{element['id']}/metadata{suffix}"


def add(user, element, **body):
    return user.post(meta_url(element), json=body)


def entries(user, element) -> dict[str, dict]:
    response = user.get(meta_url(element))
    assert response.status_code == 200, response.text
    return {e["name"]: e for g in response.json()["groups"] for e in g["entries"]}


@pytest.fixture
def lenient(app) -> TestClient:
    return TestClient(app, raise_server_exceptions=False)


@pytest.mark.parametrize(("value_type", "value", "stored"), [
    ("string", "apoferritin in HEPES, pH 7.5 — «grid #3»",
     "apoferritin in HEPES, pH 7.5 — «grid #3»"),
    ("string", "", ""),
    ("boolean", True, True),
    ("boolean", False, False),
    ("boolean", "yes", True),
    ("date", "2024-02-29", "2024-02-29"),
    ("double", 1.5e-3, 1.5e-3),
    ("double", "-2.25", -2.25),
    ("double", 0, 0.0),
    ("integer", 42, 42),
    ("integer", "-7", -7),
    ("integer", 2**53 - 1, 2**53 - 1),
])
def test_every_type_round_trips(alice, value_type, value, stored):
    folder = alice.create("folder", "Round trip")
    response = add(alice, folder, name="Value", type=value_type, value=value)
    assert response.status_code == 201, response.text
    assert response.json()["value"] == stored
    again = entries(alice, folder)["Value"]
    assert again["type"] == value_type and again["value"] == stored
    assert again["group"] == "Custom"
    if value_type in ("double", "integer"):
        assert again["base_value"] == pytest.approx(stored)
        assert again["unit"] is None
    # The general fields (MD-1) come first, read-only.
    general = alice.get(meta_url(folder)).json()["general"]
    assert [f["name"] for f in general][:3] == ["Name", "Kind", "Id"]


def test_groups_are_ordered_and_the_filter_narrows(alice):
    folder = alice.create("folder", "Groups")
    add(alice, folder, name="Defocus", type="double", value=-1.2, quantity="length",
        unit="micrometer", group="Acquisition")
    add(alice, folder, name="Microscope", type="string", value="Krios G4", group="Instrument")
    add(alice, folder, name="Operator note", type="string", value="ok")
    add(alice, folder, name="Detector", type="string", value="Falcon 4i", group="Core")
    groups = [g["name"] for g in alice.get(meta_url(folder)).json()["groups"]]
    assert groups == ["Core", "Instrument", "Acquisition", "Custom"]
    filtered = alice.get(meta_url(folder), params={"filter": "krios"}).json()
    assert [(g["name"], [e["name"] for e in g["entries"]]) for g in filtered["groups"]] == [
        ("Instrument", ["Microscope"])]
    by_unit = alice.get(meta_url(folder), params={"filter": "µm"}).json()
    assert [e["name"] for g in by_unit["groups"] for e in g["entries"]] == ["Defocus"]


def test_every_unit_change_keeps_the_physical_value(alice):
    """For every quantity, a value set in its first unit is converted to each other unit and
    back: the base value never moves, the displayed value is pint's conversion."""
    folder = alice.create("folder", "Units")
    for q_index, quantity in enumerate(quantities()):
        first = quantity.units[0]
        created = add(alice, folder, name=f"q{q_index}", type="double", value=3.0,
                      quantity=quantity.name, unit=first.name)
        assert created.status_code == 201, (quantity.name, created.text)
        entry = created.json()
        base = entry["base_value"]
        expected_base = ureg.Quantity(3.0, first.name).to_base_units().magnitude
        assert base == pytest.approx(expected_base, rel=1e-12)
        assert entry["base_unit"] == quantity.base_unit
        for unit in quantity.units[1:]:
            changed = alice.patch(meta_url(folder, f"/{entry['id']}"), json={"unit": unit.name})
            assert changed.status_code == 200, (quantity.name, unit.name, changed.text)
            body = changed.json()
            assert body["unit"] == unit.name and body["unit_symbol"] == unit.symbol
            expected = ureg.Quantity(3.0, first.name).to(unit.name).magnitude
            assert body["value"] == pytest.approx(expected, rel=1e-12), (quantity.name, unit)
            assert body["base_value"] == pytest.approx(base, rel=1e-9), (quantity.name, unit)
        back = alice.patch(meta_url(folder, f"/{entry['id']}"), json={"unit": first.name})
        assert back.json()["value"] == pytest.approx(3.0, rel=1e-12)


def test_integer_unit_change_converts_or_refuses(alice):
    folder = alice.create("folder", "Integers")
    entry = add(alice, folder, name="Tilt", type="integer", value=2, quantity="angle",
                unit="degree").json()
    converted = alice.patch(meta_url(folder, f"/{entry['id']}"), json={"unit": "arcminute"})
    assert converted.status_code == 200 and converted.json()["value"] == 120
    assert isinstance(converted.json()["value"], int)
    refused = alice.patch(meta_url(folder, f"/{entry['id']}"), json={"unit": "radian"})
    assert_error(refused, 422, "whole number")
    assert entries(alice, folder)["Tilt"]["value"] == 120  # unchanged


def test_temperature_offsets_convert_through_kelvin(alice):
    folder = alice.create("folder", "Cryo")
    entry = add(alice, folder, name="Stage temperature", type="double", value=-180,
                unit="degree_Celsius").json()
    assert entry["quantity"] == "temperature"  # inferred from the unit
    assert entry["base_value"] == pytest.approx(93.15)
    kelvin = alice.patch(meta_url(folder, f"/{entry['id']}"), json={"unit": "kelvin"}).json()
    assert kelvin["value"] == pytest.approx(93.15) and kelvin["base_value"] == pytest.approx(93.15)


def test_edit_value_name_type_and_remove(alice):
    folder = alice.create("folder", "Edit")
    entry = add(alice, folder, name="Dose", type="double", value=40, quantity="dose",
                unit="elementary_charge / angstrom ** 2").json()
    assert entry["unit_symbol"] == "e/Å²"
    url = meta_url(folder, f"/{entry['id']}")
    edited = alice.patch(url, json={"value": 55.5, "unit": "elementary_charge / nanometer ** 2"})
    assert edited.json()["value"] == 55.5  # a value with the unit is taken as given
    assert edited.json()["base_value"] == pytest.approx(55.5 * 1.602176634e-19 / 1e-18)
    renamed = alice.patch(url, json={"name": "Total dose"}).json()
    assert renamed["name"] == "Total dose" and renamed["value"] == 55.5
    retyped = alice.patch(url, json={"type": "string", "value": "high", "unit": None,
                                     "quantity": None}).json()
    assert (retyped["type"], retyped["value"], retyped["unit"]) == ("string", "high", None)
    assert alice.delete(url).status_code == 204
    assert entries(alice, folder) == {}
    assert_error(alice.delete(url), 404, "no metadata entry")


BAD_INPUT = [
    ({"name": "x", "type": "integer", "value": "12.5"}, "not an integer"),
    ({"name": "x", "type": "integer", "value": 1.5}, "not an integer"),
    ({"name": "x", "type": "integer", "value": True}, "not an integer"),
    ({"name": "x", "type": "integer", "value": 2**60}, "between"),
    ({"name": "x", "type": "double", "value": "abc"}, "not a number"),
    ({"name": "x", "type": "double", "value": "nan"}, "finite"),
    ({"name": "x", "type": "double", "value": "inf"}, "finite"),
    ({"name": "x", "type": "double", "value": "1e400"}, "finite"),
    ({"name": "x", "type": "boolean", "value": "maybe"}, "not a boolean"),
    ({"name": "x", "type": "date", "value": "2023-02-30"}, "not a date"),
    ({"name": "x", "type": "date", "value": "1899-12-31"}, "out of range"),
    ({"name": "x", "type": "date", "value": "9999-01-01"}, "out of range"),
    ({"name": "x", "type": "date", "value": "yesterday"}, "not a date"),
    ({"name": "x", "type": "string", "value": 5}, "must be text"),
    ({"name": "x", "type": "string", "value": "bell\x07"}, "control characters"),
    ({"name": "x", "type": "double", "value": 1, "quantity": "angle", "unit": "nanometer"},
     "not a unit of angle"),
    ({"name": "x", "type": "double", "value": 1, "quantity": "length", "unit": "parsec"},
     "not a unit of length"),
    ({"name": "x", "type": "double", "value": 1, "quantity": "angle"}, "choose a unit"),
    ({"name": "x", "type": "double", "value": 1, "quantity": "wisdom", "unit": "m"},
     "unknown quantity"),
    ({"name": "x", "type": "double", "value": 1, "unit": "furlong"}, "not a unit"),
    ({"name": "x", "type": "double", "value": 1, "unit": "1/0)**("}, "not a unit"),
    ({"name": "x", "type": "string", "value": "a", "unit": "meter"}, "no unit"),
    ({"name": "", "type": "string", "value": "a"}, "must not be empty"),
    ({"name": "tab\there", "type": "string", "value": "a"}, "control characters"),
    ({"name": "x", "type": "string", "value": "a", "group": "General"}, "General"),
    ({"name": "x", "type": "double"}, "required"),
]


@pytest.mark.parametrize(("body", "words"), BAD_INPUT)
def test_bad_values_are_clear_422s(alice, lenient, body, words):
    folder = alice.create("folder", "Bad input")
    response = lenient.post(meta_url(folder), json=body, headers=alice.headers)
    assert_error(response, 422, words, case=body)
    assert entries(alice, folder) == {}


@pytest.mark.parametrize("body", [
    {"name": "x", "type": "colour", "value": "red"},
    {"name": "x", "type": "string", "value": "a", "extra": 1},
    {"name": "x", "type": "string", "value": {"nested": 1}},
    {"name": "x", "type": "string", "value": [1, 2]},
])
def test_malformed_bodies_are_422(alice, lenient, body):
    folder = alice.create("folder", "Malformed")
    response = lenient.post(meta_url(folder), json=body, headers=alice.headers)
    assert_error(response, 422)


def test_duplicate_names_are_refused_case_insensitively(alice):
    folder = alice.create("folder", "Duplicates")
    assert add(alice, folder, name="Pixel size", type="double", value=0.83).status_code == 201
    assert_error(add(alice, folder, name="pixel SIZE", type="string", value="x"), 422,
                 "already has metadata named")
    other = add(alice, folder, name="Other", type="string", value="y").json()
    assert_error(alice.patch(meta_url(folder, f"/{other['id']}"), json={"name": "Pixel Size"}),
                 422, "already has")


def test_permissions(alice, bob, make_user):
    folder = alice.create("folder", "Shared")
    entry = add(alice, folder, name="Voltage", type="double", value=300, unit="kilovolt").json()
    assert entry["quantity"] == "voltage"
    # Invisible to bob: 404 for everything, existence not revealed.
    assert_error(bob.get(meta_url(folder)), 404)
    assert_error(add(bob, folder, name="x", type="string", value="y"), 404)
    assert_error(bob.get(meta_url(folder, "/export"), params={"format": "csv"}), 404)
    # Viewer: reads, cannot write or export (export is a collaborator's right, AC-2).
    grants = [{"username": "alice", "level": "owner"}, {"username": "bob", "level": "viewer"}]
    alice.put(f"/api/v1/elements/{folder['id']}/sharing",
              json={"privacy": "private", "grants": grants})
    assert bob.get(meta_url(folder)).status_code == 200
    assert_error(add(bob, folder, name="x", type="string", value="y"), 403, "collaborator")
    assert_error(bob.patch(meta_url(folder, f"/{entry['id']}"), json={"value": 1}), 403)
    assert_error(bob.delete(meta_url(folder, f"/{entry['id']}")), 403)
    assert_error(bob.get(meta_url(folder, "/export"), params={"format": "csv"}), 403)
    # Collaborator: writes.
    grants[1]["level"] = "collaborator"
    alice.put(f"/api/v1/elements/{folder['id']}/sharing",
              json={"privacy": "private", "grants": grants})
    assert add(bob, folder, name="Spot size", type="integer", value=7).status_code == 201
    # Malformed ids are 404s.
    assert_error(alice.get("/api/v1/elements/not-a-uuid/metadata"), 404)
    assert_error(alice.delete(meta_url(folder, "/not-a-uuid")), 404)


def test_known_names_only_from_readable_elements(alice, bob):
    mine = alice.create("folder", "Mine")
    add(alice, mine, name="Secret protein", type="string", value="x")
    add(alice, mine, name="Grid type", type="string", value="Quantifoil")
    bobs = bob.create("folder", "Bob's")
    add(bob, bobs, name="Grid bars", type="integer", value=300)
    names = bob.get("/api/v1/metadata/names", params={"prefix": "gr"}).json()["items"]
    assert names == [{"name": "Grid bars", "type": "integer"}]
    names = alice.get("/api/v1/metadata/names", params={"prefix": "%"}).json()["items"]
    assert names == []  # LIKE wildcards are literal


def test_quantities_come_from_pint(alice):
    items = alice.get("/api/v1/metadata/quantities").json()["items"]
    by_name = {q["name"]: q for q in items}
    for name in ("angle", "length", "time", "dose", "voltage", "current", "temperature", "mass",
                 "molar concentration", "mass concentration"):
        assert name in by_name
    angle = {u["symbol"] for u in by_name["angle"]["units"]}
    assert {"deg", "arcmin", "rad", "mrad"} <= angle and "%" not in angle
    length = {u["symbol"] for u in by_name["length"]["units"]}
    assert {"Å", "nm", "µm", "mm"} <= length and "mi" not in length
    assert "e/Å²" in {u["symbol"] for u in by_name["dose"]["units"]}
    for q in items:  # every unit listed is one pint converts to the quantity's base unit
        quantity = get_quantity(q["name"])
        for unit in q["units"]:
            magnitude = ureg.Quantity(1, unit["name"]).to_base_units()
            assert f"{magnitude.units:~P}" == quantity.base_unit
            assert math.isfinite(magnitude.magnitude)

"""Physical quantities and their units, taken from pint's registry (SPEC MD-3).

Nothing here lists units by hand. A quantity is named by the field's word and defined by a
reference unit (its dimensionality) and the range of magnitudes a microscopist meets; its units
are what pint's registry holds for that dimensionality, filtered by rules:

- the reference unit with pint's SI prefixes in steps of 1000 (nm, µm, kV, pA, mg …);
- pint's other named units of the same dimensionality and root units (Å, degree, arcminute, hour,
  °C …; not rpm for a frequency, which pint roots in radians), but not units derived from pint's
  physical constants (constants_en.txt: Bohr radius, hartree …), nor units of its non-metric
  groups (US customary, imperial, printers', textile …) or of the Gaussian/ESU systems;
- one unit per magnitude: a unit within 1 % of one already kept is a duplicate (micron = µm,
  conventional volts, Å*);
- only magnitudes within the quantity's range (no parsecs for a pixel size).

Compound quantities (dose, mass concentration) are products of the unit lists of simple ones,
filtered by their own range. Values are normalised to pint's SI base units of the quantity.
"""

from __future__ import annotations

import importlib.resources
import itertools
import math
import re
from dataclasses import dataclass
from functools import cache

import pint

from cryovault.errors import Invalid

ureg = pint.UnitRegistry()

MAX_UNIT_TEXT = 128


@dataclass(frozen=True)
class QuantitySpec:
    name: str
    reference: str  # a pint unit expression: the quantity's dimensionality and magnitude scale
    low: float  # range of unit magnitudes kept, in `reference` units
    high: float
    template: str | None = None  # compound: "{quantity} / {quantity} ** 2" over simple ones
    prefixed: bool = True
    multiples: bool = True  # also prefixes above 1 (k, M …); time uses minutes, hours, days


# The quantities a microscopist records. Units come from pint (see the module's docstring).
QUANTITY_SPECS: tuple[QuantitySpec, ...] = (
    QuantitySpec("angle", "radian", 1e-7, 10),
    QuantitySpec("length", "meter", 1e-12, 10),
    QuantitySpec("time", "second", 1e-12, 1e6, multiples=False),
    QuantitySpec("frequency", "hertz", 1e-3, 1e12),
    QuantitySpec("dose", "elementary_charge / angstrom ** 2", 1e-8, 1e4,
                 template="elementary_charge / {length} ** 2"),
    QuantitySpec("voltage", "volt", 1e-6, 1e7),
    QuantitySpec("current", "ampere", 1e-15, 1),
    QuantitySpec("energy", "electron_volt", 1e-3, 1e7),
    QuantitySpec("temperature", "kelvin", 0.1, 10, prefixed=False),
    QuantitySpec("mass", "gram", 1e-12, 1e3),
    QuantitySpec("molecular mass", "dalton", 1, 1e10),
    QuantitySpec("volume", "liter", 1e-12, 10),
    QuantitySpec("molar concentration", "molar", 1e-15, 10),
    QuantitySpec("mass concentration", "milligram / milliliter", 1e-6, 1e3,
                 template="{mass} / {volume}"),
)

# pint groups of units outside the metric practice of a laboratory.
_FOREIGN_GROUP = re.compile(r"^(USCS|Imperial|Avoirdupois|Troy|Apothecary|Printer|Textile|"
                            r"Gaussian|ESU)")


@dataclass(frozen=True)
class UnitChoice:
    name: str  # pint's canonical spelling, stored with values: "micrometer", "degree"
    symbol: str  # for display: "µm", "deg", "e/Å²"
    scale: float  # magnitude in the quantity's reference unit (offsets aside)


@dataclass(frozen=True)
class Quantity:
    name: str
    reference: str
    base_unit: str  # pint's SI base units of the dimensionality, as stored for base values
    units: tuple[UnitChoice, ...]

    def find(self, text: str) -> UnitChoice | None:
        return _unit_index(self.name).get(text.strip())


@cache
def _constants() -> frozenset[str]:
    """Names defined in pint's file of physical constants (elementary_charge, proton_mass …)."""
    text = importlib.resources.files("pint").joinpath("constants_en.txt").read_text("utf-8")
    return frozenset(m.group(1) for m in re.finditer(r"^([A-Za-z_]\w*)\s*=", text, re.M))


@cache
def _foreign_units() -> frozenset[str]:
    names: set[str] = set()
    for group in ureg._groups:  # pint exposes groups only by name
        if _FOREIGN_GROUP.match(group):
            names |= set(ureg.get_group(group).members)
    return frozenset(names)


def _name(unit: pint.Unit) -> str:
    return format(unit, "D")


@cache
def _uses_constant(name: str) -> bool:
    """Whether pint defines the unit, directly or through other units, by a physical constant."""
    definition = ureg._units.get(name)
    if definition is None or definition.reference is None:
        return False
    for part in definition.reference:
        if part.startswith("["):  # a base dimension: the end of the chain
            continue
        resolved = ureg.get_name(part)
        if resolved in _constants() and ureg.Unit(resolved).dimensionless:
            continue  # a mathematical number (π in the degree), not a physical constant
        if resolved in _constants() or _uses_constant(resolved):
            return True
    return False


def _scale(unit: pint.Unit, reference: pint.Unit) -> tuple[float, float]:
    """How many reference units one `unit` is, and where its zero lies (°C, °F), in base units."""
    zero = float(ureg.Quantity(0, unit).to_base_units().magnitude)
    one = float(ureg.Quantity(1, unit).to_base_units().magnitude)
    ref = float(ureg.Quantity(1, reference).to_base_units().magnitude)
    return (one - zero) / ref, zero


def _same_kind(unit: pint.Unit, reference: pint.Unit) -> bool:
    # Same dimensionality and same root units: pint counts angles as dimensionless, so an angle
    # unit is told from a ratio (percent) by its root, the radian; rpm from Hz likewise.
    return (unit.dimensionality == reference.dimensionality
            and ureg.get_root_units(unit)[1] == ureg.get_root_units(reference)[1])


def _simple_units(spec: QuantitySpec) -> list[UnitChoice]:
    reference = ureg.Unit(spec.reference)
    candidates: list[pint.Unit] = [reference]
    if spec.prefixed:
        for prefix in sorted(ureg._prefixes.values(), key=lambda p: p.converter.scale):  # noqa: SLF001
            scale = prefix.converter.scale
            if not prefix.name or scale == 1:
                continue
            exponent = math.log10(scale)
            if abs(exponent - round(exponent)) > 1e-9 or round(exponent) % 3:
                continue
            if scale > 1 and not spec.multiples:
                continue
            candidates.append(ureg.Unit(prefix.name + spec.reference))
    excluded = _constants() | _foreign_units()
    named = [u for u in ureg.get_compatible_units(reference)
             if _name(u) not in excluded and not _uses_constant(_name(u))
             and _same_kind(u, reference)]
    candidates += sorted(named, key=lambda u: (len(_name(u)), _name(u)))
    return _filtered(candidates, reference, spec)


def _filtered(candidates: list[pint.Unit], reference: pint.Unit,
              spec: QuantitySpec) -> list[UnitChoice]:
    kept: list[UnitChoice] = []
    zeros: list[float] = []
    for unit in candidates:
        scale, zero = _scale(unit, reference)
        if not spec.low * (1 - 1e-9) <= scale <= spec.high * (1 + 1e-9):
            continue
        if any(abs(scale - other.scale) <= 0.01 * max(scale, other.scale)
               and abs(zero - other_zero) < 1e-6
               for other, other_zero in zip(kept, zeros, strict=True)):
            continue
        kept.append(UnitChoice(_name(unit), f"{unit:~P}", scale))
        zeros.append(zero)
    return sorted(kept, key=lambda c: c.scale)


def _compound_units(spec: QuantitySpec) -> list[UnitChoice]:
    assert spec.template is not None
    parts = re.findall(r"\{([^}]+)\}", spec.template)
    # Components: the decimal family of each part's reference unit (mg, µl, Å …).
    lists = [[u.name for u in get_quantity(part).units
              if ureg.get_root_units(u.name)[0] in _decimal_scales(get_quantity(part))]
             for part in parts]
    reference = ureg.Unit(spec.reference)
    candidates = []
    for names in itertools.product(*lists):
        expression = spec.template
        for part, name in zip(parts, names, strict=True):
            expression = expression.replace("{" + part + "}", name, 1)
        candidates.append(ureg.Unit(expression))
    # Keep every combination in range (mg/mL and g/L are both in use), not one per magnitude.
    kept: dict[str, UnitChoice] = {}
    for unit in candidates:
        scale, _ = _scale(unit, reference)
        if spec.low * (1 - 1e-9) <= scale <= spec.high * (1 + 1e-9):
            kept.setdefault(_name(unit), UnitChoice(_name(unit), f"{unit:~P}", scale))
    return sorted(kept.values(), key=lambda c: (c.scale, c.symbol))


def _decimal_scales(q: Quantity) -> set[float]:
    base = ureg.get_root_units(q.reference)[0]
    return {ureg.get_root_units(u.name)[0] for u in q.units
            if _is_power_of_10(ureg.get_root_units(u.name)[0] / base)}


def _is_power_of_10(ratio: float) -> bool:
    exponent = math.log10(ratio) if ratio > 0 else 0.5
    return abs(exponent - round(exponent)) < 1e-9


@cache
def get_quantity(name: str) -> Quantity:
    for spec in QUANTITY_SPECS:
        if spec.name == name:
            units = _compound_units(spec) if spec.template else _simple_units(spec)
            base = ureg.Quantity(1, spec.reference).to_base_units().units
            return Quantity(spec.name, spec.reference, f"{base:~P}", tuple(units))
    raise Invalid(f"unknown quantity {name!r}: choose one of {', '.join(quantity_names())}")


def quantity_names() -> list[str]:
    return [spec.name for spec in QUANTITY_SPECS]


def quantities() -> list[Quantity]:
    return [get_quantity(name) for name in quantity_names()]


@cache
def _unit_index(quantity: str) -> dict[str, UnitChoice]:
    """Every accepted spelling of the quantity's units: pint's name, its symbol, its aliases."""
    index: dict[str, UnitChoice] = {}
    for choice in get_quantity(quantity).units:
        unit = ureg.Unit(choice.name)
        for spelling in (choice.name, choice.symbol, f"{unit:~C}", f"{unit:~D}", f"{unit:C}",
                         f"{unit:D}", f"{unit:P}"):
            index.setdefault(spelling, choice)
    return index


def resolve_unit(quantity: str | None, unit_text: str) -> tuple[Quantity, UnitChoice]:
    """The quantity and unit named by a client; the quantity may be left out when the unit
    belongs to exactly one quantity."""
    unit_text = (unit_text or "").strip()
    if not unit_text:
        raise Invalid("choose a unit for the quantity")
    if len(unit_text) > MAX_UNIT_TEXT:
        raise Invalid(f"a unit must not be longer than {MAX_UNIT_TEXT} characters")
    if quantity:
        q = get_quantity(quantity)
        choice = q.find(unit_text) or _parse_into(q, unit_text)
        if choice is None:
            raise Invalid(
                f"{unit_text!r} is not a unit of {q.name}: choose one of "
                f"{', '.join(u.symbol for u in q.units)}"
            )
        return q, choice
    matches = []
    for q in quantities():
        choice = q.find(unit_text) or _parse_into(q, unit_text)
        if choice is not None:
            matches.append((q, choice))
    if not matches:
        raise Invalid(f"{unit_text!r} is not a unit cryovault knows; choose a quantity and one "
                      "of its units")
    if len(matches) > 1:
        raise Invalid(f"unit {unit_text!r} fits several quantities "
                      f"({', '.join(q.name for q, _ in matches)}); name the quantity")
    return matches[0]


def _parse_into(q: Quantity, text: str) -> UnitChoice | None:
    """Let pint read other spellings ("um", "deg", "mg/ml") and map them onto the list."""
    try:
        unit = ureg.Unit(text)
    except Exception:  # pint raises many kinds of errors on arbitrary text
        return None
    by_name = {u.name: u for u in q.units}
    return by_name.get(_name(unit))


def to_base(value: float, quantity: Quantity, unit: UnitChoice) -> float:
    """The value in the SI base units of its quantity (e.g. 2 Å -> 2e-10 m, 20 °C -> 293.15 K)."""
    return float(ureg.Quantity(value, unit.name).to_base_units().magnitude)


def convert(value: float, source: UnitChoice, target: UnitChoice) -> float:
    return float(ureg.Quantity(value, source.name).to(target.name).magnitude)


@cache
def unit_symbol(name: str | None) -> str:
    if not name:
        return ""
    try:
        return f"{ureg.Unit(name):~P}"
    except Exception:  # a unit stored by an older release that pint no longer knows
        return name

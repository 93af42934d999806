"""Metadata of an element (SPEC MD-1 … MD-4): list grouped, add, edit, remove, export.

General metadata (MD-1) comes from the element itself; the other groups from
`metadata_entries`. Reading needs viewer access, writing collaborator access, and every write
keeps the search index current.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field

from sqlalchemy import func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from cryovault.access.actor import Actor
from cryovault.access.guard import require_access
from cryovault.access.levels import COLLABORATOR, VIEWER
from cryovault.access.visibility import readable_acl_ids
from cryovault.db.base import utcnow
from cryovault.db.elements import Element
from cryovault.db.metadata import MetadataEntry
from cryovault.db.users import User
from cryovault.errors import Invalid, NotFound
from cryovault.metadata import quantities as q
from cryovault.metadata.values import (
    NUMERIC,
    format_double,
    name_key,
    parse_value,
    validate_name,
    validate_type,
)
from cryovault.search.index import reindex_element

GENERAL = "General"
CUSTOM = "Custom"
# Groups shown first, in this order; any other group (written by an ingest) follows by name.
GROUP_ORDER = (GENERAL, "Core", "Instrument", "Acquisition", "Processing", CUSTOM)
MAX_GROUP = 64
MAX_ENTRIES_PER_ELEMENT = 2000

UNSET: object = object()


@dataclass(frozen=True)
class EntryView:
    entry: MetadataEntry

    @property
    def id(self) -> uuid.UUID:
        return self.entry.id

    @property
    def unit_symbol(self) -> str:
        return q.unit_symbol(self.entry.unit)

    @property
    def base_unit(self) -> str | None:
        if self.entry.quantity is None:
            return None
        return q.get_quantity(self.entry.quantity).base_unit

    @property
    def value(self) -> str | bool | int | float:
        """The typed value as JSON carries it."""
        e = self.entry
        if e.value_type == "boolean":
            return e.text_value == "true"
        if e.value_type == "integer":
            return int(e.text_value)
        if e.value_type == "double":
            return float(e.text_value)
        return e.text_value

    @property
    def display(self) -> str:
        symbol = self.unit_symbol
        return f"{self.entry.text_value} {symbol}" if symbol else self.entry.text_value


@dataclass(frozen=True)
class GeneralField:
    label: str
    value: str


@dataclass
class MetadataListing:
    element: Element
    level: int
    general: list[GeneralField]
    groups: dict[str, list[EntryView]] = field(default_factory=dict)

    def entries(self) -> list[EntryView]:
        return [entry for group in self.groups.values() for entry in group]


def _ordered_groups(groups: dict[str, list[EntryView]]) -> dict[str, list[EntryView]]:
    known = [g for g in GROUP_ORDER if g in groups and g != CUSTOM]
    others = sorted((g for g in groups if g not in GROUP_ORDER), key=str.casefold)
    tail = [CUSTOM] if CUSTOM in groups else []
    return {g: groups[g] for g in known + others + tail}


def general_fields(db: Session, element: Element) -> list[GeneralField]:
    creator = None
    if element.creator_id is not None:
        creator = db.scalar(select(User.username).where(User.id == element.creator_id))
    return [
        GeneralField("Name", element.name),
        GeneralField("Kind", element.kind),
        GeneralField("Id", str(element.id)),
        GeneralField("Creator", creator or ""),
        GeneralField("Created", element.created_at.isoformat()),
        GeneralField("Updated", element.updated_at.isoformat()),
        GeneralField("Description", element.description or ""),
    ]


def _matches(text: str, needle: str) -> bool:
    return needle in text.casefold()


def list_metadata(db: Session, actor: Actor, element_id: uuid.UUID,
                  filter_text: str | None = None) -> MetadataListing:
    """The element's metadata by group; `filter_text` keeps entries whose group, name, value or
    unit contains it (the panel's search box)."""
    element, level = require_access(db, actor, element_id, VIEWER, "read the metadata of")
    needle = (filter_text or "").strip().casefold()
    general = general_fields(db, element)
    if needle:
        general = [f for f in general
                   if _matches(f.label, needle) or _matches(f.value, needle)]
    entries = db.scalars(
        select(MetadataEntry).where(MetadataEntry.element_id == element_id)
        .order_by(MetadataEntry.group_name, MetadataEntry.name_key)
    ).all()
    groups: dict[str, list[EntryView]] = {}
    for entry in entries:
        view = EntryView(entry)
        if needle and not any(_matches(text, needle) for text in (
                entry.group_name, entry.name, entry.text_value, view.unit_symbol,
                entry.quantity or "")):
            continue
        groups.setdefault(entry.group_name, []).append(view)
    return MetadataListing(element, level, general, _ordered_groups(groups))


def _validate_group(group: str | None) -> str:
    group = (group or CUSTOM).strip()
    if not group or len(group) > MAX_GROUP:
        raise Invalid(f"a metadata group needs a name of 1 to {MAX_GROUP} characters")
    if group.casefold() == GENERAL.casefold():
        raise Invalid("the General group holds the element's own fields (name, description …); "
                      "put custom metadata in another group")
    validate_name(group)
    return group


@dataclass(frozen=True)
class _Typed:
    text: str
    number: float | None
    quantity: str | None
    unit: str | None
    base: float | None


def _typed(value_type: str, value: object, quantity: str | None, unit: str | None) -> _Typed:
    parsed = parse_value(value_type, value)
    if value_type not in NUMERIC:
        if quantity or unit:
            raise Invalid(f"a {value_type} has no unit; only double and integer values do")
        return _Typed(parsed.text, None, None, None, None)
    if not quantity and not unit:
        return _Typed(parsed.text, parsed.number, None, None, parsed.number)
    if quantity and not unit:
        raise Invalid(f"choose a unit of {quantity} for the value, or no quantity")
    quantity_def, choice = q.resolve_unit(quantity, unit or "")
    assert parsed.number is not None
    base = q.to_base(parsed.number, quantity_def, choice)
    return _Typed(parsed.text, parsed.number, quantity_def.name, choice.name, base)


def _check_unique(db: Session, element_id: uuid.UUID, name: str,
                  except_id: uuid.UUID | None = None) -> None:
    stmt = select(MetadataEntry.id).where(MetadataEntry.element_id == element_id,
                                          MetadataEntry.name_key == name_key(name))
    existing = db.scalar(stmt)
    if existing is not None and existing != except_id:
        raise Invalid(f"this element already has metadata named {name!r}; edit that entry or "
                      "choose another name")


def add_entry(db: Session, actor: Actor, element_id: uuid.UUID, *, name: str, value_type: str,
              value: object, quantity: str | None = None, unit: str | None = None,
              group: str | None = None) -> EntryView:
    element, _ = require_access(db, actor, element_id, COLLABORATOR, "edit the metadata of")
    name = validate_name(name)
    validate_type(value_type)
    group = _validate_group(group)
    typed = _typed(value_type, value, quantity or None, unit or None)
    _check_unique(db, element_id, name)
    count = db.scalar(select(func.count()).select_from(MetadataEntry)
                      .where(MetadataEntry.element_id == element_id))
    if (count or 0) >= MAX_ENTRIES_PER_ELEMENT:
        raise Invalid(f"an element holds at most {MAX_ENTRIES_PER_ELEMENT} metadata entries")
    now = utcnow()
    entry = MetadataEntry(
        element_id=element.id, group_name=group, name=name, name_key=name_key(name),
        value_type=value_type, text_value=typed.text, number_value=typed.number,
        quantity=typed.quantity, unit=typed.unit, base_value=typed.base,
        creator_id=actor.user_id, created_at=now, updated_at=now,
    )
    db.add(entry)
    try:
        with db.begin_nested():
            db.flush()
    except IntegrityError:  # a concurrent add of the same name won the race
        raise Invalid(f"this element already has metadata named {name!r}") from None
    reindex_element(db, element.id)
    return EntryView(entry)


def _get_entry(db: Session, element_id: uuid.UUID, entry_id: uuid.UUID) -> MetadataEntry:
    entry = db.get(MetadataEntry, entry_id)
    if entry is None or entry.element_id != element_id:
        raise NotFound(f"no metadata entry with id {entry_id} on this element")
    return entry


def update_entry(db: Session, actor: Actor, element_id: uuid.UUID, entry_id: uuid.UUID, *,
                 name: object = UNSET, value: object = UNSET, value_type: object = UNSET,
                 quantity: object = UNSET, unit: object = UNSET,
                 group: object = UNSET) -> EntryView:
    """Edit an entry. Changing only the unit (within its quantity) converts the value, so the
    physical value stays the same; giving a value with the unit sets it as given."""
    require_access(db, actor, element_id, COLLABORATOR, "edit the metadata of")
    entry = _get_entry(db, element_id, entry_id)
    new_type = entry.value_type if value_type is UNSET else validate_type(str(value_type))
    if name is not UNSET:
        new_name = validate_name(str(name) if name is not None else "")
        _check_unique(db, element_id, new_name, except_id=entry.id)
        entry.name, entry.name_key = new_name, name_key(new_name)
    if group is not UNSET:
        entry.group_name = _validate_group(group if isinstance(group, str) else None)

    numeric = new_type in NUMERIC
    new_quantity = ((entry.quantity if numeric else None) if quantity is UNSET
                    else (quantity or None))
    new_unit = (entry.unit if numeric else None) if unit is UNSET else (unit or None)
    if quantity is not UNSET and unit is UNSET and new_quantity != entry.quantity:
        if new_quantity:
            raise Invalid(f"choose a unit of {new_quantity} together with the quantity")
        new_unit = None  # no quantity any more: a plain number

    if value is not UNSET:
        value_in = value
    elif new_type != entry.value_type:
        raise Invalid("give the value again when changing its type")
    elif (new_unit and entry.unit and new_unit != entry.unit and entry.number_value is not None
          and new_quantity in (None, entry.quantity)):
        # Unit change only: convert, so the physical value is unchanged (MD-3).
        quantity_def, target = q.resolve_unit(entry.quantity, new_unit)
        _, source = q.resolve_unit(entry.quantity, entry.unit)
        value_in = _converted_value(entry.value_type,
                                    q.convert(entry.number_value, source, target), target)
        new_quantity = quantity_def.name
    else:
        value_in = entry.text_value
    typed = _typed(new_type, value_in, new_quantity, new_unit)
    entry.value_type = new_type
    entry.text_value, entry.number_value = typed.text, typed.number
    entry.quantity, entry.unit, entry.base_value = typed.quantity, typed.unit, typed.base
    entry.updated_at = utcnow()
    db.flush()
    reindex_element(db, element_id)
    return EntryView(entry)


def _converted_value(value_type: str, number: float, target: q.UnitChoice) -> object:
    if value_type == "integer":
        rounded = round(number)
        if abs(number - rounded) > 1e-9 * max(1.0, abs(number)):
            raise Invalid(f"the value is {number:g} {target.symbol}, not a whole number: change "
                          "the type to double first, or choose another unit")
        return rounded
    # Keep 15 significant digits: 1 nm -> 10 Å, not 9.999999999999998 Å.
    return float(f"{number:.15g}") if number else 0.0


def delete_entry(db: Session, actor: Actor, element_id: uuid.UUID,
                 entry_id: uuid.UUID) -> None:
    require_access(db, actor, element_id, COLLABORATOR, "edit the metadata of")
    entry = _get_entry(db, element_id, entry_id)
    db.delete(entry)
    db.flush()
    reindex_element(db, element_id)


def known_names(db: Session, actor: Actor, prefix: str = "", limit: int = 50) -> list[tuple[str,
                                                                                       str]]:
    """Metadata names (and their type) already used on elements the actor may read, for the
    "pick an existing name" list; names on elements the actor cannot see never appear."""
    stmt = (
        select(MetadataEntry.name, MetadataEntry.value_type).distinct()
        .join(Element, Element.id == MetadataEntry.element_id)
        .order_by(MetadataEntry.name)
        .limit(limit)
    )
    if not actor.is_workflow_admin:
        stmt = stmt.where(Element.acl_id.in_(readable_acl_ids(actor)))
    prefix = (prefix or "").strip()
    if prefix:
        escaped = prefix.casefold().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
        stmt = stmt.where(MetadataEntry.name_key.like(escaped + "%", escape="\\"))
    return [(name, value_type) for name, value_type in db.execute(stmt)]


def export_rows(listing: MetadataListing) -> list[dict[str, str]]:
    """One flat row per value, General first: what every export format carries."""
    rows = [{"group": GENERAL, "name": f.label, "type": "string", "value": f.value,
             "unit": "", "quantity": "", "base_value": "", "base_unit": ""}
            for f in listing.general]
    for group, entries in listing.groups.items():
        for view in entries:
            e = view.entry
            rows.append({
                "group": group, "name": e.name, "type": e.value_type, "value": e.text_value,
                "unit": view.unit_symbol, "quantity": e.quantity or "",
                "base_value": format_double(e.base_value) if e.unit and e.base_value is not None
                else "",
                "base_unit": view.base_unit or "",
            })
    return rows

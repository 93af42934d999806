"""XML the way the .NET DataContractSerializer writes it (EPU's .dm and .xml files).

EPU files are one line, without an XML declaration; every element that changes namespace
declares it where it is used — either as a new default namespace (`<Id xmlns="…Types">`) or
with a prefix letter declared on that element (`<a:Key>` under `xmlns:a="…Arrays"`). The letters
are not stable between files, so readers match namespace URIs; this module writes the same
URIs, the same nesting, `i:nil="true"` for nulls and `z:Id` object identities, so that the
simulated files look like the real ones to a person and to a parser.

A tree is made of `Node`s; `to_xml` serialises it. Helpers build the recurring .NET shapes:
`key_value_any` (a `KeyValueOfstringanyType` of the Arrays namespace), `point`, `size`,
`stage_position`, `vector`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field
from xml.sax.saxutils import escape, quoteattr

# Namespace URIs seen in the real files.
XSI = "http://www.w3.org/2001/XMLSchema-instance"
SER = "http://schemas.microsoft.com/2003/10/Serialization/"
ARRAYS = "http://schemas.microsoft.com/2003/10/Serialization/Arrays"
XSD = "http://www.w3.org/2001/XMLSchema"
SHARED_OBJECTS = "http://schemas.datacontract.org/2004/07/Fei.SharedObjects"
COMMON_TYPES = "http://schemas.datacontract.org/2004/07/Fei.Applications.Common.Types"
FEI_TYPES = "http://schemas.datacontract.org/2004/07/Fei.Types"
FEI_COMMON = "http://schemas.datacontract.org/2004/07/Fei.Common.Types"
DRAWING = "http://schemas.datacontract.org/2004/07/System.Drawing"
MEDIA = "http://schemas.datacontract.org/2004/07/System.Windows.Media"
SYSTEM = "http://schemas.datacontract.org/2004/07/System"
GENERIC = "http://schemas.datacontract.org/2004/07/System.Collections.Generic"
OMP = "http://schemas.datacontract.org/2004/07/Fei.Applications.Common.Omp.Interface"
SERVICES = "http://schemas.datacontract.org/2004/07/Fei.Applications.Common.Services"
EPU_PERSISTENCE = "http://schemas.datacontract.org/2004/07/Applications.Epu.Persistence"
ATLAS_PERSISTENCE = ("http://schemas.datacontract.org/2004/07/"
                     "Applications.SciencesAppsShared.GridAtlas.Persistence")
ATLAS_DATAMODEL = ("http://schemas.datacontract.org/2004/07/"
                   "Applications.SciencesAppsShared.GridAtlas.Datamodel")
SHARED_TYPES = "http://schemas.datacontract.org/2004/07/Applications.SciencesAppsShared.Types"

INHERIT = object()  # a child in its parent's namespace


@dataclass
class Node:
    """One element. `ns` is its namespace URI (INHERIT: the parent's), `prefix` the letter to
    write it with (None: as the default namespace), `declare` extra `xmlns:x` declarations,
    `attrs` further attributes (qualified names as written, e.g. ``"z:Type"``), `ref_id`
    whether it carries a `z:Id` object identity."""

    name: str
    text: str | None = None
    children: list[Node] = field(default_factory=list)
    ns: object = INHERIT
    prefix: str | None = None
    declare: dict[str, str] = field(default_factory=dict)
    attrs: list[tuple[str, str]] = field(default_factory=list)
    nil: bool = False
    ref_id: bool = False

    def add(self, *nodes: Node | None) -> Node:
        """Append children (None is skipped); returns self for chaining."""
        self.children.extend(n for n in nodes if n is not None)
        return self

    def extend(self, nodes: Iterable[Node]) -> Node:
        self.children.extend(nodes)
        return self


def el(name: str, text: object = None, *children: Node | None, ns: object = INHERIT,
       prefix: str | None = None, declare: dict[str, str] | None = None,
       attrs: list[tuple[str, str]] | None = None, ref_id: bool = False) -> Node:
    """An element; numbers are written as .NET writes doubles (see `fmt`)."""
    value = None if text is None else fmt(text)
    return Node(name, value, [c for c in children if c is not None], ns, prefix,
                dict(declare or {}), list(attrs or []), False, ref_id)


def nil(name: str, *, ns: object = INHERIT, prefix: str | None = None,
        declare: dict[str, str] | None = None) -> Node:
    """A null member: ``<Name i:nil="true"/>``."""
    return Node(name, None, [], ns, prefix, dict(declare or {}), [], True)


def fmt(value: object) -> str:
    """A value as DataContract XML writes it: booleans lower-case, floats round-trip
    (``1.0558814239614023E-10``, ``300000``), everything else str()."""
    if hasattr(value, "item"):  # numpy scalars
        value = value.item()
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value == int(value) and abs(value) < 1e15:
            return str(int(value))
        text = repr(value)
        if "e" in text:
            mantissa, exponent = text.split("e")
            sign = "-" if exponent.startswith("-") else "+"
            return f"{mantissa.upper()}E{sign}{exponent.lstrip('+-').zfill(2)}"
        return text
    return str(value)


def to_xml(root: Node, *, root_ns: str) -> bytes:
    """Serialise like EPU: one line, no declaration, `i` and `z` declared on the root."""
    parts: list[str] = []
    counter = [0]

    def write(node: Node, default_ns: str, scope: dict[str, str], is_root: bool) -> None:
        ns = default_ns if node.ns is INHERIT else str(node.ns)
        attributes: list[str] = []
        new_scope = scope
        if node.ref_id:
            counter[0] += 1
            attributes.append(f'z:Id="{counter[0]}"')
        attributes.extend(f"{name}={quoteattr(value)}" for name, value in node.attrs)
        if node.nil:
            attributes.append('i:nil="true"')
        child_default = default_ns
        if node.prefix is None:
            if ns != default_ns or is_root:
                attributes.append(f"xmlns={quoteattr(ns)}")
            child_default = ns
            tag = node.name
        else:
            if scope.get(node.prefix) != ns:
                new_scope = {**new_scope, node.prefix: ns}
                attributes.append(f"xmlns:{node.prefix}={quoteattr(ns)}")
            tag = f"{node.prefix}:{node.name}"
        if is_root:
            attributes.append(f'xmlns:i="{XSI}"')
            attributes.append(f'xmlns:z="{SER}"')
        for prefix, uri in node.declare.items():
            if new_scope.get(prefix) != uri:
                new_scope = {**new_scope, prefix: uri}
                attributes.append(f"xmlns:{prefix}={quoteattr(uri)}")
        head = tag + "".join(" " + a for a in attributes)
        if not node.children and node.text is None:
            parts.append(f"<{head}/>")
            return
        parts.append(f"<{head}>")
        if node.text is not None:
            parts.append(escape(node.text))
        for child in node.children:
            write(child, child_default, new_scope, False)
        parts.append(f"</{tag}>")

    root_node = Node(root.name, root.text, root.children, root_ns, None, root.declare,
                     root.attrs, root.nil, root.ref_id)
    write(root_node, root_ns, {"i": XSI, "z": SER}, True)
    return "".join(parts).encode("utf-8")


# --------------------------------------------------------------------------------------------
# Recurring .NET shapes
# --------------------------------------------------------------------------------------------


def key_value_any(key: str, value: object, xsd_type: str, *, prefix: str = "a") -> Node:
    """``<a:KeyValueOfstringanyType><a:Key>k</a:Key><a:Value i:type="b:double"
    xmlns:b="…XMLSchema">v</a:Value></a:KeyValueOfstringanyType>`` (image CustomData and
    CameraSpecificInput). `value` None writes a nil value."""
    pair = el("KeyValueOfstringanyType", None, ns=ARRAYS, prefix=prefix)
    pair.add(el("Key", key, ns=ARRAYS, prefix=prefix))
    if value is None:
        pair.add(nil("Value", ns=ARRAYS, prefix=prefix))
    else:
        pair.add(el("Value", value, ns=ARRAYS, prefix=prefix,
                    attrs=[("i:type", f"b:{xsd_type}")], declare={"b": XSD}))
    return pair


def key_value_node(key: str, value: Node, *, prefix: str = "a") -> Node:
    """A KeyValueOfstringanyType whose value is a structured object (the value node carries
    its own `i:type` attribute and declarations)."""
    pair = el("KeyValueOfstringanyType", None, ns=ARRAYS, prefix=prefix)
    return pair.add(el("Key", key, ns=ARRAYS, prefix=prefix), value)


def point(name: str, x: float, y: float, *, prefix: str = "b", ns: object = INHERIT,
          outer_prefix: str | None = None) -> Node:
    """A System.Drawing point ``<name><b:x>…</b:x><b:y>…</b:y></name>``."""
    return el(name, None, el("x", float(x), ns=DRAWING, prefix=prefix),
              el("y", float(y), ns=DRAWING, prefix=prefix), ns=ns, prefix=outer_prefix,
              declare={prefix: DRAWING})


def size(name: str, width: float, height: float, *, prefix: str = "b", ns: object = INHERIT,
         outer_prefix: str | None = None) -> Node:
    """A System.Drawing size ``<name><b:height/><b:width/></name>`` (members sorted)."""
    return el(name, None, el("height", float(height), ns=DRAWING, prefix=prefix),
              el("width", float(width), ns=DRAWING, prefix=prefix), ns=ns,
              prefix=outer_prefix, declare={prefix: DRAWING})


def rectangle(name: str, x: float, y: float, width: float, height: float, *,
              prefix: str = "b", ns: object = INHERIT, outer_prefix: str | None = None
              ) -> Node:
    """A System.Drawing rectangle (height, width, x, y: DataContract sorts members)."""
    return el(name, None, el("height", float(height), ns=DRAWING, prefix=prefix),
              el("width", float(width), ns=DRAWING, prefix=prefix),
              el("x", float(x), ns=DRAWING, prefix=prefix),
              el("y", float(y), ns=DRAWING, prefix=prefix), ns=ns, prefix=outer_prefix,
              declare={prefix: DRAWING})


def vector(name: str, x: float, y: float, *, prefix: str = "a", ns: object = INHERIT,
           outer_prefix: str | None = None) -> Node:
    """A Fei.Types vector ``<name><a:_x/><a:_y/></name>`` (ImageShift, BeamShift …)."""
    return el(name, None, el("_x", float(x), ns=FEI_TYPES, prefix=prefix),
              el("_y", float(y), ns=FEI_TYPES, prefix=prefix), ns=ns, prefix=outer_prefix,
              declare={prefix: FEI_TYPES})


def stage_position(name: str, x_m: float, y_m: float, z_m: float, a_rad: float,
                   b_rad: float, *, prefix: str | None = "c", ns: object = SHARED_OBJECTS,
                   outer_prefix: str | None = None, outer_ns: object = INHERIT) -> Node:
    """A stage position ``<name><c:A/><c:B/><c:X/><c:Y/><c:Z/></name>`` (m, rad)."""
    children = [el(axis, float(value), ns=ns, prefix=prefix)
                for axis, value in (("A", a_rad), ("B", b_rad), ("X", x_m), ("Y", y_m),
                                    ("Z", z_m))]
    declare = {prefix: str(ns)} if prefix and ns is not INHERIT else {}
    return el(name, None, *children, ns=outer_ns, prefix=outer_prefix, declare=declare)


def unit_metre(name: str = "unit", *, prefix: str = "a", outer_prefix: str | None = None,
               ns: object = INHERIT) -> Node:
    """The Fei.Common.Types unit object for metres."""
    return el(name, None,
              el("_x003C_PrefixExponent_x003E_k__BackingField", 1, ns=FEI_COMMON,
                 prefix=prefix),
              el("_x003C_Symbol_x003E_k__BackingField", "m", ns=FEI_COMMON, prefix=prefix),
              ns=ns, prefix=outer_prefix, declare={prefix: FEI_COMMON})

"""The typed records' machinery: each field's JSON type, bounds and meaning declared once, then read
tolerantly, written back as JSON, and checked by a JSON Schema made from the same declaration.

A record is a frozen dataclass whose fields are declared with the functions below (number, integer,
text, flag, nested, items, mapping, raw). Reading never fails: a field missing, null or of another type
reads as None, and the schema (bench/format/schema.py), made from the
same declarations, says what was wrong where a reader must know. Writing gives the JSON a saved run
holds: the fields set, in their declared order, None left out unless the format writes it as null.
"""

from __future__ import annotations

import dataclasses
import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

__all__ = [
    "TEXT",
    "Record",
    "Spec",
    "flag",
    "integer",
    "items",
    "mapping",
    "nested",
    "number",
    "raw",
    "rest",
    "text",
]

R = TypeVar("R", bound="Record")
# A text field's most characters unless it says otherwise: no name, reason or label a run holds is longer.
TEXT = 500


@dataclass(frozen=True)
class Spec:
    """What one field of a saved run is."""

    kind: str  # number, integer, text, flag, record, list, map, raw
    low: float | None = None  # a number's least value
    high: float | None = None  # its most
    zero: bool = False  # 0 is a value too, below `low` ("no reading": a counter that did not move)
    length: int | None = None  # a text's most characters, a list's most items
    choices: tuple | None = None  # the only values it may take
    pattern: str | None = None  # a regular expression a text matches
    item: Any = None  # a list's or a map's items (a Spec or a Record type), a nested record's type
    keys: tuple | None = None  # a map's only keys
    kinds: tuple = ()  # a raw field's JSON types (none: any)
    null: bool = True  # JSON null is a value it may hold
    required: bool = False  # a record without it is not one
    always: bool = False  # written even where None or empty (the format says "unknown" so)
    # An explanation beside the measurement (a profile of it): malformed, a reader leaves it out
    # and says so, and keeps the measurement.
    explains: bool = False
    name: str | None = None  # its key in the JSON, where that is no Python name ("from")
    doc: str = ""  # what it is, for the format's reference


def _field(spec: Spec):
    return dataclasses.field(default=None, metadata={"spec": spec})


def number(low=None, high=None, *, zero=False, **kw):
    """A finite number (never a bool, NaN or infinity) within [low, high], or 0 where `zero`."""
    return _field(Spec("number", low, high, zero=zero, **kw))


def integer(low=None, high=None, **kw):
    """A whole number within [low, high] (a float that is whole reads as one)."""
    return _field(Spec("integer", low, high, **kw))


def text(length=TEXT, *, choices=None, pattern=None, **kw):
    """A string of at most `length` characters: one of `choices`, or matching `pattern`, where given."""
    return _field(Spec("text", length=length, choices=choices, pattern=pattern, **kw))


def flag(**kw):
    """true or false."""
    return _field(Spec("flag", **kw))


def nested(record: type, **kw):
    """A record of its own (a JSON object)."""
    return _field(Spec("record", item=record, **kw))


def _item(item):
    """A list's or a map's item as a Spec or a Record type: declared like a field (`number(0)`) or as a type."""
    if isinstance(item, dataclasses.Field):
        return item.metadata["spec"]
    return item


def items(item, *, length=None, **kw):
    """A list of `item` (a field's declaration, or a Record type), at most `length` of them."""
    return _field(Spec("list", item=_item(item), length=length, **kw))


def mapping(item, *, keys=None, **kw):
    """An object whose values are `item` (a field's declaration, or a Record type), its keys among `keys`
    where given."""
    return _field(Spec("map", item=_item(item), keys=keys, **kw))


def raw(*kinds: str, **kw):
    """Any JSON of `kinds` (JSON types; none: any), kept as it is: what no reader takes apart."""
    return _field(Spec("raw", kinds=kinds, **kw))


def rest():
    """The keys a record's JSON holds beyond its declared fields, as a field its readers take (a plan's knobs);
    a record without one keeps them unseen. Either way they are written back unchanged."""
    return dataclasses.field(default_factory=dict, metadata={"spec": Spec("rest")})


def _is_number(value) -> bool:
    return isinstance(value, numbers.Real) and not isinstance(value, bool) and math.isfinite(value)


def _read(spec, value):
    """`value` as `spec` (a Spec, or a Record type) reads it; None where it is not one."""
    if isinstance(spec, type):
        return spec.read(value) if isinstance(value, Mapping) else None
    kind = spec.kind
    if kind == "number":
        return value if _is_number(value) else None
    if kind == "integer":
        return int(value) if _is_number(value) and float(value).is_integer() else None
    if kind == "text":
        return value if isinstance(value, str) else None
    if kind == "flag":
        return value if isinstance(value, bool) else None
    if kind == "record":
        return spec.item.read(value) if isinstance(value, Mapping) else None
    if kind == "list":
        if not isinstance(value, list):
            return None
        return [v for v in (_read(spec.item, v) for v in value) if v is not None]
    if kind == "map":
        if not isinstance(value, Mapping):
            return None
        read = {str(k): _read(spec.item, v) for k, v in value.items()}
        return {k: v for k, v in read.items() if v is not None}
    return value  # raw: kept as it is


def _write(value):
    if isinstance(value, Record):
        return value.write()
    if isinstance(value, list):
        return [_write(v) for v in value]
    if isinstance(value, dict):
        return {k: _write(v) for k, v in value.items()}
    return value


class Record:
    """A typed part of a saved run (subclasses are frozen dataclasses whose fields are declared above)."""

    @classmethod
    def specs(cls) -> dict[str, Spec]:
        """Each field's Spec by its Python name, in declared order."""
        return {f.name: f.metadata["spec"] for f in dataclasses.fields(cls) if "spec" in f.metadata}

    @classmethod
    def read(cls: type[R], value: Mapping | None) -> R:
        """The record from a saved run's JSON object: what is missing or of another type reads as None (a list or
        a map present but empty reads as empty). The keys it holds beyond its declared fields are kept: in its
        rest() field where it declares one, else unseen, so that writing it back loses nothing."""
        value = value if isinstance(value, Mapping) else {}
        specs = cls.specs()
        out = {
            name: _read(spec, value.get(spec.name or name))
            for name, spec in specs.items()
            if spec.kind != "rest"
        }
        known = {spec.name or name for name, spec in specs.items() if spec.kind != "rest"}
        beyond = {k: v for k, v in value.items() if k not in known}
        kept = [name for name, spec in specs.items() if spec.kind == "rest"]
        if kept:
            out[kept[0]] = beyond
        record = cls(**out)
        # What it was read with, so that it is written back as it was: its keys (a null one stays null) and
        # those beyond its fields.
        object.__setattr__(record, "_read_keys", tuple(value))
        if beyond and not kept:
            object.__setattr__(record, "_beyond", beyond)
        return record

    def write(self) -> dict:
        """The JSON object a saved run holds: the fields set, in order, then the keys it was read with beyond them. A
        field that is None is left out, but null where the record was read with it as null, or where a record
        made here declares it `always` (the format says "unknown" so)."""
        out = {}
        read_keys = getattr(self, "_read_keys", None)
        for name, spec in self.specs().items():
            value, key = getattr(self, name), spec.name or name
            if spec.kind == "rest":
                out.update(value or {})
            elif value is not None or (key in read_keys if read_keys is not None else spec.always):
                out[key] = _write(value)
        out.update(getattr(self, "_beyond", {}))
        if read_keys is not None:  # in the order it was read in
            out = {
                **{k: out[k] for k in read_keys if k in out},
                **{k: v for k, v in out.items() if k not in read_keys},
            }
        return out

    @classmethod
    def schema(cls) -> dict:
        """The JSON Schema of this record: each field's type and bounds, the fields it requires."""
        specs = [(n, spec) for n, spec in cls.specs().items() if spec.kind != "rest"]
        out: dict = {
            "type": "object",
            "properties": {spec.name or n: _schema(spec) for n, spec in specs},
        }
        required = [spec.name or n for n, spec in specs if spec.required]
        if required:
            out["required"] = required
        return out


_JSON_TYPE = {"number": "number", "integer": "integer", "text": "string", "flag": "boolean"}


def _schema(spec) -> dict:
    """The JSON Schema of one field (a Spec, or a Record type)."""
    if isinstance(spec, type):
        return spec.schema()
    kind = spec.kind
    if kind in _JSON_TYPE:
        out: dict = {"type": [_JSON_TYPE[kind], "null"] if spec.null else _JSON_TYPE[kind]}
        for key, value in (
            ("minimum", spec.low),
            ("maximum", spec.high),
            ("maxLength", spec.length),
            ("pattern", spec.pattern),
        ):
            if value is not None:
                out[key] = value
        if spec.choices is not None:
            out["enum"] = [*spec.choices, *([None] if spec.null else [])]
        if spec.zero:  # 0, or within the bounds: "no reading" is not a reading out of range
            out = {"anyOf": [{"const": 0}, out]}
        return out
    if kind == "record":
        out = spec.item.schema()
        return {**out, "type": ["object", "null"]} if spec.null else out
    if kind == "list":
        out = {"type": ["array", "null"] if spec.null else "array", "items": _schema(spec.item)}
        if spec.length is not None:
            out["maxItems"] = spec.length
        return out
    if kind == "map":
        out = {"type": ["object", "null"] if spec.null else "object"}
        out["additionalProperties"] = _schema(spec.item)
        if spec.keys is not None:
            out["propertyNames"] = {"enum": list(spec.keys)}
        return out
    return {"type": list(spec.kinds)} if spec.kinds else {}

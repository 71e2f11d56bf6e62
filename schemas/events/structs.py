"""Fast decoding of an event model's JSON: a msgspec mirror derived from the pydantic model.

Why: the pipeline decodes every `llm.request.v1` record, and pydantic's `model_validate_json` was
its largest single cost (about 11-25 us of a worker's ~120 us of CPU per event, issue 16); msgspec
decodes and checks the same document in about 2 us. The pydantic model stays the one definition
of the contract: `mirror(Model)` derives a msgspec `Struct` from its fields (types, defaults,
`Field` constraints) and runs the model's own `after` validators on the result, so a new field or
constraint reaches the fast path without a second edit.

The mirror is allowed to refuse more than the model (it is strict where pydantic is lax: "5" for
an int, a float for an int, a date without a time, a UUID in braces, NaN, ...), never to accept
more or to read a value differently. A document it refuses goes to the pydantic model, which
decides and names the reason. Two differences are closed by construction:
  * datetimes are read as strings and parsed only in RFC 3339's plain form with at most 6
    fractional digits (`_STRICT_TIME`); pydantic truncates longer fractions where msgspec rounds;
  * fields whose pydantic default comes from a factory that is not a model (an `event_id` made
    up on read) are required, so the model makes them up as before.
`tests/unit/test_event_structs.py` holds the mirror to that: random and hostile documents, and
every document the mirror accepts must give the same values as the model.
"""

from __future__ import annotations

import datetime as dt
import re
import types
import typing
import uuid
from collections.abc import Callable
from typing import Annotated, Any, Literal

import annotated_types as at
import msgspec
from pydantic import BaseModel
from pydantic.fields import FieldInfo

# RFC 3339 date-time with a zone, as `datetime.fromisoformat` and pydantic read it alike.
_STRICT_TIME = re.compile(
    r"\d{4}-\d\d-\d\d[Tt ]\d\d:\d\d:\d\d(?:\.\d{1,6})?(?:[Zz]|[+-]\d\d:\d\d)")

_CONSTRAINTS = {at.Ge: "ge", at.Le: "le", at.Gt: "gt", at.Lt: "lt", at.MinLen: "min_length",
                at.MaxLen: "max_length"}


class Unmirrorable(TypeError):
    """The model uses something the mirror does not know how to keep exactly."""


def _meta(constraints: list[Any]) -> msgspec.Meta | None:
    kwargs: dict[str, Any] = {}
    for constraint in constraints:
        if isinstance(constraint, FieldInfo):
            found = _meta(constraint.metadata)
            kwargs.update({name: getattr(found, name) for name in _CONSTRAINTS.values()
                           if found is not None and getattr(found, name) is not None})
            continue
        name = _CONSTRAINTS.get(type(constraint))
        if name is None:
            raise Unmirrorable(f"constraint {constraint!r}")
        kwargs[name] = getattr(constraint, name)
    return msgspec.Meta(**kwargs) if kwargs else None


class _Mirror:
    """Builds the structs of one model tree (a nested model's struct once)."""

    def __init__(self) -> None:
        self.structs: dict[type[BaseModel], type[msgspec.Struct]] = {}

    def type_of(self, annotation: Any, constraints: list[Any], top: bool = True) -> Any:
        """The msgspec type for a pydantic annotation with its constraints. A nested model or
        a datetime only as a field's whole type (`top`): `_finisher` finishes those alone."""
        origin = typing.get_origin(annotation)
        if origin is Annotated:
            base, *extra = typing.get_args(annotation)
            return self.type_of(base, [*constraints, *extra], top)
        if origin in (typing.Union, types.UnionType):
            args = typing.get_args(annotation)
            return typing.Union[tuple(  # noqa: UP007 - built from a tuple of types
                arg if arg is type(None) else self.type_of(arg, constraints, top=False)
                for arg in args)]
        if origin is dict:
            key, value = typing.get_args(annotation)
            return dict[self.type_of(key, [], top=False),  # type: ignore[misc]
                        self.type_of(value, [], top=False)]
        if origin is Literal:
            return annotation
        if isinstance(annotation, type) and issubclass(annotation, BaseModel):
            if constraints or not top:
                raise Unmirrorable(f"a model inside another type, or constrained: {annotation}")
            return self.struct(annotation)
        if annotation is dt.datetime:
            if constraints or not top:
                raise Unmirrorable("a datetime inside another type, or constrained")
            return str  # parsed by `_STRICT_TIME` + fromisoformat (see the module docstring)
        if annotation in (str, int, float, bool) or (
                isinstance(annotation, type) and issubclass(annotation, str | int)):
            meta = _meta(constraints)
            return Annotated[annotation, meta] if meta is not None else annotation
        if annotation is uuid.UUID and not constraints:
            return annotation
        raise Unmirrorable(f"type {annotation!r}")

    def struct(self, model: type[BaseModel], required: frozenset[str] = frozenset()
               ) -> type[msgspec.Struct]:
        if model in self.structs:
            return self.structs[model]
        config = model.model_config
        if config.get("extra") != "forbid":
            raise Unmirrorable(f"{model.__name__} does not forbid extra fields")
        decorators = model.__pydantic_decorators__
        if (decorators.validators or decorators.root_validators or decorators.field_serializers
                or decorators.model_serializers or decorators.computed_fields):
            raise Unmirrorable(f"{model.__name__} has validators the mirror cannot run")
        fields: list[Any] = []
        rename: dict[str, str] = {}
        times: list[str] = []
        nested: list[tuple[str, type[msgspec.Struct]]] = []
        for name, info in model.model_fields.items():
            if info.alias is not None and info.alias != name:
                rename[name] = info.alias
            kind = self.type_of(info.annotation, list(info.metadata))
            if info.annotation is dt.datetime:
                times.append(name)
            if isinstance(kind, type) and issubclass(kind, msgspec.Struct):
                nested.append((name, kind))
            factory = info.default_factory
            if name in required or (info.is_required()) or (
                    factory is not None and not (
                        isinstance(factory, type) and issubclass(factory, BaseModel))
                    and factory is not dict):
                fields.append((name, kind))
            elif factory is dict:
                fields.append((name, kind, msgspec.field(default_factory=dict)))
            elif factory is not None:
                fields.append((name, kind, msgspec.field(default_factory=self.struct(factory))))
            else:
                fields.append((name, kind, info.default))
        fields.sort(key=lambda f: len(f) > 2)  # msgspec: required fields first
        after: list[tuple[str, Callable[[Any], Any]]] = []
        for decorator in decorators.field_validators.values():
            if decorator.info.mode != "after":
                raise Unmirrorable(f"{model.__name__}: a {decorator.info.mode} field validator")
            after.extend((field, decorator.func) for field in decorator.info.fields)
        checks = []
        for decorator in decorators.model_validators.values():
            if decorator.info.mode != "after":
                raise Unmirrorable(f"{model.__name__}: a {decorator.info.mode} model validator")
            checks.append(decorator.func)
        namespace = {key: value for key, value in vars(model).items()
                     if isinstance(value, property)}
        namespace.update(_nested=tuple(nested), _times=tuple(times), _after=tuple(after),
                         _checks=tuple(checks), _model=model)
        struct = msgspec.defstruct(
            f"{model.__name__}Struct", fields, namespace=namespace, forbid_unknown_fields=True,
            rename=rename or None, module=__name__)
        self.structs[model] = struct
        return struct


def _finisher(struct: type[msgspec.Struct]) -> Callable[[Any], None] | None:
    """The function that parses a decoded `struct`'s datetimes and runs its model's validators,
    depth first, raising ValueError (or the validator's error) where the model would refuse the
    value; None when there is nothing to do.

    Written out as straight-line code for each struct (its nested structs, times, validators in
    turn): a loop over the struct's lists cost 2.8 us per event where this costs 1.7 (issue 16,
    the pipeline runs it once per event). The names are the model's field names: identifiers."""
    namespace: dict[str, Any] = {"_time": _STRICT_TIME.fullmatch,
                                 "_parse": dt.datetime.fromisoformat}
    body: list[str] = []
    for index, (name, kind) in enumerate(struct._nested):  # type: ignore[attr-defined]
        nested = _finisher(kind)
        if nested is not None:
            namespace[f"_nested{index}"] = nested
            body.append(f"    _nested{index}(value.{name})")
    for name in struct._times:  # type: ignore[attr-defined]
        body += [f"    text = value.{name}",
                 "    if not _time(text):",
                 f"        raise ValueError({f'{name}: not a plain RFC 3339 time'!r})",
                 f"    value.{name} = _parse(text)"]
    for index, (name, validator) in enumerate(struct._after):  # type: ignore[attr-defined]
        namespace[f"_after{index}"] = validator
        body.append(f"    value.{name} = _after{index}(value.{name})")
    for index, check in enumerate(struct._checks):  # type: ignore[attr-defined]
        namespace[f"_check{index}"] = check
        body.append(f"    _check{index}(value)")
    if not body:
        return None
    exec("\n".join(["def finish(value):", *body]), namespace)  # noqa: S102 - our own code
    return namespace["finish"]  # type: ignore[no-any-return]


def _nothing(value: Any) -> None:
    pass


class FastDecoder:
    """`decode(raw)` -> a struct with the model's field names and properties, or None when the
    mirror refuses the document (then the model must decide). Anything a validator raises
    counts as a refusal too, including what pydantic gives a meaning other than an error (e.g.
    `PydanticUseDefault`): the model then decides, so no record is lost to an exception the
    mirror did not expect."""

    def __init__(self, model: type[BaseModel], required: frozenset[str] = frozenset()) -> None:
        self.struct = _Mirror().struct(model, required)
        self._decoder = msgspec.json.Decoder(self.struct)
        self._finish = _finisher(self.struct) or _nothing

    def decode(self, raw: bytes) -> Any | None:
        try:
            value = self._decoder.decode(raw)
            self._finish(value)
        except Exception:  # noqa: BLE001 - whatever it is, the model decides (and names it)
            return None
        return value

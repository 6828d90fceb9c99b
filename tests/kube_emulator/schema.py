"""A custom resource version's `openAPIV3Schema`: defaulting, pruning and validation.

What the apiextensions-apiserver does to a custom resource on every write
(`pkg/apiserver/schema/{defaulting,pruning}`, `pkg/apiserver/validation`), for structural
schemas, in its order: defaults fill in absent fields, fields the schema does not declare are
dropped (pruning; not below `x-kubernetes-preserve-unknown-fields: true`, nor `apiVersion`,
`kind` and `metadata` at the root), then the object is validated. Validation covers `type`,
`nullable`, `required`, `enum`, `minimum`/`maximum` (and their `exclusive*` flags),
`minLength`/`maxLength`, `pattern`, `minItems`/`maxItems`, with the real server's field paths
and messages (kube-openapi's, converted to field errors). Not covered: `oneOf`/`anyOf`/`allOf`/
`not`, `format`, CEL rules (`x-kubernetes-validations`), embedded resources.

`list_shape` turns the schema's `x-kubernetes-list-type` into the `Node` tree that the patch and
server-side apply code use: `map` lists are keyed by their (first) `x-kubernetes-list-map-keys`,
`set` lists are sets, the rest atomic.
"""

from __future__ import annotations

import copy
import re
from typing import Any

from . import validation as v
from .patch import Node

Schema = dict[str, Any]

_ROOT_META = ("apiVersion", "kind", "metadata")


def apply_defaults(value: Any, schema: Schema) -> None:
    """Fill in `default`s of absent properties, depth first, in place."""
    if isinstance(value, dict):
        for name, child in (schema.get("properties") or {}).items():
            if name not in value and "default" in child:
                value[name] = copy.deepcopy(child["default"])
        for name, item in value.items():
            child = _property_schema(schema, name)
            if child is not None:
                apply_defaults(item, child)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for item in value:
            apply_defaults(item, schema["items"])


def prune(value: Any, schema: Schema, *, root: bool = False) -> Any:
    """`value` without the fields `schema` does not declare."""
    if schema.get("x-kubernetes-preserve-unknown-fields") and not schema.get("properties"):
        return value
    if isinstance(value, dict):
        pruned = {}
        for name, item in value.items():
            if root and name in _ROOT_META:
                pruned[name] = item
                continue
            child = _property_schema(schema, name)
            if child is not None:
                pruned[name] = prune(item, child)
            elif schema.get("x-kubernetes-preserve-unknown-fields"):
                pruned[name] = item
        return pruned
    if isinstance(value, list) and isinstance(schema.get("items"), dict):
        return [prune(item, schema["items"]) for item in value]
    return value


def unknown_fields(value: Any, schema: Schema, path: str = "") -> list[str]:
    """The paths `prune` would drop (`spec.unknown`): what `fieldValidation=Strict` refuses."""
    if schema.get("x-kubernetes-preserve-unknown-fields"):
        return []
    found: list[str] = []
    if isinstance(value, dict):
        for name, item in value.items():
            if not path and name in _ROOT_META:
                continue
            child_path = f"{path}.{name}" if path else name
            child = _property_schema(schema, name)
            found += [child_path] if child is None else unknown_fields(item, child, child_path)
    elif isinstance(value, list) and isinstance(schema.get("items"), dict):
        for index, item in enumerate(value):
            found += unknown_fields(item, schema["items"], f"{path}[{index}]")
    return found


def _property_schema(schema: Schema, name: str) -> Schema | None:
    properties = schema.get("properties") or {}
    if name in properties:
        return properties[name]
    additional = schema.get("additionalProperties")
    if isinstance(additional, dict):
        return additional
    if additional is True:
        return {"x-kubernetes-preserve-unknown-fields": True}
    return None


_TYPES = {
    "object": lambda value: isinstance(value, dict),
    "array": lambda value: isinstance(value, list),
    "string": lambda value: isinstance(value, str),
    "boolean": lambda value: isinstance(value, bool),
    "integer": lambda value: isinstance(value, int) and not isinstance(value, bool)
    or isinstance(value, float) and value.is_integer(),
    "number": lambda value: isinstance(value, (int, float)) and not isinstance(value, bool),
}


def _type_name(value: Any) -> str:
    """How kube-openapi names the type of a bad value."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "integer"
    if isinstance(value, float):
        return "number"
    if isinstance(value, str):
        return "string"
    if isinstance(value, list):
        return "array"
    return "object"


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def validate(value: Any, schema: Schema, path: str = "") -> list[v.FieldError]:
    """The field errors of `value` against `schema`; `path` is the field path so far ("" at the root)."""
    where = path or "<root>"
    if value is None:
        if schema.get("nullable") or not schema.get("type"):
            return []
        detail = f'{where} in body must be of type {schema["type"]}: "null"'
        return [v.FieldError("FieldValueTypeInvalid", where, detail)]
    expected = schema.get("type")
    if expected in _TYPES and not _TYPES[expected](value):
        if schema.get("x-kubernetes-int-or-string") and isinstance(value, (int, str)) and not isinstance(value, bool):
            return []
        found = _type_name(value)
        # Recent servers leave the bad value out of the message: the detail names its type.
        return [v.FieldError("FieldValueTypeInvalid", where, f'{where} in body must be of type {expected}: "{found}"')]
    errors: list[v.FieldError] = []
    if "enum" in schema and value not in schema["enum"]:
        errors.append(v.not_supported(where, value, [str(item) for item in schema["enum"]]))
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        minimum, maximum = schema.get("minimum"), schema.get("maximum")
        if minimum is not None:
            if schema.get("exclusiveMinimum") and value <= minimum:
                errors.append(v.invalid(where, value, f"{where} in body should be greater than {_number(minimum)}"))
            elif value < minimum:
                errors.append(
                    v.invalid(where, value, f"{where} in body should be greater than or equal to {_number(minimum)}")
                )
        if maximum is not None:
            if schema.get("exclusiveMaximum") and value >= maximum:
                errors.append(v.invalid(where, value, f"{where} in body should be less than {_number(maximum)}"))
            elif value > maximum:
                errors.append(
                    v.invalid(where, value, f"{where} in body should be less than or equal to {_number(maximum)}")
                )
    if isinstance(value, str):
        if "maxLength" in schema and len(value) > schema["maxLength"]:
            errors.append(v.too_long(where, schema["maxLength"]))
        if "minLength" in schema and len(value) < schema["minLength"]:
            detail = f"{where} in body should be at least {schema['minLength']} chars long"
            errors.append(v.invalid(where, value, detail))
        if "pattern" in schema and not re.search(schema["pattern"], value):
            errors.append(v.invalid(where, value, f"{where} in body should match '{schema['pattern']}'"))
    if isinstance(value, list):
        if "maxItems" in schema and len(value) > schema["maxItems"]:
            errors.append(
                v.FieldError("FieldValueTooMany", where, f"must have at most {schema['maxItems']} items", len(value))
            )
        if "minItems" in schema and len(value) < schema["minItems"]:
            detail = f"{where} in body should have at least {schema['minItems']} items"
            errors.append(v.invalid(where, len(value), detail))
        if isinstance(schema.get("items"), dict):
            for index, item in enumerate(value):
                errors += validate(item, schema["items"], f"{path}[{index}]")
    if isinstance(value, dict):
        for name in schema.get("required") or []:
            if name not in value:
                errors.append(v.required(f"{path}.{name}" if path else name))
        for name, item in value.items():
            if not path and name in _ROOT_META:
                continue
            child = _property_schema(schema, name)
            if child is not None:
                errors += validate(item, child, f"{path}.{name}" if path else name)
    return errors


def list_shape(schema: Schema) -> Node:
    """The keyed and set lists of the schema, as the `Node` tree patches and apply use."""
    fields: dict[str, Node] = {}
    for name, child in (schema.get("properties") or {}).items():
        node = _node(child)
        if node is not None:
            fields[name] = node
    return Node(fields)


def _node(schema: Schema) -> Node | None:
    if schema.get("type") == "array":
        items = schema.get("items") if isinstance(schema.get("items"), dict) else {}
        inner = list_shape(items).fields
        list_type = schema.get("x-kubernetes-list-type")
        if list_type == "map" and schema.get("x-kubernetes-list-map-keys"):
            return Node(inner, merge_key=schema["x-kubernetes-list-map-keys"][0])
        if list_type == "set":
            return Node(merge_set=True)
        return Node(inner) if inner else None
    inner = list_shape(schema).fields
    return Node(inner) if inner else None

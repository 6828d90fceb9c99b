"""The three patch formats of PATCH requests.

- `application/merge-patch+json`: RFC 7386 (maps merge, `null` deletes, lists replace).
- `application/json-patch+json`: RFC 6902 operations (add, remove, replace, test, move, copy).
- `application/strategic-merge-patch+json`: Kubernetes' own. Like a merge patch, except that
  some lists are merged instead of replaced, as the Go types' `patchStrategy`/`patchMergeKey`
  tags say (`containers` by `name`, `ownerReferences` by `uid`, `finalizers` as a set...).
  The official Python client sends a dict body to the built-in `patch_*` methods with this
  content type (and a list body as a JSON patch), so it is the format Pier uses most.

Strategic merge needs to know the tags, so each resource type carries a `Node` tree (see
`registry.py`) describing the fields whose lists merge; every other list is replaced, as the
real server does for untagged fields (`subjects`, `rules`, NetworkPolicy `ingress`...).
Directives supported: `$patch: replace|delete|merge` on maps and list elements,
`$deleteFromPrimitiveList/<field>`, `$retainKeys`. `$setElementOrder/<field>` (kubectl's
ordering hint) is accepted and not applied: list order does not change what an object means.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

MERGE_PATCH = "application/merge-patch+json"
JSON_PATCH = "application/json-patch+json"
STRATEGIC_MERGE_PATCH = "application/strategic-merge-patch+json"
PATCH_TYPES = (JSON_PATCH, MERGE_PATCH, STRATEGIC_MERGE_PATCH)


class PatchError(ValueError):
    """A patch that is well-formed JSON but cannot be applied (the server answers 422)."""


class MalformedPatch(ValueError):
    """A patch whose shape is wrong for its format (the server answers 400)."""


@dataclass(frozen=True)
class Node:
    """Strategic-merge metadata of one field.

    For a map-valued field, `fields` describes its children. For a list-valued field, `merge_key`
    (a list of maps merged by that key) or `merge_set` (a list of scalars merged as a set) says
    the list merges, and `fields` describes each element's children.
    """

    fields: dict[str, Node] = field(default_factory=dict)
    merge_key: str | None = None
    merge_set: bool = False

    def child(self, name: str) -> Node:
        return self.fields.get(name, _LEAF)


_LEAF = Node()


def apply_patch(content_type: str, document: dict[str, Any], patch: Any, schema: Node) -> Any:
    """The patched copy of `document` (which is left untouched)."""
    if content_type == MERGE_PATCH:
        return merge_patch(document, patch)
    if content_type == JSON_PATCH:
        return json_patch(document, patch)
    return strategic_merge_patch(document, patch, schema)


def merge_patch(target: Any, patch: Any) -> Any:
    """RFC 7386."""
    if not isinstance(patch, dict):
        return copy.deepcopy(patch)
    result = copy.deepcopy(target) if isinstance(target, dict) else {}
    for key, value in patch.items():
        if value is None:
            result.pop(key, None)
        else:
            result[key] = merge_patch(result.get(key), value)
    return result


# --- RFC 6902 -------------------------------------------------------------------------------


def _pointer(path: Any) -> list[str]:
    if not isinstance(path, str) or (path and not path.startswith("/")):
        raise MalformedPatch(f"invalid JSON pointer: {path!r}")
    return [token.replace("~1", "/").replace("~0", "~") for token in path.split("/")[1:]]


def _index(container: list[Any], token: str, *, for_insert: bool) -> int:
    if for_insert and token == "-":
        return len(container)
    if not token.isdigit() or (len(token) > 1 and token.startswith("0")):
        raise PatchError(f"invalid array index: {token}")
    index = int(token)
    if index > len(container) or (not for_insert and index == len(container)):
        raise PatchError(f"array index out of bounds: {index}")
    return index


def _parent(document: Any, tokens: list[str], path: str) -> Any:
    node = document
    for token in tokens[:-1]:
        if isinstance(node, dict) and token in node:
            node = node[token]
        elif isinstance(node, list):
            node = node[_index(node, token, for_insert=False)]
        else:
            raise PatchError(f"doc is missing path: {path!r}")
    return node


def _get(document: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return document
    parent = _parent(document, tokens, path)
    last = tokens[-1]
    if isinstance(parent, dict) and last in parent:
        return parent[last]
    if isinstance(parent, list):
        return parent[_index(parent, last, for_insert=False)]
    raise PatchError(f"doc is missing path: {path!r}")


def _add(document: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    if not tokens:
        return value
    parent = _parent(document, tokens, path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    elif isinstance(parent, list):
        parent.insert(_index(parent, tokens[-1], for_insert=True), value)
    else:
        raise PatchError(f"doc is missing path: {path!r}")
    return document


def _replace(document: Any, path: str, value: Any) -> Any:
    tokens = _pointer(path)
    _get(document, path)  # the target must exist
    if not tokens:
        return value
    parent = _parent(document, tokens, path)
    if isinstance(parent, dict):
        parent[tokens[-1]] = value
    else:
        parent[_index(parent, tokens[-1], for_insert=False)] = value
    return document


def _remove(document: Any, path: str) -> Any:
    tokens = _pointer(path)
    if not tokens:
        raise PatchError("cannot remove the whole document")
    parent = _parent(document, tokens, path)
    if isinstance(parent, dict) and tokens[-1] in parent:
        del parent[tokens[-1]]
    elif isinstance(parent, list):
        del parent[_index(parent, tokens[-1], for_insert=False)]
    else:
        raise PatchError(f"unable to remove nonexistent key: {tokens[-1]}: missing value")
    return document


def json_patch(document: dict[str, Any], operations: Any) -> Any:
    """RFC 6902, all six operations; any failing operation fails the whole patch."""
    if not isinstance(operations, list):
        raise MalformedPatch("a JSON patch must be a list of operations")
    result: Any = copy.deepcopy(document)
    for operation in operations:
        if not isinstance(operation, dict) or "op" not in operation or "path" not in operation:
            raise MalformedPatch(f"invalid JSON patch operation: {operation!r}")
        op, path = operation["op"], operation["path"]
        if op in ("add", "replace", "test") and "value" not in operation:
            raise MalformedPatch(f"JSON patch operation {op!r} needs a value")
        if op == "add":
            result = _add(result, path, copy.deepcopy(operation["value"]))
        elif op == "remove":
            result = _remove(result, path)
        elif op == "replace":
            result = _replace(result, path, copy.deepcopy(operation["value"]))
        elif op == "test":
            if _get(result, path) != operation["value"]:
                raise PatchError(f"testing value {path} failed: test failed")
        elif op in ("move", "copy"):
            source = operation.get("from")
            value = copy.deepcopy(_get(result, source))
            if op == "move":
                result = _remove(result, source)
            result = _add(result, path, value)
        else:
            raise MalformedPatch(f"unexpected JSON patch operation: {op!r}")
    return result


# --- strategic merge patch -------------------------------------------------------------------

_DELETE_FROM = "$deleteFromPrimitiveList/"
_SET_ORDER = "$setElementOrder/"


def strategic_merge_patch(original: dict[str, Any], patch: Any, schema: Node) -> dict[str, Any]:
    if not isinstance(patch, dict):
        raise MalformedPatch("a strategic merge patch must be a JSON object")
    return _merge_map(copy.deepcopy(original), patch, schema)


def _merge_map(original: dict[str, Any], patch: dict[str, Any], schema: Node) -> dict[str, Any]:
    directive = patch.get("$patch")
    if directive == "replace":
        return _strip_directives({k: v for k, v in patch.items() if k != "$patch"})
    if directive == "delete":
        return {}
    if directive not in (None, "merge"):
        raise MalformedPatch(f"unknown patch directive: {directive!r}")
    retain = patch.get("$retainKeys")
    if retain is not None:
        if not isinstance(retain, list):
            raise MalformedPatch("$retainKeys must be a list")
        original = {key: value for key, value in original.items() if key in retain}
    for key, value in patch.items():
        if key in ("$patch", "$retainKeys") or key.startswith(_SET_ORDER):
            continue
        if key.startswith(_DELETE_FROM):
            name = key[len(_DELETE_FROM) :]
            if not isinstance(value, list):
                raise MalformedPatch(f"{key} must be a list")
            if isinstance(original.get(name), list):
                original[name] = [item for item in original[name] if item not in value]
            continue
        if value is None:
            original.pop(key, None)
            continue
        node = schema.child(key)
        current = original.get(key)
        if isinstance(value, dict):
            if value.get("$patch") == "delete":
                original.pop(key, None)
            else:
                original[key] = _merge_map(current if isinstance(current, dict) else {}, value, node)
        elif isinstance(value, list) and isinstance(current, list) and (node.merge_key or node.merge_set):
            original[key] = _merge_list(current, value, node)
        elif isinstance(value, list):
            original[key] = _strip_directives(_replace_list(value))
        else:
            original[key] = value
    return original


def _replace_list(patch: list[Any]) -> list[Any]:
    """A list replacing another: directive elements (a `$patch: replace` marker) drop out."""
    return [item for item in patch if not (isinstance(item, dict) and set(item) == {"$patch"})]


def _merge_list(original: list[Any], patch: list[Any], node: Node) -> list[Any]:
    if any(isinstance(item, dict) and item.get("$patch") == "replace" for item in patch):
        return _strip_directives(_replace_list(patch))
    if node.merge_set:
        merged = list(original)
        merged += [item for item in patch if item not in merged]
        return merged
    key = node.merge_key
    merged = list(original)
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise PatchError(f"map: {item!r} does not contain declared merge key: {key}")
        position = next(
            (i for i, existing in enumerate(merged) if isinstance(existing, dict) and existing.get(key) == item[key]),
            None,
        )
        if item.get("$patch") == "delete":
            if position is not None:
                del merged[position]
        elif position is None:
            merged.append(_merge_map({}, item, node))
        else:
            merged[position] = _merge_map(merged[position], item, node)
    return merged


def _strip_directives(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _strip_directives(v) for k, v in value.items() if not k.startswith("$")}
    if isinstance(value, list):
        return [_strip_directives(item) for item in value]
    return value

"""Server-side apply and field ownership (`metadata.managedFields`).

What the API server's fieldmanager and structured-merge-diff do (`staging/src/k8s.io/apiserver/
pkg/endpoints/handlers/fieldmanager`, `sigs.k8s.io/structured-merge-diff/v4/merge/update.go`),
for the shapes Pier's objects have:

- Every write records who set which fields: one `managedFields` entry per manager, operation
  and subresource, `fieldsType: FieldsV1` with the real encoding (`f:<field>`, keyed list
  items `k:{"name":"x"}`, set items `v:"x"`, `.` for an item or map owned as a whole).
  Creates, updates and non-apply patches are operation `Update`: the writer gains the fields
  it added or changed, and every other manager loses them. The server-owned metadata (name,
  uid, resourceVersion...) and, on a kind with a status, status on the main resource (spec
  and metadata on `/status`) are owned by no one.
- An apply (`PATCH` with `application/apply-patch+yaml`) merges the applied configuration into
  the live object (creating it if absent) and makes the applier own exactly the fields it
  sent. Fields another manager owns and the apply changes are conflicts: 409 naming the
  managers and fields, unless `force=true`, which takes them over. Fields the applier set
  before and no longer sends are removed, unless another manager also owns them.
- Lists: those with a merge key (`containers` by name, `env` by name, `ports` by containerPort,
  `ownerReferences` by uid, custom resources' `x-kubernetes-list-type: map`) merge item by item,
  sets (`finalizers`, `x-kubernetes-list-type: set`) by value, every other list is atomic:
  owned and replaced as a whole. Maps are merged key by key (the real server treats a few as
  atomic, e.g. a label selector's `matchLabels` is not; the emulator treats none as atomic).
  Multi-key lists are keyed by their first key only.
"""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from typing import Any

from . import errors
from .errors import ApiError
from .patch import Node
from .registry import ResourceType

Obj = dict[str, Any]
Element = tuple[str, str]  # ("f", field name) | ("k", key JSON) | ("v", value JSON)
Path = tuple[Element, ...]

APPLY_PATCH = "application/apply-patch+yaml"
_SERVER_METADATA = (
    "name", "namespace", "uid", "resourceVersion", "generation", "creationTimestamp", "managedFields",
    "selfLink", "deletionTimestamp", "deletionGracePeriodSeconds",
)  # fmt: skip
_CONTAINER = object()  # a map or list item, as opposed to a value, when comparing objects
# `metadata` itself is stripped by the fieldmanager; `spec` is a struct that a Go object always
# has, so it is never "added" as a whole. (Deeper structs are not told apart from maps here: an
# Update that adds one owns it with a `.` where a real server would not.)
_NEVER_OWNED: set[Path] = {(("f", "metadata"),), (("f", "spec"),)}


@dataclass
class Entry:
    manager: str
    operation: str  # Apply | Update
    api_version: str
    time: str
    subresource: str
    fields: set[Path]

    @property
    def key(self) -> tuple[str, str, str]:
        return (self.manager, self.operation, self.subresource)

    def printed(self) -> str:
        """How conflict messages name the manager (apiserver's printManager)."""
        text = json.dumps(self.manager)
        if self.subresource:
            text += f" with subresource {json.dumps(self.subresource)}"
        if self.operation == "Update":
            text += f" using {self.api_version}"
        return text

    def to_json(self) -> Obj:
        entry: Obj = {
            "manager": self.manager,
            "operation": self.operation,
            "apiVersion": self.api_version,
            "time": self.time,
            "fieldsType": "FieldsV1",
            "fieldsV1": encode_fields(self.fields),
        }
        if self.subresource:
            entry["subresource"] = self.subresource
        return entry


# --- the FieldsV1 encoding ---------------------------------------------------------------------


def _compact(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), sort_keys=True)


def encode_fields(fields: set[Path]) -> Obj:
    tree: Obj = {}
    for path in sorted(fields):
        node = tree
        for kind, text in path:
            node = node.setdefault(f"{kind}:{text}", {})
    for path in fields:
        node = tree
        for kind, text in path:
            node = node[f"{kind}:{text}"]
        if node and "." not in node:
            node["."] = {}
    return _sorted_tree(tree)


def _sorted_tree(tree: Obj) -> Obj:
    return {key: _sorted_tree(tree[key]) for key in sorted(tree, key=lambda key: (key != ".", key))}


def decode_fields(tree: Any, path: Path = ()) -> set[Path]:
    fields: set[Path] = set()
    if not isinstance(tree, dict):
        return fields
    for key, sub in tree.items():
        if key == ".":
            fields.add(path)
            continue
        kind, _, text = key.partition(":")
        child = (*path, (kind, text))
        if sub:
            fields |= decode_fields(sub, child)
        else:
            fields.add(child)
    return fields


def path_string(path: Path) -> str:
    """`.spec.containers[name="runner"].image`, as conflict messages write a path."""
    text = ""
    for kind, value in path:
        if kind == "f":
            text += f".{value}"
        elif kind == "k":
            text += "[" + ",".join(f"{k}={_compact(v)}" for k, v in json.loads(value).items()) + "]"
        else:
            text += f"[={value}]"
    return text


def parse_entries(metadata: Obj) -> list[Entry]:
    entries = []
    for raw in metadata.get("managedFields") or []:
        entries.append(
            Entry(
                raw.get("manager", ""), raw.get("operation", "Update"), raw.get("apiVersion", ""),
                raw.get("time", ""), raw.get("subresource", ""), decode_fields(raw.get("fieldsV1")),
            )
        )  # fmt: skip
    return entries


def _serialize(entries: list[Entry]) -> list[Obj]:
    kept = [entry for entry in entries if entry.fields]
    kept.sort(key=lambda e: (e.operation, e.time, e.manager, e.subresource))
    return [entry.to_json() for entry in kept]


# --- paths of an object ------------------------------------------------------------------------


def _item_element(item: Any, node: Node) -> Element | None:
    if node.merge_key and isinstance(item, dict) and node.merge_key in item:
        return ("k", _compact({node.merge_key: item[node.merge_key]}))
    if node.merge_set and not isinstance(item, (dict, list)):
        return ("v", _compact(item))
    return None


def _keyed(items: list[Any], node: Node) -> bool:
    return bool(node.merge_key or node.merge_set) and all(_item_element(i, node) for i in items)


def applied_fields(value: Obj, node: Node, path: Path = ()) -> set[Path]:
    """The fields an applied configuration sets (structured-merge-diff's ToFieldSet)."""
    fields: set[Path] = set()
    for name, child in value.items():
        child_path = (*path, ("f", name))
        child_node = node.child(name)
        if isinstance(child, dict) and child:
            fields |= applied_fields(child, child_node, child_path)
        elif isinstance(child, list) and child and _keyed(child, child_node):
            for item in child:
                item_path = (*child_path, _item_element(item, child_node))
                fields.add(item_path)
                if isinstance(item, dict):
                    fields |= applied_fields(item, child_node, item_path)
        else:
            fields.add(child_path)
    return fields


def _flatten(value: Any, node: Node, path: Path, out: dict[Path, Any]) -> None:
    if isinstance(value, dict):
        if path:
            out[path] = _CONTAINER
        for name, child in value.items():
            _flatten(child, node.child(name), (*path, ("f", name)), out)
    elif isinstance(value, list) and _keyed(value, node):
        out[path] = _CONTAINER
        for item in value:
            item_path = (*path, _item_element(item, node))
            if isinstance(item, dict):
                _flatten(item, node, item_path, out)
                out[item_path] = _CONTAINER
            else:
                out[item_path] = True
    else:
        out[path] = value


def _compare(old: Obj, new: Obj, node: Node) -> tuple[set[Path], set[Path]]:
    """(added or modified, removed) paths between two objects."""
    before: dict[Path, Any] = {}
    after: dict[Path, Any] = {}
    _flatten(old, node, (), before)
    _flatten(new, node, (), after)
    changed = {p for p, value in after.items() if p not in before or (before[p] is not value and before[p] != value)}
    return changed - _NEVER_OWNED, set(before) - set(after) - _NEVER_OWNED


def owned_part(obj: Obj | None, resource: ResourceType, subresource: str) -> Obj:
    """The part of an object field managers own: no server metadata, status only on `/status`."""
    if not obj:
        return {}
    if subresource == "status":
        return {"status": copy.deepcopy(obj["status"])} if "status" in obj else {}
    part = {k: copy.deepcopy(v) for k, v in obj.items() if k not in ("apiVersion", "kind")}
    if resource.has_status:
        part.pop("status", None)
    metadata = {k: v for k, v in (part.get("metadata") or {}).items() if k not in _SERVER_METADATA}
    if metadata:
        part["metadata"] = metadata
    else:
        part.pop("metadata", None)
    return part


# --- the two operations ------------------------------------------------------------------------


def record_update(
    resource: ResourceType, old: Obj | None, new: Obj, manager: str, subresource: str, now: str
) -> list[Obj]:
    """The managedFields of `new` after a create, update or non-apply patch by `manager`."""
    entries = parse_entries((old or {}).get("metadata") or {})
    node = resource.patch_schema
    changed, removed = _compare(owned_part(old, resource, subresource), owned_part(new, resource, subresource), node)
    key = (manager, "Update", subresource)
    mine = next((e for e in entries if e.key == key), None)
    for entry in entries:
        if entry is not mine:
            entry.fields -= changed | removed
    fields = ((mine.fields if mine else set()) - removed) | changed
    if mine is None:
        entries.append(Entry(manager, "Update", resource.api_version, now, subresource, fields))
    elif fields != mine.fields:
        mine.fields, mine.time, mine.api_version = fields, now, resource.api_version
    return _serialize(entries)


def apply(
    resource: ResourceType, live: Obj | None, config: Obj, manager: str, *, force: bool, subresource: str, now: str
) -> tuple[Obj, list[Obj]]:
    """The object after applying `config` as `manager`, and its managedFields. Raises a 409 on conflicts."""
    node = resource.patch_schema
    entries = parse_entries((live or {}).get("metadata") or {})
    key = (manager, "Apply", subresource)
    mine = next((e for e in entries if e.key == key), None)
    others = [e for e in entries if e is not mine]
    new_fields = applied_fields(owned_part(config, resource, subresource), node)
    merged = _merge(copy.deepcopy(live) if live else {}, config, node)
    if mine is not None:
        kept = new_fields.union(*(e.fields for e in others))
        for path in sorted(mine.fields - new_fields, key=len):  # a removed parent takes its children
            if not _is_item_key(path) and not any(owned[: len(path)] == path for owned in kept):
                _remove(merged, path, node)
    before, after = owned_part(live, resource, subresource), owned_part(merged, resource, subresource)
    changed, removed = _compare(before, after, node)
    conflicts = [(entry, path) for entry in others for path in sorted(entry.fields & changed)]
    if conflicts and not force:
        raise conflict_error(conflicts)
    for entry in others:
        entry.fields -= changed | removed if force else removed
    if mine is None:
        entries.append(Entry(manager, "Apply", resource.api_version, now, subresource, new_fields))
    elif new_fields != mine.fields:
        mine.fields, mine.time, mine.api_version = new_fields, now, resource.api_version
    return merged, _serialize(entries)


def _is_item_key(path: Path) -> bool:
    """The key field of a keyed list item (`name` of a container): it goes only with its item."""
    return len(path) >= 2 and path[-2][0] == "k" and path[-1][1] in json.loads(path[-2][1])


def conflict_error(conflicts: list[tuple[Entry, Path]]) -> ApiError:
    causes = [
        {"type": "FieldManagerConflict", "message": f"conflict with {entry.printed()}", "field": path_string(path)}
        for entry, path in conflicts
    ]
    if len(conflicts) == 1:
        entry, path = conflicts[0]
        message = f"Apply failed with 1 conflict: conflict with {entry.printed()}: {path_string(path)}"
    else:
        by_manager: dict[str, list[str]] = {}
        for entry, path in conflicts:
            by_manager.setdefault(entry.printed(), []).append(path_string(path))
        lines = []
        for printed in sorted(by_manager):
            lines.append(f"conflicts with {printed}:")
            lines += [f"- {path}" for path in by_manager[printed]]
        message = f"Apply failed with {len(conflicts)} conflicts: " + "\n".join(lines)
    return ApiError(409, "Conflict", message, {"causes": causes})


def _merge(live: Any, config: Any, node: Node) -> Any:
    if isinstance(config, dict) and isinstance(live, dict):
        merged = dict(live)
        for name, value in config.items():
            if value is None:
                merged.pop(name, None)
            else:
                merged[name] = _merge(live.get(name), value, node.child(name))
        return merged
    if isinstance(config, list) and isinstance(live, list) and _keyed(config, node) and _keyed(live, node):
        merged = list(live)
        for item in config:
            element = _item_element(item, node)
            position = next((i for i, old in enumerate(merged) if _item_element(old, node) == element), None)
            if position is None:
                merged.append(copy.deepcopy(item))
            elif isinstance(item, dict):
                merged[position] = _merge(merged[position], item, node)
        return merged
    return copy.deepcopy(config)


def _remove(obj: Any, path: Path, node: Node) -> None:
    parent: Any = obj
    for index, element in enumerate(path):
        last = index == len(path) - 1
        kind, text = element
        if kind == "f":
            if not isinstance(parent, dict) or text not in parent:
                return
            if last:
                del parent[text]
                return
            parent, node = parent[text], node.child(text)
        else:
            if not isinstance(parent, list):
                return
            position = next((i for i, item in enumerate(parent) if _item_element(item, node) == element), None)
            if position is None:
                return
            if last:
                del parent[position]
                return
            parent = parent[position]


def parse_body(body: bytes) -> Any:
    """An apply body: JSON (what the official client sends for a dict), else YAML."""
    try:
        return json.loads(body)
    except ValueError:
        pass
    try:
        import yaml  # only for YAML bodies; the emulator itself needs nothing outside the stdlib
    except ImportError:
        raise errors.bad_request("the apply body is not JSON, and YAML needs PyYAML installed") from None
    try:
        return yaml.safe_load(body)
    except yaml.YAMLError as error:
        raise errors.bad_request(f"error decoding YAML: {error}") from None

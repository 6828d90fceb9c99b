"""Label and field selectors: the `labelSelector`/`fieldSelector` query strings of a list, and the
structured `LabelSelector` (matchLabels/matchExpressions) that workloads carry.

Semantics are apimachinery's (`k8s.io/apimachinery/pkg/labels`): requirements joined by commas
must all hold; `a!=b` and `a notin (…)` also match objects that have no label `a`.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from . import validation


class SelectorError(ValueError):
    """A selector that does not parse; the server answers 400 BadRequest."""


@dataclass(frozen=True)
class Requirement:
    key: str
    operator: str  # "=", "!=", "in", "notin", "exists", "!", "gt", "lt"
    values: tuple[str, ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        present = self.key in labels
        value = labels.get(self.key)
        if self.operator in ("=", "in"):
            return present and value in self.values
        if self.operator in ("!=", "notin"):
            return not present or value not in self.values
        if self.operator == "exists":
            return present
        if self.operator == "!":
            return not present
        # gt / lt compare integers; a label that is not one never matches.
        try:
            number = int(value) if present else None
        except (TypeError, ValueError):
            return False
        if number is None:
            return False
        bound = int(self.values[0])
        return number > bound if self.operator == "gt" else number < bound


@dataclass(frozen=True)
class LabelSelector:
    requirements: tuple[Requirement, ...]

    def matches(self, labels: dict[str, str] | None) -> bool:
        labels = labels or {}
        return all(requirement.matches(labels) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


_TOKEN = re.compile(r"\s*(==|!=|=|!|\(|\)|,|>|<|[^\s,=!()<>]+)")


def _tokens(text: str) -> list[str]:
    tokens, position = [], 0
    while position < len(text):
        if text[position:].strip() == "":
            break
        match = _TOKEN.match(text, position)
        if not match:
            raise SelectorError(f"unable to parse requirement: {text[position:]!r}")
        tokens.append(match.group(1))
        position = match.end()
    return tokens


def parse_label_selector(text: str) -> LabelSelector:
    """Parse `a=b,c!=d,e,!f,g in (x,y),h notin (z),i>3`."""
    tokens = _tokens(text)
    requirements: list[Requirement] = []
    position = 0

    def take() -> str:
        nonlocal position
        if position >= len(tokens):
            raise SelectorError(f"unable to parse requirement: unexpected end of selector {text!r}")
        position += 1
        return tokens[position - 1]

    def peek() -> str | None:
        return tokens[position] if position < len(tokens) else None

    while position < len(tokens):
        token = take()
        if token == "!":
            key = take()
            requirement = Requirement(key, "!")
        else:
            key = token
            operator = peek()
            if operator is None or operator == ",":
                requirement = Requirement(key, "exists")
            elif operator in ("=", "==", "!="):
                take()
                value = "" if peek() in (None, ",") else take()
                requirement = Requirement(key, "!=" if operator == "!=" else "=", (value,))
            elif operator in ("in", "notin"):
                take()
                if take() != "(":
                    raise SelectorError(f"unable to parse requirement: expected '(' after {operator}")
                values = []
                while True:
                    item = take()
                    if item == ")":
                        break
                    if item == ",":
                        continue
                    values.append(item)
                requirement = Requirement(key, operator, tuple(values))
            elif operator in (">", "<"):
                take()
                bound = take()
                if not re.fullmatch(r"-?[0-9]+", bound):
                    raise SelectorError(f"unable to parse requirement: {bound!r} is not an integer")
                requirement = Requirement(key, "gt" if operator == ">" else "lt", (bound,))
            else:
                raise SelectorError(f"unable to parse requirement: unexpected {operator!r} after {key!r}")
        problems = validation.qualified_name(requirement.key)
        if requirement.operator in ("=", "!=", "in", "notin"):
            problems += [message for value in requirement.values for message in validation.label_value(value)]
        if problems:
            raise SelectorError(f"unable to parse requirement: {requirement.key}: {'; '.join(problems)}")
        requirements.append(requirement)
        separator = take() if position < len(tokens) else None
        if separator not in (None, ","):
            raise SelectorError(f"unable to parse requirement: expected ',' but found {separator!r}")
    return LabelSelector(tuple(requirements))


_STRUCTURED_OPERATORS = {"In": "in", "NotIn": "notin", "Exists": "exists", "DoesNotExist": "!"}


def from_structured(selector: dict[str, Any]) -> LabelSelector:
    """A `metav1.LabelSelector` (matchLabels + matchExpressions) as requirements."""
    requirements = [Requirement(key, "=", (value,)) for key, value in (selector.get("matchLabels") or {}).items()]
    for expression in selector.get("matchExpressions") or []:
        operator = _STRUCTURED_OPERATORS.get(expression.get("operator", ""))
        if operator is None:
            raise SelectorError(f"{expression.get('operator')!r} is not a valid label selector operator")
        requirements.append(Requirement(expression.get("key", ""), operator, tuple(expression.get("values") or ())))
    return LabelSelector(tuple(requirements))


FieldGetter = Callable[[dict[str, Any]], Any]


@dataclass(frozen=True)
class FieldRequirement:
    getter: FieldGetter
    value: str
    negated: bool

    def matches(self, obj: dict[str, Any]) -> bool:
        actual = self.getter(obj)
        equal = ("" if actual is None else str(actual)) == self.value
        return equal != self.negated


@dataclass(frozen=True)
class FieldSelector:
    requirements: tuple[FieldRequirement, ...]

    def matches(self, obj: dict[str, Any]) -> bool:
        return all(requirement.matches(obj) for requirement in self.requirements)

    @property
    def empty(self) -> bool:
        return not self.requirements


def parse_field_selector(text: str, fields: dict[str, FieldGetter]) -> FieldSelector:
    """Parse `metadata.name=x,metadata.namespace!=y` against the fields a resource supports."""
    requirements = []
    for term in filter(None, (part.strip() for part in text.split(","))):
        match = re.fullmatch(r"([^=!]+)(==|=|!=)(.*)", term)
        if not match:
            raise SelectorError(f"invalid selector: '{text}'; can't understand '{term}'")
        field, operator, value = match.groups()
        getter = fields.get(field)
        if getter is None:
            raise SelectorError(f"field label not supported: {field}")
        requirements.append(FieldRequirement(getter, value, operator == "!="))
    return FieldSelector(tuple(requirements))

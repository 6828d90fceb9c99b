"""The URL list, read from the URLconf, so that tests over "every endpoint" cover new ones."""

from __future__ import annotations

from dataclasses import dataclass

from django.urls import URLPattern, URLResolver, get_resolver, reverse

MUTATING = ("POST", "PUT", "PATCH", "DELETE")
SAMPLE_KWARGS = {"tenant_slug": "beta", "slug": "beta", "pk": 1, "username": "carol", "project_slug": "site", "grant_id": 1, "key_id": 1,
                 "session_name": "some-session"}


@dataclass(frozen=True)
class Route:
    name: str
    params: tuple[str, ...]
    view: object

    def path(self, **overrides) -> str:
        kwargs = {p: overrides.get(p, SAMPLE_KWARGS[p]) for p in self.params}
        return reverse(self.name, kwargs=kwargs)

    @property
    def methods(self) -> tuple[str, ...]:
        """Mutating methods the view implements (class-based views only; function views are
        GET-only and the tests check that they refuse POST)."""
        cls = getattr(self.view, "view_class", None) or getattr(self.view, "cls", None)
        if cls is None:
            return ()
        allowed = getattr(cls, "http_method_names", [])
        return tuple(m for m in MUTATING if hasattr(cls, m.lower()) and m.lower() in allowed)

    @property
    def is_tenant_route(self) -> bool:
        return "tenant_slug" in self.params


def _walk(resolver: URLResolver, namespace: str = "", params: tuple[str, ...] = ()):
    for entry in resolver.url_patterns:
        converters = tuple(entry.pattern.converters) if hasattr(entry.pattern, "converters") else ()
        if isinstance(entry, URLResolver):
            ns = entry.namespace or ""
            full = f"{namespace}:{ns}" if namespace and ns else (ns or namespace)
            yield from _walk(entry, full, params + converters)
        elif isinstance(entry, URLPattern) and entry.name:
            name = f"{namespace}:{entry.name}" if namespace else entry.name
            yield Route(name=name, params=params + converters, view=entry.callback)


def pier_routes() -> list[Route]:
    """Every named route of Pier's own (the Django admin site is tested on its own)."""
    return [r for r in _walk(get_resolver()) if not r.name.startswith("admin:")]

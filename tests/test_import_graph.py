"""The import rules of ARCHITECTURE.md, read from the source (ast), so that breaking one fails here:

- the shared `tenants` app never imports the apps that live inside tenant schemas
  (`tenants.projects`, `sessions`): it tells them of a tenant's lifecycle through tenants.signals;
- the kernel (`portal/`) imports no app and names no app's models; only the composition root
  (portal/urls.py, portal/settings.py, portal/celery.py) knows every app;
- Pier's own modules import each other without a cycle, counting every import: at module level and
  inside functions (a function-level import that only hides a cycle still is one).

Imports are found at any depth (functions, classes, `if TYPE_CHECKING:`), and so are lookups by
name: apps.get_model / get_app_config, importlib.import_module, import_string, __import__.
"""

from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("portal", "tenants", "sessions")
TENANT_SCHEMA_APPS = {"tenants.projects": "projects", "sessions": "agentic_sessions"}  # module: app label
COMPOSITION_ROOT = {"portal.urls", "portal.settings", "portal.celery"}
LOOKUPS_BY_NAME = {"get_model", "get_app_config", "import_module", "import_string", "__import__"}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def pier_modules() -> dict[str, Path]:
    return {_module_name(path): path for package in PACKAGES for path in sorted((ROOT / package).rglob("*.py"))}


def imported_names(tree: ast.AST, *, module: str, is_package: bool) -> list[tuple[str, int]]:
    """Every module name an import statement anywhere in the tree names, absolute, with its line.
    `from a import b` yields `a.b` (b may be a submodule) and `a`."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(alias.name, node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = module if is_package else module.rpartition(".")[0]
                for _ in range(node.level - 1):
                    package = package.rpartition(".")[0]
                base = f"{package}.{base}" if base else package
            found.append((base, node.lineno))
            found += [(f"{base}.{alias.name}", node.lineno) for alias in node.names]
    return found


def lookups_by_name(tree: ast.AST) -> list[tuple[str, int]]:
    """The string arguments of get_model("label", …), import_module("a.b") and the like."""
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Call):
            name = node.func.attr if isinstance(node.func, ast.Attribute) else getattr(node.func, "id", "")
            if name in LOOKUPS_BY_NAME:
                found += [(arg.value, node.lineno) for arg in node.args
                          if isinstance(arg, ast.Constant) and isinstance(arg.value, str)]
    return found


def _names(name: str, forbidden_modules: set[str]) -> bool:
    return any(name == m or name.startswith(m + ".") for m in forbidden_modules)


def violations(modules: dict[str, Path], *, forbidden_modules: set[str], forbidden_labels: set[str]) -> list[str]:
    found = []
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        for name, line in imported_names(tree, module=module, is_package=path.name == "__init__.py"):
            if _names(name, forbidden_modules):
                found.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
        for name, line in lookups_by_name(tree):
            label = name.split(".")[0]
            if _names(name, forbidden_modules) or label in forbidden_labels:
                found.append(f"{path.relative_to(ROOT)}:{line} looks up {name!r} by name")
    return sorted(set(found))


def import_graph(modules: dict[str, Path]) -> dict[str, set[str]]:
    """module -> the Pier modules it imports (anywhere in it). A name that is not a module itself
    (`from a.b import some_function`) counts as its nearest enclosing module."""
    graph: dict[str, set[str]] = {}
    for module, path in modules.items():
        tree = ast.parse(path.read_text(), filename=str(path))
        targets = set()
        for name, _line in imported_names(tree, module=module, is_package=path.name == "__init__.py"):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            # A module's own packages are imported before it runs: that is not a cycle.
            if name and not (module == name or module.startswith(name + ".")):
                targets.add(name)
        graph[module] = targets
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One cycle as a path [a, b, …, a], or None (depth-first search, iterative)."""
    WHITE, GREY, BLACK = 0, 1, 2
    colour = dict.fromkeys(graph, WHITE)
    for start in sorted(graph):
        if colour[start] != WHITE:
            continue
        path, stack = [start], [iter(sorted(graph[start]))]
        colour[start] = GREY
        while stack:
            nxt = next(stack[-1], None)
            if nxt is None:
                colour[path.pop()] = BLACK
                stack.pop()
            elif colour.get(nxt, BLACK) == GREY:
                return path[path.index(nxt):] + [nxt]
            elif colour.get(nxt) == WHITE:
                colour[nxt] = GREY
                path.append(nxt)
                stack.append(iter(sorted(graph[nxt])))
    return None


# --- The rules ---------------------------------------------------------------------------


def _shared_app() -> dict[str, Path]:
    return {m: p for m, p in pier_modules().items()
            if (m == "tenants" or m.startswith("tenants.")) and not _names(m, {"tenants.projects"})}


def _kernel() -> dict[str, Path]:
    return {m: p for m, p in pier_modules().items()
            if (m == "portal" or m.startswith("portal.")) and m not in COMPOSITION_ROOT}


def test_the_shared_tenants_app_never_imports_the_apps_inside_tenant_schemas():
    shared = _shared_app()
    assert {"tenants.services", "tenants.provisioning", "tenants.admin", "tenants.tasks"} <= set(shared)
    assert violations(shared, forbidden_modules=set(TENANT_SCHEMA_APPS),
                      forbidden_labels=set(TENANT_SCHEMA_APPS.values())) == []


def test_the_kernel_imports_no_app_and_names_no_apps_models():
    kernel = _kernel()
    assert {"portal.access", "portal.tenancy", "portal.kube"} <= set(kernel)
    assert COMPOSITION_ROOT <= set(pier_modules()), "the composition root was renamed: update this test"
    assert violations(kernel, forbidden_modules={"tenants", "sessions"},
                      forbidden_labels={"tenants", *TENANT_SCHEMA_APPS.values()}) == []


def test_pier_modules_import_each_other_without_a_cycle():
    graph = import_graph(pier_modules())
    # The graph is the real one: the reconciler's task imports the reconciler, which a walk that
    # missed `from package import module` would not see.
    assert "tenants.projects.reconcile" in graph["tenants.projects.tasks"]
    cycle = find_cycle(graph)
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


# --- The walk finds what it must (so the rules above can fail) ----------------------------


def test_the_walk_sees_imports_inside_functions_relative_imports_and_lookups_by_name():
    source = (
        "from . import services\n"
        "def f():\n"
        "    from tenants.projects.models import Project\n"
        "    import sessions.models\n"
        "    return apps.get_model('projects', 'TenantSettings'), importlib.import_module('sessions.tasks')\n"
    )
    tree = ast.parse(source)
    names = {name for name, _ in imported_names(tree, module="tenants.admin", is_package=False)}
    assert {"tenants.services", "tenants.projects.models.Project", "sessions.models"} <= names
    assert [name for name, _ in lookups_by_name(tree)] == ["projects", "TenantSettings", "sessions.tasks"]


def test_a_cycle_through_a_function_level_import_is_found():
    graph = {"keys": {"tasks"}, "tasks": {"reconcile"}, "reconcile": {"keys"}, "models": set()}
    assert find_cycle(graph) == ["keys", "tasks", "reconcile", "keys"]
    assert find_cycle({"services": {"tasks"}, "tasks": {"reconcile"}, "reconcile": set()}) is None

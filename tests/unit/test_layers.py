"""The layers of docs/architecture.md, read from the source: `schemas/` at the bottom, the base
layer (`keywarden/` outside `keywarden/cli/`) over it, services, pipelines and `deploy/` above
the base, and the command line (`keywarden/cli/`) on top. Every `import` counts, at module level,
inside a function or under `TYPE_CHECKING`, and no two files import each other, even indirectly.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from functools import cache
from pathlib import Path

from keywarden.settings import PROJECT_ROOT

PACKAGES = ("schemas", "keywarden", "services", "pipelines", "deploy")
ROOF = "keywarden.cli"

# The only imports from one service into another; each is explained in docs/architecture.md.
SERVICE_TO_SERVICE = {
    ("services.admin", "services.gateway"),  # wrapped-key format and the registry view it replays
}


def layer(module: str) -> str:
    """`schemas`, `base`, `services.<name>`, `pipelines`, `deploy` or `cli`."""
    top, _, rest = module.partition(".")
    if top == "keywarden":
        return "cli" if module == ROOF or module.startswith(ROOF + ".") else "base"
    if top == "services":
        return f"services.{rest.partition('.')[0]}"
    return top


@cache
def modules() -> dict[str, Path]:
    found = {}
    for package in PACKAGES:
        for path in sorted((PROJECT_ROOT / package).rglob("*.py")):
            parts = list(path.relative_to(PROJECT_ROOT).with_suffix("").parts)
            if parts[-1] == "__init__":
                parts.pop()
            found[".".join(parts)] = path
    return found


def _resolve(name: str) -> str | None:
    """The project module `name` loads (the longest prefix that is one), or None."""
    parts = name.split(".")
    while parts:
        if ".".join(parts) in modules():
            return ".".join(parts)
        parts.pop()
    return None


def imports_of(module: str) -> set[str]:
    path = modules()[module]
    package = module if path.name == "__init__.py" else module.rpartition(".")[0]
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" for alias in node.names] + [base]
        else:
            continue
        found.update(r for r in map(_resolve, names) if r is not None)
    found.discard(module)
    return found


@cache
def graph() -> dict[str, frozenset[str]]:
    return {module: frozenset(imports_of(module)) for module in modules()}


def cycles(edges: dict[str, frozenset[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root in edges:
        if root in index:
            continue
        work = [(root, iter(sorted(edges[root])))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, successors = work[-1]
            for successor in successors:
                if successor not in index:
                    index[successor] = low[successor] = len(index)
                    stack.append(successor)
                    on_stack.add(successor)
                    work.append((successor, iter(sorted(edges[successor]))))
                    break
                if successor in on_stack:
                    low[node] = min(low[node], index[successor])
            else:
                work.pop()
                if work:
                    low[work[-1][0]] = min(low[work[-1][0]], low[node])
                if low[node] == index[node]:
                    component = []
                    while True:
                        member = stack.pop()
                        on_stack.discard(member)
                        component.append(member)
                        if member == node:
                            break
                    if len(component) > 1:
                        found.append(sorted(component))
    return found


def violations(allowed: dict[str, set[str]]) -> list[str]:
    """`a -> b` for every import whose target's layer is not allowed for the importer's."""
    bad = []
    for module, targets in sorted(graph().items()):
        source = layer(module)
        rule = next((allowed[key] for key in allowed if source.startswith(key)), None)
        if rule is None:
            continue
        for target in sorted(targets):
            to = layer(target)
            if to != source and not any(to.startswith(key) for key in rule):
                bad.append(f"{module} -> {target}")
    return bad


def test_the_import_graph_is_read_from_the_packages():
    assert "keywarden.settings" in graph()["keywarden.kafka"]
    assert "keywarden.cli.demo" in graph()["keywarden.cli.main"]  # a function-level import
    assert cycles({"a": frozenset({"b"}), "b": frozenset({"a"}), "c": frozenset()}) == [["a", "b"]]


def test_no_two_files_import_each_other():
    assert cycles(graph()) == []


def test_schemas_import_nothing_above_them():
    assert violations({"schemas": set()}) == []


def test_the_base_layer_imports_only_schemas():
    assert violations({"base": {"schemas"}}) == []


def test_deploy_imports_only_the_base_and_schemas():
    assert violations({"deploy": {"base", "schemas"}}) == []


def test_services_and_pipelines_never_import_the_command_line_or_deploy():
    below = {"base", "schemas", "services", "pipelines"}
    assert violations({"services": below, "pipelines": below}) == []


def test_services_import_each_other_only_where_the_architecture_says():
    crossings = {
        (layer(module), layer(target))
        for module, targets in graph().items()
        for target in targets
        if layer(module).startswith("services.") and layer(target).startswith("services.")
        and layer(module) != layer(target)
    }
    assert crossings <= SERVICE_TO_SERVICE


def test_importing_the_whole_base_layer_loads_no_service_pipeline_or_command():
    base = sorted(m for m in modules() if layer(m) == "base")
    code = (
        "import importlib, sys\n"
        f"for name in {base!r}:\n"
        "    importlib.import_module(name)\n"
        "print('\\n'.join(sorted(m for m in sys.modules if m.split('.')[0] in "
        f"('services', 'pipelines', 'deploy') or m == {ROOF!r} or m.startswith({ROOF + '.'!r}))))"
    )
    loaded = subprocess.run(
        [sys.executable, "-c", code], cwd=PROJECT_ROOT, capture_output=True, text=True, check=True
    ).stdout.split()
    assert loaded == []

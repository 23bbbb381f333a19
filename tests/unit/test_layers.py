"""The architecture holds: no module imports from a layer above it, and no import cycle.

docs/architecture.md describes the layers; LAYERS below is that order, lowest first.
"""
from __future__ import annotations

import ast
from pathlib import Path

import probekit

PACKAGE = Path(probekit.__file__).parent
PLUGINS = PACKAGE.parent / "plugins"

#: Lowest first: a module may import from its own layer and the layers before it.
LAYERS = (
    ("probekit.errors", "probekit.declare", "probekit.say"),
    ("probekit.metrics",),
    ("probekit.results",),
    ("probekit.data",),
    ("probekit.models",),
    ("probekit.hooks",),
    ("probekit.spec",),
    ("probekit.expect",),
    ("probekit.report",),
    ("probekit.engine",),
    ("probekit.functional", "probekit.sources", "probekit.families", "probekit.outputs"),  # public re-exports
    ("probekit.plugins",),
    ("probekit.api", "probekit.cli", "probekit.testing", "probekit.__main__"),
)
#: Modules whose imports are deferred on purpose: they load in every pytest session
#: (the pytest11 entry point), or start every command (the CLI: `probekit --help` must not wait for torch),
#: so they must not import torch until a probekit feature is used.
LAZY_BY_DESIGN = {"probekit.testing", "probekit.testing.pytest_plugin", "probekit.cli"}


def modules() -> dict[str, Path]:
    found = {}
    for root, prefix in ((PACKAGE, "probekit"), (PLUGINS, "probekit.plugins")):
        for path in root.rglob("*.py"):
            parts = path.relative_to(root).with_suffix("").parts
            name = ".".join((prefix, *parts)).removesuffix(".__init__")
            found[name] = path
    return found


def layer_of(module: str) -> int | None:
    for index, names in enumerate(LAYERS):
        if any(module == name or module.startswith(name + ".") for name in names):
            return index
    return None


class _Imports(ast.NodeVisitor):
    """probekit imports of one module: (imported module, line, whether inside a function); those under
    ``if TYPE_CHECKING:`` (annotations only, never imported at run time) apart, in ``type_only``."""

    def __init__(self, module: str, is_package: bool) -> None:
        self.package = module if is_package else module.rpartition(".")[0]
        self.found: list[tuple[str, int, bool]] = []
        self.type_only: list[tuple[str, int, bool]] = []
        self.depth = 0

    def visit_If(self, node: ast.If) -> None:
        if isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING":
            found, self.found = self.found, self.type_only
            self.generic_visit(node)
            self.found = found
            return
        self.generic_visit(node)

    def visit_FunctionDef(self, node) -> None:
        self.depth += 1
        self.generic_visit(node)
        self.depth -= 1

    visit_AsyncFunctionDef = visit_FunctionDef

    def visit_Import(self, node: ast.Import) -> None:
        for alias in node.names:
            self._add(alias.name, node.lineno)

    def visit_ImportFrom(self, node: ast.ImportFrom) -> None:
        base = node.module or ""
        if node.level:
            parent = self.package.rsplit(".", node.level - 1)[0] if node.level > 1 else self.package
            base = f"{parent}.{base}".rstrip(".")
        self._add(base, node.lineno)
        for alias in node.names:  # `from probekit.models import loading` imports a module
            if f"{base}.{alias.name}" in ALL_MODULES:
                self._add(f"{base}.{alias.name}", node.lineno)

    def _add(self, name: str, line: int) -> None:
        if name == "probekit" or name.startswith("probekit."):
            self.found.append((name, line, self.depth > 0))


ALL_MODULES = modules()


def imports_of(module: str, type_only: bool = False) -> list[tuple[str, int, bool]]:
    """The run-time probekit imports of ``module``, and with ``type_only`` its TYPE_CHECKING imports too."""
    path = ALL_MODULES[module]
    visitor = _Imports(module, path.name == "__init__.py")
    visitor.visit(ast.parse(path.read_text(encoding="utf-8")))
    return [*visitor.found, *(visitor.type_only if type_only else ())]


def test_every_module_belongs_to_a_layer():
    unplaced = [m for m in ALL_MODULES if m != "probekit" and layer_of(m) is None]
    assert not unplaced, f"modules in no layer of docs/architecture.md: {unplaced}"


def test_no_module_imports_from_a_layer_above_it():
    violations = []
    for module in ALL_MODULES:
        own = layer_of(module)
        for imported, line, _ in imports_of(module):
            theirs = layer_of(imported)
            if own is not None and theirs is not None and theirs > own:
                violations.append(f"{module}:{line} imports {imported} "
                                  f"(layer {LAYERS[theirs][0]} is above {LAYERS[own][0]})")
    assert not violations, "\n".join(violations)


def test_no_import_cycle():
    """Not even through annotations: a TYPE_CHECKING import is a dependency a reader and a type checker follow."""
    graph = {m: {i for i, _, _ in imports_of(m, type_only=True) if i in ALL_MODULES and i != m} for m in ALL_MODULES}
    graph["probekit"] = set()  # the package root maps public names lazily and imports nothing of probekit
    state: dict[str, str] = {}
    cycles = []

    def visit(module: str, path: list[str]) -> None:
        state[module] = "open"
        for imported in sorted(graph[module]):
            if state.get(imported) == "open":
                cycles.append(" -> ".join([*path[path.index(imported):], imported]))
            elif imported not in state:
                visit(imported, [*path, imported])
        state[module] = "done"

    for module in sorted(graph):
        if module not in state:
            visit(module, [module])
    assert not cycles, "\n".join(cycles)


def test_no_function_local_import_of_probekit_outside_the_lazy_modules():
    local = [f"{module}:{line} imports {imported} inside a function"
             for module in ALL_MODULES if module not in LAZY_BY_DESIGN
             for imported, line, in_function in imports_of(module) if in_function]
    assert not local, "\n".join(local)


def test_the_cycle_check_counts_type_checking_imports(tmp_path, monkeypatch):
    """A cycle closed only by an annotation import is still seen: the checker is not blind under TYPE_CHECKING."""
    bad = tmp_path / "bad.py"
    bad.write_text("from typing import TYPE_CHECKING\n\nif TYPE_CHECKING:\n    from probekit.engine.session import Session\n")
    monkeypatch.setitem(ALL_MODULES, "probekit.errors_bad", bad)
    assert imports_of("probekit.errors_bad") == []
    assert imports_of("probekit.errors_bad", type_only=True) == [("probekit.engine.session", 4, False)]


def test_the_checker_sees_an_upward_import(tmp_path, monkeypatch):
    """The rule is not vacuous: a data module importing the engine is reported."""
    bad = tmp_path / "bad.py"
    bad.write_text("from probekit.engine.session import Session\n")
    monkeypatch.setitem(ALL_MODULES, "probekit.data.bad", bad)
    found = imports_of("probekit.data.bad")
    assert found == [("probekit.engine.session", 1, False)]
    assert layer_of(found[0][0]) > layer_of("probekit.data.bad")


#: What a plugin may import: the documented public modules (docs/plugins.md, "The public surface").
PUBLIC_MODULES = ("probekit", "probekit.functional", "probekit.sources", "probekit.families", "probekit.outputs",
                  "probekit.testing")


def _dotted_uses(tree: ast.AST) -> list[tuple[str, int]]:
    """``probekit.a.b.name`` attribute chains: (the module part, line)."""
    found = []
    for node in ast.walk(tree):
        chain, current = [], node
        while isinstance(current, ast.Attribute):
            chain.append(current.attr)
            current = current.value
        if isinstance(current, ast.Name) and current.id == "probekit" and len(chain) >= 2:
            found.append((".".join(["probekit", *reversed(chain[1:])]), node.lineno))
    return found


def test_the_built_in_plugins_import_only_public_names():
    """Built-ins use probekit exactly as a third party would: nothing beyond the public modules."""
    private = []
    for module, path in ALL_MODULES.items():
        if not module.startswith("probekit.plugins."):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        uses = [(imported, line) for imported, line, _ in imports_of(module)] + _dotted_uses(tree)
        # A plugin's own package (its generator, its reader) is the plugin's, not probekit's internals.
        own = module.split(".")[:3]
        private += [f"{module}:{line} uses {name}" for name, line in uses
                    if name not in PUBLIC_MODULES and name.split(".")[:3] != own
                    and not (name.startswith("probekit.") and name.rpartition(".")[0] in PUBLIC_MODULES[1:])]
    assert not private, "\n".join(private)


def test_the_private_import_test_catches_one(tmp_path):
    tree = ast.parse("import probekit\nx = probekit.metrics.base.layer_numbers\n")
    assert ("probekit.metrics.base", 2) in _dotted_uses(tree)

"""Layering of `model/` and `service/`, checked on the import graph that `ast` reads from the source.

- The server reaches TensorFlow-bound `model` code only through `model.bundle.reader` (which loads the query
  tower); everything else it imports from `model` is `model.bundle.contract`, which needs no TensorFlow.
- `model` never imports `service`.
- The sub-packages of `model` (and its top-level modules) import each other without a cycle.

Every import statement counts, inside functions too; only `if TYPE_CHECKING:` blocks are skipped.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import deque
from dataclasses import dataclass
from functools import cache
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("model", "service")
TENSORFLOW = frozenset({"tensorflow", "keras", "tf_keras"})
# The one TensorFlow-bound model module the server may reach: it loads the query tower's SavedModel.
READER = "model.bundle.reader"
# What service modules may import from model (and the parent packages, which run first and import nothing):
# the bundle contract, the reader, and three standard-library-only modules the command lines import without loading
# FAISS or NumPy: the contract's reserved names, the console conventions and the log formats every command shares.
LIGHT = frozenset({"model.bundle.reserved", "model.console", "model.logs"})
SERVICE_MAY_IMPORT = frozenset({"model.bundle.contract", READER}) | LIGHT
PARENT_PACKAGES = frozenset({"model", "model.bundle"})
# Composition roots: service modules that run the whole product and so may import anything. Nothing in
# service may import them. (The demo, which trains before it serves, is an application: apps/demo.py.)
COMPOSITION_ROOTS: dict[str, str] = {}


@dataclass(frozen=True)
class ImportGraph:
    """Modules of `model` and `service`, their imports of each other, and which external roots each imports.

    Attributes:
        edges: module -> the project modules its imports execute (parent packages included).
        external: module -> top-level names of the other packages it imports (e.g. "tensorflow").
    """

    edges: dict[str, set[str]]
    external: dict[str, set[str]]

    @property
    def modules(self) -> set[str]:
        return set(self.edges)

    def tensorflow_bound(self) -> set[str]:
        """Modules that import TensorFlow or Keras, directly or through other project modules."""
        bound = {m for m, roots in self.external.items() if roots & TENSORFLOW}
        changed = True
        while changed:
            changed = False
            for module, targets in self.edges.items():
                if module not in bound and targets & bound:
                    bound.add(module)
                    changed = True
        return bound

    def path(self, start: str, goal: set[str], skip: frozenset[str] = frozenset()) -> list[str] | None:
        """A shortest import chain from `start` to a module in `goal`, not passing through `skip`."""
        parents: dict[str, str | None] = {start: None}
        queue = deque([start])
        while queue:
            module = queue.popleft()
            if module in goal and module != start:
                chain = [module]
                while (parent := parents[chain[-1]]) is not None:
                    chain.append(parent)
                return chain[::-1]
            for target in sorted(self.edges[module] - skip):
                if target not in parents:
                    parents[target] = module
                    queue.append(target)
        return None


def _module_name(path: Path) -> tuple[str, bool]:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    is_package = parts[-1] == "__init__"
    return ".".join(parts[:-1] if is_package else parts), is_package


def _is_type_checking(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _imported_names(tree: ast.AST, module: str, is_package: bool) -> set[str]:
    """Absolute dotted names an AST imports; for `from a import b` both "a" and "a.b" (b may be a module)."""
    names: set[str] = set()
    pending: list[ast.AST] = [tree]
    while pending:
        node = pending.pop()
        if isinstance(node, ast.If) and _is_type_checking(node):
            pending.extend(node.orelse)
            continue
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".") if is_package else module.split(".")[:-1]
                anchor = anchor[: len(anchor) - (node.level - 1)]
                base = ".".join([*anchor, base] if base else anchor)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
        pending.extend(ast.iter_child_nodes(node))
    return names


@cache
def import_graph() -> ImportGraph:
    files = sorted(p for package in PACKAGES for p in (ROOT / package).rglob("*.py") if "generated" not in p.parts)
    parsed = {}
    for file in files:
        module, is_package = _module_name(file)
        parsed[module] = _imported_names(ast.parse(file.read_text(), str(file)), module, is_package)
    modules = set(parsed)
    edges: dict[str, set[str]] = {m: set() for m in modules}
    external: dict[str, set[str]] = {m: set() for m in modules}
    for module, names in parsed.items():
        for name in names:
            parts = name.split(".")
            if parts[0] not in PACKAGES:
                external[module].add(parts[0])
                continue
            # Importing a.b.c runs a/__init__.py and a/b/__init__.py first.
            prefixes = {".".join(parts[:i]) for i in range(1, len(parts) + 1)}
            edges[module].update(p for p in prefixes & modules if p != module)
    return ImportGraph(edges, external)


def _service_modules() -> list[str]:
    return sorted(m for m in import_graph().modules if m.split(".")[0] == "service")


def test_the_graph_sees_tensorflow_where_it_is() -> None:
    """The checks below can fail: the graph finds the TensorFlow-bound modules and the contract's edges."""
    graph = import_graph()
    bound = graph.tensorflow_bound()
    assert {READER, "model.bundle.export", "model.two_tower", "model.training.sequential", "service.engine"} <= bound
    assert not {"model.bundle.contract", "model.bundle.reserved", "model.features", "service.validation"} & bound
    assert "model.bundle.contract" in graph.edges["service.validation"]
    assert graph.edges["model.bundle.contract"] >= PARENT_PACKAGES  # parent packages run first
    assert not any(graph.edges[p] or graph.external[p] for p in PARENT_PACKAGES)  # and import nothing


def test_service_imports_only_the_contract_and_the_reader_from_model() -> None:
    graph = import_graph()
    wrong = {
        module: sorted(t for t in graph.edges[module] - PARENT_PACKAGES - SERVICE_MAY_IMPORT if t.startswith("model"))
        for module in _service_modules()
        if module not in COMPOSITION_ROOTS
    }
    wrong = {module: targets for module, targets in wrong.items() if targets}
    assert not wrong, f"service modules import from model beyond {sorted(SERVICE_MAY_IMPORT)}: {wrong}"


def test_service_reaches_tensorflow_bound_model_code_only_through_the_reader() -> None:
    graph = import_graph()
    bound_model = {m for m in graph.tensorflow_bound() if m.split(".")[0] == "model"} - {READER}
    roots = frozenset(COMPOSITION_ROOTS)
    chains = [
        chain
        for module in _service_modules()
        if module not in roots and (chain := graph.path(module, bound_model, skip=roots)) is not None
    ]
    assert not chains, "TensorFlow-bound model modules reached from service: " + "; ".join(
        " -> ".join(c) for c in chains
    )


def test_nothing_in_service_imports_a_composition_root() -> None:
    graph = import_graph()
    importers = {m: sorted(graph.edges[m] & set(COMPOSITION_ROOTS)) for m in _service_modules()}
    assert not {m: r for m, r in importers.items() if r}


def test_model_never_imports_service() -> None:
    graph = import_graph()
    wrong = {m: sorted(t for t in graph.edges[m] if t.split(".")[0] == "service") for m in graph.modules}
    assert not {m: t for m, t in wrong.items() if t and m.split(".")[0] == "model"}


def _component(module: str) -> str | None:
    """The sub-package or top-level module of `model` that `module` belongs to (None for `model` itself)."""
    parts = module.split(".")
    return ".".join(parts[:2]) if parts[0] == "model" and len(parts) > 1 else None


def test_no_import_cycle_between_model_subpackages() -> None:
    graph = import_graph()
    components: dict[str, set[str]] = {}
    for module, targets in graph.edges.items():
        source = _component(module)
        if source is None:
            continue
        components.setdefault(source, set()).update(
            c for t in targets if (c := _component(t)) is not None and c != source
        )
    assert {"model.training", "model.sequence", "model.bundle", "model.data"} <= set(components)
    cycles = [
        chain
        for source, targets in components.items()
        for target in targets
        if (chain := _package_path(components, target, source)) is not None
    ]
    assert not cycles, "model sub-package import cycles: " + "; ".join(" -> ".join([c[-1], *c]) for c in cycles)


def _package_path(components: dict[str, set[str]], start: str, goal: str) -> list[str] | None:
    parents: dict[str, str | None] = {start: None}
    queue = deque([start])
    while queue:
        node = queue.popleft()
        if node == goal:
            chain = [node]
            while (parent := parents[chain[-1]]) is not None:
                chain.append(parent)
            return chain[::-1]
        for target in sorted(components.get(node, ())):
            if target not in parents:
                parents[target] = node
                queue.append(target)
    return None


def test_request_validation_and_the_contract_load_no_tensorflow() -> None:
    """Importing them in a fresh interpreter loads neither keras nor tensorflow."""
    code = (
        "import sys, service.validation, model.bundle.contract\n"
        "loaded = sorted(m for m in ('keras', 'tensorflow', 'tf_keras') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr


def test_the_serving_command_line_and_supervisor_load_neither_faiss_nor_tensorflow() -> None:
    """`retrieval-serve` sets OpenMP's and TensorFlow's thread environment before either library loads (they read
    it once, when they load), and its supervisor stays small: importing them loads neither."""
    code = (
        "import sys, service.cli, service.workers\n"
        "loaded = sorted(m for m in ('faiss', 'keras', 'tensorflow', 'numpy') if m in sys.modules)\n"
        "assert not loaded, loaded\n"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr

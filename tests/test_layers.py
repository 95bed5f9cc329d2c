"""The package is layered: each module imports only from its own layer or the layers below, without cycles.

Every import is counted, at module level and inside functions alike (a function-local import still makes
the arrow). Layers, bottom to top: foundation, domain, application, command lines; the package's
`__init__` (the public API) sits above them all.
"""
import ast
from collections import defaultdict
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "src" / "litehrnet"

LAYERS = {  # top-level module or subpackage of litehrnet -> layer
    # foundation
    "keypoints": 0, "keypoint_sets": 0, "fileio": 0, "errors": 0, "device": 0,
    # domain
    "models": 1, "checkpoint": 1, "codec": 1, "data": 1, "evaluation": 1, "detection": 1, "drawing": 1,
    # application
    "predictor": 2, "evaluate": 2, "engine": 2, "exporting": 2, "runners": 2, "annotate": 2,
    "tracking": 2, "onnx_detector": 2, "service": 2, "detectors": 2, "mindyolo_detector": 2,
    "experiment": 2,
    # command lines
    "cli": 3, "commands": 3,
    # the public API (litehrnet/__init__.py)
    "": 4,
}
LAYER_NAMES = ("foundation", "domain", "application", "command lines", "public API")


def module_name(path, package=PACKAGE):
    """'litehrnet.models.layers' for .../litehrnet/models/layers.py ('litehrnet.models' for its __init__)."""
    parts = path.relative_to(package.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _is_module(name, package=PACKAGE):
    rel = Path(*name.split(".")[1:]) if "." in name else Path()
    base = package / rel
    return base.with_suffix(".py").is_file() or (base / "__init__.py").is_file()


def imports_of(path, package=PACKAGE):
    """Package modules that the file imports anywhere in it (module level and inside functions)."""
    name = module_name(path, package)
    is_pkg = path.name == "__init__.py"
    here = name.split(".") if is_pkg else name.split(".")[:-1]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here[:len(here) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            # `from pkg import submodule` imports the submodule
            targets = [f"{target}.{a.name}" if _is_module(f"{target}.{a.name}", package) else target
                       for a in node.names]
        else:
            continue
        found.update(t for t in targets if t == package.name or t.startswith(package.name + "."))
    found.discard(name)
    return found


def component(module):
    """The top-level part of the package a module belongs to ('' for the package's own __init__)."""
    parts = module.split(".")
    return parts[1] if len(parts) > 1 else ""


def import_graph(package=PACKAGE):
    return {module_name(p, package): imports_of(p, package) for p in sorted(package.rglob("*.py"))}


def find_cycle(graph):
    """One cycle of a {node: set(nodes)} graph as a list of nodes, or None."""
    state, stack = {}, []

    def visit(node):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if state.get(nxt) == 1:
                return stack[stack.index(nxt):] + [nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def layer_violations(graph):
    """(importer, imported) pairs where the imported module sits in a higher layer."""
    return sorted((src, dst) for src, dsts in graph.items() for dst in dsts
                  if LAYERS[component(dst)] > LAYERS[component(src)])


def component_graph(graph):
    out = defaultdict(set)
    for src, dsts in graph.items():
        for dst in dsts:
            if component(src) != component(dst):
                out[component(src)].add(component(dst))
    return out


def test_every_part_of_the_package_has_a_layer():
    unknown = sorted({component(m) for m in import_graph()} - set(LAYERS))
    assert not unknown, f"add these to LAYERS in {__file__}: {unknown}"


def test_no_import_from_a_higher_layer():
    bad = [f"{s} ({LAYER_NAMES[LAYERS[component(s)]]}) imports {d} ({LAYER_NAMES[LAYERS[component(d)]]})"
           for s, d in layer_violations(import_graph())]
    assert not bad, "\n".join(bad)


def test_no_import_cycle_between_modules():
    cycle = find_cycle(import_graph())
    assert cycle is None, " -> ".join(cycle)


def test_no_import_cycle_between_parts_of_the_package():
    cycle = find_cycle(component_graph(import_graph()))
    assert cycle is None, " -> ".join(cycle)


def test_checkpoint_io_never_imports_models():
    graph = import_graph()
    bad = sorted((s, d) for s, ds in graph.items() if component(s) == "checkpoint" for d in ds
                 if component(d) == "models")
    assert not bad


def test_the_checks_catch_what_they_are_for(tmp_path):
    """A made-up package with a function-local upward import and a cycle is caught on both counts."""
    pkg = tmp_path / "litehrnet"
    (pkg / "data").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "data" / "__init__.py").write_text("")
    (pkg / "codec.py").write_text("from .data import coco\n")
    (pkg / "data" / "coco.py").write_text("def f():\n    from ..codec import g\n    from ..engine import t\n")
    (pkg / "engine.py").write_text("import litehrnet.fileio\n")
    (pkg / "fileio.py").write_text("")
    graph = import_graph(pkg)
    assert graph["litehrnet.data.coco"] == {"litehrnet.codec", "litehrnet.engine"}
    assert layer_violations(graph) == [("litehrnet.data.coco", "litehrnet.engine")]
    assert find_cycle(graph) == ["litehrnet.codec", "litehrnet.data.coco", "litehrnet.codec"]
    assert find_cycle(component_graph(graph)) == ["codec", "data", "codec"]

"""The import graph of src/echolite: no cycles (module- and function-level imports alike), and every
import points down the layers of the pipeline (README, "Layout"). `python tools/import_graph.py src
echolite` prints the cycles; this test also prints the offending edges."""

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).parents[1]
SRC = ROOT / "src" / "echolite"

# top to bottom: a module may import modules of its own layer or below, never above
LAYERS = [
    {"cli"}, {"api"}, {"pipeline"}, {"bench", "benchmark", "deploy", "report", "search", "task_context"}, {"train"},
    {"tasks"},
    {"config"}, {"settings", "figures"}, {"results", "compress"}, {"data", "models", "measure", "metrics"},
    {"identity"}, {"store", "env", "typed"},
]


KNOWN = set().union(*LAYERS)


def _top(module: str) -> str:
    return module.split(".")[1]


def _layer(module: str) -> int:
    return next(i for i, names in enumerate(LAYERS) if _top(module) in names)


def _edges():
    for path in SRC.rglob("*.py"):
        module = "echolite." + ".".join(path.relative_to(SRC).with_suffix("").parts).removesuffix(".__init__")
        for node in ast.walk(ast.parse(path.read_text())):
            names = []
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
                names = [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.startswith("echolite.") and module.startswith("echolite."):
                    yield module, name


def test_no_cycles():
    out = subprocess.run([sys.executable, str(ROOT / "tools" / "import_graph.py"), str(ROOT / "src"), "echolite"],
                         capture_output=True, text=True, check=True).stdout
    assert out.splitlines()[-1].startswith("cycles: 0 "), out


def test_imports_point_down_the_layers():
    edges = [(a, b) for a, b in _edges() if _top(a) in KNOWN and _top(b) in KNOWN]
    assert len(edges) > 150
    up = [(a, b) for a, b in edges if _layer(b) < _layer(a)]
    assert not up, up


def test_importing_the_package_starts_nothing_heavy():
    code = "import sys, echolite; print(sorted(m for m in ('torch', 'cv2', 'onnxruntime') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def test_what_a_bundle_carries_imports_no_torch():
    """The files an export bundle copies (echolite.deploy.bundle.CARRIED) import the standard library,
    numpy, OpenCV, a runtime and each other only: a bundle runs where PyTorch is not installed."""
    from echolite.deploy.bundle import CARRIED

    allowed = {"numpy", "cv2", "onnxruntime", "openvino", "__future__"}
    carried = {"echolite." + rel.removesuffix(".py").removesuffix("/__init__").replace("/", ".") for rel in CARRIED}
    carried.add("echolite")
    bad = []
    for rel in CARRIED:
        for node in ast.walk(ast.parse((SRC / rel).read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module] if isinstance(node, ast.ImportFrom) and node.module else []
            for name in names:
                top = name.split(".")[0]
                if top in sys.stdlib_module_names or top in allowed or name in carried:
                    continue
                bad.append((rel, name))
    assert not bad, bad

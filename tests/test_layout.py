"""The architecture holds: every import in ``ais_wds`` points to the same or a lower layer, no module
imports itself back (no cycle), no private name crosses a package; the core, the tar package and the
CLI never import torch or webdataset; the gopen opener is registered whichever of ais_wds and
webdataset a script imports first; the 0.1 import paths keep working.

The import checks read every module with ``ast`` and count every import statement wherever it is:
module level, inside functions, and under ``if TYPE_CHECKING:``."""

import ast
import subprocess
import sys
from pathlib import Path
from typing import Dict, List, Set, Tuple

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ais_wds"

LAYERS: List[Tuple[str, List[str]]] = [
    ("model", ["ais_wds._version", "ais_wds.errors", "ais_wds.urls", "ais_wds.config"]),
    ("transport", ["ais_wds._core", "ais_wds.client", "ais_wds.metrics"]),  # metrics: counters the core calls
    ("objects", ["ais_wds.objects", "ais_wds.reader", "ais_wds.writer"]),
    ("listing + epochs", ["ais_wds.listing", "ais_wds.epochs", "ais_wds.partition", "ais_wds.shuffle"]),
    ("tar", ["ais_wds.tar"]),
    ("front ends", ["ais_wds.streaming", "ais_wds.datasets", "ais_wds.shard_index", "ais_wds.mixing",
                    "ais_wds.metrics.loop", "ais_wds.metrics.prometheus", "ais_wds.metrics.tensorboard"]),
    ("pack", ["ais_wds.pack"]),
    ("doctor", ["ais_wds.doctor"]),  # ais-wds doctor's checks: the cluster and the shards under a prefix
    ("cli", ["ais_wds.cli"]),
    ("package", ["ais_wds", "ais_wds._compat"]),  # the top-level names of every layer; the 0.1 paths
]
"""The layer order, lowest first. An entry is a module or a package (with everything under it); a
module belongs to its longest entry (``ais_wds`` itself is only ``ais_wds/__init__.py``)."""

REEXPORTS = ["ais_wds.reader", "ais_wds.writer"]
"""0.1 paths kept as re-exports of ``ais_wds.objects``: nothing in the package imports them."""


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


MODULES: Dict[str, Path] = {_module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


def _package_of(module: str) -> str:
    """The package a module belongs to: itself for a package's ``__init__``, else its parent."""
    return module if MODULES[module].name == "__init__.py" else module.rpartition(".")[0]


def _layer_of(module: str) -> int:
    best, found = -1, -1
    for index, (_, entries) in enumerate(LAYERS):
        for entry in entries:
            covers = module == entry or (entry != "ais_wds" and module.startswith(entry + "."))
            if covers and len(entry) > best:
                best, found = len(entry), index
    return found


def _imports(module: str) -> List[Tuple[int, str, str]]:
    """``(line, module imported from, name)`` of every ais_wds import in ``module``, at any depth;
    ``name`` is "" for ``import ais_wds.x``."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, a.name, "") for a in node.names if a.name.split(".")[0] == "ais_wds"]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = _package_of(module).split(".")
                base = base[:len(base) - node.level + 1]
                source = ".".join(base + ([node.module] if node.module else []))
            else:
                source = node.module or ""
            if source.split(".")[0] == "ais_wds":
                found += [(node.lineno, source, a.name) for a in node.names]
    return found


def _target(source: str, name: str) -> str:
    """The module an import names: ``source.name`` when that is a module, else ``source``."""
    return f"{source}.{name}" if name and f"{source}.{name}" in MODULES else source


def _runs(module: str, target: str) -> List[str]:
    """Modules that importing ``target`` from ``module`` executes: ``target`` and the ``__init__`` of every
    package above it that ``module`` is not inside (the top-level ``ais_wds`` is always loaded first)."""
    parts = target.split(".")
    above = [".".join(parts[:i]) for i in range(2, len(parts))]
    return [target] + [p for p in above if p in MODULES and not (module == p or module.startswith(p + "."))]


def _graph() -> Dict[str, Set[str]]:
    graph: Dict[str, Set[str]] = {m: set() for m in MODULES}
    for module in MODULES:
        for _, source, name in _imports(module):
            graph[module] |= {t for t in _runs(module, _target(source, name)) if t in MODULES and t != module}
    return graph


def test_the_layers_name_every_module_once_and_only_real_ones():
    entries = [entry for _, layer in LAYERS for entry in layer]
    assert len(entries) == len(set(entries))
    assert [e for e in entries if e not in MODULES] == []
    assert [m for m in MODULES if _layer_of(m) < 0] == []


def test_every_import_points_to_the_same_or_a_lower_layer():
    upward = []
    for module in MODULES:
        for line, source, name in _imports(module):
            for target in _runs(module, _target(source, name)):
                if target in MODULES and _layer_of(target) > _layer_of(module):
                    upward.append(f"{module}:{line} ({LAYERS[_layer_of(module)][0]}) imports {target} "
                                  f"({LAYERS[_layer_of(target)][0]})")
    assert upward == []


def test_no_import_cycle_between_modules():
    graph = _graph()
    cycles: List[List[str]] = []
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()

    def visit(module: str) -> None:  # Tarjan's strongly connected components
        index[module] = low[module] = len(index)
        stack.append(module)
        on_stack.add(module)
        for nxt in sorted(graph[module]):
            if nxt not in index:
                visit(nxt)
                low[module] = min(low[module], low[nxt])
            elif nxt in on_stack:
                low[module] = min(low[module], index[nxt])
        if low[module] == index[module]:
            component = []
            while True:
                top = stack.pop()
                on_stack.discard(top)
                component.append(top)
                if top == module:
                    break
            if len(component) > 1:
                cycles.append(sorted(component))

    for module in sorted(graph):
        if module not in index:
            visit(module)
    assert cycles == []


def _private(name: str) -> bool:
    return name.startswith("_") and not name.startswith("__")


def test_no_private_name_is_imported_from_another_package():
    """A ``_name``, or anything from a ``_module`` (``datasets._common``), is used only inside its package."""
    crossing = []
    for module in MODULES:
        for line, source, name in _imports(module):
            target = _target(source, name)
            if target != source:  # ``from package import module``
                what, owner = target.rpartition(".")[2], _package_of(target.rpartition(".")[0] or target)
            elif _private(name):
                what, owner = f"{source}.{name}", _package_of(source)
            else:
                what, owner = source, _package_of(source)
                if not (_private(source.rpartition(".")[2]) and MODULES[source].name != "__init__.py"):
                    continue
            if _private(what.rpartition(".")[2]) and owner != _package_of(module):
                crossing.append(f"{module}:{line} imports {what} (private to {owner})")
    assert crossing == []


def test_the_0_1_re_export_modules_are_not_used_inside_the_package():
    users = [f"{m}:{line}" for m in MODULES for line, source, name in _imports(m)
             if _target(source, name) in REEXPORTS]
    assert users == []


# -- torch and webdataset stay out of the core -----------------------------------------------------------

HEAVY = ("torch", "webdataset")
FRONT_ENDS = [name for name, _ in LAYERS].index("front ends")
# every module below the front ends, plus the front-end modules that ``import ais_wds`` loads, pack and cli
TORCH_FREE = sorted(
    [m for m in MODULES if _layer_of(m) < FRONT_ENDS or _layer_of(m) > FRONT_ENDS]
    + ["ais_wds.shard_index", "ais_wds.shard_index.index", "ais_wds.streaming", "ais_wds.streaming.gopen",
       "ais_wds.streaming.opener", "ais_wds.streaming.shards", "ais_wds.streaming.wids",
       # a mix's pure parts: a spawned worker unpickles its SharedWeights without loading torch
       "ais_wds.mixing", "ais_wds.mixing.draws", "ais_wds.mixing.state", "ais_wds.mixing.stop",
       "ais_wds.mixing.stratify", "ais_wds.mixing.weights"])

# function-level imports that run only once torch / webdataset is already loaded (proven by the tests below)
ALLOWED = {
    ("ais_wds._core.dist", "torch.distributed"),  # asked only when "torch" is in sys.modules
    ("ais_wds._core.dist", "torch.utils.data"),  # asked only when "torch.utils.data" is in sys.modules
    ("ais_wds.streaming.gopen", "webdataset.gopen"),  # register() runs when webdataset.gopen has loaded
}


def _heavy_imports(module: str):
    """Every import statement of torch or webdataset in a module, at any depth (functions included)."""
    found = []
    for node in ast.walk(ast.parse(MODULES[module].read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        found += [f"{module}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in HEAVY and (module, n) not in ALLOWED]
    return found


def test_core_tar_and_cli_modules_contain_no_torch_or_webdataset_import():
    offending = [hit for module in TORCH_FREE for hit in _heavy_imports(module)]
    assert offending == []


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("command", ["ls", "cat", "pack", "index", "doctor"])
def test_cli_help_loads_neither_torch_nor_webdataset(command):
    code = (
        "import sys, contextlib, io\n"
        "import ais_wds.cli\n"
        "with contextlib.redirect_stdout(io.StringIO()) as out:\n"
        "    try:\n"
        f"        ais_wds.cli.main([{command!r}, '--help'])\n"
        "    except SystemExit as e:\n"
        "        assert e.code == 0, e.code\n"
        "assert 'usage: ais-wds' in out.getvalue()\n"
        "print(sorted(m for m in ('torch', 'webdataset') if m in sys.modules))\n"
    )
    assert _run(code) == "[]"


def test_importing_every_torch_free_module_loads_neither_torch_nor_webdataset():
    modules = [m for m in TORCH_FREE if not m.endswith(".__main__")]
    code = ("import importlib, sys\n"
            f"for m in {modules!r}:\n    importlib.import_module(m)\n"
            "print(sorted(m for m in ('torch', 'webdataset') if m in sys.modules))\n")
    assert _run(code) == "[]"


@pytest.mark.parametrize("first", ["ais_wds", "webdataset"])
def test_gopen_opener_is_registered_whichever_is_imported_first(first):
    second = "webdataset" if first == "ais_wds" else "ais_wds"
    code = (f"import {first}\nimport {second}\n"
            "from webdataset.gopen import gopen_schemes\n"
            "print(type(gopen_schemes['ais']).__name__)\n")
    assert _run(code) == "AISOpener"


def test_front_end_names_load_on_first_access():
    code = ("import sys, ais_wds\n"
            "before = 'torch' in sys.modules\n"
            "ds = ais_wds.WebDataset\n"
            "print(before, 'torch' in sys.modules, ds.__module__)\n")
    assert _run(code) == "False True ais_wds.streaming.pipeline"


@pytest.mark.parametrize("old, name, home", [("ais_wds.tario", "tarfile_to_samples", "ais_wds"),
                                             ("ais_wds.shard_dataset", "AISShardDataset", "ais_wds"),
                                             ("ais_wds.pack_plan", "make_plan", "ais_wds.pack.plan"),
                                             ("ais_wds.map_dataset", "AISDataset", "ais_wds"),
                                             ("ais_wds.reader", "open_object", "ais_wds"),
                                             ("ais_wds.reader", "ResumingObjectRaw", "ais_wds.objects.reader"),
                                             ("ais_wds.writer", "open_writer", "ais_wds"),
                                             ("ais_wds.writer", "ObjectWriter", "ais_wds.objects.writer"),
                                             ("ais_wds.listing", "Listing", "ais_wds"),
                                             ("ais_wds.partition", "partition", "ais_wds"),
                                             ("ais_wds.client", "ClientConfig", "ais_wds"),
                                             ("ais_wds.gopen", "AISOpener", "ais_wds"),
                                             ("ais_wds.fetch", "DirectGetter", "ais_wds.objects.fetch"),
                                             ("ais_wds.prefetch", "Prefetcher", "ais_wds.objects.prefetch")])
def test_import_paths_of_0_1_keep_working(old, name, home):
    """The 0.1 path gives the very object the public package (or the module it lives in now) gives."""
    code = f"from {old} import {name} as then\nfrom {home} import {name} as now\nprint(then is now)"
    assert _run(code) == "True"

"""The architecture holds: the core, the tar package and the CLI never import torch or webdataset, and
the gopen opener is registered whichever of ais_wds and webdataset a script imports first."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "ais_wds"
HEAVY = ("torch", "webdataset")
# modules (and packages) that must stay importable without torch or webdataset
TORCH_FREE = ["__init__.py", "_compat.py", "_version.py", "client.py", "errors.py", "listing.py", "partition.py",
              "reader.py", "urls.py", "writer.py", "_core", "tar", "cli", "pack", "shard_index/index.py",
              "shard_index/__init__.py", "streaming/__init__.py", "streaming/gopen.py", "streaming/shards.py",
              "streaming/wids.py"]


# function-level imports that run only once torch / webdataset is already loaded (proven by the tests below)
ALLOWED = {
    ("_core/dist.py", "torch.distributed"),  # asked only when "torch" is in sys.modules
    ("_core/dist.py", "torch.utils.data"),  # asked only when "torch.utils.data" is in sys.modules
    ("streaming/gopen.py", "webdataset.gopen"),  # register() runs when webdataset.gopen has loaded
}


def _files(entry: str):
    path = PACKAGE / entry
    return sorted(path.rglob("*.py")) if path.is_dir() else [path]


def _heavy_imports(path: Path):
    """Every import statement of torch or webdataset in a file, at any depth (functions included)."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        names = []
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names = [node.module]
        rel = str(path.relative_to(PACKAGE))
        found += [f"{rel}:{node.lineno} imports {n}" for n in names
                  if n.split(".")[0] in HEAVY and (rel, n) not in ALLOWED]
    return found


def test_core_tar_and_cli_modules_contain_no_torch_or_webdataset_import():
    offending = [hit for entry in TORCH_FREE for f in _files(entry) for hit in _heavy_imports(f)]
    assert offending == []


def _run(code: str) -> str:
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


@pytest.mark.parametrize("command", ["ls", "cat", "pack", "index"])
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
    modules = []
    for entry in TORCH_FREE:
        for f in _files(entry):
            rel = f.relative_to(PACKAGE.parent).with_suffix("")
            parts = list(rel.parts[:-1]) if rel.name == "__init__" else list(rel.parts)
            if parts[-1] != "__main__":
                modules.append(".".join(parts))
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


@pytest.mark.parametrize("old, name", [("ais_wds.tario", "tarfile_to_samples"),
                                       ("ais_wds.shard_dataset", "AISShardDataset"),
                                       ("ais_wds.pack_plan", "make_plan"),
                                       ("ais_wds.map_dataset", "AISDataset")])
def test_import_paths_of_0_1_keep_working(old, name):
    assert _run(f"from {old} import {name}\nprint({name}.__name__ if hasattr({name}, '__name__') else 'ok')")

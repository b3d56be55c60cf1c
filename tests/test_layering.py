"""Imports run one way: genlab at the bottom, the labs above it and never into each other,
mnist_lab over the GAN and LeNet, programs on top; no module imports back up, no cycles."""

import ast
import os

import pytest

from conftest import REPO

PACKAGES = ("genlab", "gan", "lenet", "xray", "mnist_lab", "scripts")
ALLOWED = {  # package -> the project packages its modules may import
    "genlab": {"genlab"},
    "gan": {"genlab", "gan"},
    "lenet": {"genlab", "lenet"},
    "xray": {"genlab", "xray"},
    "mnist_lab": {"genlab", "gan", "lenet", "mnist_lab"},
    "scripts": set(PACKAGES),
}
# xray's modules bottom to top, as its package docstring lists them.
XRAY_ORDER = ("networks", "normalization", "convolution", "attention", "prompts", "image_folder", "config", "safetensors_file", "sampler", "bridge", "keras_cv_files", "lora", "optimizer", "export", "weights", "dataset", "generate", "finetune", "judge")


def project_imports(path):
    """The project modules a file imports, anywhere in it (inside functions too), as dotted names."""
    found = set()
    for node in ast.walk(ast.parse(open(path, encoding="utf-8").read())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names = [node.module] + [f"{node.module}.{alias.name}" for alias in node.names]
        else:
            continue
        found |= {name for name in names if name.split(".")[0] in PACKAGES}
    return found


def modules():
    result = {}
    for package in PACKAGES:
        for name in sorted(os.listdir(os.path.join(REPO, package))):
            if name.endswith(".py"):
                module = package if name == "__init__.py" else f"{package}.{name[:-3]}"
                result[module] = project_imports(os.path.join(REPO, package, name))
    return result


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_packages_import_only_downwards(module):
    package = module.split(".")[0]
    wrong = sorted(name for name in MODULES[module] if name.split(".")[0] not in ALLOWED[package])
    assert not wrong, f"{module} imports {wrong}"


def test_xray_modules_import_only_those_below_them():
    assert sorted(XRAY_ORDER) == sorted(m.split(".")[1] for m in MODULES if m.startswith("xray."))
    for position, name in enumerate(XRAY_ORDER):
        imported = {n.split(".")[1] for n in MODULES[f"xray.{name}"] if n.startswith("xray.")}
        above = imported - set(XRAY_ORDER[:position])
        assert not above, f"xray.{name} imports xray.{sorted(above)} from above it"


def test_no_import_cycles():
    graph = {module: {name for name in imported if name in MODULES} for module, imported in MODULES.items()}
    done, path = set(), []

    def visit(module):
        assert module not in path, "import cycle: " + " -> ".join(path[path.index(module):] + [module])
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)

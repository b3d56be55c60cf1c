"""Imports run one way: genlab at the bottom, the labs above it and never into each other,
mnist_lab over the GAN and LeNet, programs on top; no module imports back up, no cycles."""

import ast
import os

import pytest

from helpers.checks import REPO

PACKAGES = ("genlab", "gan", "lenet", "xray", "mnist_lab", "scripts")
ALLOWED = {  # package -> the project packages its modules may import
    "genlab": {"genlab"},
    "gan": {"genlab", "gan"},
    "lenet": {"genlab", "lenet"},
    "xray": {"genlab", "xray"},
    "mnist_lab": {"genlab", "gan", "lenet", "mnist_lab"},
    "scripts": set(PACKAGES),
}
# xray's layers bottom to top, as its package docstring describes them. A module imports from its
# own unit (a package or module named here) and from the layers below; units of one layer are
# independent of each other.
XRAY_LAYERS = (
    ("xray.config", "xray.data"),
    ("xray.sd",),
    ("xray.formats",),
    ("xray.weights",),
    ("xray.generation", "xray.training", "xray.judging"),
)
# Packages that import nothing of the project outside themselves but the modules named.
SELF_CONTAINED = {"xray.training.kernels": ("xray.sd.attention",)}


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
    """{dotted module name: the project modules it imports}, for every module of the packages."""
    result = {}
    for package in PACKAGES:
        for folder, _, files in os.walk(os.path.join(REPO, package)):
            dotted = os.path.relpath(folder, REPO).replace(os.sep, ".")
            for name in sorted(files):
                if name.endswith(".py"):
                    module = dotted if name == "__init__.py" else f"{dotted}.{name[:-3]}"
                    result[module] = project_imports(os.path.join(folder, name))
    return result


MODULES = modules()


@pytest.mark.parametrize("module", sorted(MODULES))
def test_packages_import_only_downwards(module):
    package = module.split(".")[0]
    wrong = sorted(name for name in MODULES[module] if name.split(".")[0] not in ALLOWED[package])
    assert not wrong, f"{module} imports {wrong}"


def unit_of(module):
    """(layer number, unit) of an xray module, or None for the package itself."""
    for number, layer in enumerate(XRAY_LAYERS):
        for unit in layer:
            if module == unit or module.startswith(unit + "."):
                return number, unit
    return None


XRAY_MODULES = sorted(m for m in MODULES if m.startswith("xray."))


def test_every_xray_module_is_in_a_layer():
    assert not [m for m in XRAY_MODULES if unit_of(m) is None]


@pytest.mark.parametrize("module", XRAY_MODULES)
def test_xray_modules_import_their_own_unit_or_layers_below(module):
    layer, unit = unit_of(module)
    wrong = []
    for name in MODULES[module]:
        target = unit_of(name) if name != "xray" else None
        if target is not None and target[1] != unit and target[0] >= layer:
            wrong.append(name)
    assert not wrong, f"{module} (layer {layer + 1}) imports {sorted(wrong)} from its own layer or above"


@pytest.mark.parametrize("package", SELF_CONTAINED)
def test_self_contained_packages(package):
    allowed = (package, *SELF_CONTAINED[package])
    for module in [m for m in MODULES if m == package or m.startswith(package + ".")]:
        outside = [n for n in MODULES[module] if not any(n == a or n.startswith(a + ".") for a in allowed)]
        assert not outside, f"{module} imports {outside}"


def test_no_import_cycles():
    graph = {module: {name for name in imported if name in MODULES} for module, imported in MODULES.items()}
    done, path = set(), []

    def visit(module):
        assert module not in path, "import cycle: " + " -> ".join(path[path.index(module) :] + [module])
        if module in done:
            return
        path.append(module)
        for imported in sorted(graph[module]):
            visit(imported)
        path.pop()
        done.add(module)

    for module in sorted(graph):
        visit(module)

"""The import rules of docs/architecture.md, checked on every module of the package.

Each module's imports are read from its syntax tree (``import``/``from`` statements anywhere in
the file, relative ones resolved), mapped to the part they belong to, and checked against the
rules below. Imports by string (plugin discovery, the CLI's utility list) are not seen: they
are the sanctioned ways of reaching plugins and commands.
"""
import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "pathspider"

#: Modules that only keep an old import path working (1.0's, or an earlier helper's).
COMPAT = ("pathspider.base", "pathspider.run", "pathspider.standalone", "pathspider.sysstate",
          "pathspider.network", "pathspider.util")
#: Modules every part may import: they import nothing of pathspider themselves.
SHARED = ("pathspider.constants", "pathspider.version")
PARTS = ("engine", "observer", "client", "cli", "plugins", "lab", "testing", "campaign")

#: part -> parts it must never import.
FORBIDDEN = {
    "observer": {"engine", "client", "cli", "lab", "plugins", "compat", "testing", "campaign"},
    "engine": {"plugins", "lab", "cli", "compat", "testing", "campaign"},
    "client": {"engine", "cli", "lab", "plugins", "compat", "testing", "campaign"},
    "plugins": {"engine", "cli", "lab", "testing", "campaign"},
    "cli": {"plugins", "testing", "campaign"},
    "lab": {"engine", "observer", "client", "cli", "plugins", "compat", "shared", "testing",
            "campaign"},
    "testing": {"engine", "client", "cli", "plugins", "compat", "campaign"},
    "shared": {"engine", "observer", "client", "cli", "plugins", "lab", "compat", "shared",
               "testing", "campaign"},
    # campaigns drive local runs as subprocesses: they reach plugins only through the CLI's
    # parser (discovery), never the observer, client or plugin modules themselves
    "campaign": {"observer", "client", "plugins", "compat", "testing"},
}
#: Old paths plugins may still use: 1.0's API module.
PLUGIN_API = ("pathspider.base",)


def module_name(path):
    parts = list(path.relative_to(PACKAGE.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def all_modules():
    return {module_name(p): p for p in sorted(PACKAGE.rglob("*.py"))}


MODULES = all_modules()


def part_of(name):
    """The part a ``pathspider...`` module belongs to, or None for anything else."""
    if name == "pathspider" or not name.startswith("pathspider."):
        return None
    for prefix in COMPAT:
        if name == prefix or name.startswith(prefix + "."):
            return "compat"
    if name in SHARED:
        return "shared"
    top = name.split(".")[1]
    return top if top in PARTS else "unknown"


def imported_modules(source, name, is_package=False, known=MODULES):
    """Every module ``source`` (the text of module ``name``) imports, relative ones resolved.

    ``from package import name`` counts as importing ``package.name`` when that is a module.
    """
    package = name if is_package else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - node.level + 1]
                base = ".".join(anchor + ([base] if base else []))
            found.add(base)
            found.update(f"{base}.{alias.name}" for alias in node.names
                         if f"{base}.{alias.name}" in known)
    return found


def violations(name, source, is_package=False):
    """``[(imported module, rule)]`` broken by module ``name`` with text ``source``."""
    part = part_of(name)
    out = []
    for target in sorted(imported_modules(source, name, is_package)):
        target_part = part_of(target)
        if target_part is None or target_part == part and part != "shared":
            continue
        if target_part == "unknown":
            out.append((target, "not in any part of the architecture"))
        elif target_part in FORBIDDEN.get(part, ()):
            if part == "plugins" and target in PLUGIN_API:
                continue
            out.append((target, f"{part} must not import {target_part}"))
    return out


@pytest.mark.parametrize("name", sorted(MODULES))
def test_module_keeps_the_import_rules(name):
    path = MODULES[name]
    assert part_of(name) != "unknown", f"{name} belongs to no part (see docs/architecture.md)"
    assert violations(name, path.read_text(), path.name == "__init__.py") == []


def _is_reexport_statement(node):
    if isinstance(node, (ast.Import, ast.ImportFrom)):
        return True
    if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant):
        return isinstance(node.value.value, str)                        # docstring
    if isinstance(node, ast.Assign):
        return [t.id for t in node.targets if isinstance(t, ast.Name)] in (["__all__"],
                                                                          ["__path__"])
    if isinstance(node, ast.If):                                          # main guard
        return ast.unparse(node.test) == "__name__ == '__main__'" and len(node.body) == 1
    return False


@pytest.mark.parametrize("name", sorted(n for n in MODULES if part_of(n) == "compat"))
def test_compatibility_modules_only_re_export(name):
    tree = ast.parse(MODULES[name].read_text())
    logic = [ast.unparse(node).splitlines()[0] for node in tree.body
             if not _is_reexport_statement(node)]
    assert logic == [], f"{name} must only re-export (move the code to its part)"


@pytest.mark.parametrize("part, source, broken", [
    ("observer", "from pathspider.engine.spider import Spider", "observer must not import engine"),
    ("observer", "import pathspider.client.reactor", "observer must not import client"),
    ("engine", "from pathspider.plugins import ecn", "engine must not import plugins"),
    ("engine", "from pathspider.lab.plan import class_of", "engine must not import lab"),
    ("client", "from pathspider.base import Conn", "client must not import compat"),
    ("client", "def f():\n    from pathspider.engine import spider", "client must not import engine"),
    ("plugins", "from pathspider.engine.spider import Spider", "plugins must not import engine"),
    ("lab", "from ..observer import dissector", "lab must not import observer"),
    ("lab", "from pathspider.testing import packets", "lab must not import testing"),
    ("engine", "from pathspider.testing.packets import tcp4", "engine must not import testing"),
    ("testing", "from pathspider.engine.spider import Spider", "testing must not import engine"),
    ("testing", "import pathspider.client.reactor", "testing must not import client"),
    ("campaign", "from pathspider.plugins import ecn", "campaign must not import plugins"),
    ("campaign", "from pathspider.observer import meter", "campaign must not import observer"),
    ("engine", "from pathspider.campaign import names", "engine must not import campaign"),
])
def test_the_checker_catches_a_broken_rule(part, source, broken):
    name = {"lab": "pathspider.lab.topology",
            "testing": "pathspider.testing.packets"}.get(part, f"pathspider.{part}.example")
    assert {rule for _, rule in violations(name, source)} == {broken}


def test_the_checker_allows_what_the_rules_allow():
    assert violations("pathspider.plugins.example", "from pathspider.base import Spider") == []
    assert violations("pathspider.engine.example", "from pathspider.observer import meter") == []
    assert violations("pathspider.client.example", "from pathspider.constants import Conn") == []
    assert violations("pathspider.lab.topology", "from . import netns") == []
    assert violations("pathspider.testing.packets",
                      "from pathspider.lab.craft import tcp4\n"
                      "from pathspider.observer.meter import Observer") == []

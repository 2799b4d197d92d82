"""The package's rooms import one way: dsp < models < presets < plugin < train, stemboard.

Every module of the install-shaped package is parsed with ``ast`` (nothing is
imported), so this holds for modules whose optional dependencies (torch, ray)
are missing here too. A module may import its own room and the rooms below it,
never one above; ``stemboard`` (the public API and CLI) and ``train`` are the
top floor and do not import each other. Imports inside functions that name a
``stemboard`` module are refused too: a function-level import hides an arrow
(and so a circle) from a reader of the module's head. The few that stay are
listed in ``DEFERRED`` with the reason.
"""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
# Source folder -> the subpackage setup.py's package_dir maps it to.
ROOMS = {"dsp": "dsp", "models": "models", "presets": "presets", "plugin": "plugin",
         "train": "train", "stemboard": "stemboard"}
# Floor of each room; a room may import rooms on its floor or below.
FLOOR = {"dsp": 0, "models": 1, "presets": 2, "plugin": 3, "train": 4, "stemboard": 4}
# (module, imported module) -> why the import stays inside a function.
DEFERRED = {
    ("stemboard.train.card", "stemboard.train.train"):
        "train.train imports torch; the card's other tables are written without it",
    ("stemboard", "stemboard.models"): "the lazy top layer: stemboard.separate loads the "
        "runtime on first call, so `import stemboard` does not (issue 25 item 5)",
    ("stemboard", "stemboard.plugin"): "the lazy top layer, as above",
    ("stemboard.cli", "stemboard.cli_commands"): "the command bodies load numpy, the Numba "
        "kernels, onnxruntime and pedalboard; main() imports them once a command is parsed, "
        "so `stemboard --help` and a bad option do not (issue 25 item 5)",
    ("stemboard.presets", "stemboard.plugin.presets"):
        "deprecated Preset.make_separator/make_stemsplit forward to the plugin factories "
        "(README code before issue 27); the arrow goes with them",
}
# Imports up a floor that stay, with why (each is also in DEFERRED: never at module level).
UPWARD = {("stemboard.presets", "stemboard.plugin.presets")}


def _modules():
    for folder, room in ROOMS.items():
        for path in sorted((ROOT / folder).rglob("*.py")):
            parts = path.relative_to(ROOT / folder).with_suffix("").parts
            if parts[-1] == "__init__":
                parts = parts[:-1]
            dotted = ".".join(("stemboard",) + (() if room == "stemboard" else (room,)) + parts)
            yield dotted, room, path


MODULES = list(_modules())


def _room_of(name):
    """The room of an imported ``stemboard...`` module name (None: not ours)."""
    parts = name.split(".")
    if parts[0] != "stemboard":
        return None
    if len(parts) > 1 and parts[1] in FLOOR and parts[1] != "stemboard":
        return parts[1]
    return "stemboard"


def _imports(tree, dotted):
    """(module name, is at module level, line) for every import of ``tree``."""
    package = dotted if tree_is_package(dotted) else dotted.rpartition(".")[0]
    top = {id(n) for n in tree.body}
    guarded = set()  # imports under a module-level `if`/`try` are still module level
    for n in tree.body:
        if isinstance(n, (ast.If, ast.Try)):
            guarded.update(id(c) for c in ast.walk(n))
    for node in ast.walk(tree):
        level = id(node) in top or id(node) in guarded
        if isinstance(node, ast.Import):
            for a in node.names:
                yield a.name, level, node.lineno
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module
            yield mod, level, node.lineno
            for a in node.names:  # `from stemboard.plugin import audio` imports a module
                yield f"{mod}.{a.name}", level, node.lineno


_PACKAGES = {d for d, _, p in MODULES if p.name == "__init__.py"}


def tree_is_package(dotted):
    return dotted in _PACKAGES


_KNOWN = {d for d, _, _ in MODULES} | _PACKAGES


def _own(name):
    """``name`` if it is one of our modules or packages, else its longest prefix that is."""
    while name and name not in _KNOWN:
        name = name.rpartition(".")[0]
    return name or None


def _edges():
    for dotted, room, path in MODULES:
        tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
        for name, level, line in _imports(tree, dotted):
            target = _own(name)
            if target is not None and target != dotted:
                yield dotted, room, target, level, f"{path.relative_to(ROOT)}:{line}"


EDGES = list(_edges())


def test_the_package_is_read():
    names = {d for d, _, _ in MODULES}
    assert {"stemboard", "stemboard.cli", "stemboard.dsp.kernels", "stemboard.models.runtime",
            "stemboard.presets", "stemboard.plugin.engine", "stemboard.train.pipeline"} <= names
    assert any(t == "stemboard.dsp.stft" for _, _, t, _, _ in EDGES)


def test_imports_never_run_up_a_floor():
    up = sorted({f"{where}: {src} ({room}) imports {dst} ({_room_of(dst)})"
                 for src, room, dst, _, where in EDGES
                 if FLOOR[_room_of(dst)] > FLOOR[room] and (src, dst) not in UPWARD})
    assert not up, "\n".join(up)


def test_top_floor_rooms_stay_apart():
    across = [f"{where}: {src} imports {dst}" for src, room, dst, _, where in EDGES
              if {room, _room_of(dst)} == {"stemboard", "train"}]
    assert not across, "\n".join(across)


def test_no_function_level_imports_of_our_modules():
    hidden = sorted({f"{where}: {src} imports {dst} inside a function"
                     for src, _, dst, level, where in EDGES
                     if not level and (src, dst) not in DEFERRED})
    assert not hidden, "\n".join(hidden)


def test_deferred_imports_are_still_needed():
    found = {(src, dst) for src, _, dst, level, _ in EDGES if not level}
    assert set(DEFERRED) <= found, sorted(set(DEFERRED) - found)
    assert UPWARD <= set(DEFERRED)
    at_module_level = {(src, dst) for src, _, dst, level, _ in EDGES if level}
    assert not UPWARD & at_module_level


def test_no_circles():
    graph = {}
    for src, _, dst, _, _ in EDGES:
        if (src, dst) not in UPWARD:  # the deprecated forwarders' loop, listed above
            graph.setdefault(src, set()).add(dst)
    circles = []
    state = {}

    def visit(node, stack):
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph.get(node, ())):
            if nxt.startswith(node + "."):  # a package's face importing its own rooms
                continue
            if state.get(nxt) == 1:
                circles.append(stack[stack.index(nxt):] + [nxt])
            elif nxt not in state:
                visit(nxt, stack)
        stack.pop()
        state[node] = 2

    for node in sorted(graph):
        if node not in state:
            visit(node, [])
    assert not circles, "\n".join(" -> ".join(c) for c in circles)


@pytest.mark.parametrize("room", sorted(FLOOR))
def test_every_room_is_mapped_in_setup(room):
    setup = (ROOT / "setup.py").read_text(encoding="utf-8")
    pkg = "stemboard" if room == "stemboard" else f"stemboard.{room}"
    assert f'"{pkg}": "{room}"' in setup

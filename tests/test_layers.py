"""The package's imports point one way: no cycle between ``studio`` modules, and no import up the layer order.

Every import counts, also those inside functions (a lazy import is still a dependency); only imports under
``if TYPE_CHECKING:`` are left out, since they never run. A new module must be given a layer here.
"""

import ast
from fnmatch import fnmatchcase
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "studio"

# Lowest first; a module may import its own layer and those below. Patterns are fnmatch-style; the longest
# matching pattern wins (so a model package's ``train`` module is in the train layer, not with its model).
LAYERS = [
    ("base", ["studio", "studio.errors", "studio.config", "studio.audio", "studio.nn", "studio.latent",
              "studio.registry", "studio.weights", "studio.metrics", "studio.notes", "studio.data",
              "studio.rooms"]),
    ("models", ["studio.vocoder", "studio.vocoder.*", "studio.translation", "studio.translation.*",
                "studio.generation", "studio.generation.*", "studio.transcription", "studio.transcription.*",
                "studio.separation", "studio.baselines"]),
    ("pipelines", ["studio.explore", "studio.evaluate", "studio.export", "studio.plots"]),
    ("train", ["studio.train", "studio.train.*", "studio.vocoder.train", "studio.translation.train",
               "studio.generation.train", "studio.transcription.train"]),
    ("tools", ["studio.tasks", "studio.plan", "studio.bench", "studio.bench_rows", "studio.cli", "studio.app", "studio.__main__"]),
]


def modules() -> dict[str, Path]:
    found = {}
    for p in PACKAGE.rglob("*.py"):
        parts = list(p.relative_to(PACKAGE.parent).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found[".".join(parts)] = p
    return found


def _type_checking(node) -> bool:
    t = node.test
    return isinstance(node, ast.If) and (getattr(t, "id", None) == "TYPE_CHECKING" or getattr(t, "attr", None) == "TYPE_CHECKING")


def _imports(tree):
    """Import nodes anywhere in the tree (functions included), skipping ``if TYPE_CHECKING:`` bodies."""
    stack = [tree]
    while stack:
        node = stack.pop()
        if isinstance(node, (ast.Import, ast.ImportFrom)):
            yield node
        children = list(ast.iter_child_nodes(node))
        if isinstance(node, ast.If) and _type_checking(node):
            children = node.orelse
        stack.extend(children)


def graph() -> dict[str, set[str]]:
    """Module -> the ``studio`` modules it imports (``from pkg import name`` counts as ``pkg.name`` when that is a
    module, else as ``pkg``)."""
    mods = modules()

    def owner(name: str) -> str:
        while name not in mods:
            name = name.rpartition(".")[0]
        return name

    edges = {}
    for name, path in mods.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        out = set()
        for node in _imports(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Import):
                out |= {owner(a.name) for a in node.names if a.name.split(".")[0] == "studio"}
                continue
            if node.level:
                base = package.split(".")[: len(package.split(".")) - node.level + 1]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != "studio":
                continue
            out |= {f"{target}.{a.name}" if f"{target}.{a.name}" in mods else owner(target) for a in node.names}
        out.discard(name)
        edges[name] = out
    return edges


def layer(module: str) -> int:
    matches = [(len(p), i) for i, (_, patterns) in enumerate(LAYERS) for p in patterns if fnmatchcase(module, p)]
    assert matches, f"{module} has no layer: add it to LAYERS in tests/test_layers.py"
    return max(matches)[1]


def cycles(edges: dict[str, set[str]]) -> list[list[str]]:
    """One cycle per strongly connected component with more than one module (Tarjan)."""
    index, low, stack, on, found = {}, {}, [], set(), []

    def visit(v):
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(edges.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                found.append(sorted(comp))

    for v in sorted(edges):
        if v not in index:
            visit(v)
    return found


def test_every_module_has_a_layer():
    for m in modules():
        layer(m)


def test_no_import_points_up_the_layers():
    up = [f"{m} ({LAYERS[layer(m)][0]}) imports {t} ({LAYERS[layer(t)][0]})"
          for m, targets in sorted(graph().items()) for t in sorted(targets) if layer(t) > layer(m)]
    assert not up, "\n".join(up)


def test_no_import_cycle():
    found = cycles(graph())
    assert not found, "\n".join(" <-> ".join(c) for c in found)


@pytest.mark.parametrize("edges, expected", [
    ({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}, [["a", "b", "c"]]),
    ({"a": {"b"}, "b": set()}, []),
])
def test_cycle_finder_finds_cycles(edges, expected):
    assert cycles(edges) == expected


def test_graph_sees_lazy_and_relative_imports():
    edges = graph()
    assert "studio.errors" in edges["studio.audio"]  # from .errors import ... at module level
    assert "studio.vocoder.streaming" in edges["studio.vocoder.model"]  # inside a method


def test_the_readme_layout_names_every_module():
    readme = (PACKAGE.parent / "README.md").read_text()
    tree = readme[readme.index("The layout, one line a module"):]
    tree = tree[tree.index("```text"): tree.index("```\n", tree.index("```text") + 7)]
    # the first word of each line: a file name, a folder name ending in /, or a path like vocoder/train.py
    listed = {part for line in tree.splitlines() for word in line.split()[:1] for part in
              (word.rsplit("/", 1)[-1], word.rsplit("/", 1)[0] + "/")}
    missing = sorted(str(p.relative_to(PACKAGE)) for p in modules().values()
                     if p.name not in listed or p.parent.name + "/" not in listed)
    assert not missing, f"add these modules to the README's layout tree: {missing}"

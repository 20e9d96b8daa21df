"""The product Python (python/) has no import cycle and never imports research/ (issue 19).

Reads every module under python/ with ast (nothing is imported, so torch is not needed), keeps
the imports of the project's own packages (absolute and relative, at module level and inside
functions alike: a deferred import still couples two modules), and asserts that the module graph
is acyclic. A cycle is reported as the chain of modules that closes it.
"""
import ast
import sys
from pathlib import Path

from conftest import ROOT

PYTHON = ROOT / "python"
RESEARCH = ROOT / "research"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(PYTHON).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def modules() -> dict:
    """{dotted name: path} of every module of the product packages."""
    out = {}
    for pkg in sorted(p for p in PYTHON.iterdir() if (p / "__init__.py").is_file()):
        for path in sorted(pkg.rglob("*.py")):
            out[module_name(path)] = path
    return out


def imported(name: str, path: Path, known: set) -> set:
    """The project modules `name` imports: `import a.b`, `from a import b` (b a module, or a
    name defined in a), `from . import b`, `from .b import c`. An imported name that is not a
    module counts as an import of the module defining it (the longest known prefix)."""
    is_pkg = path.name == "__init__.py"
    package = name if is_pkg else name.rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            targets = [a.name for a in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            targets = [f"{base}.{a.name}" for a in node.names]
        else:
            continue
        for t in targets:
            while t and t not in known:
                t = t.rpartition(".")[0]
            if t and t != name:
                found.add(t)
    return found


def import_graph() -> dict:
    mods = modules()
    known = set(mods)
    return {name: imported(name, path, known) for name, path in mods.items()}


def find_cycle(graph: dict):
    """A list of modules [a, b, ..., a] forming a cycle, or None (iterative DFS, three colours)."""
    colour = dict.fromkeys(graph, 0)   # 0 new, 1 on the stack, 2 done
    for root in sorted(graph):
        if colour[root]:
            continue
        stack = [(root, iter(sorted(graph[root])))]
        path = [root]
        colour[root] = 1
        while stack:
            node, children = stack[-1]
            child = next(children, None)
            if child is None:
                colour[node] = 2
                stack.pop()
                path.pop()
            elif colour[child] == 1:
                return path[path.index(child):] + [child]
            elif colour[child] == 0:
                colour[child] = 1
                stack.append((child, iter(sorted(graph[child]))))
                path.append(child)
    return None


def test_the_checker_finds_a_cycle_and_accepts_a_dag():
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b", "c"}, "b": {"c"}, "c": set()}) is None


def test_the_checker_reads_relative_and_deferred_imports():
    graph = import_graph()
    assert "gsdnet_torch.model" in graph["gsdnet_torch.common"]
    assert "gsdnet_ref.rng" in graph["gsdnet_ref.sampler"]          # `from . import rng`
    assert "gsdnet_ref.pipeline" in graph["gsdnet_ref.multisample"]  # `from .pipeline import`


def test_the_product_python_has_no_import_cycle():
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle)


def test_the_product_python_never_imports_research():
    research = {p.stem for p in RESEARCH.glob("*.py")}
    for name, path in modules().items():
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) and not node.level else []
            for n in names:
                assert n.split(".")[0] not in research, f"{name} imports research/{n}"


def test_no_module_edits_sys_path():
    """Imports resolve through the installed package, never through sys.path edits."""
    here = Path(__file__)
    for path in [*PYTHON.rglob("*.py"), *RESEARCH.rglob("*.py"), *here.parent.glob("*.py")]:
        text = path.read_text()
        if path != here:
            assert "sys.path.insert" not in text and "sys.path.append" not in text, path


if __name__ == "__main__":
    sys.exit(0 if find_cycle(import_graph()) is None else 1)


def test_recorded_commands_hold_no_machine_paths():
    from gsdnet_ref.paths import recorded_command
    cmd = recorded_command("gsdnet_torch.crossfit", ["--model", "models/m", "--work", "/tmp/w", "--cache=/tmp/c.pkl",
                                                     "--data", "../shared/data/x", "--write"])
    assert cmd == "python3 -m gsdnet_torch.crossfit --model models/m --data ../shared/data/x --write"

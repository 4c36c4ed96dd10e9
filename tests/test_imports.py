"""The package's shape: no import circles (lazy imports inside functions count too), and the
cluster package never imports the tooling."""
import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[1]
ROOTS = {"idstore": REPO / "lib" / "idstore", "idstore_tools": REPO / "tools" / "idstore_tools"}


def module_files() -> Dict[str, Path]:
    modules = {}
    for package, root in ROOTS.items():
        for path in root.rglob("*.py"):
            parts = [package, *path.relative_to(root).with_suffix("").parts]
            if parts[-1] == "__init__":
                parts = parts[:-1]
            modules[".".join(parts)] = path
    return modules


def imports_of(path: Path, module: str, known: Set[str]) -> Set[str]:
    """The project modules `path` imports, resolved to modules (not packages) where they exist."""
    found = set()
    is_package = path.name == "__init__.py"
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names = [alias.name for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = module.split(".")[: len(module.split(".")) - node.level + (1 if is_package else 0)]
                base = ".".join([*anchor, base] if base else anchor)
            names = [f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base for alias in node.names]
        else:
            continue
        found.update(name for name in names if name in known and name != module)
    return found


def import_graph() -> Dict[str, Set[str]]:
    files = module_files()
    return {module: imports_of(path, module, set(files)) for module, path in files.items()}


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    """Every strongly connected group of more than one module (Tarjan)."""
    index: Dict[str, int] = {}
    low: Dict[str, int] = {}
    stack: List[str] = []
    on_stack: Set[str] = set()
    found: List[List[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            group = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                group.append(member)
                if member == node:
                    break
            if len(group) > 1:
                found.append(sorted(group))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def test_the_finder_sees_a_circle_when_there_is_one():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_module_of_either_package_takes_part_in_an_import_circle():
    graph = import_graph()
    assert len(graph) > 40 and graph["idstore.pipeline.sync"], "the graph was not read"
    assert cycles(graph) == []


def test_the_cluster_package_never_imports_the_tooling():
    leaks = {module: sorted(t for t in targets if t.startswith("idstore_tools"))
             for module, targets in import_graph().items() if module.startswith("idstore.")}
    assert {module: targets for module, targets in leaks.items() if targets} == {}

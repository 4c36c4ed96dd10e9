"""The deploy modules import each other in layers, never in a circle, and what ships to the
cluster (lib/idstore) never imports the tooling (idstore_tools is not on the nodes)."""
import ast
from pathlib import Path
from typing import Dict, List, Set

REPO = Path(__file__).resolve().parents[2]
DEPLOY = REPO / "tools" / "idstore_tools" / "deploy"
PREFIX = "idstore_tools.deploy"


def imported_modules(path: Path) -> Set[str]:
    """Every module `path` imports, at the top or inside a function, as a dotted name."""
    found: Set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
    return found


def deploy_graph() -> Dict[str, Set[str]]:
    """{module: the deploy modules it imports} for tools/idstore_tools/deploy."""
    modules = {p.stem for p in DEPLOY.glob("*.py") if p.stem != "__init__"}
    graph = {}
    for module in modules:
        imported = imported_modules(DEPLOY / f"{module}.py")
        graph[module] = {m for m in modules if f"{PREFIX}.{m}" in imported and m != module}
    return graph


def cycles(graph: Dict[str, Set[str]]) -> List[List[str]]:
    found, state = [], {}

    def visit(node: str, path: List[str]) -> None:
        state[node] = "open"
        for following in sorted(graph[node]):
            if state.get(following) == "open":
                found.append(path[path.index(following):] + [following])
            elif following not in state:
                visit(following, path + [following])
        state[node] = "done"

    for node in sorted(graph):
        if node not in state:
            visit(node, [node])
    return found


def test_the_cycle_finder_finds_a_circle():
    assert cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": set()}) == [["a", "b", "c", "a"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_no_deploy_module_imports_another_in_a_circle():
    graph = deploy_graph()
    assert {"render", "template", "bundle", "iam", "layout", "naming", "package"} <= set(graph)
    assert cycles(graph) == []
    # the circle that was: template is built from render's requests, and render_all (in bundle) from both
    assert "template" not in graph["render"] and "render" in graph["template"]
    assert {"render", "template", "iam"} <= graph["bundle"]
    assert graph["layout"] == set() and graph["naming"] == set()


def test_nothing_that_ships_to_the_cluster_imports_the_tooling():
    offenders = [
        f"{path.relative_to(REPO)}: {name}"
        for path in sorted((REPO / "lib" / "idstore").rglob("*.py")) + sorted((REPO / "jobs").glob("*.py"))
        for name in sorted(imported_modules(path)) if name.split(".")[0] == "idstore_tools"
    ]
    assert offenders == []

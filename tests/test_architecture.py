"""The architecture holds: no import cycles, no hidden imports, no reaching into
Sequential's privates (read from the modules' source, by AST)."""

import ast
from pathlib import Path

import fastmlp

PACKAGE = Path(fastmlp.__file__).parent
MODULES = {p.stem: p for p in sorted(PACKAGE.glob("*.py")) if p.stem != "__main__"}


def parse(name):
    return ast.parse(MODULES[name].read_text(), filename=str(MODULES[name]))


def sibling(node, name):
    """The fastmlp module a relative or absolute import names, or None."""
    if isinstance(node, ast.ImportFrom):
        if node.level == 1:
            target = (node.module or "").split(".")[0]
            if target == "":  # from . import x, y
                return [a.name for a in node.names if a.name in MODULES] or ["__init__"]
            return [target]
        if node.level == 0 and (node.module or "").startswith("fastmlp"):
            parts = node.module.split(".")
            return [parts[1] if len(parts) > 1 else "__init__"]
    if isinstance(node, ast.Import):
        return [a.name.split(".")[1] for a in node.names
                if a.name.startswith("fastmlp.") and len(a.name.split(".")) > 1]
    return None


def module_level_imports(name):
    """Sibling modules imported at the top level of ``name`` (kernels excluded)."""
    out = set()
    for node in parse(name).body:
        for target in sibling(node, name) or []:
            if target in MODULES and target != "kernels":
                out.add(target)
    return out


def test_no_import_cycles():
    graph = {name: module_level_imports(name) - {"__init__"} for name in MODULES}
    done, path = set(), []

    def visit(node):
        assert node not in path, f"import cycle: {' -> '.join([*path, node])}"
        if node in done:
            return
        path.append(node)
        for nxt in sorted(graph[node]):
            visit(nxt)
        path.pop()
        done.add(node)

    for name in graph:
        visit(name)


def test_no_function_level_import_of_a_sibling_module():
    """Compiled kernels load through fastmlp.engines.kernel_module (so that
    ``import fastmlp`` stays fast); sibling modules are imported at the top."""
    found = []
    for name in MODULES:
        for fn in ast.walk(parse(name)):
            if not isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            for node in ast.walk(fn):
                targets = sibling(node, name)
                if targets:
                    found.append(f"{name}.{fn.name} imports {targets}")
    assert not found


def private_methods_of_sequential():
    tree = parse("sequential")
    cls = next(n for n in tree.body if isinstance(n, ast.ClassDef) and n.name == "Sequential")
    return {n.name for n in cls.body
            if isinstance(n, ast.FunctionDef) and n.name.startswith("_")
            and not n.name.startswith("__")}


def test_only_sequential_uses_its_private_methods():
    private = private_methods_of_sequential()
    assert "_check_data" in private  # (the walk sees the class)
    found = []
    for name in MODULES:
        if name == "sequential":
            continue
        for node in ast.walk(parse(name)):
            own = isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and (
                node.value.id == "self")  # a class's own attribute of the same name
            if isinstance(node, ast.Attribute) and node.attr in private and not own:
                found.append(f"{name}: .{node.attr} (line {node.lineno})")
    assert not found


def test_tuning_constants_live_in_config():
    """Upper-case numeric constants of the planning modules come from config."""
    for name in ("plan", "steps", "training", "sequential", "network", "tuning"):
        for node in parse(name).body:
            if isinstance(node, ast.Assign) and isinstance(node.value, ast.Constant):
                names = [t.id for t in node.targets if isinstance(t, ast.Name)]
                numeric = isinstance(node.value.value, (int, float))
                assert not (numeric and any(n.isupper() for n in names)), (name, names)

"""The project's own promises: the README's commands, environment.yml vs pyproject.toml,
and the layering of the package."""
import ast
import re
import tomllib
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent


def test_environment_yml_names_only_what_pyproject_has():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    extras = set(project["optional-dependencies"])
    pip = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    assert {re.split(r"[<>=]", d)[0] for d in conda} <= {"python", "pip", "pyarrow"}
    # the pyarrow floor (CVE-2023-47248) is the same in both files
    assert "pyarrow>=14.0.1" in conda and "pyarrow>=14.0.1" in project["dependencies"]
    for line in pip:
        m = re.fullmatch(r'-e "\.\[(.*)\]"', line)
        assert m, f"environment.yml pip line {line!r} is not the package itself"
        assert set(m.group(1).split(",")) <= extras
    assert re.search(r"\d+\.\d+", project["requires-python"]).group() in str(conda)


def test_readme_leads_with_demo_and_test():
    text = (ROOT / "README.md").read_text()
    assert "make demo" in text and "make test" in text
    assert "make test" in (ROOT / ".ci" / "run").read_text()


# The package's layers, bottom up: a module imports its own subpackage or a lower layer,
# never a higher one, never a sibling of its own layer; the package's face
# (workbench/__init__.py) and ``__main__`` stand above all of them.
LAYERS = {"core": 1, "policies": 2, "model": 3, "experiments": 4, "analysis": 5,
          "racefinder": 5, "present": 6, "cli": 7}


def _imports(path: Path, rel: Path) -> set[str]:
    """Every workbench module ``path`` imports, at any depth of its code (lazy and
    TYPE_CHECKING imports included: a circle through them is still a circle)."""
    found = set()
    pkg = rel.parts[:-1] if path.name != "__init__.py" else rel.parts
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            base = ".".join(pkg[: len(pkg) - node.level + 1]) if node.level else ""
            target = f"{base}.{node.module}" if node.module and base else (node.module or base)
            names = [f"{target}.{a.name}" for a in node.names] + [target]
        elif isinstance(node, ast.Import):
            names = [a.name for a in node.names]
        else:
            continue
        found.update(n for n in names if n.split(".")[0] in ("workbench", "simpy"))
    return found


def _graph() -> dict[str, set[str]]:
    files = {}
    for path in (ROOT / "workbench").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
        files[".".join(parts)] = (path, rel)
    graph = {}
    for mod, (path, rel) in files.items():
        targets = set()
        for t in _imports(path, rel):
            while t and t not in files and "." in t:       # a name inside a module
                t = t.rsplit(".", 1)[0]
            if t in files and t != mod and not mod.startswith(t + "."):
                targets.add(t)         # (a package's own face is not an edge of its modules)
            elif t == "simpy":
                targets.add(t)
        graph[mod] = targets
    return graph


def test_the_package_is_the_layers_and_nothing_else():
    top = {p.name for p in (ROOT / "workbench").iterdir()
           if p.name != "__pycache__" and not p.name.startswith(".")}
    assert top == set(LAYERS) | {"__init__.py", "__main__.py"}, sorted(top)


def test_layers_import_only_layers_below_them():
    def layer(mod):
        parts = mod.split(".")
        return (parts[1], LAYERS[parts[1]]) if len(parts) > 1 and parts[1] in LAYERS else None
    for mod, targets in _graph().items():
        own = layer(mod)
        for t in targets:
            if t == "simpy":
                assert mod.startswith("workbench.model"), f"{mod} imports simpy"
                continue
            if own is None:
                continue                      # the package's face and __main__
            theirs = layer(t)
            assert theirs is not None, f"{mod} imports the package's face ({t})"
            assert theirs[0] == own[0] or theirs[1] < own[1], \
                f"{mod} (layer {own[1]}, {own[0]}) imports {t} (layer {theirs[1]}, {theirs[0]})"


def test_no_import_circle_anywhere():
    graph = {m: {t for t in ts if t != "simpy"} for m, ts in _graph().items()}
    state, stack = {}, []

    def visit(m):
        state[m] = "open"
        stack.append(m)
        for t in sorted(graph.get(m, ())):
            if state.get(t) == "open":
                loop = stack[stack.index(t):] + [t]
                raise AssertionError("import circle: " + " -> ".join(loop))
            if t not in state:
                visit(t)
        stack.pop()
        state[m] = "done"

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_no_unused_imports_names_or_syntax_errors():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,E9",
                          "--output-format", "concise", "workbench", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]

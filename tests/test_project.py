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


LAYERS = {  # module -> layer; a module may import only from layers at or above its own
    "tdx_errno": 1, "config": 1, "rng": 1, "records": 1, "policies": 2, "model": 3,
    "scenarios": 4, "metrics": 5, "experiments": 6, "engines": 6, "stats": 6, "designs": 6,
    "store": 6, "runner": 6, "plots": 7, "widgets": 8, "cli": 8,
}
LAYERS.update({"safeio": 1, "limits": 1, "errors": 1})     # issue 10: the safe reader and the budgets
LAYERS.update({"oracles": 5, "explore": 6, "shrink": 6, "replay": 6})   # issue 14: race finder


def _layer(module: str) -> int | None:
    parts = module.split(".")
    return LAYERS.get(parts[1]) if len(parts) > 1 and parts[0] == "workbench" else None


def test_layers_import_only_layers_above_them():
    for path in (ROOT / "workbench").rglob("*.py"):
        rel = path.relative_to(ROOT).with_suffix("")
        mod = ".".join(rel.parts)
        own = _layer(mod)
        if own is None:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                pkg = rel.parts[:-1] if path.name != "__init__.py" else rel.parts
                base = ".".join(pkg[: len(pkg) - node.level + 1]) if node.level else ""
                target = f"{base}.{node.module}" if node.module and base else (node.module or base)
                names = [target] if node.module else [f"{target}.{a.name}" for a in node.names]
            elif isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            else:
                continue
            for t in names:
                if t.split(".")[0] == "simpy":
                    assert mod.startswith("workbench.model"), f"{mod} imports simpy"
                tl = _layer(t)
                if tl is not None:
                    assert tl <= own, f"{mod} (layer {own}) imports {t} (layer {tl})"


def test_no_unused_imports_names_or_syntax_errors():
    import subprocess
    import sys
    out = subprocess.run([sys.executable, "-m", "ruff", "check", "--select", "F,E9",
                          "--output-format", "concise", "workbench", "tests", "benchmarks"],
                         cwd=ROOT, capture_output=True, text=True)
    assert out.returncode == 0, out.stdout[-3000:]

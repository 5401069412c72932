"""The docs' worked example runs as written."""
import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def test_the_policies_doc_example_runs(capsys):
    text = (ROOT / "docs" / "policies.md").read_text()
    block = re.search(r"```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "docs/policies.md", "exec"), {"__name__": "docs_example"})
    out = capsys.readouterr().out
    assert "adaptive-budget" in out and "done in" in out

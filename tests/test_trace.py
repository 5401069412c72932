"""workbench trace: one run as Chrome trace-event JSON, the same calls as the run's table."""
import json

import workbench
from workbench import cli
from workbench.present.trace import trace_events

SETS = ["horizon_us=800"]


def test_the_trace_holds_every_call_with_busy_named(tmp_path, capsys):
    out = tmp_path / "run.json"
    assert cli.main(["trace", "malicious-accept", "--policy", "zero-tolerance", "--seed", "3",
                     "--set", SETS[0], "--out", str(out)]) == 0
    r = workbench.run("malicious-accept", seed=3, policy="zero-tolerance", sets=SETS)
    events = json.loads(out.read_text())["traceEvents"]
    slices = [e for e in events if e["ph"] == "X" and e["pid"] == 1]
    assert len(slices) == len(r.calls)
    busy = r.calls["status_name"].str.startswith("TDX_OPERAND_BUSY").sum()
    assert busy > 0 and sum(e["cat"] == "busy" for e in slices) == busy
    names = {e["args"]["name"] for e in events if e["name"] == "thread_name"}
    assert set(r.calls["caller"]) <= names
    assert json.loads(out.read_text()) == json.loads(json.dumps(trace_events(r)))


def test_the_trace_never_overwrites_a_file_it_did_not_write(tmp_path, capsys):
    mine = tmp_path / "notes.json"
    mine.write_text('{"mine": 1}')
    assert cli.main(["trace", "malicious-accept", "--set", SETS[0], "--out", str(mine)]) == 2
    assert mine.read_text() == '{"mine": 1}'
    assert "not a trace this tool wrote" in capsys.readouterr().err
    assert cli.main(["trace", "malicious-accept"]) == 2

"""``workbench findings``: run the findings of data/findings through the results store
and write their sections of docs/findings.md (``make findings``), or check them."""
from __future__ import annotations

from .common import _session


@_session
def cmd_findings(args) -> int:
    from ..analysis import findings
    if args.check:
        bad = findings.check_docs(args.docs, args.store)
        for name in bad:
            print(f"{name}: the docs differ from what the stored results give "
                  "(make findings rewrites them)")
        print("every generated section matches the stored results" if not bad else
              f"{len(bad)} section(s) out of step")
        return 1 if bad else 0
    bodies = findings.run(args.only or None, store=args.store, docs=args.docs,
                          engine=args.engine, workers=args.workers,
                          allow_dirty=args.allow_dirty)
    for name in bodies:
        f = findings.load(name)
        rows = findings.evaluate(f, findings.result(f, args.store))
        verdicts = ", ".join(f"{r['verdict']}" for r in rows)
        print(f"{name}: {f.title}: {verdicts}")
    print(f"wrote {len(bodies)} section(s) of {args.docs or 'docs/findings.md'}")
    return 0

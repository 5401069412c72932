"""Layer 5: findings as code. A finding (``data/findings/NAME.yaml``) is an experiment
design plus claims written as checks; ``make findings`` (``workbench findings``) runs each
through the results store and writes its numbers into the marked section of
``docs/findings.md``::

    <!-- generated: NAME (make findings; do not edit) -->
    ...
    <!-- end generated: NAME -->

A claim is one of
- ``share: {metric, policy}``: the share of runs with ``metric > 0`` (pooled over the
  groups ``where`` selects), with a 95 % Clopper-Pearson interval;
- ``mean: {metric, policy}``: per group, the mean with its 95 % t-interval;
- ``diff: {metric, policy, baseline}``: per group, the mean paired difference
  ``policy - baseline`` (common random numbers) with its 95 % t-interval; or
  ``diff: {metric, policy, factor, a, b}``: the policy at ``factor = a`` minus at ``b``;
with a bound ``at_least: x``, ``at_most: x`` or ``between: [x, y]`` and an optional
``where: {factor: value}``.
``variations: {row name: sets}`` runs the design once per row (one-at-a-time changes such
as a timing moved over its range), side by side under a ``variation`` factor.
Its verdict: **holds** when the whole interval meets the bound, **consistent** when the
estimate meets it but the interval does not (more runs would decide), **fails** when the
estimate does not. ``check_docs`` regenerates every section from the stored results and
names each one whose text differs.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from ..core.config import ConfigError
from ..core.paths import DATA
from ..core.config import read_yaml

FOLDER = DATA / "findings"
KINDS = ("share", "mean", "diff")
BOUNDS = ("at_least", "at_most", "between")
BEGIN = "<!-- generated: {name} (make findings; do not edit) -->"
END = "<!-- end generated: {name} -->"
SECTION = re.compile(r"<!-- generated: (?P<name>[A-Za-z0-9_.-]+) \(make findings; do not "
                     r"edit\) -->\n(?P<body>.*?)<!-- end generated: (?P=name) -->", re.S)


@dataclass
class Finding:
    name: str
    title: str
    experiment: dict
    claims: list = field(default_factory=list)
    table: list = field(default_factory=list)      # metrics shown as mean [interval]
    command: str = ""
    variations: dict = field(default_factory=dict)  # row name -> sets added to the design

    def experiments(self) -> list[tuple[str | None, dict]]:
        """The experiment of each variation (``name--1``, ...), or the design alone."""
        if not self.variations:
            return [(None, self.experiment)]
        base = self.experiment
        return [(v, {**base, "name": f"{base['name']}--{i + 1}",
                     "sets": {**(base.get("sets") or {}), **(sets or {})}})
                for i, (v, sets) in enumerate(self.variations.items())]


def names() -> list[str]:
    return sorted(p.stem for p in FOLDER.glob("*.yaml"))


def load(name_or_path) -> Finding:
    """A finding from ``data/findings/NAME.yaml`` or a path, checked."""
    p = Path(name_or_path)
    if p.suffix not in (".yaml", ".yml"):
        p = FOLDER / f"{name_or_path}.yaml"
    if not p.is_file():
        raise ConfigError(f"finding {name_or_path}: not found (one of {', '.join(names())})")
    raw = read_yaml(p, "finding")
    unknown = set(raw) - {"title", "experiment", "claims", "table", "command", "variations"}
    if unknown or not isinstance(raw.get("experiment"), dict):
        raise ConfigError(f"finding {p.name}: needs 'experiment' (a design); unknown "
                          f"{sorted(unknown)[0] if unknown else 'nothing'}")
    for c in raw.get("claims") or []:
        kinds = [k for k in KINDS if k in c]
        bounds = [b for b in BOUNDS if b in c]
        if len(kinds) != 1 or len(bounds) != 1 or "text" not in c:
            raise ConfigError(f"finding {p.name}: a claim needs 'text', one of "
                              f"{', '.join(KINDS)} and one of {', '.join(BOUNDS)}: {c}")
    exp = {**raw["experiment"], "name": raw["experiment"].get("name") or f"finding-{p.stem}"}
    variations = raw.get("variations") or {}
    if not isinstance(variations, dict) or not all(
            isinstance(v, dict) or v is None for v in variations.values()):
        raise ConfigError(f"finding {p.name}: variations must map a row's name to sets")
    return Finding(p.stem, raw.get("title", p.stem), exp, raw.get("claims") or [],
                   raw.get("table") or [], raw.get("command", ""), variations)


def _where(df, where: dict | None):
    for k, v in (where or {}).items():
        if k not in df.columns:
            raise ConfigError(f"where: {k!r} is not a factor of the experiment")
        df = df[df[k] == v]
    return df


def _where_text(claim) -> str:
    return ", ".join(f"{k} {v}" for k, v in (claim.get("where") or {}).items())


def _verdict(est, lo, hi, claim) -> str:
    if not np.isfinite(est):
        return "no data"
    if "at_least" in claim:
        b = claim["at_least"]
        return "holds" if lo >= b else "consistent" if est >= b else "fails"
    if "between" in claim:
        a, b = claim["between"]
        return "holds" if a <= lo and hi <= b else "consistent" if a <= est <= b else "fails"
    b = claim["at_most"]
    return "holds" if hi <= b else "consistent" if est <= b else "fails"


def evaluate(f: Finding, c) -> list[dict]:
    """One row per claim (and group, for ``mean`` and ``diff``): ``text``, ``group``,
    ``estimate``, ``low``, ``high``, ``n``, ``verdict``."""
    from scipy.stats import binomtest
    rows = []
    for claim in f.claims:
        kind = next(k for k in KINDS if k in claim)
        spec = claim[kind]
        s = _where(c.summary, claim.get("where"))
        if kind == "share":
            runs = s[s["policy"] == spec["policy"]][spec["metric"]].astype(float)
            n, k = len(runs), int((runs > 0).sum())
            lo, hi = (binomtest(k, n).proportion_ci() if n else (np.nan, np.nan))
            est = k / n if n else np.nan
            rows.append({"text": claim["text"], "group": _where_text(claim),
                         "estimate": est, "low": float(lo),
                         "high": float(hi), "n": n, "k": k, "kind": kind,
                         "verdict": _verdict(est, lo, hi, claim)})
            continue
        keys = [b for b in c.by if b not in (claim.get("where") or {})]
        from ..experiments.stats import describe, paired_diff
        if kind == "mean":
            t = describe(s, by=keys, metrics=[spec["metric"]])
            t = t[t["policy"] == spec["policy"]].rename(columns={"mean": "est"})
        elif "factor" in spec:     # the policy at factor = a against factor = b
            t = _factor_diff(s, spec, keys)
            keys = [k for k in keys if k != spec["factor"]]
        else:
            t = paired_diff(s, spec["baseline"], by=keys, metrics=[spec["metric"]])
            t = t[t["policy"] == spec["policy"]].rename(columns={"diff": "est"})
        for _, r in t.iterrows():
            group = ", ".join(x for x in [*(f"{k} {r[k]}" for k in keys),
                                          _where_text(claim)] if x)
            rows.append({"text": claim["text"], "group": group, "estimate": float(r["est"]),
                         "low": float(r["ci_low"]), "high": float(r["ci_high"]),
                         "n": int(r["n"]), "kind": kind,
                         "verdict": _verdict(r["est"], r["ci_low"], r["ci_high"], claim)})
    return rows


def _factor_diff(s, spec, keys):
    """Per group (``keys`` without the factor): the mean of the per-replication differences
    of ``metric`` between ``factor = a`` and ``factor = b`` for ``policy``, with its
    t-interval (common random numbers pair the replications)."""
    import pandas as pd

    from ..experiments.stats import t_interval
    f, rest = spec["factor"], [k for k in keys if k != spec["factor"]]
    p = s[s["policy"] == spec["policy"]]
    a, b = p[p[f] == spec["a"]], p[p[f] == spec["b"]]
    both = a.merge(b, on=[*rest, "replication", "seed"], suffixes=("", "@b"))
    rows = []
    for key, g in (both.groupby(rest, sort=False) if rest else [((), both)]):
        key = key if isinstance(key, tuple) else (key,)
        n, mean, _, lo, hi = t_interval(g[spec["metric"]].astype(float)
                                        - g[spec["metric"] + "@b"].astype(float))
        rows.append({**dict(zip(rest, key)), "n": n, "est": mean, "ci_low": lo,
                     "ci_high": hi})
    return pd.DataFrame(rows, columns=[*rest, "n", "est", "ci_low", "ci_high"])


def result(f: Finding, store=None, run: bool = False, **kw):
    """The finding's Comparison from the store (``run``: through ``run_experiment`` first):
    with variations, their experiments' runs side by side under a ``variation`` factor."""
    import pandas as pd

    from ..experiments.comparison import Comparison
    from ..experiments.runner import load_stored, run_experiment
    parts = []
    for v, e in f.experiments():
        c = run_experiment(e, store=store, **kw) if run else load_stored(e["name"], store)
        parts.append((v, c))
    if not f.variations:
        return parts[0][1]
    summary = pd.concat([c.summary.assign(variation=v) for v, c in parts], ignore_index=True)
    m = dict(parts[0][1].manifest)
    m["name"] = f.experiment["name"]
    m["runs"] = [k for _, c in parts for k in c.manifest.get("runs") or []]
    return Comparison(summary, pd.DataFrame(), factors=("variation", *parts[0][1].factors),
                      manifest=m)


def _num(x) -> str:
    from ..experiments.stats import plain_number
    return plain_number(float(x)) if np.isfinite(x) else "-"


def render(f: Finding, c) -> str:
    """The generated section of a finding: its claims with estimates, intervals and
    verdicts, the table of means, and where the numbers come from."""
    from ..experiments.stats import describe
    m = c.manifest
    out = ["| claim | where | estimate | 95 % interval | runs | verdict |",
           "|---|---|---|---|---|---|"]
    for r in evaluate(f, c):
        est = (f"{r['k']} of {r['n']} ({_num(100 * r['estimate'])} %)" if r["kind"] == "share"
               else _num(r["estimate"]))
        out.append(f"| {r['text']} | {r['group'] or 'all'} | {est} | {_num(r['low'])} to "
                   f"{_num(r['high'])} | {r['n']} | **{r['verdict']}** |")
    if f.table:
        keys = list(c.by)
        t = describe(c.summary, by=keys, metrics=f.table)
        cols = [*(f"`{k}`" for k in keys), "policy", *(f"`{x}`" for x in f.table)]
        out += ["", "Mean [95 % t-interval] over replications:", "",
                "| " + " | ".join(cols) + " |", "|" + "---|" * len(cols)]
        for key, g in t.groupby([*keys, "policy"], sort=False):
            key = key if isinstance(key, tuple) else (key,)
            cells = {r["metric"]: f"{_num(r['mean'])} [{_num(r['ci_low'])}, "
                                  f"{_num(r['ci_high'])}]" for _, r in g.iterrows()}
            out.append("| " + " | ".join([*map(str, key), *(cells[x] for x in f.table)])
                       + " |")
    e = f.experiment
    reps = len((m.get("seeds") or {}).get("replications") or [])
    code = (m.get("code") or {}).get("fingerprint") or "?"
    what = "experiments `" + m.get("name") + "--N`" if f.variations else \
        f"experiment `{m.get('name')}`"
    out += ["", f"({len(m.get('runs') or [])} runs of stored {what}: "
                f"`{e.get('scenario')}`, seed {e.get('seed')}, {reps} replications, "
                + "".join(f"`{k}={v}`, " for k, v in (e.get("sets") or {}).items())
                + f"code {code[:12]}. "
                f"{f.command or ''}".rstrip() + ")"]
    return "\n".join(out) + "\n"


def section(name: str, body: str) -> str:
    return f"{BEGIN.format(name=name)}\n{body}{END.format(name=name)}"


def replace_sections(text: str, bodies: dict) -> str:
    """``text`` with the body of each marked section named in ``bodies`` replaced."""
    def sub(mt):
        n = mt["name"]
        return section(n, bodies[n]) if n in bodies else mt.group(0)
    return SECTION.sub(sub, text)


def sections(text: str) -> dict:
    return {mt["name"]: mt["body"] for mt in SECTION.finditer(text)}


def tiny(f: Finding, reps: int = 2, horizon_us: float = 400.0) -> Finding:
    """The same finding on a quick design (tests): fewer replications, a short horizon."""
    e = {**f.experiment, "name": f.experiment["name"] + "-tiny", "reps": reps,
         "sets": {**(f.experiment.get("sets") or {}), "horizon_us": horizon_us}}
    e.pop("precision", None)
    return Finding(f.name, f.title, e, f.claims, f.table, f.command, f.variations)


def run(findings=None, *, store=None, docs=None, engine=None, workers=None,
        allow_dirty: bool = False, quick: bool = False, progress=None) -> dict:
    """Run each finding (default: all of ``data/findings``) through the store and rewrite
    its section in ``docs`` (default ``docs/findings.md`` of this checkout). Returns
    ``{name: rendered body}``."""
    fs = [x if isinstance(x, Finding) else load(x) for x in (findings or names())]
    if quick:
        fs = [tiny(f) for f in fs]
    bodies = {}
    for f in fs:
        c = result(f, store, run=True, engine=engine, workers=workers,
                   allow_dirty=allow_dirty, progress=progress)
        bodies[f.name] = render(f, c)
    path = Path(docs) if docs is not None else _docs()
    text = path.read_text()
    missing = [n for n in bodies if n not in sections(text)]
    if missing:
        raise ConfigError(f"{path}: no generated section for {missing[0]} (add the markers "
                          f"{BEGIN.format(name=missing[0])} and {END.format(name=missing[0])})")
    path.write_text(replace_sections(text, bodies))
    return bodies


def check_docs(docs=None, store=None, quick: bool = False) -> list[str]:
    """The names of the generated sections of ``docs`` whose text differs from what the
    stored results render to (a finding never stored counts as differing)."""
    path = Path(docs) if docs is not None else _docs()
    bad = []
    for name, body in sections(path.read_text()).items():
        f = load(name)
        f = tiny(f) if quick else f
        try:
            c = result(f, store)
        except ConfigError:
            bad.append(f"{name} (not in the store)")
            continue
        if render(f, c) != body:
            bad.append(name)
    return bad


def _docs() -> Path:
    from ..core.paths import source_checkout
    root = source_checkout()
    if root is None:
        raise ConfigError("findings: no docs/findings.md outside a source checkout (--docs)")
    return root / "docs" / "findings.md"

"""Layer 8: the notebook panel. Columns, one per policy set (a preset, or a policy per call
site, plus the module's switches); a shared scenario, its main knobs, seed and
replications; Run computes every column on the same replications (common random numbers)
in a background thread and shows the dashboard. Nothing runs while you move a control."""
from __future__ import annotations

import html
import threading
import time
import typing

import ipywidgets as w
import pandas as pd

from . import plots
from ..core.config import ConfigError, ModuleVersionName
from ..core.paths import output_root
from ..experiments.comparison import Comparison, run
from .plots.dashboard import EXPORT_WIDTH, MAX_POLICIES
from ..policies import PRESETS, REGISTRY, PolicyError, Site, resolve_policy
from ..core.scenarios import load_scenario, scenario_names

SITES = {"fault": "fault", "zap": "zap", "vp_enter": "VP.ENTER", "accept": "ACCEPT"}
KEEP = "(preset's)"
SPAMMERS = ("accept_spammer", "attr_spammer")
# The default comparison: all four ACCEPT spammers on one page, upstream beside
# host-priority-retry. "add column" copies the last column, so unticking HOST_PRIORITY in
# it shows what HP changes for a policy that retries blindly (more zap retries and host
# BUSY without it); under upstream it changes nothing (see identical_note).
DEFAULT_COLUMNS = ("upstream", "host-priority-retry")
DEFAULT_KNOBS = {"vcpus.1.per_page": 4}
WHY_IDENTICAL = ("the switches that separate them never came into play in this scenario "
                 "(under upstream, for one, a BUSY zap kicks every vCPU out and retries once, "
                 "so no guest TDCALL runs while the host retries and HOST_PRIORITY has "
                 "nothing to act on)")
STYLE = """<style>
.wb-stale {opacity: 0.35; filter: grayscale(1);}
.wb-column {border: 1px solid #ddd; padding: 4px; margin: 2px;}
.wb-status, .wb-status .widget-html-content {line-height: 1.35;}
.wb-verdicts {margin: 2px 0 4px; padding-left: 20px;} .wb-verdicts li {margin: 0;}
</style>"""


def policy_choices() -> list[str]:
    """Presets first, then every registered policy (yours included)."""
    return list(PRESETS) + sorted(n for n in REGISTRY if n not in PRESETS)


def site_choices(site: str) -> list[str]:
    """The registered policies that serve a call site."""
    s = Site(site)
    return [KEEP] + sorted(n for n, cls in REGISTRY.items()
                           if s in getattr(cls, "sites", tuple(Site)))


def _short(text: str, n: int = 400) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 3] + "..."


class Column(w.VBox):
    """One policy set: a preset, optional per-site policies, the module's switches."""

    def __init__(self, preset: str = "upstream", module=None, on_remove=None, **switches):
        lay = w.Layout(width="250px")
        sty = {"description_width": "110px"}
        self.preset = w.Dropdown(options=list(PRESETS), value=preset, description="preset",
                                 layout=lay, style=sty)
        self.sites = {s: w.Dropdown(options=site_choices(s), value=KEEP, description=name,
                                    layout=lay, style=sty) for s, name in SITES.items()}
        self.host_priority = w.Checkbox(value=True, description="HOST_PRIORITY", indent=False)
        self.hp_timeout = w.BoundedFloatText(value=1e6, min=1e4, max=1e8, step=1e4,
                                             description="HP_LOCK_TIMEOUT µs", layout=lay, style=sty)
        self.accept_free = w.Checkbox(value=True, description="ACCEPT locks FREE entries",
                                      indent=False)
        self.zero_step = w.BoundedIntText(value=6, min=0, max=1000, description="zero-step at",
                                          layout=lay, style=sty)
        self.version = w.Dropdown(options=list(typing.get_args(ModuleVersionName)),
                                  value="1.5.01", description="module", layout=lay, style=sty)
        self.remove = w.Button(description="remove", icon="trash", layout=w.Layout(width="90px"))
        self.title = w.HTML()
        self.base = module
        if module is not None:
            self.set_module(module)
        for k, v in switches.items():
            getattr(self, k).value = v
        if on_remove:
            self.remove.on_click(lambda _: on_remove(self))
        for x in (self.preset, *self.sites.values(), self.host_priority, self.hp_timeout,
                  self.accept_free, self.zero_step, self.version):
            x.observe(lambda _: self._retitle(), "value")
        super().__init__([self.title, self.preset, *self.sites.values(), self.host_priority,
                          self.hp_timeout, self.accept_free, self.zero_step, self.version,
                          self.remove])
        self.add_class("wb-column")
        self._retitle()

    def set_module(self, module) -> None:
        """Take the switches from a scenario's module options (what 'unchanged' means)."""
        self.base = module
        self.host_priority.value = module.host_priority
        self.hp_timeout.value = module.hp_lock_timeout_us
        self.accept_free.value = module.accept_locks_not_present
        self.zero_step.value = module.zero_step_threshold
        self.version.value = module.version

    def spec(self):
        """The policy spec: the preset's name, or ``{preset, site: policy, ...}``."""
        chosen = {s: d.value for s, d in self.sites.items() if d.value != KEEP}
        return {"preset": self.preset.value, **chosen} if chosen else self.preset.value

    def switches(self) -> dict:
        return {"module.host_priority": self.host_priority.value,
                "module.hp_lock_timeout_us": float(self.hp_timeout.value),
                "module.accept_locks_not_present": self.accept_free.value,
                "module.zero_step_threshold": int(self.zero_step.value),
                "module.version": self.version.value}

    def label(self) -> str:
        """Exactly what runs: the policy set's label (``upstream+accept=linux-guest`` for
        a single-site choice), HOST_PRIORITY on/off, and every other switch that differs
        from the scenario's."""
        name = resolve_policy(self.spec()).name
        parts = [f"HP {'on' if self.host_priority.value else 'off'}"]
        b = self.base
        if b is None or self.hp_timeout.value != b.hp_lock_timeout_us:
            parts.append(f"HP_LOCK_TIMEOUT {self.hp_timeout.value:g}µs")
        if b is None or self.accept_free.value != b.accept_locks_not_present:
            parts.append("ACCEPT locks FREE" if self.accept_free.value else "ACCEPT skips FREE")
        if b is None or self.zero_step.value != b.zero_step_threshold:
            parts.append(f"zero-step {self.zero_step.value}")
        if b is None or self.version.value != b.version:
            parts.append(f"module {self.version.value}")
        return " · ".join([name, *parts])

    def _retitle(self) -> None:
        try:
            text, color = self.label(), None
            color = plots.policy_color(text)
        except (PolicyError, ConfigError) as err:
            text, color = f"invalid: {_short(err, 80)}", "#888"
        self.title.value = (f"<b style='color:{color}'>{html.escape(text)}</b>")


class ComparePanel(w.VBox):
    """``ComparePanel(scenario="malicious-accept", columns=("upstream", "zero-tolerance"))``;
    ``columns`` items are presets or ``dict(preset=..., fault=..., host_priority=False)``;
    ``knobs``: starting values of the scenario knobs by key (default: 4 spammers per page
    where the scenario has spammers; keys the scenario lacks are ignored)."""

    def __init__(self, scenario: str = "malicious-accept", columns=DEFAULT_COLUMNS,
                 reps: int = 2, seed: int = 1, horizon_us: float = 1500.0, knobs=None,
                 store=None, figures_dir=None, present: bool = False):
        self._store = store
        self.figures_dir = figures_dir or output_root() / "figures" / "panel"
        names = scenario_names()
        self.scenario = w.Dropdown(options=names + ([scenario] if scenario not in names else []),
                                   value=scenario, description="scenario")
        self.reps = w.BoundedIntText(value=reps, min=1, max=50, description="replications")
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed")
        self.horizon = w.BoundedFloatText(value=horizon_us, min=100.0, max=1e7, step=1000,
                                          description="horizon µs")
        self.knobs = w.VBox()
        self.columns_box = w.HBox()
        self.add_button = w.Button(description="add column", icon="plus")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.cancel_button = w.Button(description="Cancel", icon="stop", disabled=True)
        self.save_button = w.Button(description="Save", icon="save", disabled=True)
        self.export_button = w.Button(description="Export figures", icon="image", disabled=True)
        self.review_button = w.Button(description="Review file", icon="file", disabled=True,
                                      tooltip="one self-contained HTML file of the result shown")
        self.progress = w.IntProgress(value=0, min=0, max=1, description="runs")
        self.progress_text = w.Label()
        self.status = w.HTML()
        self.output = w.Output()
        self.result: Comparison | None = None
        self.figure = None
        self.elapsed_s = None
        self.latest = False      # whether the result shown is that of the last Run pressed
        self._thread = None
        self._cancel = threading.Event()
        self._cfg = load_scenario(scenario)
        self._build_knobs(DEFAULT_KNOBS if knobs is None else knobs)
        for spec in columns:
            self.add_column(spec)
        self.scenario.observe(self._scenario_changed, "value")
        self.add_button.on_click(lambda _: self.copy_column())
        self.run_button.on_click(lambda _: self.run())
        self.cancel_button.on_click(lambda _: self.cancel())
        self.save_button.on_click(lambda _: self.save())
        self.export_button.on_click(lambda _: self.export())
        self.review_button.on_click(lambda _: self.review())
        for x, cls in ((self.run_button, "wb-run"), (self.status, "wb-status"),
                       (self.output, "wb-output"), (self.add_button, "wb-add"),
                       (self.cancel_button, "wb-cancel"), (self.save_button, "wb-save"),
                       (self.export_button, "wb-export"), (self.review_button, "wb-review")):
            x.add_class(cls)
        shared = w.HBox([w.VBox([self.scenario, self.reps, self.seed, self.horizon]),
                         self.knobs])
        self.columns_box.layout = w.Layout(flex_flow="row wrap")
        buttons = w.HBox([self.add_button, self.run_button, self.cancel_button,
                          self.save_button, self.export_button, self.review_button],
                         layout=w.Layout(flex_flow="row wrap"))
        progress = w.HBox([self.progress, self.progress_text])
        if present:
            # the presentation: the answer first (status with its verdict lines, the
            # dashboard), the controls folded away below; it runs once on opening
            self.controls = w.Accordion([w.VBox([shared, self.columns_box, buttons])],
                                        selected_index=None, titles=("controls",))
            self.controls.add_class("wb-controls")
            kids = [w.HTML(STYLE), self.status, progress, self.output, self.controls]
        else:
            self.controls = None
            kids = [w.HTML(STYLE), shared, self.columns_box, buttons, progress, self.status,
                    self.output]
        super().__init__(kids)
        self.add_class("wb-compare-panel")
        if present:
            self.run()

    # -- controls ----------------------------------------------------------------------
    @property
    def columns(self) -> list[Column]:
        return list(self.columns_box.children)

    def add_column(self, spec="upstream") -> Column:
        spec = dict(preset=spec) if isinstance(spec, str) else dict(spec)
        sites = {s: spec.pop(s) for s in list(spec) if s in SITES}
        col = Column(spec.pop("preset", "upstream"), self._cfg.module, self.remove_column, **spec)
        for s, v in sites.items():
            col.sites[s].value = v
        self.columns_box.children = (*self.columns, col)
        return col

    def copy_column(self) -> Column:
        """A new column set like the last one (what the "add column" button does), so one
        switch changed in it is a comparison of that switch alone."""
        if not self.columns:
            return self.add_column()
        last = self.columns[-1]
        col = self.add_column(last.preset.value)
        for s, d in last.sites.items():
            col.sites[s].value = d.value
        for k in ("host_priority", "hp_timeout", "accept_free", "zero_step", "version"):
            getattr(col, k).value = getattr(last, k).value
        return col

    def remove_column(self, col: Column) -> None:
        self.columns_box.children = tuple(c for c in self.columns if c is not col)

    def _build_knobs(self, values=None) -> None:
        kids = []
        sty = {"description_width": "140px"}
        for i, g in enumerate(self._cfg.vcpus):
            box = w.BoundedIntText(value=g.count, min=1, max=64, description=f"{g.role} vCPUs",
                                   style={"description_width": "140px"})
            box.key = f"vcpus.{i}.count"
            kids.append(box)
            if g.role in SPAMMERS:
                gap = w.BoundedFloatText(value=g.gap_us, min=0.0, max=1e6,
                                         description="attack gap µs", style=sty)
                gap.key = f"vcpus.{i}.gap_us"
                kids.append(gap)
                if hasattr(g, "per_page"):
                    per = w.BoundedIntText(value=g.per_page, min=1, max=64,
                                           description="spammers per page", style=sty)
                    per.key = f"vcpus.{i}.per_page"
                    kids.append(per)
        for k in kids:
            if values and k.key in values:
                k.value = values[k.key]
        self.knobs.children = kids

    def _scenario_changed(self, change) -> None:
        try:
            self._cfg = load_scenario(change["new"])
        except ConfigError as err:
            self.status.value = f"<b>error:</b> {html.escape(_short(err))}"
            return
        self._build_knobs()
        for c in self.columns:
            c.set_module(self._cfg.module)

    def shared_sets(self) -> dict:
        return {"horizon_us": float(self.horizon.value),
                **{k.key: k.value for k in self.knobs.children}}

    # -- running -----------------------------------------------------------------------
    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def plan(self) -> list[tuple[str, object, dict]]:
        """``(label, policy spec, sets)`` per column, checked: a bad value raises here,
        before anything runs."""
        if not self.columns:
            raise ConfigError("add at least one column")
        out = []
        for c in self.columns:
            sets = {**self.shared_sets(), **c.switches()}
            load_scenario(self.scenario.value, sets)
            out.append((c.label(), c.spec(), sets))
        labels = [p[0] for p in out]
        dup = next((x for x in labels if labels.count(x) > 1), None)
        if dup:
            raise ConfigError(f"two columns run the same thing ({dup}); change one")
        if len(out) > MAX_POLICIES:
            raise ConfigError("at most 6 columns fit the dashboard")
        return out

    def run(self) -> None:
        """Start a comparison in the background; ignored while one is running."""
        if self.running:
            return
        try:
            plan = self.plan()
        except (ConfigError, PolicyError) as err:
            self.status.value = f"<b>error:</b> {html.escape(_short(err))}"
            return
        self._cancel.clear()
        self.latest = False
        jobs = [(col, r) for col in plan for r in range(self.reps.value)]
        self._busy(True, len(jobs))
        self._thread = threading.Thread(target=self._work, args=(jobs, self.scenario.value,
                                                                 int(self.seed.value)),
                                        daemon=True)
        self._thread.start()

    def wait(self, timeout: float = 120.0) -> None:
        """Block until the running comparison has landed (for scripts and tests)."""
        if self._thread is not None:
            self._thread.join(timeout)

    def cancel(self) -> None:
        self._cancel.set()

    def _busy(self, on: bool, n: int = 0) -> None:
        self.run_button.disabled = on
        self.cancel_button.disabled = not on
        self.add_button.disabled = on
        if on:
            self.output.add_class("wb-stale")
            self.progress.max, self.progress.value = max(1, n), 0
            self.progress_text.value = f"0 of {n} runs"
            self.status.value = ("running…" + (" (the figures below are the previous result,"
                                                " greyed until the new one lands)"
                                                if self.result is not None else ""))

    def _work(self, jobs, scenario, seed) -> None:
        t0 = time.perf_counter()
        parts = []
        try:
            for i, ((label, spec, sets), rep) in enumerate(jobs):
                if self._cancel.is_set():
                    self.latest = False
                    self.status.value = (f"cancelled after {i} of {len(jobs)} runs; the "
                                         "greyed figures are the previous result"
                                         if self.result is not None else
                                         f"cancelled after {i} of {len(jobs)} runs")
                    return
                r = run(scenario, seed=seed, policy=spec, replication=rep, sets=sets)
                parts.append([_relabel(t, label) for t in (r.summary, r.ops, r.vcpus)])
                done = i + 1
                left = (time.perf_counter() - t0) / done * (len(jobs) - done)
                self.progress.value = done
                self.progress_text.value = f"{done} of {len(jobs)} runs, ~{left:.0f} s left"
            summary, ops, vcpus = (pd.concat([p[k] for p in parts], ignore_index=True)
                                   for k in range(3))
            columns = [{"label": lab, "policy": spec, "sets": sets}
                       for (lab, spec, sets), rep in jobs if rep == 0]
            c = Comparison(summary, ops, vcpus=vcpus, manifest={
                "scenario": scenario, "seed": seed, "reps": len(jobs) // len(columns),
                "columns": columns})
            fig = plots.dashboard(c)
            self._show(c, fig, time.perf_counter() - t0)
        except Exception as err:     # ConfigError, PolicyError, or a policy of yours that raises
            self.latest = False
            kind = "" if isinstance(err, (ConfigError, PolicyError)) else f"{type(err).__name__}: "
            self.status.value = f"<b>error:</b> {html.escape(kind + _short(err))}"
        finally:
            self._busy(False)

    def _show(self, c: Comparison, fig, elapsed: float) -> None:
        self.result, self.figure, self.elapsed_s, self.latest = c, fig, elapsed, True
        self.output.outputs = (figure_output(fig),)
        self.output.remove_class("wb-stale")
        self.save_button.disabled = self.export_button.disabled = False
        self.review_button.disabled = False
        self.status.value = status_html(c, elapsed)

    def _which(self) -> str:
        """What Save, Export and Review keep: said plainly when it is not the last Run."""
        if self.latest:
            return ""
        m = self.result.manifest
        return (f" (the result shown: the previous complete Run, {m['scenario']} seed "
                f"{m['seed']}, not the Run after it: cancelled, failed or still running)")

    # -- keeping -----------------------------------------------------------------------
    def save(self, name: str | None = None):
        """Store the comparison shown (``data/results`` or the panel's store) under
        ``name`` (default ``panel-<scenario>-<time>``); returns the folder."""
        from ..experiments.runner import write_experiment
        from ..experiments.store import FORMAT, Store, now, provenance
        if self.result is None:
            self.status.value = "<b>error:</b> nothing to save yet: press Run"
            return None
        c = self.result
        name = name or f"panel-{c.manifest['scenario']}-{now().replace(':', '')[:15]}"
        runs = [str(x) for x in c.summary["run_id"]] if "run_id" in c.summary else []
        c.manifest.update({"format": FORMAT, "name": name, "factors": {}, "runs": runs,
                           "runs_computed": len(c.summary), "runs_from_store": 0,
                           "provenance": {**provenance(), "engine": "panel"},
                           "experiment": {"scenario": c.manifest["scenario"],
                                          "seed": c.manifest["seed"],
                                          "policies": [x["label"] for x in c.manifest["columns"]]},
                           "seeds": {"root": c.manifest["seed"],
                                     "replications": list(range(c.manifest["reps"]))}})
        if not self.latest:
            c.manifest["note"] = ("saved after a cancelled or failed Run: this is the "
                                  "previous complete result")
        try:
            st = Store(self._store)
            with st:
                write_experiment(st, name, c)
        except (ConfigError, OSError) as err:
            self.status.value = f"<b>error:</b> {html.escape(_short(err))}"
            return None
        self.status.value = (f"saved as {html.escape(name)} in {html.escape(str(st.root))}"
                             f"{html.escape(self._which())}")
        return st.experiment_dir(name)

    def export(self, folder=None, formats=("png",)) -> list:
        """Write the dashboard and its companion figures (HTML, and PNG where a browser
        exists) to ``folder`` (default ``data/figures/panel`` of this checkout)."""
        from pathlib import Path

        import plotly.graph_objects as go
        if self.result is None:
            self.status.value = "<b>error:</b> nothing to export yet: press Run"
            return []
        c, folder = self.result, Path(folder or self.figures_dir)
        op = plots.main_op(c.ops)
        figs = {"dashboard": go.Figure(self.figure).update_layout(width=EXPORT_WIDTH), "tail": plots.latency_ccdf(c.ops, op),
                "percentiles": plots.percentile_bars(c.ops, op),
                "time-breakdown": plots.time_breakdown(c.vcpus)}
        try:
            # one browser session for every image (a browser start each costs ~2 s)
            written = plots.save_all(figs, folder, formats, quiet=True)
        except (ConfigError, OSError) as err:
            self.status.value = f"<b>error:</b> {html.escape(_short(err))}"
            return []
        images = [p for p in written if p.suffix != ".html"]
        none = ("" if images or not formats else
                " (HTML only: no browser for the images; install Debian's chromium)")
        self.status.value = (f"wrote {len(written)} files to {html.escape(str(folder))}"
                             f"{none}{html.escape(self._which())}")
        return written

    def review(self, path=None):
        """Write the review file of the result shown (one self-contained HTML file, see
        :mod:`workbench.present.review`) to ``path`` (default ``review-<scenario>-<time>.html``
        beside the exported figures); returns the path."""
        from ..experiments.store import now
        from .review import write_review
        if self.result is None:
            self.status.value = "<b>error:</b> nothing to review yet: press Run"
            return None
        c = self.result
        stamp = now().replace(":", "")[:15]
        path = path or self.figures_dir / f"review-{c.manifest['scenario']}-{stamp}.html"
        cmd = (f"ComparePanel(scenario={c.manifest['scenario']!r}, columns="
               f"{[x['policy'] for x in c.manifest['columns']]!r}, reps={c.manifest['reps']}, "
               f"seed={c.manifest['seed']}) in a notebook; Run; Review file")
        try:
            p = write_review(c, path, command=cmd)
        except (ConfigError, OSError) as err:
            self.status.value = f"<b>error:</b> {html.escape(_short(err))}"
            return None
        self.status.value = (f"wrote the review file {html.escape(str(p))} (opens offline in "
                             f"any browser){html.escape(self._which())}")
        return p


def status_html(c: Comparison, elapsed: float) -> str:
    """The status line of a comparison: what ran, then one verdict line per column (a
    bugged VM first), then the note on identical columns."""
    from .verdict import verdict_lines
    note = identical_note(c.summary)
    verdicts = verdict_lines(c)
    items = "".join(f"<li>{html.escape(v)}</li>" for v in verdicts.values())
    return (f"{html.escape(c.manifest['scenario'])}, seed {c.manifest['seed']}, "
            f"{c.manifest['reps']} replications per column on the same seeds, "
            f"{elapsed:.1f} s: " + "; ".join(html.escape(x["label"])
                                              for x in c.manifest["columns"])
            + f"<ul class='wb-verdicts'>{items}</ul>"
            + (f"<b>note:</b> {html.escape(note)}" if note else ""))


def identical_groups(summary: pd.DataFrame) -> list[list[str]]:
    """Groups of two or more policy labels whose summaries are equal in every number, run
    for run (same replications, same seeds)."""
    if summary.empty:
        return []
    num = summary.select_dtypes("number").drop(columns=["replication", "seed"],
                                                errors="ignore")
    keys = {}
    for label, g in summary.assign(_i=range(len(summary))).groupby("policy", sort=False):
        sig = num.iloc[g["_i"].to_numpy()].round(9).to_csv(index=False)
        keys.setdefault(sig, []).append(str(label))
    return [v for v in keys.values() if len(v) > 1]


def identical_note(summary: pd.DataFrame) -> str:
    """One line naming the columns that gave identical numbers and why that can be."""
    groups = identical_groups(summary)
    if not groups:
        return ""
    named = "; ".join(" = ".join(g) for g in groups)
    return f"identical numbers, run for run: {named}: {WHY_IDENTICAL}."


def figure_output(fig) -> dict:
    """A plotly figure as an output of an Output widget, set from any thread (plotly
    displays itself through ``_ipython_display_``, which a formatter cannot capture)."""
    import json

    import plotly.io as pio
    spec = json.loads(pio.to_json(fig, validate=False))
    return {"output_type": "display_data", "metadata": {},
            "data": {"application/vnd.plotly.v1+json": {**spec, "config": {"responsive": True}},
                     "text/plain": f"<{spec.get('layout', {}).get('title', {}).get('text', 'figure')}>"}}


def _relabel(df: pd.DataFrame, label: str) -> pd.DataFrame:
    df = df.copy()
    df["policy"] = label
    return df

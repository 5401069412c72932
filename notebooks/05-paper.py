# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.7
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The paper's figures and tables, rebuilt
#
# Runs every experiment of the paper through the results store (only runs not yet stored
# are computed; a process per core), then writes each figure as HTML and PNG, the print
# set as PDF and SVG at a column's width (3.5 in, `NAME-3.5in.pdf`) and a page's (7 in,
# `NAME-7in.pdf`) with text of at least 8 pt (figures of more than two panels split into
# `NAME-1`, `NAME-2`, ...), and each table as CSV and LaTeX into `out`, with `paper.json`
# listing them and the lock file the environment was built from. `make paper` runs this
# notebook headless (papermill) and prints what it wrote.
#
# The experiments (`workbench.paper.experiments()`): the main comparison on
# `malicious-accept`; an outcome and a latency chart for each 2 MB / UPM scenario
# (`hugepage-split`, `zap-under-read-lock`, `upm-parallel`, `paper.SCENARIOS`); the sweeps
# of `data/experiments/` (`zero-step-window`, `hp-what-if`, `scale`, and
# `lazy-accept-scaling`, one figure per memory size with a panel per switched-off shared
# resource; the paper keeps the three `shared.off` variants that move the curve,
# `paper.PAPER_FACTORS`: 84 runs). 300 runs in all, about 5 CPU-minutes the first time
# (a process per core), then from the store.

# %% tags=["parameters"]
store = None            # results store; None: data/results or $WORKBENCH_RESULTS
out = None              # None: data/figures of this checkout
reps = 0                # 0: each experiment's own
horizon_us = 0.0        # 0: each experiment's own
values_per_factor = 0   # 0: every value of every factor
formats = ["png"]       # screen images beside the HTML
vector = True           # print set: PDF and SVG at 3.5 in and 7 in, text >= 8 pt
lock = "requirements.lock"
allow_dirty = False     # True: store runs from a checkout with uncommitted changes (marked)
workers = 0             # 0: one per core (the processes engine); 1: serial

# %%
import workbench
from workbench import paper, plots

folder = paper.check_out(out)
folder.mkdir(parents=True, exist_ok=True)
exps = paper.experiments(reps=reps or None, horizon_us=horizon_us,
                         values_per_factor=values_per_factor)
engine = "serial" if workers == 1 else None     # None: run_experiment's default, every core
batch = dict(engine=engine, workers=workers or None)
stored = {e["name"]: workbench.run_experiment(e, store=store, progress=False,
                                              allow_dirty=allow_dirty, **batch) for e in exps}
{k: (c.manifest["runs_computed"], c.manifest["runs_from_store"]) for k, c in stored.items()}

# %% [markdown]
# The store keeps no per-vCPU table: the per-vCPU figures of the main comparison are
# computed again (same seeds, so the same runs).

# %%
main = exps[0]
per_vcpu = workbench.compare(main["scenario"], main["policies"], reps=main["reps"],
                             seed=main["seed"], sets=main["sets"],
                             **(batch if engine else dict(engine="processes")))
figs = {}
for name, c in stored.items():
    figs.update(paper.figures(name, c, per_vcpu if name == "paper-main" else None))
written = plots.save_all(figs, folder, formats)
if vector:    # the print set: many-panel figures split, the dashboard left out
    prints = {}
    for name, c in stored.items():
        prints.update(paper.figures(name, c, per_vcpu if name == "paper-main" else None,
                                    max_panels=plots.paperfig.MAX_PANELS))
    written += plots.save_paper(prints, folder)
written += [p for name, c in stored.items() for p in paper.tables(name, c, folder)]

# %%
record = paper.record(folder, written, paper.lock_record(lock),
                      {"reps": reps, "horizon_us": horizon_us,
                       "values_per_factor": values_per_factor, "formats": formats})
for p in [*written, record]:
    print(f"wrote {p}")

# %%
figs["main-dashboard"]

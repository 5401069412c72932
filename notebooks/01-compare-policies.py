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
# # How should KVM react to `TDX_OPERAND_BUSY`?
#
# Each policy of the 2024 LKML debate, run on the same replications of one workload
# (common random numbers), side by side: latency, fairness, and what each costs or breaks.
# Change the parameters below, or use the panel in `00-start-here`. Every number comes
# from `workbench`; this notebook holds no logic.

# %% tags=["parameters"]
scenario = "malicious-accept"
policies = ["upstream", "zero-tolerance", "patch-09-21", "host-priority-retry"]
reps = 3
seed = 1
horizon_us = 20000.0
host_priority = True

# %%
import workbench
from workbench import plots

sets = [f"horizon_us={horizon_us}", f"module.host_priority={str(host_priority).lower()}"]
print(workbench.load_scenario(scenario).question)
c = workbench.compare(scenario, policies, reps=reps, seed=seed, sets=sets)
op = plots.main_op(c.ops)
c          # one verdict line per policy: how its runs ended, and whether latency is compared

# %% [markdown]
# ## Latency, fairness and costs side by side
# Top: the tail of the main operation (complete runs, successes only; failures are counted
# in the legend), useful work per vCPU, fairness with intervals over complete runs (Jain's
# index; the host's share of the acquisitions after a BUSY). Bottom: where the vCPUs' time
# goes, the scenario's headline metric, the longest waits and every outcome that is non-zero
# for some policy. A policy whose runs stopped early is named in the subtitle.

# %%
plots.dashboard(c)

# %% [markdown]
# ## The tail, with failures apart, and the percentiles with their intervals

# %%
plots.latency_ccdf(c.complete_ops(), op)

# %%
plots.percentile_bars(c.complete_ops(), op)

# %%
plots.latency_ecdf(c.complete_ops(), "fault_wait")

# %% [markdown]
# ## Who gets work done, and where their time goes

# %%
plots.fairness(c.vcpus)

# %%
plots.time_breakdown(c.vcpus)

# %% [markdown]
# ## One run up close: what each vCPU and host thread did (BUSY marked)
# `workbench trace SCENARIO --policy P --out run.json` writes the same run for Perfetto.

# %%
one = workbench.run(scenario, seed=seed, policy=policies[0], sets=sets)
plots.run_timeline(one, 0.0, min(horizon_us, 2000.0))

# %% [markdown]
# ## The numbers, with 95 % intervals over replications
# Outcomes as "k of n runs" with exact intervals, counts never below 0, latency and
# fairness over complete runs only (docs/metrics.md defines every name).

# %%
workbench.stats.with_intervals(c.stats([c.headline, "host_contested_share", "longest_wait_us",
                                        "kicks", "error_exits", "vm_bugged",
                                        "accept_throughput_per_ms"]))

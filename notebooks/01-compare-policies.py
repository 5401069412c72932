# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#       format_version: '1.3'
#       jupytext_version: 1.19.6
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # How should KVM react to `TDX_OPERAND_BUSY`?
#
# Each policy of the 2024 LKML debate, run on the same replications of one workload
# (common random numbers), side by side. Change the parameters below, or use the panel at
# the end. Every number comes from `workbench`; this notebook holds no logic.

# %% tags=["parameters"]
scenario = "malicious-accept"
policies = ["upstream", "zero-tolerance", "patch-09-21", "host-priority-retry"]
reps = 3
seed = 1
horizon_us = 20000.0
host_priority = True

# %%
import workbench
from workbench import plots, widgets

sets = [f"horizon_us={horizon_us}", f"module.host_priority={str(host_priority).lower()}"]
print(workbench.load_scenario(scenario).question)
c = workbench.compare(scenario, policies, reps=reps, seed=seed, sets=sets)

# %% [markdown]
# ## Outcomes and costs per run
# Means over replications; `vm_bugged` and `guest_panics` count the replications that ended so.

# %%
c.table

# %%
plots.outcomes(c.table)

# %% [markdown]
# ## Latency
# Percentiles per operation, all replications pooled (the hostile vCPUs' own TDCALLs left out),
# then the whole distribution of the 4 KB zap and of the guest-visible fault wait (a fault
# given up and re-taken counts once, from its first try to the one that resolved it).

# %%
c.latency

# %%
plots.latency_ecdf(c.ops, "zap_4k")

# %%
plots.latency_ecdf(c.ops, "fault_wait")

# %% [markdown]
# ## One run up close: when did the module say BUSY, and who got work done?

# %%
one = workbench.run(scenario, seed=seed, policy=policies[0], sets=sets)
plots.busy_timeline(one.calls)

# %%
plots.fairness(one.vcpus)

# %% [markdown]
# ## Try it yourself
# Pick policies (your own, once registered with `@workbench.register`, appear after
# `panel.refresh()`), flip the module's switches, press **Run**.

# %%
panel = widgets.ComparePanel(scenario=scenario, policies=policies[:2], reps=1, seed=seed,
                             horizon_us=min(horizon_us, 5000.0))
panel

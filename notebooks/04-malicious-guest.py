# ---
# jupyter:
#   jupytext:
#     cell_metadata_filter: tags,-all
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
# # A malicious guest: who starves whom?
#
# Hostile vCPUs spam `TDG.MEM.PAGE.ACCEPT` on the pages the host is converting. With
# HOST_PRIORITY the module makes a guest TDCALL that would block a host SEAMCALL back off;
# without it, the host loses the entry lock as often as the guest takes it. Crowding more
# spammers onto each page (`per_page`) raises the pressure. Each panel is one HOST_PRIORITY
# setting; each line one policy, with its 95 % interval band.

# %% tags=["parameters"]
policies = ["upstream", "zero-tolerance", "host-priority-retry"]
per_page = [1, 2, 4]
spammers = 4
reps = 2
seed = 0
horizon_us = 10000.0

# %%
import workbench
from workbench import plots

runs = workbench.sweep_facets(
    "malicious-accept", "vcpus.1.per_page", per_page, policies, facet="module.host_priority",
    facet_values=[True, False], reps=reps, seed=seed,
    sets={"horizon_us": horizon_us, "vcpus.1.count": spammers})
stats = workbench.facet_stats(runs, "vcpus.1.per_page", "module.host_priority")

# %% [markdown]
# ## Does the host's zap get through?

# %%
plots.interval_lines(stats, "zap_4k_p99_us", "vcpus.1.per_page", facet="module.host_priority")

# %% [markdown]
# ## Does the well-behaved guest still get work done?

# %%
plots.interval_lines(stats, "accept_throughput_per_ms", "vcpus.1.per_page",
                     facet="module.host_priority")

# %%
plots.interval_lines(stats, "error_exits", "vcpus.1.per_page", facet="module.host_priority")

# %% [markdown]
# ## Per vCPU, at the highest pressure, HOST_PRIORITY off

# %%
worst = runs[False]
plots.fairness(worst.vcpus[worst.vcpus["value"] == max(per_page)])

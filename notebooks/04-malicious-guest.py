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
import pandas as pd

import workbench
from workbench import plots

parts, runs = [], {}
for hp in (True, False):
    s = workbench.sweep("malicious-accept", "vcpus.1.per_page", per_page, policies, reps=reps,
                        seed=seed, sets=[f"horizon_us={horizon_us}", f"vcpus.1.count={spammers}",
                                         f"module.host_priority={str(hp).lower()}"])
    runs[hp] = s
    parts.append(s.stats().rename(columns={"value": "vcpus.1.per_page"})
                 .assign(**{"module.host_priority": "on" if hp else "off"}))
stats = pd.concat(parts, ignore_index=True)

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

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
# # What grows with the vCPU count?
#
# Every 4 KB zap kicks every vCPU and waits for each to leave guest mode, under `mmu_lock`
# for write (domain facts 7 and 8). This notebook sweeps the number of vCPUs of the `scale`
# scenario and compares policies at each point, on the same replications; bands are the
# 95 % t-interval over replications.

# %% tags=["parameters"]
scenario = "scale"
param = "vcpus.1.count"
values = [3, 7, 15, 31]
policies = ["upstream", "vm-spinlock", "mmu-lock-write"]
reps = 2
seed = 1
horizon_us = 10000.0
engine = "serial"

# %%
import workbench
from workbench import plots

print(workbench.load_scenario(scenario).question)
s = workbench.sweep(scenario, param, values, policies, reps=reps, seed=seed,
                    sets=[f"horizon_us={horizon_us}"], engine=engine)
stats = s.stats().rename(columns={"value": param})
s.table

# %%
plots.interval_lines(stats, "zap_4k_p99_us", param)

# %%
plots.interval_lines(stats, "accept_throughput_per_ms", param)

# %%
plots.interval_lines(stats, "private_fault_p99_us", param)

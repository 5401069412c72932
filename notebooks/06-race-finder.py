# ---
# jupyter:
#   jupytext:
#     formats: ipynb,py:percent
#     text_representation:
#       extension: .py
#       format_name: percent
#   kernelspec:
#     display_name: Python 3 (ipykernel)
#     language: python
#     name: python3
# ---

# %% [markdown]
# # The race finder: one schedule that breaks a policy
#
# Averages over replications hide a race that needs one rare interleaving. Here the race
# finder searches the schedules of a small TD (a converter and one vCPU that keeps
# ACCEPTing the pages being zapped) under two policies: the series' `patch-09-21`, where a
# BLOCK that meets BUSY on the S-EPT entry lock is KVM_BUG_ON, and the merged `upstream`,
# which kicks every vCPU out and retries once.

# %% tags=["parameters"]
scenario = "malicious-accept-small"
policies = ["patch-09-21", "upstream"]
schedules = 64
reps = 1              # unused: the notebooks' shared small parameters
horizon_us = 2000.0
seed = 0

# %%
from workbench import plots
from workbench import explore
from workbench.racefinder.replay import format_trace, trace_table

verdicts = {p: explore(scenario, p, schedules=schedules, seed=seed, progress=False,
                       sets=[f"horizon_us={horizon_us}"], shrink_seconds=3)
            for p in policies}
for v in verdicts.values():
    print(v.text(), "\n")

# %%
found = [v for v in verdicts.values() if v.failure]
print(format_trace(found[0].shrunk) if found else "no counterexample")

# %%
plots.counterexample(trace_table(found[0].shrunk)) if found else None

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
# # Zero-step: who arms it, and what an armed vCPU costs the others
#
# The TDX module counts EPT violations at one guest RIP; past a threshold (6 by default)
# it arms *zero-step* and each later re-entry of that vCPU walks and takes the S-EPT tree,
# which other SEAMCALLs then find BUSY. Upstream KVM retries faults **locally** (it never
# resumes the guest on a BUSY fault) precisely so that KVM itself does not feed the
# counter (Sean, ZuR09EqzU1WbQYGd; docs/model.md). Resuming the guest does feed it, once
# the race window is long enough. Three questions:
# 1. Does local retry avoid arming zero-step where resuming the guest arms it?
# 2. How long must the race window (`TDH.MEM.SEPT.ADD`) be before it arms?
# 3. Once a vCPU is armed, what does it cost the other vCPUs?

# %% tags=["parameters"]
policies = ["upstream", "upstream+fault=resume-guest"]
window_us = [3, 10, 30, 100]
reps = 3
seed = 0
horizon_us = 20000.0

# %%
import workbench
from workbench import plots

sets = [f"horizon_us={horizon_us}"]
w = workbench.sweep("touch-storm", "timings.sept_add_us", window_us, policies, reps=reps,
                    seed=seed, sets=sets)
wstats = w.stats().rename(columns={"value": "timings.sept_add_us"})

# %% [markdown]
# ## 1-2. Zero-step armings as the race window grows (touch-driven faults)

# %%
plots.interval_lines(wstats, "zero_step_armings", "timings.sept_add_us", log_x=True)

# %%
plots.interval_lines(wstats, "fault_wait_p99_us", "timings.sept_add_us", log_x=True)

# %% [markdown]
# ## 3. A stepping vCPU (armed by its own memory faults) and the others
# In `zero-step` a vCPU stuck at one RIP arms zero-step by itself; its re-entries take the
# tree just when the converter's BLOCK and the other vCPUs' faults want it.

# %%
z = workbench.compare("zero-step", ["upstream", "sean-per-path", "patch-09-21"], reps=reps,
                      seed=seed, sets=sets)
plots.dashboard(z)

# %%
plots.time_breakdown(z.vcpus)

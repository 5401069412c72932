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

# %% [markdown]
# ## What bends the lazy-accept curve? The host's shared resources
#
# The vCPUs of a TD share more than the locks the model names: the cache lines of the
# hot lock words (TDR, S-EPT tree, epoch, `mmu_lock`), the host's page allocation, one
# memory-bandwidth pool for clearing and zeroing pages, the exits of idle vCPUs and the
# guest's own locks (docs/model.md section 10). Each is a switch; here the lazy-accept
# throughput and per-page latency are swept over the vCPU count with all of them on
# (`none` off), each one off in turn, and all off. The full design is the experiment
# `data/experiments/lazy-accept-scaling.yaml` (`workbench sweep` it).

# %%
shared_counts = [1, 4, 16] if horizon_us <= 2000 else [1, 2, 4, 8, 16, 32, 64]
shared_off = ["none", "hot_lines", "page_alloc", "mem_bandwidth", "idle_exits",
              "guest_locks", "all"]
shared = workbench.sweep_facets(
    "lazy-accept-boot", "vcpus.0.count", shared_counts, ["upstream"], facet="shared.off",
    facet_values=shared_off, reps=reps, seed=seed, engine=engine,
    sets={"horizon_us": horizon_us, "memory_mb": 256, "shared.idle_share": 0.25})
shared_stats = workbench.facet_stats(shared, "vcpus.0.count", "shared.off")

# %%
plots.interval_lines(shared_stats, "accept_throughput_per_ms", "vcpus.0.count",
                     facet="shared.off", log_x=True)

# %%
plots.interval_lines(shared_stats, "accept_4K_p50_us", "vcpus.0.count", facet="shared.off",
                     log_x=True)

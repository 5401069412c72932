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
# # Design review: who wins a spammed S-EPT entry, and at what cost?
# The comparison runs as the page opens (a few seconds); the verdict per policy comes
# first, the dashboard below it, the controls folded under **controls**. `00-start-here`
# explains the try-locks and the debate behind these policies; **Review file** writes
# one HTML file to send (it opens offline).

# %% tags=["parameters"]
scenario = "malicious-accept"
columns = ["upstream", "patch-09-21", "zero-tolerance", "host-priority-retry"]
reps = 2
seed = 1
horizon_us = 1500.0

# %%
from workbench import widgets

widgets.ComparePanel(scenario=scenario, columns=columns, reps=reps, seed=seed,
                     horizon_us=horizon_us, present=True)

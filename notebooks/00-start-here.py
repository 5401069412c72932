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
# # Start here: KVM, the TDX module's try-locks and `TDX_OPERAND_BUSY`
#
# **What a SEAMCALL try-lock is.** In an Intel TDX guest (a TD), KVM cannot edit the
# guest's private page tables (the Secure EPT, S-EPT) itself: it asks the TDX module with a
# SEAMCALL (`TDH.MEM.SEPT.ADD`, `TDH.MEM.PAGE.AUG`, `TDH.MEM.RANGE.BLOCK`, `TDH.MEM.TRACK`,
# `TDH.MEM.PAGE.REMOVE`, `TDH.VP.ENTER`, ...). The guest asks the same module with TDCALLs
# (`TDG.MEM.PAGE.ACCEPT`, ...). The module protects its S-EPT entries, the S-EPT tree and
# the TD's epoch with *try-locks*: a call that finds a lock taken does not wait, it returns
# **`TDX_OPERAND_BUSY`** with the operand it lost on, and the caller decides what to do.
#
# **Why BUSY happens.** KVM handles private faults under `mmu_lock` for *read*, so several
# vCPUs' faults run SEAMCALLs on the same tree at once; zaps (for conversions) take
# `mmu_lock` for write, but the guest's own TDCALLs (an ACCEPT on the page being zapped,
# the module's zero-step mitigation taking the tree on a re-entry) are not under any KVM
# lock at all. HOST_PRIORITY lets a host SEAMCALL that lost to a guest TDCALL make the guest
# back off (at a cost for the guest).
#
# **The debate** (LKML, from September 2024; messages by id on lore.kernel.org):
#
# | position | who | message |
# |---|---|---|
# | retry BUSY\|SEPT up to 16 times (`tdx_seamcall_sept`), loop on REMOVE/TRACK | Rick Edgecombe's "TDX MMU part 2", patch 09/21, quoted by Sean | [Zt9kmVe1nkjVjoEg@google.com](https://lore.kernel.org/kvm/Zt9kmVe1nkjVjoEg@google.com) |
# | zero tolerance: never blindly retry; KVM must make contention impossible, as the SGX driver does | Sean Christopherson | [Zt9kmVe1nkjVjoEg@google.com](https://lore.kernel.org/kvm/Zt9kmVe1nkjVjoEg@google.com) |
# | per path: resume the guest on faults, kick all vCPUs so one retry of a zap must succeed | Sean Christopherson | [Zt-LmzUSyljHGcMO@google.com](https://lore.kernel.org/kvm/Zt-LmzUSyljHGcMO@google.com) |
# | a VM-wide spinlock plus a bounded retry (warn at 16, KVM_BUG_ON at 1024) | Paolo Bonzini | [1bbe3a78-…@redhat.com](https://lore.kernel.org/kvm/1bbe3a78-8746-4db9-a96c-9dc5f1190f16@redhat.com) |
# | the right number of tries is 2; a VM-wide lock "defeats the purpose" of the rwlock | Sean Christopherson | [ZuBQYvY6Ib4ZYBgx@google.com](https://lore.kernel.org/kvm/ZuBQYvY6Ib4ZYBgx@google.com) |
# | retry faults locally in KVM so zero-step only fires on a bug; why may a guest lock a not-present entry? | Sean Christopherson (implemented by Yan Zhao) | [ZuR09EqzU1WbQYGd@google.com](https://lore.kernel.org/kvm/ZuR09EqzU1WbQYGd@google.com) |
# | a module change to stop ACCEPT locking not-present entries is "in the works" | Rick Edgecombe, in Yan Zhao's huge-page RFC thread | [20250424030033.32635-1-yan.y.zhao@intel.com](https://lore.kernel.org/kvm/20250424030033.32635-1-yan.y.zhao@intel.com) |
#
# **What Linux merged** (6.16, reshaped in 6.19; preset `upstream`): faults retry locally
# in KVM without a count limit; zaps kick every vCPU out of the guest and retry once, and
# anything left is a KVM bug (`tdh_do_no_vcpus`). `docs/policies.md` has every preset
# with its source; `docs/model.md` says what the model does and where it guesses.
#
# ## The panel
# Each **column** is one policy set: a preset, or a policy per call site (fault, zap,
# VP.ENTER, ACCEPT), with its own module switches. **add column** copies the last column;
# untick HOST_PRIORITY in the copy, press **Run**: every column runs on the same
# replications (common random numbers) and the dashboard puts latency, fairness and costs
# side by side. Nothing runs while you move a control.
#
# **Why these defaults.** `malicious-accept` with all four ACCEPT spammers on one page
# (`spammers per page` 4), 1.5 ms, 2 replications: 1 to 1.5 s of CPU per Run with two or
# three columns. The columns are `upstream` and `host-priority-retry`, so the copy you
# make is `host-priority-retry`, a policy whose zaps retry blindly: with HOST_PRIORITY off
# its zaps retry more often (10.5 against 5.5 a run at seed 1; 6 against 5.5 and 6
# against 4 at seeds 2 and 3) and the host sees more BUSY. A small effect, as
# docs/findings.md §1 says: HP does not decide who wins a spammed entry. Under `upstream` HOST_PRIORITY changes next to nothing, and with one spammer
# per page nothing at all: a BUSY zap kicks every vCPU out of the guest and retries once,
# so the only guest TDCALLs between its failed try and its retry are those under way before
# the kick's IPIs land (docs/findings.md §1). When two columns
# give identical numbers run for run, the status line says so and why that can happen.

# %% tags=["parameters"]
scenario = "malicious-accept"
reps = 2
seed = 1
horizon_us = 1500.0

# %%
from workbench import widgets

panel = widgets.ComparePanel(scenario=scenario, columns=("upstream", "host-priority-retry"),
                             reps=reps, seed=seed, horizon_us=horizon_us)
panel

"""Layer 1: frozen, validated configuration (pydantic v2). Units are in the field names.

A scenario is a :class:`ScenarioConfig`: the TD, the module options, the host and guest
options, and the vCPU roles of the workload. Variants are made with
:func:`with_overrides` (``"module.host_priority=false"``), never by mutation.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from .paths import DATA
from .safeio import (MAX_TEXT_CHARS, ConfigError, check_path, load_yaml_text, read_yaml_file,
                     short)

MIN_DURATION_US = 1e-3   # 1 ns: any positive duration below it would not advance time

__all__ = ["ConfigError"]


class Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", allow_inf_nan=False)


us = Field(ge=0.0)


class Calibration(Frozen):
    """Durations of the model, in microseconds (``data/calibration/*.yaml``).

    A SEAMCALL or TDCALL is three parts: entry (SEAMCALL / the TD exit into SEAM, dispatch),
    the locked section (the leaf's own row), exit (SEAMRET / VM entry back to the guest).
    Locks are held in the locked section only, so a caller that loops on a call leaves
    every lock free for at least one exit plus one entry between two holds."""
    name: str = "default"
    # >0: a host loop of failing calls, or a guest loop of TDCALLs, cannot spin in zero time
    seamcall_entry_us: float = Field(gt=0.0)
    seamcall_exit_us: float = Field(gt=0.0)
    tdcall_entry_us: float = Field(gt=0.0)
    tdcall_exit_us: float = Field(gt=0.0)
    sept_add_us: float = us
    page_aug_us: float = us
    range_block_us: float = us
    page_remove_us: float = us
    track_us: float = us
    wbinvd_4k_us: float = us
    vp_enter_us: float = us
    td_exit_us: float = us
    epoch_hold_us: float = us
    zero_step_walk_us: float = us
    zero_step_hold_us: float = us
    accept_4k_us: float = Field(gt=0.0)
    accept_2m_us: float = Field(gt=0.0)
    accept_probe_us: float = Field(gt=0.0)
    attr_wr_us: float = Field(gt=0.0)
    touch_us: float = Field(gt=0.0)
    # >0: every retry costs time, so no policy can loop without time passing
    kvm_fault_us: float = Field(gt=0.0)  # also the cost of one local-retry iteration
    kvm_zap_step_us: float = us          # KVM's own work between two SEAMCALLs of a zap
    fastpath_poll_us: float = Field(gt=0.0)  # one tdx_vcpu_run pass held by wait_for_sept_zap
    kvm_entry_us: float = us             # vcpu_enter_guest up to TDH.VP.ENTER
    kick_base_us: float = us
    kick_per_target_us: float = us
    ipi_delivery_us: float = us
    vmm_turnaround_us: float = Field(gt=0.0)
    set_attributes_us: float = us
    # huge pages and Dynamic PAMT (domain §10.5-10.6); defaults keep older calibration
    # files valid, data/calibration/default.yaml gives each its status and range
    demote_us: float = Field(20.0, ge=0.0)
    pamt_add_us: float = Field(2.0, ge=0.0)
    pamt_refcount_us: float = Field(0.2, ge=0.0)      # KVM's work inside its global spinlock
    host_irq_interval_us: float = Field(1000.0, ge=0.0)  # mean gap between host interrupts
    jitter_cv: float = Field(ge=0.0, le=1.0)       # the module's calls
    kvm_jitter_cv: float = Field(ge=0.0, le=2.0)   # KVM's and the VMM's own steps
    # quantities drawn from measured samples instead of jitter: {row: (samples file, sha256)}
    # (workbench/measured.py; set by load_calibration, never by hand)
    measured: dict[str, tuple[str, str]] = {}
    # shared resources of the host (workbench/model/shared.py); defaults equal default.yaml
    cacheline_transfer_us: float = Field(0.15, gt=0.0)   # one hot lock word changes CPU
    host_alloc_shared_us: float = Field(0.1, ge=0.0)     # allocator's serialised part/page
    mem_bandwidth_gbps: float = Field(40.0, gt=0.0)      # the host's pool for page clears
    idle_tick_work_us: float = Field(2.0, ge=0.0)        # an idle vCPU's tick in the guest
    guest_zone_lock_us: float = Field(0.2, ge=0.0)       # zone->lock: pick a block
    guest_bitmap_lock_us: float = Field(0.1, ge=0.0)     # unaccepted_memory_lock section

    @model_validator(mode="after")
    def _floor(self):
        _check_floor(self)
        return self


ModuleVersionName = Literal["1.5.01", "1.5.06", "1.5.08", "1.5.16", "1.5.20", "1.5.25",
                            "1.5.28", "2.0.01", "2.0.04", "2.0.12"]


class ModuleOptions(Frozen):
    """Switches of the TDX module model. Defaults are TDX module 1.5.01 (domain.md §3-4);
    ``version`` selects the version-dependent semantics (``workbench/model/versions.py``)."""
    version: ModuleVersionName = "1.5.01"
    # What-if (domain §10.4): the chance that a TDH.MEM.* call meets a module-internal
    # holder (TDCS op_state) even when no vCPU runs, breaking the assumption that
    # tdh_do_no_vcpus' one retry after a kick must succeed. 0 = the module keeps it.
    busy_without_vcpus: float = Field(0.0, ge=0.0, le=1.0)
    host_priority: bool = True
    hp_lock_timeout_us: float = Field(1_000_000.0, ge=10_000.0, le=100_000_000.0)
    # The announced change: ACCEPT does not lock a not-present (FREE) entry.
    accept_locks_not_present: bool = True
    zero_step_threshold: int = Field(6, ge=0, le=1000)
    epf_gpa_list_size: int = Field(32, ge=1, le=1024)
    # TD attribute SEPT_VE_DISABLE. Upstream KVM requires it: a guest touch of a PENDING page
    # is an EPT violation and KVM kills the VM. False models a TD whose guest gets a #VE and
    # accepts the page itself (what KVM refuses), to study touch-driven fault storms.
    sept_ve_disable: bool = True
    # Dynamic PAMT (domain §10.6): 4 KB PAMT pages exist per 2 MB range only after
    # TDH.PHYMEM.PAMT.ADD; AUG at 4 KB and DEMOTE fail with TDX_MISSING_PAMT_PAGE_PAIR without
    dynamic_pamt: bool = False


class SharedOptions(Frozen):
    """Shared resources of the host that bound scaling (``workbench/model/shared.py``,
    docs/model.md "Shared resources"). Each switch is on where the real machine has the
    mechanism; all off gives the model as it was before them."""
    hot_lines: bool = True       # TDR, S-EPT tree, epoch and mmu_lock words: one line each
    page_alloc: bool = True      # guest_memfd/page allocator's serialised part per fault
    mem_bandwidth: bool = True   # one pool for the host's clears and ACCEPT's zeroing
    idle_exits: bool = True      # idle vCPUs wake on ticks: VP.ENTER, tick, HLT exit
    guest_locks: bool = True     # Linux lazy accept: zone->lock, unaccepted_memory_lock
    # share of the TD's vCPUs that are idle (added beside the scenario's busy ones):
    # n_idle = round(n_busy * idle_share / (1 - idle_share)); 0 = none
    idle_share: float = Field(0.0, ge=0.0, le=0.95)
    idle_tick_us: float = Field(4000.0, gt=0.0)   # an idle vCPU's wakeups (HZ=250)
    # one more switch, a scalar so that an experiment can turn each off in turn
    off: Literal["none", "hot_lines", "page_alloc", "mem_bandwidth", "idle_exits",
                 "guest_locks", "all"] = "none"

    def on(self, mechanism: str) -> bool:
        """Whether ``mechanism`` is modelled: its switch, unless ``off`` names it."""
        return getattr(self, mechanism) and self.off not in (mechanism, "all")


class HostOptions(Frozen):
    """KVM and the VMM (userspace)."""
    # The guest's timer tick on a busy vCPU (CONFIG_HZ=1000 -> 1000 us): each is an
    # external-interrupt TD exit and a re-entry at a time no S-EPT operation decides.
    # 0 turns ticks off.
    tick_us: float = Field(1000.0, ge=0.0)
    # What the VMM does on KVM_EXIT_MEMORY_FAULT: convert the GPA to what the guest asked
    # for (QEMU's implicit conversion) or re-run the vCPU unchanged (a VMM that refuses).
    memory_fault_action: Literal["convert", "rerun"] = "convert"
    # What the VMM does when KVM returns an error exit (zero tolerance): re-run or stop.
    vmm_on_error: Literal["rerun", "stop"] = "rerun"
    # 2 MB private leaves (domain §10.5, the huge-page series): "4k" maps 4 KB only (what
    # Linux merged); "2m" maps 2 MB where the guest accepts at 2 MB, on a module that reports
    # ENHANCED_DEMOTE_INTERRUPTIBILITY (else 4 KB, as the series gates it); "2m-force" maps
    # 2 MB on any module (what-if: what the gate prevents)
    private_page_sizes: Literal["4k", "2m", "2m-force"] = "4k"
    # the fault path's "honor the guest's accept level" step while a 2 MB range's
    # GUEST_INHIBIT is unset: under the write mmu_lock (RFC v5) or the read lock (earlier)
    accept_level_lock: Literal["write", "read"] = "write"
    # upm-parallel (domain §10.9): host threads that flip 4 KB attributes both ways, punch
    # holes and add/remove a memslot, each every this often (0: no such threads)
    upm_period_us: float = Field(0.0, ge=0.0)


Role = Literal["lazy_accept", "fault_storm", "converter", "accept_spammer", "attr_spammer",
               "refaulter", "stepper", "huge_converter", "huge_reader", "upm_accept",
               "upm_touch", "upm_shared", "upm_mmio", "idle", "compute"]


class VcpuGroup(Frozen):
    """``count`` vCPUs running one role of the workload."""
    role: Role
    count: int = Field(1, ge=1, le=512, strict=True)
    think_us: float = Field(10.0, ge=0.0)      # guest work between two memory events
    region_mb: float = Field(2.0, gt=0.0)      # fault_storm: size of each shared region
    range_kb: int = Field(64, ge=4, strict=True)  # converter: bytes converted per MapGPA
    interval_us: float = Field(200.0, ge=0.0)  # converter: pause between conversions
    gap_us: float = Field(0.0, ge=0.0)         # spammers: pause between two TDCALLs
    attack_us: float = Field(0.0, ge=0.0)      # spammers: stop after this long (0: never)
    per_page: int = Field(1, ge=1, strict=True)  # spammers: how many attack each page
    # fault_storm: fault pages in with the guest's ACCEPT (ACCEPT-type exits, never counted
    # by zero-step) or by touching them (counted EPT violations; needs sept_ve_disable off)
    access: Literal["accept", "touch"] = "accept"
    # huge_converter / huge_reader: the first hot_kb of each 2 MB range of the shared area
    # (region_mb) are the few GFNs converted again and again (domain §10.8); readers touch
    # the rest of the same 2 MB ranges
    hot_kb: int = Field(64, ge=4, le=2044, strict=True)

    @model_validator(mode="after")
    def _range_is_pages(self):
        _check_floor(self)
        if self.range_kb % 4:
            raise ValueError("range_kb must be a multiple of 4 (whole 4 KB pages)")
        return self


class ScenarioConfig(Frozen):
    """A whole run: the TD, its workload, and the options of every layer."""
    name: str
    question: str = ""
    # the summary column that answers the question; a scenario where no policy changes it
    # is a calm control and says so (``control: true``)
    headline: str = "private_fault_p99_us"
    control: bool = False
    memory_mb: float = Field(64.0, gt=0.0, le=1_048_576.0)
    size: float = Field(1.0, gt=0.0, le=10_000.0)  # scales memory_mb and the horizon
    horizon_us: float = Field(20_000.0, gt=0.0)
    vcpus: tuple[VcpuGroup, ...] = Field(min_length=1)
    module: ModuleOptions = ModuleOptions()
    host: HostOptions = HostOptions()
    shared: SharedOptions = SharedOptions()
    calibration: str = "default"
    timings: dict[str, float] = {}   # overrides of single calibration entries
    policy: str | dict = "upstream"
    # how KVM's fastpath passes while wait_for_sept_zap is set are simulated: one sleep per
    # wait (collapsed) or every pass (polled); the tables are the same (model/fastpath.py)
    polls: Literal["collapsed", "polled"] = "collapsed"

    @property
    def n_vcpus(self) -> int:
        return sum(g.count for g in self.vcpus)

    @property
    def memory_bytes(self) -> int:
        pages = max(512, int(self.memory_mb * self.size * 256))
        return (pages + 511) // 512 * 512 * 4096

    @property
    def horizon_scaled_us(self) -> float:
        return self.horizon_us * self.size


def _first_error(err: ValidationError) -> str:
    e = err.errors()[0]
    where = ".".join(str(p) for p in e["loc"]) or "config"
    msg = " ".join(str(e["msg"]).split()).removeprefix("Value error, ")
    where = where if len(where) <= 80 else where[:77] + "..."
    return f"{where}: {msg[:200]}" if e["loc"] else msg[:200]


def validate(model: type[BaseModel], data: dict, what: str):
    """Build ``model`` from ``data`` or raise :class:`ConfigError` with one line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{what}: {_first_error(err)}") from None
    except RecursionError:
        raise ConfigError(f"{what}: nested too deeply") from None


def read_yaml(path: Path, what: str = "file") -> dict:
    """A YAML mapping from a regular file, read by :mod:`workbench.safeio`'s rules."""
    data = read_yaml_file(path, what)
    if not isinstance(data, dict):
        raise ConfigError(f"{what} {short(str(path), 80)}: expected a mapping at the top level")
    return data


def _check_floor(model: BaseModel) -> None:
    """Every positive duration is at least 1 ns, so simulated time always advances."""
    for k, v in model:
        if k.endswith("_us") and isinstance(v, float) and 0.0 < v < MIN_DURATION_US:
            raise ValueError(f"{k} = {v:g} is below the floor of {MIN_DURATION_US:g} us "
                             "(a positive duration must make simulated time advance)")


def load_calibration(name_or_path: str = "default", timings: dict | None = None
                     ) -> tuple[Calibration, dict]:
    """The calibration and its per-quantity metadata (status, source); ``timings``
    overrides single entries (``{"sept_add_us": 50}``)."""
    path = check_path(name_or_path, "calibration")
    if not path.suffix:
        path = check_path(DATA / "calibration" / f"{name_or_path}.yaml", "calibration")
    if not os.path.exists(path):
        raise ConfigError(f"calibration {short(str(name_or_path))} not found")
    raw = read_yaml(path, "calibration")
    quantities = raw.get("quantities") or {}
    where = short(str(path), 80)
    if not isinstance(quantities, dict):
        raise ConfigError(f"calibration {where}: 'quantities' must be a mapping of "
                          "name: {value, status, source}")
    bad = [k for k, q in quantities.items()
           if not isinstance(q, dict)
           or q.get("status") not in ("exact", "published", "guess", "measured")]
    if bad:
        raise ConfigError(f"calibration {where}: {short(bad[0])} needs a value and a status "
                          "exact|published|guess|measured")
    values = {k: q.get("value") for k, q in quantities.items()}
    for k, q in quantities.items():
        r = q.get("range")
        if r is not None and not (isinstance(r, list) and len(r) == 2
                                  and all(isinstance(x, (int, float)) for x in r)
                                  and 0 <= r[0] <= r[1]):
            raise ConfigError(f"calibration {where}: {short(k)}: range must be [low, high] "
                              "with 0 <= low <= high")
    if timings is not None and not isinstance(timings, dict):
        raise ConfigError(f"timings: expected a mapping, not {short(timings)}")
    unknown = set(timings or {}) - set(values)
    if unknown:
        raise ConfigError(f"timings: unknown quantity {short(sorted(map(str, unknown))[0])}")
    values.update(timings or {})
    cal = validate(Calibration, {"name": raw.get("name", path.stem), **values},
                   f"calibration {where}" + (" with timings" if timings else ""))
    if any(isinstance(q, dict) and q.get("samples") for q in quantities.values()):
        from .samples import attach
        cal = attach(cal, quantities, path.parent, set(timings or {}))
    return cal, quantities


def parse_value(text: str):
    """A ``--set`` value: numbers (``3``, ``2.5``, ``1e3``), then YAML scalars (``true``,
    ``null``), else the text itself."""
    if not isinstance(text, str):
        return text
    if len(text) > MAX_TEXT_CHARS:
        raise ConfigError(f"--set value {short(text)}: longer than {MAX_TEXT_CHARS} characters")
    for number in (int, float):
        try:
            return number(text)
        except (ValueError, OverflowError):
            pass
    try:
        return load_yaml_text(text, "--set value")
    except ConfigError as err:
        if "not accepted" in str(err) or "deeper" in str(err) or "duplicate" in str(err):
            raise    # refused for safety, not merely text that is not YAML
        return text


def as_overrides(sets) -> dict:
    """``--set`` overrides in any form a user may give them (``"a.b=1"``, a list of those,
    or a mapping) as one mapping of dotted keys to values."""
    if not sets:
        return {}
    if isinstance(sets, str):
        sets = [sets]
    if isinstance(sets, dict):
        bad = next((k for k in sets if not isinstance(k, str)), None)
        if bad is not None:
            raise ConfigError(f"sets: keys are dotted names, not {short(bad)}")
        return dict(sets)
    if not isinstance(sets, (list, tuple)):
        raise ConfigError(f"sets: expected 'key=value' texts, a list of them or a mapping, "
                          f"not {short(sets)}")
    return dict(_split(s) for s in sets)


def with_overrides(config: ScenarioConfig, sets: list[str] | dict) -> ScenarioConfig:
    """A copy of ``config`` with dotted overrides (``module.host_priority=false``,
    ``vcpus.0.count=4``)."""
    items = as_overrides(sets).items()
    data = config.model_dump(mode="json")
    for key, value in items:
        node, parts = data, key.split(".")
        for p in parts[:-1]:
            node = _child(node, p, key)
        last = parts[-1]
        if not isinstance(node, (dict, list)):
            raise ConfigError(f"--set {short(key, 80)}: {short('.'.join(parts[:-1]), 80)} has no "
                              "fields")
        if isinstance(node, dict) and last not in node and parts[:-1] != ["timings"]:
            raise ConfigError(f"--set {short(key, 80)}: unknown key {short(last)}")
        if isinstance(node, list):
            last = _index(node, last, key)
        node[last] = value
    return validate(ScenarioConfig, data, f"scenario {config.name}")


def _split(item: str) -> tuple[str, object]:
    if not isinstance(item, str):
        raise ConfigError(f"--set: expected a 'key=value' text, not {short(item)}")
    key, sep, value = item.partition("=")
    if not sep or not key.strip():
        raise ConfigError(f"--set {short(item)}: expected key=value")
    return key.strip(), parse_value(value)


def _index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {short(key, 80)}: no element {short(part)}")
    return int(part)


def _child(node, part: str, key: str):
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if not isinstance(node, dict) or part not in node:
        raise ConfigError(f"--set {short(key, 80)}: unknown key {short(part)}")
    return node[part]

"""Layer 1: frozen, validated configuration (pydantic v2). Units are in the field names.

A scenario is a :class:`ScenarioConfig`: the TD, the module options, the host and guest
options, and the vCPU roles of the workload. Variants are made with
:func:`with_overrides` (``"module.host_priority=false"``), never by mutation.
"""
from __future__ import annotations

from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

DATA = Path(__file__).resolve().parent.parent / "data"


class ConfigError(ValueError):
    """A configuration a user gave is invalid; the message is one line."""


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
    jitter_cv: float = Field(ge=0.0, le=1.0)       # the module's calls
    kvm_jitter_cv: float = Field(ge=0.0, le=2.0)   # KVM's and the VMM's own steps


class ModuleOptions(Frozen):
    """Switches of the TDX module model. Defaults are TDX module 1.5.01 (domain.md §3-4)."""
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


Role = Literal["lazy_accept", "fault_storm", "converter", "accept_spammer", "attr_spammer",
               "refaulter", "stepper"]


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

    @model_validator(mode="after")
    def _range_is_pages(self):
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
    calibration: str = "default"
    timings: dict[str, float] = {}   # overrides of single calibration entries
    policy: str | dict = "upstream"

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
    return f"{where}: {e['msg']}"


def validate(model: type[BaseModel], data: dict, what: str):
    """Build ``model`` from ``data`` or raise :class:`ConfigError` with one line."""
    try:
        return model.model_validate(data)
    except ValidationError as err:
        raise ConfigError(f"{what}: {_first_error(err)}") from None


def read_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(Path(path).read_text())
    except (OSError, yaml.YAMLError) as err:
        raise ConfigError(f"{path}: cannot read YAML ({type(err).__name__})") from None
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return data


def load_calibration(name_or_path: str = "default", timings: dict | None = None
                     ) -> tuple[Calibration, dict]:
    """The calibration and its per-quantity metadata (status, source); ``timings``
    overrides single entries (``{"sept_add_us": 50}``)."""
    path = Path(name_or_path)
    if not path.suffix:
        path = DATA / "calibration" / f"{name_or_path}.yaml"
    if not path.exists():
        raise ConfigError(f"calibration {name_or_path!r} not found")
    raw = read_yaml(path)
    quantities = raw.get("quantities") or {}
    bad = [k for k, q in quantities.items()
           if not isinstance(q, dict) or q.get("status") not in ("exact", "published", "guess")]
    if bad:
        raise ConfigError(f"{path}: {bad[0]} needs a value and a status exact|published|guess")
    values = {k: q.get("value") for k, q in quantities.items()}
    unknown = set(timings or {}) - set(values)
    if unknown:
        raise ConfigError(f"timings: unknown quantity {sorted(unknown)[0]!r}")
    values.update(timings or {})
    cal = validate(Calibration, {"name": raw.get("name", path.stem), **values}, str(path))
    return cal, quantities


def parse_value(text: str):
    """A ``--set`` value: numbers (``3``, ``2.5``, ``1e3``), then YAML scalars (``true``,
    ``null``), else the text itself."""
    for number in (int, float):
        try:
            return number(text)
        except ValueError:
            pass
    try:
        return yaml.safe_load(text)
    except yaml.YAMLError:
        return text


def as_overrides(sets) -> dict:
    """``--set`` overrides in any form a user may give them (``"a.b=1"``, a list of those,
    or a mapping) as one mapping of dotted keys to values."""
    if not sets:
        return {}
    if isinstance(sets, str):
        sets = [sets]
    if isinstance(sets, dict):
        return dict(sets)
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
            raise ConfigError(f"--set {key}: {'.'.join(parts[:-1])} has no fields")
        if isinstance(node, dict) and last not in node and parts[:-1] != ["timings"]:
            raise ConfigError(f"--set {key}: unknown key {last!r}")
        if isinstance(node, list):
            last = _index(node, last, key)
        node[last] = value
    return validate(ScenarioConfig, data, f"scenario {config.name}")


def _split(item: str) -> tuple[str, object]:
    key, sep, value = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"--set {item!r}: expected key=value")
    return key.strip(), parse_value(value)


def _index(node: list, part: str, key: str) -> int:
    if not part.isdigit() or int(part) >= len(node):
        raise ConfigError(f"--set {key}: no element {part!r}")
    return int(part)


def _child(node, part: str, key: str):
    if isinstance(node, list):
        return node[_index(node, part, key)]
    if not isinstance(node, dict) or part not in node:
        raise ConfigError(f"--set {key}: unknown key {part!r}")
    return node[part]

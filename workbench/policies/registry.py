"""Layer 2 (policies): the registry of policies by name, policy specs and presets.

A *spec* is what YAML, the CLI and Python accept: a name (``"blind-retry"``) or a mapping
(``{"policy": "blind-retry", "max_retries": null}``); Python and the CLI's ``--policy``
may also name a user's class by import path (``"mypkg.mymod:MyPolicy"``), which is
imported only when ``imports=True`` (never for a spec read from a file or ``--set``). A *policy set* names one policy per call site; a *preset* is a
named policy set (``workbench policies`` lists them).
"""
from __future__ import annotations

import importlib
from dataclasses import dataclass, replace

from ..core.errors import PolicyError
from ..core.safeio import ConfigError, load_yaml_text, short
from .base import REGISTRY, Policy, Site

def register(cls=None, *, name: str | None = None):
    """Class decorator (or call) that makes a policy usable by name everywhere. A name of
    your own may be registered again (re-running a notebook cell); a shipped one may not."""
    def add(c):
        key = name or getattr(c, "name", "")
        if not isinstance(c, type) or not key:
            raise PolicyError(f"{getattr(c, '__name__', c)!r} is not a policy class with a "
                              "'name' attribute")
        if not callable(getattr(c, "on_busy", None)):
            raise PolicyError(f"{c.__name__} needs an on_busy(ctx, rng) method")
        old = REGISTRY.get(key)
        if old is not None and old is not c and old.__module__.startswith("workbench."):
            raise PolicyError(f"{key!r} is a shipped policy; register yours under another name")
        c.name = key
        REGISTRY[key] = c
        return c
    return add(cls) if cls is not None else add


def _import(path: str) -> type:
    """The class named by ``module:Class`` (imported and registered)."""
    mod, _, attr = path.partition(":")
    if not mod or not attr.isidentifier() or not all(p.isidentifier() for p in mod.split(".")):
        raise PolicyError(f"policy {short(path)}: an import path is module.name:ClassName")
    try:
        cls = getattr(importlib.import_module(mod), attr)
    except PolicyError as err:
        raise PolicyError(f"policy {short(path)}: {err}") from None
    except Exception as err:     # the module is the user's code: any failure is one line
        raise PolicyError(f"cannot import policy {short(path)}: {type(err).__name__}: "
                          f"{short(str(err), 120)[1:-1]}") from None
    try:
        return register(cls, name=getattr(cls, "name", "") or path)
    except PolicyError as err:
        raise PolicyError(f"policy {short(path)}: {err}") from None


def make_policy(spec, *, imports: bool = True) -> Policy:
    """A policy instance from a spec (name, mapping, import path, or an instance).
    ``imports=False`` (specs read from a file or ``--set``) refuses ``module:Class``."""
    if isinstance(spec, type) and hasattr(spec, "on_busy"):
        spec = register(spec).name      # a class: its registered name, default parameters
    if isinstance(spec, Policy) or (hasattr(spec, "on_busy") and not isinstance(spec, (str, dict))):
        return spec
    params = {}
    if isinstance(spec, dict):
        params = dict(spec)
        spec = params.pop("policy", None)
    elif isinstance(spec, str) and spec.endswith(")") and "(" in spec:
        spec, params = _parse_call(spec)
    if not isinstance(spec, str):
        raise PolicyError(f"a policy spec is a name or a mapping with 'policy', not {short(spec)}")
    cls = REGISTRY.get(spec)
    if cls is None and ":" in spec:
        if not imports:
            raise PolicyError(f"policy {short(spec)}: import paths are accepted only from "
                              "Python or the command line (--policy, --import), never from a "
                              "file or --set")
        cls = _import(spec)
    if cls is None:
        raise PolicyError(f"unknown policy {short(spec)} (known: {', '.join(sorted(REGISTRY))})")
    bad = next((k for k in params if not isinstance(k, str)), None)
    if bad is not None:
        raise PolicyError(f"policy {short(spec)}: parameter names are text, not {short(bad)}")
    try:
        return cls(**params)
    except (TypeError, ValueError, OverflowError) as err:
        raise PolicyError(f"policy {short(spec)}: {short(str(err), 160)[1:-1]}") from None


SEPT_LOCKS = ("none", "vm_spinlock", "mmu_lock_write")
# how KVM splits a 2 MB private leaf (domain §10.5, §10.7): under the write mmu_lock (the
# huge-page series), under the read lock (a distribution kernel, canonical/tdx 100 and 213),
# or with the future NON-BLOCKING-RESIZE module feature under the read lock (what-if)
SPLIT_LOCKS = ("write", "read", "non_blocking")


@dataclass(frozen=True)
class PolicySet:
    """One policy per call site, and how KVM serialises S-EPT SEAMCALLs (a switch that
    combines with any retry rule): ``none`` (mmu_lock as merged: faults read, zaps write),
    ``vm_spinlock`` (a VM-wide spinlock around every S-EPT SEAMCALL, domain §5.3) or
    ``mmu_lock_write`` (faults take mmu_lock for write)."""
    fault: Policy
    zap: Policy
    vp_enter: Policy
    accept: Policy
    name: str = "custom"
    sept_lock: str = "none"
    split_lock: str = "write"

    def __post_init__(self):
        if self.sept_lock not in SEPT_LOCKS:
            raise PolicyError(f"sept_lock must be one of {', '.join(SEPT_LOCKS)}, "
                              f"not {str(self.sept_lock)[:40]!r}")
        if self.split_lock not in SPLIT_LOCKS:
            raise PolicyError(f"split_lock must be one of {', '.join(SPLIT_LOCKS)}, "
                              f"not {str(self.split_lock)[:40]!r}")

    def for_site(self, site: Site) -> Policy:
        return getattr(self, site.value)

    def spec(self) -> dict:
        return {"preset": self.name, "sept_lock": self.sept_lock, "split_lock": self.split_lock,
                **{s: self.for_site(Site(s)).spec() for s in SITE_NAMES}}


# Each preset cites the code or message it reproduces; docs/policies.md has, per leaf and
# status operand, what each one does (and a test drives those statuses through each).
PRESETS: dict[str, dict] = {
    "upstream": dict(
        doc="what Linux merged (6.16+, 6.19 form): local retry on faults, kick + one retry on zaps",
        fault="local-retry", zap="kick-and-retry-once", vp_enter="fastpath-reenter",
        accept="linux-guest"),
    "patch-09-21": dict(
        doc="Rick's Sep 2024 series as written: tdx_seamcall_sept retries BUSY|SEPT_TREE 16 "
            "times; any other BUSY on AUG/SEPT.ADD/BLOCK/REMOVE is KVM_BUG_ON; TRACK loops",
        fault="tdx-seamcall-sept", zap="tdx-seamcall-sept", vp_enter="fastpath-reenter",
        accept="linux-guest"),
    "blind-retry-all": dict(
        doc="a what-if looser than patch 09/21: retry BUSY|SEPT_TREE 16 times on faults, "
            "any BUSY without bound on zaps",
        fault={"policy": "blind-retry", "max_retries": 16, "only_sept_tree": True},
        zap={"policy": "blind-retry", "max_retries": None}, vp_enter="fastpath-reenter",
        accept="linux-guest"),
    "paolo-bounded": dict(
        doc="Paolo's retry rule alone: count retries, warn at 16 and doubling, KVM_BUG_ON at 1024",
        fault="bounded-retry", zap="bounded-retry", vp_enter="fastpath-reenter",
        accept="linux-guest"),
    "vm-spinlock": dict(
        doc="Paolo's proposal (1bbe3a78): a VM-wide spinlock around every S-EPT SEAMCALL "
            "plus his bounded retry (rejected by Sean, ZuBQYvY6Ib4ZYBgx)",
        fault="bounded-retry", zap="bounded-retry", vp_enter="fastpath-reenter",
        accept="linux-guest", sept_lock="vm_spinlock"),
    "zero-tolerance": dict(
        doc="Sean's SGX rule: never retry in KVM; every BUSY is an error exit to userspace",
        fault="exit-to-userspace", zap="exit-to-userspace", vp_enter="exit-to-userspace",
        accept="linux-guest"),
    "sean-per-path": dict(
        doc="Sean's rules per path (Zt-LmzUSyljHGcMO): resume the guest on faults, kick + one retry on zaps",
        fault="resume-guest", zap="kick-and-retry-once", vp_enter="fastpath-reenter",
        accept="linux-guest"),
    "host-priority-retry": dict(
        doc="the host retries until it wins and relies on the module's HOST_PRIORITY",
        fault={"policy": "blind-retry", "max_retries": None},
        zap={"policy": "blind-retry", "max_retries": None}, vp_enter="fastpath-reenter",
        accept="linux-guest"),
    "mmu-lock-write": dict(
        doc="mmu_lock taken for write by S-EPT faults (Paolo's idea for zero-step; Sean's "
            "'hard no'), merged retry rules otherwise",
        fault="local-retry", zap="kick-and-retry-once", vp_enter="fastpath-reenter",
        accept="linux-guest", sept_lock="mmu_lock_write"),
    "split-read-lock": dict(
        doc="negative control (domain §10.7, canonical/tdx issues 100 and 213): a distribution "
            "kernel that split 2 MB leaves under the shared mmu_lock: a BLOCK that meets BUSY "
            "takes the leaf for blocked by another thread and goes on to DEMOTE (no TRACK of "
            "its own, no kick); a DEMOTE error is TDX_BUG_ON. Merged rules otherwise",
        fault="local-retry", zap="kick-and-retry-once", vp_enter="fastpath-reenter",
        accept="linux-guest", split_lock="read"),
    "non-blocking-resize": dict(
        doc="what-if (domain §10.5): the future NON-BLOCKING-RESIZE module feature, so KVM "
            "splits under the read mmu_lock with DEMOTE alone (no BLOCK, TRACK or kick); BUSY "
            "from DEMOTE is retried. Merged rules otherwise",
        fault="local-retry", zap="kick-and-retry-once", vp_enter="fastpath-reenter",
        accept="linux-guest", split_lock="non_blocking"),
}
SITE_NAMES = tuple(s.value for s in Site)
LOCKS = ("sept_lock", "split_lock")     # the two switches a spec may set besides the sites


def resolve_policy(spec="upstream", *, imports: bool = True) -> PolicySet:
    """A :class:`PolicySet` from a preset name, a single policy (used at every site it
    serves; the others keep upstream), or a mapping ``{preset?, fault?, zap?, ...}``.
    ``imports=False`` for specs from a file or ``--set``: no ``module:Class`` import."""
    _screen(spec, imports)
    if isinstance(spec, PolicySet):
        return spec
    if isinstance(spec, str) and spec in PRESETS:
        return _preset(spec)
    if isinstance(spec, str) and ("+" in spec or spec.partition("=")[0] in (*SITE_NAMES, *LOCKS)):
        spec = _parse_label(spec)
    if isinstance(spec, dict) and ("preset" in spec or set(spec) & {*SITE_NAMES, *LOCKS}):
        unknown = set(spec) - set(SITE_NAMES) - {"preset", *LOCKS}
        if unknown:
            raise PolicyError(f"policy: unknown call site {sorted(unknown)[0]!r} "
                              f"(sites: {', '.join(SITE_NAMES)}, or sept_lock, split_lock)")
        base = _preset(spec.get("preset", "upstream"))
        chosen = {s: make_policy(spec[s]) for s in SITE_NAMES if s in spec}
        for s, pol in chosen.items():
            _check_site(pol, Site(s))
        lock = spec.get("sept_lock", base.sept_lock)
        split = spec.get("split_lock", base.split_lock)
        label = _label(chosen, spec, lock != base.sept_lock and lock)
        label += f"+split_lock={split}" if split != base.split_lock else ""
        return replace(base, name=label, sept_lock=lock, split_lock=split, **chosen)
    pol = make_policy(spec)
    base = _preset("upstream")
    return replace(base, name=policy_label(pol), **{s.value: pol for s in pol.sites})


def _screen(spec, imports: bool) -> None:
    """Refuse, before any lookup, mapping keys that are not text and (``imports=False``)
    any ``module:Class`` a spec from a file or ``--set`` would import."""
    if isinstance(spec, dict):
        bad = next((k for k in spec if not isinstance(k, str)), None)
        if bad is not None:
            raise PolicyError(f"policy: keys are call sites or 'preset', not {short(bad)}")
    if imports:
        return
    texts = [spec] if isinstance(spec, str) else (
        [v for v in spec.values()] + [spec.get("policy")] if isinstance(spec, dict) else [])
    for t in texts:
        if isinstance(t, dict):
            t = t.get("policy")
        if isinstance(t, str) and ":" in t and t not in REGISTRY and t not in PRESETS:
            name = next(p for p in t.replace("=", "+").replace("(", "+").split("+") if ":" in p)
            raise PolicyError(f"policy {short(name.strip())}: import paths are accepted only "
                              "from Python or the command line (--policy, --import), never "
                              "from a file or --set")


def user_policy_error(pset: "PolicySet", err: BaseException) -> PolicyError | None:
    """When ``err`` was raised inside the code of a policy the user wrote (its class
    defined outside this package), one line that names their policy, the exception and
    the line of their code; else None (a bug of ours)."""
    if not isinstance(err, Exception) or isinstance(err, (PolicyError,)):
        return None
    theirs = {type(getattr(pset, s.value)).__module__ for s in Site}
    theirs = {m for m in theirs if m and not m.startswith("workbench.") and m != "workbench"}
    where, seen, e = None, set(), err
    while e is not None and id(e) not in seen and where is None:   # the simulator re-raises
        seen.add(id(e))                                          # a copy: its cause has the frames
        tb = e.__traceback__
        while tb is not None:
            if tb.tb_frame.f_globals.get("__name__") in theirs:
                where = (tb.tb_frame.f_code.co_filename, tb.tb_lineno)
            tb = tb.tb_next
        e = e.__cause__ or e.__context__
    if where is None:
        return None
    return PolicyError(f"policy {short(pset.name)}: your code raised {type(err).__name__}: "
                       f"{short(str(err), 120)[1:-1]} ({short(where[0], 80)[1:-1]}, line "
                       f"{where[1]})")


def policy_label(pol: Policy) -> str:
    """A policy's name, with the parameters that differ from its defaults:
    ``blind-retry(max_retries=None)``. Two different policies never share a label."""
    try:
        defaults = type(pol)().get_params()
    except Exception:
        defaults = {}
    params = pol.get_params() if hasattr(pol, "get_params") else {}
    changed = {k: v for k, v in params.items() if defaults.get(k, object()) != v}
    return pol.name + ("(" + ",".join(f"{k}={v}" for k, v in changed.items()) + ")"
                       if changed else "")


def _parse_call(text: str) -> tuple[str, dict]:
    """``"blind-retry(max_retries=None,delay_us=2)"`` -> name and parameters."""
    name, _, args = text[:-1].partition("(")
    params = {}
    for item in filter(None, (a.strip() for a in args.split(","))):
        k, sep, v = item.partition("=")
        k, v = k.strip(), v.strip()
        if not sep or not k:
            raise PolicyError(f"policy {short(text)}: expected name(key=value, ...)")
        if k in params:
            raise PolicyError(f"policy {short(text)}: parameter {short(k)} is given twice")
        try:
            params[k] = None if v in ("None", "null") else load_yaml_text(v, "value")
        except ConfigError as err:
            raise PolicyError(f"policy {short(text)}: {short(k)}: {err}") from None
    return name.strip(), params


def split_specs(text: str) -> list[str]:
    """A comma-separated list of policy specs; commas inside parentheses stay."""
    out, depth, cur = [], 0, ""
    for ch in text:
        depth += (ch == "(") - (ch == ")")
        if ch == "," and depth == 0:
            out.append(cur)
            cur = ""
        else:
            cur += ch
    return [s.strip() for s in out + [cur] if s.strip()]


def _parse_label(text: str) -> dict:
    """``"upstream+fault=resume-guest+zap=blind-retry"`` (the label a run carries) as a
    mapping; a part without ``=`` names the preset."""
    spec: dict = {}
    for part in filter(None, (p.strip() for p in text.split("+"))):
        site, sep, name = part.partition("=")
        key = site if sep else "preset"
        if key in spec:
            raise PolicyError(f"policy {short(text)}: {'the preset' if key == 'preset' else key}"
                              " is given twice")
        if not sep:
            spec["preset"] = part
        elif site not in (*SITE_NAMES, *LOCKS):
            raise PolicyError(f"policy {text!r}: unknown call site {site!r} "
                              f"(sites: {', '.join(SITE_NAMES)})")
        else:
            spec[site] = name
    return spec


def _label(chosen: dict, spec: dict, lock) -> str:
    """``preset+site=policy+...+sept_lock=mode``: the label says exactly what ran."""
    parts = [f"{s}={policy_label(p)}" for s, p in chosen.items()]
    parts += [f"sept_lock={lock}"] if lock else []
    preset = spec.get("preset", "upstream")
    return "+".join(([preset] if "preset" in spec or not parts else []) + parts)


def _preset(name: str) -> PolicySet:
    if not isinstance(name, str) or name not in PRESETS:
        raise PolicyError(f"unknown preset {short(name)} (known: {', '.join(PRESETS)})")
    p = PRESETS[name]
    return PolicySet(name=name, sept_lock=p.get("sept_lock", "none"),
                     split_lock=p.get("split_lock", "write"),
                     **{s: make_policy(p[s]) for s in SITE_NAMES})


def _check_site(pol: Policy, site: Site) -> None:
    if site not in getattr(pol, "sites", tuple(Site)):
        raise PolicyError(f"policy {short(pol.name)} does not serve the {site.value} site")

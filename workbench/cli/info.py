"""``workbench scenarios``, ``policies`` and ``calibration``: what the workbench knows."""
from __future__ import annotations


def cmd_scenarios(args) -> None:
    for name, question in quick_describe():
        print(f"{name:18s} {question}")


def quick_describe() -> list[tuple[str, str]]:
    """``scenarios.describe()`` without importing YAML and pydantic (a listing must start
    at once): the shipped files' ``question: >-`` blocks read as text; any file in another
    shape falls back to the full loader."""
    from ..core.paths import DATA
    out = []
    root = DATA / "scenarios"
    # the small variants last, as scenarios.describe() (SUBFOLDERS there: "small")
    for path in sorted(root.glob("*.yaml")) + sorted((root / "small").glob("*.yaml")):
        lines = path.read_text().splitlines()
        head = [i for i, x in enumerate(lines) if x.startswith("question:")]
        if len(head) != 1 or lines[head[0]].split(":", 1)[1].strip() != ">-":
            from ..core.scenarios import describe
            return describe()
        block = []
        for x in lines[head[0] + 1:]:
            if not x.startswith("  "):
                break
            block.append(x.strip())
        out.append((path.stem, " ".join(" ".join(block).split())))
    return out


def cmd_policies(args) -> None:
    from ..policies import PRESETS, REGISTRY
    print("presets (one policy per call site: fault, zap, vp_enter, accept):")
    for name, p in PRESETS.items():
        print(f"  {name:20s} {p['doc']}")
    print("policies:")
    for name, cls in sorted(REGISTRY.items()):
        sites = ",".join(s.value for s in cls.sites)
        print(f"  {name:20s} [{sites}] {cls.origin}")


def cmd_calibration(args) -> None:
    from ..core.config import load_calibration
    from ..model.versions import DEFAULT_VERSION, VERSIONS
    _, meta = load_calibration()
    for k, q in meta.items():
        print(f"  {k:20s} {q['value']:>9} {q['status']:9s} {q['source']}")
    print(f"TDX module versions (--set module.version=V; default {DEFAULT_VERSION}):")
    for name, v in VERSIONS.items():
        print(f"  {name:8s} zero-step VP.ENTER takes the S-EPT tree {v.zero_step_tree.value}; "
              f"tree lock {'with' if v.tree_lock_hp else 'without'} HOST_PRIORITY; "
              f"ENHANCED_DEMOTE_INTERRUPTIBILITY {'yes' if v.enhanced_demote else 'no'}. "
              f"{v.source}")

"""Layer 3 (model): every vCPU role a scenario may name, with its guest program: the common
workloads (workload.py), 2 MB pages (hugework.py) and the UPM selftest mirror (upm.py)."""
from . import hugework, upm, workload

ROLES = {**workload.ROLES, **hugework.ROLES, **upm.ROLES}
NEEDS_AREA = workload.NEEDS_AREA + hugework.NEEDS_AREA + upm.NEEDS_AREA

__all__ = ["ROLES", "NEEDS_AREA"]

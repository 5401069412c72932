"""Layer 1: TDX status codes as 64-bit values, named as in the kernel's tdx_errno.h.

A status is an ``int``. Bits 63:32 are the class (what the TDX module says happened), bits
31:0 carry an operand id for the BUSY codes (``api_error_with_operand_id`` in the module).
KVM compares only bits 63:32 (``TDX_SEAMCALL_STATUS_MASK``), so does :func:`tdx_operand_busy`.
"""
from __future__ import annotations

TDX_SEAMCALL_STATUS_MASK = 0xFFFF_FFFF_0000_0000

TDX_SUCCESS = 0x0000_0000_0000_0000
TDX_INTERRUPTED_RESUMABLE = 0x8000_0003_0000_0000
TDX_OPERAND_INVALID = 0xC000_0100_0000_0000
TDX_OPERAND_BUSY = 0x8000_0200_0000_0000
TDX_PREVIOUS_TLB_EPOCH_BUSY = 0x8000_0201_0000_0000
TDX_SYS_BUSY = 0x8000_0202_0000_0000
TDX_RND_NO_ENTROPY = 0x8000_0203_0000_0000
TDX_OPERAND_BUSY_HOST_PRIORITY = 0x8000_0204_0000_0000
TDX_HOST_PRIORITY_BUSY_TIMEOUT = 0x9000_0205_0000_0000
TDX_EPT_WALK_FAILED = 0xC000_0B00_0000_0000
TDX_EPT_ENTRY_NOT_FREE = 0xC000_0B02_0000_0000
TDX_GPA_RANGE_NOT_BLOCKED = 0xC000_0B06_0000_0000
TDX_GPA_RANGE_ALREADY_BLOCKED = 0x0000_0B07_0000_0000
TDX_TLB_TRACKING_NOT_DONE = 0xC000_0B08_0000_0000
TDX_PAGE_ALREADY_ACCEPTED = 0x0000_0B0A_0000_0000
TDX_PAGE_SIZE_MISMATCH = 0xC000_0B0B_0000_0000
TDX_EPT_ENTRY_STATE_INCORRECT = 0xC000_0B0D_0000_0000
# huge pages and Dynamic PAMT (module 1.5.08 include/auto_gen_1_5/tdx_error_codes_defs.h)
TDX_INTERRUPTED_RESTARTABLE = 0x8000_0004_0000_0000
TDX_INTERRUPTED_BUSY = 0x8000_0206_0000_0000
TDX_HPA_RANGE_NOT_FREE = 0xC000_0304_0000_0000
TDX_MISSING_PAMT_PAGE_PAIR = 0x8000_0308_0000_0000

# Not a module status: what this model returns when a TD exit happens instead of a result.
# VMX basic exit reason 48 (EPT violation) in the low bits, as KVM sees a TD exit.
EXIT_REASON_EPT_VIOLATION = 48
TDX_EXIT_EPT_VIOLATION = 0x0000_0000_0000_0000 | EXIT_REASON_EPT_VIOLATION

# Operand ids (bits 31:0 of a BUSY status). Registers by their architectural number.
OPERAND_ID_RCX = 0x01
OPERAND_ID_RDX = 0x02
OPERAND_ID_TDR = 0x80
OPERAND_ID_TDVPR = 0x82
OPERAND_ID_TDCS = 0x90
OPERAND_ID_SEPT = 0x92
OPERAND_ID_SEPT_ENTRY = 0x93  # defined by the module, unused: entry contention reports RCX
OPERAND_ID_TD_EPOCH = 0xA9
OPERAND_ID_OP_STATE = 0xAC

STATUS_NAMES = {
    v: k for k, v in list(globals().items())
    if k.startswith("TDX_") and isinstance(v, int) and k not in
    ("TDX_SEAMCALL_STATUS_MASK", "TDX_EXIT_EPT_VIOLATION")
}
STATUS_NAMES[TDX_SUCCESS] = "TDX_SUCCESS"
OPERAND_NAMES = {
    OPERAND_ID_RCX: "RCX", OPERAND_ID_RDX: "RDX", OPERAND_ID_TDR: "TDR",
    OPERAND_ID_TDVPR: "TDVPR", OPERAND_ID_TDCS: "TDCS", OPERAND_ID_SEPT: "SEPT_TREE",
    OPERAND_ID_SEPT_ENTRY: "SEPT_ENTRY", OPERAND_ID_TD_EPOCH: "TD_EPOCH",
    OPERAND_ID_OP_STATE: "OP_STATE",
}


def status_class(status: int) -> int:
    """Bits 63:32 of a status, the part KVM compares."""
    return status & TDX_SEAMCALL_STATUS_MASK


def tdx_operand_busy(status: int) -> bool:
    """The kernel's ``tdx_operand_busy()``: BUSY of any operand, nothing else."""
    return status & TDX_SEAMCALL_STATUS_MASK == TDX_OPERAND_BUSY


def busy(operand_id: int, host_priority: bool = False) -> int:
    """``TDX_OPERAND_BUSY`` (or its _HOST_PRIORITY variant) with the operand id."""
    base = TDX_OPERAND_BUSY_HOST_PRIORITY if host_priority else TDX_OPERAND_BUSY
    return base | operand_id


def is_error(status: int) -> bool:
    """Bit 63 set: an error (warnings such as PAGE_ALREADY_ACCEPTED are not)."""
    return bool(status >> 63)


def status_name(status: int) -> str:
    """Name of a status's class, e.g. ``TDX_OPERAND_BUSY``; unknown classes in hex. A TD
    exit for an EPT violation (a TDCALL or VP.ENTER that ended in one) is
    ``EXIT_REASON_EPT_VIOLATION``."""
    if status == TDX_EXIT_EPT_VIOLATION:
        return "EXIT_REASON_EPT_VIOLATION"
    cls = status_class(status)
    return STATUS_NAMES.get(cls, f"0x{cls:016X}")


def operand_name(status: int) -> str:
    """Operand of a BUSY-class status (``SEPT_TREE``, ``RCX``...), else ``""``."""
    if status_class(status) not in (TDX_OPERAND_BUSY, TDX_OPERAND_BUSY_HOST_PRIORITY):
        return ""
    op = status & 0xFFFF_FFFF
    return OPERAND_NAMES.get(op, f"0x{op:X}")


def decode(status: int) -> tuple[str, str]:
    """``(status_name, operand_name)`` of a 64-bit status."""
    return status_name(status), operand_name(status)

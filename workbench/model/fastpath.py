"""Layer 3 (model): KVM's fastpath re-entry while ``wait_for_sept_zap`` is set.

While a zapper holds kvm_tdx->wait_for_sept_zap (tdh_do_no_vcpus: from its kick to the end
of its one retry), tdx_vcpu_run returns EXIT_FASTPATH_EXIT_HANDLED without a TDH.VP.ENTER
and vcpu_run loops: one pass out (``fastpath_poll_us``, state ``zap_wait``), one
vcpu_enter_guest up to the check (``kvm_entry_us``, state ``kvm``), until a check finds the
flag clear or the TD dead. The kick waits until its slowest target has left the TD, so
when that is slow every vCPU that left early spins that long: a long-hold storm
(``benchmarks/long-hold-storm.yaml``).

Two ways to simulate it, with identical tables (``polls`` in the scenario):

- ``polled``: every pass, two events each.
- ``collapsed`` (the default): the vCPU sleeps until the flag clears or the TD stops, then
  replays the passes it slept through (states, times, entry counts) and wakes at the first
  boundary after. This is exact because a pass has no effect that anyone else sees (the
  vCPU enters and leaves guest mode within one step, so no kick targets it). A pass also
  reads only the flag and ``td.stopped``, whose changes wake the sleeper. And its draws are
  its own in both modes: durations from the vCPU's ``fastpath/<name>`` stream, tie-breaks
  from a hash of the pass's index. So skipping a pass shifts no other draw.

One difference remains possible: a pass that ends at the very instant the flag clears runs
after the clearing when collapsed, and in its tie-break's order when polled. With jittered
durations that has probability 0.
"""
from __future__ import annotations

from heapq import heappush

import numpy as np
from simpy.core import NORMAL

from ..core.rng import stream
from .clock import MIN_STEP_US, Jitter, durations

BULK_PASSES = 32       # from this many passes to replay, numpy's arrays pay for themselves
_M64 = (1 << 64) - 1


class FastpathPolls:
    """One vCPU's fastpath passes: :meth:`run` from a failed check (state ``zap_wait``) to
    the first check that finds the flag clear (True: the vCPU is in guest mode, about to
    TDH.VP.ENTER) or the TD stopped (False)."""

    __slots__ = ("v", "td", "kvm", "env", "_dur", "_poll_us", "_entry_us", "_key", "_n",
                 "_eid", "collapsed", "_c", "_ev", "_t", "_at_check")

    def __init__(self, v, td, index: int, collapsed: bool):
        self.v, self.td, self.kvm, self.env = v, td, td.kvm, td.env
        self._dur = self._key = None      # the streams, made at the first pass (_streams)
        self._poll_us, self._entry_us = td.cal.fastpath_poll_us, td.cal.kvm_entry_us
        self._n = 0                       # the passes' timeouts so far: the tie's index
        # the heap key's low bits: unique among queued events (one per vCPU at a time) and
        # apart from the environment's counter, whose values then do not depend on passes
        self._eid = (1 << 39) | (index << 28)
        # the race finder's schedule keeps every step a step (its ties are its choices)
        self.collapsed = collapsed and td.choices is None
        self._c = self._ev = self._t = None
        self._at_check = False

    # -- tie-breaks and wake-ups of the passes' own ------------------------------------
    def _streams(self) -> None:
        """The passes' durations and tie key, made when a vCPU first spins: most never do,
        and two generators per vCPU were a quarter of building a 64-vCPU TD."""
        td, name = self.td, self.v.name
        self._dur = durations(td.cal, td.cal.kvm_jitter_cv, td._stream(f"fastpath/{name}"),
                              block=2048, numpy_exp=True)
        self._key = int(stream(td.seed, f"fastpath-ties/{name}", td.replication)
                        .integers(2**63))

    def _tie(self) -> int:
        """23 bits of splitmix64 of the pass timeout's index: drawn by index, not in turn,
        so a pass that is never scheduled costs no draw."""
        if self.td.choices is not None:       # a timed event's tie under a schedule: 0
            return 0
        self._n += 1
        z = (self._key + self._n * 0x9E3779B97F4A7C15) & _M64
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _M64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _M64
        return (z ^ (z >> 31)) >> 41

    def _at(self, t: float, ev=None):
        """``ev`` (a new event if None) triggered at simulated time ``t``."""
        env = self.env
        ev = ev if ev is not None else env.event()
        ev._ok, ev._value = True, None
        tie = self._tie()
        heappush(env._queue, (t, NORMAL, (tie << 40) | self._eid | (self._n & 0xFFFFFFF), ev))
        return ev

    # -- the loop ------------------------------------------------------------------------
    def run(self):
        v, td, kvm, env = self.v, self.td, self.kvm, self.env
        if self._dur is None:
            self._streams()
        while True:                                   # state zap_wait since a failed check
            if self.collapsed:
                self._c, self._ev = env.now, env.event()
                kvm.sleepers.append(self)
                yield self._ev                        # woken at the next boundary
                at_check = self._at_check
            else:
                yield self._at(env._now + self._dur(self._poll_us))
                at_check = False
            if not at_check:                          # one pass out: back in vcpu_run
                v.set_state("kvm")
                if td.stopped:
                    return False
                yield self._at(env._now + self._dur(self._entry_us))
            v.entering()
            if td.stopped or kvm.wait_for_sept_zap:
                v.failed_entry()
                if td.stopped:
                    return False
                v.set_state("zap_wait")
                continue
            return True

    def wake(self) -> None:
        """The flag cleared or the TD stopped (now): replay the passes that ended before,
        then trigger the sleeper's event at the next boundary."""
        self._replay(self.env._now)
        self._at(self._t, self._ev)
        self._ev = None

    def close(self, now: float) -> None:
        """The run ended at ``now`` with this vCPU asleep: account the passes before it."""
        self._replay(now)

    def _replay(self, until: float) -> None:
        """The passes whose boundaries fall before ``until``, as ``polled`` runs them: the
        same float sums, state times, entries and draws; leaves the next boundary ``_t``, a
        check (``_at_check``) or the end of a pass out."""
        v, dur, poll_us, entry_us = self.v, self._dur, self._poll_us, self._entry_us
        times, c = v.times, self._c
        bulk = isinstance(dur, Jitter) and poll_us and entry_us
        while True:
            if bulk:
                c = self._whole_passes(c, until)
            n = self._n
            m = c + dur(poll_us)
            if m >= until:
                self._c, self._t, self._at_check, self._n = c, m, False, n
                break
            times[v.state] += m - v._t                # set_state("kvm") at m
            v.state, v._t = "kvm", m
            c2 = m + dur(entry_us)
            n += 1                                    # the pass out's timeout
            if c2 >= until:
                self._t, self._at_check, self._n = c2, True, n
                break
            n += 1                                    # the entry's timeout
            v.entries += 1                            # entering(); failed_entry()
            v.tdv.irq_pending = False
            times["kvm"] += c2 - m                    # set_state("zap_wait") at c2
            v.state, v._t = "zap_wait", c2
            c, self._n = c2, n

    def _whole_passes(self, c: float, until: float) -> float:
        """The passes after a check at ``c`` that end before ``until``, as many as the
        jitter's drawn factors cover, at once: numpy's running sums add in the same order
        as one pass after another (``accumulate``, not a pairwise sum), so every boundary
        and state time is the same float. Returns the last check reached."""
        pairs = int((until - c) / (self._poll_us + self._entry_us) * 1.25) + 8
        if pairs < BULK_PASSES:          # a few passes: one at a time costs less
            return c
        f = self._dur.unused(2 * pairs)
        k = len(f) // 2
        if not k:
            return c
        d = np.array(f[:2 * k]) * np.tile((self._poll_us, self._entry_us), k)
        d = np.where(d > MIN_STEP_US, d, MIN_STEP_US)        # Jitter's floor
        b = np.add.accumulate(np.concatenate(((c,), d)))     # c, m1, c1, m2, c2, ...
        k = int(np.searchsorted(b[2::2], until))             # checks c_j before until
        if not k:
            return c
        v, times = self.v, self.v.times
        zap = np.concatenate(((times["zap_wait"],), b[1:2 * k:2] - b[0:2 * k - 1:2]))
        kvm = np.concatenate(((times["kvm"],), b[2:2 * k + 1:2] - b[1:2 * k:2]))
        times["zap_wait"] = float(np.add.accumulate(zap)[-1])
        times["kvm"] = float(np.add.accumulate(kvm)[-1])
        self._dur.used(2 * k)
        self._n += 2 * k
        v.entries += k
        v.tdv.irq_pending = False
        c = float(b[2 * k])
        v.state, v._t = "zap_wait", c
        return c

"""The speed-ups inside FairEnvironment keep SimPy's behaviour (issue 11): ``now`` follows
simulated time, interrupts reach a process, and durations are the seeded ones."""
import simpy

from workbench.model.clock import FairEnvironment, Jitter
from workbench.model.fastenum import members
from workbench.model.sept import State
from workbench.core.rng import stream


def test_now_follows_the_clock_through_run_until_and_interrupts():
    env, seen = FairEnvironment(1), []

    def sleeper():
        try:
            yield env.timeout(100)
        except simpy.Interrupt as i:
            seen.append((env.now, i.cause))
        yield env.timeout(1)
        seen.append(env.now)

    def waker(p):
        yield env.timeout(2.5)
        p.interrupt("kick")
    p = env.process(sleeper())
    env.process(waker(p))
    env.run(until=3)
    assert env.now == env._now == 3 and seen == [(2.5, "kick")]
    env.run()
    assert seen[-1] == 3.5 and env.now == env._now == 100    # as simpy.Environment


def test_jitter_draws_are_those_of_one_normal_per_call():
    import math
    j, rng = Jitter(0.3, stream(7, "x")), stream(7, "x")
    sigma = math.sqrt(math.log1p(0.09))
    z = rng.standard_normal(4096).tolist() + rng.standard_normal(4096).tolist()
    got = [j(2.0) for _ in range(5000)]
    assert got == [max(1e-6, 2.0 * math.exp(-sigma ** 2 / 2 + sigma * x)) for x in z[:5000]]


def test_fast_enum_members_are_the_same_objects():
    fast = members(State)
    assert all(getattr(fast, m.name) is m for m in State)

"""Layer 8: the notebook panel. Pick a scenario, policies (your own registered ones too),
the module's switches and replications, press Run: it calls ``workbench.compare`` and shows
the table and figures. Nothing runs while you move a control."""
from __future__ import annotations

import html

import ipywidgets as w
from IPython.display import display

from . import experiments, plots
from .config import ConfigError
from .policies import PRESETS, REGISTRY, PolicyError
from .scenarios import scenario_names


def policy_choices() -> list[str]:
    """Presets first, then every registered policy (yours included)."""
    return list(PRESETS) + sorted(n for n in REGISTRY if n not in PRESETS)


class ComparePanel(w.VBox):
    """``ComparePanel(scenario="malicious-accept", policies=("upstream", "zero-tolerance"))``"""

    def __init__(self, scenario: str = "malicious-accept",
                 policies=("upstream", "zero-tolerance"), reps: int = 2, seed: int = 1,
                 horizon_us: float | None = None):
        scenarios = scenario_names() + ([str(scenario)] if str(scenario) not in scenario_names() else [])
        self.scenario = w.Dropdown(options=scenarios, value=str(scenario), description="scenario")
        self.policies = w.SelectMultiple(options=policy_choices(), rows=8, description="policies")
        self._extra = tuple(p for p in policies if p not in self.policies.options)
        self.policies.options = policy_choices() + list(self._extra)   # specs like a+fault=b
        self.policies.value = tuple(policies)
        self.host_priority = w.Checkbox(value=True, description="HOST_PRIORITY")
        self.accept_locks = w.Checkbox(value=True, description="ACCEPT locks FREE entries")
        self.reps = w.BoundedIntText(value=reps, min=1, max=50, description="replications")
        self.seed = w.BoundedIntText(value=seed, min=0, max=2**31 - 1, description="seed")
        self.horizon = w.BoundedFloatText(value=horizon_us or 0.0, min=0.0, max=1e7, step=1000,
                                          description="horizon µs", tooltip="0: the scenario's")
        self.run_button = w.Button(description="Run", button_style="primary", icon="play")
        self.status = w.HTML()
        self.output = w.Output()
        self.result = None
        self.run_button.on_click(lambda _: self.run())
        for x, cls in ((self.run_button, "wb-run"), (self.status, "wb-status"),
                       (self.output, "wb-output"), (self.policies, "wb-policies")):
            x.add_class(cls)
        controls = w.HBox([w.VBox([self.scenario, self.reps, self.seed, self.horizon]),
                           self.policies,
                           w.VBox([self.host_priority, self.accept_locks, self.run_button])])
        super().__init__([controls, self.status, self.output])
        self.add_class("wb-compare-panel")

    def refresh(self) -> None:
        """Pick up policies registered since the panel was made."""
        chosen = self.policies.value
        self.policies.options = policy_choices() + list(self._extra)
        self.policies.value = tuple(p for p in chosen if p in self.policies.options)

    def sets(self) -> list[str]:
        sets = [f"module.host_priority={str(self.host_priority.value).lower()}",
                f"module.accept_locks_not_present={str(self.accept_locks.value).lower()}"]
        if self.horizon.value:
            sets.append(f"horizon_us={self.horizon.value}")
        return sets

    def run(self) -> None:
        if not self.policies.value:
            self.status.value = "<b>Choose at least one policy.</b>"
            return
        self.status.value = "running…"
        try:
            self.result = experiments.compare(self.scenario.value, list(self.policies.value),
                                              reps=self.reps.value, seed=self.seed.value,
                                              sets=self.sets())
        except (ConfigError, PolicyError) as err:
            self.status.value = f"<b>error:</b> {html.escape(str(err))}"
            return
        except Exception as err:       # e.g. a policy of your own that raises
            self.status.value = (f"<b>error:</b> {type(err).__name__}: "
                                 f"{html.escape(str(err))}")
            return
        self.status.value = (f"{self.scenario.value}: {len(self.policies.value)} policies × "
                             f"{self.reps.value} replications, common random numbers")
        self.output.clear_output()
        with self.output:
            display(self.result.table)
            display(plots.outcomes(self.result.table))
            op = "zap_4k" if (self.result.ops["op"] == "zap_4k").any() else "fault_wait"
            display(plots.latency_ecdf(self.result.ops, op))

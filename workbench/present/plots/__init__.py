"""Layer 7: figures. A DataFrame (or a ``Comparison``/``RunResult``) in, a plotly figure
out; nothing here runs a simulation. One theme and one colour per policy label, so every
figure of a report looks alike."""
from .race_trace import counterexample
from .dashboard import dashboard, main_op
from .export import save, save_all
from .paperfig import for_paper, save_paper
from .fairness import (STATES, breakdown_table, fairness, jain_interval, jain_stats,
                       time_breakdown)
from .latency import latency_ccdf, latency_ecdf, percentile_bars
from .outcomes import OUTCOME_COLUMNS, OUTCOMES, nonzero, outcomes
from .style import (DASHES, LABELS, PALETTE, PATTERNS, PRESET_COLORS, THEME, TIME_COLORS,
                    base_name, label,
                    policy_color, slot, title, unit, variant)
from .robustness import holds_chart, timing_label, tornado
from .sweeps import interval_lines, sweep_bands, sweep_lines
from .timeline import busy_timeline, run_timeline

__all__ = ["dashboard", "main_op", "save", "save_all", "for_paper", "save_paper", "STATES", "breakdown_table", "fairness",
           "jain_interval", "jain_stats", "time_breakdown", "latency_ccdf", "latency_ecdf",
           "percentile_bars", "OUTCOME_COLUMNS", "OUTCOMES", "nonzero", "outcomes", "DASHES",
           "LABELS", "PALETTE", "PATTERNS", "PRESET_COLORS", "TIME_COLORS", "base_name", "variant", "slot", "THEME", "label", "policy_color", "title",
           "unit", "interval_lines", "sweep_bands", "sweep_lines", "busy_timeline",
           "run_timeline", "counterexample", "holds_chart", "timing_label", "tornado"]

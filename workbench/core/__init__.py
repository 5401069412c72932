"""Layer 1, the core: plain values and safe input. Errors, TDX status codes, random streams,
the model's records, the safe YAML reader, validated configuration, budgets and limits,
scenario and calibration loading. Imports nothing else of the workbench."""

"""Layer 5, analysis across many runs: does a conclusion survive the guessed timings
(``robustness``), and the model against published measurements (``validation``).
Imports the layers below it."""

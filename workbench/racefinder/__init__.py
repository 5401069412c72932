"""Layer 5, the race finder: the schedule of a small TD as data (``schedule``), searched for
one that fails an oracle (``explore``, ``oracles``), shrunk (``shrink``) and saved as a replay
file (``replay``). Imports the layers below it."""

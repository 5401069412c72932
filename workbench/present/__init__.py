"""Layer 6, presentation: figures (``plots``), the notebook panel (``widgets``), the paper's
figures and tables (``paper``) and Chrome traces of one run (``trace``). Imports the layers
below it; nothing below imports it."""

"""Layer 4, experiments: one run, replications and comparisons (``comparison``), the tables a
run yields (``metrics``), experiment designs (``designs``), where runs execute (``engines``),
the results store (``store``, ``runner``) and statistics across replications (``stats``).
Imports the core, the policies and the model."""

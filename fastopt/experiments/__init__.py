"""Experiments behind the ``fastopt`` command: each module builds its results, CSV files and
figures from plain functions (usable from Python and tests) and registers one subcommand.

- ``surfaces``: 2-D test functions with analytic gradients (textbook bowl, Rosenbrock, ...).
- ``paths``: optimizer trajectories on those surfaces (``fastopt paths``).
- ``weight_init``: activation histograms and training curves per weight initialisation
  (``fastopt init``).

Shared run plumbing (output folder, settings.json, figures) lives in ``fastopt.runs``.
Importing this package loads neither numba nor matplotlib.
"""

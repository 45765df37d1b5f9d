"""Experiments behind the ``fastopt`` command: each module builds its results, CSV files and
figures from plain functions (usable from Python and tests) and registers one subcommand.

- ``surfaces``: 2-D test functions with analytic gradients (textbook bowl, Rosenbrock, ...).
- ``paths``: optimizer trajectories on those surfaces (``fastopt paths``).
- ``weight_init``: activation histograms and training curves per weight initialisation
  (``fastopt init``).
- ``compare``: one MLP trained with several optimizers, batch sizes and seeds on a real data
  set; histories, summary table, loss/accuracy versus time and steps (``fastopt compare``).
- ``landscape``: full-batch GD vs mini-batch SGD paths on a two-parameter loss with local
  minima (``fastopt landscape``).
- ``batchnorm``: the textbook's batch-norm experiment, training accuracy per epoch with
  and without batch norm over 16 weight scales (``fastopt batchnorm``).
- ``sensitivity``: final loss/accuracy of each optimizer over a log grid of learning rates
  (``fastopt sensitivity``).
- ``fastopt sweep`` is not here: hyperparameter sweeps are the package ``fastopt.sweep``, a
  layer above this one (it uses ``training``; nothing here imports it).
- ``optspec``: the ``--optimizers NAME[:key=value,...]`` syntax; ``training``: what compare
  and sensitivity share (the catalogue's presets for the MLP, one run that survives
  divergence, runs taking turns); ``plots``: drawing conventions the compare and
  sensitivity figures share; ``verdict``: who reaches the target first and whether the
  margin exceeds the spread over seeds; ``load``: how busy the machine was during a run;
  ``textbook``: ``fastopt compare --textbook``, the textbook's optimizer comparison.

Shared run plumbing (the command frame: output folder, settings.json, figures) lives in
``fastopt.runs``; tables and CSV files in ``fastopt.tables``.
Importing this package loads neither numba nor matplotlib.
"""

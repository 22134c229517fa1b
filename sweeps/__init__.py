"""hybridlab ``sweeps``: running trials.

Structured configs, data and synthetic tasks (``sweeps.data``), the training loop, the Ray Tune
runner, MLflow tracking and the ``hybridlab`` command line. Layout and names follow
``docs/design.md``; Ray, Optuna and MLflow are imported lazily by the modules that need them.
"""

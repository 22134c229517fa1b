"""What a sweep searches: Optuna define-by-run spaces, layout generators, constraints, budgets, presets."""

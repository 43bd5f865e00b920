"""facegender's commands and their libraries.

A module directly in stages/ is a command (`python -m stages.<name>`): the DVC stages, predict, plan,
plots_template. What commands import lives in the subpackages, grouped by concern.
"""

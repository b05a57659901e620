"""The Python API: `evaluate(cases, saes=None, model=None, **options) -> Results`, for notebooks, scripts and
training loops; importable without pytest (`evaluate`), reading its outcome without pytest (`results`).

It drives the same `run` session as the pytest plugin (the same plans, the same `run_plan`, the same reports),
so one set of inputs gives one JSON document either way.

May import: `run`, `report`, `baselines`, `checks`, `compute`, `cases`, `common`. Imported by: the package's
top level (`interp_tests.evaluate`, lazily).
"""

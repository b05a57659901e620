"""One run of case files, without pytest: the options of a run and their strict parsers (`options`), the
session that loads each model and SAE once, builds one engine per target and hands out results
(`session`). The pytest plugin and the Python API drive the same session.

May import: `report`, `baselines`, `checks`, `compute`, `cases`, `common`. Imported by: `pytest_plugin`,
`explore` and the package's public API.
"""

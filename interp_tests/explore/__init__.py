"""The `interp-tests` command line (`cli`) and what it computes: inspect texts and read a feature's card
(`inspection`), draft a case file from positive and negative texts (`draft`).

May import: every room below it (`run`, `report`, `checks`, `compute`, `cases`, `common`); never
`pytest_plugin`. Imported by: `interp_tests.__main__` and the console script.
"""

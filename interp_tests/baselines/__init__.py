"""The baseline protocol, one owner (`protocol`): record a reference's observed values, compare a candidate
with them under per-kind tolerances, stale entries, the atomic write after a complete run.

May import: `checks`, `compute`, `cases`, `common`. Imported by: `report`, `run` and the rooms above.
"""

"""Claims to verdicts: one module per family of checks (`feature_checks`, `recon_checks`, `steering_checks`,
`identity_checks`), what a check sees (`context`: its case, the engine, the feature resolver), the table that
maps each check name to its function (`dispatch`), the `Verdict` every check returns (`verdict`), and one
case run against one SAE (`runner`: `run_case` -> `CaseResult`).

A new check kind: its parameters in `cases/schema.py`, its function in the family module, one line in
`dispatch.CHECKS`. May import: `compute`, `cases`, `common`. Imported by: `baselines` and the rooms above it.
"""

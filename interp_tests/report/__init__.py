"""What a person reads: one case's failure text (`text`), JUnit properties (`junit`), the terminal summary and
the run's result store (`summary`), Markdown (`markdown`), the self-contained HTML report (`html`) and its
plots (`plots`). Reports render finished results (plain JSON-able data); they compute nothing.

May import: `baselines`, `checks`, `compute` (no heavy work), `cases`, `common`. Imported by: `run` and above.
"""

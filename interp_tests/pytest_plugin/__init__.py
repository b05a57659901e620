"""The pytest layer, translation only: hooks and options (`hooks`, the pytest11 entry point), the case-file
collector and its items (`items`), and xdist's loadgroup scheduling by model (`scheduling`). It declares and
wires; everything it runs lives in the rooms below and works without pytest.

May import: every room below it. Imported by: pytest (entry point `interp_tests`), nothing in this package.
"""

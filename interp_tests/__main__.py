"""`python -m interp_tests ...` runs the `interp-tests` command line."""

from __future__ import annotations

from .explore.cli import main

raise SystemExit(main())

"""Print the benchmarks of pytest-benchmark JSON files as one markdown table (for docs/benchmarks.md).

    python scripts/bench_table.py OUT/bench-cuda-float32.json OUT/bench-cuda-bfloat16.json
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from interp_tests.benchmarks.markdown import markdown_table


def main(paths: list[str]) -> int:
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    runs = []
    for p in paths:
        try:
            runs.append(json.loads(Path(p).read_text()))
        except (OSError, ValueError) as exc:
            print(f"bench_table: cannot read {p}: {exc}", file=sys.stderr)
            return 2
    print(markdown_table(runs))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

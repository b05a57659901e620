"""Where a path the driver named lies on this node. No pytest here.

On a Ray worker (--interp-ray), the local checkpoints and corpus files the driver shipped are written under a
directory of the node, mirroring their absolute paths; `on_this_node` maps a path the case files or the
command line named to its copy there. Everywhere else (a local run, a path that was not shipped) a path is
itself. Labels, baselines and reports keep the path as the driver named it.
"""

from __future__ import annotations

import os
from pathlib import Path

SHIPPED: dict[str, str] = {}  # a path the driver named (absolute) -> its copy on this node


def on_this_node(path: str | os.PathLike[str]) -> Path:
    text = os.fspath(path)
    for original, copy in SHIPPED.items():
        if text == original or text.startswith(original.rstrip(os.sep) + os.sep):
            return Path(copy + text[len(original):])
    return Path(text)

"""Test-session setup for the plugin's own tests."""

from __future__ import annotations

import importlib
import os
import pkgutil
import warnings

# pytester's in-process runs restore sys.modules afterwards, dropping modules first imported inside a run;
# re-importing torch's C extensions in the same process then crashes. Import them once, up front.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import ruamel.yaml.composer  # noqa: F401  (yaml_source caches classes built on these: keep one copy)
    import ruamel.yaml.constructor  # noqa: F401
    import ruamel.yaml.error  # noqa: F401
    import ruamel.yaml.events  # noqa: F401
    import ruamel.yaml.nodes  # noqa: F401
    import ruamel.yaml.scanner  # noqa: F401
    import sae_lens  # noqa: F401
    import torch  # noqa: F401
    import transformer_lens  # noqa: F401

# The same for this project's modules: one imported first inside an in-process run would be dropped after it,
# and the next run would import a second copy, so a test that patches the first would patch a stale module.
import interp_tests  # noqa: E402

for _module in pkgutil.iter_modules(interp_tests.__path__, "interp_tests."):
    if _module.name not in ("interp_tests.__main__", "interp_tests.benchmarks"):  # `python -m` runs the CLI; benchmarks: pytest-benchmark's
        importlib.import_module(_module.name)

# Under xdist (`pytest -n 2`) each worker is a process of its own: one torch thread each, so that two
# workers on two cores do not spin-wait for each other's OpenMP threads (the subprocesses a test starts
# inherit the setting through OMP_NUM_THREADS).
if os.environ.get("PYTEST_XDIST_WORKER"):
    os.environ["OMP_NUM_THREADS"] = "1"
    torch.set_num_threads(1)

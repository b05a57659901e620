"""Test-session setup for the plugin's own tests."""

from __future__ import annotations

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

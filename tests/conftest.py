"""Test-session setup for the plugin's own tests."""

from __future__ import annotations

import warnings

# pytester's in-process runs restore sys.modules afterwards, dropping modules first imported inside a run;
# re-importing torch's C extensions in the same process then crashes. Import them once, up front.
with warnings.catch_warnings():
    warnings.simplefilter("ignore")
    import sae_lens  # noqa: F401
    import torch  # noqa: F401
    import transformer_lens  # noqa: F401

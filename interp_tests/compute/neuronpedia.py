"""Neuronpedia links for SAE features, from the SAELens registry entry's `neuronpedia_id` per SAE id.

`gpt2-small-res-jb` / `blocks.8.hook_resid_pre` has the id `gpt2-small/8-res-jb`, so its feature 1234 is
`https://neuronpedia.org/gpt2-small/8-res-jb/1234`. Bundled releases and local SAE directories have no
entry, hence no link. The registry is passed in (`directory=`) by tests; by default it is SAELens's own
`get_pretrained_saes_directory()`, imported only when a lookup needs it.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .registry import BUNDLED_RELEASES

BASE_URL = "https://neuronpedia.org"


def _directory() -> Mapping[str, Any]:
    from sae_lens.loading.pretrained_saes_directory import get_pretrained_saes_directory

    return get_pretrained_saes_directory()


def neuronpedia_id(release: str | None, sae_id: str | None, directory: Mapping[str, Any] | None = None) -> str | None:
    """The Neuronpedia id (`model/source`) that the registry entry of `release` gives `sae_id`, or None."""
    if release is None or sae_id is None or release in BUNDLED_RELEASES:
        return None
    entry = (directory if directory is not None else _directory()).get(release)
    ids = getattr(entry, "neuronpedia_id", None) or {}
    found = ids.get(sae_id)
    return str(found) if found else None


def neuronpedia_url(release: str | None, sae_id: str | None, feature: int, directory: Mapping[str, Any] | None = None) -> str | None:
    """`https://neuronpedia.org/<neuronpedia id>/<feature>`, or None where the entry has no Neuronpedia id."""
    np_id = neuronpedia_id(release, sae_id, directory)
    return feature_url(np_id, feature)


def feature_url(np_id: str | None, feature: int) -> str | None:
    """The URL of `feature` under a known Neuronpedia id (None stays None)."""
    return None if np_id is None else f"{BASE_URL}/{np_id.strip('/')}/{int(feature)}"

"""Tensors in, numbers out: loading models and SAEs once (`registry`), the batched stopped forward and the
encode (`engine`), the bundled pair in plain torch (`bundled_forward`), corpora (`corpus`) and their streamed
passes (`corpus_pass`, `corpus_stats`), the metric definitions (`metrics`), feature matching across
checkpoints (`matching`), steering hooks and generation (`steering`), Neuronpedia ids (`neuronpedia`).

No verdicts, no reports, no pytest. torch, TransformerLens and SAELens are imported inside the functions
that need them. May import: `cases`, `common`. Imported by: `checks` and the rooms above it.
"""

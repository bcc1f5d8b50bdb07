"""Pretraining room: makes the backbone that ships with the package (`hf_vit_adapter.PRETRAINED_BACKBONE`).

Not part of the importable library: it imports transformers and the fractal generator, and only its product, a small
model folder, goes into the package. See `pretraining/README.md`.
"""

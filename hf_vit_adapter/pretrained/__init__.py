"""Model folders that ship with the package.

`PRETRAINED_BACKBONE`: a tiny ViT (32x32 px, patch 4) pretrained offline on formula-generated fractals by
`pretraining/pretrain.py`, so that adapters can be tried on a pretrained backbone without downloading anything.
Its `README.md` and `pretraining.json` say how it was made and how well it learned.
"""

from pathlib import Path

PRETRAINED_BACKBONE = str(Path(__file__).resolve().parent / "fractal-vit-tiny")

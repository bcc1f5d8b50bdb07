"""`python -m hf_vit_adapter.convert SOURCE OUTPUT_DIR`, the same as `hf-vit-adapter-convert`."""

from .cli import main

main()

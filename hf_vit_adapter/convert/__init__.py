"""Converters from other libraries' adapter checkpoints to hf_vit_adapter adapters, one module per source library.

    from hf_vit_adapter.convert import convert_adapterhub
    convert_adapterhub("path/or/hub-id-of-an-adapterhub-adapter", "my-adapter")

They import the method and write with its `save_pretrained`; they know nothing of training.
"""

from .adapterhub import convert_adapterhub
from .errors import ConversionError, ConversionWarning

__all__ = ["ConversionError", "ConversionWarning", "convert_adapterhub"]

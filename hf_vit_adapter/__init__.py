"""Bottleneck adapters (Houlsby et al., 2019) for vision transformers, as a PEFT method.

Importing this package registers the method with PEFT, so `get_peft_model(model, AdapterConfig(...))`,
`PeftModel.from_pretrained(...)` and transformers' adapter loading (`pipeline(model=adapter_dir)`) know it, and makes
every one of those load paths strict (see `loading.py`).
"""

from peft.utils import register_peft_method

from . import loading
from .config import FORMAT_VERSION, PLACEMENTS, SCALING_MODES, AdapterConfig
from .layer import AdapterLayer, AdapterWrapper
from .model import AdapterModel
from .peft_type import BOTTLENECK_PEFT_TYPE, METHOD_NAME
from .pretrained import PRETRAINED_BACKBONE
from .sites import BLOCK_SITES, SCALE_PARAMETER_NAME, Site, adapter_sites

__version__ = "0.1.0"

__all__ = [
    "BLOCK_SITES",
    "BOTTLENECK_PEFT_TYPE",
    "FORMAT_VERSION",
    "PLACEMENTS",
    "PRETRAINED_BACKBONE",
    "SCALE_PARAMETER_NAME",
    "SCALING_MODES",
    "AdapterConfig",
    "AdapterLayer",
    "AdapterModel",
    "AdapterWrapper",
    "Site",
    "__version__",
    "adapter_sites",
]

register_peft_method(name=METHOD_NAME, config_cls=AdapterConfig, model_cls=AdapterModel, prefix=AdapterModel.prefix)
loading.install()

"""Bottleneck adapters (Houlsby et al., 2019) for vision transformers, as a PEFT method.

Importing this package registers the method with PEFT, so `get_peft_model(model, AdapterConfig(...))`,
`PeftModel.from_pretrained(...)` and transformers' adapter loading (`pipeline(model=adapter_dir)`) know it.
"""

from peft.utils import register_peft_method

from .config import PLACEMENTS, AdapterConfig
from .layer import AdapterLayer, AdapterWrapper
from .model import AdapterModel
from .peft_type import BOTTLENECK_PEFT_TYPE, METHOD_NAME
from .pretrained import PRETRAINED_BACKBONE

__version__ = "0.1.0"

__all__ = [
    "BOTTLENECK_PEFT_TYPE",
    "PLACEMENTS",
    "PRETRAINED_BACKBONE",
    "AdapterConfig",
    "AdapterLayer",
    "AdapterModel",
    "AdapterWrapper",
    "__version__",
]

register_peft_method(name=METHOD_NAME, config_cls=AdapterConfig, model_cls=AdapterModel, prefix=AdapterModel.prefix)

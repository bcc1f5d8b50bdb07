"""How the adapters in this folder were made: run with hf-vit-adapter 0.1.0 (git main at bab5b06) on the path.

    cd tests/data/adapters_0_1_0 && PYTHONPATH=/path/to/0.1.0/checkout python make_fixtures.py

It saves a tiny ViT base (`base/`), one adapter per case with random (non-identity) weights and a 3-class head, and
`expected.json`: each adapter's logits on `pixel_values()` of `tests/tiny_models.py`, computed by 0.1.0.
"""

import json
import sys
from pathlib import Path

import torch
from peft import get_peft_model

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))
from tiny_models import pixel_values, tiny_vit  # noqa: E402
from transformers import ViTForImageClassification  # noqa: E402

import hf_vit_adapter  # noqa: E402
from hf_vit_adapter import AdapterConfig  # noqa: E402

CASES = {
    "houlsby": AdapterConfig(bottleneck_size=4, placement="houlsby"),
    "pfeiffer": AdapterConfig(bottleneck_size=4, placement="pfeiffer", non_linearity="relu", scaling=0.5),
    "parallel": AdapterConfig(bottleneck_size=4, placement="parallel", scaling=2.0),
    "explicit_fc2": AdapterConfig(bottleneck_size=4, placement="ffn", target_modules=["fc2"]),
}

here = Path(__file__).parent
tiny_vit(num_labels=3).save_pretrained(here / "base")
expected = {"hf_vit_adapter_version": hf_vit_adapter.__version__}
for seed, (name, config) in enumerate(CASES.items()):
    model = get_peft_model(ViTForImageClassification.from_pretrained(here / "base"), config)
    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for parameter in model.parameters():
            if parameter.requires_grad:
                parameter.copy_(torch.randn(parameter.shape, generator=generator) * 0.3)
    model.peft_config["default"].base_model_name_or_path = "base"
    model.save_pretrained(here / name)
    with torch.no_grad():
        expected[name] = model.eval()(pixel_values=pixel_values()).logits.tolist()
(here / "expected.json").write_text(json.dumps(expected, indent=1) + "\n")

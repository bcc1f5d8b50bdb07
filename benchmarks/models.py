"""The models the benchmark compares: architectures built from configs (no download) and the ways to tune them."""

from __future__ import annotations

import copy
from collections.abc import Callable
from dataclasses import dataclass

import torch
from peft import LoraConfig, get_peft_model
from torch import nn
from transformers import (
    CLIPConfig,
    CLIPForImageClassification,
    CLIPVisionConfig,
    PretrainedConfig,
    PreTrainedModel,
    ViTConfig,
    ViTForImageClassification,
)

import hf_vit_adapter  # noqa: F401  (registers the method with PEFT)
from hf_vit_adapter import AdapterConfig

NUM_LABELS = 100  # a CIFAR-100-sized head, the same for every method
HEAD_NAME = "classifier"


@dataclass(frozen=True)
class Architecture:
    """A backbone as a config, so the benchmark needs no network and no checkpoint."""

    key: str
    label: str
    model_cls: type[PreTrainedModel]
    make_config: Callable[[], PretrainedConfig]

    def config(self) -> PretrainedConfig:
        return self.make_config()

    def vision_config(self) -> PretrainedConfig:
        config = self.config()
        return getattr(config, "vision_config", config)


def _vit_b16() -> ViTConfig:
    return ViTConfig(num_labels=NUM_LABELS)  # defaults: hidden 768, 12 layers, 12 heads, 224 px, patch 16


def _clip_l14() -> CLIPConfig:
    vision = CLIPVisionConfig(
        hidden_size=1024,
        intermediate_size=4096,
        num_hidden_layers=24,
        num_attention_heads=16,
        patch_size=14,
        image_size=224,
    )
    # CLIPForImageClassification builds only the vision tower; the text config is never instantiated as a model.
    return CLIPConfig(vision_config=vision.to_dict(), num_labels=NUM_LABELS)


def _tiny_vit() -> ViTConfig:
    return ViTConfig(
        hidden_size=64,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=128,
        image_size=32,
        patch_size=8,
        num_labels=NUM_LABELS,
    )


ARCHITECTURES: dict[str, Architecture] = {
    "vit-b16": Architecture(
        "vit-b16", "ViT-B/16 (google/vit-base-patch16-224-in21k architecture)", ViTForImageClassification, _vit_b16
    ),
    "clip-l14": Architecture(
        "clip-l14", "CLIP ViT-L/14 vision tower (openai/clip-vit-large-patch14)", CLIPForImageClassification, _clip_l14
    ),
    "tiny-vit": Architecture(
        "tiny-vit", "tiny ViT (2 layers, width 64, 32 px; --quick only)", ViTForImageClassification, _tiny_vit
    ),
}


@dataclass(frozen=True)
class Method:
    """How a model is tuned: `base` (untouched, inference only), `full`, `adapter` or `lora`."""

    kind: str
    size: int | None = None  # bottleneck width of an adapter, rank of LoRA
    placement: str | None = None  # adapters only

    @property
    def name(self) -> str:
        if self.kind == "adapter":
            return f"adapter {self.placement} b{self.size}"
        if self.kind == "lora":
            return f"LoRA r{self.size} (q,v)"
        return {"base": "base", "full": "full fine-tuning"}[self.kind]


BASE = Method("base")
FULL = Method("full")


def lora(rank: int = 8) -> Method:
    return Method("lora", size=rank)


def adapter(placement: str, bottleneck: int) -> Method:
    return Method("adapter", size=bottleneck, placement=placement)


def build_base(arch: Architecture, device: str | torch.device, dtype: torch.dtype, seed: int = 0) -> PreTrainedModel:
    """The untuned model in `dtype` on `device`, with seeded random weights (no download)."""
    torch.manual_seed(seed)
    with torch.device(device):
        model = arch.model_cls(arch.config())
    return model.to(dtype=dtype)


def share_weights(base: PreTrainedModel, arch: Architecture) -> PreTrainedModel:
    """A second copy of `base` whose parameters and buffers are the base's tensors, not copies.

    Methods that freeze the backbone (adapter, LoRA) never write to it, so a dozen variants fit in memory at the
    cost of one: a CLIP ViT-L/14 is 1.2 GB in float32. New `nn.Parameter` objects keep `requires_grad` per variant.
    """
    with torch.device("meta"):
        clone = arch.model_cls(arch.config())
    for (name, module), (clone_name, clone_module) in zip(base.named_modules(), clone.named_modules(), strict=True):
        assert name == clone_name, (name, clone_name)
        for key, parameter in module._parameters.items():
            if parameter is not None:
                clone_module._parameters[key] = nn.Parameter(parameter.detach(), requires_grad=True)
        for key, buffer in module._buffers.items():
            if buffer is not None:
                clone_module._buffers[key] = buffer
    return clone


def apply_method(model: PreTrainedModel, arch: Architecture, method: Method) -> nn.Module:
    """Turn `model` into the tuned model of `method`; every method trains the classification head too."""
    if method.kind in ("base", "full"):
        return model.requires_grad_(True)
    if method.kind == "adapter":
        return get_peft_model(model, AdapterConfig(bottleneck_size=method.size, placement=method.placement))
    if method.kind == "lora":
        config = LoraConfig(
            r=method.size,
            lora_alpha=2 * method.size,
            target_modules=["q_proj", "v_proj"],  # ViT: attention.q_proj/v_proj; CLIP: self_attn.q_proj/v_proj
            modules_to_save=[HEAD_NAME],
        )
        return get_peft_model(model, config)
    raise ValueError(f"Unknown method {method.kind!r}.")


def build_variant(base: PreTrainedModel, arch: Architecture, method: Method) -> nn.Module:
    """The model of `method` on the weights of `base`: shared when frozen, an own copy for full fine-tuning."""
    model = copy.deepcopy(base) if method.kind == "full" else share_weights(base, arch)
    return apply_method(model, arch, method)


def build_on_meta(arch: Architecture, method: Method) -> nn.Module:
    """The model of `method` with no storage, for counting FLOPs and parameters instantly."""
    with torch.device("meta"):
        return apply_method(arch.model_cls(arch.config()), arch, method)


def count_parameters(model: nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts; a parameter shared by two modules counts once."""
    unique = {id(p): p for p in model.parameters()}.values()
    return sum(p.numel() for p in unique if p.requires_grad), sum(p.numel() for p in unique)


def head_parameters(arch: Architecture) -> int:
    hidden = arch.vision_config().hidden_size
    return hidden * NUM_LABELS + NUM_LABELS

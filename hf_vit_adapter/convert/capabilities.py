"""What the installed method can express, found by building a tiny adapted model rather than trusting names.

A converter must refuse what the method cannot hold exactly. These probes keep the converter right as the method
gains options: `scaling="channel"`/`"learned"` (a trainable scale), `drop_path`, and `placement="parallel"` in
AdaptFormer's form (the adapter reads the residual stream before the FFN LayerNorm).
"""

from __future__ import annotations

import dataclasses
import functools

import torch
from peft import get_peft_model
from transformers import ViTConfig, ViTModel

from ..config import AdapterConfig
from .sites import adapter_sites

_WIDTH = 4


def _tiny_adapted_vit(**options) -> tuple[torch.nn.Module, dict]:
    torch.manual_seed(0)
    config = ViTConfig(
        hidden_size=_WIDTH,
        num_hidden_layers=1,
        num_attention_heads=1,
        intermediate_size=_WIDTH,
        image_size=4,
        patch_size=2,
    )
    model = get_peft_model(ViTModel(config).eval(), AdapterConfig(bottleneck_size=1, init_weights=False, **options))
    return model, adapter_sites(model, "default")


def _pixels() -> torch.Tensor:
    return torch.randn(1, 3, 4, 4, generator=torch.Generator().manual_seed(0))


@functools.cache
def supports_scaling(kind: str) -> bool:
    """Whether `AdapterConfig(scaling=kind)` builds an adapter that runs and holds a trainable scale of the right
    size (`"learned"`: one value, `"channel"`: one per channel)."""
    try:
        model, sites = _tiny_adapted_vit(placement="pfeiffer", scaling=kind)
        with torch.no_grad():
            model(pixel_values=_pixels())
    except (TypeError, ValueError, RuntimeError):
        return False
    scale = sites[(0, "block_output")].scale
    return isinstance(scale, torch.Tensor) and scale.numel() == (_WIDTH if kind == "channel" else 1)


@functools.cache
def supports_drop_path() -> bool:
    """Whether adapters have stochastic depth (`AdapterConfig(drop_path=...)`)."""
    return "drop_path" in {field.name for field in dataclasses.fields(AdapterConfig)}


@functools.cache
def parallel_reads_residual_stream() -> bool:
    """Whether `placement="parallel"` is AdaptFormer's `x1 + FFN(LN(x1)) + s * A(x1)`: its down-projection must see
    exactly what the FFN LayerNorm sees as input (`x1`), not that LayerNorm's output."""
    model, sites = _tiny_adapted_vit(placement="parallel")
    seen: dict[str, torch.Tensor] = {}
    layer_norm = next(module for name, module in model.named_modules() if name.endswith("layernorm_after"))
    handles = [
        layer_norm.register_forward_pre_hook(lambda module, args: seen.__setitem__("x1", args[0])),
        sites[(0, "ffn_parallel")].down.register_forward_pre_hook(
            lambda module, args: seen.__setitem__("adapter", args[0])
        ),
    ]
    try:
        with torch.no_grad():
            model(pixel_values=_pixels())
    finally:
        for handle in handles:
            handle.remove()
    return torch.equal(seen["x1"], seen["adapter"])

"""Stochastic depth (drop-path) on a frozen backbone's residual branches, as Adapter+ trains with it.

transformers' ViT, DeiT and CLIP blocks have no drop-path, and DINOv2's `drop_path_rate` gives every block the same
rate, fixed when the model is built, rather than timm's rule that Adapter+ uses. `add_backbone_drop_path(model, rate)`
puts a forward hook on the attention and MLP modules of each block, whose outputs are the two branches the block adds
to its residual stream. Block `i` of `n` drops each branch with probability `rate * i / (n - 1)` (timm's
`drop_path_rate`: 0 for the first block, `rate` for the last), for each sample on its own, and divides the kept
samples by the keep probability. In eval the hooks change nothing, so the model computes exactly what it computes
without them. Layer scales (DINOv2, BEiT, Data2Vec-vision) and hidden dropout act on the branch after the hooked
module; they multiply elementwise, so dropping before them is the same as dropping after them.

Adapters (any order of `add_backbone_drop_path` and `get_peft_model` gives the same model):
- adapters inside a branch module are dropped with the branch: houlsby's two (on the attention output projection and
  on fc2) and `ffn`'s. (visinf/adapter_plus's `forward_houlsby` drops the branch before its adapter reads it instead.)
- adapters on the residual stream are never dropped: `pfeiffer` (Adapter+: the block output, after the residual add)
  and `parallel` (added beside the FFN branch by the block's adapter layer), as in Adapter+ and AdaptFormer.
- adapters that add to a branch module's own output (`parallel_ln`, or `target_modules` naming the branch module)
  are not dropped: the hook works on the module's output before they add to it (it is registered first).
"""

from __future__ import annotations

import re
from numbers import Real

import torch
from peft.tuners.tuners_utils import BaseTunerLayer
from torch import nn

from .targets import BLOCK_LAYOUTS

# Per model type: the modules of a block whose outputs are its attention branch and its MLP branch.
BRANCHES: dict[str, tuple[str, str]] = {
    "vit": ("attention", "mlp"),
    "deit": ("attention", "mlp"),
    "beit": ("attention", "mlp"),
    "dinov2": ("attention", "mlp"),
    "data2vec-vision": ("attention", "output"),
    "clip": ("self_attn", "mlp"),
    "clip_vision_model": ("self_attn", "mlp"),
    "siglip": ("self_attn", "mlp"),
    "siglip_vision_model": ("self_attn", "mlp"),
}
_WINDOWED = ("swin", "swinv2")


def drop_path(hidden: torch.Tensor, probability: float) -> torch.Tensor:
    """Zero each sample's `hidden` with `probability` and scale the kept ones by `1 / (1 - probability)`."""
    keep = 1.0 - probability
    mask = hidden.new_empty((hidden.shape[0],) + (1,) * (hidden.ndim - 1)).bernoulli_(keep)
    return hidden * mask / keep


class BranchDropPath:
    """Forward hook on a branch module: per-sample drop-path on its output (the hidden state of a tuple), in
    training only."""

    def __init__(self, rate: float) -> None:
        self.rate = rate

    def __call__(self, module: nn.Module, args: tuple, output: torch.Tensor | tuple) -> torch.Tensor | tuple | None:
        if not module.training:
            return None
        if isinstance(output, tuple):
            return (drop_path(output[0], self.rate), *output[1:])
        return drop_path(output, self.rate)

    def __repr__(self) -> str:
        return f"BranchDropPath(rate={self.rate})"


def add_backbone_drop_path(model: nn.Module, rate: float) -> list[float]:
    """Give `model`'s transformer blocks stochastic depth rising linearly from 0 to `rate`; return each block's rate.

    `model` is a transformers model of a known type (see `BRANCHES`), with or without adapters (a `PeftModel` too).
    A second call replaces the first one's rates; `rate=0` removes them.
    """
    if isinstance(rate, bool) or not isinstance(rate, Real) or not 0.0 <= rate < 1.0:
        raise ValueError(f"The backbone drop-path rate must be a number in [0, 1), got {rate!r}.")
    model_type = getattr(getattr(model, "config", None), "model_type", None)
    blocks = _blocks(model, model_type)
    rates = [float(rate) * index / max(len(blocks) - 1, 1) for index in range(len(blocks))]
    for block, block_rate in zip(blocks, rates, strict=True):
        for path in BRANCHES[model_type]:
            branch = _unwrapped(block.get_submodule(path))
            _remove_hooks(branch)
            if block_rate > 0:
                branch.register_forward_hook(BranchDropPath(block_rate), prepend=True)
    return rates


def _blocks(model: nn.Module, model_type: str | None) -> list[nn.Module]:
    if model_type in _WINDOWED:
        raise ValueError(
            f"Backbone drop-path is not available for {model_type}: its attention runs on windows of the image, so "
            "no module outputs one whole attention branch per sample. Set `drop_path_rate` in its config instead "
            "(transformers drops its attention branch with it)."
        )
    if model_type not in BRANCHES:
        raise ValueError(
            f"Backbone drop-path does not know the blocks of a model of type {model_type!r}; it knows "
            f"{', '.join(sorted(BRANCHES))}."
        )
    pattern = BLOCK_LAYOUTS[model_type].blocks
    blocks = [_unwrapped(module) for name, module in model.named_modules() if re.fullmatch(pattern, name)]
    for block in blocks:
        built_in = [module for module in block.modules() if getattr(module, "drop_prob", 0.0) > 0]
        if built_in:
            raise ValueError(
                f"This {model_type} model already drops paths (drop probability {built_in[0].drop_prob:g} in its "
                "blocks, from `drop_path_rate` in its config); load it with `drop_path_rate=0.0` to use backbone "
                "drop-path, or keep its own."
            )
    return blocks


def _unwrapped(module: nn.Module) -> nn.Module:
    """The module itself, or the original module inside an adapter layer."""
    return module.get_base_layer() if isinstance(module, BaseTunerLayer) else module


def _remove_hooks(module: nn.Module) -> None:
    for key in [key for key, hook in module._forward_hooks.items() if isinstance(hook, BranchDropPath)]:
        del module._forward_hooks[key]

"""Where the transformer blocks of the ViT-family models we know are, and where each adapter site sits inside one.

`target_modules=None` resolves to the blocks themselves: every adapter of every placement lives in one tuner layer per
block (see `layer.py`), so adapters of different placements never wrap one another. The paths below are relative to a
block and use transformers >= 5.9 names (Data2Vec-vision and Swinv2 kept the older `attention.output.dense` names).
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class BlockLayout:
    """The blocks of a model family and the modules inside one block that the adapter sites hook onto."""

    blocks: str  # regex of the block modules' full names, e.g. `vit.layers.3`
    attention_output: str  # the attention output projection (houlsby's first site)
    ffn_output: str  # the FFN output projection, fc2 (houlsby's second site, ffn)
    ffn_stream: str  # its input is the residual stream that enters the FFN sub-block (parallel reads it)
    ffn_input: str  # its input is the FFN's own input, after a pre-FFN LayerNorm (parallel_ln reads it)
    ffn_result: str  # its output is the FFN's output (parallel_ln adds to it)


# `(?:.*\.)?` lets one pattern match a bare backbone (`ViTModel`) and a model with a head (`ViTForImageClassification`)
_VIT = BlockLayout(r"(?:.*\.)?layers\.\d+", "attention.o_proj", "mlp.fc2", "layernorm_after", "mlp", "mlp")
_DINOV2 = BlockLayout(r"(?:.*\.)?encoder\.layer\.\d+", "attention.o_proj", "mlp.fc2", "norm2", "mlp", "mlp")
# CLIP and SigLIP: the vision tower's blocks only, also in a full `CLIPModel` / `SiglipModel` with a text tower.
_CLIP = BlockLayout(
    r"(?!.*text_model\.)(?:.*\.)?encoder\.layers\.\d+", "self_attn.out_proj", "mlp.fc2", "layer_norm2", "mlp", "mlp"
)
_DATA2VEC = BlockLayout(
    r"(?:.*\.)?encoder\.layer\.\d+",
    "attention.output.dense",
    "output.dense",
    "layernorm_after",
    "intermediate",
    "output",
)
_SWIN = BlockLayout(
    r"(?:.*\.)?encoder\.layers\.\d+\.blocks\.\d+", "attention.o_proj", "mlp.fc2", "layernorm_after", "mlp", "mlp"
)
# Swinv2 normalises after each branch (res-post-norm): the FFN reads the stream directly, so `ffn_stream` and
# `ffn_input` are both the FFN's first module.
_SWINV2 = BlockLayout(
    r"(?:.*\.)?encoder\.layers\.\d+\.blocks\.\d+",
    "attention.output.dense",
    "output.dense",
    "intermediate",
    "intermediate",
    "output",
)

BLOCK_LAYOUTS: dict[str, BlockLayout] = {
    "vit": _VIT,
    "deit": _VIT,
    "beit": _VIT,
    "dinov2": _DINOV2,
    "data2vec-vision": _DATA2VEC,
    "clip": _CLIP,
    "clip_vision_model": _CLIP,
    "siglip": _CLIP,
    "siglip_vision_model": _CLIP,
    "swin": _SWIN,
    "swinv2": _SWINV2,
}


def target_modules_for(model_type: str | None, model: nn.Module | None = None) -> str:
    """Regex of the blocks that adapters go into in a model of `model_type`; every placement resolves to them."""
    layout = BLOCK_LAYOUTS.get(model_type or "")
    if layout is None:
        raise ValueError(unknown_model_message(model_type, model))
    return layout.blocks


def block_numbers(model: nn.Module, layout: BlockLayout) -> dict[str, int]:
    """The names of `model`'s blocks of `layout`, numbered in module order from 0: Swin's across all its stages, so
    block `M` of stage `N` comes after every block of the earlier stages. `adapter_sites` and `layers_to_transform`
    count blocks this way."""
    names = [name for name, _ in model.named_modules() if re.fullmatch(layout.blocks, name)]
    return {name: index for index, name in enumerate(names)}


def block_layout_for(model_type: str | None, module_name: str) -> BlockLayout | None:
    """The layout when `module_name` is one of the blocks of a known `model_type`, else None."""
    layout = BLOCK_LAYOUTS.get(model_type or "")
    if layout is not None and re.fullmatch(layout.blocks, module_name):
        return layout
    return None


def unknown_model_message(model_type: str | None, model: nn.Module | None) -> str:
    """Say that the model type is unknown and what to pass instead, read from this model's own module tree."""
    message = (
        f"hf_vit_adapter does not know where the transformer blocks are in a model of type {model_type!r} "
        f"(known types: {', '.join(sorted(BLOCK_LAYOUTS))}). Pass `target_modules` yourself."
    )
    return message + (" " + target_hint(model) if model is not None else "")


def target_hint(model: nn.Module) -> str:
    """Suggest `target_modules` from the model's module tree: its blocks and the nn.Linear names inside one block."""
    blocks = _blocks(model)
    if not blocks:
        names = sorted(
            {name.rsplit(".", 1)[-1] for name, module in model.named_modules() if isinstance(module, nn.Linear)}
        )
        if not names:
            return "This model has no nn.Linear layer an adapter could read its width from."
        return f"Its nn.Linear layers are named {names}; e.g. `target_modules={names[-1:]}`."
    pattern, names = blocks
    first = model.get_submodule(names[0])
    linears = [name for name, module in first.named_modules() if isinstance(module, nn.Linear)]
    hint = (
        f"It has {len(names)} blocks matching `{pattern}` ({names[0]}, ...), each with the nn.Linear layers "
        f"{linears}. For one adapter on each block's output (like pfeiffer) pass `target_modules=r'{pattern}'`"
    )
    if linears:
        inner = r"\.".join(re.escape(part) for part in linears[-1].split("."))
        hint += f"; to adapt the output of `{linears[-1]}` in every block pass `target_modules=r'{pattern}\\.{inner}'`"
    return hint + "."


def _blocks(model: nn.Module) -> tuple[str, list[str]] | None:
    """The transformer blocks: elements of the innermost `nn.ModuleList`s of identical modules holding nn.Linear
    layers, grouped by their name pattern (Swin's `layers.N.blocks.M` forms one group); the largest group wins."""
    groups: dict[str, list[str]] = {}
    for name, module in model.named_modules():
        if not _is_block_list(module) or any(_is_block_list(inner) for inner in module[0].modules()):
            continue
        parts = [r"\d+" if part.isdigit() else re.escape(part) for part in name.split(".")] if name else []
        pattern = r"\.".join([*parts, r"\d+"])
        groups.setdefault(pattern, []).extend(
            f"{name}.{index}" if name else str(index) for index in range(len(module))
        )
    if not groups:
        return None
    return max(groups.items(), key=lambda item: len(item[1]))


def _is_block_list(module: nn.Module) -> bool:
    return (
        isinstance(module, nn.ModuleList)
        and len(module) > 0
        and len({type(block) for block in module}) == 1
        and any(isinstance(inner, nn.Linear) for inner in module[0].modules())
    )

"""Where each placement puts adapters in the ViT-family models we know, as regexes over module names."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class BlockLayout:
    """Module names inside one transformer block of a model family (regex fragments)."""

    blocks: str  # the block modules themselves, e.g. `vit.layers.3`
    attention_output: str  # the attention output projection inside a block
    mlp: str  # the feed-forward module inside a block
    mlp_output: str  # the feed-forward output projection inside a block


# transformers >= 5.9 names. `(?:.*\.)?` lets the same pattern match a bare backbone (`ViTModel`) and a model
# with a head (`ViTForImageClassification.vit`); `(?:base_layer\.)?` lets a second adapter with another placement
# find its module inside a block that an earlier adapter already wrapped.
_VIT = BlockLayout(r"(?:.*\.)?layers\.\d+", r"attention\.o_proj", "mlp", r"mlp\.fc2")
_DINOV2 = BlockLayout(r"(?:.*\.)?encoder\.layer\.\d+", r"attention\.o_proj", "mlp", r"mlp\.fc2")
_CLIP = BlockLayout(r"(?:.*\.)?encoder\.layers\.\d+", r"self_attn\.out_proj", "mlp", r"mlp\.fc2")

BLOCK_LAYOUTS: dict[str, BlockLayout] = {
    "vit": _VIT,
    "deit": _VIT,
    "dinov2": _DINOV2,
    "clip": _CLIP,
    "clip_vision_model": _CLIP,
    "siglip": _CLIP,
    "siglip_vision_model": _CLIP,
}


def target_modules_for(model_type: str, placement: str) -> str:
    """Regex of the modules that `placement` adapts in a model of `model_type`."""
    layout = BLOCK_LAYOUTS.get(model_type)
    if layout is None:
        raise ValueError(
            f"hf_vit_adapter does not know where to put adapters in a model of type {model_type!r} "
            f"(known types: {', '.join(sorted(BLOCK_LAYOUTS))}). Pass the modules yourself, e.g. "
            "`AdapterConfig(target_modules=['out_proj', 'fc2'])` for houlsby or a regex such as "
            r"`target_modules=r'.*layers\.\d+\.mlp\.fc2'`."
        )
    inner = r"(?:base_layer\.)?"
    if placement == "houlsby":
        return rf"{layout.blocks}\.{inner}(?:{layout.attention_output}|{layout.mlp_output})"
    if placement == "ffn":
        return rf"{layout.blocks}\.{inner}{layout.mlp_output}"
    if placement == "pfeiffer":
        return layout.blocks
    if placement == "parallel":
        return rf"{layout.blocks}\.{inner}{layout.mlp}"
    raise ValueError(f"Unknown placement {placement!r}.")

"""AdapterHub-format adapter folders written by the tests, and AdapterHub's outputs computed without its library.

`write_adapter` writes what `adapters`' `save_adapter` writes (`adapter_config.json`, `pytorch_adapter.bin` or
`adapter.safetensors`, and `head_config.json` + head weights). `adapterhub_forward` puts AdapterHub's bottleneck
layer on a plain transformers model with hooks, transcribed from `adapters` 1.3.0 `methods/modeling.py`
(`Adapter.pre_forward/forward/post_forward`, `ParallelAdapter`) as its ViT, CLIP and BEiT layers call it: with no
LayerNorm, on the sub-block output `a` and the sub-block's residual input `x`. It shares no code with the converter.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import save_file
from torch import nn

DATA = Path(__file__).parent / "data" / "adapterhub"
VERSION = "adapters.1.3.0"
# AdapterHub's activations, written out with torch (gelu_new is the tanh approximation).
ACTIVATIONS = {
    "swish": F.silu,
    "relu": F.relu,
    "gelu": F.gelu,
    "gelu_new": lambda x: F.gelu(x, approximate="tanh"),
}


def fixture_config(name: str, **overrides) -> dict:
    """The full BnConfig of one of the real AdapterHub fixtures (houlsby, pfeiffer, adapter_plus, parallel)."""
    config = json.loads((DATA / name / "adapter_config.json").read_text())["config"]
    return {**config, **overrides}


def vit_key(block: int, location: str, name: str, param: str, prefix: str = "vit.") -> str:
    inner = "attention_adapters" if location == "attention" else "output.output_adapters"
    return f"{prefix}encoder.layer.{block}.{inner}.adapters.{name}.{param}"


def layers_key(block: int, location: str, name: str, param: str, prefix: str) -> str:
    """CLIP (`vision_model.` / `text_model.` prefix) and BEiT (`beit.` prefix, `encoder.layer`) keys."""
    layers = "layer" if prefix.startswith("beit") else "layers"
    return f"{prefix}encoder.{layers}.{block}.{location}_adapters.adapters.{name}.{param}"


def random_adapter(width: int, bottleneck: int, generator: torch.Generator, scale: float = 0.5) -> dict:
    """One adapter's tensors with AdapterHub's parameter names, random and far from identity."""
    return {
        "adapter_down.0.weight": torch.randn(bottleneck, width, generator=generator) * scale,
        "adapter_down.0.bias": torch.randn(bottleneck, generator=generator) * scale,
        "adapter_up.weight": torch.randn(width, bottleneck, generator=generator) * scale,
        "adapter_up.bias": torch.randn(width, generator=generator) * scale,
    }


def write_adapter(
    folder: Path,
    name: str,
    config: dict,
    weights: dict[str, torch.Tensor],
    *,
    model_name: str,
    model_type: str = "vit",
    model_class: str = "ViTAdapterModel",
    hidden_size: int = 32,
    version: str | None = VERSION,
    safetensors: bool = False,
    head: dict | None = None,
) -> Path:
    """An AdapterHub adapter folder. `head`: `weight`, optional `bias`, `label2id` and head config overrides."""
    folder.mkdir(parents=True, exist_ok=True)
    meta = {"config": config, "hidden_size": hidden_size, "model_class": model_class, "model_name": model_name}
    meta.update(model_type=model_type, name=name)
    if version is not None:
        meta["version"] = version
    (folder / "adapter_config.json").write_text(json.dumps(meta, indent=2))
    _save(weights, folder, "adapter.safetensors" if safetensors else "pytorch_adapter.bin")
    if head is not None:
        head = dict(head)
        tensors = {f"heads.{name}.1.weight": head.pop("weight")}
        if head.get("bias") is not None:
            tensors[f"heads.{name}.1.bias"] = head.pop("bias")
        head.pop("bias", None)
        head_config = {
            "activation_function": "tanh",
            "bias": f"heads.{name}.1.bias" in tensors,
            "dropout_prob": None,
            "head_type": "image_classification",
            "layers": 1,
            "multilabel": False,
            "num_labels": tensors[f"heads.{name}.1.weight"].shape[0],
            "use_pooler": False,
            **head,
        }
        head_meta = {**meta, "config": head_config}
        (folder / "head_config.json").write_text(json.dumps(head_meta, indent=2))
        _save(tensors, folder, "model_head.safetensors" if safetensors else "pytorch_model_head.bin")
    return folder


def _save(tensors: dict[str, torch.Tensor], folder: Path, file_name: str) -> None:
    if file_name.endswith(".safetensors"):
        save_file({key: value.contiguous() for key, value in tensors.items()}, folder / file_name)
    else:
        torch.save(tensors, folder / file_name)


def bottleneck(a: torch.Tensor, x: torch.Tensor, params: dict, config: dict) -> torch.Tensor:
    """AdapterHub's `bottleneck_layer_forward(a, x, layer_norm=None)` for one adapter, in eval mode."""
    scaling = params.get("scaling", config["scaling"])

    def adapter(h: torch.Tensor) -> torch.Tensor:
        down = ACTIVATIONS[config["non_linearity"]](
            F.linear(h, params["adapter_down.0.weight"], params["adapter_down.0.bias"])
        )
        return F.linear(down, params["adapter_up.weight"], params["adapter_up.bias"]) * scaling

    if config["is_parallel"]:  # ParallelAdapter: reads the residual input, adds to the sub-block output
        out = adapter(x) + a
        return out + x if config["original_ln_after"] else out
    residual = a if config["residual_before_ln"] is True else None
    hidden = a + x if config["original_ln_before"] else a
    if not config["residual_before_ln"]:
        residual = hidden
    out = adapter(hidden) + residual
    return out + x if config["original_ln_after"] else out


@contextmanager
def adapterhub_forward(blocks: nn.ModuleList, adapters: dict[tuple[int, str], dict], config: dict) -> Iterator[None]:
    """Run `blocks` (a ViT, CLIP or BEiT encoder's layers) as AdapterHub would with `adapters`
    (`{(block, "attention" | "output"): params}`) active.

    The attention adapter replaces the attention module's output `a` by `bottleneck(a, x) - x` (the block adds `x`
    back); the output adapter replaces the block output `h = x1 + a` by `bottleneck(h - x1, x1)`.
    """
    handles = []
    for index, block in enumerate(blocks):
        seen: dict[str, torch.Tensor] = {}
        ffn_norm = getattr(block, "layernorm_after", None) or block.layer_norm2
        attention = getattr(block, "attention", None) or block.self_attn
        handles.append(block.register_forward_pre_hook(_remember(seen, "x"), with_kwargs=True))
        handles.append(ffn_norm.register_forward_pre_hook(_remember(seen, "x1"), with_kwargs=True))
        if (index, "attention") in adapters:
            params = adapters[(index, "attention")]

            def on_attention(module, args, output, seen=seen, params=params):
                a = output[0]
                return (bottleneck(a, seen["x"], params, config) - seen["x"], *output[1:])

            handles.append(attention.register_forward_hook(on_attention))
        if (index, "output") in adapters:
            params = adapters[(index, "output")]

            def on_block(module, args, output, seen=seen, params=params):
                h = output[0] if isinstance(output, tuple) else output
                new = bottleneck(h - seen["x1"], seen["x1"], params, config)
                return (new, *output[1:]) if isinstance(output, tuple) else new

            handles.append(block.register_forward_hook(on_block))
    try:
        yield
    finally:
        for handle in handles:
            handle.remove()


def _remember(seen: dict, key: str):
    def hook(module, args, kwargs):
        seen[key] = args[0] if args else kwargs["hidden_states"]

    return hook

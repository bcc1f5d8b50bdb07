"""Import AdapterHub (`adapters`) bottleneck adapters of vision transformers as hf_vit_adapter adapters.

AdapterHub saves `adapter_config.json` with `pytorch_adapter.bin` or `adapter.safetensors`, and for a prediction head
`head_config.json` with `pytorch_model_head.bin` or `model_head.safetensors` (`adapters` 1.3.0, `utils.py`). Its
bottleneck layer (`methods/bottleneck.py`, `methods/modeling.py`) is steered by flags; in ViT, CLIP and BEiT it is
called without a LayerNorm, so with `a` the sub-block output (attention or FFN), `x` the sub-block's residual input
and `A(h) = s * up(act(down(h)))`, the flags `original_ln_before` (b), `residual_before_ln` (r) and
`original_ln_after` (o) give:

| b, r, o | output | our site |
|---|---|---|
| False, any, True | `x + a + A(a)` | after the attention / FFN output projection (`houlsby`, `ffn`) |
| True, True, True or True, False, False | `h + A(h)`, `h = x + a` | the block output (`pfeiffer`) |
| `is_parallel=True`, o=True | `x + a + A(x)` | beside the FFN, reading the residual stream (`parallel`, AdaptFormer) |

Everything else (a lost or doubled residual, adapter LayerNorms, gating, PHM, fusion, ...) is refused with an error
that names the setting: a conversion either reproduces AdapterHub's outputs or does not happen.
"""

from __future__ import annotations

import json
import os
import re
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from huggingface_hub import snapshot_download
from peft import get_peft_model
from safetensors.torch import load_file
from transformers import PretrainedConfig
from transformers.activations import ACT2FN

from ..config import AdapterConfig
from .errors import ConversionError, ConversionWarning
from .output import (
    SiteTensors,
    check_output_dir,
    fill_head,
    fill_sites,
    first_line,
    load_base_config,
    load_classifier,
    resolve_base,
    write_folder,
)

ADAPTER_CONFIG_NAME = "adapter_config.json"
ADAPTER_WEIGHTS_NAMES = ("adapter.safetensors", "pytorch_adapter.bin")
HEAD_CONFIG_NAME = "head_config.json"
HEAD_WEIGHTS_NAMES = ("model_head.safetensors", "pytorch_model_head.bin")
# Files of AdapterHub features that have no counterpart here.
UNSUPPORTED_FILES = {
    "adapter_fusion_config.json": "an AdapterFusion layer (fusion of several adapters)",
    "adapter_interface.json": "a custom model interface",
    "embedding.pt": "trained embeddings",
}

# `BnConfig`'s fields with their defaults (adapters 1.3.0 `configuration/adapter_config.py`); older saves may lack
# newer fields. Required fields have no default.
_REQUIRED = ("mh_adapter", "output_adapter", "reduction_factor", "non_linearity")
_DEFAULTS: dict[str, Any] = {
    "architecture": None,
    "original_ln_before": False,
    "original_ln_after": True,
    "ln_before": False,
    "ln_after": False,
    "init_weights": "bert",
    "is_parallel": False,
    "scaling": 1.0,
    "use_gating": False,
    "residual_before_ln": True,
    "dropout": 0.0,
    "stochastic_depth": 0.0,
    "leave_out": [],
    "phm_layer": False,
}
# Fields that cannot change the outputs once the weights are loaded: initialisation, options that only act together
# with a refused one (PHM details with `phm_layer`, `adapter_residual_before_ln` with `ln_after`), encoder-decoder
# cross-attention adapters, and invertible adapters, which AdapterHub puts on text embeddings only (their weights, if
# any, are in the text tower and are left out with the rest of it).
_NO_EFFECT = {
    "init_weights_seed",
    "adapter_residual_before_ln",
    "cross_adapter",
    "inv_adapter",
    "inv_adapter_reduction_factor",
    "invertible_adapter",
    "phm_dim",
    "factorized_phm_W",
    "shared_W_phm",
    "shared_phm_rule",
    "factorized_phm_rule",
    "phm_c_init",
    "phm_init_range",
    "learn_phm",
    "hypercomplex_nonlinearity",
    "phm_rank",
    "phm_bias",
}
# Settings that change the maths in a way no placement of ours reproduces: (field, value that is fine, why).
_REFUSED_FLAGS = (
    ("use_gating", False, "a learned gate on the adapter output"),
    ("phm_layer", False, "PHM (Compacter) projections"),
    ("ln_before", False, "a LayerNorm inside the adapter, before the bottleneck"),
    ("ln_after", False, "a LayerNorm inside the adapter, after the bottleneck"),
)
# AdapterHub's names for its configurations' initialisations -> ours (only used if the adapter is re-initialised).
_INIT_WEIGHTS = {"bert": "bert", "houlsby": "houlsby", "mam_adapter": True}
# Before `version` was saved, AdapterHub's "gelu" was the tanh approximation and "gelu_orig" the exact one
# (`ACTIVATION_RENAME` in adapters' `utils.py`, applied to configs without a `version` key).
_LEGACY_ACTIVATIONS = {"gelu": "gelu_new", "gelu_orig": "gelu"}
# AdapterHub model types -> the base model type they need.
_BASE_MODEL_TYPES = {"vit": "vit", "beit": "beit", "clip": "clip", "clip_vision_model": "clip"}
# Model types whose block module names are those of another type the method knows (transformers >= 5.9).
# AdapterHub's adapter locations -> our site, per placement.
_SITES = {
    "houlsby": {"attention_adapters": "attention_output", "output_adapters": "ffn_output"},
    "ffn": {"output_adapters": "ffn_output"},
    "pfeiffer": {"output_adapters": "block_output"},
    "parallel": {"output_adapters": "ffn_parallel"},
}
# `...encoder.layer.3.attention_adapters.adapters.NAME.adapter_down.0.weight` (ViT, BEiT: `encoder.layer.N`, the FFN
# adapter under `output.`; CLIP: `vision_model.encoder.layers.N` / `text_model.encoder.layers.N`).
_ADAPTER_KEY = re.compile(
    r"^(?P<tower>.*?)encoder\.layers?\.(?P<block>\d+)\.(?:output\.)?(?P<location>attention_adapters|output_adapters)"
    r"\.adapters\.(?P<name>[^.]+)\.(?P<param>.+)$"
)
# AdapterHub's parameter names inside one adapter -> `output.SiteTensors` names.
_PARAMS = {
    "adapter_down.0.weight": "down.weight",
    "adapter_down.0.bias": "down.bias",
    "adapter_up.weight": "up.weight",
    "adapter_up.bias": "up.bias",
    "scaling": "scale",
}


@dataclass
class _Checkpoint:
    """An AdapterHub adapter folder, read."""

    meta: dict[str, Any]  # adapter_config.json
    config: dict[str, Any]  # its "config", with BnConfig's defaults filled in
    weights: dict[str, torch.Tensor]
    head_meta: dict[str, Any] | None
    head_weights: dict[str, torch.Tensor] | None

    @property
    def name(self) -> str:
        return self.meta["name"]


@dataclass
class _Head:
    id2label: dict[int, str]
    weight: torch.Tensor
    bias: torch.Tensor | None


def convert_adapterhub(
    source: str | os.PathLike, output_dir: str | os.PathLike, base_model: str | None = None
) -> Path:
    """Convert an AdapterHub adapter (a folder or a Hub repo id) into an hf_vit_adapter adapter folder.

    `base_model` (a Hub id or a folder) overrides the `model_name` AdapterHub saved. The output holds
    `adapter_config.json` naming that base, `adapter_model.safetensors` (the adapter and, if the source has an image
    classification head, that head as `classifier` with its class names) and the base's image processor when it
    has one, so `PeftModel.from_pretrained`, `AutoModelForImageClassification.from_pretrained(output_dir)` and
    `pipeline("image-classification", model=output_dir)` load it (after `import hf_vit_adapter`).

    Raises `ConversionError` for anything that would not reproduce AdapterHub's outputs exactly; nothing is written
    then. Warns (`ConversionWarning`) about what is left out on purpose (a CLIP text tower, a missing head).
    """
    output_dir = Path(output_dir)
    check_output_dir(output_dir)
    checkpoint = _read_checkpoint(_resolve_source(str(source)))
    config = checkpoint.config
    placement = _placement(config)
    _check_supported(config)

    base_id = resolve_base(base_model or checkpoint.meta.get("model_name"))
    base_config = load_base_config(base_id)
    adapter_type = checkpoint.meta.get("model_type") or base_config.model_type
    _check_model_types(adapter_type, base_config, placement)
    vision_config = base_config.vision_config if base_config.model_type == "clip" else base_config
    tensors = _split_weights(checkpoint)
    # AdapterHub numbers a full CLIP model's layers text first, so `leave_out` counts the text layers too.
    offset = base_config.text_config.num_hidden_layers if adapter_type == "clip" else 0
    blocks = _check_base_fits(tensors, config, vision_config, offset, placement)
    head = _read_head(checkpoint, adapter_type, int(vision_config.hidden_size))
    if head is None:
        warnings.warn(
            "The source has no prediction head: the output holds the adapter only, and predictions use the base "
            f"model's own classification head ({base_id}), which is randomly initialised if the base has none.",
            ConversionWarning,
            stacklevel=2,
        )

    model = load_classifier(base_id, base_config, head.id2label if head else None)
    adapter_config = _adapter_config(config, placement, tensors, blocks, base_config, has_head=head is not None)
    try:
        peft_model = get_peft_model(model, adapter_config)
    except ValueError as error:
        raise ConversionError(f"Cannot put the adapter on {base_id}: {error}") from None
    fill_sites(
        peft_model, {(block, _SITES[placement][location]): params for (block, location), params in tensors.items()}
    )
    if head is not None:
        fill_head(peft_model, head.weight, head.bias)
    write_folder(peft_model, base_id, output_dir)
    return output_dir


def map_activation(non_linearity: str, versioned: bool = True) -> str:
    """The `ACT2FN` key of an AdapterHub `non_linearity`: AdapterHub lower-cases the name, reads "leakyrelu" as
    `leaky_relu` (slope 0.01) and everything else from transformers' `ACT2FN`; configs saved without a `version`
    key read "gelu" as "gelu_new" and "gelu_orig" as "gelu"."""
    if not versioned:
        non_linearity = _LEGACY_ACTIVATIONS.get(non_linearity, non_linearity)
    name = non_linearity.lower()
    name = "leaky_relu" if name == "leakyrelu" else name
    if name not in ACT2FN:
        raise ConversionError(f"Unsupported non_linearity {non_linearity!r}: it is not an activation of ACT2FN.")
    return name


def _resolve_source(source: str) -> Path:
    """A local folder, or a Hub repo id downloaded with `snapshot_download` (configs and weights only)."""
    path = Path(source)
    if path.is_dir():
        return path
    if path.exists() or source.startswith((".", "/", "~")) or source.count("/") > 1:
        raise ConversionError(f"{source} is not a folder (and not a Hub repo id).")
    try:
        return Path(snapshot_download(source, allow_patterns=["*.json", "*.safetensors", "*.bin", "*.pt"]))
    except Exception as error:  # huggingface_hub raises many kinds: not found, gated, offline, bad id
        raise ConversionError(
            f"{source} is not a folder, and the Hub could not give it: {first_line(error)}"
        ) from None


def _read_checkpoint(folder: Path) -> _Checkpoint:
    for file_name, feature in UNSUPPORTED_FILES.items():
        if (folder / file_name).exists():
            raise ConversionError(f"{folder} holds {feature} ({file_name}), which hf_vit_adapter cannot express.")
    meta = _read_json(folder / ADAPTER_CONFIG_NAME)
    raw = meta.get("config")
    if not isinstance(raw, dict):
        raise ConversionError(f"{folder / ADAPTER_CONFIG_NAME} has no adapter configuration under 'config'.")
    if "name" not in meta:
        raise ConversionError(f"{folder / ADAPTER_CONFIG_NAME} does not name its adapter ('name').")
    config = {**_DEFAULTS, **raw}
    if config["architecture"] in (None, "bottleneck"):  # other architectures are refused by `_placement`
        missing = [key for key in _REQUIRED if key not in config]
        if missing:
            raise ConversionError(f"{folder / ADAPTER_CONFIG_NAME} lacks {', '.join(missing)}.")
        config["non_linearity"] = map_activation(config["non_linearity"], versioned="version" in meta)
    weights = _load_tensors(folder, ADAPTER_WEIGHTS_NAMES)
    if weights is None:
        raise ConversionError(f"{folder} holds no adapter weights ({' or '.join(ADAPTER_WEIGHTS_NAMES)}).")
    head_meta = _read_json(folder / HEAD_CONFIG_NAME) if (folder / HEAD_CONFIG_NAME).exists() else None
    head_weights = _load_tensors(folder, HEAD_WEIGHTS_NAMES) if head_meta else None
    if head_meta and head_weights is None:
        raise ConversionError(f"{folder} has {HEAD_CONFIG_NAME} but no {' or '.join(HEAD_WEIGHTS_NAMES)}.")
    return _Checkpoint(meta, config, weights, head_meta, head_weights)


def _read_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConversionError(f"{path.parent} is not an AdapterHub adapter folder: it has no {path.name}.") from None
    except (OSError, ValueError) as error:
        raise ConversionError(f"Cannot read {path}: {first_line(error)}") from None
    if not isinstance(data, dict):
        raise ConversionError(f"{path} does not hold a JSON object.")
    return data


def _load_tensors(folder: Path, names: tuple[str, str]) -> dict[str, torch.Tensor] | None:
    """Safetensors if present, else the pickle, read with `weights_only=True` so it cannot run code."""
    path = next((folder / name for name in names if (folder / name).exists()), None)
    if path is None:
        return None
    try:
        tensors = load_file(path) if path.suffix == ".safetensors" else torch.load(path, "cpu", weights_only=True)
    except Exception as error:  # safetensors and torch's weights-only unpickler raise various types
        raise ConversionError(f"Cannot read {path} as plain weights: {first_line(error)}") from None
    if not isinstance(tensors, dict) or not all(isinstance(value, torch.Tensor) for value in tensors.values()):
        raise ConversionError(f"{path} does not hold a state dict of tensors.")
    return tensors


def _placement(config: dict[str, Any]) -> str:
    """Our placement for AdapterHub's flags (see the module docstring), or an error naming the flags."""
    architecture = config["architecture"]
    if architecture not in (None, "bottleneck"):
        raise ConversionError(
            f"Unsupported AdapterHub architecture {architecture!r}: only bottleneck adapters convert."
        )
    unknown = sorted(set(config) - set(_REQUIRED) - set(_DEFAULTS) - _NO_EFFECT)
    if unknown:
        raise ConversionError(
            f"Unsupported AdapterHub setting {unknown[0]!r} (unknown to this converter, which reads adapters 1.3.0 "
            "configs): cannot tell whether it changes the outputs."
        )
    for key, fine, meaning in _REFUSED_FLAGS:
        if config[key] != fine:
            raise ConversionError(f"Unsupported setting {key}={config[key]!r}: {meaning} has no hf_vit_adapter form.")
    if config["residual_before_ln"] not in (True, False):
        raise ConversionError(
            f"Unsupported setting residual_before_ln={config['residual_before_ln']!r}: AdapterHub's vision models "
            "have no LayerNorm at the adapter, so only True or False are defined."
        )
    before, residual_first, after = (
        config["original_ln_before"],
        config["residual_before_ln"],
        config["original_ln_after"],
    )
    flags = f"original_ln_before={before}, residual_before_ln={residual_first}, original_ln_after={after}"
    if not (config["mh_adapter"] or config["output_adapter"]):
        raise ConversionError("The adapter has neither mh_adapter nor output_adapter set: it adapts nothing.")
    if not config["output_adapter"]:
        raise ConversionError(
            "Unsupported setting output_adapter=False with mh_adapter=True: hf_vit_adapter has no placement with "
            "adapters after the attention block only."
        )
    if config["is_parallel"]:
        if config["mh_adapter"]:
            raise ConversionError(
                "Unsupported setting mh_adapter=True with is_parallel=True: hf_vit_adapter has no adapter parallel "
                "to the attention block."
            )
        if not after:
            raise ConversionError(
                "Unsupported setting original_ln_after=False with is_parallel=True: the FFN's residual is dropped."
            )
        return "parallel"
    if not before and after:
        return "houlsby" if config["mh_adapter"] else "ffn"
    if before and residual_first == after:
        if config["mh_adapter"]:
            raise ConversionError(
                f"Unsupported setting mh_adapter=True with {flags}: an adapter on the residual stream after the "
                "attention block has no hf_vit_adapter placement."
            )
        return "pfeiffer"
    raise ConversionError(f"Unsupported combination {flags}: the block's residual connection is lost or doubled.")


def _check_supported(config: dict[str, Any]) -> None:
    """Refuse a scaling with no exact counterpart here (a float, `"learned"` and `"channel"` map one to one)."""
    scaling = config["scaling"]
    if isinstance(scaling, str):
        if scaling not in ("learned", "channel"):
            raise ConversionError(f"Unsupported setting scaling={scaling!r}.")
    elif isinstance(scaling, bool) or not isinstance(scaling, (int, float)):
        raise ConversionError(f"Unsupported setting scaling={scaling!r}.")


def _check_model_types(adapter_type: str, base_config: PretrainedConfig, placement: str) -> None:
    needed = _BASE_MODEL_TYPES.get(adapter_type)
    if needed is None:
        raise ConversionError(
            f"Unsupported model type {adapter_type!r}: the converter reads AdapterHub adapters of ViT, BEiT and "
            "CLIP (AdapterHub has no DeiT, DINOv2 or SigLIP support)."
        )
    if base_config.model_type != needed:
        hint = " (a full CLIP checkpoint, such as openai/clip-vit-base-patch32)" if needed == "clip" else ""
        raise ConversionError(
            f"The adapter was trained on a {adapter_type!r} model but the base is {base_config.model_type!r}; "
            f"pass --base_model with a {needed!r} checkpoint{hint}."
        )
    layer_scale = getattr(base_config, "layer_scale_init_value", 0) if needed == "beit" else 0
    if layer_scale > 0 and placement != "pfeiffer":
        raise ConversionError(
            f"{placement!r} adapters do not convert exactly on BEiT with layer scale (layer_scale_init_value="
            f"{layer_scale}): AdapterHub applies them after the layer scale, hf_vit_adapter before it. Only "
            "block-output adapters (SeqBnConfig, AdapterPlusConfig) convert on this base."
        )


def _split_weights(checkpoint: _Checkpoint) -> dict[tuple[int, str], SiteTensors]:
    """`{(block, location): tensors}` of the vision tower; a CLIP text tower is left out, with a warning."""
    tensors: dict[tuple[int, str], SiteTensors] = {}
    text_tensors = 0
    for key, value in checkpoint.weights.items():
        match = _ADAPTER_KEY.match(key)
        if "text_model." in (match.group("tower") if match else key):
            text_tensors += 1
            continue
        if match is None or match.group("name") != checkpoint.name or match.group("param") not in _PARAMS:
            raise ConversionError(
                f"Unexpected tensor {key!r} in the adapter weights: it is not part of a bottleneck adapter "
                f"{checkpoint.name!r} that hf_vit_adapter can hold."
            )
        site = (int(match.group("block")), match.group("location"))
        tensors.setdefault(site, {})[_PARAMS[match.group("param")]] = value
    if text_tensors:
        warnings.warn(
            f"Left out {text_tensors} tensors of the CLIP text tower's adapters: hf_vit_adapter adapts the vision "
            "tower only.",
            ConversionWarning,
            stacklevel=3,
        )
    if not tensors:
        raise ConversionError(f"The adapter weights hold no vision-tower adapter named {checkpoint.name!r}.")
    for (block, location), params in tensors.items():
        missing = sorted({"down.weight", "up.weight"} - set(params))
        if missing:
            raise ConversionError(f"The adapter of block {block} ({location}) lacks its {' and '.join(missing)}.")
    return tensors


def _check_base_fits(
    tensors: dict[tuple[int, str], SiteTensors],
    config: dict[str, Any],
    vision_config: PretrainedConfig,
    offset: int,
    placement: str,
) -> list[int]:
    """The blocks that hold adapters, after checking them against the config and the base's width and depth."""
    width = {params["down.weight"].shape[1] for params in tensors.values()}
    if width != {vision_config.hidden_size}:
        raise ConversionError(
            f"The base model's width ({vision_config.hidden_size}) does not fit the adapter, which was trained on "
            f"width {', '.join(map(str, sorted(width)))}; pass the base it was trained on with --base_model."
        )
    sizes = {params["down.weight"].shape[0] for params in tensors.values()}
    if len(sizes) > 1:
        raise ConversionError(
            f"Unsupported setting reduction_factor={config['reduction_factor']!r}: the adapters have different "
            f"bottleneck sizes ({', '.join(map(str, sorted(sizes)))}), and hf_vit_adapter uses one per adapter."
        )
    depth = vision_config.num_hidden_layers
    blocks = sorted({block for block, _ in tensors})
    for block in blocks:
        locations = sorted(location for index, location in tensors if index == block)
        if locations != sorted(_SITES[placement]):
            raise ConversionError(
                f"The weights of block {block} hold {' and '.join(locations)}, but the config describes "
                f"{' and '.join(sorted(_SITES[placement]))} ({placement!r})."
            )
    leave_out = {int(index) for index in config["leave_out"]}
    expected = [block for block in range(depth) if block + offset not in leave_out]
    if blocks != expected:
        raise ConversionError(
            f"The base model's depth ({depth} blocks) does not fit the adapter: it has adapters in blocks "
            f"{_ranges(blocks)} where AdapterHub would have put them in {_ranges(expected) or 'none'} "
            f"(leave_out={sorted(leave_out)}); pass the base it was trained on with --base_model."
        )
    return blocks


def _read_head(checkpoint: _Checkpoint, adapter_type: str, width: int) -> _Head | None:
    """A 1-layer image classification head as weights and class names; anything else is refused."""
    if checkpoint.head_meta is None:
        return None
    head = checkpoint.head_meta.get("config") or {}
    what = f"Unsupported prediction head ({HEAD_CONFIG_NAME})"
    if head.get("head_type") != "image_classification":
        raise ConversionError(f"{what}: head_type={head.get('head_type')!r}; only image_classification converts.")
    if adapter_type.startswith("clip"):
        raise ConversionError(f"{what}: AdapterHub's CLIP models have no image classification head.")
    if head.get("layers", 1) != 1:
        raise ConversionError(
            f"{what}: layers={head.get('layers')} (a multi-layer head); hf_vit_adapter saves a single linear "
            f"classifier. Remove {HEAD_CONFIG_NAME} and its weights to convert the adapter alone."
        )
    if head.get("multilabel"):
        raise ConversionError(f"{what}: multilabel=True; hf_vit_adapter's classifier is single-label.")
    if head.get("use_pooler") and adapter_type == "vit":
        raise ConversionError(f"{what}: use_pooler=True; ViTForImageClassification classifies the CLS token.")
    prefix = f"heads.{checkpoint.head_meta.get('name', checkpoint.name)}.1."
    weights = checkpoint.head_weights or {}
    unexpected = sorted(set(weights) - {prefix + "weight", prefix + "bias"})
    if unexpected or prefix + "weight" not in weights:
        raise ConversionError(f"{what}: expected tensors {prefix}weight/bias, found {', '.join(sorted(weights))}.")
    weight = weights[prefix + "weight"]
    num_labels = int(head.get("num_labels", weight.shape[0]))
    if tuple(weight.shape) != (num_labels, width):
        raise ConversionError(f"{what}: its weight is {tuple(weight.shape)}, expected ({num_labels}, {width}).")
    label2id = head.get("label2id") or {f"LABEL_{index}": index for index in range(num_labels)}
    id2label = {int(index): str(label) for label, index in label2id.items()}
    if sorted(id2label) != list(range(num_labels)):
        raise ConversionError(f"{what}: label2id does not number the {num_labels} classes 0..{num_labels - 1}.")
    return _Head(dict(sorted(id2label.items())), weight, weights.get(prefix + "bias"))


def _adapter_config(
    config: dict[str, Any],
    placement: str,
    tensors: dict[tuple[int, str], SiteTensors],
    blocks: list[int],
    base_config: PretrainedConfig,
    has_head: bool,
) -> AdapterConfig:
    if config["dropout"]:
        warnings.warn(
            f"dropout={config['dropout']} is kept, but hf_vit_adapter drops out after the activation where "
            "AdapterHub drops out the scaled output: outputs in eval mode are identical, training differs.",
            ConversionWarning,
            stacklevel=3,
        )
    options: dict[str, Any] = {}
    if config["stochastic_depth"]:
        options["drop_path"] = float(config["stochastic_depth"])
    depth = (base_config.vision_config if base_config.model_type == "clip" else base_config).num_hidden_layers
    scaling = config["scaling"]
    return AdapterConfig(
        bottleneck_size=int(next(iter(tensors.values()))["down.weight"].shape[0]),
        placement=placement,
        non_linearity=config["non_linearity"],
        scaling=scaling if isinstance(scaling, str) else float(scaling),
        dropout=float(config["dropout"]),
        init_weights=_INIT_WEIGHTS.get(config["init_weights"], True),
        layers_to_transform=None if len(blocks) == depth else blocks,
        modules_to_save=None if has_head else [],  # no head: the base's own, untouched
        **options,
    )


def _ranges(blocks: list[int]) -> str:
    return ", ".join(map(str, blocks))

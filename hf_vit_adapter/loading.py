"""Strict loading: an adapter loads completely and exactly, or fails with an error that says what does not fit.

Every way to load an adapter reaches `remap_state_dict_for_load`, PEFT's per-method hook
(`BaseTuner._remap_adapter_state_dict_for_load`, called by `set_peft_model_state_dict`):

- `PeftModel.from_pretrained`, `PeftModel.load_adapter` and `AutoPeftModel.from_pretrained` call
  `set_peft_model_state_dict` themselves;
- transformers' `load_adapter` (behind `AutoModelForImageClassification.from_pretrained(adapter_dir)` and
  `pipeline(model=adapter_dir)`) has no per-method hook and loads the file with its own loader, which ignores weights
  that fit nowhere. `install()` wraps it once so that, for bottleneck adapters only, the files it resolved are loaded
  through `set_peft_model_state_dict` as well; everything else (finding and downloading the files, injecting the
  adapter, the other PEFT methods) stays transformers' own.

`adapter_config.json` is read by PEFT's `PeftConfigMixin.from_json_file` on every path; `install()` wraps it too, so a
file that is not JSON, names no or an unknown `peft_type`, or holds invalid bottleneck settings fails with the file
name and the field instead of a bare `JSONDecodeError` or `KeyError`. transformers finds and reads the file itself
first (`find_adapter_config_file`, then `json.load`) in `from_pretrained(adapter_dir)`, `pipeline(model=adapter_dir)`
and `load_adapter`; `install()` wraps that finder so the file it finds goes through the same checks.

The base model those transformers paths load for a bottleneck adapter gets the load report of any checkpoint loaded
into another architecture: the head the adapter brings MISSING, CLIP's text tower or a pooler UNEXPECTED. The finder
notes which base is about to be loaded for an adapter, and that base's report becomes one line (`load_report.py`);
anything unexpected beyond that stays a warning, and loading errors are transformers' own.
"""

from __future__ import annotations

import dataclasses
import importlib
import json
import os
import re
from contextvars import ContextVar
from functools import partial, wraps
from typing import Any

import torch
from peft.config import PeftConfig, PeftConfigMixin
from peft.tuners.tuners_utils import _remove_adapter_name_from_state_dict_key
from safetensors.torch import load_file
from torch import nn

from .heads import HEAD_NAMES
from .legacy import has_keys_0_1_0, translate_keys_0_1_0
from .load_report import report_base_load
from .peft_type import BOTTLENECK_PEFT_TYPE

PEFT_PREFIX = "base_model.model."
_ADAPTER_KEY = re.compile(r"^(?:base_model\.model\.)?(?P<module>.+?)\.bottleneck_(?P<site>[a-z_]+)\.")
_SHOWN = 3  # keys named in an error message


def remove_adapter_name_from_key(key: str, adapter_name: str) -> str:
    """`<layer>.bottleneck_<site>.<adapter>.down.weight` -> `<layer>.bottleneck_<site>.down.weight` (saving)."""
    stripped, count = re.subn(rf"(\.bottleneck_[a-z_]+)\.{re.escape(adapter_name)}(?=\.|$)", r"\1", key, count=1)
    return stripped if count else _remove_adapter_name_from_state_dict_key(key, adapter_name)


def remap_state_dict_for_load(
    model: nn.Module, config: Any, adapter_name: str, state_dict: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Map a saved adapter's keys onto `model`'s `adapter_name`, refusing a file that does not fit exactly.

    Refused: non-finite tensors; any weight of the file with no place in the model; any adapter weight or saved head
    of the model that the file lacks. 0.1.0 keys are translated first.
    """
    from .heads import AdapterHead
    from .layer import AdapterLayer

    _reject_non_finite(state_dict)
    modules = dict(model.named_modules())
    layers = {
        name: module
        for name, module in modules.items()
        if isinstance(module, AdapterLayer) and adapter_name in module.adapter_names_here()
    }
    if has_keys_0_1_0(state_dict):
        state_dict = translate_keys_0_1_0(state_dict, _sites_of_0_1_0_modules(layers, adapter_name))

    expected: dict[str, str] = {}  # key in the file -> key in the model
    for name, layer in layers.items():
        for attribute in layer.adapter_layer_names:
            bottlenecks = getattr(layer, attribute)
            if adapter_name in bottlenecks:
                for key in bottlenecks[adapter_name].state_dict():
                    expected[_saved(f"{name}.{attribute}.{key}")] = f"{name}.{attribute}.{adapter_name}.{key}"
    heads = {name: module for name, module in modules.items() if isinstance(module, AdapterHead)}
    for name, head in heads.items():
        for saved, in_model in head.saved_keys(adapter_name).items():
            expected[_saved(f"{name}.{saved}")] = f"{name}.{in_model}"

    saved = {_saved(key) for key in state_dict}
    unexpected = sorted(key for key in state_dict if _saved(key) not in expected)
    missing = sorted(key for key in expected if key not in saved)
    if unexpected or missing:
        raise ValueError(_mismatch_message(adapter_name, config, saved, set(expected), unexpected, missing, heads))
    return {expected[_saved(key)]: value for key, value in state_dict.items()}


def _saved(name: str) -> str:
    """The key a module name (of a PeftModel, or of a model with injected adapters) has in a saved file."""
    return name if name.startswith(PEFT_PREFIX) else PEFT_PREFIX + name


def _reject_non_finite(state_dict: dict[str, torch.Tensor]) -> None:
    bad = [
        key
        for key, value in state_dict.items()
        if isinstance(value, torch.Tensor) and value.is_floating_point() and not torch.isfinite(value).all()
    ]
    if bad:
        raise ValueError(
            f"The adapter weights hold NaN or infinite values in {len(bad)} tensor(s), e.g. "
            f"{', '.join(bad[:_SHOWN])}: the training run that saved them diverged. Retrain (e.g. with a lower "
            "learning rate) instead of loading them."
        )


def _sites_of_0_1_0_modules(layers: dict[str, nn.Module], adapter_name: str) -> dict[str, tuple[str, str]]:
    """Which module 0.1.0 wrapped for each site that now holds `adapter_name` (see `legacy.translate_keys_0_1_0`)."""
    sites: dict[str, tuple[str, str]] = {}
    for name, layer in layers.items():
        layout = layer.block_layout
        paths = (
            {
                "attention_output": layout.attention_output,
                "ffn_output": layout.ffn_output,
                "ffn_parallel_ln": layout.ffn_input,
                "block_output": "",
            }
            if layout is not None
            else {"module_output": "", "module_parallel": ""}
        )
        for site, path in paths.items():
            if adapter_name in getattr(layer, f"bottleneck_{site}"):
                sites[_saved(f"{name}.{path}" if path else name)] = (_saved(name), site)
    return sites


def _mismatch_message(
    adapter_name: str,
    config: Any,
    saved: set[str],
    expected: set[str],
    unexpected: list[str],
    missing: list[str],
    heads: dict[str, nn.Module],
) -> str:
    facts = []
    if unexpected:
        facts.append(f"{len(unexpected)} weight(s) of the file have no place in the model, e.g. {_few(unexpected)}")
    if missing:
        facts.append(f"{len(missing)} weight(s) of the model are not in the file, e.g. {_few(missing)}")
    cause = _likely_cause(config, saved, expected, unexpected, missing, heads)
    return (
        f"The saved adapter does not fit this model (loading it as {adapter_name!r}): {'; '.join(facts)}. "
        f"Likely cause: {cause}"
    )


def _few(keys: list[str]) -> str:
    return ", ".join(keys[:_SHOWN])


def _likely_cause(
    config: Any,
    saved: set[str],
    expected: set[str],
    unexpected: list[str],
    missing: list[str],
    heads: dict[str, nn.Module],
) -> str:
    head_names = {_saved(name) for name in heads}
    missing_heads = sorted({key.rsplit(".", 1)[0] for key in missing} & head_names)
    if missing_heads and all(key.rsplit(".", 1)[0] in head_names for key in missing) and not unexpected:
        head = missing_heads[0].removeprefix(PEFT_PREFIX)
        return (
            f"the file has no weights for the classification head {head!r}, which adapter_config.json lists in "
            "`modules_to_save`: it was saved without its head. Save it from the model with the trained head, or set "
            '"modules_to_save": [] in adapter_config.json to keep the base model\'s own head.'
        )
    in_file, in_model = _parsed(saved), _parsed(expected)
    if unexpected and not _parsed(unexpected):
        return "the file holds weights that are not adapter weights; it is not an adapter saved by hf-vit-adapter."
    file_sites, model_sites = {site for _, site in in_file}, {site for _, site in in_model}
    if file_sites != model_sites:
        return (
            f"another placement: the file's adapters sit at {sorted(file_sites)}, but placement={config.placement!r} "
            f"puts them at {sorted(model_sites)} in this model. Check `placement` and `target_modules` in "
            "adapter_config.json."
        )
    file_modules, model_modules = {module for module, _ in in_file}, {module for module, _ in in_model}
    if {_digits(module) for module in file_modules} == {_digits(module) for module in model_modules}:
        return (
            f"another depth: the file has adapters in {len(file_modules)} block(s), this model takes them in "
            f"{len(model_modules)}; the adapter was saved from a deeper or shallower model (or with another "
            "`layers_to_transform`)."
        )
    example = sorted(file_modules - model_modules or file_modules or [PEFT_PREFIX + "?"])[0]
    return (
        "another base model: the file's adapters sit in modules this model does not have (e.g. "
        f"`{example.removeprefix(PEFT_PREFIX)}`); check `base_model_name_or_path` in adapter_config.json."
    )


def _parsed(keys: Any) -> set[tuple[str, str]]:
    """(module, site) of each adapter key."""
    return {(_saved(match["module"]), match["site"]) for key in keys if (match := _ADAPTER_KEY.match(key))}


def _digits(name: str) -> str:
    return re.sub(r"\.\d+(?=\.|$)", ".N", name)


# transformers' `load_adapter`: bottleneck adapters load through PEFT's `set_peft_model_state_dict`.


def _load_through_peft(
    *,
    model: nn.Module,
    state_dict: dict | None,
    checkpoint_files: list[str] | None,
    load_config: Any,
    expected_keys: list[str] | None = None,
    adapter_name: str,
    transformers_loader: Any,
) -> tuple[Any, None]:
    from peft.utils import set_peft_model_state_dict
    from transformers.utils.loading_report import LoadStateDictInfo

    from .peft_type import BOTTLENECK_PEFT_TYPE

    config = getattr(model, "peft_config", {}).get(adapter_name)
    if getattr(config, "peft_type", None) != BOTTLENECK_PEFT_TYPE:
        return transformers_loader(
            model=model,
            state_dict=state_dict,
            checkpoint_files=checkpoint_files,
            load_config=load_config,
            expected_keys=expected_keys,
        )
    weights = dict(state_dict or {})
    for path in checkpoint_files or []:
        weights.update(load_file(path) if path.endswith(".safetensors") else torch.load(path, weights_only=True))
    set_peft_model_state_dict(model, weights, adapter_name=adapter_name)
    info = LoadStateDictInfo(
        missing_keys=set(),
        unexpected_keys=set(),
        mismatched_keys=set(),
        error_msgs=[],
        conversion_errors={},
        skipped_pp_keys=set(),
    )
    return info, None


def _strict_load_adapter(load_adapter: Any) -> Any:
    @wraps(load_adapter)
    def wrapper(self: nn.Module, peft_model_id: str | None = None, adapter_name: str | None = None, *args, **kwargs):
        loader = partial(
            _load_through_peft,
            adapter_name=adapter_name or "default",
            transformers_loader=type(self)._load_pretrained_model,
        )
        self.__dict__["_load_pretrained_model"] = loader  # for this call only; the class's stays untouched
        try:
            return load_adapter(self, peft_model_id, adapter_name, *args, **kwargs)
        finally:
            self.__dict__.pop("_load_pretrained_model", None)
            _LOADING_BASE_FOR.set(None)  # the base is loaded by now

    wrapper._hf_vit_adapter_strict = True
    return wrapper


# `adapter_config.json`: named errors instead of bare JSONDecodeError / KeyError.


def _checked_config_reader(from_json_file: Any) -> Any:
    @wraps(from_json_file)
    def wrapper(cls: type, path_json_file: str, **kwargs: Any) -> dict:
        try:
            loaded = from_json_file(cls, path_json_file, **kwargs)
        except json.JSONDecodeError as error:
            raise ValueError(
                f"{path_json_file} is not valid JSON ({error.msg} at line {error.lineno}, column {error.colno}); "
                "it should hold the adapter's settings as written by `save_pretrained`."
            ) from None
        return _checked_config(cls, path_json_file, loaded)

    wrapper._hf_vit_adapter_strict = True
    return classmethod(wrapper)


def _checked_config(cls: type, path: str, loaded: Any) -> dict:
    from peft.mapping import PEFT_TYPE_TO_CONFIG_MAPPING

    from .config import AdapterConfig
    from .peft_type import BOTTLENECK_PEFT_TYPE

    if not isinstance(loaded, dict):
        raise ValueError(f"{path} must hold a JSON object of adapter settings, got {type(loaded).__name__}.")
    peft_type = loaded.get("peft_type")
    if peft_type is None:
        if cls in (PeftConfig, PeftConfigMixin):  # dispatching on peft_type, which the file must name
            raise ValueError(
                f"{path} has no `peft_type` field, which names the PEFT method of the adapter "
                f'(hf-vit-adapter writes "{BOTTLENECK_PEFT_TYPE.value}").'
            )
        return loaded
    if peft_type not in PEFT_TYPE_TO_CONFIG_MAPPING:
        raise ValueError(
            f"{path} has an unknown `peft_type` {peft_type!r}. Known: {', '.join(sorted(PEFT_TYPE_TO_CONFIG_MAPPING))}"
            f' (hf-vit-adapter\'s adapters are "{BOTTLENECK_PEFT_TYPE.value}"; `import hf_vit_adapter` registers it).'
        )
    if peft_type == BOTTLENECK_PEFT_TYPE:
        fields = {field.name for field in dataclasses.fields(AdapterConfig)}
        try:
            AdapterConfig(**{key: value for key, value in loaded.items() if key in fields})
        except (ValueError, TypeError) as error:
            raise ValueError(f"{path}: {error}") from None
    return loaded


# transformers' own reading of `adapter_config.json`, and the load report of the base it then loads.

# The modules that import transformers' `find_adapter_config_file` by name, each calling it through its own reference.
_CONFIG_FINDERS = (
    "transformers.models.auto.auto_factory",  # AutoModel*.from_pretrained(adapter_dir)
    "transformers.pipelines",  # pipeline(model=adapter_dir)
    "transformers.integrations.peft",  # <ModelClass>.from_pretrained(adapter_dir), load_adapter
)


@dataclasses.dataclass(frozen=True)
class _BaseForAdapter:
    """A base model about to be loaded for a bottleneck adapter: the names its load report may give it, and the size
    of the head the adapter brings (None: it brings none)."""

    names: frozenset[str]
    num_labels: int | None


_LOADING_BASE_FOR: ContextVar[_BaseForAdapter | None] = ContextVar("hf_vit_adapter_base_for", default=None)


def _checked_config_finder(find: Any) -> Any:
    @wraps(find)
    def wrapper(model_id: str, *args: Any, **kwargs: Any) -> str | None:
        path = find(model_id, *args, **kwargs)
        if path is not None and os.path.isfile(path):
            settings = PeftConfigMixin.from_json_file(path)  # a file that is not a valid config is named here
            if settings.get("peft_type") == BOTTLENECK_PEFT_TYPE:
                _LOADING_BASE_FOR.set(_base_for(model_id, settings))
        return path

    wrapper._hf_vit_adapter_strict = True
    return wrapper


def _base_for(model_id: str, settings: dict) -> _BaseForAdapter:
    names = {str(model_id), str(settings.get("base_model_name_or_path"))}
    brings_head = any(name in HEAD_NAMES for name in settings.get("modules_to_save") or ())
    id2label = settings.get("id2label") or {}
    return _BaseForAdapter(frozenset(names), len(id2label) if brings_head and id2label else None)


def _adapter_aware_report(log_state_dict_report: Any) -> Any:
    @wraps(log_state_dict_report)
    def wrapper(
        model: nn.Module, pretrained_model_name_or_path: str, ignore_mismatched_sizes: bool, loading_info, logger=None
    ):
        expected = _LOADING_BASE_FOR.get()
        trouble = loading_info.error_msgs or loading_info.conversion_errors or loading_info.mismatched_keys
        if expected is None or str(pretrained_model_name_or_path) not in expected.names or trouble:
            return log_state_dict_report(
                model, pretrained_model_name_or_path, ignore_mismatched_sizes, loading_info, logger
            )
        _LOADING_BASE_FOR.set(None)
        info = {"missing_keys": loading_info.missing_keys, "unexpected_keys": loading_info.unexpected_keys}
        report_base_load(str(pretrained_model_name_or_path), info, expected.num_labels, head_from_adapter=True)
        return None

    wrapper._hf_vit_adapter_strict = True
    return wrapper


def install() -> None:
    """Route transformers' `load_adapter`, its reading of `adapter_config.json` and PEFT's config reading through the
    checks above, and shorten the load report of a base loaded for an adapter (idempotent)."""
    from transformers import modeling_utils
    from transformers.integrations.peft import PeftAdapterMixin

    if not getattr(PeftAdapterMixin.load_adapter, "_hf_vit_adapter_strict", False):
        PeftAdapterMixin.load_adapter = _strict_load_adapter(PeftAdapterMixin.load_adapter)
    reader = PeftConfigMixin.__dict__["from_json_file"]
    if not getattr(reader.__func__, "_hf_vit_adapter_strict", False):
        PeftConfigMixin.from_json_file = _checked_config_reader(reader.__func__)
    for module in map(importlib.import_module, _CONFIG_FINDERS):
        if not getattr(module.find_adapter_config_file, "_hf_vit_adapter_strict", False):
            module.find_adapter_config_file = _checked_config_finder(module.find_adapter_config_file)
    if not getattr(modeling_utils.log_state_dict_report, "_hf_vit_adapter_strict", False):
        modeling_utils.log_state_dict_report = _adapter_aware_report(modeling_utils.log_state_dict_report)

"""`AdapterModel`: the PEFT tuner that inserts bottleneck adapters into a model.

Saved key layout (format 2, `FORMAT_VERSION`; a file format, so change it only with a new version and a translation
on load). Keys of `adapter_model.safetensors`, for an adapter on a block of a known model (`<block>` is the block's
module name, e.g. `vit.layers.3`, `swin.encoder.layers.1.blocks.0`; `<site>` one of `sites.BLOCK_SITES`):

    base_model.model.<block>.bottleneck_<site>.down.weight   [r, d]
    base_model.model.<block>.bottleneck_<site>.down.bias     [r]
    base_model.model.<block>.bottleneck_<site>.up.weight     [d, r]
    base_model.model.<block>.bottleneck_<site>.up.bias       [d]
    base_model.model.<block>.bottleneck_<site>.scale         [1] for scaling="learned", [d] for "channel"

An adapter on a module named in explicit `target_modules` (not a block) has the same keys under that module's name
with the site `module_output` or `module_parallel`. The saved classification head adds `base_model.model.<head>.weight`
and `.bias` (PEFT's `modules_to_save` layout). Keys depend only on the block and the site, never on other adapters.
In the model, PEFT's adapter name follows `bottleneck_<site>` (`...bottleneck_ffn_output.default.down.weight`).
Files of hf-vit-adapter 0.1.0 (`<module>.bottleneck_down.weight`) are translated on load (`legacy.py`).
"""

from __future__ import annotations

import copy
import inspect
import re
import typing
from contextlib import contextmanager
from functools import partial
from typing import Any

import torch
from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_target_module_exists
from peft.utils import AuxiliaryTrainingWrapper, ModulesToSaveWrapper, _get_submodules
from torch import nn
from transformers import PreTrainedModel
from transformers.utils import ModelOutput

from .config import AdapterConfig
from .heads import (
    AdapterHead,
    classification_head_names,
    head_widths,
    model_id2label,
    resize_adapter_head_copies,
    resize_unshared_heads,
    set_labels,
)
from .layer import _NO_MERGE_MESSAGE, AdapterLayer, AdapterWrapper
from .loading import remap_state_dict_for_load, remove_adapter_name_from_key
from .sites import PARALLEL_PLACEMENTS
from .targets import BLOCK_LAYOUTS, block_layout_for, block_numbers, target_modules_for

DEFAULT_LAYERS_PATTERN = ("layers", "layer", "blocks", "h")
# Adapter names that would be confused with parts of the saved keys, or with the base model in mixed batches.
RESERVED_ADAPTER_NAMES = ("__base__", "down", "up", "scale")


def _adapter_names_pre_forward_hook(module: nn.Module, args: tuple, kwargs: dict, adapter_names: list[str]):
    kwargs["adapter_names"] = adapter_names
    return args, kwargs


def _block_index(key: str, layers_pattern: list[str] | str | None) -> int | None:
    patterns = [layers_pattern] if isinstance(layers_pattern, str) else list(layers_pattern or DEFAULT_LAYERS_PATTERN)
    for pattern in patterns:
        match = re.match(rf"(?:^|.*?\.){pattern}\.(\d+)(?:\.|$)", key)
        if match:
            return int(match.group(1))
    return None


class AdapterModel(BaseTuner):
    """
    Inserts bottleneck adapters (Houlsby et al., 2019) into a transformer, as configured by [`AdapterConfig`].

    Example:

        ```py
        >>> import hf_vit_adapter
        >>> from hf_vit_adapter import AdapterConfig
        >>> from peft import get_peft_model
        >>> from transformers import AutoModelForImageClassification

        >>> base = AutoModelForImageClassification.from_pretrained("google/vit-base-patch16-224-in21k", num_labels=10)
        >>> model = get_peft_model(base, AdapterConfig(bottleneck_size=64, placement="houlsby"))
        ```
    """

    prefix: str = "bottleneck_"
    tuner_layer_cls = AdapterLayer
    target_module_mapping = {model_type: None for model_type in BLOCK_LAYOUTS}  # resolved below

    def _prepare_adapter_config(self, peft_config: AdapterConfig, model_config: dict) -> AdapterConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = target_modules_for(model_config.get("model_type"), self.model)
        return peft_config

    def _prepare_model(self, peft_config: AdapterConfig, model: nn.Module) -> None:
        """Train and save the classification head with the adapter, and restore its classes when loading."""
        heads = classification_head_names(model)
        if peft_config.modules_to_save is None and heads:
            peft_config.modules_to_save = list(heads)
        saved_heads = [name for name in heads if name in (peft_config.modules_to_save or [])]
        if not saved_heads:
            return
        if peft_config.id2label is None:
            peft_config.id2label = model_id2label(model)
        elif not any(isinstance(getattr(model, name), ModulesToSaveWrapper) for name in saved_heads):
            # The first adapter on this base: its head replaces the base's. Later adapters get their own copy of
            # the right size in `inject_adapter`.
            resize_unshared_heads(model, saved_heads, len(peft_config.id2label))
            set_labels(model, peft_config.id2label)

    def inject_adapter(self, model: nn.Module, adapter_name: str, **kwargs: Any) -> None:
        config = self.peft_config[adapter_name]
        if adapter_name in RESERVED_ADAPTER_NAMES:
            raise ValueError(
                f"An adapter cannot be called {adapter_name!r}: the names {RESERVED_ADAPTER_NAMES} are reserved "
                "('__base__' means 'no adapter' in mixed batches, the others are parts of the saved keys)."
            )
        self._prepare_adapter_config(config, self.get_model_config(model))
        _check_no_nested_layers(model, adapter_name, partial(self._check_target_module_exists, config))
        super().inject_adapter(model, adapter_name, **kwargs)
        if config.id2label and config.modules_to_save:
            resize_adapter_head_copies(model, list(config.modules_to_save), adapter_name, len(config.id2label))
        for module in model.modules():
            if type(module) is ModulesToSaveWrapper:
                module.__class__ = AdapterHead  # its keys are translated and checked with the adapter's, on load

    def set_adapter(self, adapter_name: str | list[str], inference_mode: bool = False) -> None:
        """Activate an adapter; the model config then names its classes, so `pipeline` answers with them."""
        super().set_adapter(adapter_name, inference_mode=inference_mode)
        self._show_active_labels()

    def delete_adapter(self, adapter_name: str) -> None:
        super().delete_adapter(adapter_name)
        self._show_active_labels()

    def _show_active_labels(self) -> None:
        active = [name for name in self.active_adapters if name in self.peft_config]
        id2label = getattr(self.peft_config[active[0]], "id2label", None) if active else None
        if id2label:
            set_labels(self.model, id2label)

    def _check_target_module_exists(self, peft_config: AdapterConfig, key: str) -> Any:
        """PEFT's matching of `target_modules`, with `layers_to_transform` counting the blocks of a known model as
        `adapter_sites` does (Swin: across its stages); with `layers_pattern`, or on other models, the index within
        the named block list, as in PEFT."""
        layers = peft_config.layers_to_transform
        number = self._block_number(key) if layers is not None and not peft_config.layers_pattern else None
        if number is not None:
            found = check_target_module_exists(_without_layer_filter(peft_config), key)
            return found if not found else number in ([layers] if isinstance(layers, int) else layers)
        found = check_target_module_exists(peft_config, key)
        if not found or layers is None or not isinstance(peft_config.target_modules, str):
            return found  # PEFT applies layers_to_transform itself for lists of names
        index = _block_index(key, peft_config.layers_pattern)
        return index is not None and index in ([layers] if isinstance(layers, int) else layers)

    def _block_number(self, key: str) -> int | None:
        """The number of the known model's block that is, or holds, the module `key` (None outside the blocks)."""
        layout = BLOCK_LAYOUTS.get(self.get_model_config(self.model).get("model_type") or "")
        numbers = block_numbers(self.model, layout) if layout is not None else {}
        name = key
        while name and name not in numbers:
            name = name.rpartition(".")[0]
        return numbers.get(name)

    def _create_and_replace(
        self,
        peft_config: AdapterConfig,
        adapter_name: str,
        target: nn.Module,
        target_name: str,
        parent: nn.Module,
        current_key: str,
        **kwargs: Any,
    ) -> None:
        if isinstance(target, AdapterLayer):
            target.update_layer(adapter_name, peft_config)
            return
        layout = block_layout_for(self.get_model_config(self.model).get("model_type"), current_key)
        if layout is None:
            check_module_target(target, current_key, peft_config, self.model)
        new_module = AdapterWrapper(target, adapter_name, peft_config, block_layout=layout, name=current_key)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trainable until it is set active
        self._replace_module(parent, target_name, new_module, target)

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        if isinstance(new_module, BaseTunerLayer):
            super()._replace_module(parent, child_name, new_module, child)
        else:
            # Unloading: PEFT's version copies `.weight` across, which the blocks we wrap do not have; the wrapped
            # module comes back as it was.
            setattr(parent, child_name, new_module)

    def _check_merge_allowed(self) -> None:
        raise ValueError(_NO_MERGE_MESSAGE)

    def _unload_and_optionally_merge(self, merge: bool = True, **kwargs: Any) -> nn.Module:
        if merge:
            self._check_merge_allowed()
        # PEFT's unload keeps the active adapter's copy of a saved head; we give back the untouched base instead.
        for key, module in list(self.model.named_modules()):
            if isinstance(module, AuxiliaryTrainingWrapper):
                parent, _, name = _get_submodules(self.model, key)
                setattr(parent, name, module.original_module)
        return super()._unload_and_optionally_merge(merge=False, **kwargs)

    # Saving and loading: PEFT's per-method hooks, called by get/set_peft_model_state_dict for every load path
    # (transformers' `load_adapter` is routed through them too, see `loading.py`).

    @classmethod
    def _remove_adapter_name_from_key(cls, key: str, adapter_name: str) -> str:
        return remove_adapter_name_from_key(key, adapter_name)

    @classmethod
    def _remap_adapter_state_dict_for_load(
        cls, model: nn.Module, config: AdapterConfig, adapter_name: str, state_dict: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        return remap_state_dict_for_load(model, config, adapter_name, state_dict)

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any):
        """Route `adapter_names=[...]` to every adapter layer and saved head, for mixed-adapter batches."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if isinstance(adapter_names, str) or not isinstance(adapter_names, (list, tuple)):
            raise TypeError(
                "`adapter_names` must be a list with one adapter name per row of the batch, e.g. "
                f"['default', '__base__'], got {adapter_names!r}."
            )
        if self.training:
            raise ValueError("Cannot pass `adapter_names` when the model is in training mode; call `model.eval()`.")
        batch = _batch_size(args, kwargs)
        if batch is not None and len(adapter_names) != batch:
            raise ValueError(f"`adapter_names` has {len(adapter_names)} entries but the batch has {batch} rows.")
        known = set(self.peft_config)
        unknown = sorted({name for name in adapter_names if name != "__base__"} - known)
        if unknown:
            raise ValueError(
                f"Trying to infer with non-existing adapter(s): {', '.join(unknown)}. "
                f"Loaded adapters: {', '.join(sorted(known))}; use '__base__' for rows without an adapter."
            )
        widths = head_widths(self.model, set(adapter_names))
        if len(set(widths.values())) > 1:
            raise ValueError(
                "A mixed batch needs adapters that predict the same number of classes, got "
                + ", ".join(f"{name}: {width}" for name, width in sorted(widths.items()))
                + ". Run adapters with different classes in separate batches (`model.set_adapter(name)`)."
            )
        hook = partial(_adapter_names_pre_forward_hook, adapter_names=list(adapter_names))
        handles = [
            module.register_forward_pre_hook(hook, with_kwargs=True)
            for module in self.modules()
            if isinstance(module, (AdapterLayer, AuxiliaryTrainingWrapper))
        ]
        try:
            yield
        finally:
            for handle in handles:
                handle.remove()


def _without_layer_filter(config: AdapterConfig) -> AdapterConfig:
    """A shallow copy of `config` without `layers_to_transform`, for PEFT's target matching alone."""
    unfiltered = copy.copy(config)
    unfiltered.layers_to_transform = None
    return unfiltered


def _batch_size(args: tuple, kwargs: dict) -> int | None:
    for value in (*args, *kwargs.values()):
        if isinstance(value, torch.Tensor) and value.ndim > 0:
            return value.shape[0]
    return None


def _check_no_nested_layers(model: nn.Module, adapter_name: str, targeted: Any) -> None:
    """Refuse, before anything changes, targets that would put one adapter layer inside another.

    PEFT skips every module inside an existing tuner layer, so such a target would be dropped silently or fail with
    a misleading "not found". Names inside a layer are compared without its `base_layer.`.
    """
    layers = [key for key, module in model.named_modules() if isinstance(module, AdapterLayer)]
    matched: list[tuple[str, str | None]] = []  # (logical key, enclosing layer)
    for key, _ in model.named_modules():
        enclosing = next((layer for layer in layers if key.startswith(layer + ".")), None)
        if enclosing is not None:
            inner = key[len(enclosing) + 1 :]
            if not inner.startswith("base_layer."):
                continue  # the adapters' own modules
            key = f"{enclosing}.{inner[len('base_layer.') :]}"
        if key and targeted(key):
            matched.append((key, enclosing))
    for key, enclosing in matched:
        inside = next((layer for layer in layers if layer.startswith(key + ".")), None)
        if enclosing is not None or inside is not None:
            outer, inner = (enclosing, key) if enclosing is not None else (key, inside)
            raise ValueError(
                f"Adapter {adapter_name!r} targets `{key}`, but `{inner}` lies inside `{outer}` and one of them "
                "already holds adapters: adapters on a module and on a block that contains it cannot be combined. "
                "Use target_modules=None (every placement then shares one layer per block), or target modules that "
                "do not contain each other."
            )
        for other, _ in matched:
            if other.startswith(key + "."):
                raise ValueError(
                    f"Adapter {adapter_name!r} targets both `{key}` and `{other}` inside it; target one of them."
                )


def check_module_target(module: nn.Module, name: str, config: AdapterConfig, model: nn.Module) -> None:
    """Refuse, when the adapter is created, a named module an adapter cannot read its width from or add to."""
    kind = type(module).__name__
    instead = _linear_names_near(model, name)
    if isinstance(module, (nn.ModuleList, nn.ModuleDict)):
        raise TypeError(
            f"`{name}` is a {kind} (a list of modules, never called itself); target its elements, e.g. "
            f"target_modules=r'{name}\\.\\d+', or nn.Linear layers inside them{instead}."
        )
    linears = [m for m in module.modules() if isinstance(m, nn.Linear)]
    if not linears:
        raise TypeError(
            f"`{name}` ({kind}) holds no nn.Linear, so an adapter cannot tell its width; target an nn.Linear or a "
            f"module that holds them{instead}, or leave target_modules=None."
        )
    returns = _return_type(module)
    if isinstance(module, PreTrainedModel) or (isinstance(returns, type) and issubclass(returns, (ModelOutput, dict))):
        raise TypeError(
            f"`{name}` ({kind}) returns {getattr(returns, '__name__', 'a model output')}, not a tensor an adapter "
            f"can add to; target its blocks or the nn.Linear layers inside them{instead}, or leave "
            "target_modules=None."
        )
    width_in, width_out = linears[0].in_features, linears[-1].out_features
    if config.placement in PARALLEL_PLACEMENTS and width_in != width_out:
        raise ValueError(
            f"A {config.placement!r} adapter on `{name}` ({kind}) would read its {width_in}-wide input and add to its "
            f"{width_out}-wide output; target a module whose input and output widths match (e.g. a whole MLP or a "
            "square projection), or leave target_modules=None for `parallel` beside each block's FFN."
        )


def _return_type(module: nn.Module) -> Any:
    try:
        return typing.get_type_hints(type(module).forward).get("return")
    except Exception:  # unresolvable annotations: decided at the first forward instead
        return inspect.signature(type(module).forward).return_annotation


def _linear_names_near(model: nn.Module, name: str) -> str:
    """`" (in `vit.layers.0`: attention.q_proj, ..., mlp.fc2)"`: the nn.Linear layers in the nearest enclosing module
    that has any, so the error says what to target instead."""
    parts = name.split(".")
    for depth in range(len(parts), -1, -1):
        scope = ".".join(parts[:depth])
        try:
            container = model.get_submodule(scope)
        except AttributeError:
            continue
        linears = [key for key, m in container.named_modules() if isinstance(m, nn.Linear)]
        if linears:
            shown = linears if len(linears) <= 8 else [*linears[:4], "...", *linears[-3:]]
            return f" (in `{scope or type(model).__name__}`: {', '.join(shown)})"
    return ""

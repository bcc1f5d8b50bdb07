"""`AdapterModel`: the PEFT tuner that inserts bottleneck adapters into a model."""

from __future__ import annotations

import re
from contextlib import contextmanager
from functools import partial
from typing import Any

from peft.tuners.tuners_utils import BaseTuner, BaseTunerLayer, check_target_module_exists
from peft.utils import AuxiliaryTrainingWrapper, ModulesToSaveWrapper, _get_submodules
from torch import nn

from .config import AdapterConfig
from .heads import (
    classification_head_names,
    head_widths,
    model_id2label,
    resize_adapter_head_copies,
    resize_unshared_heads,
    set_labels,
)
from .layer import _NO_MERGE_MESSAGE, AdapterLayer, AdapterWrapper
from .targets import BLOCK_LAYOUTS, target_modules_for

DEFAULT_LAYERS_PATTERN = ("layers", "layer", "blocks", "h")


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
    target_module_mapping = {model_type: None for model_type in BLOCK_LAYOUTS}  # resolved per placement below

    def _prepare_adapter_config(self, peft_config: AdapterConfig, model_config: dict) -> AdapterConfig:
        if peft_config.target_modules is None:
            peft_config.target_modules = target_modules_for(model_config.get("model_type"), peft_config.placement)
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
        super().inject_adapter(model, adapter_name, **kwargs)
        config = self.peft_config[adapter_name]
        if config.id2label and config.modules_to_save:
            resize_adapter_head_copies(model, list(config.modules_to_save), adapter_name, len(config.id2label))

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

    @staticmethod
    def _check_target_module_exists(peft_config: AdapterConfig, key: str) -> Any:
        found = check_target_module_exists(peft_config, key)
        layers = peft_config.layers_to_transform
        if not found or layers is None or not isinstance(peft_config.target_modules, str):
            return found  # PEFT applies layers_to_transform itself for lists of names
        index = _block_index(key, peft_config.layers_pattern)
        return index is not None and index in ([layers] if isinstance(layers, int) else layers)

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
        new_module = AdapterWrapper(target, adapter_name, peft_config)
        if adapter_name not in self.active_adapters:
            new_module.requires_grad_(False)  # an added adapter is not trainable until it is set active
        self._replace_module(parent, target_name, new_module, target)

    def _replace_module(self, parent: nn.Module, child_name: str, new_module: nn.Module, child: nn.Module) -> None:
        if isinstance(new_module, BaseTunerLayer):
            super()._replace_module(parent, child_name, new_module, child)
        else:
            # Unloading: PEFT's version copies `.weight` across, which blocks and MLPs we wrap do not have; the
            # wrapped module comes back as it was.
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
        # One pass unwraps the outermost adapter layers; a block wrapped by "pfeiffer" can hold layers wrapped by
        # another adapter's placement, so repeat until none is left.
        while any(isinstance(module, BaseTunerLayer) for module in self.model.modules()):
            super()._unload_and_optionally_merge(merge=False, **kwargs)
        return self.model

    @contextmanager
    def _enable_peft_forward_hooks(self, *args: Any, **kwargs: Any):
        """Route `adapter_names=[...]` to every adapter layer and saved head, for mixed-adapter batches."""
        adapter_names = kwargs.pop("adapter_names", None)
        if adapter_names is None:
            yield
            return
        if self.training:
            raise ValueError("Cannot pass `adapter_names` when the model is in training mode; call `model.eval()`.")
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

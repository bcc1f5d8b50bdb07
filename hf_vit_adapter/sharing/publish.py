"""Push a model trained anywhere: save the adapter, write the project's card, upload with `push_adapter_to_hub`.

`PeftModel.push_to_hub` would upload PEFT's generic card; going through here keeps the card the project's own,
whichever path pushed the adapter.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import Any

from torch import nn

from .card import _active_adapter_config, _active_adapter_name, _hub_id_or_none, write_model_card
from .upload import push_adapter_to_hub


def push_to_hub(
    model: nn.Module,
    repo_id: str,
    *,
    image_processor: Any | None = None,
    base_model: str | None = None,
    dataset_name: str | None = None,
    metrics: dict | None = None,
    hyperparameters: dict | None = None,
    license: str | None = None,
    private: bool | None = None,
    token: str | None = None,
    commit_message: str = "Upload bottleneck adapter",
) -> str:
    """Push the active adapter of `model` (a `PeftModel`), its image processor config and the card to `repo_id`.

    `base_model` defaults to the adapter config's `base_model_name_or_path` and must be a Hub repo id, since
    `pipeline(model=repo_id)` downloads it. Returns the URL of the commit.
    """
    name = _active_adapter_name(model)
    config = _active_adapter_config(model)
    base_model = base_model or config.base_model_name_or_path
    if not base_model or _hub_id_or_none(base_model) is None:
        raise ValueError(
            f"The base model {base_model!r} is not a Hub repo id, so the pushed adapter could not be loaded by id. "
            "Pass `base_model='org/name'`, the Hub id of the model the adapter was trained on."
        )
    id2label = config.id2label or dict(getattr(getattr(model, "config", None), "id2label", None) or {})
    with tempfile.TemporaryDirectory(prefix="hf-vit-adapter-push-") as tmp:
        saved_base, config.base_model_name_or_path = config.base_model_name_or_path, base_model
        try:
            model.save_pretrained(tmp, safe_serialization=True, selected_adapters=[name])
        finally:
            config.base_model_name_or_path = saved_base
        folder = Path(tmp) if name == "default" else Path(tmp) / name
        if image_processor is not None:
            image_processor.save_pretrained(folder)
        write_model_card(
            folder,
            model=model,
            base_model=base_model,
            dataset_name=dataset_name,
            metrics=metrics or {},
            hyperparameters=hyperparameters or {},
            id2label=id2label,
            license=license,
            repo_id=repo_id,
        )
        return push_adapter_to_hub(folder, repo_id, private=private, token=token, commit_message=commit_message)

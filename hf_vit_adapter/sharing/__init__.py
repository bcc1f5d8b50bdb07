"""Sharing adapters on the Hub: the project's model card and an adapter-only, one-commit push.

- `write_model_card(output_dir, model=..., ...)` renders `model_cards/adapter_card.md` into `output_dir/README.md`.
- `push_adapter_to_hub(folder, repo_id)` uploads a saved adapter folder (allow-listed files only).
- `push_to_hub(model, repo_id)` does both for a `PeftModel` trained anywhere.
"""

from .card import write_model_card
from .publish import push_to_hub
from .upload import push_adapter_to_hub

__all__ = ["push_adapter_to_hub", "push_to_hub", "write_model_card"]

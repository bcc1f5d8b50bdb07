"""Reading adapters saved by hf-vit-adapter 0.1.0 (format 1), whose layout differs from today's (format 2).

0.1.0 wrapped the adapted modules themselves, so its keys name them: `<module>.bottleneck_down.weight` for the
attention output projection and fc2 (houlsby, ffn), the block (pfeiffer) or the MLP (parallel, which read the MLP's
input). Its `adapter_config.json` has no `format_version` and, when `target_modules` was resolved from the model type,
one of the regexes below. Loading translates both: the config to today's placement (0.1.0's `parallel` is today's
`parallel_ln`) and the keys to today's sites, so the adapter gives the same outputs as before.
"""

from __future__ import annotations

import re

_INNER = r"(?:base_layer\.)?"
# (blocks, attention output, mlp, mlp output) of 0.1.0's `targets.py`.
_LAYOUTS_0_1_0 = (
    (r"(?:.*\.)?layers\.\d+", r"attention\.o_proj", "mlp", r"mlp\.fc2"),
    (r"(?:.*\.)?encoder\.layer\.\d+", r"attention\.o_proj", "mlp", r"mlp\.fc2"),
    (r"(?:.*\.)?encoder\.layers\.\d+", r"self_attn\.out_proj", "mlp", r"mlp\.fc2"),
)
# The `target_modules` regexes 0.1.0 saved for resolved placements (pfeiffer's is today's block regex).
RESOLVED_TARGETS_0_1_0: dict[str, str] = {}
for _blocks, _attention, _mlp, _mlp_output in _LAYOUTS_0_1_0:
    RESOLVED_TARGETS_0_1_0[rf"{_blocks}\.{_INNER}(?:{_attention}|{_mlp_output})"] = "houlsby"
    RESOLVED_TARGETS_0_1_0[rf"{_blocks}\.{_INNER}{_mlp_output}"] = "ffn"
    RESOLVED_TARGETS_0_1_0[rf"{_blocks}\.{_INNER}{_mlp}"] = "parallel"

# 0.1.0's `parallel` read the FFN's input; today's `parallel` reads the stream before the FFN's LayerNorm.
PLACEMENT_0_1_0 = {"houlsby": "houlsby", "ffn": "ffn", "pfeiffer": "pfeiffer", "parallel": "parallel_ln"}

KEY_0_1_0 = re.compile(r"^(?P<module>.+)\.bottleneck_(?P<projection>down|up)\.(?P<tensor>weight|bias)$")


def is_resolved_target_0_1_0(target_modules: object) -> bool:
    """Whether `target_modules` is what 0.1.0 resolved from the model type (so today's code should resolve it)."""
    return isinstance(target_modules, str) and target_modules in RESOLVED_TARGETS_0_1_0


def has_keys_0_1_0(state_dict: dict) -> bool:
    return any(KEY_0_1_0.match(key) for key in state_dict)


def translate_keys_0_1_0(state_dict: dict, module_sites: dict[str, tuple[str, str]]) -> dict:
    """Rename 0.1.0 keys to today's layout.

    `module_sites` maps the module a 0.1.0 adapter wrapped (as a checkpoint key prefix, `base_model.model.vit.layers.0
    .mlp.fc2`) to the tuner layer that now holds that adapter and its site (`base_model.model.vit.layers.0`,
    `ffn_output`). Keys of modules not in the map are left as they are, so the strict check reports them.
    """
    translated = {}
    for key, value in state_dict.items():
        match = KEY_0_1_0.match(key)
        if match and match["module"] in module_sites:
            layer, site = module_sites[match["module"]]
            key = f"{layer}.bottleneck_{site}.{match['projection']}.{match['tensor']}"
        translated[key] = value
    return translated

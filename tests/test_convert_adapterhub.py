"""AdapterHub checkpoints in, hf_vit_adapter adapters out, with AdapterHub's outputs.

The four real checkpoints in `data/adapterhub/` (written by `adapters` 1.3.0, see its README) come with AdapterHub's
own logits. The other cases are AdapterHub-format folders written here, checked against AdapterHub's maths applied
with hooks (`adapterhub_files.adapterhub_forward`).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
import transformers as T
from adapterhub_files import (
    DATA,
    adapterhub_forward,
    fixture_config,
    layers_key,
    random_adapter,
    vit_key,
    write_adapter,
)
from peft import PeftModel
from PIL import Image
from safetensors.torch import load_file
from tiny_models import TINY, pixel_values

from hf_vit_adapter.convert import ConversionError, ConversionWarning, convert_adapterhub
from hf_vit_adapter.convert.adapterhub import map_activation
from hf_vit_adapter.convert.cli import main

TOLERANCE = 1e-5
REFERENCE_CASES = [
    "houlsby",
    "pfeiffer",
    "adapter_plus",
    "parallel",
]
LABELS = {0: "cat", 1: "dog", 2: "bird"}


def _convert(source, output_dir, **kwargs) -> Path:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", ConversionWarning)
        return convert_adapterhub(source, output_dir, **kwargs)


def _max_diff(a: torch.Tensor, b: torch.Tensor) -> float:
    return (a - b).abs().max().item()


@pytest.fixture(scope="module")
def vit_base(tmp_path_factory) -> Path:
    """The fixtures' base (saved by transformers 4.57) with an image processor, which pipeline() needs."""
    folder = tmp_path_factory.mktemp("vit-base")
    shutil.copytree(DATA / "vit-base", folder, dirs_exist_ok=True)
    T.ViTImageProcessor(size={"height": 32, "width": 32}).save_pretrained(folder)
    return folder


@pytest.fixture(scope="module")
def converted(vit_base, tmp_path_factory):
    """Each real checkpoint converted once for the module."""
    done: dict[str, Path] = {}

    def convert(name: str) -> Path:
        if name not in done:
            done[name] = _convert(DATA / name, tmp_path_factory.mktemp("out") / name, base_model=str(vit_base))
        return done[name]

    return convert


@pytest.mark.parametrize("name", REFERENCE_CASES)
def test_reference_logits_through_peft_model(name, converted, vit_base):
    reference = load_file(DATA / name / "reference.safetensors")
    base = T.ViTForImageClassification.from_pretrained(vit_base)
    model = PeftModel.from_pretrained(base, converted(name)).eval()
    with torch.no_grad():
        logits = model(pixel_values=reference["pixel_values"]).logits
        with model.disable_adapter():
            without_adapter = model(pixel_values=reference["pixel_values"]).logits
    assert _max_diff(logits, reference["logits"]) <= TOLERANCE
    assert _max_diff(without_adapter, reference["logits"]) > 1e-2  # the adapter matters: the check can fail
    assert model.config.id2label == LABELS


@pytest.mark.parametrize("name", REFERENCE_CASES)
def test_reference_logits_through_auto_model(name, converted):
    reference = load_file(DATA / name / "reference.safetensors")
    model = T.AutoModelForImageClassification.from_pretrained(converted(name)).eval()
    with torch.no_grad():
        logits = model(pixel_values=reference["pixel_values"]).logits
    assert _max_diff(logits, reference["logits"]) <= TOLERANCE
    assert model.config.id2label == LABELS


def test_output_folder_holds_safetensors_and_names_a_loadable_base(converted, vit_base):
    output = converted("houlsby")
    assert sorted(path.name for path in output.iterdir()) == [
        "README.md",
        "adapter_config.json",
        "adapter_model.safetensors",
        "preprocessor_config.json",
    ]
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str(vit_base.resolve())
    assert (config["placement"], config["bottleneck_size"], config["non_linearity"]) == ("houlsby", 4, "swish")
    assert config["id2label"] == {"0": "cat", "1": "dog", "2": "bird"}
    saved = load_file(output / "adapter_model.safetensors")
    assert sum(".bottleneck_" in key and ".down." in key for key in saved) == 2 * 2 * 2  # 2 blocks x 2 sites x w/b
    assert any("classifier" in key for key in saved)


def test_pipeline_answers_with_adapterhub_class_names(converted):
    output = converted("pfeiffer")
    image = Image.fromarray(np.random.default_rng(0).integers(0, 255, (40, 48, 3), dtype=np.uint8))
    classifier = T.pipeline("image-classification", model=str(output), top_k=None)
    model = T.AutoModelForImageClassification.from_pretrained(output).eval()
    with torch.no_grad():
        scores = model(**classifier.image_processor(image, return_tensors="pt")).logits.softmax(-1)[0]
    result = sorted(classifier(image), key=lambda item: -item["score"])
    assert [item["label"] for item in result] == [LABELS[int(i)] for i in scores.argsort(descending=True)]
    assert result[0]["score"] == pytest.approx(scores.max().item(), rel=1e-4)


# --- the installed console script ---------------------------------------------------------------------------------


def _script() -> str:
    beside_python = Path(sys.executable).parent / "hf-vit-adapter-convert"
    script = str(beside_python) if beside_python.exists() else shutil.which("hf-vit-adapter-convert")
    if not script:
        pytest.skip("hf-vit-adapter-convert is not installed here (pip install -e . installs it)")
    return script


def _run_script(args: list[str], cwd: Path, tmp_path: Path) -> subprocess.CompletedProcess:
    env = dict(os.environ, HF_HUB_OFFLINE="1", HF_HOME=str(tmp_path / "hf_home"), OMP_NUM_THREADS="1")
    return subprocess.run([_script(), *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=300)


def test_console_script_uses_the_saved_model_name(tmp_path):
    """`hf-vit-adapter-convert pfeiffer OUT` run beside the base folder that AdapterHub's `model_name` names."""
    output = tmp_path / "out"
    result = _run_script(["pfeiffer", str(output)], cwd=DATA, tmp_path=tmp_path)
    assert result.returncode == 0, result.stderr[-3000:]
    assert "Traceback" not in result.stderr
    assert "hf-vit-adapter-convert: warning: The base model" in result.stderr  # this base has no image processor
    assert not list(output.glob("*.bin"))
    config = json.loads((output / "adapter_config.json").read_text())
    assert config["base_model_name_or_path"] == str((DATA / "vit-base").resolve())
    reference = load_file(DATA / "pfeiffer" / "reference.safetensors")
    model = T.AutoModelForImageClassification.from_pretrained(output).eval()
    with torch.no_grad():
        assert _max_diff(model(pixel_values=reference["pixel_values"]).logits, reference["logits"]) <= TOLERANCE


def test_cli_refuses_a_base_of_another_width_in_one_line(tmp_path, capsys):
    wide = tmp_path / "wide"
    T.ViTForImageClassification(T.ViTConfig(**{**TINY, "hidden_size": 48})).save_pretrained(wide)
    output = tmp_path / "out"
    capsys.readouterr()
    with pytest.raises(SystemExit) as exit_info:
        main([str(DATA / "houlsby"), str(output), "--base_model", str(wide)])
    assert exit_info.value.code == 2
    assert capsys.readouterr().err.strip().splitlines() == [
        "hf-vit-adapter-convert: error: The base model's width (48) does not fit the adapter, which was trained on "
        "width 32; pass the base it was trained on with --base_model."
    ]
    assert not output.exists()


def test_cli_usage_errors_are_one_line(capsys):
    with pytest.raises(SystemExit) as exit_info:
        main([])
    assert exit_info.value.code == 2
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("hf-vit-adapter-convert: error: the following arguments")


# --- AdapterHub folders written here ------------------------------------------------------------------------------


def _adapters(blocks, config, name, seed, key=vit_key, bottleneck=4, scale=0.5):
    """Random adapters for `blocks`: `(weights by AdapterHub key, params by (block, location))`."""
    generator = torch.Generator().manual_seed(seed)
    locations = ["attention", "output"] if config["mh_adapter"] else ["output"]
    by_site = {
        (block, location): random_adapter(32, bottleneck, generator, scale)
        for block in blocks
        for location in locations
    }
    weights = {
        key(block, location, name, param): value
        for (block, location), params in by_site.items()
        for param, value in params.items()
    }
    return weights, by_site


def _random_head(num_labels: int, seed: int) -> dict:
    generator = torch.Generator().manual_seed(seed)
    return {
        "weight": torch.randn(num_labels, 32, generator=generator),
        "bias": torch.randn(num_labels, generator=generator),
    }


def _with_head(model: torch.nn.Module, head: dict) -> torch.nn.Module:
    model.classifier = torch.nn.Linear(head["weight"].shape[1], head["weight"].shape[0])
    with torch.no_grad():
        model.classifier.weight.copy_(head["weight"])
        model.classifier.bias.copy_(head["bias"])
    return model.eval()


def _reference_logits(model, blocks, adapters, config) -> torch.Tensor:
    with torch.no_grad(), adapterhub_forward(blocks, adapters, config):
        return model(pixel_values=pixel_values(4)).logits


def _our_logits(output_dir) -> torch.Tensor:
    model = T.AutoModelForImageClassification.from_pretrained(output_dir).eval()
    with torch.no_grad():
        return model(pixel_values=pixel_values(4)).logits


def _saved_config(output_dir) -> dict:
    return json.loads((Path(output_dir) / "adapter_config.json").read_text())


def test_safetensors_input_leave_out_and_own_labels(tmp_path, vit_base):
    config = fixture_config("pfeiffer", leave_out=[0])
    weights, adapters = _adapters([1], config, "birds", seed=3)
    head = {**_random_head(5, seed=4), "label2id": {"wren": 3, "owl": 0, "jay": 4, "tit": 1, "kite": 2}}
    source = write_adapter(
        tmp_path / "src", "birds", config, weights, model_name=str(vit_base), safetensors=True, head=head
    )
    assert sorted(p.name for p in source.iterdir()) == [
        "adapter.safetensors",
        "adapter_config.json",
        "head_config.json",
        "model_head.safetensors",
    ]

    output = _convert(source, tmp_path / "out")

    saved = _saved_config(output)
    assert (saved["placement"], saved["layers_to_transform"]) == ("pfeiffer", [1])
    assert saved["id2label"] == {"0": "owl", "1": "tit", "2": "kite", "3": "wren", "4": "jay"}
    base = _with_head(T.ViTForImageClassification.from_pretrained(vit_base), head)
    assert _max_diff(_our_logits(output), _reference_logits(base, base.vit.layers, adapters, config)) <= TOLERANCE


@pytest.mark.parametrize(
    "placement, config",
    [
        ("ffn", fixture_config("houlsby", mh_adapter=False, residual_before_ln=False)),
        # AdapterPlusConfig's flags with a constant scale: the block output, exactly our pfeiffer.
        ("pfeiffer", fixture_config("adapter_plus", scaling=0.5, stochastic_depth=0.0)),
        ("houlsby", fixture_config("houlsby", non_linearity="Swish", scaling=2.0, residual_before_ln=False)),
    ],
    ids=["ffn_only", "adapter_plus_flags_constant_scale", "houlsby_scaled"],
)
def test_bottleneck_flags_that_map_exactly(tmp_path, vit_base, placement, config):
    weights, adapters = _adapters([0, 1], config, "task", seed=5)
    head = _random_head(3, seed=6)
    source = write_adapter(tmp_path / "src", "task", config, weights, model_name=str(vit_base), head=head)

    output = _convert(source, tmp_path / "out")

    assert _saved_config(output)["placement"] == placement
    reference_config = {**config, "non_linearity": config["non_linearity"].lower()}
    base = _with_head(T.ViTForImageClassification.from_pretrained(vit_base), head)
    expected = _reference_logits(base, base.vit.layers, adapters, reference_config)
    assert _max_diff(_our_logits(output), expected) <= TOLERANCE


def test_dropout_is_kept_with_a_warning(tmp_path, vit_base):
    config = fixture_config("pfeiffer", dropout=0.1)
    weights, adapters = _adapters([0, 1], config, "drop", seed=20)
    source = write_adapter(
        tmp_path / "src", "drop", config, weights, model_name=str(vit_base), head=_random_head(3, 21)
    )

    with pytest.warns(ConversionWarning, match=r"dropout=0.1 is kept, .* eval mode are identical"):
        output = convert_adapterhub(source, tmp_path / "out")

    assert _saved_config(output)["dropout"] == 0.1
    base = _with_head(T.ViTForImageClassification.from_pretrained(vit_base), _random_head(3, 21))
    assert _max_diff(_our_logits(output), _reference_logits(base, base.vit.layers, adapters, config)) <= TOLERANCE


@pytest.mark.parametrize("scaling, shape", [("learned", (1,)), ("channel", (32,))])
def test_trainable_scales_and_drop_path(tmp_path, vit_base, scaling, shape):
    """AdapterHub's `scaling` tensor becomes our trainable scale; `stochastic_depth` our adapter `drop_path`."""
    config = fixture_config("adapter_plus", scaling=scaling, stochastic_depth=0.1)
    weights, adapters = _adapters([0, 1], config, "plus", seed=22)
    generator = torch.Generator().manual_seed(23)
    for block in (0, 1):
        adapters[(block, "output")]["scaling"] = scale = torch.randn(shape, generator=generator) + 1.0
        weights[vit_key(block, "output", "plus", "scaling")] = scale
    head = _random_head(3, 24)
    source = write_adapter(tmp_path / "src", "plus", config, weights, model_name=str(vit_base), head=head)

    output = _convert(source, tmp_path / "out")

    saved = _saved_config(output)
    assert (saved["placement"], saved["scaling"], saved["drop_path"]) == ("pfeiffer", scaling, 0.1)
    base = _with_head(T.ViTForImageClassification.from_pretrained(vit_base), head)
    assert _max_diff(_our_logits(output), _reference_logits(base, base.vit.layers, adapters, config)) <= TOLERANCE


def test_legacy_gelu_without_a_head_uses_the_base_head(tmp_path, vit_base):
    """A config saved before `version` existed reads "gelu" as the tanh approximation; no head keeps the base's.
    The keys are those of a bare `ViTModel` given adapters with `adapters.init` (no `vit.` prefix)."""
    config = fixture_config("houlsby", non_linearity="gelu")
    key = lambda *args: vit_key(*args, prefix="")  # noqa: E731
    weights, adapters = _adapters([0, 1], config, "old", seed=7, key=key, scale=1.5)
    assert "encoder.layer.0.attention_adapters.adapters.old.adapter_down.0.weight" in weights
    source = write_adapter(
        tmp_path / "src", "old", config, weights, model_name=str(vit_base), model_class="ViTModel", version=None
    )

    with pytest.warns(ConversionWarning, match="no prediction head"):
        output = convert_adapterhub(source, tmp_path / "out")

    saved = _saved_config(output)
    assert (saved["non_linearity"], saved["modules_to_save"], saved["id2label"]) == ("gelu_new", [], None)
    assert not any("classifier" in key for key in load_file(output / "adapter_model.safetensors"))
    base = T.ViTForImageClassification.from_pretrained(vit_base).eval()  # its own head, LABEL_0..2
    ours = _our_logits(output)
    tanh_gelu = {**config, "non_linearity": "gelu_new"}
    assert _max_diff(ours, _reference_logits(base, base.vit.layers, adapters, tanh_gelu)) <= TOLERANCE
    # The last block's output (before the final LayerNorm squashes it) tells the two gelus apart.
    model = T.AutoModelForImageClassification.from_pretrained(output).eval()
    with torch.no_grad(), adapterhub_forward(base.vit.layers, adapters, tanh_gelu):
        ours = model(pixel_values=pixel_values(4), output_hidden_states=True).hidden_states[-1]
        expected = base(pixel_values=pixel_values(4), output_hidden_states=True).hidden_states[-1]
    with torch.no_grad(), adapterhub_forward(base.vit.layers, adapters, config):
        exact_gelu = base(pixel_values=pixel_values(4), output_hidden_states=True).hidden_states[-1]
    assert _max_diff(ours, expected) <= TOLERANCE * expected.abs().max().item()
    assert _max_diff(ours, exact_gelu) > 100 * TOLERANCE * expected.abs().max().item()


@pytest.mark.parametrize(
    "name, versioned, expected",
    [
        ("gelu", True, "gelu"),
        ("gelu", False, "gelu_new"),
        ("gelu_orig", False, "gelu"),
        ("gelu_new", False, "gelu_new"),
        ("Swish", True, "swish"),
        ("leakyrelu", True, "leaky_relu"),
        ("relu", False, "relu"),
    ],
)
def test_activation_names_map_to_act2fn(name, versioned, expected):
    assert map_activation(name, versioned=versioned) == expected


def test_unknown_activation_is_refused():
    with pytest.raises(ConversionError, match="Unsupported non_linearity 'gelu_orig'"):
        map_activation("gelu_orig", versioned=True)


@pytest.fixture(scope="module")
def clip_base(tmp_path_factory) -> Path:
    """A tiny full CLIP checkpoint (1 text layer, 2 vision blocks), as `openai/clip-vit-*` are."""
    folder = tmp_path_factory.mktemp("clip-base")
    torch.manual_seed(0)
    text = dict(TINY, num_hidden_layers=1, vocab_size=99, bos_token_id=0, eos_token_id=1, pad_token_id=1)
    for key in ("image_size", "patch_size"):
        text.pop(key)
    T.CLIPModel(T.CLIPConfig(vision_config=TINY, text_config=text)).save_pretrained(folder)
    return folder


def _vision_states(output_dir, clip_base, adapters, config):
    """(our vision tower's last hidden state, AdapterHub's) for the converted CLIP adapter."""
    ours = T.AutoModelForImageClassification.from_pretrained(output_dir).eval()
    reference = T.CLIPVisionModel.from_pretrained(clip_base).eval()
    with torch.no_grad():
        state = ours.vision_model(pixel_values=pixel_values(4)).last_hidden_state
        with adapterhub_forward(reference.encoder.layers, adapters, config):
            expected = reference(pixel_values=pixel_values(4)).last_hidden_state
    return state, expected


def test_clip_vision_model_adapter(tmp_path, clip_base):
    config = fixture_config("houlsby", leave_out=[1])
    key = lambda *args: layers_key(*args, prefix="vision_model.")  # noqa: E731
    weights, adapters = _adapters([0], config, "clip", seed=8, key=key)
    source = write_adapter(
        tmp_path / "src",
        "clip",
        config,
        weights,
        model_name=str(clip_base),
        model_type="clip_vision_model",
        model_class="CLIPVisionModel",
    )

    output = _convert(source, tmp_path / "out")

    assert _saved_config(output)["layers_to_transform"] == [0]
    state, expected = _vision_states(output, clip_base, adapters, config)
    assert _max_diff(state, expected) <= TOLERANCE


def test_full_clip_model_leaves_out_the_text_tower_and_counts_its_layers(tmp_path, clip_base):
    """AdapterHub numbers CLIPModel's layers text first: with 1 text layer, leave_out=[1] is vision block 0."""
    config = fixture_config("pfeiffer", leave_out=[1])
    vision, adapters = _adapters(
        [1], config, "clip", seed=9, key=lambda *args: layers_key(*args, prefix="vision_model.")
    )
    text, _ = _adapters([0], config, "clip", seed=10, key=lambda *args: layers_key(*args, prefix="text_model."))
    source = write_adapter(
        tmp_path / "src",
        "clip",
        config,
        {**text, **vision},
        model_name=str(clip_base),
        model_type="clip",
        model_class="CLIPModel",
    )

    with pytest.warns(ConversionWarning, match="Left out 4 tensors of the CLIP text tower"):
        output = convert_adapterhub(source, tmp_path / "out")

    assert _saved_config(output)["layers_to_transform"] == [1]
    state, expected = _vision_states(output, clip_base, adapters, config)
    assert _max_diff(state, expected) <= TOLERANCE


@pytest.fixture(scope="module")
def beit_base(tmp_path_factory) -> Path:
    folder = tmp_path_factory.mktemp("beit-base")
    torch.manual_seed(0)
    T.BeitForImageClassification(T.BeitConfig(**TINY, num_labels=3)).save_pretrained(folder)  # layer scale 0.1
    return folder


def _beit_source(folder, config, beit_base, seed):
    key = lambda *args: layers_key(*args, prefix="beit.")  # noqa: E731
    weights, adapters = _adapters([0, 1], config, "beit", seed=seed, key=key)
    head = _random_head(3, seed=seed + 1)
    write_adapter(
        folder,
        "beit",
        config,
        weights,
        model_name=str(beit_base),
        model_type="beit",
        model_class="BeitAdapterModel",
        head=head,
    )
    return adapters, head


def test_beit_block_output_adapter(tmp_path, beit_base):
    config = fixture_config("pfeiffer")
    adapters, head = _beit_source(tmp_path / "src", config, beit_base, seed=11)

    output = _convert(tmp_path / "src", tmp_path / "out")

    base = _with_head(T.BeitForImageClassification.from_pretrained(beit_base), head)
    assert _max_diff(_our_logits(output), _reference_logits(base, base.beit.layers, adapters, config)) <= TOLERANCE


def test_beit_adapter_before_layer_scale_is_refused(tmp_path, beit_base):
    _beit_source(tmp_path / "src", fixture_config("houlsby"), beit_base, seed=12)
    with pytest.raises(ConversionError, match=r"layer scale \(layer_scale_init_value=0.1\)"):
        convert_adapterhub(tmp_path / "src", tmp_path / "out")
    assert not (tmp_path / "out").exists()


def test_hub_repo_source(hub, repo_name, tmp_path, vit_base, converted):
    from huggingface_hub import HfApi

    repo_id = f"tester/{repo_name}"
    HfApi().create_repo(repo_id)
    HfApi().upload_folder(folder_path=DATA / "pfeiffer", repo_id=repo_id, ignore_patterns=["reference.safetensors"])

    output = _convert(repo_id, tmp_path / "out", base_model=str(vit_base))

    ours, local = (load_file(folder / "adapter_model.safetensors") for folder in (output, converted("pfeiffer")))
    assert ours.keys() == local.keys()
    assert all(torch.equal(ours[key], local[key]) for key in ours)


# --- refusals: one line naming the setting, nothing written ---------------------------------------------------------


def _houlsby_source(folder: Path, vit_base, config=None, head=True, **kwargs) -> Path:
    config = config or fixture_config("houlsby")
    weights, _ = _adapters([0, 1], config, "x", seed=13)
    return write_adapter(
        folder, "x", config, weights, model_name=str(vit_base), head=_random_head(3, 14) if head else None, **kwargs
    )


REFUSED_CONFIGS = {
    "gating": ({"use_gating": True}, "Unsupported setting use_gating=True: a learned gate"),
    "phm": ({"phm_layer": True}, "Unsupported setting phm_layer=True: PHM"),
    "ln_before": ({"ln_before": True}, "Unsupported setting ln_before=True: a LayerNorm inside the adapter"),
    "ln_after": ({"ln_after": True}, "Unsupported setting ln_after=True: a LayerNorm inside the adapter"),
    "lora": ({"architecture": "lora"}, "Unsupported AdapterHub architecture 'lora'"),
    "post_add": ({"original_ln_before": True, "residual_before_ln": "post_add"}, "residual_before_ln='post_add'"),
    "lost_residual": ({"original_ln_after": False}, "original_ln_after=False: the block's residual"),
    "attention_only": ({"output_adapter": False}, "output_adapter=False with mh_adapter=True"),
    "attention_after_residual": ({"original_ln_before": True}, "mh_adapter=True with original_ln_before=True"),
    "parallel_attention": ({"is_parallel": True}, "mh_adapter=True with is_parallel=True"),
    "unknown_setting": ({"new_thing": 1}, "Unsupported AdapterHub setting 'new_thing'"),
    "unknown_scaling": ({"scaling": "gated"}, "Unsupported setting scaling='gated'"),
}


@pytest.mark.parametrize("case", sorted(REFUSED_CONFIGS))
def test_unsupported_configs_are_refused(tmp_path, vit_base, case):
    overrides, message = REFUSED_CONFIGS[case]
    source = _houlsby_source(tmp_path / "src", vit_base, fixture_config("houlsby", **overrides))
    with pytest.raises(ConversionError) as error:
        convert_adapterhub(source, tmp_path / "out")
    assert message in str(error.value) and "\n" not in str(error.value)
    assert not (tmp_path / "out").exists()


def test_weights_that_do_not_match_the_config_are_refused(tmp_path, vit_base):
    weights, _ = _adapters([0, 1], fixture_config("pfeiffer"), "x", seed=25)  # FFN-output adapters only
    source = write_adapter(tmp_path / "src", "x", fixture_config("houlsby"), weights, model_name=str(vit_base))
    with pytest.raises(ConversionError, match="block 0 hold output_adapters, but the config describes attention_"):
        convert_adapterhub(source, tmp_path / "out")
    weights[vit_key(0, "output", "x", "gate.weight")] = torch.zeros(1, 32)
    write_adapter(tmp_path / "src", "x", fixture_config("pfeiffer"), weights, model_name=str(vit_base))
    with pytest.raises(ConversionError, match=r"Unexpected tensor 'vit.encoder.layer.0.output.output_adapters.*gate"):
        convert_adapterhub(source, tmp_path / "out")


def test_fusion_is_refused(tmp_path, vit_base):
    source = _houlsby_source(tmp_path / "src", vit_base)
    (source / "adapter_fusion_config.json").write_text("{}")
    with pytest.raises(ConversionError, match="an AdapterFusion layer"):
        convert_adapterhub(source, tmp_path / "out")


def test_per_layer_reduction_factors_are_refused(tmp_path, vit_base):
    config = fixture_config("pfeiffer", reduction_factor={"0": 8, "default": 16})
    weights, _ = _adapters([0], config, "x", seed=16, bottleneck=4)
    more, _ = _adapters([1], config, "x", seed=17, bottleneck=2)
    source = write_adapter(tmp_path / "src", "x", config, {**weights, **more}, model_name=str(vit_base))
    with pytest.raises(ConversionError, match=r"reduction_factor=\{'0': 8, 'default': 16\}: .* \(2, 4\)"):
        convert_adapterhub(source, tmp_path / "out")


@pytest.mark.parametrize(
    "overrides, message",
    [
        ({"layers": 2}, "layers=2 (a multi-layer head)"),
        ({"multilabel": True}, "multilabel=True"),
        ({"use_pooler": True}, "use_pooler=True"),
        ({"head_type": "classification"}, "head_type='classification'"),
    ],
)
def test_unsupported_heads_are_refused(tmp_path, vit_base, overrides, message):
    config = fixture_config("houlsby")
    weights, _ = _adapters([0, 1], config, "x", seed=18)
    source = write_adapter(
        tmp_path / "src", "x", config, weights, model_name=str(vit_base), head={**_random_head(3, 19), **overrides}
    )
    with pytest.raises(ConversionError, match=re.escape(message)):
        convert_adapterhub(source, tmp_path / "out")


def test_base_of_another_depth_is_refused(tmp_path, vit_base):
    deep = tmp_path / "deep"
    T.ViTForImageClassification(T.ViTConfig(**{**TINY, "num_hidden_layers": 3})).save_pretrained(deep)
    source = _houlsby_source(tmp_path / "src", vit_base)
    with pytest.raises(ConversionError) as error:
        convert_adapterhub(source, tmp_path / "out", base_model=str(deep))
    assert str(error.value).startswith(
        "The base model's depth (3 blocks) does not fit the adapter: it has adapters in blocks 0, 1 where AdapterHub "
        "would have put them in 0, 1, 2"
    )


def test_base_of_another_model_type_is_refused(tmp_path, vit_base, clip_base):
    source = _houlsby_source(tmp_path / "src", vit_base)
    with pytest.raises(ConversionError, match="trained on a 'vit' model but the base is 'clip'"):
        convert_adapterhub(source, tmp_path / "out", base_model=str(clip_base))
    deit = _houlsby_source(tmp_path / "deit", vit_base, model_type="deit")
    with pytest.raises(ConversionError, match="Unsupported model type 'deit'"):
        convert_adapterhub(deit, tmp_path / "out")


def test_existing_output_is_left_alone(tmp_path, vit_base):
    source = _houlsby_source(tmp_path / "src", vit_base)
    (tmp_path / "out").mkdir()
    (tmp_path / "out" / "keep.txt").write_text("mine")
    with pytest.raises(ConversionError, match="is not an empty folder"):
        convert_adapterhub(source, tmp_path / "out")
    assert [p.name for p in (tmp_path / "out").iterdir()] == ["keep.txt"]


class _Payload:
    """A pickle that would write a file when unpickled without `weights_only=True`."""

    def __init__(self, path: Path):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (self.path, "pwned"))


def test_pickles_are_read_weights_only(tmp_path, vit_base):
    source = _houlsby_source(tmp_path / "src", vit_base, head=False)
    marker = tmp_path / "marker"
    torch.save({"x": _Payload(marker)}, source / "pytorch_adapter.bin")
    with pytest.raises(ConversionError, match="as plain weights"):
        convert_adapterhub(source, tmp_path / "out")
    assert not marker.exists()

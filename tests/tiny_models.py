"""Tiny ViT-family models built from configs, so tests download nothing."""

from __future__ import annotations

import pytest
import torch
import transformers as T

IMAGE_SIZE = 32
TINY = dict(
    hidden_size=32,
    num_hidden_layers=2,
    num_attention_heads=2,
    intermediate_size=37,
    image_size=IMAGE_SIZE,
    patch_size=4,
)
# DINOv2 sizes its MLP by `mlp_ratio`, not `intermediate_size`.
DINOV2 = dict(
    hidden_size=32, num_hidden_layers=2, num_attention_heads=2, mlp_ratio=1, image_size=IMAGE_SIZE, patch_size=4
)
# Swin: two stages (2 blocks, then 1), so blocks sit at `encoder.layers.N.blocks.M` with two widths (16, 32).
SWIN = dict(image_size=IMAGE_SIZE, patch_size=4, embed_dim=16, depths=[2, 1], num_heads=[2, 2], window_size=4)
_TEXT = dict(
    hidden_size=32,
    num_hidden_layers=1,
    num_attention_heads=2,
    intermediate_size=37,
    vocab_size=99,
    bos_token_id=0,
    eos_token_id=1,
    pad_token_id=1,
)


@pytest.fixture(scope="module", autouse=True)
def one_thread():
    """Tiny matrices run faster on one thread, and much faster when other processes share the cores. Import it into
    a test module (`from tiny_models import one_thread`) to use it there."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def vit_config(**overrides) -> T.ViTConfig:
    return T.ViTConfig(**{**TINY, **overrides})


def tiny_vit(num_labels: int = 3, seed: int = 0, **overrides) -> T.ViTForImageClassification:
    torch.manual_seed(seed)
    return T.ViTForImageClassification(vit_config(num_labels=num_labels, **overrides)).eval()


def pixel_values(batch: int = 2, seed: int = 1) -> torch.Tensor:
    generator = torch.Generator().manual_seed(seed)
    return torch.randn(batch, 3, IMAGE_SIZE, IMAGE_SIZE, generator=generator)


def family_models() -> dict[str, torch.nn.Module]:
    """One tiny model per family we resolve target modules for, keyed by a readable name."""
    torch.manual_seed(0)
    clip = T.CLIPConfig(vision_config=TINY, text_config=_TEXT)
    siglip = T.SiglipConfig(vision_config=TINY, text_config=_TEXT)
    return {
        "ViTForImageClassification": T.ViTForImageClassification(vit_config(num_labels=3)),
        "ViTModel": T.ViTModel(vit_config()),
        "DeiTForImageClassification": T.DeiTForImageClassification(T.DeiTConfig(**TINY, num_labels=3)),
        "DeiTForImageClassificationWithTeacher": T.DeiTForImageClassificationWithTeacher(
            T.DeiTConfig(**TINY, num_labels=3)
        ),
        "Dinov2Model": T.Dinov2Model(T.Dinov2Config(**DINOV2)),
        "Dinov2ForImageClassification": T.Dinov2ForImageClassification(T.Dinov2Config(**DINOV2, num_labels=3)),
        "CLIPVisionModel": T.CLIPVisionModel(T.CLIPVisionConfig(**TINY)),
        "CLIPVisionModelWithProjection": T.CLIPVisionModelWithProjection(T.CLIPVisionConfig(**TINY)),
        "CLIPForImageClassification": T.CLIPForImageClassification(clip),
        "SiglipVisionModel": T.SiglipVisionModel(T.SiglipVisionConfig(**TINY)),
        "SiglipForImageClassification": T.SiglipForImageClassification(siglip),
        "SwinForImageClassification": T.SwinForImageClassification(T.SwinConfig(**SWIN, num_labels=3)),
        "Swinv2Model": T.Swinv2Model(T.Swinv2Config(**SWIN)),
        "BeitForImageClassification": T.BeitForImageClassification(T.BeitConfig(**TINY, num_labels=3)),
        "Data2VecVisionModel": T.Data2VecVisionModel(T.Data2VecVisionConfig(**TINY)),
    }

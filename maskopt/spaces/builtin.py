"""The built-in spaces: `default` for a GPU, `cpu` for a demo on a laptop's cores."""

from __future__ import annotations

from typing import Any

from maskopt.data.labels import TRAIN_OLD_AGES

# For a GPU: ImageNet-pretrained backbones at 224 px (timm downloads the weights once).
DEFAULT: dict[str, Any] = {
    "name": "default",
    "description": "GPU: pretrained resnet34 / efficientnet_b0 / b3 / convnext_tiny at 224 px",
    "epochs": 12,
    "params": {
        "backbone": ["resnet34", "efficientnet_b0", "efficientnet_b3", "convnext_tiny"],
        "pretrained": True,
        "image_size": 224,
        "batch_size": [32, 64],
        "optimizer": ["adamw", "adam", "sgd"],
        "lr": {"low": 1.0e-5, "high": 3.0e-3, "log": True},
        "weight_decay": {"low": 1.0e-6, "high": 1.0e-2, "log": True},
        "scheduler": ["cosine", "step", "plateau"],
        "warmup_epochs": {"low": 0, "high": 2},
        "freeze_epochs": [0, 1],
        "loss": ["cross_entropy", "focal", "label_smoothing", "f1"],
        "focal_gamma": {"low": 0.5, "high": 4.0, "when": {"loss": "focal"}},
        "label_smoothing": {"low": 0.02, "high": 0.3, "when": {"loss": "label_smoothing"}},
        "class_weights": [None, "balanced"],
        "dropout": {"low": 0.0, "high": 0.5},
        "head": ["single", "multi"],
        "augment": [1, 2, 3],
        # Per-image CPU augmentation in the loader processes, or the same strengths as kornia
        # batch ops on the GPU: each worker measures which trains faster, once per backbone,
        # batch and strength (maskopt.trainer.placement; on a CPU device: cpu).
        "augment_on": "auto",
        # The 2021 top entries used CutMix; whether mixing helps at 12 epochs is the search's call.
        "mix": ["none", "mixup", "cutmix"],
        "mix_alpha": {"low": 0.2, "high": 1.0, "when": {"mix": ["mixup", "cutmix"]}},
        # Competition trick: call people a little under 60 "old" while training, so the rare
        # 60+ class gets more examples; validation always scores the true 60 boundary.
        "old_age": list(TRAIN_OLD_AGES),
    },
}

# For 2 CPU cores: tiny backbones from scratch at 48 px, 3 epochs. Sized so that
# `maskopt search --space cpu --trials 20 --folds 3` on 120 synthetic people takes minutes
# (mobilenetv3_small_050 trains ~2.5x faster than resnet10t on the CPU, BENCHMARKS.md trainer).
CPU: dict[str, Any] = {
    "name": "cpu",
    "description": "CPU demo: mobilenetv3_small_050 / resnet10t from scratch at 48 px, 3 epochs",
    "epochs": 3,
    "params": {
        "backbone": ["mobilenetv3_small_050", "resnet10t"],
        "pretrained": False,
        "image_size": 48,
        "batch_size": [32, 64],
        "optimizer": ["adamw", "adam"],
        "lr": {"low": 3.0e-4, "high": 1.0e-2, "log": True},
        "weight_decay": {"low": 1.0e-5, "high": 1.0e-2, "log": True},
        "scheduler": ["cosine", "none"],
        "loss": ["cross_entropy", "focal", "label_smoothing"],
        "focal_gamma": {"low": 0.5, "high": 3.0, "when": {"loss": "focal"}},
        "label_smoothing": {"low": 0.02, "high": 0.2, "when": {"loss": "label_smoothing"}},
        "class_weights": [None, "balanced"],
        "dropout": {"low": 0.0, "high": 0.3},
        "head": ["single", "multi"],
        "augment": [0, 1],
        "old_age": list(TRAIN_OLD_AGES),
    },
}

BUILTIN = {"default": DEFAULT, "cpu": CPU}

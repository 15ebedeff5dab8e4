"""Model checkpoints: ``torch.save`` of a plain dict, loaded with ``weights_only=True``.

A checkpoint carries the model configuration, so the model is rebuilt from the file alone:

    {"format": "vcfbert-checkpoint", "format_version": 1, "vcfbert_version": str,
     "model_config": dict, "model": state_dict, "optimizer": state_dict | None,
     "scheduler": state_dict | None, "rng": {"torch": ByteTensor, "numpy": dict},
     "epoch": int, "step": int, "train_config": dict, "metrics": dict, "extra": dict}
"""

from __future__ import annotations

import os
from typing import Any

import torch

from . import __version__
from .atomic import atomic_path
from .errors import InputError, IntegrityError
from .model import ModelConfig, VcfBert

FORMAT = "vcfbert-checkpoint"
FORMAT_VERSION = 1


def save_checkpoint(path: str | os.PathLike[str], model: VcfBert, *, epoch: int, step: int,
                    optimizer: torch.optim.Optimizer | None = None,
                    scheduler: Any | None = None, train_config: dict | None = None,
                    metrics: dict | None = None, rng: dict | None = None,
                    extra: dict | None = None) -> None:
    """Write a checkpoint atomically."""
    state = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "vcfbert_version": __version__,
        "model_config": model.cfg.to_dict(),
        "model": {k: v.detach().cpu() for k, v in model.state_dict().items()},
        "optimizer": optimizer.state_dict() if optimizer is not None else None,
        "scheduler": scheduler.state_dict() if scheduler is not None else None,
        "rng": rng or {},
        "epoch": int(epoch),
        "step": int(step),
        "train_config": train_config or {},
        "metrics": metrics or {},
        "extra": extra or {},
    }
    with atomic_path(path) as tmp:
        torch.save(state, tmp)


def load_checkpoint(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a checkpoint safely (``weights_only=True``: no code runs on load)."""
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as exc:  # noqa: BLE001 - torch raises many types for corrupt files
        raise IntegrityError(f"{path}: unreadable checkpoint ({exc.__class__.__name__}); "
                             "delete it and re-run to rebuild it") from exc
    if not isinstance(state, dict) or state.get("format") != FORMAT:
        raise IntegrityError(f"{path}: not a vcfbert checkpoint")
    if int(state.get("format_version", -1)) != FORMAT_VERSION:
        raise IntegrityError(f"{path}: checkpoint format {state.get('format_version')} is not "
                             f"{FORMAT_VERSION}")
    return state


def model_from_checkpoint(state: dict[str, Any], copying_states: int = 0) -> VcfBert:
    """Rebuild the model described by a loaded checkpoint, with its weights.

    ``copying_states`` > 0 replaces the checkpoint's number of copying states (``k_keep``) for
    inference (``impute.copying_states``; no weight depends on it: the switch prior is a
    softmax over the candidates), and moves ``k_retrieve`` by as much; 0 keeps the trained
    numbers.
    """
    model = VcfBert(ModelConfig.from_dict(state["model_config"]))
    model.load_state_dict(state["model"])
    if copying_states < 0:
        raise InputError(f"impute.copying_states must be >= 0 (0: the model's own "
                         f"{model.cfg.k_keep}), not {copying_states}")
    if copying_states:
        model.cfg.k_retrieve += copying_states - model.cfg.k_keep
        model.cfg.k_keep = copying_states
    return model


def rng_state() -> dict[str, Any]:
    return {"torch": torch.get_rng_state()}


def set_rng_state(state: dict[str, Any]) -> None:
    if "torch" in state:
        torch.set_rng_state(state["torch"])

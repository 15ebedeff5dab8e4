"""The retrieval key encoder exported to numpy, so key jobs need neither torch nor a GPU.

The model's :class:`~vcfbert.model.network.KeyEncoder` is linear in its inputs:
``key = normalize(sum_i table[token_i] * weight[dist_i] * slot_vectors[slot_i])``.
Every checkpoint written by the workflow gets a companion ``.keys.npz`` with these three
arrays (written with the checkpoint; loaded with ``allow_pickle=False``), and
:func:`encode_keys` reproduces the model's keys exactly up to float rounding (tested).
"""

from __future__ import annotations

import dataclasses
import io
import os
from typing import Any

import numpy as np

from .atomic import write_bytes_atomic
from .errors import IntegrityError

FORMAT = "vcfbert-key-encoder-v1"


@dataclasses.dataclass
class KeyEncoderParams:
    """Arrays of a key encoder: ``table`` float32 [3] (REF, ALT, MASK), ``weight`` float32
    [max_core_dist + 1] (by distance to the core), ``slot_vectors`` float32 [max_slots, d]."""

    table: np.ndarray
    weight: np.ndarray
    slot_vectors: np.ndarray

    @property
    def d_key(self) -> int:
        return int(self.slot_vectors.shape[1])


def from_model(model: Any) -> KeyEncoderParams:
    """Export the key encoder of a :class:`~vcfbert.model.network.VcfBert`."""
    import torch

    with torch.no_grad():
        enc = model.keys
        table = (enc.allele_sign + model.tok.weight @ enc.u).float().cpu().numpy()
        weight = torch.exp(enc.log_weight).float().cpu().numpy()
        vectors = enc.slot_vectors.float().cpu().numpy()
    return KeyEncoderParams(table.astype(np.float32), weight.astype(np.float32),
                            vectors.astype(np.float32))


def save(params: KeyEncoderParams, path: str | os.PathLike[str]) -> None:
    buf = io.BytesIO()
    np.savez(buf, format=np.array(FORMAT), table=params.table, weight=params.weight,
             slot_vectors=params.slot_vectors)
    write_bytes_atomic(path, buf.getvalue())


def load(path: str | os.PathLike[str]) -> KeyEncoderParams:
    try:
        with np.load(path, allow_pickle=False) as z:
            if str(z["format"]) != FORMAT:
                raise IntegrityError(f"{path}: not a vcfbert key encoder ({z['format']})")
            return KeyEncoderParams(z["table"], z["weight"], z["slot_vectors"])
    except (OSError, KeyError, ValueError) as exc:
        raise IntegrityError(f"{path}: unreadable key encoder ({exc}); delete it and the "
                             "checkpoint beside it, then re-run") from exc


def encode_keys(params: KeyEncoderParams, tokens: np.ndarray, slot_core_dist: np.ndarray,
                batch: int = 8192) -> np.ndarray:
    """L2-normalised keys float32 [N, d] of token rows int [N, m] (slots numbered 0..m-1)."""
    m = tokens.shape[1]
    max_slots, max_dist = params.slot_vectors.shape[0], params.weight.shape[0] - 1
    w = params.weight[np.minimum(slot_core_dist, max_dist)]  # [m]
    vec = params.slot_vectors[np.minimum(np.arange(m), max_slots - 1)]  # [m, d]
    out = np.empty((tokens.shape[0], params.d_key), np.float32)
    for lo in range(0, tokens.shape[0], batch):
        phi = params.table[tokens[lo:lo + batch]] * w[None, :]  # [n, m]
        key = phi.astype(np.float32) @ vec
        norm = np.linalg.norm(key, axis=1, keepdims=True)
        out[lo:lo + batch] = key / np.maximum(norm, 1e-12)
    return out


def companion_path(checkpoint: str | os.PathLike[str]) -> str:
    """``model.pt`` -> ``model.keys.npz``."""
    base = str(checkpoint)
    return (base[:-3] if base.endswith(".pt") else base) + ".keys.npz"

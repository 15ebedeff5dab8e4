"""Observed-site masks: which typed sites (slots) a query sees.

Training masks look like the array: the targets' typed sites, of which a fraction
``drop_fraction`` is hidden anew each epoch (seed derived from the epoch), so the model also
learns to fill missing array genotypes. The inference ("final") mask is the targets' typed sites.
Stored per chromosome as HDF5: ``observed`` bool [M] over the chromosome's typed sites, with
attributes ``version`` (the epoch, or "final"), ``seed`` and ``drop_fraction``.
"""

from __future__ import annotations

import os
import zlib

import h5py
import numpy as np

from .atomic import atomic_path
from .errors import IntegrityError

FORMAT = "vcfbert-mask"


def mask_seed(epoch: int, contig: str) -> list[int]:
    """Seed sequence of an epoch's mask: the epoch, then a stable hash of the contig name."""
    return [int(epoch), zlib.crc32(contig.encode())]


def epoch_mask(n_slots: int, epoch: int, contig: str, drop_fraction: float) -> np.ndarray:
    """bool [n_slots]: slots observed in ``epoch`` (about ``1 - drop_fraction`` of them)."""
    rng = np.random.default_rng(mask_seed(epoch, contig))
    observed = rng.random(n_slots) >= drop_fraction
    if n_slots and not observed.any():
        observed[rng.integers(n_slots)] = True
    return observed


def write_mask(path: str | os.PathLike[str], observed: np.ndarray, *, version: str,
               contig: str, drop_fraction: float) -> None:
    with atomic_path(path) as tmp, h5py.File(tmp, "w") as h5:
        h5.create_dataset("observed", data=observed.astype(bool))
        h5.attrs.update({"format": FORMAT, "version": str(version), "contig": contig,
                         "drop_fraction": float(drop_fraction),
                         "seed": str(mask_seed(int(version), contig)) if version != "final"
                         else "none"})


def read_mask(path: str | os.PathLike[str]) -> tuple[np.ndarray, str]:
    """(observed bool [M], version)."""
    try:
        with h5py.File(path, "r") as h5:
            if h5.attrs.get("format") != FORMAT:
                raise IntegrityError(f"{path}: not a vcfbert mask file")
            return h5["observed"][()], str(h5.attrs["version"])
    except OSError as exc:
        raise IntegrityError(f"{path}: unreadable mask ({exc}); delete it and re-run") from exc

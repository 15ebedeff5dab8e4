"""One FAISS index per (epoch, window), with a JSON sidecar, and exact search over it.

Shard files: ``{window}.faiss`` (``IndexFlatIP`` over L2-normalised keys, one row per reference
haplotype, row ``i`` = global haplotype ``i`` of the chromosome's reference store) and
``{window}.json``::

    {"format": "vcfbert-index", "format_version": 1, "count": H, "dimension": d,
     "id_mapping": "row i = haplotype i of <reference store>", "contig": ..., "window_id": ...,
     "epoch": ..., "mask_version": ..., "model_sha256": ..., "sha256": <of the .faiss file>,
     "bytes_per_haplotype_window": ...}

The sidecar is written last, and carries the index file's checksum, so a shard whose sidecar
is missing or disagrees with its file is incomplete or corrupted: :func:`load_index` refuses it
and :func:`verify_shard` lets the workflow rebuild it.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import numpy as np

from .atomic import atomic_path, sha256_file, write_text_atomic
from .errors import IntegrityError

log = logging.getLogger(__name__)
FORMAT = "vcfbert-index"
FORMAT_VERSION = 1


def sidecar_path(index_path: str | os.PathLike[str]) -> Path:
    return Path(index_path).with_suffix(".json")


def flat_index(keys: np.ndarray):
    """An exact inner-product FAISS index (``IndexFlatIP``) of keys float32 [H, d]."""
    import faiss

    keys = np.ascontiguousarray(keys, dtype=np.float32)
    if keys.ndim != 2 or keys.shape[0] == 0:
        raise ValueError(f"keys must be a non-empty [H, d] array, got {keys.shape}")
    if not np.isfinite(keys).all():
        raise ValueError("keys contain NaN or infinite values")
    index = faiss.IndexFlatIP(keys.shape[1])
    index.add(keys)
    return index


def build_index(keys: np.ndarray, index_path: str | os.PathLike[str], *,
                meta: dict[str, Any]) -> dict[str, Any]:
    """Write an exact inner-product index of ``keys`` (float32 [H, d]) and its sidecar."""
    import faiss

    index = flat_index(keys)
    with atomic_path(index_path) as tmp:
        faiss.write_index(index, str(tmp))
    size = os.path.getsize(index_path)
    side = {"format": FORMAT, "format_version": FORMAT_VERSION, "count": int(keys.shape[0]),
            "dimension": int(keys.shape[1]), "id_mapping": "row i = haplotype i",
            "sha256": sha256_file(index_path), "file_bytes": int(size),
            "bytes_per_haplotype_window": round(size / keys.shape[0], 1), **meta}
    write_text_atomic(sidecar_path(index_path), json.dumps(side, indent=1, sort_keys=True))
    return side


def verify_shard(index_path: str | os.PathLike[str]) -> str | None:
    """Why the shard is unusable (missing sidecar, checksum mismatch), or None when it is fine."""
    p = Path(index_path)
    side = sidecar_path(p)
    if not p.exists():
        return "index file missing"
    if not side.exists():
        return "sidecar missing (the shard was not finished)"
    try:
        meta = json.loads(side.read_text())
    except (json.JSONDecodeError, OSError) as exc:
        return f"unreadable sidecar ({exc})"
    if meta.get("format") != FORMAT:
        return "sidecar is not a vcfbert index sidecar"
    if sha256_file(p) != meta.get("sha256"):
        return "checksum mismatch (corrupted or half-written index file)"
    return None


def load_index(index_path: str | os.PathLike[str], *, expect_count: int | None = None,
               expect_dim: int | None = None):
    """Load a shard after verifying its checksum; returns (faiss index, sidecar dict)."""
    import faiss

    problem = verify_shard(index_path)
    if problem:
        raise IntegrityError(f"{index_path}: {problem}; delete it (and its .json) and re-run "
                             "the workflow to rebuild it")
    meta = json.loads(sidecar_path(index_path).read_text())
    index = faiss.read_index(str(index_path))
    if index.ntotal != meta["count"] or index.d != meta["dimension"]:
        raise IntegrityError(f"{index_path}: index holds {index.ntotal}x{index.d} vectors, "
                             f"sidecar says {meta['count']}x{meta['dimension']}")
    if expect_count is not None and index.ntotal != expect_count:
        raise IntegrityError(f"{index_path}: {index.ntotal} haplotypes indexed, the reference "
                             f"has {expect_count}; rebuild the index")
    if expect_dim is not None and index.d != expect_dim:
        raise IntegrityError(f"{index_path}: key dimension {index.d} differs from the model's "
                             f"{expect_dim}; rebuild the index")
    return index, meta


def index_vectors(index) -> np.ndarray:
    """float32 [H, d] the vectors stored in a flat index."""
    import faiss

    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(
        index.ntotal, index.d).copy()


class KeySearcher:
    """Exact top-k inner-product search over one shard, on CPU (FAISS) or GPU (torch).

    On a CUDA device the keys are moved to the GPU once and searched with a matmul + topk;
    otherwise FAISS ``IndexFlatIP`` runs on the CPU. Both are exact and agree up to ties.
    """

    def __init__(self, index, device: str = "cpu", never: np.ndarray | None = None) -> None:
        """``never``: ids no query may get (e.g. the second copy of a male's haploid allele)."""
        self.index = index
        self.device = device
        self.never = np.zeros(0, np.int64) if never is None else np.asarray(never, np.int64)
        self._gpu_keys = None
        if device.startswith("cuda"):
            import torch

            self._gpu_keys = torch.from_numpy(index_vectors(index)).to(device)

    @property
    def ntotal(self) -> int:
        return int(self.index.ntotal)

    def search(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None
               ) -> np.ndarray:
        """Ids int64 [b, k] of the best matches (-1 where fewer exist).

        Args:
            queries: float32 [b, d] keys.
            exclude: int [b, e] ids never to return for each query (-1 entries ignored), e.g.
                both haplotypes of the query's own sample.
        """
        return self.search_scored(queries, k, exclude)[0]

    def search_scored(self, queries: np.ndarray, k: int, exclude: np.ndarray | None = None,
                      similarities: np.ndarray | None = None
                      ) -> tuple[np.ndarray, np.ndarray]:
        """(ids int64 [b, k], inner products float32 [b, k]) of the best matches, best first;
        -1 and -inf where fewer exist. ``exclude`` as in :meth:`search`.

        ``similarities``: float32 [b, H] the queries' inner products with every indexed key,
        when the caller has them (the imputation computes them for the states by match
        length): the best are then taken from them (:func:`vcfbert.top_rows.top_rows`, on
        the CPU whatever the device; equal scores by smaller id) instead of searching again."""
        e = 0 if exclude is None else exclude.shape[1]
        want = min(self.ntotal, k + e + self.never.size)
        if similarities is not None:
            if similarities.shape != (queries.shape[0], self.ntotal):
                raise ValueError(f"similarities of shape {similarities.shape} for "
                                 f"{queries.shape[0]} queries and {self.ntotal} keys")
            from .top_rows import top_rows

            ids, scores = top_rows(similarities, want)  # equal scores by smaller id
        elif self._gpu_keys is not None:
            import torch

            q = torch.from_numpy(np.ascontiguousarray(queries, np.float32)).to(self.device)
            top = (q @ self._gpu_keys.T).topk(want, dim=1)
            scores = top.values.float().cpu().numpy()
            ids = top.indices.cpu().numpy().astype(np.int64)
        else:
            scores, ids = self.index.search(np.ascontiguousarray(queries, np.float32), want)
            ids = ids.astype(np.int64)
        bad = ids < 0
        if self.never.size:
            bad |= np.isin(ids, self.never)
        if e:
            bad |= (ids[:, :, None] == np.asarray(exclude)[:, None, :]).any(-1)
        if bad.any():
            order = np.argsort(bad, axis=1, kind="stable")[:, :k]  # kept ids first, in order
            ids = np.take_along_axis(ids, order, 1)
            scores = np.take_along_axis(scores, order, 1).astype(np.float32)
            gone = np.take_along_axis(bad, order, 1)
            ids[gone] = -1
            scores[gone] = -np.inf
        else:  # the targets' usual case: nothing excluded
            ids, scores = ids[:, :k], scores[:, :k].astype(np.float32)
        if ids.shape[1] < k:
            pad = k - ids.shape[1]
            ids = np.pad(ids, ((0, 0), (0, pad)), constant_values=-1)
            scores = np.pad(scores, ((0, 0), (0, pad)), constant_values=-np.inf)
        return ids, scores

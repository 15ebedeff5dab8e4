"""Model configuration: a dataclass stored inside every checkpoint (nanoGPT-style)."""

from __future__ import annotations

import dataclasses
from typing import Any

from ..errors import InputError


@dataclasses.dataclass
class ModelConfig:
    """Hyper-parameters of :class:`vcfbert.model.network.VcfBert`.

    Attributes:
        d_model: width of the token embeddings and of the query transformer.
        n_layers / n_heads / d_ff: query transformer (self-attention along the window's slots).
        dropout: dropout inside the transformer.
        max_slots: largest number of typed sites (slots) in a window; longer windows are
            clipped for the slot-position embedding only.
        max_core_dist: distances to the core (in slots) above this share one embedding.
        d_key: dimension of the retrieval key (float32: 4 * d_key bytes per haplotype-window).
        key_decay: initial weight decay per slot away from the core in the retrieval key.
        k_retrieve: candidates fetched from the FAISS index per query.
        k_keep: candidates kept after re-scoring with the current key encoder (HMM states).
        ne_init: initial effective population size of the copying HMM: the switch rate starts
            at ``4 * ne_init / n_reference_haplotypes`` per Morgan, Beagle's scaling
            (``0.04 * ne / nHaps`` per cM): a larger panel holds closer relatives, copied over
            longer segments.
        n_reference_haplotypes: the panel's haplotype count, set from the data by
            ``init_model``; 0 (checkpoints made before it existed, direct constructions)
            divides by ``k_keep`` instead.
        d_head: hidden width of the per-site output head (0: ``2 * d_model``, the width of
            checkpoints made before the key existed). The head runs once per target haplotype
            and variant, so its width sets most of the per-site cost of imputation.
        err_init: initial per-slot mismatch probability of the copying HMM.
        cm_per_mb: genetic distance per physical distance used without a genetic map.
        context_flank_slots: the query transformer attends over the core's slots and this many
            on each side (those within this distance of the core); slots farther out enter
            the copying HMM with their own embedding only, so the flanks can be long (long
            matches for rare variants) while the attention, quadratic in the slots it covers,
            stays the same size. 0: every slot (checkpoints made before the key existed).
        attention_block: each slot of the transformer's context attends only to the slots of
            its block of this many consecutive slots, the blocks of every second layer shifted
            by half a block (so information crosses the blocks' edges): the attention's cost
            is linear in the slots instead of quadratic. 0: every slot attends to every slot
            (checkpoints made before the key existed).
    """

    d_model: int = 32
    n_layers: int = 2
    n_heads: int = 4
    d_ff: int = 64
    dropout: float = 0.0
    max_slots: int = 512
    max_core_dist: int = 256
    d_key: int = 128
    key_decay: float = 0.97
    k_retrieve: int = 320
    k_keep: int = 256
    ne_init: float = 40000.0
    err_init: float = 1e-3
    cm_per_mb: float = 1.0
    n_reference_haplotypes: int = 0
    d_head: int = 0
    context_flank_slots: int = 0
    attention_block: int = 0

    def initial_switch_rate(self) -> float:
        """Switches per Morgan the copying layer starts from (then learned)."""
        return 4 * self.ne_init / (self.n_reference_haplotypes or self.k_keep)

    def head_width(self) -> int:
        """Hidden width of the per-site output head."""
        return self.d_head or 2 * self.d_model

    def __post_init__(self) -> None:
        if self.context_flank_slots < 0:
            raise InputError(f"model.context_flank_slots ({self.context_flank_slots}) must be "
                             ">= 0 (0: every slot)")
        if self.attention_block < 0 or self.attention_block == 1:
            raise InputError(f"model.attention_block ({self.attention_block}) must be 0 (every "
                             "slot attends to every slot) or at least 2")
        if self.d_head < 0:
            raise InputError(f"model.d_head ({self.d_head}) must be >= 0 (0: 2 * d_model)")
        if self.d_model % self.n_heads:
            raise InputError(f"model.d_model ({self.d_model}) must be a multiple of "
                             f"model.n_heads ({self.n_heads})")
        if self.k_keep > self.k_retrieve:
            raise InputError(f"model.k_keep ({self.k_keep}) cannot exceed model.k_retrieve "
                             f"({self.k_retrieve})")
        if not 0 < self.err_init < 0.5:
            raise InputError("model.err_init must lie in (0, 0.5)")
        if not 0 < self.key_decay <= 1:
            raise InputError("model.key_decay must lie in (0, 1]")

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> ModelConfig:
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = set(d) - names
        if unknown:
            raise InputError(f"model: unknown keys {sorted(unknown)}")
        return cls(**d)

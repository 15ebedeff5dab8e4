"""Match-run features in torch (twin of :mod:`vcfbert.runs`, which tests compare it with).

For each candidate and each interval between slots: the number of consecutive observed slots
matching the query going left from the interval (``left``) and going right (``right``).
Unobserved slots neither extend nor break a run. Dimensions: ``b`` queries, ``k`` candidates,
``m`` slots; intervals are ``0..m``.
"""

from __future__ import annotations

import torch


def _inclusive_left(mismatch: torch.Tensor, agree: torch.Tensor) -> torch.Tensor:
    m = mismatch.shape[-1]
    idx = torch.arange(m, device=mismatch.device).expand_as(mismatch)
    last = torch.where(mismatch, idx, torch.full_like(idx, -1)).cummax(dim=-1).values
    ca = agree.to(torch.int32).cumsum(dim=-1)
    at_last = torch.gather(ca, -1, last.clamp_min(0)) * (last >= 0)
    return ca - at_last


def interval_runs(mismatch: torch.Tensor, observed: torch.Tensor
                  ) -> tuple[torch.Tensor, torch.Tensor]:
    """Left and right match runs per interval.

    Args:
        mismatch: bool [b, k, m] candidate allele differs from the observed query allele.
        observed: bool [b, m] query allele observed at the slot.

    Returns:
        (left, right): int32 [b, k, m + 1].
    """
    agree = observed[:, None, :] & ~mismatch
    left_incl = _inclusive_left(mismatch, agree)
    right_incl = _inclusive_left(mismatch.flip(-1), agree.flip(-1)).flip(-1)
    zero = torch.zeros_like(left_incl[..., :1])
    return torch.cat([zero, left_incl], -1), torch.cat([right_incl, zero], -1)


def carrier_features(run_total: torch.Tensor, alleles: torch.Tensor, posterior: torch.Tensor,
                     valid: torch.Tensor) -> torch.Tensor:
    """Per-site summaries of how well ALT and REF carriers match the query.

    Args:
        run_total: float [b, k, n] left + right match run around each site's interval.
        alleles: float [b, k, n] candidate alleles (0/1) at the sites.
        posterior: float [b, k, n] copying attention at the sites.
        valid: bool [b, k] candidate exists.

    Returns:
        float [b, n, 5]: log-run of the best ALT carrier, of the best REF carrier, log number
        of ALT carriers, any ALT carrier, attention-weighted mean log-run of ALT carriers.
    """
    v = valid[:, :, None].to(alleles.dtype)
    alt = alleles * v
    ref = (1 - alleles) * v
    lr = torch.log1p(run_total) / 6.0
    best_alt = (lr * alt - (1 - alt)).amax(1).clamp_min(0)
    best_ref = (lr * ref - (1 - ref)).amax(1).clamp_min(0)
    n_alt = alt.sum(1)
    w_alt = posterior * alt
    mean_alt = (w_alt * lr).sum(1) / w_alt.sum(1).clamp_min(1e-6)
    return torch.stack([best_alt, best_ref, torch.log1p(n_alt) / 5.0, (n_alt > 0).float(),
                        mean_alt], -1)

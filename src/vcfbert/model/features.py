"""Match-run features in torch (twin of :mod:`vcfbert.runs`, which tests compare it with).

For each candidate and each interval between slots: the number of consecutive observed slots
matching the query going left from the interval (``left``) and going right (``right``).
Unobserved slots neither extend nor break a run. Dimensions: ``b`` queries, ``k`` candidates,
``m`` slots; intervals are ``0..m``.
"""

from __future__ import annotations

import numba
import numpy as np
import torch

from ..kernels import ready


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


@numba.njit(cache=True, nogil=True)
def _run_totals_into(mismatch: np.ndarray, observed: np.ndarray, site_interval: np.ndarray,
                     out: np.ndarray) -> None:
    b, k, m = mismatch.shape
    total = np.empty(m + 1, np.int32)
    for q in range(b):
        for c in range(k):
            run = 0  # left runs: agreeing observed slots since the last mismatch
            total[0] = 0
            for j in range(m):
                if mismatch[q, c, j]:
                    run = 0
                elif observed[q, j]:
                    run += 1
                total[j + 1] = run
            run = 0  # right runs, added to the left ones
            for j in range(m - 1, -1, -1):
                if mismatch[q, c, j]:
                    run = 0
                elif observed[q, j]:
                    run += 1
                total[j] += run
            for i in range(site_interval.shape[0]):
                out[q, c, i] = total[site_interval[i]]


def run_totals(mismatch: torch.Tensor, observed: torch.Tensor, site_interval: torch.Tensor
               ) -> torch.Tensor:
    """Left + right match run of every candidate around each site's interval:
    ``(left + right).index_select(2, site_interval)`` of :func:`interval_runs`, as float.

    On a CPU one compiled pass per candidate (the runs are integers, so the values are the
    same); on other devices through :func:`interval_runs`. No gradient flows through runs.

    Args:
        mismatch: bool [b, k, m]; observed: bool [b, m]; site_interval: int64 [n], each
            site's interval (0..m).

    Returns:
        float32 [b, k, n].
    """
    if mismatch.device.type != "cpu":
        left, right = interval_runs(mismatch, observed)
        return (left + right).index_select(2, site_interval).float()
    b, k, _ = mismatch.shape
    out = np.empty((b, k, site_interval.shape[0]), np.float32)
    ready(_run_totals_into)
    _run_totals_into(mismatch.detach().contiguous().numpy(),
                     observed.detach().contiguous().numpy(),
                     site_interval.detach().contiguous().numpy().astype(np.int64, copy=False), out)
    return torch.from_numpy(out)


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

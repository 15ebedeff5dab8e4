"""Differentiable Li–Stephens copying HMM over retrieved candidates (scaled forward–backward).

Hidden state at slot ``i``: which of the ``k`` candidate haplotypes the query copies. Between
slots ``i-1`` and ``i`` the query switches with probability ``rho[..., i]`` to a candidate drawn
from ``prior``; at slot ``i`` the evidence has log-likelihood ``log_emit[..., c, i]`` under
candidate ``c``. The posterior ``gamma[..., c, i]`` is the attention each slot pays to each
retrieved haplotype. Dimensions: ``b`` batch, ``k`` candidates, ``m`` slots.
"""

from __future__ import annotations

import numpy as np
import torch


def forward_backward(log_emit: torch.Tensor, rho: torch.Tensor, prior: torch.Tensor,
                     valid: torch.Tensor | None = None) -> torch.Tensor:
    """Posterior copying probabilities.

    Args:
        log_emit: float [b, k, m] log-likelihood of the evidence at each slot per candidate.
        rho: float [b, m] switch probability between slot i-1 and i (``rho[:, 0]`` unused).
        prior: float [b, k] switch-target distribution (rows sum to 1).
        valid: bool [b, k] candidates that exist (others get zero posterior).

    Returns:
        float [b, k, m] posterior, summing to 1 over ``k``.
    """
    b, k, m = log_emit.shape
    if valid is not None:
        log_emit = log_emit.masked_fill(~valid[:, :, None], -1e4)
    emit = torch.exp(log_emit - log_emit.amax(dim=1, keepdim=True))  # [b, k, m], max 1 per slot
    alphas = []
    x = prior * emit[:, :, 0]
    x = x / x.sum(1, keepdim=True).clamp_min(1e-30)
    alphas.append(x)
    for i in range(1, m):
        r = rho[:, i : i + 1]
        x = (x * (1 - r) + r * prior) * emit[:, :, i]
        x = x / x.sum(1, keepdim=True).clamp_min(1e-30)
        alphas.append(x)
    y = torch.ones_like(prior)
    betas = [y]
    for i in range(m - 2, -1, -1):
        r = rho[:, i + 1 : i + 2]
        ey = emit[:, :, i + 1] * y
        y = (1 - r) * ey + r * (prior * ey).sum(1, keepdim=True)
        y = y / y.sum(1, keepdim=True).clamp_min(1e-30)
        betas.append(y)
    betas.reverse()
    gamma = torch.stack(alphas, dim=2) * torch.stack(betas, dim=2)
    return gamma / gamma.sum(1, keepdim=True).clamp_min(1e-30)


def forward_backward_reference(log_emit: np.ndarray, rho: np.ndarray, prior: np.ndarray
                               ) -> np.ndarray:
    """Unscaled, obviously-correct posterior for one query (tests only; small m).

    Args: log_emit [k, m], rho [m], prior [k]. Returns [k, m].
    """
    k, m = log_emit.shape
    e = np.exp(log_emit)
    trans = [None] + [(1 - rho[i]) * np.eye(k) + rho[i] * prior[None, :] for i in range(1, m)]
    alpha = np.zeros((k, m))
    alpha[:, 0] = prior * e[:, 0]
    for i in range(1, m):
        alpha[:, i] = (alpha[:, i - 1] @ trans[i]) * e[:, i]
    beta = np.ones((k, m))
    for i in range(m - 2, -1, -1):
        beta[:, i] = trans[i + 1] @ (e[:, i + 1] * beta[:, i + 1])
    g = alpha * beta
    return g / g.sum(0, keepdims=True)


def leave_one_out_alt(gamma: torch.Tensor, log_emit: torch.Tensor, cand_alleles: torch.Tensor,
                      valid: torch.Tensor | None = None) -> torch.Tensor:
    """Leave-one-out ALT probability at every slot: the copied ALT probability under the
    posterior with the slot's own emission divided out.

    ``gamma[c, i]`` is proportional to ``alpha_pred[c, i] * emit[c, i] * beta[c, i]``, so
    ``gamma / emit`` renormalised over the candidates is the posterior of slot ``i`` given
    every slot but ``i``, and ``sum_c allele[c, i] * (gamma / emit)[c, i]`` over its total is
    the HMM's prediction of the query's allele at ``i`` without seeing it. Computed in log
    space (the per-slot normalisation of the emissions cancels); where a posterior term
    underflowed to 0 its candidate drops out, so use float64 where emissions span more than
    float32 can hold. 0 where no candidate is valid.

    Args:
        gamma: float [b, k, m] posterior of :func:`forward_backward` on ``log_emit``.
        log_emit: float [b, k, m] the log-emissions it was run with.
        cand_alleles: int or bool [b, k, m] candidate alleles at the slots (1 ALT).
        valid: bool [b, k] candidates that exist (None: all).

    Returns:
        float [b, m] in [0, 1].
    """
    log_w = torch.log(gamma) - log_emit  # -inf where gamma is 0
    if valid is not None:
        log_w = log_w.masked_fill(~valid[:, :, None], -torch.inf)
    alt = cand_alleles.bool()
    total = torch.logsumexp(log_w, dim=1)  # [b, m]
    on_alt = torch.logsumexp(log_w.masked_fill(~alt, -torch.inf), dim=1)
    p = torch.exp(on_alt - total)
    return torch.where(torch.isfinite(total), p, torch.zeros_like(p)).clamp(0.0, 1.0)

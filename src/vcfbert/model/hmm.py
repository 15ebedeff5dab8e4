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
    """Posterior copying probabilities, with a hand-written backward pass.

    The scaled recursion runs ``m`` small steps per direction; recorded by autograd, its
    backward replays thousands of tiny nodes (0.65 s for b 16, k 384, m 382 on a CPU core,
    against 0.1 s forward: most of a training step). :class:`_ScaledForwardBackward` computes
    the same gradients by reverse-mode through the recursion by hand, one batched step per
    slot. Tested against autograd through :func:`forward_backward_autograd`. On a CPU both
    passes run compiled, one query at a time on ``torch.get_num_threads()`` threads
    (:mod:`vcfbert.model.hmm_kernel`; the same values up to rounding, whatever the threads).

    Args:
        log_emit: float [b, k, m] log-likelihood of the evidence at each slot per candidate.
        rho: float [b, m] switch probability between slot i-1 and i (``rho[:, 0]`` unused).
        prior: float [b, k] switch-target distribution (rows sum to 1).
        valid: bool [b, k] candidates that exist (others get zero posterior).

    Returns:
        float [b, k, m] posterior, summing to 1 over ``k``.
    """
    if valid is not None:
        log_emit = log_emit.masked_fill(~valid[:, :, None], -1e4)
    if not (torch.is_grad_enabled()
            and (log_emit.requires_grad or rho.requires_grad or prior.requires_grad)):
        with torch.no_grad():
            return _scaled_passes(log_emit, rho, prior)[0]
    return _ScaledForwardBackward.apply(log_emit, rho, prior)


_TINY = 1e-30  # floor of every normaliser
# on a CPU the passes and their reverse pass run compiled (model/hmm_kernel.py); tests set it
# False to check the torch steps (what a GPU runs) too
COMPILED_ON_CPU = True


def _scaled_passes(log_emit: torch.Tensor, rho: torch.Tensor, prior: torch.Tensor
                   ) -> tuple[torch.Tensor, ...]:
    """The scaled forward and backward passes (no gradients recorded), slot-major inside so
    that every step reads and writes contiguous ``[b, k]`` rows.

    Returns:
        (gamma [b, k, m] posterior; then, slot-major: emit [m, b, k] emissions scaled to a
        maximum of 1 per slot, alpha [m, b, k] normalised forward, beta [m, b, k] normalised
        backward, fwd_norm [m, b] the forward normalisers, bwd_norm [m, b] the backward ones
        (row m - 1 unused), post_norm [m, b] the posterior's; all after the ``_TINY`` floor).
    """
    b, k, m = log_emit.shape
    emit = torch.exp(log_emit - log_emit.amax(dim=1, keepdim=True)).permute(2, 0, 1)
    emit = emit.contiguous()  # [m, b, k], max 1 per slot
    if emit.device.type == "cpu" and COMPILED_ON_CPU:
        return _compiled_passes(emit, rho, prior)
    rho_t = rho.t()  # [m, b]
    alpha = torch.empty_like(emit)
    beta = torch.empty_like(emit)
    fwd_norm = torch.empty((m, b), dtype=emit.dtype, device=emit.device)
    bwd_norm = torch.ones_like(fwd_norm)
    x = prior * emit[0]
    fwd_norm[0] = x.sum(1).clamp_min(_TINY)
    alpha[0] = x / fwd_norm[0, :, None]
    for i in range(1, m):
        r = rho_t[i, :, None]
        x = (alpha[i - 1] * (1 - r) + r * prior) * emit[i]
        fwd_norm[i] = x.sum(1).clamp_min(_TINY)
        alpha[i] = x / fwd_norm[i, :, None]
    beta[m - 1] = 1.0
    for i in range(m - 2, -1, -1):
        r = rho_t[i + 1, :, None]
        ey = emit[i + 1] * beta[i + 1]
        y = (1 - r) * ey + r * (prior * ey).sum(1, keepdim=True)
        bwd_norm[i] = y.sum(1).clamp_min(_TINY)
        beta[i] = y / bwd_norm[i, :, None]
    u = alpha * beta
    post_norm = u.sum(2).clamp_min(_TINY)  # [m, b]
    gamma = (u / post_norm[:, :, None]).permute(1, 2, 0)
    return gamma, emit, alpha, beta, fwd_norm, bwd_norm, post_norm


def _compiled_passes(emit: torch.Tensor, rho: torch.Tensor, prior: torch.Tensor
                     ) -> tuple[torch.Tensor, ...]:
    """:func:`_scaled_passes` from the scaled emissions ``emit`` [m, b, k] on a CPU, through
    :func:`vcfbert.model.hmm_kernel.scaled_passes_into` (same outputs)."""
    from .hmm_kernel import over_queries, scaled_passes_into

    m, b, k = emit.shape
    dtype = emit.dtype
    rho_t = rho.detach().to(dtype).t().contiguous()
    prior_c = prior.detach().to(dtype).contiguous()
    alpha = torch.empty_like(emit)
    beta = torch.empty_like(emit)
    gamma_t = torch.empty_like(emit)
    fwd_norm = torch.empty((m, b), dtype=dtype)
    bwd_norm = torch.empty((m, b), dtype=dtype)
    post_norm = torch.empty((m, b), dtype=dtype)
    over_queries(scaled_passes_into, b, torch.get_num_threads(), emit.detach().numpy(),
                 rho_t.numpy(), prior_c.numpy(), alpha.numpy(), beta.numpy(), fwd_norm.numpy(),
                 bwd_norm.numpy(), post_norm.numpy(), gamma_t.numpy())
    return gamma_t.permute(1, 2, 0), emit, alpha, beta, fwd_norm, bwd_norm, post_norm


def _compiled_grad(grad_gamma: torch.Tensor, saved: tuple[torch.Tensor, ...]
                   ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """:meth:`_ScaledForwardBackward.backward` on a CPU, through
    :func:`vcfbert.model.hmm_kernel.scaled_passes_grad_into` (same gradients)."""
    from .hmm_kernel import over_queries, scaled_passes_grad_into

    gamma, emit, alpha, beta, fwd_norm, bwd_norm, post_norm, rho, prior = saved
    dtype = emit.dtype
    g_gamma = grad_gamma.to(dtype).permute(2, 0, 1).contiguous()  # [m, b, k]
    gam = gamma.permute(2, 0, 1).contiguous()
    rho_t = rho.to(dtype).t().contiguous()
    prior_c = prior.to(dtype).contiguous()
    g_emit = torch.empty_like(emit)
    g_rho = torch.empty_like(rho_t)
    g_prior = torch.empty_like(prior_c)
    over_queries(scaled_passes_grad_into, emit.shape[1], torch.get_num_threads(),
                 g_gamma.numpy(), gam.numpy(), emit.numpy(), alpha.numpy(), beta.numpy(),
                 fwd_norm.numpy(), bwd_norm.numpy(), post_norm.numpy(), rho_t.numpy(),
                 prior_c.numpy(), g_emit.numpy(), g_rho.numpy(), g_prior.numpy())
    return ((g_emit * emit).permute(1, 2, 0), g_rho.t().to(rho.dtype),
            g_prior.to(prior.dtype))


def _normaliser_grad(g: torch.Tensor, y: torch.Tensor, norm: torch.Tensor) -> torch.Tensor:
    """Gradient with respect to ``x`` [b, k] of ``y = x / max(sum(x), tiny)`` given ``g``
    [b, k] the gradient with respect to ``y``; ``norm`` [b] the floored sum."""
    dot = (g * y).sum(1, keepdim=True) * (norm > _TINY)[:, None]
    return (g - dot) / norm[:, None]


class _ScaledForwardBackward(torch.autograd.Function):
    """:func:`_scaled_passes`' posterior with its reverse-mode pass written out.

    Forward (per slot, ``E`` emissions, ``r`` switch probabilities, ``pi`` prior):
    ``a_i = norm((a_{i-1} (1 - r_i) + r_i pi) E_i)``, ``b_i = norm((1 - r_{i+1}) E_{i+1}
    b_{i+1} + r_{i+1} <pi, E_{i+1} b_{i+1}>)``, ``gamma_i = norm(a_i b_i)``. Backward
    visits the backward recursion in reverse (slot 0 upwards), then the forward one (slot
    m - 1 downwards), accumulating the gradients of ``E``, ``r`` and ``pi``; the log-emission
    gradient is ``grad_E * E`` (the per-slot maximum subtracted before ``exp`` does not
    change the posterior, so its gradient is zero up to rounding and is left out).
    """

    @staticmethod
    def forward(ctx, log_emit: torch.Tensor, rho: torch.Tensor, prior: torch.Tensor
                ) -> torch.Tensor:
        gamma, emit, alpha, beta, fwd_norm, bwd_norm, post_norm = _scaled_passes(
            log_emit, rho, prior)
        ctx.save_for_backward(gamma, emit, alpha, beta, fwd_norm, bwd_norm, post_norm, rho,
                              prior)
        return gamma

    @staticmethod
    def backward(ctx, grad_gamma: torch.Tensor
                 ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        if grad_gamma.device.type == "cpu" and COMPILED_ON_CPU:
            return _compiled_grad(grad_gamma, ctx.saved_tensors)
        gamma, emit, alpha, beta, fwd_norm, bwd_norm, post_norm, rho, prior = \
            ctx.saved_tensors
        m = emit.shape[0]
        g_gamma = grad_gamma.permute(2, 0, 1)  # [m, b, k]
        gam = gamma.permute(2, 0, 1)
        g_u = (g_gamma - (g_gamma * gam).sum(2, keepdim=True)
               * (post_norm > _TINY)[:, :, None]) / post_norm[:, :, None]
        g_alpha = (g_u * beta).contiguous()  # [m, b, k], completed as the recursions are undone
        g_beta = (g_u * alpha).contiguous()
        g_emit = torch.zeros_like(emit)
        rho_t = rho.t()
        g_rho = torch.zeros_like(rho_t)  # [m, b]
        g_prior = torch.zeros_like(prior)
        # the backward recursion, undone from slot 0 up: b_i depends on b_{i+1}
        for i in range(0, m - 1):
            r = rho_t[i + 1, :, None]
            e_next = emit[i + 1]
            b_next = beta[i + 1]
            ey = e_next * b_next
            g_y = _normaliser_grad(g_beta[i], beta[i], bwd_norm[i])
            g_y_sum = g_y.sum(1, keepdim=True)
            pe = (prior * ey).sum(1, keepdim=True)
            g_ey = (1 - r) * g_y + r * g_y_sum * prior
            g_rho[i + 1] += ((pe - ey) * g_y).sum(1)
            g_prior += r * g_y_sum * ey
            g_emit[i + 1] += g_ey * b_next
            g_beta[i + 1] += g_ey * e_next
        # the forward recursion, undone from slot m - 1 down: a_i depends on a_{i-1}
        for i in range(m - 1, 0, -1):
            r = rho_t[i, :, None]
            g_x = _normaliser_grad(g_alpha[i], alpha[i], fwd_norm[i])
            a_prev = alpha[i - 1]
            g_emit[i] += g_x * (a_prev * (1 - r) + r * prior)
            g_v = g_x * emit[i]
            g_alpha[i - 1] += g_v * (1 - r)
            g_rho[i] += (g_v * (prior - a_prev)).sum(1)
            g_prior += r * g_v
        g_x = _normaliser_grad(g_alpha[0], alpha[0], fwd_norm[0])
        g_prior += g_x * emit[0]
        g_emit[0] += g_x * prior
        return (g_emit * emit).permute(1, 2, 0), g_rho.t(), g_prior


def forward_backward_autograd(log_emit: torch.Tensor, rho: torch.Tensor, prior: torch.Tensor,
                              valid: torch.Tensor | None = None) -> torch.Tensor:
    """:func:`forward_backward` with every step recorded by autograd (slow; the tests' check
    of the hand-written backward pass). Same arguments and result."""
    b, k, m = log_emit.shape
    if valid is not None:
        log_emit = log_emit.masked_fill(~valid[:, :, None], -1e4)
    emit = torch.exp(log_emit - log_emit.amax(dim=1, keepdim=True))  # [b, k, m], max 1 per slot
    alphas = []
    x = prior * emit[:, :, 0]
    x = x / x.sum(1, keepdim=True).clamp_min(_TINY)
    alphas.append(x)
    for i in range(1, m):
        r = rho[:, i : i + 1]
        x = (x * (1 - r) + r * prior) * emit[:, :, i]
        x = x / x.sum(1, keepdim=True).clamp_min(_TINY)
        alphas.append(x)
    y = torch.ones_like(prior)
    betas = [y]
    for i in range(m - 2, -1, -1):
        r = rho[:, i + 1 : i + 2]
        ey = emit[:, :, i + 1] * y
        y = (1 - r) * ey + r * (prior * ey).sum(1, keepdim=True)
        y = y / y.sum(1, keepdim=True).clamp_min(_TINY)
        betas.append(y)
    betas.reverse()
    gamma = torch.stack(alphas, dim=2) * torch.stack(betas, dim=2)
    return gamma / gamma.sum(1, keepdim=True).clamp_min(_TINY)


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

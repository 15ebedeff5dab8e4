"""The copying HMM's scaled passes and their reverse-mode pass, compiled for a CPU.

Twins of :func:`vcfbert.model.hmm._scaled_passes` and of
:meth:`vcfbert.model.hmm._ScaledForwardBackward.backward`: the same recursions, one query at a
time, with every sum over the ``k`` candidates accumulated in float64. The torch versions run
``m`` small batched steps per direction (a dozen tensor operations each, ~90 ms per training
batch of b 32, k 384, m ~380 on a CPU core); these run the same arithmetic in one pass per
query. The results equal the torch ones up to float rounding (the sums are taken in another
order and in float64), which the tests check.

Arrays are slot-major, as in the torch versions: ``[m, b, k]`` per slot, query and candidate.
:func:`over_queries` runs a kernel on a few threads, each over its own range of queries.
"""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import numba
import numpy as np

from ..kernels import ready

TINY = 1e-30  # floor of every normaliser (hmm._TINY)


@numba.njit(cache=True, nogil=True)
def scaled_passes_into(emit: np.ndarray, rho_t: np.ndarray, prior: np.ndarray,
                       alpha: np.ndarray, beta: np.ndarray, fwd_norm: np.ndarray,
                       bwd_norm: np.ndarray, post_norm: np.ndarray, gamma: np.ndarray,
                       q_lo: int, q_hi: int) -> None:
    """Fill the passes of :func:`vcfbert.model.hmm._scaled_passes` for the queries
    ``q_lo``..``q_hi`` - 1 (threads fill disjoint ranges).

    Args:
        emit: [m, b, k] emissions scaled to a maximum of 1 per slot; rho_t: [m, b] switch
            probabilities (row 0 unused); prior: [b, k].
        alpha, beta, gamma: [m, b, k] outputs (normalised forward, backward, posterior);
        fwd_norm, bwd_norm, post_norm: [m, b] outputs (their floored normalisers; row m - 1
        of ``bwd_norm`` is 1).
    """
    m, b, k = emit.shape
    for q in range(q_lo, q_hi):
        s = 0.0
        for c in range(k):
            x = prior[q, c] * emit[0, q, c]
            alpha[0, q, c] = x
            s += x
        norm = max(s, TINY)
        fwd_norm[0, q] = norm
        for c in range(k):
            alpha[0, q, c] = alpha[0, q, c] / norm
        for i in range(1, m):
            r = rho_t[i, q]
            s = 0.0
            for c in range(k):
                x = (alpha[i - 1, q, c] * (1 - r) + r * prior[q, c]) * emit[i, q, c]
                alpha[i, q, c] = x
                s += x
            norm = max(s, TINY)
            fwd_norm[i, q] = norm
            for c in range(k):
                alpha[i, q, c] = alpha[i, q, c] / norm
        for c in range(k):
            beta[m - 1, q, c] = 1.0
        bwd_norm[m - 1, q] = 1.0
        for i in range(m - 2, -1, -1):
            r = rho_t[i + 1, q]
            pe = 0.0
            for c in range(k):
                pe += prior[q, c] * (emit[i + 1, q, c] * beta[i + 1, q, c])
            s = 0.0
            for c in range(k):
                y = (1 - r) * (emit[i + 1, q, c] * beta[i + 1, q, c]) + r * pe
                beta[i, q, c] = y
                s += beta[i, q, c]
            norm = max(s, TINY)
            bwd_norm[i, q] = norm
            for c in range(k):
                beta[i, q, c] = beta[i, q, c] / norm
        for i in range(m):
            s = 0.0
            for c in range(k):
                s += alpha[i, q, c] * beta[i, q, c]
            norm = max(s, TINY)
            post_norm[i, q] = norm
            for c in range(k):
                gamma[i, q, c] = alpha[i, q, c] * beta[i, q, c] / norm


@numba.njit(cache=True, nogil=True)
def _normaliser_grad_into(g: np.ndarray, y: np.ndarray, norm: float, out: np.ndarray) -> None:
    """``out`` = gradient w.r.t. ``x`` [k] of ``y = x / max(sum(x), tiny)`` given ``g`` [k]."""
    dot = 0.0
    if norm > TINY:
        for c in range(g.shape[0]):
            dot += g[c] * y[c]
    for c in range(g.shape[0]):
        out[c] = (g[c] - dot) / norm


@numba.njit(cache=True, nogil=True)
def scaled_passes_grad_into(g_gamma: np.ndarray, gamma: np.ndarray, emit: np.ndarray,
                            alpha: np.ndarray, beta: np.ndarray, fwd_norm: np.ndarray,
                            bwd_norm: np.ndarray, post_norm: np.ndarray, rho_t: np.ndarray,
                            prior: np.ndarray, g_emit: np.ndarray, g_rho: np.ndarray,
                            g_prior: np.ndarray, q_lo: int, q_hi: int) -> None:
    """The reverse-mode pass of :class:`vcfbert.model.hmm._ScaledForwardBackward` for the
    queries ``q_lo``..``q_hi`` - 1.

    Args:
        g_gamma: [m, b, k] gradient w.r.t. the posterior; the rest as
            :func:`scaled_passes_into` filled them.
        g_emit: [m, b, k] output: gradient w.r.t. the scaled emissions (not yet times them).
        g_rho: [m, b] output (row 0 stays 0); g_prior: [b, k] output.
    """
    m, b, k = emit.shape
    g_alpha = np.empty((m, k), emit.dtype)  # one query's, completed as recursions are undone
    g_beta = np.empty((m, k), emit.dtype)
    g_x = np.empty(k, emit.dtype)
    for q in range(q_lo, q_hi):
        for i in range(m):
            dot = 0.0
            if post_norm[i, q] > TINY:
                for c in range(k):
                    dot += g_gamma[i, q, c] * gamma[i, q, c]
            for c in range(k):
                g_u = (g_gamma[i, q, c] - dot) / post_norm[i, q]
                g_alpha[i, c] = g_u * beta[i, q, c]
                g_beta[i, c] = g_u * alpha[i, q, c]
                g_emit[i, q, c] = 0.0
            g_rho[i, q] = 0.0
        for c in range(k):
            g_prior[q, c] = 0.0
        # the backward recursion, undone from slot 0 up: b_i depends on b_{i+1}
        for i in range(0, m - 1):
            r = rho_t[i + 1, q]
            _normaliser_grad_into(g_beta[i], beta[i, q], bwd_norm[i, q], g_x)
            g_y_sum = 0.0
            pe = 0.0
            for c in range(k):
                g_y_sum += g_x[c]
                pe += prior[q, c] * (emit[i + 1, q, c] * beta[i + 1, q, c])
            acc = 0.0
            for c in range(k):
                ey = emit[i + 1, q, c] * beta[i + 1, q, c]
                g_ey = (1 - r) * g_x[c] + r * g_y_sum * prior[q, c]
                acc += (pe - ey) * g_x[c]
                g_prior[q, c] += r * g_y_sum * ey
                g_emit[i + 1, q, c] += g_ey * beta[i + 1, q, c]
                g_beta[i + 1, c] += g_ey * emit[i + 1, q, c]
            g_rho[i + 1, q] += acc
        # the forward recursion, undone from slot m - 1 down: a_i depends on a_{i-1}
        for i in range(m - 1, 0, -1):
            r = rho_t[i, q]
            _normaliser_grad_into(g_alpha[i], alpha[i, q], fwd_norm[i, q], g_x)
            acc = 0.0
            for c in range(k):
                a_prev = alpha[i - 1, q, c]
                g_emit[i, q, c] += g_x[c] * (a_prev * (1 - r) + r * prior[q, c])
                g_v = g_x[c] * emit[i, q, c]
                g_alpha[i - 1, c] += g_v * (1 - r)
                acc += g_v * (prior[q, c] - a_prev)
                g_prior[q, c] += r * g_v
            g_rho[i, q] += acc
        _normaliser_grad_into(g_alpha[0], alpha[0, q], fwd_norm[0, q], g_x)
        for c in range(k):
            g_prior[q, c] += g_x[c] * emit[0, q, c]
            g_emit[0, q, c] += g_x[c] * prior[q, c]


def over_queries(kernel: Callable[..., None], b: int, threads: int, *args: np.ndarray) -> None:
    """``kernel(*args, q_lo, q_hi)`` over the ``b`` queries, split into ``threads`` ranges
    run side by side (the kernels release the GIL; each query's outputs are its own)."""
    n = max(1, min(threads, b))
    ready(kernel)
    if n == 1:
        kernel(*args, 0, b)
        return
    cuts = [b * i // n for i in range(n + 1)]
    with ThreadPoolExecutor(n) as pool:
        for f in [pool.submit(kernel, *args, lo, hi) for lo, hi in zip(cuts, cuts[1:], strict=False)]:
            f.result()

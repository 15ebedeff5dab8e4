"""Fit the rational approximation of erf that the copying kernel's output head uses for GELU
(:func:`vcfbert.model.copy_kernel._gelu`), and print its coefficients and error.

    python bench/fit_erf.py

``erf(z) ~ z * P(z**2) / Q(z**2)`` on ``0 <= z <= 4`` (beyond, erf is 1 in float32 to within
1.6e-8: the kernel clamps z there), with P of degree 5 and Q of degree 5, ``Q(0) = 1``. The
fit is a linearised least-squares problem (``P(t) - y Q(t) = 0`` with ``y = erf(z) / z``),
re-weighted by the residuals of the previous round towards the smallest maximum error (Lawson's
iteration). It is run in float64; the error printed last is the one of the float32 evaluation
(Horner) over -6..6 against ``math.erf``, which float32 rounding dominates.
"""

from __future__ import annotations

import math

import numpy as np

Z_MAX = 4.0
DEG_P = 5
DEG_Q = 5


def fit(rounds: int = 60) -> tuple[np.ndarray, np.ndarray, float]:
    """(P coefficients float64 [DEG_P + 1], Q coefficients [DEG_Q + 1] with Q[0] = 1, lowest
    power first; the largest absolute error of the float64 approximant on the fitting grid)."""
    z = np.unique(np.concatenate([(1 - np.cos(np.linspace(0, math.pi, 4000))) * Z_MAX / 2,
                                  np.linspace(0, Z_MAX, 4000)]))
    t = z * z
    exact = np.array([math.erf(v) for v in z])
    y = np.where(z > 0, exact / np.where(z > 0, z, 1.0), 2 / math.sqrt(math.pi))
    scale = np.maximum(z, 1e-3)  # the error of erf is z times the error of erf / z
    q = np.ones_like(t)
    lawson = np.ones_like(t)
    for _ in range(rounds):
        a = np.concatenate([t[:, None] ** np.arange(DEG_P + 1),
                            -(y * t)[:, None] * t[:, None] ** np.arange(DEG_Q)], 1)
        w = scale / q * lawson
        coef, *_ = np.linalg.lstsq(a * w[:, None], y * w, rcond=None)
        p, qc = coef[:DEG_P + 1], np.concatenate([[1.0], coef[DEG_P + 1:]])
        q = np.polyval(qc[::-1], t)
        err = np.abs(z * np.polyval(p[::-1], t) / q - exact)
        lawson *= np.sqrt(err / err.max() + 0.05)
        lawson /= lawson.max()
    return p, qc, float(err.max())


def float32_error(p: np.ndarray, qc: np.ndarray) -> float:
    """Largest absolute error over -6..6 of the approximant evaluated as the kernel does."""
    f = np.float32
    z = np.linspace(-6, 6, 600_001).astype(f)
    zc = np.clip(z, f(-Z_MAX), f(Z_MAX))
    t = zc * zc
    num = np.full_like(t, f(p[-1]))
    for c in p[-2::-1]:
        num = num * t + f(c)
    den = np.full_like(t, f(qc[-1]))
    for c in qc[-2::-1]:
        den = den * t + f(c)
    approx = np.clip(zc * num / den, f(-1), f(1)).astype(np.float64)
    return float(np.max(np.abs(approx - np.array([math.erf(v) for v in z.astype(float)]))))


def main() -> None:
    p, qc, err64 = fit()
    print("P =", ", ".join(f"{c:.10e}" for c in p))
    print("Q =", ", ".join(f"{c:.10e}" for c in qc))
    print(f"max |error|: {err64:.2e} (float64 fit), {float32_error(p, qc):.2e} (float32)")


if __name__ == "__main__":
    main()

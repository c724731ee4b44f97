#!/usr/bin/python3
"""Write the reference values for tests/test_diag.c into tests/fixtures/diag/.

An implementation of the chain diagnostics independent of the C code
(src/ebm/diag.c), written from the published definitions with numpy and
scipy: Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021), "Rank-
normalization, folding, and localization: an improved R-hat for assessing
convergence of MCMC", and Geyer's (1992) initial monotone sequence for the
effective sample size. Autocovariances come from an FFT here (direct sums in
C), ranks from scipy.stats.rankdata, normal quantiles from scipy.stats.norm.

Definitions (the same as include/jem.h states):
  draws x (N, M): N draws of each of M chains;
  split: each chain's first and last N//2 draws (odd N drops the middle one);
  rank normalisation: z = Phi^-1((r - 3/8) / (S + 1/4)), r the average rank
    of a draw among all S draws;
  R-hat: sqrt(var+ / W), W mean within-chain variance (ddof 1),
    var+ = (n-1)/n W + var(chain means, ddof 1);
  ESS: S / tau, tau = -1 + 2 sum of the pairs P_k = rho_2k + rho_2k+1
    (rho_0 = 1, rho_t = 1 - (W - mean_m acov_m(t)) / var+, acov dividing by n)
    up to the first non-positive pair, each pair capped by the one before,
    tau >= 1 / log10(S);
  bulk: on rank-normalised split chains; folded: |x - median| of the split
    draws, rank-normalised; rhat = max(bulk, folded); tail ESS: min of the
    ESS of the split draws' indicators x <= q05 and x <= q95 (numpy's
    default linear quantiles).

Run with Debian's interpreter (python3-numpy, python3-scipy):
    /usr/bin/python3 scripts/make_diag_fixtures.py
The output is deterministic (fixed seeds); the test needs no Python.

File format: whitespace-separated tokens; a token starting with a letter
names a record, the numbers after it up to the next name are its values.
  shape N M; draws (N*M values, row n = draw n, repr-exact float64);
  rhat, rhat_bulk, rhat_folded, rhat_basic, ess_bulk, ess_tail, ess_basic;
  rhat_raw, ess_raw (on the chains as given, not split); z (the rank
  normalisation of the draws in file order).
"""
import os

import numpy as np
from scipy.stats import norm, rankdata

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures", "diag")


def split(x):
    n = x.shape[0]
    h = n // 2
    return np.concatenate([x[:h], x[n - h:]], axis=1)


def z_scale(x):
    s = x.size
    r = rankdata(x.ravel(), method="average").reshape(x.shape)
    return norm.ppf((r - 0.375) / (s + 0.25))


def rhat_basic(x):
    n, m = x.shape
    if m < 2:
        return float("nan")
    w = x.var(axis=0, ddof=1).mean()
    b = x.mean(axis=0).var(ddof=1)
    return float(np.sqrt(((n - 1) / n * w + b) / w))


def autocov(c):
    """Biased autocovariance (divide by n) of one chain, by FFT."""
    n = c.size
    d = c - c.mean()
    f = np.fft.rfft(d, 2 * n)
    return np.fft.irfft(f * np.conj(f), 2 * n)[:n] / n


def ess_basic(x):
    n, m = x.shape
    w = x.var(axis=0, ddof=1).mean()
    b = x.mean(axis=0).var(ddof=1) if m > 1 else 0.0
    vp = (n - 1) / n * w + b
    acov = np.mean([autocov(x[:, j]) for j in range(m)], axis=0)
    rho = 1.0 - (w - acov) / vp
    rho[0] = 1.0
    npairs = n // 2
    pairs = rho[0:2 * npairs:2] + rho[1:2 * npairs:2]
    total = 0.0
    prev = np.inf
    for p in pairs:
        if not p > 0:
            break
        p = min(p, prev)
        total += p
        prev = p
    s = n * m
    tau = max(-1.0 + 2.0 * total, 1.0 / np.log10(s))
    return float(s / tau)


def diagnostics(x):
    sp = split(x)
    out = {}
    out["rhat_basic"] = rhat_basic(sp)
    out["ess_basic"] = ess_basic(sp)
    z = z_scale(sp)
    out["rhat_bulk"] = rhat_basic(z)
    out["ess_bulk"] = ess_basic(z)
    med = np.median(sp)
    out["rhat_folded"] = rhat_basic(z_scale(np.abs(sp - med)))
    out["rhat"] = max(out["rhat_bulk"], out["rhat_folded"])
    q05, q95 = np.quantile(sp, [0.05, 0.95])
    out["ess_tail"] = min(ess_basic((sp <= q05).astype(float)), ess_basic((sp <= q95).astype(float)))
    out["rhat_raw"] = rhat_basic(x)
    out["ess_raw"] = ess_basic(x)
    return out


def ar1(rng, n, m, phi, mu=None, scale=None):
    x = np.zeros((n, m))
    e = rng.standard_normal((n, m))
    x[0] = e[0] / np.sqrt(1 - phi * phi)
    for t in range(1, n):
        x[t] = phi * x[t - 1] + e[t]
    if scale is not None:
        x = x * np.asarray(scale)
    if mu is not None:
        x = x + np.asarray(mu)
    return x


def write(name, x):
    d = diagnostics(x)
    n, m = x.shape
    with open(os.path.join(OUT, name + ".txt"), "w") as f:
        f.write("# written by scripts/make_diag_fixtures.py\n")
        f.write("shape %d %d\n" % (n, m))
        f.write("draws\n")
        for row in x:
            f.write(" ".join(repr(float(v)) for v in row) + "\n")
        for k in ["rhat", "rhat_bulk", "rhat_folded", "rhat_basic", "ess_bulk", "ess_tail", "ess_basic",
                  "rhat_raw", "ess_raw"]:
            f.write("%s %r\n" % (k, d[k]))
        f.write("z\n")
        zz = z_scale(x).ravel()
        for i in range(0, zz.size, 8):
            f.write(" ".join(repr(float(v)) for v in zz[i:i + 8]) + "\n")
    print(name, n, m, " ".join("%s=%.6g" % (k, v) for k, v in d.items()))


def main():
    os.makedirs(OUT, exist_ok=True)
    rng = np.random.default_rng(20)
    # well-mixed, positively autocorrelated chains
    write("ar_mixed", ar1(rng, 100, 4, 0.7))
    # chains stuck around different means: R-hat far above 1
    write("ar_shifted", ar1(rng, 50, 4, 0.5, mu=[0.0, 0.5, 1.0, 3.0]))
    # same location, different scales: the folded R-hat sees it
    write("scales", ar1(rng, 60, 3, 0.3, scale=[1.0, 1.0, 6.0]))
    # heavy tails, an odd length, ties (rounded to 0.5)
    write("cauchy_ties", np.round(2 * rng.standard_cauchy((41, 3))) / 2)
    # antithetic chains: ESS above the number of draws (the strong case
    # reaches the floor tau = 1 / log10(S))
    write("antithetic", ar1(rng, 64, 4, -0.15))
    write("antithetic_floor", ar1(rng, 64, 4, -0.6))
    # one chain
    write("single", ar1(rng, 30, 1, 0.5))


if __name__ == "__main__":
    main()

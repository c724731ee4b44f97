#!/usr/bin/python3
"""Write the reference values for tests/test_metrics.c into tests/fixtures/metrics/.

An implementation independent of the C code: scikit-learn for AUROC, average
precision, the ROC curve, log loss and the binary Brier score; plain numpy
(written out below) for the multiclass Brier score, ECE, MCE, adaptive ECE and
the per-bin tables; scipy's bounded scalar minimiser for temperature scaling.

Run with Debian's interpreter (python3-sklearn, python3-numpy, python3-scipy):
    /usr/bin/python3 scripts/make_metric_fixtures.py
The output is deterministic (fixed seeds); the test needs no Python.

File format: whitespace-separated tokens; a token starting with a letter
(other than inf/nan) names a record and the numbers after it, up to the next
name, are its values. '#' starts a comment line.
  OOD files:  in, out (scores, repr-exact float64); auroc, aupr_in, aupr_out,
              fpr95 (sklearn roc_curve(drop_intermediate=False): fpr at the
              first tpr >= 0.95), fpr95_dropped (the same on the default
              drop_intermediate=True curve, for information), roc_fpr,
              roc_tpr, roc_thr (drop_intermediate=False, thresholds[0] is
              written as inf), roc_drop_fpr, roc_drop_tpr (default curve).
  Calibration files: shape (N K), probs (N*K float32 values, '%.9g'),
              labels; accuracy, nll (floor 1e-12), brier (multiclass);
              for each B in bins: ece_B, mce_B, ace_B, and the tables
              bin_count_B, bin_conf_B, bin_acc_B, ada_count_B, ada_conf_B,
              ada_acc_B; optionally sk_log_loss and sk_brier_binary.
  Temperature file: shape, logits (float32), labels, t_opt, nll_before,
              nll_after, nll_t2_5 (NLL at T = 2.5).
"""
import os
import sys

import numpy as np
import scipy.optimize
import sklearn
from sklearn.metrics import (average_precision_score, brier_score_loss, log_loss,
                             roc_auc_score, roc_curve)

OUT = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "tests", "fixtures",
                   "metrics")
NLL_FLOOR = 1e-12


def fmt64(v):
    v = float(v)
    if np.isinf(v):
        return "inf" if v > 0 else "-inf"
    return repr(v)


def fmt32(v):
    return "%.9g" % float(v)


class Writer:
    def __init__(self, name, comment):
        self.path = os.path.join(OUT, name)
        self.lines = ["# " + comment,
                      "# written by scripts/make_metric_fixtures.py (scikit-learn %s, numpy %s)"
                      % (sklearn.__version__, np.__version__)]

    def put(self, key, values, f=fmt64, per_line=8):
        vals = [f(v) for v in np.atleast_1d(np.asarray(values, dtype=np.float64)).ravel()]
        if len(vals) <= per_line:
            self.lines.append(" ".join([key] + vals))
            return
        self.lines.append(key)
        for i in range(0, len(vals), per_line):
            self.lines.append("  " + " ".join(vals[i:i + per_line]))

    def close(self):
        with open(self.path, "w") as fh:
            fh.write("\n".join(self.lines) + "\n")
        print("wrote", os.path.relpath(self.path))


# ------------------------------------------------------------------ OOD

def fpr_at_first_tpr(fpr, tpr, level=0.95):
    idx = np.argmax(tpr >= level)
    return fpr[idx]


def write_ood(name, comment, s_in, s_out):
    s_in = np.asarray(s_in, dtype=np.float64)
    s_out = np.asarray(s_out, dtype=np.float64)
    y = np.r_[np.ones(len(s_in)), np.zeros(len(s_out))]
    s = np.r_[s_in, s_out]
    w = Writer(name, comment)
    w.put("in", s_in, per_line=6)
    w.put("out", s_out, per_line=6)
    w.put("auroc", roc_auc_score(y, s))
    w.put("aupr_in", average_precision_score(y, s))
    w.put("aupr_out", average_precision_score(1 - y, -s))
    fpr, tpr, thr = roc_curve(y, s, drop_intermediate=False)
    fpr_d, tpr_d, _ = roc_curve(y, s)
    w.put("fpr95", fpr_at_first_tpr(fpr, tpr))
    w.put("fpr95_dropped", fpr_at_first_tpr(fpr_d, tpr_d))
    w.put("roc_fpr", fpr, per_line=6)
    w.put("roc_tpr", tpr, per_line=6)
    thr = thr.copy()
    thr[0] = np.inf   # sklearn 1.2 writes max + 1 there; jem writes +inf
    w.put("roc_thr", thr, per_line=6)
    w.put("roc_drop_fpr", fpr_d, per_line=6)
    w.put("roc_drop_tpr", tpr_d, per_line=6)
    w.close()


# ------------------------------------------------------------ calibration

def bins_equal_width(conf, correct, B):
    """(b/B, (b+1)/B], confidence 0 in bin 0: per-bin count, mean conf, acc."""
    count = np.zeros(B)
    mconf = np.zeros(B)
    acc = np.zeros(B)
    for b in range(B):
        lo, hi = b / B, (b + 1) / B
        m = (conf > lo) & (conf <= hi)
        if b == 0:
            m |= conf == 0
        count[b] = m.sum()
        if count[b] > 0:
            mconf[b] = conf[m].mean()
            acc[b] = correct[m].mean()
    return count, mconf, acc


def bins_equal_mass(conf, correct, B):
    order = np.argsort(conf, kind="stable")
    count = np.zeros(B)
    mconf = np.zeros(B)
    acc = np.zeros(B)
    for b, idx in enumerate(np.array_split(order, B)):
        count[b] = len(idx)
        if len(idx):
            mconf[b] = conf[idx].mean()
            acc[b] = correct[idx].mean()
    return count, mconf, acc


def ece_of(count, mconf, acc):
    n = count.sum()
    gap = np.abs(acc - mconf)
    ece = float(np.sum(count / n * gap))
    mce = float(gap[count > 0].max())
    return ece, mce


def write_calib(name, comment, p32, labels, bins_list, sklearn_checks=False):
    p32 = np.asarray(p32, dtype=np.float32)
    labels = np.asarray(labels, dtype=np.int64)
    N, K = p32.shape
    p = p32.astype(np.float64)
    conf = p.max(axis=1)
    pred = p.argmax(axis=1)
    correct = (pred == labels).astype(np.float64)
    onehot = np.eye(K)[labels]
    w = Writer(name, comment)
    w.put("shape", [N, K])
    w.put("probs", p32.ravel(), f=fmt32, per_line=K if K <= 10 else 10)
    w.put("labels", labels, per_line=20)
    w.put("accuracy", correct.mean())
    w.put("nll", np.mean(-np.log(np.maximum(p[np.arange(N), labels], NLL_FLOOR))))
    w.put("brier", np.mean(np.sum((p - onehot) ** 2, axis=1)))
    for B in bins_list:
        c, m, a = bins_equal_width(conf, correct, B)
        ece, mce = ece_of(c, m, a)
        ca, ma, aa = bins_equal_mass(conf, correct, B)
        ace, _ = ece_of(ca, ma, aa)
        w.put("ece_%d" % B, ece)
        w.put("mce_%d" % B, mce)
        w.put("ace_%d" % B, ace)
        w.put("bin_count_%d" % B, c, per_line=10)
        w.put("bin_conf_%d" % B, m, per_line=5)
        w.put("bin_acc_%d" % B, a, per_line=5)
        w.put("ada_count_%d" % B, ca, per_line=10)
        w.put("ada_conf_%d" % B, ma, per_line=5)
        w.put("ada_acc_%d" % B, aa, per_line=5)
    if sklearn_checks:
        # rows are float32-normalised: sklearn renormalises them, so this
        # agrees with "nll" to float32 precision only
        w.put("sk_log_loss", log_loss(labels, p, labels=list(range(K))))
        if K == 2:
            w.put("sk_brier_binary", brier_score_loss(labels, p[:, 1]))
    w.close()


def normalise32(p):
    p = np.asarray(p, dtype=np.float64)
    return (p / p.sum(axis=1, keepdims=True)).astype(np.float32)


# ---------------------------------------------------- temperature scaling

def nll_logits(z, y, T):
    a = z / T
    mx = a.max(axis=1, keepdims=True)
    lse = mx[:, 0] + np.log(np.exp(a - mx).sum(axis=1))
    return float(np.mean(lse - a[np.arange(len(y)), y]))


def write_temp(name, comment, z32, labels):
    z = np.asarray(z32, dtype=np.float32).astype(np.float64)
    N, K = z.shape
    res = scipy.optimize.minimize_scalar(lambda lt: nll_logits(z, labels, np.exp(lt)),
                                         bounds=(np.log(0.01), np.log(100.0)),
                                         method="bounded",
                                         options={"xatol": 1e-12, "maxiter": 500})
    T = float(np.exp(res.x))
    w = Writer(name, comment)
    w.put("shape", [N, K])
    w.put("logits", np.asarray(z32, dtype=np.float32).ravel(), f=fmt32, per_line=K)
    w.put("labels", labels, per_line=20)
    w.put("t_opt", T)
    w.put("nll_before", nll_logits(z, labels, 1.0))
    w.put("nll_after", nll_logits(z, labels, T))
    w.put("nll_t2_5", nll_logits(z, labels, 2.5))
    w.close()


def main():
    os.makedirs(OUT, exist_ok=True)

    # --- OOD score sets
    r = np.random.default_rng(11)
    write_ood("ood_ties.txt", "scores rounded to one decimal: many in/out ties",
              np.round(r.normal(1.0, 1.0, 300), 1), np.round(r.normal(0.0, 1.2, 200), 1))
    r = np.random.default_rng(12)
    write_ood("ood_int.txt", "integer scores 0..5 and 0..3: huge tie groups",
              r.integers(0, 6, 61).astype(np.float64), r.integers(0, 4, 97).astype(np.float64))
    r = np.random.default_rng(13)
    write_ood("ood_cont.txt", "continuous float64 scores, no ties",
              r.normal(0.8, 1.0, 400), r.normal(0.0, 1.0, 300))
    r = np.random.default_rng(14)
    # float32 log p(x)-like values rounded to 2 decimals, stored as the float64
    # values of the float32 numbers
    li = np.round(r.normal(-3.0, 2.0, 260), 2).astype(np.float32).astype(np.float64)
    lo = np.round(r.normal(-6.0, 3.0, 240), 2).astype(np.float32).astype(np.float64)
    lo[:5] = [-1e300, -1e30, 50.0, 50.0, 50.0]
    li[:2] = [50.0, 1e300]
    write_ood("ood_f32.txt", "float32 values with ties, huge values and a tie at the top",
              li, lo)
    # the 95 % point inside a straight run of tied (in, out) pairs: the
    # default roc_curve drops it, the exact threshold definition does not
    top = np.arange(100.0, 110.0)
    pairs = np.arange(1.0, 41.0)
    write_ood("ood_collinear.txt",
              "10 lone in-scores above 40 tied in/out pairs: fpr95 differs from the "
              "drop_intermediate=True curve", np.r_[top, pairs], pairs)

    # --- calibration
    r = np.random.default_rng(21)
    N, K = 200, 10
    p = normalise32(r.dirichlet(np.full(K, 0.3), N))
    # labels from a sharpened copy: over-confident-ish but not degenerate
    sharp = p.astype(np.float64) ** 0.7
    sharp /= sharp.sum(axis=1, keepdims=True)
    y = np.array([r.choice(K, p=row) for row in sharp])
    # special rows: a two-way tie at 0.5 (argmax = first), a certain row, a
    # true class of probability 0 (NLL floor), the uniform row, exact edges
    p[0] = 0; p[0, 3] = 0.5; p[0, 7] = 0.5; y[0] = 7
    p[1] = 0; p[1, 2] = 1.0; y[1] = 2
    p[2] = 0; p[2, 4] = 1.0; y[2] = 5
    p[3] = np.float32(0.1); y[3] = 9
    p[4] = 0; p[4, 0] = 0.75; p[4, 1] = 0.25; y[4] = 0
    p[5] = 0; p[5, 6] = 0.6; p[5, 1] = 0.4; y[5] = 1
    write_calib("calib_dirichlet.txt", "Dirichlet(0.3) rows, K = 10, with edge rows",
                p, y, [10, 15, 20])

    r = np.random.default_rng(22)
    N = 257
    q = np.round(1 / (1 + np.exp(-r.normal(0, 2.0, N))), 2)   # ties in confidence
    q = np.clip(q, 0.01, 0.99)
    p2 = np.stack([1 - q, q], axis=1).astype(np.float32)
    y2 = (r.random(N) < np.clip(q * 1.1 - 0.05, 0, 1)).astype(np.int64)
    write_calib("calib_binary.txt", "K = 2, probabilities rounded to 0.01 (tied confidences)",
                p2, y2, [15, 7], sklearn_checks=True)

    r = np.random.default_rng(23)
    p3 = normalise32(r.random((7, 3)) ** 3)
    y3 = r.integers(0, 3, 7)
    write_calib("calib_tiny.txt", "N = 7 < B: empty equal-mass bins", p3, y3, [15, 4],
                sklearn_checks=True)

    # --- temperature scaling
    r = np.random.default_rng(31)
    N, K, T0 = 300, 6, 1.7
    z = (r.normal(0, 3.0, (N, K))).astype(np.float32)
    a = z.astype(np.float64) / T0
    pz = np.exp(a - a.max(axis=1, keepdims=True))
    pz /= pz.sum(axis=1, keepdims=True)
    yz = np.array([r.choice(K, p=row) for row in pz])
    write_temp("temp_fit.txt", "labels drawn from softmax(z / 1.7), N = 300, K = 6", z, yz)
    return 0


if __name__ == "__main__":
    sys.exit(main())

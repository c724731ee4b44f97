/* Calibration metrics (accuracy, NLL, Brier, ECE, MCE, adaptive ECE) and
 * temperature scaling. Definitions in eval.h. N samples, K classes, B bins. */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ bins */

/* Equal-width bin of a confidence: b with b/B < c <= (b+1)/B, c = 0 -> 0.
 * ceil(c * B) is exact for float confidences; the two corrections compare
 * against the bin edges b/B (rounded to double) for any other double. */
static int width_bin(double c, int B)
{
    int b = (int)ceil(c * B) - 1;
    if (b < 0) b = 0;
    if (b > B - 1) b = B - 1;
    if (b > 0 && c <= (double)b / B) b--;
    else if (b < B - 1 && c > (double)(b + 1) / B) b++;
    return b;
}

typedef struct {
    double c; /* confidence */
    int i;    /* sample index (tie break: keeps sample order) */
} conf_idx;

static int cmp_conf(const void *a, const void *b)
{
    const conf_idx *x = a, *y = b;
    if (x->c != y->c) return (x->c > y->c) - (x->c < y->c);
    return (x->i > y->i) - (x->i < y->i);
}

/* Fold accumulated sums into the table and the two summaries. */
static void finish_bins(jem_calib_bin *t, int B, int N, double *ece, double *mce)
{
    double e = 0, m = 0;
    for (int b = 0; b < B; b++) {
        if (t[b].count == 0) continue;
        t[b].conf /= t[b].count;
        t[b].acc /= t[b].count;
        double gap = fabs(t[b].acc - t[b].conf);
        e += (double)t[b].count / N * gap;
        if (gap > m) m = gap;
    }
    if (ece) *ece = e;
    if (mce) *mce = m;
}

jem_status jem_ece_bins(const double *conf, const uint8_t *correct, int N, int n_bins, int adaptive,
                        jem_calib_bin *bins, double *ece, double *mce)
{
    int B = n_bins;
    if (N <= 0 || B <= 0 || !conf || !correct)
        return jem_fail(JEM_ERR_ARG, "ece: need N > 0 samples and B > 0 bins (got %d, %d)", N, B);
    for (int i = 0; i < N; i++)
        if (!(conf[i] >= 0 && conf[i] <= 1))
            return jem_fail(isfinite(conf[i]) ? JEM_ERR_ARG : JEM_ERR_NONFINITE,
                            "ece: confidence %d is %g, outside [0, 1]", i, conf[i]);
    jem_calib_bin *t = calloc((size_t)B, sizeof *t); /* (B) */
    if (!t) return jem_fail(JEM_ERR_NOMEM, "ece: %d bins", B);

    if (!adaptive) {
        for (int b = 0; b < B; b++) {
            t[b].lo = (double)b / B;
            t[b].hi = (double)(b + 1) / B;
        }
        for (int i = 0; i < N; i++) {
            int b = width_bin(conf[i], B);
            t[b].count++;
            t[b].conf += conf[i];
            t[b].acc += correct[i] ? 1 : 0;
        }
    } else {
        conf_idx *o = malloc((size_t)N * sizeof *o); /* (N) */
        if (!o) {
            free(t);
            return jem_fail(JEM_ERR_NOMEM, "ece: %d samples", N);
        }
        for (int i = 0; i < N; i++) {
            o[i].c = conf[i];
            o[i].i = i;
        }
        qsort(o, (size_t)N, sizeof *o, cmp_conf);
        /* numpy.array_split: the first N % B groups get one extra */
        int q = N / B, r = N % B, start = 0;
        for (int b = 0; b < B; b++) {
            int len = q + (b < r);
            t[b].count = len;
            for (int k = start; k < start + len; k++) {
                t[b].conf += o[k].c;
                t[b].acc += correct[o[k].i] ? 1 : 0;
            }
            if (len > 0) {
                t[b].lo = o[start].c;
                t[b].hi = o[start + len - 1].c;
            }
            start += len;
        }
        free(o);
    }
    finish_bins(t, B, N, ece, mce);
    if (bins) memcpy(bins, t, (size_t)B * sizeof *t);
    free(t);
    return JEM_OK;
}

/* -------------------------------------------------------------- matrix */

static jem_status check_labels(const int32_t *y, int N, int K, const char *what)
{
    for (int i = 0; i < N; i++)
        if (y[i] < 0 || y[i] >= K)
            return jem_fail(JEM_ERR_ARG, "%s: label %d of sample %d is outside [0, %d)", what, (int)y[i], i, K);
    return JEM_OK;
}

jem_status jem_calibration(const float *probs, const int32_t *y, int N, int K, int n_bins, jem_calib *out,
                           jem_calib_bin *bins, jem_calib_bin *ada_bins)
{
    memset(out, 0, sizeof *out);
    if (!probs || !y || N <= 0 || K <= 0 || n_bins <= 0)
        return jem_fail(JEM_ERR_ARG, "calibration: need N, K, bins > 0 (got %d, %d, %d)", N, K, n_bins);
    jem_status st = check_labels(y, N, K, "calibration");
    if (st) return st;

    double *conf = malloc((size_t)N * sizeof *conf); /* (N) */
    uint8_t *hit = malloc((size_t)N);                /* (N) */
    if (!conf || !hit) {
        free(conf);
        free(hit);
        return jem_fail(JEM_ERR_NOMEM, "calibration: %d samples", N);
    }
    double nll = 0, brier = 0, correct = 0;
    for (int i = 0; i < N; i++) {
        const float *p = probs + (size_t)i * K; /* (K) */
        int arg = 0;
        double best = p[0], sq = 0, rowsum = 0, vmin = 0;
        for (int k = 0; k < K; k++) {
            double v = p[k];
            if (!isfinite(v)) {
                free(conf);
                free(hit);
                return jem_fail(JEM_ERR_NONFINITE, "calibration: probability (%d, %d) is %g", i, k, v);
            }
            if (v > best) {
                best = v;
                arg = k;
            }
            double d = v - (k == y[i] ? 1.0 : 0.0);
            sq += d * d;
            rowsum += v;
            if (v < vmin) vmin = v;
        }
        if (fabs(rowsum - 1) > JEM_PROB_ROW_TOL || vmin < -JEM_PROB_ROW_TOL) {
            free(conf);
            free(hit);
            return jem_fail(JEM_ERR_ARG,
                            "calibration: row %d (sum %g, min %g) is not a "
                            "probability vector (logits passed instead of probabilities?)",
                            i, rowsum, vmin);
        }
        double py = p[y[i]];
        nll -= log(py > JEM_NLL_FLOOR ? py : JEM_NLL_FLOOR);
        brier += sq;
        hit[i] = arg == y[i];
        correct += hit[i];
        /* slightly unnormalised rows may exceed 1; clamp for the binning */
        conf[i] = best < 0 ? 0 : best > 1 ? 1 : best;
    }
    out->n = N;
    out->n_bins = n_bins;
    out->accuracy = correct / N;
    out->nll = nll / N;
    out->brier = brier / N;
    st = jem_ece_bins(conf, hit, N, n_bins, 0, bins, &out->ece, &out->mce);
    if (!st) st = jem_ece_bins(conf, hit, N, n_bins, 1, ada_bins, &out->ace, NULL);
    free(conf);
    free(hit);
    return st;
}

/* --------------------------------------------------- temperature scaling */

/* Mean NLL of softmax(beta * z) and its first two derivatives in beta:
 * d/dbeta = mean(E_p[z] - z_y), d2/dbeta2 = mean(Var_p[z]) >= 0. */
static double nll_beta(const float *logits, const int32_t *y, int N, int K, double beta, double *g, double *h)
{
    double f = 0, gs = 0, hs = 0;
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * K; /* (K) */
        double mx = -INFINITY;
        for (int k = 0; k < K; k++)
            if (beta * z[k] > mx) mx = beta * z[k];
        double s = 0, sz = 0;
        for (int k = 0; k < K; k++) {
            double e = exp(beta * z[k] - mx);
            s += e;
            sz += e * z[k];
        }
        double mean = sz / s, var = 0;
        if (g || h) {
            for (int k = 0; k < K; k++) {
                double d = z[k] - mean;
                var += exp(beta * z[k] - mx) * d * d;
            }
            var /= s;
        }
        f += mx + log(s) - beta * z[y[i]];
        gs += mean - z[y[i]];
        hs += var;
    }
    if (g) *g = gs / N;
    if (h) *h = hs / N;
    return f / N;
}

double jem_nll_logits(const float *logits, const int32_t *y, int N, int K, double T)
{
    if (N <= 0) return 0;
    return nll_beta(logits, y, N, K, 1.0 / T, NULL, NULL);
}

void jem_softmax_temp(const float *logits, int N, int K, double T, float *probs)
{
    double beta = 1.0 / T;
    for (int i = 0; i < N; i++) {
        const float *z = logits + (size_t)i * K; /* (K) */
        float *p = probs + (size_t)i * K;        /* (K) */
        double mx = -INFINITY, s = 0;
        for (int k = 0; k < K; k++)
            if (beta * z[k] > mx) mx = beta * z[k];
        for (int k = 0; k < K; k++) s += exp(beta * z[k] - mx);
        for (int k = 0; k < K; k++) p[k] = (float)(exp(beta * z[k] - mx) / s);
    }
}

jem_status jem_temp_scale_fit(const float *logits, const int32_t *y, int N, int K, jem_temp_fit *out)
{
    memset(out, 0, sizeof *out);
    if (!logits || !y || N <= 0 || K <= 0)
        return jem_fail(JEM_ERR_ARG, "temperature scaling: need N, K > 0 (got %d, %d)", N, K);
    jem_status st = check_labels(y, N, K, "temperature scaling");
    if (st) return st;
    for (size_t i = 0; i < (size_t)N * K; i++)
        if (!isfinite(logits[i]))
            return jem_fail(JEM_ERR_NONFINITE, "temperature scaling: logit (%zu, %zu) is %g", i / (size_t)K,
                            i % (size_t)K, (double)logits[i]);

    /* g(beta) is non-decreasing (the NLL is convex in beta): keep a bracket
     * [lo, hi] with g(lo) <= 0 <= g(hi) as far as is known, Newton inside it,
     * geometric bisection when Newton leaves it. */
    const double lo0 = 1.0 / JEM_TEMP_MAX, hi0 = 1.0 / JEM_TEMP_MIN;
    double lo = lo0, hi = hi0, beta = 1.0, g, h;
    out->nll_before = nll_beta(logits, y, N, K, 1.0, NULL, NULL);
    int it;
    for (it = 0; it < 200; it++) {
        nll_beta(logits, y, N, K, beta, &g, &h);
        if (g > 0) hi = beta;
        else lo = beta;
        if (g == 0) break;
        double next = (h > 0) ? beta - g / h : NAN;
        if (!(next > lo && next < hi)) next = sqrt(lo * hi);
        double step = fabs(next - beta);
        beta = next;
        if (step <= 1e-14 * beta || hi <= lo * (1 + 1e-15)) break;
    }
    out->iters = it + 1;
    if (beta < lo0) beta = lo0;
    if (beta > hi0) beta = hi0;
    out->T = 1.0 / beta;
    out->at_bound = beta <= lo0 * (1 + 1e-9) || beta >= hi0 * (1 - 1e-9);
    out->nll_after = nll_beta(logits, y, N, K, beta, NULL, NULL);
    return JEM_OK;
}

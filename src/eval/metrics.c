/* OOD detection metrics: ROC curve, AUROC, AUPR-in/out, FPR at 95 % TPR.
 *
 * All of them come from one sort of the pooled scores (descending) and a walk
 * over groups of tied scores: a group is one threshold, so ties collapse the
 * way sklearn's _binary_clf_curve collapses them. Counts are integers held in
 * doubles (exact below 2^53). See eval.h for the definitions. */
#include "eval/eval.h"

#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    double s; /* score */
    int pos;  /* 1 = in-distribution */
} scored;

/* descending by score; ties in any order (a tie group is treated as one) */
static int cmp_desc(const void *a, const void *b)
{
    double x = ((const scored *)a)->s, y = ((const scored *)b)->s;
    return (x < y) - (x > y);
}

/* Pool and sort the scores. *out (n_in + n_out) is the caller's to free. */
static jem_status pool_sorted(const double *s_in, int n_in, const double *s_out, int n_out, scored **out)
{
    *out = NULL;
    if (!s_in || !s_out || n_in <= 0 || n_out <= 0)
        return jem_fail(JEM_ERR_ARG,
                        "ood metrics: need at least one in-distribution "
                        "and one OOD score (got %d and %d)",
                        n_in, n_out);
    size_t n = (size_t)n_in + (size_t)n_out;
    scored *a = malloc(n * sizeof *a);
    if (!a) return jem_fail(JEM_ERR_NOMEM, "ood metrics: %zu scores", n);
    for (int i = 0; i < n_in; i++) {
        if (isnan(s_in[i])) {
            free(a);
            return jem_fail(JEM_ERR_NONFINITE, "ood metrics: in-distribution score %d is NaN", i);
        }
        a[i].s = s_in[i];
        a[i].pos = 1;
    }
    for (int i = 0; i < n_out; i++) {
        if (isnan(s_out[i])) {
            free(a);
            return jem_fail(JEM_ERR_NONFINITE, "ood metrics: OOD score %d is NaN", i);
        }
        a[n_in + i].s = s_out[i];
        a[n_in + i].pos = 0;
    }
    qsort(a, n, sizeof *a, cmp_desc);
    *out = a;
    return JEM_OK;
}

/* Average precision walking a[] in the given direction with `positive` as the
 * positive label: sum over tie groups of (tp - tp_prev) * tp / (tp + fp), / P. */
static double average_precision(const scored *a, size_t n, int reverse, int positive, double P)
{
    double tp = 0, fp = 0, tp_prev = 0, sum = 0;
    for (size_t k = 0; k < n; k++) {
        size_t i = reverse ? n - 1 - k : k;
        if (a[i].pos == positive) tp += 1;
        else fp += 1;
        size_t j = reverse ? i - 1 : i + 1;          /* next element in walk order */
        if (k + 1 < n && a[j].s == a[i].s) continue; /* group continues */
        sum += (tp - tp_prev) * (tp / (tp + fp));
        tp_prev = tp;
    }
    return sum / P;
}

jem_status jem_ood_metrics_compute(const double *s_in, int n_in, const double *s_out, int n_out, jem_ood_metrics *out)
{
    scored *a;
    jem_status st = pool_sorted(s_in, n_in, s_out, n_out, &a);
    if (st) return st;
    size_t n = (size_t)n_in + (size_t)n_out;
    double P = n_in, N = n_out;

    double tp = 0, fp = 0, tp_prev = 0, fp_prev = 0, area2 = 0;
    int found = 0;
    double fpr95 = 1, thr95 = -INFINITY;
    for (size_t i = 0; i < n; i++) {
        if (a[i].pos) tp += 1;
        else fp += 1;
        if (i + 1 < n && a[i + 1].s == a[i].s) continue;
        area2 += (fp - fp_prev) * (tp + tp_prev); /* twice the trapezoid */
        if (!found && tp / P >= 0.95) {           /* same division as tpr */
            found = 1;
            fpr95 = fp / N;
            thr95 = a[i].s;
        }
        tp_prev = tp;
        fp_prev = fp;
    }
    out->auroc = area2 / (2.0 * P * N);
    out->fpr95 = fpr95;
    out->thr95 = thr95;
    out->aupr_in = average_precision(a, n, 0, 1, P);
    /* OOD positive, scores negated: thresholds run over ascending scores */
    out->aupr_out = average_precision(a, n, 1, 0, N);
    free(a);
    return JEM_OK;
}

jem_status jem_roc_curve(const double *s_in, int n_in, const double *s_out, int n_out, int drop_intermediate,
                         jem_roc *out)
{
    memset(out, 0, sizeof *out);
    if ((size_t)n_in + (size_t)n_out >= (size_t)INT_MAX)
        return jem_fail(JEM_ERR_ARG, "roc curve: %d + %d scores is too many for one curve", n_in, n_out);
    scored *a;
    jem_status st = pool_sorted(s_in, n_in, s_out, n_out, &a);
    if (st) return st;
    size_t n = (size_t)n_in + (size_t)n_out;

    /* one point per tie group, plus the leading (0, 0) */
    double *buf = malloc(3 * (n + 1) * sizeof *buf);
    if (!buf) {
        free(a);
        return jem_fail(JEM_ERR_NOMEM, "roc curve: %zu points", n + 1);
    }
    double *fps = buf, *tps = buf + (n + 1), *thr = buf + 2 * (n + 1);
    size_t g = 0; /* groups so far */
    double tp = 0, fp = 0;
    for (size_t i = 0; i < n; i++) {
        if (a[i].pos) tp += 1;
        else fp += 1;
        if (i + 1 < n && a[i + 1].s == a[i].s) continue;
        fps[1 + g] = fp;
        tps[1 + g] = tp;
        thr[1 + g] = a[i].s;
        g++;
    }
    free(a);

    /* sklearn drops the interior points (of the groups, before the leading
     * (0, 0) is added) where both second differences are zero */
    size_t m = g;
    if (drop_intermediate && g > 2) {
        double *F = fps + 1, *T = tps + 1, *H = thr + 1;
        double fa = F[0], ta = T[0]; /* original values of kept[i-1] */
        size_t k = 1;
        for (size_t i = 1; i + 1 < g; i++) {
            double fb = F[i], tb = T[i];
            int keep = (F[i + 1] - 2 * fb + fa) != 0 || (T[i + 1] - 2 * tb + ta) != 0;
            fa = fb;
            ta = tb;
            if (keep) {
                F[k] = fb;
                T[k] = tb;
                H[k] = H[i];
                k++;
            }
        }
        F[k] = F[g - 1];
        T[k] = T[g - 1];
        H[k] = H[g - 1];
        m = k + 1;
    }
    fps[0] = 0;
    tps[0] = 0;
    thr[0] = INFINITY;
    out->n = (int)(m + 1);
    for (size_t i = 0; i <= m; i++) {
        fps[i] /= (double)n_out;
        tps[i] /= (double)n_in;
    }
    out->fpr = fps;
    out->tpr = tps;
    out->thr = thr;
    return JEM_OK;
}

void jem_roc_free(jem_roc *r)
{
    if (!r) return;
    free(r->fpr); /* the block holding all three arrays */
    memset(r, 0, sizeof *r);
}

double jem_roc_area(const jem_roc *r)
{
    double area = 0;
    for (int i = 1; i < r->n; i++) area += (r->fpr[i] - r->fpr[i - 1]) * (r->tpr[i] + r->tpr[i - 1]);
    return 0.5 * area;
}

double jem_roc_fpr_at_tpr(const jem_roc *r, double level)
{
    for (int i = 0; i < r->n; i++)
        if (r->tpr[i] >= level) return r->fpr[i];
    return 1.0;
}

/* Chain diagnostics: split R-hat and effective sample size, with rank
 * normalisation and folding (Vehtari, Gelman, Simpson, Carpenter & Buerkner
 * 2021). Draws are (N, M): draw n of chain m at x[n * M + m]. */
#include "jem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

double jem_norm_ppf(double p)
{
    if (!(p >= 0 && p <= 1)) return NAN;
    if (p == 0) return -INFINITY;
    if (p == 1) return INFINITY;
    if (p > 0.5) return -jem_norm_ppf(1.0 - p);
    if (p == 0.5) return 0;
    /* lower tail: the rational start (error < 4.5e-4), then Halley's
     * iteration on Phi(x) - p with Phi(x) = erfc(-x / sqrt 2) / 2 */
    double t = sqrt(-2.0 * log(p));
    double x = -(t - (2.515517 + 0.802853 * t + 0.010328 * t * t) /
                         (1.0 + 1.432788 * t + 0.189269 * t * t + 0.001308 * t * t * t));
    for (int i = 0; i < 8; i++) {
        double e = 0.5 * erfc(-x / sqrt(2.0)) - p;
        double u = e * sqrt(2.0 * M_PI) * exp(0.5 * x * x);
        double dx = u / (1.0 + 0.5 * x * u);
        x -= dx;
        if (fabs(dx) <= 1e-16 * fabs(x)) break;
    }
    return x;
}

typedef struct {
    double v;
    size_t i;
} ranked;

static int cmp_ranked(const void *a, const void *b)
{
    const ranked *p = a, *q = b;
    if (p->v < q->v) return -1;
    if (p->v > q->v) return 1;
    return p->i < q->i ? -1 : p->i > q->i;
}

jem_status jem_rank_normalize(const double *x, size_t n, double *z)
{
    if (n < 1) return jem_fail(JEM_ERR_ARG, "rank normalisation of no values");
    ranked *r = malloc(sizeof(ranked) * n);
    if (!r) return jem_fail(JEM_ERR_NOMEM, "rank normalisation: out of memory for %zu values", n);
    int bad = 0;
    for (size_t i = 0; i < n; i++) {
        r[i].v = x[i];
        r[i].i = i;
        bad |= !isfinite(x[i]);
    }
    if (bad) {
        for (size_t i = 0; i < n; i++) z[i] = NAN;
        free(r);
        return JEM_OK;
    }
    qsort(r, n, sizeof *r, cmp_ranked);
    for (size_t i = 0; i < n;) {
        size_t j = i;
        while (j + 1 < n && r[j + 1].v == r[i].v) j++;
        /* ranks i+1 .. j+1 tie: each gets their mean */
        double rank = 0.5 * ((double)(i + 1) + (double)(j + 1));
        double zz = jem_norm_ppf((rank - 0.375) / ((double)n + 0.25));
        for (size_t k = i; k <= j; k++) z[r[k].i] = zz;
        i = j + 1;
    }
    free(r);
    return JEM_OK;
}

/* within-chain variances (unbiased) and chain means */
static void chain_moments(const double *x, int N, int M, double *mean, double *var)
{
    for (int m = 0; m < M; m++) {
        double s = 0;
        for (int n = 0; n < N; n++) s += x[(size_t)n * M + m];
        mean[m] = s / N;
        double v = 0;
        for (int n = 0; n < N; n++) {
            double d = x[(size_t)n * M + m] - mean[m];
            v += d * d;
        }
        var[m] = N > 1 ? v / (N - 1) : 0;
    }
}

/* W (mean within-chain variance) and var+ = (N-1)/N W + var(chain means) */
static void w_varplus(const double *mean, const double *var, int N, int M, double *W, double *vp)
{
    double w = 0, mm = 0, b = 0;
    for (int m = 0; m < M; m++) {
        w += var[m];
        mm += mean[m];
    }
    w /= M;
    mm /= M;
    for (int m = 0; m < M; m++) b += (mean[m] - mm) * (mean[m] - mm);
    b = M > 1 ? b / (M - 1) : 0;
    *W = w;
    *vp = (double)(N - 1) / N * w + b;
}

static int all_finite(const double *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return 0;
    return 1;
}

double jem_rhat(const double *x, int N, int M)
{
    if (N < 2 || M < 2 || !all_finite(x, (size_t)N * M)) return NAN;
    double *mean = malloc(sizeof(double) * 2 * M);
    if (!mean) return NAN;
    double *var = mean + M, W, vp;
    chain_moments(x, N, M, mean, var);
    w_varplus(mean, var, N, M, &W, &vp);
    free(mean);
    if (!(W > 0)) return NAN;
    return sqrt(vp / W);
}

double jem_ess(const double *x, int N, int M)
{
    if (N < 2 || M < 1 || !all_finite(x, (size_t)N * M)) return NAN;
    double *mean = malloc(sizeof(double) * 2 * M);
    if (!mean) return NAN;
    double *var = mean + M, W, vp;
    chain_moments(x, N, M, mean, var);
    w_varplus(mean, var, N, M, &W, &vp);
    if (!(W > 0) || !(vp > 0)) {
        free(mean);
        return NAN;
    }
    /* rho_t = 1 - (W - mean over chains of acov_m(t)) / var+, with acov
     * dividing by N; pairs rho_2k + rho_2k+1 summed while positive and made
     * non-increasing (Geyer's initial monotone sequence) */
    double tau_half = 0, prev = INFINITY; /* sum of the pairs */
    for (int t = 0; t + 1 < N; t += 2) {
        double rho[2];
        for (int h = 0; h < 2; h++) {
            int lag = t + h;
            double acov = 0;
            for (int m = 0; m < M; m++) {
                double s = 0;
                for (int n = 0; n + lag < N; n++)
                    s += (x[(size_t)n * M + m] - mean[m]) * (x[(size_t)(n + lag) * M + m] - mean[m]);
                acov += s / N;
            }
            acov /= M;
            rho[h] = 1.0 - (W - acov) / vp;
        }
        if (t == 0) rho[0] = 1.0;
        double pair = rho[0] + rho[1];
        if (!(pair > 0)) break;
        if (pair > prev) pair = prev;
        tau_half += pair;
        prev = pair;
    }
    free(mean);
    const double S = (double)N * M;
    double tau = -1.0 + 2.0 * tau_half;
    double floor_tau = 1.0 / log10(S);
    if (tau < floor_tau) tau = floor_tau;
    return S / tau;
}

/* (N, M) -> (N/2, 2M): the first and the last half of each chain (an odd N
 * drops the middle draw); chain m's halves become chains m and M + m */
static void split(const double *x, int N, int M, double *out)
{
    const int h = N / 2, off = N - h;
    for (int n = 0; n < h; n++)
        for (int m = 0; m < M; m++) {
            out[(size_t)n * 2 * M + m] = x[(size_t)n * M + m];
            out[(size_t)n * 2 * M + M + m] = x[(size_t)(n + off) * M + m];
        }
}

static int cmp_double(const void *a, const void *b)
{
    double p = *(const double *)a, q = *(const double *)b;
    return p < q ? -1 : p > q;
}

/* quantile of sorted values, linear interpolation between order
 * statistics at h = (n - 1) p */
static double quantile_sorted(const double *s, size_t n, double p)
{
    double h = (double)(n - 1) * p;
    size_t lo = (size_t)floor(h);
    if (lo + 1 >= n) return s[n - 1];
    return s[lo] + (h - (double)lo) * (s[lo + 1] - s[lo]);
}

jem_status jem_chain_diag_compute(const double *x, int N, int M, jem_chain_diag *out)
{
    if (N < 4 || M < 1)
        return jem_fail(JEM_ERR_ARG, "chain diagnostics need at least 4 draws of 1 chain (got %d of %d)", N, M);
    const size_t S = (size_t)N * M;
    const int h = N / 2, M2 = 2 * M;
    const size_t S2 = (size_t)h * M2;
    double *sp = malloc(sizeof(double) * S2 * 3), *sorted = malloc(sizeof(double) * S);
    if (!sp || !sorted) {
        free(sp);
        free(sorted);
        return jem_fail(JEM_ERR_NOMEM, "chain diagnostics: out of memory for %zu draws", S);
    }
    double *z = sp + S2, *tmp = z + S2;
    out->rhat = out->rhat_bulk = out->rhat_folded = out->rhat_basic = NAN;
    out->ess_bulk = out->ess_tail = out->ess_basic = NAN;
    out->mean = out->sd = NAN;
    if (all_finite(x, S)) {
        double mu = 0, v = 0;
        for (size_t i = 0; i < S; i++) mu += x[i];
        mu /= (double)S;
        for (size_t i = 0; i < S; i++) v += (x[i] - mu) * (x[i] - mu);
        out->mean = mu;
        out->sd = S > 1 ? sqrt(v / (double)(S - 1)) : 0;
        split(x, N, M, sp);
        out->rhat_basic = jem_rhat(sp, h, M2);
        out->ess_basic = jem_ess(sp, h, M2);
        jem_rank_normalize(sp, S2, z);
        out->rhat_bulk = jem_rhat(z, h, M2);
        out->ess_bulk = jem_ess(z, h, M2);
        /* folded: distance to the median; the median and the tail
         * quantiles are those of the split draws (an odd N leaves the
         * middle draws out of everything) */
        memcpy(sorted, sp, sizeof(double) * S2);
        qsort(sorted, S2, sizeof(double), cmp_double);
        double med = quantile_sorted(sorted, S2, 0.5);
        for (size_t i = 0; i < S2; i++) tmp[i] = fabs(sp[i] - med);
        jem_rank_normalize(tmp, S2, z);
        out->rhat_folded = jem_rhat(z, h, M2);
        out->rhat = isnan(out->rhat_bulk) || isnan(out->rhat_folded) ? NAN : fmax(out->rhat_bulk, out->rhat_folded);
        /* tail: indicators of the 5 % and 95 % quantiles */
        double q05 = quantile_sorted(sorted, S2, 0.05), q95 = quantile_sorted(sorted, S2, 0.95);
        for (size_t i = 0; i < S2; i++) tmp[i] = sp[i] <= q05;
        double e1 = jem_ess(tmp, h, M2);
        for (size_t i = 0; i < S2; i++) tmp[i] = sp[i] <= q95;
        double e2 = jem_ess(tmp, h, M2);
        out->ess_tail = isnan(e1) || isnan(e2) ? NAN : fmin(e1, e2);
    }
    free(sp);
    free(sorted);
    return JEM_OK;
}

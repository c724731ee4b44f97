/*
 * ood_detect.c: feature-space OOD detectors (class-conditional Gaussian,
 * k nearest neighbours), the decision threshold, and fitted detectors
 * stored as safetensors files. See ood_detect.h for the definitions.
 *
 * Dimension letters: N samples, B a batch of them, D feature size, K classes.
 */
#include "eval/ood_detect.h"

#include <cblas.h>
#include <inttypes.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ layers */

int jem_ood_layer_parse(const char *name)
{
    if (!name) return -1;
    if (!strcmp(name, "pool")) return 0;
    if (name[0] != 'b' || name[1] < '1' || name[1] > '9') return -1;
    int v = 0;
    for (const char *p = name + 1; *p; p++) {
        if (*p < '0' || *p > '9' || v > 1000) return -1;
        v = v * 10 + (*p - '0');
    }
    return v;
}

void jem_ood_layer_name(int layer, char *buf, size_t n)
{
    if (layer == 0) snprintf(buf, n, "pool");
    else snprintf(buf, n, "b%d", layer);
}

/* ============================================ class-conditional Gaussian */

jem_status jem_maha_acc_init(jem_maha_acc *a, int D, int K)
{
    memset(a, 0, sizeof *a);
    if (D < 1 || K < 1) return jem_fail(JEM_ERR_ARG, "mahalanobis: %d features, %d classes", D, K);
    a->D = D;
    a->K = K;
    a->count = calloc((size_t)K, sizeof *a->count);
    a->mean = calloc((size_t)K * D, sizeof *a->mean);
    a->scatter = calloc((size_t)D * D, sizeof *a->scatter);
    if (!a->count || !a->mean || !a->scatter) {
        jem_maha_acc_free(a);
        return jem_fail(JEM_ERR_NOMEM, "mahalanobis: out of memory for %d features", D);
    }
    return JEM_OK;
}

void jem_maha_acc_free(jem_maha_acc *a)
{
    if (!a) return;
    free(a->count);
    free(a->mean);
    free(a->scatter);
    free(a->work);
    memset(a, 0, sizeof *a);
}

jem_status jem_maha_acc_add(jem_maha_acc *a, const float *f, const int32_t *y, int B)
{
    const int D = a->D, K = a->K;
    if (B < 0) return jem_fail(JEM_ERR_ARG, "mahalanobis: batch of %d", B);
    for (int i = 0; i < B; i++) {
        if (y[i] < 0 || y[i] >= K)
            return jem_fail(JEM_ERR_ARG, "mahalanobis: sample %" PRId64 " has label %d, want 0 to %d%s", a->n + i, y[i],
                            K - 1, y[i] < 0 ? " (a class per sample is needed)" : "");
        for (int d = 0; d < D; d++)
            if (!isfinite(f[(size_t)i * D + d]))
                return jem_fail(JEM_ERR_NONFINITE, "mahalanobis: feature %d of sample %" PRId64 " is not finite", d,
                                a->n + i);
    }
    if (B > a->work_rows) {
        double *w = realloc(a->work, sizeof(double) * (size_t)B * D);
        if (!w) return jem_fail(JEM_ERR_NOMEM, "mahalanobis: out of memory for a batch of %d", B);
        a->work = w;
        a->work_rows = B;
    }
    double *m = malloc(sizeof(double) * D); /* (D) the batch's class mean */
    if (!m) return jem_fail(JEM_ERR_NOMEM, "mahalanobis: out of memory");
    for (int k = 0; k < K; k++) {
        /* this class's rows of the batch, about their own mean */
        int nb = 0;
        for (int d = 0; d < D; d++) m[d] = 0;
        for (int i = 0; i < B; i++) {
            if (y[i] != k) continue;
            double *z = a->work + (size_t)nb * D;
            for (int d = 0; d < D; d++) {
                z[d] = f[(size_t)i * D + d];
                m[d] += z[d];
            }
            nb++;
        }
        if (!nb) continue;
        for (int d = 0; d < D; d++) m[d] /= nb;
        for (int r = 0; r < nb; r++)
            for (int d = 0; d < D; d++) a->work[(size_t)r * D + d] -= m[d];
        cblas_dsyrk(CblasRowMajor, CblasLower, CblasTrans, D, nb, 1.0, a->work, D, 1.0, a->scatter, D);
        /* merge with what the class had: the scatter grows by
         * na nb / (na + nb) delta delta^T, delta the difference of means */
        const double na = (double)a->count[k], nt = na + nb;
        double *mu = a->mean + (size_t)k * D;
        for (int d = 0; d < D; d++) m[d] -= mu[d]; /* delta */
        if (na > 0) cblas_dsyr(CblasRowMajor, CblasLower, D, na * nb / nt, m, 1, a->scatter, D);
        for (int d = 0; d < D; d++) mu[d] += m[d] * (nb / nt);
        a->count[k] += nb;
    }
    free(m);
    a->n += B;
    return JEM_OK;
}

void jem_maha_free(jem_maha *m)
{
    if (!m) return;
    free(m->count);
    free(m->mean);
    free(m->chol);
    free(m->wmean);
    memset(m, 0, sizeof *m);
}

/* In-place Cholesky of the lower triangle of A (D, D): A = L L^T, L in the
 * lower triangle, the upper set to 0. Returns -1, or the index of the first
 * pivot <= tol (its value in *pivot). */
static int cholesky(double *A, int D, double tol, double *pivot)
{
    for (int j = 0; j < D; j++) {
        double s = A[(size_t)j * D + j];
        for (int k = 0; k < j; k++) s -= A[(size_t)j * D + k] * A[(size_t)j * D + k];
        if (!(s > tol)) {
            *pivot = s;
            return j;
        }
        const double ljj = sqrt(s);
        A[(size_t)j * D + j] = ljj;
        for (int i = j + 1; i < D; i++) {
            double t = A[(size_t)i * D + j];
            for (int k = 0; k < j; k++) t -= A[(size_t)i * D + k] * A[(size_t)j * D + k];
            A[(size_t)i * D + j] = t / ljj;
        }
        for (int i = 0; i < j; i++) A[(size_t)i * D + j] = 0;
    }
    return -1;
}

/* the covariance with shrinkage s from the accumulated scatter (lower
 * triangle), into S (D, D) lower; its largest variance into *vmax, the
 * mean variance into *vbar */
static void shrunk_cov(const jem_maha_acc *a, double s, double *S, double *vmax, double *vbar)
{
    const int D = a->D;
    double tr = 0, mx = 0;
    for (int d = 0; d < D; d++) {
        const double v = a->scatter[(size_t)d * D + d] / (double)a->n;
        tr += v;
        mx = v > mx ? v : mx;
    }
    const double mu = tr / D;
    for (int i = 0; i < D; i++)
        for (int j = 0; j <= i; j++)
            S[(size_t)i * D + j] = (1 - s) * a->scatter[(size_t)i * D + j] / (double)a->n + (i == j ? s * mu : 0);
    *vmax = (1 - s) * mx + s * mu;
    *vbar = mu;
}

/* w (D) = L^-1 v */
static void forward_solve(const double *L, int D, const double *v, double *w)
{
    for (int i = 0; i < D; i++) {
        double t = v[i];
        for (int k = 0; k < i; k++) t -= L[(size_t)i * D + k] * w[k];
        w[i] = t / L[(size_t)i * D + i];
    }
}

static jem_status maha_alloc(jem_maha *m, int K, int D)
{
    memset(m, 0, sizeof *m);
    m->K = K;
    m->D = D;
    m->count = calloc((size_t)K, sizeof *m->count);
    m->mean = malloc(sizeof(double) * (size_t)K * D);
    m->chol = calloc((size_t)D * D, sizeof *m->chol);
    m->wmean = malloc(sizeof(double) * (size_t)K * D);
    if (!m->count || !m->mean || !m->chol || !m->wmean) {
        jem_maha_free(m);
        return jem_fail(JEM_ERR_NOMEM, "mahalanobis: out of memory for %d features", D);
    }
    return JEM_OK;
}

static void maha_whiten_means(jem_maha *m)
{
    for (int k = 0; k < m->K; k++)
        forward_solve(m->chol, m->D, m->mean + (size_t)k * m->D, m->wmean + (size_t)k * m->D);
}

jem_status jem_maha_fit(const jem_maha_acc *a, double shrinkage, jem_maha *m)
{
    memset(m, 0, sizeof *m);
    if (!(shrinkage >= 0 && shrinkage <= 1))
        return jem_fail(JEM_ERR_ARG, "mahalanobis: shrinkage %g is outside [0, 1]", shrinkage);
    if (a->n < 1) return jem_fail(JEM_ERR_ARG, "mahalanobis: no samples to fit on");
    const int D = a->D, K = a->K;
    jem_status st = maha_alloc(m, K, D);
    if (st) return st;
    m->shrinkage = shrinkage;
    memcpy(m->count, a->count, sizeof(int64_t) * K);
    memcpy(m->mean, a->mean, sizeof(double) * (size_t)K * D);
    double vmax, vbar, pivot = 0;
    shrunk_cov(a, shrinkage, m->chol, &vmax, &vbar);
    int bad = cholesky(m->chol, D, JEM_MAHA_PIVOT_TOL * vmax, &pivot);
    if (bad < 0) {
        maha_whiten_means(m);
        return JEM_OK;
    }
    /* name the shrinkage that would do: the smallest power of ten from
     * 1e-6 up, above the one given, that makes it positive definite */
    double *S = malloc(sizeof(double) * (size_t)D * D);
    double fix = 0;
    for (int e = -6; S && e <= 0 && !fix; e++) {
        const double s = pow(10.0, e);
        if (s <= shrinkage) continue;
        double vm, vb, pv;
        shrunk_cov(a, s, S, &vm, &vb);
        if (cholesky(S, D, JEM_MAHA_PIVOT_TOL * vm, &pv) < 0) fix = s;
    }
    free(S);
    jem_maha_free(m);
    if (!(vbar > 0))
        return jem_fail(JEM_ERR_ARG,
                        "mahalanobis: every one of the %d features is constant over the %" PRId64
                        " samples: no covariance to fit",
                        D, a->n);
    if (fix > 0)
        return jem_fail(JEM_ERR_ARG,
                        "mahalanobis: the covariance of %d features from %" PRId64 " samples is "
                        "singular or not positive definite (Cholesky pivot %d is %.3g); fit with shrinkage %g "
                        "or more",
                        D, a->n, bad, pivot, fix);
    return jem_fail(JEM_ERR_ARG,
                    "mahalanobis: the covariance of %d features from %" PRId64 " samples is "
                    "singular (Cholesky pivot %d is %.3g) and no shrinkage below 1 helps",
                    D, a->n, bad, pivot);
}

jem_status jem_maha_from(const double *mean, const int64_t *count, const double *chol, int K, int D, double shrinkage,
                         jem_maha *m)
{
    memset(m, 0, sizeof *m);
    if (K < 1 || D < 1) return jem_fail(JEM_ERR_ARG, "mahalanobis: %d classes, %d features", K, D);
    for (size_t i = 0; i < (size_t)K * D; i++)
        if (!isfinite(mean[i])) return jem_fail(JEM_ERR_NONFINITE, "mahalanobis: a class mean is not finite");
    int any = 0;
    for (int k = 0; k < K; k++) {
        if (count[k] < 0) return jem_fail(JEM_ERR_ARG, "mahalanobis: class %d has count %" PRId64, k, count[k]);
        any |= count[k] > 0;
    }
    if (!any) return jem_fail(JEM_ERR_ARG, "mahalanobis: no class has samples");
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            const double v = chol[(size_t)i * D + j];
            if (!isfinite(v)) return jem_fail(JEM_ERR_NONFINITE, "mahalanobis: the Cholesky factor is not finite");
            if ((j > i && v != 0) || (j == i && !(v > 0)))
                return jem_fail(JEM_ERR_ARG,
                                "mahalanobis: the Cholesky factor is not lower triangular with a "
                                "positive diagonal (entry %d,%d is %g)",
                                i, j, v);
        }
    jem_status st = maha_alloc(m, K, D);
    if (st) return st;
    m->shrinkage = shrinkage;
    memcpy(m->count, count, sizeof(int64_t) * K);
    memcpy(m->mean, mean, sizeof(double) * (size_t)K * D);
    memcpy(m->chol, chol, sizeof(double) * (size_t)D * D);
    maha_whiten_means(m);
    return JEM_OK;
}

jem_status jem_maha_score(const jem_maha *m, const float *f, int n, double *score, int32_t *kmin)
{
    const int D = m->D, K = m->K, chunk = 256;
    if (n < 0) return jem_fail(JEM_ERR_ARG, "mahalanobis: %d samples", n);
    double *z = malloc(sizeof(double) * (size_t)chunk * D); /* (chunk, D) */
    if (!z) return jem_fail(JEM_ERR_NOMEM, "mahalanobis: out of memory");
    for (int i0 = 0; i0 < n; i0 += chunk) {
        const int B = n - i0 < chunk ? n - i0 : chunk;
        for (size_t t = 0; t < (size_t)B * D; t++) z[t] = f[(size_t)i0 * D + t];
        /* row i of z becomes (L^-1 f_i)^T: z L^T = f */
        cblas_dtrsm(CblasRowMajor, CblasRight, CblasLower, CblasTrans, CblasNonUnit, B, D, 1.0, m->chol, D, z, D);
        for (int i = 0; i < B; i++) {
            double best = INFINITY;
            int bk = -1;
            for (int k = 0; k < K; k++) {
                if (m->count[k] <= 0) continue;
                const double *w = m->wmean + (size_t)k * D, *zi = z + (size_t)i * D;
                double s = 0;
                for (int d = 0; d < D; d++) s += (zi[d] - w[d]) * (zi[d] - w[d]);
                if (s < best || bk < 0) {
                    best = s;
                    bk = k;
                }
            }
            score[i0 + i] = -best;
            if (kmin) kmin[i0 + i] = bk;
        }
    }
    free(z);
    return JEM_OK;
}

/* ================================================ k nearest neighbours */

void jem_l2_normalise(float *f, int n, int D)
{
    for (int i = 0; i < n; i++) {
        float *r = f + (size_t)i * D;
        double q = 0;
        for (int d = 0; d < D; d++) q += (double)r[d] * r[d];
        if (q <= 0) continue;
        const double s = 1.0 / sqrt(q);
        for (int d = 0; d < D; d++) r[d] = (float)(r[d] * s);
    }
}

void jem_knn_free(jem_knn *m)
{
    if (!m) return;
    free(m->train);
    memset(m, 0, sizeof *m);
}

jem_status jem_knn_init(const float *feats, int N, int D, int k, jem_knn *m)
{
    memset(m, 0, sizeof *m);
    if (N < 1 || D < 1) return jem_fail(JEM_ERR_ARG, "knn: %d training rows of %d features", N, D);
    if (k < 1 || k > N) return jem_fail(JEM_ERR_ARG, "knn: k = %d, want 1 to the %d training rows", k, N);
    for (size_t i = 0; i < (size_t)N * D; i++)
        if (!isfinite(feats[i]))
            return jem_fail(JEM_ERR_NONFINITE, "knn: training row %zu has a non-finite feature", i / (size_t)D);
    m->train = malloc(sizeof(float) * (size_t)N * D);
    if (!m->train) return jem_fail(JEM_ERR_NOMEM, "knn: out of memory for %d x %d features", N, D);
    memcpy(m->train, feats, sizeof(float) * (size_t)N * D);
    jem_l2_normalise(m->train, N, D);
    m->N = N;
    m->D = D;
    m->k = k;
    return JEM_OK;
}

/* min-heap of the k largest similarities seen: hs[0] is the smallest kept */
static void heap_push(float *hs, int32_t *hi, int *len, int k, float s, int32_t idx)
{
    int i;
    if (*len < k) {
        i = (*len)++;
        while (i > 0 && hs[(i - 1) / 2] > s) {
            hs[i] = hs[(i - 1) / 2];
            hi[i] = hi[(i - 1) / 2];
            i = (i - 1) / 2;
        }
        hs[i] = s;
        hi[i] = idx;
        return;
    }
    if (!(s > hs[0])) return;
    i = 0;
    for (;;) {
        int c = 2 * i + 1;
        if (c >= k) break;
        if (c + 1 < k && hs[c + 1] < hs[c]) c++;
        if (hs[c] >= s) break;
        hs[i] = hs[c];
        hi[i] = hi[c];
        i = c;
    }
    hs[i] = s;
    hi[i] = idx;
}

jem_status jem_knn_score(const jem_knn *m, const float *f, int n, size_t mem, double *score)
{
    const int D = m->D, N = m->N, k = m->k;
    if (mem == 0) mem = JEM_KNN_MEM_DEFAULT;
    if (mem < (size_t)64 << 10) return jem_fail(JEM_ERR_ARG, "knn: search memory %zu bytes is below 64 KB", mem);
    if (n < 0) return jem_fail(JEM_ERR_ARG, "knn: %d queries", n);
    if (n == 0) return JEM_OK;
    /* a block of Bq queries: their unit rows (D floats each), top-k lists
     * (k similarities and k indices each), and Bq x Bt similarities */
    const size_t per_q = sizeof(float) * (size_t)D + (sizeof(float) + sizeof(int32_t)) * (size_t)k;
    size_t Bq = n < 256 ? (size_t)n : 256;
    while (Bq > 1 && Bq * (per_q + sizeof(float)) > mem) Bq /= 2;
    if (Bq * (per_q + sizeof(float)) > mem)
        return jem_fail(JEM_ERR_ARG,
                        "knn: k = %d with %d features needs more than the %zu bytes of search "
                        "memory",
                        k, D, mem);
    size_t Bt = (mem - Bq * per_q) / (Bq * sizeof(float));
    if (Bt > (size_t)N) Bt = (size_t)N;
    float *q = malloc(sizeof(float) * Bq * D);      /* (Bq, D) */
    float *hs = malloc(sizeof(float) * Bq * k);     /* (Bq, k) */
    int32_t *hi = malloc(sizeof(int32_t) * Bq * k); /* (Bq, k) */
    float *sim = malloc(sizeof(float) * Bq * Bt);   /* (Bq, Bt) */
    int *len = malloc(sizeof(int) * Bq);
    if (!q || !hs || !hi || !sim || !len) {
        free(q);
        free(hs);
        free(hi);
        free(sim);
        free(len);
        return jem_fail(JEM_ERR_NOMEM, "knn: out of memory for the search");
    }
    jem_status st = JEM_OK;
    for (int q0 = 0; q0 < n && !st; q0 += (int)Bq) {
        const int bq = n - q0 < (int)Bq ? n - q0 : (int)Bq;
        memcpy(q, f + (size_t)q0 * D, sizeof(float) * (size_t)bq * D);
        for (size_t t = 0; t < (size_t)bq * D; t++)
            if (!isfinite(q[t])) {
                st = jem_fail(JEM_ERR_NONFINITE, "knn: query %zu has a non-finite feature", q0 + t / (size_t)D);
                break;
            }
        if (st) break;
        jem_l2_normalise(q, bq, D);
        for (int j = 0; j < bq; j++) len[j] = 0;
        for (int t0 = 0; t0 < N; t0 += (int)Bt) {
            const int bt = N - t0 < (int)Bt ? N - t0 : (int)Bt;
            cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, bq, bt, D, 1.0f, q, D, m->train + (size_t)t0 * D, D,
                        0.0f, sim, bt);
#pragma omp parallel for schedule(static)
            for (int j = 0; j < bq; j++)
                for (int t = 0; t < bt; t++)
                    heap_push(hs + (size_t)j * k, hi + (size_t)j * k, &len[j], k, sim[(size_t)j * bt + t], t0 + t);
        }
        /* the k picked: their distances in double; the largest is the
         * k-th nearest */
#pragma omp parallel for schedule(static)
        for (int j = 0; j < bq; j++) {
            const float *fj = f + (size_t)(q0 + j) * D;
            double nq = 0;
            for (int d = 0; d < D; d++) nq += (double)fj[d] * fj[d];
            const double sc = nq > 0 ? 1.0 / sqrt(nq) : 0;
            double worst = 0;
            for (int r = 0; r < k; r++) {
                const float *t = m->train + (size_t)hi[(size_t)j * k + r] * D;
                double s = 0;
                for (int d = 0; d < D; d++) {
                    const double e = fj[d] * sc - t[d];
                    s += e * e;
                }
                worst = s > worst ? s : worst;
            }
            score[q0 + j] = -sqrt(worst);
        }
    }
    free(q);
    free(hs);
    free(hi);
    free(sim);
    free(len);
    return st;
}

/* ========================================================== decisions */

static int cmp_desc(const void *a, const void *b)
{
    const double x = *(const double *)a, y = *(const double *)b;
    return (x < y) - (x > y);
}

jem_status jem_ood_threshold(const double *s_in, int n, double tpr, double *thr, double *kept)
{
    if (n < 1) return jem_fail(JEM_ERR_ARG, "threshold: no in-distribution scores");
    if (!(tpr > 0 && tpr <= 1)) return jem_fail(JEM_ERR_ARG, "threshold: true-positive rate %g is outside (0, 1]", tpr);
    double *s = malloc(sizeof(double) * (size_t)n);
    if (!s) return jem_fail(JEM_ERR_NOMEM, "threshold: out of memory for %d scores", n);
    for (int i = 0; i < n; i++) {
        if (isnan(s_in[i])) {
            free(s);
            return jem_fail(JEM_ERR_NONFINITE, "threshold: in-distribution score %d is NaN", i);
        }
        s[i] = s_in[i];
    }
    qsort(s, (size_t)n, sizeof *s, cmp_desc);
    /* the smallest m with m / n >= tpr, in the division the ROC uses */
    int m = (int)ceil(tpr * n);
    if (m < 1) m = 1;
    if (m > n) m = n;
    while (m > 1 && (double)(m - 1) / n >= tpr) m--;
    while (m < n && (double)m / n < tpr) m++;
    *thr = s[m - 1];
    if (kept) {
        int c = m;
        while (c < n && s[c] >= *thr) c++;
        *kept = (double)c / n;
    }
    free(s);
    return JEM_OK;
}

double jem_ood_rate_at(const double *s, int n, double thr)
{
    if (n < 1) return 0;
    int c = 0;
    for (int i = 0; i < n; i++) c += s[i] >= thr;
    return (double)c / n;
}

/* ======================================================= fitted detector */

static const char *const kind_names[JEM_DET_NKINDS] = {"mahalanobis", "knn"};

const char *jem_det_kind_name(jem_det_kind k) { return (int)k >= 0 && k < JEM_DET_NKINDS ? kind_names[k] : "?"; }

int jem_det_kind_parse(const char *name)
{
    for (int k = 0; name && k < JEM_DET_NKINDS; k++)
        if (!strcmp(name, kind_names[k])) return k;
    return -1;
}

void jem_det_defaults(jem_det_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->kind = JEM_DET_MAHALANOBIS;
    c->layer = 0;
    c->shrinkage = 0;
    c->k = 50;
    c->mem_bytes = 0;
    c->chunk = 1024;
}

static uint64_t fnv(uint64_t h, const void *p, size_t n)
{
    const unsigned char *b = p;
    for (size_t i = 0; i < n; i++) {
        h ^= b[i];
        h *= 0x100000001b3ULL;
    }
    return h;
}

uint64_t jem_net_checksum(jem_net *net)
{
    uint64_t h = 0xcbf29ce484222325ULL;
    char arch[2048];
    int len = jem_arch_format(jem_net_arch(net), arch, sizeof arch);
    if (len > 0) h = fnv(h, arch, (size_t)len < sizeof arch ? (size_t)len : sizeof arch - 1);
    const float *p = jem_net_params(net);
    for (int i = 0; i < jem_net_ntensors(net); i++) {
        const jem_param *t = jem_net_tensor(net, i);
        h = fnv(h, t->name, strlen(t->name) + 1);
        h = fnv(h, p + t->offset, sizeof(float) * t->numel);
    }
    return h;
}

void jem_detector_free(jem_detector *d)
{
    if (!d) return;
    jem_maha_free(&d->maha);
    jem_knn_free(&d->knn);
    free(d);
}

static jem_status check_input(jem_net *net, const jem_dataset *ds)
{
    const jem_arch *a = jem_net_arch(net);
    if (ds->c != a->in_c || ds->h != a->in_h || ds->w != a->in_w)
        return jem_fail(JEM_ERR_SHAPE, "%s: images are %dx%dx%d, model '%s' wants %dx%dx%d", ds->name, ds->c, ds->h,
                        ds->w, a->name, a->in_c, a->in_h, a->in_w);
    if (ds->n < 1) return jem_fail(JEM_ERR_ARG, "%s: no images to fit on", ds->name);
    return JEM_OK;
}

jem_status jem_detector_fit(jem_net *net, const jem_dataset *ds, const jem_det_cfg *cfg, jem_detector **out)
{
    *out = NULL;
    const jem_arch *a = jem_net_arch(net);
    const int D = jem_net_feature_dim(net, cfg->layer), K = a->n_classes;
    char lname[32];
    jem_ood_layer_name(cfg->layer, lname, sizeof lname);
    if ((int)cfg->kind < 0 || cfg->kind >= JEM_DET_NKINDS)
        return jem_fail(JEM_ERR_ARG, "detector kind %d: want mahalanobis or knn", (int)cfg->kind);
    if (D < 1)
        return jem_fail(JEM_ERR_ARG, "model '%s' has no feature layer '%s' (pool, or b1 to b%d)", a->name, lname,
                        a->n_blocks);
    if (cfg->kind == JEM_DET_MAHALANOBIS && !(cfg->shrinkage >= 0 && cfg->shrinkage <= 1))
        return jem_fail(JEM_ERR_ARG, "mahalanobis: shrinkage %g is outside [0, 1]", cfg->shrinkage);
    if (cfg->kind == JEM_DET_KNN && (cfg->k < 1 || cfg->k > ds->n))
        return jem_fail(JEM_ERR_ARG, "knn: k = %d, want 1 to the %d images of %s", cfg->k, ds->n, ds->name);
    jem_status st = check_input(net, ds);
    if (st) return st;
    if (cfg->kind == JEM_DET_MAHALANOBIS)
        for (int i = 0; i < ds->n; i++)
            if (ds->y[i] < 0 || ds->y[i] >= K)
                return jem_fail(JEM_ERR_ARG,
                                "%s: image %d has label %d; the Gaussian per class of model '%s' "
                                "needs labels 0 to %d",
                                ds->name, i, ds->y[i], a->name, K - 1);
    jem_detector *d = calloc(1, sizeof *d);
    if (!d) return jem_fail(JEM_ERR_NOMEM, "out of memory");
    d->kind = cfg->kind;
    d->layer = cfg->layer;
    d->model_sum = jem_net_checksum(net);
    snprintf(d->model_name, sizeof d->model_name, "%s", a->name);
    snprintf(d->data, sizeof d->data, "%s", ds->name);
    d->n_fit = ds->n;
    d->mem_bytes = cfg->mem_bytes;
    const int chunk = cfg->chunk > 0 ? cfg->chunk : 1024;
    const size_t img = (size_t)ds->c * ds->h * ds->w;
    jem_maha_acc acc;
    memset(&acc, 0, sizeof acc);
    float *f = NULL, *all = NULL;
    if (cfg->kind == JEM_DET_MAHALANOBIS) {
        st = jem_maha_acc_init(&acc, D, K);
        f = st ? NULL : malloc(sizeof(float) * (size_t)chunk * D); /* (chunk, D) */
        if (!st && !f) st = jem_fail(JEM_ERR_NOMEM, "out of memory for features");
    } else {
        all = malloc(sizeof(float) * (size_t)ds->n * D); /* (N, D) */
        if (!all) st = jem_fail(JEM_ERR_NOMEM, "knn: out of memory for %d x %d features", ds->n, D);
    }
    for (int i = 0; i < ds->n && !st; i += chunk) {
        const int B = ds->n - i < chunk ? ds->n - i : chunk;
        float *fb = all ? all + (size_t)i * D : f;
        st = jem_net_features(net, ds->x + (size_t)i * img, B, cfg->layer, fb);
        if (!st && cfg->kind == JEM_DET_MAHALANOBIS) st = jem_maha_acc_add(&acc, fb, ds->y + i, B);
        if (!st && cfg->progress) cfg->progress(cfg->ud, i + B, ds->n);
    }
    if (!st && cfg->kind == JEM_DET_MAHALANOBIS) st = jem_maha_fit(&acc, cfg->shrinkage, &d->maha);
    if (!st && cfg->kind == JEM_DET_KNN) st = jem_knn_init(all, ds->n, D, cfg->k, &d->knn);
    jem_maha_acc_free(&acc);
    free(f);
    free(all);
    if (st) {
        jem_detector_free(d);
        return st;
    }
    *out = d;
    return JEM_OK;
}

jem_status jem_detector_score(const jem_detector *d, jem_net *net, const float *x, int n, double *score)
{
    const int D = jem_net_feature_dim(net, d->layer), chunk = 1024;
    const int want = d->kind == JEM_DET_MAHALANOBIS ? d->maha.D : d->knn.D;
    if (D != want) return jem_fail(JEM_ERR_SHAPE, "detector of %d features, model layer has %d", want, D);
    const jem_arch *a = jem_net_arch(net);
    const size_t img = (size_t)a->in_c * a->in_h * a->in_w;
    float *f = malloc(sizeof(float) * (size_t)chunk * D); /* (chunk, D) */
    if (!f) return jem_fail(JEM_ERR_NOMEM, "out of memory for features");
    jem_status st = JEM_OK;
    for (int i = 0; i < n && !st; i += chunk) {
        const int B = n - i < chunk ? n - i : chunk;
        st = jem_net_features(net, x + (size_t)i * img, B, d->layer, f);
        if (st) break;
        if (d->kind == JEM_DET_MAHALANOBIS) st = jem_maha_score(&d->maha, f, B, score + i, NULL);
        else st = jem_knn_score(&d->knn, f, B, d->mem_bytes, score + i);
    }
    free(f);
    return st;
}

jem_status jem_detector_save(const jem_detector *d, const char *path)
{
    jem_st *st = NULL;
    jem_status s = jem_st_new(&st);
    if (s) return s;
    char buf[64], lname[32];
    jem_ood_layer_name(d->layer, lname, sizeof lname);
    s = jem_st_meta(st, "jem.ood.kind", jem_det_kind_name(d->kind));
    if (!s) s = jem_st_meta(st, "jem.ood.layer", lname);
    snprintf(buf, sizeof buf, "%016" PRIx64, d->model_sum);
    if (!s) s = jem_st_meta(st, "jem.ood.model", buf);
    if (!s) s = jem_st_meta(st, "jem.ood.model_name", d->model_name);
    if (!s) s = jem_st_meta(st, "jem.ood.data", d->data);
    snprintf(buf, sizeof buf, "%" PRId64, d->n_fit);
    if (!s) s = jem_st_meta(st, "jem.ood.n", buf);
    if (!s) s = jem_st_meta(st, "jem.version", JEM_VERSION);
    if (d->kind == JEM_DET_MAHALANOBIS) {
        const int64_t K = d->maha.K, D = d->maha.D, km[2] = {K, D}, dd[2] = {D, D};
        snprintf(buf, sizeof buf, "%.17g", d->maha.shrinkage);
        if (!s) s = jem_st_meta(st, "jem.ood.shrinkage", buf);
        if (!s)
            s = jem_st_meta(st, "jem.ood.score",
                            "-min_k (f - mu_k)^T Sigma^-1 (f - mu_k), higher = more "
                            "in-distribution");
        if (!s) s = jem_st_add(st, "mean", JEM_DT_F64, 2, km, d->maha.mean);
        if (!s) s = jem_st_add(st, "count", JEM_DT_I64, 1, &K, d->maha.count);
        if (!s) s = jem_st_add(st, "chol", JEM_DT_F64, 2, dd, d->maha.chol);
    } else {
        const int64_t nd[2] = {d->knn.N, d->knn.D};
        snprintf(buf, sizeof buf, "%d", d->knn.k);
        if (!s) s = jem_st_meta(st, "jem.ood.k", buf);
        if (!s)
            s = jem_st_meta(st, "jem.ood.score",
                            "-(distance of the unit feature to its k-th nearest unit "
                            "training feature), higher = more in-distribution");
        if (!s) s = jem_st_add(st, "train", JEM_DT_F32, 2, nd, d->knn.train);
    }
    if (!s) s = jem_st_commit(st, path);
    jem_st_free(st);
    return s;
}

/* a tensor of the given dtype and rank; its shape into shape */
static jem_status get_tensor(const jem_st *st, const char *path, const char *name, jem_dtype want, int ndim,
                             int64_t *shape, const void **data)
{
    jem_dtype dt;
    int nd;
    *data = jem_st_get(st, name, &dt, &nd, shape);
    if (!*data) return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\" is missing", path, name);
    if (dt != want || nd != ndim)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\" is %s of rank %d, want %s of rank %d", path, name,
                        jem_dtype_name(dt), nd, jem_dtype_name(want), ndim);
    return JEM_OK;
}

/* the last error as a format error of the file path */
static jem_status refail(const char *path)
{
    char msg[768];
    snprintf(msg, sizeof msg, "%s", jem_last_error());
    return jem_fail(JEM_ERR_FORMAT, "%s: %s", path, msg);
}

static int parse_i64(const char *s, int64_t lo, int64_t hi, int64_t *v)
{
    if (!s || !*s) return 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (*end || x < lo || x > hi) return 0;
    *v = x;
    return 1;
}

jem_status jem_detector_load(const char *path, jem_net *net, jem_detector **out)
{
    *out = NULL;
    jem_st *st = NULL;
    jem_status s = jem_st_open(path, &st);
    if (s) return s;
    jem_detector *d = calloc(1, sizeof *d);
    if (!d) {
        jem_st_free(st);
        return jem_fail(JEM_ERR_NOMEM, "out of memory");
    }
    const char *kind = jem_st_get_meta(st, "jem.ood.kind"), *layer = jem_st_get_meta(st, "jem.ood.layer");
    const char *sum = jem_st_get_meta(st, "jem.ood.model"), *mname = jem_st_get_meta(st, "jem.ood.model_name");
    const char *data = jem_st_get_meta(st, "jem.ood.data"), *nfit = jem_st_get_meta(st, "jem.ood.n");
    const jem_arch *a = jem_net_arch(net);
    int64_t v = 0;
    char *end = NULL;
    if (!kind || !layer || !sum)
        s = jem_fail(JEM_ERR_FORMAT,
                     "%s: not a jem OOD detector (no \"jem.ood.kind\", \"jem.ood.layer\" or "
                     "\"jem.ood.model\" in the metadata)",
                     path);
    else if (jem_det_kind_parse(kind) < 0)
        s = jem_fail(JEM_ERR_FORMAT, "%s: unknown detector kind \"%s\" (mahalanobis or knn)", path, kind);
    else if ((d->layer = jem_ood_layer_parse(layer)) < 0)
        s = jem_fail(JEM_ERR_FORMAT, "%s: bad feature layer \"%s\"", path, layer);
    else if (strlen(sum) != 16 || (d->model_sum = strtoull(sum, &end, 16), *end))
        s = jem_fail(JEM_ERR_FORMAT, "%s: bad model checksum \"%s\"", path, sum);
    else if (nfit && !parse_i64(nfit, 0, INT64_MAX, &d->n_fit))
        s = jem_fail(JEM_ERR_FORMAT, "%s: bad jem.ood.n \"%s\"", path, nfit);
    if (!s) {
        d->kind = (jem_det_kind)jem_det_kind_parse(kind);
        snprintf(d->model_name, sizeof d->model_name, "%s", mname ? mname : "?");
        snprintf(d->data, sizeof d->data, "%s", data ? data : "?");
        const uint64_t mine = jem_net_checksum(net);
        if (mine != d->model_sum)
            s = jem_fail(JEM_ERR_ARG,
                         "%s: the detector was fitted on model '%s' (checksum %016" PRIx64 "), not "
                         "on this model '%s' (checksum %016" PRIx64 "): fit it again for this model",
                         path, d->model_name, d->model_sum, a->name, mine);
    }
    const int D = s ? 0 : jem_net_feature_dim(net, d->layer);
    if (!s && D < 1)
        s = jem_fail(JEM_ERR_FORMAT, "%s: feature layer \"%s\" is not in model '%s'", path, layer, a->name);
    if (!s && d->kind == JEM_DET_MAHALANOBIS) {
        int64_t sm[8], sc[8], sl[8];
        const void *mean, *count, *chol;
        const char *shr = jem_st_get_meta(st, "jem.ood.shrinkage");
        double shrink = shr ? strtod(shr, &end) : 0;
        if (shr && (*end || !(shrink >= 0 && shrink <= 1)))
            s = jem_fail(JEM_ERR_FORMAT, "%s: bad shrinkage \"%s\"", path, shr);
        if (!s) s = get_tensor(st, path, "mean", JEM_DT_F64, 2, sm, &mean);
        if (!s) s = get_tensor(st, path, "count", JEM_DT_I64, 1, sc, &count);
        if (!s) s = get_tensor(st, path, "chol", JEM_DT_F64, 2, sl, &chol);
        if (!s && (sm[1] != D || sl[0] != D || sl[1] != D || sc[0] != sm[0] || sm[0] < 1 || sm[0] > 1 << 20))
            s = jem_fail(JEM_ERR_FORMAT,
                         "%s: tensors mean (%lld, %lld), count (%lld) and chol (%lld, %lld) do not "
                         "fit %d features of layer %s",
                         path, (long long)sm[0], (long long)sm[1], (long long)sc[0], (long long)sl[0], (long long)sl[1],
                         D, layer);
        if (!s) {
            s = jem_maha_from(mean, count, chol, (int)sm[0], D, shrink, &d->maha);
            if (s) s = refail(path);
        }
    } else if (!s) {
        int64_t sh[8];
        const void *train;
        const char *ks = jem_st_get_meta(st, "jem.ood.k");
        if (!ks || !parse_i64(ks, 1, INT32_MAX, &v))
            s = jem_fail(JEM_ERR_FORMAT, "%s: bad or missing jem.ood.k \"%s\"", path, ks ? ks : "");
        if (!s) s = get_tensor(st, path, "train", JEM_DT_F32, 2, sh, &train);
        if (!s && (sh[1] != D || sh[0] < 1 || sh[0] > INT32_MAX))
            s = jem_fail(JEM_ERR_FORMAT, "%s: tensor train (%lld, %lld) does not fit %d features of layer %s", path,
                         (long long)sh[0], (long long)sh[1], D, layer);
        if (!s && v > sh[0])
            s = jem_fail(JEM_ERR_FORMAT, "%s: k = %lld but only %lld training features", path, (long long)v,
                         (long long)sh[0]);
        if (!s) {
            s = jem_knn_init(train, (int)sh[0], D, (int)v, &d->knn);
            if (s) s = refail(path);
        }
    }
    jem_st_free(st);
    if (s) {
        jem_detector_free(d);
        return s;
    }
    *out = d;
    return JEM_OK;
}

/* Persistent replay buffer of SGLD chains, with Uniform(-1, 1) or JEM++'s
 * informative per-class Gaussian initialisation. */
#include "ebm/ebm.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

jem_status jem_buffer_create(jem_buffer *b, int n, int c, int h, int w, int n_classes, jem_init_kind init, float reinit,
                             int per_class)
{
    memset(b, 0, sizeof *b);
    if (n < 1 || c < 1 || h < 1 || w < 1 || n_classes < 1 || !(reinit >= 0 && reinit <= 1))
        return jem_fail(JEM_ERR_ARG, "replay buffer: size %d, shape %dx%dx%d, %d classes, reinit %g", n, c, h, w,
                        n_classes, (double)reinit);
    if (per_class && n < n_classes)
        return jem_fail(JEM_ERR_ARG, "replay buffer: %d slots cannot hold %d per-class partitions", n, n_classes);
    size_t D = (size_t)c * h * w;
    b->n = n;
    b->c = c;
    b->h = h;
    b->w = w;
    b->n_classes = n_classes;
    b->init = init;
    b->reinit = reinit;
    b->per_class = per_class;
    b->x = malloc(sizeof(float) * D * n);
    b->y = malloc(sizeof(int32_t) * n);
    b->age = calloc((size_t)n, sizeof(int64_t));
    if (!b->x || !b->y || !b->age) {
        jem_buffer_free(b);
        return jem_fail(JEM_ERR_NOMEM, "replay buffer: out of memory for %d images", n);
    }
    for (int i = 0; i < n; i++) b->y[i] = i % n_classes;
    b->lo = 0;
    b->hi = n;
    return JEM_OK;
}

void jem_buffer_free(jem_buffer *b)
{
    if (!b) return;
    free(b->x);
    free(b->y);
    free(b->age);
    if (b->prior) {
        free(b->prior->mu);
        free(b->prior->sd);
        free(b->prior->chol);
        free(b->prior);
    }
    memset(b, 0, sizeof *b);
}

/* In-place Cholesky of a (D, D) symmetric positive definite matrix (lower). */
static int cholesky(double *a, int D)
{
    for (int j = 0; j < D; j++) {
        double s = a[(size_t)j * D + j];
        for (int k = 0; k < j; k++) s -= a[(size_t)j * D + k] * a[(size_t)j * D + k];
        if (!(s > 0)) return -1;
        double l = sqrt(s);
        a[(size_t)j * D + j] = l;
#pragma omp parallel for schedule(static) if (D - j > 64)
        for (int i = j + 1; i < D; i++) {
            double t = a[(size_t)i * D + j];
            const double *ri = a + (size_t)i * D, *rj = a + (size_t)j * D;
            for (int k = 0; k < j; k++) t -= ri[k] * rj[k];
            a[(size_t)i * D + j] = t / l;
        }
    }
    for (int i = 0; i < D; i++)
        for (int j = i + 1; j < D; j++) a[(size_t)i * D + j] = 0;
    return 0;
}

jem_status jem_buffer_fit(jem_buffer *b, const jem_dataset *ds, int full_cov)
{
    const int D = b->c * b->h * b->w, K = b->n_classes;
    if (ds->c != b->c || ds->h != b->h || ds->w != b->w)
        return jem_fail(JEM_ERR_SHAPE, "informative init: data %s is %dx%dx%d, buffer %dx%dx%d", ds->name, ds->c, ds->h,
                        ds->w, b->c, b->h, b->w);
    if (!b->prior && !(b->prior = calloc(1, sizeof *b->prior)))
        return jem_fail(JEM_ERR_NOMEM, "informative init: out of memory");
    struct jem_buffer_prior *pr = b->prior;
    free(pr->mu);
    free(pr->sd);
    free(pr->chol);
    pr->chol = NULL;
    pr->mu = calloc((size_t)K * D, sizeof(float));
    pr->sd = calloc((size_t)K * D, sizeof(float));
    long *cnt = calloc(K, sizeof(long));
    double *m = calloc((size_t)K * D, sizeof(double)), *v = calloc((size_t)K * D, sizeof(double));
    if (!pr->mu || !pr->sd || !cnt || !m || !v) {
        free(cnt);
        free(m);
        free(v);
        return jem_fail(JEM_ERR_NOMEM, "informative init: out of memory");
    }
    for (int i = 0; i < ds->n; i++) {
        int k = ds->y[i];
        if (k < 0 || k >= K) continue;
        cnt[k]++;
        const float *xi = ds->x + (size_t)i * D;
        for (int d = 0; d < D; d++) m[(size_t)k * D + d] += xi[d];
    }
    for (int k = 0; k < K; k++)
        for (int d = 0; d < D; d++) m[(size_t)k * D + d] /= cnt[k] ? cnt[k] : 1;
    for (int i = 0; i < ds->n; i++) {
        int k = ds->y[i];
        if (k < 0 || k >= K) continue;
        const float *xi = ds->x + (size_t)i * D;
        for (int d = 0; d < D; d++) {
            double t = xi[d] - m[(size_t)k * D + d];
            v[(size_t)k * D + d] += t * t;
        }
    }
    for (size_t i = 0; i < (size_t)K * D; i++) {
        int k = (int)(i / D);
        pr->mu[i] = (float)m[i];
        pr->sd[i] = (float)sqrt(v[i] / (cnt[k] > 1 ? cnt[k] - 1 : 1));
    }
    jem_status s = JEM_OK;
    if (full_cov) {
        pr->chol = malloc(sizeof(float) * (size_t)K * D * D);
        double *cov = malloc(sizeof(double) * (size_t)D * D);
        float *xc = malloc(sizeof(float) * (size_t)D * 4096);
        if (!pr->chol || !cov || !xc) {
            free(cov);
            free(xc);
            free(pr->chol);
            pr->chol = NULL;
            s = jem_fail(JEM_ERR_NOMEM, "informative init: out of memory for %d covariance matrices of %dx%d", K, D, D);
            goto out;
        }
        for (int k = 0; k < K && !s; k++) {
            memset(cov, 0, sizeof(double) * (size_t)D * D);
            /* accumulate centred outer products in chunks */
            int nc = 0;
            for (int i = 0; i <= ds->n; i++) {
                if (i < ds->n && ds->y[i] == k) {
                    const float *xi = ds->x + (size_t)i * D;
                    for (int d = 0; d < D; d++) xc[(size_t)nc * D + d] = xi[d] - pr->mu[(size_t)k * D + d];
                    nc++;
                }
                if (nc == 4096 || (i == ds->n && nc)) {
#pragma omp parallel for schedule(dynamic, 8)
                    for (int r = 0; r < D; r++)
                        for (int j = 0; j <= r; j++) {
                            double acc = 0;
                            for (int t = 0; t < nc; t++) acc += (double)xc[(size_t)t * D + r] * xc[(size_t)t * D + j];
                            cov[(size_t)r * D + j] += acc;
                        }
                    nc = 0;
                }
            }
            double denom = cnt[k] > 1 ? (double)(cnt[k] - 1) : 1.0;
            for (int r = 0; r < D; r++)
                for (int j = 0; j <= r; j++) {
                    double val = cov[(size_t)r * D + j] / denom;
                    cov[(size_t)r * D + j] = val;
                    cov[(size_t)j * D + r] = val;
                }
            /* jitter keeps constant pixels (zero variance) factorable */
            for (int r = 0; r < D; r++) cov[(size_t)r * D + r] += 1e-4;
            if (cholesky(cov, D)) {
                s = jem_fail(JEM_ERR_NONFINITE, "informative init: covariance of class %d is not positive definite", k);
                break;
            }
            float *L = pr->chol + (size_t)k * D * D;
            for (size_t i = 0; i < (size_t)D * D; i++) L[i] = (float)cov[i];
        }
        free(cov);
        free(xc);
        if (s) {
            free(pr->chol);
            pr->chol = NULL;
        }
    }
out:
    b->full_cov = pr->chol != NULL;
    free(cnt);
    free(m);
    free(v);
    return s;
}

void jem_buffer_init_one(const jem_buffer *b, int k, float *x, jem_rng *rng)
{
    const int D = b->c * b->h * b->w;
    const struct jem_buffer_prior *pr = b->prior;
    if (b->init == JEM_INIT_UNIFORM || !pr || !pr->mu) {
        for (int d = 0; d < D; d++) x[d] = 2.0f * jem_rng_uniform(rng) - 1.0f;
        return;
    }
    if (k < 0 || k >= b->n_classes) k = (int)jem_rng_below(rng, (uint32_t)b->n_classes);
    const float *mu = pr->mu + (size_t)k * D, *sd = pr->sd + (size_t)k * D;
    if (pr->chol) {
        const float *L = pr->chol + (size_t)k * D * D;
        float z[4096];
        float *zz = D <= 4096 ? z : malloc(sizeof(float) * D);
        if (zz) {
            for (int d = 0; d < D; d++) zz[d] = jem_rng_normal(rng);
            for (int r = 0; r < D; r++) {
                double acc = mu[r];
                const float *Lr = L + (size_t)r * D;
                for (int j = 0; j <= r; j++) acc += (double)Lr[j] * zz[j];
                x[r] = acc < -1 ? -1.0f : acc > 1 ? 1.0f : (float)acc;
            }
            if (zz != z) free(zz);
            return;
        }
    }
    for (int d = 0; d < D; d++) {
        float v = mu[d] + sd[d] * jem_rng_normal(rng);
        x[d] = v < -1 ? -1.0f : v > 1 ? 1.0f : v;
    }
}

void jem_buffer_reset(jem_buffer *b, jem_rng *rng)
{
    const size_t D = (size_t)b->c * b->h * b->w;
    for (int i = 0; i < b->n; i++) jem_buffer_init_one(b, b->y[i], b->x + i * D, rng);
    memset(b->age, 0, sizeof(int64_t) * (size_t)b->n);
}

int jem_buffer_draw(jem_buffer *b, int B, const int32_t *y, float *x, int32_t *idx, int32_t *ycls, int64_t *age,
                    jem_rng *rng)
{
    const size_t D = (size_t)b->c * b->h * b->w;
    int restarted = 0;
    const int K = b->n_classes;
    for (int i = 0; i < B; i++) {
        int slot;
        int lo = b->lo, hi = b->hi;
        if (b->per_class && y && y[i] >= 0 && y[i] < K) {
            /* slots of class k are k, k + K, k + 2K, ...; those in [lo, hi) */
            int k = y[i];
            int j0 = lo <= k ? 0 : (lo - k + K - 1) / K, j1 = (hi - k + K - 1) / K;
            slot = j1 > j0 ? k + K * (j0 + (int)jem_rng_below(rng, (uint32_t)(j1 - j0)))
                           : lo + (int)jem_rng_below(rng, (uint32_t)(hi - lo));
        } else {
            slot = lo + (int)jem_rng_below(rng, (uint32_t)(hi - lo));
        }
        idx[i] = slot;
        if (ycls) ycls[i] = b->y[slot];
        if (jem_rng_uniform(rng) < b->reinit) {
            jem_buffer_init_one(b, b->y[slot], x + i * D, rng);
            restarted++;
            if (age) age[i] = 0;
        } else {
            memcpy(x + i * D, b->x + (size_t)slot * D, sizeof(float) * D);
            if (age) age[i] = b->age[slot];
        }
    }
    return restarted;
}

void jem_buffer_store(jem_buffer *b, const float *x, const int32_t *idx, const int64_t *age, int B)
{
    const size_t D = (size_t)b->c * b->h * b->w;
    for (int i = 0; i < B; i++) {
        memcpy(b->x + (size_t)idx[i] * D, x + i * D, sizeof(float) * D);
        if (age) b->age[idx[i]] = age[i];
    }
}

void jem_buffer_tick(jem_buffer *b)
{
    for (int i = b->lo; i < b->hi; i++)
        if (b->age[i] >= 0) b->age[i]++;
}

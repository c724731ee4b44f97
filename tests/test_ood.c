/* Out-of-distribution detection beyond the logit scores: network features,
 * the class-conditional Gaussian (Mahalanobis) and k-nearest-neighbour
 * detectors against closed forms and direct computations, the threshold
 * picker, ODIN against finite differences, fitted detector files, and the
 * data specs for covariate shift (corrupt:) and open sets (classes=). */
#include "jem.h"
#include "data/data.h"
#include "eval/eval.h"
#include "eval/ood_detect.h"
#include "nn/nn.h"
#include "test.h"

#include <ftw.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

#define PI 3.14159265358979323846

static char tmpdir[64];

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static const char *tpath(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", tmpdir, name);
    return buf[k];
}

static jem_net *new_net(const char *desc, uint64_t seed)
{
    jem_arch a;
    jem_net *net = NULL;
    ASSERT_OK(jem_arch_parse(desc, "test", &a));
    if (jem_net_create(&a, &net)) return NULL;
    jem_rng rng;
    jem_rng_seed(&rng, seed, 0);
    jem_net_init(net, &rng);
    /* larger weights than the initialisation, so that every path matters */
    float *p = jem_net_params(net);
    for (size_t i = 0; i < jem_net_nparams(net); i++) p[i] *= 1.5f;
    return net;
}

static void fill_uniform(float *x, size_t n, jem_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * jem_rng_uniform(r);
}

/* ================================================================ features */

#define NET_FUSABLE "input = 1x8x8\nclasses = 3\nstem = 16\nblocks = 16/1 32/2 32/1\nactivation = lrelu\nslope = 0.2\n"
#define NET_TINY    "input = 1x6x6\nclasses = 3\nstem = 4\nblocks = 4/1 8/2\nactivation = lrelu\nslope = 0.2\n"

static void test_features(void)
{
    jem_net *net = new_net(NET_FUSABLE, 3);
    if (!net) return;
    const jem_arch *a = jem_net_arch(net);
    const int n = 150, K = a->n_classes; /* more than one chunk of 128 */
    const size_t img = 64;
    jem_rng rng;
    jem_rng_seed(&rng, 5, 0);
    float *x = malloc(sizeof(float) * n * img), *lg = malloc(sizeof(float) * n * K);
    fill_uniform(x, (size_t)n * img, &rng, -1, 1);
    ASSERT_EQ_INT(jem_net_feature_dim(net, 0), 32);
    ASSERT_EQ_INT(jem_net_feature_dim(net, 1), 16);
    ASSERT_EQ_INT(jem_net_feature_dim(net, 2), 32);
    ASSERT_EQ_INT(jem_net_feature_dim(net, 3), 32);
    ASSERT_EQ_INT(jem_net_feature_dim(net, 4), 0);
    ASSERT_EQ_INT(jem_net_feature_dim(net, -1), 0);
    float f0[1];
    ASSERT_ERR(jem_net_features(net, x, 1, 4, f0), JEM_ERR_ARG);

    /* pooled features: the logits are the linear head applied to them */
    float *f = malloc(sizeof(float) * n * 32);
    ASSERT_OK(jem_net_features(net, x, n, 0, f));
    ASSERT_OK(jem_net_predict(net, x, n, lg));
    const float *W = jem_net_params(net) + jem_net_find(net, "fc.weight")->offset;
    const float *bias = jem_net_params(net) + jem_net_find(net, "fc.bias")->offset;
    double err = 0;
    for (int i = 0; i < n; i++)
        for (int k = 0; k < K; k++) {
            double s = bias[k];
            for (int d = 0; d < 32; d++) s += (double)W[k * 32 + d] * f[i * 32 + d];
            err = fmax(err, fabs(s - lg[i * K + k]));
        }
    ASSERT_MSG(err < 1e-4, "logits from pooled features differ by %g", err);

    /* every block's features: the fused path (channels innermost between
     * fused blocks) against layer by layer */
    float *g = malloc(sizeof(float) * n * 32);
    for (int layer = 1; layer <= 3; layer++) {
        const int D = jem_net_feature_dim(net, layer);
        jem_net_fuse(net, 1);
        ASSERT_OK(jem_net_features(net, x, n, layer, f));
        jem_net_fuse(net, 0);
        ASSERT_OK(jem_net_features(net, x, n, layer, g));
        double e = 0, scale = 0;
        for (int i = 0; i < n * D; i++) {
            e = fmax(e, fabs(f[i] - g[i]));
            scale = fmax(scale, fabs(g[i]));
        }
        ASSERT_MSG(e <= 1e-4 * (1 + scale), "block %d features: fused and layer by layer differ by %g", layer, e);
        ASSERT_MSG(scale > 0, "block %d features are all zero", layer);
    }
    jem_net_fuse(net, 1);
    jem_net_free(net);

    /* a last block whose output is positive everywhere (a large bias on
     * its shortcut): the activation leaves it alone, so the pooled
     * features are the last block's averaged output */
    net = new_net("input = 1x8x8\nclasses = 3\nstem = 16\nblocks = 16/1 32/2\nactivation = lrelu\nslope = 0.2\n", 4);
    if (net) {
        float *sb = jem_net_params(net) + jem_net_find(net, "b2.sc.bias")->offset;
        for (int c = 0; c < 32; c++) sb[c] += 100.0f;
        ASSERT_OK(jem_net_features(net, x, n, 0, f));
        ASSERT_OK(jem_net_features(net, x, n, 2, g));
        double e = 0, lo = INFINITY;
        for (int i = 0; i < n * 32; i++) {
            e = fmax(e, fabs(f[i] - g[i]));
            lo = fmin(lo, g[i]);
        }
        ASSERT(lo > 50);
        ASSERT_MSG(e < 1e-4, "positive last block: pool and b2 differ by %g", e);
        jem_net_free(net);
    }
    free(x);
    free(lg);
    free(f);
    free(g);
}

static void test_layer_names(void)
{
    ASSERT_EQ_INT(jem_ood_layer_parse("pool"), 0);
    ASSERT_EQ_INT(jem_ood_layer_parse("b1"), 1);
    ASSERT_EQ_INT(jem_ood_layer_parse("b12"), 12);
    ASSERT_EQ_INT(jem_ood_layer_parse("b0"), -1);
    ASSERT_EQ_INT(jem_ood_layer_parse("b"), -1);
    ASSERT_EQ_INT(jem_ood_layer_parse("b1x"), -1);
    ASSERT_EQ_INT(jem_ood_layer_parse("fc"), -1);
    ASSERT_EQ_INT(jem_ood_layer_parse("b99999999999"), -1);
    ASSERT_EQ_INT(jem_ood_layer_parse(NULL), -1);
    char buf[16];
    jem_ood_layer_name(3, buf, sizeof buf);
    ASSERT(!strcmp(buf, "b3"));
    jem_ood_layer_name(0, buf, sizeof buf);
    ASSERT(!strcmp(buf, "pool"));
}

/* ============================================================ Mahalanobis */

/* Two classes in 2-D, each four points mu_k +- a e1, mu_k +- b e2: the
 * class means are mu_k exactly and the pooled covariance (divided by N = 8)
 * is diag(a^2 / 2, b^2 / 2). */
static void test_maha_closed_form(void)
{
    const double a = 2.0, b = 0.5, mu[2][2] = {{1, -1}, {-3, 2}};
    float f[8 * 2];
    int32_t y[8];
    for (int k = 0; k < 2; k++)
        for (int j = 0; j < 4; j++) {
            float *r = f + (k * 4 + j) * 2;
            r[0] = (float)(mu[k][0] + (j == 0 ? a : j == 1 ? -a : 0));
            r[1] = (float)(mu[k][1] + (j == 2 ? b : j == 3 ? -b : 0));
            y[k * 4 + j] = k;
        }
    jem_maha_acc acc;
    ASSERT_OK(jem_maha_acc_init(&acc, 2, 2));
    ASSERT_OK(jem_maha_acc_add(&acc, f, y, 3)); /* uneven batches */
    ASSERT_OK(jem_maha_acc_add(&acc, f + 6, y + 3, 5));
    jem_maha m;
    ASSERT_OK(jem_maha_fit(&acc, 0, &m));
    ASSERT_NEAR(m.mean[0], 1, 1e-12);
    ASSERT_NEAR(m.mean[3], 2, 1e-12);
    ASSERT_EQ_INT(m.count[0], 4);
    /* L = diag(a / sqrt 2, b / sqrt 2) */
    ASSERT_NEAR(m.chol[0], a / sqrt(2.0), 1e-12);
    ASSERT_NEAR(m.chol[1], 0, 0);
    ASSERT_NEAR(m.chol[2], 0, 1e-12);
    ASSERT_NEAR(m.chol[3], b / sqrt(2.0), 1e-12);
    /* queries: d_k = 2 dx^2 / a^2 + 2 dy^2 / b^2 */
    const float q[3 * 2] = {1, -1, 0, 0, -2.5f, 1.75f};
    double s[3];
    int32_t km[3];
    ASSERT_OK(jem_maha_score(&m, q, 3, s, km));
    for (int i = 0; i < 3; i++) {
        double best = INFINITY;
        int bk = -1;
        for (int k = 0; k < 2; k++) {
            double dx = q[i * 2] - mu[k][0], dy = q[i * 2 + 1] - mu[k][1];
            double d = 2 * dx * dx / (a * a) + 2 * dy * dy / (b * b);
            if (d < best) {
                best = d;
                bk = k;
            }
        }
        ASSERT_NEAR(s[i], -best, 1e-10 * (1 + best));
        ASSERT_EQ_INT(km[i], bk);
    }
    ASSERT_NEAR(s[0], 0, 1e-12); /* a class mean */
    /* (0, 0): class 0 gives 2/4 + 2/0.25 = 8.5, class 1 gives 18/4 + 32 */
    ASSERT_NEAR(s[1], -8.5, 1e-10);

    /* shrinkage s: Sigma_s = (1 - s) Sigma + s tr(Sigma)/D I */
    jem_maha ms;
    ASSERT_OK(jem_maha_fit(&acc, 0.5, &ms));
    const double v0 = a * a / 2, v1 = b * b / 2, mu_t = (v0 + v1) / 2;
    ASSERT_NEAR(ms.chol[0] * ms.chol[0], 0.5 * v0 + 0.5 * mu_t, 1e-12);
    ASSERT_NEAR(ms.chol[3] * ms.chol[3], 0.5 * v1 + 0.5 * mu_t, 1e-12);
    jem_maha_free(&ms);
    ASSERT_ERR(jem_maha_fit(&acc, 1.5, &ms), JEM_ERR_ARG);
    ASSERT_ERR(jem_maha_fit(&acc, NAN, &ms), JEM_ERR_ARG);
    jem_maha_free(&m);

    /* bad input: a label out of range, a NaN, and nothing was added */
    const int64_t before = acc.n;
    int32_t bad_y[2] = {0, 2};
    ASSERT_ERR(jem_maha_acc_add(&acc, f, bad_y, 2), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "label 2");
    float nanf_[2] = {NAN, 0};
    ASSERT_ERR(jem_maha_acc_add(&acc, nanf_, y, 1), JEM_ERR_NONFINITE);
    ASSERT_EQ_INT(acc.n, before);
    jem_maha_acc_free(&acc);
}

/* inverse of a symmetric positive definite matrix by Gauss-Jordan (no
 * Cholesky: an independent route) */
static void invert(const double *A, int D, double *inv)
{
    double *M = malloc(sizeof(double) * D * 2 * D);
    for (int i = 0; i < D; i++)
        for (int j = 0; j < 2 * D; j++) M[i * 2 * D + j] = j < D ? A[i * D + j] : (j - D == i);
    for (int c = 0; c < D; c++) {
        int p = c;
        for (int r = c + 1; r < D; r++)
            if (fabs(M[r * 2 * D + c]) > fabs(M[p * 2 * D + c])) p = r;
        for (int j = 0; j < 2 * D; j++) {
            double t = M[c * 2 * D + j];
            M[c * 2 * D + j] = M[p * 2 * D + j];
            M[p * 2 * D + j] = t;
        }
        double pv = M[c * 2 * D + c];
        for (int j = 0; j < 2 * D; j++) M[c * 2 * D + j] /= pv;
        for (int r = 0; r < D; r++) {
            if (r == c) continue;
            double fct = M[r * 2 * D + c];
            for (int j = 0; j < 2 * D; j++) M[r * 2 * D + j] -= fct * M[c * 2 * D + j];
        }
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) inv[i * D + j] = M[i * 2 * D + D + j];
    free(M);
}

/* Gaussian clusters with a correlated covariance, far from the origin (so
 * that a sum of squares of raw values would lose the covariance): the fit
 * against two-pass estimates, the scores against quadratic forms with the
 * inverse, and the true parameters recovered within sampling error. */
static void test_maha_gaussian(void)
{
    enum { D = 4, K = 3 };
    const int N = t_quick() ? 3000 : 12000;
    const double offset = 1e4;
    /* Sigma = A A^T with a fixed lower-triangular A */
    const double A[D * D] = {1.0, 0, 0, 0, 0.5, 0.8, 0, 0, -0.3, 0.2, 0.6, 0, 0.1, -0.4, 0.3, 0.5};
    double mu[K][D];
    jem_rng rng;
    jem_rng_seed(&rng, 11, 0);
    for (int k = 0; k < K; k++)
        for (int d = 0; d < D; d++) mu[k][d] = offset + 3.0 * jem_rng_normal_d(&rng);
    float *f = malloc(sizeof(float) * N * D);
    int32_t *y = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) {
        y[i] = (int32_t)jem_rng_below(&rng, K);
        double z[D];
        for (int d = 0; d < D; d++) z[d] = jem_rng_normal_d(&rng);
        for (int d = 0; d < D; d++) {
            double s = mu[y[i]][d];
            for (int e = 0; e <= d; e++) s += A[d * D + e] * z[e];
            f[i * D + d] = (float)s;
        }
    }
    /* two-pass reference on the float features */
    double mean[K][D] = {{0}}, cov[D * D] = {0};
    int cnt[K] = {0};
    for (int i = 0; i < N; i++) {
        cnt[y[i]]++;
        for (int d = 0; d < D; d++) mean[y[i]][d] += f[i * D + d];
    }
    for (int k = 0; k < K; k++)
        for (int d = 0; d < D; d++) mean[k][d] /= cnt[k];
    for (int i = 0; i < N; i++)
        for (int d = 0; d < D; d++)
            for (int e = 0; e < D; e++)
                cov[d * D + e] += (f[i * D + d] - mean[y[i]][d]) * (f[i * D + e] - mean[y[i]][e]);
    for (int t = 0; t < D * D; t++) cov[t] /= N;

    jem_maha_acc acc;
    ASSERT_OK(jem_maha_acc_init(&acc, D, K));
    for (int i = 0, b = 1; i < N; i += b, b = b * 3 % 517 + 1)
        ASSERT_OK(jem_maha_acc_add(&acc, f + (size_t)i * D, y + i, N - i < b ? N - i : b));
    jem_maha m;
    ASSERT_OK(jem_maha_fit(&acc, 0, &m));
    double e_mean = 0, e_cov = 0, e_true = 0;
    for (int k = 0; k < K; k++)
        for (int d = 0; d < D; d++) e_mean = fmax(e_mean, fabs(m.mean[k * D + d] - mean[k][d]));
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0, t = 0;
            for (int k = 0; k < D; k++) {
                s += m.chol[i * D + k] * m.chol[j * D + k];
                t += A[i * D + k] * A[j * D + k];
            }
            e_cov = fmax(e_cov, fabs(s - cov[i * D + j]));
            e_true = fmax(e_true, fabs(s - t));
        }
    ASSERT_MSG(e_mean < 1e-9 * offset, "class means differ from the two-pass means by %g", e_mean);
    ASSERT_MSG(e_cov < 1e-9, "covariance differs from the two-pass covariance by %g", e_cov);
    /* sampling error of a covariance entry is about 1/sqrt(N) */
    ASSERT_MSG(e_true < 6.0 / sqrt((double)N), "covariance is %g from the true one", e_true);

    double inv[D * D];
    invert(cov, D, inv);
    const int nq = 50;
    float q[50 * D];
    for (int i = 0; i < nq * D; i++) q[i] = (float)(offset + 4.0 * jem_rng_normal_d(&rng));
    double s[50];
    ASSERT_OK(jem_maha_score(&m, q, nq, s, NULL));
    double e_s = 0;
    for (int i = 0; i < nq; i++) {
        double best = INFINITY;
        for (int k = 0; k < K; k++) {
            double v = 0;
            for (int d = 0; d < D; d++)
                for (int e = 0; e < D; e++)
                    v += (q[i * D + d] - mean[k][d]) * inv[d * D + e] * (q[i * D + e] - mean[k][e]);
            best = fmin(best, v);
        }
        e_s = fmax(e_s, fabs(s[i] + best) / (1 + best));
    }
    ASSERT_MSG(e_s < 1e-8, "scores differ from the quadratic forms by %g (relative)", e_s);
    /* training points of a class: E[d^2] = D under the true model */
    double md = 0;
    double *st = malloc(sizeof(double) * N);
    ASSERT_OK(jem_maha_score(&m, f, N, st, NULL));
    for (int i = 0; i < N; i++) md -= st[i];
    md /= N;
    ASSERT_MSG(md > D * 0.9 && md < D * 1.02, "mean squared distance of training points %g, want about %d", md, D);
    free(st);
    jem_maha_free(&m);
    jem_maha_acc_free(&acc);
    free(f);
    free(y);
}

static void test_maha_singular(void)
{
    enum { D = 3 };
    jem_rng rng;
    jem_rng_seed(&rng, 2, 0);
    float f[200 * D];
    int32_t y[200];
    for (int i = 0; i < 200; i++) {
        y[i] = i % 2;
        f[i * D] = jem_rng_normal(&rng);
        f[i * D + 1] = jem_rng_normal(&rng);
        f[i * D + 2] = f[i * D] + f[i * D + 1]; /* dependent */
    }
    jem_maha_acc acc;
    jem_maha m;
    ASSERT_OK(jem_maha_acc_init(&acc, D, 2));
    ASSERT_OK(jem_maha_acc_add(&acc, f, y, 200));
    ASSERT_ERR(jem_maha_fit(&acc, 0, &m), JEM_ERR_ARG);
    const char *msg = jem_last_error();
    ASSERT_STR_CONTAINS(msg, "singular");
    ASSERT_STR_CONTAINS(msg, "shrinkage");
    /* the shrinkage it names makes the fit work */
    const char *p = strstr(msg, "fit with shrinkage ");
    ASSERT(p != NULL);
    double fix = p ? strtod(p + strlen("fit with shrinkage "), NULL) : 0;
    ASSERT(fix > 0 && fix <= 1);
    ASSERT_OK(jem_maha_fit(&acc, fix, &m));
    jem_maha_free(&m);
    jem_maha_acc_free(&acc);

    /* fewer samples than features */
    ASSERT_OK(jem_maha_acc_init(&acc, D, 1));
    int32_t y0[2] = {0, 0};
    ASSERT_OK(jem_maha_acc_add(&acc, f, y0, 2));
    ASSERT_ERR(jem_maha_fit(&acc, 0, &m), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "shrinkage");
    jem_maha_acc_free(&acc);

    /* every feature constant: nothing helps */
    float c[4 * D];
    for (int i = 0; i < 4 * D; i++) c[i] = 0.25f;
    int32_t y4[4] = {0, 0, 0, 0};
    ASSERT_OK(jem_maha_acc_init(&acc, D, 1));
    ASSERT_OK(jem_maha_acc_add(&acc, c, y4, 4));
    ASSERT_ERR(jem_maha_fit(&acc, 0, &m), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "constant");
    jem_maha_acc_free(&acc);

    /* no samples */
    ASSERT_OK(jem_maha_acc_init(&acc, D, 1));
    ASSERT_ERR(jem_maha_fit(&acc, 0, &m), JEM_ERR_ARG);
    jem_maha_acc_free(&acc);
}

/* =================================================================== kNN */

static void test_knn_closed_form(void)
{
    /* training rows at 0, 90, 180 and 270 degrees with different norms, a
     * query at 30 degrees: chord distances 2 sin(dtheta / 2) */
    const float train[4 * 2] = {3, 0, 0, 0.5f, -7, 0, 0, -2};
    const float q[2 * 2] = {5 * (float)cos(PI / 6), 5 * (float)sin(PI / 6), 0, 0};
    /* angles from the query: 30, 60, 150 and 120 degrees */
    const double sorted[4] = {2 * sin(PI / 12), 2 * sin(PI / 6), 2 * sin(PI / 3), 2 * sin(5 * PI / 12)};
    for (int k = 1; k <= 4; k++) {
        jem_knn m;
        ASSERT_OK(jem_knn_init(train, 4, 2, k, &m));
        double s[2];
        ASSERT_OK(jem_knn_score(&m, q, 2, 0, s));
        ASSERT_NEAR(s[0], -sorted[k - 1], 1e-7);
        ASSERT_NEAR(s[1], -1.0, 1e-7); /* a zero row is at distance 1 from every unit row */
        jem_knn_free(&m);
    }
    jem_knn m;
    ASSERT_ERR(jem_knn_init(train, 4, 2, 5, &m), JEM_ERR_ARG);
    ASSERT_ERR(jem_knn_init(train, 4, 2, 0, &m), JEM_ERR_ARG);
    float bad[2] = {NAN, 1};
    ASSERT_ERR(jem_knn_init(bad, 1, 2, 1, &m), JEM_ERR_NONFINITE);
    ASSERT_OK(jem_knn_init(train, 4, 2, 1, &m));
    double s[1];
    ASSERT_ERR(jem_knn_score(&m, q, 1, 1000, s), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "64 KB");
    ASSERT_ERR(jem_knn_score(&m, bad, 1, 0, s), JEM_ERR_NONFINITE);
    jem_knn_free(&m);
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return (x > y) - (x < y);
}

/* random rows against brute force, with search memory small enough to
 * force many blocks of queries and training rows, and the default */
static void test_knn_random(void)
{
    const int N = 777, n = 300, D = 16, k = 7;
    jem_rng rng;
    jem_rng_seed(&rng, 9, 0);
    float *tr = malloc(sizeof(float) * N * D), *q = malloc(sizeof(float) * n * D);
    for (int i = 0; i < N * D; i++) tr[i] = jem_rng_normal(&rng) + 0.5f;
    for (int i = 0; i < n * D; i++) q[i] = jem_rng_normal(&rng) + 0.5f;
    double *want = malloc(sizeof(double) * n), *d = malloc(sizeof(double) * N);
    for (int j = 0; j < n; j++) {
        double nq = 0;
        for (int e = 0; e < D; e++) nq += (double)q[j * D + e] * q[j * D + e];
        for (int i = 0; i < N; i++) {
            double nt = 0, s = 0;
            for (int e = 0; e < D; e++) nt += (double)tr[i * D + e] * tr[i * D + e];
            for (int e = 0; e < D; e++) {
                double v = q[j * D + e] / sqrt(nq) - tr[i * D + e] / sqrt(nt);
                s += v * v;
            }
            d[i] = sqrt(s);
        }
        qsort(d, N, sizeof *d, cmp_d);
        want[j] = -d[k - 1];
    }
    jem_knn m;
    ASSERT_OK(jem_knn_init(tr, N, D, k, &m));
    const size_t mems[3] = {(size_t)64 << 10, (size_t)100 << 10, 0};
    double *s = malloc(sizeof(double) * n);
    for (int t = 0; t < 3; t++) {
        ASSERT_OK(jem_knn_score(&m, q, n, mems[t], s));
        double e = 0;
        for (int j = 0; j < n; j++) e = fmax(e, fabs(s[j] - want[j]));
        ASSERT_MSG(e < 1e-6, "knn with %zu bytes: max difference %g from brute force", mems[t], e);
    }
    /* norms do not matter */
    for (int i = 0; i < n * D; i++) q[i] *= 3.5f;
    double *s2 = malloc(sizeof(double) * n);
    ASSERT_OK(jem_knn_score(&m, q, n, 0, s2));
    double e = 0;
    for (int j = 0; j < n; j++) e = fmax(e, fabs(s2[j] - s[j]));
    ASSERT_MSG(e < 1e-6, "scaled queries change knn scores by %g", e);
    jem_knn_free(&m);
    free(tr);
    free(q);
    free(want);
    free(d);
    free(s);
    free(s2);
}

/* ============================================================ threshold */

static void test_threshold(void)
{
    const double s_in[10] = {0.3, 0.8, 0.1, 0.9, 0.5, 0.8, 0.2, 0.7, 0.05, 0.0};
    const double s_out[5] = {0.85, 0.8, 0.4, 0.0, -1};
    double thr, kept;
    /* sorted: 0.9 0.8 0.8 0.7 0.5 0.3 0.2 0.1 0.05 0 */
    ASSERT_OK(jem_ood_threshold(s_in, 10, 0.5, &thr, &kept)); /* m = 5 */
    ASSERT_NEAR(thr, 0.5, 0);
    ASSERT_NEAR(kept, 0.5, 0);
    ASSERT_NEAR(jem_ood_rate_at(s_out, 5, thr), 0.4, 0);       /* 0.85 and 0.8 */
    ASSERT_OK(jem_ood_threshold(s_in, 10, 0.25, &thr, &kept)); /* m = 3: 0.8, a tie */
    ASSERT_NEAR(thr, 0.8, 0);
    ASSERT_NEAR(kept, 0.3, 0);
    ASSERT_OK(jem_ood_threshold(s_in, 10, 0.2, &thr, &kept)); /* m = 2: the same tie */
    ASSERT_NEAR(thr, 0.8, 0);
    ASSERT_NEAR(kept, 0.3, 0);
    ASSERT_NEAR(jem_ood_rate_at(s_out, 5, thr), 0.4, 0);      /* >= keeps the tie 0.8 */
    ASSERT_OK(jem_ood_threshold(s_in, 10, 0.1, &thr, &kept)); /* m = 1 */
    ASSERT_NEAR(thr, 0.9, 0);
    ASSERT_NEAR(kept, 0.1, 0);
    ASSERT_OK(jem_ood_threshold(s_in, 10, 0.95, &thr, &kept)); /* m = 10 */
    ASSERT_NEAR(thr, 0.0, 0);
    ASSERT_NEAR(kept, 1.0, 0);
    ASSERT_NEAR(jem_ood_rate_at(s_out, 5, thr), 0.8, 0);
    ASSERT_OK(jem_ood_threshold(s_in, 10, 0.8, &thr, &kept)); /* m = 8 exactly */
    ASSERT_NEAR(thr, 0.1, 0);
    ASSERT_NEAR(kept, 0.8, 0);
    ASSERT_OK(jem_ood_threshold(s_in, 10, 1.0, &thr, &kept));
    ASSERT_NEAR(thr, 0.0, 0);
    /* 0.95 of 20 is 19, whatever the rounding of 0.95 * 20 */
    double s20[20];
    for (int i = 0; i < 20; i++) s20[i] = i;
    ASSERT_OK(jem_ood_threshold(s20, 20, 0.95, &thr, &kept));
    ASSERT_NEAR(thr, 1, 0);
    ASSERT_NEAR(kept, 0.95, 0);
    ASSERT_ERR(jem_ood_threshold(s_in, 10, 0, &thr, NULL), JEM_ERR_ARG);
    ASSERT_ERR(jem_ood_threshold(s_in, 10, 1.01, &thr, NULL), JEM_ERR_ARG);
    ASSERT_ERR(jem_ood_threshold(s_in, 10, NAN, &thr, NULL), JEM_ERR_ARG);
    ASSERT_ERR(jem_ood_threshold(s_in, 0, 0.5, &thr, NULL), JEM_ERR_ARG);
    double with_nan[2] = {0, NAN};
    ASSERT_ERR(jem_ood_threshold(with_nan, 2, 0.5, &thr, NULL), JEM_ERR_NONFINITE);
    ASSERT_NEAR(jem_ood_rate_at(s_out, 0, 0), 0, 0);

    /* on the in-distribution test set itself: FPR95 of the metrics */
    jem_rng rng;
    jem_rng_seed(&rng, 4, 0);
    for (int rep = 0; rep < 20; rep++) {
        const int ni = 1 + (int)jem_rng_below(&rng, 300), no = 1 + (int)jem_rng_below(&rng, 300);
        double *a = malloc(sizeof(double) * ni), *b = malloc(sizeof(double) * no);
        for (int i = 0; i < ni; i++) a[i] = (double)jem_rng_below(&rng, 40) + 3; /* many ties */
        for (int i = 0; i < no; i++) b[i] = (double)jem_rng_below(&rng, 40);
        jem_ood_metrics mm;
        ASSERT_OK(jem_ood_metrics_compute(a, ni, b, no, &mm));
        ASSERT_OK(jem_ood_threshold(a, ni, 0.95, &thr, &kept));
        ASSERT_NEAR(thr, mm.thr95, 0);
        ASSERT_NEAR(jem_ood_rate_at(b, no, thr), mm.fpr95, 1e-15);
        ASSERT(kept >= 0.95);
        free(a);
        free(b);
    }
}

/* ================================================================= ODIN */

static double log_max_softmax(jem_net *net, const float *x, int y, double T)
{
    float lg[16];
    jem_net_predict(net, x, 1, lg);
    const int K = jem_net_arch(net)->n_classes;
    double mx = lg[0], se = 0;
    for (int k = 1; k < K; k++) mx = fmax(mx, lg[k]);
    for (int k = 0; k < K; k++) se += exp((lg[k] - mx) / T);
    return (lg[y] - mx) / T - log(se);
}

static void test_odin(void)
{
    jem_net *net = new_net(NET_TINY, 21);
    if (!net) return;
    const int n = 70, D = 36, K = 3; /* two chunks of 64 */
    jem_rng rng;
    jem_rng_seed(&rng, 8, 0);
    float *x = malloc(sizeof(float) * n * D), *xp = malloc(sizeof(float) * n * D), *lg = malloc(sizeof(float) * n * K);
    fill_uniform(x, (size_t)n * D, &rng, -1, 1);
    double *s = malloc(sizeof(double) * n);
    const double Ts[2] = {1.0, 1000.0};
    for (int t = 0; t < 2; t++) {
        const double T = Ts[t], eps = 0.01;
        /* eps = 0: the temperature-scaled max softmax of x */
        ASSERT_OK(jem_odin_scores(net, x, n, T, 0, s, xp));
        ASSERT_OK(jem_net_predict(net, x, n, lg));
        double e = 0;
        for (int i = 0; i < n; i++) {
            double mx = lg[i * K], se = 0;
            for (int k = 1; k < K; k++) mx = fmax(mx, lg[i * K + k]);
            for (int k = 0; k < K; k++) se += exp((lg[i * K + k] - mx) / T);
            e = fmax(e, fabs(s[i] - 1 / se));
        }
        ASSERT_MSG(e < 1e-12, "odin eps 0, T %g: differs from max softmax by %g", T, e);
        ASSERT(!memcmp(xp, x, sizeof(float) * n * D));

        ASSERT_OK(jem_odin_scores(net, x, n, T, eps, s, xp));
        /* x' - x = eps sign(grad log max softmax), the gradient by central
         * differences, checked where it is clearly non-zero */
        int checked = 0, wrong = 0;
        for (int i = 0; i < n; i += 7) {
            ASSERT_OK(jem_net_predict(net, x + i * D, 1, lg));
            int y = 0;
            for (int k = 1; k < K; k++) y = lg[k] > lg[y] ? k : y;
            float xi[36];
            memcpy(xi, x + i * D, sizeof xi);
            double g[36], gmax = 0;
            for (int d = 0; d < D; d++) {
                const float keep = xi[d], h = 1e-2f;
                xi[d] = keep + h;
                double lp = log_max_softmax(net, xi, y, T);
                xi[d] = keep - h;
                double lm = log_max_softmax(net, xi, y, T);
                xi[d] = keep;
                g[d] = (lp - lm) / (2.0 * h);
                gmax = fmax(gmax, fabs(g[d]));
            }
            for (int d = 0; d < D; d++) {
                const double step = (double)xp[i * D + d] - x[i * D + d];
                ASSERT_MSG(fabs(fabs(step) - eps) < 1e-6 || step == 0, "odin step %g is not +-eps", step);
                if (fabs(g[d]) < 0.05 * gmax) continue;
                checked++;
                wrong += (step > 0) != (g[d] > 0);
            }
        }
        ASSERT_MSG(checked > 20 && wrong == 0, "T %g: %d of %d perturbation signs disagree with the gradient", T, wrong,
                   checked);
        /* the score: max softmax(f(x') / T) */
        ASSERT_OK(jem_net_predict(net, xp, n, lg));
        e = 0;
        for (int i = 0; i < n; i++) {
            double mx = lg[i * K], se = 0;
            for (int k = 1; k < K; k++) mx = fmax(mx, lg[i * K + k]);
            for (int k = 0; k < K; k++) se += exp((lg[i * K + k] - mx) / T);
            e = fmax(e, fabs(s[i] - 1 / se));
        }
        ASSERT_MSG(e < 1e-12, "odin score differs from max softmax of x' by %g", e);
    }
    /* the perturbation raises the confidence (small eps: first order) */
    double s0[70];
    ASSERT_OK(jem_odin_scores(net, x, n, 1, 0, s0, NULL));
    ASSERT_OK(jem_odin_scores(net, x, n, 1, 1e-3, s, NULL));
    int up = 0;
    for (int i = 0; i < n; i++) up += s[i] >= s0[i];
    ASSERT_MSG(up == n, "the perturbation lowered the confidence of %d of %d inputs", n - up, n);
    ASSERT_ERR(jem_odin_scores(net, x, n, 0, 0.1, s, NULL), JEM_ERR_ARG);
    ASSERT_ERR(jem_odin_scores(net, x, n, 1, -0.1, s, NULL), JEM_ERR_ARG);
    ASSERT_ERR(jem_odin_scores(net, x, n, 1, INFINITY, s, NULL), JEM_ERR_ARG);
    free(x);
    free(xp);
    free(lg);
    free(s);
    jem_net_free(net);
}

/* ========================================================= detector files */

/* a labelled set of n images for a net: class k images are noise around
 * a class pattern */
static void make_set(jem_dataset *ds, int n, int c, int h, int w, int K, uint64_t seed)
{
    memset(ds, 0, sizeof *ds);
    ASSERT_OK(jem_data_alloc(ds, n, c, h, w, "synthetic"));
    const size_t D = (size_t)c * h * w;
    jem_rng rng;
    jem_rng_seed(&rng, seed, 0);
    for (int i = 0; i < n; i++) {
        ds->y[i] = i % K;
        for (size_t d = 0; d < D; d++)
            ds->x[i * D + d] =
                0.5f * (float)((d % (size_t)(K + 1)) == (size_t)ds->y[i]) - 0.25f + 0.3f * jem_rng_normal(&rng);
    }
    ds->n_classes = K;
}

static void progress_cb(void *ud, int64_t done, int64_t total)
{
    int64_t *p = ud;
    if (done <= p[0] || done > total) p[2] = 1; /* not increasing */
    p[0] = done;
    p[1] = total;
}

static void test_detector_files(void)
{
    jem_net *net = new_net(NET_TINY, 31);
    if (!net) return;
    jem_dataset tr, te;
    make_set(&tr, 300, 1, 6, 6, 3, 1);
    make_set(&te, 40, 1, 6, 6, 3, 2);
    const char *layers[2] = {"pool", "b1"};
    for (int kind = 0; kind < 2; kind++)
        for (int li = 0; li < 2; li++) {
            jem_det_cfg cfg;
            jem_det_defaults(&cfg);
            cfg.kind = (jem_det_kind)kind;
            cfg.layer = jem_ood_layer_parse(layers[li]);
            cfg.k = 5;
            cfg.chunk = 64;
            cfg.shrinkage = 1e-3;
            int64_t prog[3] = {0, 0, 0};
            cfg.progress = progress_cb;
            cfg.ud = prog;
            jem_detector *d = NULL, *e = NULL;
            ASSERT_OK(jem_detector_fit(net, &tr, &cfg, &d));
            if (!d) continue;
            ASSERT_EQ_INT(prog[0], 300);
            ASSERT_EQ_INT(prog[1], 300);
            ASSERT_EQ_INT(prog[2], 0);
            double *s1 = malloc(sizeof(double) * te.n), *s2 = malloc(sizeof(double) * te.n);
            ASSERT_OK(jem_detector_score(d, net, te.x, te.n, s1));
            /* the same as the detector on the features directly */
            const int D = jem_net_feature_dim(net, cfg.layer);
            float *f = malloc(sizeof(float) * te.n * D);
            ASSERT_OK(jem_net_features(net, te.x, te.n, cfg.layer, f));
            if (kind == JEM_DET_MAHALANOBIS) ASSERT_OK(jem_maha_score(&d->maha, f, te.n, s2, NULL));
            else ASSERT_OK(jem_knn_score(&d->knn, f, te.n, 0, s2));
            ASSERT(!memcmp(s1, s2, sizeof(double) * te.n));
            free(f);
            /* save, load: the same scores */
            const char *path = tpath("det.safetensors");
            ASSERT_OK(jem_detector_save(d, path));
            ASSERT_OK(jem_detector_load(path, net, &e));
            if (e) {
                ASSERT_EQ_INT(e->kind, kind);
                ASSERT_EQ_INT(e->layer, cfg.layer);
                ASSERT_EQ_INT(e->n_fit, 300);
                ASSERT(!strcmp(e->data, "synthetic"));
                ASSERT_OK(jem_detector_score(e, net, te.x, te.n, s2));
                ASSERT_MSG(!memcmp(s1, s2, sizeof(double) * te.n), "%s %s: scores change after a round trip",
                           jem_det_kind_name(cfg.kind), layers[li]);
                jem_detector_free(e);
                e = NULL;
            }
            /* another model (one weight changed) is refused */
            float *p = jem_net_params(net);
            const float keep = p[0];
            p[0] += 1e-3f;
            ASSERT_ERR(jem_detector_load(path, net, &e), JEM_ERR_ARG);
            ASSERT_STR_CONTAINS(jem_last_error(), "fitted on model");
            ASSERT(e == NULL);
            p[0] = keep;
            free(s1);
            free(s2);
            jem_detector_free(d);
        }
    /* the checksum survives a checkpoint round trip */
    ASSERT_OK(jem_ckpt_save(tpath("m.safetensors"), net, NULL));
    jem_net *net2 = NULL;
    ASSERT_OK(jem_ckpt_load(tpath("m.safetensors"), &net2));
    if (net2) {
        ASSERT(jem_net_checksum(net2) == jem_net_checksum(net));
        jem_net_free(net2);
    }

    /* fitting errors */
    jem_det_cfg cfg;
    jem_det_defaults(&cfg);
    jem_detector *d = NULL;
    cfg.layer = 3;
    ASSERT_ERR(jem_detector_fit(net, &tr, &cfg, &d), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "no feature layer 'b3'");
    cfg.layer = 0;
    cfg.kind = JEM_DET_KNN;
    cfg.k = 301;
    ASSERT_ERR(jem_detector_fit(net, &tr, &cfg, &d), JEM_ERR_ARG);
    cfg.kind = JEM_DET_MAHALANOBIS;
    tr.y[17] = -1;
    ASSERT_ERR(jem_detector_fit(net, &tr, &cfg, &d), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "image 17 has label -1");
    tr.y[17] = 3;
    ASSERT_ERR(jem_detector_fit(net, &tr, &cfg, &d), JEM_ERR_ARG);
    tr.y[17] = 2;
    cfg.shrinkage = -1;
    ASSERT_ERR(jem_detector_fit(net, &tr, &cfg, &d), JEM_ERR_ARG);
    cfg.shrinkage = 0;
    jem_dataset big;
    make_set(&big, 4, 1, 7, 7, 3, 3);
    ASSERT_ERR(jem_detector_fit(net, &big, &cfg, &d), JEM_ERR_SHAPE);
    jem_dataset_free(&big);
    ASSERT(d == NULL);

    /* malformed files */
    jem_st *st = NULL;
    ASSERT_OK(jem_st_new(&st));
    ASSERT_OK(jem_st_meta(st, "jem.ood.kind", "gaussian"));
    ASSERT_OK(jem_st_meta(st, "jem.ood.layer", "pool"));
    ASSERT_OK(jem_st_meta(st, "jem.ood.model", "0123456789abcdef"));
    ASSERT_OK(jem_st_commit(st, tpath("bad1.safetensors")));
    ASSERT_ERR(jem_detector_load(tpath("bad1.safetensors"), net, &d), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "unknown detector kind");
    char sum[32];
    snprintf(sum, sizeof sum, "%016llx", (unsigned long long)jem_net_checksum(net));
    ASSERT_OK(jem_st_meta(st, "jem.ood.kind", "mahalanobis"));
    ASSERT_OK(jem_st_meta(st, "jem.ood.model", sum));
    ASSERT_OK(jem_st_commit(st, tpath("bad2.safetensors")));
    ASSERT_ERR(jem_detector_load(tpath("bad2.safetensors"), net, &d), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "\"mean\" is missing");
    const int D = jem_net_feature_dim(net, 0);
    double *mean = calloc((size_t)3 * D, sizeof(double)), *chol = calloc((size_t)D * D, sizeof(double));
    int64_t count[3] = {1, 1, 1}, km[2] = {3, D}, dd[2] = {D, D}, k3 = 3;
    for (int i = 0; i < D; i++) chol[i * D + i] = 1;
    chol[1] = 0.5; /* above the diagonal */
    ASSERT_OK(jem_st_add(st, "mean", JEM_DT_F64, 2, km, mean));
    ASSERT_OK(jem_st_add(st, "count", JEM_DT_I64, 1, &k3, count));
    ASSERT_OK(jem_st_add(st, "chol", JEM_DT_F64, 2, dd, chol));
    ASSERT_OK(jem_st_commit(st, tpath("bad3.safetensors")));
    ASSERT_ERR(jem_detector_load(tpath("bad3.safetensors"), net, &d), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "lower triangular");
    chol[1] = 0;
    ASSERT_OK(jem_st_commit(st, tpath("good.safetensors")));
    ASSERT_OK(jem_detector_load(tpath("good.safetensors"), net, &d));
    jem_detector_free(d);
    d = NULL;
    ASSERT_OK(jem_st_meta(st, "jem.ood.layer", "b7"));
    ASSERT_OK(jem_st_commit(st, tpath("bad4.safetensors")));
    ASSERT_ERR(jem_detector_load(tpath("bad4.safetensors"), net, &d), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "not in model");
    jem_st_free(st);
    ASSERT_ERR(jem_detector_load(tpath("missing.safetensors"), net, &d), JEM_ERR_IO);
    free(mean);
    free(chol);
    jem_dataset_free(&tr);
    jem_dataset_free(&te);
    jem_net_free(net);
}

/* ============================================================ corruptions */

static double u_of(float x) { return 0.5 * ((double)x + 1.0); }

/* n images 1 x H x W of constant u */
static float *const_images(int n, int H, int W, double u)
{
    float *x = malloc(sizeof(float) * n * H * W);
    for (int i = 0; i < n * H * W; i++) x[i] = (float)(2 * u - 1);
    return x;
}

static void stats(const float *x, size_t n, double *mean, double *var)
{
    double s = 0, q = 0;
    for (size_t i = 0; i < n; i++) s += u_of(x[i]);
    s /= (double)n;
    for (size_t i = 0; i < n; i++) q += (u_of(x[i]) - s) * (u_of(x[i]) - s);
    *mean = s;
    *var = q / (double)n;
}

static int in_range(const float *x, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!(x[i] >= -1.0f && x[i] <= 1.0f)) return 0;
    return 1;
}

static void test_corrupt_noise(void)
{
    const int n = 64, H = 28, W = 28;
    const size_t N = (size_t)n * H * W;
    ASSERT_EQ_INT(jem_corrupt_count(), 11);
    const int gn = jem_corrupt_find("gaussian_noise"), sn = jem_corrupt_find("shot_noise");
    const int in = jem_corrupt_find("impulse_noise");
    ASSERT(gn >= 0 && sn >= 0 && in >= 0);
    ASSERT_EQ_INT(jem_corrupt_find("fog"), -1);
    ASSERT(jem_corrupt_name(11) == NULL);
    ASSERT(isnan(jem_corrupt_param(gn, 6)));
    const double sig[5] = {0.04, 0.06, 0.08, 0.09, 0.10}, photons[5] = {500, 250, 100, 75, 50};
    const double amount[5] = {0.01, 0.02, 0.03, 0.05, 0.07};
    for (int sev = 1; sev <= 5; sev++) {
        double m, v;
        /* Gaussian noise on mid-grey: mean kept, variance sigma^2 (no
         * clipping at 5 sigma) */
        float *x = const_images(n, H, W, 0.5);
        ASSERT_OK(jem_corrupt_apply(gn, sev, x, n, 1, H, W, 7));
        stats(x, N, &m, &v);
        ASSERT_NEAR(m, 0.5, 4 * sig[sev - 1] / sqrt((double)N));
        ASSERT_NEAR(v / (sig[sev - 1] * sig[sev - 1]), 1, 0.05);
        ASSERT(in_range(x, N));
        free(x);
        /* shot noise: Poisson(u c) / c has mean u and variance u / c (both
         * the inversion, u c < 10, and the rejection sampler) */
        const double us[2] = {0.5, 0.04};
        for (int t = 0; t < 2; t++) {
            x = const_images(n, H, W, us[t]);
            ASSERT_OK(jem_corrupt_apply(sn, sev, x, n, 1, H, W, 7));
            stats(x, N, &m, &v);
            const double c = photons[sev - 1], want_v = us[t] / c;
            ASSERT_NEAR(m, us[t], 5 * sqrt(want_v / (double)N));
            ASSERT_NEAR(v / want_v, 1, 0.06);
            free(x);
        }
        /* black stays black */
        x = const_images(n, H, W, 0);
        ASSERT_OK(jem_corrupt_apply(sn, sev, x, n, 1, H, W, 7));
        stats(x, N, &m, &v);
        ASSERT_NEAR(m, 0, 0);
        free(x);
        /* impulse noise: a fraction a of pixels to 0 or 1, half each */
        x = const_images(n, H, W, 0.5);
        ASSERT_OK(jem_corrupt_apply(in, sev, x, n, 1, H, W, 7));
        size_t lo = 0, hi = 0, other = 0;
        for (size_t i = 0; i < N; i++) {
            if (x[i] == -1.0f) lo++;
            else if (x[i] == 1.0f) hi++;
            else other += x[i] != 0.0f;
        }
        const double fr = (double)(lo + hi) / (double)N, a = amount[sev - 1];
        ASSERT_NEAR(fr, a, 5 * sqrt(a / (double)N));
        ASSERT_NEAR((double)lo / (double)(lo + hi), 0.5, 5 * sqrt(0.25 / (double)(lo + hi)));
        ASSERT_EQ_INT(other, 0);
        free(x);
    }
}

static void test_corrupt_deterministic(void)
{
    const int n = 12, H = 28, W = 28, K = jem_corrupt_count();
    const size_t N = (size_t)n * H * W;
    jem_rng rng;
    jem_rng_seed(&rng, 3, 0);
    float *x0 = malloc(sizeof(float) * N), *a = malloc(sizeof(float) * N), *b = malloc(sizeof(float) * N);
    fill_uniform(x0, N, &rng, -1.3f, 1.3f); /* out of range on purpose */
    const int thr = jem_get_threads();
    for (int k = 0; k < K; k++)
        for (int sev = 1; sev <= 5; sev++) {
            memcpy(a, x0, sizeof(float) * N);
            memcpy(b, x0, sizeof(float) * N);
            jem_set_threads(1);
            ASSERT_OK(jem_corrupt_apply(k, sev, a, n, 1, H, W, 5));
            jem_set_threads(2);
            ASSERT_OK(jem_corrupt_apply(k, sev, b, n, 1, H, W, 5));
            ASSERT_MSG(!memcmp(a, b, sizeof(float) * N), "%s %d: depends on the thread count", jem_corrupt_name(k),
                       sev);
            ASSERT_MSG(in_range(a, N), "%s %d: pixels outside [-1, 1]", jem_corrupt_name(k), sev);
            int changed = 0;
            for (size_t i = 0; i < N; i++) changed += a[i] != fmaxf(-1.0f, fminf(1.0f, x0[i]));
            ASSERT_MSG(changed > 0, "%s %d changed nothing", jem_corrupt_name(k), sev);
            /* random kinds: another seed, other images */
            const char *nm = jem_corrupt_name(k);
            if (strstr(nm, "noise") || !strcmp(nm, "rotation") || !strcmp(nm, "translation")) {
                memcpy(b, x0, sizeof(float) * N);
                ASSERT_OK(jem_corrupt_apply(k, sev, b, n, 1, H, W, 6));
                ASSERT_MSG(memcmp(a, b, sizeof(float) * N), "%s %d: the seed changes nothing", nm, sev);
            }
        }
    jem_set_threads(thr);
    /* three channels work plane by plane */
    float *c3 = malloc(sizeof(float) * 3 * H * W);
    for (int ch = 0; ch < 3; ch++) memcpy(c3 + ch * H * W, x0, sizeof(float) * H * W);
    ASSERT_OK(jem_corrupt_apply(jem_corrupt_find("contrast"), 2, c3, 1, 3, H, W, 0));
    ASSERT(!memcmp(c3, c3 + H * W, sizeof(float) * H * W) && !memcmp(c3, c3 + 2 * H * W, sizeof(float) * H * W));
    free(c3);
    ASSERT_ERR(jem_corrupt_apply(K, 1, a, n, 1, H, W, 0), JEM_ERR_ARG);
    ASSERT_ERR(jem_corrupt_apply(0, 0, a, n, 1, H, W, 0), JEM_ERR_ARG);
    ASSERT_ERR(jem_corrupt_apply(0, 6, a, n, 1, H, W, 0), JEM_ERR_ARG);
    ASSERT_ERR(jem_corrupt_apply(0, 1, a, n, 0, H, W, 0), JEM_ERR_ARG);
    free(x0);
    free(a);
    free(b);
}

static void test_corrupt_photometric(void)
{
    const int H = 28, W = 28, n = 3;
    const size_t N = (size_t)n * H * W;
    jem_rng rng;
    jem_rng_seed(&rng, 13, 0);
    float *x0 = malloc(sizeof(float) * N), *x = malloc(sizeof(float) * N);
    fill_uniform(x0, N, &rng, -1, 1);
    const double cf[5] = {0.75, 0.5, 0.4, 0.3, 0.15}, bb[5] = {0.05, 0.1, 0.15, 0.2, 0.3};
    for (int sev = 1; sev <= 5; sev++) {
        /* contrast: (u - mean) c + mean per image, exactly */
        memcpy(x, x0, sizeof(float) * N);
        ASSERT_OK(jem_corrupt_apply(jem_corrupt_find("contrast"), sev, x, n, 1, H, W, 0));
        double e = 0;
        for (int i = 0; i < n; i++) {
            double m = 0;
            for (int p = 0; p < H * W; p++) m += u_of(x0[i * H * W + p]);
            m /= H * W;
            for (int p = 0; p < H * W; p++)
                e = fmax(e, fabs(u_of(x[i * H * W + p]) - ((u_of(x0[i * H * W + p]) - m) * cf[sev - 1] + m)));
        }
        ASSERT_MSG(e < 1e-6, "contrast %d off by %g", sev, e);
        /* brightness: u + b, clipped at 1 */
        memcpy(x, x0, sizeof(float) * N);
        ASSERT_OK(jem_corrupt_apply(jem_corrupt_find("brightness"), sev, x, n, 1, H, W, 0));
        e = 0;
        for (size_t i = 0; i < N; i++) e = fmax(e, fabs(u_of(x[i]) - fmin(1, u_of(x0[i]) + bb[sev - 1])));
        ASSERT_MSG(e < 1e-6, "brightness %d off by %g", sev, e);
    }
    free(x0);
    free(x);
}

static void test_corrupt_blur(void)
{
    const int H = 28, W = 28;
    double *src = calloc(H * W, sizeof(double)), *dst = malloc(sizeof(double) * H * W);
    double *tmp = malloc(sizeof(double) * H * W);
    /* an impulse: the normalised Gaussian kernel, outer product */
    src[14 * W + 13] = 1;
    const double sigma = 0.8;
    jem_img_gaussian_blur(dst, src, tmp, H, W, sigma);
    double z = 0;
    for (int d = -4; d <= 4; d++) z += exp(-0.5 * d * d / (sigma * sigma));
    double e = 0, sum = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const int dy = y - 14, dx = x - 13;
            const double want =
                abs(dy) <= 4 && abs(dx) <= 4 ? exp(-0.5 * (dy * dy + dx * dx) / (sigma * sigma)) / (z * z) : 0;
            e = fmax(e, fabs(dst[y * W + x] - want));
            sum += dst[y * W + x];
        }
    ASSERT_MSG(e < 1e-15, "Gaussian blur of an impulse off by %g", e);
    ASSERT_NEAR(sum, 1, 1e-14);
    /* in place, and a constant plane stays constant */
    for (int i = 0; i < H * W; i++) src[i] = 0.3;
    jem_img_gaussian_blur(src, src, tmp, H, W, 1.0);
    e = 0;
    for (int i = 0; i < H * W; i++) e = fmax(e, fabs(src[i] - 0.3));
    ASSERT(e < 1e-15);

    /* the two blurs through jem_corrupt_apply: a constant image stays, an
     * interior impulse keeps its mass and spreads symmetrically, noise
     * loses variance, more with severity */
    const int kinds[2] = {jem_corrupt_find("gaussian_blur"), jem_corrupt_find("defocus_blur")};
    for (int t = 0; t < 2; t++) {
        double prev_var = INFINITY;
        for (int sev = 1; sev <= 5; sev++) {
            float *x = const_images(1, H, W, 0.4);
            ASSERT_OK(jem_corrupt_apply(kinds[t], sev, x, 1, 1, H, W, 0));
            double m, v;
            stats(x, H * W, &m, &v);
            ASSERT_NEAR(m, 0.4, 1e-6);
            ASSERT_NEAR(v, 0, 1e-12);
            for (int i = 0; i < H * W; i++) x[i] = -1;
            x[14 * W + 14] = 1;
            ASSERT_OK(jem_corrupt_apply(kinds[t], sev, x, 1, 1, H, W, 0));
            double mass = 0, asym = 0;
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    mass += u_of(x[y * W + xx]);
                    if (y > 0 && xx > 0) asym = fmax(asym, fabs(x[y * W + xx] - x[(28 - y) * W + (28 - xx)]));
                    if (y > 0 && xx > 0) asym = fmax(asym, fabs(x[y * W + xx] - x[xx * W + y]));
                }
            ASSERT_NEAR(mass, 1, 1e-5);
            ASSERT_MSG(asym < 1e-6, "%s %d: an impulse spreads asymmetrically (%g)", jem_corrupt_name(kinds[t]), sev,
                       asym);
            ASSERT(u_of(x[14 * W + 14]) < 1);
            free(x);
            jem_rng rng;
            jem_rng_seed(&rng, 1, 0);
            x = malloc(sizeof(float) * H * W);
            fill_uniform(x, H * W, &rng, -1, 1);
            ASSERT_OK(jem_corrupt_apply(kinds[t], sev, x, 1, 1, H, W, 0));
            stats(x, H * W, &m, &v);
            ASSERT_MSG(v < 1.0 / 12 * 0.8 && v <= prev_var * 1.0001, "%s %d: variance %g after %g",
                       jem_corrupt_name(kinds[t]), sev, v, prev_var);
            prev_var = v;
            free(x);
        }
    }
    free(src);
    free(dst);
    free(tmp);
}

static void test_corrupt_geometric(void)
{
    const int H = 28, W = 28;
    jem_rng rng;
    jem_rng_seed(&rng, 17, 0);
    double *src = malloc(sizeof(double) * H * W), *dst = malloc(sizeof(double) * H * W);
    for (int i = 0; i < H * W; i++) src[i] = jem_rng_uniform_d(&rng);
    /* a quarter turn: dst(y, x) = src(R^-1 (p - c) + c) is a transpose and
     * a flip */
    jem_img_affine(dst, src, H, W, PI / 2, 0, 0, -5);
    double e = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) e = fmax(e, fabs(dst[y * W + x] - src[x * W + (W - 1 - y)]));
    ASSERT_MSG(e < 1e-9, "quarter turn off by %g", e);
    /* whole-pixel shifts copy exactly, fill outside */
    jem_img_affine(dst, src, H, W, 0, 2, -3, -5);
    e = 0;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            const int sy = y - 2, sx = x + 3;
            const double want = sy >= 0 && sy < H && sx >= 0 && sx < W ? src[sy * W + sx] : -5;
            e = fmax(e, fabs(dst[y * W + x] - want));
        }
    ASSERT_MSG(e == 0, "shift by (2, -3) off by %g", e);
    /* a half-pixel shift: the mean of two neighbours */
    jem_img_affine(dst, src, H, W, 0, 0, 0.5, 0);
    ASSERT_NEAR(dst[5 * W + 10], 0.5 * (src[5 * W + 9] + src[5 * W + 10]), 1e-15);

    /* translation: a blob in the middle keeps its mass and its centroid
     * moves by exactly the severity's distance */
    const double dist[5] = {1, 2, 3, 4, 5}, ang[5] = {10, 20, 30, 45, 60};
    const int tr = jem_corrupt_find("translation"), ro = jem_corrupt_find("rotation");
    const int n = 8;
    float *x = malloc(sizeof(float) * n * H * W), *x0 = malloc(sizeof(float) * H * W);
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) {
            const double r2 = (y - 12.0) * (y - 12.0) + (xx - 15.0) * (xx - 15.0);
            x0[y * W + xx] = (float)(2 * exp(-r2 / 8) - 1);
        }
    for (int sev = 1; sev <= 5; sev++) {
        for (int i = 0; i < n; i++) memcpy(x + i * H * W, x0, sizeof(float) * H * W);
        ASSERT_OK(jem_corrupt_apply(tr, sev, x, n, 1, H, W, 3));
        for (int i = 0; i < n; i++) {
            double m = 0, cy = 0, cx = 0;
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    const double u = u_of(x[i * H * W + y * W + xx]);
                    m += u;
                    cy += u * y;
                    cx += u * xx;
                }
            cy /= m;
            cx /= m;
            ASSERT_NEAR(hypot(cy - 12, cx - 15), dist[sev - 1], 1e-3);
        }
        /* rotation: the image rotated by +-angle about the centre */
        for (int i = 0; i < n; i++) memcpy(x + i * H * W, x0, sizeof(float) * H * W);
        ASSERT_OK(jem_corrupt_apply(ro, sev, x, n, 1, H, W, 3));
        double *s0 = malloc(sizeof(double) * H * W), *rp = malloc(sizeof(double) * H * W);
        double *rm = malloc(sizeof(double) * H * W);
        for (int p = 0; p < H * W; p++) s0[p] = u_of(x0[p]);
        const double a = ang[sev - 1] * PI / 180;
        jem_img_affine(rp, s0, H, W, a, 0, 0, 0);
        jem_img_affine(rm, s0, H, W, -a, 0, 0, 0);
        int plus = 0, bad = 0;
        for (int i = 0; i < n; i++) {
            double ep = 0, em = 0;
            for (int p = 0; p < H * W; p++) {
                ep = fmax(ep, fabs(u_of(x[i * H * W + p]) - rp[p]));
                em = fmax(em, fabs(u_of(x[i * H * W + p]) - rm[p]));
            }
            plus += ep < 1e-6;
            bad += !(ep < 1e-6 || em < 1e-6);
        }
        ASSERT_MSG(bad == 0, "rotation %d: %d images are not turned by +-%g degrees", sev, bad, ang[sev - 1]);
        ASSERT_MSG(plus > 0 && plus < n, "rotation %d: all %d images turned the same way", sev, n);
        free(s0);
        free(rp);
        free(rm);
    }
    free(x);
    free(x0);

    /* area resampling: 28 -> 14 is the 2x2 means, 14 -> 28 repeats */
    double *half = malloc(sizeof(double) * 14 * 14);
    jem_img_resample_area(half, 14, 14, src, H, W);
    e = 0;
    for (int y = 0; y < 14; y++)
        for (int xx = 0; xx < 14; xx++) {
            const double want = 0.25 * (src[2 * y * W + 2 * xx] + src[2 * y * W + 2 * xx + 1] +
                                        src[(2 * y + 1) * W + 2 * xx] + src[(2 * y + 1) * W + 2 * xx + 1]);
            e = fmax(e, fabs(half[y * 14 + xx] - want));
        }
    ASSERT_MSG(e < 1e-15, "28 -> 14 off by %g", e);
    jem_img_resample_area(dst, H, W, half, 14, 14);
    e = 0;
    for (int y = 0; y < H; y++)
        for (int xx = 0; xx < W; xx++) e = fmax(e, fabs(dst[y * W + xx] - half[(y / 2) * 14 + xx / 2]));
    ASSERT_MSG(e < 1e-15, "14 -> 28 off by %g", e);
    free(half);
    /* pixelate keeps the mean (every footprint has the same area) and a
     * constant, and loses detail */
    const int px = jem_corrupt_find("pixelate");
    for (int sev = 1; sev <= 5; sev++) {
        float *im = malloc(sizeof(float) * H * W);
        for (int p = 0; p < H * W; p++) im[p] = (float)(2 * src[p] - 1);
        double m0, v0, m, v;
        stats(im, H * W, &m0, &v0);
        ASSERT_OK(jem_corrupt_apply(px, sev, im, 1, 1, H, W, 0));
        stats(im, H * W, &m, &v);
        ASSERT_NEAR(m, m0, 1e-6);
        ASSERT(v < v0);
        free(im);
    }
    free(src);
    free(dst);
}

static void test_corrupt_jpeg(void)
{
    int q[64];
    jem_jpeg_table(50, q); /* quality 50 is the standard table */
    ASSERT_EQ_INT(q[0], 16);
    ASSERT_EQ_INT(q[7], 61);
    ASSERT_EQ_INT(q[56], 72);
    ASSERT_EQ_INT(q[63], 99);
    jem_jpeg_table(100, q);
    for (int i = 0; i < 64; i++) ASSERT_EQ_INT(q[i], 1);
    jem_jpeg_table(1, q);
    ASSERT_EQ_INT(q[0], 255);
    /* the severities' qualities 80 65 58 50 40 give DC steps 6 11 13 16 20
     * (IJG scaling of 16); a constant image keeps only its DC, rounded to
     * a multiple of the step: a' = Q round(8 a / Q) / 8 for a = 255 u - 128 */
    const int dc[5] = {6, 11, 13, 16, 20}, quality[5] = {80, 65, 58, 50, 40};
    const int H = 28, W = 28, jp = jem_corrupt_find("jpeg");
    const double us[4] = {0.0, 0.3, 0.77, 1.0};
    for (int sev = 1; sev <= 5; sev++) {
        ASSERT_EQ_INT((int)jem_corrupt_param(jp, sev), quality[sev - 1]);
        for (int t = 0; t < 4; t++) {
            float *x = const_images(1, H, W, us[t]);
            ASSERT_OK(jem_corrupt_apply(jp, sev, x, 1, 1, H, W, 0));
            const double a = 255 * us[t] - 128, Q = dc[sev - 1];
            const double want = fmin(1, fmax(0, (Q * nearbyint(8 * a / Q) / 8 + 128) / 255));
            double e = 0;
            for (int p = 0; p < H * W; p++) e = fmax(e, fabs(u_of(x[p]) - want));
            ASSERT_MSG(e < 1e-6, "jpeg %d of constant %g: off by %g", sev, us[t], e);
            free(x);
        }
    }
    /* quality 100: every coefficient rounded to an integer, so each pixel
     * moves by at most 8 * 0.5 / 255 (orthonormal basis) */
    jem_rng rng;
    jem_rng_seed(&rng, 2, 0);
    double *u = malloc(sizeof(double) * H * W), *u0 = malloc(sizeof(double) * H * W);
    for (int i = 0; i < H * W; i++) u0[i] = u[i] = jem_rng_uniform_d(&rng);
    jem_img_jpeg(u, H, W, 100);
    double e = 0, moved = 0;
    for (int i = 0; i < H * W; i++) {
        e = fmax(e, fabs(u[i] - u0[i]));
        moved += u[i] != u0[i];
    }
    ASSERT_MSG(e <= 4.0 / 255 && moved > 0, "quality 100 moved pixels by up to %g", e);
    /* lower quality, larger error on noise */
    double prev = 0;
    for (int sev = 1; sev <= 5; sev++) {
        float *x = malloc(sizeof(float) * H * W);
        for (int i = 0; i < H * W; i++) x[i] = (float)(2 * u0[i] - 1);
        ASSERT_OK(jem_corrupt_apply(jp, sev, x, 1, 1, H, W, 0));
        double err = 0;
        for (int i = 0; i < H * W; i++) err += (u_of(x[i]) - u0[i]) * (u_of(x[i]) - u0[i]);
        ASSERT_MSG(err > prev, "jpeg %d: error %g not above %g", sev, err, prev);
        prev = err;
        free(x);
    }
    free(u);
    free(u0);
}

/* ================================================================= specs */

/* IDX files of n 4x4 images, image i all (i * 10) and label labels[i] */
static void write_idx(const char *prefix, int n, const uint8_t *labels)
{
    char path[600];
    snprintf(path, sizeof path, "%s-images-idx3-ubyte", prefix);
    FILE *f = fopen(path, "wb");
    const uint8_t hdr[16] = {0, 0, 8, 3, 0, 0, 0, (uint8_t)n, 0, 0, 0, 4, 0, 0, 0, 4};
    fwrite(hdr, 1, 16, f);
    for (int i = 0; i < n; i++)
        for (int p = 0; p < 16; p++) fputc(i * 10, f);
    fclose(f);
    snprintf(path, sizeof path, "%s-labels-idx1-ubyte", prefix);
    f = fopen(path, "wb");
    const uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, (uint8_t)n};
    fwrite(lh, 1, 8, f);
    fwrite(labels, 1, (size_t)n, f);
    fclose(f);
}

static void test_class_filter(void)
{
    const uint8_t labels[12] = {0, 1, 2, 3, 4, 0, 1, 2, 3, 4, 2, 2};
    write_idx(tpath("s"), 12, labels);
    char spec[700];
    jem_dataset ds;
    /* a prefix range: labels kept, 3 classes */
    snprintf(spec, sizeof spec, "idx:%s:classes=0-2", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    const int want[7] = {0, 1, 2, 5, 6, 7, 10};
    ASSERT_EQ_INT(ds.n, 8);
    ASSERT_EQ_INT(ds.n_classes, 3);
    for (int i = 0; i < 7 && i < ds.n; i++) {
        ASSERT_EQ_INT(ds.y[i], labels[want[i]]);
        ASSERT_NEAR(ds.x[i * 16 + 5], want[i] * 10 / 255.0 * 2 - 1, 1e-6);
    }
    ASSERT(!strcmp(ds.name, spec));
    jem_dataset_free(&ds);
    /* a list: labels kept, n_classes = largest + 1 */
    snprintf(spec, sizeof spec, "idx:%s:classes=1,3-4", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 6);
    ASSERT_EQ_INT(ds.n_classes, 5);
    const int wl[6] = {1, 3, 4, 1, 3, 4};
    for (int i = 0; i < 6 && i < ds.n; i++) ASSERT_EQ_INT(ds.y[i], wl[i]);
    jem_dataset_free(&ds);
    /* relabel: 1 -> 0, 3 -> 1, 4 -> 2 */
    snprintf(spec, sizeof spec, "idx:%s:classes=4,1,3:relabel", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 6);
    ASSERT_EQ_INT(ds.n_classes, 3);
    const int wr[6] = {0, 1, 2, 0, 1, 2};
    for (int i = 0; i < 6 && i < ds.n; i++) ASSERT_EQ_INT(ds.y[i], wr[i]);
    ASSERT_NEAR(ds.x[16], 3 * 10 / 255.0 * 2 - 1, 1e-6); /* image 3 */
    jem_dataset_free(&ds);
    /* overlapping ranges and repeats */
    snprintf(spec, sizeof spec, "idx:%s:classes=2,2,1-2", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 6);
    jem_dataset_free(&ds);
    /* inside other specs */
    snprintf(spec, sizeof spec, "corrupt:idx:%s:classes=2:contrast:5", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 4);
    for (int i = 0; i < ds.n; i++) ASSERT_EQ_INT(ds.y[i], 2);
    jem_dataset_free(&ds);
    snprintf(spec, sizeof spec, "interp:idx:%s:classes=0:5", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 5);
    /* midpoints of images 0 and 5 */
    ASSERT_NEAR(ds.x[0], 0.5 * (-1 + (50 / 255.0 * 2 - 1)), 1e-6);
    jem_dataset_free(&ds);
    snprintf(spec, sizeof spec, "interp:idx:%s:classes=0", tpath("s"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "unlabelled");

    const char *bad[][2] = {
        {"classes=", "empty class list"},
        {"classes=a", "bad class list"},
        {"classes=1-", "bad class list"},
        {"classes=-1", "bad class list"},
        {"classes=3-1", "empty range"},
        {"classes=1,,2", "bad class list"},
        {"classes=1;2", "bad class list"},
        {"classes=1,", "bad class list"},
        {"classes=99999999", "too large"},
        {"classes=5", "class 5 is not in the set"},
        {"classes=0-7", "class 5 is not in the set"},
        {"classes=1:relabel:relabel", "no such file"},
        {"classes=1:relabelx", "no such file"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(spec, sizeof spec, "idx:%s:%s", tpath("s"), bad[i][0]);
        jem_status s = jem_dataset_open(spec, &ds);
        ASSERT_MSG(s != JEM_OK, "%s was accepted", spec);
        if (s == JEM_OK) jem_dataset_free(&ds);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i][1]);
    }
    ASSERT_ERR(jem_dataset_open("classes=0-5", &ds), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_open(":classes=0-5", &ds), JEM_ERR_ARG);

    /* the function: a failure leaves the set as it was */
    snprintf(spec, sizeof spec, "idx:%s", tpath("s"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_ERR(jem_dataset_filter_classes(&ds, "7", 0), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_filter_classes(&ds, "x", 0), JEM_ERR_ARG);
    ASSERT_EQ_INT(ds.n, 12);
    ASSERT_EQ_INT(ds.n_classes, 5);
    ASSERT_OK(jem_dataset_filter_classes(&ds, "4", 1));
    ASSERT_EQ_INT(ds.n, 2);
    ASSERT_EQ_INT(ds.y[0], 0);
    ASSERT_EQ_INT(ds.n_classes, 1);
    ASSERT_ERR(jem_dataset_filter_classes(&ds, "1", 0), JEM_ERR_ARG); /* none left */
    jem_dataset_free(&ds);
}

static void test_corrupt_spec(void)
{
    const uint8_t labels[6] = {0, 1, 2, 0, 1, 2};
    write_idx(tpath("c"), 6, labels);
    char spec[700];
    jem_dataset a, b;
    snprintf(spec, sizeof spec, "idx:%s", tpath("c"));
    ASSERT_OK(jem_dataset_open(spec, &b));
    const int k = jem_corrupt_find("gaussian_noise");
    ASSERT_OK(jem_corrupt_apply(k, 3, b.x, b.n, b.c, b.h, b.w, 9));
    snprintf(spec, sizeof spec, "corrupt:idx:%s:gaussian_noise:3:seed=9", tpath("c"));
    ASSERT_OK(jem_dataset_open(spec, &a));
    ASSERT_EQ_INT(a.n, 6);
    ASSERT_EQ_INT(a.n_classes, 3);
    ASSERT(!memcmp(a.y, b.y, sizeof(int32_t) * 6));
    ASSERT(!memcmp(a.x, b.x, sizeof(float) * 6 * 16));
    ASSERT(!strcmp(a.name, spec));
    jem_dataset_free(&a);
    /* seed 0 by default, and the same twice */
    snprintf(spec, sizeof spec, "corrupt:idx:%s:gaussian_noise:3", tpath("c"));
    ASSERT_OK(jem_dataset_open(spec, &a));
    ASSERT(memcmp(a.x, b.x, sizeof(float) * 6 * 16));
    jem_dataset c;
    ASSERT_OK(jem_dataset_open(spec, &c));
    ASSERT(!memcmp(a.x, c.x, sizeof(float) * 6 * 16));
    jem_dataset_free(&a);
    jem_dataset_free(&b);
    jem_dataset_free(&c);
    /* corruption of a corruption */
    snprintf(spec, sizeof spec, "corrupt:corrupt:idx:%s:brightness:1:brightness:1", tpath("c"));
    ASSERT_OK(jem_dataset_open(spec, &a));
    ASSERT_NEAR(u_of(a.x[0]), 0.1, 1e-6);
    jem_dataset_free(&a);
    ASSERT_OK(jem_dataset_open("corrupt:noise:uniform:5:1x8x8:rotation:2", &a));
    ASSERT_EQ_INT(a.n, 5);
    jem_dataset_free(&a);

    const char *bad[][2] = {
        {"fog:3", "unknown corruption 'fog'"},
        {"jpeg:0", "severity '0'"},
        {"jpeg:6", "severity '6'"},
        {"jpeg:x", "severity 'x'"},
        {"jpeg:33", "severity '33'"},
        {"jpeg", "severity"},
        {"jpeg:3:seed=", "cannot parse 'seed='"},
        {"jpeg:3:seed=-1", "cannot parse"},
        {"jpeg:3:seed=99999999999999999999999", "cannot parse"},
        {"jpeg:3:4", "unknown corruption '3'"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof *bad; i++) {
        snprintf(spec, sizeof spec, "corrupt:idx:%s:%s", tpath("c"), bad[i][0]);
        jem_status s = jem_dataset_open(spec, &a);
        ASSERT_MSG(s == JEM_ERR_ARG, "%s: %s", spec, jem_strerror(s));
        if (s == JEM_OK) jem_dataset_free(&a);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i][1]);
    }
    ASSERT_ERR(jem_dataset_open("corrupt:", &a), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_open("corrupt:jpeg:3", &a), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_open("corrupt::jpeg:3", &a), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_open("corrupt:bogus:jpeg:3", &a), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "unknown data set spec");
    ASSERT_ERR(jem_dataset_open("corrupt:corrupt:corrupt:corrupt:corrupt:corrupt:noise:uniform:1:2x2:jpeg:1:jpeg:1:"
                                "jpeg:1:jpeg:1:jpeg:1:jpeg:1",
                                &a),
               JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "nested too deeply");
}

int main(void)
{
    TEST_MAIN_BEGIN("test_ood");
    snprintf(tmpdir, sizeof tmpdir, "/tmp/jem-test-ood-XXXXXX");
    if (!mkdtemp(tmpdir)) {
        perror("mkdtemp");
        return 1;
    }
    test_layer_names();
    test_features();
    test_maha_closed_form();
    test_maha_gaussian();
    test_maha_singular();
    test_knn_closed_form();
    test_knn_random();
    test_threshold();
    test_odin();
    test_detector_files();
    test_corrupt_noise();
    test_corrupt_deterministic();
    test_corrupt_photometric();
    test_corrupt_blur();
    test_corrupt_geometric();
    test_corrupt_jpeg();
    test_class_filter();
    test_corrupt_spec();
    nftw(tmpdir, rm_entry, 16, FTW_DEPTH | FTW_PHYS);
    return t_finish();
}

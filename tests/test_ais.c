/* Annealed importance sampling: log Z of Gaussians (on the whole space and
 * truncated to a box) against the closed form, runs of different length,
 * the base distributions' normalisation and gradient, the schedules, bits
 * per dimension, and bad input. */
#include "jem.h"
#include "test.h"

#include <math.h>

/* log p~(x) = -1/2 sum_i ((x_i - m_i) / s_i)^2 */
typedef struct {
    int D;
    const double *m, *s;
} diag_gauss;

static jem_status dg_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    const diag_gauss *g = ctx;
    if (y) return jem_fail(JEM_ERR_ARG, "AIS passed labels");
    for (int b = 0; b < B; b++) {
        double q = 0;
        for (int i = 0; i < g->D; i++) {
            double z = (x[(size_t)b * g->D + i] - g->m[i]) / g->s[i];
            q += z * z;
            if (grad) grad[(size_t)b * g->D + i] = (float)(-z / g->s[i]);
        }
        logp[b] = (float)(-0.5 * q);
    }
    return JEM_OK;
}

static double phi_cdf(double z) { return 0.5 * erfc(-z / sqrt(2.0)); }

/* log Z of the Gaussian on R^D, or on [lo, hi]^D */
static double gauss_logz(const diag_gauss *g, int bounded, double lo, double hi)
{
    double l = 0;
    for (int i = 0; i < g->D; i++) {
        l += log(sqrt(2 * M_PI) * g->s[i]);
        if (bounded) l += log(phi_cdf((hi - g->m[i]) / g->s[i]) - phi_cdf((lo - g->m[i]) / g->s[i]));
    }
    return l;
}

static void check_gaussian_logz(void)
{
    enum { D = 10 };
    double m[D], s[D];
    for (int i = 0; i < D; i++) {
        m[i] = 0.3 * (i - 4.5);
        s[i] = 0.5 * pow(4.0, i / (D - 1.0)); /* 0.5 .. 2 */
    }
    diag_gauss g = {D, m, s};
    const double want = gauss_logz(&g, 0, 0, 0);
    /* base N(0, 1.5^2) on R^D */
    float mu[D] = {0}, sd[D];
    for (int i = 0; i < D; i++) sd[i] = 1.5f;
    jem_base q = {JEM_BASE_GAUSS, D, 1, mu, sd, 1e-3f, 0, -1, 1};
    jem_ais_cfg c;
    jem_ais_defaults(&c);
    c.chains = 64;
    c.T = 200;
    c.leapfrog = 5;
    c.step_size = 0.5f;
    c.pilot_chains = 8;
    jem_ais_result r;
    double logw[64];
    float xs[64 * D];
    ASSERT_OK(jem_ais_run(dg_energy, &g, &q, &c, logw, xs, &r));
    if (getenv("JEM_TEST_VERBOSE"))
        fprintf(stderr,
                "Gaussian, T %d: log Z %.4f +- %.4f (closed form %.4f), acceptance %.3f, ESS %.1f, eps %.3g..%.3g\n",
                c.T, r.logz, r.logz_se, want, r.accept, r.ess, r.step_min, r.step_max);
    ASSERT_MSG(fabs(r.logz - want) < 4 * r.logz_se + 0.02, "Gaussian: log Z %.4f +- %.4f, closed form %.4f", r.logz,
               r.logz_se, want);
    ASSERT_MSG(r.logz_se > 0 && r.logz_se < 0.1, "Gaussian: standard error %.4f", r.logz_se);
    ASSERT(r.ess > 1 && r.ess <= 64);
    ASSERT(r.T == c.T && r.chains == 64);
    ASSERT_MSG(r.accept > 0.4 && r.accept < 0.95, "acceptance %.3f after the pilot", r.accept);
    ASSERT(r.step_min > 0 && r.step_min <= r.step_max);
    ASSERT_EQ_INT(r.grad_evals, (long)(64 + 8) * (1 + (long)c.T * 5));
    /* the reported log Z is the log-mean-exp of the weights */
    double mx = -INFINITY, sw = 0;
    for (int i = 0; i < 64; i++) mx = fmax(mx, logw[i]);
    for (int i = 0; i < 64; i++) sw += exp(logw[i] - mx);
    ASSERT_NEAR(r.logz, mx + log(sw / 64), 1e-12);
    /* the final states are draws from the target: their mean */
    double mean0 = 0;
    for (int b = 0; b < 64; b++) mean0 += xs[b * D + D - 1];
    mean0 /= 64;
    ASSERT_MSG(fabs(mean0 - m[D - 1]) < 5 * s[D - 1] / 8, "final states' mean %.3f vs %.3f", mean0, m[D - 1]);

    /* a short and a long run: both near the truth, the long one closer in
     * standard error */
    jem_ais_cfg cs = c;
    cs.T = 10;
    cs.seed = 2;
    jem_ais_result rs;
    ASSERT_OK(jem_ais_run(dg_energy, &g, &q, &cs, NULL, NULL, &rs));
    if (getenv("JEM_TEST_VERBOSE")) fprintf(stderr, "Gaussian, T 10: log Z %.4f +- %.4f\n", rs.logz, rs.logz_se);
    ASSERT_MSG(rs.logz_se > r.logz_se, "standard errors: T = 10 %.4f, T = %d %.4f", rs.logz_se, c.T, r.logz_se);
    ASSERT_MSG(fabs(rs.logz - want) < 4 * rs.logz_se + 0.05, "T = 10: log Z %.4f +- %.4f vs %.4f", rs.logz, rs.logz_se,
               want);
    /* MALA transitions (leapfrog 1), a linear schedule, no pilot */
    jem_ais_cfg cm = c;
    cm.leapfrog = 1;
    cm.schedule = JEM_AIS_LINEAR;
    cm.pilot_chains = 0;
    cm.step_size = 0.4f;
    cm.T = 300;
    cm.batch = 24;
    ASSERT_OK(jem_ais_run(dg_energy, &g, &q, &cm, NULL, NULL, &r));
    if (getenv("JEM_TEST_VERBOSE"))
        fprintf(stderr, "Gaussian, MALA: log Z %.4f +- %.4f (closed form %.4f), acceptance %.3f\n", r.logz, r.logz_se,
                want, r.accept);
    ASSERT_MSG(fabs(r.logz - want) < 4 * r.logz_se + 0.05, "MALA, linear: log Z %.4f +- %.4f vs %.4f", r.logz,
               r.logz_se, want);
    ASSERT(r.step_min == 0.4f && r.step_max == 0.4f);
}

/* the target truncated to [-1, 1]^D from a uniform base (walls reflect) */
static void check_box_logz(void)
{
    enum { D = 6 };
    double m[D], s[D];
    for (int i = 0; i < D; i++) {
        m[i] = -0.8 + 0.35 * i; /* some means near a wall, one outside */
        s[i] = 0.3 + 0.1 * i;
    }
    diag_gauss g = {D, m, s};
    const double want = gauss_logz(&g, 1, -1, 1);
    jem_base q = {JEM_BASE_UNIFORM, D, 0, NULL, NULL, 0, 1, -1, 1};
    jem_ais_cfg c;
    jem_ais_defaults(&c);
    c.chains = 64;
    c.T = 200;
    c.leapfrog = 4;
    c.step_size = 0.3f;
    c.pilot_chains = 8;
    jem_ais_result r;
    ASSERT_OK(jem_ais_run(dg_energy, &g, &q, &c, NULL, NULL, &r));
    if (getenv("JEM_TEST_VERBOSE"))
        fprintf(stderr, "box, uniform base: log Z %.4f +- %.4f (closed form %.4f), acceptance %.3f\n", r.logz,
                r.logz_se, want, r.accept);
    ASSERT_MSG(fabs(r.logz - want) < 4 * r.logz_se + 0.02, "box: log Z %.4f +- %.4f, closed form %.4f", r.logz,
               r.logz_se, want);
    /* from a truncated Gaussian base */
    float mu[D], sd[D];
    for (int i = 0; i < D; i++) {
        mu[i] = 0.1f;
        sd[i] = 0.6f;
    }
    jem_base qg = {JEM_BASE_GAUSS, D, 1, mu, sd, 0.05f, 1, -1, 1};
    c.seed = 5;
    ASSERT_OK(jem_ais_run(dg_energy, &g, &qg, &c, NULL, NULL, &r));
    if (getenv("JEM_TEST_VERBOSE"))
        fprintf(stderr, "box, Gaussian base: log Z %.4f +- %.4f (closed form %.4f)\n", r.logz, r.logz_se, want);
    ASSERT_MSG(fabs(r.logz - want) < 4 * r.logz_se + 0.02, "box, Gaussian base: log Z %.4f +- %.4f vs %.4f", r.logz,
               r.logz_se, want);
    /* the same seed gives the same figures with any thread count */
    int th = jem_get_threads();
    jem_ais_result r1, r2;
    double w1[64], w2[64];
    c.T = 20;
    jem_set_threads(1);
    ASSERT_OK(jem_ais_run(dg_energy, &g, &qg, &c, w1, NULL, &r1));
    jem_set_threads(2);
    ASSERT_OK(jem_ais_run(dg_energy, &g, &qg, &c, w2, NULL, &r2));
    jem_set_threads(th);
    ASSERT(memcmp(w1, w2, sizeof w1) == 0 && r1.logz == r2.logz);
}

/* a 2-D mixture of two truncated Gaussians integrates to 1 over the box;
 * the gradient matches finite differences; draws stay in the box and
 * follow the density */
static void check_base(void)
{
    const float mu[4] = {-0.7f, 0.2f, 0.5f, -1.0f}, sd[4] = {0.3f, 0.5f, 0.2f, 0.0f};
    jem_base q = {JEM_BASE_GAUSS, 2, 2, mu, sd, 0.15f, 1, -1, 1};
    const int G = 400;
    double sum = 0, mean0 = 0;
    int ok = 1;
    float *pts = malloc(sizeof(float) * 2 * G);
    double *lq = malloc(sizeof(double) * G);
    for (int i = 0; i < G; i++) {
        for (int j = 0; j < G; j++) {
            pts[2 * j] = (float)(-1 + (i + 0.5) * 2.0 / G);
            pts[2 * j + 1] = (float)(-1 + (j + 0.5) * 2.0 / G);
        }
        ok &= jem_base_logpdf(&q, pts, G, lq, NULL) == JEM_OK;
        for (int j = 0; j < G; j++) {
            double p = exp(lq[j]) * (2.0 / G) * (2.0 / G);
            sum += p;
            mean0 += p * pts[2 * j];
        }
    }
    ASSERT(ok);
    ASSERT_MSG(fabs(sum - 1) < 2e-3, "truncated mixture integrates to %.5f over the box", sum);
    /* draws: inside, with the density's mean */
    jem_rng r;
    jem_rng_seed(&r, 3, 0);
    const int n = 40000;
    double dm = 0;
    int inside = 1;
    for (int k = 0; k < n; k++) {
        float x[2];
        jem_base_sample(&q, x, &r);
        inside &= x[0] >= -1 && x[0] <= 1 && x[1] >= -1 && x[1] <= 1;
        dm += x[0];
    }
    ASSERT(inside);
    ASSERT_MSG(fabs(dm / n - mean0) < 0.01, "draws' mean %.4f vs the density's %.4f", dm / n, mean0);
    /* a component centred on the wall, with a sd below the floor */
    float x[2] = {0.1f, -0.3f}, gr[2];
    double l0;
    ASSERT_OK(jem_base_logpdf(&q, x, 1, &l0, gr));
    for (int d = 0; d < 2; d++) {
        float keep = x[d];
        double lp, lm;
        x[d] = keep + 1e-3f;
        jem_base_logpdf(&q, x, 1, &lp, NULL);
        x[d] = keep - 1e-3f;
        jem_base_logpdf(&q, x, 1, &lm, NULL);
        x[d] = keep;
        double fd = (lp - lm) / (2e-3);
        ASSERT_MSG(fabs(fd - gr[d]) < 1e-2 * (1 + fabs(fd)), "base gradient[%d] %.5f vs finite differences %.5f", d,
                   gr[d], fd);
    }
    /* outside the box: -inf */
    float out[2] = {1.5f, 0};
    ASSERT_OK(jem_base_logpdf(&q, out, 1, &l0, NULL));
    ASSERT(isinf(l0) && l0 < 0);
    /* uniform: -D log(hi - lo) */
    jem_base u = {JEM_BASE_UNIFORM, 2, 0, NULL, NULL, 0, 0, -1, 1};
    ASSERT_OK(jem_base_logpdf(&u, x, 1, &l0, gr));
    ASSERT_NEAR(l0, -2 * log(2.0), 1e-12);
    ASSERT(gr[0] == 0 && gr[1] == 0);
    /* from a fitted replay buffer: its classes' means and sds */
    jem_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 400;
    ds.c = 1;
    ds.h = 1;
    ds.w = 2;
    ds.n_classes = 2;
    ds.x = malloc(sizeof(float) * 800);
    ds.y = malloc(sizeof(int32_t) * 400);
    for (int i = 0; i < 400; i++) {
        ds.y[i] = i % 2;
        ds.x[2 * i] = (float)((i % 2 ? 0.5 : -0.5) + 0.2 * jem_rng_normal_d(&r));
        ds.x[2 * i + 1] = (float)(0.1 * jem_rng_normal_d(&r));
    }
    jem_buffer buf;
    ASSERT_OK(jem_buffer_create(&buf, 10, 1, 1, 2, 2, JEM_INIT_INFORMATIVE, 0, 0));
    jem_base qb;
    ASSERT_ERR(jem_base_from_buffer(&qb, &buf, 0.05f), JEM_ERR_ARG);
    ASSERT_OK(jem_buffer_fit(&buf, &ds, 0));
    ASSERT_OK(jem_base_from_buffer(&qb, &buf, 0.05f));
    ASSERT(qb.kind == JEM_BASE_GAUSS && qb.K == 2 && qb.D == 2 && qb.bounded && qb.lo == -1 && qb.hi == 1);
    ASSERT_NEAR(qb.mu[2], 0.5, 0.05);
    ASSERT_NEAR(qb.sd[2], 0.2, 0.03);
    ASSERT_OK(jem_base_logpdf(&qb, x, 1, &l0, NULL));
    ASSERT(isfinite(l0));
    jem_buffer_free(&buf);
    jem_dataset_free(&ds);
    /* bad bases */
    jem_base b1 = q;
    b1.sd_min = 0;
    ASSERT_ERR(jem_base_logpdf(&b1, x, 1, &l0, NULL), JEM_ERR_ARG);
    jem_base b2 = u;
    b2.lo = 1;
    ASSERT_ERR(jem_base_logpdf(&b2, x, 1, &l0, NULL), JEM_ERR_ARG);
    const float bad_mu[4] = {0, NAN, 0, 0};
    jem_base b3 = q;
    b3.mu = bad_mu;
    ASSERT_ERR(jem_base_logpdf(&b3, x, 1, &l0, NULL), JEM_ERR_NONFINITE);
    free(pts);
    free(lq);
}

static void check_schedule_and_bits(void)
{
    jem_ais_cfg c;
    jem_ais_defaults(&c);
    c.T = 50;
    double b[51];
    ASSERT_OK(jem_ais_betas(&c, b));
    int mono = 1;
    for (int t = 1; t <= 50; t++) mono &= b[t] > b[t - 1];
    ASSERT(mono && b[0] == 0 && b[50] == 1);
    ASSERT_NEAR(b[25], 0.5, 1e-12); /* the sigmoid is symmetric */
    ASSERT_NEAR(b[10] + b[40], 1.0, 1e-12);
    ASSERT(b[1] < 1.0 / 50); /* slower than linear at the ends */
    c.schedule = JEM_AIS_LINEAR;
    ASSERT_OK(jem_ais_betas(&c, b));
    ASSERT_NEAR(b[17], 17.0 / 50, 1e-15);
    /* bits per dimension: 3 bits of continuous density; 8-bit data on
     * [-1, 1] adds log2(256 / 2) = 7 */
    ASSERT_NEAR(jem_bits_per_dim(-784 * 3 * log(2.0), 784, 0, -1, 1), 3.0, 1e-12);
    ASSERT_NEAR(jem_bits_per_dim(-784 * 3 * log(2.0), 784, 8, -1, 1), 10.0, 1e-12);
    ASSERT_NEAR(jem_bits_per_dim(0, 10, 8, 0, 256), 0.0, 1e-12);
    /* bad configurations */
    jem_ais_defaults(&c);
    c.T = 0;
    ASSERT_ERR(jem_ais_betas(&c, b), JEM_ERR_ARG);
    jem_ais_defaults(&c);
    c.delta = -1;
    ASSERT_ERR(jem_ais_betas(&c, b), JEM_ERR_ARG);
}

static jem_status nan_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    (void)ctx;
    (void)y;
    (void)x;
    for (int b = 0; b < B; b++) logp[b] = NAN;
    if (grad) memset(grad, 0, sizeof(float) * B);
    return JEM_OK;
}

static jem_status stop_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    volatile int *stop = ctx;
    *stop = 1;
    (void)y;
    for (int b = 0; b < B; b++) {
        logp[b] = -x[b] * x[b];
        if (grad) grad[b] = -2 * x[b];
    }
    return JEM_OK;
}

static void progress(void *ud, int done, int total)
{
    int *calls = ud;
    if (done < 0 || done > total) calls[1]++;
    calls[0]++;
}

static void check_errors(void)
{
    jem_base u = {JEM_BASE_UNIFORM, 1, 0, NULL, NULL, 0, 1, -1, 1};
    jem_ais_cfg c;
    jem_ais_defaults(&c);
    c.chains = 4;
    c.T = 10;
    c.pilot_chains = 0;
    jem_ais_result r;
    ASSERT_ERR(jem_ais_run(nan_energy, NULL, &u, &c, NULL, NULL, &r), JEM_ERR_NONFINITE);
    ASSERT_STR_CONTAINS(jem_last_error(), "chain 0");
    volatile int stop = 0;
    c.stop = &stop;
    ASSERT_ERR(jem_ais_run(stop_energy, (void *)&stop, &u, &c, NULL, NULL, &r), JEM_ERR_INTERRUPTED);
    c.stop = NULL;
    int calls[2] = {0, 0};
    c.progress = progress;
    c.progress_ud = calls;
    c.T = 64;
    ASSERT_OK(jem_ais_run(stop_energy, (void *)&stop, &u, &c, NULL, NULL, &r));
    ASSERT(calls[0] >= 4 && calls[1] == 0);
    c.chains = 0;
    ASSERT_ERR(jem_ais_run(stop_energy, (void *)&stop, &u, &c, NULL, NULL, &r), JEM_ERR_ARG);
    c.chains = 4;
    c.target_accept = 1.5f;
    ASSERT_ERR(jem_ais_run(stop_energy, (void *)&stop, &u, &c, NULL, NULL, &r), JEM_ERR_ARG);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_ais");
    check_gaussian_logz();
    check_box_logz();
    check_base();
    check_schedule_and_bits();
    check_errors();
    return t_finish();
}

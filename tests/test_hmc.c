/* Hamiltonian Monte Carlo: invariance of a known Gaussian, detailed balance
 * and stationarity on 1-D targets with closed-form distributions (one with
 * reflecting walls), step-size adaptation, reproducibility, and the SGLD
 * energy trace. */
#include "jem.h"
#include "test.h"

#include <math.h>

/* log p~(x) = -1/2 (x - mu)^T P (x - mu), P the precision matrix (D x D) */
typedef struct {
    int D;
    const double *mu, *P;
    long calls;
} gauss;

static jem_status gauss_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    (void)y;
    gauss *g = ctx;
    const int D = g->D;
    g->calls++;
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * D;
        double q = 0;
        for (int i = 0; i < D; i++) {
            double gi = 0;
            for (int j = 0; j < D; j++) gi -= g->P[i * D + j] * (xb[j] - g->mu[j]);
            if (grad) grad[(size_t)b * D + i] = (float)gi;
            q += (xb[i] - g->mu[i]) * gi;
        }
        logp[b] = (float)(0.5 * q);
    }
    return JEM_OK;
}

static void moments(const float *x, int B, int D, double *mean, double *cov)
{
    for (int i = 0; i < D; i++) {
        mean[i] = 0;
        for (int b = 0; b < B; b++) mean[i] += x[(size_t)b * D + i];
        mean[i] /= B;
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double s = 0;
            for (int b = 0; b < B; b++) s += (x[(size_t)b * D + i] - mean[i]) * (x[(size_t)b * D + j] - mean[j]);
            cov[i * D + j] = s / (B - 1);
        }
}

/* Sigma = [[1, 0.6, 0], [0.6, 0.5, 0], [0, 0, 0.25]], mean (0.5, -1, 2) */
static const double SIG[9] = {1.0, 0.6, 0, 0.6, 0.5, 0, 0, 0, 0.25};
static const double MU3[3] = {0.5, -1.0, 2.0};

static void check_moments(const char *what, const float *x, int B, double tol)
{
    double m[3], cv[9];
    moments(x, B, 3, m, cv);
    for (int i = 0; i < 3; i++) {
        double se = sqrt(SIG[i * 3 + i] / B);
        ASSERT_MSG(fabs(m[i] - MU3[i]) < 5 * se, "%s: mean[%d] %.4f vs %.4f (se %.4f)", what, i, m[i], MU3[i], se);
    }
    for (int i = 0; i < 3; i++)
        for (int j = 0; j < 3; j++) {
            double want = SIG[i * 3 + j];
            /* se of a sample covariance: sqrt((S_ii S_jj + S_ij^2) / B) */
            double se = sqrt((SIG[i * 3 + i] * SIG[j * 3 + j] + want * want) / B);
            ASSERT_MSG(fabs(cv[i * 3 + j] - want) < tol * se, "%s: cov[%d,%d] %.4f vs %.4f (se %.4f)", what, i, j,
                       cv[i * 3 + j], want, se);
        }
}

/* HMC started from exact draws keeps the Gaussian; from an overdispersed
 * start, with adaptation, it reaches it */
static void check_gaussian(void)
{
    const double det = 1.0 * 0.5 - 0.36;
    const double P[9] = {0.5 / det, -0.6 / det, 0, -0.6 / det, 1.0 / det, 0, 0, 0, 4.0};
    gauss g = {3, MU3, P, 0};
    const int B = t_quick() ? 1000 : 4000;
    float *x = malloc(sizeof(float) * B * 3);
    jem_rng r;
    jem_rng_seed(&r, 31, 0);
    /* exact draws: x = mu + L z, L the Cholesky factor of Sigma */
    const double l21 = 0.6, l22 = sqrt(0.5 - 0.36);
    for (int b = 0; b < B; b++) {
        double z0 = jem_rng_normal_d(&r), z1 = jem_rng_normal_d(&r), z2 = jem_rng_normal_d(&r);
        x[b * 3 + 0] = (float)(MU3[0] + z0);
        x[b * 3 + 1] = (float)(MU3[1] + l21 * z0 + l22 * z1);
        x[b * 3 + 2] = (float)(MU3[2] + 0.5 * z2);
    }
    check_moments("exact draws", x, B, 5);
    jem_hmc_cfg c;
    jem_hmc_defaults(&c);
    /* a long step for the narrowest direction (sd 0.38): acceptance well
     * below 1, so the Metropolis correction matters */
    c.warmup = 0;
    c.steps = 10;
    c.leapfrog = 4;
    c.step_size = 0.55f;
    jem_hmc_stats st;
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, x, B, 3, NULL, NULL, &c, 7, 0, NULL, NULL, &st));
    check_moments("HMC from exact draws", x, B, 5);
    ASSERT_MSG(st.accept > 0.3 && st.accept < 0.95, "acceptance %.3f at a long step", st.accept);
    ASSERT(fabs(st.accept_rate - st.accept) < 0.05);
    /* at stationarity E[exp(-dH)] = 1, so the mean energy error is >= 0 */
    ASSERT_MSG(st.dh_mean > 0 && st.dh_abs >= st.dh_mean && st.dh_max >= st.dh_abs, "dH mean %.3g abs %.3g max %.3g",
               st.dh_mean, st.dh_abs, st.dh_max);
    ASSERT_EQ_INT(st.divergent, 0);
    ASSERT_EQ_INT(st.grad_evals, 1 + 10 * 4);
    ASSERT_EQ_INT(g.calls, 1 + 10 * 4);
    ASSERT_NEAR(st.step_size, 0.55, 1e-6);
    /* overdispersed start, adapted step */
    for (int i = 0; i < B * 3; i++) x[i] = 4.0f * jem_rng_normal(&r);
    c.warmup = 150;
    c.steps = 50;
    c.step_size = 0.01f;
    c.leapfrog = 8;
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, x, B, 3, NULL, NULL, &c, 8, 0, NULL, NULL, &st));
    check_moments("HMC from an overdispersed start", x, B, 5);
    free(x);
}

/* ---------------------------------------------- 1-D targets, closed form */

/* p(x) = 0.3 N(-1, 0.4^2) + 0.7 N(1.5, 0.6^2) */
static const double MIXW[2] = {0.3, 0.7}, MIXM[2] = {-1.0, 1.5}, MIXS[2] = {0.4, 0.6};

static jem_status mix_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    (void)ctx;
    (void)y;
    for (int b = 0; b < B; b++) {
        double l[2], mx = -INFINITY;
        for (int k = 0; k < 2; k++) {
            double z = (x[b] - MIXM[k]) / MIXS[k];
            l[k] = log(MIXW[k] / MIXS[k]) - 0.5 * z * z;
            mx = fmax(mx, l[k]);
        }
        double s = exp(l[0] - mx) + exp(l[1] - mx), g = 0;
        for (int k = 0; k < 2; k++) g += exp(l[k] - mx) / s * -(x[b] - MIXM[k]) / (MIXS[k] * MIXS[k]);
        logp[b] = (float)(mx + log(s));
        if (grad) grad[b] = (float)g;
    }
    return JEM_OK;
}

static double mix_cdf(double x)
{
    double c = 0;
    for (int k = 0; k < 2; k++) c += MIXW[k] * 0.5 * erfc(-(x - MIXM[k]) / (MIXS[k] * sqrt(2.0)));
    return c;
}

static double mix_draw(jem_rng *r)
{
    int k = jem_rng_uniform_d(r) < MIXW[0] ? 0 : 1;
    return MIXM[k] + MIXS[k] * jem_rng_normal_d(r);
}

/* p(x) proportional to exp(3 x) on [-1, 1] */
static jem_status exp_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    (void)ctx;
    (void)y;
    for (int b = 0; b < B; b++) {
        logp[b] = 3.0f * x[b];
        if (grad) grad[b] = 3.0f;
    }
    return JEM_OK;
}

static double exp_cdf(double x)
{
    x = x < -1 ? -1 : x > 1 ? 1 : x;
    return (exp(3 * x) - exp(-3.0)) / (exp(3.0) - exp(-3.0));
}

static double exp_draw(jem_rng *r) { return log(exp(-3.0) + jem_rng_uniform_d(r) * (exp(3.0) - exp(-3.0))) / 3.0; }

/* the upper 0.1 % point of chi-square with k degrees of freedom
 * (Wilson-Hilferty) */
static double chi2_crit(int k)
{
    const double z = 3.0902;
    double a = 2.0 / (9.0 * k);
    return k * pow(1 - a + z * sqrt(a), 3);
}

typedef struct {
    const char *name;
    jem_energy_fn f;
    double (*cdf)(double);
    double (*draw)(jem_rng *);
    double lo, hi; /* histogram range (the box when bounded) */
    int bounded;
    float eps;
    int L;
} target1;

/* bins [lo, hi] cut in nb equal parts; below lo / above hi go to the end
 * bins; probability of bin i under the target */
static int bin_of(const target1 *t, double x, int nb)
{
    int i = (int)floor((x - t->lo) / (t->hi - t->lo) * nb);
    return i < 0 ? 0 : i >= nb ? nb - 1 : i;
}

static double bin_prob(const target1 *t, int i, int nb)
{
    double a = t->lo + (t->hi - t->lo) * i / nb, b = t->lo + (t->hi - t->lo) * (i + 1) / nb;
    double ca = i == 0 ? 0 : t->cdf(a), cb = i == nb - 1 ? 1 : t->cdf(b);
    return cb - ca;
}

/* Chains start from exact draws of the target. One transition: the pairs
 * (bin before, bin after) must be symmetric (detailed balance: Bowker's
 * test). After five more: the histogram must match the target (chi-square).
 * Returns the chi-square statistic over its critical value. */
static double check_balance(const target1 *t, float temperature, int expect_pass)
{
    const int B = t_quick() ? 40000 : 100000, NB = 10, NH = 20;
    float *x = malloc(sizeof(float) * B), *x0 = malloc(sizeof(float) * B);
    jem_rng r;
    jem_rng_seed(&r, 77, 0);
    for (int b = 0; b < B; b++) x0[b] = x[b] = (float)t->draw(&r);
    jem_hmc_cfg c;
    jem_hmc_defaults(&c);
    c.warmup = 0;
    c.steps = 1;
    c.leapfrog = t->L;
    c.step_size = t->eps;
    c.bounded = t->bounded;
    c.lo = (float)t->lo;
    c.hi = (float)t->hi;
    c.temperature = temperature;
    jem_hmc_stats st;
    ASSERT_OK(jem_hmc_run(t->f, NULL, x, B, 1, NULL, NULL, &c, 3, 0, NULL, NULL, &st));
    double n[10][10] = {{0}};
    long moved = 0;
    for (int b = 0; b < B; b++) {
        n[bin_of(t, x0[b], NB)][bin_of(t, x[b], NB)] += 1;
        moved += x[b] != x0[b];
    }
    double bowker = 0;
    int df = 0;
    for (int i = 0; i < NB; i++)
        for (int j = i + 1; j < NB; j++)
            if (n[i][j] + n[j][i] > 0) {
                bowker += (n[i][j] - n[j][i]) * (n[i][j] - n[j][i]) / (n[i][j] + n[j][i]);
                df++;
            }
    if (expect_pass) {
        ASSERT_MSG(df >= 10 && bowker < chi2_crit(df), "%s: detailed balance, Bowker %.1f on %d df (limit %.1f)",
                   t->name, bowker, df, chi2_crit(df));
        ASSERT_MSG(moved > B / 4 && st.accept < 0.98, "%s: %ld of %d chains moved, acceptance %.3f", t->name, moved, B,
                   st.accept);
    }
    c.steps = 5;
    ASSERT_OK(jem_hmc_run(t->f, NULL, x, B, 1, NULL, NULL, &c, 4, 0, NULL, NULL, &st));
    double h[20] = {0}, chi = 0;
    int inside = 1;
    for (int b = 0; b < B; b++) {
        h[bin_of(t, x[b], NH)] += 1;
        if (t->bounded) inside &= x[b] >= t->lo && x[b] <= t->hi;
    }
    for (int i = 0; i < NH; i++) {
        double e = B * bin_prob(t, i, NH);
        chi += (h[i] - e) * (h[i] - e) / e;
    }
    if (t->bounded) ASSERT_MSG(inside, "%s: a chain left the box", t->name);
    if (expect_pass)
        ASSERT_MSG(chi < chi2_crit(NH - 1), "%s: stationarity chi-square %.1f (limit %.1f)", t->name, chi,
                   chi2_crit(NH - 1));
    free(x);
    free(x0);
    return chi / chi2_crit(NH - 1);
}

static void check_balance_all(void)
{
    const target1 mix = {"mixture", mix_energy, mix_cdf, mix_draw, -2.5, 3.5, 0, 0.5f, 3};
    const target1 wall = {"exp on [-1, 1]", exp_energy, exp_cdf, exp_draw, -1.0, 1.0, 1, 0.45f, 4};
    check_balance(&mix, 1.0f, 1);
    check_balance(&wall, 1.0f, 1);
    /* the test has power: a kernel for another target (T = 1.5) fails it */
    double r1 = check_balance(&mix, 1.5f, 0), r2 = check_balance(&wall, 1.5f, 0);
    ASSERT_MSG(r1 > 5 && r2 > 5, "a tempered kernel passed the stationarity check (%.2f, %.2f x the limit)", r1, r2);
}

/* 50-D Gaussian with scales 0.8 .. 1.25: adaptation reaches its target
 * from a step far too small or far too large. (A target whose acceptance
 * falls off a cliff at the narrowest direction's stability limit, 2 sd,
 * would leave any adaptation straddling the cliff.) */
static void check_adaptation(void)
{
    enum { D = 50, B = 32 };
    double P[D * D], mu[D];
    memset(P, 0, sizeof P);
    for (int i = 0; i < D; i++) {
        double s = 0.8 * pow(1.25 / 0.8, i / (D - 1.0));
        P[i * D + i] = 1.0 / (s * s);
        mu[i] = 0;
    }
    gauss g = {D, mu, P, 0};
    float x[B * D];
    const struct {
        int L;
        float target, eps0;
    } cases[] = {{5, 0.65f, 0.001f}, {5, 0.85f, 2.0f}, {1, 0.57f, 0.05f}};
    for (int k = 0; k < 3; k++) {
        jem_rng r;
        jem_rng_seed(&r, 40 + k, 0);
        for (int i = 0; i < B * D; i++) x[i] = jem_rng_normal(&r);
        jem_hmc_cfg c;
        jem_hmc_defaults(&c);
        c.leapfrog = cases[k].L;
        c.target_accept = cases[k].target;
        c.step_size = cases[k].eps0;
        c.warmup = 300;
        c.steps = 300;
        jem_hmc_stats st;
        float eps = 0;
        ASSERT_OK(jem_hmc_run(gauss_energy, &g, x, B, D, NULL, NULL, &c, 9, 0, &eps, NULL, &st));
        ASSERT_MSG(fabs(st.accept - cases[k].target) < 0.04,
                   "L %d: acceptance %.3f after adapting to %.2f from "
                   "eps %.3g (eps now %.3g)",
                   cases[k].L, st.accept, cases[k].target, cases[k].eps0, st.step_size);
        ASSERT_MSG(fabs(st.warmup_accept - cases[k].target) < 0.04, "L %d: warm-up acceptance %.3f", cases[k].L,
                   st.warmup_accept);
        ASSERT_NEAR(eps, st.step_size, 1e-6);
        /* a second call with the adapted step and no warm-up keeps the rate */
        c.warmup = 0;
        jem_hmc_stats st2;
        ASSERT_OK(jem_hmc_run(gauss_energy, &g, x, B, D, NULL, NULL, &c, 10, 0, &eps, NULL, &st2));
        ASSERT_MSG(fabs(st2.accept - cases[k].target) < 0.04, "L %d: acceptance %.3f going on with the adapted step",
                   cases[k].L, st2.accept);
        ASSERT_NEAR(st2.step_size, eps, 1e-6);
    }
}

static void count_progress(void *ud, int done, int total)
{
    int *calls = ud;
    calls[0]++;
    calls[1] += done == total && total == 40;
}

static void check_repro_and_args(void)
{
    const double P[1] = {1}, mu[1] = {0};
    gauss g = {1, mu, P, 0};
    float a[64], b[64], c16[16];
    for (int i = 0; i < 64; i++) a[i] = b[i] = 0.05f * i - 1;
    jem_hmc_cfg c;
    jem_hmc_defaults(&c);
    c.warmup = 20;
    c.steps = 20;
    c.leapfrog = 3;
    c.step_size = 0.3f;
    double tr[40 * 64];
    int calls[2] = {0, 0};
    c.progress = count_progress;
    c.progress_ud = calls;
    int th = jem_get_threads();
    jem_set_threads(1);
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, a, 64, 1, NULL, NULL, &c, 11, 3, NULL, tr, NULL));
    jem_set_threads(2);
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, b, 64, 1, NULL, NULL, &c, 11, 3, NULL, NULL, NULL));
    ASSERT(memcmp(a, b, sizeof a) == 0);
    jem_set_threads(th);
    ASSERT_EQ_INT(calls[0], 2 * 40);
    ASSERT_EQ_INT(calls[1], 2);
    c.progress = NULL;
    /* without warm-up a chain does not depend on the others: the first 16
     * of 64 alone */
    for (int i = 0; i < 64; i++) b[i] = 0.05f * i - 1;
    for (int i = 0; i < 16; i++) c16[i] = b[i];
    jem_hmc_cfg nw = c;
    nw.warmup = 0;
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, b, 64, 1, NULL, NULL, &nw, 11, 3, NULL, NULL, NULL));
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, c16, 16, 1, NULL, NULL, &nw, 11, 3, NULL, NULL, NULL));
    ASSERT(memcmp(b, c16, sizeof c16) == 0);
    /* the trace's last row is the chains' final log density */
    int same = 1;
    for (int i = 0; i < 64; i++) same &= fabs(tr[39 * 64 + i] - (-0.5 * a[i] * a[i])) < 1e-5;
    ASSERT(same);
    /* another seed, other chains */
    for (int i = 0; i < 64; i++) b[i] = 0.05f * i - 1;
    ASSERT_OK(jem_hmc_run(gauss_energy, &g, b, 64, 1, NULL, NULL, &c, 12, 3, NULL, NULL, NULL));
    ASSERT(memcmp(a, b, sizeof a) != 0);
    /* a mask holds values in place */
    float x2[8] = {0.1f, 0.2f, 0.3f, 0.4f, 0.5f, 0.6f, 0.7f, 0.8f}, m2[8] = {1, 0, 1, 0, 1, 0, 1, 0};
    const double mu2[2] = {0, 0};
    const double Pd[4] = {1, 0, 0, 1};
    gauss g2 = {2, mu2, Pd, 0};
    ASSERT_OK(jem_hmc_run(gauss_energy, &g2, x2, 4, 2, NULL, m2, &c, 1, 0, NULL, NULL, NULL));
    ASSERT(x2[1] == 0.2f && x2[3] == 0.4f && x2[5] == 0.6f && x2[7] == 0.8f);
    ASSERT(x2[0] != 0.1f || x2[2] != 0.3f);
    /* bad arguments */
    jem_hmc_cfg bad = c;
    bad.leapfrog = 0;
    ASSERT_ERR(jem_hmc_run(gauss_energy, &g, a, 64, 1, NULL, NULL, &bad, 1, 0, NULL, NULL, NULL), JEM_ERR_ARG);
    bad = c;
    bad.step_size = 0;
    ASSERT_ERR(jem_hmc_run(gauss_energy, &g, a, 64, 1, NULL, NULL, &bad, 1, 0, NULL, NULL, NULL), JEM_ERR_ARG);
    bad = c;
    bad.target_accept = 1;
    ASSERT_ERR(jem_hmc_run(gauss_energy, &g, a, 64, 1, NULL, NULL, &bad, 1, 0, NULL, NULL, NULL), JEM_ERR_ARG);
    bad = c;
    bad.bounded = 1;
    bad.lo = 1;
    bad.hi = -1;
    ASSERT_ERR(jem_hmc_run(gauss_energy, &g, a, 64, 1, NULL, NULL, &bad, 1, 0, NULL, NULL, NULL), JEM_ERR_ARG);
    a[5] = NAN;
    ASSERT_ERR(jem_hmc_run(gauss_energy, &g, a, 64, 1, NULL, NULL, &c, 1, 0, NULL, NULL, NULL), JEM_ERR_NONFINITE);
    ASSERT_STR_CONTAINS(jem_last_error(), "chain 5");
}

/* an energy that is NaN away from the origin: proposals there are refused
 * and counted as divergent, the chains stay finite */
static jem_status cliff_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    (void)ctx;
    (void)y;
    for (int b = 0; b < B; b++) {
        logp[b] = fabsf(x[b]) < 2 ? -0.5f * x[b] * x[b] : NAN;
        if (grad) grad[b] = -x[b];
    }
    return JEM_OK;
}

static void check_divergent(void)
{
    float x[200];
    for (int i = 0; i < 200; i++) x[i] = 0.01f * (i - 100);
    jem_hmc_cfg c;
    jem_hmc_defaults(&c);
    c.warmup = 0;
    c.steps = 20;
    c.leapfrog = 2;
    c.step_size = 0.6f;
    jem_hmc_stats st;
    ASSERT_OK(jem_hmc_run(cliff_energy, NULL, x, 200, 1, NULL, NULL, &c, 2, 0, NULL, NULL, &st));
    int ok = 1;
    for (int i = 0; i < 200; i++) ok &= fabsf(x[i]) < 2;
    ASSERT(ok);
    ASSERT_MSG(st.divergent > 0 && st.divergent < 200 * 20, "divergent proposals %ld", st.divergent);
    ASSERT(isfinite(st.dh_mean) && isfinite(st.accept));
}

/* jem_sgld_run's trace: log p~ of every chain before every step */
static void check_sgld_trace(void)
{
    const double P[1] = {1}, mu[1] = {0};
    gauss g = {1, mu, P, 0};
    float x[8];
    for (int i = 0; i < 8; i++) x[i] = 0.5f * i - 2;
    double tr[5 * 8];
    for (int i = 0; i < 40; i++) tr[i] = NAN;
    jem_sgld_cfg c;
    jem_sgld_defaults(&c);
    c.steps = 5;
    c.step_size = 0.1f;
    c.noise = 0.1f;
    c.trace = tr;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g, x, 8, 1, NULL, NULL, &c, 1, 0, NULL));
    int ok = 1;
    for (int i = 0; i < 8; i++) ok &= tr[i] == (double)(float)(-0.5 * (0.5 * i - 2) * (0.5 * i - 2));
    ASSERT_MSG(ok, "the first trace row is the start's log p~");
    for (int i = 0; i < 40; i++) ok &= isfinite(tr[i]);
    ASSERT(ok);
    /* the chains move towards the mode: log p~ rises on average */
    double first = 0, last = 0;
    for (int i = 0; i < 8; i++) {
        first += tr[i];
        last += tr[32 + i];
    }
    ASSERT(last > first);
    c.mala = 1;
    for (int i = 0; i < 40; i++) tr[i] = NAN;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g, x, 8, 1, NULL, NULL, &c, 1, 0, NULL));
    ok = 1;
    for (int i = 0; i < 40; i++) ok &= isfinite(tr[i]);
    ASSERT(ok);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_hmc");
    check_gaussian();
    check_balance_all();
    check_adaptation();
    check_repro_and_args();
    check_divergent();
    check_sgld_trace();
    return t_finish();
}

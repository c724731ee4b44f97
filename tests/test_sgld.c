/* Samplers on an analytic energy (a Gaussian with known mean and
 * covariance), the network energy's gradient, and the replay buffer. */
#include "jem.h"
#include "ebm/ebm.h"
#include "test.h"

#include <math.h>

/* log p~(x) = -1/2 (x - mu)^T P (x - mu), P the precision matrix (D x D) */
typedef struct {
    int D;
    const double *mu, *P;
} gauss;

static jem_status gauss_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    (void)y;
    const gauss *g = ctx;
    const int D = g->D;
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

/* covariance of the target: Sigma = P^-1 for a 2x2 block and a diagonal */
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

static void check_sampler(int mala, float alpha, double tol_var, double *accept_out)
{
    /* Sigma = [[1, 0.6], [0.6, 0.5]] (2x2) and 0.25 on the third axis */
    const double Sigma[9] = {1.0, 0.6, 0, 0.6, 0.5, 0, 0, 0, 0.25};
    const double det = 1.0 * 0.5 - 0.36;
    const double P[9] = {0.5 / det, -0.6 / det, 0, -0.6 / det, 1.0 / det, 0, 0, 0, 4.0};
    const double mu[3] = {0.5, -1.0, 2.0};
    gauss g = {3, mu, P};
    const int B = t_quick() ? 1000 : 4000, D = 3;
    float *x = malloc(sizeof(float) * B * D);
    jem_rng r;
    jem_rng_seed(&r, 99, 0);
    for (int i = 0; i < B * D; i++) x[i] = 3.0f * jem_rng_normal(&r);
    jem_sgld_cfg c;
    jem_sgld_defaults(&c);
    c.steps = 400;
    c.step_size = alpha;
    c.noise = sqrtf(2.0f * alpha); /* the Langevin diffusion's own noise */
    c.mala = mala;
    jem_sgld_stats st;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g, x, B, D, NULL, NULL, &c, 5, 0, &st));
    double m[3], cv[9];
    moments(x, B, D, m, cv);
    for (int i = 0; i < D; i++) {
        double se = sqrt(Sigma[i * D + i] / B);
        ASSERT_MSG(fabs(m[i] - mu[i]) < 5 * se + 0.01, "%s mean[%d] %.4f vs %.4f", mala ? "MALA" : "SGLD", i, m[i],
                   mu[i]);
    }
    for (int i = 0; i < D; i++)
        for (int j = 0; j < D; j++) {
            double want = Sigma[i * D + j];
            ASSERT_MSG(fabs(cv[i * D + j] - want) < tol_var * (fabs(want) + 0.25), "%s cov[%d,%d] %.4f vs %.4f",
                       mala ? "MALA" : "SGLD", i, j, cv[i * D + j], want);
        }
    ASSERT(st.accept > 0 && st.accept <= 1);
    if (accept_out) *accept_out = st.accept;
    free(x);
}

static void check_mala_acceptance(void)
{
    double a_small = 0, a_large = 0;
    check_sampler(1, 0.02f, 0.12, &a_small);
    /* a huge step: MALA still samples correctly but accepts less */
    const double P[1] = {1.0}, mu[1] = {0.0};
    gauss g = {1, mu, P};
    const int B = 2000;
    float *x = malloc(sizeof(float) * B);
    jem_rng r;
    jem_rng_seed(&r, 3, 0);
    for (int i = 0; i < B; i++) x[i] = jem_rng_normal(&r);
    jem_sgld_cfg c;
    jem_sgld_defaults(&c);
    c.steps = 50;
    c.step_size = 1.5f;
    c.noise = sqrtf(3.0f);
    c.mala = 1;
    jem_sgld_stats st;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g, x, B, 1, NULL, NULL, &c, 8, 0, &st));
    a_large = st.accept;
    ASSERT_MSG(a_small > 0.9, "MALA acceptance at a small step %.3f", a_small);
    ASSERT_MSG(a_large < a_small && a_large > 0.01, "MALA acceptance at a large step %.3f (small %.3f)", a_large,
               a_small);
    double m = 0, v = 0;
    for (int i = 0; i < B; i++) m += x[i];
    m /= B;
    for (int i = 0; i < B; i++) v += (x[i] - m) * (x[i] - m);
    v /= B - 1;
    ASSERT_MSG(fabs(v - 1.0) < 0.12, "MALA variance at a large step %.3f", v);
    /* unadjusted Langevin at the same step is visibly wrong: variance
     * 1/(1 - step/2) = 4 for this Gaussian */
    jem_rng_seed(&r, 3, 0);
    for (int i = 0; i < B; i++) x[i] = jem_rng_normal(&r);
    c.mala = 0;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g, x, B, 1, NULL, NULL, &c, 8, 0, &st));
    m = 0;
    v = 0;
    for (int i = 0; i < B; i++) m += x[i];
    m /= B;
    for (int i = 0; i < B; i++) v += (x[i] - m) * (x[i] - m);
    v /= B - 1;
    ASSERT_MSG(v > 2.5, "unadjusted Langevin variance %.3f should be biased upwards", v);
    free(x);
}

/* counts the progress calls ([0]) and keeps the last step reported ([1]) */
static void on_step(void *ud, int done, int total)
{
    int *s = ud;
    (void)total;
    s[0]++;
    s[1] = done;
}

static void check_mask_and_clamp(void)
{
    const double P[4] = {1, 0, 0, 1}, mu[2] = {5, 5};
    gauss g = {2, mu, P};
    float x[4] = {0, 0, 0, 0}, mask[4] = {1, 0, 0, 1};
    jem_sgld_cfg c;
    jem_sgld_defaults(&c);
    c.steps = 50;
    c.step_size = 0.1f;
    c.noise = 0.01f;
    c.clamp = 1;
    c.lo = -1;
    c.hi = 1;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g, x, 2, 2, NULL, mask, &c, 1, 0, NULL));
    ASSERT(x[1] == 0 && x[2] == 0);   /* unmasked pixels never move */
    ASSERT(x[0] <= 1 && x[0] > 0.9f); /* pulled to mu = 5, clamped at 1 */
    ASSERT(x[3] <= 1 && x[3] > 0.9f);
    /* the result does not depend on the thread count */
    float a[64], b[64];
    for (int i = 0; i < 64; i++) a[i] = b[i] = 0.01f * i;
    const double P1[1] = {1}, mu1[1] = {0};
    gauss g1 = {1, mu1, P1};
    c.clamp = 0;
    int th = jem_get_threads();
    jem_set_threads(1);
    ASSERT_OK(jem_sgld_run(gauss_energy, &g1, a, 64, 1, NULL, NULL, &c, 11, 3, NULL));
    jem_set_threads(2);
    ASSERT_OK(jem_sgld_run(gauss_energy, &g1, b, 64, 1, NULL, NULL, &c, 11, 3, NULL));
    jem_set_threads(th);
    ASSERT(memcmp(a, b, sizeof a) == 0);
    /* the progress hook is called before each step and at the end, and
     * changes nothing */
    int steps_seen[2] = {0, -1};
    for (int i = 0; i < 64; i++) b[i] = 0.01f * i;
    c.progress = on_step;
    c.progress_ud = steps_seen;
    ASSERT_OK(jem_sgld_run(gauss_energy, &g1, b, 64, 1, NULL, NULL, &c, 11, 3, NULL));
    c.progress = NULL;
    ASSERT(memcmp(a, b, sizeof a) == 0);
    ASSERT_EQ_INT(steps_seen[0], c.steps + 1);
    ASSERT_EQ_INT(steps_seen[1], c.steps);
    /* bad arguments are refused */
    c.noise = -1;
    ASSERT_ERR(jem_sgld_run(gauss_energy, &g1, a, 64, 1, NULL, NULL, &c, 1, 0, NULL), JEM_ERR_ARG);
}

/* the network energy's input gradient equals finite differences of logsumexp */
static void check_net_energy(void)
{
    jem_arch a;
    ASSERT_OK(jem_arch_parse("input = 1x6x6\nclasses = 4\nstem = 3\nblocks = 4/2\nactivation = silu\n", "t", &a));
    jem_net *net = NULL;
    ASSERT_OK(jem_net_create(&a, &net));
    if (!net) return;
    jem_rng r;
    jem_rng_seed(&r, 4, 0);
    jem_net_init(net, &r);
    float x[72], g[72], lp[2], lp2[2], gy[72];
    for (int i = 0; i < 72; i++) x[i] = 2 * jem_rng_uniform(&r) - 1;
    ASSERT_OK(jem_net_energy(net, x, 2, NULL, lp, g));
    int32_t y[2] = {1, 3};
    ASSERT_OK(jem_net_energy(net, x, 2, y, lp2, gy));
    float logits[8];
    ASSERT_OK(jem_net_forward(net, x, 2, logits));
    ASSERT_NEAR(lp2[0], logits[1], 1e-5);
    ASSERT_NEAR(lp2[1], logits[7], 1e-5);
    double worst = 0;
    for (int i = 0; i < 72; i += 7) {
        float keep = x[i], lpp[2], lpm[2];
        const float h = 1e-2f;
        x[i] = keep + h;
        ASSERT_OK(jem_net_energy(net, x, 2, NULL, lpp, NULL));
        x[i] = keep - h;
        ASSERT_OK(jem_net_energy(net, x, 2, NULL, lpm, NULL));
        x[i] = keep;
        double fdv = (lpp[i / 36] - lpm[i / 36]) / (2.0 * h);
        double e = fabs(fdv - g[i]) / (fabs(fdv) + 1e-2);
        worst = e > worst ? e : worst;
    }
    ASSERT_MSG(worst < 2e-2, "net energy gradient vs finite differences: %.3g", worst);
    jem_net_free(net);
}

static void check_buffer(void)
{
    jem_buffer b;
    ASSERT_OK(jem_buffer_create(&b, 1000, 1, 2, 2, 5, JEM_INIT_UNIFORM, 0.05f, 1));
    jem_rng r;
    jem_rng_seed(&r, 21, 0);
    jem_buffer_reset(&b, &r);
    int ok = 1;
    for (int i = 0; i < 4000; i++) ok &= b.x[i] >= -1 && b.x[i] < 1;
    ASSERT(ok);
    const int B = 100, rounds = 200;
    float x[400];
    int32_t idx[100], yc[100], y[100];
    long restarted = 0;
    int part_ok = 1;
    for (int t = 0; t < rounds; t++) {
        for (int i = 0; i < B; i++) y[i] = (i + t) % 5;
        restarted += jem_buffer_draw(&b, B, y, x, idx, yc, NULL, &r);
        for (int i = 0; i < B; i++) part_ok &= idx[i] % 5 == y[i] && yc[i] == y[i] && idx[i] >= 0 && idx[i] < 1000;
        jem_buffer_store(&b, x, idx, NULL, B);
    }
    ASSERT_MSG(part_ok, "per-class draws left their partition");
    double n = (double)B * rounds, mean = 0.05 * n, sd = sqrt(n * 0.05 * 0.95);
    ASSERT_MSG(fabs(restarted - mean) < 5 * sd, "restarts %ld, expected %.0f +- %.0f", restarted, mean, sd);
    /* store puts chains back where they came from */
    for (int i = 0; i < 4; i++) x[i] = 0.123f;
    idx[0] = 7;
    jem_buffer_store(&b, x, idx, NULL, 1);
    ASSERT(b.x[28] == 0.123f && b.x[31] == 0.123f);
    jem_buffer_free(&b);
    ASSERT_ERR(jem_buffer_create(&b, 3, 1, 2, 2, 5, JEM_INIT_UNIFORM, 0.05f, 1), JEM_ERR_ARG);
    ASSERT_ERR(jem_buffer_create(&b, 30, 1, 2, 2, 5, JEM_INIT_UNIFORM, 1.5f, 0), JEM_ERR_ARG);
}

/* Ages: a restarted chain is 0, a drawn one carries its slot's age back,
 * every known age grows by one per tick; checked against a bookkeeping of
 * the same draws kept here (a chain whose pixels differ from its slot's was
 * restarted: a fresh uniform draw never repeats them). */
static void check_buffer_age(void)
{
    enum { N = 40, B = 12, ROUNDS = 60 };
    jem_buffer b;
    ASSERT_OK(jem_buffer_create(&b, N, 1, 2, 2, 4, JEM_INIT_UNIFORM, 0.25f, 0));
    jem_rng r;
    jem_rng_seed(&r, 5, 0);
    jem_buffer_reset(&b, &r);
    int64_t ref[N], at_draw[N], age[B];
    int zero = 1;
    for (int i = 0; i < N; i++) zero &= b.age[i] == 0;
    ASSERT_MSG(zero, "ages after a reset are not all 0");
    for (int i = 0; i < N; i++) ref[i] = 0;
    float x[B * 4];
    int32_t idx[B];
    long restarted = 0, carried = 0;
    int draw_ok = 1;
    for (int t = 0; t < ROUNDS; t++) {
        memcpy(at_draw, ref, sizeof ref);
        restarted += jem_buffer_draw(&b, B, NULL, x, idx, NULL, age, &r);
        for (int i = 0; i < B; i++) {
            const int fresh = memcmp(x + 4 * i, b.x + 4 * idx[i], sizeof(float) * 4) != 0;
            draw_ok &= age[i] == (fresh ? 0 : at_draw[idx[i]]);
            carried += !fresh && age[i] > 0;
            ref[idx[i]] = fresh ? 0 : at_draw[idx[i]];
            x[4 * i] = 0.5f * x[4 * i]; /* the chain moved */
        }
        jem_buffer_store(&b, x, idx, age, B);
        jem_buffer_tick(&b);
        for (int i = 0; i < N; i++) ref[i]++;
    }
    ASSERT_MSG(draw_ok, "a drawn chain's age is neither 0 (restarted) nor its slot's");
    ASSERT_MSG(restarted > 0 && carried > 0, "restarted %ld, carried %ld: both cases must occur", restarted, carried);
    int same = 1;
    for (int i = 0; i < N; i++) same &= b.age[i] == ref[i];
    ASSERT_MSG(same, "slot ages differ from the bookkeeping");
    /* a slot stored twice keeps the last chain's age */
    int32_t twice[2] = {3, 3};
    int64_t ages2[2] = {0, 17};
    jem_buffer_store(&b, x, twice, ages2, 2);
    ASSERT_EQ_INT(b.age[3], 17);
    /* ticks touch the slice [lo, hi) only, and unknown ages stay unknown */
    b.age[11] = -1;
    b.lo = 10;
    b.hi = 20;
    const int64_t a5 = b.age[5], a12 = b.age[12];
    jem_buffer_tick(&b);
    ASSERT_EQ_INT(b.age[5], a5);
    ASSERT_EQ_INT(b.age[12], a12 + 1);
    ASSERT_EQ_INT(b.age[11], -1);
    jem_buffer_free(&b);
}

static void check_informative(void)
{
    /* two classes of 2-pixel images with known mean and covariance */
    jem_dataset ds;
    memset(&ds, 0, sizeof ds);
    ds.n = 20000;
    ds.c = 1;
    ds.h = 1;
    ds.w = 2;
    ds.n_classes = 2;
    ds.x = malloc(sizeof(float) * ds.n * 2);
    ds.y = malloc(sizeof(int32_t) * ds.n);
    snprintf(ds.name, sizeof ds.name, "synthetic");
    jem_rng r;
    jem_rng_seed(&r, 8, 0);
    for (int i = 0; i < ds.n; i++) {
        int k = i % 2;
        double z1 = jem_rng_normal_d(&r), z2 = jem_rng_normal_d(&r);
        ds.y[i] = k;
        ds.x[2 * i] = (float)((k ? 0.3 : -0.3) + 0.1 * z1);
        ds.x[2 * i + 1] = (float)((k ? -0.2 : 0.2) + 0.1 * (0.8 * z1 + 0.6 * z2)); /* corr 0.8 */
    }
    jem_buffer b;
    ASSERT_OK(jem_buffer_create(&b, 10, 1, 1, 2, 2, JEM_INIT_INFORMATIVE, 0.05f, 0));
    ASSERT_OK(jem_buffer_fit(&b, &ds, 1));
    ASSERT(b.prior != NULL);
    if (!b.prior) return;
    ASSERT_NEAR(b.prior->mu[0], -0.3, 0.005);
    ASSERT_NEAR(b.prior->mu[3], -0.2, 0.005);
    ASSERT_NEAR(b.prior->sd[1], 0.1, 0.005);
    ASSERT(b.prior->chol != NULL);
    /* samples from the full-covariance init keep the correlation */
    const int n = 20000;
    double sxy = 0, sx = 0, sy = 0, sxx = 0, syy = 0;
    for (int i = 0; i < n; i++) {
        float v[2];
        jem_buffer_init_one(&b, 1, v, &r);
        sx += v[0];
        sy += v[1];
        sxy += v[0] * v[1];
        sxx += v[0] * v[0];
        syy += v[1] * v[1];
    }
    double mx = sx / n, my = sy / n;
    double corr = (sxy / n - mx * my) / sqrt((sxx / n - mx * mx) * (syy / n - my * my));
    ASSERT_NEAR(mx, 0.3, 0.01);
    ASSERT_NEAR(my, -0.2, 0.01);
    ASSERT_NEAR(corr, 0.8, 0.03);
    jem_buffer_free(&b);
    jem_dataset_free(&ds);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_sgld");
    check_sampler(1, 0.05f, 0.12, NULL); /* MALA: the right moments */
    check_sampler(0, 0.01f, 0.12, NULL); /* SGLD at a small step: close */
    check_mala_acceptance();
    check_mask_and_clamp();
    check_net_energy();
    check_buffer();
    check_buffer_age();
    check_informative();
    return t_finish();
}

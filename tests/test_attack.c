/* Attacks: PGD on a linear classifier whose worst case is known in closed
 * form; epsilon 0 equals clean accuracy; a random network breaks at large
 * epsilon; the purification defence runs under BPDA + EOT. */
#include "jem.h"
#include "eval/eval.h"
#include "test.h"

#include <math.h>

/* f(x) = W x + b, K = 2 */
typedef struct { int D; float w[2][16]; float b[2]; } linear;

static jem_status lin_logits(void *ctx, const float *x, int B, float *logits)
{
    const linear *m = ctx;
    for (int i = 0; i < B; i++)
        for (int k = 0; k < 2; k++) {
            double acc = m->b[k];
            for (int d = 0; d < m->D; d++) acc += (double)m->w[k][d] * x[(size_t)i * m->D + d];
            logits[i * 2 + k] = (float)acc;
        }
    return JEM_OK;
}

static jem_status lin_grad(void *ctx, const float *x, int B, const float *dl, float *dx, uint64_t seed)
{
    (void)x; (void)seed;
    const linear *m = ctx;
    for (int i = 0; i < B; i++)
        for (int d = 0; d < m->D; d++)
            dx[(size_t)i * m->D + d] = dl[i * 2] * m->w[0][d] + dl[i * 2 + 1] * m->w[1][d];
    return JEM_OK;
}

typedef struct { int calls; int64_t last, total; int monotone; } prog_rec;

static void on_progress(void *ud, int64_t done, int64_t total)
{
    prog_rec *p = ud;
    p->monotone &= done >= p->last && done <= total;
    p->calls++;
    p->last = done;
    p->total = total;
}

static void check_linear(int norm)
{
    linear m;
    m.D = 16;
    jem_rng r;
    jem_rng_seed(&r, 5, (uint64_t)norm);
    for (int k = 0; k < 2; k++)
        for (int d = 0; d < 16; d++) m.w[k][d] = 2 * jem_rng_uniform(&r) - 1;
    m.b[0] = 0.1f; m.b[1] = -0.1f;
    jem_classifier c = {lin_logits, lin_grad, &m, 16, 2, 0};
    /* the margin of class y over the other shrinks by at most eps * ||w_y - w_o||_dual */
    double dn = 0;
    for (int d = 0; d < 16; d++) {
        double v = fabs((double)m.w[0][d] - m.w[1][d]);
        dn = norm == 0 ? dn + v : dn + v * v;
    }
    if (norm == 2) dn = sqrt(dn);
    const double eps = 0.1;
    const int n = 400;
    float x[400 * 16];
    int32_t y[400];
    uint8_t robust[400];
    int predicted = 0, agree = 0, wrong_clean = 0;
    for (int i = 0; i < n; i++) {
        /* points in the interior of the box so the box does not bind */
        for (int d = 0; d < 16; d++) x[i * 16 + d] = 0.5f * (2 * jem_rng_uniform(&r) - 1);
        float l[2];
        lin_logits(&m, x + i * 16, 1, l);
        y[i] = jem_rng_uniform(&r) < 0.9 ? (l[0] >= l[1] ? 0 : 1) : (l[0] >= l[1] ? 1 : 0);
    }
    jem_attack_cfg ac = {.norm = norm, .eps = eps, .step = eps / 4, .steps = 20, .restarts = 1, .random_start = 1,
                         .fgsm = 0, .seed = 3};
    ASSERT_OK(jem_attack_run(&c, x, y, n, &ac, robust, NULL));
    for (int i = 0; i < n; i++) {
        float l[2];
        lin_logits(&m, x + i * 16, 1, l);
        double margin = y[i] == 0 ? l[0] - l[1] : l[1] - l[0];
        if (margin <= 0) { wrong_clean++; agree += robust[i] == 0; continue; }
        double after = margin - eps * dn;
        if (fabs(after) < 1e-3) { agree++; continue; } /* on the boundary: either answer */
        int expect = after > 0;
        predicted += !expect;
        agree += robust[i] == expect;
    }
    ASSERT_MSG(agree == n, "%s: PGD agrees with the closed form on %d of %d (%d should break)",
               norm ? "L2" : "L-inf", agree, n, predicted);
    ASSERT(predicted > 20 && predicted < n - 20); /* the test exercises both outcomes */
    ASSERT(wrong_clean > 0);
    /* FGSM is exact for a linear model under L-inf */
    if (norm == 0) {
        uint8_t rf[400];
        jem_attack_cfg fc = ac;
        fc.fgsm = 1;
        ASSERT_OK(jem_attack_run(&c, x, y, n, &fc, rf, NULL));
        ASSERT(memcmp(rf, robust, n) == 0);
    }
    /* the progress hook sees the work advance to its total, and changes nothing */
    {
        prog_rec pr = {0, -1, -1, 1};
        uint8_t rp[400];
        jem_attack_cfg pc = ac;
        pc.progress = on_progress;
        pc.progress_ud = &pr;
        ASSERT_OK(jem_attack_run(&c, x, y, n, &pc, rp, NULL));
        ASSERT(memcmp(rp, robust, n) == 0);
        ASSERT(pr.calls > 2 && pr.monotone && pr.last == pr.total && pr.total > 0);
    }
    /* epsilon 0: robust = clean-correct */
    jem_attack_cfg z = ac;
    z.eps = 0;
    uint8_t r0[400];
    ASSERT_OK(jem_attack_run(&c, x, y, n, &z, r0, NULL));
    int clean_ok = 1;
    for (int i = 0; i < n; i++) {
        float l[2];
        lin_logits(&m, x + i * 16, 1, l);
        clean_ok &= r0[i] == ((l[0] >= l[1] ? 0 : 1) == y[i] && l[0] != l[1]);
    }
    ASSERT(clean_ok);
    /* iterates stay in the ball and the box */
    float adv[400 * 16];
    ASSERT_OK(jem_attack_run(&c, x, y, n, &ac, robust, adv));
    double worst = 0;
    int inbox = 1;
    for (int i = 0; i < n; i++) {
        double acc = 0;
        for (int d = 0; d < 16; d++) {
            double v = fabs((double)adv[i * 16 + d] - x[i * 16 + d]);
            acc = norm == 0 ? (v > acc ? v : acc) : acc + v * v;
            inbox &= adv[i * 16 + d] >= -1 && adv[i * 16 + d] <= 1;
        }
        if (norm == 2) acc = sqrt(acc);
        worst = acc > worst ? acc : worst;
    }
    ASSERT_MSG(worst <= eps * (1 + 1e-5), "perturbation %.6f beyond eps %.3f", worst, eps);
    ASSERT(inbox);
}

static void check_network(void)
{
    jem_arch a;
    ASSERT_OK(jem_arch_parse("input = 1x8x8\nclasses = 4\nstem = 4\nblocks = 8/2\n", "t", &a));
    jem_net *net = NULL;
    ASSERT_OK(jem_net_create(&a, &net));
    if (!net) return;
    jem_rng r;
    jem_rng_seed(&r, 9, 0);
    jem_net_init(net, &r);
    /* larger weights than the default init, so the input matters */
    for (size_t i = 0; i < jem_net_nparams(net); i++) jem_net_params(net)[i] *= 4.0f;
    const int n = 64;
    float x[64 * 64], lg[64 * 4];
    int32_t y[64];
    for (int i = 0; i < n * 64; i++) x[i] = 2 * jem_rng_uniform(&r) - 1;
    /* labels = the model's own predictions: clean accuracy 1 */
    ASSERT_OK(jem_net_predict(net, x, n, lg));
    for (int i = 0; i < n; i++) {
        int am = 0;
        for (int k = 1; k < 4; k++) if (lg[i * 4 + k] > lg[i * 4 + am]) am = k;
        y[i] = am;
    }
    jem_classifier c;
    jem_classifier_net(&c, net);
    uint8_t rob[64];
    jem_attack_cfg ac = {.norm = 0, .eps = 0, .step = 0, .steps = 10, .restarts = 1, .random_start = 1, .fgsm = 0,
                         .seed = 1};
    ASSERT_OK(jem_attack_run(&c, x, y, n, &ac, rob, NULL));
    int k0 = 0;
    for (int i = 0; i < n; i++) k0 += rob[i];
    ASSERT_EQ_INT(k0, n);
    ac.eps = 1.0; ac.step = 0.25;
    ASSERT_OK(jem_attack_run(&c, x, y, n, &ac, rob, NULL));
    int k1 = 0;
    for (int i = 0; i < n; i++) k1 += rob[i];
    ASSERT_MSG(k1 <= n / 10, "random network robust at a large epsilon: %d of %d", k1, n);
    /* the defence under BPDA + EOT runs and stays within [0, n] */
    jem_purifier p;
    jem_purifier_init(&p, net, 2, 2, 2, 1);
    ac.steps = 2;
    ASSERT_OK(jem_attack_run(&p.c, x, y, 16, &ac, rob, NULL));
    int k2 = 0;
    for (int i = 0; i < 16; i++) k2 += rob[i];
    ASSERT(k2 >= 0 && k2 <= 16);
    jem_net_free(net);
}

/* labels outside the classifier's classes (unlabelled sets: -1) are
 * refused before any image is touched, not used as an index */
static void check_bad_labels(void)
{
    linear m = {0};
    m.D = 16;
    jem_classifier c = {lin_logits, lin_grad, &m, 16, 2, 0};
    float x[4 * 16] = {0};
    int32_t y[4] = {0, 1, -1, 0};
    uint8_t robust[4];
    jem_attack_cfg ac = {0};
    ac.eps = 0.1;
    ac.step = 0.025;
    ac.steps = 2;
    ac.restarts = 1;
    ASSERT_ERR(jem_attack_run(&c, x, y, 4, &ac, robust, NULL), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "image 2 has label -1");
    y[2] = 2;
    ASSERT_ERR(jem_attack_run(&c, x, y, 4, &ac, robust, NULL), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "label 2");
    y[2] = 1;
    ASSERT_OK(jem_attack_run(&c, x, y, 4, &ac, robust, NULL));
}

int main(void)
{
    TEST_MAIN_BEGIN("test_attack");
    check_linear(0);
    check_linear(2);
    check_network();
    check_bad_labels();
    return t_finish();
}

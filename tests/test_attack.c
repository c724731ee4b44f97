/* Attacks: PGD, APGD (CE, DLR, targeted DLR) and Square on linear
 * classifiers whose worst case is known in closed form; epsilon 0 equals
 * clean accuracy; a random network breaks at large epsilon; the
 * purification defence runs under BPDA + EOT; Square's query counts; the
 * same seed gives the same result; the masking checks flag a model whose
 * gradient is zeroed and pass the same model with its gradient. */
#include "jem.h"
#include "eval/eval.h"
#include "test.h"

#include <math.h>

/* f(x) = W x + b, K = 2 */
typedef struct {
    int D;
    float w[2][16];
    float b[2];
} linear;

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
    (void)x;
    (void)seed;
    const linear *m = ctx;
    for (int i = 0; i < B; i++)
        for (int d = 0; d < m->D; d++) dx[(size_t)i * m->D + d] = dl[i * 2] * m->w[0][d] + dl[i * 2 + 1] * m->w[1][d];
    return JEM_OK;
}

typedef struct {
    int calls;
    int64_t last, total;
    int monotone;
} prog_rec;

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
    m.b[0] = 0.1f;
    m.b[1] = -0.1f;
    jem_classifier c = {.logits = lin_logits, .grad = lin_grad, .ctx = &m, .D = 16, .K = 2};
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
    jem_attack_cfg ac = {
        .norm = norm, .eps = eps, .step = eps / 4, .steps = 20, .restarts = 1, .random_start = 1, .fgsm = 0, .seed = 3};
    ASSERT_OK(jem_attack_run(&c, x, y, n, &ac, robust, NULL));
    for (int i = 0; i < n; i++) {
        float l[2];
        lin_logits(&m, x + i * 16, 1, l);
        double margin = y[i] == 0 ? l[0] - l[1] : l[1] - l[0];
        if (margin <= 0) {
            wrong_clean++;
            agree += robust[i] == 0;
            continue;
        }
        double after = margin - eps * dn;
        if (fabs(after) < 1e-3) {
            agree++;
            continue;
        } /* on the boundary: either answer */
        int expect = after > 0;
        predicted += !expect;
        agree += robust[i] == expect;
    }
    ASSERT_MSG(agree == n, "%s: PGD agrees with the closed form on %d of %d (%d should break)", norm ? "L2" : "L-inf",
               agree, n, predicted);
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

/* a random 4-class network on 8 x 8 images (NULL on failure, asserted),
 * weights 4x the default init so the input matters; n uniform images x
 * (n, 64) drawn from r and labelled with its own predictions (lg: (n, 4)
 * scratch), so clean accuracy is 1 */
static jem_net *random_net(jem_rng *r, float *x, int32_t *y, float *lg, int n)
{
    jem_arch a;
    ASSERT_OK(jem_arch_parse("input = 1x8x8\nclasses = 4\nstem = 4\nblocks = 8/2\n", "t", &a));
    jem_net *net = NULL;
    ASSERT_OK(jem_net_create(&a, &net));
    if (!net) return NULL;
    jem_net_init(net, r);
    for (size_t i = 0; i < jem_net_nparams(net); i++) jem_net_params(net)[i] *= 4.0f;
    for (int i = 0; i < n * 64; i++) x[i] = 2 * jem_rng_uniform(r) - 1;
    ASSERT_OK(jem_net_predict(net, x, n, lg));
    for (int i = 0; i < n; i++) {
        int am = 0;
        for (int k = 1; k < 4; k++)
            if (lg[i * 4 + k] > lg[i * 4 + am]) am = k;
        y[i] = am;
    }
    return net;
}

static void check_network(void)
{
    jem_rng r;
    jem_rng_seed(&r, 9, 0);
    const int n = 64;
    float x[64 * 64], lg[64 * 4];
    int32_t y[64];
    jem_net *net = random_net(&r, x, y, lg, n);
    if (!net) return;
    jem_classifier c;
    jem_classifier_net(&c, net);
    uint8_t rob[64];
    jem_attack_cfg ac = {
        .norm = 0, .eps = 0, .step = 0, .steps = 10, .restarts = 1, .random_start = 1, .fgsm = 0, .seed = 1};
    ASSERT_OK(jem_attack_run(&c, x, y, n, &ac, rob, NULL));
    int k0 = 0;
    for (int i = 0; i < n; i++) k0 += rob[i];
    ASSERT_EQ_INT(k0, n);
    ac.eps = 1.0;
    ac.step = 0.25;
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
    /* APGD and Square on the network break it at a large epsilon too, and
     * run through the defence (stochastic: judged per run / per query) */
    jem_apgd_cfg gc = {.norm = 0, .eps = 1.0, .steps = 10, .restarts = 1, .loss = JEM_APGD_CE, .seed = 1};
    ASSERT_OK(jem_apgd_run(&c, x, y, n, &gc, rob, NULL));
    int k3 = 0;
    for (int i = 0; i < n; i++) k3 += rob[i];
    ASSERT_MSG(k3 <= n / 10, "APGD: random network robust at a large epsilon: %d of %d", k3, n);
    jem_square_cfg sq = {.norm = 0, .eps = 1.0, .queries = 200, .c = 1, .h = 8, .w = 8, .seed = 1};
    ASSERT_OK(jem_square_run(&c, x, y, n, &sq, rob, NULL, NULL));
    int k4 = 0;
    for (int i = 0; i < n; i++) k4 += rob[i];
    ASSERT_MSG(k4 <= n / 4, "Square: random network robust at a large epsilon: %d of %d", k4, n);
    gc.steps = 2;
    gc.loss = JEM_APGD_DLR_T;
    ASSERT_OK(jem_apgd_run(&p.c, x, y, 16, &gc, rob, NULL));
    sq.queries = 5;
    sq.norm = 2;
    ASSERT_OK(jem_square_run(&p.c, x, y, 16, &sq, rob, NULL, NULL));
    jem_net_free(net);
}

/* the network as a classifier that counts its passes: forward/backward
 * (one pass each) beside logits and grad (grad: a forward and a backward) */
typedef struct {
    jem_classifier in;
    int logits, grad, forward, backward;
} counted;

static jem_status cnt_logits(void *ctx, const float *x, int B, float *lg)
{
    counted *c = ctx;
    c->logits++;
    return c->in.logits(c->in.ctx, x, B, lg);
}
static jem_status cnt_grad(void *ctx, const float *x, int B, const float *dl, float *dx, uint64_t seed)
{
    counted *c = ctx;
    c->grad++;
    return c->in.grad(c->in.ctx, x, B, dl, dx, seed);
}
static jem_status cnt_forward(void *ctx, const float *x, int B, float *lg)
{
    counted *c = ctx;
    c->forward++;
    return c->in.forward(c->in.ctx, x, B, lg);
}
static jem_status cnt_backward(void *ctx, const float *dl, float *dx)
{
    counted *c = ctx;
    c->backward++;
    return c->in.backward(c->in.ctx, dl, dx);
}

/* PGD and APGD through forward/backward (one forward pass per step) give
 * bit for bit the robust flags and adversarial images of logits/grad, and
 * do call one forward pass per step */
static void check_forward_backward(void)
{
    jem_rng r;
    jem_rng_seed(&r, 21, 0);
    enum { N = 150, D = 64 }; /* two chunks */
    static float x[N * D], lg[N * 4], adv1[N * D], adv2[N * D];
    int32_t y[N];
    jem_net *net = random_net(&r, x, y, lg, N);
    if (!net) return;
    counted fb, lgr;
    memset(&fb, 0, sizeof fb);
    memset(&lgr, 0, sizeof lgr);
    jem_classifier_net(&fb.in, net);
    ASSERT(fb.in.forward && fb.in.backward);
    lgr.in = fb.in;
    jem_classifier cf = {.logits = cnt_logits,
                         .grad = cnt_grad,
                         .ctx = &fb,
                         .D = D,
                         .K = 4,
                         .forward = cnt_forward,
                         .backward = cnt_backward};
    jem_classifier cg = {.logits = cnt_logits, .grad = cnt_grad, .ctx = &lgr, .D = D, .K = 4};
    uint8_t rob1[N], rob2[N];
    for (int norm = 0; norm <= 2; norm += 2) {
        const double eps = norm ? 0.8 : 0.08;
        jem_attack_cfg ac = {
            .norm = norm, .eps = eps, .step = eps / 4, .steps = 7, .restarts = 2, .random_start = 1, .seed = 3};
        memset(&fb.logits, 0, 4 * sizeof(int));
        memset(&lgr.logits, 0, 4 * sizeof(int));
        ASSERT_OK(jem_attack_run(&cf, x, y, N, &ac, rob1, adv1));
        ASSERT_OK(jem_attack_run(&cg, x, y, N, &ac, rob2, adv2));
        int broken = 0;
        for (int i = 0; i < N; i++) broken += !rob1[i];
        ASSERT_MSG(broken > 0 && broken < N, "PGD norm %d breaks %d of %d: the comparison needs both kinds", norm,
                   broken, N);
        ASSERT(!memcmp(rob1, rob2, N) && !memcmp(adv1, adv2, sizeof adv1));
        /* per chunk: the clean check and a final check per restart through
         * logits, one forward and one backward per step */
        ASSERT_EQ_INT(fb.logits, 2 * (1 + 2));
        ASSERT_EQ_INT(fb.forward, 2 * 2 * 7);
        ASSERT_EQ_INT(fb.backward, 2 * 2 * 7);
        ASSERT_EQ_INT(fb.grad, 0);
        ASSERT_EQ_INT(lgr.grad, 2 * 2 * 7);
        ASSERT_EQ_INT(lgr.logits, 2 * (1 + 2 * 7 * 2));
        for (int loss = JEM_APGD_CE; loss <= JEM_APGD_DLR_T; loss += JEM_APGD_DLR_T - JEM_APGD_CE) {
            jem_apgd_cfg gc = {
                .norm = norm, .eps = eps, .steps = 9, .restarts = 1, .loss = loss, .targets = 2, .seed = 5};
            memset(&fb.logits, 0, 4 * sizeof(int));
            ASSERT_OK(jem_apgd_run(&cf, x, y, N, &gc, rob1, adv1));
            ASSERT_OK(jem_apgd_run(&cg, x, y, N, &gc, rob2, adv2));
            ASSERT_MSG(!memcmp(rob1, rob2, N) && !memcmp(adv1, adv2, sizeof adv1), "APGD loss %d norm %d", loss, norm);
            ASSERT_MSG(fb.grad == 0 && fb.forward > 0 && fb.forward == fb.backward, "APGD: %d grad, %d forward",
                       fb.grad, fb.forward);
        }
    }
    /* the defence is stochastic: it never offers forward/backward */
    jem_purifier p;
    jem_purifier_init(&p, net, 2, 2, 2, 1);
    ASSERT(!p.c.forward && !p.c.backward);
    jem_net_free(net);
}

/* labels outside the classifier's classes (unlabelled sets: -1) are
 * refused before any image is touched, not used as an index */
static void check_bad_labels(void)
{
    linear m = {0};
    m.D = 16;
    jem_classifier c = {.logits = lin_logits, .grad = lin_grad, .ctx = &m, .D = 16, .K = 2};
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

/* ---- K-class linear models: f(x) = W x + b, images 1 x 4 x 4 */

typedef struct {
    int K, zero_grad; /* zero_grad: the gradient is reported as 0 (masked) */
    float w[4][16], b[4];
    int64_t evaluated; /* images passed to logits */
} lin_k;

static jem_status link_logits(void *ctx, const float *x, int B, float *logits)
{
    lin_k *m = ctx;
    m->evaluated += B;
    for (int i = 0; i < B; i++)
        for (int k = 0; k < m->K; k++) {
            double acc = m->b[k];
            for (int d = 0; d < 16; d++) acc += (double)m->w[k][d] * x[(size_t)i * 16 + d];
            logits[i * m->K + k] = (float)acc;
        }
    return JEM_OK;
}

static jem_status link_grad(void *ctx, const float *x, int B, const float *dl, float *dx, uint64_t seed)
{
    (void)x;
    (void)seed;
    const lin_k *m = ctx;
    for (int i = 0; i < B; i++)
        for (int d = 0; d < 16; d++) {
            double acc = 0;
            for (int k = 0; k < m->K; k++) acc += (double)dl[i * m->K + k] * m->w[k][d];
            dx[(size_t)i * 16 + d] = m->zero_grad ? 0.0f : (float)acc;
        }
    return JEM_OK;
}

/* n points inside [-0.5, 0.5]^16 (the box does not bind at eps 0.1), 90 %
 * labelled with the model's prediction; expect (n) = 1 where the closed form
 * says the image survives eps (min over j of the margin over j minus eps
 * times the dual norm of w_y - w_j), 0 where it breaks, 2 within 1e-3 of
 * the boundary (either answer) */
static void link_setup(lin_k *m, int K, int norm, uint64_t seed, float *x, int32_t *y, int n, double eps,
                       uint8_t *expect)
{
    jem_rng r;
    jem_rng_seed(&r, seed, (uint64_t)norm);
    memset(m, 0, sizeof *m);
    m->K = K;
    for (int k = 0; k < K; k++) {
        for (int d = 0; d < 16; d++) m->w[k][d] = 2 * jem_rng_uniform(&r) - 1;
        m->b[k] = 0.2f * (2 * jem_rng_uniform(&r) - 1);
    }
    for (int i = 0; i < n; i++) {
        for (int d = 0; d < 16; d++) x[i * 16 + d] = 0.5f * (2 * jem_rng_uniform(&r) - 1);
        float l[4];
        link_logits(m, x + i * 16, 1, l);
        int am = 0;
        for (int k = 1; k < K; k++)
            if (l[k] > l[am]) am = k;
        y[i] = jem_rng_uniform(&r) < 0.9 ? am : (am + 1 + (int)jem_rng_below(&r, (uint32_t)(K - 1))) % K;
        double worst = 1e30;
        for (int j = 0; j < K; j++) {
            if (j == y[i]) continue;
            double dn = 0;
            for (int d = 0; d < 16; d++) {
                double v = fabs((double)m->w[y[i]][d] - m->w[j][d]);
                dn = norm == 0 ? dn + v : dn + v * v;
            }
            if (norm == 2) dn = sqrt(dn);
            const double after = (double)l[y[i]] - l[j] - eps * dn;
            worst = after < worst ? after : worst;
        }
        expect[i] = fabs(worst) < 1e-3 ? 2 : worst > 0;
    }
    m->evaluated = 0;
}

/* agreement with the closed form; robust never where it says breakable
 * (an attack cannot do better than the worst case) */
static int agree_count(const uint8_t *robust, const uint8_t *expect, int n, int *unsound, int *breakable)
{
    int agree = 0;
    *unsound = 0;
    *breakable = 0;
    for (int i = 0; i < n; i++) {
        if (expect[i] == 2) {
            agree++;
            continue;
        }
        *breakable += expect[i] == 0;
        *unsound += robust[i] == 0 && expect[i] == 1;
        agree += robust[i] == expect[i];
    }
    return agree;
}

/* adversarial points inside the ball and the box, and misclassified where
 * the image is not robust */
static void check_adv(lin_k *m, const float *x, const int32_t *y, const uint8_t *robust, const float *adv, int n,
                      int norm, double eps, const char *what)
{
    double worst = 0;
    int inbox = 1, wrong = 1;
    for (int i = 0; i < n; i++) {
        double acc = 0;
        for (int d = 0; d < 16; d++) {
            const double v = fabs((double)adv[i * 16 + d] - x[i * 16 + d]);
            acc = norm == 0 ? (v > acc ? v : acc) : acc + v * v;
            inbox &= adv[i * 16 + d] >= -1 && adv[i * 16 + d] <= 1;
        }
        if (norm == 2) acc = sqrt(acc);
        worst = acc > worst ? acc : worst;
        if (!robust[i]) {
            float l[4];
            link_logits(m, adv + i * 16, 1, l);
            int am = 0;
            for (int k = 1; k < m->K; k++)
                if (l[k] > l[am]) am = k;
            wrong &= am != y[i];
        }
    }
    ASSERT_MSG(worst <= eps * (1 + 1e-5), "%s: perturbation %.6f beyond eps %.3f", what, worst, eps);
    ASSERT_MSG(inbox, "%s: an adversarial point outside the box", what);
    ASSERT_MSG(wrong, "%s: an image counted broken whose adversarial point is classified correctly", what);
}

static void check_apgd_linear(int norm)
{
    enum { N = 300 };
    static float x[N * 16], adv[N * 16];
    int32_t y[N];
    uint8_t expect[N], rob[N], rob2[N];
    const double eps = norm == 0 ? 0.1 : 0.3;
    const char *nn = norm ? "L2" : "L-inf";
    lin_k m;
    /* CE on two classes: the gradient points along w_o - w_y, so APGD meets
     * the closed form exactly */
    link_setup(&m, 2, norm, 11, x, y, N, eps, expect);
    jem_classifier c = {.logits = link_logits, .grad = link_grad, .ctx = &m, .D = 16, .K = 2};
    jem_apgd_cfg ac = {.norm = norm, .eps = eps, .steps = 30, .restarts = 1, .loss = JEM_APGD_CE, .seed = 4};
    ASSERT_OK(jem_apgd_run(&c, x, y, N, &ac, rob, adv));
    int unsound, breakable, agree = agree_count(rob, expect, N, &unsound, &breakable);
    ASSERT_MSG(agree == N, "APGD-CE %s agrees with the closed form on %d of %d (%d breakable)", nn, agree, N,
               breakable);
    ASSERT(breakable > 20 && breakable < N - 20);
    check_adv(&m, x, y, rob, adv, N, norm, eps, "APGD-CE");
    /* the same seed, the same result; the progress hook changes nothing */
    prog_rec pr = {0, -1, -1, 1};
    jem_apgd_cfg pc = ac;
    pc.progress = on_progress;
    pc.progress_ud = &pr;
    static float adv2[N * 16];
    ASSERT_OK(jem_apgd_run(&c, x, y, N, &pc, rob2, adv2));
    ASSERT(memcmp(rob, rob2, N) == 0 && memcmp(adv, adv2, sizeof adv) == 0);
    ASSERT(pr.calls > 2 && pr.monotone && pr.last == pr.total && pr.total > 0);

    /* four classes: targeted DLR over the three other classes finds every
     * image the closed form breaks, and only those */
    link_setup(&m, 4, norm, 12, x, y, N, eps, expect);
    c.K = 4;
    ac.loss = JEM_APGD_DLR_T;
    ac.targets = 3;
    ASSERT_OK(jem_apgd_run(&c, x, y, N, &ac, rob, adv));
    agree = agree_count(rob, expect, N, &unsound, &breakable);
    ASSERT_MSG(agree == N, "APGD-DLR-T %s agrees with the closed form on %d of %d (%d breakable)", nn, agree, N,
               breakable);
    ASSERT(breakable > 20 && breakable < N - 20);
    check_adv(&m, x, y, rob, adv, N, norm, eps, "APGD-DLR-T");
    /* untargeted DLR and CE on four classes: sound, and find nearly all */
    for (int loss = JEM_APGD_CE; loss <= JEM_APGD_DLR; loss++) {
        ac.loss = loss;
        ASSERT_OK(jem_apgd_run(&c, x, y, N, &ac, rob, adv));
        agree = agree_count(rob, expect, N, &unsound, &breakable);
        ASSERT_MSG(unsound == 0, "APGD loss %d %s broke %d images the closed form says survive", loss, nn, unsound);
        ASSERT_MSG(agree >= N - N / 20, "APGD loss %d %s agrees on %d of %d", loss, nn, agree, N);
        check_adv(&m, x, y, rob, adv, N, norm, eps, "APGD");
    }
    /* too few classes for the targeted loss */
    c.K = 2;
    m.K = 2;
    ac.loss = JEM_APGD_DLR_T;
    ASSERT_ERR(jem_apgd_run(&c, x, y, N, &ac, rob, NULL), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "at least 4 classes");
}

static void check_square_linear(int norm)
{
    enum { N = 200 };
    static float x[N * 16], adv[N * 16], adv2[N * 16];
    int32_t y[N];
    uint8_t expect[N], rob[N], rob2[N];
    int64_t q[N], q2[N];
    const double eps = norm == 0 ? 0.1 : 0.3;
    const char *nn = norm ? "L2" : "L-inf";
    lin_k m;
    link_setup(&m, 2, norm, 21, x, y, N, eps, expect);
    /* no gradient: Square must not need one */
    jem_classifier c = {.logits = link_logits, .grad = NULL, .ctx = &m, .D = 16, .K = 2};
    jem_square_cfg sc = {.norm = norm, .eps = eps, .queries = 1000, .c = 1, .h = 4, .w = 4, .seed = 7};
    ASSERT_OK(jem_square_run(&c, x, y, N, &sc, rob, adv, q));
    const int64_t evaluated = m.evaluated;
    int unsound, breakable, agree = agree_count(rob, expect, N, &unsound, &breakable);
    ASSERT_MSG(unsound == 0, "Square %s broke %d images the closed form says survive", nn, unsound);
    /* random search on a 16-pixel image: L-inf close to the worst case; L2
     * moves mass among 3 x 3 windows of the 4 x 4 image, which cannot shape
     * every direction (about 4 in 5 of the breakable images, more queries
     * do not change that) */
    const int found = breakable - (N - agree);
    ASSERT_MSG(norm == 0 ? agree >= N - N / 20 : found >= breakable * 3 / 4,
               "Square %s agrees with the closed form on %d of %d (%d breakable)", nn, agree, N, breakable);
    check_adv(&m, x, y, rob, adv, N, norm, eps, "Square");
    /* queries: every image evaluated is counted once, misclassified clean
     * images cost 1, the robust ones the whole budget, none more */
    int64_t sum = 0;
    int budget_ok = 1, clean_ok = 1, some_mid = 0;
    for (int i = 0; i < N; i++) {
        float l[2];
        link_logits(&m, x + i * 16, 1, l);
        const int clean_right = (l[1] > l[0]) == y[i] && l[0] != l[1];
        sum += q[i];
        budget_ok &= q[i] >= 1 && q[i] <= sc.queries && (!rob[i] || q[i] == sc.queries);
        clean_ok &= clean_right || q[i] == 1;
        some_mid += q[i] > 2 && q[i] < sc.queries;
    }
    ASSERT_EQ_INT(sum, evaluated);
    ASSERT(budget_ok);
    ASSERT(clean_ok);
    ASSERT(some_mid > 0);
    /* the same seed, the same result; another seed, other queries */
    ASSERT_OK(jem_square_run(&c, x, y, N, &sc, rob2, adv2, q2));
    ASSERT(memcmp(rob, rob2, N) == 0 && memcmp(adv, adv2, sizeof adv) == 0 && memcmp(q, q2, sizeof q) == 0);
    sc.seed = 8;
    ASSERT_OK(jem_square_run(&c, x, y, N, &sc, rob2, adv2, q2));
    ASSERT(memcmp(q, q2, sizeof q) != 0);
    /* a smaller budget breaks no more images */
    sc.seed = 7;
    sc.queries = 10;
    ASSERT_OK(jem_square_run(&c, x, y, N, &sc, rob2, NULL, q2));
    int k_full = 0, k_small = 0, q_ok = 1;
    for (int i = 0; i < N; i++) {
        k_full += rob[i];
        k_small += rob2[i];
        q_ok &= q2[i] <= 10;
    }
    ASSERT(k_small >= k_full && q_ok);
    /* a shape that does not hold the classifier's values */
    sc.h = 3;
    ASSERT_ERR(jem_square_run(&c, x, y, N, &sc, rob2, NULL, NULL), JEM_ERR_SHAPE);
}

/* The masking checks: a model whose gradient is zeroed looks robust to the
 * gradient attacks; the checks must flag it (an unbounded radius leaves
 * images correct, the gradient-free attack breaks what they left) and must
 * pass the same model with its true gradient. */
static void masked_table(int zero_grad, jem_check *chk)
{
    enum { N = 200, NE = 4 };
    static float x[N * 16];
    int32_t y[N];
    uint8_t expect[N], rg[N], rs[N];
    const double eps[NE] = {0, 0.05, 0.1, 0.2};
    double acc_g[NE], acc_all[NE];
    lin_k m;
    link_setup(&m, 4, 0, 31, x, y, N, 0.1, expect);
    m.zero_grad = zero_grad;
    jem_classifier c = {.logits = link_logits, .grad = link_grad, .ctx = &m, .D = 16, .K = 4};
    for (int e = 0; e < NE; e++) {
        /* APGD-CE, then targeted DLR on the images it left (as the suite) */
        jem_apgd_cfg ac = {.norm = 0, .eps = eps[e], .steps = 20, .restarts = 1, .loss = JEM_APGD_CE, .seed = 1};
        uint8_t rt[N];
        ASSERT_OK(jem_apgd_run(&c, x, y, N, &ac, rg, NULL));
        ac.loss = JEM_APGD_DLR_T;
        ASSERT_OK(jem_apgd_run(&c, x, y, N, &ac, rt, NULL));
        for (int i = 0; i < N; i++) rg[i] &= rt[i];
        /* Square on the images the gradient attack left */
        int32_t ys[N];
        static float xs[N * 16];
        int ns = 0, kg = 0;
        for (int i = 0; i < N; i++)
            if (rg[i]) {
                memcpy(xs + ns * 16, x + i * 16, sizeof(float) * 16);
                ys[ns++] = y[i];
                kg++;
            }
        jem_square_cfg sc = {.norm = 0, .eps = eps[e], .queries = 300, .c = 1, .h = 4, .w = 4, .seed = 1};
        int ks = 0;
        if (ns) {
            ASSERT_OK(jem_square_run(&c, xs, ys, ns, &sc, rs, NULL, NULL));
            for (int i = 0; i < ns; i++) ks += rs[i];
        }
        acc_g[e] = (double)kg / N;
        acc_all[e] = (double)ks / N;
    }
    /* unbounded: L-inf radius 2 covers the box [-1, 1] */
    jem_apgd_cfg au = {.norm = 0, .eps = 2.0, .steps = 20, .restarts = 1, .loss = JEM_APGD_CE, .seed = 1};
    ASSERT_OK(jem_apgd_run(&c, x, y, N, &au, rg, NULL));
    int ku = 0;
    for (int i = 0; i < N; i++) ku += rg[i];
    /* stronger: 4x the steps and 2 restarts at eps 0.1 */
    jem_apgd_cfg as = {.norm = 0, .eps = 0.1, .steps = 80, .restarts = 2, .loss = JEM_APGD_CE, .seed = 2};
    ASSERT_OK(jem_apgd_run(&c, x, y, N, &as, rg, NULL));
    int kst = 0;
    for (int i = 0; i < N; i++) kst += rg[i];
    jem_check_monotone(acc_all, NE, 0.03, &chk[JEM_CHECK_MONOTONE]);
    jem_check_unbounded((double)ku / N, 0.0, &chk[JEM_CHECK_UNBOUNDED]);
    jem_check_gradfree(acc_g, acc_all, NE, 0.03, &chk[JEM_CHECK_GRADFREE]);
    jem_check_stronger(acc_g[2], (double)kst / N, 2, 0.03, &chk[JEM_CHECK_STRONGER]);
}

static void check_masking(void)
{
    jem_check ok[JEM_NCHECKS], bad[JEM_NCHECKS];
    masked_table(0, ok);
    for (int k = 0; k < JEM_NCHECKS; k++)
        ASSERT_MSG(ok[k].ran && ok[k].pass, "true gradient: check %s fails (value %.3f, tol %.3f)", jem_check_name(k),
                   ok[k].value, ok[k].tol);
    masked_table(1, bad);
    ASSERT_MSG(!bad[JEM_CHECK_UNBOUNDED].pass, "zeroed gradient: the unbounded check passes (%.3f)",
               bad[JEM_CHECK_UNBOUNDED].value);
    ASSERT_MSG(!bad[JEM_CHECK_GRADFREE].pass, "zeroed gradient: the gradient-free check passes (%.3f)",
               bad[JEM_CHECK_GRADFREE].value);
    ASSERT(bad[JEM_CHECK_GRADFREE].e > 0);
    /* the table checks on their own */
    const double up[4] = {0.9, 0.5, 0.6, 0.1}, down[4] = {0.9, 0.5, 0.5, 0.1};
    jem_check c;
    jem_check_monotone(up, 4, 0.05, &c);
    ASSERT(c.ran && !c.pass && c.e == 2 && fabs(c.value - 0.1) < 1e-12);
    jem_check_monotone(down, 4, 0.0, &c);
    ASSERT(c.pass && c.value == 0);
    jem_check_stronger(0.5, 0.4, 1, 0.03, &c);
    ASSERT(!c.pass && c.e == 1);
    ASSERT(!strcmp(jem_check_name(JEM_CHECK_GRADFREE), "gradient_free"));
}

int main(void)
{
    TEST_MAIN_BEGIN("test_attack");
    check_linear(0);
    check_linear(2);
    check_network();
    check_forward_backward();
    check_bad_labels();
    check_apgd_linear(0);
    check_apgd_linear(2);
    check_square_linear(0);
    check_square_linear(2);
    check_masking();
    return t_finish();
}

/* Adversarial training: TRADES's KL term against finite differences in
 * double; jem_attack_batch stays in the ball and the box, ascends its loss
 * (cross-entropy or KL to a target), is reproducible from its stream and
 * leaves the weight gradients alone; in the trainer the examples stay
 * within the ramped radius and in [-1, 1], TRADES with beta 0 trains as
 * plain cross-entropy, JEM's generative terms see the clean rows, and a
 * tiny model trained with PGD for a few iterations resists PGD better than
 * the same model trained plainly. */
#include "jem.h"
#include "ebm/train.h"
#include "gradcheck.h"
#include "test.h"

/* ---- TRADES's KL ---- */

static double kl_d(const double *zc, const double *za, int B, int K)
{
    double tot = 0;
    for (int b = 0; b < B; b++) {
        const double *c = zc + (size_t)b * K, *a = za + (size_t)b * K;
        double mc = c[0], ma = a[0], sc = 0, sa = 0, kl = 0;
        for (int k = 1; k < K; k++) {
            mc = fmax(mc, c[k]);
            ma = fmax(ma, a[k]);
        }
        for (int k = 0; k < K; k++) {
            sc += exp(c[k] - mc);
            sa += exp(a[k] - ma);
        }
        for (int k = 0; k < K; k++) {
            double lp = c[k] - mc - log(sc), lq = a[k] - ma - log(sa);
            kl += exp(lp) * (lp - lq);
        }
        tot += kl;
    }
    return tot / B;
}

static void check_kl(void)
{
    enum { B = 4, K = 6 };
    jem_rng r;
    jem_rng_seed(&r, 11, 0);
    float zc[B * K], za[B * K], dc[B * K], da[B * K];
    fill_uniform(zc, B * K, &r, -3, 3);
    fill_uniform(za, B * K, &r, -3, 3);
    /* the gradients are added: start from a known offset */
    for (int i = 0; i < B * K; i++) dc[i] = da[i] = 0.5f;
    const float scale = 1.7f;
    double kl = jem_trades_kl(zc, za, B, K, dc, da, scale);
    double *c = to_d(zc, B * K), *a = to_d(za, B * K);
    ASSERT_NEAR(kl, kl_d(c, a, B, K), 1e-6);
    ASSERT(kl > 0);
    double gc[B * K], ga[B * K];
    const double h = 1e-5;
    for (int i = 0; i < B * K; i++) {
        double v = c[i];
        c[i] = v + h;
        double up = kl_d(c, a, B, K);
        c[i] = v - h;
        double dn = kl_d(c, a, B, K);
        c[i] = v;
        gc[i] = scale * (up - dn) / (2 * h) + 0.5;
        v = a[i];
        a[i] = v + h;
        up = kl_d(c, a, B, K);
        a[i] = v - h;
        dn = kl_d(c, a, B, K);
        a[i] = v;
        ga[i] = scale * (up - dn) / (2 * h) + 0.5;
    }
    double ec = rel_err_fd(dc, gc, B * K), ea = rel_err_fd(da, ga, B * K);
    ASSERT_MSG(ec < 1e-6 && ea < 1e-6, "KL gradient against finite differences: clean %.3g, adversarial %.3g", ec, ea);
    /* and without the offset: the gradients themselves, not just their sum with it */
    for (int i = 0; i < B * K; i++) {
        gc[i] -= 0.5;
        ga[i] -= 0.5;
        dc[i] -= 0.5f;
        da[i] -= 0.5f;
    }
    ec = rel_err_fd(dc, gc, B * K);
    ea = rel_err_fd(da, ga, B * K);
    ASSERT_MSG(ec < 1e-5 && ea < 1e-5, "KL gradient alone: clean %.3g, adversarial %.3g", ec, ea);
    /* equal predictions: no KL, no gradient; scale 0 adds nothing */
    float z0[B * K];
    for (int i = 0; i < B * K; i++) dc[i] = da[i] = 0.0f;
    ASSERT_NEAR(jem_trades_kl(zc, zc, B, K, dc, da, scale), 0, 1e-12);
    double mx = 0;
    for (int i = 0; i < B * K; i++) mx = fmax(mx, fmax(fabs(dc[i]), fabs(da[i])));
    ASSERT_MSG(mx < 1e-7, "gradient %.3g at KL 0", mx);
    memcpy(z0, za, sizeof z0);
    for (int i = 0; i < B * K; i++) dc[i] = da[i] = 0.25f;
    jem_trades_kl(zc, z0, B, K, dc, da, 0.0f);
    int same = 1;
    for (int i = 0; i < B * K; i++) same &= dc[i] == 0.25f && da[i] == 0.25f;
    ASSERT(same);
    free(c);
    free(a);
}

/* ---- jem_attack_batch ---- */

static jem_net *make_net(const char *desc, uint64_t seed)
{
    jem_arch a;
    jem_net *net = NULL;
    if (jem_arch_parse(desc, "t", &a) || jem_net_create(&a, &net)) return NULL;
    jem_rng r;
    jem_rng_seed(&r, seed, 0);
    jem_net_init(net, &r);
    return net;
}

/* mean CE against y, or KL(target || softmax) */
static double loss_at(jem_net *net, const float *x, const int32_t *y, const float *target, int B)
{
    const int K = jem_net_arch(net)->n_classes;
    float *l = malloc(sizeof(float) * (size_t)B * K), *p = malloc(sizeof(float) * (size_t)B * K);
    double v = NAN;
    if (l && p && !jem_net_predict(net, x, B, l)) {
        if (target) {
            /* KL(target || q) = sum t (log t - log q) */
            jem_softmax(l, B, K, p);
            v = 0;
            for (int i = 0; i < B * K; i++)
                v += target[i] > 0 ? target[i] * (log(target[i]) - log(fmax(p[i], 1e-30))) : 0;
            v /= B;
        } else {
            v = jem_softmax_xent(l, y, B, K, NULL, 1.0f, NULL);
        }
    }
    free(l);
    free(p);
    return v;
}

/* largest perturbation (L-inf or L2) of a row, and whether every value is in [-1, 1] */
static double max_dev(const float *x, const float *xa, int B, int D, int norm, int *inbox)
{
    double worst = 0;
    *inbox = 1;
    for (int b = 0; b < B; b++) {
        double acc = 0;
        for (int d = 0; d < D; d++) {
            double v = fabs((double)xa[(size_t)b * D + d] - x[(size_t)b * D + d]);
            acc = norm == 0 ? fmax(acc, v) : acc + v * v;
            *inbox &= xa[(size_t)b * D + d] >= -1.0f && xa[(size_t)b * D + d] <= 1.0f;
        }
        worst = fmax(worst, norm == 0 ? acc : sqrt(acc));
    }
    return worst;
}

static void check_attack_batch(int norm)
{
    jem_net *net = make_net("input = 1x8x8\nclasses = 4\nstem = 4\nblocks = 8/2\n", 3);
    ASSERT(net != NULL);
    if (!net) return;
    enum { B = 24, D = 64, K = 4 };
    jem_rng r;
    jem_rng_seed(&r, 7, (uint64_t)norm);
    float x[B * D], xa[B * D], xb[B * D], x0[B * D], l[B * K], tg[B * K];
    int32_t y[B];
    /* half the pixels at the walls, so the box binds */
    for (int i = 0; i < B * D; i++) x[i] = i % 2 ? (i % 4 == 1 ? -1.0f : 1.0f) : 2 * jem_rng_uniform(&r) - 1;
    for (int b = 0; b < B; b++) y[b] = (int32_t)jem_rng_below(&r, K);
    y[5] = -1; /* unlabelled: no cross-entropy to ascend */
    const double eps = norm == 0 ? 0.5 : 3.0;
    jem_attack_cfg ac = {.norm = norm, .eps = eps, .step = eps / 4, .steps = 8, .restarts = 1, .random_start = 1};
    /* the weight gradients are not touched */
    float *g = jem_net_grads(net);
    const size_t np = jem_net_nparams(net);
    for (size_t i = 0; i < np; i++) g[i] = 0.125f;
    jem_rng s1, s2;
    jem_rng_seed(&s1, 5, 1);
    jem_rng_seed(&s2, 5, 1);
    ASSERT_OK(jem_attack_batch(net, x, y, NULL, B, &ac, &s1, xa));
    ASSERT_OK(jem_attack_batch(net, x, y, NULL, B, &ac, &s2, xb));
    ASSERT_MSG(!memcmp(xa, xb, sizeof xa), "the same stream gave other examples");
    int grads_kept = 1;
    for (size_t i = 0; i < np; i++) grads_kept &= g[i] == 0.125f;
    ASSERT(grads_kept);
    int inbox;
    double dev = max_dev(x, xa, B, D, norm, &inbox);
    ASSERT_MSG(dev <= eps * (1 + 1e-5) && dev > 0.5 * eps, "%s: perturbation %.6f, eps %.3f", norm ? "L2" : "L-inf",
               dev, eps);
    ASSERT(inbox);
    /* the random start alone (0 steps, the same stream) against PGD: PGD ascends */
    jem_attack_cfg a0 = ac;
    a0.steps = 0;
    jem_rng_seed(&s1, 5, 1);
    ASSERT_OK(jem_attack_batch(net, x, y, NULL, B, &a0, &s1, x0));
    double lc = loss_at(net, x, y, NULL, B), l0 = loss_at(net, x0, y, NULL, B), la = loss_at(net, xa, y, NULL, B);
    ASSERT_MSG(la > l0 + 0.01 && la > lc + 0.01, "%s: CE clean %.4f, random start %.4f, PGD %.4f",
               norm ? "L2" : "L-inf", lc, l0, la);
    /* the unlabelled row stays at its random start */
    ASSERT(!memcmp(xa + 5 * D, x0 + 5 * D, sizeof(float) * D));
    /* TRADES's inner maximisation: KL to the clean prediction */
    ASSERT_OK(jem_net_predict(net, x, B, l));
    jem_softmax(l, B, K, tg);
    jem_rng_seed(&s1, 6, 1);
    ASSERT_OK(jem_attack_batch(net, x, NULL, tg, B, &a0, &s1, x0));
    jem_rng_seed(&s1, 6, 1);
    ASSERT_OK(jem_attack_batch(net, x, NULL, tg, B, &ac, &s1, xa));
    dev = max_dev(x, xa, B, D, norm, &inbox);
    ASSERT(dev <= eps * (1 + 1e-5) && inbox);
    double k0 = loss_at(net, x0, NULL, tg, B), ka = loss_at(net, xa, NULL, tg, B);
    ASSERT_MSG(ka > 10 * k0, "%s: KL at the random start %.3g, after PGD %.3g", norm ? "L2" : "L-inf", k0, ka);
    /* eps 0: the clean images; bad settings refused */
    jem_attack_cfg z = ac;
    z.eps = 0;
    ASSERT_OK(jem_attack_batch(net, x, y, NULL, B, &z, &s1, xa));
    ASSERT(!memcmp(xa, x, sizeof x));
    z = ac;
    z.norm = 1;
    ASSERT_ERR(jem_attack_batch(net, x, y, NULL, B, &z, &s1, xa), JEM_ERR_ARG);
    y[0] = K;
    ASSERT_ERR(jem_attack_batch(net, x, y, NULL, B, &ac, &s1, xa), JEM_ERR_ARG);
    jem_net_free(net);
}

/* ---- the trainer ---- */

static const char *TINY = "name = tiny\ninput = 1x28x28\nclasses = 10\nstem = 8\nblocks = 16/2 16/2\n";

typedef struct {
    int calls, norm, batch;
    double eps[16];
    double worst_ratio; /* largest perturbation / the call's radius */
    double reach;       /* smallest over calls of (largest perturbation / radius) */
    int inbox;
    int centred;    /* every call's centres were the batch rows clamped to [-1, 1] */
    float *batch_x; /* (batch, D) the iteration's batch rows, clamped */
    jem_net *net;
    double e_clean, e_adv; /* first call: mean energies of the clean and adversarial rows */
} adv_rec;

static double mean_energy(jem_net *net, const float *x, int n)
{
    const int K = jem_net_arch(net)->n_classes;
    float *l = malloc(sizeof(float) * (size_t)n * K), *lse = malloc(sizeof(float) * n);
    double e = 0;
    if (l && lse && !jem_net_predict(net, x, n, l)) {
        jem_logsumexp(l, n, K, lse);
        for (int i = 0; i < n; i++) e += -lse[i];
    }
    free(l);
    free(lse);
    return e / n;
}

static void on_batch(void *ud, const float *x, const int32_t *y, int batch, int px0, int npx)
{
    (void)y, (void)px0, (void)npx;
    adv_rec *r = ud;
    free(r->batch_x);
    r->batch_x = malloc(sizeof(float) * (size_t)batch * 28 * 28);
    for (int i = 0; r->batch_x && i < batch * 28 * 28; i++) r->batch_x[i] = fminf(1.0f, fmaxf(-1.0f, x[i]));
}

static void on_adv(void *ud, const float *x, const float *xadv, int batch, double eps)
{
    adv_rec *r = ud;
    r->centred &= r->batch_x && !memcmp(r->batch_x, x, sizeof(float) * (size_t)batch * 28 * 28);
    if (r->calls < 16) r->eps[r->calls] = eps;
    if (r->calls == 0 && r->net) {
        r->e_clean = mean_energy(r->net, x, batch);
        r->e_adv = mean_energy(r->net, xadv, batch);
    }
    r->calls++;
    r->batch = batch;
    int inbox;
    double dev = max_dev(x, xadv, batch, 28 * 28, r->norm, &inbox) / eps;
    r->inbox &= inbox;
    r->worst_ratio = fmax(r->worst_ratio, dev);
    r->reach = fmin(r->reach, dev);
}

typedef struct {
    double e_data, acc, adv_acc, adv_eps;
    int n;
} prog_rec;

static void on_progress(void *ud, const jem_progress *p)
{
    prog_rec *r = ud;
    if (p->event != JEM_EV_ITER && p->event != JEM_EV_EPOCH) return;
    if (r->n++ == 0) r->e_data = p->e_data;
    r->acc = p->acc;
    r->adv_acc = p->adv_acc;
    r->adv_eps = p->adv_eps;
}

/* The examples stay within the radius of their iteration (ramped) and in
 * [-1, 1], and reach out towards it; softmax with PGD under L-inf, JEM with
 * TRADES under L2; the progress reports the radius on the [0, 1] scale. */
static void check_within_radius(const jem_dataset *ds, jem_mode mode, jem_adv_kind kind, int norm)
{
    jem_net *net = make_net(TINY, 4);
    ASSERT(net != NULL);
    if (!net) return;
    jem_train_cfg c;
    jem_train_defaults(&c, mode);
    c.batch = 16;
    c.iters = 6;
    c.log_every = 1;
    c.buffer_size = 100;
    c.sgld.steps = 2;
    c.adv.kind = kind;
    c.adv.norm = norm;
    c.adv.eps = norm == 0 ? 0.2 : 2.0;
    c.adv.steps = 3;
    c.adv.ramp = 4;
    adv_rec r = {.norm = norm, .inbox = 1, .centred = 1, .reach = 1e9};
    prog_rec pr = {0};
    c.progress = on_progress;
    c.ud = &pr;
    jem_train_hooks h = {.batch = on_batch, .adv = on_adv, .ud = &r};
    ASSERT_OK(jem_train_hooked(net, ds, NULL, &c, NULL, &h));
    free(r.batch_x);
    ASSERT_EQ_INT(r.calls, 6);
    ASSERT_MSG(r.centred, "the attack's centres are not the batch rows clamped to [-1, 1]");
    ASSERT_EQ_INT(r.batch, 16);
    int ramp_ok = 1;
    for (int i = 0; i < 6; i++) ramp_ok &= fabs(r.eps[i] - c.adv.eps * (i < 4 ? (i + 1) / 4.0 : 1.0)) < 1e-12;
    ASSERT_MSG(ramp_ok, "radii %g %g %g %g %g %g", r.eps[0], r.eps[1], r.eps[2], r.eps[3], r.eps[4], r.eps[5]);
    ASSERT_MSG(r.worst_ratio <= 1 + 1e-5, "a perturbation %.6f times the radius", r.worst_ratio);
    ASSERT_MSG(r.reach > 0.5, "an iteration's examples reach only %.3f of the radius", r.reach);
    ASSERT(r.inbox);
    ASSERT_NEAR(pr.adv_eps, c.adv.eps / 2, 1e-12);
    ASSERT(pr.n == 6 && pr.adv_acc >= 0 && pr.adv_acc <= 1);
    jem_net_free(net);
}

/* TRADES with beta 0 is the clean cross-entropy: the same weights as plain
 * training (up to the summation order of a batch twice as tall; plain SGD,
 * whose steps do not amplify rounding as Adam's do for tiny gradients). */
static void check_trades_beta0(const jem_dataset *ds)
{
    jem_net *a = make_net(TINY, 5), *b = make_net(TINY, 5);
    ASSERT(a && b);
    if (!a || !b) return;
    jem_train_cfg c;
    jem_train_defaults(&c, JEM_MODE_SOFTMAX);
    jem_opt_defaults(&c.opt, JEM_OPT_SGD);
    c.opt.momentum = 0.9f;
    c.batch = 16;
    c.iters = 10;
    c.sched.lr = 0.05f;
    ASSERT_OK(jem_train(a, ds, NULL, &c, NULL));
    c.adv.kind = JEM_ADV_TRADES;
    c.adv.beta = 0.0f;
    c.adv.steps = 2;
    ASSERT_OK(jem_train(b, ds, NULL, &c, NULL));
    const float *pa = jem_net_params(a), *pb = jem_net_params(b);
    double mx = 0, moved = 0;
    jem_net *init = make_net(TINY, 5);
    const float *p0 = init ? jem_net_params(init) : pa;
    for (size_t i = 0; i < jem_net_nparams(a); i++) {
        mx = fmax(mx, fabs((double)pa[i] - pb[i]));
        moved = fmax(moved, fabs((double)pa[i] - p0[i]));
    }
    ASSERT_MSG(mx < 1e-6 && moved > 1e-3, "TRADES with beta 0 against plain: weights differ by %.3g (moved %.3g)", mx,
               moved);
    /* beta > 0 does change them */
    jem_net *t3 = make_net(TINY, 5);
    c.adv.beta = 6.0f;
    if (t3) ASSERT_OK(jem_train(t3, ds, NULL, &c, NULL));
    double d3 = 0;
    for (size_t i = 0; t3 && i < jem_net_nparams(a); i++) d3 = fmax(d3, fabs((double)pa[i] - jem_net_params(t3)[i]));
    ASSERT_MSG(d3 > 1e-4, "TRADES with beta 6 left the weights at plain training's (%.3g)", d3);
    jem_net_free(init);
    jem_net_free(a);
    jem_net_free(b);
    jem_net_free(t3);
}

/* JEM with PGD-AT: the generative terms' E(x_data) is the clean rows'
 * energy, not the adversarial rows'. */
static void check_jem_clean_data(const jem_dataset *ds)
{
    jem_net *net = make_net(TINY, 6);
    ASSERT(net != NULL);
    if (!net) return;
    jem_train_cfg c;
    jem_train_defaults(&c, JEM_MODE_JEM);
    c.batch = 16;
    c.iters = 1;
    c.log_every = 1;
    c.buffer_size = 100;
    c.sgld.steps = 2;
    c.adv.kind = JEM_ADV_PGD;
    c.adv.eps = 1.0; /* large, so that the energies differ clearly */
    c.adv.steps = 5;
    adv_rec r = {.norm = 0, .inbox = 1, .centred = 1, .reach = 1e9, .net = net};
    prog_rec pr = {0};
    c.progress = on_progress;
    c.ud = &pr;
    jem_train_hooks h = {.adv = on_adv, .ud = &r};
    ASSERT_OK(jem_train_hooked(net, ds, NULL, &c, NULL, &h));
    ASSERT_MSG(fabs(pr.e_data - r.e_clean) < 0.05 * fabs(r.e_adv - r.e_clean) && fabs(r.e_adv - r.e_clean) > 1e-3,
               "E(x_data) %.9g, clean rows %.9g, adversarial rows %.9g", pr.e_data, r.e_clean, r.e_adv);
    jem_net_free(net);
}

/* PGD accuracy (L-inf, 10 steps) of n images at radius eps */
static double robust_acc(jem_net *net, const float *x, const int32_t *y, int n, double eps)
{
    jem_classifier cl;
    jem_classifier_net(&cl, net);
    jem_attack_cfg ac = {
        .norm = 0, .eps = eps, .step = eps / 4, .steps = 10, .restarts = 1, .random_start = 1, .seed = 9};
    uint8_t *rb = malloc((size_t)n);
    int ok = 0;
    if (rb && !jem_attack_run(&cl, x, y, n, &ac, rb, NULL))
        for (int i = 0; i < n; i++) ok += rb[i];
    free(rb);
    return (double)ok / n;
}

/* A few iterations of PGD-AT buy robustness that plain training does not. */
static void check_more_robust(const jem_dataset *ds, const jem_dataset *held)
{
    jem_net *plain = make_net(TINY, 7), *adv = make_net(TINY, 7);
    ASSERT(plain && adv);
    if (!plain || !adv) return;
    jem_train_cfg c;
    jem_train_defaults(&c, JEM_MODE_SOFTMAX);
    c.batch = 32;
    c.iters = 100;
    c.sched.lr = 3e-3f;
    ASSERT_OK(jem_train(plain, ds, NULL, &c, NULL));
    c.adv.kind = JEM_ADV_PGD;
    c.adv.eps = 0.2; /* 0.1 on the [0, 1] scale */
    c.adv.steps = 3;
    c.adv.step = 0.5;
    ASSERT_OK(jem_train(adv, ds, NULL, &c, NULL));
    const int n = 300, D = 28 * 28;
    const float *x = held->x + (size_t)(held->n - n) * D;
    const int32_t *y = held->y + (held->n - n);
    double cp = robust_acc(plain, x, y, n, 0), ca = robust_acc(adv, x, y, n, 0);
    double rp = robust_acc(plain, x, y, n, 0.2), ra = robust_acc(adv, x, y, n, 0.2);
    printf("test_advtrain: %d iterations: clean %.3f / %.3f, PGD-10 at 0.1: %.3f / %.3f (plain / PGD-AT)\n",
           (int)c.iters, cp, ca, rp, ra);
    ASSERT_MSG(ra > rp + 0.1 && ca > 0.3, "robust accuracy plain %.3f, adversarially trained %.3f (clean %.3f, %.3f)",
               rp, ra, cp, ca);
    jem_net_free(plain);
    jem_net_free(adv);
}

/* bad settings are refused before training */
static void check_refused(const jem_dataset *ds)
{
    jem_net *net = make_net(TINY, 8);
    if (!net) return;
    jem_train_cfg c;
    jem_train_defaults(&c, JEM_MODE_SOFTMAX);
    c.iters = 1;
    c.adv.kind = JEM_ADV_PGD;
    c.adv.eps = 0;
    ASSERT_ERR(jem_train(net, ds, NULL, &c, NULL), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "radius 0");
    c.adv.eps = 0.2;
    c.adv.norm = 1;
    ASSERT_ERR(jem_train(net, ds, NULL, &c, NULL), JEM_ERR_ARG);
    c.adv.norm = 0;
    c.adv.beta = -1;
    ASSERT_ERR(jem_train(net, ds, NULL, &c, NULL), JEM_ERR_ARG);
    jem_net_free(net);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_advtrain");
    check_kl();
    check_attack_batch(0);
    check_attack_batch(2);
    jem_data_set_dir("fmnist", "/usr/share/datasets/fashion-mnist");
    jem_dataset ds, held;
    jem_status s = jem_dataset_open("fmnist:test", &ds);
    ASSERT_OK(s);
    if (s) return t_finish();
    s = jem_dataset_open("fmnist:test", &held);
    ASSERT_OK(s);
    if (s) return t_finish();
    jem_dataset_truncate(&ds, 2000);
    check_refused(&ds);
    check_within_radius(&ds, JEM_MODE_SOFTMAX, JEM_ADV_PGD, 0);
    check_within_radius(&ds, JEM_MODE_JEM, JEM_ADV_TRADES, 2);
    check_trades_beta0(&ds);
    check_jem_clean_data(&ds);
    check_more_robust(&ds, &held);
    jem_dataset_free(&ds);
    jem_dataset_free(&held);
    return t_finish();
}

/* The whole network: backward to every parameter and to the input against
 * central finite differences of a double-precision reference forward built
 * from the same parameter table; NULL-gradient semantics; model files. */
#include "jem.h"
#include "nn/nn.h"
#include "nn/plan.h"
#include "test.h"
#include "gradcheck.h"

#include <omp.h>

/* double reference forward of the wide-ResNet described by arch */
static void ref_forward(const jem_arch *a, jem_net *net, const double *pd, const double *x, int B, double *logits)
{
    int C = a->in_c, H = a->in_h, W = a->in_w;
#define PD(name) (pd + jem_net_find(net, name)->offset)
    jem_conv_shape s = {B, C, H, W, a->stem, 3, 3, 1, 1};
    double *cur = malloc(sizeof(double) * B * a->stem * H * W);
    conv_d(cur, x, PD("stem.weight"), PD("stem.bias"), &s);
    C = a->stem;
    char nm[64];
    for (int i = 0; i < a->n_blocks; i++) {
        int OC = a->width[i], st = a->stride[i], OH = (H - 1) / st + 1, OW = (W - 1) / st + 1;
        size_t nin = (size_t)B * C * H * W, nmid = (size_t)B * OC * H * W, nout = (size_t)B * OC * OH * OW;
        double *a1 = malloc(sizeof(double) * nin), *h1 = malloc(sizeof(double) * nmid);
        double *h2 = malloc(sizeof(double) * nout), *sc = malloc(sizeof(double) * nout);
        for (size_t k = 0; k < nin; k++) a1[k] = act_d(cur[k], a->act, a->slope);
        jem_conv_shape s1 = {B, C, H, W, OC, 3, 3, 1, 1};
        snprintf(nm, sizeof nm, "b%d.c1.weight", i + 1);
        const double *w1 = PD(nm);
        snprintf(nm, sizeof nm, "b%d.c1.bias", i + 1);
        conv_d(h1, a1, w1, PD(nm), &s1);
        for (size_t k = 0; k < nmid; k++) h1[k] = act_d(h1[k], a->act, a->slope);
        jem_conv_shape s2 = {B, OC, H, W, OC, 3, 3, st, 1};
        snprintf(nm, sizeof nm, "b%d.c2.weight", i + 1);
        const double *w2 = PD(nm);
        snprintf(nm, sizeof nm, "b%d.c2.bias", i + 1);
        conv_d(h2, h1, w2, PD(nm), &s2);
        if (st != 1 || C != OC) {
            jem_conv_shape s3 = {B, C, H, W, OC, 1, 1, st, 0};
            snprintf(nm, sizeof nm, "b%d.sc.weight", i + 1);
            const double *w3 = PD(nm);
            snprintf(nm, sizeof nm, "b%d.sc.bias", i + 1);
            conv_d(sc, cur, w3, PD(nm), &s3);
        } else {
            memcpy(sc, cur, sizeof(double) * nout);
        }
        for (size_t k = 0; k < nout; k++) h2[k] += sc[k];
        free(cur);
        free(a1);
        free(h1);
        free(sc);
        cur = h2;
        C = OC;
        H = OH;
        W = OW;
    }
    double *g = malloc(sizeof(double) * B * C);
    for (int bc = 0; bc < B * C; bc++) {
        double acc = 0;
        for (int k = 0; k < H * W; k++) acc += act_d(cur[(size_t)bc * H * W + k], a->act, a->slope);
        g[bc] = acc / (H * W);
    }
    linear_d(logits, g, PD("fc.weight"), PD("fc.bias"), B, C, a->n_classes);
    free(cur);
    free(g);
#undef PD
}

typedef struct {
    const jem_arch *a;
    jem_net *net;
    double *p, *x, *r, *logits;
    int B;
} net_ctx;

static double net_loss(net_ctx *c)
{
    ref_forward(c->a, c->net, c->p, c->x, c->B, c->logits);
    double L = 0;
    for (int i = 0; i < c->B * c->a->n_classes; i++) L += c->logits[i] * c->r[i];
    return L;
}

static double fdn(net_ctx *c, double *v, size_t i, double eps)
{
    double keep = v[i];
    v[i] = keep + eps;
    double lp = net_loss(c);
    v[i] = keep - eps;
    double lm = net_loss(c);
    v[i] = keep;
    return (lp - lm) / (2 * eps);
}

/* a net of arch a, initialised from rng seeded with seed; NULL (after a
 * failed assertion) when it cannot be created */
static jem_net *new_net(const jem_arch *a, uint64_t seed, jem_rng *rng)
{
    jem_net *net = NULL;
    ASSERT_OK(jem_net_create(a, &net));
    if (!net) return NULL;
    jem_rng_seed(rng, seed, 0);
    jem_net_init(net, rng);
    return net;
}

/* check every gradient when max_checks <= 0, else a random sample */
static void check_net(const char *desc, int B, int max_checks, uint64_t seed)
{
    jem_arch a;
    ASSERT_OK(jem_arch_parse(desc, "test", &a));
    jem_rng rng;
    jem_net *net = new_net(&a, seed, &rng);
    if (!net) return;
    size_t np = jem_net_nparams(net), nx = (size_t)B * a.in_c * a.in_h * a.in_w, nl = (size_t)B * a.n_classes;
    float *x = malloc(sizeof(float) * nx), *r = malloc(sizeof(float) * nl), *logits = malloc(sizeof(float) * nl);
    float *dx = malloc(sizeof(float) * nx);
    fill_uniform(x, nx, &rng, -1, 1);
    fill_uniform(r, nl, &rng, -1, 1);
    /* biases are zero-ish at init in some nets; perturb so every path matters */
    float *p = jem_net_params(net);
    for (size_t i = 0; i < np; i++) p[i] *= 1.5f;
    ASSERT_OK(jem_net_forward(net, x, B, logits));
    jem_net_zero_grad(net);
    ASSERT_OK(jem_net_backward(net, r, dx, 1));
    const float *gr = jem_net_grads(net);

    net_ctx c = {&a, net, to_d(p, np), to_d(x, nx), to_d(r, nl), malloc(sizeof(double) * nl), B};
    /* forward agreement with the double reference */
    ref_forward(&a, net, c.p, c.x, B, c.logits);
    ASSERT_MSG(rel_err_fd(logits, c.logits, nl) < 1e-5, "%s: forward err %.3g", a.name,
               rel_err_fd(logits, c.logits, nl));

    /* input gradient */
    size_t nxc = max_checks > 0 && (size_t)max_checks < nx ? (size_t)max_checks : nx;
    float *an = malloc(sizeof(float) * (nxc + np));
    double *nu = malloc(sizeof(double) * (nxc + np));
    for (size_t k = 0; k < nxc; k++) {
        size_t i = nxc == nx ? k : jem_rng_below(&rng, (uint32_t)nx);
        an[k] = dx[i];
        nu[k] = fdn(&c, c.x, i, 1e-6);
    }
    double ex = rel_err_fd(an, nu, nxc);
    ASSERT_MSG(ex < 1e-4, "%s: dx err %.3g", a.name, ex);
    /* parameter gradients, per tensor */
    for (int t = 0; t < jem_net_ntensors(net); t++) {
        const jem_param *pt = jem_net_tensor(net, t);
        size_t n = max_checks > 0 && (size_t)max_checks < pt->numel ? (size_t)max_checks : pt->numel;
        for (size_t k = 0; k < n; k++) {
            size_t i = pt->offset + (n == pt->numel ? k : jem_rng_below(&rng, (uint32_t)pt->numel));
            an[k] = gr[i];
            nu[k] = fdn(&c, c.p, i, 1e-6);
        }
        double e = rel_err_fd(an, nu, n);
        ASSERT_MSG(e < 1e-4, "%s: d%s err %.3g", a.name, pt->name, e);
    }

    /* param_grads = 0 leaves gradients untouched and gives the same dx */
    float *g0 = malloc(sizeof(float) * np), *dx2 = malloc(sizeof(float) * nx);
    memcpy(g0, gr, sizeof(float) * np);
    ASSERT_OK(jem_net_forward(net, x, B, logits));
    ASSERT_OK(jem_net_backward(net, r, dx2, 0));
    ASSERT(memcmp(g0, jem_net_grads(net), sizeof(float) * np) == 0);
    ASSERT(rel_err_ff(dx, dx2, nx) < 1e-6);
    /* dx = NULL with parameter gradients: they accumulate (+=) */
    ASSERT_OK(jem_net_backward(net, r, NULL, 1));
    int acc_ok = 1;
    for (size_t i = 0; i < np; i++) acc_ok &= fabsf(jem_net_grads(net)[i] - 2 * g0[i]) <= 1e-5f * (1 + fabsf(g0[i]));
    ASSERT_MSG(acc_ok, "%s: parameter gradients do not accumulate", a.name);

    free(x);
    free(r);
    free(logits);
    free(dx);
    free(an);
    free(nu);
    free(g0);
    free(dx2);
    free(c.p);
    free(c.x);
    free(c.r);
    free(c.logits);
    jem_net_free(net);
}

static void check_threads_agree(void)
{
    jem_arch a;
    ASSERT_OK(jem_arch_load("models/wrn-fmnist.model", &a));
    jem_rng rng;
    jem_net *net = new_net(&a, 7, &rng);
    if (!net) return;
    ASSERT(jem_net_nparams(net) > 290000 && jem_net_nparams(net) < 310000);
    ASSERT_NEAR(jem_net_macs(net) / 1e6, 55.5, 1.0);
    int B = 4;
    size_t nx = (size_t)B * 784;
    float *x = malloc(sizeof(float) * nx), l1[40], l2[40];
    fill_uniform(x, nx, &rng, -1, 1);
    int th = jem_get_threads();
    jem_set_threads(1);
    ASSERT_OK(jem_net_forward(net, x, B, l1));
    jem_set_threads(2);
    ASSERT_OK(jem_net_forward(net, x, B, l2));
    jem_set_threads(th);
    ASSERT(rel_err_ff(l1, l2, 40) < 1e-6);
    /* predict in chunks equals one forward */
    float *lp = malloc(sizeof(float) * 10 * 130), *xb = malloc(sizeof(float) * 784 * 130), lf[10];
    fill_uniform(xb, 784 * 130, &rng, -1, 1);
    ASSERT_OK(jem_net_predict(net, xb, 130, lp));
    ASSERT_OK(jem_net_forward(net, xb + 129 * 784, 1, lf));
    ASSERT(rel_err_ff(lf, lp + 129 * 10, 10) < 1e-6);
    free(x);
    free(lp);
    free(xb);
    jem_net_free(net);
}

/* the blocks fused per image (block.c) against the layer-by-layer path on
 * the same net: logits, input gradient and every parameter gradient */
static void check_fused_agrees(const char *desc, int B, uint64_t seed)
{
    jem_arch a;
    ASSERT_OK(jem_arch_parse(desc, "test", &a));
    jem_rng rng;
    jem_net *net = new_net(&a, seed, &rng);
    if (!net) return;
    const size_t np = jem_net_nparams(net), nx = (size_t)B * a.in_c * a.in_h * a.in_w, nl = (size_t)B * a.n_classes;
    float *x = malloc(sizeof(float) * nx), *dl = malloc(sizeof(float) * nl);
    float *lg[2], *dx[2], *gr[2];
    fill_uniform(x, nx, &rng, -1, 1);
    fill_uniform(dl, nl, &rng, -1, 1);
    int nf = -1;
    for (int k = 0; k < 2; k++) {
        lg[k] = malloc(sizeof(float) * nl);
        dx[k] = malloc(sizeof(float) * nx);
        gr[k] = malloc(sizeof(float) * np);
        const int f = jem_net_fuse(net, k == 0);
        if (k == 0) nf = f;
        else ASSERT_EQ_INT(f, 0);
        ASSERT_OK(jem_net_forward(net, x, B, lg[k]));
        jem_net_zero_grad(net);
        ASSERT_OK(jem_net_backward(net, dl, dx[k], 1));
        memcpy(gr[k], jem_net_grads(net), sizeof(float) * np);
    }
    /* every block fuses where the AVX-512 kernels run (unless JEM_FUSE=0) */
    const jem_conv_settings *set = jem_conv_settings_get();
    if (set->avx512 && set->kernels == JEM_KERNELS_AUTO && set->fuse)
        ASSERT_MSG(nf == a.n_blocks, "%s: %d of %d blocks fused", a.name, nf, a.n_blocks);
    double el = rel_err_ff(lg[0], lg[1], nl), ex = rel_err_ff(dx[0], dx[1], nx), eg = 0;
    for (int i = 0; i < jem_net_ntensors(net); i++) {
        const jem_param *t = jem_net_tensor(net, i);
        double e = rel_err_ff(gr[0] + t->offset, gr[1] + t->offset, t->numel);
        ASSERT_MSG(e < 2e-5, "%s: %s gradient fused vs layer by layer %.3g", a.name, t->name, e);
        if (e > eg) eg = e;
    }
    ASSERT_MSG(el < 2e-6 && ex < 2e-5, "%s: fused vs layer by layer: logits %.3g, dx %.3g", a.name, el, ex);
    printf("%s: %d blocks fused; vs layer by layer: logits %.2g, dx %.2g, parameter gradients %.2g\n", a.name, nf, el,
           ex, eg);
    /* a backward pass after switching needs a new forward pass */
    jem_net_fuse(net, 1);
    ASSERT(jem_net_backward(net, dl, dx[0], 0) != JEM_OK);
    for (int k = 0; k < 2; k++) {
        free(lg[k]);
        free(dx[k]);
        free(gr[k]);
    }
    free(x);
    free(dl);
    jem_net_free(net);
}

/* jem_net_set_precision: bf16 logits and input gradient of the model
 * desc against fp32 (the Winograd products rounded: a relative error of
 * a few 1e-3 to a few 1e-2, never zero, and the same predicted class for
 * nearly every image); parameter gradients refused after a bf16 forward
 * pass; back in fp32 the results are fp32's bit for bit (the bf16 weights
 * are kept apart). Without AVX512-BF16, bf16 is refused with a message
 * that says so. */
static void check_bf16(const char *desc, int B, uint64_t seed)
{
    jem_arch a;
    ASSERT_OK(jem_arch_parse(desc, "test", &a));
    jem_rng rng;
    jem_net *net = new_net(&a, seed, &rng);
    if (!net) return;
    jem_precision p = JEM_PRECISION_FP32;
    ASSERT_ERR(jem_precision_parse("fp16", &p), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "fp16");
    ASSERT_OK(jem_precision_parse("fp32", &p));
    ASSERT_EQ_INT(p, JEM_PRECISION_FP32);
    if (!jem_bf16_supported()) {
        ASSERT_ERR(jem_net_set_precision(net, JEM_PRECISION_BF16), JEM_ERR_ARG);
        ASSERT_STR_CONTAINS(jem_last_error(), "AVX512-BF16");
        ASSERT_ERR(jem_precision_parse("bf16", &p), JEM_ERR_ARG);
        printf("%s: bf16 not tested (this CPU has no AVX512-BF16)\n", a.name);
        jem_net_free(net);
        return;
    }
    ASSERT_OK(jem_precision_parse("bf16", &p));
    ASSERT_EQ_INT(p, JEM_PRECISION_BF16);
    const size_t nx = (size_t)B * a.in_c * a.in_h * a.in_w, nl = (size_t)B * a.n_classes;
    float *x = malloc(sizeof(float) * nx), *dl = malloc(sizeof(float) * nl);
    float *lg[3], *dx[3];
    fill_uniform(x, nx, &rng, 0, 1);
    fill_uniform(dl, nl, &rng, -1, 1);
    const jem_precision order[3] = {JEM_PRECISION_FP32, JEM_PRECISION_BF16, JEM_PRECISION_FP32};
    for (int k = 0; k < 3; k++) {
        lg[k] = malloc(sizeof(float) * nl);
        dx[k] = malloc(sizeof(float) * nx);
        ASSERT_OK(jem_net_set_precision(net, order[k]));
        ASSERT_EQ_INT(jem_net_precision(net), order[k]);
        ASSERT_OK(jem_net_forward(net, x, B, lg[k]));
        ASSERT_OK(jem_net_backward(net, dl, dx[k], 0));
        if (order[k] == JEM_PRECISION_BF16) {
            ASSERT_ERR(jem_net_backward(net, dl, dx[k], 1), JEM_ERR_ARG);
            ASSERT_STR_CONTAINS(jem_last_error(), "bf16");
        }
    }
    const double el = rel_err_ff(lg[1], lg[0], nl), ex = rel_err_ff(dx[1], dx[0], nx);
    int same = 0;
    for (int b = 0; b < B; b++) {
        int i0 = 0, i1 = 0;
        for (int k = 1; k < a.n_classes; k++) {
            if (lg[0][b * a.n_classes + k] > lg[0][b * a.n_classes + i0]) i0 = k;
            if (lg[1][b * a.n_classes + k] > lg[1][b * a.n_classes + i1]) i1 = k;
        }
        same += i0 == i1;
    }
    ASSERT_MSG(el > 1e-4 && el < 5e-2, "%s: bf16 logits error %.3g against fp32", a.name, el);
    ASSERT_MSG(ex > 1e-4 && ex < 1e-1, "%s: bf16 input gradient error %.3g against fp32", a.name, ex);
    ASSERT_MSG(same >= B - B / 8, "%s: bf16 keeps the class of %d of %d images", a.name, same, B);
    ASSERT_MSG(!memcmp(lg[0], lg[2], sizeof(float) * nl) && !memcmp(dx[0], dx[2], sizeof(float) * nx),
               "%s: fp32 after bf16 differs from fp32 before", a.name);
    printf("%s: bf16 against fp32: logits %.2g, input gradient %.2g, same class %d of %d\n", a.name, el, ex, same, B);
    for (int k = 0; k < 3; k++) {
        free(lg[k]);
        free(dx[k]);
    }
    free(x);
    free(dl);
    jem_net_free(net);
}

static void check_arch_errors(void)
{
    jem_arch a;
    char buf[512];
    ASSERT_ERR(jem_arch_parse("input = 1x28x28\nclasses = 10\nstem = 16\nblocks = 32/1\ncolour = red\n", "m.model", &a),
               JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "m.model:5");
    ASSERT_STR_CONTAINS(jem_last_error(), "colour");
    ASSERT_ERR(jem_arch_parse("input = 1x28\nclasses = 10\nstem = 16\nblocks = 32/1\n", "m.model", &a), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "m.model:1");
    ASSERT_ERR(jem_arch_parse("input = 1x28x28\nclasses = 10\nstem = 16\nblocks = 32/3\n", "m.model", &a),
               JEM_ERR_FORMAT);
    ASSERT_ERR(jem_arch_parse("input = 1x28x28\nclasses = 0\nstem = 16\nblocks = 32/1\n", "m.model", &a),
               JEM_ERR_FORMAT);
    ASSERT_ERR(jem_arch_parse("input = 1x28x28\nclasses = 10\nblocks = 32/1\n", "m.model", &a), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "stem");
    ASSERT_ERR(jem_arch_load("models/does-not-exist.model", &a), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "does-not-exist.model");
    /* format round trip */
    ASSERT_OK(jem_arch_load("models/wrn-cifar.model", &a));
    jem_arch b;
    jem_arch_format(&a, buf, sizeof buf);
    ASSERT_OK(jem_arch_parse(buf, "roundtrip", &b));
    ASSERT(memcmp(&a, &b, sizeof a) == 0);
    ASSERT_EQ_INT(b.in_c, 3);
    ASSERT_EQ_INT(b.in_h, 32);
}

/* the text of a model description file into buf (n bytes) */
static void read_desc(const char *path, char *buf, size_t n)
{
    buf[0] = 0;
    FILE *f = fopen(path, "r");
    if (f) {
        size_t k = fread(buf, 1, n - 1, f);
        buf[k] = 0;
        fclose(f);
    }
    ASSERT_MSG(buf[0] != 0, "%s: empty or unreadable", path);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_net");
    /* tiny nets: every gradient; each activation; identity and conv shortcuts */
    check_net("name = tiny-lrelu\ninput = 1x6x6\nclasses = 3\nstem = 3\nblocks = 3/1 4/2 5/1\n"
              "activation = lrelu\nslope = 0.2\n",
              2, 0, 1);
    check_net("name = tiny-silu\ninput = 2x5x7\nclasses = 4\nstem = 3\nblocks = 4/2 4/1\n"
              "activation = silu\n",
              2, 0, 2);
    check_net("name = tiny-relu\ninput = 3x6x6\nclasses = 2\nstem = 2\nblocks = 3/1 3/2\n"
              "activation = relu\n",
              3, 0, 3);
    /* channels the AVX-512 kernels take (multiples of 16), so that their
     * fused stores run: identity shortcuts into Winograd (16/1, 32/1), a
     * strided indirect block (32/2), LeakyReLU and ReLU; sampled coordinates */
    check_net("name = fast-lrelu\ninput = 1x9x8\nclasses = 3\nstem = 16\nblocks = 16/1 32/2 32/1\n"
              "activation = lrelu\nslope = 0.2\n",
              2, t_quick() ? 3 : 6, 5);
    check_net("name = fast-relu\ninput = 1x8x8\nclasses = 2\nstem = 16\nblocks = 16/1 32/2\n"
              "activation = relu\n",
              2, t_quick() ? 3 : 6, 6);
    /* the reference model end to end, sampled coordinates */
    char desc[1024], cdesc[1024];
    read_desc("models/wrn-fmnist.model", desc, sizeof desc);
    check_net(desc, 1, t_quick() ? 2 : 4, 4);
    check_fused_agrees(desc, 3, 7);
    read_desc("models/wrn-cifar.model", cdesc, sizeof cdesc);
    check_fused_agrees(cdesc, 2, 10);
    check_fused_agrees("name = fused-odd\ninput = 1x9x8\nclasses = 3\nstem = 16\nblocks = 16/1 32/2 48/2\n"
                       "activation = lrelu\nslope = 0.1\n",
                       4, 8);
    check_fused_agrees("name = fused-relu\ninput = 2x12x12\nclasses = 5\nstem = 16\nblocks = 32/1 32/1\n"
                       "activation = relu\n",
                       2, 9);
    check_bf16(desc, 16, 11);
    check_threads_agree();
    check_arch_errors();
    return t_finish();
}

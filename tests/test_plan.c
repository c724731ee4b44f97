/* The convolution planner (src/nn/plan.c): the settings parsed from their
 * strings, bad values refused with the variable and value named (also
 * from the environment, through jem_net_create); the table's choice of
 * kernel and Winograd tile for the model's shapes and for the shapes at
 * the edge of each kernel's conditions, under every setting and on CPUs
 * with and without AVX-512; which blocks fuse; and that the dispatcher
 * runs the kernel the planner names. */
#include "jem.h"
#include "nn/nn.h"
#include "nn/kern.h"
#include "nn/plan.h"
#include "test.h"
#include "gradcheck.h"

#include <omp.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static const jem_conv_settings AUTO = {1, JEM_KERNELS_AUTO, 0, 1, 0};

static jem_conv_shape shape(int IC, int H, int W, int OC, int k, int stride, int pad)
{
    jem_conv_shape s = {2, IC, H, W, OC, k, k, stride, pad};
    return s;
}

static const char *const pass_name[3] = {"forward", "input gradient", "weight gradient"};

/* pass of s under set plans to kernel k with tile m */
static void expect(const jem_conv_shape *s, jem_conv_pass pass, int accumulate, int in_block,
                   const jem_conv_settings *set, jem_kernel k, int m)
{
    const jem_conv_plan p = jem_conv_plan_layer(s, pass, accumulate, in_block, set);
    ASSERT_MSG(p.kernel == k && p.tile == m,
               "%dx%dx%d->%d k%d s%d p%d, %s%s%s, avx512 %d, JEM_KERNELS %d, tile %d: %s/%d, want %s/%d", s->IC, s->H,
               s->W, s->OC, s->KH, s->stride, s->pad, pass_name[pass], accumulate ? ", adding" : "",
               in_block ? ", in a block" : "", set->avx512, (int)set->kernels, set->tile, jem_kernel_name(p.kernel),
               p.tile, jem_kernel_name(k), m);
}

/* every pass of s (layer by layer, a store that sets) plans to k, tile m */
static void expect_all(const jem_conv_shape *s, const jem_conv_settings *set, jem_kernel k, int m)
{
    for (int p = 0; p < 3; p++) expect(s, (jem_conv_pass)p, 0, 0, set, k, m);
}

static void check_parse(void)
{
    jem_conv_settings s = {1, JEM_KERNELS_GEMM, 2, 0, 0};
    ASSERT_OK(jem_conv_settings_parse(&s, NULL, NULL, NULL));
    ASSERT(s.avx512 == 1 && s.kernels == JEM_KERNELS_AUTO && s.tile == 0 && s.fuse == 1);
    ASSERT_OK(jem_conv_settings_parse(&s, "direct", "4", "0"));
    ASSERT(s.kernels == JEM_KERNELS_DIRECT && s.tile == 4 && s.fuse == 0);
    ASSERT_OK(jem_conv_settings_parse(&s, "gemm", "2", "1"));
    ASSERT(s.kernels == JEM_KERNELS_GEMM && s.tile == 2 && s.fuse == 1);
    ASSERT_OK(jem_conv_settings_parse(&s, "ref", "auto", ""));
    ASSERT(s.kernels == JEM_KERNELS_GEMM && s.tile == 0 && s.fuse == 1);
    ASSERT_OK(jem_conv_settings_parse(&s, "", "", "0"));
    ASSERT(s.kernels == JEM_KERNELS_AUTO && s.tile == 0 && s.fuse == 0);
    ASSERT_OK(jem_conv_settings_parse(&s, "auto", NULL, NULL));
    ASSERT(s.kernels == JEM_KERNELS_AUTO && s.fuse == 1);
    /* bad values: an error naming the variable and the value, and nothing
     * changed (not even the settings before the bad one) */
    const struct {
        const char *k, *t, *f, *msg;
    } bad[] = {
        {"fast", NULL, NULL, "JEM_KERNELS=fast"},       {"GEMM", NULL, NULL, "JEM_KERNELS=GEMM"},
        {"direct ", NULL, NULL, "JEM_KERNELS=direct "}, {NULL, "3", NULL, "JEM_WINOGRAD_TILE=3"},
        {"gemm", "8", NULL, "JEM_WINOGRAD_TILE=8"},     {NULL, "2x2", NULL, "JEM_WINOGRAD_TILE=2x2"},
        {"direct", "4", "yes", "JEM_FUSE=yes"},         {NULL, NULL, "2", "JEM_FUSE=2"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jem_conv_settings t = {0, JEM_KERNELS_AUTO, 0, 1, 0};
        ASSERT_ERR(jem_conv_settings_parse(&t, bad[i].k, bad[i].t, bad[i].f), JEM_ERR_ARG);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i].msg);
        ASSERT_STR_CONTAINS(jem_last_error(), "want");
        ASSERT(t.avx512 == 0 && t.kernels == JEM_KERNELS_AUTO && t.tile == 0 && t.fuse == 1);
    }
}

/* In a child (the environment is read once per process): var=val is
 * refused by jem_conv_settings_check and by jem_net_create, with a message
 * naming both, and the defaults stay in force. */
static void check_env_refused(const char *var, const char *val)
{
    int fd[2];
    if (pipe(fd)) {
        ASSERT(0);
        return;
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        close(fd[0]);
        unsetenv("JEM_KERNELS");
        unsetenv("JEM_WINOGRAD_TILE");
        unsetenv("JEM_FUSE");
        setenv(var, val, 1);
        const jem_conv_settings *s = jem_conv_settings_get();
        int ok = jem_conv_settings_check() == JEM_ERR_ARG;
        ok &= s->kernels == JEM_KERNELS_AUTO && s->tile == 0 && s->fuse == 1;
        jem_arch a;
        jem_net *net = NULL;
        ok &= jem_arch_parse("input = 1x8x8\nclasses = 2\nstem = 4\nblocks = 4/1\n", "t.model", &a) == JEM_OK;
        ok &= jem_net_create(&a, &net) == JEM_ERR_ARG && net == NULL;
        const char *m = jem_last_error();
        if (write(fd[1], m, strlen(m)) < 0) ok = 0;
        _exit(ok ? 0 : 1);
    }
    close(fd[1]);
    char msg[256] = {0};
    size_t n = 0;
    ssize_t r;
    while (n < sizeof msg - 1 && (r = read(fd[0], msg + n, sizeof msg - 1 - n)) > 0) n += (size_t)r;
    close(fd[0]);
    int st = -1;
    waitpid(pid, &st, 0);
    ASSERT_MSG(WIFEXITED(st) && WEXITSTATUS(st) == 0, "%s=%s: not refused (%s)", var, val, msg);
    char want[64];
    snprintf(want, sizeof want, "%s=%s", var, val);
    ASSERT_STR_CONTAINS(msg, want);
}

/* the process's settings are the environment's */
static void check_process_settings(void)
{
    const jem_conv_settings *s = jem_conv_settings_get();
    ASSERT(s == jem_conv_settings_get());
    ASSERT_OK(jem_conv_settings_check());
    jem_conv_settings e = *s;
    ASSERT_OK(jem_conv_settings_parse(&e, getenv("JEM_KERNELS"), getenv("JEM_WINOGRAD_TILE"), getenv("JEM_FUSE")));
    ASSERT(e.kernels == s->kernels && e.tile == s->tile && e.fuse == s->fuse);
    printf("this process: AVX-512 %s, JEM_KERNELS %s, JEM_WINOGRAD_TILE %d, JEM_FUSE %d\n", s->avx512 ? "yes" : "no",
           s->kernels == JEM_KERNELS_AUTO     ? "auto"
           : s->kernels == JEM_KERNELS_DIRECT ? "direct"
                                              : "gemm",
           s->tile, s->fuse);
}

static void check_table(void)
{
    const jem_conv_pass F = JEM_PASS_FORWARD, I = JEM_PASS_INPUT_GRAD, W = JEM_PASS_WEIGHT_GRAD;
    const jem_conv_settings t2 = {1, JEM_KERNELS_AUTO, 2, 1, 0}, t4 = {1, JEM_KERNELS_AUTO, 4, 1, 0};
    const jem_conv_settings direct = {1, JEM_KERNELS_DIRECT, 0, 1, 0}, gemm = {1, JEM_KERNELS_GEMM, 0, 1, 0};
    const jem_conv_settings noavx = {0, JEM_KERNELS_AUTO, 0, 1, 0};
    /* the reference model (wrn-fmnist): stem, the blocks' 3x3 layers
     * (28 x 28 and 14 x 14), the strided ones and the 1x1 shortcuts */
    const jem_conv_shape stem = shape(1, 28, 28, 16, 3, 1, 1), c28 = shape(32, 28, 28, 64, 3, 1, 1);
    const jem_conv_shape c14 = shape(64, 14, 14, 128, 3, 1, 1), s28 = shape(64, 28, 28, 64, 3, 2, 1);
    const jem_conv_shape sc = shape(32, 28, 28, 64, 1, 2, 0), sc1 = shape(16, 28, 28, 32, 1, 1, 0);
    expect(&stem, F, 0, 0, &AUTO, JEM_KERNEL_DIRECT, 0);
    expect(&stem, I, 0, 0, &AUTO, JEM_KERNEL_GEMM, 0); /* 1 input channel */
    expect(&stem, W, 0, 0, &AUTO, JEM_KERNEL_GEMM, 0);
    expect_all(&c28, &AUTO, JEM_KERNEL_WINOGRAD, 4);
    expect_all(&c14, &AUTO, JEM_KERNEL_WINOGRAD, 2); /* 4x4 tiles would cover 16 x 16 */
    expect_all(&s28, &AUTO, JEM_KERNEL_INDIRECT, 0);
    expect_all(&sc, &AUTO, JEM_KERNEL_GEMM, 0);
    expect_all(&sc1, &AUTO, JEM_KERNEL_GEMM, 0);
    /* the tile: 4x4 up to 15 % padding (8 x 12: none; 13 x 13: 16 x 16 is
     * 51 % more; 27 x 28: 28 x 28 is 3.7 % more; 11 x 19: 12 x 20 is
     * 14.8 % more; 11 x 34: 12 x 36 is 15.5 % more), or as forced */
    const jem_conv_shape c812 = shape(16, 8, 12, 16, 3, 1, 1), c13 = shape(16, 13, 13, 16, 3, 1, 1);
    const jem_conv_shape c27 = shape(16, 27, 28, 16, 3, 1, 1), c7 = shape(16, 7, 7, 16, 3, 1, 1);
    const jem_conv_shape c11_19 = shape(16, 11, 19, 16, 3, 1, 1), c11_34 = shape(16, 11, 34, 16, 3, 1, 1);
    expect_all(&c812, &AUTO, JEM_KERNEL_WINOGRAD, 4);
    expect_all(&c13, &AUTO, JEM_KERNEL_WINOGRAD, 2);
    expect_all(&c27, &AUTO, JEM_KERNEL_WINOGRAD, 4);
    expect_all(&c7, &AUTO, JEM_KERNEL_WINOGRAD, 2);
    expect_all(&c11_19, &AUTO, JEM_KERNEL_WINOGRAD, 4);
    expect_all(&c11_34, &AUTO, JEM_KERNEL_WINOGRAD, 2);
    expect_all(&c28, &t2, JEM_KERNEL_WINOGRAD, 2);
    expect_all(&c14, &t4, JEM_KERNEL_WINOGRAD, 4);
    expect_all(&s28, &t2, JEM_KERNEL_INDIRECT, 0);
    /* channels: Winograd and indirect need both multiples of 16; the
     * direct kernel the ones it writes multiples of 8 (and cannot add into
     * the forward output); GEMM takes the rest */
    const jem_conv_shape c8_24 = shape(8, 10, 10, 24, 3, 1, 1), c12_8 = shape(12, 10, 10, 8, 3, 1, 1);
    const jem_conv_shape c8_12 = shape(8, 10, 10, 12, 3, 1, 1), c24s2 = shape(24, 10, 10, 16, 3, 2, 1);
    expect(&c8_24, F, 0, 0, &AUTO, JEM_KERNEL_DIRECT, 0);
    expect(&c8_24, F, 1, 0, &AUTO, JEM_KERNEL_GEMM, 0);
    expect(&c8_24, I, 0, 0, &AUTO, JEM_KERNEL_DIRECT, 0);
    expect(&c8_24, W, 0, 0, &AUTO, JEM_KERNEL_GEMM, 0);
    expect(&c12_8, F, 0, 0, &AUTO, JEM_KERNEL_DIRECT, 0);
    expect(&c12_8, I, 0, 0, &AUTO, JEM_KERNEL_GEMM, 0);
    expect(&c8_12, F, 0, 0, &AUTO, JEM_KERNEL_GEMM, 0);
    expect(&c8_12, I, 0, 0, &AUTO, JEM_KERNEL_DIRECT, 0);
    expect_all(&c24s2, &AUTO, JEM_KERNEL_GEMM, 0);        /* strided, 24 channels: no direct kernel */
    expect(&c28, F, 1, 0, &AUTO, JEM_KERNEL_WINOGRAD, 4); /* Winograd adds into its output */
    /* kernel sizes and padding no fast kernel takes */
    const jem_conv_shape k5 = shape(16, 12, 12, 16, 5, 1, 2), p0 = shape(16, 12, 12, 16, 3, 1, 0);
    const jem_conv_shape s3 = shape(16, 12, 12, 16, 3, 3, 1);
    expect_all(&k5, &AUTO, JEM_KERNEL_GEMM, 0);
    expect_all(&p0, &AUTO, JEM_KERNEL_GEMM, 0);
    expect_all(&s3, &AUTO, JEM_KERNEL_INDIRECT, 0); /* indirect takes any stride */
    /* JEM_KERNELS=direct: no Winograd; its stride-1 layers go to the direct
     * kernel, their weight gradients to indirect */
    expect(&c28, F, 0, 0, &direct, JEM_KERNEL_DIRECT, 0);
    expect(&c28, I, 0, 0, &direct, JEM_KERNEL_DIRECT, 0);
    expect(&c28, W, 0, 0, &direct, JEM_KERNEL_INDIRECT, 0);
    expect_all(&s28, &direct, JEM_KERNEL_INDIRECT, 0);
    expect(&stem, F, 0, 0, &direct, JEM_KERNEL_DIRECT, 0);
    /* JEM_KERNELS=gemm, and a CPU without AVX-512: GEMM everywhere */
    const jem_conv_shape *all[] = {&stem, &c28, &c14, &s28, &sc, &c8_24, &c812};
    for (size_t i = 0; i < sizeof all / sizeof all[0]; i++) {
        expect_all(all[i], &gemm, JEM_KERNEL_GEMM, 0);
        expect_all(all[i], &noavx, JEM_KERNEL_GEMM, 0);
        expect(all[i], F, 0, 1, &noavx, JEM_KERNEL_NONE, 0);
    }
    /* inside a fused block: the channels-innermost kernels only */
    expect(&c28, I, 0, 1, &AUTO, JEM_KERNEL_WINOGRAD, 4);
    expect(&s28, W, 0, 1, &AUTO, JEM_KERNEL_INDIRECT, 0);
    expect(&sc, F, 0, 1, &AUTO, JEM_KERNEL_POINTWISE, 0);
    expect(&sc1, W, 0, 1, &AUTO, JEM_KERNEL_POINTWISE, 0);
    expect(&c8_24, F, 0, 1, &AUTO, JEM_KERNEL_NONE, 0);
    expect(&k5, F, 0, 1, &AUTO, JEM_KERNEL_NONE, 0);
    expect(&c28, F, 0, 1, &gemm, JEM_KERNEL_NONE, 0);
}

/* a wide-ResNet block IC -> OC of stride st on H x W */
static jem_block_plan block(int IC, int OC, int H, int W, int st, jem_act act, float slope,
                            const jem_conv_settings *set)
{
    const jem_conv_shape s1 = shape(IC, H, W, OC, 3, 1, 1), s2 = shape(OC, H, W, OC, 3, st, 1);
    const jem_conv_shape ssc = shape(IC, H, W, OC, 1, st, 0);
    return jem_conv_plan_block(&s1, &s2, st != 1 || IC != OC ? &ssc : NULL, act, slope, set);
}

static void check_blocks(void)
{
    const jem_act L = JEM_ACT_LRELU;
    const jem_conv_settings nofuse = {1, JEM_KERNELS_AUTO, 0, 0, 0}, direct = {1, JEM_KERNELS_DIRECT, 0, 1, 0};
    const jem_conv_settings noavx = {0, JEM_KERNELS_AUTO, 0, 1, 0}, t2 = {1, JEM_KERNELS_AUTO, 2, 1, 0};
    /* the reference model's three blocks */
    jem_block_plan p = block(16, 32, 28, 28, 1, L, 0.2f, &AUTO);
    ASSERT(p.fused && p.c1.kernel == JEM_KERNEL_WINOGRAD && p.c1.tile == 4 && p.c2.kernel == JEM_KERNEL_WINOGRAD &&
           p.c2.tile == 4 && p.sc.kernel == JEM_KERNEL_POINTWISE);
    ASSERT(p.act.act == JEM_ACT_LRELU && p.act.slope == 0.2f);
    p = block(32, 64, 28, 28, 2, L, 0.2f, &AUTO);
    ASSERT(p.fused && p.c1.tile == 4 && p.c2.kernel == JEM_KERNEL_INDIRECT && p.c2.tile == 0 &&
           p.sc.kernel == JEM_KERNEL_POINTWISE);
    p = block(64, 128, 14, 14, 2, L, 0.2f, &AUTO);
    ASSERT(p.fused && p.c1.kernel == JEM_KERNEL_WINOGRAD && p.c1.tile == 2 && p.c2.kernel == JEM_KERNEL_INDIRECT);
    p = block(64, 128, 28, 28, 1, L, 0.2f, &t2);
    ASSERT(p.fused && p.c1.tile == 2 && p.c2.tile == 2);
    /* an identity shortcut */
    p = block(32, 32, 12, 12, 1, JEM_ACT_RELU, 0.3f, &AUTO);
    ASSERT(p.fused && p.sc.kernel == JEM_KERNEL_NONE && p.act.act == JEM_ACT_RELU && p.act.slope == 0.0f);
    /* what keeps a block layer by layer: JEM_FUSE=0, JEM_KERNELS=direct, no
     * AVX-512, an activation the kernels do not apply, channels not
     * multiples of 16 */
    ASSERT(!block(16, 32, 28, 28, 1, L, 0.2f, &nofuse).fused);
    ASSERT(!block(16, 32, 28, 28, 1, L, 0.2f, &direct).fused);
    ASSERT(!block(16, 32, 28, 28, 1, L, 0.2f, &noavx).fused);
    ASSERT(!block(16, 32, 28, 28, 1, JEM_ACT_SILU, 0.0f, &AUTO).fused);
    ASSERT(!block(16, 32, 28, 28, 1, L, 1.5f, &AUTO).fused);
    ASSERT(block(16, 32, 28, 28, 1, L, 1.0f, &AUTO).fused);
    ASSERT(!block(16, 24, 28, 28, 1, L, 0.2f, &AUTO).fused);
    ASSERT(!block(8, 32, 28, 28, 2, L, 0.2f, &AUTO).fused);
    /* shapes that do not chain, an identity shortcut across a change of
     * channels */
    jem_conv_shape s1 = shape(16, 8, 8, 32, 3, 1, 1), s2 = shape(16, 8, 8, 32, 3, 1, 1);
    ASSERT(!jem_conv_plan_block(&s1, &s2, NULL, L, 0.2f, &AUTO).fused);
    s2 = shape(32, 8, 8, 32, 3, 1, 1);
    ASSERT(!jem_conv_plan_block(&s1, &s2, NULL, L, 0.2f, &AUTO).fused);
    jem_conv_shape ssc = shape(16, 8, 8, 32, 1, 1, 0);
    ASSERT(jem_conv_plan_block(&s1, &s2, &ssc, L, 0.2f, &AUTO).fused);
}

/* the functions of a kernel the planner names (NULL for GEMM, which only
 * the dispatcher runs) */
static const jem_kernel_ops *ops(jem_kernel k)
{
    return k == JEM_KERNEL_WINOGRAD   ? &jem_kernel_winograd
           : k == JEM_KERNEL_INDIRECT ? &jem_kernel_indirect
           : k == JEM_KERNEL_DIRECT   ? &jem_kernel_direct
                                      : NULL;
}

/* the dispatcher runs each pass on the kernel the planner names, with its
 * tile: its results are bit for bit the named kernel's (for GEMM: right,
 * at least). The backward pass asks for both gradients at once. */
static void check_dispatch(const jem_conv_shape *s)
{
    const jem_conv_settings *set = jem_conv_settings_get();
    jem_rng r;
    jem_rng_seed(&r, 3, (uint64_t)(s->IC + s->H));
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad), OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    const size_t nx = (size_t)s->B * s->IC * s->H * s->W, no = (size_t)s->B * s->OC * OH * OW;
    const size_t nw = (size_t)s->OC * s->IC * s->KH * s->KW;
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * s->OC);
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no), *d = malloc(sizeof(float) * no);
    float *g1 = calloc(nx, sizeof(float)), *g2 = calloc(nx, sizeof(float));
    float *dw1 = calloc(nw, sizeof(float)), *dw2 = calloc(nw, sizeof(float));
    float *db1 = calloc((size_t)s->OC, sizeof(float)), *db2 = calloc((size_t)s->OC, sizeof(float));
    float *ws = malloc(sizeof(float) * jem_conv2d_ws(s) * omp_get_max_threads());
    fill_uniform(x, nx, &r, -1, 1);
    fill_uniform(w, nw, &r, -1, 1);
    fill_uniform(b, s->OC, &r, -1, 1);
    fill_uniform(d, no, &r, -1, 1);
    jem_conv_plan p[3];
    for (int k = 0; k < 3; k++) p[k] = jem_conv_plan_layer(s, (jem_conv_pass)k, 0, 0, set);
#define NOT_NAMED "%dx%dx%d->%d s%d: the dispatcher's %s is not %s's"
    jem_conv2d_forward(o1, x, w, b, s, NULL, ws);
    if (ops(p[0].kernel)) {
        ASSERT(ops(p[0].kernel)->forward(o2, x, w, b, s, &jem_store_set, p[0].tile, ws) == 0);
        ASSERT_MSG(!memcmp(o1, o2, sizeof(float) * no), NOT_NAMED, s->IC, s->H, s->W, s->OC, s->stride, "forward pass",
                   jem_kernel_name(p[0].kernel));
    } else {
        jem_conv2d_forward_ref(o2, x, w, b, s);
        ASSERT(rel_err_ff(o1, o2, no) < 1e-5);
    }
    jem_conv2d_backward(g1, dw1, db1, d, x, w, s, NULL, ws);
    if (ops(p[1].kernel)) {
        ASSERT(ops(p[1].kernel)->backward(g2, NULL, NULL, d, x, w, s, &jem_store_add, p[1].tile, ws) == 0);
        ASSERT_MSG(!memcmp(g1, g2, sizeof(float) * nx), NOT_NAMED, s->IC, s->H, s->W, s->OC, s->stride,
                   "input gradient", jem_kernel_name(p[1].kernel));
    } else {
        jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, s);
        ASSERT(rel_err_ff(g1, g2, nx) < 1e-5);
    }
    if (ops(p[2].kernel)) {
        ASSERT(ops(p[2].kernel)->backward(NULL, dw2, db2, d, x, w, s, &jem_store_add, p[2].tile, ws) == 0);
        ASSERT_MSG(!memcmp(dw1, dw2, sizeof(float) * nw) && !memcmp(db1, db2, sizeof(float) * s->OC), NOT_NAMED, s->IC,
                   s->H, s->W, s->OC, s->stride, "weight gradient", jem_kernel_name(p[2].kernel));
    } else {
        jem_conv2d_backward_ref(NULL, dw2, db2, d, x, w, s);
        ASSERT(rel_err_ff(dw1, dw2, nw) < 1e-5 && rel_err_ff(db1, db2, (size_t)s->OC) < 1e-5);
    }
    free(x);
    free(w);
    free(b);
    free(o1);
    free(o2);
    free(d);
    free(g1);
    free(g2);
    free(dw1);
    free(dw2);
    free(db1);
    free(db2);
    free(ws);
#undef NOT_NAMED
}

int main(void)
{
    TEST_MAIN_BEGIN("test_plan");
    /* first, before this process reads its own settings */
    check_env_refused("JEM_KERNELS", "fastest");
    check_env_refused("JEM_WINOGRAD_TILE", "3");
    check_env_refused("JEM_FUSE", "no");
    check_parse();
    check_process_settings();
    check_table();
    check_blocks();
    ASSERT(!strcmp(jem_kernel_name(JEM_KERNEL_WINOGRAD), "winograd") &&
           !strcmp(jem_kernel_name(JEM_KERNEL_POINTWISE), "pointwise") &&
           !strcmp(jem_kernel_name(JEM_KERNEL_NONE), "none"));
    jem_conv_shape d[] = {shape(16, 28, 28, 32, 3, 1, 1), shape(16, 14, 14, 32, 3, 1, 1), shape(32, 9, 7, 16, 3, 2, 1),
                          shape(8, 9, 9, 16, 3, 1, 1), shape(3, 9, 9, 5, 3, 1, 1)};
    for (size_t i = 0; i < sizeof d / sizeof d[0]; i++) check_dispatch(&d[i]);
    return t_finish();
}

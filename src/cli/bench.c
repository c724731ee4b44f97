/* jem bench: images/s of the four workloads that decide training speed,
 * per-layer convolution GFLOP/s against the measured sgemm rate with the
 * kernel and tile the planner chose for each pass, peak memory. Medians of
 * several repetitions after a warm-up. */
#include "cli/cli.h"
#include "io/json.h"
#include "nn/nn.h"
#include "nn/plan.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <cblas.h>

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int cmp_d(const void *a, const void *b)
{
    double x = *(const double *)a, y = *(const double *)b;
    return x < y ? -1 : x > y;
}

static double median(double *v, int n)
{
    qsort(v, (size_t)n, sizeof *v, cmp_d);
    return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

static void fill(float *x, size_t n, jem_rng *r)
{
    for (size_t i = 0; i < n; i++) x[i] = 2.0f * jem_rng_uniform(r) - 1.0f;
}

typedef struct {
    jem_net *net;
    jem_opt  opt;
    float   *x, *logits, *dl, *dx, *lp;
    int32_t *y;
    size_t   D;
    int      K;
} bctx;

static jem_status w_forward(bctx *b, int B) { return jem_net_forward(b->net, b->x, B, b->logits); }

static jem_status w_train(bctx *b, int B)
{
    jem_status s = jem_net_forward(b->net, b->x, B, b->logits);
    if (s) return s;
    jem_softmax_xent(b->logits, b->y, B, b->K, b->dl, 1.0f, NULL);
    jem_net_zero_grad(b->net);
    s = jem_net_backward(b->net, b->dl, NULL, 1);
    if (s) return s;
    jem_opt_step(&b->opt, jem_net_params(b->net), jem_net_grads(b->net), 1e-6f);
    return JEM_OK;
}

static jem_status w_sgld(bctx *b, int B, int K)
{
    jem_sgld_cfg c;
    jem_sgld_defaults(&c);
    c.steps = K;
    c.step_size = 1e-3f;
    return jem_sgld_run(jem_net_energy, b->net, b->x + (size_t)B * b->D, B, (int)b->D, NULL, NULL, &c, 1, 0, NULL);
}

/* one JEM iteration: K SGLD steps on B chains, then a training step on the
 * B data images and the B samples */
static jem_status w_jem(bctx *b, int B, int K)
{
    jem_status s = w_sgld(b, B, K);
    if (s) return s;
    return w_train(b, 2 * B);
}

/* the four workloads: forward (256), training step (64), SGLD step (64),
 * JEM iteration (64, K steps) */
static jem_status run_workload(bctx *b, int w, int K)
{
    switch (w) {
    case 0: return w_forward(b, 256);
    case 1: return w_train(b, 64);
    case 2: return w_sgld(b, 64, 1);
    default: return w_jem(b, 64, K);
    }
}

typedef struct { const char *name; int batch; double img_s, ms; } wres;

/* a plan's kernel and tile as text: "winograd F(4x4)", "indirect" */
static const char *plan_str(jem_conv_plan p, char *buf, size_t n)
{
    if (p.kernel == JEM_KERNEL_WINOGRAD) snprintf(buf, n, "winograd F(%dx%d)", p.tile, p.tile);
    else snprintf(buf, n, "%s", jem_kernel_name(p.kernel));
    return buf;
}

/* each block fused per image (block.c), as the network runs it, batch 64:
 * forward (the two 3x3 convolutions and the shortcut), input gradient, and
 * input and weight gradients (those of the shortcut included); effective
 * GFLOP/s of the two 3x3 convolutions (the forward pass counts the
 * shortcut's FLOPs too, the last column those of both gradients). The
 * transformed weights are cached between repetitions, as between SGLD
 * steps. Every block's plan is listed, fused or not. */
static void blocks_bench(jem_jw *jw, const jem_arch *a, int reps, int json, jem_rng *rng, double *t)
{
    jem_jw_key(jw, "blocks");
    jem_jw_arr_begin(jw);
    if (!json)
        printf("\nfused blocks (per image; forward with the shortcut): effective GFLOP/s\n%-10s %-22s %9s %9s %9s   %s\n",
               "block", "shape (batch 64)", "fwd", "bwd-in", "bwd-in+w", "plan: conv1 / conv2 / shortcut");
    int C = a->stem, H = a->in_h, W = a->in_w;
    /* the planner's choice for each block: between two fused blocks the
     * activations stay channels innermost */
    jem_block_plan bp[JEM_MAX_BLOCKS];
    int fus[JEM_MAX_BLOCKS + 1] = {0};
    for (int i = 0; i < a->n_blocks; i++) {
        const int OC = a->width[i], st = a->stride[i];
        const jem_conv_shape s1 = {64, C, H, W, OC, 3, 3, 1, 1}, s2 = {64, OC, H, W, OC, 3, 3, st, 1};
        const jem_conv_shape ssc = {64, C, H, W, OC, 1, 1, st, 0};
        bp[i] = jem_conv_plan_block(&s1, &s2, st != 1 || C != OC ? &ssc : NULL, a->act, a->slope,
                                    jem_conv_settings_get());
        fus[i] = bp[i].fused;
        C = OC; H = (H - 1) / st + 1; W = (W - 1) / st + 1;
    }
    C = a->stem; H = a->in_h; W = a->in_w;
    for (int i = 0; i < a->n_blocks; i++) {
        const int OC = a->width[i], st = a->stride[i], OH = (H - 1) / st + 1, OW = (W - 1) / st + 1;
        jem_block_desc d;
        memset(&d, 0, sizeof d);
        d.s1 = (jem_conv_shape){64, C, H, W, OC, 3, 3, 1, 1};
        d.s2 = (jem_conv_shape){64, OC, H, W, OC, 3, 3, st, 1};
        d.plan = &bp[i];
        d.in_hwc = i > 0 && fus[i - 1];
        d.out_hwc = fus[i + 1];
        char name[16], shp[48], k1[32], k2[32], ksc[32];
        snprintf(name, sizeof name, "b%d", i + 1);
        snprintf(shp, sizeof shp, "%dx%dx%d->%d s%d", C, H, W, OC, st);
        plan_str(bp[i].c1, k1, sizeof k1);
        plan_str(bp[i].c2, k2, sizeof k2);
        if (bp[i].sc.kernel == JEM_KERNEL_NONE && st == 1 && C == OC) snprintf(ksc, sizeof ksc, "identity");
        else plan_str(bp[i].sc, ksc, sizeof ksc);
        if (!fus[i]) {
            if (!json) printf("%-10s %-22s %9s %9s %9s   layer by layer\n", name, shp, "-", "-", "-");
            jem_jw_obj_begin(jw);
            jem_jw_kstr(jw, "name", name);
            jem_jw_kstr(jw, "shape", shp);
            jem_jw_kbool(jw, "fused", 0);
            jem_jw_obj_end(jw);
        } else {
            const size_t nin = (size_t)64 * C * H * W, nmid = (size_t)64 * OC * H * W, nout = (size_t)64 * OC * OH * OW;
            const int sc = st != 1 || C != OC;
            const size_t nw1 = (size_t)OC * C * 9, nw2 = (size_t)OC * OC * 9, nsc = sc ? (size_t)OC * C + OC : 0;
            float *a1 = malloc(sizeof(float) * nin), *da1 = malloc(sizeof(float) * nin);
            float *h1 = malloc(sizeof(float) * nmid), *out = malloc(sizeof(float) * nout);
            float *dout = malloc(sizeof(float) * nout), *act = malloc(sizeof(float) * nout);
            float *w = malloc(sizeof(float) * (2 * (nw1 + nw2 + 2 * OC) + nsc));
            float *ws = malloc(sizeof(float) * jem_block_ws(d.plan, &d.s1, &d.s2) * omp_get_max_threads());
            jem_wcache *wc[5] = {NULL, NULL, NULL, NULL, NULL};
            if (!a1 || !da1 || !h1 || !out || !dout || !act || !w || !ws) {
                fprintf(stderr, "jem bench: error: out of memory for block %d\n", i + 1);
            } else {
                fill(a1, nin, rng); fill(dout, nout, rng); fill(w, 2 * (nw1 + nw2 + 2 * OC) + nsc, rng);
                memset(out, 0, sizeof(float) * nout);
                float *g = w + nw1 + nw2 + 2 * OC;
                d.w1 = w; d.b1 = w + nw1; d.w2 = w + nw1 + OC; d.b2 = w + nw1 + OC + nw2;
                d.wc1f = &wc[0]; d.wc2f = &wc[1]; d.wc1b = &wc[2]; d.wc2b = &wc[3]; d.wcsc = &wc[4];
                if (sc) { d.wsc = w + 2 * (nw1 + nw2 + 2 * OC); d.bsc = d.wsc + (size_t)OC * C; }
                /* the forward pass includes the shortcut; the gradients do not */
                const double lc = 2.0 * 64 * ((double)OC * H * W * C * 9 + (double)OC * OH * OW * OC * 9);
                const double lf = lc + (sc ? 2.0 * 64 * OC * OH * OW * C : 0.0);
                double gf[3];
                int ok = 1;
                for (int k = 0; k < 3 && ok; k++) {
                    for (int rep = -1; rep < reps && ok; rep++) {
                        double t0 = now_s();
                        if (k == 0) ok = !jem_block_forward(h1, out, d.out_hwc ? NULL : act, a1, &d, ws);
                        else if (k == 1)
                            ok = !jem_block_backward(da1, NULL, NULL, NULL, NULL, NULL, NULL, dout, a1, h1, &d, ws);
                        else
                            ok = !jem_block_backward(da1, g, g + nw1, g + nw1 + OC, g + nw1 + OC + nw2,
                                                     sc ? g + 2 * (nw1 + OC) : NULL, sc ? g + 2 * (nw1 + OC) + (size_t)OC * C : NULL,
                                                     dout, a1, h1, &d, ws);
                        if (rep >= 0) t[rep] = now_s() - t0;
                    }
                    gf[k] = (k == 0 ? lf : k == 1 ? lc : 2 * lc) / median(t, reps) / 1e9; /* k 2: both gradients */
                }
                if (!ok) fprintf(stderr, "jem bench: error: out of memory for block %d\n", i + 1);
                else if (!json)
                    printf("%-10s %-22s %9.1f %9.1f %9.1f   %s / %s / %s\n", name, shp, gf[0], gf[1], gf[2], k1, k2,
                           ksc);
                if (ok) {
                    jem_jw_obj_begin(jw);
                    jem_jw_kstr(jw, "name", name);
                    jem_jw_kstr(jw, "shape", shp);
                    jem_jw_kbool(jw, "fused", 1);
                    jem_jw_kstr(jw, "kernel_conv1", jem_kernel_name(bp[i].c1.kernel));
                    jem_jw_kint(jw, "tile_conv1", bp[i].c1.tile);
                    jem_jw_kstr(jw, "kernel_conv2", jem_kernel_name(bp[i].c2.kernel));
                    jem_jw_kint(jw, "tile_conv2", bp[i].c2.tile);
                    jem_jw_kstr(jw, "kernel_shortcut", bp[i].sc.kernel == JEM_KERNEL_NONE ? "identity"
                                                                                           : jem_kernel_name(bp[i].sc.kernel));
                    jem_jw_kdouble(jw, "forward_gflops", gf[0]);
                    jem_jw_kdouble(jw, "backward_input_gflops", gf[1]);
                    jem_jw_kdouble(jw, "backward_input_weight_gflops", gf[2]);
                    jem_jw_kdouble(jw, "mflop_forward", lf / 1e6);
                    jem_jw_obj_end(jw);
                }
            }
            for (int k = 0; k < 5; k++) jem_wcache_free(wc[k]);
            free(a1); free(da1); free(h1); free(out); free(dout); free(act); free(w); free(ws);
        }
        C = OC; H = OH; W = OW;
    }
    jem_jw_arr_end(jw);
}

int cmd_bench(int argc, char **argv)
{
    const char *model = "models/wrn-fmnist.model";
    int threads = 0, reps = 5, json = 0, layers = 0, scaling = 0, K = 20;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "model description"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"reps", OPT_INT, &reps, "repetitions per workload (median reported)"},
        {"sgld-steps", OPT_INT, &K, "SGLD steps in the JEM iteration"},
        {"layers", OPT_FLAG, &layers, "per-layer and per-block convolution GFLOP/s and sgemm rates"},
        {"scaling", OPT_FLAG, &scaling, "JEM iteration time against batch size and K, images/s at 1 and 2 threads"},
        {"json", OPT_FLAG, &json, "print JSON"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("bench", "[options]", opts, argc, argv, 2, pos, 0, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (reps < 1 || reps > 1000 || K < 1) { fprintf(stderr, "jem bench: error: bad --reps or --sgld-steps\n"); return 2; }
    /* the kernel settings in the environment, before anything is loaded */
    jem_status s = jem_conv_settings_check();
    if (s) { fprintf(stderr, "jem bench: error: %s\n", jem_last_error()); return 2; }
    jem_set_threads(threads);
    jem_arch a;
    s = jem_arch_load(model, &a);
    if (s) return cli_fail("bench", s);
    bctx b;
    memset(&b, 0, sizeof b);
    s = jem_net_create(&a, &b.net);
    if (s) return cli_fail("bench", s);
    jem_rng rng;
    jem_rng_seed(&rng, 1, 0);
    jem_net_init(b.net, &rng);
    jem_opt_cfg oc;
    jem_opt_defaults(&oc, JEM_OPT_ADAM);
    s = jem_opt_init(&b.opt, &oc, jem_net_nparams(b.net));
    if (s) { jem_net_free(b.net); return cli_fail("bench", s); }
    b.D = (size_t)a.in_c * a.in_h * a.in_w;
    b.K = a.n_classes;
    const int NMAX = 512;
    b.x = malloc(sizeof(float) * b.D * NMAX);
    b.logits = malloc(sizeof(float) * b.K * NMAX);
    b.dl = malloc(sizeof(float) * b.K * NMAX);
    b.y = malloc(sizeof(int32_t) * NMAX);
    if (!b.x || !b.logits || !b.dl || !b.y) { fprintf(stderr, "jem bench: error: out of memory\n"); return 1; }
    fill(b.x, b.D * NMAX, &rng);
    for (int i = 0; i < NMAX; i++) b.y[i] = (int32_t)jem_rng_below(&rng, (uint32_t)b.K);

    const double flops = 2.0 * jem_net_macs(b.net);
    wres res[4] = {{"forward", 256, 0, 0}, {"train_step", 64, 0, 0}, {"sgld_step", 64, 0, 0}, {"jem_iteration", 64, 0, 0}};
    double *t = malloc(sizeof(double) * reps);
    for (int w = 0; w < 4; w++) {
        for (int rep = -1; rep < reps; rep++) {
            double t0 = now_s();
            s = run_workload(&b, w, K);
            if (s) { free(t); return cli_fail("bench", s); }
            if (rep >= 0) t[rep] = now_s() - t0;
        }
        double m = median(t, reps);
        res[w].ms = m * 1e3;
        res[w].img_s = res[w].batch / m;
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    jem_jw jw;
    jem_jw_init(&jw);
    jem_jw_obj_begin(&jw);
    jem_jw_kstr(&jw, "model", a.name);
    jem_jw_kint(&jw, "threads", jem_get_threads());
    jem_jw_kint(&jw, "reps", reps);
    jem_jw_kint(&jw, "sgld_steps", K);
    jem_jw_kdouble(&jw, "gflop_per_image_forward", flops / 1e9);
    jem_jw_key(&jw, "workloads");
    jem_jw_obj_begin(&jw);
    if (!json) printf("jem bench: model %s, %d threads, median of %d\n\n%-14s %6s %10s %10s\n", a.name,
                      jem_get_threads(), reps, "workload", "batch", "images/s", "ms");
    for (int w = 0; w < 4; w++) {
        jem_jw_key(&jw, res[w].name);
        jem_jw_obj_begin(&jw);
        jem_jw_kint(&jw, "batch", res[w].batch);
        jem_jw_kdouble(&jw, "images_per_s", res[w].img_s);
        jem_jw_kdouble(&jw, "ms", res[w].ms);
        jem_jw_obj_end(&jw);
        if (!json) printf("%-14s %6d %10.1f %10.2f\n", res[w].name, res[w].batch, res[w].img_s, res[w].ms);
    }
    jem_jw_obj_end(&jw);
    jem_jw_kdouble(&jw, "forward_gflops", flops * res[0].img_s / 1e9);
    if (!json) printf("\nforward: %.1f GFLOP/s effective\n", flops * res[0].img_s / 1e9);

    if (layers) {
        /* sgemm reference rates */
        int sizes[2] = {128, 2048};
        jem_jw_key(&jw, "sgemm_gflops");
        jem_jw_obj_begin(&jw);
        double sg[2];
        for (int k = 0; k < 2; k++) {
            int n = sizes[k];
            float *A = malloc(sizeof(float) * n * n), *B2 = malloc(sizeof(float) * n * n), *C = malloc(sizeof(float) * n * n);
            fill(A, (size_t)n * n, &rng); fill(B2, (size_t)n * n, &rng);
            int rr = n <= 256 ? 200 : 3;
            for (int rep = -1; rep < reps; rep++) {
                double t0 = now_s();
                for (int i = 0; i < rr; i++)
                    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, n, n, n, 1, A, n, B2, n, 0, C, n);
                if (rep >= 0) t[rep] = (now_s() - t0) / rr;
            }
            sg[k] = 2.0 * n * n * n / median(t, reps) / 1e9;
            char key[16];
            snprintf(key, sizeof key, "%d", n);
            jem_jw_kdouble(&jw, key, sg[k]);
            free(A); free(B2); free(C);
        }
        jem_jw_obj_end(&jw);
        if (!json)
            printf("\nsgemm: %.1f GFLOP/s at 128^3, %.1f at 2048^3\n\n"
                   "convolutions: effective GFLOP/s (direct-convolution FLOPs / time) and the planner's kernels\n"
                   "%-10s %-22s %9s %9s %9s   %s\n",
                   sg[0], sg[1], "layer", "shape (batch 64)", "fwd", "bwd-in", "bwd-w", "plan: fwd / bwd-in / bwd-w");
        /* every convolution of the model at batch 64 */
        jem_jw_key(&jw, "layers");
        jem_jw_arr_begin(&jw);
        int C = a.in_c, H = a.in_h, W = a.in_w;
        int nconv = 0;
        jem_conv_shape shapes[3 * JEM_MAX_BLOCKS + 1];
        char names[3 * JEM_MAX_BLOCKS + 1][16];
        shapes[nconv] = (jem_conv_shape){64, C, H, W, a.stem, 3, 3, 1, 1};
        snprintf(names[nconv++], 16, "stem");
        C = a.stem;
        for (int i = 0; i < a.n_blocks; i++) {
            int OC = a.width[i], st = a.stride[i];
            shapes[nconv] = (jem_conv_shape){64, C, H, W, OC, 3, 3, 1, 1};
            snprintf(names[nconv++], 16, "b%d.c1", i + 1);
            shapes[nconv] = (jem_conv_shape){64, OC, H, W, OC, 3, 3, st, 1};
            snprintf(names[nconv++], 16, "b%d.c2", i + 1);
            if (st != 1 || C != OC) {
                shapes[nconv] = (jem_conv_shape){64, C, H, W, OC, 1, 1, st, 0};
                snprintf(names[nconv++], 16, "b%d.sc", i + 1);
            }
            C = OC; H = (H - 1) / st + 1; W = (W - 1) / st + 1;
        }
        for (int l = 0; l < nconv; l++) {
            jem_conv_shape *sh = &shapes[l];
            int OH = jem_conv_out(sh->H, sh->KH, sh->stride, sh->pad), OW = jem_conv_out(sh->W, sh->KW, sh->stride, sh->pad);
            size_t nin = (size_t)sh->B * sh->IC * sh->H * sh->W, nout = (size_t)sh->B * sh->OC * OH * OW;
            size_t nw = (size_t)sh->OC * sh->IC * sh->KH * sh->KW;
            float *in = malloc(sizeof(float) * nin), *out = malloc(sizeof(float) * nout), *wt = malloc(sizeof(float) * nw);
            float *din = malloc(sizeof(float) * nin), *dw = malloc(sizeof(float) * nw), *bias = calloc(sh->OC, sizeof(float));
            float *ws = malloc(sizeof(float) * jem_conv2d_ws(sh) * omp_get_max_threads());
            fill(in, nin, &rng); fill(wt, nw, &rng); fill(out, nout, &rng);
            double lf = 2.0 * sh->B * (double)sh->OC * OH * OW * sh->IC * sh->KH * sh->KW;
            double g[3];
            for (int k = 0; k < 3; k++) {
                for (int rep = -1; rep < reps; rep++) {
                    double t0 = now_s();
                    if (k == 0) jem_conv2d_forward(out, in, wt, bias, sh, NULL, ws);
                    else if (k == 1) jem_conv2d_backward(din, NULL, NULL, out, in, wt, sh, NULL, ws);
                    else jem_conv2d_backward(NULL, dw, NULL, out, in, wt, sh, NULL, ws);
                    if (rep >= 0) t[rep] = now_s() - t0;
                }
                g[k] = lf / median(t, reps) / 1e9;
            }
            char shp[48], kp[3][32];
            snprintf(shp, sizeof shp, "%dx%dx%d->%d k%d s%d", sh->IC, sh->H, sh->W, sh->OC, sh->KH, sh->stride);
            /* the planner's choice for each pass, as measured: a plain store */
            jem_conv_plan pl[3];
            for (int k = 0; k < 3; k++) {
                pl[k] = jem_conv_plan_layer(sh, (jem_conv_pass)k, 0, 0, jem_conv_settings_get());
                plan_str(pl[k], kp[k], sizeof kp[k]);
            }
            if (!json)
                printf("%-10s %-22s %9.1f %9.1f %9.1f   %s / %s / %s\n", names[l], shp, g[0], g[1], g[2], kp[0], kp[1],
                       kp[2]);
            jem_jw_obj_begin(&jw);
            jem_jw_kstr(&jw, "name", names[l]);
            jem_jw_kstr(&jw, "shape", shp);
            jem_jw_kdouble(&jw, "forward_gflops", g[0]);
            jem_jw_kdouble(&jw, "backward_input_gflops", g[1]);
            jem_jw_kdouble(&jw, "backward_weight_gflops", g[2]);
            jem_jw_kdouble(&jw, "mflop", lf / 1e6);
            jem_jw_kstr(&jw, "kernel_forward", jem_kernel_name(pl[0].kernel));
            jem_jw_kint(&jw, "tile_forward", pl[0].tile);
            jem_jw_kstr(&jw, "kernel_backward_input", jem_kernel_name(pl[1].kernel));
            jem_jw_kint(&jw, "tile_backward_input", pl[1].tile);
            jem_jw_kstr(&jw, "kernel_backward_weight", jem_kernel_name(pl[2].kernel));
            jem_jw_kint(&jw, "tile_backward_weight", pl[2].tile);
            jem_jw_obj_end(&jw);
            free(in); free(out); free(wt); free(din); free(dw); free(bias); free(ws);
        }
        jem_jw_arr_end(&jw);
        blocks_bench(&jw, &a, reps, json, &rng, t);
    }
    if (scaling) {
        if (!json) printf("\nJEM iteration time (ms):\n");
        jem_jw_key(&jw, "jem_iteration_ms");
        jem_jw_obj_begin(&jw);
        int bs[3] = {32, 64, 128}, ks[3] = {5, 10, 20};
        for (int i = 0; i < 3; i++)
            for (int j = 0; j < 3; j++) {
                int nr = reps < 3 ? reps : 3;
                for (int rep = -1; rep < nr; rep++) {
                    double t0 = now_s();
                    s = w_jem(&b, bs[i], ks[j]);
                    if (s) { free(t); return cli_fail("bench", s); }
                    if (rep >= 0) t[rep] = now_s() - t0;
                }
                double m = median(t, nr) * 1e3;
                char key[32];
                snprintf(key, sizeof key, "batch%d_k%d", bs[i], ks[j]);
                jem_jw_kdouble(&jw, key, m);
                if (!json) printf("  batch %3d  K %2d  %9.1f ms  %7.1f images/s\n", bs[i], ks[j], m, bs[i] / m * 1e3);
            }
        jem_jw_obj_end(&jw);
        /* thread scaling of the four workloads */
        jem_jw_key(&jw, "threads_scaling");
        jem_jw_obj_begin(&jw);
        int nth0 = jem_get_threads();
        if (!json) printf("\nimages/s by thread count:\n");
        for (int th = 1; th <= nth0; th++) {
            jem_set_threads(th);
            char key[16];
            snprintf(key, sizeof key, "%d", th);
            jem_jw_key(&jw, key);
            jem_jw_obj_begin(&jw);
            if (!json) printf("  %d thread%s:", th, th > 1 ? "s" : " ");
            for (int w = 0; w < 4; w++) {
                for (int rep = -1; rep < reps; rep++) {
                    double t0 = now_s();
                    s = run_workload(&b, w, K);
                    if (s) { free(t); return cli_fail("bench", s); }
                    if (rep >= 0) t[rep] = now_s() - t0;
                }
                double ips = res[w].batch / median(t, reps);
                jem_jw_kdouble(&jw, res[w].name, ips);
                if (!json) printf("  %s %.1f", res[w].name, ips);
            }
            if (!json) printf("\n");
            jem_jw_obj_end(&jw);
        }
        jem_set_threads(nth0);
        jem_jw_obj_end(&jw);
    }
    getrusage(RUSAGE_SELF, &ru);
    jem_jw_kdouble(&jw, "peak_rss_mb", ru.ru_maxrss / 1024.0);
    jem_jw_obj_end(&jw);
    if (json) printf("%s\n", jem_jw_cstr(&jw));
    else printf("\npeak resident memory: %.1f MB\n", ru.ru_maxrss / 1024.0);
    jem_jw_free(&jw);
    free(t);
    free(b.x); free(b.logits); free(b.dl); free(b.y);
    jem_opt_free(&b.opt);
    jem_net_free(b.net);
    return 0;
}

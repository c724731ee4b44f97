/* jem bench: images/s of the four workloads that decide training speed,
 * per-layer convolution GFLOP/s against the machine's measured multiply-add
 * peak (fp32, and bf16 where the CPU has it) and the sgemm rate, with the
 * kernel and tile the planner chose for each pass, peak memory. Medians of
 * several repetitions after a warm-up. */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

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
    jem_opt opt;
    float *x, *logits, *dl, *dx, *lp;
    int32_t *y;
    size_t D;
    int K;
    jem_precision prec; /* --precision: the forward and SGLD workloads' */
} bctx;

static jem_status w_forward(bctx *b, int B)
{
    jem_status s = jem_net_set_precision(b->net, b->prec);
    return s ? s : jem_net_forward(b->net, b->x, B, b->logits);
}

/* the training step, always fp32 */
static jem_status w_train(bctx *b, int B)
{
    jem_status s = jem_net_set_precision(b->net, JEM_PRECISION_FP32);
    if (!s) s = jem_net_forward(b->net, b->x, B, b->logits);
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
    jem_status s = jem_net_set_precision(b->net, b->prec);
    if (s) return s;
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

typedef struct {
    const char *name;
    int batch;
    double img_s, ms;
    double faults; /* minor page faults per timed run (median) */
} wres;

/* the process's minor page faults so far (first touches of fresh pages) */
static double minor_faults(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)ru.ru_minflt;
}

/* a planned kernel and its tile as text: "winograd F(4x4)", "indirect" */
static const char *plan_str(const char *kernel, int tile, char *buf, size_t n)
{
    if (tile) snprintf(buf, n, "%s F(%dx%d)", kernel, tile, tile);
    else snprintf(buf, n, "%s", kernel);
    return buf;
}

/* the kernels' rows (jem_bench_convs, jem_bench_blocks) as a table and
 * JSON, each with the planner's choice: a layer's kernel and tile for each
 * pass; a block's for conv1, conv2 and the shortcut, or that it runs layer
 * by layer; each pass's rate as a percentage of peak (the fp32 multiply-add
 * peak, GFLOP/s) */
static void conv_rows(jem_jw *jw, const jem_conv_time *r, int n, int blocks, int json, double peak)
{
    static const char *const pkeys[2][3] = {
        {"forward_pct_fp32_peak", "backward_input_pct_fp32_peak", "backward_weight_pct_fp32_peak"},
        {"forward_pct_fp32_peak", "backward_input_pct_fp32_peak", "backward_input_weight_pct_fp32_peak"}};
    static const char *const lkeys[3][2] = {{"kernel_forward", "tile_forward"},
                                            {"kernel_backward_input", "tile_backward_input"},
                                            {"kernel_backward_weight", "tile_backward_weight"}};
    static const char *const bkeys[3][2] = {
        {"kernel_conv1", "tile_conv1"}, {"kernel_conv2", "tile_conv2"}, {"kernel_shortcut", NULL}};
    for (int l = 0; l < n; l++) {
        jem_jw_obj_begin(jw);
        jem_jw_kstr(jw, "name", r[l].name);
        jem_jw_kstr(jw, "shape", r[l].shape);
        if (blocks && !r[l].fused) {
            if (!json)
                printf("%-10s %-22s %9s %9s %9s  %11s   layer by layer\n", r[l].name, r[l].shape, "-", "-", "-", "-");
            jem_jw_kbool(jw, "fused", 0);
            jem_jw_obj_end(jw);
            continue;
        }
        char kp[3][48];
        double pct[3];
        for (int k = 0; k < 3; k++) {
            plan_str(r[l].kernel[k], r[l].tile[k], kp[k], sizeof kp[k]);
            pct[k] = peak > 0 ? 100.0 * r[l].gflops[k] / peak : 0;
        }
        if (!json)
            printf("%-10s %-22s %9.1f %9.1f %9.1f  %3.0f/%3.0f/%3.0f   %s / %s / %s\n", r[l].name, r[l].shape,
                   r[l].gflops[0], r[l].gflops[1], r[l].gflops[2], pct[0], pct[1], pct[2], kp[0], kp[1], kp[2]);
        if (blocks) {
            jem_jw_kbool(jw, "fused", 1);
            for (int k = 0; k < 3; k++) {
                jem_jw_kstr(jw, bkeys[k][0], r[l].kernel[k]);
                if (bkeys[k][1]) jem_jw_kint(jw, bkeys[k][1], r[l].tile[k]);
            }
        }
        jem_jw_kdouble(jw, "forward_gflops", r[l].gflops[0]);
        jem_jw_kdouble(jw, "backward_input_gflops", r[l].gflops[1]);
        jem_jw_kdouble(jw, blocks ? "backward_input_weight_gflops" : "backward_weight_gflops", r[l].gflops[2]);
        for (int k = 0; k < 3; k++) jem_jw_kdouble(jw, pkeys[blocks][k], pct[k]);
        if (blocks) {
            jem_jw_kdouble(jw, "mflop_forward", r[l].mflop);
        } else {
            jem_jw_kdouble(jw, "mflop", r[l].mflop);
            for (int k = 0; k < 3; k++) {
                jem_jw_kstr(jw, lkeys[k][0], r[l].kernel[k]);
                jem_jw_kint(jw, lkeys[k][1], r[l].tile[k]);
            }
        }
        jem_jw_obj_end(jw);
    }
}

int cmd_bench(int argc, char **argv)
{
    int reps = 5, layers = 0, scaling = 0, K = 20;
    cli_opt opts[] = {{OPT("reps", OPT_INT, &reps, "repetitions per workload (median reported)"), RANGE(1, 1000)},
                      {OPT("sgld-steps", OPT_INT, &K, "SGLD steps in the JEM iteration"), RANGE(1, 10000)},
                      {OPT("layers", OPT_FLAG, &layers,
                           "per-layer and per-block convolution GFLOP/s, their % of the measured multiply-add peak "
                           "(fp32; bf16 too), sgemm")},
                      {OPT("scaling", OPT_FLAG, &scaling,
                           "JEM iteration time against batch size and K, images/s at 1 and 2 "
                           "threads")},
                      CLI_END};
    const cli_spec sp = {
        .name = "bench",
        .usage = "[options]",
        .opts = opts,
        .model = CLI_MODEL_DESC,
        .model_default = "models/wrn-fmnist.model",
        .json = 1,
        .threads = 1,
        .precision = "forward and SGLD products: fp32, or bf16 with fp32 sums (AVX512-BF16); training steps fp32"};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    const int json = cx.json;
    int rc = 0;
    jem_arch a;
    jem_status s = jem_arch_load(cx.model, &a);
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
    if (s) {
        jem_net_free(b.net);
        return cli_fail("bench", s);
    }
    b.D = (size_t)a.in_c * a.in_h * a.in_w;
    b.K = a.n_classes;
    b.prec = cx.precision;
    const int NMAX = 512;
    b.x = malloc(sizeof(float) * b.D * NMAX);
    b.logits = malloc(sizeof(float) * b.K * NMAX);
    b.dl = malloc(sizeof(float) * b.K * NMAX);
    b.y = malloc(sizeof(int32_t) * NMAX);
    double *t = malloc(sizeof(double) * reps), *nf = malloc(sizeof(double) * reps);
    if (!b.x || !b.logits || !b.dl || !b.y || !t || !nf) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    fill(b.x, b.D * NMAX, &rng);
    for (int i = 0; i < NMAX; i++) b.y[i] = (int32_t)jem_rng_below(&rng, (uint32_t)b.K);

    const double flops = 2.0 * jem_net_macs(b.net);
    wres res[4] = {{"forward", 256, 0, 0, 0},
                   {"train_step", 64, 0, 0, 0},
                   {"sgld_step", 64, 0, 0, 0},
                   {"jem_iteration", 64, 0, 0, 0}};
    for (int w = 0; w < 4; w++) {
        for (int rep = -1; rep < reps; rep++) {
            const double f0 = minor_faults(), t0 = now_s();
            s = run_workload(&b, w, K);
            if (s) goto fail;
            if (rep >= 0) {
                t[rep] = now_s() - t0;
                nf[rep] = minor_faults() - f0;
            }
        }
        double m = median(t, reps);
        res[w].ms = m * 1e3;
        res[w].img_s = res[w].batch / m;
        res[w].faults = median(nf, reps);
    }
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    jem_jw jw;
    jem_jw_init(&jw);
    jem_jw_obj_begin(&jw);
    jem_jw_kstr(&jw, "model", a.name);
    jem_jw_kint(&jw, "threads", jem_get_threads());
    jem_jw_kstr(&jw, "precision", b.prec == JEM_PRECISION_BF16 ? "bf16" : "fp32");
    jem_jw_kint(&jw, "reps", reps);
    jem_jw_kint(&jw, "sgld_steps", K);
    jem_jw_kdouble(&jw, "gflop_per_image_forward", flops / 1e9);
    jem_jw_key(&jw, "workloads");
    jem_jw_obj_begin(&jw);
    if (!json)
        printf("jem bench: model %s, %d threads, %s, median of %d\n\n%-14s %6s %10s %10s %12s\n", a.name,
               jem_get_threads(), b.prec == JEM_PRECISION_BF16 ? "bf16 products (training steps fp32)" : "fp32", reps,
               "workload", "batch", "images/s", "ms", "page faults");
    for (int w = 0; w < 4; w++) {
        jem_jw_key(&jw, res[w].name);
        jem_jw_obj_begin(&jw);
        jem_jw_kint(&jw, "batch", res[w].batch);
        jem_jw_kdouble(&jw, "images_per_s", res[w].img_s);
        jem_jw_kdouble(&jw, "ms", res[w].ms);
        jem_jw_kdouble(&jw, "minor_faults", res[w].faults);
        jem_jw_obj_end(&jw);
        if (!json)
            printf("%-14s %6d %10.1f %10.2f %12.0f\n", res[w].name, res[w].batch, res[w].img_s, res[w].ms,
                   res[w].faults);
    }
    jem_jw_obj_end(&jw);
    jem_jw_kdouble(&jw, "forward_gflops", flops * res[0].img_s / 1e9);
    if (!json) printf("\nforward: %.1f GFLOP/s effective\n", flops * res[0].img_s / 1e9);

    if (layers) {
        /* the machine's multiply-add peak on the threads used, the sgemm
         * reference rates, then every convolution of the model and every
         * block at batch 64 (the fused ones timed), each against the peak */
        jem_fma_peak pk;
        s = jem_bench_peak(jem_get_threads(), 10, &pk);
        if (s) {
            jem_jw_free(&jw);
            goto fail;
        }
        jem_jw_key(&jw, "fma_peak");
        jem_jw_obj_begin(&jw);
        jem_jw_kint(&jw, "threads", pk.threads);
        jem_jw_kstr(&jw, "fp32_isa", pk.fp32_isa);
        jem_jw_kdouble(&jw, "fp32_gflops_per_thread", pk.fp32_per_thread);
        jem_jw_kdouble(&jw, "fp32_gflops", pk.fp32);
        jem_jw_kbool(&jw, "bf16_supported", pk.has_bf16);
        jem_jw_key(&jw, "bf16_gflops_per_thread");
        if (pk.has_bf16) jem_jw_double(&jw, pk.bf16_per_thread);
        else jem_jw_null(&jw);
        jem_jw_key(&jw, "bf16_gflops");
        if (pk.has_bf16) jem_jw_double(&jw, pk.bf16);
        else jem_jw_null(&jw);
        jem_jw_kdouble(&jw, "forward_pct_fp32_peak", pk.fp32 > 0 ? 100.0 * flops * res[0].img_s / 1e9 / pk.fp32 : 0);
        jem_jw_obj_end(&jw);
        if (!json) {
            printf("\nmultiply-add peak (register-only loops, %d thread%s): fp32 %.1f GFLOP/s (%s, %.1f per thread)",
                   pk.threads, pk.threads > 1 ? "s" : "", pk.fp32, pk.fp32_isa, pk.fp32_per_thread);
            if (pk.has_bf16)
                printf(", bf16 %.1f GFLOP/s (avx512_bf16 vdpbf16ps, %.1f per thread)\n", pk.bf16, pk.bf16_per_thread);
            else printf(", bf16: no avx512_bf16 on this CPU\n");
            printf("forward: %.0f %% of the fp32 peak\n",
                   pk.fp32 > 0 ? 100.0 * flops * res[0].img_s / 1e9 / pk.fp32 : 0);
        }
        double sg[2];
        sg[0] = jem_bench_sgemm(128, reps, &rng);
        sg[1] = jem_bench_sgemm(2048, reps, &rng);
        jem_jw_key(&jw, "sgemm_gflops");
        jem_jw_obj_begin(&jw);
        jem_jw_kdouble(&jw, "128", sg[0]);
        jem_jw_kdouble(&jw, "2048", sg[1]);
        jem_jw_obj_end(&jw);
        if (!json)
            printf("\nsgemm: %.1f GFLOP/s at 128^3, %.1f at 2048^3\n\n"
                   "convolutions: effective GFLOP/s (direct-convolution FLOPs / time), each pass's %% of the fp32\n"
                   "peak (Winograd can pass 100 %%: it does fewer multiplies) and the planner's kernels\n"
                   "%-10s %-22s %9s %9s %9s  %11s   %s\n",
                   sg[0], sg[1], "layer", "shape (batch 64)", "fwd", "bwd-in", "bwd-w", "% of peak",
                   "plan: fwd / bwd-in / bwd-w");
        jem_conv_time rows[3 * JEM_MAX_BLOCKS + 1];
        int nr = 0;
        s = jem_bench_convs(&a, reps, &rng, rows, 3 * JEM_MAX_BLOCKS + 1, &nr);
        jem_jw_key(&jw, "layers");
        jem_jw_arr_begin(&jw);
        conv_rows(&jw, rows, nr, 0, json, pk.fp32);
        jem_jw_arr_end(&jw);
        if (s) {
            jem_jw_free(&jw);
            goto fail;
        }
        if (!json)
            printf("\nfused blocks (per image; forward with the shortcut)%s: effective GFLOP/s, %% of the fp32 peak\n"
                   "%-10s %-22s %9s %9s %9s  %11s   %s\n",
                   b.prec == JEM_PRECISION_BF16 ? ", bf16 products (bwd-in+w fp32)" : "", "block", "shape (batch 64)",
                   "fwd", "bwd-in", "bwd-in+w", "% of peak", "plan: conv1 / conv2 / shortcut");
        s = jem_bench_blocks(&a, reps, b.prec, &rng, rows, JEM_MAX_BLOCKS, &nr);
        jem_jw_key(&jw, "blocks");
        jem_jw_arr_begin(&jw);
        conv_rows(&jw, rows, nr, 1, json, pk.fp32);
        jem_jw_arr_end(&jw);
        if (s) {
            jem_jw_free(&jw);
            goto fail;
        }
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
                    if (s) {
                        jem_jw_free(&jw);
                        goto fail;
                    }
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
                    if (s) {
                        jem_jw_free(&jw);
                        goto fail;
                    }
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
    goto done;
fail:
    rc = cli_fail("bench", s);
done:
    free(t);
    free(nf);
    free(b.x);
    free(b.logits);
    free(b.dl);
    free(b.y);
    jem_opt_free(&b.opt);
    jem_net_free(b.net);
    cli_end(&cx);
    return rc;
}

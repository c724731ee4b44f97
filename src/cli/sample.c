/* jem sample: draw images from a model with SGLD or MALA chains;
 * inpainting and denoising of real images. */
#include "cli/cli.h"
#include "io/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* mask (D): 1 where pixels are missing and the chain may move */
static int make_mask(const char *kind, float *m, int C, int H, int W, jem_rng *rng)
{
    for (int c = 0; c < C; c++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                int v;
                if (!strcmp(kind, "top")) v = i < H / 2;
                else if (!strcmp(kind, "bottom")) v = i >= H / 2;
                else if (!strcmp(kind, "left")) v = j < W / 2;
                else if (!strcmp(kind, "right")) v = j >= W / 2;
                else if (!strcmp(kind, "center")) v = i >= H / 4 && i < 3 * H / 4 && j >= W / 4 && j < 3 * W / 4;
                else if (!strncmp(kind, "random:", 7)) {
                    double p = atof(kind + 7);
                    if (!(p > 0 && p < 1)) return -1;
                    v = jem_rng_uniform_d(rng) < p;
                } else return -1;
                m[((size_t)c * H + i) * W + j] = (float)v;
            }
    return 0;
}

int cmd_sample(int argc, char **argv)
{
    const char *model = NULL, *out = "samples.png", *from = "noise", *data = "fmnist:train", *raw = NULL;
    const char *inpaint = NULL;
    int n = 64, conditional = 0, cls = -1, threads = 0, mala = 0, noclamp = 0, json = 0;
    float denoise = 0;
    uint64_t seed = 1;
    jem_sgld_cfg sc;
    jem_sgld_defaults(&sc);
    sc.steps = 100;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint"},
        {"out", OPT_STR, &out, "PNG grid to write"},
        {"n", OPT_INT, &n, "number of chains (conditional: per class)"},
        {"conditional", OPT_FLAG, &conditional, "one row per class, chains on E(x, y)"},
        {"class", OPT_INT, &cls, "sample one class only"},
        {"from", OPT_STR, &from, "chain start: noise, informative (per-class Gaussian of --data), buffer (the checkpoint's replay buffer)"},
        {"data", OPT_STR, &data, "data for --from informative, --inpaint and --denoise"},
        {"steps", OPT_INT, &sc.steps, "chain length"},
        {"step-size", OPT_FLOAT, &sc.step_size, "SGLD step size (alpha)"},
        {"noise", OPT_FLOAT, &sc.noise, "SGLD noise (sigma)"},
        {"no-clamp", OPT_FLAG, &noclamp, "do not clamp chains to [-1, 1]"},
        {"mala", OPT_FLAG, &mala, "Metropolis-adjusted Langevin (reports the acceptance rate)"},
        {"temperature", OPT_FLOAT, &sc.temperature, "MALA target temperature"},
        {"inpaint", OPT_STR, &inpaint, "inpaint real images: mask top|bottom|left|right|center|random:P"},
        {"denoise", OPT_FLOAT, &denoise, "denoise real images corrupted with this Gaussian sigma"},
        {"raw", OPT_STR, &raw, "also write the samples as safetensors (images, labels)"},
        {"seed", OPT_U64, &seed, "random seed"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"json", OPT_FLAG, &json, "print chain statistics as JSON"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("sample", "--model CKPT [--out grid.png] [options]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos) model = pos[0];
    if (!model) { fprintf(stderr, "jem sample: error: --model CKPT is required\n"); return 2; }
    if (n < 1 || n > 100000 || sc.steps < 0) { fprintf(stderr, "jem sample: error: --n must be in [1, 100000], --steps >= 0\n"); return 2; }
    sc.clamp = !noclamp;
    sc.mala = mala;
    sc.final_logp = 1;
    jem_set_threads(threads);
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(model, &net);
    if (s) return cli_fail("sample", s);
    const jem_arch *a = jem_net_arch(net);
    const int K = a->n_classes, C = a->in_c, H = a->in_h, W = a->in_w;
    const size_t D = (size_t)C * H * W;
    if (cls >= K) { jem_net_free(net); fprintf(stderr, "jem sample: error: --class %d but the model has %d classes\n", cls, K); return 2; }
    int rows_of_classes = conditional && cls < 0;
    int total = rows_of_classes ? n * K : n;
    int restore = inpaint || denoise > 0;
    jem_dataset ds;
    memset(&ds, 0, sizeof ds);
    jem_buffer buf;
    memset(&buf, 0, sizeof buf);
    float *x = NULL, *mask = NULL, *orig = NULL, *grid = NULL;
    int32_t *y = malloc(sizeof(int32_t) * total);
    x = malloc(sizeof(float) * D * total);
    int rc = 0;
    jem_rng rng;
    jem_rng_seed(&rng, seed, 0x73616d70);
    if (!x || !y) { s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d chains", total); goto fail; }
    for (int i = 0; i < total; i++) y[i] = rows_of_classes ? i / n : (cls >= 0 ? cls : -1);
    if (restore || !strcmp(from, "informative")) {
        s = cli_open_data(data, a, &ds);
        if (s) goto fail;
    }
    if (restore) {
        if (total > ds.n) total = ds.n;
        orig = malloc(sizeof(float) * D * total);
        mask = malloc(sizeof(float) * D * total);
        if (!orig || !mask) { s = jem_fail(JEM_ERR_NOMEM, "out of memory"); goto fail; }
        memcpy(orig, ds.x, sizeof(float) * D * total);
        memcpy(x, orig, sizeof(float) * D * total);
        for (int i = 0; i < total; i++) {
            y[i] = -1;
            float *m = mask + D * i, *xi = x + D * i;
            if (inpaint) {
                if (make_mask(inpaint, m, C, H, W, &rng)) {
                    s = jem_fail(JEM_ERR_ARG, "--inpaint: unknown mask '%s'", inpaint);
                    goto fail;
                }
                for (size_t d = 0; d < D; d++)
                    if (m[d] != 0) xi[d] = 2.0f * jem_rng_uniform(&rng) - 1.0f;
            } else {
                for (size_t d = 0; d < D; d++) {
                    m[d] = 1;
                    xi[d] += denoise * jem_rng_normal(&rng);
                }
            }
        }
    } else if (!strcmp(from, "informative")) {
        s = jem_buffer_create(&buf, K, C, H, W, K, JEM_INIT_INFORMATIVE, 0, 0);
        if (!s) s = jem_buffer_fit(&buf, &ds, 0);
        if (s) goto fail;
        for (int i = 0; i < total; i++) jem_buffer_init_one(&buf, y[i], x + D * i, &rng);
    } else if (!strcmp(from, "buffer")) {
        /* random chains of the saved replay buffer (of the asked class when
         * the buffer keeps per-class partitions) */
        jem_st *st = NULL;
        s = jem_st_open(model, &st);
        if (s) goto fail;
        jem_dtype dt, dty;
        int nd, ndy;
        int64_t shp[8], shpy[8];
        const float *bx = jem_st_get(st, "_buffer.x", &dt, &nd, shp);
        const int32_t *by = jem_st_get(st, "_buffer.y", &dty, &ndy, shpy);
        if (!bx || dt != JEM_DT_F32 || nd != 4 || shp[1] != C || shp[2] != H || shp[3] != W || shp[0] < 1 ||
            !by || dty != JEM_DT_I32 || ndy != 1 || shpy[0] != shp[0]) {
            jem_st_free(st);
            s = jem_fail(JEM_ERR_FORMAT, "%s: no replay buffer of %dx%dx%d images in this checkpoint", model, C, H, W);
            goto fail;
        }
        int nb = (int)shp[0];
        for (int i = 0; i < total; i++) {
            int j = (int)jem_rng_below(&rng, (uint32_t)nb);
            if (y[i] >= 0)
                for (int tries = 0; tries < 64 * K && by[j] != y[i]; tries++) j = (int)jem_rng_below(&rng, (uint32_t)nb);
            memcpy(x + D * i, bx + D * (size_t)j, sizeof(float) * D);
        }
        jem_st_free(st);
    } else if (!strcmp(from, "noise")) {
        for (size_t i = 0; i < D * total; i++) x[i] = 2.0f * jem_rng_uniform(&rng) - 1.0f;
    } else {
        s = jem_fail(JEM_ERR_ARG, "--from must be noise or informative, got '%s'", from);
        goto fail;
    }
    float *corrupted = NULL;
    if (restore) {
        corrupted = malloc(sizeof(float) * D * total);
        if (!corrupted) { s = jem_fail(JEM_ERR_NOMEM, "out of memory"); goto fail; }
        memcpy(corrupted, x, sizeof(float) * D * total);
    }
    jem_sgld_stats st;
    const int chunk = 256;
    double gn = 0, acc = 0, lp0 = 0, lp1 = 0;
    for (int i = 0; i < total; i += chunk) {
        int b = total - i < chunk ? total - i : chunk;
        int any_y = 0;
        for (int k = 0; k < b; k++) any_y |= y[i + k] >= 0;
        s = jem_sgld_run(jem_net_energy, net, x + D * i, b, (int)D, any_y ? y + i : NULL,
                         mask ? mask + D * i : NULL, &sc, seed, (uint64_t)i, &st);
        if (s) { free(corrupted); goto fail; }
        gn += st.grad_norm * b; acc += st.accept * b; lp0 += st.logp_start * b; lp1 += st.logp_end * b;
    }
    gn /= total; acc /= total; lp0 /= total; lp1 /= total;
    if (restore) {
        /* rows of three: original, corrupted, recovered */
        int m = total < 16 ? total : 16;
        grid = malloc(sizeof(float) * D * m * 3);
        if (!grid) { free(corrupted); s = jem_fail(JEM_ERR_NOMEM, "out of memory"); goto fail; }
        for (int i = 0; i < m; i++) {
            memcpy(grid + D * (0 * m + i), orig + D * i, sizeof(float) * D);
            memcpy(grid + D * (1 * m + i), corrupted + D * i, sizeof(float) * D);
            memcpy(grid + D * (2 * m + i), x + D * i, sizeof(float) * D);
        }
        s = jem_png_write_grid(out, grid, 3 * m, C, H, W, m, 2);
        double mse0 = 0, mse1 = 0;
        for (size_t d = 0; d < D * total; d++) {
            mse0 += (corrupted[d] - orig[d]) * (corrupted[d] - orig[d]);
            mse1 += (x[d] - orig[d]) * (x[d] - orig[d]);
        }
        free(corrupted);
        if (s) goto fail;
        fprintf(stderr, "jem sample: mean squared error against the originals: corrupted %.5f, recovered %.5f\n",
                mse0 / (D * total), mse1 / (D * total));
    } else {
        s = jem_png_write_grid(out, x, total, C, H, W, rows_of_classes ? n : (int)ceil(sqrt((double)total)), 2);
        if (s) goto fail;
    }
    if (raw) {
        jem_st *rs = NULL;
        int64_t shp[4] = {total, C, H, W};
        s = jem_st_new(&rs);
        if (!s) s = jem_st_add(rs, "images", JEM_DT_F32, 4, shp, x);
        if (!s) s = jem_st_add(rs, "labels", JEM_DT_I32, 1, shp, y);
        if (!s) s = jem_st_meta(rs, "jem.samples.model", model);
        if (!s) s = jem_st_commit(rs, raw);
        jem_st_free(rs);
        if (s) goto fail;
    }
    if (json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "out", out);
        jem_jw_kint(&w, "chains", total);
        jem_jw_kint(&w, "steps", sc.steps);
        jem_jw_kdouble(&w, "grad_norm", gn);
        jem_jw_kdouble(&w, "accept", acc);
        jem_jw_kdouble(&w, "logp_start", lp0);
        jem_jw_kdouble(&w, "logp_end", lp1);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("wrote %s: %d chains x %d steps (%s), log p~(x) %.3f -> %.3f, grad norm %.3g%s",
               out, total, sc.steps, mala ? "MALA" : "SGLD", lp0, lp1, gn, mala ? "" : "\n");
        if (mala) printf(", acceptance %.3f\n", acc);
    }
    goto done;
fail:
    rc = cli_fail("sample", s);
done:
    free(x); free(y); free(mask); free(orig); free(grid);
    jem_buffer_free(&buf);
    jem_dataset_free(&ds);
    jem_net_free(net);
    return rc;
}

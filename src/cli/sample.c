/* jem sample: draw images from a model, or from a composition of models,
 * with SGLD, MALA or HMC chains, with chain diagnostics (acceptance, energy
 * error, R-hat, ESS, an energy-trace plot); inpainting and denoising of
 * real images. */
#include "cli/steps.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#define CHUNK 256
/* energy traces (and so the diagnostics) cover at most this many chains */
#define TRACE_CHAINS 1024

/* mask (D): 1 where pixels are missing and the chain may move */
static void make_mask(const char *kind, double p, float *m, int C, int H, int W, jem_rng *rng)
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
                else v = jem_rng_uniform_d(rng) < p; /* random:P */
                m[((size_t)c * H + i) * W + j] = (float)v;
            }
}

static int is_hmc(const cli_sample_args *a) { return !strcmp(a->sampler, "hmc"); }
static int is_mala(const cli_sample_args *a) { return a->mala || !strcmp(a->sampler, "mala"); }
static const char *sampler_name(const cli_sample_args *a) { return is_hmc(a) ? "HMC" : is_mala(a) ? "MALA" : "SGLD"; }

static int check(cli_ctx *cx, void *ud)
{
    cli_sample_args *a = ud;
    const cli_spec *sp = cx->spec;
    if (a->inpaint) {
        static const char *const kinds[] = {"top", "bottom", "left", "right", "center"};
        int ok = 0;
        for (int i = 0; i < 5; i++) ok |= !strcmp(a->inpaint, kinds[i]);
        if (!ok && !strncmp(a->inpaint, "random:", 7)) {
            char *end;
            a->mask_p = strtod(a->inpaint + 7, &end);
            ok = end != a->inpaint + 7 && !*end && a->mask_p > 0 && a->mask_p < 1;
        }
        if (!ok)
            return cli_usage_error("sample",
                                   "--inpaint '%s': want top, bottom, left, right, center or random:P "
                                   "with 0 < P < 1",
                                   a->inpaint);
    }
    if (a->inpaint && a->denoise > 0) return cli_usage_error("sample", "--inpaint and --denoise exclude each other");
    const int restore = a->inpaint || a->denoise > 0;
    if (restore && cli_given(sp, "from"))
        return cli_usage_error("sample", "--from does not apply to --inpaint and --denoise (the chains start from "
                                         "the --data images)");
    if (restore && (a->conditional || a->cls >= 0))
        return cli_usage_error("sample", "--conditional and --class do not apply to --inpaint and --denoise");
    if (a->conditional && a->cls >= 0) return cli_usage_error("sample", "--conditional and --class exclude each other");
    if (a->mala) {
        if (cli_given(sp, "sampler") && strcmp(a->sampler, "mala"))
            return cli_usage_error("sample", "--mala and --sampler %s exclude each other", a->sampler);
        a->sampler = "mala";
    }
    if (!is_mala(a) && !is_hmc(a) && cli_given(sp, "temperature"))
        return cli_usage_error("sample", "--temperature needs --sampler mala or hmc");
    if (is_hmc(a) && cli_given(sp, "noise"))
        return cli_usage_error("sample", "--noise is for SGLD and MALA (HMC's noise is its momentum)");
    static const char *const hmc_only[] = {"leapfrog", "target-accept"};
    for (int i = 0; i < 2; i++)
        if (!is_hmc(a) && cli_given(sp, hmc_only[i]))
            return cli_usage_error("sample", "--%s needs --sampler hmc", hmc_only[i]);
    if (a->energy) {
        if (jem_compose_parse(a->energy, &a->comp)) return cli_usage_error("sample", "--energy: %s", jem_last_error());
        if (a->conditional || a->cls >= 0)
            return cli_usage_error("sample", "--energy and --conditional or --class exclude each other (put "
                                             "classes in the energy's terms, e.g. m1:class=5)");
        if (a->models) {
            if (jem_model_list_parse(a->models, &a->ml))
                return cli_usage_error("sample", "--models: %s", jem_last_error());
            for (int i = 0; i < a->ml.n; i++)
                if (access(a->ml.path[i], R_OK))
                    return cli_usage_error("sample", "--models: %s=%s: no such readable file", a->ml.name[i],
                                           a->ml.path[i]);
        }
        /* every term's model is named by --models, or is m1 = --model */
        for (int i = 0; i < a->comp.n_terms; i++) {
            const char *nm = a->comp.terms[i].model;
            int found = !strcmp(nm, "m1");
            for (int j = 0; j < a->ml.n && !found; j++) found = !strcmp(nm, a->ml.name[j]);
            if (!found)
                return cli_usage_error("sample",
                                       "--energy names model '%s': name it in --models NAME=PATH "
                                       "(m1 is --model unless --models says otherwise)",
                                       nm);
        }
    } else if (a->models) {
        return cli_usage_error("sample", "--models names the models of --energy, which is missing");
    }
    if (!restore && strcmp(a->from, "informative") && cli_given(sp, "data"))
        return cli_usage_error("sample", "--data is used by --from informative, --inpaint and --denoise only");
    if (!restore && !strcmp(a->from, "informative") && cli_spec_unlabelled(a->data))
        return cli_usage_error("sample", "--data %s: --from informative fits per-class Gaussians and needs labels",
                               a->data);
    return 0;
}

/* progress over the chunks of chains and the steps of each */
typedef struct {
    cli_bar *bar;
    int64_t base, steps;
} chain_prog;

static void on_step(void *ud, int done, int total)
{
    chain_prog *p = ud;
    (void)total;
    cli_bar_set(p->bar, p->base + done);
}

static double now(void)
{
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return (double)t.tv_sec + 1e-9 * (double)t.tv_nsec;
}

/* the models of --energy: m1 is the loaded --model unless --models names
 * it; the others are loaded here (nets[i] owned when owned[i]) */
static jem_status load_models(const cli_ctx *cx, const cli_sample_args *a, jem_compose *comp, jem_net **nets,
                              int *owned, const char **names, int *n)
{
    int k = 0, m1 = 0;
    for (int i = 0; i < a->ml.n; i++) {
        jem_status s = jem_ckpt_load(a->ml.path[i], &nets[k]);
        if (s) return s;
        owned[k] = 1;
        names[k] = a->ml.name[i];
        m1 |= !strcmp(a->ml.name[i], "m1");
        k++;
        *n = k;
    }
    if (!m1) {
        nets[k] = cx->net;
        owned[k] = 0;
        names[k] = "m1";
        k++;
    }
    *n = k;
    return jem_compose_bind(comp, k, names, nets);
}

void cli_sample_defaults(cli_sample_args *a)
{
    memset(a, 0, sizeof *a);
    a->out = "samples.png";
    a->from = "noise";
    a->data = "fmnist:train";
    a->sampler = "sgld";
    a->n = 64;
    a->cls = -1;
    a->warmup = -1;
    a->seed = 1;
    jem_sgld_defaults(&a->sc);
    a->sc.steps = 100;
    jem_hmc_defaults(&a->hc);
}

int cli_sample_ready(const char *cmd, const char *from_opt, const cli_ctx *cx, const cli_sample_args *a)
{
    const int K = cx->arch->n_classes;
    if (a->cls >= K) return cli_usage_error(cmd, "--class %d: the model has %d classes (0 to %d)", a->cls, K, K - 1);
    const int restore = a->inpaint || a->denoise > 0;
    if (!restore && !strcmp(a->from, "buffer") && !jem_st_get(cx->st, "_buffer.x", NULL, NULL, NULL) &&
        !jem_st_get(cx->st, "_buffer.y", NULL, NULL, NULL))
        return cli_usage_error(cmd,
                               "--%s buffer: %s holds no replay buffer (a weights-only file, e.g. an "
                               "exported model, or a softmax run); --%s accepts noise, informative or buffer",
                               from_opt, cx->model, from_opt);
    return 0;
}

void cli_sample_free(cli_sample_res *r)
{
    free(r->x);
    free(r->y);
    free(r->orig);
    free(r->corr);
    free(r->trace);
    memset(r, 0, sizeof *r);
}

jem_status cli_sample_run(const cli_ctx *cx, const cli_sample_args *a, cli_sample_res *r)
{
    const jem_arch *ar = cx->arch;
    const int K = ar->n_classes, C = ar->in_c, H = ar->in_h, W = ar->in_w, n = a->n, cls = a->cls;
    const size_t D = (size_t)C * H * W;
    const int hmc = is_hmc(a);
    jem_sgld_cfg sc = a->sc;
    jem_hmc_cfg hc = a->hc;
    sc.clamp = !a->noclamp;
    sc.mala = is_mala(a);
    sc.final_logp = 1;
    hc.steps = sc.steps;
    hc.bounded = !a->noclamp;
    hc.temperature = sc.temperature;
    const int warmup = a->warmup >= 0 ? a->warmup : hmc ? 50 : 0;
    jem_net *nets[JEM_COMPOSE_MAX + 1] = {0};
    int owned[JEM_COMPOSE_MAX + 1] = {0}, n_nets = 0;
    const char *names[JEM_COMPOSE_MAX + 1];
    jem_compose comp = a->comp;
    jem_energy_fn efn = jem_net_energy;
    void *ectx = cx->net;
    double *ctrace = NULL;
    memset(r, 0, sizeof *r);
    const int rows_of_classes = a->conditional;
    const int restore = a->inpaint || a->denoise > 0;
    int total = rows_of_classes ? n * K : n;
    jem_dataset ds;
    memset(&ds, 0, sizeof ds);
    jem_buffer buf;
    memset(&buf, 0, sizeof buf);
    float *mask = NULL;
    int32_t *y = r->y = malloc(sizeof(int32_t) * total);
    float *x = r->x = malloc(sizeof(float) * D * total);
    jem_status s = JEM_OK;
    jem_rng rng;
    jem_rng_seed(&rng, a->seed, 0x73616d70);
    if (!x || !y) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d chains", total);
        goto done;
    }
    for (int i = 0; i < total; i++) y[i] = rows_of_classes ? i / n : (cls >= 0 ? cls : -1);
    if (restore || !strcmp(a->from, "informative")) {
        s = cli_open_data(cx, "data", a->data, &ds);
        if (!s && !restore) s = cli_check_labels(cx, "data", &ds, 0);
        if (s) goto done;
    }
    if (restore) {
        if (total > ds.n) total = ds.n;
        float *orig = r->orig = malloc(sizeof(float) * D * total);
        mask = malloc(sizeof(float) * D * total);
        if (!orig || !mask) {
            s = jem_fail(JEM_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(orig, ds.x, sizeof(float) * D * total);
        memcpy(x, orig, sizeof(float) * D * total);
        for (int i = 0; i < total; i++) {
            y[i] = -1;
            float *m = mask + D * i, *xi = x + D * i;
            if (a->inpaint) {
                make_mask(a->inpaint, a->mask_p, m, C, H, W, &rng);
                for (size_t d = 0; d < D; d++)
                    if (m[d] != 0) xi[d] = 2.0f * jem_rng_uniform(&rng) - 1.0f;
            } else {
                for (size_t d = 0; d < D; d++) {
                    m[d] = 1;
                    xi[d] += a->denoise * jem_rng_normal(&rng);
                }
            }
        }
    } else if (!strcmp(a->from, "informative")) {
        s = jem_buffer_create(&buf, K, C, H, W, K, JEM_INIT_INFORMATIVE, 0, 0);
        if (!s) s = jem_buffer_fit(&buf, &ds, 0);
        if (s) goto done;
        for (int i = 0; i < total; i++) jem_buffer_init_one(&buf, y[i], x + D * i, &rng);
    } else if (!strcmp(a->from, "buffer")) {
        /* random chains of the saved replay buffer (of the asked class when
         * the buffer keeps per-class partitions) */
        jem_dtype dt, dty;
        int nd, ndy;
        int64_t shp[8], shpy[8];
        const float *bx = jem_st_get(cx->st, "_buffer.x", &dt, &nd, shp);
        const int32_t *by = jem_st_get(cx->st, "_buffer.y", &dty, &ndy, shpy);
        if (!bx || dt != JEM_DT_F32 || nd != 4 || shp[1] != C || shp[2] != H || shp[3] != W || shp[0] < 1 || !by ||
            dty != JEM_DT_I32 || ndy != 1 || shpy[0] != shp[0]) {
            s = jem_fail(JEM_ERR_FORMAT, "%s: no replay buffer of %dx%dx%d images in this checkpoint", cx->model, C, H,
                         W);
            goto done;
        }
        int nb = (int)shp[0];
        for (int i = 0; i < total; i++) {
            int j = (int)jem_rng_below(&rng, (uint32_t)nb);
            if (y[i] >= 0)
                for (int tries = 0; tries < 64 * K && by[j] != y[i]; tries++)
                    j = (int)jem_rng_below(&rng, (uint32_t)nb);
            memcpy(x + D * i, bx + D * (size_t)j, sizeof(float) * D);
        }
    } else {
        for (size_t i = 0; i < D * total; i++) x[i] = 2.0f * jem_rng_uniform(&rng) - 1.0f;
    }
    if (restore) {
        r->corr = malloc(sizeof(float) * D * total);
        if (!r->corr) {
            s = jem_fail(JEM_ERR_NOMEM, "out of memory");
            goto done;
        }
        memcpy(r->corr, x, sizeof(float) * D * total);
    }
    if (a->energy) {
        s = load_models(cx, a, &comp, nets, owned, names, &n_nets);
        if (s) goto done;
        efn = jem_compose_energy;
        ectx = &comp;
    }
    /* warmup + steps iterations for every sampler: HMC adapts its step size
     * in the warm-up, and the diagnostics leave it out */
    const int iters = warmup + (hmc ? hc.steps : sc.steps);
    const int nt = total < TRACE_CHAINS ? total : TRACE_CHAINS;
    hc.warmup = warmup;
    sc.steps = iters;
    r->trace = malloc(sizeof(double) * (size_t)iters * nt + 1);
    ctrace = malloc(sizeof(double) * (size_t)iters * CHUNK + 1);
    if (!r->trace || !ctrace) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for the energy traces");
        goto done;
    }
    jem_sgld_stats st;
    jem_hmc_stats hs;
    double gn = 0, acc = 0, lp0 = 0, lp1 = 0, eps = 0, dh = 0, dha = 0, dhm = 0;
    long div = 0;
    cli_bar bar;
    char what[200];
    snprintf(what, sizeof what, "%s: %d chains x %d steps", sampler_name(a), total, iters);
    cli_bar_start(&bar, cx, what, (int64_t)((total + CHUNK - 1) / CHUNK) * iters);
    chain_prog cp = {&bar, 0, iters};
    sc.progress = on_step;
    sc.progress_ud = &cp;
    hc.progress = on_step;
    hc.progress_ud = &cp;
    const double t0 = now();
    for (int i = 0; i < total; i += CHUNK) {
        int b = total - i < CHUNK ? total - i : CHUNK;
        int any_y = 0;
        for (int k = 0; k < b; k++) any_y |= y[i + k] >= 0;
        cp.base = (int64_t)(i / CHUNK) * iters;
        sc.trace = ctrace;
        if (hmc) {
            s = jem_hmc_run(efn, ectx, x + D * i, b, (int)D, any_y ? y + i : NULL, mask ? mask + D * i : NULL, &hc,
                            a->seed, (uint64_t)i, NULL, ctrace, &hs);
            if (s) break;
            acc += hs.accept * b;
            lp0 += hs.logp_start * b;
            lp1 += hs.logp_end * b;
            eps += hs.step_size * b;
            dh += hs.dh_mean * b;
            dha += hs.dh_abs * b;
            dhm = fmax(dhm, hs.dh_max);
            div += hs.divergent;
        } else {
            s = jem_sgld_run(efn, ectx, x + D * i, b, (int)D, any_y ? y + i : NULL, mask ? mask + D * i : NULL, &sc,
                             a->seed, (uint64_t)i, &st);
            if (s) break;
            gn += st.grad_norm * b;
            acc += st.accept * b;
            lp0 += st.logp_start * b;
            lp1 += st.logp_end * b;
        }
        for (int t = 0; t < iters; t++)
            for (int k = 0; k < b && i + k < nt; k++) r->trace[(size_t)t * nt + i + k] = ctrace[(size_t)t * b + k];
    }
    r->seconds = now() - t0;
    cli_bar_end(&bar);
    if (s) goto done;
    sc.progress = hc.progress = NULL;
    sc.progress_ud = hc.progress_ud = NULL;
    sc.trace = NULL;
    r->sc = sc;
    r->hc = hc;
    r->hmc = hmc;
    r->total = total;
    r->warmup = warmup;
    r->kept = iters - warmup;
    r->grad_norm = gn / total;
    r->accept = acc / total;
    r->logp_start = lp0 / total;
    r->logp_end = lp1 / total;
    r->step_size = eps / total;
    r->dh_mean = dh / total;
    r->dh_abs = dha / total;
    r->dh_max = dhm;
    r->divergent = div;
    r->trace_n = nt;
    /* diagnostics of log p~ over the iterations after warm-up */
    r->have_diag = r->kept >= 4 && !jem_chain_diag_compute(r->trace + (size_t)warmup * nt, r->kept, nt, &r->diag);
done:
    free(ctrace);
    free(mask);
    for (int i = 0; i < n_nets; i++)
        if (owned[i]) jem_net_free(nets[i]);
    jem_buffer_free(&buf);
    jem_dataset_free(&ds);
    return s;
}

jem_status cli_sample_grid(const cli_ctx *cx, const cli_sample_args *a, const cli_sample_res *r, jem_image *im)
{
    const jem_arch *ar = cx->arch;
    const int total = r->total, labelled = a->conditional || a->cls >= 0;
    /* conditional: a row per class; else the smallest square */
    const int cols = a->conditional ? a->n : (int)ceil(sqrt((double)total));
    const int rows = (total + cols - 1) / cols;
    const char **labels = labelled ? calloc((size_t)rows, sizeof *labels) : NULL;
    char(*num)[16] = labelled ? malloc(sizeof *num * (size_t)rows) : NULL;
    jem_status s = !labelled || (labels && num) ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "out of memory");
    for (int i = 0; !s && labelled && i < rows; i++)
        labels[i] = cli_class_name(cx, r->y[i * cols], num[i], sizeof num[i]);
    if (!s) s = jem_plot_grid(r->x, total, ar->in_c, ar->in_h, ar->in_w, cols, 2, labels, labels ? rows : 0, im);
    free(labels);
    free(num);
    return s;
}

static int run(cli_ctx *cx, cli_sample_args *a)
{
    const jem_arch *ar = cx->arch;
    const int K = ar->n_classes, C = ar->in_c, H = ar->in_h, W = ar->in_w, cls = a->cls;
    const size_t D = (size_t)C * H * W;
    const int rows_of_classes = a->conditional;
    const int restore = a->inpaint || a->denoise > 0;
    int rc = cli_sample_ready("sample", "from", cx, a);
    if (rc) return rc;
    cli_sample_res r;
    float *grid = NULL;
    jem_status s = cli_sample_run(cx, a, &r);
    if (s) goto fail;
    const int total = r.total;
    const float *x = r.x;
    if (a->trace) {
        char title[200];
        jem_plot_opts po = {0};
        if (r.have_diag)
            snprintf(title, sizeof title, "Energy traces (%s, %d chains): R-hat %.3f, bulk ESS %.0f", sampler_name(a),
                     r.trace_n, r.diag.rhat, r.diag.ess_bulk);
        else snprintf(title, sizeof title, "Energy traces (%s, %d chains)", sampler_name(a), r.trace_n);
        po.title = title;
        jem_image im = {0};
        s = jem_plot_traces(r.trace, r.warmup + r.kept, r.trace_n, r.warmup, &po, &im);
        if (!s) s = jem_image_write_png(a->trace, &im);
        jem_image_free(&im);
        if (s) goto fail;
    }
    if (restore) {
        /* rows of three: original, corrupted, recovered */
        int m = total < 16 ? total : 16;
        grid = malloc(sizeof(float) * D * m * 3);
        if (!grid) {
            s = jem_fail(JEM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        for (int i = 0; i < m; i++) {
            memcpy(grid + D * (0 * m + i), r.orig + D * i, sizeof(float) * D);
            memcpy(grid + D * (1 * m + i), r.corr + D * i, sizeof(float) * D);
            memcpy(grid + D * (2 * m + i), x + D * i, sizeof(float) * D);
        }
        s = jem_png_write_grid(a->out, grid, 3 * m, C, H, W, m, 2);
        if (s) goto fail;
        double mse0 = 0, mse1 = 0;
        for (size_t d = 0; d < D * total; d++) {
            mse0 += (r.corr[d] - r.orig[d]) * (r.corr[d] - r.orig[d]);
            mse1 += (x[d] - r.orig[d]) * (x[d] - r.orig[d]);
        }
        fprintf(stderr, "jem sample: mean squared error against the originals: corrupted %.5f, recovered %.5f\n",
                mse0 / (D * total), mse1 / (D * total));
    } else if (rows_of_classes || cls >= 0) {
        /* each row labelled with its class's name */
        jem_image im = {0};
        s = cli_sample_grid(cx, a, &r, &im);
        if (!s) s = jem_image_write_png(a->out, &im);
        jem_image_free(&im);
        if (s) goto fail;
    } else {
        s = jem_png_write_grid(a->out, x, total, C, H, W, (int)ceil(sqrt((double)total)), 2);
        if (s) goto fail;
    }
    if (a->raw) {
        jem_st *rs = NULL;
        int64_t shp[4] = {total, C, H, W};
        s = jem_st_new(&rs);
        if (!s) s = jem_st_add(rs, "images", JEM_DT_F32, 4, shp, x);
        if (!s) s = jem_st_add(rs, "labels", JEM_DT_I32, 1, shp, r.y);
        if (!s) s = jem_st_meta(rs, "jem.samples.model", cx->model);
        if (!s) s = jem_st_commit(rs, a->raw);
        jem_st_free(rs);
        if (s) goto fail;
    }
    const int hmc = r.hmc, mala = !hmc && is_mala(a);
    const jem_chain_diag *dg = &r.diag;
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "out", a->out);
        jem_jw_kstr(&w, "sampler", hmc ? "hmc" : mala ? "mala" : "sgld");
        jem_jw_kint(&w, "chains", total);
        jem_jw_kint(&w, "warmup", r.warmup);
        jem_jw_kint(&w, "steps", r.kept);
        if (a->energy) {
            char eb[2048];
            jem_compose_format(&a->comp, eb, sizeof eb);
            jem_jw_kstr(&w, "energy", eb);
        }
        if (hmc) {
            jem_jw_kint(&w, "leapfrog", r.hc.leapfrog);
            jem_jw_kdouble(&w, "step_size", r.step_size);
            jem_jw_kdouble(&w, "dh_mean", r.dh_mean);
            jem_jw_kdouble(&w, "dh_abs", r.dh_abs);
            jem_jw_kdouble(&w, "dh_max", r.dh_max);
            jem_jw_kint(&w, "divergent", r.divergent);
        } else {
            jem_jw_kdouble(&w, "grad_norm", r.grad_norm);
        }
        if (hmc || mala) jem_jw_kdouble(&w, "temperature", hmc ? r.hc.temperature : r.sc.temperature);
        jem_jw_kdouble(&w, "accept", r.accept);
        jem_jw_kdouble(&w, "logp_start", r.logp_start);
        jem_jw_kdouble(&w, "logp_end", r.logp_end);
        jem_jw_kdouble(&w, "seconds", r.seconds);
        jem_jw_kint(&w, "diag_chains", r.trace_n);
        if (r.have_diag) {
            jem_jw_kdouble(&w, "rhat", dg->rhat);
            jem_jw_kdouble(&w, "rhat_bulk", dg->rhat_bulk);
            jem_jw_kdouble(&w, "rhat_folded", dg->rhat_folded);
            jem_jw_kdouble(&w, "ess_bulk", dg->ess_bulk);
            jem_jw_kdouble(&w, "ess_tail", dg->ess_tail);
            jem_jw_kdouble(&w, "ess_bulk_per_s", r.seconds > 0 ? dg->ess_bulk / r.seconds : 0);
        }
        if (a->trace) jem_jw_kstr(&w, "trace", a->trace);
        if (rows_of_classes || cls >= 0) {
            char nb[16];
            jem_jw_key(&w, "classes");
            jem_jw_arr_begin(&w);
            for (int k = rows_of_classes ? 0 : cls; k < (rows_of_classes ? K : cls + 1); k++)
                jem_jw_str(&w, cli_class_name(cx, k, nb, sizeof nb));
            jem_jw_arr_end(&w);
        }
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("wrote %s: %d chains x %d + %d steps (%s), log p~(x) %.3f -> %.3f", a->out, total, r.warmup, r.kept,
               sampler_name(a), r.logp_start, r.logp_end);
        if (hmc)
            printf(", %d leapfrog steps of %.4g, acceptance %.3f, energy error mean %.3g |%.3g| max %.3g, %ld "
                   "divergent",
                   r.hc.leapfrog, r.step_size, r.accept, r.dh_mean, r.dh_abs, r.dh_max, r.divergent);
        else if (mala) printf(", acceptance %.3f", r.accept);
        else printf(", grad norm %.3g", r.grad_norm);
        printf(", %.1f s\n", r.seconds);
        if (r.have_diag)
            printf("log p~(x) over the last %d steps of %d chains: R-hat %.3f, ESS %.1f bulk, %.1f tail (%.2f/s)\n",
                   r.kept, r.trace_n, dg->rhat, dg->ess_bulk, dg->ess_tail,
                   r.seconds > 0 ? dg->ess_bulk / r.seconds : 0);
        if (a->trace) printf("wrote %s (energy traces)\n", a->trace);
        if (rows_of_classes || cls >= 0) {
            char nb[16];
            printf("rows: ");
            for (int k = rows_of_classes ? 0 : cls; k < (rows_of_classes ? K : cls + 1); k++)
                printf("%s%d %s", k > (rows_of_classes ? 0 : cls) ? ", " : "", k, cli_class_name(cx, k, nb, sizeof nb));
            printf("\n");
        }
    }
    goto done;
fail:
    rc = cli_fail("sample", s);
done:
    free(grid);
    cli_sample_free(&r);
    return rc;
}

int cmd_sample(int argc, char **argv)
{
    cli_sample_args a;
    cli_sample_defaults(&a);
    float step = a.sc.step_size;
    cli_opt opts[] = {
        {OPT("out", OPT_STR, &a.out, "PNG grid to write"), .flags = OPT_OUT_FILE},
        {OPT("n", OPT_INT, &a.n, "number of chains (conditional: per class)"), RANGE(1, 100000)},
        {OPT("conditional", OPT_FLAG, &a.conditional, "one row per class, chains on E(x, y), rows labelled")},
        {OPT("class", OPT_INT, &a.cls, "sample one class only (-1: none)"), RANGE(-1, 1 << 20)},
        {OPT("from", OPT_STR, &a.from,
             "chain start: noise, informative (per-class Gaussian of --data), buffer "
             "(the checkpoint's replay buffer)"),
         .choices = "noise|informative|buffer"},
        {OPT("data", OPT_STR, &a.data, "data for --from informative, --inpaint and --denoise"), .flags = OPT_SPEC},
        {OPT("sampler", OPT_STR, &a.sampler,
             "sgld (Langevin, no correction), mala (Metropolis-adjusted "
             "Langevin) or hmc (Hamiltonian Monte Carlo)"),
         .choices = "sgld|mala|hmc"},
        {OPT("steps", OPT_INT, &a.sc.steps, "chain length after the warm-up"), RANGE(0, 1000000)},
        {OPT("warmup", OPT_INT, &a.warmup,
             "steps before those the diagnostics use; HMC adapts its step size "
             "in them"),
         RANGE(-1, 1000000), .def = "50 for hmc, else 0"},
        {OPT("step-size", OPT_FLOAT, &step, "SGLD, MALA: step size alpha; HMC: the first leapfrog step"), ABOVE(0, 1e6),
         .def = "1, HMC 0.01"},
        {OPT("noise", OPT_FLOAT, &a.sc.noise, "SGLD and MALA noise (sigma)"), RANGE(0, 100)},
        {OPT("leapfrog", OPT_INT, &a.hc.leapfrog,
             "HMC: leapfrog steps per iteration (1: MALA with an adapted "
             "step)"),
         RANGE(1, 10000)},
        {OPT("target-accept", OPT_FLOAT, &a.hc.target_accept,
             "HMC: acceptance rate the warm-up adapts the step "
             "size to"),
         RANGE(0.05, 0.99)},
        {OPT("no-clamp", OPT_FLAG, &a.noclamp,
             "do not keep chains in [-1, 1] (SGLD clamps, HMC reflects at "
             "the walls)")},
        {OPT("mala", OPT_FLAG, &a.mala, "the same as --sampler mala")},
        {OPT("temperature", OPT_FLOAT, &a.sc.temperature, "MALA and HMC: target p~(x)^(1/T)"), ABOVE(0, 1e6)},
        {OPT("energy", OPT_STR, &a.energy,
             "sample a composed energy: TERM[,TERM...], TERM = MODEL[:class=K|"
             ":uncond][:WEIGHT], e.g. m1:class=5:1,m1:class=7:-1 (m1 is --model)"),
         .flags = OPT_NONEMPTY},
        {OPT("models", OPT_STR, &a.models, "models of --energy: NAME=PATH[,NAME=PATH...]"), .flags = OPT_NONEMPTY},
        {OPT("trace", OPT_STR, &a.trace, "PNG: energy traces (log p~ of each chain, at most 31 drawn)"),
         .flags = OPT_OUT_FILE},
        {OPT("inpaint", OPT_STR, &a.inpaint, "inpaint real images: mask top|bottom|left|right|center|random:P")},
        {OPT("denoise", OPT_FLOAT, &a.denoise, "denoise real images corrupted with this Gaussian sigma (0: off)"),
         RANGE(0, 100)},
        {OPT("raw", OPT_STR, &a.raw, "also write the samples as safetensors (images, labels)"), .flags = OPT_OUT_FILE},
        {OPT("seed", OPT_U64, &a.seed, "random seed")},
        CLI_END};
    const cli_spec sp = {.name = "sample",
                         .usage = "--model CKPT [--out grid.png] [options]",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .precision = CLI_PRECISION_HELP,
                         .check = check,
                         .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    if (cli_given(&sp, "step-size")) a.sc.step_size = a.hc.step_size = step;
    r = run(&cx, &a);
    cli_end(&cx);
    return r;
}

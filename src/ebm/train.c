/*
 * The trainer: softmax cross-entropy, or the JEM hybrid
 *   loss = w_y CE(f(x), y) + w_x [E(x_data) - E(x_sample)]
 *        + w_xy [E(x_data, y) - E(x_sample_y, y)] + l2 (E(x_data)^2 + E(x_sample)^2)
 * with negative samples from SGLD chains kept in a persistent replay buffer.
 * Divergence (non-finite or runaway loss or energies) rolls the model,
 * optimiser, buffer and RNG back to the last good state, lowers the learning
 * rate, and continues. Checkpoints hold everything needed to resume exactly.
 *
 * Reading order: jem_train_hooked at the bottom is the loop; above it, one
 * function per step: set-up, an iteration per mode (iter_softmax,
 * iter_jem), divergence, the optimiser step with the weights' moving
 * average, rollback, and the side effects (log line, progress, validation,
 * sample grid, checkpoint).
 */
#include "jem.h"
#include "ebm/train.h"
#include "io/json.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

void jem_train_defaults(jem_train_cfg *c, jem_mode mode)
{
    memset(c, 0, sizeof *c);
    c->mode = mode;
    c->batch = 64;
    jem_opt_defaults(&c->opt, JEM_OPT_ADAM);
    c->sched.lr = mode == JEM_MODE_JEM ? 1e-4f : 1e-3f;
    c->sched.warmup = mode == JEM_MODE_JEM ? 1000 : 0;
    c->sched.gamma = 0.3f;
    c->aug.noise = mode == JEM_MODE_JEM ? 0.03f : 0.0f;
    c->px_rows = 0;
    c->ema = 0.0f;
    c->w_y = 1.0f;
    c->w_x = mode == JEM_MODE_JEM ? 1.0f : 0.0f;
    c->w_xy = 0.0f;
    c->l2 = 0.0f;
    jem_sgld_defaults(&c->sgld);
    c->buffer_size = 10000;
    c->reinit = 0.05f;
    c->init = JEM_INIT_UNIFORM;
    c->div_threshold = 1e4f;
    c->max_retries = 10;
    c->retry_lr_factor = 0.5f;
    c->snapshot_every = 50;
    c->seed = 1;
    c->log_every = 20;
    c->sample_every = 500;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* fraction of the training budget spent: the larger of iterations and time */
static double budget_frac(const jem_train_cfg *c, int64_t iter_budget, int64_t iter, double elapsed)
{
    double f = 0;
    if (iter_budget > 0) f = (double)iter / iter_budget;
    if (c->minutes > 0) {
        double ft = elapsed / (c->minutes * 60.0);
        f = ft > f ? ft : f;
    }
    return f;
}

jem_status jem_evaluate(jem_net *net, const jem_dataset *ds, double *acc, double *nll)
{
    const int K = jem_net_arch(net)->n_classes;
    const int chunk = 256;
    float *logits = malloc(sizeof(float) * (size_t)chunk * K);
    if (!logits) return jem_fail(JEM_ERR_NOMEM, "evaluate: out of memory");
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    long hits = 0, n = 0;
    double loss = 0;
    int64_t lo, hi; /* with several ranks each takes a slice; sums are reduced */
    jem_dist_slice(ds->n, &lo, &hi);
    for (int i = (int)lo; i < (int)hi; i += chunk) {
        int b = (int)hi - i < chunk ? (int)hi - i : chunk;
        jem_status s = jem_net_predict(net, ds->x + (size_t)i * D, b, logits);
        if (s) {
            free(logits);
            return s;
        }
        int c = 0, nl = 0;
        for (int k = 0; k < b; k++) nl += ds->y[i + k] >= 0;
        double l = jem_softmax_xent(logits, ds->y + i, b, K, NULL, 1.0f, &c);
        hits += c;
        n += nl;
        loss += l * nl;
    }
    free(logits);
    double tot[3] = {(double)hits, (double)n, loss};
    jem_dist_sum_f64(tot, 3);
    hits = (long)tot[0];
    n = (long)tot[1];
    loss = tot[2];
    if (n == 0) return jem_fail(JEM_ERR_ARG, "evaluate: %s has no labelled images", ds->name);
    if (acc) *acc = (double)hits / n;
    if (nll) *nll = loss / n;
    return JEM_OK;
}

/* everything a rollback or a checkpoint must restore */
typedef struct {
    float *params, *m, *v;
    float *ema; /* NULL when the trainer keeps no moving average */
    int64_t opt_t;
    float *buf_x;
    jem_rng rng;
    int64_t iter;
    int epoch, pos;
    int32_t *perm;
} snapshot;

/* One iteration's rows, N at most 2B + 2S (see row_plan) */
typedef struct {
    float *x;      /* (N, D) */
    int32_t *y;    /* (N) labels; -1 for unlabelled images and unconditional chains */
    float *logits; /* (N, K) */
    float *dl;     /* (N, K) */
    int32_t *idx;  /* (2S) buffer slots */
    float *lse;    /* (N) */
} iter_bufs;

/* Where an iteration's rows live (fixed for a run):
 *   [0, B)              the labelled batch, augmented, for cross-entropy;
 *   [d0, d0 + nd)       the data side of the generative terms: the batch
 *                       rows themselves (d0 = 0, nd = B), or, when the
 *                       batch is cropped or flipped in JEM mode, clean
 *                       copies (noise only) of its first nd images (d0 = B);
 *   [u0, u0 + nu)       unconditional chains;
 *   [u0 + nu, N)        conditional chains (nc). */
typedef struct {
    int B, d0, nd, u0, nu, nc, N;
} row_plan;

/* what an iteration reports; sec_*: seconds spent in its parts */
typedef struct {
    double loss, ce, e_data, e_sample, grad_norm;
    int correct, labelled;
    double sec_data, sec_sgld, sec_fwd_bwd, sec_opt;
} iter_out;

/* running sums over the iterations of one log group */
typedef struct {
    double loss, ce, e_data, e_sample, grad_norm;
    long correct, labelled, n;
    double sec_data, sec_sgld, sec_fwd_bwd, sec_opt;
    double t0;    /* when the group started */
    double comm0; /* this rank's time in collectives when it started */
} group;

typedef struct {
    const jem_train_cfg *cfg;
    const jem_train_hooks *hooks;
    jem_net *net;
    const jem_dataset *ds, *val;
    size_t D, np;
    int K;
    jem_opt opt;
    jem_buffer buf;
    int use_buf;
    jem_rng rng;
    int64_t iter;
    int epoch, pos;
    int32_t *perm;   /* (N) current epoch order */
    int32_t *labels; /* (N) labels used (-1 = unlabelled, semi-supervised) */
    float lr_factor;
    int retries;
    snapshot snap;
    uint64_t seed;
    FILE *log;
    int rank, size; /* data-parallel: this process's rank of size */
    jem_rng lrng;   /* size > 1: this rank's stream (augmentation,
                              chains); rng then only shuffles, alike on all */
    iter_bufs ib;
    row_plan rows;
    float *ema;                      /* (np) moving average of the weights, NULL when off */
    double t0;                       /* when this run started */
    int64_t start_iter, iter_budget; /* iter_budget 0: time only */
    int64_t gbatch;                  /* images per iteration over all ranks */
    group grp;
    jem_jw w; /* the log line being written */
} trainer;

static void snap_free(snapshot *s)
{
    free(s->params);
    free(s->m);
    free(s->v);
    free(s->ema);
    free(s->buf_x);
    free(s->perm);
    memset(s, 0, sizeof *s);
}

static jem_status snap_take(trainer *t)
{
    snapshot *s = &t->snap;
    size_t bn = t->use_buf ? (size_t)t->buf.n * t->D : 0;
    if (!s->params) {
        s->params = malloc(sizeof(float) * t->np);
        s->m = malloc(sizeof(float) * t->np);
        s->v = t->opt.v ? malloc(sizeof(float) * t->np) : NULL;
        s->ema = t->ema ? malloc(sizeof(float) * t->np) : NULL;
        s->buf_x = bn ? malloc(sizeof(float) * bn) : NULL;
        s->perm = malloc(sizeof(int32_t) * t->ds->n);
        if (!s->params || !s->m || (t->opt.v && !s->v) || (t->ema && !s->ema) || (bn && !s->buf_x) || !s->perm) {
            snap_free(s);
            return jem_fail(JEM_ERR_NOMEM, "out of memory for the rollback snapshot");
        }
    }
    memcpy(s->params, jem_net_params(t->net), sizeof(float) * t->np);
    memcpy(s->m, t->opt.m, sizeof(float) * t->np);
    if (s->v) memcpy(s->v, t->opt.v, sizeof(float) * t->np);
    if (s->ema) memcpy(s->ema, t->ema, sizeof(float) * t->np);
    if (bn) memcpy(s->buf_x, t->buf.x, sizeof(float) * bn);
    memcpy(s->perm, t->perm, sizeof(int32_t) * t->ds->n);
    s->opt_t = t->opt.t;
    s->rng = t->rng;
    s->iter = t->iter;
    s->epoch = t->epoch;
    s->pos = t->pos;
    return JEM_OK;
}

static void snap_restore(trainer *t)
{
    snapshot *s = &t->snap;
    size_t bn = t->use_buf ? (size_t)t->buf.n * t->D : 0;
    memcpy(jem_net_params(t->net), s->params, sizeof(float) * t->np);
    memcpy(t->opt.m, s->m, sizeof(float) * t->np);
    if (s->v) memcpy(t->opt.v, s->v, sizeof(float) * t->np);
    if (s->ema) memcpy(t->ema, s->ema, sizeof(float) * t->np);
    if (bn) memcpy(t->buf.x, s->buf_x, sizeof(float) * bn);
    memcpy(t->perm, s->perm, sizeof(int32_t) * t->ds->n);
    t->opt.t = s->opt_t;
    t->rng = s->rng;
    t->iter = s->iter;
    t->epoch = s->epoch;
    t->pos = s->pos;
}

/* ---- checkpoints with the training state ---- */

/* Exchange the network's weights with their moving average. */
static void swap_ema(trainer *t)
{
    float *p = jem_net_params(t->net), *e = t->ema;
    for (size_t i = 0; i < t->np; i++) {
        float v = p[i];
        p[i] = e[i];
        e[i] = v;
    }
}

/* Collective with several ranks: the replay buffer's slices are gathered to
 * rank 0, which alone writes the file. With a moving average the model's
 * tensors are the averaged weights and "_train.params" the trained ones. */
static jem_status save_ckpt(trainer *t, const char *path)
{
    const jem_train_cfg *c = t->cfg;
    if (t->size > 1) {
        if (t->use_buf) jem_dist_gather_rows(t->buf.x, t->D, t->buf.n);
        if (t->rank != 0) return JEM_OK;
    }
    jem_st *st = NULL;
    jem_status s = jem_st_new(&st);
    if (s) return s;
    char v[320];
    int64_t shp[4];
    if (t->ema) swap_ema(t); /* until the commit: the net holds the average, t->ema the trained weights */
    s = jem_ckpt_add_model(st, t->net);
    for (int i = 0; c->meta && c->meta[i] && c->meta[i + 1] && !s; i += 2)
        s = jem_st_meta(st, c->meta[i], c->meta[i + 1]);
#define META(k, fmt, val)                    \
    do {                                     \
        if (!s) {                            \
            snprintf(v, sizeof v, fmt, val); \
            s = jem_st_meta(st, k, v);       \
        }                                    \
    } while (0)
    META("jem.train.mode", "%s", c->mode == JEM_MODE_JEM ? "jem" : "softmax");
    META("jem.train.iter", "%lld", (long long)t->iter);
    META("jem.train.epoch", "%d", t->epoch);
    META("jem.train.pos", "%d", t->pos);
    META("jem.train.opt_t", "%lld", (long long)t->opt.t);
    META("jem.train.opt", "%s", t->opt.cfg.kind == JEM_OPT_ADAM ? "adam" : "sgd");
    META("jem.train.lr_factor", "%a", (double)t->lr_factor);
    META("jem.train.retries", "%d", t->retries);
    META("jem.train.seed", "%llu", (unsigned long long)t->seed);
    META("jem.train.data", "%s", t->ds->name);
    if (t->ema) META("jem.train.ema", "%g", (double)t->cfg->ema);
#undef META
    shp[0] = (int64_t)t->np;
    if (!s) s = jem_st_add(st, "_opt.m", JEM_DT_F32, 1, shp, t->opt.m);
    if (!s && t->opt.v) s = jem_st_add(st, "_opt.v", JEM_DT_F32, 1, shp, t->opt.v);
    if (!s && t->ema) s = jem_st_add(st, "_train.params", JEM_DT_F32, 1, shp, t->ema);
    shp[0] = 4;
    if (!s) s = jem_st_add(st, "_train.rng", JEM_DT_I64, 1, shp, t->rng.s);
    shp[0] = t->ds->n;
    if (!s) s = jem_st_add(st, "_train.perm", JEM_DT_I32, 1, shp, t->perm);
    if (!s && t->use_buf) {
        shp[0] = t->buf.n;
        shp[1] = t->buf.c;
        shp[2] = t->buf.h;
        shp[3] = t->buf.w;
        s = jem_st_add(st, "_buffer.x", JEM_DT_F32, 4, shp, t->buf.x);
        if (!s) s = jem_st_add(st, "_buffer.y", JEM_DT_I32, 1, shp, t->buf.y);
    }
    if (!s) s = jem_st_commit(st, path);
    if (t->ema) swap_ema(t);
    jem_st_free(st);
    return s;
}

static const char *meta_or(const jem_st *st, const char *k, const char *def)
{
    const char *v = jem_st_get_meta(st, k);
    return v ? v : def;
}

static jem_status load_state(trainer *t, const char *path)
{
    jem_st *st = NULL;
    jem_status s = jem_st_open(path, &st);
    if (s) return s;
    const char *mode = jem_st_get_meta(st, "jem.train.mode");
    if (!mode) {
        jem_st_free(st);
        return jem_fail(JEM_ERR_FORMAT, "%s: no training state to resume from", path);
    }
    jem_dtype dt;
    int nd;
    int64_t shp[8];
    const void *d;
    t->iter = strtoll(meta_or(st, "jem.train.iter", "0"), NULL, 10);
    t->epoch = atoi(meta_or(st, "jem.train.epoch", "0"));
    t->pos = atoi(meta_or(st, "jem.train.pos", "0"));
    t->opt.t = strtoll(meta_or(st, "jem.train.opt_t", "0"), NULL, 10);
    t->lr_factor = (float)strtod(meta_or(st, "jem.train.lr_factor", "1"), NULL);
    t->retries = atoi(meta_or(st, "jem.train.retries", "0"));
#define NEED(name, want_dt, count, dst, elt)                                              \
    do {                                                                                  \
        d = jem_st_get(st, name, &dt, &nd, shp);                                          \
        size_t cnt_ = 1;                                                                  \
        for (int i_ = 0; d && i_ < nd; i_++) cnt_ *= (size_t)shp[i_];                     \
        if (!d || dt != (want_dt) || cnt_ != (size_t)(count)) {                           \
            jem_st_free(st);                                                              \
            return jem_fail(JEM_ERR_FORMAT,                                               \
                            "%s: training state \"%s\" is missing or has the wrong "      \
                            "size (the run must resume with the same data and settings)", \
                            path, name);                                                  \
        }                                                                                 \
        memcpy(dst, d, (elt)*cnt_);                                                       \
    } while (0)
    NEED("_opt.m", JEM_DT_F32, t->np, t->opt.m, sizeof(float));
    if (t->opt.v) NEED("_opt.v", JEM_DT_F32, t->np, t->opt.v, sizeof(float));
    /* net holds the checkpoint's model tensors, which trainer_init copied
     * into the moving average (if any); a checkpoint written with an
     * average keeps the trained weights in "_train.params": training
     * continues from them */
    if (jem_st_get(st, "_train.params", NULL, NULL, NULL))
        NEED("_train.params", JEM_DT_F32, t->np, jem_net_params(t->net), sizeof(float));
    NEED("_train.rng", JEM_DT_I64, 4, t->rng.s, sizeof(uint64_t));
    NEED("_train.perm", JEM_DT_I32, t->ds->n, t->perm, sizeof(int32_t));
    if (t->use_buf) {
        NEED("_buffer.x", JEM_DT_F32, (size_t)t->buf.n * t->D, t->buf.x, sizeof(float));
        NEED("_buffer.y", JEM_DT_I32, t->buf.n, t->buf.y, sizeof(int32_t));
    }
#undef NEED
    for (int i = 0; i < t->ds->n; i++)
        if (t->perm[i] < 0 || t->perm[i] >= t->ds->n) {
            jem_st_free(st);
            return jem_fail(JEM_ERR_FORMAT, "%s: training state \"_train.perm\" is corrupt", path);
        }
    if (t->pos < 0 || t->pos > t->ds->n) {
        jem_st_free(st);
        return jem_fail(JEM_ERR_FORMAT, "%s: jem.train.pos %d out of range", path, t->pos);
    }
    jem_st_free(st);
    return JEM_OK;
}

/* ---- set-up ---- */

static jem_status check_args(jem_net *net, const jem_dataset *ds, const jem_train_cfg *c)
{
    const jem_arch *a = jem_net_arch(net);
    if (ds->c != a->in_c || ds->h != a->in_h || ds->w != a->in_w)
        return jem_fail(JEM_ERR_SHAPE, "%s: images are %dx%dx%d, model '%s' takes %dx%dx%d", ds->name, ds->c, ds->h,
                        ds->w, a->name, a->in_c, a->in_h, a->in_w);
    if (ds->n_classes > a->n_classes)
        return jem_fail(JEM_ERR_SHAPE, "%s: %d classes, model '%s' has %d outputs", ds->name, ds->n_classes, a->name,
                        a->n_classes);
    if (c->batch < 1 || c->batch > ds->n)
        return jem_fail(JEM_ERR_ARG, "batch size %d (data set %s has %d images)", c->batch, ds->name, ds->n);
    if (!c->epochs && !(c->minutes > 0) && !c->iters)
        return jem_fail(JEM_ERR_ARG, "no budget: give epochs, minutes or iterations");
    if ((int64_t)c->batch * jem_dist_size() > ds->n)
        return jem_fail(JEM_ERR_ARG, "batch size %d on %d ranks (data set %s has %d images)", c->batch, jem_dist_size(),
                        ds->name, ds->n);
    if (!(c->ema >= 0 && c->ema < 1))
        return jem_fail(JEM_ERR_ARG, "moving-average decay %g: must be in [0, 1) (0: off)", (double)c->ema);
    if (c->px_rows < -1) return jem_fail(JEM_ERR_ARG, "p(x) data rows %d: must be -1, 0 or a row count", c->px_rows);
    return JEM_OK;
}

/* Semi-supervised: keep labels for labels_per_class images per class,
 * chosen by a seeded shuffle; the others become -1. */
static jem_status mask_labels(trainer *t)
{
    const jem_dataset *ds = t->ds;
    const int per_class = t->cfg->labels_per_class;
    memcpy(t->labels, ds->y, sizeof(int32_t) * ds->n);
    if (per_class <= 0) return JEM_OK;
    jem_rng lr;
    jem_rng_seed(&lr, t->cfg->seed, 0x6c6162);
    int32_t *order = malloc(sizeof(int32_t) * ds->n);
    int *kept = calloc(t->K, sizeof(int));
    if (!order || !kept) {
        free(order);
        free(kept);
        return jem_fail(JEM_ERR_NOMEM, "out of memory");
    }
    for (int i = 0; i < ds->n; i++) order[i] = i;
    jem_rng_shuffle(&lr, order, (size_t)ds->n);
    for (int i = 0; i < ds->n; i++) {
        int j = order[i], y = ds->y[j];
        if (y >= 0 && y < t->K && kept[y] < per_class) kept[y]++;
        else t->labels[j] = -1;
    }
    free(order);
    free(kept);
    return JEM_OK;
}

/* The replay buffer, filled from its init distribution; with several ranks
 * each runs its chains in its own slice. */
static jem_status buffer_init(trainer *t)
{
    const jem_train_cfg *c = t->cfg;
    const jem_dataset *ds = t->ds;
    jem_status s =
        jem_buffer_create(&t->buf, c->buffer_size, ds->c, ds->h, ds->w, t->K, c->init, c->reinit, c->w_xy != 0);
    if (!s && c->init == JEM_INIT_INFORMATIVE) s = jem_buffer_fit(&t->buf, ds, c->full_cov);
    if (s) return s;
    jem_buffer_reset(&t->buf, &t->rng);
    if (t->size > 1) {
        int64_t lo, hi;
        jem_dist_slice(t->buf.n, &lo, &hi);
        if (hi <= lo) return jem_fail(JEM_ERR_ARG, "replay buffer of %d slots on %d ranks", t->buf.n, t->size);
        t->buf.lo = (int)lo;
        t->buf.hi = (int)hi;
    }
    return JEM_OK;
}

/* The rows of an iteration (see row_plan). */
static row_plan plan_rows(const jem_train_cfg *c)
{
    const int B = c->batch, S = c->n_samples > 0 ? c->n_samples : c->batch;
    row_plan r = {B, 0, B, B, 0, 0, B};
    if (c->mode != JEM_MODE_JEM) return r;
    r.nu = c->w_x != 0 || c->l2 != 0 ? S : 0;
    r.nc = c->w_xy != 0 ? S : 0;
    if ((c->aug.crop_pad > 0 || c->aug.hflip) && c->px_rows >= 0 && (r.nu || r.nc)) {
        int n = c->px_rows > 0 ? c->px_rows : S;
        r.d0 = B;
        r.nd = n < B ? n : B;
        r.u0 = B + r.nd;
    }
    r.N = r.u0 + r.nu + r.nc;
    return r;
}

static jem_status alloc_bufs(trainer *t)
{
    const jem_train_cfg *c = t->cfg;
    const int S = c->n_samples > 0 ? c->n_samples : c->batch;
    const size_t N = (size_t)t->rows.N, n = (size_t)t->ds->n;
    iter_bufs *ib = &t->ib;
    t->perm = malloc(sizeof(int32_t) * n);
    t->labels = malloc(sizeof(int32_t) * n);
    ib->x = malloc(sizeof(float) * N * t->D);
    ib->y = malloc(sizeof(int32_t) * N);
    ib->logits = malloc(sizeof(float) * N * t->K);
    ib->dl = malloc(sizeof(float) * N * t->K);
    ib->idx = malloc(sizeof(int32_t) * 2 * S);
    ib->lse = malloc(sizeof(float) * N);
    if (c->ema > 0 && (t->ema = malloc(sizeof(float) * t->np))) /* starts at the weights */
        memcpy(t->ema, jem_net_params(t->net), sizeof(float) * t->np);
    if (!t->perm || !t->labels || !ib->x || !ib->y || !ib->logits || !ib->dl || !ib->idx || !ib->lse ||
        (c->ema > 0 && !t->ema))
        return jem_fail(JEM_ERR_NOMEM, "out of memory for training buffers");
    return JEM_OK;
}

static jem_status trainer_init(trainer *t, jem_net *net, const jem_dataset *ds, const jem_dataset *val,
                               const jem_train_cfg *c, const jem_train_hooks *hooks)
{
    t->cfg = c;
    t->hooks = hooks;
    t->net = net;
    t->ds = ds;
    t->val = val;
    t->D = (size_t)ds->c * ds->h * ds->w;
    t->np = jem_net_nparams(net);
    t->K = jem_net_arch(net)->n_classes;
    t->lr_factor = 1.0f;
    t->seed = c->seed;
    t->use_buf = c->mode == JEM_MODE_JEM && (c->w_x != 0 || c->l2 != 0 || c->w_xy != 0);
    jem_rng_seed(&t->rng, c->seed, 0x7472);
    t->rank = jem_dist_rank();
    t->size = jem_dist_size();
    if (t->size > 1) jem_rng_seed(&t->lrng, c->seed, 0x6c000 + (uint64_t)t->rank);
    jem_jw_init(&t->w);
    /* the budget in iterations: the smaller of --iters and --epochs */
    t->gbatch = (int64_t)c->batch * t->size;
    const int64_t per_epoch = (ds->n + t->gbatch - 1) / t->gbatch;
    if (c->iters) t->iter_budget = c->iters;
    if (c->epochs) {
        int64_t e = (int64_t)c->epochs * per_epoch;
        t->iter_budget = t->iter_budget && t->iter_budget < e ? t->iter_budget : e;
    }

    t->rows = plan_rows(c);
    jem_status s = jem_opt_init(&t->opt, &c->opt, t->np);
    if (!s) s = alloc_bufs(t);
    if (s) return s;
    for (int i = 0; i < ds->n; i++) t->perm[i] = i;
    s = mask_labels(t);
    if (s) return s;
    jem_rng_shuffle(&t->rng, t->perm, (size_t)ds->n);
    if (t->use_buf) return buffer_init(t);
    return JEM_OK;
}

static void trainer_free(trainer *t)
{
    if (t->log) fclose(t->log);
    jem_jw_free(&t->w);
    snap_free(&t->snap);
    jem_buffer_free(&t->buf);
    jem_opt_free(&t->opt);
    free(t->ema);
    free(t->perm);
    free(t->labels);
    free(t->ib.x);
    free(t->ib.y);
    free(t->ib.logits);
    free(t->ib.dl);
    free(t->ib.idx);
    free(t->ib.lse);
}

/* ---- one iteration ---- */

/* The next global batch of size x B images in epoch order; this rank keeps
 * rows [rank B, (rank + 1) B) of it. */
static void next_batch(trainer *t, int B, float *x, int32_t *y)
{
    const jem_dataset *ds = t->ds;
    for (int g = 0; g < B * t->size; g++) {
        if (t->pos >= ds->n) {
            t->pos = 0;
            t->epoch++;
            jem_rng_shuffle(&t->rng, t->perm, (size_t)ds->n);
        }
        int j = t->perm[t->pos++];
        int i = g - B * t->rank;
        if (i < 0 || i >= B) continue;
        memcpy(x + (size_t)i * t->D, ds->x + (size_t)j * t->D, sizeof(float) * t->D);
        y[i] = t->labels[j];
    }
}

/* this rank's random stream for augmentation and chains */
static jem_rng *local_rng(trainer *t) { return t->size > 1 ? &t->lrng : &t->rng; }

/* The labelled batch into rows [0, B), augmented; in JEM mode with crop or
 * flip, clean copies of its first nd images into the generative terms' data
 * rows [d0, d0 + nd), with only the Gaussian noise. */
static void load_batch(trainer *t)
{
    const jem_train_cfg *c = t->cfg;
    const jem_dataset *ds = t->ds;
    const row_plan *r = &t->rows;
    iter_bufs *ib = &t->ib;
    jem_rng *lr = local_rng(t);
    next_batch(t, r->B, ib->x, ib->y);
    if (r->d0) {
        memcpy(ib->x + (size_t)r->d0 * t->D, ib->x, sizeof(float) * t->D * r->nd);
        memcpy(ib->y + r->d0, ib->y, sizeof(int32_t) * r->nd);
    }
    jem_augment_batch(&c->aug, ib->x, r->B, ds->c, ds->h, ds->w, lr);
    if (r->d0) {
        const jem_augment noise_only = {.noise = c->aug.noise};
        jem_augment_batch(&noise_only, ib->x + (size_t)r->d0 * t->D, r->nd, ds->c, ds->h, ds->w, lr);
    }
    if (t->hooks->batch) t->hooks->batch(t->hooks->ud, ib->x, ib->y, r->B, r->d0, r->nd);
}

/* Cross-entropy of rows [0, B): its mean, hits and labelled count into o,
 * its gradient w.r.t. the logits (weight w_y) into ib->dl. */
static void cross_entropy(trainer *t, iter_out *o)
{
    const int B = t->cfg->batch;
    iter_bufs *ib = &t->ib;
    o->ce = jem_softmax_xent(ib->logits, ib->y, B, t->K, ib->dl, t->cfg->w_y, &o->correct);
    for (int i = 0; i < B; i++) o->labelled += ib->y[i] >= 0;
}

static jem_status backward(trainer *t)
{
    jem_net_zero_grad(t->net);
    return jem_net_backward(t->net, t->ib.dl, NULL, 1);
}

/* softmax mode: cross-entropy on an augmented batch */
static jem_status iter_softmax(trainer *t, iter_out *o)
{
    const int B = t->cfg->batch;
    iter_bufs *ib = &t->ib;
    memset(o, 0, sizeof *o);
    double t0 = now_s();
    load_batch(t);
    double t1 = now_s();
    jem_status s = jem_net_forward(t->net, ib->x, B, ib->logits);
    if (s) return s;
    jem_logsumexp(ib->logits, B, t->K, ib->lse);
    cross_entropy(t, o);
    double ed = 0;
    for (int i = 0; i < B; i++) ed += -ib->lse[i];
    o->e_data = ed / B; /* watched for divergence */
    o->loss = t->cfg->w_y * o->ce;
    s = backward(t);
    o->sec_data = t1 - t0;
    o->sec_fwd_bwd = now_s() - t1;
    return s;
}

/* Draw the unconditional and conditional chains from the replay buffer into
 * their rows, run SGLD on them and store them back. Conditional chains take
 * the batch's labels (random classes where unlabelled). */
static jem_status run_chains(trainer *t, jem_sgld_stats *ss)
{
    const jem_train_cfg *c = t->cfg;
    const row_plan *r = &t->rows;
    const int B = r->B, nu = r->nu, nc = r->nc;
    iter_bufs *ib = &t->ib;
    jem_rng *lr = local_rng(t);
    float *xu = ib->x + (size_t)r->u0 * t->D, *xc = xu + (size_t)nu * t->D;
    int32_t *yu = ib->y + r->u0, *yc = yu + nu;
    jem_status s;
    memset(ss, 0, sizeof *ss);
    if (nu) {
        jem_buffer_draw(&t->buf, nu, NULL, xu, ib->idx, NULL, NULL, lr);
        uint64_t sseed = jem_rng_u64(lr);
        s = jem_sgld_run(jem_net_energy, t->net, xu, nu, (int)t->D, NULL, NULL, &c->sgld, sseed, (uint64_t)t->iter, ss);
        if (s) return s;
        jem_buffer_store(&t->buf, xu, ib->idx, NULL, nu);
        for (int i = 0; i < nu; i++) yu[i] = -1;
    }
    if (nc) {
        for (int i = 0; i < nc; i++) {
            int32_t yy = ib->y[i % B];
            yc[i] = yy >= 0 ? yy : (int32_t)jem_rng_below(lr, (uint32_t)t->K);
        }
        jem_buffer_draw(&t->buf, nc, yc, xc, ib->idx + nu, NULL, NULL, lr);
        uint64_t sseed = jem_rng_u64(lr);
        jem_sgld_stats s2;
        s = jem_sgld_run(jem_net_energy, t->net, xc, nc, (int)t->D, yc, NULL, &c->sgld, sseed,
                         (uint64_t)t->iter ^ 0x5555555555ULL, &s2);
        if (s) return s;
        jem_buffer_store(&t->buf, xc, ib->idx + nu, NULL, nc);
        if (!nu) *ss = s2;
    }
    return JEM_OK;
}

/* The generative terms w_x [E(x_data) - E(x_sample)] + w_xy [E(x_data, y) -
 * E(x_sample_y, y)] + l2 (E(x_data)^2 + E(x_sample)^2): their gradients
 * w.r.t. the logits added to the data rows' (which hold the cross-entropy's
 * when they are the batch rows) and written to the sample rows'; the loss
 * and the energies into o. */
static void generative_terms(trainer *t, iter_out *o)
{
    const jem_train_cfg *c = t->cfg;
    const row_plan *r = &t->rows;
    const int K = t->K, d0 = r->d0, nd = r->nd, u0 = r->u0, nu = r->nu, c0 = r->u0 + r->nu, nc = r->nc;
    const iter_bufs *ib = &t->ib;
    double ed = 0, eu = 0, edy = 0, ecy = 0, l2d = 0, l2u = 0;
    for (int i = d0; i < d0 + nd; i++) {
        ed += -ib->lse[i];
        l2d += (double)ib->lse[i] * ib->lse[i];
    }
    ed /= nd;
    l2d /= nd;
    for (int i = u0; i < u0 + nu; i++) {
        eu += -ib->lse[i];
        l2u += (double)ib->lse[i] * ib->lse[i];
    }
    if (nu) {
        eu /= nu;
        l2u /= nu;
    }
    int nl = 0; /* labelled data rows */
    for (int i = d0; i < d0 + nd; i++) nl += ib->y[i] >= 0;
    /* ramped in over gen_warmup iterations */
    const float ramp = c->gen_warmup > 0 && t->iter < c->gen_warmup ? (float)(t->iter + 1) / c->gen_warmup : 1.0f;
    const float w_x = c->w_x * ramp, w_xy = c->w_xy * ramp, l2 = c->l2 * ramp;
    /* d/dlogits of E(x) = -softmax; of E(x)^2 = -2 E softmax = 2 lse softmax */
    if (d0) memset(ib->dl + (size_t)d0 * K, 0, sizeof(float) * K * nd);
    for (int i = d0; i < d0 + nd; i++) {
        float *d = ib->dl + (size_t)i * K;
        const float *l = ib->logits + (size_t)i * K;
        double lse = ib->lse[i];
        float coef = (float)((-w_x + 2.0 * l2 * lse) / nd);
        for (int k = 0; k < K; k++) d[k] += coef * expf((float)(l[k] - lse));
        if (w_xy != 0 && ib->y[i] >= 0) {
            edy += -l[ib->y[i]];
            d[ib->y[i]] += -w_xy / (float)(nl ? nl : 1);
        }
    }
    for (int i = u0; i < u0 + nu; i++) {
        float *d = ib->dl + (size_t)i * K;
        const float *l = ib->logits + (size_t)i * K;
        double lse = ib->lse[i];
        float coef = (float)((w_x + 2.0 * l2 * lse) / nu);
        for (int k = 0; k < K; k++) d[k] = coef * expf((float)(l[k] - lse));
    }
    for (int i = c0; i < c0 + nc; i++) {
        float *d = ib->dl + (size_t)i * K;
        const float *l = ib->logits + (size_t)i * K;
        for (int k = 0; k < K; k++) d[k] = 0.0f;
        int yy = ib->y[i];
        ecy += -l[yy];
        d[yy] = w_xy / (float)nc;
    }
    if (nl) edy /= nl;
    if (nc) ecy /= nc;
    o->loss += w_x * (ed - eu) + w_xy * (edy - ecy) + l2 * (l2d + l2u);
    o->e_data = ed;
    o->e_sample = nu ? eu : (nc ? ecy : 0);
}

/* JEM mode: the chains, then one forward and backward over the batch, the
 * data rows and the chains for cross-entropy plus the generative terms */
static jem_status iter_jem(trainer *t, iter_out *o)
{
    const int N = t->rows.N;
    iter_bufs *ib = &t->ib;
    memset(o, 0, sizeof *o);
    double t0 = now_s();
    load_batch(t);
    double t1 = now_s();
    jem_sgld_stats ss;
    jem_status s = run_chains(t, &ss);
    if (s) return s;
    double t2 = now_s();
    s = jem_net_forward(t->net, ib->x, N, ib->logits);
    if (s) return s;
    jem_logsumexp(ib->logits, N, t->K, ib->lse);
    cross_entropy(t, o);
    o->loss = t->cfg->w_y * o->ce;
    generative_terms(t, o);
    o->grad_norm = ss.grad_norm;
    s = backward(t);
    o->sec_data = t1 - t0;
    o->sec_sgld = t2 - t1;
    o->sec_fwd_bwd = now_s() - t2;
    return s;
}

/* With several ranks: average the gradients (one allreduce over the flat
 * block) and the figures, so every rank takes the same step and the same
 * rollback decision. Returns the status of the iteration over all ranks. */
static jem_status average_ranks(trainer *t, iter_out *o, jem_status s)
{
    float *g = jem_net_grads(t->net);
    jem_dist_sum_f32(g, t->np);
    const float inv = 1.0f / (float)t->size;
    for (size_t i = 0; i < t->np; i++) g[i] *= inv;
    double f[8] = {o->loss,      o->ce,      o->e_data,   o->e_sample,
                   o->grad_norm, o->correct, o->labelled, s == JEM_ERR_NONFINITE};
    jem_dist_sum_f64(f, 8);
    o->loss = f[0] / t->size;
    o->ce = f[1] / t->size;
    o->e_data = f[2] / t->size;
    o->e_sample = f[3] / t->size;
    o->grad_norm = f[4] / t->size;
    o->correct = (int)f[5];
    o->labelled = (int)f[6];
    return f[7] > 0 ? JEM_ERR_NONFINITE : JEM_OK;
}

/* ---- divergence, the step, rollback ---- */

/* FNV-1a over the parameters' bytes: equal on every rank while they agree. */
static uint64_t params_hash(jem_net *net, size_t np)
{
    const unsigned char *b = (const unsigned char *)jem_net_params(net);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < np * sizeof(float); i++) {
        h ^= b[i];
        h *= 0x100000001b3ull;
    }
    return h;
}

static int finite_block(const float *p, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += p[i] * 0.0f;
    return acc == 0.0f; /* NaN or Inf anywhere makes acc NaN */
}

static float current_lr(const trainer *t, double elapsed)
{
    const jem_train_cfg *c = t->cfg;
    return jem_sched_lr(&c->sched, t->iter, budget_frac(c, t->iter_budget, t->iter, elapsed)) * t->lr_factor;
}

/* Why this iteration counts as diverged (NULL: it does not). */
static const char *divergence(const trainer *t, const iter_out *o, jem_status s, char *buf, size_t n)
{
    const float th = t->cfg->div_threshold;
    if (s == JEM_ERR_NONFINITE) return "non-finite SGLD chain";
    if (!isfinite(o->loss)) return "non-finite loss";
    if (fabs(o->loss) > th || fabs(o->e_data) > th || fabs(o->e_sample) > th) {
        snprintf(buf, n, "runaway loss %.3g or energies (data %.3g, sample %.3g) above %.3g", o->loss, o->e_data,
                 o->e_sample, (double)th);
        return buf;
    }
    if (!finite_block(jem_net_grads(t->net), t->np)) return "non-finite gradient";
    return NULL;
}

/* The moving average of the weights after the optimiser's n-th step (n from
 * 1): ema = d ema + (1 - d) w with d = min(decay, n / (9 + n)), so that it
 * forgets the initial weights quickly while few steps were taken. */
static void ema_update(trainer *t)
{
    const double n = (double)t->opt.t;
    const float d = (float)fmin(t->cfg->ema, n / (9.0 + n));
    const float *w = jem_net_params(t->net);
    float *e = t->ema;
    for (size_t i = 0; i < t->np; i++) e[i] = d * e[i] + (1.0f - d) * w[i];
}

/* The optimiser step and the moving average; returns why the step failed
 * (NULL: it did not). */
static const char *step(trainer *t, iter_out *o)
{
    const double t0 = now_s();
    float lr = current_lr(t, t0 - t->t0);
    if (t->hooks->blowup_at && t->iter == t->hooks->blowup_at && t->retries == 0) lr *= 1e6f;
    jem_opt_step(&t->opt, jem_net_params(t->net), jem_net_grads(t->net), lr);
    if (!finite_block(jem_net_params(t->net), t->np)) return "non-finite weights after the step";
    if (t->ema) ema_update(t);
    o->sec_opt = now_s() - t0;
    return NULL;
}

/* With several ranks, every 100 iterations: the parameters must agree. */
static jem_status check_ranks_agree(trainer *t)
{
    if (t->size > 1 && (t->iter % 100 == 0 || t->iter == 1) && !jem_dist_same_u64(params_hash(t->net, t->np)))
        return jem_fail(JEM_ERR_NONFINITE,
                        "iteration %lld: the parameters differ across ranks "
                        "(ranks must run the same binary, data and options)",
                        (long long)t->iter);
    return JEM_OK;
}

/* ---- side effects: log lines, progress, validation, samples, checkpoints ---- */

static void group_add(group *g, const iter_out *o)
{
    g->loss += o->loss;
    g->ce += o->ce;
    g->e_data += o->e_data;
    g->e_sample += o->e_sample;
    g->grad_norm += o->grad_norm;
    g->correct += o->correct;
    g->labelled += o->labelled;
    g->n++;
    g->sec_data += o->sec_data;
    g->sec_sgld += o->sec_sgld;
    g->sec_fwd_bwd += o->sec_fwd_bwd;
    g->sec_opt += o->sec_opt;
}

static void group_reset(group *g)
{
    memset(g, 0, sizeof *g);
    g->t0 = now_s();
    g->comm0 = jem_dist_comm_seconds();
}

static void log_line(trainer *t, const char *json)
{
    if (!t->log) return;
    fputs(json, t->log);
    fputc('\n', t->log);
    fflush(t->log);
}

static jem_progress progress_at(const trainer *t, int event, const char *msg)
{
    jem_progress p = {0};
    p.iter = t->iter;
    p.epoch = t->epoch;
    p.elapsed = now_s() - t->t0;
    p.eta = -1;
    p.val_acc = -1;
    p.event = event;
    p.msg = msg;
    return p;
}

static void report(const trainer *t, const jem_progress *p)
{
    if (t->cfg->progress && t->rank == 0) t->cfg->progress(t->cfg->ud, p);
}

static void buffer_stats(const jem_buffer *b, size_t D, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    size_t n = (size_t)b->n * D;
    for (size_t i = 0; i < n; i++) {
        s += b->x[i];
        s2 += (double)b->x[i] * b->x[i];
    }
    *mean = s / n;
    double v = s2 / n - *mean * *mean;
    *sd = v > 0 ? sqrt(v) : 0;
}

/* One JSON line per log group: the progress figures, then where an
 * iteration's time went (seconds per iteration, means over the group);
 * comm: the group's seconds in collectives, least and most over the ranks. */
static void log_json(trainer *t, const jem_progress *p, const double comm[2], double sec_iter)
{
    const group *g = &t->grp;
    const int jem = t->cfg->mode == JEM_MODE_JEM;
    jem_jw *w = &t->w;
    jem_jw_reset(w);
    jem_jw_obj_begin(w);
    jem_jw_kint(w, "iter", p->iter);
    jem_jw_kint(w, "epoch", p->epoch);
    jem_jw_kdouble(w, "time", p->elapsed);
    jem_jw_kdouble(w, "loss", p->loss);
    jem_jw_kdouble(w, "ce", p->ce);
    jem_jw_kdouble(w, "acc", p->acc);
    if (jem) {
        jem_jw_kdouble(w, "e_data", p->e_data);
        jem_jw_kdouble(w, "e_sample", p->e_sample);
        jem_jw_kdouble(w, "e_gap", p->e_data - p->e_sample);
        jem_jw_kdouble(w, "sgld_grad_norm", p->grad_norm);
        jem_jw_kdouble(w, "buffer_mean", p->buf_mean);
        jem_jw_kdouble(w, "buffer_std", p->buf_std);
    }
    jem_jw_kdouble(w, "img_per_s", p->img_per_s);
    if (t->size > 1) {
        jem_jw_kdouble(w, "comm_seconds_min", comm[0]);
        jem_jw_kdouble(w, "comm_seconds_max", comm[1]);
    }
    jem_jw_kdouble(w, "lr", p->lr);
    if (p->val_acc >= 0) jem_jw_kdouble(w, "val_acc", p->val_acc);
    jem_jw_kdouble(w, "sec_iter", sec_iter);
    jem_jw_kdouble(w, "sec_data", g->sec_data / g->n);
    if (jem) jem_jw_kdouble(w, "sec_sgld", g->sec_sgld / g->n);
    jem_jw_kdouble(w, "sec_fwd_bwd", g->sec_fwd_bwd / g->n);
    jem_jw_kdouble(w, "sec_opt", g->sec_opt / g->n);
    jem_jw_obj_end(w);
    log_line(t, jem_jw_cstr(w));
}

/* The log group's means as a log line and a progress report (rank 0), then
 * a new group. Collective with several ranks. */
static void log_group(trainer *t, double vacc, int epoch_end)
{
    const jem_train_cfg *c = t->cfg;
    const group *g = &t->grp;
    /* the group's time in collectives, least and most over the ranks
     * (nanoseconds; the least is the rank that waited least for the others:
     * nearest to the cost of the transfers alone) */
    double comm[2] = {0, 0};
    if (t->size > 1) {
        const int64_t mine = (int64_t)(1e9 * (jem_dist_comm_seconds() - g->comm0));
        int64_t ns[2] = {-mine, mine};
        jem_dist_max_i64(ns, 2);
        comm[0] = 1e-9 * (double)-ns[0];
        comm[1] = 1e-9 * (double)ns[1];
    }
    if (t->rank == 0) {
        double dt = now_s() - g->t0;
        jem_progress p = progress_at(t, epoch_end ? JEM_EV_EPOCH : JEM_EV_ITER, NULL);
        double rate = (t->iter - t->start_iter) / (p.elapsed > 1e-9 ? p.elapsed : 1e-9);
        if (t->iter_budget) p.eta = (t->iter_budget - t->iter) / (rate > 0 ? rate : 1e-9);
        if (c->minutes > 0) {
            double left = c->minutes * 60.0 - p.elapsed;
            p.eta = p.eta < 0 || left < p.eta ? left : p.eta;
        }
        p.iter_total = t->iter_budget ? t->iter_budget : (c->minutes > 0 ? t->iter + (int64_t)(p.eta * rate) : 0);
        p.loss = g->loss / g->n;
        p.ce = g->ce / g->n;
        p.acc = g->labelled ? (double)g->correct / g->labelled : 0;
        if (c->mode == JEM_MODE_JEM) {
            p.e_data = g->e_data / g->n;
            p.e_sample = g->e_sample / g->n;
            p.grad_norm = g->grad_norm / g->n;
        }
        p.img_per_s = g->n * t->gbatch / (dt > 1e-9 ? dt : 1e-9);
        p.lr = current_lr(t, p.elapsed);
        p.val_acc = vacc;
        if (t->use_buf) buffer_stats(&t->buf, t->D, &p.buf_mean, &p.buf_std);
        log_json(t, &p, comm, dt / g->n);
        report(t, &p);
    }
    group_reset(&t->grp);
}

/* Roll back to the last good state after a divergence (why), with a lower
 * learning rate and fresh random streams; JEM_ERR_DIVERGED when the
 * rollbacks are used up. */
static jem_status rollback(trainer *t, const char *why)
{
    const jem_train_cfg *c = t->cfg;
    const int64_t bad_iter = t->iter;
    if (++t->retries > c->max_retries)
        return jem_fail(JEM_ERR_DIVERGED,
                        "diverged at iteration %lld (%s) after %d rollbacks; "
                        "lower the learning rate or the SGLD step size, or add an energy penalty (--l2)",
                        (long long)bad_iter, why, c->max_retries);
    snap_restore(t);
    t->lr_factor *= c->retry_lr_factor;
    /* re-seed so the same chains do not repeat */
    jem_rng_seed(&t->rng, jem_rng_u64(&t->rng) ^ (uint64_t)t->retries, 0x7265);
    if (t->size > 1) jem_rng_seed(&t->lrng, jem_rng_u64(&t->lrng) ^ (uint64_t)t->retries, 0x7265);
    jem_jw *w = &t->w;
    jem_jw_reset(w);
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "event", "rollback");
    jem_jw_kint(w, "iter", bad_iter);
    jem_jw_kint(w, "to_iter", t->iter);
    jem_jw_kstr(w, "reason", why);
    jem_jw_kdouble(w, "lr_factor", t->lr_factor);
    jem_jw_obj_end(w);
    log_line(t, jem_jw_cstr(w));
    char msg[320];
    snprintf(msg, sizeof msg, "iteration %lld: %s; rolled back to iteration %lld, lr x%.3g (rollback %d of %d)",
             (long long)bad_iter, why, (long long)t->iter, (double)t->lr_factor, t->retries, c->max_retries);
    jem_progress p = progress_at(t, JEM_EV_ROLLBACK, msg);
    report(t, &p);
    group_reset(&t->grp);
    return JEM_OK;
}

/* Accuracy on the validation set into *acc (unchanged without one), with
 * the moving average of the weights when there is one. */
static jem_status validate(trainer *t, double *acc)
{
    if (!t->val || t->val->n <= 0) return JEM_OK;
    if (t->ema) swap_ema(t);
    jem_status s = jem_evaluate(t->net, t->val, acc, NULL);
    if (t->ema) swap_ema(t);
    return s;
}

/* The PNG grid of the first 64 replay-buffer images (collective with several
 * ranks: the buffer's slices are gathered to rank 0, which writes). */
static jem_status write_samples(trainer *t)
{
    if (t->size > 1) jem_dist_gather_rows(t->buf.x, t->D, t->buf.n);
    if (t->rank != 0) return JEM_OK;
    const jem_dataset *ds = t->ds;
    return jem_png_write_grid(t->cfg->sample_path, t->buf.x, t->buf.n < 64 ? t->buf.n : 64, ds->c, ds->h, ds->w, 8, 2);
}

static jem_status checkpoint(trainer *t)
{
    jem_status s = save_ckpt(t, t->cfg->ckpt_path);
    if (s) return s;
    jem_progress p = progress_at(t, JEM_EV_CKPT, t->cfg->ckpt_path);
    report(t, &p);
    return JEM_OK;
}

/* *stop was set: a checkpoint, then JEM_ERR_INTERRUPTED. */
static jem_status interrupted(trainer *t)
{
    const char *ck = t->cfg->ckpt_path;
    if (ck) {
        jem_status s = save_ckpt(t, ck);
        if (s) return s;
    }
    return jem_fail(JEM_ERR_INTERRUPTED, "stopped at iteration %lld%s%s", (long long)t->iter,
                    ck ? ", checkpoint written to " : "", ck ? ck : "");
}

/* Whether the budget is spent and whether a stop was asked for; with several
 * ranks every rank sees the same answer. */
static void check_stop(trainer *t, int *spent, int *stop)
{
    const jem_train_cfg *c = t->cfg;
    double el = now_s() - t->t0;
    int64_t f[2] = {(t->iter_budget && t->iter >= t->iter_budget) || (c->minutes > 0 && el >= c->minutes * 60.0),
                    c->stop && *c->stop};
    if (t->size > 1) jem_dist_max_i64(f, 2);
    *spent = f[0] != 0;
    *stop = f[1] != 0;
}

static int every(int64_t iter, int n) { return n > 0 && iter % n == 0; }

/* ---- the loop ---- */

jem_status jem_train_hooked(jem_net *net, const jem_dataset *ds, const jem_dataset *val, const jem_train_cfg *c,
                            const char *resume_path, const jem_train_hooks *hooks)
{
    static const jem_train_hooks no_hooks;
    jem_status s = check_args(net, ds, c);
    if (s) return s;
    trainer t;
    memset(&t, 0, sizeof t);
    s = trainer_init(&t, net, ds, val, c, hooks ? hooks : &no_hooks);
    if (!s && resume_path) {
        s = load_state(&t, resume_path);
        if (!s && t.size > 1) jem_rng_seed(&t.lrng, c->seed ^ (uint64_t)t.iter, 0x6c000 + (uint64_t)t.rank);
    }
    if (!s && c->log_path && t.rank == 0 && !(t.log = fopen(c->log_path, "a")))
        s = jem_fail(JEM_ERR_IO, "%s: cannot open the log for writing", c->log_path);
    if (!s) s = snap_take(&t);
    t.t0 = now_s();
    t.start_iter = t.iter;
    group_reset(&t.grp);
    int last_epoch = t.epoch;
    while (!s) {
        int spent, stop;
        check_stop(&t, &spent, &stop);
        if (spent) break;
        if (stop) {
            s = interrupted(&t);
            break;
        }
        iter_out o;
        s = c->mode == JEM_MODE_JEM ? iter_jem(&t, &o) : iter_softmax(&t, &o);
        if (s && s != JEM_ERR_NONFINITE) break;
        if (t.size > 1) s = average_ranks(&t, &o, s);
        char buf[160];
        const char *why = divergence(&t, &o, s, buf, sizeof buf);
        if (!why) why = step(&t, &o);
        if (why) {
            s = rollback(&t, why);
            continue;
        }
        s = JEM_OK;
        t.iter++;
        group_add(&t.grp, &o);
        const int epoch_end = t.epoch != last_epoch;
        last_epoch = t.epoch;
        double vacc = -1;
        if ((s = check_ranks_agree(&t))) break;
        if (every(t.iter, c->snapshot_every) && (s = snap_take(&t))) break;
        if ((epoch_end || every(t.iter, c->eval_every)) && (s = validate(&t, &vacc))) break;
        if (epoch_end || every(t.iter, c->log_every)) log_group(&t, vacc, epoch_end);
        if (t.use_buf && c->sample_path && every(t.iter, c->sample_every) && (s = write_samples(&t))) break;
        if (c->ckpt_path && (epoch_end || every(t.iter, c->ckpt_every)) && (s = checkpoint(&t))) break;
    }
    if (!s && c->ckpt_path) s = save_ckpt(&t, c->ckpt_path);
    if (!s && t.use_buf && c->sample_path) s = write_samples(&t);
    if (t.ema) memcpy(jem_net_params(net), t.ema, sizeof(float) * t.np); /* the caller gets the average */
    trainer_free(&t);
    return s;
}

jem_status jem_train(jem_net *net, const jem_dataset *ds, const jem_dataset *val, const jem_train_cfg *c,
                     const char *resume_path)
{
    return jem_train_hooked(net, ds, val, c, resume_path, NULL);
}

jem_status jem_train_test_blowup(jem_net *net, const jem_dataset *ds, const jem_dataset *val, const jem_train_cfg *c,
                                 const char *resume_path, int64_t blowup_at)
{
    const jem_train_hooks h = {.blowup_at = blowup_at};
    return jem_train_hooked(net, ds, val, c, resume_path, &h);
}

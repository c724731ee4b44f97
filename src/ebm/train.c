/*
 * The trainer: softmax cross-entropy, or the JEM hybrid
 *   loss = w_y CE(f(x), y) + w_x [E(x_data) - E(x_sample)]
 *        + w_xy [E(x_data, y) - E(x_sample_y, y)] + l2 (E(x_data)^2 + E(x_sample)^2)
 * with negative samples from SGLD chains kept in a persistent replay buffer.
 * Divergence (non-finite or runaway loss or energies) rolls the model,
 * optimiser, buffer and RNG back to the last good state, lowers the learning
 * rate, and continues. Checkpoints hold everything needed to resume exactly.
 */
#include "jem.h"
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
        if (s) { free(logits); return s; }
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
    hits = (long)tot[0]; n = (long)tot[1]; loss = tot[2];
    if (n == 0) return jem_fail(JEM_ERR_ARG, "evaluate: %s has no labelled images", ds->name);
    if (acc) *acc = (double)hits / n;
    if (nll) *nll = loss / n;
    return JEM_OK;
}

/* everything a rollback or a checkpoint must restore */
typedef struct {
    float   *params, *m, *v;
    int64_t  opt_t;
    float   *buf_x;
    jem_rng  rng;
    int64_t  iter;
    int      epoch, pos;
    int32_t *perm;
} snapshot;

typedef struct {
    const jem_train_cfg *cfg;
    jem_net   *net;
    const jem_dataset *ds;
    size_t     D, np;
    int        K;
    jem_opt    opt;
    jem_buffer buf;
    int        use_buf;
    jem_rng    rng;
    int64_t    iter;
    int        epoch, pos;
    int32_t   *perm;      /* (N) current epoch order */
    int32_t   *labels;    /* (N) labels used (-1 = unlabelled, semi-supervised) */
    float      lr_factor;
    int        retries;
    snapshot   snap;
    int        have_snap;
    uint64_t   seed;
    FILE      *log;
    int        rank, size; /* data-parallel: this process's rank of size */
    jem_rng    lrng;       /* size > 1: this rank's stream (augmentation,
                              chains); rng then only shuffles, alike on all */
} trainer;

static void snap_free(snapshot *s)
{
    free(s->params); free(s->m); free(s->v); free(s->buf_x); free(s->perm);
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
        s->buf_x = bn ? malloc(sizeof(float) * bn) : NULL;
        s->perm = malloc(sizeof(int32_t) * t->ds->n);
        if (!s->params || !s->m || (t->opt.v && !s->v) || (bn && !s->buf_x) || !s->perm) {
            snap_free(s);
            return jem_fail(JEM_ERR_NOMEM, "out of memory for the rollback snapshot");
        }
    }
    memcpy(s->params, jem_net_params(t->net), sizeof(float) * t->np);
    memcpy(s->m, t->opt.m, sizeof(float) * t->np);
    if (s->v) memcpy(s->v, t->opt.v, sizeof(float) * t->np);
    if (bn) memcpy(s->buf_x, t->buf.x, sizeof(float) * bn);
    memcpy(s->perm, t->perm, sizeof(int32_t) * t->ds->n);
    s->opt_t = t->opt.t;
    s->rng = t->rng;
    s->iter = t->iter;
    s->epoch = t->epoch;
    s->pos = t->pos;
    t->have_snap = 1;
    return JEM_OK;
}

static void snap_restore(trainer *t)
{
    snapshot *s = &t->snap;
    size_t bn = t->use_buf ? (size_t)t->buf.n * t->D : 0;
    memcpy(jem_net_params(t->net), s->params, sizeof(float) * t->np);
    memcpy(t->opt.m, s->m, sizeof(float) * t->np);
    if (s->v) memcpy(t->opt.v, s->v, sizeof(float) * t->np);
    if (bn) memcpy(t->buf.x, s->buf_x, sizeof(float) * bn);
    memcpy(t->perm, s->perm, sizeof(int32_t) * t->ds->n);
    t->opt.t = s->opt_t;
    t->rng = s->rng;
    t->iter = s->iter;
    t->epoch = s->epoch;
    t->pos = s->pos;
}

/* ---- checkpoints with the training state ---- */

/* Collective with several ranks: the replay buffer's slices are gathered to
 * rank 0, which alone writes the file. */
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
    s = jem_ckpt_add_model(st, t->net);
    for (int i = 0; c->meta && c->meta[i] && c->meta[i + 1] && !s; i += 2) s = jem_st_meta(st, c->meta[i], c->meta[i + 1]);
#define META(k, fmt, val) do { if (!s) { snprintf(v, sizeof v, fmt, val); s = jem_st_meta(st, k, v); } } while (0)
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
#undef META
    shp[0] = (int64_t)t->np;
    if (!s) s = jem_st_add(st, "_opt.m", JEM_DT_F32, 1, shp, t->opt.m);
    if (!s && t->opt.v) s = jem_st_add(st, "_opt.v", JEM_DT_F32, 1, shp, t->opt.v);
    shp[0] = 4;
    if (!s) s = jem_st_add(st, "_train.rng", JEM_DT_I64, 1, shp, t->rng.s);
    shp[0] = t->ds->n;
    if (!s) s = jem_st_add(st, "_train.perm", JEM_DT_I32, 1, shp, t->perm);
    if (!s && t->use_buf) {
        shp[0] = t->buf.n; shp[1] = t->buf.c; shp[2] = t->buf.h; shp[3] = t->buf.w;
        s = jem_st_add(st, "_buffer.x", JEM_DT_F32, 4, shp, t->buf.x);
        if (!s) s = jem_st_add(st, "_buffer.y", JEM_DT_I32, 1, shp, t->buf.y);
    }
    if (!s) s = jem_st_commit(st, path);
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
#define NEED(name, want_dt, count, dst, elt)                                                       \
    do {                                                                                           \
        d = jem_st_get(st, name, &dt, &nd, shp);                                                   \
        size_t cnt_ = 1;                                                                           \
        for (int i_ = 0; d && i_ < nd; i_++) cnt_ *= (size_t)shp[i_];                              \
        if (!d || dt != (want_dt) || cnt_ != (size_t)(count)) {                                    \
            jem_st_free(st);                                                                       \
            return jem_fail(JEM_ERR_FORMAT, "%s: training state \"%s\" is missing or has the wrong " \
                            "size (the run must resume with the same data and settings)", path, name); \
        }                                                                                          \
        memcpy(dst, d, (elt) * cnt_);                                                              \
    } while (0)
    NEED("_opt.m", JEM_DT_F32, t->np, t->opt.m, sizeof(float));
    if (t->opt.v) NEED("_opt.v", JEM_DT_F32, t->np, t->opt.v, sizeof(float));
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

/* ---- one iteration ---- */

typedef struct {
    float   *x;       /* (B + 2S, D) data, unconditional samples, conditional samples */
    int32_t *y;       /* (B + 2S) */
    float   *logits;  /* (B + 2S, K) */
    float   *dl;      /* (B + 2S, K) */
    int32_t *idx;     /* (2S) buffer slots */
    float   *lse;     /* (B + 2S) */
} iter_bufs;

typedef struct {
    double loss, ce, e_data, e_sample, grad_norm;
    int correct, labelled;
} iter_out;

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

static jem_status run_iter(trainer *t, iter_bufs *ib, iter_out *o)
{
    const jem_train_cfg *c = t->cfg;
    const int B = c->batch, S = c->n_samples > 0 ? c->n_samples : c->batch, K = t->K;
    const jem_dataset *ds = t->ds;
    int nu = 0, nc = 0; /* unconditional and conditional chains */
    if (c->mode == JEM_MODE_JEM) {
        if (c->w_x != 0 || c->l2 != 0) nu = S;
        if (c->w_xy != 0) nc = S;
    }
    jem_rng *lr = t->size > 1 ? &t->lrng : &t->rng;
    memset(o, 0, sizeof *o);
    next_batch(t, B, ib->x, ib->y);
    jem_augment_batch(&c->aug, ib->x, B, ds->c, ds->h, ds->w, lr);
    jem_status s;
    jem_sgld_stats ss = {0};
    float *xu = ib->x + (size_t)B * t->D, *xc = xu + (size_t)nu * t->D;
    int32_t *yu = ib->y + B, *yc = yu + nu;
    if (nu) {
        jem_buffer_draw(&t->buf, nu, NULL, xu, ib->idx, NULL, lr);
        uint64_t sseed = jem_rng_u64(lr);
        s = jem_sgld_run(jem_net_energy, t->net, xu, nu, (int)t->D, NULL, NULL, &c->sgld, sseed, (uint64_t)t->iter, &ss);
        if (s) return s;
        jem_buffer_store(&t->buf, xu, ib->idx, nu);
        for (int i = 0; i < nu; i++) yu[i] = -1;
    }
    if (nc) {
        /* chains conditioned on the batch's labels (random classes where unlabelled) */
        for (int i = 0; i < nc; i++) {
            int32_t yy = ib->y[i % B];
            yc[i] = yy >= 0 ? yy : (int32_t)jem_rng_below(lr, (uint32_t)K);
        }
        jem_buffer_draw(&t->buf, nc, yc, xc, ib->idx + nu, NULL, lr);
        uint64_t sseed = jem_rng_u64(lr);
        jem_sgld_stats s2;
        s = jem_sgld_run(jem_net_energy, t->net, xc, nc, (int)t->D, yc, NULL, &c->sgld, sseed,
                         (uint64_t)t->iter ^ 0x5555555555ULL, &s2);
        if (s) return s;
        jem_buffer_store(&t->buf, xc, ib->idx + nu, nc);
        if (!nu) ss = s2;
    }
    const int N = B + nu + nc;
    s = jem_net_forward(t->net, ib->x, N, ib->logits);
    if (s) return s;
    jem_logsumexp(ib->logits, N, K, ib->lse);
    /* cross-entropy on the labelled data rows */
    o->ce = jem_softmax_xent(ib->logits, ib->y, B, K, ib->dl, c->w_y, &o->correct);
    for (int i = 0; i < B; i++) o->labelled += ib->y[i] >= 0;
    double ed = 0, eu = 0, edy = 0, ecy = 0, l2d = 0, l2u = 0;
    for (int i = 0; i < B; i++) { ed += -ib->lse[i]; l2d += (double)ib->lse[i] * ib->lse[i]; }
    ed /= B; l2d /= B;
    for (int i = 0; i < nu; i++) { eu += -ib->lse[B + i]; l2u += (double)ib->lse[B + i] * ib->lse[B + i]; }
    if (nu) { eu /= nu; l2u /= nu; }
    double loss = c->w_y * o->ce;
    /* the generative terms, ramped in over gen_warmup iterations */
    const float ramp = c->gen_warmup > 0 && t->iter < c->gen_warmup ? (float)(t->iter + 1) / c->gen_warmup : 1.0f;
    const float w_x = c->w_x * ramp, w_xy = c->w_xy * ramp, l2 = c->l2 * ramp;
    if (c->mode == JEM_MODE_JEM) {
        /* d/dlogits of E(x) = -softmax; of E(x)^2 = -2 E softmax = 2 lse softmax */
        for (int i = 0; i < B; i++) {
            float *d = ib->dl + (size_t)i * K;
            const float *l = ib->logits + (size_t)i * K;
            double lse = ib->lse[i];
            float coef = (float)((-w_x + 2.0 * l2 * lse) / B);
            for (int k = 0; k < K; k++) d[k] += coef * expf((float)(l[k] - lse));
            if (w_xy != 0 && ib->y[i] >= 0) {
                edy += -l[ib->y[i]];
                d[ib->y[i]] += -w_xy / (float)(o->labelled ? o->labelled : 1);
            }
        }
        for (int i = B; i < B + nu; i++) {
            float *d = ib->dl + (size_t)i * K;
            const float *l = ib->logits + (size_t)i * K;
            double lse = ib->lse[i];
            float coef = (float)((w_x + 2.0 * l2 * lse) / nu);
            for (int k = 0; k < K; k++) d[k] = coef * expf((float)(l[k] - lse));
        }
        for (int i = B + nu; i < N; i++) {
            float *d = ib->dl + (size_t)i * K;
            const float *l = ib->logits + (size_t)i * K;
            for (int k = 0; k < K; k++) d[k] = 0.0f;
            int yy = yc[i - B - nu];
            ecy += -l[yy];
            d[yy] = w_xy / (float)nc;
        }
        if (o->labelled) edy /= o->labelled;
        if (nc) ecy /= nc;
        loss += w_x * (ed - eu) + w_xy * (edy - ecy) + l2 * (l2d + l2u);
    }
    o->loss = loss;
    o->e_data = ed;
    o->e_sample = nu ? eu : (nc ? ecy : 0);
    o->grad_norm = ss.grad_norm;
    jem_net_zero_grad(t->net);
    return jem_net_backward(t->net, ib->dl, NULL, 1);
}

/* FNV-1a over the parameters' bytes: equal on every rank while they agree. */
static uint64_t params_hash(jem_net *net, size_t np)
{
    const unsigned char *b = (const unsigned char *)jem_net_params(net);
    uint64_t h = 0xcbf29ce484222325ull;
    for (size_t i = 0; i < np * sizeof(float); i++) { h ^= b[i]; h *= 0x100000001b3ull; }
    return h;
}

static int finite_block(const float *p, size_t n)
{
    float acc = 0.0f;
    for (size_t i = 0; i < n; i++) acc += p[i] * 0.0f;
    return acc == 0.0f; /* NaN or Inf anywhere makes acc NaN */
}

static void log_line(trainer *t, const char *json)
{
    if (!t->log) return;
    fputs(json, t->log);
    fputc('\n', t->log);
    fflush(t->log);
}

static void buffer_stats(const jem_buffer *b, size_t D, double *mean, double *sd)
{
    double s = 0, s2 = 0;
    size_t n = (size_t)b->n * D;
    for (size_t i = 0; i < n; i++) { s += b->x[i]; s2 += (double)b->x[i] * b->x[i]; }
    *mean = s / n;
    double v = s2 / n - *mean * *mean;
    *sd = v > 0 ? sqrt(v) : 0;
}

jem_status jem_train(jem_net *net, const jem_dataset *ds, const jem_dataset *val,
                     const jem_train_cfg *c, const char *resume_path)
{
    const jem_arch *a = jem_net_arch(net);
    if (ds->c != a->in_c || ds->h != a->in_h || ds->w != a->in_w)
        return jem_fail(JEM_ERR_SHAPE, "%s: images are %dx%dx%d, model '%s' takes %dx%dx%d", ds->name, ds->c,
                        ds->h, ds->w, a->name, a->in_c, a->in_h, a->in_w);
    if (ds->n_classes > a->n_classes)
        return jem_fail(JEM_ERR_SHAPE, "%s: %d classes, model '%s' has %d outputs", ds->name, ds->n_classes,
                        a->name, a->n_classes);
    if (c->batch < 1 || c->batch > ds->n)
        return jem_fail(JEM_ERR_ARG, "batch size %d (data set %s has %d images)", c->batch, ds->name, ds->n);
    if (!c->epochs && !(c->minutes > 0) && !c->iters)
        return jem_fail(JEM_ERR_ARG, "no budget: give epochs, minutes or iterations");
    trainer t;
    memset(&t, 0, sizeof t);
    t.cfg = c;
    t.net = net;
    t.ds = ds;
    t.D = (size_t)ds->c * ds->h * ds->w;
    t.np = jem_net_nparams(net);
    t.K = a->n_classes;
    t.lr_factor = 1.0f;
    t.seed = c->seed;
    t.use_buf = c->mode == JEM_MODE_JEM && (c->w_x != 0 || c->l2 != 0 || c->w_xy != 0);
    jem_rng_seed(&t.rng, c->seed, 0x7472);
    t.rank = jem_dist_rank();
    t.size = jem_dist_size();
    if (t.size > 1) jem_rng_seed(&t.lrng, c->seed, 0x6c000 + (uint64_t)t.rank);
    if ((int64_t)c->batch * t.size > ds->n)
        return jem_fail(JEM_ERR_ARG, "batch size %d on %d ranks (data set %s has %d images)", c->batch, t.size,
                        ds->name, ds->n);
    const int S = c->n_samples > 0 ? c->n_samples : c->batch;
    const int NB = c->batch + 2 * S;
    iter_bufs ib = {0};
    jem_status s = jem_opt_init(&t.opt, &c->opt, t.np);
    if (s) return s;
    t.perm = malloc(sizeof(int32_t) * ds->n);
    t.labels = malloc(sizeof(int32_t) * ds->n);
    ib.x = malloc(sizeof(float) * NB * t.D);
    ib.y = malloc(sizeof(int32_t) * NB);
    ib.logits = malloc(sizeof(float) * NB * t.K);
    ib.dl = malloc(sizeof(float) * NB * t.K);
    ib.idx = malloc(sizeof(int32_t) * 2 * S);
    ib.lse = malloc(sizeof(float) * NB);
    if (!t.perm || !t.labels || !ib.x || !ib.y || !ib.logits || !ib.dl || !ib.idx || !ib.lse) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for training buffers");
        goto done;
    }
    for (int i = 0; i < ds->n; i++) t.perm[i] = i;
    /* semi-supervised: keep labels for labels_per_class images per class,
     * chosen by a seeded shuffle */
    memcpy(t.labels, ds->y, sizeof(int32_t) * ds->n);
    if (c->labels_per_class > 0) {
        jem_rng lr;
        jem_rng_seed(&lr, c->seed, 0x6c6162);
        int32_t *order = malloc(sizeof(int32_t) * ds->n);
        int *kept = calloc(t.K, sizeof(int));
        if (!order || !kept) { free(order); free(kept); s = jem_fail(JEM_ERR_NOMEM, "out of memory"); goto done; }
        for (int i = 0; i < ds->n; i++) order[i] = i;
        jem_rng_shuffle(&lr, order, (size_t)ds->n);
        for (int i = 0; i < ds->n; i++) {
            int j = order[i], y = ds->y[j];
            if (y >= 0 && y < t.K && kept[y] < c->labels_per_class) kept[y]++;
            else t.labels[j] = -1;
        }
        free(order); free(kept);
    }
    jem_rng_shuffle(&t.rng, t.perm, (size_t)ds->n);
    if (t.use_buf) {
        s = jem_buffer_create(&t.buf, c->buffer_size, ds->c, ds->h, ds->w, t.K, c->init, c->reinit, c->w_xy != 0);
        if (s) goto done;
        if (c->init == JEM_INIT_INFORMATIVE) {
            s = jem_buffer_fit(&t.buf, ds, c->full_cov);
            if (s) goto done;
        }
        jem_buffer_reset(&t.buf, &t.rng);
        if (t.size > 1) {
            /* each rank runs its chains in its own slice of the buffer */
            int64_t lo, hi;
            jem_dist_slice(t.buf.n, &lo, &hi);
            if (hi <= lo) { s = jem_fail(JEM_ERR_ARG, "replay buffer of %d slots on %d ranks", t.buf.n, t.size); goto done; }
            t.buf.lo = (int)lo;
            t.buf.hi = (int)hi;
        }
    }
    if (resume_path) {
        s = load_state(&t, resume_path);
        if (s) goto done;
        if (t.size > 1) jem_rng_seed(&t.lrng, c->seed ^ (uint64_t)t.iter, 0x6c000 + (uint64_t)t.rank);
    }
    if (c->log_path && t.rank == 0) {
        t.log = fopen(c->log_path, "a");
        if (!t.log) { s = jem_fail(JEM_ERR_IO, "%s: cannot open the log for writing", c->log_path); goto done; }
    }
    s = snap_take(&t);
    if (s) goto done;

    {
        const double t0 = now_s();
        const int64_t start_iter = t.iter;
        const int64_t gbatch = (int64_t)c->batch * t.size;
        const int64_t per_epoch = (ds->n + gbatch - 1) / gbatch;
        int64_t iter_budget = 0;
        if (c->iters) iter_budget = c->iters;
        if (c->epochs) {
            int64_t e = (int64_t)c->epochs * per_epoch;
            iter_budget = iter_budget ? (iter_budget < e ? iter_budget : e) : e;
        }
        double gl = 0, gce = 0, ged = 0, ges = 0, ggn = 0;
        long gcorrect = 0, glab = 0, gn = 0;
        double gt0 = now_s();
        double gc0 = jem_dist_comm_seconds(); /* this rank's time in collectives at the group's start */
        jem_jw w;
        jem_jw_init(&w);
        int last_epoch = t.epoch;
        for (;;) {
            double el = now_s() - t0;
            int64_t flags[2] = {(iter_budget && t.iter >= iter_budget) || (c->minutes > 0 && el >= c->minutes * 60.0),
                                c->stop && *c->stop};
            if (t.size > 1) jem_dist_max_i64(flags, 2); /* every rank stops together */
            if (flags[0]) break;
            if (flags[1]) {
                if (c->ckpt_path) {
                    s = save_ckpt(&t, c->ckpt_path);
                    if (s) break;
                }
                s = jem_fail(JEM_ERR_INTERRUPTED, "stopped at iteration %lld%s%s", (long long)t.iter,
                             c->ckpt_path ? ", checkpoint written to " : "", c->ckpt_path ? c->ckpt_path : "");
                break;
            }
            iter_out o;
            s = run_iter(&t, &ib, &o);
            if (s && s != JEM_ERR_NONFINITE) break;
            if (t.size > 1) {
                /* average the gradients (one allreduce over the flat block)
                 * and the figures, so every rank takes the same step and the
                 * same rollback decision */
                float *g = jem_net_grads(net);
                jem_dist_sum_f32(g, t.np);
                const float inv = 1.0f / (float)t.size;
                for (size_t i = 0; i < t.np; i++) g[i] *= inv;
                double f[8] = {o.loss, o.ce, o.e_data, o.e_sample, o.grad_norm, o.correct, o.labelled,
                               s == JEM_ERR_NONFINITE};
                jem_dist_sum_f64(f, 8);
                o.loss = f[0] / t.size; o.ce = f[1] / t.size; o.e_data = f[2] / t.size;
                o.e_sample = f[3] / t.size; o.grad_norm = f[4] / t.size;
                o.correct = (int)f[5]; o.labelled = (int)f[6];
                s = f[7] > 0 ? JEM_ERR_NONFINITE : JEM_OK;
            }
            const char *why = NULL;
            char whybuf[160];
            if (s == JEM_ERR_NONFINITE) why = "non-finite SGLD chain";
            else if (!isfinite(o.loss)) why = "non-finite loss";
            else if (fabs(o.loss) > c->div_threshold || fabs(o.e_data) > c->div_threshold ||
                     fabs(o.e_sample) > c->div_threshold) {
                snprintf(whybuf, sizeof whybuf, "runaway loss %.3g or energies (data %.3g, sample %.3g) above %.3g",
                         o.loss, o.e_data, o.e_sample, (double)c->div_threshold);
                why = whybuf;
            } else if (!finite_block(jem_net_grads(net), t.np)) why = "non-finite gradient";
            if (!why) {
                float lr = jem_sched_lr(&c->sched, t.iter, budget_frac(c, iter_budget, t.iter, now_s() - t0)) * t.lr_factor;
                if (c->inject_blowup_at && t.iter == c->inject_blowup_at && t.retries == 0) lr *= 1e6f;
                jem_opt_step(&t.opt, jem_net_params(net), jem_net_grads(net), lr);
                if (!finite_block(jem_net_params(net), t.np)) why = "non-finite weights after the step";
            }
            if (why) {
                t.retries++;
                char msg[320];
                int64_t bad_iter = t.iter;
                if (t.retries > c->max_retries) {
                    s = jem_fail(JEM_ERR_DIVERGED, "diverged at iteration %lld (%s) after %d rollbacks; "
                                 "lower the learning rate or the SGLD step size, or add an energy penalty (--l2)",
                                 (long long)bad_iter, why, c->max_retries);
                    break;
                }
                snap_restore(&t);
                t.lr_factor *= c->retry_lr_factor;
                /* re-seed so the same chains do not repeat */
                jem_rng_seed(&t.rng, jem_rng_u64(&t.rng) ^ (uint64_t)t.retries, 0x7265);
                if (t.size > 1) jem_rng_seed(&t.lrng, jem_rng_u64(&t.lrng) ^ (uint64_t)t.retries, 0x7265);
                snprintf(msg, sizeof msg, "iteration %lld: %s; rolled back to iteration %lld, lr x%.3g (rollback %d of %d)",
                         (long long)bad_iter, why, (long long)t.iter, (double)t.lr_factor, t.retries, c->max_retries);
                jem_jw_reset(&w);
                jem_jw_obj_begin(&w);
                jem_jw_kstr(&w, "event", "rollback");
                jem_jw_kint(&w, "iter", bad_iter);
                jem_jw_kint(&w, "to_iter", t.iter);
                jem_jw_kstr(&w, "reason", why);
                jem_jw_kdouble(&w, "lr_factor", t.lr_factor);
                jem_jw_obj_end(&w);
                log_line(&t, jem_jw_cstr(&w));
                if (c->progress && t.rank == 0) {
                    jem_progress p = {0};
                    p.iter = t.iter; p.epoch = t.epoch; p.event = JEM_EV_ROLLBACK; p.msg = msg; p.val_acc = -1;
                    p.elapsed = now_s() - t0; p.eta = -1;
                    c->progress(c->ud, &p);
                }
                s = JEM_OK;
                gl = gce = ged = ges = ggn = 0; gcorrect = glab = gn = 0; gt0 = now_s();
                gc0 = jem_dist_comm_seconds();
                continue;
            }
            s = JEM_OK;
            t.iter++;
            if (t.size > 1 && (t.iter % 100 == 0 || t.iter == 1) && !jem_dist_same_u64(params_hash(net, t.np))) {
                s = jem_fail(JEM_ERR_NONFINITE, "iteration %lld: the parameters differ across ranks "
                             "(ranks must run the same binary, data and options)", (long long)t.iter);
                break;
            }
            gl += o.loss; gce += o.ce; ged += o.e_data; ges += o.e_sample; ggn += o.grad_norm;
            gcorrect += o.correct; glab += o.labelled; gn++;
            if (c->snapshot_every > 0 && t.iter % c->snapshot_every == 0) {
                s = snap_take(&t);
                if (s) break;
            }
            int epoch_end = t.epoch != last_epoch;
            int log_now = (c->log_every > 0 && t.iter % c->log_every == 0) || epoch_end;
            double vacc = -1;
            if ((epoch_end || (c->eval_every > 0 && t.iter % c->eval_every == 0)) && val && val->n > 0) {
                s = jem_evaluate(net, val, &vacc, NULL);
                if (s) break;
            }
            /* the log group's time in collectives, least and most over the
             * ranks (nanoseconds; the least is the rank that waited least
             * for the others: nearest to the cost of the transfers alone) */
            int64_t gcomm[2] = {0, 0};
            if (log_now && t.size > 1) {
                const int64_t mine = (int64_t)(1e9 * (jem_dist_comm_seconds() - gc0));
                gcomm[0] = -mine; gcomm[1] = mine;
                jem_dist_max_i64(gcomm, 2);
                gc0 = jem_dist_comm_seconds();
            }
            if (log_now && gn > 0 && t.rank == 0) {
                double tnow = now_s(), dt = tnow - gt0;
                jem_progress p = {0};
                p.iter = t.iter; p.epoch = t.epoch;
                p.elapsed = tnow - t0;
                double rate = (t.iter - start_iter) / (p.elapsed > 1e-9 ? p.elapsed : 1e-9);
                p.eta = -1;
                if (iter_budget) p.eta = (iter_budget - t.iter) / (rate > 0 ? rate : 1e-9);
                if (c->minutes > 0) {
                    double left = c->minutes * 60.0 - p.elapsed;
                    p.eta = p.eta < 0 || left < p.eta ? left : p.eta;
                }
                p.iter_total = iter_budget ? iter_budget : (c->minutes > 0 ? t.iter + (int64_t)(p.eta * rate) : 0);
                p.loss = gl / gn; p.ce = gce / gn; p.acc = glab ? (double)gcorrect / glab : 0;
                if (c->mode == JEM_MODE_JEM) { p.e_data = ged / gn; p.e_sample = ges / gn; p.grad_norm = ggn / gn; }
                p.img_per_s = gn * gbatch / (dt > 1e-9 ? dt : 1e-9);
                p.lr = jem_sched_lr(&c->sched, t.iter, budget_frac(c, iter_budget, t.iter, p.elapsed)) * t.lr_factor;
                p.val_acc = vacc;
                p.event = epoch_end ? JEM_EV_EPOCH : JEM_EV_ITER;
                if (t.use_buf) buffer_stats(&t.buf, t.D, &p.buf_mean, &p.buf_std);
                jem_jw_reset(&w);
                jem_jw_obj_begin(&w);
                jem_jw_kint(&w, "iter", t.iter);
                jem_jw_kint(&w, "epoch", t.epoch);
                jem_jw_kdouble(&w, "time", p.elapsed);
                jem_jw_kdouble(&w, "loss", p.loss);
                jem_jw_kdouble(&w, "ce", p.ce);
                jem_jw_kdouble(&w, "acc", p.acc);
                if (c->mode == JEM_MODE_JEM) {
                    jem_jw_kdouble(&w, "e_data", p.e_data);
                    jem_jw_kdouble(&w, "e_sample", p.e_sample);
                    jem_jw_kdouble(&w, "e_gap", p.e_data - p.e_sample);
                    jem_jw_kdouble(&w, "sgld_grad_norm", p.grad_norm);
                    jem_jw_kdouble(&w, "buffer_mean", p.buf_mean);
                    jem_jw_kdouble(&w, "buffer_std", p.buf_std);
                }
                jem_jw_kdouble(&w, "img_per_s", p.img_per_s);
                if (t.size > 1) {
                    jem_jw_kdouble(&w, "comm_seconds_min", 1e-9 * (double)-gcomm[0]);
                    jem_jw_kdouble(&w, "comm_seconds_max", 1e-9 * (double)gcomm[1]);
                }
                jem_jw_kdouble(&w, "lr", p.lr);
                if (vacc >= 0) jem_jw_kdouble(&w, "val_acc", vacc);
                jem_jw_obj_end(&w);
                log_line(&t, jem_jw_cstr(&w));
                if (c->progress) c->progress(c->ud, &p);
                gl = gce = ged = ges = ggn = 0; gcorrect = glab = gn = 0; gt0 = now_s();
            }
            if (t.use_buf && c->sample_path && c->sample_every > 0 && t.iter % c->sample_every == 0) {
                if (t.size > 1) jem_dist_gather_rows(t.buf.x, t.D, t.buf.n);
            }
            if (t.use_buf && c->sample_path && c->sample_every > 0 && t.iter % c->sample_every == 0 && t.rank == 0) {
                int n = t.buf.n < 64 ? t.buf.n : 64;
                s = jem_png_write_grid(c->sample_path, t.buf.x, n, ds->c, ds->h, ds->w, 8, 2);
                if (s) break;
            }
            int ck = c->ckpt_path && ((c->ckpt_every > 0 && t.iter % c->ckpt_every == 0) || epoch_end);
            if (ck) {
                s = save_ckpt(&t, c->ckpt_path);
                if (s) break;
                if (c->progress && t.rank == 0) {
                    jem_progress p = {0};
                    p.iter = t.iter; p.epoch = t.epoch; p.event = JEM_EV_CKPT; p.msg = c->ckpt_path; p.val_acc = -1;
                    p.eta = -1;
                    c->progress(c->ud, &p);
                }
            }
            last_epoch = t.epoch;
        }
        jem_jw_free(&w);
        if (!s && c->ckpt_path) s = save_ckpt(&t, c->ckpt_path);
        if (!s && t.use_buf && c->sample_path && t.rank == 0) {
            int n = t.buf.n < 64 ? t.buf.n : 64;
            s = jem_png_write_grid(c->sample_path, t.buf.x, n, ds->c, ds->h, ds->w, 8, 2);
        }
    }
done:
    if (t.log) fclose(t.log);
    snap_free(&t.snap);
    jem_buffer_free(&t.buf);
    jem_opt_free(&t.opt);
    free(t.perm); free(t.labels);
    free(ib.x); free(ib.y); free(ib.logits); free(ib.dl); free(ib.idx); free(ib.lse);
    return s;
}

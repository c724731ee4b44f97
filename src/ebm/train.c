/*
 * The trainer: softmax cross-entropy, or the JEM hybrid
 *   loss = w_y CE(f(x), y) + w_x [E(x_data) - E(x_sample)]
 *        + w_xy [E(x_data, y) - E(x_sample_y, y)] + l2 (E(x_data)^2 + E(x_sample)^2)
 * with negative samples from SGLD, MALA or HMC chains kept in a persistent
 * replay buffer (each slot with its age: iterations since it was last
 * (re)initialised). Adversarial training replaces the CE term by CE on PGD
 * examples of the batch (PGD-AT) or adds TRADES's KL between the clean and
 * adversarial predictions; the generative terms stay on clean data.
 * Divergence (non-finite or runaway loss or energies) rolls the model,
 * optimiser, buffer and RNG back to the last good state, lowers the learning
 * rate, and continues. Checkpoints hold everything needed to resume exactly.
 *
 * Reading order: jem_train_hooked at the bottom is the loop; above it, one
 * function per step: set-up, an iteration per mode (iter_softmax,
 * iter_jem; both through adversarial_rows and ce_branch), divergence, the
 * optimiser step with the weights' moving average, rollback, and the side
 * effects (log line, progress, validation, sample grid, checkpoint).
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
    c->adv.kind = JEM_ADV_NONE;
    c->adv.norm = 0;
    c->adv.eps = 0.2; /* 0.1 on the [0, 1] scale */
    c->adv.step = 0.25;
    c->adv.steps = 7;
    c->adv.random_start = 1;
    c->adv.ramp = 0;
    c->adv.beta = 6.0f;
    jem_sgld_defaults(&c->sgld);
    c->sampler = JEM_SAMPLER_SGLD;
    /* about SGLD's cost: 4 x 5 leapfrog steps and one more gradient */
    jem_hmc_defaults(&c->hmc);
    c->hmc.steps = 4;
    c->hmc.warmup = 0;
    c->hmc.leapfrog = 5;
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
    int64_t *buf_age;
    float hmc_eps;
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
    int64_t *age;  /* (2S) the chains' ages */
    float *lse;    /* (N) */
    float *clean;  /* (B, K) adversarial training: the clean rows' logits before the attack */
    float *target; /* (B, K) TRADES: their softmax, the attack's target */
    float *center; /* (B, D) the clean rows clamped to [-1, 1]: the attack's ball's centres */
} iter_bufs;

/* Where an iteration's rows live (fixed for a run):
 *   [0, B)              the labelled batch, augmented, for cross-entropy;
 *   [d0, d0 + nd)       the data side of the generative terms: the batch
 *                       rows themselves (d0 = 0, nd = B), or, when the
 *                       batch is cropped or flipped in JEM mode, clean
 *                       copies (noise only) of its first nd images (d0 = B);
 *   [a0, a0 + na)       adversarial training: the batch's adversarial
 *                       examples (na = B, else 0);
 *   [u0, u0 + nu)       unconditional chains;
 *   [u0 + nu, N)        conditional chains (nc).
 * The training forward and backward run over rows [f0, N): f0 = B when the
 * batch rows serve no term (PGD-AT without generative terms on them), else 0. */
typedef struct {
    int B, d0, nd, a0, na, u0, nu, nc, N, f0;
} row_plan;

/* what an iteration reports; sec_*: seconds spent in its parts */
typedef struct {
    double loss, ce, e_data, e_sample, grad_norm;
    double accept; /* the chains' mean acceptance probability (SGLD: 1) */
    int correct, labelled;
    int adv_correct;    /* adversarial training: hits on the adversarial rows */
    double adv_eps, kl; /* the radius (model units), TRADES's mean KL */
    double sec_data, sec_sgld, sec_adv, sec_fwd_bwd, sec_opt;
} iter_out;

/* a log group's energies of one side (data rows or chains), for their
 * quantiles: the iterations' blocks of `block` values; when cap values are
 * held, every second block is dropped and from then on only every
 * stride-th iteration's block is kept, so the blocks stay spread evenly
 * over the group */
typedef struct {
    float *v; /* (cap) */
    int n, cap, block, stride;
    long iters; /* iterations offered in this group */
} energies;

/* running sums over the iterations of one log group */
typedef struct {
    double loss, ce, e_data, e_sample, grad_norm, accept;
    long correct, labelled, n;
    long adv_correct;
    double adv_eps, kl; /* the last iteration's radius; the sum of the KLs */
    double sec_data, sec_sgld, sec_adv, sec_fwd_bwd, sec_opt;
    double t0;       /* when the group started */
    double comm0;    /* this rank's time in collectives when it started */
    energies ed, es; /* energies of the data rows and of the chains */
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
    jem_hmc_cfg hmc;                 /* sampler HMC: the chains' settings */
    float *e_all;                    /* (ranks x energies' cap) a log group's energies of every rank */
    int64_t *age_sorted;             /* (buffer) the known ages, sorted for their quantiles */
    float hmc_eps;                   /* sampler HMC: the step size (training state) */
    double t0;                       /* when this run started */
    int64_t start_iter, iter_budget; /* iter_budget 0: time only */
    int64_t gbatch;                  /* images per iteration over all ranks */
    group grp;
    jem_jw w;         /* the log line being written */
    double val_acc;   /* the last validation accuracy of this run (-1: none yet) */
    int64_t val_iter; /* the iteration it was measured after */
} trainer;

static void snap_free(snapshot *s)
{
    free(s->params);
    free(s->m);
    free(s->v);
    free(s->ema);
    free(s->buf_x);
    free(s->buf_age);
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
        s->buf_age = bn ? malloc(sizeof(int64_t) * (size_t)t->buf.n) : NULL;
        s->perm = malloc(sizeof(int32_t) * t->ds->n);
        if (!s->params || !s->m || (t->opt.v && !s->v) || (t->ema && !s->ema) || (bn && (!s->buf_x || !s->buf_age)) ||
            !s->perm) {
            snap_free(s);
            return jem_fail(JEM_ERR_NOMEM, "out of memory for the rollback snapshot");
        }
    }
    memcpy(s->params, jem_net_params(t->net), sizeof(float) * t->np);
    memcpy(s->m, t->opt.m, sizeof(float) * t->np);
    if (s->v) memcpy(s->v, t->opt.v, sizeof(float) * t->np);
    if (s->ema) memcpy(s->ema, t->ema, sizeof(float) * t->np);
    if (bn) memcpy(s->buf_x, t->buf.x, sizeof(float) * bn);
    if (bn) memcpy(s->buf_age, t->buf.age, sizeof(int64_t) * (size_t)t->buf.n);
    memcpy(s->perm, t->perm, sizeof(int32_t) * t->ds->n);
    s->hmc_eps = t->hmc_eps;
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
    if (bn) memcpy(t->buf.age, s->buf_age, sizeof(int64_t) * (size_t)t->buf.n);
    memcpy(t->perm, s->perm, sizeof(int32_t) * t->ds->n);
    t->hmc_eps = s->hmc_eps;
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
        if (t->use_buf) {
            jem_dist_gather_rows(t->buf.x, t->D, t->buf.n);
            jem_dist_allgather(t->buf.age, sizeof(int64_t), t->buf.n);
        }
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
    if (t->val_acc >= 0) {
        META("jem.train.val_acc", "%.6f", t->val_acc);
        META("jem.train.val_n", "%d", t->val->n);
        META("jem.train.val_iter", "%lld", (long long)t->val_iter);
    }
    if (c->mode == JEM_MODE_JEM && c->chain_precision == JEM_PRECISION_BF16)
        META("jem.train.chain_precision", "%s", "bf16");
    if (c->mode == JEM_MODE_JEM)
        META("jem.train.sampler", "%s", c->sampler == JEM_SAMPLER_HMC ? "hmc" : c->sgld.mala ? "mala" : "sgld");
    if (c->sampler == JEM_SAMPLER_HMC && t->use_buf) META("jem.train.hmc_step", "%a", (double)t->hmc_eps);
    if (c->adv.kind != JEM_ADV_NONE) {
        META("jem.train.adv", "%s", c->adv.kind == JEM_ADV_TRADES ? "trades" : "pgd");
        META("jem.train.adv_norm", "%s", c->adv.norm == 2 ? "l2" : "linf");
        META("jem.train.adv_eps", "%g", c->adv.eps / 2); /* the [0, 1] scale */
        META("jem.train.adv_steps", "%d", c->adv.steps);
        META("jem.train.adv_step", "%g", c->adv.step);
        META("jem.train.adv_ramp", "%d", c->adv.ramp);
        META("jem.train.adv_random_start", "%d", c->adv.random_start != 0);
        if (c->adv.kind == JEM_ADV_TRADES) META("jem.train.trades_beta", "%g", (double)c->adv.beta);
    }
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
        if (!s) s = jem_st_add(st, "_buffer.age", JEM_DT_I64, 1, shp, t->buf.age);
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
        /* the slots' ages: not known from a checkpoint written before they
         * were kept */
        if (jem_st_get(st, "_buffer.age", NULL, NULL, NULL))
            NEED("_buffer.age", JEM_DT_I64, t->buf.n, t->buf.age, sizeof(int64_t));
        else
            for (int i = 0; i < t->buf.n; i++) t->buf.age[i] = -1;
        for (int i = 0; i < t->buf.n; i++)
            if (t->buf.age[i] < -1 || t->buf.age[i] > t->iter) {
                jem_st_free(st);
                return jem_fail(JEM_ERR_FORMAT,
                                "%s: training state \"_buffer.age\" is corrupt (slot %d: age %lld at "
                                "iteration %lld)",
                                path, i, (long long)t->buf.age[i], (long long)t->iter);
            }
    }
    /* the HMC step size; a run that did not use HMC starts it afresh */
    const char *eps = jem_st_get_meta(st, "jem.train.hmc_step");
    if (eps && t->cfg->sampler == JEM_SAMPLER_HMC) {
        char *end;
        const double e = strtod(eps, &end);
        if (end == eps || *end || !(e > 0) || !isfinite(e) || (float)e <= 0 || !isfinite((float)e)) {
            jem_st_free(st);
            return jem_fail(JEM_ERR_FORMAT, "%s: jem.train.hmc_step '%s' is not a step size", path, eps);
        }
        t->hmc_eps = (float)e;
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
    if (c->chain_precision == JEM_PRECISION_BF16 && !jem_bf16_supported())
        return jem_fail(JEM_ERR_ARG, "chain precision bf16: this CPU has no AVX512-BF16 (vdpbf16ps)");
    if (c->sampler != JEM_SAMPLER_SGLD && c->sampler != JEM_SAMPLER_HMC)
        return jem_fail(JEM_ERR_ARG, "sampler %d: want SGLD or HMC", (int)c->sampler);
    const jem_adv_cfg *av = &c->adv;
    if (av->kind != JEM_ADV_NONE && av->kind != JEM_ADV_PGD && av->kind != JEM_ADV_TRADES)
        return jem_fail(JEM_ERR_ARG, "adversarial training %d: want none, PGD or TRADES", (int)av->kind);
    if (av->kind != JEM_ADV_NONE &&
        ((av->norm != 0 && av->norm != 2) || !(av->eps > 0) || !isfinite(av->eps) || !(av->step > 0) ||
         !isfinite(av->step) || av->steps < 1 || av->ramp < 0 || !(av->beta >= 0) || !isfinite(av->beta)))
        return jem_fail(JEM_ERR_ARG,
                        "adversarial training: norm %d (0: L-inf, 2: L2), radius %g (> 0), %d steps (>= 1) of %g "
                        "(> 0) times the radius, ramp %d (>= 0), TRADES beta %g (>= 0)",
                        av->norm, av->eps, av->steps, av->step, av->ramp, (double)av->beta);
    const jem_hmc_cfg *h = &c->hmc;
    if (c->sampler == JEM_SAMPLER_HMC &&
        (h->steps < 1 || h->leapfrog < 1 || h->leapfrog > 100000 || !(h->step_size > 0) || !isfinite(h->step_size) ||
         !(h->target_accept >= 0 && h->target_accept < 1) || !(h->temperature > 0) || !isfinite(h->temperature)))
        return jem_fail(JEM_ERR_ARG,
                        "HMC chains: %d iterations of %d leapfrog steps of %g, target acceptance %g (0: fixed step), "
                        "temperature %g",
                        h->steps, h->leapfrog, (double)h->step_size, (double)h->target_accept, (double)h->temperature);
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
    const int na = c->adv.kind != JEM_ADV_NONE ? B : 0;
    row_plan r = {B, 0, B, B, na, B + na, 0, 0, B + na, 0};
    if (c->mode == JEM_MODE_JEM) {
        r.nu = c->w_x != 0 || c->l2 != 0 ? S : 0;
        r.nc = c->w_xy != 0 ? S : 0;
        if ((c->aug.crop_pad > 0 || c->aug.hflip) && c->px_rows >= 0 && (r.nu || r.nc)) {
            int n = c->px_rows > 0 ? c->px_rows : S;
            r.d0 = B;
            r.nd = n < B ? n : B;
        }
        r.a0 = r.d0 + r.nd;
        r.u0 = r.a0 + na;
        r.N = r.u0 + r.nu + r.nc;
    }
    /* PGD-AT: the clean batch rows feed the generative terms' data side, or nothing */
    const int batch_is_data = c->mode == JEM_MODE_JEM && r.d0 == 0 && (r.nu || r.nc);
    if (c->adv.kind == JEM_ADV_PGD && !batch_is_data) r.f0 = B;
    return r;
}

/* energies' capacity (values per side and rank) */
#define ENERGIES_CAP 16384

static jem_status energies_alloc(energies *e, int block)
{
    memset(e, 0, sizeof *e);
    e->block = block;
    e->stride = 1;
    if (block < 1) return JEM_OK;
    e->cap = block > ENERGIES_CAP ? block : ENERGIES_CAP / block * block;
    e->v = malloc(sizeof(float) * (size_t)e->cap);
    return e->v ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "out of memory for the log's energies");
}

static void energies_clear(energies *e)
{
    e->n = 0;
    e->stride = 1;
    e->iters = 0;
}

/* Where the group's next iteration writes its block of energies (NULL: not
 * kept): the blocks of iterations 0, s, 2s, ... of the group (s = stride). */
static float *energies_slot(energies *e)
{
    if (!e->v) return NULL;
    const long i = e->iters++;
    if (i % e->stride) return NULL;
    while (e->n + e->block > e->cap) {
        int kept = 0;
        for (int b = 0; b < e->n / e->block; b += 2, kept++)
            memmove(e->v + (size_t)kept * e->block, e->v + (size_t)b * e->block, sizeof(float) * e->block);
        e->n = kept * e->block;
        e->stride *= 2;
        if (i % e->stride) return NULL;
    }
    float *p = e->v + e->n;
    e->n += e->block;
    return p;
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
    ib->age = malloc(sizeof(int64_t) * 2 * S);
    ib->lse = malloc(sizeof(float) * N);
    if (t->rows.na) {
        ib->clean = malloc(sizeof(float) * (size_t)c->batch * t->K);
        ib->target = malloc(sizeof(float) * (size_t)c->batch * t->K);
        ib->center = malloc(sizeof(float) * (size_t)c->batch * t->D);
        if (!ib->clean || !ib->target || !ib->center)
            return jem_fail(JEM_ERR_NOMEM, "out of memory for training buffers");
    }
    if (c->ema > 0 && (t->ema = malloc(sizeof(float) * t->np))) /* starts at the weights */
        memcpy(t->ema, jem_net_params(t->net), sizeof(float) * t->np);
    /* JEM mode: the log groups' energies, and the buffer's ages for their
     * quantiles */
    if (c->mode == JEM_MODE_JEM) {
        const row_plan *r = &t->rows;
        jem_status s = energies_alloc(&t->grp.ed, r->nd);
        if (!s) s = energies_alloc(&t->grp.es, r->nu ? r->nu : r->nc);
        if (s) return s;
        const int cap = t->grp.ed.cap > t->grp.es.cap ? t->grp.ed.cap : t->grp.es.cap;
        t->e_all = malloc(sizeof(float) * (size_t)cap * (size_t)t->size);
        t->age_sorted = malloc(sizeof(int64_t) * (size_t)(c->buffer_size > 0 ? c->buffer_size : 1));
        if (!t->e_all || !t->age_sorted) return jem_fail(JEM_ERR_NOMEM, "out of memory for the log's statistics");
    }
    if (!t->perm || !t->labels || !ib->x || !ib->y || !ib->logits || !ib->dl || !ib->idx || !ib->age || !ib->lse ||
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
    t->val_acc = -1;
    t->seed = c->seed;
    t->use_buf = c->mode == JEM_MODE_JEM && (c->w_x != 0 || c->l2 != 0 || c->w_xy != 0);
    /* HMC: no warm-up inside an iteration (the step size adapts between
     * them), reflecting walls as SGLD's clamp */
    t->hmc = c->hmc;
    t->hmc.warmup = 0;
    t->hmc.bounded = c->sgld.clamp;
    t->hmc.lo = -1.0f;
    t->hmc.hi = 1.0f;
    t->hmc.progress = NULL;
    if (!(t->hmc.target_accept > 0)) t->hmc.target_accept = 0.65f; /* unused with warm-up 0 */
    t->hmc_eps = c->hmc.step_size;
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
    free(t->ib.age);
    free(t->ib.lse);
    free(t->ib.clean);
    free(t->ib.target);
    free(t->ib.center);
    free(t->grp.ed.v);
    free(t->grp.es.v);
    free(t->e_all);
    free(t->age_sorted);
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

/* Adversarial training: the radius at this iteration (model units), ramped
 * linearly over the first adv.ramp iterations. */
static double adv_radius(const trainer *t)
{
    const jem_adv_cfg *a = &t->cfg->adv;
    if (a->ramp > 0 && t->iter < a->ramp) return a->eps * (double)(t->iter + 1) / a->ramp;
    return a->eps;
}

static int hits(const float *logits, const int32_t *y, int B, int K)
{
    int n = 0;
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * K;
        int am = 0;
        for (int k = 1; k < K; k++)
            if (l[k] > l[am]) am = k;
        n += y[b] >= 0 && am == y[b];
    }
    return n;
}

/* Adversarial training: the clean rows' logits (their accuracy; TRADES's
 * target), then the adversarial examples of rows [0, B) at the current
 * radius into rows [a0, a0 + B), with the batch's labels. The balls are
 * centred on the rows clamped to [-1, 1] (Gaussian noise can push a row
 * beyond), so the examples lie in the ball and in the box. */
static jem_status adversarial_rows(trainer *t, iter_out *o)
{
    const jem_adv_cfg *a = &t->cfg->adv;
    const row_plan *r = &t->rows;
    iter_bufs *ib = &t->ib;
    const int B = r->B, K = t->K;
    jem_status s = jem_net_predict(t->net, ib->x, B, ib->clean);
    if (s) return s;
    o->correct = hits(ib->clean, ib->y, B, K);
    if (a->kind == JEM_ADV_TRADES) jem_softmax(ib->clean, B, K, ib->target);
    const double eps = adv_radius(t);
    const jem_attack_cfg ac = {.norm = a->norm,
                               .eps = eps,
                               .step = a->step * eps,
                               .steps = a->steps,
                               .restarts = 1,
                               .random_start = a->random_start};
    float *xa = ib->x + (size_t)r->a0 * t->D;
    for (size_t i = 0; i < (size_t)B * t->D; i++) {
        const float v = ib->x[i];
        ib->center[i] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
    }
    memcpy(ib->y + r->a0, ib->y, sizeof(int32_t) * B);
    s = jem_attack_batch(t->net, ib->center, ib->y, a->kind == JEM_ADV_TRADES ? ib->target : NULL, B, &ac, local_rng(t),
                         xa);
    if (s) return s;
    o->adv_eps = eps;
    if (t->hooks->adv) t->hooks->adv(t->hooks->ud, ib->center, xa, B, eps);
    return JEM_OK;
}

/* The training forward over rows [f0, N), and the rows' log-sum-exps. */
static jem_status forward(trainer *t)
{
    const row_plan *r = &t->rows;
    iter_bufs *ib = &t->ib;
    jem_status s =
        jem_net_forward(t->net, ib->x + (size_t)r->f0 * t->D, r->N - r->f0, ib->logits + (size_t)r->f0 * t->K);
    if (!s) jem_logsumexp(ib->logits + (size_t)r->f0 * t->K, r->N - r->f0, t->K, ib->lse + r->f0);
    return s;
}

/* The cross-entropy branch, weight w_y: its loss into o (with hits and the
 * labelled count) and its gradient w.r.t. the logits written to ib->dl's
 * rows [f0, B) and the adversarial rows. Plain: CE of rows [0, B). PGD-AT:
 * CE of the adversarial rows (the batch rows get 0). TRADES: CE of rows
 * [0, B) + beta KL(rows [0, B) || adversarial rows). */
static void ce_branch(trainer *t, iter_out *o)
{
    const jem_train_cfg *c = t->cfg;
    const row_plan *r = &t->rows;
    const int B = r->B, K = t->K;
    iter_bufs *ib = &t->ib;
    float *la = ib->logits + (size_t)r->a0 * K, *da = ib->dl + (size_t)r->a0 * K;
    for (int i = 0; i < B; i++) o->labelled += ib->y[i] >= 0;
    switch (c->adv.kind) {
    case JEM_ADV_NONE: o->ce = jem_softmax_xent(ib->logits, ib->y, B, K, ib->dl, c->w_y, &o->correct); break;
    case JEM_ADV_PGD:
        o->ce = jem_softmax_xent(la, ib->y, B, K, da, c->w_y, &o->adv_correct);
        if (r->f0 == 0) memset(ib->dl, 0, sizeof(float) * B * K);
        break;
    case JEM_ADV_TRADES:
        o->ce = jem_softmax_xent(ib->logits, ib->y, B, K, ib->dl, c->w_y, NULL);
        o->adv_correct = hits(la, ib->y, B, K);
        memset(da, 0, sizeof(float) * B * K);
        o->kl = jem_trades_kl(ib->logits, la, B, K, ib->dl, da, c->w_y * c->adv.beta);
        break;
    }
    o->loss = c->w_y * (o->ce + (c->adv.kind == JEM_ADV_TRADES ? c->adv.beta * o->kl : 0.0));
}

static jem_status backward(trainer *t)
{
    const row_plan *r = &t->rows;
    jem_net_zero_grad(t->net);
    return jem_net_backward(t->net, t->ib.dl + (size_t)r->f0 * t->K, NULL, 1);
}

/* softmax mode: cross-entropy on an augmented batch (or its adversarial
 * examples) */
static jem_status iter_softmax(trainer *t, iter_out *o)
{
    const int B = t->cfg->batch;
    iter_bufs *ib = &t->ib;
    memset(o, 0, sizeof *o);
    double t0 = now_s();
    load_batch(t);
    double t1 = now_s();
    jem_status s = t->rows.na ? adversarial_rows(t, o) : JEM_OK;
    if (s) return s;
    double t2 = now_s();
    s = forward(t);
    if (s) return s;
    /* the clean rows' energies are watched for divergence (PGD-AT does not
     * forward them again: from the logits before the attack) */
    if (t->rows.f0) jem_logsumexp(ib->clean, B, t->K, ib->lse);
    ce_branch(t, o);
    double ed = 0;
    for (int i = 0; i < B; i++) ed += -ib->lse[i];
    o->e_data = ed / B;
    s = backward(t);
    o->sec_data = t1 - t0;
    o->sec_adv = t2 - t1;
    o->sec_fwd_bwd = now_s() - t2;
    return s;
}

/* what a batch of chains reports */
typedef struct {
    double grad_norm; /* SGLD, MALA: mean ||grad log p~|| (HMC: 0) */
    double accept;    /* mean acceptance probability (SGLD: 1) */
} chain_stats;

/* sample_chains at the precision the network is set to */
static jem_status sample_chains_at(trainer *t, float *x, int B, const int32_t *y, uint64_t seed, uint64_t counter,
                                   chain_stats *cs)
{
    const jem_train_cfg *c = t->cfg;
    jem_status s;
    if (c->sampler == JEM_SAMPLER_HMC) {
        jem_hmc_stats hs;
        float eps = t->hmc_eps;
        s = jem_hmc_run(jem_net_energy, t->net, x, B, (int)t->D, y, NULL, &t->hmc, seed, counter, &eps, NULL, &hs);
        if (s) return s;
        cs->grad_norm = 0;
        cs->accept = hs.accept;
    } else {
        jem_sgld_stats ss;
        s = jem_sgld_run(jem_net_energy, t->net, x, B, (int)t->D, y, NULL, &c->sgld, seed, counter, &ss);
        if (s) return s;
        cs->grad_norm = ss.grad_norm;
        cs->accept = ss.accept;
    }
    return JEM_OK;
}

/* Run the configured sampler on B chains x (B, D) in place (y: the classes
 * of conditional chains, NULL for p(x)); HMC at the current step size;
 * the network at the chains' precision meanwhile, fp32 after. */
static jem_status sample_chains(trainer *t, float *x, int B, const int32_t *y, uint64_t seed, uint64_t counter,
                                chain_stats *cs)
{
    const jem_train_cfg *c = t->cfg;
    jem_status s = jem_net_set_precision(t->net, c->chain_precision);
    if (s) return s;
    s = sample_chains_at(t, x, B, y, seed, counter, cs);
    jem_net_set_precision(t->net, JEM_PRECISION_FP32);
    return s;
}

/* Draw the unconditional and conditional chains from the replay buffer into
 * their rows, run the sampler on them and store them back with their ages.
 * Conditional chains take the batch's labels (random classes where
 * unlabelled). The gradient norm is the unconditional chains' (else the
 * conditional ones'), the acceptance the mean over all chains. */
static jem_status run_chains(trainer *t, chain_stats *cs)
{
    const row_plan *r = &t->rows;
    const int B = r->B, nu = r->nu, nc = r->nc;
    iter_bufs *ib = &t->ib;
    jem_rng *lr = local_rng(t);
    float *xu = ib->x + (size_t)r->u0 * t->D, *xc = xu + (size_t)nu * t->D;
    int32_t *yu = ib->y + r->u0, *yc = yu + nu;
    jem_status s;
    chain_stats su = {0, 0}, sc = {0, 0};
    if (nu) {
        jem_buffer_draw(&t->buf, nu, NULL, xu, ib->idx, NULL, ib->age, lr);
        uint64_t sseed = jem_rng_u64(lr);
        s = sample_chains(t, xu, nu, NULL, sseed, (uint64_t)t->iter, &su);
        if (s) return s;
        jem_buffer_store(&t->buf, xu, ib->idx, ib->age, nu);
        for (int i = 0; i < nu; i++) yu[i] = -1;
    }
    if (nc) {
        for (int i = 0; i < nc; i++) {
            int32_t yy = ib->y[i % B];
            yc[i] = yy >= 0 ? yy : (int32_t)jem_rng_below(lr, (uint32_t)t->K);
        }
        jem_buffer_draw(&t->buf, nc, yc, xc, ib->idx + nu, NULL, ib->age + nu, lr);
        uint64_t sseed = jem_rng_u64(lr);
        s = sample_chains(t, xc, nc, yc, sseed, (uint64_t)t->iter ^ 0x5555555555ULL, &sc);
        if (s) return s;
        jem_buffer_store(&t->buf, xc, ib->idx + nu, ib->age + nu, nc);
    }
    cs->grad_norm = nu ? su.grad_norm : sc.grad_norm;
    cs->accept = nu + nc ? (nu * su.accept + nc * sc.accept) / (nu + nc) : 0;
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

/* JEM mode: the chains, the adversarial examples, then one forward and
 * backward over the batch, the data rows, the adversarial rows and the
 * chains for the cross-entropy branch plus the generative terms */
static jem_status iter_jem(trainer *t, iter_out *o)
{
    memset(o, 0, sizeof *o);
    double t0 = now_s();
    load_batch(t);
    double t1 = now_s();
    chain_stats cs;
    jem_status s = run_chains(t, &cs);
    if (s) return s;
    double t2 = now_s();
    s = t->rows.na ? adversarial_rows(t, o) : JEM_OK;
    if (s) return s;
    double t3 = now_s();
    s = forward(t);
    if (s) return s;
    ce_branch(t, o);
    generative_terms(t, o);
    o->grad_norm = cs.grad_norm;
    o->accept = cs.accept;
    s = backward(t);
    o->sec_data = t1 - t0;
    o->sec_sgld = t2 - t1;
    o->sec_adv = t3 - t2;
    o->sec_fwd_bwd = now_s() - t3;
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
    double f[11] = {o->loss,       o->ce,       o->e_data, o->e_sample, o->grad_norm,
                    o->correct,    o->labelled, o->accept, o->kl,       s == JEM_ERR_NONFINITE,
                    o->adv_correct};
    jem_dist_sum_f64(f, 11);
    o->loss = f[0] / t->size;
    o->ce = f[1] / t->size;
    o->e_data = f[2] / t->size;
    o->e_sample = f[3] / t->size;
    o->grad_norm = f[4] / t->size;
    o->correct = (int)f[5];
    o->labelled = (int)f[6];
    o->accept = f[7] / t->size;
    o->kl = f[8] / t->size;
    o->adv_correct = (int)f[10];
    return f[9] > 0 ? JEM_ERR_NONFINITE : JEM_OK;
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
    if (s == JEM_ERR_NONFINITE)
        return t->cfg->sampler == JEM_SAMPLER_HMC ? "non-finite HMC chain" : "non-finite SGLD chain";
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
    g->accept += o->accept;
    g->correct += o->correct;
    g->labelled += o->labelled;
    g->adv_correct += o->adv_correct;
    g->adv_eps = o->adv_eps;
    g->kl += o->kl;
    g->n++;
    g->sec_data += o->sec_data;
    g->sec_sgld += o->sec_sgld;
    g->sec_adv += o->sec_adv;
    g->sec_fwd_bwd += o->sec_fwd_bwd;
    g->sec_opt += o->sec_opt;
}

static void group_reset(group *g)
{
    energies ed = g->ed, es = g->es; /* their buffers stay */
    memset(g, 0, sizeof *g);
    g->ed = ed;
    g->es = es;
    energies_clear(&g->ed);
    energies_clear(&g->es);
    g->t0 = now_s();
    g->comm0 = jem_dist_comm_seconds();
}

/* JEM mode: the iteration's energies into the log group: E(x) of the data
 * rows, and of the chains as e_sample counts them (E(x) of the p(x)
 * chains, else E(x, y) of the conditional ones). */
static void group_energies(trainer *t)
{
    const row_plan *r = &t->rows;
    const iter_bufs *ib = &t->ib;
    float *p = energies_slot(&t->grp.ed);
    for (int i = 0; p && i < r->nd; i++) p[i] = -ib->lse[r->d0 + i];
    p = energies_slot(&t->grp.es);
    const int c0 = r->u0 + r->nu;
    for (int i = 0; p && i < t->grp.es.block; i++)
        p[i] = r->nu ? -ib->lse[r->u0 + i] : -ib->logits[(size_t)(c0 + i) * t->K + ib->y[c0 + i]];
}

/* After an iteration that counts: the slots' ages grow by one, and the HMC
 * step size moves towards the target acceptance (log eps += 0.5 (mean
 * acceptance - target), within [1e-6, 1e3]). */
static void chains_advance(trainer *t, const iter_out *o)
{
    const jem_train_cfg *c = t->cfg;
    if (!t->use_buf) return;
    jem_buffer_tick(&t->buf);
    if (c->sampler == JEM_SAMPLER_HMC && c->hmc.target_accept > 0) {
        const double e = t->hmc_eps * exp(0.5 * (o->accept - c->hmc.target_accept));
        t->hmc_eps = (float)(e < 1e-6 ? 1e-6 : e > 1e3 ? 1e3 : e);
    }
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

/* The distributions a JEM log line summarises by quantiles at q_levels (the
 * order statistics at p (n - 1), rounded): the log group's energies of the
 * data rows and of the chains (from every rank), and the replay buffer's
 * known ages. */
static const double q_levels[] = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 1};
#define NQ ((int)(sizeof q_levels / sizeof *q_levels))

typedef struct {
    int has_ed, has_es, has_age;
    double ed[NQ], es[NQ];
    int64_t age[NQ];
    double age_mean;
    long age_unknown; /* slots whose age is not known (resumed from an older checkpoint) */
} group_dists;

static int cmp_f32(const void *a, const void *b)
{
    const float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

static int cmp_i64(const void *a, const void *b)
{
    const int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return (x > y) - (x < y);
}

static size_t q_index(int k, size_t n) { return (size_t)llround(q_levels[k] * (double)(n - 1)); }

/* One side's energies of the group, from every rank, into t->e_all (sorted
 * on rank 0); returns their number. Collective with several ranks (every
 * rank holds as many). */
static size_t gather_energies(trainer *t, const energies *e)
{
    if (!e->v || !e->n) return 0;
    memcpy(t->e_all + (size_t)t->rank * e->n, e->v, sizeof(float) * e->n);
    if (t->size > 1) jem_dist_allgather(t->e_all, sizeof(float) * e->n, t->size);
    const size_t n = (size_t)e->n * t->size;
    if (t->rank == 0) qsort(t->e_all, n, sizeof(float), cmp_f32);
    return n;
}

/* The group's distributions (on rank 0). Collective with several ranks: the
 * ranks' energies and the slices of the buffer's ages are gathered. */
static void group_dists_get(trainer *t, group_dists *d)
{
    memset(d, 0, sizeof *d);
    if (t->cfg->mode != JEM_MODE_JEM) return;
    size_t n = gather_energies(t, &t->grp.ed);
    for (int k = 0; n && k < NQ; k++) d->ed[k] = t->e_all[q_index(k, n)];
    d->has_ed = n > 0;
    n = gather_energies(t, &t->grp.es);
    for (int k = 0; n && k < NQ; k++) d->es[k] = t->e_all[q_index(k, n)];
    d->has_es = n > 0;
    if (!t->use_buf) return;
    if (t->size > 1) jem_dist_allgather(t->buf.age, sizeof(int64_t), t->buf.n);
    if (t->rank != 0) return;
    size_t m = 0;
    double sum = 0;
    for (int i = 0; i < t->buf.n; i++)
        if (t->buf.age[i] >= 0) {
            t->age_sorted[m++] = t->buf.age[i];
            sum += (double)t->buf.age[i];
        }
    d->age_unknown = (long)(t->buf.n - (int)m);
    if (!m) return;
    qsort(t->age_sorted, m, sizeof(int64_t), cmp_i64);
    for (int k = 0; k < NQ; k++) d->age[k] = t->age_sorted[q_index(k, m)];
    d->age_mean = sum / (double)m;
    d->has_age = 1;
}

/* "key": [q...] with 4 significant digits */
static void jw_quantiles(jem_jw *w, const char *key, const double *q)
{
    jem_jw_key(w, key);
    jem_jw_arr_begin(w);
    for (int k = 0; k < NQ; k++) {
        char b[32];
        if (isfinite(q[k])) jem_jw_json(w, b, (size_t)snprintf(b, sizeof b, "%.4g", q[k]));
        else jem_jw_null(w);
    }
    jem_jw_arr_end(w);
}

/* One JSON line per log group: the progress figures, then where an
 * iteration's time went (seconds per iteration, means over the group);
 * comm: the group's seconds in collectives, least and most over the ranks;
 * in JEM mode the chains' sampler figures and the distributions d. */
static void log_json(trainer *t, const jem_progress *p, const double comm[2], double sec_iter, const group_dists *d)
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
    if (t->rows.na) {
        jem_jw_kdouble(w, "adv_eps", p->adv_eps);
        jem_jw_kdouble(w, "adv_acc", p->adv_acc);
        if (t->cfg->adv.kind == JEM_ADV_TRADES) jem_jw_kdouble(w, "trades_kl", g->kl / g->n);
    }
    if (jem) {
        const jem_train_cfg *c = t->cfg;
        const int hmc = c->sampler == JEM_SAMPLER_HMC;
        jem_jw_kdouble(w, "e_data", p->e_data);
        jem_jw_kdouble(w, "e_sample", p->e_sample);
        jem_jw_kdouble(w, "e_gap", p->e_data - p->e_sample);
        if (!hmc) jem_jw_kdouble(w, "sgld_grad_norm", p->grad_norm);
        if (t->use_buf && (hmc || c->sgld.mala)) jem_jw_kdouble(w, "chain_accept", g->accept / g->n);
        if (t->use_buf && hmc) {
            jem_jw_key(w, "hmc_step");
            jem_jw_float(w, t->hmc_eps);
        }
        jem_jw_kdouble(w, "buffer_mean", p->buf_mean);
        jem_jw_kdouble(w, "buffer_std", p->buf_std);
        if (d->has_age) {
            jem_jw_kdouble(w, "buffer_age_mean", d->age_mean);
            jem_jw_key(w, "buffer_age_q");
            jem_jw_arr_begin(w);
            for (int k = 0; k < NQ; k++) jem_jw_int(w, d->age[k]);
            jem_jw_arr_end(w);
        }
        if (d->age_unknown) jem_jw_kint(w, "buffer_age_unknown", d->age_unknown);
        if (d->has_ed) jw_quantiles(w, "e_data_q", d->ed);
        if (d->has_es) jw_quantiles(w, "e_sample_q", d->es);
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
    if (t->rows.na) jem_jw_kdouble(w, "sec_adv", g->sec_adv / g->n);
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
    group_dists d;
    group_dists_get(t, &d);
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
        if (t->rows.na) {
            p.adv_acc = g->labelled ? (double)g->adv_correct / g->labelled : 0;
            p.adv_eps = g->adv_eps / 2; /* the [0, 1] scale */
        }
        if (c->mode == JEM_MODE_JEM) {
            p.e_data = g->e_data / g->n;
            p.e_sample = g->e_sample / g->n;
            p.grad_norm = g->grad_norm / g->n;
        }
        p.img_per_s = g->n * t->gbatch / (dt > 1e-9 ? dt : 1e-9);
        p.lr = current_lr(t, p.elapsed);
        p.val_acc = vacc;
        if (t->use_buf) buffer_stats(&t->buf, t->D, &p.buf_mean, &p.buf_std);
        log_json(t, &p, comm, dt / g->n, &d);
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
        chains_advance(&t, &o);
        group_add(&t.grp, &o);
        if (c->mode == JEM_MODE_JEM) group_energies(&t);
        const int epoch_end = t.epoch != last_epoch;
        last_epoch = t.epoch;
        double vacc = -1;
        if ((s = check_ranks_agree(&t))) break;
        if (every(t.iter, c->snapshot_every) && (s = snap_take(&t))) break;
        if ((epoch_end || every(t.iter, c->eval_every)) && (s = validate(&t, &vacc))) break;
        if (vacc >= 0) {
            t.val_acc = vacc;
            t.val_iter = t.iter;
        }
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

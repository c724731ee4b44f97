/* The trainer: the loss falls; an injected blow-up is rolled back and
 * training continues; a resumed run equals a straight one bit for bit; the
 * moving average of the weights is the hand-computed one, resumes exactly,
 * is validated and saved as the model; in JEM mode crop and flip reach the
 * cross-entropy rows only; softmax augmentation is reproducible per seed;
 * HMC chains resume exactly with their adapted step size; the replay
 * buffer's ages are saved, restored, and unknown after resuming an older
 * checkpoint without them. */
#include "jem.h"
#include "ebm/train.h"
#include "tmpdir.h"

#include <unistd.h>

static const char *TINY = "name = tiny\ninput = 1x28x28\nclasses = 10\nstem = 8\nblocks = 16/2 16/2\n";

typedef struct {
    double first, last;
    int n, rollbacks;
} rec;

static void on_progress(void *ud, const jem_progress *p)
{
    rec *r = ud;
    if (p->event == JEM_EV_ROLLBACK) {
        r->rollbacks++;
        return;
    }
    if (p->event != JEM_EV_ITER && p->event != JEM_EV_EPOCH) return;
    if (r->n == 0) r->first = p->loss;
    r->last = p->loss;
    r->n++;
}

static jem_net *tiny_net(uint64_t seed)
{
    jem_arch a;
    jem_net *net = NULL;
    if (jem_arch_parse(TINY, "tiny", &a) || jem_net_create(&a, &net)) return NULL;
    jem_rng r;
    jem_rng_seed(&r, seed, 0);
    jem_net_init(net, &r);
    return net;
}

static void check_loss_falls(const jem_dataset *ds)
{
    jem_net *net = tiny_net(1);
    ASSERT(net != NULL);
    if (!net) return;
    jem_train_cfg c;
    jem_train_defaults(&c, JEM_MODE_SOFTMAX);
    c.batch = 32;
    c.iters = 80;
    c.sched.lr = 3e-3f;
    c.log_every = 10;
    rec r = {0};
    c.progress = on_progress;
    c.ud = &r;
    ASSERT_OK(jem_train(net, ds, NULL, &c, NULL));
    ASSERT_MSG(r.n >= 8 && r.last < 0.75 * r.first, "loss %.4f -> %.4f over %d groups", r.first, r.last, r.n);
    double acc;
    ASSERT_OK(jem_evaluate(net, ds, &acc, NULL));
    ASSERT_MSG(acc > 0.4, "accuracy after 80 iterations %.3f", acc);
    jem_net_free(net);
}

static void jem_cfg(jem_train_cfg *c)
{
    jem_train_defaults(c, JEM_MODE_JEM);
    c->batch = 16;
    c->buffer_size = 100;
    c->sgld.steps = 3;
    c->sched.lr = 1e-3f;
    c->sched.warmup = 5;
    c->log_every = 2;
    c->snapshot_every = 2;
}

static void check_blowup_rolled_back(const jem_dataset *ds, float ema)
{
    jem_net *net = tiny_net(2);
    if (!net) {
        ASSERT(0);
        return;
    }
    jem_train_cfg c;
    jem_cfg(&c);
    c.ema = ema; /* with a moving average, the rollback restores it too */
    c.iters = 14;
    jem_train_hooks h = {.blowup_at = 6};
    c.div_threshold = 1e3f;
    rec r = {0};
    c.progress = on_progress;
    c.ud = &r;
    ASSERT_OK(jem_train_hooked(net, ds, NULL, &c, NULL, &h));
    ASSERT_MSG(r.rollbacks >= 1, "the injected blow-up was not rolled back");
    const float *p = jem_net_params(net);
    int finite = 1;
    float mx = 0;
    for (size_t i = 0; i < jem_net_nparams(net); i++) {
        finite &= isfinite(p[i]);
        mx = fabsf(p[i]) > mx ? fabsf(p[i]) : mx;
    }
    ASSERT(finite);
    /* the initial weights are below 1/3 in magnitude and a few steps move
     * them little; the blown-up step would leave the average above 1 */
    ASSERT_MSG(mx < 1, "weights after the rollback are still blown up (max %g)", mx);
    /* without rollbacks allowed, the same blow-up is a clear error */
    jem_net *net2 = tiny_net(2);
    c.max_retries = 0;
    c.progress = NULL;
    ASSERT_ERR(jem_train_hooked(net2, ds, NULL, &c, NULL, &h), JEM_ERR_DIVERGED);
    ASSERT_STR_CONTAINS(jem_last_error(), "diverged at iteration");
    jem_net_free(net);
    jem_net_free(net2);
}

static void check_exact_resume(const jem_dataset *ds)
{
    char ck[512];
    t_tmpdir("resume");
    snprintf(ck, sizeof ck, "%s", t_path("run.safetensors"));
    jem_train_cfg c;
    jem_cfg(&c);
    c.w_xy = 0.5f; /* conditional chains too */
    c.l2 = 0.1f;
    /* straight through: 10 iterations */
    jem_net *a = tiny_net(3);
    c.iters = 10;
    ASSERT_OK(jem_train(a, ds, NULL, &c, NULL));
    /* 6 iterations, checkpoint, then resume to 10 */
    jem_net *b = tiny_net(3);
    c.iters = 6;
    c.ckpt_path = ck;
    ASSERT_OK(jem_train(b, ds, NULL, &c, NULL));
    jem_net_free(b);
    jem_net *b2 = NULL;
    ASSERT_OK(jem_ckpt_load(ck, &b2));
    if (b2) {
        c.iters = 10;
        ASSERT_OK(jem_train(b2, ds, NULL, &c, ck));
        ASSERT_MSG(memcmp(jem_net_params(a), jem_net_params(b2), sizeof(float) * jem_net_nparams(a)) == 0,
                   "resumed run differs from the straight run");
        /* a resumed-and-perturbed run (different seed) would differ: the
         * comparison above can fail */
        jem_net *d = tiny_net(3);
        c.iters = 10;
        c.ckpt_path = NULL;
        c.seed = 2;
        ASSERT_OK(jem_train(d, ds, NULL, &c, NULL));
        ASSERT(memcmp(jem_net_params(a), jem_net_params(d), sizeof(float) * jem_net_nparams(a)) != 0);
        jem_net_free(d);
    }
    /* resuming from a checkpoint without training state is refused */
    ASSERT_OK(jem_ckpt_save(ck, a, NULL));
    jem_net *e = tiny_net(3);
    c.seed = 1;
    ASSERT_ERR(jem_train(e, ds, NULL, &c, ck), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "no training state");
    jem_net_free(e);
    jem_net_free(a);
    jem_net_free(b2);
}

static void check_semi_supervised(const jem_dataset *ds)
{
    jem_net *net = tiny_net(4);
    if (!net) {
        ASSERT(0);
        return;
    }
    jem_train_cfg c;
    jem_cfg(&c);
    c.iters = 4;
    c.labels_per_class = 2;
    rec r = {0};
    c.progress = on_progress;
    c.ud = &r;
    ASSERT_OK(jem_train(net, ds, NULL, &c, NULL));
    ASSERT(r.n > 0);
    jem_net_free(net);
}

/* the tensor name of a checkpoint as floats (NULL if absent or not n floats) */
static float *st_floats(const char *path, const char *name, size_t n)
{
    jem_st *st = NULL;
    if (jem_st_open(path, &st)) return NULL;
    jem_dtype dt;
    int nd;
    int64_t shp[8];
    const void *d = jem_st_get(st, name, &dt, &nd, shp);
    float *out = NULL;
    if (d && dt == JEM_DT_F32 && nd == 1 && shp[0] == (int64_t)n && (out = malloc(sizeof(float) * n)))
        memcpy(out, d, sizeof(float) * n);
    jem_st_free(st);
    return out;
}

static int same_params(jem_net *a, const float *b)
{
    return b && memcmp(jem_net_params(a), b, sizeof(float) * jem_net_nparams(a)) == 0;
}

static void softmax_cfg(jem_train_cfg *c)
{
    jem_train_defaults(c, JEM_MODE_SOFTMAX);
    c->batch = 32;
    c->sched.lr = 3e-3f;
}

/* The moving average after 3 steps against the one computed by hand from
 * the weights of runs of 1, 2 and 3 iterations (training itself is not
 * changed by the average: its trained weights equal the 3-iteration run's
 * bit for bit). The checkpoint's model is the average. */
static void check_ema_by_hand(const jem_dataset *ds)
{
    enum { T = 3 };
    const float decay = 0.15f; /* below the warm-up's 2/11 from the second step on */
    jem_net *w[T + 1] = {0};
    jem_train_cfg c;
    softmax_cfg(&c);
    w[0] = tiny_net(5);
    for (int k = 1; k <= T; k++) {
        w[k] = tiny_net(5);
        c.iters = k;
        if (!w[k]) {
            ASSERT(0);
            goto out;
        }
        ASSERT_OK(jem_train(w[k], ds, NULL, &c, NULL));
    }
    if (!w[0]) {
        ASSERT(0);
        goto out;
    }
    const size_t np = jem_net_nparams(w[0]);
    double *e = malloc(sizeof(double) * np);
    for (size_t i = 0; i < np; i++) e[i] = jem_net_params(w[0])[i];
    for (int k = 1; k <= T; k++) {
        double d = (double)k / (9.0 + k);
        if (d > decay) d = decay;
        for (size_t i = 0; i < np; i++) e[i] = d * e[i] + (1 - d) * jem_net_params(w[k])[i];
    }
    char ck[512];
    t_tmpdir("ema");
    snprintf(ck, sizeof ck, "%s", t_path("ema.safetensors"));
    jem_net *a = tiny_net(5);
    c.iters = T;
    c.ema = decay;
    c.ckpt_path = ck;
    ASSERT_OK(jem_train(a, ds, NULL, &c, NULL));
    double err = 0, moved = 0;
    for (size_t i = 0; i < np; i++) {
        double v = jem_net_params(a)[i];
        err = fmax(err, fabs(v - e[i]) / (1 + fabs(e[i])));
        moved = fmax(moved, fabs(v - jem_net_params(w[T])[i]));
    }
    ASSERT_MSG(err < 1e-6, "moving average differs from the hand-computed one by %.3g", err);
    ASSERT_MSG(moved > 1e-4, "the average is the last weights (largest difference %.3g)", moved);
    float *raw = st_floats(ck, "_train.params", np);
    ASSERT_MSG(same_params(w[T], raw), "the trained weights of a run with an average differ from a run without");
    jem_net *loaded = NULL;
    ASSERT_OK(jem_ckpt_load(ck, &loaded));
    if (loaded) ASSERT_MSG(same_params(loaded, jem_net_params(a)), "the checkpoint's model is not the average");
    free(raw);
    free(e);
    jem_net_free(loaded);
    jem_net_free(a);
out:
    for (int k = 0; k <= T; k++) jem_net_free(w[k]);
}

/* JEM with a moving average: 6 iterations, checkpoint, resume to 10 equals
 * 10 straight, both the average and the trained weights, bit for bit. */
static void check_ema_resume(const jem_dataset *ds)
{
    char ck1[512], ck2[512];
    t_tmpdir("emaresume");
    snprintf(ck1, sizeof ck1, "%s", t_path("a.safetensors"));
    snprintf(ck2, sizeof ck2, "%s", t_path("b.safetensors"));
    jem_train_cfg c;
    jem_cfg(&c);
    c.w_xy = 0.5f;
    c.ema = 0.9f;
    jem_net *a = tiny_net(6), *b = tiny_net(6), *b2 = NULL;
    c.iters = 10;
    c.ckpt_path = ck1;
    ASSERT_OK(jem_train(a, ds, NULL, &c, NULL));
    c.iters = 6;
    c.ckpt_path = ck2;
    ASSERT_OK(jem_train(b, ds, NULL, &c, NULL));
    ASSERT_OK(jem_ckpt_load(ck2, &b2));
    if (a && b2) {
        c.iters = 10;
        ASSERT_OK(jem_train(b2, ds, NULL, &c, ck2));
        ASSERT_MSG(same_params(a, jem_net_params(b2)), "resumed moving average differs from the straight run's");
        const size_t np = jem_net_nparams(a);
        float *ra = st_floats(ck1, "_train.params", np), *rb = st_floats(ck2, "_train.params", np);
        ASSERT_MSG(ra && rb && memcmp(ra, rb, sizeof(float) * np) == 0,
                   "resumed trained weights differ from the straight run's");
        ASSERT_MSG(ra && !same_params(a, ra), "the average equals the trained weights");
        free(ra);
        free(rb);
    }
    jem_net_free(a);
    jem_net_free(b);
    jem_net_free(b2);
}

static void on_val(void *ud, const jem_progress *p)
{
    if (p->val_acc >= 0) *(double *)ud = p->val_acc;
}

/* Validation during training measures the average, not the trained weights:
 * those of the same run without an average, which score differently here
 * (so the check can fail), and which the run with it saved unchanged. */
static void check_ema_validated(const jem_dataset *ds)
{
    char ck[512];
    t_tmpdir("emaval");
    snprintf(ck, sizeof ck, "%s", t_path("v.safetensors"));
    jem_train_cfg c;
    softmax_cfg(&c);
    c.iters = 12;
    c.eval_every = 12;
    c.log_every = 12;
    double vacc = -1, acc_avg = -2, acc_raw = -3;
    jem_net *a = tiny_net(7), *raw = tiny_net(7);
    if (!a || !raw) {
        ASSERT(0);
        goto out;
    }
    ASSERT_OK(jem_train(raw, ds, NULL, &c, NULL));
    c.ema = 0.9f;
    c.ckpt_path = ck;
    c.progress = on_val;
    c.ud = &vacc;
    ASSERT_OK(jem_train(a, ds, ds, &c, NULL));
    ASSERT_OK(jem_evaluate(a, ds, &acc_avg, NULL));
    ASSERT_OK(jem_evaluate(raw, ds, &acc_raw, NULL));
    float *r = st_floats(ck, "_train.params", jem_net_nparams(a));
    ASSERT_MSG(same_params(raw, r), "the saved trained weights are not those of the run without an average");
    free(r);
    ASSERT_MSG(acc_raw != acc_avg, "trained and averaged weights score alike (%.4f): pick other settings", acc_raw);
    ASSERT_MSG(vacc == acc_avg, "validation %.4f, accuracy of the average %.4f, of the trained weights %.4f", vacc,
               acc_avg, acc_raw);
out:
    jem_net_free(a);
    jem_net_free(raw);
}

/* What the batch hook saw on the first iteration. */
typedef struct {
    const jem_dataset *ds;
    jem_net *net;
    int calls, batch, px0, npx;
    int px_clean;      /* every p(x) row is a data set image, unchanged */
    int ce_from_px;    /* every cross-entropy row is a crop/flip of its p(x) row */
    int ce_changed;    /* cross-entropy rows that differ from their p(x) row */
    int labels_match;  /* the p(x) rows carry their images' labels */
    double e_px, e_ce; /* mean energies of the p(x) and cross-entropy rows */
    float *px;         /* copy of the p(x) rows */
} batch_rec;

/* b is a (C = 1) image a shifted by up to P pixels (filled with -1) and maybe mirrored */
static int is_shift_flip(const float *a, const float *b, int H, int W, int P)
{
    for (int flip = 0; flip < 2; flip++)
        for (int dy = -P; dy <= P; dy++)
            for (int dx = -P; dx <= P; dx++) {
                int same = 1;
                for (int y = 0; y < H && same; y++)
                    for (int x = 0; x < W && same; x++) {
                        int sy = y + dy, sx = x + dx;
                        float v = sy < 0 || sy >= H || sx < 0 || sx >= W ? -1.0f : a[sy * W + sx];
                        same = b[y * W + (flip ? W - 1 - x : x)] == v;
                    }
                if (same) return 1;
            }
    return 0;
}

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
    batch_rec *r = ud;
    if (r->calls++) return;
    const jem_dataset *ds = r->ds;
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    r->batch = batch;
    r->px0 = px0;
    r->npx = npx;
    r->px_clean = r->ce_from_px = r->labels_match = 1;
    for (int i = 0; i < npx; i++) {
        const float *p = x + (size_t)(px0 + i) * D;
        int found = 0;
        for (int j = 0; j < ds->n && !found; j++)
            if (!memcmp(p, ds->x + (size_t)j * D, sizeof(float) * D)) found = 1 + (ds->y[j] == y[px0 + i]);
        r->px_clean &= found > 0;
        r->labels_match &= found == 2 && y[px0 + i] == y[i];
        r->ce_from_px &= is_shift_flip(p, x + (size_t)i * D, ds->h, ds->w, 2);
        r->ce_changed += memcmp(p, x + (size_t)i * D, sizeof(float) * D) != 0;
    }
    r->px = malloc(sizeof(float) * D * npx);
    if (r->px) memcpy(r->px, x + (size_t)px0 * D, sizeof(float) * D * npx);
    r->e_px = mean_energy(r->net, x + (size_t)px0 * D, npx);
    r->e_ce = mean_energy(r->net, x, npx);
}

static void on_e_data(void *ud, const jem_progress *p)
{
    if (p->event == JEM_EV_ITER && p->iter == 1) *(double *)ud = p->e_data;
}

/* One JEM iteration with the batch hook. */
static void run_hooked(const jem_dataset *ds, int crop, int flip, float noise, int px_rows, batch_rec *r,
                       double *e_data)
{
    jem_train_cfg c;
    jem_cfg(&c);
    c.batch = 16;
    c.n_samples = 8;
    c.iters = 1;
    c.log_every = 1;
    c.aug.crop_pad = crop;
    c.aug.hflip = flip;
    c.aug.noise = noise;
    c.px_rows = px_rows;
    c.progress = on_e_data;
    c.ud = e_data;
    memset(r, 0, sizeof *r);
    r->ds = ds;
    r->net = tiny_net(8);
    jem_train_hooks h = {.batch = on_batch, .ud = r};
    if (r->net) ASSERT_OK(jem_train_hooked(r->net, ds, NULL, &c, NULL, &h));
    ASSERT_EQ_INT(r->calls, 1);
    jem_net_free(r->net);
    r->net = NULL;
}

/* JEM with crop and flip: the cross-entropy rows are augmented, the p(x)
 * data term sees clean rows of the same images (noise only), as many as the
 * chains by default; E(x_data) is the clean rows' energy. */
static void check_px_rows(const jem_dataset *ds)
{
    batch_rec r, rn;
    double ed = 0, edn = 0;
    run_hooked(ds, 2, 1, 0.0f, 0, &r, &ed);
    ASSERT_EQ_INT(r.px0, 16);
    ASSERT_EQ_INT(r.npx, 8);
    ASSERT_MSG(r.px_clean, "a p(x) row is not an image of the data set");
    ASSERT_MSG(r.labels_match, "the p(x) rows do not carry their images' labels");
    ASSERT_MSG(r.ce_from_px, "a cross-entropy row is not a crop/flip of its image");
    ASSERT_MSG(r.ce_changed >= 4, "only %d of 8 cross-entropy rows were augmented", r.ce_changed);
    /* a fresh network's energies vary little between images: E(x_data) must be
     * far closer to the clean rows' mean than to the augmented rows' */
    ASSERT_MSG(fabs(ed - r.e_px) < 0.05 * fabs(r.e_ce - r.e_px), "E(x_data) %.9g, clean rows %.9g, augmented %.9g", ed,
               r.e_px, r.e_ce);
    /* with noise: the same clean images (the first iteration's batch does
     * not depend on the augmentation) plus Gaussian noise of sigma 0.03 */
    run_hooked(ds, 2, 1, 0.03f, 0, &rn, &edn);
    if (r.px && rn.px) {
        const size_t n = (size_t)8 * ds->c * ds->h * ds->w;
        double s2 = 0, mx = 0;
        for (size_t i = 0; i < n; i++) {
            double d = rn.px[i] - r.px[i];
            s2 += d * d;
            mx = fmax(mx, fabs(d));
        }
        double sd = sqrt(s2 / n);
        ASSERT_MSG(sd > 0.025 && sd < 0.035 && mx < 0.2, "noise on the p(x) rows: sd %.4f, max %.4f", sd, mx);
    } else {
        ASSERT(0);
    }
    free(r.px);
    free(rn.px);
    /* --px-rows 3; -1: the augmented rows themselves; no crop or flip: the batch rows */
    run_hooked(ds, 2, 1, 0.0f, 3, &r, &ed);
    ASSERT(r.px0 == 16 && r.npx == 3 && r.px_clean);
    free(r.px);
    run_hooked(ds, 2, 1, 0.0f, -1, &r, &ed);
    ASSERT(r.px0 == 0 && r.npx == 16 && !r.px_clean);
    free(r.px);
    run_hooked(ds, 0, 0, 0.0f, 0, &r, &ed);
    ASSERT(r.px0 == 0 && r.npx == 16 && r.px_clean && r.ce_changed == 0);
    free(r.px);
}

/* Softmax with crop, flip and noise: the same seed gives the same weights,
 * another seed or no augmentation other weights. */
static void check_softmax_augment(const jem_dataset *ds)
{
    jem_net *n[4];
    for (int i = 0; i < 4; i++) {
        n[i] = tiny_net(9);
        jem_train_cfg c;
        softmax_cfg(&c);
        c.iters = 6;
        c.aug.crop_pad = i < 3 ? 2 : 0;
        c.aug.hflip = i < 3;
        c.aug.noise = i < 3 ? 0.03f : 0.0f;
        c.seed = i == 2 ? 2 : 1;
        if (n[i]) ASSERT_OK(jem_train(n[i], ds, NULL, &c, NULL));
    }
    if (n[0] && n[1] && n[2] && n[3]) {
        ASSERT_MSG(same_params(n[0], jem_net_params(n[1])), "augmented runs with one seed differ");
        ASSERT(!same_params(n[0], jem_net_params(n[2])));
        ASSERT(!same_params(n[0], jem_net_params(n[3])));
    } else {
        ASSERT(0);
    }
    for (int i = 0; i < 4; i++) jem_net_free(n[i]);
}

/* ---- HMC chains and the replay buffer's ages ---- */

/* the tensor name of a checkpoint as int64 values (n of them; NULL if not so) */
static int64_t *st_i64(const char *path, const char *name, size_t n)
{
    jem_st *st = NULL;
    if (jem_st_open(path, &st)) return NULL;
    jem_dtype dt;
    int nd;
    int64_t shp[8];
    const void *d = jem_st_get(st, name, &dt, &nd, shp);
    int64_t *out = NULL;
    if (d && dt == JEM_DT_I64 && nd == 1 && shp[0] == (int64_t)n && (out = malloc(sizeof(int64_t) * n)))
        memcpy(out, d, sizeof(int64_t) * n);
    jem_st_free(st);
    return out;
}

/* A copy of checkpoint src at dst without the tensor drop and the metadata
 * key drop_meta (either NULL), and with age_slot's "_buffer.age" set to
 * age_value when age_slot >= 0: an older or a damaged checkpoint. */
static jem_status st_copy(const char *src, const char *dst, const char *drop, const char *drop_meta, int age_slot,
                          int64_t age_value)
{
    jem_st *in = NULL, *out = NULL;
    int64_t *age = NULL;
    jem_status s = jem_st_open(src, &in);
    if (!s) s = jem_st_new(&out);
    for (int i = 0; !s && i < jem_st_count(in); i++) {
        const char *name = jem_st_name(in, i);
        if (drop && !strcmp(name, drop)) continue;
        jem_dtype dt;
        int nd;
        int64_t shp[8];
        const void *d = jem_st_get(in, name, &dt, &nd, shp);
        if (age_slot >= 0 && !strcmp(name, "_buffer.age")) {
            age = malloc(sizeof(int64_t) * (size_t)shp[0]);
            if (!age) s = JEM_ERR_NOMEM;
            else {
                memcpy(age, d, sizeof(int64_t) * (size_t)shp[0]);
                age[age_slot] = age_value;
                d = age;
            }
        }
        if (!s) s = jem_st_add(out, name, dt, nd, shp, d);
    }
    for (int i = 0; !s && i < jem_st_meta_count(in); i++) {
        const char *k = jem_st_meta_key(in, i);
        if (!drop_meta || strcmp(k, drop_meta)) s = jem_st_meta(out, k, jem_st_get_meta(in, k));
    }
    if (!s) s = jem_st_commit(out, dst);
    jem_st_free(out);
    jem_st_free(in);
    free(age);
    return s;
}

static void hmc_cfg(jem_train_cfg *c)
{
    jem_cfg(c);
    c->sampler = JEM_SAMPLER_HMC;
    c->hmc.steps = 2;
    c->hmc.leapfrog = 3;
    c->hmc.step_size = 0.02f;
    c->sgld.clamp = 1; /* reflecting walls */
    c->w_xy = 0.5f;    /* conditional chains too */
}

/* HMC chains: a run stopped at a checkpoint and resumed equals a straight
 * one bit for bit; the step size adapts (and is saved) unless the target is
 * 0; a resume that lost the step size differs, so the step size is part of
 * what makes it exact. */
static void check_hmc_resume(const jem_dataset *ds)
{
    char ck[512], old[512];
    t_tmpdir("hmc");
    snprintf(ck, sizeof ck, "%s", t_path("run.safetensors"));
    snprintf(old, sizeof old, "%s", t_path("nostep.safetensors"));
    jem_train_cfg c;
    hmc_cfg(&c);
    jem_net *a = tiny_net(5), *b = tiny_net(5), *b2 = NULL, *b3 = NULL;
    c.iters = 8;
    ASSERT_OK(jem_train(a, ds, NULL, &c, NULL));
    c.iters = 5;
    c.ckpt_path = ck;
    ASSERT_OK(jem_train(b, ds, NULL, &c, NULL));
    jem_st *st = NULL;
    ASSERT_OK(jem_st_open(ck, &st));
    const char *sampler = st ? jem_st_get_meta(st, "jem.train.sampler") : NULL;
    const char *eps = st ? jem_st_get_meta(st, "jem.train.hmc_step") : NULL;
    ASSERT_STR_CONTAINS(sampler, "hmc");
    ASSERT_MSG(eps && strtod(eps, NULL) > 0 && (float)strtod(eps, NULL) != c.hmc.step_size,
               "the step size was not adapted: %s", eps ? eps : "(none)");
    jem_st_free(st);
    ASSERT_OK(st_copy(ck, old, NULL, "jem.train.hmc_step", -1, 0));
    ASSERT_OK(jem_ckpt_load(ck, &b2));
    ASSERT_OK(jem_ckpt_load(old, &b3));
    if (b2 && b3) {
        c.iters = 8;
        c.ckpt_path = NULL;
        ASSERT_OK(jem_train(b2, ds, NULL, &c, ck));
        ASSERT_MSG(same_params(a, jem_net_params(b2)), "resumed HMC run differs from the straight run");
        ASSERT_OK(jem_train(b3, ds, NULL, &c, old));
        ASSERT_MSG(!same_params(a, jem_net_params(b3)), "a resume at the initial step size matched the straight run");
    }
    /* target 0: the step size stays what was given */
    jem_net *f = tiny_net(5);
    c.hmc.target_accept = 0;
    c.iters = 3;
    c.ckpt_path = ck;
    ASSERT_OK(jem_train(f, ds, NULL, &c, NULL));
    ASSERT_OK(jem_st_open(ck, &st));
    eps = st ? jem_st_get_meta(st, "jem.train.hmc_step") : NULL;
    ASSERT_MSG(eps && (float)strtod(eps, NULL) == c.hmc.step_size, "fixed step size saved as %s", eps ? eps : "(none)");
    jem_st_free(st);
    /* bad HMC settings are refused */
    jem_train_cfg bad;
    hmc_cfg(&bad);
    bad.iters = 1;
    bad.hmc.leapfrog = 0;
    ASSERT_ERR(jem_train(f, ds, NULL, &bad, NULL), JEM_ERR_ARG);
    hmc_cfg(&bad);
    bad.iters = 1;
    bad.hmc.target_accept = 1;
    ASSERT_ERR(jem_train(f, ds, NULL, &bad, NULL), JEM_ERR_ARG);
    jem_net_free(a);
    jem_net_free(b);
    jem_net_free(b2);
    jem_net_free(b3);
    jem_net_free(f);
}

/* The replay buffer's ages in the checkpoint: all equal the iteration
 * without restarts; with every drawn chain restarted, the youngest are the
 * last iteration's (age 1); saved and restored so a resumed run's ages equal
 * a straight run's; a checkpoint without ages (an older one) resumes to the
 * same weights with the unknown ages -1 until their slots restart; ages
 * beyond the iteration are refused as corrupt. */
static void check_buffer_age(const jem_dataset *ds)
{
    char ck[512], straight[512], old[512], bad[512];
    t_tmpdir("age");
    snprintf(ck, sizeof ck, "%s", t_path("run.safetensors"));
    snprintf(straight, sizeof straight, "%s", t_path("straight.safetensors"));
    snprintf(old, sizeof old, "%s", t_path("old.safetensors"));
    snprintf(bad, sizeof bad, "%s", t_path("bad.safetensors"));
    jem_train_cfg c;
    jem_cfg(&c);
    const int N = c.buffer_size;
    for (int r = 0; r < 2; r++) {
        jem_net *n = tiny_net(6);
        c.reinit = (float)r;
        c.iters = 6;
        c.ckpt_path = ck;
        ASSERT_OK(jem_train(n, ds, NULL, &c, NULL));
        int64_t *age = st_i64(ck, "_buffer.age", (size_t)N);
        ASSERT(age != NULL);
        int64_t lo = 1 << 30, hi = -1;
        for (int i = 0; age && i < N; i++) {
            lo = age[i] < lo ? age[i] : lo;
            hi = age[i] > hi ? age[i] : hi;
        }
        if (r == 0)
            ASSERT_MSG(lo == 6 && hi == 6, "reinit 0: ages from %lld to %lld, want all 6", (long long)lo,
                       (long long)hi);
        else
            ASSERT_MSG(lo == 1 && hi == 6, "reinit 1: ages from %lld to %lld, want 1 to 6", (long long)lo,
                       (long long)hi);
        free(age);
        jem_net_free(n);
    }
    /* 10 straight against 6 and resumed to 10 */
    c.reinit = 0.2f;
    jem_net *a = tiny_net(7), *b = tiny_net(7), *b2 = NULL, *b3 = NULL, *b4 = NULL;
    c.iters = 10;
    c.ckpt_path = straight;
    ASSERT_OK(jem_train(a, ds, NULL, &c, NULL));
    c.iters = 6;
    c.ckpt_path = ck;
    ASSERT_OK(jem_train(b, ds, NULL, &c, NULL));
    ASSERT_OK(st_copy(ck, old, "_buffer.age", NULL, -1, 0));
    ASSERT_OK(st_copy(ck, bad, NULL, NULL, 3, 7)); /* age 7 at iteration 6 */
    ASSERT_OK(jem_ckpt_load(ck, &b2));
    ASSERT_OK(jem_ckpt_load(old, &b3));
    ASSERT_OK(jem_ckpt_load(bad, &b4));
    if (b2 && b3 && b4) {
        c.iters = 10;
        ASSERT_OK(jem_train(b2, ds, NULL, &c, ck));
        ASSERT(same_params(a, jem_net_params(b2)));
        int64_t *want = st_i64(straight, "_buffer.age", (size_t)N), *got = st_i64(ck, "_buffer.age", (size_t)N);
        ASSERT_MSG(want && got && !memcmp(want, got, sizeof(int64_t) * (size_t)N),
                   "resumed ages differ from the straight run's");
        /* the older checkpoint: same weights, ages unknown where no restart happened since */
        c.ckpt_path = old;
        ASSERT_OK(jem_train(b3, ds, NULL, &c, old));
        ASSERT(same_params(a, jem_net_params(b3)));
        int64_t *part = st_i64(old, "_buffer.age", (size_t)N);
        int unknown = 0, agree = 1;
        for (int i = 0; part && want && i < N; i++) {
            unknown += part[i] == -1;
            agree &= part[i] == -1 ? want[i] > 4 : part[i] == want[i];
        }
        ASSERT(part != NULL);
        ASSERT_MSG(unknown > 0 && unknown < N, "%d of %d ages unknown after resuming without ages", unknown, N);
        ASSERT_MSG(agree, "known ages after resuming without ages differ from the straight run's");
        free(want);
        free(got);
        free(part);
        c.ckpt_path = NULL;
        ASSERT_ERR(jem_train(b4, ds, NULL, &c, bad), JEM_ERR_FORMAT);
        ASSERT_STR_CONTAINS(jem_last_error(), "_buffer.age");
    }
    jem_net_free(a);
    jem_net_free(b);
    jem_net_free(b2);
    jem_net_free(b3);
    jem_net_free(b4);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_train");
    jem_data_set_dir("fmnist", "/usr/share/datasets/fashion-mnist");
    jem_dataset ds;
    jem_status s = jem_dataset_open("fmnist:test", &ds);
    ASSERT_OK(s);
    if (s) return t_finish();
    jem_dataset_truncate(&ds, 2000);
    check_loss_falls(&ds);
    check_blowup_rolled_back(&ds, 0.0f);
    check_blowup_rolled_back(&ds, 0.9f);
    check_ema_by_hand(&ds);
    check_ema_resume(&ds);
    check_ema_validated(&ds);
    check_px_rows(&ds);
    check_softmax_augment(&ds);
    check_exact_resume(&ds);
    check_hmc_resume(&ds);
    check_buffer_age(&ds);
    check_semi_supervised(&ds);
    jem_dataset_free(&ds);
    return t_finish();
}

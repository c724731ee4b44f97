/*
 * APGD (Croce and Hein, "Reliable evaluation of adversarial robustness with
 * an ensemble of diverse parameter-free attacks", ICML 2020), as AutoAttack
 * runs it: a step size that starts at 2 eps and is halved at checkpoints
 * when the loss stopped rising, a return to the best point when it is,
 * momentum 0.75, the cross-entropy or the DLR loss (untargeted, or targeted
 * at each of the top classes in turn), L-inf and L2.
 *
 * Dimension letters: B images in a chunk (M of them still robust in a run),
 * D values per image, K classes.
 */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the four largest logits' indices, p[0] the largest (K >= 1; unused
 * places repeat the last found) */
static void top4(const float *z, int K, int p[4])
{
    for (int j = 0; j < 4; j++) {
        int best = -1;
        for (int k = 0; k < K; k++) {
            int used = 0;
            for (int i = 0; i < j; i++) used |= p[i] == k;
            if (!used && (best < 0 || z[k] > z[best])) best = k;
        }
        p[j] = best >= 0 ? best : p[j - 1];
    }
}

/* the loss of one image's logits z (K) and its gradient dz (K) */
static double loss_grad(int kind, const float *z, int K, int y, int t, float *dz)
{
    if (kind == JEM_APGD_CE) {
        double m = z[0], se = 0;
        for (int k = 1; k < K; k++) m = z[k] > m ? z[k] : m;
        for (int k = 0; k < K; k++) se += exp((double)z[k] - m);
        for (int k = 0; k < K; k++) dz[k] = (float)(exp((double)z[k] - m) / se);
        dz[y] -= 1.0f;
        return m + log(se) - z[y];
    }
    int p[4];
    top4(z, K, p);
    memset(dz, 0, sizeof(float) * (size_t)K);
    double num, den;
    int o = t;
    if (kind == JEM_APGD_DLR) {
        o = p[0] == y ? p[1] : p[0]; /* the best other class */
        den = (double)z[p[0]] - z[p[2]] + 1e-12;
    } else {
        den = (double)z[p[0]] - 0.5 * ((double)z[p[2]] + z[p[3]]) + 1e-12;
    }
    num = (double)z[o] - z[y];
    const double a = 1.0 / den, b = num / (den * den);
    dz[o] += (float)a;
    dz[y] -= (float)a;
    dz[p[0]] -= (float)b;
    if (kind == JEM_APGD_DLR) {
        dz[p[2]] += (float)b;
    } else {
        dz[p[2]] += (float)(0.5 * b);
        dz[p[3]] += (float)(0.5 * b);
    }
    return num * a;
}

static int argmax(const float *z, int K)
{
    int am = 0;
    for (int k = 1; k < K; k++)
        if (z[k] > z[am]) am = k;
    return am;
}

/* the buffers of one chunk */
typedef struct {
    float *x0, *xa, *xo, *xb, *z; /* (B, D) clean, iterate, previous iterate, best point, candidate */
    float *g, *gb;                /* (B, D) gradient at the iterate, at the best point */
    float *lg, *dl;               /* (B, K) logits, dloss/dlogits */
    double *loss, *lbest, *llast; /* (B) loss, best loss, best loss at the last checkpoint */
    double *step;                 /* (B) step size */
    float *hist;                  /* (B, steps + 1) the loss of every iterate */
    uint8_t *red;                 /* (B) step reduced at the last checkpoint */
    int *idx;                     /* (B) the run's images' places in the chunk */
    int32_t *y, *t;               /* (B) labels, targets */
} bufs;

/* losses and their gradients at xa for the M images; with a deterministic
 * classifier, images misclassified there are marked broken */
static jem_status eval_at(const jem_classifier *c, const jem_apgd_cfg *cfg, bufs *w, int M, const float *xa,
                          uint64_t seed, uint8_t *robust, float *adv)
{
    const int D = c->D, K = c->K;
    /* with forward and backward, the gradient reuses this forward pass */
    const int fb = c->forward && c->backward && !c->stochastic;
    jem_status s = fb ? c->forward(c->ctx, xa, M, w->lg) : c->logits(c->ctx, xa, M, w->lg);
    if (s) return s;
    for (int j = 0; j < M; j++) {
        const float *z = w->lg + (size_t)j * K;
        for (int k = 0; k < K; k++)
            if (!isfinite(z[k])) return jem_fail(JEM_ERR_NONFINITE, "APGD: the classifier returned a non-finite logit");
        w->loss[j] = loss_grad(cfg->loss, z, K, w->y[j], w->t[j], w->dl + (size_t)j * K);
        if (!c->stochastic && argmax(z, K) != w->y[j] && robust[w->idx[j]]) {
            robust[w->idx[j]] = 0;
            if (adv) memcpy(adv + (size_t)w->idx[j] * D, xa + (size_t)j * D, sizeof(float) * D);
        }
    }
    return fb ? c->backward(c->ctx, w->dl, w->g) : c->grad(c->ctx, xa, M, w->dl, w->g, seed);
}

/* a step of size st from x along g (L-inf: its sign, L2: normalised) into out */
static void ascend(float *out, const float *x, const float *g, int D, int norm, double st)
{
    if (norm == 0) {
        for (int d = 0; d < D; d++) out[d] = x[d] + (float)(st * ((g[d] > 0) - (g[d] < 0)));
        return;
    }
    double nn = 0;
    for (int d = 0; d < D; d++) nn += (double)g[d] * g[d];
    const double f = st / (sqrt(nn) + 1e-12);
    for (int d = 0; d < D; d++) out[d] = x[d] + (float)(g[d] * f);
}

/* one run of APGD on the M images of w (robust and adv indexed by chunk
 * place); *ticks counts iterations for the progress hook */
static jem_status run_once(const jem_classifier *c, const jem_apgd_cfg *cfg, bufs *w, int M, jem_rng *rng,
                           uint64_t *gseed, uint8_t *robust, float *adv, int64_t *ticks, int64_t total)
{
    const int D = c->D, N = cfg->steps, norm = cfg->norm;
    const double eps = cfg->eps, rho = cfg->rho > 0 ? cfg->rho : 0.75;
    /* random start on the sphere of radius eps, clipped to the box */
    for (int j = 0; j < M; j++) {
        float *xa = w->xa + (size_t)j * D, *t = w->z + (size_t)j * D;
        const float *x0 = w->x0 + (size_t)j * D;
        double m = 0;
        for (int d = 0; d < D; d++) {
            t[d] = norm == 0 ? (float)(2 * jem_rng_uniform_d(rng) - 1) : jem_rng_normal(rng);
            m = norm == 0 ? (fabs(t[d]) > m ? fabs(t[d]) : m) : m + (double)t[d] * t[d];
        }
        if (norm == 2) m = sqrt(m);
        for (int d = 0; d < D; d++) xa[d] = x0[d] + (float)(eps * t[d] / (m + 1e-12));
        jem_atk_project(xa, x0, D, norm, eps);
    }
    jem_status s = eval_at(c, cfg, w, M, w->xa, (*gseed)++, robust, adv);
    if (s) return s;
    memcpy(w->xo, w->xa, sizeof(float) * (size_t)M * D);
    memcpy(w->xb, w->xa, sizeof(float) * (size_t)M * D);
    memcpy(w->gb, w->g, sizeof(float) * (size_t)M * D);
    for (int j = 0; j < M; j++) {
        w->lbest[j] = w->llast[j] = w->loss[j];
        w->hist[(size_t)j * (N + 1)] = (float)w->loss[j];
        w->step[j] = 2 * eps;
        w->red[j] = 1;
    }
    /* checkpoints: the first after 0.22 N iterations, the gaps shrinking by
     * 0.03 N down to 0.06 N */
    int k = (int)(0.22 * N), counter = 0;
    const int decr = (int)(0.03 * N) > 1 ? (int)(0.03 * N) : 1, kmin = (int)(0.06 * N) > 1 ? (int)(0.06 * N) : 1;
    if (k < 1) k = 1;
    for (int i = 0; i < N; i++) {
        if (cfg->progress) cfg->progress(cfg->progress_ud, (*ticks)++, total);
        const double a = i > 0 ? 0.75 : 1.0;
        for (int j = 0; j < M; j++) {
            float *xa = w->xa + (size_t)j * D, *xo = w->xo + (size_t)j * D, *z = w->z + (size_t)j * D;
            const float *x0 = w->x0 + (size_t)j * D;
            ascend(z, xa, w->g + (size_t)j * D, D, norm, w->step[j]);
            jem_atk_project(z, x0, D, norm, eps);
            for (int d = 0; d < D; d++) {
                const float nx = xa[d] + (float)(a * (z[d] - xa[d]) + (1 - a) * (xa[d] - xo[d]));
                xo[d] = xa[d];
                xa[d] = nx;
            }
            jem_atk_project(xa, x0, D, norm, eps);
        }
        s = eval_at(c, cfg, w, M, w->xa, (*gseed)++, robust, adv);
        if (s) return s;
        for (int j = 0; j < M; j++) {
            w->hist[(size_t)j * (N + 1) + i + 1] = (float)w->loss[j];
            if (w->loss[j] > w->lbest[j]) {
                w->lbest[j] = w->loss[j];
                memcpy(w->xb + (size_t)j * D, w->xa + (size_t)j * D, sizeof(float) * D);
                memcpy(w->gb + (size_t)j * D, w->g + (size_t)j * D, sizeof(float) * D);
            }
        }
        if (++counter < k) continue;
        /* a checkpoint: halve the step and go back to the best point where
         * the loss rose in at most rho of the last k steps, or where neither
         * the step nor the best loss changed since the last checkpoint */
        for (int j = 0; j < M; j++) {
            const float *h = w->hist + (size_t)j * (N + 1);
            int up = 0;
            for (int q = i + 1; q > i + 1 - k; q--) up += h[q] > h[q - 1];
            const int osc = up <= k * rho, stuck = !w->red[j] && w->llast[j] >= w->lbest[j];
            w->red[j] = osc || stuck;
            w->llast[j] = w->lbest[j];
            if (w->red[j]) {
                w->step[j] /= 2;
                memcpy(w->xa + (size_t)j * D, w->xb + (size_t)j * D, sizeof(float) * D);
                memcpy(w->g + (size_t)j * D, w->gb + (size_t)j * D, sizeof(float) * D);
            }
        }
        k = k - decr > kmin ? k - decr : kmin;
        counter = 0;
    }
    if (!c->stochastic) return JEM_OK;
    /* a stochastic classifier: judged once, at the run's highest-loss point */
    s = c->logits(c->ctx, w->xb, M, w->lg);
    if (s) return s;
    for (int j = 0; j < M; j++)
        if (argmax(w->lg + (size_t)j * c->K, c->K) != w->y[j] && robust[w->idx[j]]) {
            robust[w->idx[j]] = 0;
            if (adv) memcpy(adv + (size_t)w->idx[j] * D, w->xb + (size_t)j * D, sizeof(float) * D);
        }
    return JEM_OK;
}

jem_status jem_apgd_run(const jem_classifier *c, const float *x, const int32_t *y, int n, const jem_apgd_cfg *cfg,
                        uint8_t *robust, float *adv)
{
    const int D = c->D, K = c->K, chunk = 128;
    if (cfg->norm != 0 && cfg->norm != 2) return jem_fail(JEM_ERR_ARG, "APGD: norm must be 0 (L-inf) or 2 (L2)");
    if (!(cfg->eps >= 0) || cfg->steps < 1 || cfg->restarts < 1 || !(cfg->rho >= 0 && cfg->rho < 1))
        return jem_fail(JEM_ERR_ARG, "APGD: eps %g, steps %d, restarts %d, rho %g", cfg->eps, cfg->steps, cfg->restarts,
                        cfg->rho);
    if (cfg->loss < JEM_APGD_CE || cfg->loss > JEM_APGD_DLR_T)
        return jem_fail(JEM_ERR_ARG, "APGD: unknown loss %d", cfg->loss);
    if ((cfg->loss == JEM_APGD_DLR && K < 3) || (cfg->loss == JEM_APGD_DLR_T && K < 4))
        return jem_fail(JEM_ERR_ARG, "APGD: the %s loss needs at least %d classes, the model has %d",
                        cfg->loss == JEM_APGD_DLR ? "DLR" : "targeted DLR", cfg->loss == JEM_APGD_DLR ? 3 : 4, K);
    if (cfg->targets < 0) return jem_fail(JEM_ERR_ARG, "APGD: targets %d", cfg->targets);
    jem_status s = jem_atk_labels(y, n, K);
    if (s) return s;
    const int T = cfg->loss != JEM_APGD_DLR_T ? 1
                  : cfg->targets > 0          ? (cfg->targets < K - 1 ? cfg->targets : K - 1)
                                              : (K - 1 < 9 ? K - 1 : 9);
    const size_t BD = (size_t)chunk * D, BK = (size_t)chunk * K;
    bufs w;
    memset(&w, 0, sizeof w);
    float *blk = malloc(sizeof(float) * (7 * BD + 2 * BK + (size_t)chunk * (cfg->steps + 1)));
    double *dbl = malloc(sizeof(double) * 4 * chunk);
    int32_t *tops = malloc(sizeof(int32_t) * (size_t)chunk * (T + 2));
    w.idx = malloc(sizeof(int) * chunk);
    w.red = malloc(chunk);
    uint8_t *ok = malloc(chunk);
    if (!blk || !dbl || !tops || !w.idx || !w.red || !ok) {
        s = jem_fail(JEM_ERR_NOMEM, "APGD: out of memory");
        goto done;
    }
    w.x0 = blk, w.xa = blk + BD, w.xo = blk + 2 * BD, w.xb = blk + 3 * BD, w.z = blk + 4 * BD, w.g = blk + 5 * BD;
    w.gb = blk + 6 * BD, w.lg = blk + 7 * BD, w.dl = blk + 7 * BD + BK, w.hist = blk + 7 * BD + 2 * BK;
    w.loss = dbl, w.lbest = dbl + chunk, w.llast = dbl + 2 * chunk, w.step = dbl + 3 * chunk;
    w.y = tops + (size_t)chunk * T, w.t = w.y + chunk;
    jem_rng rng;
    jem_rng_seed(&rng, cfg->seed, 0x61706764);
    uint64_t gseed = cfg->seed * 0x9e3779b97f4a7c15ULL;
    const int nchunks = (n + chunk - 1) / chunk;
    const int64_t total = cfg->eps > 0 ? (int64_t)nchunks * T * cfg->restarts * cfg->steps : nchunks;
    int64_t ticks = 0;
    for (int i0 = 0; i0 < n && !s; i0 += chunk) {
        const int B = n - i0 < chunk ? n - i0 : chunk;
        s = jem_atk_correct(c, x + (size_t)i0 * D, y + i0, B, w.lg, ok);
        if (s) break;
        for (int b = 0; b < B; b++) robust[i0 + b] = ok[b];
        if (adv) memcpy(adv + (size_t)i0 * D, x + (size_t)i0 * D, sizeof(float) * (size_t)B * D);
        if (cfg->eps == 0) {
            if (cfg->progress) cfg->progress(cfg->progress_ud, ++ticks, total);
            continue;
        }
        /* the targets: the classes with the highest clean logits but the label */
        for (int b = 0; b < B; b++) {
            const float *z = w.lg + (size_t)b * K;
            int32_t *tb = tops + (size_t)b * T;
            for (int q = 0; q < T; q++) {
                int best = -1;
                for (int kk = 0; kk < K; kk++) {
                    int used = kk == y[i0 + b];
                    for (int r = 0; r < q; r++) used |= tb[r] == kk;
                    if (!used && (best < 0 || z[kk] > z[best])) best = kk;
                }
                tb[q] = best;
            }
        }
        for (int q = 0; q < T && !s; q++)
            for (int r = 0; r < cfg->restarts && !s; r++) {
                /* the images still robust, gathered */
                int M = 0;
                for (int b = 0; b < B; b++) {
                    if (!robust[i0 + b]) continue;
                    w.idx[M] = i0 + b;
                    w.y[M] = y[i0 + b];
                    w.t[M] = tops[(size_t)b * T + q];
                    memcpy(w.x0 + (size_t)M * D, x + (size_t)(i0 + b) * D, sizeof(float) * D);
                    M++;
                }
                if (!M) {
                    ticks += cfg->steps;
                    continue;
                }
                s = run_once(c, cfg, &w, M, &rng, &gseed, robust, adv, &ticks, total);
            }
    }
    if (!s && cfg->progress) cfg->progress(cfg->progress_ud, total, total);
done:
    free(blk);
    free(dbl);
    free(tops);
    free(w.idx);
    free(w.red);
    free(ok);
    return s;
}

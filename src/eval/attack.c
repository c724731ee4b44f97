/*
 * Adversarial attacks: FGSM and PGD under L-inf and L2 with random starts
 * and restarts, on any differentiable classifier (jem_classifier), plus the
 * network itself and the SGLD-purification defence as classifiers. The
 * defence is stochastic, so its gradient is an expectation over
 * transformation (EOT: averaged over draws of the chains' noise) taken
 * through the purifier with BPDA (the purifier treated as the identity in
 * the backward pass).
 */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ---- the network as a classifier ---- */

static jem_status net_logits(void *ctx, const float *x, int B, float *logits)
{
    return jem_net_predict(ctx, x, B, logits);
}

static jem_status net_grad(void *ctx, const float *x, int B, const float *dlogits, float *dx, uint64_t seed)
{
    (void)seed;
    jem_net *net = ctx;
    const int K = jem_net_arch(net)->n_classes;
    float *lg = malloc(sizeof(float) * (size_t)B * K);
    if (!lg) return jem_fail(JEM_ERR_NOMEM, "attack: out of memory");
    jem_status s = jem_net_forward(net, x, B, lg);
    if (!s) s = jem_net_backward(net, dlogits, dx, 0);
    free(lg);
    return s;
}

static jem_status net_forward(void *ctx, const float *x, int B, float *logits)
{
    return jem_net_forward(ctx, x, B, logits);
}

static jem_status net_backward(void *ctx, const float *dlogits, float *dx)
{
    return jem_net_backward(ctx, dlogits, dx, 0);
}

void jem_classifier_net(jem_classifier *c, jem_net *net)
{
    const jem_arch *a = jem_net_arch(net);
    memset(c, 0, sizeof *c);
    c->logits = net_logits;
    c->grad = net_grad;
    c->forward = net_forward;
    c->backward = net_backward;
    c->ctx = net;
    c->D = a->in_c * a->in_h * a->in_w;
    c->K = a->n_classes;
}

/* ---- SGLD purification ---- */

/* n_chains copies of each image, refined by K unconditional SGLD steps */
static jem_status purify(const jem_purifier *p, const float *x, int B, float *xs, uint64_t seed)
{
    const int D = p->c.D, nc = p->chains;
    for (int b = 0; b < B; b++)
        for (int k = 0; k < nc; k++) memcpy(xs + ((size_t)b * nc + k) * D, x + (size_t)b * D, sizeof(float) * D);
    return jem_sgld_run(jem_net_energy, p->net, xs, B * nc, D, NULL, NULL, &p->sgld, seed, 0, NULL);
}

static jem_status pur_logits_seeded(jem_purifier *p, const float *x, int B, float *logits, uint64_t seed)
{
    const int D = p->c.D, K = p->c.K, nc = p->chains;
    float *xs = malloc(sizeof(float) * (size_t)B * nc * D), *lg = malloc(sizeof(float) * (size_t)B * nc * K);
    jem_status s = xs && lg ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "purification: out of memory");
    if (!s) s = purify(p, x, B, xs, seed);
    if (!s) s = jem_net_predict(p->net, xs, B * nc, lg);
    if (!s)
        for (int b = 0; b < B; b++)
            for (int c = 0; c < K; c++) {
                double acc = 0;
                for (int k = 0; k < nc; k++) acc += lg[((size_t)b * nc + k) * K + c];
                logits[(size_t)b * K + c] = (float)(acc / nc);
            }
    free(xs);
    free(lg);
    return s;
}

static jem_status pur_logits(void *ctx, const float *x, int B, float *logits)
{
    jem_purifier *p = ctx;
    return pur_logits_seeded(p, x, B, logits, p->seed ^ (++p->calls * 0x9e3779b97f4a7c15ULL));
}

/* BPDA + EOT: the gradient of the averaged logits' loss, taken at the
 * purified points and passed straight through the purifier, averaged over
 * eot draws of the chains' noise */
static jem_status pur_grad(void *ctx, const float *x, int B, const float *dlogits, float *dx, uint64_t seed)
{
    jem_purifier *p = ctx;
    const int D = p->c.D, K = p->c.K, nc = p->chains, M = p->eot > 0 ? p->eot : 1;
    float *xs = malloc(sizeof(float) * (size_t)B * nc * D), *g = malloc(sizeof(float) * (size_t)B * nc * D);
    float *dl = malloc(sizeof(float) * (size_t)B * nc * K), *lg = malloc(sizeof(float) * (size_t)B * nc * K);
    jem_status s = xs && g && dl && lg ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "purification: out of memory");
    memset(dx, 0, sizeof(float) * (size_t)B * D);
    for (int m = 0; m < M && !s; m++) {
        s = purify(p, x, B, xs, seed * 1000003ULL + (uint64_t)m);
        for (int b = 0; b < B; b++)
            for (int k = 0; k < nc; k++)
                for (int c = 0; c < K; c++) dl[((size_t)b * nc + k) * K + c] = dlogits[(size_t)b * K + c] / nc;
        if (!s) s = jem_net_forward(p->net, xs, B * nc, lg);
        if (!s) s = jem_net_backward(p->net, dl, g, 0);
        if (!s)
            for (int b = 0; b < B; b++)
                for (int k = 0; k < nc; k++)
                    for (int d = 0; d < D; d++) dx[(size_t)b * D + d] += g[((size_t)b * nc + k) * D + d] / M;
    }
    free(xs);
    free(g);
    free(dl);
    free(lg);
    return s;
}

void jem_purifier_init(jem_purifier *p, jem_net *net, int steps, int chains, int eot, uint64_t seed)
{
    memset(p, 0, sizeof *p);
    jem_classifier_net(&p->c, net);
    p->c.logits = pur_logits;
    p->c.grad = pur_grad;
    p->c.forward = NULL; /* stochastic: each gradient draws its own noise */
    p->c.backward = NULL;
    p->c.ctx = p;
    p->c.stochastic = 1;
    p->net = net;
    jem_sgld_defaults(&p->sgld);
    p->sgld.steps = steps;
    p->sgld.clamp = 1;
    p->chains = chains > 0 ? chains : 1;
    p->eot = eot;
    p->seed = seed;
}

/* ---- attacks ---- */

void jem_atk_project(float *xa, const float *x0, int D, int norm, double eps)
{
    if (norm == 0) {
        for (int d = 0; d < D; d++) {
            float lo = (float)(x0[d] - eps), hi = (float)(x0[d] + eps);
            float v = xa[d] < lo ? lo : xa[d] > hi ? hi : xa[d];
            xa[d] = v < -1.0f ? -1.0f : v > 1.0f ? 1.0f : v;
        }
        return;
    }
    /* L2: clip to the box, then scale the perturbation into the ball (the
     * scaled point stays in the box: it is a convex combination of x0 and a
     * point inside it) */
    double n2 = 0;
    for (int d = 0; d < D; d++) {
        float v = xa[d] < -1.0f ? -1.0f : xa[d] > 1.0f ? 1.0f : xa[d];
        xa[d] = v;
        n2 += ((double)v - x0[d]) * ((double)v - x0[d]);
    }
    double n = sqrt(n2);
    if (n > eps) {
        double f = eps / n;
        for (int d = 0; d < D; d++) xa[d] = (float)(x0[d] + (xa[d] - x0[d]) * f);
    }
}

/* ok[b]: the logits lg (B, K) put image b in its class y[b] */
static void judge(const float *lg, const int32_t *y, int B, int K, uint8_t *ok)
{
    for (int b = 0; b < B; b++) {
        const float *l = lg + (size_t)b * K;
        int am = 0;
        for (int k = 1; k < K; k++)
            if (l[k] > l[am]) am = k;
        ok[b] = am == y[b];
    }
}

jem_status jem_atk_correct(const jem_classifier *c, const float *x, const int32_t *y, int B, float *lg, uint8_t *ok)
{
    jem_status s = c->logits(c->ctx, x, B, lg);
    if (!s) judge(lg, y, B, c->K, ok);
    return s;
}

/* the images of a chunk that ok says are misclassified at xa are broken:
 * robust and adv (nullable) from the chunk's first image */
static void mark_broken(const uint8_t *ok, const float *xa, int B, int D, uint8_t *robust, float *adv)
{
    for (int b = 0; b < B; b++)
        if (!ok[b] && robust[b]) {
            robust[b] = 0;
            if (adv) memcpy(adv + (size_t)b * D, xa + (size_t)b * D, sizeof(float) * D);
        }
}

/* every image needs a label the classifier can output: the losses index
 * the logits with it */
jem_status jem_atk_labels(const int32_t *y, int n, int K)
{
    for (int i = 0; i < n; i++)
        if (y[i] < 0 || y[i] >= K)
            return jem_fail(JEM_ERR_ARG,
                            "attack: image %d has label %d, outside the model's classes 0..%d "
                            "(attacks need labelled data)",
                            i, (int)y[i], K - 1);
    return JEM_OK;
}

/* a uniform point of the L-inf ball, or a uniformly scaled random direction
 * of the L2 ball (scratch (D)), then into the ball and the box */
static void start_in_ball(float *xb, const float *x0, int D, int norm, double eps, jem_rng *rng, float *scratch)
{
    if (norm == 0) {
        for (int d = 0; d < D; d++) xb[d] += (float)((2 * jem_rng_uniform_d(rng) - 1) * eps);
    } else {
        double nn = 0;
        for (int d = 0; d < D; d++) {
            scratch[d] = jem_rng_normal(rng);
            nn += (double)scratch[d] * scratch[d];
        }
        double rad = eps * jem_rng_uniform_d(rng) / (sqrt(nn) + 1e-12);
        for (int d = 0; d < D; d++) xb[d] += (float)(scratch[d] * rad);
    }
    jem_atk_project(xb, x0, D, norm, eps);
}

/* a step of size step from xb along gb (L-inf: its sign, L2: normalised),
 * then into the ball around x0 and the box */
static void ascend(float *xb, const float *gb, const float *x0, int D, int norm, double step, double eps)
{
    if (norm == 0) {
        for (int d = 0; d < D; d++) xb[d] += (float)(step * ((gb[d] > 0) - (gb[d] < 0)));
    } else {
        double nn = 0;
        for (int d = 0; d < D; d++) nn += (double)gb[d] * gb[d];
        double f = nn > 0 ? step / sqrt(nn) : 0;
        for (int d = 0; d < D; d++) xb[d] += (float)(gb[d] * f);
    }
    jem_atk_project(xb, x0, D, norm, eps);
}

jem_status jem_attack_run(const jem_classifier *c, const float *x, const int32_t *y, int n, const jem_attack_cfg *cfg,
                          uint8_t *robust, float *adv)
{
    const int D = c->D, K = c->K, chunk = 128;
    jem_status s0;
    if (cfg->norm != 0 && cfg->norm != 2) return jem_fail(JEM_ERR_ARG, "attack: norm must be 0 (L-inf) or 2 (L2)");
    if (!(cfg->eps >= 0) || cfg->steps < 0 || cfg->restarts < 1)
        return jem_fail(JEM_ERR_ARG, "attack: eps %g, steps %d, restarts %d", cfg->eps, cfg->steps, cfg->restarts);
    s0 = jem_atk_labels(y, n, K);
    if (s0) return s0;
    float *xa = malloc(sizeof(float) * (size_t)chunk * D), *g = malloc(sizeof(float) * (size_t)chunk * D);
    float *lg = malloc(sizeof(float) * (size_t)chunk * K), *dl = malloc(sizeof(float) * (size_t)chunk * K);
    uint8_t *ok = malloc(chunk);
    jem_status s = xa && g && lg && dl && ok ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "attack: out of memory");
    jem_rng rng;
    jem_rng_seed(&rng, cfg->seed, 0x61747461);
    const int steps = cfg->fgsm ? 1 : cfg->steps;
    const double step = cfg->fgsm ? cfg->eps : cfg->step;
    const int64_t per_chunk = cfg->eps == 0 ? 1 : (int64_t)cfg->restarts * (steps ? steps : 1);
    const int64_t work = (int64_t)((n + chunk - 1) / chunk) * per_chunk;
    for (int i0 = 0; i0 < n && !s; i0 += chunk) {
        if (cfg->progress) cfg->progress(cfg->progress_ud, (int64_t)(i0 / chunk) * per_chunk, work);
        const int B = n - i0 < chunk ? n - i0 : chunk;
        const float *x0 = x + (size_t)i0 * D;
        const int32_t *yb = y + i0;
        /* clean prediction first: an image already wrong is not robust */
        s = jem_atk_correct(c, x0, yb, B, lg, ok);
        if (s) break;
        for (int b = 0; b < B; b++) robust[i0 + b] = ok[b];
        if (adv) memcpy(adv + (size_t)i0 * D, x0, sizeof(float) * (size_t)B * D);
        if (cfg->eps == 0) continue;
        for (int r = 0; r < cfg->restarts && !s; r++) {
            memcpy(xa, x0, sizeof(float) * (size_t)B * D);
            if (!cfg->fgsm && cfg->random_start) {
                for (int b = 0; b < B; b++)
                    start_in_ball(xa + (size_t)b * D, x0 + (size_t)b * D, D, cfg->norm, cfg->eps, &rng, g);
            }
            /* a deterministic classifier with forward and backward: the
             * logits that judge an iterate also give the next step's loss
             * and gradient (one forward pass per step, not three) */
            const int fb = c->forward && c->backward && !c->stochastic;
            float *adv0 = adv ? adv + (size_t)i0 * D : NULL;
            for (int t = 0; t < steps && !s; t++) {
                if (cfg->progress && t)
                    cfg->progress(cfg->progress_ud, (int64_t)(i0 / chunk) * per_chunk + (int64_t)r * steps + t, work);
                /* ascend the cross-entropy: dCE/dlogits = softmax - onehot */
                s = fb ? c->forward(c->ctx, xa, B, lg) : c->logits(c->ctx, xa, B, lg);
                if (s) break;
                if (fb && t > 0) {
                    judge(lg, yb, B, K, ok);
                    mark_broken(ok, xa, B, D, robust + i0, adv0);
                }
                jem_softmax(lg, B, K, dl);
                for (int b = 0; b < B; b++) dl[(size_t)b * K + yb[b]] -= 1.0f;
                s = fb ? c->backward(c->ctx, dl, g)
                       : c->grad(c->ctx, xa, B, dl, g, cfg->seed + (uint64_t)(r * 100003 + t) * 7919u + (uint64_t)i0);
                if (s) break;
                for (int b = 0; b < B; b++)
                    ascend(xa + (size_t)b * D, g + (size_t)b * D, x0 + (size_t)b * D, D, cfg->norm, step, cfg->eps);
                /* an image counts as broken if any iterate is misclassified
                 * (a stochastic classifier: the last iterate of a restart;
                 * with fb, the next step's forward judges this iterate) */
                if ((c->stochastic || fb) && t + 1 < steps) continue;
                s = jem_atk_correct(c, xa, yb, B, lg, ok);
                if (s) break;
                mark_broken(ok, xa, B, D, robust + i0, adv0);
            }
        }
    }
    if (!s && cfg->progress) cfg->progress(cfg->progress_ud, work, work);
    free(xa);
    free(g);
    free(lg);
    free(dl);
    free(ok);
    return s;
}

/* ---- adversarial examples for training ---- */

jem_status jem_attack_batch(jem_net *net, const float *x, const int32_t *y, const float *target, int B,
                            const jem_attack_cfg *cfg, jem_rng *rng, float *xadv)
{
    const jem_arch *a = jem_net_arch(net);
    const int D = a->in_c * a->in_h * a->in_w, K = a->n_classes;
    if (cfg->norm != 0 && cfg->norm != 2) return jem_fail(JEM_ERR_ARG, "attack: norm must be 0 (L-inf) or 2 (L2)");
    if (!(cfg->eps >= 0) || !isfinite(cfg->eps) || cfg->steps < 0 || !(cfg->step >= 0))
        return jem_fail(JEM_ERR_ARG, "attack: eps %g, step %g, steps %d", cfg->eps, cfg->step, cfg->steps);
    for (int i = 0; !target && i < B; i++)
        if (y[i] >= K)
            return jem_fail(JEM_ERR_ARG, "attack: image %d has label %d, outside the model's classes 0..%d", i,
                            (int)y[i], K - 1);
    memcpy(xadv, x, sizeof(float) * (size_t)B * D);
    if (cfg->eps == 0 || B < 1) return JEM_OK;
    const int steps = cfg->fgsm ? 1 : cfg->steps;
    const double step = cfg->fgsm ? cfg->eps : cfg->step;
    float *g = malloc(sizeof(float) * (size_t)B * D);
    float *lg = malloc(sizeof(float) * (size_t)B * K), *dl = malloc(sizeof(float) * (size_t)B * K);
    jem_status s = g && lg && dl ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "attack: out of memory");
    if (!s && !cfg->fgsm && cfg->random_start)
        for (int b = 0; b < B; b++)
            start_in_ball(xadv + (size_t)b * D, x + (size_t)b * D, D, cfg->norm, cfg->eps, rng, g);
    for (int t = 0; t < steps && !s; t++) {
        s = jem_net_forward(net, xadv, B, lg);
        if (s) break;
        /* d/dlogits of CE(y) and of KL(target || softmax): softmax - onehot(y), softmax - target */
        jem_softmax(lg, B, K, dl);
        for (int b = 0; b < B; b++) {
            float *d = dl + (size_t)b * K;
            if (target) {
                for (int k = 0; k < K; k++) d[k] -= target[(size_t)b * K + k];
            } else if (y[b] >= 0) {
                d[y[b]] -= 1.0f;
            } else {
                memset(d, 0, sizeof(float) * K);
            }
        }
        s = jem_net_backward(net, dl, g, 0);
        if (s) break;
        for (int b = 0; b < B; b++)
            ascend(xadv + (size_t)b * D, g + (size_t)b * D, x + (size_t)b * D, D, cfg->norm, step, cfg->eps);
    }
    free(g);
    free(lg);
    free(dl);
    return s;
}

/* The network as an energy model, and SGLD / MALA samplers. */
#include "ebm/mcmc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

jem_status jem_net_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    jem_net *net = ctx;
    const int K = jem_net_arch(net)->n_classes;
    float *logits = malloc(sizeof(float) * (size_t)B * K * 2);
    if (!logits) return jem_fail(JEM_ERR_NOMEM, "out of memory in the energy");
    float *dl = logits + (size_t)B * K;
    jem_status s = jem_net_forward(net, x, B, logits);
    if (s) {
        free(logits);
        return s;
    }
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * K;
        float *d = dl + (size_t)b * K;
        if (y && y[b] >= 0) {
            logp[b] = l[y[b]];
            for (int k = 0; k < K; k++) d[k] = k == y[b] ? 1.0f : 0.0f;
        } else {
            jem_logsumexp(l, 1, K, &logp[b]);
            jem_softmax(l, 1, K, d);
        }
    }
    if (grad) s = jem_net_backward(net, dl, grad, 0);
    free(logits);
    return s;
}

void jem_mc_chain_rng(jem_rng *r, uint64_t seed, uint64_t counter, uint64_t salt, int b)
{
    jem_rng_seed(r, seed ^ (counter * 0x9e3779b97f4a7c15ULL) ^ salt, (uint64_t)b);
}

void jem_sgld_defaults(jem_sgld_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->steps = 20;
    c->step_size = 1.0f;
    c->noise = 0.01f;
    c->clamp = 0;
    c->lo = -1.0f;
    c->hi = 1.0f;
    c->temperature = 1.0f;
}

static inline float drift(const jem_sgld_cfg *c, float g)
{
    float d = c->step_size * g;
    if (c->max_step > 0) d = d > c->max_step ? c->max_step : d < -c->max_step ? -c->max_step : d;
    return d;
}

static double norm2(const float *g, int D)
{
    double s = 0;
    for (int i = 0; i < D; i++) s += (double)g[i] * g[i];
    return sqrt(s);
}

jem_status jem_sgld_run(jem_energy_fn f, void *ctx, float *x, int B, int D, const int32_t *y, const float *mask,
                        const jem_sgld_cfg *c, uint64_t seed, uint64_t counter, jem_sgld_stats *st)
{
    if (B < 1 || D < 1 || c->steps < 0)
        return jem_fail(JEM_ERR_ARG, "sampler: batch %d, dimension %d, steps %d", B, D, c->steps);
    if (!(c->step_size >= 0) || !(c->noise >= 0) || (c->mala && !(c->noise > 0 && c->temperature > 0)))
        return jem_fail(JEM_ERR_ARG, "sampler: step size %g, noise %g, temperature %g", (double)c->step_size,
                        (double)c->noise, (double)c->temperature);
    const size_t n = (size_t)B * D;
    float *g = malloc(sizeof(float) * n);
    float *lp = malloc(sizeof(float) * B * 2);
    jem_rng *rng = malloc(sizeof(jem_rng) * B);
    float *xp = c->mala ? malloc(sizeof(float) * n) : NULL;
    float *gp = c->mala ? malloc(sizeof(float) * n) : NULL;
    jem_status s = JEM_OK;
    if (!g || !lp || !rng || (c->mala && (!xp || !gp))) {
        s = jem_fail(JEM_ERR_NOMEM, "sampler: out of memory for %d chains of %d", B, D);
        goto done;
    }
    float *lpp = lp + B;
    for (int b = 0; b < B; b++) jem_mc_chain_rng(&rng[b], seed, counter, 0, b);
    double gsum = 0, lp0 = 0;
    long acc = 0, prop = 0;
    s = f(ctx, x, B, y, lp, g);
    if (s) goto done;
    for (int b = 0; b < B; b++) lp0 += lp[b];
    for (int k = 0; k < c->steps; k++) {
        if (c->progress) c->progress(c->progress_ud, k, c->steps);
        for (int b = 0; b < B; b++) gsum += norm2(g + (size_t)b * D, D);
        if (c->trace)
            for (int b = 0; b < B; b++) c->trace[(size_t)k * B + b] = lp[b];
        if (!c->mala) {
#pragma omp parallel for schedule(static)
            for (int b = 0; b < B; b++) {
                float *xb = x + (size_t)b * D;
                const float *gb = g + (size_t)b * D, *mb = mask ? mask + (size_t)b * D : NULL;
                for (int i = 0; i < D; i++) {
                    float z = jem_rng_normal(&rng[b]);
                    if (mb && mb[i] == 0.0f) continue;
                    float v = xb[i] + drift(c, gb[i]) + c->noise * z;
                    if (c->clamp) v = v < c->lo ? c->lo : v > c->hi ? c->hi : v;
                    xb[i] = v;
                }
            }
            if (k + 1 < c->steps || (st && c->final_logp)) {
                s = f(ctx, x, B, y, lp, k + 1 < c->steps ? g : NULL);
                if (s) goto done;
            }
            continue;
        }
        /* MALA: propose from N(x + d(x), sigma^2), accept with the
         * Metropolis-Hastings ratio of the tempered target */
        unsigned char *bad = malloc((size_t)B);
        if (!bad) {
            s = jem_fail(JEM_ERR_NOMEM, "sampler: out of memory");
            goto done;
        }
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            const float *xb = x + (size_t)b * D, *gb = g + (size_t)b * D, *mb = mask ? mask + (size_t)b * D : NULL;
            float *pb = xp + (size_t)b * D;
            bad[b] = 0;
            for (int i = 0; i < D; i++) {
                float z = jem_rng_normal(&rng[b]);
                if (mb && mb[i] == 0.0f) {
                    pb[i] = xb[i];
                    continue;
                }
                pb[i] = xb[i] + drift(c, gb[i]) + c->noise * z;
                if (c->clamp && (pb[i] < c->lo || pb[i] > c->hi)) bad[b] = 1;
            }
        }
        s = f(ctx, xp, B, y, lpp, gp);
        if (s) {
            free(bad);
            goto done;
        }
        const double inv2s2 = 1.0 / (2.0 * (double)c->noise * c->noise);
        for (int b = 0; b < B; b++) {
            float *xb = x + (size_t)b * D, *pb = xp + (size_t)b * D;
            const float *gb = g + (size_t)b * D, *gpb = gp + (size_t)b * D;
            const float *mb = mask ? mask + (size_t)b * D : NULL;
            double fwd = 0, rev = 0;
            for (int i = 0; i < D; i++) {
                if (mb && mb[i] == 0.0f) continue;
                double a = (double)pb[i] - xb[i] - drift(c, gb[i]);
                double r = (double)xb[i] - pb[i] - drift(c, gpb[i]);
                fwd += a * a;
                rev += r * r;
            }
            double loga = ((double)lpp[b] - lp[b]) / c->temperature - rev * inv2s2 + fwd * inv2s2;
            double u = jem_rng_uniform_d(&rng[b]);
            prop++;
            if (!bad[b] && isfinite(loga) && log(u > 0 ? u : 1e-300) < loga) {
                acc++;
                memcpy(xb, pb, sizeof(float) * D);
                memcpy(g + (size_t)b * D, gpb, sizeof(float) * D);
                lp[b] = lpp[b];
            }
        }
        free(bad);
    }
    if (c->progress) c->progress(c->progress_ud, c->steps, c->steps);
    if (st) {
        double lp1 = 0;
        for (int b = 0; b < B; b++) lp1 += lp[b];
        st->grad_norm = c->steps ? gsum / ((double)c->steps * B) : 0;
        st->accept = c->mala ? (prop ? (double)acc / prop : 0) : 1.0;
        st->logp_start = lp0 / B;
        st->logp_end = lp1 / B;
    }
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            s = jem_fail(JEM_ERR_NONFINITE, "sampler: chain %zu became non-finite", i / (size_t)D);
            break;
        }
done:
    free(g);
    free(lp);
    free(rng);
    free(xp);
    free(gp);
    return s;
}

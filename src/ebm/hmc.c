/* Hamiltonian Monte Carlo: leapfrog transitions with a Metropolis
 * correction (mass 1), walls that reflect, and a step size adapted by dual
 * averaging during warm-up. */
#include "ebm/mcmc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------ the chains */

jem_status jem_mc_alloc(jem_mc_chains *c, float *x, int B, int D, int A)
{
    memset(c, 0, sizeof *c);
    c->B = B;
    c->D = D;
    c->A = A;
    c->x = x;
    const size_t n = (size_t)B * D;
    c->g = malloc(sizeof(float) * n);
    c->x1 = malloc(sizeof(float) * n);
    c->g1 = malloc(sizeof(float) * n);
    c->p = malloc(sizeof(float) * n);
    c->lp = malloc(sizeof(double) * (size_t)B * (2 + 2 * (size_t)A));
    if (!c->g || !c->x1 || !c->g1 || !c->p || !c->lp) {
        jem_mc_free(c);
        return jem_fail(JEM_ERR_NOMEM, "sampler: out of memory for %d chains of %d values", B, D);
    }
    c->lp1 = c->lp + B;
    c->aux = c->lp1 + B;
    c->aux1 = c->aux + (size_t)B * A;
    return JEM_OK;
}

void jem_mc_free(jem_mc_chains *c)
{
    if (!c) return;
    free(c->g);
    free(c->x1);
    free(c->g1);
    free(c->p);
    free(c->lp);
    memset(c, 0, sizeof *c);
}

jem_status jem_mc_eval(jem_mc_chains *c, jem_mc_target f, void *ctx)
{
    jem_status s = f(ctx, c->x, c->B, c->lp, c->g, c->aux);
    if (s) return s;
    for (int b = 0; b < c->B; b++)
        if (!isfinite(c->lp[b]))
            return jem_fail(JEM_ERR_NONFINITE, "sampler: the log density of chain %d is %g at its start", b, c->lp[b]);
    return JEM_OK;
}

/* x += e * p inside [lo, hi]: a position that leaves the box is mirrored at
 * the wall it crossed and the momentum turned around (repeatedly, for a
 * step longer than the box) */
static inline void reflect(float *x, float *p, float lo, float hi)
{
    float v = *x;
    for (int k = 0; k < 64 && (v < lo || v > hi); k++) {
        v = v > hi ? 2 * hi - v : 2 * lo - v;
        *p = -*p;
    }
    if (v < lo || v > hi) v = v < lo ? lo : hi; /* a step of 64 box widths: give up, stay inside */
    *x = v;
}

jem_status jem_mc_hmc_step(jem_mc_chains *c, jem_mc_target f, void *ctx, const jem_mc_hmc *o, const double *eps,
                           jem_rng *rng, double *alpha, double *dh, unsigned char *acc)
{
    const int B = c->B, D = c->D, A = c->A, L = o->L;
    const double it = o->inv_temp;
    double *k0 = malloc(sizeof(double) * B);
    if (!k0) return jem_fail(JEM_ERR_NOMEM, "sampler: out of memory");
        /* fresh momentum, the kinetic energy, and the first half step */
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        float *p = c->p + (size_t)b * D, *x1 = c->x1 + (size_t)b * D;
        const float *g = c->g + (size_t)b * D, *m = o->mask ? o->mask + (size_t)b * D : NULL;
        const float h = (float)(0.5 * eps[b] * it);
        double k = 0;
        for (int i = 0; i < D; i++) {
            float z = jem_rng_normal(&rng[b]);
            if (m && m[i] == 0.0f) {
                p[i] = 0;
                continue;
            }
            k += (double)z * z;
            p[i] = z + h * g[i];
        }
        k0[b] = 0.5 * k;
        memcpy(x1, c->x + (size_t)b * D, sizeof(float) * D);
    }
    jem_status s = JEM_OK;
    for (int l = 0; l < L; l++) {
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            float *p = c->p + (size_t)b * D, *x1 = c->x1 + (size_t)b * D;
            const float e = (float)eps[b];
            if (o->bounded)
                for (int i = 0; i < D; i++) {
                    x1[i] += e * p[i];
                    if (x1[i] < o->lo || x1[i] > o->hi) reflect(&x1[i], &p[i], o->lo, o->hi);
                }
            else
                for (int i = 0; i < D; i++) x1[i] += e * p[i];
        }
        s = f(ctx, c->x1, B, c->lp1, c->g1, c->aux1);
        if (s) goto out;
            /* a full momentum step between position steps, half at the end */
#pragma omp parallel for schedule(static)
        for (int b = 0; b < B; b++) {
            float *p = c->p + (size_t)b * D;
            const float *g1 = c->g1 + (size_t)b * D, *m = o->mask ? o->mask + (size_t)b * D : NULL;
            const float h = (float)((l + 1 < L ? 1.0 : 0.5) * eps[b] * it);
            for (int i = 0; i < D; i++)
                if (!m || m[i] != 0.0f) p[i] += h * g1[i];
        }
    }
    for (int b = 0; b < B; b++) {
        const float *p = c->p + (size_t)b * D;
        double k1 = 0;
        for (int i = 0; i < D; i++) k1 += (double)p[i] * p[i];
        double d = (-c->lp1[b] * it + 0.5 * k1) - (-c->lp[b] * it + k0[b]);
        double a = isfinite(d) ? (d <= 0 ? 1.0 : exp(-d)) : 0.0;
        double u = jem_rng_uniform_d(&rng[b]);
        int take = u < a;
        if (alpha) alpha[b] = a;
        if (dh) dh[b] = isfinite(d) ? d : NAN;
        if (acc) acc[b] = (unsigned char)take;
        if (take) {
            memcpy(c->x + (size_t)b * D, c->x1 + (size_t)b * D, sizeof(float) * D);
            memcpy(c->g + (size_t)b * D, c->g1 + (size_t)b * D, sizeof(float) * D);
            c->lp[b] = c->lp1[b];
            if (A) memcpy(c->aux + (size_t)b * A, c->aux1 + (size_t)b * A, sizeof(double) * A);
        }
    }
out:
    free(k0);
    return s;
}

/* ------------------------------------------------------- dual averaging */

/* Hoffman & Gelman's constants: shrinkage towards mu, early iterations
 * damped by t0, the averaging weight m^-kappa */
#define DA_GAMMA 0.05
#define DA_T0    10.0
#define DA_KAPPA 0.75

void jem_mc_dual_init(jem_mc_dual *d, double eps0)
{
    memset(d, 0, sizeof *d);
    d->mu = log(10.0 * eps0);
    d->log_eps = log(eps0);
    d->log_eps_bar = 0;
}

double jem_mc_dual_update(jem_mc_dual *d, double alpha, double target)
{
    d->m++;
    const double m = d->m, w = 1.0 / (m + DA_T0);
    if (!isfinite(alpha)) alpha = 0;
    d->hbar = (1 - w) * d->hbar + w * (target - alpha);
    double le = d->mu - sqrt(m) / DA_GAMMA * d->hbar;
    /* keep the step inside floats' reach whatever the acceptance does */
    le = le < -30 ? -30 : le > 10 ? 10 : le;
    d->log_eps = le;
    const double mk = pow(m, -DA_KAPPA);
    d->log_eps_bar = mk * le + (1 - mk) * d->log_eps_bar;
    return exp(le);
}

double jem_mc_dual_final(const jem_mc_dual *d) { return exp(d->m ? d->log_eps_bar : d->log_eps); }

/* -------------------------------------------------------- public sampler */

void jem_hmc_defaults(jem_hmc_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->steps = 100;
    c->warmup = 100;
    c->leapfrog = 10;
    c->step_size = 0.01f;
    c->target_accept = 0.65f;
    c->temperature = 1.0f;
    c->bounded = 0;
    c->lo = -1.0f;
    c->hi = 1.0f;
}

typedef struct {
    jem_energy_fn f;
    void *ctx;
    const int32_t *y;
    float *lpf; /* (B) */
    int D;
} energy_target;

static jem_status energy_eval(void *ctx, const float *x, int B, double *logp, float *grad, double *aux)
{
    (void)aux;
    energy_target *t = ctx;
    jem_status s = t->f(t->ctx, x, B, t->y, t->lpf, grad);
    if (s) return s;
    for (int b = 0; b < B; b++) logp[b] = t->lpf[b];
    return JEM_OK;
}

jem_status jem_hmc_run(jem_energy_fn f, void *ctx, float *x, int B, int D, const int32_t *y, const float *mask,
                       const jem_hmc_cfg *c, uint64_t seed, uint64_t counter, float *eps_io, double *trace,
                       jem_hmc_stats *st)
{
    if (B < 1 || D < 1 || c->steps < 0 || c->warmup < 0 || c->leapfrog < 1 || c->leapfrog > 100000)
        return jem_fail(JEM_ERR_ARG, "HMC: %d chains, dimension %d, %d steps, %d warm-up, %d leapfrog steps", B, D,
                        c->steps, c->warmup, c->leapfrog);
    if (!(c->step_size > 0) || !isfinite(c->step_size) || !(c->target_accept > 0 && c->target_accept < 1) ||
        !(c->temperature > 0) || !isfinite(c->temperature) || (c->bounded && !(c->lo < c->hi)))
        return jem_fail(JEM_ERR_ARG, "HMC: step size %g, target acceptance %g, temperature %g, box [%g, %g]",
                        (double)c->step_size, (double)c->target_accept, (double)c->temperature, (double)c->lo,
                        (double)c->hi);
    if (eps_io && !isfinite(*eps_io)) return jem_fail(JEM_ERR_ARG, "HMC: step size %g", (double)*eps_io);
    const size_t n = (size_t)B * D;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) return jem_fail(JEM_ERR_NONFINITE, "HMC: chain %zu starts at a non-finite value", i / D);
    if (c->bounded)
        for (size_t i = 0; i < n; i++) x[i] = x[i] < c->lo ? c->lo : x[i] > c->hi ? c->hi : x[i];

    jem_mc_chains ch;
    energy_target tg = {f, ctx, y, NULL, D};
    jem_rng *rng = malloc(sizeof(jem_rng) * B);
    double *eps = malloc(sizeof(double) * B * 3);
    tg.lpf = malloc(sizeof(float) * B);
    unsigned char *acc = malloc((size_t)B);
    jem_status s = jem_mc_alloc(&ch, x, B, D, 0);
    if (!s && (!rng || !eps || !tg.lpf || !acc)) s = jem_fail(JEM_ERR_NOMEM, "HMC: out of memory for %d chains", B);
    if (s) goto done;
    double *alpha = eps + B, *dh = alpha + B;
    double e = eps_io && *eps_io > 0 ? *eps_io : c->step_size;
    jem_mc_dual da;
    jem_mc_dual_init(&da, e);
    for (int b = 0; b < B; b++) {
        jem_mc_chain_rng(&rng[b], seed, counter, 0x686d63ULL, b);
        eps[b] = e;
    }
    s = jem_mc_eval(&ch, energy_eval, &tg);
    if (s) goto done;
    double lp0 = 0;
    for (int b = 0; b < B; b++) lp0 += ch.lp[b];
    jem_mc_hmc o = {c->leapfrog, 1.0 / c->temperature, c->bounded, c->lo, c->hi, mask};
    double sa = 0, swa = 0, sdh = 0, sadh = 0, mdh = 0;
    long nacc = 0, nprop = 0, ndiv = 0;
    const int total = c->warmup + c->steps;
    for (int it = 0; it < total; it++) {
        s = jem_mc_hmc_step(&ch, energy_eval, &tg, &o, eps, rng, alpha, dh, acc);
        if (s) goto done;
        if (it < c->warmup) {
            /* one step size for all chains, adapted on their mean acceptance */
            double am = 0;
            for (int b = 0; b < B; b++) am += alpha[b];
            am /= B;
            swa += am;
            e = jem_mc_dual_update(&da, am, c->target_accept);
            if (it + 1 == c->warmup) e = jem_mc_dual_final(&da);
            for (int b = 0; b < B; b++) eps[b] = e;
        } else {
            for (int b = 0; b < B; b++) {
                sa += alpha[b];
                nacc += acc[b];
                nprop++;
                if (!isfinite(dh[b]) || dh[b] > 1000) {
                    ndiv++;
                    continue;
                }
                sdh += dh[b];
                sadh += fabs(dh[b]);
                mdh = fabs(dh[b]) > mdh ? fabs(dh[b]) : mdh;
            }
        }
        if (trace)
            for (int b = 0; b < B; b++) trace[(size_t)it * B + b] = ch.lp[b];
        if (c->progress) c->progress(c->progress_ud, it + 1, total);
    }
    if (st) {
        memset(st, 0, sizeof *st);
        long fin = nprop - ndiv;
        double lp1 = 0;
        for (int b = 0; b < B; b++) lp1 += ch.lp[b];
        st->accept = nprop ? sa / nprop : 0;
        st->accept_rate = nprop ? (double)nacc / nprop : 0;
        st->dh_mean = fin ? sdh / fin : 0;
        st->dh_abs = fin ? sadh / fin : 0;
        st->dh_max = mdh;
        st->divergent = ndiv;
        st->step_size = e;
        st->warmup_accept = c->warmup ? swa / c->warmup : 0;
        st->logp_start = lp0 / B;
        st->logp_end = lp1 / B;
        st->grad_evals = 1 + (long)total * c->leapfrog;
    }
    if (eps_io) *eps_io = (float)e;
    for (size_t i = 0; i < n; i++)
        if (!isfinite(x[i])) {
            s = jem_fail(JEM_ERR_NONFINITE, "HMC: chain %zu became non-finite", i / (size_t)D);
            break;
        }
done:
    jem_mc_free(&ch);
    free(rng);
    free(eps);
    free(tg.lpf);
    free(acc);
    return s;
}

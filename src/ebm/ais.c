/* Annealed importance sampling (Neal 2001) of an energy model's normalising
 * constant, from a uniform or Gaussian-mixture base, with HMC (or MALA)
 * transitions along the geometric path. */
#include "ebm/ebm.h"
#include "ebm/mcmc.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------ base */

/* log(Phi(b) - Phi(a)) for a < b, computed in the tail where it is small */
static double log_phi_diff(double a, double b)
{
    const double r = 1.0 / sqrt(2.0);
    double d;
    if (a > 0) d = 0.5 * (erfc(a * r) - erfc(b * r));
    else if (b < 0) d = 0.5 * (erfc(-b * r) - erfc(-a * r));
    else d = 1.0 - 0.5 * erfc(-a * r) - 0.5 * erfc(b * r);
    return log(d > 1e-300 ? d : 1e-300);
}

typedef struct {
    const jem_base *q;
    int bounded;
    double *lnorm; /* (K) Gaussian: log normaliser of each component */
} base_ctx;

static jem_status base_check(const jem_base *q)
{
    if (!q || q->D < 1) return jem_fail(JEM_ERR_ARG, "AIS base: dimension %d", q ? q->D : 0);
    if (q->kind == JEM_BASE_UNIFORM || q->bounded)
        if (!(q->lo < q->hi) || !isfinite(q->lo) || !isfinite(q->hi))
            return jem_fail(JEM_ERR_ARG, "AIS base: box [%g, %g]", (double)q->lo, (double)q->hi);
    if (q->kind == JEM_BASE_UNIFORM) return JEM_OK;
    if (q->kind != JEM_BASE_GAUSS) return jem_fail(JEM_ERR_ARG, "AIS base: unknown kind %d", (int)q->kind);
    if (q->K < 1 || !q->mu || !q->sd || !(q->sd_min > 0) || !isfinite(q->sd_min))
        return jem_fail(JEM_ERR_ARG, "AIS base: %d components, sd floor %g", q->K, (double)q->sd_min);
    for (size_t i = 0; i < (size_t)q->K * q->D; i++)
        if (!isfinite(q->mu[i]) || !isfinite(q->sd[i]) || q->sd[i] < 0)
            return jem_fail(JEM_ERR_NONFINITE, "AIS base: component %zu, value %zu: mean %g, sd %g", i / q->D, i % q->D,
                            (double)q->mu[i], (double)q->sd[i]);
    return JEM_OK;
}

static inline double sd_of(const jem_base *q, size_t i) { return q->sd[i] > q->sd_min ? q->sd[i] : q->sd_min; }

static jem_status base_open(const jem_base *q, base_ctx *bc)
{
    memset(bc, 0, sizeof *bc);
    jem_status s = base_check(q);
    if (s) return s;
    bc->q = q;
    bc->bounded = q->kind == JEM_BASE_UNIFORM || q->bounded;
    if (q->kind != JEM_BASE_GAUSS) return JEM_OK;
    bc->lnorm = malloc(sizeof(double) * q->K);
    if (!bc->lnorm) return jem_fail(JEM_ERR_NOMEM, "AIS base: out of memory");
    for (int k = 0; k < q->K; k++) {
        double l = 0;
        for (int d = 0; d < q->D; d++) {
            size_t i = (size_t)k * q->D + d;
            double sd = sd_of(q, i);
            l -= log(sd) + 0.5 * log(2 * M_PI);
            if (q->bounded) l -= log_phi_diff((q->lo - q->mu[i]) / sd, (q->hi - q->mu[i]) / sd);
        }
        bc->lnorm[k] = l;
    }
    return JEM_OK;
}

static void base_close(base_ctx *bc)
{
    free(bc->lnorm);
    memset(bc, 0, sizeof *bc);
}

/* log q and its gradient for each of B points; lc (K) scratch per call */
static void base_eval(const base_ctx *bc, const float *x, int B, double *logq, float *grad)
{
    const jem_base *q = bc->q;
    const int D = q->D, K = q->K;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        const float *xb = x + (size_t)b * D;
        float *gb = grad ? grad + (size_t)b * D : NULL;
        int out = 0;
        if (bc->bounded)
            for (int d = 0; d < D; d++) out |= !(xb[d] >= q->lo && xb[d] <= q->hi);
        if (q->kind == JEM_BASE_UNIFORM) {
            logq[b] = out ? -INFINITY : -D * log((double)q->hi - q->lo);
            if (gb) memset(gb, 0, sizeof(float) * D);
            continue;
        }
        double lc[64], *lcp = K <= 64 ? lc : malloc(sizeof(double) * K);
        if (!lcp) {
            logq[b] = NAN;
            continue;
        }
        double mx = -INFINITY;
        for (int k = 0; k < K; k++) {
            const float *mu = q->mu + (size_t)k * D;
            double e = 0;
            for (int d = 0; d < D; d++) {
                double z = (xb[d] - mu[d]) / sd_of(q, (size_t)k * D + d);
                e += z * z;
            }
            lcp[k] = bc->lnorm[k] - 0.5 * e;
            mx = lcp[k] > mx ? lcp[k] : mx;
        }
        double s = 0;
        for (int k = 0; k < K; k++) s += exp(lcp[k] - mx);
        double lse = mx + log(s);
        logq[b] = out ? -INFINITY : lse - log((double)K);
        if (gb) {
            for (int d = 0; d < D; d++) gb[d] = 0;
            for (int k = 0; k < K; k++) {
                double r = exp(lcp[k] - lse);
                if (r < 1e-300) continue;
                const float *mu = q->mu + (size_t)k * D;
                for (int d = 0; d < D; d++) {
                    double sd = sd_of(q, (size_t)k * D + d);
                    gb[d] += (float)(-r * (xb[d] - mu[d]) / (sd * sd));
                }
            }
        }
        if (lcp != lc) free(lcp);
    }
}

jem_status jem_base_from_buffer(jem_base *q, const jem_buffer *b, float sd_min)
{
    memset(q, 0, sizeof *q);
    if (!b || !b->prior || !b->prior->mu || !b->prior->sd)
        return jem_fail(JEM_ERR_ARG, "AIS base: the replay buffer has no fitted per-class Gaussians");
    q->kind = JEM_BASE_GAUSS;
    q->D = b->c * b->h * b->w;
    q->K = b->n_classes;
    q->mu = b->prior->mu;
    q->sd = b->prior->sd;
    q->sd_min = sd_min;
    q->bounded = 1;
    q->lo = -1;
    q->hi = 1;
    return base_check(q);
}

jem_status jem_base_logpdf(const jem_base *q, const float *x, int B, double *logq, float *grad)
{
    if (B < 0) return jem_fail(JEM_ERR_ARG, "AIS base: batch %d", B);
    base_ctx bc;
    jem_status s = base_open(q, &bc);
    if (s) return s;
    base_eval(&bc, x, B, logq, grad);
    base_close(&bc);
    return JEM_OK;
}

/* one coordinate from N(mu, sd^2) truncated to [lo, hi] */
static float trunc_normal(double mu, double sd, double lo, double hi, jem_rng *rng)
{
    for (int k = 0; k < 32; k++) {
        double v = mu + sd * jem_rng_normal_d(rng);
        if (v >= lo && v <= hi) return (float)v;
    }
    /* little mass in the box: invert the CDF, in the lower tail */
    double a = (lo - mu) / sd, b = (hi - mu) / sd, sign = 1;
    if (a > 0) {
        double t = a;
        a = -b;
        b = -t;
        sign = -1;
    }
    double pa = 0.5 * erfc(-a / sqrt(2.0)), pb = 0.5 * erfc(-b / sqrt(2.0));
    double z = jem_norm_ppf(pa + jem_rng_uniform_d(rng) * (pb - pa));
    if (!isfinite(z)) z = a;
    z = z < a ? a : z > b ? b : z;
    double v = mu + sign * sd * z;
    return (float)(v < lo ? lo : v > hi ? hi : v);
}

void jem_base_sample(const jem_base *q, float *x, jem_rng *rng)
{
    const int D = q->D;
    if (q->kind == JEM_BASE_UNIFORM) {
        for (int d = 0; d < D; d++) x[d] = (float)(q->lo + ((double)q->hi - q->lo) * jem_rng_uniform_d(rng));
        return;
    }
    int k = q->K > 1 ? (int)jem_rng_below(rng, (uint32_t)q->K) : 0;
    for (int d = 0; d < D; d++) {
        size_t i = (size_t)k * D + d;
        double sd = sd_of(q, i);
        x[d] =
            q->bounded ? trunc_normal(q->mu[i], sd, q->lo, q->hi, rng) : (float)(q->mu[i] + sd * jem_rng_normal_d(rng));
    }
}

/* ------------------------------------------------------------- schedule */

void jem_ais_defaults(jem_ais_cfg *c)
{
    memset(c, 0, sizeof *c);
    c->chains = 32;
    c->T = 1000;
    c->schedule = JEM_AIS_SIGMOID;
    c->delta = 4;
    c->leapfrog = 5;
    c->steps_per = 1;
    c->step_size = 0.01f;
    c->target_accept = 0.65f;
    c->pilot_chains = 8;
    c->seed = 1;
}

static jem_status ais_check(const jem_ais_cfg *c)
{
    if (c->chains < 1 || c->T < 1 || c->T > 100000000 || c->leapfrog < 1 || c->leapfrog > 100000 || c->steps_per < 1 ||
        c->steps_per > 100000 || c->pilot_chains < 0 || c->batch < 0)
        return jem_fail(JEM_ERR_ARG,
                        "AIS: %d chains, %d distributions, %d leapfrog steps, %d transitions per "
                        "distribution, %d pilot chains, batch %d",
                        c->chains, c->T, c->leapfrog, c->steps_per, c->pilot_chains, c->batch);
    if (c->schedule != JEM_AIS_SIGMOID && c->schedule != JEM_AIS_LINEAR)
        return jem_fail(JEM_ERR_ARG, "AIS: unknown schedule %d", (int)c->schedule);
    if (c->schedule == JEM_AIS_SIGMOID && !(c->delta > 0 && c->delta <= 50))
        return jem_fail(JEM_ERR_ARG, "AIS: sigmoid steepness %g (want (0, 50])", c->delta);
    if (!(c->step_size > 0) || !isfinite(c->step_size) || !(c->target_accept > 0 && c->target_accept < 1))
        return jem_fail(JEM_ERR_ARG, "AIS: step size %g, target acceptance %g", (double)c->step_size,
                        (double)c->target_accept);
    return JEM_OK;
}

jem_status jem_ais_betas(const jem_ais_cfg *c, double *beta)
{
    jem_status s = ais_check(c);
    if (s) return s;
    const int T = c->T;
    if (c->schedule == JEM_AIS_LINEAR) {
        for (int t = 0; t <= T; t++) beta[t] = (double)t / T;
    } else {
        const double s0 = 1.0 / (1.0 + exp(c->delta)), s1 = 1.0 / (1.0 + exp(-c->delta));
        for (int t = 0; t <= T; t++) {
            double st = 1.0 / (1.0 + exp(-c->delta * (2.0 * t / T - 1.0)));
            beta[t] = (st - s0) / (s1 - s0);
        }
    }
    beta[0] = 0;
    beta[T] = 1;
    for (int t = 1; t <= T; t++)
        if (beta[t] < beta[t - 1]) beta[t] = beta[t - 1];
    return JEM_OK;
}

double jem_bits_per_dim(double logp, int D, int bits, double lo, double hi)
{
    if (D < 1) return NAN;
    double off = bits > 0 ? D * log((hi - lo) / ldexp(1.0, bits)) : 0;
    return -(logp + off) / (D * log(2.0));
}

/* ------------------------------------------------------------------ path */

/* aux per chain: log p~(x), log q(x), then grad log p~(x) (D values) */
#define AUX_F 0
#define AUX_Q 1
#define AUX_G 2

typedef struct {
    jem_energy_fn f;
    void *ctx;
    const base_ctx *bc;
    double beta;
    int D;
    float *lpf; /* (B) */
    float *gf;  /* (B, D) */
    float *gq;  /* (B, D) */
    double *lq; /* (B) */
} path_target;

static jem_status path_eval(void *ctx, const float *x, int B, double *logp, float *grad, double *aux)
{
    path_target *p = ctx;
    const int D = p->D, A = AUX_G + D;
    jem_status s = p->f(p->ctx, x, B, NULL, p->lpf, p->gf);
    if (s) return s;
    base_eval(p->bc, x, B, p->lq, p->gq);
    const double be = p->beta;
#pragma omp parallel for schedule(static)
    for (int b = 0; b < B; b++) {
        double *a = aux + (size_t)b * A;
        const float *gf = p->gf + (size_t)b * D, *gq = p->gq + (size_t)b * D;
        float *g = grad + (size_t)b * D;
        a[AUX_F] = p->lpf[b];
        a[AUX_Q] = p->lq[b];
        for (int d = 0; d < D; d++) {
            a[AUX_G + d] = gf[d];
            g[d] = (float)((1 - be) * gq[d] + be * gf[d]);
        }
        /* at beta = 1 the base does not count (its walls still do) */
        logp[b] = be < 1 ? (1 - be) * p->lq[b] + be * p->lpf[b] : p->lpf[b];
        if (be >= 1 && !isfinite(p->lq[b])) logp[b] = -INFINITY;
    }
    return JEM_OK;
}

/* move the current states to the target at p->beta without evaluating the
 * model again: log p~ and its gradient are kept in aux */
static void path_retarget(path_target *p, jem_mc_chains *c)
{
    const int D = p->D, A = AUX_G + D, B = c->B;
    base_eval(p->bc, c->x, B, p->lq, p->gq);
    const double be = p->beta;
    for (int b = 0; b < B; b++) {
        const double *a = c->aux + (size_t)b * A;
        c->lp[b] = be < 1 ? (1 - be) * a[AUX_Q] + be * a[AUX_F] : a[AUX_F];
        float *g = c->g + (size_t)b * D;
        const float *gq = p->gq + (size_t)b * D;
        for (int d = 0; d < D; d++) g[d] = (float)((1 - be) * gq[d] + be * a[AUX_G + d]);
    }
}

typedef struct {
    const jem_ais_cfg *cfg;
    const base_ctx *bc;
    const double *beta; /* (T + 1) */
    jem_energy_fn f;
    void *ctx;
    int D;
    long done, total; /* progress in transitions of chains */
} ais_run;

/* chains [c0, c0 + B) of a pass: start from the base, anneal; logw (B),
 * x (B, D). adapt: follow the mean acceptance and write the step size of
 * each t into eps (T + 1); else read it. asum: sum of acceptance
 * probabilities added. */
static jem_status ais_batch(ais_run *r, uint64_t pass, int c0, int B, int adapt, double *eps, double *logw, float *x,
                            double *asum)
{
    const jem_ais_cfg *cfg = r->cfg;
    const int D = r->D, T = cfg->T, A = AUX_G + D;
    jem_mc_chains ch;
    path_target pt = {r->f, r->ctx, r->bc, 0.0, D, NULL, NULL, NULL, NULL};
    jem_rng *rng = malloc(sizeof(jem_rng) * B);
    double *ev = malloc(sizeof(double) * B * 2);
    pt.lpf = malloc(sizeof(float) * B);
    pt.gf = malloc(sizeof(float) * (size_t)B * D);
    pt.gq = malloc(sizeof(float) * (size_t)B * D);
    pt.lq = malloc(sizeof(double) * B);
    jem_status s = jem_mc_alloc(&ch, x, B, D, A);
    if (!s && (!rng || !ev || !pt.lpf || !pt.gf || !pt.gq || !pt.lq))
        s = jem_fail(JEM_ERR_NOMEM, "AIS: out of memory for %d chains of %d values", B, D);
    if (s) goto out;
    double *alpha = ev + B;
    for (int b = 0; b < B; b++) {
        jem_mc_chain_rng(&rng[b], cfg->seed, pass, 0x616973ULL, c0 + b);
        jem_base_sample(r->bc->q, x + (size_t)b * D, &rng[b]);
        logw[b] = 0;
    }
    s = jem_mc_eval(&ch, path_eval, &pt);
    if (s) goto out;
    for (int b = 0; b < B; b++)
        if (!isfinite(ch.aux[(size_t)b * A + AUX_F])) {
            s = jem_fail(JEM_ERR_NONFINITE, "AIS: the model's log density is %g at a draw of the base (chain %d)",
                         ch.aux[(size_t)b * A + AUX_F], c0 + b);
            goto out;
        }
    jem_mc_hmc o = {cfg->leapfrog, 1.0, r->bc->bounded, r->bc->q->lo, r->bc->q->hi, NULL};
    double e = cfg->step_size;
    for (int t = 1; t <= T; t++) {
        if (cfg->stop && *cfg->stop) {
            s = jem_fail(JEM_ERR_INTERRUPTED, "AIS: stopped at distribution %d of %d", t, T);
            goto out;
        }
        const double db = r->beta[t] - r->beta[t - 1];
        for (int b = 0; b < B; b++) {
            const double *a = ch.aux + (size_t)b * A;
            logw[b] += db * (a[AUX_F] - a[AUX_Q]);
        }
        pt.beta = r->beta[t];
        path_retarget(&pt, &ch);
        if (!adapt) e = eps[t];
        for (int b = 0; b < B; b++) ev[b] = e;
        double am = 0;
        for (int k = 0; k < cfg->steps_per; k++) {
            s = jem_mc_hmc_step(&ch, path_eval, &pt, &o, ev, rng, alpha, NULL, NULL);
            if (s) goto out;
            for (int b = 0; b < B; b++) am += alpha[b];
        }
        *asum += am;
        if (adapt) {
            am /= (double)B * cfg->steps_per;
            double le = log(e) + 0.5 * (am - cfg->target_accept);
            le = le < -30 ? -30 : le > 10 ? 10 : le;
            e = exp(le);
            eps[t] = e;
        }
        r->done += B;
        if (cfg->progress && (t % 16 == 0 || t == T))
            cfg->progress(cfg->progress_ud, (int)(r->done * 1000 / r->total), 1000);
    }
out:
    jem_mc_free(&ch);
    free(rng);
    free(ev);
    free(pt.lpf);
    free(pt.gf);
    free(pt.gq);
    free(pt.lq);
    return s;
}

jem_status jem_ais_run(jem_energy_fn f, void *ctx, const jem_base *q, const jem_ais_cfg *cfg, double *logw_out,
                       float *x_out, jem_ais_result *res)
{
    jem_status s = ais_check(cfg);
    if (s) return s;
    base_ctx bc;
    s = base_open(q, &bc);
    if (s) return s;
    const int D = q->D, T = cfg->T, n = cfg->chains;
    const int bs = cfg->batch > 0 && cfg->batch < n ? cfg->batch : n;
    const int np = cfg->pilot_chains;
    double *beta = malloc(sizeof(double) * (T + 1));
    double *eps = malloc(sizeof(double) * (T + 1));
    double *logw = malloc(sizeof(double) * (n > np ? n : np));
    float *x = malloc(sizeof(float) * (size_t)D * (bs > np ? bs : np));
    if (!beta || !eps || !logw || !x) {
        s = jem_fail(JEM_ERR_NOMEM, "AIS: out of memory for %d distributions", T);
        goto out;
    }
    jem_ais_betas(cfg, beta);
    ais_run r = {cfg, &bc, beta, f, ctx, D, 0, (long)T * (n + np)};
    double asum = 0;
    eps[0] = cfg->step_size;
    for (int t = 1; t <= T; t++) eps[t] = cfg->step_size;
    if (np > 0) {
        s = ais_batch(&r, 1, 0, np, 1, eps, logw, x, &asum);
        if (s) goto out;
    }
    asum = 0;
    for (int c0 = 0; c0 < n; c0 += bs) {
        int b = n - c0 < bs ? n - c0 : bs;
        s = ais_batch(&r, 0, c0, b, 0, eps, logw + c0, x, &asum);
        if (s) goto out;
        if (x_out) memcpy(x_out + (size_t)c0 * D, x, sizeof(float) * (size_t)b * D);
    }
    double mx = -INFINITY, m1 = 0, m2 = 0, lm = 0, lv = 0;
    for (int i = 0; i < n; i++) {
        if (!isfinite(logw[i])) {
            s = jem_fail(JEM_ERR_NONFINITE, "AIS: the log weight of chain %d is %g", i, logw[i]);
            goto out;
        }
        mx = logw[i] > mx ? logw[i] : mx;
        lm += logw[i];
    }
    lm /= n;
    for (int i = 0; i < n; i++) {
        double w = exp(logw[i] - mx);
        m1 += w;
        m2 += w * w;
        lv += (logw[i] - lm) * (logw[i] - lm);
    }
    if (res) {
        memset(res, 0, sizeof *res);
        double mean = m1 / n;
        double var = n > 1 ? (m2 - n * mean * mean) / (n - 1) : 0;
        res->logz = mx + log(mean);
        res->logz_se = n > 1 ? sqrt(var > 0 ? var : 0) / (sqrt((double)n) * mean) : NAN;
        res->ess = m1 * m1 / m2;
        res->logw_mean = lm;
        res->logw_sd = n > 1 ? sqrt(lv / (n - 1)) : 0;
        res->accept = asum / ((double)n * T * cfg->steps_per);
        res->step_min = INFINITY;
        res->step_max = 0;
        for (int t = 1; t <= T; t++) {
            res->step_min = eps[t] < res->step_min ? eps[t] : res->step_min;
            res->step_max = eps[t] > res->step_max ? eps[t] : res->step_max;
        }
        res->T = T;
        res->chains = n;
        res->grad_evals = (long)(n + np) * (1 + (long)T * cfg->steps_per * cfg->leapfrog);
    }
    if (logw_out) memcpy(logw_out, logw, sizeof(double) * n);
out:
    base_close(&bc);
    free(beta);
    free(eps);
    free(logw);
    free(x);
    return s;
}

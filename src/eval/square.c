/*
 * Square attack (Andriushchenko, Croce, Flammarion and Hein, "Square
 * Attack: a query-efficient black-box adversarial attack via random
 * search", ECCV 2020), as AutoAttack runs it: score-based, no gradients,
 * random square windows whose side shrinks on the paper's schedule, a
 * candidate kept when it lowers the margin loss. L-inf and L2.
 *
 * Dimension letters: B images in a chunk (M of them still being attacked),
 * C channels, H x W pixels, D = C H W values per image, K classes.
 */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

/* the margin z_y - max_{i != y} z_i (> 0: correct) */
static double margin(const float *z, int K, int y)
{
    double m = -INFINITY;
    for (int k = 0; k < K; k++)
        if (k != y && z[k] > m) m = z[k];
    return (double)z[y] - m;
}

/* the fraction of pixels a window covers at iteration it of n
 * (AutoAttack's p_selection) */
static double p_at(double p0, int it, int n)
{
    const int i = (int)((double)it / n * 10000);
    static const int edge[] = {10, 50, 200, 500, 1000, 2000, 4000, 6000, 8000};
    double p = p0;
    for (int q = 0; q < 9; q++)
        if (i > edge[q]) p = p0 / (double)(2 << q);
    return p;
}

/* AutoAttack's eta_rectangles: an r x s block (row stride ld) of nested
 * rectangles weighted 1/(k+1)^2, summed into out; its norm is returned */
static void rect_bumps(float *out, int r, int s, int ld)
{
    const int rc = r / 2 + 1, sc = s / 2 + 1;
    int c0 = rc - 1, c1 = sc - 1;
    for (int k = 0; k < (rc > sc ? rc : sc); k++) {
        const float v = 1.0f / (float)((k + 1) * (k + 1));
        const int r0 = c0 > 0 ? c0 : 0, r1 = c0 + 2 * k + 1 < r ? c0 + 2 * k + 1 : r;
        const int s0 = c1 > 0 ? c1 : 0, s1 = c1 + 2 * k + 1 < s ? c1 + 2 * k + 1 : s;
        for (int i = r0; i < r1; i++)
            for (int j = s0; j < s1; j++) out[i * ld + j] += v;
        c0--;
        c1--;
    }
    double nn = 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < s; j++) nn += (double)out[i * ld + j] * out[i * ld + j];
    const double f = nn > 0 ? 1 / sqrt(nn) : 0;
    for (int i = 0; i < r; i++)
        for (int j = 0; j < s; j++) out[i * ld + j] = (float)(out[i * ld + j] * f);
}

/* AutoAttack's eta(s): an s x s window, the top half bumps up, the bottom
 * half down, unit norm, transposed with probability 1/2 (tmp: s * s) */
static void eta(float *e, int s, float *tmp, jem_rng *rng)
{
    memset(tmp, 0, sizeof(float) * (size_t)s * s);
    rect_bumps(tmp, s / 2, s, s);
    rect_bumps(tmp + (size_t)(s / 2) * s, s - s / 2, s, s);
    for (int i = s / 2; i < s; i++)
        for (int j = 0; j < s; j++) tmp[i * s + j] = -tmp[i * s + j];
    double nn = 0;
    for (int i = 0; i < s * s; i++) nn += (double)tmp[i] * tmp[i];
    const double f = nn > 0 ? 1 / sqrt(nn) : 0;
    const int tr = jem_rng_uniform_d(rng) > 0.5;
    for (int i = 0; i < s; i++)
        for (int j = 0; j < s; j++) e[i * s + j] = (float)(f * (tr ? tmp[j * s + i] : tmp[i * s + j]));
}

static float sign_draw(jem_rng *rng) { return jem_rng_below(rng, 2) ? 1.0f : -1.0f; }

static float clampf(float v, float lo, float hi) { return v < lo ? lo : v > hi ? hi : v; }

/* L2: x0 + eps * delta / ||delta||, clipped to the box */
static void l2_place(float *xn, const float *x0, const float *delta, int D, double eps)
{
    double nn = 0;
    for (int d = 0; d < D; d++) nn += (double)delta[d] * delta[d];
    const double f = eps / (sqrt(nn) + 1e-12);
    for (int d = 0; d < D; d++) xn[d] = clampf(x0[d] + (float)(delta[d] * f), -1.0f, 1.0f);
}

/* the starting points: L-inf, a vertical stripe of +-eps per column and
 * channel; L2, a grid of eta bumps of random signs on the sphere */
static void start(float *xb, const float *x0, const jem_square_cfg *cfg, float *delta, float *e, float *tmp,
                  jem_rng *rng)
{
    const int C = cfg->c, H = cfg->h, W = cfg->w, D = C * H * W;
    const float eps = (float)cfg->eps;
    if (cfg->norm == 0) {
        for (int ch = 0; ch < C; ch++)
            for (int j = 0; j < W; j++) {
                const float v = eps * sign_draw(rng);
                for (int i = 0; i < H; i++) {
                    const size_t q = ((size_t)ch * H + i) * W + j;
                    xb[q] = clampf(x0[q] + v, -1.0f, 1.0f);
                }
            }
        return;
    }
    const int hw = H < W ? H : W, s = hw / 5 > 0 ? hw / 5 : 1;
    memset(delta, 0, sizeof(float) * (size_t)D);
    const int nh = H / s, nw = W / s, sh = (H - s * nh) / 2, sw = (W - s * nw) / 2;
    for (int a = 0; a < nh; a++)
        for (int b = 0; b < nw; b++) {
            eta(e, s, tmp, rng);
            for (int ch = 0; ch < C; ch++) {
                const float sg = sign_draw(rng);
                for (int i = 0; i < s; i++)
                    for (int j = 0; j < s; j++)
                        delta[((size_t)ch * H + sh + a * s + i) * W + sw + b * s + j] += sg * e[i * s + j];
            }
        }
    l2_place(xb, x0, delta, D, cfg->eps);
}

/* one candidate for an image: from its best point xb (clean x0) into xn */
static void candidate(float *xn, const float *xb, const float *x0, const jem_square_cfg *cfg, int it, int iters,
                      float *delta, float *e, float *tmp, jem_rng *rng)
{
    const int C = cfg->c, H = cfg->h, W = cfg->w, D = C * H * W, hw = H < W ? H : W;
    const double p = p_at(cfg->p_init > 0 ? cfg->p_init : 0.8, it, iters);
    int s = (int)lround(sqrt(p * D / C));
    memcpy(xn, xb, sizeof(float) * (size_t)D);
    if (cfg->norm == 0) {
        const float eps = (float)cfg->eps;
        s = s < 1 ? 1 : s;
        s = s > hw - 1 ? (hw > 1 ? hw - 1 : 1) : s;
        const int vh = (int)jem_rng_below(rng, (uint32_t)(H - s + 1)),
                  vw = (int)jem_rng_below(rng, (uint32_t)(W - s + 1));
        /* each channel's window to x0 +- eps; drawn again (a few times at
         * most) when the window would not change */
        for (int tries = 0; tries < 10; tries++) {
            int changed = 0;
            for (int ch = 0; ch < C; ch++) {
                const float v = eps * sign_draw(rng);
                for (int i = 0; i < s; i++)
                    for (int j = 0; j < s; j++) {
                        const size_t q = ((size_t)ch * H + vh + i) * W + vw + j;
                        xn[q] = clampf(x0[q] + v, -1.0f, 1.0f);
                        changed |= fabsf(xn[q] - xb[q]) >= 1e-7f;
                    }
            }
            if (changed) break;
        }
        return;
    }
    /* L2: a new bump in window 1 (with the mass already there), window 2
     * emptied, the whole perturbation back on the sphere */
    s = s < 3 ? 3 : s;
    s += !(s & 1);
    s = s > hw ? hw : s;
    const int vh = (int)jem_rng_below(rng, (uint32_t)(H - s + 1)), vw = (int)jem_rng_below(rng, (uint32_t)(W - s + 1));
    const int vh2 = (int)jem_rng_below(rng, (uint32_t)(H - s + 1)),
              vw2 = (int)jem_rng_below(rng, (uint32_t)(W - s + 1));
    double n_img = 0, n_win = 0;
    for (int d = 0; d < D; d++) {
        delta[d] = xb[d] - x0[d];
        n_img += (double)delta[d] * delta[d];
    }
    for (int ch = 0; ch < C; ch++)
        for (int i = 0; i < H; i++)
            for (int j = 0; j < W; j++) {
                const int in1 = i >= vh && i < vh + s && j >= vw && j < vw + s;
                const int in2 = i >= vh2 && i < vh2 + s && j >= vw2 && j < vw2 + s;
                const float v = delta[((size_t)ch * H + i) * W + j];
                if (in1 || in2) n_win += (double)v * v;
            }
    const double eps = cfg->eps, room = eps * eps - n_img > 0 ? eps * eps - n_img : 0;
    const double target = sqrt(room / C + n_win);
    eta(e, s, tmp, rng);
    for (int ch = 0; ch < C; ch++) {
        const float sg = sign_draw(rng);
        double n1 = 0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                const float v = delta[((size_t)ch * H + vh + i) * W + vw + j];
                n1 += (double)v * v;
            }
        n1 = sqrt(n1);
        double nn = 0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) {
                const float v = delta[((size_t)ch * H + vh + i) * W + vw + j];
                tmp[i * s + j] = sg * e[i * s + j] + (float)(v / (n1 + 1e-12));
                nn += (double)tmp[i * s + j] * tmp[i * s + j];
            }
        const double f = target / (sqrt(nn) + 1e-12);
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) delta[((size_t)ch * H + vh2 + i) * W + vw2 + j] = 0;
        for (int i = 0; i < s; i++)
            for (int j = 0; j < s; j++) delta[((size_t)ch * H + vh + i) * W + vw + j] = (float)(tmp[i * s + j] * f);
    }
    l2_place(xn, x0, delta, D, eps);
}

jem_status jem_square_run(const jem_classifier *c, const float *x, const int32_t *y, int n, const jem_square_cfg *cfg,
                          uint8_t *robust, float *adv, int64_t *queries)
{
    const int D = c->D, K = c->K, chunk = 128;
    if (cfg->norm != 0 && cfg->norm != 2) return jem_fail(JEM_ERR_ARG, "Square: norm must be 0 (L-inf) or 2 (L2)");
    if (!(cfg->eps >= 0) || cfg->queries < 2 || !(cfg->p_init >= 0 && cfg->p_init <= 1))
        return jem_fail(JEM_ERR_ARG, "Square: eps %g, queries %d (at least 2), p_init %g", cfg->eps, cfg->queries,
                        cfg->p_init);
    if (cfg->c < 1 || cfg->h < 1 || cfg->w < 1 || (int64_t)cfg->c * cfg->h * cfg->w != D)
        return jem_fail(JEM_ERR_SHAPE, "Square: image shape %dx%dx%d does not hold the classifier's %d values", cfg->c,
                        cfg->h, cfg->w, D);
    jem_status s = jem_atk_labels(y, n, K);
    if (s) return s;
    const int hw = cfg->h < cfg->w ? cfg->h : cfg->w, iters = cfg->queries - 2;
    const size_t BD = (size_t)chunk * D;
    float *x0 = malloc(sizeof(float) * BD), *xb = malloc(sizeof(float) * BD), *xn = malloc(sizeof(float) * BD);
    float *lg = malloc(sizeof(float) * (size_t)chunk * K), *delta = malloc(sizeof(float) * (size_t)D);
    float *e = malloc(sizeof(float) * (size_t)hw * hw), *tmp = malloc(sizeof(float) * (size_t)hw * hw);
    double *mmin = malloc(sizeof(double) * chunk);
    int *idx = malloc(sizeof(int) * chunk);
    int32_t *yb = malloc(sizeof(int32_t) * chunk);
    uint8_t *ok = malloc(chunk);
    if (!x0 || !xb || !xn || !lg || !delta || !e || !tmp || !mmin || !idx || !yb || !ok) {
        s = jem_fail(JEM_ERR_NOMEM, "Square: out of memory");
        goto done;
    }
    jem_rng rng;
    jem_rng_seed(&rng, cfg->seed, 0x73717561);
    const int nchunks = (n + chunk - 1) / chunk;
    const int64_t total = (int64_t)nchunks * (cfg->eps > 0 ? iters + 1 : 1);
    int64_t ticks = 0;
    for (int i0 = 0; i0 < n && !s; i0 += chunk) {
        const int B = n - i0 < chunk ? n - i0 : chunk;
        s = jem_atk_correct(c, x + (size_t)i0 * D, y + i0, B, lg, ok);
        if (s) break;
        for (int b = 0; b < B; b++) {
            robust[i0 + b] = ok[b];
            if (queries) queries[i0 + b] = 1;
        }
        if (adv) memcpy(adv + (size_t)i0 * D, x + (size_t)i0 * D, sizeof(float) * (size_t)B * D);
        if (cfg->eps == 0) {
            if (cfg->progress) cfg->progress(cfg->progress_ud, ++ticks, total);
            continue;
        }
        /* the images still correct, gathered, and their starting points */
        int M = 0;
        for (int b = 0; b < B; b++) {
            if (!ok[b]) continue;
            idx[M] = i0 + b;
            yb[M] = y[i0 + b];
            memcpy(x0 + (size_t)M * D, x + (size_t)(i0 + b) * D, sizeof(float) * D);
            start(xb + (size_t)M * D, x0 + (size_t)M * D, cfg, delta, e, tmp, &rng);
            M++;
        }
        /* it = -1: the starting points; then the iterations, each one query
         * per image not yet broken */
        for (int it = -1; it < iters && M > 0 && !s; it++) {
            if (cfg->progress) cfg->progress(cfg->progress_ud, ticks++, total);
            if (it >= 0)
                for (int j = 0; j < M; j++)
                    candidate(xn + (size_t)j * D, xb + (size_t)j * D, x0 + (size_t)j * D, cfg, it, iters, delta, e, tmp,
                              &rng);
            const float *xq = it >= 0 ? xn : xb;
            s = c->logits(c->ctx, xq, M, lg);
            if (s) break;
            int keep = 0;
            for (int j = 0; j < M; j++) {
                const float *z = lg + (size_t)j * K;
                for (int k = 0; k < K; k++)
                    if (!isfinite(z[k])) {
                        s = jem_fail(JEM_ERR_NONFINITE, "Square: the classifier returned a non-finite logit");
                        goto done;
                    }
                if (queries) queries[idx[j]]++;
                const double m = margin(z, K, yb[j]);
                if (it < 0 || m < mmin[j]) {
                    mmin[j] = m;
                    if (it >= 0) memcpy(xb + (size_t)j * D, xn + (size_t)j * D, sizeof(float) * D);
                }
                if (mmin[j] <= 0) {
                    /* broken: out of the attack */
                    robust[idx[j]] = 0;
                    if (adv) memcpy(adv + (size_t)idx[j] * D, xb + (size_t)j * D, sizeof(float) * D);
                    continue;
                }
                if (keep != j) {
                    idx[keep] = idx[j];
                    yb[keep] = yb[j];
                    mmin[keep] = mmin[j];
                    memcpy(x0 + (size_t)keep * D, x0 + (size_t)j * D, sizeof(float) * D);
                    memcpy(xb + (size_t)keep * D, xb + (size_t)j * D, sizeof(float) * D);
                }
                keep++;
            }
            M = keep;
        }
        ticks = (int64_t)(i0 / chunk + 1) * (iters + 1);
    }
    if (!s && cfg->progress) cfg->progress(cfg->progress_ud, total, total);
done:
    free(x0);
    free(xb);
    free(xn);
    free(lg);
    free(delta);
    free(e);
    free(tmp);
    free(mmin);
    free(idx);
    free(yb);
    free(ok);
    return s;
}

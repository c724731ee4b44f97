/*
 * corrupt.c: corrupted copies of images (covariate shift), in the manner of
 * Hendrycks & Dietterich 2019 ("CIFAR-10-C"), and the data set spec
 * corrupt:SPEC:KIND:SEVERITY[:seed=S].
 *
 * Every corruption works on each channel plane in u = (x + 1) / 2, the
 * [0, 1] pixel scale the published parameters are given in, and the result
 * is clipped to [0, 1] and mapped back, so pixels stay in [-1, 1]. The
 * parameters per severity (1 to 5) are the CIFAR-10-C ones, made for 32x32
 * images and so the right scale for 28x28 ones; rotation and translation,
 * which CIFAR-10-C does not have, take angles and shifts of the same
 * spirit (see the table in include/jem.h).
 *
 * Image i of a call draws its random numbers from its own stream (seed,
 * kind, severity, i): results do not depend on the thread count.
 *
 * Dimension letters: N images, C channels, H height, W width.
 */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

#define PI 3.14159265358979323846

enum {
    GAUSSIAN_NOISE,
    SHOT_NOISE,
    IMPULSE_NOISE,
    GAUSSIAN_BLUR,
    DEFOCUS_BLUR,
    CONTRAST,
    BRIGHTNESS,
    ROTATION,
    TRANSLATION,
    PIXELATE,
    JPEG,
    NKINDS
};

static const char *const names[NKINDS] = {
    "gaussian_noise", "shot_noise", "impulse_noise", "gaussian_blur", "defocus_blur", "contrast",
    "brightness",     "rotation",   "translation",   "pixelate",      "jpeg",
};

/* parameters per severity 1..5 (two for defocus: disk radius, then the
 * sigma of the Gaussian blur after it) */
static const double param[NKINDS][5] = {
    [GAUSSIAN_NOISE] = {0.04, 0.06, 0.08, 0.09, 0.10}, /* sigma on [0, 1] */
    [SHOT_NOISE] = {500, 250, 100, 75, 50},            /* photons at full scale */
    [IMPULSE_NOISE] = {0.01, 0.02, 0.03, 0.05, 0.07},  /* fraction of pixels */
    [GAUSSIAN_BLUR] = {0.4, 0.6, 0.7, 0.8, 1.0},       /* sigma in pixels */
    [DEFOCUS_BLUR] = {0.3, 0.4, 0.5, 1.0, 1.5},        /* disk radius in pixels */
    [CONTRAST] = {0.75, 0.5, 0.4, 0.3, 0.15},          /* factor towards the mean */
    [BRIGHTNESS] = {0.05, 0.1, 0.15, 0.2, 0.3},        /* added on [0, 1] */
    [ROTATION] = {10, 20, 30, 45, 60},                 /* degrees, random sign */
    [TRANSLATION] = {1, 2, 3, 4, 5},                   /* pixels, random direction */
    [PIXELATE] = {0.95, 0.9, 0.85, 0.75, 0.65},        /* size factor of the coarse image */
    [JPEG] = {80, 65, 58, 50, 40},                     /* quality */
};
static const double defocus_alias[5] = {0.4, 0.5, 0.6, 0.2, 0.1};

int jem_corrupt_count(void) { return NKINDS; }

const char *jem_corrupt_name(int k) { return k >= 0 && k < NKINDS ? names[k] : NULL; }

int jem_corrupt_find(const char *name)
{
    for (int k = 0; name && k < NKINDS; k++)
        if (!strcmp(name, names[k])) return k;
    return -1;
}

double jem_corrupt_param(int kind, int severity)
{
    if (kind < 0 || kind >= NKINDS || severity < 1 || severity > JEM_CORRUPT_SEVERITIES) return NAN;
    return param[kind][severity - 1];
}

/* ------------------------------------------------------------ primitives */

static double clip01(double v) { return v < 0 ? 0 : v > 1 ? 1 : v; }
static int clampi(int v, int lo, int hi) { return v < lo ? lo : v > hi ? hi : v; }

/* dst (H, W) = src convolved with the separable kernel k (2R + 1) along
 * both axes, borders clamped to the edge pixel; tmp (H, W) */
static void sep_conv(double *dst, const double *src, double *tmp, int H, int W, const double *k, int R)
{
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = 0;
            for (int d = -R; d <= R; d++) s += k[d + R] * src[(size_t)y * W + clampi(x + d, 0, W - 1)];
            tmp[(size_t)y * W + x] = s;
        }
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = 0;
            for (int d = -R; d <= R; d++) s += k[d + R] * tmp[(size_t)clampi(y + d, 0, H - 1) * W + x];
            dst[(size_t)y * W + x] = s;
        }
}

#define MAX_RADIUS 16

void jem_img_gaussian_blur(double *dst, const double *src, double *tmp, int H, int W, double sigma)
{
    if (!(sigma > 0)) {
        memmove(dst, src, sizeof(double) * (size_t)H * W);
        return;
    }
    int R = (int)ceil(4.0 * sigma); /* the kernel reaches 4 sigma */
    if (R > MAX_RADIUS) R = MAX_RADIUS;
    double k[2 * MAX_RADIUS + 1], sum = 0;
    for (int d = -R; d <= R; d++) sum += k[d + R] = exp(-0.5 * d * d / (sigma * sigma));
    for (int d = 0; d <= 2 * R; d++) k[d] /= sum;
    sep_conv(dst, src, tmp, H, W, k, R);
}

/* dst = src convolved with the disk {(dy, dx): dy^2 + dx^2 <= r^2}, weights
 * equal and summing to one, borders clamped; dst != src */
static void disk_blur(double *dst, const double *src, int H, int W, double r)
{
    int R = (int)floor(r);
    if (R > MAX_RADIUS) R = MAX_RADIUS;
    int cnt = 0;
    for (int dy = -R; dy <= R; dy++)
        for (int dx = -R; dx <= R; dx++) cnt += dy * dy + dx * dx <= r * r;
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            double s = 0;
            for (int dy = -R; dy <= R; dy++)
                for (int dx = -R; dx <= R; dx++)
                    if (dy * dy + dx * dx <= r * r)
                        s += src[(size_t)clampi(y + dy, 0, H - 1) * W + clampi(x + dx, 0, W - 1)];
            dst[(size_t)y * W + x] = s / cnt;
        }
}

static double sample(const double *p, int H, int W, int y, int x, double fill)
{
    return y < 0 || y >= H || x < 0 || x >= W ? fill : p[(size_t)y * W + x];
}

void jem_img_affine(double *dst, const double *src, int H, int W, double angle, double dy, double dx, double fill)
{
    const double cy = 0.5 * (H - 1), cx = 0.5 * (W - 1), c = cos(angle), s = sin(angle);
    for (int y = 0; y < H; y++)
        for (int x = 0; x < W; x++) {
            /* the output pixel, moved back by the shift, rotated back */
            double py = y - cy - dy, px = x - cx - dx;
            double sy = c * py + s * px + cy, sx = -s * py + c * px + cx;
            double fy = floor(sy), fx = floor(sx), ty = sy - fy, tx = sx - fx;
            int iy = (int)fy, ix = (int)fx;
            if (fy < -2 || fy > H + 1 || fx < -2 || fx > W + 1) {
                dst[(size_t)y * W + x] = fill;
                continue;
            }
            /* weights of exactly 0 leave a neighbour out, so an exact shift
             * or quarter turn copies pixels exactly */
            double v = 0;
            if (ty < 1 && tx < 1) v += (1 - ty) * (1 - tx) * sample(src, H, W, iy, ix, fill);
            if (ty < 1 && tx > 0) v += (1 - ty) * tx * sample(src, H, W, iy, ix + 1, fill);
            if (ty > 0 && tx < 1) v += ty * (1 - tx) * sample(src, H, W, iy + 1, ix, fill);
            if (ty > 0 && tx > 0) v += ty * tx * sample(src, H, W, iy + 1, ix + 1, fill);
            dst[(size_t)y * W + x] = v;
        }
}

/* the overlap of [a0, a1) and [b0, b1) */
static double overlap(double a0, double a1, double b0, double b1)
{
    double lo = a0 > b0 ? a0 : b0, hi = a1 < b1 ? a1 : b1;
    return hi > lo ? hi - lo : 0;
}

void jem_img_resample_area(double *dst, int DH, int DW, const double *src, int SH, int SW)
{
    /* each output pixel is the area-weighted mean of the source pixels its
     * footprint covers, both images spanning the same square */
    const double fy = (double)SH / DH, fx = (double)SW / DW;
    for (int y = 0; y < DH; y++) {
        double y0 = y * fy, y1 = (y + 1) * fy;
        for (int x = 0; x < DW; x++) {
            double x0 = x * fx, x1 = (x + 1) * fx, s = 0, a = 0;
            for (int sy = (int)floor(y0); sy < SH && sy < y1; sy++) {
                double oy = overlap(y0, y1, sy, sy + 1);
                if (oy <= 0) continue;
                for (int sx = (int)floor(x0); sx < SW && sx < x1; sx++) {
                    double w = oy * overlap(x0, x1, sx, sx + 1);
                    s += w * src[(size_t)sy * SW + sx];
                    a += w;
                }
            }
            dst[(size_t)y * DW + x] = a > 0 ? s / a : 0;
        }
    }
}

/* the luminance quantisation table of the JPEG standard (ITU T.81, annex
 * K.1), row-major over (vertical, horizontal) frequency */
static const int jpeg_luma[64] = {
    16, 11,  10,  16, 24, 40, 51, 61, 12,  12,  14,  19,  26, 58, 60, 55,  14,  13,  16,  24, 40, 57,
    69, 56,  14,  17, 22, 29, 51, 87, 80,  62,  18,  22,  37, 56, 68, 109, 103, 77,  24,  35, 55, 64,
    81, 104, 113, 92, 49, 64, 78, 87, 103, 121, 120, 101, 72, 92, 95, 98,  112, 100, 103, 99,
};

void jem_jpeg_table(int quality, int q[64])
{
    quality = clampi(quality, 1, 100);
    int scale = quality < 50 ? 5000 / quality : 200 - 2 * quality; /* the IJG scaling */
    for (int i = 0; i < 64; i++) q[i] = clampi((jpeg_luma[i] * scale + 50) / 100, 1, 255);
}

void jem_img_jpeg(double *u, int H, int W, int quality)
{
    int q[64];
    jem_jpeg_table(quality, q);
    /* orthonormal 8-point DCT-II basis: basis[k][n] */
    double basis[8][8];
    for (int k = 0; k < 8; k++)
        for (int n = 0; n < 8; n++)
            basis[k][n] = (k ? sqrt(2.0 / 8) : sqrt(1.0 / 8)) * cos(PI * (2 * n + 1) * k / 16.0);
    for (int by = 0; by < H; by += 8)
        for (int bx = 0; bx < W; bx += 8) {
            /* the block in 8-bit units centred on 0, padded past the
             * image's edge with the edge pixels */
            double b[8][8], t[8][8], c[8][8];
            for (int i = 0; i < 8; i++)
                for (int j = 0; j < 8; j++)
                    b[i][j] = u[(size_t)clampi(by + i, 0, H - 1) * W + clampi(bx + j, 0, W - 1)] * 255.0 - 128.0;
            for (int i = 0; i < 8; i++) /* rows: t = b basis^T */
                for (int k = 0; k < 8; k++) {
                    double s = 0;
                    for (int n = 0; n < 8; n++) s += b[i][n] * basis[k][n];
                    t[i][k] = s;
                }
            for (int k = 0; k < 8; k++) /* columns: c = basis t, quantised */
                for (int l = 0; l < 8; l++) {
                    double s = 0;
                    for (int n = 0; n < 8; n++) s += basis[k][n] * t[n][l];
                    const int Q = q[k * 8 + l];
                    c[k][l] = Q * nearbyint(s / Q);
                }
            for (int n = 0; n < 8; n++) /* inverse: b = basis^T c basis */
                for (int l = 0; l < 8; l++) {
                    double s = 0;
                    for (int k = 0; k < 8; k++) s += basis[k][n] * c[k][l];
                    t[n][l] = s;
                }
            for (int i = 0; i < 8 && by + i < H; i++)
                for (int j = 0; j < 8 && bx + j < W; j++) {
                    double s = 0;
                    for (int l = 0; l < 8; l++) s += t[i][l] * basis[l][j];
                    u[(size_t)(by + i) * W + bx + j] = (s + 128.0) / 255.0;
                }
        }
}

/* Poisson(lam): inversion for small means, otherwise the transformed
 * rejection method PTRS (W. Hörmann, "The transformed rejection method for
 * generating Poisson random variables", 1993). */
static double poisson(jem_rng *r, double lam)
{
    if (!(lam > 0)) return 0;
    if (lam < 10) {
        double u = jem_rng_uniform_d(r), p = exp(-lam), F = p;
        int k = 0;
        while (u > F && k < 1000) {
            k++;
            p *= lam / k;
            F += p;
        }
        return k;
    }
    const double slam = sqrt(lam), loglam = log(lam);
    const double b = 0.931 + 2.53 * slam, a = -0.059 + 0.02483 * b;
    const double inv_alpha = 1.1239 + 1.1328 / (b - 3.4), v_r = 0.9277 - 3.6224 / (b - 2);
    for (;;) {
        double U = jem_rng_uniform_d(r) - 0.5, V = jem_rng_uniform_d(r);
        double us = 0.5 - fabs(U);
        double k = floor((2 * a / us + b) * U + lam + 0.43);
        if (us >= 0.07 && V <= v_r) return k;
        if (k < 0 || (us < 0.013 && V > us)) continue;
        if (log(V * inv_alpha / (a / (us * us) + b)) <= -lam + k * loglam - lgamma(k + 1)) return k;
    }
}

/* ------------------------------------------------------------ one image */

/* corrupt the planes (C, H, W) of u in place; w1, w2: (H, W) scratch */
static void corrupt_image(int kind, int sev, double *u, int C, int H, int W, double *w1, double *w2, jem_rng *r)
{
    const double p = param[kind][sev - 1];
    const size_t HW = (size_t)H * W;
    /* draws that hold for all channels of the image */
    double angle = 0, dy = 0, dx = 0;
    if (kind == ROTATION) angle = (jem_rng_below(r, 2) ? 1 : -1) * p * PI / 180.0;
    if (kind == TRANSLATION) {
        double a = 2 * PI * jem_rng_uniform_d(r);
        dy = p * sin(a);
        dx = p * cos(a);
    }
    for (int ch = 0; ch < C; ch++) {
        double *v = u + (size_t)ch * HW;
        switch (kind) {
        case GAUSSIAN_NOISE:
            for (size_t i = 0; i < HW; i++) v[i] += p * jem_rng_normal_d(r);
            break;
        case SHOT_NOISE:
            for (size_t i = 0; i < HW; i++) v[i] = poisson(r, clip01(v[i]) * p) / p;
            break;
        case IMPULSE_NOISE:
            for (size_t i = 0; i < HW; i++)
                if (jem_rng_uniform_d(r) < p) v[i] = (double)jem_rng_below(r, 2);
            break;
        case GAUSSIAN_BLUR: jem_img_gaussian_blur(v, v, w1, H, W, p); break;
        case DEFOCUS_BLUR:
            disk_blur(w2, v, H, W, p);
            jem_img_gaussian_blur(v, w2, w1, H, W, defocus_alias[sev - 1]);
            break;
        case CONTRAST: {
            double m = 0;
            for (size_t i = 0; i < HW; i++) m += v[i];
            m /= (double)HW;
            for (size_t i = 0; i < HW; i++) v[i] = (v[i] - m) * p + m;
            break;
        }
        case BRIGHTNESS:
            for (size_t i = 0; i < HW; i++) v[i] += p;
            break;
        case ROTATION:
        case TRANSLATION:
            memcpy(w1, v, sizeof(double) * HW);
            jem_img_affine(v, w1, H, W, angle, dy, dx, 0.0);
            break;
        case PIXELATE: {
            int h = (int)lround(H * p), w = (int)lround(W * p);
            h = h < 1 ? 1 : h;
            w = w < 1 ? 1 : w;
            jem_img_resample_area(w1, h, w, v, H, W);
            jem_img_resample_area(v, H, W, w1, h, w);
            break;
        }
        case JPEG:
            for (size_t i = 0; i < HW; i++) v[i] = clip01(v[i]);
            jem_img_jpeg(v, H, W, (int)p);
            break;
        }
    }
}

jem_status jem_corrupt_apply(int kind, int severity, float *x, int n, int c, int h, int w, uint64_t seed)
{
    if (kind < 0 || kind >= NKINDS) return jem_fail(JEM_ERR_ARG, "corruption %d: no such kind", kind);
    if (severity < 1 || severity > JEM_CORRUPT_SEVERITIES)
        return jem_fail(JEM_ERR_ARG, "%s: severity %d (want 1 to %d)", names[kind], severity, JEM_CORRUPT_SEVERITIES);
    if (n < 0 || c < 1 || h < 1 || w < 1)
        return jem_fail(JEM_ERR_ARG, "%s: bad image shape %dx%dx%dx%d", names[kind], n, c, h, w);
    const size_t HW = (size_t)h * w, chw = HW * (size_t)c;
    int failed = 0;
#pragma omp parallel
    {
        double *u = malloc(sizeof(double) * (chw + 2 * HW)); /* (C, H, W), then two (H, W) */
        if (!u) {
#pragma omp atomic write
            failed = 1;
        }
#pragma omp for schedule(dynamic, 16)
        for (int i = 0; i < n; i++) {
            if (!u) continue;
            float *xi = x + (size_t)i * chw; /* (C, H, W) */
            jem_rng r;
            jem_rng_seed(&r, seed, ((uint64_t)(kind + 1) << 40) | ((uint64_t)severity << 32) | (uint32_t)i);
            for (size_t k = 0; k < chw; k++) u[k] = 0.5 * ((double)xi[k] + 1.0);
            corrupt_image(kind, severity, u, c, h, w, u + chw, u + chw + HW, &r);
            for (size_t k = 0; k < chw; k++) xi[k] = (float)(2.0 * clip01(u[k]) - 1.0);
        }
        free(u);
    }
    if (failed) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", names[kind]);
    return JEM_OK;
}

/* ------------------------------------------------------------------ spec */

/* corrupt:SPEC:KIND:SEVERITY[:seed=S]; rest = "SPEC:KIND:..." */
jem_status jem_data_open_corrupt(const char *spec, const char *rest, jem_dataset *ds, int depth, const jem_spec_mode *m)
{
    memset(ds, 0, sizeof *ds);
    char buf[1024];
    if (strlen(rest) >= sizeof buf) return jem_fail(JEM_ERR_ARG, "%s: spec too long", spec);
    strcpy(buf, rest);
    uint64_t seed = 0;
    char *colon = strrchr(buf, ':');
    if (colon && !strncmp(colon + 1, "seed=", 5)) {
        const char *t = colon + 6;
        int ok = *t != 0;
        for (const char *q = t; *q; q++) ok = ok && *q >= '0' && *q <= '9';
        errno = 0;
        char *end = NULL;
        unsigned long long v = ok ? strtoull(t, &end, 10) : 0;
        if (!ok || errno || *end) return jem_fail(JEM_ERR_ARG, "%s: cannot parse '%s'", spec, colon + 1);
        seed = v;
        *colon = 0;
        colon = strrchr(buf, ':');
    }
    if (!colon) return jem_fail(JEM_ERR_ARG, "%s: want corrupt:SPEC:KIND:SEVERITY[:seed=S]", spec);
    const char *sv = colon + 1;
    if (!(sv[0] >= '1' && sv[0] <= '0' + JEM_CORRUPT_SEVERITIES && !sv[1]))
        return jem_fail(JEM_ERR_ARG, "%s: severity '%s' (want 1 to %d)", spec, sv, JEM_CORRUPT_SEVERITIES);
    const int severity = sv[0] - '0';
    *colon = 0;
    colon = strrchr(buf, ':');
    if (!colon) return jem_fail(JEM_ERR_ARG, "%s: want corrupt:SPEC:KIND:SEVERITY[:seed=S]", spec);
    const int kind = jem_corrupt_find(colon + 1);
    if (kind < 0) {
        char list[512];
        size_t o = 0;
        for (int k = 0; k < NKINDS; k++) {
            size_t len = strlen(names[k]);
            if (o + len + 3 >= sizeof list) break;
            if (k) {
                list[o++] = ',';
                list[o++] = ' ';
            }
            memcpy(list + o, names[k], len);
            o += len;
        }
        list[o] = 0;
        return jem_fail(JEM_ERR_ARG, "%s: unknown corruption '%s' (%s)", spec, colon + 1, list);
    }
    *colon = 0;
    if (!buf[0]) return jem_fail(JEM_ERR_ARG, "%s: want corrupt:SPEC:KIND:SEVERITY[:seed=S]", spec);
    jem_status st = jem_data_open_nested(buf, ds, depth + 1, m);
    if (st || m->check_only) return st;
    st = jem_corrupt_apply(kind, severity, ds->x, ds->n, ds->c, ds->h, ds->w, seed);
    if (st) {
        jem_dataset_free(ds);
        return st;
    }
    jem_data_set_name(ds, spec);
    return JEM_OK;
}

/* Plots for the evaluation report, rasterised here into 8-bit RGB images:
 * reliability diagrams, score histograms, ROC curves and line charts.
 *
 * Pixel (i, j) is column i, row j, rows top to bottom; line coordinates are
 * at pixel centres. Lines are anti-aliased by coverage (distance of the
 * pixel centre to the segment); a polyline is first drawn into a coverage
 * mask (maximum over its segments) and then blended once, so joints are not
 * darker than the rest of the line. Text uses the bitmap font of font.c. */
#include "eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define TS        2 /* text scale of labels */
#define MAX_TICKS 24
#define C_TEXT    0x222222u
#define C_AXIS    0x333333u
#define C_GRID    0xe6e6e6u /* exact colour: the legend placement skips it */
#define C_BG      0xffffffu

static const uint32_t palette[] = {
    0x1f77b4, 0xff7f0e, 0x2ca02c, 0xd62728, 0x9467bd, 0x8c564b, 0xe377c2, 0x7f7f7f, 0xbcbd22, 0x17becf,
};
#define N_PALETTE ((int)(sizeof palette / sizeof palette[0]))

static uint32_t series_color(int i) { return palette[i % N_PALETTE]; }

/* ================================================================= image */

jem_status jem_image_new(int w, int h, uint32_t bg, jem_image *out)
{
    memset(out, 0, sizeof *out);
    if (w <= 0 || h <= 0 || w > 16384 || h > 16384) return jem_fail(JEM_ERR_ARG, "image: bad size %d x %d", w, h);
    size_t n = (size_t)w * h;
    uint8_t *p = malloc(3 * n);
    if (!p) return jem_fail(JEM_ERR_NOMEM, "image: %d x %d", w, h);
    for (size_t i = 0; i < n; i++) {
        p[3 * i] = (uint8_t)(bg >> 16);
        p[3 * i + 1] = (uint8_t)(bg >> 8);
        p[3 * i + 2] = (uint8_t)bg;
    }
    out->w = w;
    out->h = h;
    out->rgb = p;
    return JEM_OK;
}

void jem_image_free(jem_image *im)
{
    if (!im) return;
    free(im->rgb);
    memset(im, 0, sizeof *im);
}

jem_status jem_image_write_png(const char *path, const jem_image *im)
{
    if (!im || !im->rgb) return jem_fail(JEM_ERR_ARG, "%s: no image to write", path);
    return jem_png_write_rgb(path, im->rgb, im->w, im->h);
}

/* ============================================================ primitives */

static void blend(jem_image *im, int x, int y, uint32_t c, double a)
{
    if (x < 0 || y < 0 || x >= im->w || y >= im->h || a <= 0) return;
    uint8_t *p = im->rgb + 3 * ((size_t)y * im->w + x);
    if (a >= 1) {
        p[0] = (uint8_t)(c >> 16);
        p[1] = (uint8_t)(c >> 8);
        p[2] = (uint8_t)c;
        return;
    }
    const int ch[3] = {(int)(c >> 16) & 255, (int)(c >> 8) & 255, (int)c & 255};
    for (int k = 0; k < 3; k++) p[k] = (uint8_t)lrint(p[k] * (1 - a) + ch[k] * a);
}

void jem_draw_rect(jem_image *im, int x0, int y0, int x1, int y1, uint32_t color, double alpha)
{
    if (x0 < 0) x0 = 0;
    if (y0 < 0) y0 = 0;
    if (x1 > im->w) x1 = im->w;
    if (y1 > im->h) y1 = im->h;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) blend(im, x, y, color, alpha);
}

/* 1-pixel outline of [x0, x1) x [y0, y1) */
static void rect_outline(jem_image *im, int x0, int y0, int x1, int y1, uint32_t c, double a)
{
    if (x1 <= x0 || y1 <= y0) return;
    jem_draw_rect(im, x0, y0, x1, y0 + 1, c, a);
    if (y1 - 1 > y0) jem_draw_rect(im, x0, y1 - 1, x1, y1, c, a);
    jem_draw_rect(im, x0, y0 + 1, x0 + 1, y1 - 1, c, a);
    if (x1 - 1 > x0) jem_draw_rect(im, x1 - 1, y0 + 1, x1, y1 - 1, c, a);
}

/* Coverage target: either a mask (mx0, my0 its origin, mw x mh) taking the
 * maximum, or direct blending into the image when mask is NULL. */
typedef struct {
    jem_image *im;
    float *mask; /* (mh, mw) or NULL */
    int mx0, my0, mw, mh;
    uint32_t color;
    double alpha;
} cover;

static void put_cov(cover *cv, int x, int y, double c)
{
    if (c <= 0) return;
    if (c > 1) c = 1;
    if (cv->mask) {
        int i = x - cv->mx0, j = y - cv->my0;
        if (i < 0 || j < 0 || i >= cv->mw || j >= cv->mh) return;
        float *m = cv->mask + (size_t)j * cv->mw + i;
        if (c > *m) *m = (float)c;
    } else {
        blend(cv->im, x, y, cv->color, c * cv->alpha);
    }
}

/* One segment of width w with round caps; with dash > 0, only the parts
 * whose arc length (starting at `along`) falls in a dash are drawn. */
static void segment(cover *cv, double x0, double y0, double x1, double y1, double w, double dash, double along)
{
    double r = 0.5 * w + 1;
    int ia = (int)floor(fmin(x0, x1) - r), ib = (int)ceil(fmax(x0, x1) + r);
    int ja = (int)floor(fmin(y0, y1) - r), jb = (int)ceil(fmax(y0, y1) + r);
    if (ia < 0) ia = 0;
    if (ja < 0) ja = 0;
    if (ib > cv->im->w - 1) ib = cv->im->w - 1;
    if (jb > cv->im->h - 1) jb = cv->im->h - 1;
    double dx = x1 - x0, dy = y1 - y0, len2 = dx * dx + dy * dy, len = sqrt(len2);
    for (int j = ja; j <= jb; j++)
        for (int i = ia; i <= ib; i++) {
            double t = len2 > 0 ? ((i - x0) * dx + (j - y0) * dy) / len2 : 0;
            if (t < 0) t = 0;
            if (t > 1) t = 1;
            double ex = x0 + t * dx - i, ey = y0 + t * dy - j;
            double d = sqrt(ex * ex + ey * ey);
            double c = 0.5 * w + 0.5 - d;
            if (c <= 0) continue;
            if (dash > 0 && fmod(along + t * len, 2 * dash) > dash) continue;
            put_cov(cv, i, j, c);
        }
}

/* Polyline through n points; non-finite points break it. clip (nullable):
 * {x0, y0, x1, y1}, the inclusive pixel box outside which nothing is drawn. */
static void polyline(jem_image *im, const double *x, const double *y, int n, double w, uint32_t color, double alpha,
                     double dash, const int *clip)
{
    double bx0 = INFINITY, by0 = INFINITY, bx1 = -INFINITY, by1 = -INFINITY;
    for (int i = 0; i < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i])) continue;
        bx0 = fmin(bx0, x[i]);
        bx1 = fmax(bx1, x[i]);
        by0 = fmin(by0, y[i]);
        by1 = fmax(by1, y[i]);
    }
    if (!(bx0 <= bx1)) return;
    cover cv = {im, NULL, 0, 0, 0, 0, color, alpha};
    double r = 0.5 * w + 2;
    int mx0 = (int)floor(fmax(bx0 - r, 0)), my0 = (int)floor(fmax(by0 - r, 0));
    int mx1 = (int)ceil(fmin(bx1 + r, im->w - 1)), my1 = (int)ceil(fmin(by1 + r, im->h - 1));
    if (clip) {
        if (mx0 < clip[0]) mx0 = clip[0];
        if (my0 < clip[1]) my0 = clip[1];
        if (mx1 > clip[2]) mx1 = clip[2];
        if (my1 > clip[3]) my1 = clip[3];
    }
    if (mx1 < mx0 || my1 < my0) return;
    cv.mx0 = mx0;
    cv.my0 = my0;
    cv.mw = mx1 - mx0 + 1;
    cv.mh = my1 - my0 + 1;
    cv.mask = calloc((size_t)cv.mw * cv.mh, sizeof *cv.mask);
    if (!cv.mask && clip) return; /* no memory: a clipped line is left out */
    /* no memory and no clip: blend segment by segment (darker joints) */
    double along = 0;
    for (int i = 0; i + 1 < n; i++) {
        if (!isfinite(x[i]) || !isfinite(y[i]) || !isfinite(x[i + 1]) || !isfinite(y[i + 1])) {
            along = 0;
            continue;
        }
        segment(&cv, x[i], y[i], x[i + 1], y[i + 1], w, dash, along);
        along += hypot(x[i + 1] - x[i], y[i + 1] - y[i]);
    }
    if (n == 1 && isfinite(x[0]) && isfinite(y[0])) segment(&cv, x[0], y[0], x[0], y[0], w, 0, 0);
    if (cv.mask) {
        for (int j = 0; j < cv.mh; j++)
            for (int i = 0; i < cv.mw; i++) {
                float c = cv.mask[(size_t)j * cv.mw + i];
                if (c > 0) blend(im, mx0 + i, my0 + j, color, c * alpha);
            }
        free(cv.mask);
    }
}

void jem_draw_line(jem_image *im, double x0, double y0, double x1, double y1, double width, uint32_t color,
                   double alpha, double dash)
{
    const double x[2] = {x0, x1}, y[2] = {y0, y1};
    polyline(im, x, y, 2, width, color, alpha, dash, NULL);
}

/* Filled anti-aliased disc; clip as for polyline. */
static void disc(jem_image *im, double cx, double cy, double rad, uint32_t color, const int *clip)
{
    for (int j = (int)floor(cy - rad - 1); j <= (int)ceil(cy + rad + 1); j++)
        for (int i = (int)floor(cx - rad - 1); i <= (int)ceil(cx + rad + 1); i++) {
            if (clip && (i < clip[0] || j < clip[1] || i > clip[2] || j > clip[3])) continue;
            double c = rad + 0.5 - hypot(i - cx, j - cy);
            if (c > 0) blend(im, i, j, color, c > 1 ? 1 : c);
        }
}

/* ================================================================== text */

int jem_text_width(const char *s, int scale)
{
    size_t n = strlen(s);
    return n ? (int)n * JEM_FONT_ADV * scale - scale : 0;
}

void jem_draw_text(jem_image *im, int x, int y, const char *s, int scale, uint32_t color, int vertical)
{
    int pen = 0; /* font columns */
    for (const unsigned char *p = (const unsigned char *)s; *p; p++, pen += JEM_FONT_ADV) {
        if (*p == ' ') continue;
        for (int row = 0; row < JEM_FONT_H; row++)
            for (int col = 0; col < JEM_FONT_W; col++) {
                if (!jem_font_pixel(*p, col, row)) continue;
                int u = (pen + col) * scale, v = row * scale;
                if (!vertical) jem_draw_rect(im, x + u, y + v, x + u + scale, y + v + scale, color, 1);
                else jem_draw_rect(im, x + v, y - u - scale, x + v + scale, y - u, color, 1);
            }
    }
}

/* Largest scale <= want (>= 1) at which s fits in max_w pixels. */
static int fit_scale(const char *s, int want, int max_w)
{
    int sc = want;
    while (sc > 1 && jem_text_width(s, sc) > max_w) sc--;
    return sc;
}

static void text_centered(jem_image *im, int cx, int y, const char *s, int scale, uint32_t c)
{
    jem_draw_text(im, cx - jem_text_width(s, scale) / 2, y, s, scale, c, 0);
}

/* ================================================================== axes */

typedef struct {
    double lo, hi; /* range shown */
    int n;         /* ticks */
    double v[MAX_TICKS];
    char lab[MAX_TICKS][32];
    int maxw; /* widest tick label, pixels */
} axis;

/* Tick label: fixed decimals, or a short exponent form ("1.2e6") for very
 * large or very small magnitudes. */
static void tick_label(char *buf, size_t n, double v, int dec, int sci)
{
    if (!sci) {
        snprintf(buf, n, "%.*f", dec, v);
        return;
    }
    char tmp[16];
    snprintf(tmp, sizeof tmp, "%.3g", v);
    char *e = strchr(tmp, 'e');
    if (!e) {
        snprintf(buf, n, "%s", tmp);
        return;
    }
    *e = 0;
    snprintf(buf, n, "%se%d", tmp, atoi(e + 1));
}

/* Ticks for [lo, hi] with at most max_ticks of them; expand != 0 widens the
 * range to whole steps. */
static void make_axis(axis *a, double lo, double hi, int max_ticks, int expand)
{
    if (max_ticks < 2) max_ticks = 2;
    if (max_ticks > MAX_TICKS - 1) max_ticks = MAX_TICKS - 1;
    if (!(hi > lo)) {
        double d = fabs(lo) > 0 ? 0.1 * fabs(lo) : 0.5;
        lo -= d;
        hi += d;
    }
    /* the smallest step of the form {1, 2, 5} x 10^k that gives at most
     * max_ticks ticks (counting the widening) */
    double e = pow(10, floor(log10((hi - lo) / (max_ticks - 1))));
    static const double mant[3] = {1, 2, 5};
    double step = 10 * e;
    for (int k = 0; k < 12; k++) {
        double cand = mant[k % 3] * e * pow(10, k / 3);
        double first = expand ? floor(lo / cand + 1e-9) : ceil(lo / cand - 1e-9);
        double last = expand ? ceil(hi / cand - 1e-9) : floor(hi / cand + 1e-9);
        if (last - first + 1 <= max_ticks) {
            step = cand;
            break;
        }
    }
    if (expand) {
        lo = floor(lo / step + 1e-9) * step;
        hi = ceil(hi / step - 1e-9) * step;
    }
    a->lo = lo;
    a->hi = hi;
    a->n = 0;
    a->maxw = 0;
    int dec = (int)fmax(0, -floor(log10(step) + 1e-9));
    double big = fmax(fabs(lo), fabs(hi));
    for (double k = ceil(lo / step - 1e-9); k * step <= hi + 1e-9 * step && a->n < MAX_TICKS; k++) {
        double v = k * step;
        if (fabs(v) < 1e-9 * step) v = 0;
        a->v[a->n] = v;
        tick_label(a->lab[a->n], sizeof a->lab[0], v, dec, big >= 1e5 || step < 1e-4);
        int w = jem_text_width(a->lab[a->n], TS);
        if (w > a->maxw) a->maxw = w;
        a->n++;
    }
}

/* x axis: as many ticks as fit side by side along len pixels */
static void make_x_axis(axis *a, double lo, double hi, int len, int expand)
{
    for (int m = 11; m >= 2; m--) {
        make_axis(a, lo, hi, m, expand);
        if (a->n * (a->maxw + 18) <= len) return;
    }
}

/* Widen the shown range by a fraction on both sides, ticks unchanged (room
 * for markers at the ends). */
static void axis_pad(axis *a, double frac)
{
    double d = frac * (a->hi - a->lo);
    a->lo -= d;
    a->hi += d;
}

static int y_ticks_for(int len) { return len / 48 < 3 ? 3 : len / 48 > 11 ? 11 : len / 48; }

typedef struct {
    int px0, py0, px1, py1; /* plot area, pixels (inclusive) */
    int clip[4];            /* the same box, for drawing data */
    axis ax, ay;
} panel;

static double map_x(const panel *p, double x)
{
    return p->px0 + (x - p->ax.lo) / (p->ax.hi - p->ax.lo) * (p->px1 - p->px0);
}

static double map_y(const panel *p, double y)
{
    return p->py1 - (y - p->ay.lo) / (p->ay.hi - p->ay.lo) * (p->py1 - p->py0);
}

/* Grid lines (before the data). */
static void panel_grid(jem_image *im, const panel *p)
{
    for (int i = 0; i < p->ax.n; i++) {
        int x = (int)lrint(map_x(p, p->ax.v[i]));
        jem_draw_rect(im, x, p->py0, x + 1, p->py1 + 1, C_GRID, 1);
    }
    for (int i = 0; i < p->ay.n; i++) {
        int y = (int)lrint(map_y(p, p->ay.v[i]));
        jem_draw_rect(im, p->px0, y, p->px1 + 1, y + 1, C_GRID, 1);
    }
}

#define TICK 6
/* Frame, ticks, tick labels and axis labels (after the data). */
static void panel_axes(jem_image *im, const panel *p, int x_labels, const char *xlabel, const char *ylabel)
{
    rect_outline(im, p->px0, p->py0, p->px1 + 1, p->py1 + 1, C_AXIS, 1);
    int ch = JEM_FONT_ASC * TS; /* cap height */
    for (int i = 0; i < p->ax.n; i++) {
        int x = (int)lrint(map_x(p, p->ax.v[i]));
        jem_draw_rect(im, x, p->py1 + 1, x + 1, p->py1 + 1 + TICK, C_AXIS, 1);
        if (x_labels) text_centered(im, x + 1, p->py1 + TICK + 6, p->ax.lab[i], TS, C_TEXT);
    }
    for (int i = 0; i < p->ay.n; i++) {
        int y = (int)lrint(map_y(p, p->ay.v[i]));
        jem_draw_rect(im, p->px0 - TICK, y, p->px0, y + 1, C_AXIS, 1);
        int w = jem_text_width(p->ay.lab[i], TS);
        jem_draw_text(im, p->px0 - TICK - 6 - w, y - ch / 2, p->ay.lab[i], TS, C_TEXT, 0);
    }
    int lh = JEM_FONT_H * TS;
    if (x_labels && xlabel && *xlabel) {
        int sc = fit_scale(xlabel, TS, p->px1 - p->px0);
        text_centered(im, (p->px0 + p->px1) / 2, p->py1 + TICK + 6 + lh + 10, xlabel, sc, C_TEXT);
    }
    if (ylabel && *ylabel) {
        int sc = fit_scale(ylabel, TS, p->py1 - p->py0);
        int w = jem_text_width(ylabel, sc);
        int x = p->px0 - TICK - 6 - p->ay.maxw - 10 - JEM_FONT_H * sc;
        jem_draw_text(im, x < 4 ? 4 : x, (p->py0 + p->py1) / 2 + w / 2, ylabel, sc, C_TEXT, 1);
    }
}

/* Page layout: title height and the margins around the plot area. */
typedef struct {
    int W, H;
    int top;       /* first row below the title */
    int bottom;    /* last row of the plot area(s) */
    int left_base; /* pixels left of the y tick labels (y label and padding) */
    int right;     /* last column of the plot area */
} page;

static void page_begin(jem_image *im, page *pg, const char *title)
{
    pg->W = im->w;
    pg->H = im->h;
    int avail = im->w - 16, ts = fit_scale(title, 3, avail), th;
    char l1[256];
    const char *sp = NULL;
    if (ts < 2) {
        /* two lines at scale 2: break at a double space if there is one
         * (the plots append their summary after one), else at the last
         * space that makes both lines fit */
        snprintf(l1, sizeof l1, "%s", title);
        char *dbl = strstr(l1, "  ");
        for (char *q = dbl ? dbl : strrchr(l1, ' '); q;) {
            *q = 0;
            const char *rest = title + (q - l1) + 1;
            while (*rest == ' ') rest++;
            if (jem_text_width(l1, 2) <= avail && jem_text_width(rest, 2) <= avail) {
                sp = rest;
                break;
            }
            q = strrchr(l1, ' ');
        }
        if (sp) {
            size_t k = strlen(l1); /* drop trailing spaces of the first line */
            while (k > 0 && l1[k - 1] == ' ') l1[--k] = 0;
        }
    }
    if (sp) {
        text_centered(im, im->w / 2, 10, l1, 2, C_TEXT);
        text_centered(im, im->w / 2, 10 + JEM_FONT_H * 2 + 2, sp, 2, C_TEXT);
        th = 2 * JEM_FONT_H * 2 + 2;
        pg->top = 10 + th + 12;
    } else {
        th = JEM_FONT_H * ts;
        text_centered(im, im->w / 2, 14, title, ts, C_TEXT);
        pg->top = 14 + th + 14;
    }
    int lh = JEM_FONT_H * TS;
    pg->bottom = im->h - 1 - (TICK + 6 + lh + 10 + lh + 12);
    pg->left_base = 12 + lh + 10;
    pg->right = im->w - 1 - 28;
}

/* Place a panel between rows top and bot, y axis ready, x axis to make. */
static void panel_place(panel *p, const page *pg, int top, int bot, int ymaxw)
{
    p->py0 = top;
    p->py1 = bot;
    p->px0 = pg->left_base + ymaxw + 6 + TICK;
    p->px1 = pg->right;
    p->clip[0] = p->px0;
    p->clip[1] = p->py0;
    p->clip[2] = p->px1;
    p->clip[3] = p->py1;
}

/* ================================================================ legend */

enum { LEG_LINE, LEG_DASH, LEG_BOX, LEG_MARK };

typedef struct {
    int kind;
    uint32_t color;
    double alpha;
    char text[96];
} legend_item;

/* Count of "ink" pixels (neither background nor grid) in a rectangle. */
static long ink(const jem_image *im, int x0, int y0, int x1, int y1)
{
    long n = 0;
    for (int y = y0; y < y1; y++)
        for (int x = x0; x < x1; x++) {
            if (x < 0 || y < 0 || x >= im->w || y >= im->h) continue;
            const uint8_t *p = im->rgb + 3 * ((size_t)y * im->w + x);
            uint32_t c = (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
            if (c != C_BG && c != C_GRID) n++;
        }
    return n;
}

/* Legend box in the corner of the panel that covers the least ink. */
static void legend(jem_image *im, const panel *p, const legend_item *it, int n)
{
    if (n <= 0) return;
    int ts = TS, lh, sw, pad, maxw, bw, bh;
    for (;;) { /* smaller text when the box would cover too much of the panel */
        lh = JEM_FONT_H * ts + 3 * ts;
        sw = 15 * ts;
        pad = 5 * ts;
        maxw = 0;
        for (int i = 0; i < n; i++) {
            int w = jem_text_width(it[i].text, ts);
            if (w > maxw) maxw = w;
        }
        bw = pad + sw + 4 * ts + maxw + pad;
        bh = pad + n * lh - 3 * ts + pad;
        if (ts == 1 || (5 * bw <= 3 * (p->px1 - p->px0) && 9 * bh <= 4 * (p->py1 - p->py0))) break;
        ts--;
    }
    int inset = 10;
    int xs[2] = {p->px1 - inset - bw, p->px0 + inset};
    int ys[2] = {p->py0 + inset, p->py1 - inset - bh};
    int bx = xs[0], by = ys[0];
    long best = -1;
    for (int yi = 0; yi < 2; yi++) /* top-right, top-left, bottom-right, bottom-left */
        for (int xi = 0; xi < 2; xi++) {
            long c = ink(im, xs[xi], ys[yi], xs[xi] + bw, ys[yi] + bh);
            if (best < 0 || c < best) {
                best = c;
                bx = xs[xi];
                by = ys[yi];
            }
        }
    jem_draw_rect(im, bx, by, bx + bw, by + bh, C_BG, 0.88);
    rect_outline(im, bx, by, bx + bw, by + bh, 0xbbbbbb, 1);
    int ch = JEM_FONT_ASC * ts;
    for (int i = 0; i < n; i++) {
        int y = by + pad + i * lh, cy = y + ch / 2;
        int x0 = bx + pad, x1 = x0 + sw;
        switch (it[i].kind) {
        case LEG_BOX:
            jem_draw_rect(im, x0, y, x1, y + ch + 1, it[i].color, it[i].alpha);
            rect_outline(im, x0, y, x1, y + ch + 1, it[i].color, 1);
            break;
        case LEG_DASH: jem_draw_line(im, x0, cy, x1, cy, 2, it[i].color, 1, 5); break;
        case LEG_MARK:
            jem_draw_line(im, x0, cy, x1, cy, 2.5, it[i].color, 1, 0);
            disc(im, 0.5 * (x0 + x1), cy, 4, it[i].color, NULL);
            break;
        default: jem_draw_line(im, x0, cy, x1, cy, 2.5, it[i].color, 1, 0);
        }
        jem_draw_text(im, x1 + 4 * ts, y, it[i].text, ts, C_TEXT, 0);
    }
}

/* ================================================================= plots */

static jem_status start_image(const jem_plot_opts *o, jem_image *out)
{
    int w = o && o->width > 0 ? o->width : 800, h = o && o->height > 0 ? o->height : 600;
    if (w < 240 || h < 200) return jem_fail(JEM_ERR_ARG, "plot: %d x %d is too small (at least 240 x 200)", w, h);
    return jem_image_new(w, h, C_BG, out);
}

static const char *pick(const char *s, const char *dflt) { return s ? s : dflt; }

static int range_set(double lo, double hi) { return isfinite(lo) && isfinite(hi) && lo < hi; }

jem_status jem_plot_reliability(const jem_calib_bin *bins, int n_bins, double ece, const jem_plot_opts *o,
                                jem_image *out)
{
    jem_plot_opts d = {0};
    if (!o) o = &d;
    memset(out, 0, sizeof *out);
    if (!bins || n_bins <= 0) return jem_fail(JEM_ERR_ARG, "reliability diagram: no bins (%d)", n_bins);
    jem_status st = start_image(o, out);
    if (st) return st;

    char title[256];
    snprintf(title, sizeof title, "%s  ECE %.2f%%", pick(o->title, "Reliability diagram"), 100 * ece);
    page pg;
    page_begin(out, &pg, title);

    /* accuracy panel above, counts panel below */
    int total = pg.bottom - pg.top, gap = JEM_FONT_H * TS + 8; /* room for tick labels */
    int h_top = (int)(0.72 * (total - gap));
    panel pa, pc;
    make_axis(&pa.ay, 0, 1, y_ticks_for(h_top), 0);
    int maxc = 0;
    for (int b = 0; b < n_bins; b++)
        if (bins[b].count > maxc) maxc = bins[b].count;
    int h_bot = total - gap - h_top;
    make_axis(&pc.ay, 0, maxc > 0 ? 1.08 * maxc : 1, h_bot / 28 < 2 ? 2 : h_bot / 28, 0);
    int ymaxw = pa.ay.maxw > pc.ay.maxw ? pa.ay.maxw : pc.ay.maxw;
    panel_place(&pa, &pg, pg.top, pg.top + h_top, ymaxw);
    panel_place(&pc, &pg, pg.top + h_top + gap, pg.bottom, ymaxw);
    make_x_axis(&pa.ax, 0, 1, pa.px1 - pa.px0, 0);
    pc.ax = pa.ax;

    panel_grid(out, &pa);
    panel_grid(out, &pc);
    const uint32_t c_bar = 0x1f77b4, c_gap = 0xd62728, c_cnt = 0x5a7d9a;
    for (int b = 0; b < n_bins; b++) {
        const jem_calib_bin *k = bins + b;
        int x0 = (int)lrint(map_x(&pa, k->lo)) + 1, x1 = (int)lrint(map_x(&pa, k->hi));
        if (x1 <= x0) x1 = x0 + 1;
        if (k->count > 0) {
            int yb = (int)lrint(map_y(&pa, 0)), ya = (int)lrint(map_y(&pa, k->acc));
            jem_draw_rect(out, x0, ya, x1, yb + 1, c_bar, 0.85);
            rect_outline(out, x0, ya, x1, yb + 1, 0x17496f, 1);
            int yc = (int)lrint(map_y(&pa, k->conf));
            int g0 = ya < yc ? ya : yc, g1 = ya < yc ? yc : ya;
            if (g1 > g0) {
                jem_draw_rect(out, x0, g0, x1, g1 + 1, c_gap, 0.3);
                rect_outline(out, x0, g0, x1, g1 + 1, c_gap, 0.9);
            }
            int ycb = (int)lrint(map_y(&pc, k->count)), ycz = (int)lrint(map_y(&pc, 0));
            jem_draw_rect(out, x0, ycb, x1, ycz + 1, c_cnt, 0.85);
        }
    }
    jem_draw_line(out, map_x(&pa, 0), map_y(&pa, 0), map_x(&pa, 1), map_y(&pa, 1), 2, 0x555555, 1, 6);
    legend_item it[3] = {
        {LEG_BOX, c_bar, 0.85, "accuracy"},
        {LEG_BOX, c_gap, 0.3, "gap to confidence"},
        {LEG_DASH, 0x555555, 1, "perfect calibration"},
    };
    legend(out, &pa, it, 3);
    panel_axes(out, &pa, 0, NULL, pick(o->ylabel, "accuracy"));
    panel_axes(out, &pc, 1, pick(o->xlabel, "confidence"), "count");
    return JEM_OK;
}

jem_status jem_plot_histograms(const jem_sample_set *sets, int n_sets, const jem_plot_opts *o, jem_image *out)
{
    jem_plot_opts d = {0};
    if (!o) o = &d;
    memset(out, 0, sizeof *out);
    if (!sets || n_sets <= 0 || n_sets > 32)
        return jem_fail(JEM_ERR_ARG, "histograms: need 1 to 32 sets (got %d)", n_sets);
    int nb = o->bins > 0 ? o->bins : 40;
    if (nb > 1000) return jem_fail(JEM_ERR_ARG, "histograms: %d bins (at most 1000)", nb);

    double lo = INFINITY, hi = -INFINITY;
    if (range_set(o->xmin, o->xmax)) {
        lo = o->xmin;
        hi = o->xmax;
    } else {
        for (int s = 0; s < n_sets; s++)
            for (int i = 0; i < sets[s].n; i++)
                if (isfinite(sets[s].v[i])) {
                    lo = fmin(lo, sets[s].v[i]);
                    hi = fmax(hi, sets[s].v[i]);
                }
        if (!(lo <= hi)) {
            lo = 0;
            hi = 1;
        }
        if (lo == hi) {
            double e = fabs(lo) > 0 ? 0.05 * fabs(lo) : 0.5;
            lo -= e;
            hi += e;
        }
    }
    double *frac = calloc((size_t)n_sets * nb, sizeof *frac); /* (n_sets, nb) */
    int *n_used = calloc((size_t)n_sets, sizeof *n_used);     /* (n_sets) */
    if (!frac || !n_used) {
        free(frac);
        free(n_used);
        return jem_fail(JEM_ERR_NOMEM, "histograms: %d x %d bins", n_sets, nb);
    }
    double fmax_all = 0;
    for (int s = 0; s < n_sets; s++) {
        double *f = frac + (size_t)s * nb;
        int used = 0;
        for (int i = 0; i < sets[s].n; i++) {
            double v = sets[s].v[i];
            if (!isfinite(v) || v < lo || v > hi) continue;
            int b = (int)((v - lo) / (hi - lo) * nb);
            if (b >= nb) b = nb - 1;
            if (b < 0) b = 0;
            f[b] += 1;
            used++;
        }
        n_used[s] = used;
        for (int b = 0; b < nb; b++) {
            if (used) f[b] /= used;
            if (f[b] > fmax_all) fmax_all = f[b];
        }
    }

    jem_status st = start_image(o, out);
    if (st) {
        free(frac);
        free(n_used);
        return st;
    }
    page pg;
    page_begin(out, &pg, pick(o->title, "Score histograms"));
    panel p;
    int ph = pg.bottom - pg.top;
    if (range_set(o->ymin, o->ymax)) make_axis(&p.ay, o->ymin, o->ymax, y_ticks_for(ph), 0);
    else make_axis(&p.ay, 0, fmax_all > 0 ? fmax_all * 1.05 : 1, y_ticks_for(ph), 1);
    panel_place(&p, &pg, pg.top, pg.bottom, p.ay.maxw);
    make_x_axis(&p.ax, lo, hi, p.px1 - p.px0, !range_set(o->xmin, o->xmax));
    panel_grid(out, &p);

    /* fills first, then all outlines on top so none is hidden */
    double *sx = malloc((2 * (size_t)nb + 2) * sizeof *sx), *sy = malloc((2 * (size_t)nb + 2) * sizeof *sy);
    if (!sx || !sy) {
        free(sx);
        free(sy);
        free(frac);
        free(n_used);
        jem_image_free(out);
        return jem_fail(JEM_ERR_NOMEM, "histograms: outline of %d bins", nb);
    }
    double yz = map_y(&p, 0);
    for (int pass = 0; pass < 2; pass++)
        for (int s = 0; s < n_sets; s++) {
            const double *f = frac + (size_t)s * nb;
            uint32_t c = series_color(s);
            int m = 0;
            for (int b = 0; b < nb; b++) {
                double xa = map_x(&p, lo + (hi - lo) * b / nb);
                double xb = map_x(&p, lo + (hi - lo) * (b + 1) / nb);
                double yv = map_y(&p, f[b]);
                if (pass == 0) {
                    if (f[b] > 0)
                        jem_draw_rect(out, (int)lrint(xa), (int)lrint(fmax(yv, p.py0)), (int)lrint(xb),
                                      (int)lrint(fmin(yz, p.py1)), c, 0.28);
                    continue;
                }
                if (b == 0) {
                    sx[m] = xa;
                    sy[m++] = yz;
                }
                sx[m] = xa;
                sy[m++] = yv;
                sx[m] = xb;
                sy[m++] = yv;
                if (b == nb - 1) {
                    sx[m] = xb;
                    sy[m++] = yz;
                }
            }
            if (pass == 1) polyline(out, sx, sy, m, 2, c, 1, 0, p.clip);
        }
    free(sx);
    free(sy);

    legend_item it[32];
    for (int s = 0; s < n_sets; s++) {
        it[s].kind = LEG_BOX;
        it[s].color = series_color(s);
        it[s].alpha = 0.28;
        snprintf(it[s].text, sizeof it[s].text, "%s (n = %d)", pick(sets[s].name, "?"), n_used[s]);
    }
    legend(out, &p, it, n_sets);
    panel_axes(out, &p, 1, pick(o->xlabel, "score"), pick(o->ylabel, "fraction"));
    free(frac);
    free(n_used);
    return JEM_OK;
}

jem_status jem_plot_roc(const jem_roc *curves, const char *const *names, int n_curves, const jem_plot_opts *o,
                        jem_image *out)
{
    jem_plot_opts d = {0};
    if (!o) o = &d;
    memset(out, 0, sizeof *out);
    if (!curves || n_curves <= 0 || n_curves > 32)
        return jem_fail(JEM_ERR_ARG, "roc plot: need 1 to 32 curves (got %d)", n_curves);
    for (int c = 0; c < n_curves; c++)
        if (curves[c].n <= 0 || !curves[c].fpr || !curves[c].tpr)
            return jem_fail(JEM_ERR_ARG, "roc plot: curve %d is empty", c);
    jem_status st = start_image(o, out);
    if (st) return st;
    page pg;
    page_begin(out, &pg, pick(o->title, "ROC curves"));
    panel p;
    int ph = pg.bottom - pg.top;
    if (range_set(o->ymin, o->ymax)) make_axis(&p.ay, o->ymin, o->ymax, y_ticks_for(ph), 0);
    else make_axis(&p.ay, -0.02, 1.02, y_ticks_for(ph), 0);
    panel_place(&p, &pg, pg.top, pg.bottom, p.ay.maxw);
    if (range_set(o->xmin, o->xmax)) make_x_axis(&p.ax, o->xmin, o->xmax, p.px1 - p.px0, 0);
    else make_x_axis(&p.ax, -0.02, 1.02, p.px1 - p.px0, 0);
    panel_grid(out, &p);
    jem_draw_line(out, map_x(&p, 0), map_y(&p, 0), map_x(&p, 1), map_y(&p, 1), 1.5, 0x888888, 1, 6);

    legend_item it[33];
    for (int c = 0; c < n_curves; c++) {
        const jem_roc *r = curves + c;
        double *xs = malloc((size_t)r->n * sizeof *xs), *ys = malloc((size_t)r->n * sizeof *ys);
        if (!xs || !ys) {
            free(xs);
            free(ys);
            jem_image_free(out);
            return jem_fail(JEM_ERR_NOMEM, "roc plot: %d points", r->n);
        }
        for (int i = 0; i < r->n; i++) {
            xs[i] = map_x(&p, r->fpr[i]);
            ys[i] = map_y(&p, r->tpr[i]);
        }
        polyline(out, xs, ys, r->n, 2.5, series_color(c), 1, 0, p.clip);
        free(xs);
        free(ys);
        it[c].kind = LEG_LINE;
        it[c].color = series_color(c);
        it[c].alpha = 1;
        snprintf(it[c].text, sizeof it[c].text, "%s  AUC %.3f", names && names[c] ? names[c] : "curve",
                 jem_roc_area(r));
    }
    it[n_curves].kind = LEG_DASH;
    it[n_curves].color = 0x888888;
    it[n_curves].alpha = 1;
    snprintf(it[n_curves].text, sizeof it[n_curves].text, "chance");
    legend(out, &p, it, n_curves + 1);
    panel_axes(out, &p, 1, pick(o->xlabel, "false positive rate (OOD called in)"),
               pick(o->ylabel, "true positive rate (in-distribution)"));
    return JEM_OK;
}

jem_status jem_plot_lines(const jem_series *series, int n_series, const jem_plot_opts *o, jem_image *out)
{
    jem_plot_opts d = {0};
    if (!o) o = &d;
    memset(out, 0, sizeof *out);
    if (!series || n_series <= 0 || n_series > 32)
        return jem_fail(JEM_ERR_ARG, "line chart: need 1 to 32 series (got %d)", n_series);
    double x0 = INFINITY, x1 = -INFINITY, y0 = INFINITY, y1 = -INFINITY;
    for (int s = 0; s < n_series; s++) {
        if (series[s].n < 0 || (series[s].n > 0 && (!series[s].x || !series[s].y)))
            return jem_fail(JEM_ERR_ARG, "line chart: series %d has no data", s);
        for (int i = 0; i < series[s].n; i++) {
            double x = series[s].x[i], y = series[s].y[i];
            if (!isfinite(x) || !isfinite(y)) continue;
            x0 = fmin(x0, x);
            x1 = fmax(x1, x);
            y0 = fmin(y0, y);
            y1 = fmax(y1, y);
        }
    }
    if (!(x0 <= x1)) {
        x0 = 0;
        x1 = 1;
        y0 = 0;
        y1 = 1;
    }
    jem_status st = start_image(o, out);
    if (st) return st;
    page pg;
    page_begin(out, &pg, pick(o->title, "Line chart"));
    panel p;
    int ph = pg.bottom - pg.top;
    if (range_set(o->ymin, o->ymax)) make_axis(&p.ay, o->ymin, o->ymax, y_ticks_for(ph), 0);
    else make_axis(&p.ay, y0, y1, y_ticks_for(ph), 1);
    panel_place(&p, &pg, pg.top, pg.bottom, p.ay.maxw);
    if (range_set(o->xmin, o->xmax)) make_x_axis(&p.ax, o->xmin, o->xmax, p.px1 - p.px0, 0);
    else make_x_axis(&p.ax, x0, x1, p.px1 - p.px0, 1);
    axis_pad(&p.ax, 0.03);
    axis_pad(&p.ay, 0.03);
    panel_grid(out, &p);

    legend_item it[32];
    int n_leg = 0;
    for (int s = 0; s < n_series; s++) {
        const jem_series *e = series + s;
        uint32_t c = series_color(s);
        if (e->n > 0) {
            double *xs = malloc((size_t)e->n * sizeof *xs), *ys = malloc((size_t)e->n * sizeof *ys);
            if (!xs || !ys) {
                free(xs);
                free(ys);
                jem_image_free(out);
                return jem_fail(JEM_ERR_NOMEM, "line chart: %d points", e->n);
            }
            for (int i = 0; i < e->n; i++) {
                int ok = isfinite(e->x[i]) && isfinite(e->y[i]);
                xs[i] = ok ? map_x(&p, e->x[i]) : NAN;
                ys[i] = ok ? map_y(&p, e->y[i]) : NAN;
            }
            polyline(out, xs, ys, e->n, o->no_markers ? 1.5 : 2.5, c, 1, 0, p.clip);
            for (int i = 0; i < e->n && !o->no_markers; i++)
                if (isfinite(xs[i])) disc(out, xs[i], ys[i], 4, c, p.clip);
            free(xs);
            free(ys);
        }
        if (e->name) {
            it[n_leg].kind = LEG_MARK;
            it[n_leg].color = c;
            it[n_leg].alpha = 1;
            snprintf(it[n_leg].text, sizeof it[n_leg].text, "%s", e->name);
            n_leg++;
        }
    }
    legend(out, &p, it, n_leg);
    panel_axes(out, &p, 1, pick(o->xlabel, "x"), pick(o->ylabel, "y"));
    return JEM_OK;
}

/* ========================================================== image grids */

static uint8_t grid_u8(float v)
{
    if (!(v > -1.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (uint8_t)((v + 1.0f) * 127.5f + 0.5f);
}

jem_status jem_plot_grid(const float *x, int n, int c, int h, int w, int cols, int pad, const char *const *row_labels,
                         int n_labels, jem_image *out)
{
    memset(out, 0, sizeof *out);
    if (n <= 0 || (c != 1 && c != 3) || h <= 0 || w <= 0 || pad < 0)
        return jem_fail(JEM_ERR_ARG, "image grid: bad arguments (n %d, c %d, h %d, w %d, pad %d)", n, c, h, w, pad);
    if (cols <= 0) {
        cols = 1;
        while ((int64_t)cols * cols < n) cols++;
    }
    if (cols > n) cols = n;
    const int rows = (n + cols - 1) / cols;
    /* the labels' column: the widest label at the largest scale (up to 2)
     * whose glyphs fit an image's height, and a margin */
    int scale = h >= 2 * JEM_FONT_H ? 2 : 1, lw = 0;
    for (int r = 0; row_labels && r < rows && r < n_labels; r++)
        if (row_labels[r]) {
            int tw = jem_text_width(row_labels[r], scale);
            lw = tw > lw ? tw : lw;
        }
    const int left = lw ? lw + 2 * (pad > 2 ? pad : 2) : 0;
    const int64_t gw = left + (int64_t)cols * w + (int64_t)(cols + 1) * pad;
    const int64_t gh = (int64_t)rows * h + (int64_t)(rows + 1) * pad;
    if (gw > 16384 || gh > 16384)
        return jem_fail(JEM_ERR_ARG, "image grid: %lldx%lld pixels is too large", (long long)gw, (long long)gh);
    jem_status s = jem_image_new((int)gw, (int)gh, 0x808080, out);
    if (s) return s;
    const size_t hw = (size_t)h * (size_t)w;
    for (int i = 0; i < n; i++) {
        const float *img = x + (size_t)i * (size_t)c * hw; /* (C, H, W) */
        const size_t oy = (size_t)pad + (size_t)(i / cols) * (size_t)(h + pad);
        const size_t ox = (size_t)left + (size_t)pad + (size_t)(i % cols) * (size_t)(w + pad);
        for (int yy = 0; yy < h; yy++) {
            uint8_t *row = out->rgb + ((oy + (size_t)yy) * (size_t)gw + ox) * 3;
            for (int xx = 0; xx < w; xx++)
                for (int k = 0; k < 3; k++)
                    row[(size_t)xx * 3 + k] = grid_u8(img[(c == 3 ? (size_t)k * hw : 0) + (size_t)yy * w + xx]);
        }
    }
    for (int r = 0; row_labels && r < rows && r < n_labels; r++) {
        if (!row_labels[r]) continue;
        const int y = pad + r * (h + pad) + (h - JEM_FONT_ASC * scale) / 2;
        jem_draw_text(out, left - (pad > 2 ? pad : 2) - jem_text_width(row_labels[r], scale), y, row_labels[r], scale,
                      0xffffff, 0);
    }
    return JEM_OK;
}

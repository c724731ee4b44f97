/* Plots and drawing primitives: the font is complete and unambiguous, the
 * primitives put pixels where they should, every plot renders a non-blank
 * image of the requested size, and its PNG reads back through jem_png_read
 * pixel for pixel. Set JEM_PLOT_OUT=DIR to keep the PNG files for viewing. */
#include "jem.h"
#include "eval/eval.h"
#include "tmpdir.h"

#include <unistd.h>

static char outdir[512];
static int keep_files;

static void setup_outdir(void)
{
    const char *o = getenv("JEM_PLOT_OUT");
    if (o && *o) {
        snprintf(outdir, sizeof outdir, "%s", o);
        keep_files = 1;
        return;
    }
    snprintf(outdir, sizeof outdir, "%s", t_tmpdir("test_plot"));
}

static uint32_t px(const jem_image *im, int x, int y)
{
    const uint8_t *p = im->rgb + 3 * ((size_t)y * im->w + x);
    return (uint32_t)p[0] << 16 | (uint32_t)p[1] << 8 | p[2];
}

/* fraction of pixels that are not white, and number of distinct colours
 * (coarsely quantised) */
static double ink_fraction(const jem_image *im, int *n_colours)
{
    static unsigned char seen[4096];
    memset(seen, 0, sizeof seen);
    long ink = 0;
    int nc = 0;
    for (int y = 0; y < im->h; y++)
        for (int x = 0; x < im->w; x++) {
            uint32_t c = px(im, x, y);
            ink += c != 0xffffff;
            int q = (int)(((c >> 20) & 15) << 8 | ((c >> 12) & 15) << 4 | ((c >> 4) & 15));
            if (!seen[q]) {
                seen[q] = 1;
                nc++;
            }
        }
    *n_colours = nc;
    return (double)ink / ((double)im->w * im->h);
}

/* write, read back through the PNG reader, compare every pixel */
static void check_png(const jem_image *im, const char *name)
{
    char path[700];
    snprintf(path, sizeof path, "%s/%s", outdir, name);
    ASSERT_OK(jem_image_write_png(path, im));
    float *x = NULL;
    int c = 0, h = 0, w = 0;
    ASSERT_OK(jem_png_read(path, 0, &x, &c, &h, &w));
    ASSERT_EQ_INT(c, 3);
    ASSERT_EQ_INT(h, im->h);
    ASSERT_EQ_INT(w, im->w);
    if (x && c == 3 && h == im->h && w == im->w) {
        long bad = 0;
        size_t hw = (size_t)h * w;
        for (size_t p = 0; p < hw; p++)
            for (int k = 0; k < 3; k++) {
                long v = lrint((x[k * hw + p] + 1.0) * 0.5 * 255.0);
                bad += v != im->rgb[3 * p + k];
            }
        ASSERT_MSG(bad == 0, "%s: %ld samples differ after the PNG round trip", name, bad);
    }
    free(x);
    if (!keep_files) unlink(path);
}

static void check_plot(const jem_image *im, int w, int h, const char *name)
{
    ASSERT_EQ_INT(im->w, w);
    ASSERT_EQ_INT(im->h, h);
    ASSERT(im->rgb != NULL);
    if (!im->rgb) return;
    int nc;
    double f = ink_fraction(im, &nc);
    ASSERT_MSG(f > 0.02 && f < 0.75, "%s: ink fraction %g", name, f);
    ASSERT_MSG(nc >= 6, "%s: only %d colours", name, nc);
    /* the white border (outer 3 pixels) stays white: nothing drawn off-page */
    long border = 0;
    for (int y = 0; y < h; y++)
        for (int x = 0; x < w; x++)
            if ((x < 3 || y < 3 || x >= w - 3 || y >= h - 3) && px(im, x, y) != 0xffffff) border++;
    ASSERT_MSG(border == 0, "%s: %ld pixels drawn in the border", name, border);
    check_png(im, name);
}

/* ------------------------------------------------------------------ font */

static void test_font(void)
{
    int blank_space = 1;
    for (int r = 0; r < JEM_FONT_H; r++)
        for (int c = 0; c < JEM_FONT_W; c++) blank_space &= !jem_font_pixel(' ', c, r);
    ASSERT(blank_space);
    /* every visible character has ink and differs from every other */
    uint64_t bits[127];
    int empty = 0, dup = 0;
    for (int ch = 33; ch < 127; ch++) {
        uint64_t b = 0;
        for (int r = 0; r < JEM_FONT_H; r++)
            for (int c = 0; c < JEM_FONT_W; c++)
                if (jem_font_pixel(ch, c, r)) b |= 1ull << (r * JEM_FONT_W + c);
        bits[ch] = b;
        if (!b) {
            empty++;
            fprintf(stderr, "glyph '%c' is empty\n", ch);
        }
        for (int o = 33; o < ch; o++)
            if (bits[o] == b) {
                dup++;
                fprintf(stderr, "glyphs '%c' and '%c' are equal\n", o, ch);
            }
    }
    ASSERT_EQ_INT(empty, 0);
    ASSERT_EQ_INT(dup, 0);
    /* capitals and digits stay above the baseline; descenders only on gjpqy,; */
    int below = 0;
    for (int ch = 'A'; ch <= 'Z'; ch++)
        for (int c = 0; c < JEM_FONT_W; c++) below += jem_font_pixel(ch, c, JEM_FONT_ASC);
    for (int ch = '0'; ch <= '9'; ch++)
        for (int c = 0; c < JEM_FONT_W; c++) below += jem_font_pixel(ch, c, JEM_FONT_ASC);
    ASSERT_EQ_INT(below, 0);
    int desc = 0;
    for (int c = 0; c < JEM_FONT_W; c++) desc += jem_font_pixel('g', c, JEM_FONT_ASC + 1);
    ASSERT(desc > 0);
    /* outside the range: drawn as '?'; outside the cell: clear */
    for (int r = 0; r < JEM_FONT_H; r++)
        for (int c = 0; c < JEM_FONT_W; c++) ASSERT_EQ_INT(jem_font_pixel(200, c, r), jem_font_pixel('?', c, r));
    ASSERT_EQ_INT(jem_font_pixel('A', -1, 0) + jem_font_pixel('A', JEM_FONT_W, 0) + jem_font_pixel('A', 0, JEM_FONT_H),
                  0);
}

/* ----------------------------------------------------------- primitives */

static void test_primitives(void)
{
    jem_image im;
    ASSERT_OK(jem_image_new(64, 48, 0xffffff, &im));
    ASSERT_EQ_INT(px(&im, 10, 10), 0xffffff);
    jem_draw_rect(&im, -5, -5, 4, 3, 0x102030, 1); /* clipped */
    ASSERT_EQ_INT(px(&im, 0, 0), 0x102030);
    ASSERT_EQ_INT(px(&im, 3, 2), 0x102030);
    ASSERT_EQ_INT(px(&im, 4, 2), 0xffffff);
    ASSERT_EQ_INT(px(&im, 3, 3), 0xffffff);
    jem_draw_rect(&im, 10, 10, 11, 11, 0x000000, 0.5); /* half over white */
    ASSERT_EQ_INT(px(&im, 10, 10), 0x808080);
    jem_draw_rect(&im, 60, 40, 200, 200, 0xff0000, 1); /* clipped at the far edge */
    ASSERT_EQ_INT(px(&im, 63, 47), 0xff0000);

    /* a horizontal line of width 3 covers rows y-1..y+1, nothing beyond */
    jem_draw_line(&im, 5, 30, 40, 30, 3, 0x0000ff, 1, 0);
    ASSERT_EQ_INT(px(&im, 20, 30), 0x0000ff);
    ASSERT_EQ_INT(px(&im, 20, 29), 0x0000ff);
    ASSERT_EQ_INT(px(&im, 20, 31), 0x0000ff);
    ASSERT_EQ_INT(px(&im, 20, 33), 0xffffff);
    ASSERT_EQ_INT(px(&im, 20, 27), 0xffffff);
    ASSERT_EQ_INT(px(&im, 45, 30), 0xffffff);
    /* dashed: dashes of 4 pixels, gaps of 4 */
    jem_draw_line(&im, 0, 20, 63, 20, 1, 0x000000, 1, 4);
    int on = 0, off = 0;
    for (int x = 2; x < 60; x++) {
        if (px(&im, x, 20) == 0) on++;
        else off++;
    }
    ASSERT_MSG(on > 20 && off > 20, "dashes: %d on, %d off", on, off);
    /* a line far outside does nothing */
    jem_draw_line(&im, -100, -100, -50, -60, 3, 0, 1, 0);
    jem_image_free(&im);
    ASSERT(im.rgb == NULL && im.w == 0);
    jem_image_free(NULL);

    /* text: width, placement, vertical text */
    ASSERT_EQ_INT(jem_text_width("", 2), 0);
    ASSERT_EQ_INT(jem_text_width("A", 1), 5);
    ASSERT_EQ_INT(jem_text_width("abc", 2), 3 * JEM_FONT_ADV * 2 - 2);
    ASSERT_OK(jem_image_new(80, 60, 0xffffff, &im));
    jem_draw_text(&im, 10, 10, "E1", 2, 0x000000, 0);
    int inside = 0, outside = 0;
    int tw = jem_text_width("E1", 2);
    for (int y = 0; y < 60; y++)
        for (int x = 0; x < 80; x++) {
            int in = x >= 10 && x < 10 + tw && y >= 10 && y < 10 + JEM_FONT_ASC * 2;
            if (px(&im, x, y) != 0xffffff) {
                if (in) inside++;
                else outside++;
            }
        }
    ASSERT(inside > 20);
    ASSERT_EQ_INT(outside, 0);
    ASSERT_EQ_INT(px(&im, 10, 10), 0x000000); /* top-left of 'E' */
    jem_image_free(&im);
    ASSERT_OK(jem_image_new(60, 80, 0xffffff, &im));
    jem_draw_text(&im, 10, 70, "E1", 2, 0x000000, 1); /* bottom-left at (10, 70) */
    inside = outside = 0;
    for (int y = 0; y < 80; y++)
        for (int x = 0; x < 60; x++) {
            int in = x >= 10 && x < 10 + JEM_FONT_ASC * 2 && y > 70 - tw && y <= 70;
            if (px(&im, x, y) != 0xffffff) {
                if (in) inside++;
                else outside++;
            }
        }
    ASSERT(inside > 20);
    ASSERT_EQ_INT(outside, 0);
    jem_image_free(&im);
    ASSERT_ERR(jem_image_new(0, 10, 0, &im), JEM_ERR_ARG);
}

/* ------------------------------------------------------------------ plots */

static void test_reliability(jem_rng *rng)
{
    /* an over-confident classifier */
    int N = 5000, K = 10;
    float *p = malloc(sizeof(float) * N * K);
    int32_t *y = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N; i++) {
        double s = 0, z[10];
        for (int k = 0; k < K; k++) {
            z[k] = exp(2.5 * jem_rng_normal_d(rng));
            s += z[k];
        }
        for (int k = 0; k < K; k++) p[i * K + k] = (float)(z[k] / s);
        int a = 0;
        for (int k = 1; k < K; k++)
            if (p[i * K + k] > p[i * K + a]) a = k;
        double conf = p[i * K + a];
        y[i] = jem_rng_uniform_d(rng) < 0.85 * conf ? a : (a + 1) % K;
    }
    jem_calib c;
    jem_calib_bin bins[15];
    ASSERT_OK(jem_calibration(p, y, N, K, 15, &c, bins, NULL));
    jem_image im;
    ASSERT_OK(jem_plot_reliability(bins, 15, c.ece, NULL, &im));
    check_plot(&im, 800, 600, "reliability.png");
    jem_image_free(&im);
    jem_plot_opts o = {0};
    o.width = 480;
    o.height = 400;
    o.title = "Fashion-MNIST test (15 bins)";
    ASSERT_OK(jem_plot_reliability(bins, 15, c.ece, &o, &im));
    check_plot(&im, 480, 400, "reliability_small.png");
    jem_image_free(&im);
    ASSERT_ERR(jem_plot_reliability(bins, 0, c.ece, NULL, &im), JEM_ERR_ARG);
    o.width = 100;
    ASSERT_ERR(jem_plot_reliability(bins, 15, c.ece, &o, &im), JEM_ERR_ARG);
    ASSERT(im.rgb == NULL);
    free(p);
    free(y);
}

static void test_histograms(jem_rng *rng)
{
    int n1 = 10000, n2 = 10000, n3 = 3000;
    double *a = malloc(sizeof(double) * n1), *b = malloc(sizeof(double) * n2), *c = malloc(sizeof(double) * n3);
    for (int i = 0; i < n1; i++) a[i] = 2 + 1.0 * jem_rng_normal_d(rng);
    for (int i = 0; i < n2; i++) b[i] = -1 + 1.5 * jem_rng_normal_d(rng);
    for (int i = 0; i < n3; i++) c[i] = -6 + 0.5 * jem_rng_normal_d(rng);
    a[0] = NAN; /* left out */
    b[0] = -INFINITY;
    jem_sample_set sets[3] = {{"Fashion-MNIST", a, n1}, {"MNIST", b, n2}, {"uniform noise", c, n3}};
    jem_plot_opts o = {0};
    o.title = "log p(x) = logsumexp f(x)";
    o.xlabel = "log p(x) + const";
    jem_image im;
    ASSERT_OK(jem_plot_histograms(sets, 3, &o, &im));
    check_plot(&im, 800, 600, "hist.png");
    jem_image_free(&im);
    /* degenerate: one value only; and a fixed range that cuts the tails */
    double same[5] = {3, 3, 3, 3, 3};
    jem_sample_set one = {"constant", same, 5};
    ASSERT_OK(jem_plot_histograms(&one, 1, NULL, &im));
    check_plot(&im, 800, 600, "hist_constant.png");
    jem_image_free(&im);
    o.xmin = -2;
    o.xmax = 4;
    o.bins = 24;
    o.ymin = 0;
    o.ymax = 0.05; /* lower than the tallest bar: clipped */
    ASSERT_OK(jem_plot_histograms(sets, 2, &o, &im));
    check_plot(&im, 800, 600, "hist_range.png");
    jem_image_free(&im);
    ASSERT_ERR(jem_plot_histograms(sets, 0, NULL, &im), JEM_ERR_ARG);
    free(a);
    free(b);
    free(c);
}

static void test_roc(jem_rng *rng)
{
    int n = 2000;
    double *in = malloc(sizeof(double) * n), *o1 = malloc(sizeof(double) * n), *o2 = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        in[i] = jem_rng_normal_d(rng) + 1.5;
        o1[i] = jem_rng_normal_d(rng);
        o2[i] = round(4 * (jem_rng_normal_d(rng) + 1.2)) / 4; /* ties */
    }
    jem_roc r[3];
    ASSERT_OK(jem_roc_curve(in, n, o1, n, 1, &r[0]));
    ASSERT_OK(jem_roc_curve(in, n, o2, n, 1, &r[1]));
    const double two_in[] = {1}, two_out[] = {0};
    ASSERT_OK(jem_roc_curve(two_in, 1, two_out, 1, 0, &r[2])); /* perfect, 3 points */
    const char *names[3] = {"MNIST", "Interp", "noise"};
    jem_image im;
    ASSERT_OK(jem_plot_roc(r, names, 3, NULL, &im));
    check_plot(&im, 800, 600, "roc.png");
    jem_image_free(&im);
    jem_plot_opts o = {0};
    o.width = 600;
    o.height = 600;
    o.title = "ROC: log p(x)";
    ASSERT_OK(jem_plot_roc(r, NULL, 2, &o, &im));
    check_plot(&im, 600, 600, "roc_square.png");
    jem_image_free(&im);
    for (int i = 0; i < 3; i++) jem_roc_free(&r[i]);
    ASSERT_ERR(jem_plot_roc(r, names, 1, NULL, &im), JEM_ERR_ARG); /* freed: empty */
    free(in);
    free(o1);
    free(o2);
}

static void test_lines(void)
{
    const double eps[] = {0, 0.02, 0.05, 0.1, 0.2};
    const double acc_a[] = {0.907, 0.46, 0.07, 0.0, 0.0};
    const double acc_b[] = {0.673, 0.60, 0.34, 0.06, 0.01};
    const double acc_c[] = {0.80, 0.70, NAN, 0.30, 0.12}; /* a gap */
    jem_series s[3] = {{"softmax", eps, acc_a, 5}, {"JEM", eps, acc_b, 5}, {"JEM + purification", eps, acc_c, 5}};
    jem_plot_opts o = {0};
    o.title = "PGD L-inf robust accuracy";
    o.xlabel = "epsilon ([0, 1] pixel scale)";
    o.ylabel = "robust accuracy";
    o.ymin = 0;
    o.ymax = 1;
    jem_image im;
    ASSERT_OK(jem_plot_lines(s, 3, &o, &im));
    check_plot(&im, 800, 600, "lines.png");
    jem_image_free(&im);
    /* automatic ranges, large values, a series without a name */
    const double x2[] = {1, 10, 100, 1000};
    const double y2[] = {-25000, 12000, 250000, 1.2e6};
    jem_series s2[2] = {{NULL, x2, y2, 4}, {"single point", x2, y2 + 2, 1}};
    ASSERT_OK(jem_plot_lines(s2, 2, NULL, &im));
    check_plot(&im, 800, 600, "lines_auto.png");
    jem_image_free(&im);
    ASSERT_ERR(jem_plot_lines(s, 0, NULL, &im), JEM_ERR_ARG);
}

/* An image grid without labels is jem_png_write_grid's grid in RGB; row
 * labels add a column on the left with text in it and move the cells. */
static void test_grid(jem_rng *rng)
{
    const int n = 5, c = 1, h = 6, w = 4;
    float x[5 * 6 * 4];
    for (int i = 0; i < n * c * h * w; i++) x[i] = 2 * jem_rng_uniform(rng) - 1;
    x[3] = NAN;
    char path[700];
    snprintf(path, sizeof path, "%s/grid.png", outdir);
    ASSERT_OK(jem_png_write_grid(path, x, n, c, h, w, 3, 2));
    float *ref = NULL;
    int rc, rh, rw;
    ASSERT_OK(jem_png_read(path, 1, &ref, &rc, &rh, &rw));
    remove(path);
    jem_image im = {0};
    ASSERT_OK(jem_plot_grid(x, n, c, h, w, 3, 2, NULL, 0, &im));
    ASSERT(ref && im.w == rw && im.h == rh);
    int same = 1;
    for (int yy = 0; ref && yy < im.h && im.w == rw; yy++)
        for (int xx = 0; xx < im.w; xx++) {
            uint32_t p = px(&im, xx, yy);
            int g = (int)lroundf((ref[(size_t)yy * rw + xx] + 1) * 127.5f);
            same &= p == ((uint32_t)g << 16 | (uint32_t)g << 8 | (uint32_t)g);
        }
    ASSERT(same);
    const char *labels[2] = {"Ankle boot", NULL};
    jem_image lab = {0};
    ASSERT_OK(jem_plot_grid(x, n, c, h, w, 3, 2, labels, 2, &lab));
    ASSERT(lab.h == im.h && lab.w > im.w + jem_text_width("Ankle boot", 1));
    int dx = lab.w - im.w, white = 0, cells = 1;
    for (int yy = 0; yy < lab.h; yy++)
        for (int xx = 0; xx < dx; xx++) white += px(&lab, xx, yy) == 0xffffff;
    for (int yy = 0; yy < im.h; yy++)
        for (int xx = 0; xx < im.w; xx++) cells &= px(&lab, xx + dx, yy) == px(&im, xx, yy);
    ASSERT(white > 10 && cells);
    jem_image_free(&lab);
    ASSERT_ERR(jem_plot_grid(x, 0, c, h, w, 3, 2, NULL, 0, &lab), JEM_ERR_ARG);
    ASSERT(lab.rgb == NULL);
    jem_image_free(&lab);
    jem_image_free(&im);
    free(ref);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_plot");
    setup_outdir();
    jem_rng rng;
    jem_rng_seed(&rng, 2024, 0);
    test_font();
    test_primitives();
    test_reliability(&rng);
    test_histograms(&rng);
    test_roc(&rng);
    test_lines();
    test_grid(&rng);
    return t_finish();
}

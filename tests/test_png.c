/* Tests of src/data/pngio.c: reading PNGs written by an independent writer
 * (scripts/make_data_fixtures.py), PNG folders as data sets, bad files, and
 * atomic writing. Run from the project root. */
#include "jem.h"
#include "tmpdir.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#define DATA   FIXTURES "/data"
#define MAXIMG 32

typedef struct {
    char rel[128];
    int c, h, w;
    float *v; /* (C, H, W) expected, in [-1, 1] */
} expected;

static int load_expected(expected *e, int max)
{
    FILE *f = fopen(DATA "/png_expected.txt", "r");
    if (!f) return 0;
    int n = 0;
    char *line = NULL;
    size_t cap = 0;
    while (n < max && getline(&line, &cap, f) > 0) {
        if (line[0] == '#') continue;
        expected *x = &e[n];
        int off = 0;
        if (sscanf(line, "%127s %d %d %d%n", x->rel, &x->c, &x->h, &x->w, &off) != 4) break;
        size_t m = (size_t)x->c * x->h * x->w, got = 0;
        x->v = malloc(sizeof(float) * m);
        char *p = line + off, *end;
        for (; got < m; got++, p = end) {
            x->v[got] = strtof(p, &end);
            if (end == p) break;
        }
        if (got != m) {
            free(x->v);
            break;
        }
        n++;
    }
    free(line);
    fclose(f);
    return n;
}

static char *slurp(const char *path, size_t *n)
{
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *b = malloc(1 << 20);
    *n = fread(b, 1, 1 << 20, f);
    fclose(f);
    return b;
}

/* ---------------------------------------------------------------- reading */

static void test_read_fixtures(expected *e, int ne)
{
    char path[512];
    ASSERT_EQ_INT(ne, 14);
    for (int i = 0; i < ne; i++) {
        snprintf(path, sizeof path, DATA "/png/%s", e[i].rel);
        float *x = NULL;
        int c = 0, h = 0, w = 0;
        jem_status st = jem_png_read(path, 0, &x, &c, &h, &w);
        ASSERT_MSG(st == JEM_OK, "%s: %s", path, jem_last_error());
        if (st) continue;
        ASSERT_MSG(c == e[i].c && h == e[i].h && w == e[i].w, "%s: %dx%dx%d, expected %dx%dx%d", e[i].rel, c, h, w,
                   e[i].c, e[i].h, e[i].w);
        double err = 0;
        size_t m = (size_t)e[i].c * e[i].h * e[i].w, hw = (size_t)h * w;
        if (c == e[i].c)
            for (size_t p = 0; p < m; p++) err = fmax(err, fabs(x[p] - e[i].v[p]));
        ASSERT_MSG(err < 1e-6, "%s: max error %g", e[i].rel, err);
        free(x);

        /* converted on reading: grey -> RGB repeats, RGB -> grey is luma */
        int other = e[i].c == 1 ? 3 : 1;
        ASSERT_OK(jem_png_read(path, other, &x, &c, &h, &w));
        ASSERT_EQ_INT(c, other);
        err = 0;
        for (size_t p = 0; p < hw && x; p++) {
            if (other == 3) {
                for (int k = 0; k < 3; k++) err = fmax(err, fabs(x[k * hw + p] - e[i].v[p]));
            } else {
                double l = 0.299 * e[i].v[p] + 0.587 * e[i].v[hw + p] + 0.114 * e[i].v[2 * hw + p];
                err = fmax(err, fabs(x[p] - l));
            }
        }
        ASSERT_MSG(err < 1e-6, "%s converted to %d channels: max error %g", e[i].rel, other, err);
        free(x);
    }
    /* spot checks of the rules: transparent -> black, 16-bit precision */
    for (int i = 0; i < ne; i++) {
        if (!strcmp(e[i].rel, "b_colour/rgba.png")) ASSERT(e[i].v[0] == -1.0f && e[i].v[1] > -1.0f);
        if (!strcmp(e[i].rel, "a_grey/g16.png")) ASSERT_NEAR(e[i].v[2], (257 * 77 + 1) / 65535.0 * 2 - 1, 1e-7);
    }
    float *x = (float *)1;
    int c;
    ASSERT_ERR(jem_png_read(DATA "/png/a_grey/g8.png", 2, &x, &c, NULL, NULL), JEM_ERR_ARG);
    ASSERT(x == NULL);
}

static void test_folder(expected *e, int ne)
{
    jem_dataset ds;
    jem_status st = jem_dataset_open("png:" DATA "/png", &ds);
    ASSERT_MSG(st == JEM_OK, "%s", jem_last_error());
    if (st) return;
    ASSERT_EQ_INT(ds.n, ne);
    ASSERT_EQ_INT(ds.c, 3); /* some images are colour */
    ASSERT_EQ_INT(ds.h, 4);
    ASSERT_EQ_INT(ds.w, 5);
    ASSERT_EQ_INT(ds.n_classes, 2);
    ASSERT(!strcmp(ds.name, "png:" DATA "/png"));
    size_t hw = 20;
    /* the expected file is sorted like the loader: class, then file name */
    for (int i = 0; i < ds.n && i < ne; i++) {
        ASSERT_EQ_INT(ds.y[i], strncmp(e[i].rel, "a_grey/", 7) ? 1 : 0);
        double err = 0;
        for (int k = 0; k < 3; k++)
            for (size_t p = 0; p < hw; p++) {
                float want = e[i].v[(e[i].c == 3 ? (size_t)k * hw : 0) + p];
                err = fmax(err, fabs(ds.x[(size_t)i * 3 * hw + k * hw + p] - want));
            }
        ASSERT_MSG(err < 1e-6, "image %d (%s): max error %g", i, e[i].rel, err);
    }
    /* class names are the folder names, and each image keeps its file */
    ASSERT(ds.classes && !strcmp(ds.classes[0], "a_grey") && !strcmp(ds.classes[1], "b_colour"));
    ASSERT(ds.files != NULL);
    for (int i = 0; ds.files && i < ds.n && i < ne; i++)
        ASSERT_MSG(!strcmp(ds.files[i], e[i].rel), "image %d: file %s, want %s", i, ds.files[i], e[i].rel);
    /* a class filter keeps the names of the classes kept, and their images' files */
    {
        jem_dataset f;
        ASSERT_OK(jem_dataset_open("png:" DATA "/png:classes=1:relabel", &f));
        ASSERT(f.n_classes == 1 && f.classes && !strcmp(f.classes[0], "b_colour"));
        for (int i = 0; f.files && i < f.n; i++) ASSERT(!strncmp(f.files[i], "b_colour/", 9) && f.y[i] == 0);
        jem_dataset_free(&f);
        ASSERT_OK(jem_dataset_open("png:" DATA "/png:classes=0", &f));
        ASSERT(f.n_classes == 1 && f.classes && !strcmp(f.classes[0], "a_grey") && f.files);
        jem_dataset_free(&f);
    }
    /* a split keeps both with its images; truncation drops the files cut */
    if (ds.n >= 3 && ds.files) {
        jem_dataset tr, va;
        ASSERT_OK(jem_dataset_split(&ds, 2, 3, &tr, &va));
        ASSERT(va.files && tr.files && va.classes && tr.classes && !strcmp(va.classes[1], "b_colour"));
        jem_dataset *parts[2] = {&tr, &va};
        for (int p = 0; p < 2; p++)
            for (int i = 0; parts[p]->files && i < parts[p]->n; i++) {
                int k = 0;
                while (k < ne && strcmp(parts[p]->files[i], e[k].rel)) k++;
                ASSERT_MSG(k < ne && parts[p]->y[i] == (strncmp(e[k].rel, "a_grey/", 7) ? 1 : 0),
                           "image %d: file %s does not match its label", i, parts[p]->files[i]);
            }
        char *first = tr.files ? strdup(tr.files[0]) : NULL;
        jem_dataset_truncate(&tr, 1);
        ASSERT(tr.n == 1 && tr.files && first && !strcmp(tr.files[0], first));
        free(first);
        jem_dataset_free(&tr);
        jem_dataset_free(&va);
    }
    jem_dataset_free(&ds);

    /* a grey-only folder stays grey */
    ASSERT_OK(jem_dataset_open("png:" DATA "/corrupt/../mixed/../png/../png", &ds));
    jem_dataset_free(&ds);
    mkdir(t_path("grey"), 0755);
    mkdir(t_path("grey/z"), 0755);
    mkdir(t_path("grey/y"), 0755);
    mkdir(t_path("grey/.hidden"), 0755);
    size_t n;
    char *b = slurp(DATA "/png/a_grey/g8.png", &n);
    FILE *f = fopen(t_path("grey/z/a.png"), "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    f = fopen(t_path("grey/y/b.PNG"), "wb");
    fwrite(b, 1, n, f);
    fclose(f);
    f = fopen(t_path("grey/y/readme.txt"), "wb");
    fputs("ignored\n", f);
    fclose(f);
    free(b);
    char spec[600];
    snprintf(spec, sizeof spec, "png:%s", t_path("grey"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 2);
    ASSERT_EQ_INT(ds.c, 1);
    ASSERT_EQ_INT(ds.n_classes, 2);
    if (ds.n == 2) {
        ASSERT_EQ_INT(ds.y[0], 0); /* "y" sorts before "z" */
        ASSERT_EQ_INT(ds.y[1], 1);
        ASSERT(memcmp(ds.x, ds.x + hw, hw * sizeof(float)) == 0);
    }
    jem_dataset_free(&ds);
}

static void test_bad(void)
{
    float *x = (float *)1;
    int c, h, w;
    static const struct {
        const char *path, *msg;
        jem_status st;
    } bad[] = {
        {DATA "/bad/truncated.png", DATA "/bad/truncated.png: truncated PNG", JEM_ERR_FORMAT},
        {DATA "/bad/badcrc.png", DATA "/bad/badcrc.png: corrupt PNG", JEM_ERR_FORMAT},
        {DATA "/bad/notpng.png", DATA "/bad/notpng.png: not a PNG file (bad signature)", JEM_ERR_FORMAT},
        {DATA "/bad/none.png", DATA "/bad/none.png: cannot open", JEM_ERR_IO},
        {DATA "/png_expected.txt", "png_expected.txt: not a PNG file", JEM_ERR_FORMAT},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(jem_png_read(bad[i].path, 0, &x, &c, &h, &w), bad[i].st);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i].msg);
        ASSERT(x == NULL);
    }
    FILE *f = fopen(t_path("empty.png"), "wb");
    fclose(f);
    ASSERT_ERR(jem_png_read(t_path("empty.png"), 0, &x, &c, &h, &w), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "empty.png: not a PNG file (empty)");

    jem_dataset ds;
    ASSERT_ERR(jem_dataset_open("png:" DATA "/corrupt", &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), DATA "/corrupt/c0/b.png: truncated PNG");
    ASSERT(ds.x == NULL && ds.n == 0);
    ASSERT_ERR(jem_dataset_open("png:" DATA "/mixed", &ds), JEM_ERR_SHAPE);
    ASSERT_STR_CONTAINS(jem_last_error(), DATA "/mixed/c1/img.png: size 4x5 differs from 5x4");
    ASSERT_STR_CONTAINS(jem_last_error(), "c0/img.png");
    ASSERT_ERR(jem_dataset_open("png:" DATA "/bad", &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), DATA "/bad: no class subfolders");

    char spec[600];
    mkdir(t_path("emptyroot"), 0755);
    snprintf(spec, sizeof spec, "png:%s", t_path("emptyroot"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "emptyroot: no class subfolders");
    mkdir(t_path("emptyroot/cat"), 0755);
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "emptyroot/cat: class folder holds no .png files");
    snprintf(spec, sizeof spec, "png:%s", t_path("noroot"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "noroot: cannot open folder");
}

/* ---------------------------------------------------------------- writing */

static void test_roundtrip(void)
{
    enum { N = 7, C = 3, H = 6, W = 5, COLS = 3, PAD = 2 };
    float x[N * C * H * W];
    jem_rng r;
    jem_rng_seed(&r, 77, 0);
    for (int i = 0; i < N * C * H * W; i++) x[i] = 2 * jem_rng_uniform(&r) - 1;
    x[0] = -1.0f;
    x[1] = 1.0f;
    x[2] = 5.0f;  /* clamped to 1 */
    x[3] = -5.0f; /* clamped to -1 */
    x[4] = NAN;   /* written black */
    const char *p = t_path("grid.png");
    ASSERT_OK(jem_png_write_grid(p, x, N, C, H, W, COLS, PAD));
    float *y = NULL;
    int c, h, w;
    ASSERT_OK(jem_png_read(p, 0, &y, &c, &h, &w));
    int gw = COLS * W + (COLS + 1) * PAD, gh = 3 * H + 4 * PAD;
    ASSERT_EQ_INT(c, 3);
    ASSERT_EQ_INT(w, gw);
    ASSERT_EQ_INT(h, gh);
    if (!y || c != 3 || w != gw || h != gh) {
        free(y);
        return;
    }
    size_t ghw = (size_t)gw * gh;
    double err = 0;
    for (int i = 0; i < N; i++)
        for (int k = 0; k < C; k++)
            for (int yy = 0; yy < H; yy++)
                for (int xx = 0; xx < W; xx++) {
                    float v = x[((i * C + k) * H + yy) * W + xx];
                    if (v != v) v = -1;
                    v = v < -1 ? -1 : v > 1 ? 1 : v;
                    int gy = PAD + (i / COLS) * (H + PAD) + yy, gx = PAD + (i % COLS) * (W + PAD) + xx;
                    err = fmax(err, fabs(y[k * ghw + (size_t)gy * gw + gx] - v));
                }
    ASSERT_MSG(err <= 1.0 / 255 + 1e-6, "grid round trip error %g", err);
    ASSERT(y[0 * ghw + PAD * gw + PAD] == -1.0f && y[PAD * gw + PAD + 1] == 1.0f);
    ASSERT(y[PAD * gw + PAD + 2] == 1.0f && y[PAD * gw + PAD + 3] == -1.0f);
    ASSERT(y[PAD * gw + PAD + 4] == -1.0f);
    float bg = (float)(128 / 255.0 * 2 - 1);
    ASSERT(y[0] == bg && y[ghw - 1] == bg);                /* border, empty cell */
    ASSERT(y[2 * ghw + (size_t)(PAD + H) * gw + 3] == bg); /* between rows */
    free(y);

    /* grey grid; cols <= 0 picks a square-ish grid; overwriting works */
    ASSERT_OK(jem_png_write_grid(p, x, 4, 1, H, W, 0, 0));
    ASSERT_OK(jem_png_read(p, 0, &y, &c, &h, &w));
    ASSERT_EQ_INT(c, 1);
    ASSERT_EQ_INT(w, 2 * W);
    ASSERT_EQ_INT(h, 2 * H);
    free(y);
    ASSERT_EQ_INT(t_count_entries(NULL), 1); /* no temporary files left */

    /* 8-bit RGB: exact */
    uint8_t rgb[4 * 3 * 3];
    for (int i = 0; i < 36; i++) rgb[i] = (uint8_t)(i * 7);
    const char *q = t_path("rgb.png");
    ASSERT_OK(jem_png_write_rgb(q, rgb, 4, 3));
    ASSERT_OK(jem_png_read(q, 3, &y, &c, &h, &w));
    ASSERT(c == 3 && h == 3 && w == 4);
    int bad = 0;
    for (int yy = 0; y && yy < 3; yy++)
        for (int xx = 0; xx < 4; xx++)
            for (int k = 0; k < 3; k++)
                bad += y[k * 12 + yy * 4 + xx] != (float)(rgb[(yy * 4 + xx) * 3 + k] / 255.0 * 2 - 1);
    ASSERT_EQ_INT(bad, 0);
    free(y);
    /* in memory: the bytes of the file */
    uint8_t *mem = NULL;
    size_t mn = 0;
    char *file = NULL;
    size_t fn = 0;
    ASSERT_OK(jem_png_encode_rgb(rgb, 4, 3, &mem, &mn));
    ASSERT_OK(jem_read_file(q, 0, &file, &fn));
    ASSERT(mem && file && mn == fn && mn > 8 && !memcmp(mem, file, mn));
    free(mem);
    free(file);
    mem = (uint8_t *)rgb;
    ASSERT_ERR(jem_png_encode_rgb(rgb, 0, 3, &mem, &mn), JEM_ERR_ARG);
    ASSERT(mem == NULL && mn == 0);
    remove(q);

    ASSERT_ERR(jem_png_write_grid(p, x, 0, 3, H, W, 3, 1), JEM_ERR_ARG);
    ASSERT_ERR(jem_png_write_grid(p, x, N, 2, H, W, 3, 1), JEM_ERR_ARG);
    ASSERT_ERR(jem_png_write_grid(p, x, N, 3, H, W, 3, -1), JEM_ERR_ARG);
    ASSERT_ERR(jem_png_write_grid(p, x, N, 3, H, W, 3, 40000), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "too large");
    ASSERT_ERR(jem_png_write_rgb(q, rgb, 0, 3), JEM_ERR_ARG);
    ASSERT_ERR(jem_png_write_grid(t_path("nodir/g.png"), x, N, 3, H, W, 3, 1), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "nodir/g.png");
    remove(p);
}

/* A write that fails half way (file size limit) leaves the old file as it
 * was and no temporary file behind. */
static void test_atomic(void)
{
    const char *p = t_path("keep.png");
    float small[3 * 4 * 4];
    for (int i = 0; i < 48; i++) small[i] = (float)i / 48;
    ASSERT_OK(jem_png_write_grid(p, small, 1, 3, 4, 4, 1, 0));
    size_t n0, n1;
    char *before = slurp(p, &n0);

    enum { S = 200 };
    float *big = malloc(sizeof(float) * 3 * S * S);
    jem_rng r;
    jem_rng_seed(&r, 3, 0);
    for (int i = 0; i < 3 * S * S; i++) big[i] = 2 * jem_rng_uniform(&r) - 1;
    struct rlimit old, lim;
    getrlimit(RLIMIT_FSIZE, &old);
    lim = old;
    lim.rlim_cur = 4096;
    void (*prev)(int) = signal(SIGXFSZ, SIG_IGN);
    int limited = setrlimit(RLIMIT_FSIZE, &lim) == 0;
    jem_status st = jem_png_write_grid(p, big, 1, 3, S, S, 1, 0);
    if (limited) setrlimit(RLIMIT_FSIZE, &old);
    signal(SIGXFSZ, prev);
    ASSERT(limited);
    ASSERT_ERR(st, JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "keep.png");
    char *after = slurp(p, &n1);
    ASSERT(before && after && n0 == n1 && memcmp(before, after, n0) == 0);
    ASSERT_EQ_INT(t_count_entries(NULL), 1);
    free(before);
    free(after);

    /* without the limit the same write succeeds */
    ASSERT_OK(jem_png_write_grid(p, big, 1, 3, S, S, 1, 0));
    float *y = NULL;
    int c, h, w;
    ASSERT_OK(jem_png_read(p, 0, &y, &c, &h, &w));
    ASSERT(c == 3 && h == S && w == S);
    free(y);
    free(big);
    remove(p);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_png");
    t_tmpdir("test_png");
    expected e[MAXIMG];
    int ne = load_expected(e, MAXIMG);
    test_read_fixtures(e, ne);
    test_folder(e, ne);
    test_bad();
    t_tmpdir("test_png"); /* empty: the writing tests count its files */
    test_roundtrip();
    test_atomic();
    for (int i = 0; i < ne; i++) free(e[i].v);
    return t_finish();
}

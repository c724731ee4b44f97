/* Tests of src/data: IDX (Fashion-MNIST, MNIST, hand-made files), CIFAR,
 * data set specs, synthetic sets, split, conform, truncate, augmentation.
 * Run from the project root. */
#include "jem.h"
#include "tmpdir.h"

#include <limits.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

static void write_bytes(const char *path, const void *data, size_t n)
{
    FILE *f = fopen(path, "wb");
    if (!f || fwrite(data, 1, n, f) != n || fclose(f) != 0) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static void write_gz(const char *path, const void *data, size_t n)
{
    gzFile g = gzopen(path, "wb");
    if (!g || gzwrite(g, data, (unsigned)n) != (int)n || gzclose(g) != Z_OK) {
        fprintf(stderr, "cannot write %s\n", path);
        exit(2);
    }
}

static size_t put_be32(uint8_t *p, uint32_t v)
{
    p[0] = (uint8_t)(v >> 24);
    p[1] = (uint8_t)(v >> 16);
    p[2] = (uint8_t)(v >> 8);
    p[3] = (uint8_t)v;
    return 4;
}

/* Build an IDX file image in buf: magic, dims, data (+ extra bytes). */
static size_t make_idx(uint8_t *buf, uint32_t magic, const uint32_t *dims, int nd, const uint8_t *data, size_t n)
{
    size_t k = put_be32(buf, magic);
    for (int d = 0; d < nd; d++) k += put_be32(buf + k, dims[d]);
    memcpy(buf + k, data, n);
    return k + n;
}

/* A small valid pair: 3 images 2x3, labels {0, 4, 2}, at PREFIX-... */
static const uint8_t small_px[18] = {0, 255, 128, 1, 2, 3, 10, 20, 30, 40, 50, 60, 255, 254, 253, 252, 251, 0};
static const uint8_t small_lab[3] = {0, 4, 2};

static void write_small_pair(const char *prefix, int gz, int bad_label)
{
    uint8_t buf[256];
    char p[512];
    uint32_t di[3] = {3, 2, 3}, dl[1] = {3};
    uint8_t lab[3] = {small_lab[0], small_lab[1], (uint8_t)(bad_label ? 10 : small_lab[2])};
    size_t n = make_idx(buf, 0x803, di, 3, small_px, 18);
    snprintf(p, sizeof p, "%s-images-idx3-ubyte%s", prefix, gz ? ".gz" : "");
    if (gz) write_gz(p, buf, n);
    else write_bytes(p, buf, n);
    n = make_idx(buf, 0x801, dl, 1, lab, 3);
    snprintf(p, sizeof p, "%s-labels-idx1-ubyte%s", prefix, gz ? ".gz" : "");
    if (gz) write_gz(p, buf, n);
    else write_bytes(p, buf, n);
}

static void check_small(const jem_dataset *ds, int n_classes)
{
    ASSERT_EQ_INT(ds->n, 3);
    ASSERT_EQ_INT(ds->c, 1);
    ASSERT_EQ_INT(ds->h, 2);
    ASSERT_EQ_INT(ds->w, 3);
    ASSERT_EQ_INT(ds->n_classes, n_classes);
    if (ds->n != 3) return;
    int bad = 0;
    for (int i = 0; i < 18; i++) bad += fabs(ds->x[i] - (small_px[i] / 255.0 * 2 - 1)) > 1e-6;
    ASSERT_EQ_INT(bad, 0);
    ASSERT(ds->x[0] == -1.0f && ds->x[1] == 1.0f);
    for (int i = 0; i < 3; i++) ASSERT_EQ_INT(ds->y[i], small_lab[i]);
}

/* ------------------------------------------------------------- real sets */

typedef struct {
    char name[32];
    long n, h, w, label_sum, last_label;
    int first[10];
    double first_sum, last_sum, all_sum;
} idx_stats;

static int read_stats(const char *want, idx_stats *s)
{
    FILE *f = fopen(FIXTURES "/data/idx_stats.txt", "r");
    if (!f) return 0;
    char line[512];
    int ok = 0;
    while (fgets(line, sizeof line, f)) {
        if (line[0] == '#') continue;
        char labels[64];
        if (sscanf(line, "%31s %ld %ld %ld %63s %ld %ld %lf %lf %lf", s->name, &s->n, &s->h, &s->w, labels,
                   &s->label_sum, &s->last_label, &s->first_sum, &s->last_sum, &s->all_sum) != 10)
            continue;
        if (strcmp(s->name, want)) continue;
        char *save = NULL, *t = strtok_r(labels, ",", &save);
        for (int i = 0; i < 10 && t; i++, t = strtok_r(NULL, ",", &save)) s->first[i] = atoi(t);
        ok = 1;
        break;
    }
    fclose(f);
    return ok;
}

static void check_real(const char *spec, int balanced)
{
    idx_stats s;
    ASSERT_MSG(read_stats(spec, &s), "no stats for %s in idx_stats.txt", spec);
    jem_dataset ds;
    jem_status st = jem_dataset_open(spec, &ds);
    ASSERT_MSG(st == JEM_OK, "%s: %s", spec, jem_last_error());
    if (st) return;
    ASSERT_EQ_INT(ds.n, s.n);
    ASSERT_EQ_INT(ds.c, 1);
    ASSERT_EQ_INT(ds.h, 28);
    ASSERT_EQ_INT(ds.w, 28);
    ASSERT_EQ_INT(ds.n_classes, 10);
    ASSERT(strcmp(ds.name, spec) == 0);
    for (int i = 0; i < 10; i++) ASSERT_EQ_INT(ds.y[i], s.first[i]);
    ASSERT_EQ_INT(ds.y[ds.n - 1], s.last_label);
    long count[10] = {0}, lsum = 0, out = 0;
    for (int i = 0; i < ds.n; i++) {
        if (ds.y[i] < 0 || ds.y[i] > 9) {
            out++;
            continue;
        }
        count[ds.y[i]]++;
        lsum += ds.y[i];
    }
    ASSERT_EQ_INT(out, 0);
    ASSERT_EQ_INT(lsum, s.label_sum);
    if (balanced)
        for (int k = 0; k < 10; k++) ASSERT_EQ_INT(count[k], ds.n / 10);
    size_t hw = 28 * 28, N = (size_t)ds.n * hw;
    double first = 0, last = 0, all = 0;
    float lo = 2, hi = -2;
    for (size_t p = 0; p < hw; p++) first += ds.x[p];
    for (size_t p = 0; p < hw; p++) last += ds.x[N - hw + p];
    for (size_t p = 0; p < N; p++) {
        all += ds.x[p];
        if (ds.x[p] < lo) lo = ds.x[p];
        if (ds.x[p] > hi) hi = ds.x[p];
    }
    /* sum of v / 255 * 2 - 1 over the bytes = 2 S / 255 - count */
    ASSERT_NEAR(first, 2 * s.first_sum / 255 - (double)hw, 1e-3);
    ASSERT_NEAR(last, 2 * s.last_sum / 255 - (double)hw, 1e-3);
    ASSERT_NEAR(all / (double)N, (2 * s.all_sum / 255 - (double)N) / (double)N, 1e-6);
    ASSERT(lo == -1.0f && hi == 1.0f);
    jem_dataset_free(&ds);
    ASSERT(ds.x == NULL && ds.n == 0);
}

static void test_real_sets(void)
{
    check_real("fmnist:train", 1);
    check_real("fmnist:test", 1);
    check_real("mnist:test", 0);
}

/* The named sets come from the folders given to jem_data_set_dir, and only
 * from there: unset, opening one fails naming the call. */
static void test_dataset_dirs(void)
{
    jem_dataset ds;
    char *mn_real = jem_data_dir("mnist") ? strdup(jem_data_dir("mnist")) : NULL;
    char *fm_real = jem_data_dir("fmnist") ? strdup(jem_data_dir("fmnist")) : NULL;
    ASSERT_OK(jem_data_set_dir("mnist", NULL));
    ASSERT(jem_data_dir("mnist") == NULL);
    ASSERT_ERR(jem_dataset_open("mnist:test", &ds), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "jem_data_set_dir");
    ASSERT_ERR(jem_dataset_check("mnist:test", 0, 0, 0), JEM_ERR_IO);
    ASSERT_ERR(jem_data_set_dir("cifar", "/tmp"), JEM_ERR_ARG);

    mkdir(t_path("mn"), 0755);
    write_small_pair(t_path("mn/t10k"), 1, 0);
    ASSERT_OK(jem_data_set_dir("mnist", t_path("mn")));
    ASSERT_OK(jem_dataset_check("mnist:test", 0, 0, 0));
    ASSERT_OK(jem_dataset_open("mnist:test", &ds));
    check_small(&ds, 10);
    ASSERT(ds.classes != NULL && !strcmp(ds.classes[7], "7"));
    jem_dataset_free(&ds);
    ASSERT_ERR(jem_dataset_check("mnist:train", 0, 0, 0), JEM_ERR_IO);
    ASSERT_ERR(jem_dataset_open("mnist:train", &ds), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "mn/train-images-idx3-ubyte");

    /* fixed 10 classes: label 10 is out of range */
    mkdir(t_path("fm"), 0755);
    write_small_pair(t_path("fm/train"), 0, 0);
    write_small_pair(t_path("fm/t10k"), 0, 1);
    ASSERT_OK(jem_data_set_dir("fmnist", t_path("fm")));
    ASSERT_OK(jem_dataset_open("fmnist:train", &ds));
    check_small(&ds, 10);
    ASSERT(ds.classes != NULL && !strcmp(ds.classes[9], "Ankle boot"));
    jem_dataset_free(&ds);
    ASSERT_OK(jem_dataset_check("fmnist:test", 0, 0, 0)); /* the files exist: their contents are not read */
    ASSERT_ERR(jem_dataset_open("fmnist:test", &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "fm/t10k-labels-idx1-ubyte");
    ASSERT_STR_CONTAINS(jem_last_error(), "label 10 at index 2");
    ASSERT(ds.x == NULL && ds.n == 0);
    ASSERT_OK(jem_data_set_dir("fmnist", fm_real));
    ASSERT_OK(jem_data_set_dir("mnist", mn_real));
    free(fm_real);
    free(mn_real);
}

/* -------------------------------------------------------------------- IDX */

static void test_idx(void)
{
    jem_dataset ds;
    char spec[1024];
    uint8_t buf[4096];
    uint32_t di[3] = {3, 2, 3}, dl[1] = {3};

    /* plain by prefix; n_classes = max label + 1 */
    write_small_pair(t_path("plain"), 0, 0);
    snprintf(spec, sizeof spec, "idx:%s", t_path("plain"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    check_small(&ds, 5);
    ASSERT(strcmp(ds.name, spec) == 0);
    jem_dataset_free(&ds);

    /* gzip by prefix (only .gz present), and by explicit names */
    write_small_pair(t_path("gz"), 1, 0);
    snprintf(spec, sizeof spec, "idx:%s", t_path("gz"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    check_small(&ds, 5);
    jem_dataset_free(&ds);
    snprintf(spec, sizeof spec, "idx:%s,%s", t_path("gz-images-idx3-ubyte.gz"), t_path("plain-labels-idx1-ubyte"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    check_small(&ds, 5);
    jem_dataset_free(&ds);

    const char *lab = t_path("plain-labels-idx1-ubyte");
    const char *img = t_path("bad-images");
#define OPEN_BAD(want, ...)                                 \
    do {                                                    \
        snprintf(spec, sizeof spec, "idx:%s,%s", img, lab); \
        ASSERT_ERR(jem_dataset_open(spec, &ds), want);      \
        ASSERT_STR_CONTAINS(jem_last_error(), __VA_ARGS__); \
        ASSERT(ds.x == NULL && ds.y == NULL && ds.n == 0);  \
    } while (0)

    /* truncated: one pixel byte short */
    size_t n = make_idx(buf, 0x803, di, 3, small_px, 18);
    write_bytes(img, buf, n - 1);
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: truncated");
    /* trailing data */
    buf[n] = 7;
    write_bytes(img, buf, n + 1);
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: trailing data");
    /* header cut short */
    write_bytes(img, buf, 9);
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: truncated");
    write_bytes(img, buf, 0);
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: truncated: too short");
    /* wrong magic */
    n = make_idx(buf, 0x804, di, 3, small_px, 18);
    write_bytes(img, buf, n);
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: bad magic 0x00000804");
    n = make_idx(buf, 0x0D03, di, 3, small_px, 18);
    write_bytes(img, buf, n);
    OPEN_BAD(JEM_ERR_FORMAT, "element type 0x0d");
    /* a labels file where images belong */
    write_bytes(img, buf, make_idx(buf, 0x801, dl, 1, small_lab, 3));
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: bad magic 0x00000801");
    /* zero and absurd dimensions: refused before allocating */
    uint32_t dz[3] = {3, 0, 3}, dbig[3] = {100000, 1000, 1000};
    write_bytes(img, buf, make_idx(buf, 0x803, dz, 3, small_px, 0));
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: dimension 1 is 0");
    write_bytes(img, buf, make_idx(buf, 0x803, dbig, 3, small_px, 18));
    OPEN_BAD(JEM_ERR_FORMAT, "bad-images: header declares more than");
    /* count mismatch: 2 images, 3 labels */
    uint32_t d2[3] = {2, 3, 3};
    write_bytes(img, buf, make_idx(buf, 0x803, d2, 3, small_px, 18));
    OPEN_BAD(JEM_ERR_FORMAT, "3 labels, but");
    ASSERT_STR_CONTAINS(jem_last_error(), "plain-labels-idx1-ubyte");
    /* missing file */
    img = t_path("no-such-file");
    OPEN_BAD(JEM_ERR_IO, "no-such-file: cannot open");
    snprintf(spec, sizeof spec, "idx:%s", t_path("nothing"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "nothing-images-idx3-ubyte[.gz]");

    /* gzip: truncated stream and corrupt stream */
    img = t_path("cut.gz");
    uint8_t big[4096];
    uint32_t dbg[3] = {3, 20, 20};
    for (int i = 0; i < 2000; i++) big[i] = (uint8_t)(i * 7 + (i >> 3));
    n = make_idx(buf, 0x803, dbg, 3, big, 1200);
    write_gz(img, buf, n);
    FILE *f = fopen(img, "rb");
    uint8_t gz[8192];
    size_t gn = f ? fread(gz, 1, sizeof gz, f) : 0;
    if (f) fclose(f);
    ASSERT(gn > 100);
    write_bytes(img, gz, gn - 6); /* CRC/length trailer cut */
    OPEN_BAD(JEM_ERR_FORMAT, "cut.gz: corrupt or truncated gzip data");
    write_bytes(img, gz, gn / 2); /* cut in the middle of the deflate data */
    OPEN_BAD(JEM_ERR_FORMAT, "cut.gz");
    gz[gn / 2] ^= 0x55;
    gz[gn / 2 + 1] ^= 0xAA;
    write_bytes(img, gz, gn);
    OPEN_BAD(JEM_ERR_FORMAT, "cut.gz");

    /* labels: truncated labels file */
    img = t_path("plain-images-idx3-ubyte");
    lab = t_path("bad-labels");
    write_bytes(lab, buf, make_idx(buf, 0x801, dl, 1, small_lab, 3) - 1);
    OPEN_BAD(JEM_ERR_FORMAT, "bad-labels: truncated");
#undef OPEN_BAD
}

/* A gzip file of two members (valid, read as one stream) whose trailer does
 * not confirm the declared size: the pixels buffer grows while reading. */
static void test_idx_multimember(void)
{
    const uint32_t n = t_quick() ? 5000000 : 20000000; /* 1x1 images */
    uint8_t *b = malloc(n + 16);
    for (uint32_t i = 0; i < n; i++) b[16 + i] = (uint8_t)(i % 251);
    uint32_t d[3] = {n, 1, 1};
    put_be32(b, 0x803);
    for (int k = 0; k < 3; k++) put_be32(b + 4 + 4 * k, d[k]);
    const char *img = t_path("mm-images.gz"), *lab = t_path("mm-labels");
    size_t half = (n + 16) / 2;
    gzFile g = gzopen(img, "wb");
    ASSERT(g && gzwrite(g, b, (unsigned)half) == (int)half && gzclose(g) == Z_OK);
    g = gzopen(img, "ab");
    ASSERT(g && gzwrite(g, b + half, (unsigned)(n + 16 - half)) == (int)(n + 16 - half) && gzclose(g) == Z_OK);
    for (uint32_t i = 0; i < n; i++) b[8 + i] = (uint8_t)(i % 7);
    put_be32(b, 0x801);
    put_be32(b + 4, n);
    write_bytes(lab, b, n + 8);
    free(b);
    char spec[1100];
    snprintf(spec, sizeof spec, "idx:%s,%s", img, lab);
    jem_dataset ds;
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, n);
    ASSERT_EQ_INT(ds.n_classes, 7);
    if (ds.n == (int)n) {
        int bad = 0;
        for (uint32_t i = 0; i < n; i += 9973)
            bad += ds.x[i] != (float)((i % 251) / 255.0 * 2 - 1) || ds.y[i] != (int)(i % 7);
        ASSERT_EQ_INT(bad, 0);
        ASSERT(ds.x[n - 1] == (float)(((n - 1) % 251) / 255.0 * 2 - 1));
    }
    jem_dataset_free(&ds);
    remove(img);
    remove(lab);
}

/* ------------------------------------------------------------------ CIFAR */

static void write_cifar(const char *path, int nrec, int nlab, int first_label, int bad_size)
{
    size_t rec = (size_t)nlab + 3072;
    uint8_t *b = malloc(rec * (size_t)nrec + 1);
    for (int r = 0; r < nrec; r++) {
        uint8_t *p = b + (size_t)r * rec;
        if (nlab == 2) p[0] = (uint8_t)((first_label + r) % 20);
        p[nlab - 1] = (uint8_t)(first_label + r);
        for (int k = 0; k < 3072; k++) p[nlab + k] = (uint8_t)(k + 3 * r);
    }
    write_bytes(path, b, rec * (size_t)nrec + (bad_size ? 1 : 0));
    free(b);
}

static void check_cifar_px(const jem_dataset *ds, int i, int r)
{
    int bad = 0;
    for (int k = 0; k < 3072; k++) bad += ds->x[(size_t)i * 3072 + k] != (float)((uint8_t)(k + 3 * r) / 255.0 * 2 - 1);
    ASSERT_EQ_INT(bad, 0);
}

static void test_cifar(void)
{
    jem_dataset ds;
    char spec[1024], p[512];
    mkdir(t_path("c10"), 0755);
    for (int b = 1; b <= 5; b++) {
        snprintf(p, sizeof p, "%s/data_batch_%d.bin", t_path("c10"), b);
        write_cifar(p, 2, 1, 2 * (b - 1), 0);
    }
    write_cifar(t_path("c10/test_batch.bin"), 3, 1, 7, 0);
    snprintf(spec, sizeof spec, "cifar10:%s", t_path("c10"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 10);
    ASSERT_EQ_INT(ds.c, 3);
    ASSERT_EQ_INT(ds.h, 32);
    ASSERT_EQ_INT(ds.w, 32);
    ASSERT_EQ_INT(ds.n_classes, 10);
    for (int i = 0; i < ds.n && ds.n == 10; i++) ASSERT_EQ_INT(ds.y[i], i);
    if (ds.n == 10) {
        check_cifar_px(&ds, 0, 0);
        check_cifar_px(&ds, 9, 1);
    }
    ASSERT(ds.classes && !strcmp(ds.classes[0], "airplane") && !strcmp(ds.classes[9], "truck"));
    jem_dataset_free(&ds);
    /* names from the archive's batches.meta.txt when it is there */
    const char *meta = "a\nb\nc\nd\ne\nf\ng\nh\ni\nzebra\n\n";
    write_bytes(t_path("c10/batches.meta.txt"), meta, strlen(meta));
    ASSERT_OK(jem_dataset_check(spec, 0, 0, 0));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT(ds.classes && !strcmp(ds.classes[9], "zebra"));
    jem_dataset_free(&ds);
    remove(t_path("c10/batches.meta.txt"));
    snprintf(spec, sizeof spec, "cifar10:%s:test", t_path("c10"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 3);
    if (ds.n == 3) {
        ASSERT_EQ_INT(ds.y[2], 9);
        check_cifar_px(&ds, 2, 2);
    }
    jem_dataset_free(&ds);
    /* the folder the archive unpacks into */
    mkdir(t_path("c10up"), 0755);
    ASSERT(rename(t_path("c10"), t_path("c10up/cifar-10-batches-bin")) == 0);
    snprintf(spec, sizeof spec, "cifar10:%s:train", t_path("c10up"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 10);
    jem_dataset_free(&ds);
    ASSERT(rename(t_path("c10up/cifar-10-batches-bin"), t_path("c10")) == 0);

    /* wrong size, label out of range, missing batch */
    write_cifar(t_path("c10/data_batch_3.bin"), 2, 1, 0, 1);
    snprintf(spec, sizeof spec, "cifar10:%s", t_path("c10"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "c10/data_batch_3.bin: size 6147 bytes is not a");
    write_cifar(t_path("c10/data_batch_3.bin"), 2, 1, 9, 0);
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "c10/data_batch_3.bin: record 1: label 10 out of range");
    ASSERT(ds.x == NULL && ds.n == 0);
    remove(t_path("c10/data_batch_3.bin"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "c10/data_batch_3.bin");
    write_bytes(t_path("c10/test_batch.bin"), "", 0);
    snprintf(spec, sizeof spec, "cifar10:%s:test", t_path("c10"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "test_batch.bin: size 0 bytes");

    /* CIFAR-100: fine labels */
    mkdir(t_path("c100"), 0755);
    write_cifar(t_path("c100/train.bin"), 4, 2, 96, 0);
    write_cifar(t_path("c100/test.bin"), 2, 2, 50, 0);
    snprintf(spec, sizeof spec, "cifar100:%s", t_path("c100"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 4);
    ASSERT_EQ_INT(ds.n_classes, 100);
    if (ds.n == 4) {
        ASSERT_EQ_INT(ds.y[3], 99);
        check_cifar_px(&ds, 3, 3);
    }
    jem_dataset_free(&ds);
    snprintf(spec, sizeof spec, "cifar100:%s:test", t_path("c100"));
    ASSERT_OK(jem_dataset_open(spec, &ds));
    ASSERT_EQ_INT(ds.n, 2);
    if (ds.n == 2) ASSERT_EQ_INT(ds.y[1], 51);
    jem_dataset_free(&ds);
    write_cifar(t_path("c100/train.bin"), 5, 2, 96, 0);
    snprintf(spec, sizeof spec, "cifar100:%s", t_path("c100"));
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "c100/train.bin: record 4: label 100 out of range");
    write_cifar(t_path("c100/train.bin"), 1, 1, 0, 0); /* a CIFAR-10 record */
    ASSERT_ERR(jem_dataset_open(spec, &ds), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "3074-byte CIFAR-100 record");
}

/* ------------------------------------------------------------------ specs */

static void test_specs(void)
{
    jem_dataset ds;
    static const struct {
        const char *spec, *msg;
    } bad[] = {
        {"foo:bar", "foo:bar: unknown data set spec"},
        {"fmnist", "want fmnist:train or fmnist:test"},
        {"fmnist:valid", "want fmnist:train or fmnist:test"},
        {"mnist:", "want mnist:train or mnist:test"},
        {"idx:", "want idx:PREFIX"},
        {"idx:a,", "want idx:IMAGES,LABELS"},
        {"png:", "want png:ROOT"},
        {"cifar10:", "want cifar10:DIR"},
        {"cifar100::test", "want cifar100:DIR"},
        {"noise:uniform:100", "needs an image shape"},
        {"noise:pink:10:1x2x2", "unknown noise kind"},
        {"noise:uniform:10:1x2x", "cannot parse '1x2x'"},
        {"noise:uniform:0:1x2x2", "0 images: N must be 1 to"},
        {"noise:uniform:10:1x2x2:seed=x", "cannot parse 'seed=x'"},
        {"interp:", "want interp:SPEC"},
        {"interp:bogus:3", "bogus: unknown data set spec"},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        ASSERT_ERR(jem_dataset_open(bad[i].spec, &ds), JEM_ERR_ARG);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i].msg);
        ASSERT(ds.x == NULL && ds.n == 0);
        /* checking a spec finds the same faults without reading anything */
        ASSERT_ERR(jem_dataset_check(bad[i].spec, 0, 0, 0), JEM_ERR_ARG);
        ASSERT_STR_CONTAINS(jem_last_error(), bad[i].msg);
    }
    /* a model's shape for noise sets that name none; the errors name the
     * spec as given */
    ASSERT_OK(jem_dataset_check("noise:uniform:100", 1, 2, 2));
    ASSERT_OK(jem_dataset_open_as("noise:gaussian:7", 3, 2, 2, &ds));
    ASSERT(ds.n == 7 && ds.c == 3 && ds.h == 2 && ds.w == 2 && !strcmp(ds.name, "noise:gaussian:7"));
    jem_dataset_free(&ds);
    ASSERT_ERR(jem_dataset_open_as("noise:uniform:0", 1, 28, 28, &ds), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "noise:uniform:0: 0 images");
    ASSERT(strstr(jem_last_error(), "1x28x28") == NULL);
    ASSERT_ERR(jem_dataset_open_as("noise:uniform:3:1x4x4", 1, 28, 28, &ds), JEM_ERR_SHAPE);
    ASSERT_ERR(jem_dataset_check("png:/nonexistent/jem", 0, 0, 0), JEM_ERR_IO);
    ASSERT_ERR(jem_dataset_open("interp:interp:interp:interp:interp:interp:noise:uniform:4:1x2x2", &ds), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "nested too deeply");
    ASSERT_ERR(jem_dataset_open("png:/nonexistent/jem", &ds), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "/nonexistent/jem");
}

/* -------------------------------------------------------------- synthetic */

static void test_synthetic(void)
{
    jem_dataset a, b;
    ASSERT_OK(jem_dataset_open("noise:uniform:1000:1x28x28", &a));
    ASSERT_EQ_INT(a.n, 1000);
    ASSERT_EQ_INT(a.c, 1);
    ASSERT_EQ_INT(a.h, 28);
    ASSERT_EQ_INT(a.w, 28);
    ASSERT_EQ_INT(a.n_classes, 0);
    ASSERT(strcmp(a.name, "noise:uniform:1000:1x28x28") == 0);
    size_t N = (size_t)a.n * 784;
    double s = 0, s2 = 0;
    int out = 0, unl = 0;
    for (size_t p = 0; p < N; p++) {
        s += a.x[p];
        s2 += (double)a.x[p] * a.x[p];
        out += a.x[p] < -1 || a.x[p] >= 1;
    }
    for (int i = 0; i < a.n; i++) unl += a.y[i] == -1;
    ASSERT_EQ_INT(out, 0);
    ASSERT_EQ_INT(unl, a.n);
    ASSERT_NEAR(s / N, 0, 0.005);
    ASSERT_NEAR(s2 / N, 1.0 / 3, 0.005);
    /* reproducible; seed changes it */
    ASSERT_OK(jem_dataset_open("noise:uniform:1000:1x28x28", &b));
    ASSERT(memcmp(a.x, b.x, N * sizeof(float)) == 0);
    jem_dataset_free(&b);
    ASSERT_OK(jem_dataset_open("noise:uniform:1000:1x28x28:seed=7", &b));
    ASSERT(memcmp(a.x, b.x, N * sizeof(float)) != 0);
    jem_dataset_free(&b);
    jem_dataset_free(&a);

    /* gaussian N(0,1) clipped: P(|z| >= 1) = 0.3173 */
    ASSERT_OK(jem_dataset_open("noise:gaussian:200:3x16x16", &a));
    ASSERT_EQ_INT(a.c, 3);
    N = (size_t)a.n * 3 * 256;
    size_t clipped = 0;
    out = 0;
    s = 0;
    for (size_t p = 0; p < N; p++) {
        clipped += a.x[p] == 1.0f || a.x[p] == -1.0f;
        out += a.x[p] < -1 || a.x[p] > 1;
        s += a.x[p];
    }
    ASSERT_EQ_INT(out, 0);
    ASSERT_NEAR((double)clipped / N, 0.3173, 0.01);
    ASSERT_NEAR(s / N, 0, 0.01);
    jem_dataset_free(&a);

    /* constant: one value per image; HxW shape means one channel;
     * default N is 10000 */
    ASSERT_OK(jem_dataset_open("noise:constant:8x9", &a));
    ASSERT_EQ_INT(a.n, 10000);
    ASSERT_EQ_INT(a.c, 1);
    ASSERT_EQ_INT(a.h, 8);
    ASSERT_EQ_INT(a.w, 9);
    int nonconst = 0;
    double cs = 0;
    for (int i = 0; i < a.n; i++) {
        const float *x = a.x + (size_t)i * 72;
        for (int p = 1; p < 72; p++) nonconst += x[p] != x[0];
        cs += x[0];
    }
    ASSERT_EQ_INT(nonconst, 0);
    ASSERT_NEAR(cs / a.n, 0, 0.03);
    ASSERT(a.x[0] != a.x[72]);
    jem_dataset_free(&a);

    /* interp of a base set: every image is 0.5 a + 0.5 b for some a != b */
    char spec[600];
    snprintf(spec, sizeof spec, "interp:idx:%s:4", t_path("plain"));
    ASSERT_OK(jem_dataset_open(spec, &a));
    ASSERT_EQ_INT(a.n, 4);
    ASSERT_EQ_INT(a.c, 1);
    ASSERT_EQ_INT(a.h, 2);
    ASSERT_EQ_INT(a.w, 3);
    ASSERT_EQ_INT(a.n_classes, 5);
    ASSERT(strcmp(a.name, spec) == 0);
    jem_dataset base;
    snprintf(spec, sizeof spec, "idx:%s", t_path("plain"));
    ASSERT_OK(jem_dataset_open(spec, &base));
    for (int i = 0; i < a.n && a.n == 4; i++) {
        int found = 0;
        for (int p = 0; p < 3; p++)
            for (int q = 0; q < 3; q++) {
                if (p == q) continue;
                int ok = 1;
                for (int k = 0; k < 6; k++)
                    ok &= fabsf(a.x[i * 6 + k] - 0.5f * (base.x[p * 6 + k] + base.x[q * 6 + k])) < 1e-6f;
                found |= ok;
            }
        ASSERT_MSG(found, "interp image %d is not a midpoint of two base images", i);
        ASSERT_EQ_INT(a.y[i], -1);
    }
    jem_dataset_free(&a);
    snprintf(spec, sizeof spec, "interp:idx:%s:seed=3", t_path("plain"));
    ASSERT_OK(jem_dataset_open(spec, &a));
    ASSERT_EQ_INT(a.n, 3); /* default: as many as the base */
    jem_dataset_free(&a);
    ASSERT_ERR(jem_dataset_synthetic("interp", 5, 0, 0, 0, NULL, 1, &a), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_synthetic("interp", 5, 3, 2, 3, &base, 1, &a), JEM_ERR_SHAPE);
    ASSERT_STR_CONTAINS(jem_last_error(), "3x2x3");
    ASSERT_STR_CONTAINS(jem_last_error(), "1x2x3");
    ASSERT_ERR(jem_dataset_synthetic("uniform", 0, 1, 2, 2, NULL, 1, &a), JEM_ERR_ARG);
    ASSERT_ERR(jem_dataset_synthetic("uniform", 1 << 30, 3, 64, 64, NULL, 1, &a), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "too large");
    ASSERT_ERR(jem_dataset_synthetic("pink", 5, 1, 2, 2, NULL, 1, &a), JEM_ERR_ARG);
    ASSERT_OK(jem_dataset_synthetic("uniform", 5, 1, 2, 2, NULL, 1, &a));
    ASSERT_EQ_INT(a.n, 5);
    jem_dataset_free(&a);
    jem_dataset_free(&base);
}

/* ------------------------------------------------ split, conform, truncate */

static void make_indexed(jem_dataset *ds, int n, int c, int h, int w)
{
    ASSERT_OK(jem_dataset_synthetic("uniform", n, c, h, w, NULL, 99, ds));
    size_t chw = (size_t)c * h * w;
    for (int i = 0; i < n; i++) {
        ds->y[i] = i;
        ds->x[(size_t)i * chw] = (float)i; /* the image knows its index */
    }
    ds->n_classes = n;
    snprintf(ds->name, sizeof ds->name, "indexed");
}

static void test_split(void)
{
    jem_dataset src, tr, va, tr2, va2;
    make_indexed(&src, 100, 2, 3, 4);
    ASSERT_OK(jem_dataset_split(&src, 30, 5, &tr, &va));
    ASSERT(src.x == NULL && src.y == NULL && src.n == 0);
    ASSERT_EQ_INT(tr.n, 70);
    ASSERT_EQ_INT(va.n, 30);
    ASSERT_EQ_INT(tr.c, 2);
    ASSERT_EQ_INT(va.h, 3);
    ASSERT_EQ_INT(va.w, 4);
    ASSERT_EQ_INT(va.n_classes, 100);
    ASSERT_STR_CONTAINS(va.name, "indexed");
    int seen[100] = {0}, order = 1, match = 1;
    for (int i = 0; i < tr.n; i++) {
        seen[tr.y[i]]++;
        match &= tr.x[(size_t)i * 24] == (float)tr.y[i];
        if (i) order &= tr.y[i] > tr.y[i - 1];
    }
    for (int i = 0; i < va.n; i++) {
        seen[va.y[i]]++;
        match &= va.x[(size_t)i * 24] == (float)va.y[i];
        if (i) order &= va.y[i] > va.y[i - 1];
    }
    int once = 0;
    for (int i = 0; i < 100; i++) once += seen[i] == 1;
    ASSERT_EQ_INT(once, 100); /* disjoint and complete */
    ASSERT(order && match);
    int contiguous = va.y[29] - va.y[0] == 29;
    ASSERT(!contiguous); /* shuffled, not the first 30 */

    /* same seed, same split; another seed, another split; train may be src */
    make_indexed(&src, 100, 2, 3, 4);
    ASSERT_OK(jem_dataset_split(&src, 30, 5, &src, &va2));
    ASSERT_EQ_INT(src.n, 70);
    ASSERT(memcmp(va.y, va2.y, 30 * sizeof(int32_t)) == 0);
    ASSERT(memcmp(tr.y, src.y, 70 * sizeof(int32_t)) == 0);
    jem_dataset_free(&va2);
    jem_dataset_free(&src);
    make_indexed(&src, 100, 2, 3, 4);
    ASSERT_OK(jem_dataset_split(&src, 30, 6, &tr2, &va2));
    ASSERT(memcmp(va.y, va2.y, 30 * sizeof(int32_t)) != 0);
    jem_dataset_free(&tr2);
    jem_dataset_free(&va2);
    jem_dataset_free(&tr);
    jem_dataset_free(&va);

    /* n_val out of range: error, src intact */
    make_indexed(&src, 10, 1, 2, 2);
    ASSERT_ERR(jem_dataset_split(&src, 10, 1, &tr, &va), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "indexed: cannot hold out 10 of 10");
    ASSERT_ERR(jem_dataset_split(&src, -1, 1, &tr, &va), JEM_ERR_ARG);
    ASSERT(src.n == 10 && src.x != NULL);
    /* n_val 0: everything to train, val empty */
    ASSERT_OK(jem_dataset_split(&src, 0, 1, &tr, &va));
    ASSERT_EQ_INT(tr.n, 10);
    ASSERT_EQ_INT(va.n, 0);
    ASSERT(va.x == NULL);
    for (int i = 0; i < 10; i++) ASSERT_EQ_INT(tr.y[i], i);
    jem_dataset_free(&tr);
    jem_dataset_free(&va);
}

static void test_conform(void)
{
    jem_dataset ds;
    make_indexed(&ds, 7, 1, 5, 6);
    size_t hw = 30;
    float *orig = malloc(sizeof(float) * 7 * hw);
    memcpy(orig, ds.x, sizeof(float) * 7 * hw);
    ASSERT_OK(jem_dataset_conform(&ds, 1, 5, 6)); /* nothing to do */
    ASSERT_OK(jem_dataset_conform(&ds, 3, 5, 6));
    ASSERT_EQ_INT(ds.c, 3);
    int bad = 0;
    for (int i = 0; i < 7; i++)
        for (int k = 0; k < 3; k++)
            for (size_t p = 0; p < hw; p++) bad += ds.x[(size_t)i * 3 * hw + k * hw + p] != orig[i * hw + p];
    ASSERT_EQ_INT(bad, 0);
    ASSERT_OK(jem_dataset_conform(&ds, 1, 5, 6));
    ASSERT_EQ_INT(ds.c, 1);
    double err = 0;
    for (size_t p = 0; p < 7 * hw; p++) err = fmax(err, fabs(ds.x[p] - orig[p]));
    ASSERT_NEAR(err, 0, 1e-6);

    /* RGB -> grey is BT.601 luma */
    ASSERT_OK(jem_dataset_conform(&ds, 3, 5, 6));
    for (size_t p = 0; p < hw; p++) {
        ds.x[p] = 1.0f;          /* R */
        ds.x[hw + p] = -1.0f;    /* G */
        ds.x[2 * hw + p] = 0.5f; /* B */
    }
    ASSERT_OK(jem_dataset_conform(&ds, 1, 5, 6));
    ASSERT_NEAR(ds.x[0], 0.299 - 0.587 + 0.114 * 0.5, 1e-6);
    ASSERT_NEAR(ds.x[hw - 1], 0.299 - 0.587 + 0.057, 1e-6);
    ASSERT_NEAR(ds.x[hw], orig[hw], 1e-6); /* second image untouched by the first */

    ASSERT_ERR(jem_dataset_conform(&ds, 3, 32, 32), JEM_ERR_SHAPE);
    ASSERT_STR_CONTAINS(jem_last_error(), "indexed: images are 1x5x6, the model wants 3x32x32");
    ASSERT_ERR(jem_dataset_conform(&ds, 2, 5, 6), JEM_ERR_ARG);
    ASSERT_EQ_INT(ds.c, 1);
    free(orig);

    /* truncate */
    jem_dataset_truncate(&ds, 100);
    ASSERT_EQ_INT(ds.n, 7);
    jem_dataset_truncate(&ds, -1);
    ASSERT_EQ_INT(ds.n, 7);
    jem_dataset_truncate(&ds, 3);
    ASSERT_EQ_INT(ds.n, 3);
    ASSERT_EQ_INT(ds.y[2], 2);
    ASSERT(ds.x[2 * hw] == 2.0f);
    jem_dataset_truncate(&ds, 0);
    ASSERT(ds.n == 0 && ds.x == NULL);
    jem_dataset_free(&ds);
    jem_dataset_free(NULL);
}

/* ---------------------------------------------------------------- augment */

static void test_augment(void)
{
    enum { B = 64, C = 3, H = 7, W = 6 };
    size_t chw = C * H * W, N = B * chw;
    float *x0 = malloc(sizeof(float) * N), *x1 = malloc(sizeof(float) * N), *x2 = malloc(sizeof(float) * N);
    jem_rng r;
    jem_rng_seed(&r, 11, 0);
    for (size_t p = 0; p < N; p++) x0[p] = jem_rng_uniform(&r) * 1.8f - 0.9f; /* never -1 */

    /* everything off: identity, no draws */
    jem_augment off = {0, 0, 0.0f};
    memcpy(x1, x0, sizeof(float) * N);
    jem_rng_seed(&r, 1, 0);
    jem_rng r_before = r;
    jem_augment_batch(&off, x1, B, C, H, W, &r);
    ASSERT(memcmp(x1, x0, sizeof(float) * N) == 0);
    ASSERT(memcmp(&r, &r_before, sizeof r) == 0);

    /* determinism */
    jem_augment all = {2, 1, 0.05f};
    memcpy(x1, x0, sizeof(float) * N);
    memcpy(x2, x0, sizeof(float) * N);
    jem_rng_seed(&r, 42, 3);
    jem_augment_batch(&all, x1, B, C, H, W, &r);
    jem_rng_seed(&r, 42, 3);
    jem_augment_batch(&all, x2, B, C, H, W, &r);
    ASSERT(memcmp(x1, x2, sizeof(float) * N) == 0);
    memcpy(x2, x0, sizeof(float) * N);
    jem_rng_seed(&r, 43, 3);
    jem_augment_batch(&all, x2, B, C, H, W, &r);
    ASSERT(memcmp(x1, x2, sizeof(float) * N) != 0);

    /* flip only: each image unchanged or mirrored; twice with one seed = identity */
    jem_augment flip = {0, 1, 0.0f};
    memcpy(x1, x0, sizeof(float) * N);
    jem_rng_seed(&r, 5, 0);
    jem_augment_batch(&flip, x1, B, C, H, W, &r);
    int flipped = 0, bad = 0;
    for (int b = 0; b < B; b++) {
        int same = 1, mirror = 1;
        for (size_t q = 0; q < chw; q++) {
            size_t xx = q % W, rest = q - xx;
            same &= x1[b * chw + q] == x0[b * chw + q];
            mirror &= x1[b * chw + q] == x0[b * chw + rest + (W - 1 - xx)];
        }
        bad += !same && !mirror;
        flipped += mirror;
    }
    ASSERT_EQ_INT(bad, 0);
    ASSERT_MSG(flipped > 16 && flipped < 48, "flipped %d of %d", flipped, B);
    jem_rng_seed(&r, 5, 0);
    jem_augment_batch(&flip, x1, B, C, H, W, &r);
    ASSERT(memcmp(x1, x0, sizeof(float) * N) == 0);

    /* crop only: image b is x0 shifted by the documented draws, -1 outside */
    const int P = 2;
    jem_augment crop = {P, 0, 0.0f};
    memcpy(x1, x0, sizeof(float) * N);
    jem_rng_seed(&r, 8, 1);
    jem_rng ref = r;
    jem_augment_batch(&crop, x1, B, C, H, W, &r);
    bad = 0;
    int moved = 0;
    for (int b = 0; b < B; b++) {
        int dy = (int)jem_rng_below(&ref, 2 * P + 1) - P;
        int dx = (int)jem_rng_below(&ref, 2 * P + 1) - P;
        moved += dy || dx;
        for (int c = 0; c < C; c++)
            for (int y = 0; y < H; y++)
                for (int xx = 0; xx < W; xx++) {
                    int sy = y + dy, sx = xx + dx;
                    float want = sy < 0 || sy >= H || sx < 0 || sx >= W
                                     ? -1.0f
                                     : x0[b * chw + (size_t)c * H * W + (size_t)sy * W + sx];
                    bad += x1[b * chw + (size_t)c * H * W + (size_t)y * W + xx] != want;
                }
    }
    ASSERT_EQ_INT(bad, 0);
    ASSERT(moved > B / 2);
    ASSERT(memcmp(&r, &ref, sizeof r) == 0);

    /* noise: mean 0, std sigma */
    enum { NB = 200 };
    float *z = calloc((size_t)NB * chw, sizeof(float));
    jem_augment noise = {0, 0, 0.1f};
    jem_rng_seed(&r, 9, 0);
    jem_augment_batch(&noise, z, NB, C, H, W, &r);
    double s = 0, s2 = 0;
    size_t M = (size_t)NB * chw;
    for (size_t p = 0; p < M; p++) {
        s += z[p];
        s2 += (double)z[p] * z[p];
    }
    ASSERT_NEAR(s / M, 0, 0.002);
    ASSERT_NEAR(sqrt(s2 / M), 0.1, 0.002);
    free(z);

    /* huge padding: nothing survives but -1 */
    jem_augment huge = {1000, 0, 0.0f};
    memcpy(x1, x0, sizeof(float) * chw);
    jem_rng_seed(&r, 1, 0);
    jem_augment_batch(&huge, x1, 1, C, H, W, &r);
    jem_augment_batch(NULL, x1, 1, C, H, W, &r); /* no-op */
    int kept = 0;
    for (size_t p = 0; p < chw; p++) kept += x1[p] != -1.0f;
    ASSERT_EQ_INT(kept, 0);
    free(x0);
    free(x1);
    free(x2);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_data");
    t_tmpdir("test_data");
    /* the Debian package's folder, and MNIST beside the project root (the
     * tests run from the root) */
    jem_data_set_dir("fmnist", "/usr/share/datasets/fashion-mnist");
    jem_data_set_dir("mnist", "../shared/data/mnist");
    test_real_sets();
    test_dataset_dirs();
    test_idx();
    test_idx_multimember();
    test_cifar();
    test_specs();
    test_synthetic();
    test_split();
    test_conform();
    test_augment();
    return t_finish();
}

/*
 * cifar.c: CIFAR-10 and CIFAR-100 binary versions.
 *
 * CIFAR-10: records of 1 label byte + 3072 pixel bytes (1024 red, 1024 green,
 * 1024 blue, each 32 x 32 row-major, i.e. already (C, H, W)); train =
 * data_batch_1.bin .. data_batch_5.bin, test = test_batch.bin.
 * CIFAR-100: records of 2 label bytes (coarse, fine) + 3072 pixel bytes;
 * train.bin / test.bin; jem uses the fine label (100 classes).
 *
 * DIR may be the folder holding the .bin files or the folder the archive was
 * unpacked in (then cifar-10-batches-bin/ or cifar-100-binary/ is used).
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define CIFAR_PIX       3072
#define CIFAR_MAX_FILES 5

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static jem_status join(char *out, size_t n, const char *dir, const char *sub, const char *name)
{
    int r = sub ? snprintf(out, n, "%s/%s/%s", dir, sub, name) : snprintf(out, n, "%s/%s", dir, name);
    if (r < 0 || (size_t)r >= n) return jem_fail(JEM_ERR_ARG, "%s: path too long", dir);
    return JEM_OK;
}

typedef struct {
    int nfiles, nlab, n_classes, use_sub;
    const char *sub;
    char path[CIFAR_MAX_FILES][4096];
} cifar_files;

/* The files of a set: DIR/name or DIR/<archive folder>/name. */
static jem_status cifar_resolve(const char *dir, int kind, int train, cifar_files *cf)
{
    static const char *const c10_train[] = {"data_batch_1.bin", "data_batch_2.bin", "data_batch_3.bin",
                                            "data_batch_4.bin", "data_batch_5.bin"};
    static const char *const c10_test[] = {"test_batch.bin"};
    static const char *const c100_train[] = {"train.bin"};
    static const char *const c100_test[] = {"test.bin"};
    if (kind != 10 && kind != 100) return jem_fail(JEM_ERR_ARG, "cifar: kind %d (want 10 or 100)", kind);
    const char *const *names = kind == 10 ? (train ? c10_train : c10_test) : (train ? c100_train : c100_test);
    cf->nfiles = kind == 10 && train ? 5 : 1;
    cf->nlab = kind == 10 ? 1 : 2;
    cf->n_classes = kind == 10 ? 10 : 100;
    cf->sub = kind == 10 ? "cifar-10-batches-bin" : "cifar-100-binary";
    jem_status st;
    if ((st = join(cf->path[0], sizeof cf->path[0], dir, NULL, names[0]))) return st;
    cf->use_sub = 0;
    if (!file_exists(cf->path[0])) {
        char alt[4096];
        if (join(alt, sizeof alt, dir, cf->sub, names[0]) == JEM_OK && file_exists(alt)) cf->use_sub = 1;
    }
    for (int k = 0; k < cf->nfiles; k++)
        if ((st = join(cf->path[k], sizeof cf->path[k], dir, cf->use_sub ? cf->sub : NULL, names[k]))) return st;
    return JEM_OK;
}

jem_status jem_cifar_check(const char *dir, int kind, int train)
{
    cifar_files cf;
    jem_status st = cifar_resolve(dir, kind, train, &cf);
    for (int k = 0; !st && k < cf.nfiles; k++)
        if (!file_exists(cf.path[k])) st = jem_fail(JEM_ERR_IO, "%s: no such file", cf.path[k]);
    return st;
}

/* Class names from the archive's text file beside the batches
 * (batches.meta.txt, fine_label_names.txt: one name a line), else CIFAR-10's
 * own; none for CIFAR-100 without the file. */
static jem_status cifar_classes(const char *dir, int kind, const cifar_files *cf, jem_dataset *ds)
{
    char path[4096], *text = NULL;
    const char *file = kind == 10 ? "batches.meta.txt" : "fine_label_names.txt";
    const char *names[100];
    int n = 0;
    if (join(path, sizeof path, dir, cf->use_sub ? cf->sub : NULL, file) == JEM_OK && file_exists(path) &&
        jem_read_file(path, 1 << 16, &text, NULL) == JEM_OK) {
        for (char *save = NULL, *t = strtok_r(text, "\r\n", &save); t; t = strtok_r(NULL, "\r\n", &save)) {
            while (*t == ' ') t++;
            if (!*t) continue;
            if (n == cf->n_classes) {
                n = -1;
                break;
            }
            names[n++] = t;
        }
    }
    jem_status st = JEM_OK;
    if (n == cf->n_classes) st = jem_dataset_set_classes(ds, names, n);
    else if (kind == 10) st = jem_dataset_set_classes(ds, jem_known_classes("cifar10", NULL), 10);
    free(text);
    return st;
}

jem_status jem_cifar_load(const char *dir, int kind, int train, jem_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    cifar_files cf;
    jem_status st = cifar_resolve(dir, kind, train, &cf);
    if (st) return st;
    const int nfiles = cf.nfiles, nlab = cf.nlab, n_classes = cf.n_classes;
    size_t rec = (size_t)nlab + CIFAR_PIX;
    char(*path)[4096] = cf.path;

    /* sizes first: every file must be a whole number of records */
    int64_t total = 0, count[CIFAR_MAX_FILES];
    for (int k = 0; k < nfiles; k++) {
        struct stat sb;
        if (stat(path[k], &sb) != 0) return jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path[k], strerror(errno));
        if (!S_ISREG(sb.st_mode)) return jem_fail(JEM_ERR_IO, "%s: not a regular file", path[k]);
        if (sb.st_size == 0 || (uint64_t)sb.st_size % rec != 0)
            return jem_fail(JEM_ERR_FORMAT,
                            "%s: size %lld bytes is not a positive multiple "
                            "of the %zu-byte CIFAR-%d record",
                            path[k], (long long)sb.st_size, rec, kind);
        count[k] = (int64_t)((uint64_t)sb.st_size / rec);
        total += count[k];
        if ((uint64_t)total * CIFAR_PIX > JEM_DATA_MAX_SAMPLES)
            return jem_fail(JEM_ERR_FORMAT, "%s: too many records (%lld)", path[k], (long long)total);
    }
    if ((st = jem_data_alloc(ds, total, 3, 32, 32, path[0]))) return st;

    uint8_t *buf = malloc(rec);
    if (!buf) {
        jem_dataset_free(ds);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", dir);
    }
    float lut[256];
    for (unsigned v = 0; v < 256; v++) lut[v] = jem_px8(v);
    int64_t i = 0;
    for (int k = 0; k < nfiles && !st; k++) {
        FILE *f = fopen(path[k], "rb");
        if (!f) {
            st = jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path[k], strerror(errno));
            break;
        }
        for (int64_t r = 0; r < count[k]; r++, i++) {
            if (fread(buf, 1, rec, f) != rec) {
                st = ferror(f) ? jem_fail(JEM_ERR_IO, "%s: read failed: %s", path[k], strerror(errno))
                               : jem_fail(JEM_ERR_FORMAT, "%s: truncated at record %lld", path[k], (long long)r);
                break;
            }
            if (kind == 100 && buf[0] >= 20) {
                st = jem_fail(JEM_ERR_FORMAT,
                              "%s: record %lld: coarse label %d out of range "
                              "[0, 20)",
                              path[k], (long long)r, buf[0]);
                break;
            }
            int label = buf[nlab - 1];
            if (label >= n_classes) {
                st = jem_fail(JEM_ERR_FORMAT, "%s: record %lld: label %d out of range [0, %d)", path[k], (long long)r,
                              label, n_classes);
                break;
            }
            ds->y[i] = label;
            float *dst = ds->x + (size_t)i * CIFAR_PIX; /* (3, 32, 32) */
            const uint8_t *src = buf + nlab;
            for (int p = 0; p < CIFAR_PIX; p++) dst[p] = lut[src[p]];
        }
        if (!st && fgetc(f) != EOF) st = jem_fail(JEM_ERR_FORMAT, "%s: file grew while being read", path[k]);
        fclose(f);
    }
    free(buf);
    if (st) {
        jem_dataset_free(ds);
        return st;
    }
    ds->n_classes = n_classes;
    st = cifar_classes(dir, kind, &cf, ds);
    if (st) jem_dataset_free(ds);
    return st;
}

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

#define CIFAR_PIX 3072
#define CIFAR_MAX_FILES 5

static int file_exists(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

static jem_status join(char *out, size_t n, const char *dir, const char *sub,
                       const char *name)
{
    int r = sub ? snprintf(out, n, "%s/%s/%s", dir, sub, name)
                : snprintf(out, n, "%s/%s", dir, name);
    if (r < 0 || (size_t)r >= n)
        return jem_fail(JEM_ERR_ARG, "%s: path too long", dir);
    return JEM_OK;
}

jem_status jem_cifar_load(const char *dir, int kind, int train, jem_dataset *ds)
{
    static const char *const c10_train[] = { "data_batch_1.bin", "data_batch_2.bin",
                                             "data_batch_3.bin", "data_batch_4.bin",
                                             "data_batch_5.bin" };
    static const char *const c10_test[] = { "test_batch.bin" };
    static const char *const c100_train[] = { "train.bin" };
    static const char *const c100_test[] = { "test.bin" };
    memset(ds, 0, sizeof *ds);
    if (kind != 10 && kind != 100)
        return jem_fail(JEM_ERR_ARG, "cifar: kind %d (want 10 or 100)", kind);

    const char *const *names = kind == 10 ? (train ? c10_train : c10_test)
                                          : (train ? c100_train : c100_test);
    int nfiles = kind == 10 && train ? 5 : 1;
    int nlab = kind == 10 ? 1 : 2;
    size_t rec = (size_t)nlab + CIFAR_PIX;
    int n_classes = kind == 10 ? 10 : 100;
    const char *sub = kind == 10 ? "cifar-10-batches-bin" : "cifar-100-binary";

    char path[CIFAR_MAX_FILES][4096];
    jem_status st;
    if ((st = join(path[0], sizeof path[0], dir, NULL, names[0]))) return st;
    int use_sub = 0;
    if (!file_exists(path[0])) {
        char alt[4096];
        if (join(alt, sizeof alt, dir, sub, names[0]) == JEM_OK && file_exists(alt))
            use_sub = 1;
    }

    /* sizes first: every file must be a whole number of records */
    int64_t total = 0, count[CIFAR_MAX_FILES];
    for (int k = 0; k < nfiles; k++) {
        if ((st = join(path[k], sizeof path[k], dir, use_sub ? sub : NULL, names[k])))
            return st;
        struct stat sb;
        if (stat(path[k], &sb) != 0)
            return jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path[k], strerror(errno));
        if (!S_ISREG(sb.st_mode))
            return jem_fail(JEM_ERR_IO, "%s: not a regular file", path[k]);
        if (sb.st_size == 0 || (uint64_t)sb.st_size % rec != 0)
            return jem_fail(JEM_ERR_FORMAT, "%s: size %lld bytes is not a positive multiple "
                            "of the %zu-byte CIFAR-%d record", path[k],
                            (long long)sb.st_size, rec, kind);
        count[k] = (int64_t)((uint64_t)sb.st_size / rec);
        total += count[k];
        if ((uint64_t)total * CIFAR_PIX > JEM_DATA_MAX_SAMPLES)
            return jem_fail(JEM_ERR_FORMAT, "%s: too many records (%lld)", path[k],
                            (long long)total);
    }
    if ((st = jem_data_alloc(ds, total, 3, 32, 32, path[0]))) return st;

    uint8_t *buf = malloc(rec);
    if (!buf) { jem_dataset_free(ds); return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", dir); }
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
                st = ferror(f) ? jem_fail(JEM_ERR_IO, "%s: read failed: %s", path[k],
                                          strerror(errno))
                               : jem_fail(JEM_ERR_FORMAT, "%s: truncated at record %lld",
                                          path[k], (long long)r);
                break;
            }
            if (kind == 100 && buf[0] >= 20) {
                st = jem_fail(JEM_ERR_FORMAT, "%s: record %lld: coarse label %d out of range "
                              "[0, 20)", path[k], (long long)r, buf[0]);
                break;
            }
            int label = buf[nlab - 1];
            if (label >= n_classes) {
                st = jem_fail(JEM_ERR_FORMAT, "%s: record %lld: label %d out of range [0, %d)",
                              path[k], (long long)r, label, n_classes);
                break;
            }
            ds->y[i] = label;
            float *dst = ds->x + (size_t)i * CIFAR_PIX; /* (3, 32, 32) */
            const uint8_t *src = buf + nlab;
            for (int p = 0; p < CIFAR_PIX; p++) dst[p] = lut[src[p]];
        }
        if (!st && fgetc(f) != EOF)
            st = jem_fail(JEM_ERR_FORMAT, "%s: file grew while being read", path[k]);
        fclose(f);
    }
    free(buf);
    if (st) { jem_dataset_free(ds); return st; }
    ds->n_classes = n_classes;
    return JEM_OK;
}

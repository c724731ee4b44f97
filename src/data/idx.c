/*
 * idx.c: IDX files, the MNIST family's format, plain or gzip-compressed
 * (zlib's gz* functions read both transparently).
 *
 * An IDX file is a 4-byte magic (0, 0, element type, number of dimensions),
 * one big-endian uint32 per dimension, then the elements. jem reads images
 * (0x00000803: N x H x W unsigned bytes) and labels (0x00000801: N unsigned
 * bytes). A file must hold exactly the bytes its header declares: less is
 * "truncated", more is "trailing data"; both are JEM_ERR_FORMAT.
 */
#include "data.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <zlib.h>

#define IDX_CHUNK ((size_t)1 << 20) /* bytes per gzread call */

typedef struct {
    gzFile gz;
    const char *path;
    uint32_t dims[3];
    uint64_t pos;   /* uncompressed bytes read so far */
    uint64_t total; /* uncompressed bytes the header declares */
    int sized;      /* 1: the file's size confirms total (see idx_check_size) */
} idx_file;

static jem_status idx_gz_fail(idx_file *f)
{
    int err = Z_OK;
    const char *msg = gzerror(f->gz, &err);
    if (err == Z_ERRNO) return jem_fail(JEM_ERR_IO, "%s: read failed: %s", f->path, strerror(errno));
    if (!msg) msg = "unknown zlib error";
    size_t pl = strlen(f->path); /* zlib's message starts with the path: drop it */
    if (!strncmp(msg, f->path, pl) && !strncmp(msg + pl, ": ", 2)) msg += pl + 2;
    return jem_fail(JEM_ERR_FORMAT, "%s: corrupt or truncated gzip data (%s)", f->path, msg);
}

/* Read exactly n bytes into buf. */
static jem_status idx_read(idx_file *f, uint8_t *buf, size_t n)
{
    size_t got = 0;
    while (got < n) {
        size_t want = n - got < IDX_CHUNK ? n - got : IDX_CHUNK;
        int r = gzread(f->gz, buf + got, (unsigned)want);
        if (r < 0) return idx_gz_fail(f);
        if (r == 0) {
            int err = Z_OK;
            gzerror(f->gz, &err);
            if (err != Z_OK) return idx_gz_fail(f); /* e.g. gzip stream cut short */
            if (f->total)
                return jem_fail(JEM_ERR_FORMAT,
                                "%s: truncated: holds %llu bytes (uncompressed) but its "
                                "header declares %llu",
                                f->path, (unsigned long long)(f->pos + got), (unsigned long long)f->total);
            return jem_fail(JEM_ERR_FORMAT, "%s: truncated: too short for an IDX header", f->path);
        }
        got += (size_t)r;
    }
    f->pos += got;
    return JEM_OK;
}

static void idx_close(idx_file *f)
{
    if (f->gz) gzclose(f->gz);
    f->gz = NULL;
}

/* Compare the declared size with what the file can hold, before anything
 * large is allocated. A plain file's size must equal it exactly. A gzip
 * file's trailer holds its uncompressed size mod 2^32 (for a single-member
 * file): a match only marks the size as confirmed, a mismatch is left to
 * the reading to judge (concatenated members are valid gzip). */
static jem_status idx_check_size(idx_file *f)
{
    struct stat sb;
    if (stat(f->path, &sb) != 0 || !S_ISREG(sb.st_mode)) return JEM_OK;
    if (gzdirect(f->gz)) {
        uint64_t size = (uint64_t)sb.st_size;
        if (size < f->total)
            return jem_fail(JEM_ERR_FORMAT,
                            "%s: truncated: holds %llu bytes but its header "
                            "declares %llu",
                            f->path, (unsigned long long)size, (unsigned long long)f->total);
        if (size > f->total)
            return jem_fail(JEM_ERR_FORMAT,
                            "%s: trailing data: holds %llu bytes but its "
                            "header declares %llu",
                            f->path, (unsigned long long)size, (unsigned long long)f->total);
        f->sized = 1;
        return JEM_OK;
    }
    FILE *raw = fopen(f->path, "rb");
    uint8_t t[4];
    if (raw && sb.st_size >= 18 && fseek(raw, -4, SEEK_END) == 0 && fread(t, 1, 4, raw) == 4) {
        uint32_t isize = (uint32_t)t[0] | (uint32_t)t[1] << 8 | (uint32_t)t[2] << 16 | (uint32_t)t[3] << 24;
        f->sized = isize == (uint32_t)f->total;
    }
    if (raw) fclose(raw);
    return JEM_OK;
}

/* Open path and read its header; ndim 3 for images, 1 for labels. */
static jem_status idx_open(const char *path, int ndim, idx_file *f)
{
    static const char *const kind[4] = {"", "labels", "", "images"};
    memset(f, 0, sizeof *f);
    f->path = path;
    errno = 0;
    f->gz = gzopen(path, "rb");
    if (!f->gz)
        return jem_fail(errno ? JEM_ERR_IO : JEM_ERR_NOMEM, "%s: cannot open: %s", path,
                        errno ? strerror(errno) : "out of memory");
    gzbuffer(f->gz, 1u << 17);

    uint8_t hdr[16];
    jem_status st = idx_read(f, hdr, 4);
    if (st) goto fail;
    uint32_t magic = (uint32_t)hdr[0] << 24 | (uint32_t)hdr[1] << 16 | (uint32_t)hdr[2] << 8 | hdr[3];
    uint32_t want = 0x00000800u | (uint32_t)ndim;
    if (magic != want) {
        if (magic == (0x00000800u | (uint32_t)(4 - ndim)))
            st = jem_fail(JEM_ERR_FORMAT,
                          "%s: bad magic 0x%08x: an IDX %s file where %s "
                          "(0x%08x) were expected",
                          path, magic, kind[4 - ndim], kind[ndim], want);
        else if (hdr[0] == 0 && hdr[1] == 0 && hdr[2] != 0x08)
            st = jem_fail(JEM_ERR_FORMAT,
                          "%s: bad magic 0x%08x: IDX element type 0x%02x, "
                          "only unsigned bytes (0x08) are supported",
                          path, magic, hdr[2]);
        else st = jem_fail(JEM_ERR_FORMAT, "%s: bad magic 0x%08x (want 0x%08x, IDX %s)", path, magic, want, kind[ndim]);
        goto fail;
    }
    if ((st = idx_read(f, hdr + 4, 4 * (size_t)ndim))) goto fail;
    uint64_t total = 1;
    for (int d = 0; d < ndim; d++) {
        const uint8_t *p = hdr + 4 + 4 * d;
        f->dims[d] = (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
        if (f->dims[d] == 0) {
            st = jem_fail(JEM_ERR_FORMAT, "%s: dimension %d is 0 (no data)", path, d);
            goto fail;
        }
        total *= f->dims[d]; /* at most 3 factors below 2^32: checked below */
        if (total > JEM_DATA_MAX_SAMPLES) {
            st = jem_fail(JEM_ERR_FORMAT,
                          "%s: header declares more than %llu bytes of "
                          "data (dimensions too large)",
                          path, (unsigned long long)JEM_DATA_MAX_SAMPLES);
            goto fail;
        }
    }
    f->total = f->pos + total;
    if ((st = idx_check_size(f))) goto fail;
    return JEM_OK;
fail:
    idx_close(f);
    return st;
}

/* After the declared bytes the file must end. */
static jem_status idx_expect_end(idx_file *f)
{
    uint8_t b;
    int r = gzread(f->gz, &b, 1);
    if (r < 0) return idx_gz_fail(f);
    int err = Z_OK;
    gzerror(f->gz, &err);
    /* zlib reports a gzip stream that ends early (missing CRC and length
     * trailer) as Z_BUF_ERROR with a short, not failed, read */
    if (r == 0 && err != Z_OK) return idx_gz_fail(f);
    if (r > 0)
        return jem_fail(JEM_ERR_FORMAT,
                        "%s: trailing data after the %llu bytes its header "
                        "declares",
                        f->path, (unsigned long long)f->total);
    return JEM_OK;
}

jem_status jem_idx_load(const char *images, const char *labels, int n_classes, jem_dataset *ds)
{
    idx_file fi, fl;
    uint8_t *buf = NULL;
    memset(ds, 0, sizeof *ds);
    memset(&fl, 0, sizeof fl);

    jem_status st = idx_open(images, 3, &fi);
    if (st) return st;
    if ((st = idx_open(labels, 1, &fl))) goto out;
    if (fl.dims[0] != fi.dims[0]) {
        st = jem_fail(JEM_ERR_FORMAT, "%s: %u labels, but %s holds %u images", labels, fl.dims[0], images, fi.dims[0]);
        goto out;
    }
    int n = (int)fi.dims[0], h = (int)fi.dims[1], w = (int)fi.dims[2];
    size_t hw = (size_t)h * (size_t)w;

    /* Pixels, whole images per chunk. Unless the file's size confirmed the
     * header, x grows with the data actually read (from 64 MB, doubling), so
     * a short file that declares a huge set fails without a huge allocation. */
    size_t per = hw >= IDX_CHUNK ? 1 : IDX_CHUNK / hw;
    size_t cap = fi.sized ? (size_t)n : ((size_t)16 << 20) / hw;
    if (cap < per) cap = per;
    if (cap > (size_t)n) cap = (size_t)n;
    float *x = malloc(sizeof(float) * cap * hw); /* (cap, 1, H, W) */
    buf = malloc(per > (size_t)n ? (size_t)n * hw : per * hw);
    if (!x || !buf) {
        free(x);
        st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", images);
        goto out;
    }
    ds->x = x;
    float lut[256];
    for (unsigned v = 0; v < 256; v++) lut[v] = jem_px8(v);
    for (size_t i0 = 0; i0 < (size_t)n; i0 += per) {
        size_t cnt = (size_t)n - i0 < per ? (size_t)n - i0 : per;
        if ((st = idx_read(&fi, buf, cnt * hw))) goto out;
        if (i0 + cnt > cap) {
            cap = 2 * cap < (size_t)n ? 2 * cap : (size_t)n;
            if (cap < i0 + cnt) cap = i0 + cnt;
            if (!(x = realloc(ds->x, sizeof(float) * cap * hw))) {
                st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", images);
                goto out;
            }
            ds->x = x;
        }
        float *dst = ds->x + i0 * hw; /* (cnt, 1, H, W) */
        for (size_t k = 0; k < cnt * hw; k++) dst[k] = lut[buf[k]];
    }
    if ((st = idx_expect_end(&fi))) goto out;

    /* labels: the images are all there, so n is real */
    free(buf);
    buf = malloc((size_t)n);
    ds->y = malloc(sizeof(int32_t) * (size_t)n);
    if (!buf || !ds->y) {
        st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", labels);
        goto out;
    }
    if ((st = idx_read(&fl, buf, (size_t)n))) goto out;
    if ((st = idx_expect_end(&fl))) goto out;
    int maxl = 0;
    for (int i = 0; i < n; i++) {
        int l = buf[i];
        if (n_classes > 0 && l >= n_classes) {
            st = jem_fail(JEM_ERR_FORMAT, "%s: label %d at index %d out of range [0, %d)", labels, l, i, n_classes);
            goto out;
        }
        if (l > maxl) maxl = l;
        ds->y[i] = l;
    }
    ds->n_classes = n_classes > 0 ? n_classes : maxl + 1;
    ds->n = n;
    ds->c = 1;
    ds->h = h;
    ds->w = w;
    jem_data_set_name(ds, images);
out:
    free(buf);
    idx_close(&fi);
    idx_close(&fl);
    if (st) jem_dataset_free(ds);
    return st;
}

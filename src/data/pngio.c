/*
 * pngio.c: PNG reading and writing with libpng, and folders of PNG files as
 * data sets.
 *
 * Reading rules (every PNG colour type and bit depth):
 *   - palette, grey below 8 bits and tRNS are expanded (palette -> RGB,
 *     tRNS -> alpha), then every sample is widened to 16 bits, so 8-bit and
 *     16-bit files go through one path and 16-bit files keep their precision;
 *     a sample v of a B-bit file becomes v / (2^B - 1) * 2 - 1.
 *   - alpha is dropped by compositing over black: colour * alpha (in [0, 1]),
 *     so a fully transparent pixel reads as -1.
 *   - a file is "colour" (3 channels) when its colour type is RGB, RGBA or
 *     palette, otherwise grey (1 channel).
 *   - conversion to another channel count: grey -> RGB repeats the value,
 *     RGB -> grey is ITU-R BT.601 luma 0.299 R + 0.587 G + 0.114 B.
 *   - gamma, colour-profile and text chunks are ignored (samples as stored).
 *   - libpng errors are caught (setjmp/longjmp) and become JEM_ERR_FORMAT
 *     naming the file; libpng warnings are discarded.
 *
 * Writing: 8-bit grey or RGB, through jem_atomic (io/io.h): a temporary
 * file beside PATH, fsync, rename over PATH, fsync of the directory; on any
 * failure the temporary file is removed and an existing PATH is left as it
 * was. Or into memory (jem_png_encode_rgb), with the same encoder.
 */
#include "data.h"
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <png.h>
#include <setjmp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define PNG_MAX_SIDE   (1 << 16) /* width or height read or written */
#define PNG_MAX_PIXELS ((uint64_t)1 << 26)

/* ------------------------------------------------------------ libpng errors */

typedef struct {
    jmp_buf jb;
    char msg[200];
} png_err;

static void png_err_fn(png_structp png, png_const_charp msg)
{
    png_err *e = png_get_error_ptr(png);
    snprintf(e->msg, sizeof e->msg, "%s", msg ? msg : "libpng error");
    longjmp(e->jb, 1);
}

static void png_warn_fn(png_structp png, png_const_charp msg)
{
    (void)png;
    (void)msg; /* the library never prints */
}

/* ----------------------------------------------------------------- reading */

typedef struct {
    int w, h;
    int colour; /* 1: RGB, RGBA or palette; 0: grey or grey + alpha */
} png_meta;

/* Decode path. info_only: header only (meta). Otherwise pixels (want_c, H, W)
 * with want_c = 1, 3 or 0 (the file's own), into dst when non-NULL (the file
 * must then be exp_w x exp_h) or into a new buffer *out. */
static jem_status png_load(const char *path, int info_only, int want_c, int exp_w, int exp_h, float *dst, float **out,
                           png_meta *meta)
{
    if (out) *out = NULL;
    FILE *f = fopen(path, "rb");
    if (!f) return jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    uint8_t sig[8];
    size_t got = fread(sig, 1, sizeof sig, f);
    if (got < sizeof sig || png_sig_cmp(sig, 0, sizeof sig)) {
        int rerr = ferror(f);
        fclose(f);
        if (rerr) return jem_fail(JEM_ERR_IO, "%s: read failed", path);
        return jem_fail(JEM_ERR_FORMAT, "%s: not a PNG file (%s)", path,
                        got == 0           ? "empty"
                        : got < sizeof sig ? "too short"
                                           : "bad signature");
    }

    png_err err;
    err.msg[0] = 0;
    png_structp png = png_create_read_struct(PNG_LIBPNG_VER_STRING, &err, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_read_struct(png ? &png : NULL, NULL, NULL);
        fclose(f);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    }
    /* changed after setjmp: volatile, so the handler sees the current values */
    uint8_t *volatile buf = NULL;    /* (H, W, nch) 16-bit big-endian samples */
    png_bytep *volatile rows = NULL; /* (H) */
    float *volatile mine = NULL;     /* (C, H, W) when returned in *out */
    if (setjmp(err.jb)) {
        int eof = feof(f);
        free(buf);
        free(rows);
        free(mine);
        png_destroy_read_struct(&png, &info, NULL);
        fclose(f);
        if (eof) return jem_fail(JEM_ERR_FORMAT, "%s: truncated PNG: the file ends early (%s)", path, err.msg);
        return jem_fail(JEM_ERR_FORMAT, "%s: corrupt PNG: %s", path, err.msg);
    }
    jem_status st = JEM_OK;
    png_init_io(png, f);
    png_set_sig_bytes(png, sizeof sig);
    png_set_user_limits(png, PNG_MAX_SIDE, PNG_MAX_SIDE);
    png_read_info(png, info);
    png_uint_32 w = png_get_image_width(png, info), h = png_get_image_height(png, info);
    int ctype = png_get_color_type(png, info);
    meta->w = (int)w;
    meta->h = (int)h;
    meta->colour = (ctype & PNG_COLOR_MASK_COLOR) != 0;
    if (info_only) goto done;
    if ((uint64_t)w * h > PNG_MAX_PIXELS) {
        st = jem_fail(JEM_ERR_UNSUPPORTED, "%s: %ux%u pixels is too large", path, (unsigned)w, (unsigned)h);
        goto done;
    }
    if (dst && (meta->w != exp_w || meta->h != exp_h)) {
        st = jem_fail(JEM_ERR_SHAPE, "%s: size %dx%d, expected %dx%d", path, meta->w, meta->h, exp_w, exp_h);
        goto done;
    }
    png_set_expand(png);
    png_set_expand_16(png);
    (void)png_set_interlace_handling(png);
    png_read_update_info(png, info);
    int nch = png_get_channels(png, info);
    size_t rowbytes = png_get_rowbytes(png, info);
    if (png_get_bit_depth(png, info) != 16 || nch < 1 || nch > 4 || rowbytes != (size_t)w * (size_t)nch * 2) {
        st = jem_fail(JEM_ERR_UNSUPPORTED, "%s: unexpected PNG layout after expansion", path);
        goto done;
    }
    buf = malloc(rowbytes * h);
    rows = malloc(sizeof(png_bytep) * h);
    if (!buf || !rows) {
        st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    for (png_uint_32 y = 0; y < h; y++) rows[y] = buf + (size_t)y * rowbytes;
    png_read_image(png, rows);
    png_read_end(png, NULL);

    int fc = meta->colour ? 3 : 1; /* file's channels without alpha */
    int alpha = nch == 2 || nch == 4;
    int c = want_c ? want_c : fc;
    size_t hw = (size_t)w * h;
    float *o = dst; /* (C, H, W) */
    if (!o) {
        mine = malloc(sizeof(float) * (size_t)c * hw);
        if (!mine) {
            st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
            goto done;
        }
        o = mine;
    }
    for (size_t p = 0; p < hw; p++) {
        const uint8_t *s = buf + p * (size_t)nch * 2;
        double v[4];
        for (int k = 0; k < nch; k++) v[k] = (double)(s[2 * k] << 8 | s[2 * k + 1]) / 65535.0;
        double a = alpha ? v[nch - 1] : 1.0;
        if (c == fc) {
            for (int k = 0; k < c; k++) o[k * hw + p] = (float)(v[k] * a * 2.0 - 1.0);
        } else if (c == 3) { /* grey -> RGB */
            float g = (float)(v[0] * a * 2.0 - 1.0);
            o[p] = o[hw + p] = o[2 * hw + p] = g;
        } else { /* RGB -> grey */
            double l = JEM_LUMA_R * v[0] + JEM_LUMA_G * v[1] + JEM_LUMA_B * v[2];
            o[p] = (float)(l * a * 2.0 - 1.0);
        }
    }
    if (out) {
        *out = mine;
        mine = NULL;
    }
done:
    free(buf);
    free(rows);
    free(mine);
    png_destroy_read_struct(&png, &info, NULL);
    fclose(f);
    return st;
}

jem_status jem_png_read(const char *path, int want_c, float **out, int *c, int *h, int *w)
{
    *out = NULL;
    if (want_c != 0 && want_c != 1 && want_c != 3)
        return jem_fail(JEM_ERR_ARG, "%s: want_c %d (want 0, 1 or 3)", path, want_c);
    png_meta m;
    jem_status st = png_load(path, 0, want_c, 0, 0, NULL, out, &m);
    if (st) return st;
    if (c) *c = want_c ? want_c : (m.colour ? 3 : 1);
    if (h) *h = m.h;
    if (w) *w = m.w;
    return JEM_OK;
}

/* ----------------------------------------------------------------- writing */

/* A growing buffer libpng writes into (jem_png_encode_rgb). */
typedef struct {
    uint8_t *p;
    size_t n, cap;
    int nomem;
} png_mem;

static void png_mem_write(png_structp png, png_bytep data, png_size_t len)
{
    png_mem *m = png_get_io_ptr(png);
    if (m->nomem) return;
    if (m->n + len > m->cap) {
        size_t cap = m->cap ? m->cap : 4096;
        while (cap < m->n + len) cap *= 2;
        uint8_t *q = realloc(m->p, cap);
        if (!q) {
            m->nomem = 1;
            png_error(png, "out of memory");
        }
        m->p = q;
        m->cap = cap;
    }
    memcpy(m->p + m->n, data, len);
    m->n += len;
}

static void png_mem_flush(png_structp png) { (void)png; }

/* Encode rows (H) of 8-bit pixels, each (W, c) with c = 1 (grey) or 3 (RGB),
 * as a PNG into f, or into mem when f is NULL; path only names the file in
 * messages. */
static jem_status png_encode(FILE *f, png_mem *mem, const char *path, png_bytep *rows, int w, int h, int c)
{
    png_err err;
    err.msg[0] = 0;
    png_structp png = png_create_write_struct(PNG_LIBPNG_VER_STRING, &err, png_err_fn, png_warn_fn);
    png_infop info = png ? png_create_info_struct(png) : NULL;
    if (!info) {
        png_destroy_write_struct(png ? &png : NULL, NULL);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    }
    if (setjmp(err.jb)) {
        int e = errno;
        png_destroy_write_struct(&png, &info);
        if (mem && mem->nomem) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
        return jem_fail(JEM_ERR_IO, "%s: writing PNG failed: %s (%s)", path, err.msg,
                        e ? strerror(e) : "no system error");
    }
    errno = 0;
    if (f) png_init_io(png, f);
    else png_set_write_fn(png, mem, png_mem_write, png_mem_flush);
    png_set_IHDR(png, info, (png_uint_32)w, (png_uint_32)h, 8, c == 3 ? PNG_COLOR_TYPE_RGB : PNG_COLOR_TYPE_GRAY,
                 PNG_INTERLACE_NONE, PNG_COMPRESSION_TYPE_DEFAULT, PNG_FILTER_TYPE_DEFAULT);
    png_write_info(png, info);
    png_write_image(png, rows);
    png_write_end(png, info);
    png_destroy_write_struct(&png, &info);
    return JEM_OK;
}

/* pix (H, W, c) 8-bit, c = 1 (grey) or 3 (RGB), written through jem_atomic. */
static jem_status png_write_atomic(const char *path, const uint8_t *pix, int w, int h, int c)
{
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h); /* (H) */
    if (!rows) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(pix + (size_t)y * (size_t)w * (size_t)c);
    jem_atomic a;
    jem_status s = jem_atomic_open(&a, path);
    if (!s) s = png_encode(a.fp, NULL, path, rows, w, h, c);
    free(rows);
    if (s) {
        jem_atomic_abort(&a);
        return s;
    }
    return jem_atomic_commit(&a);
}

static uint8_t to_u8(float v)
{
    if (!(v > -1.0f)) return 0; /* also NaN */
    if (v >= 1.0f) return 255;
    return (uint8_t)((v + 1.0f) * 127.5f + 0.5f);
}

jem_status jem_png_write_grid(const char *path, const float *x, int n, int c, int h, int w, int cols, int pad)
{
    if (n <= 0 || (c != 1 && c != 3) || h <= 0 || w <= 0 || pad < 0)
        return jem_fail(JEM_ERR_ARG, "%s: bad grid arguments (n %d, c %d, h %d, w %d, pad %d)", path, n, c, h, w, pad);
    if (cols <= 0) {
        cols = 1;
        while ((int64_t)cols * cols < n) cols++;
    }
    if (cols > n) cols = n;
    int rows = (n + cols - 1) / cols;
    int64_t gw = (int64_t)cols * w + (int64_t)(cols + 1) * pad;
    int64_t gh = (int64_t)rows * h + (int64_t)(rows + 1) * pad;
    if (gw > PNG_MAX_SIDE || gh > PNG_MAX_SIDE || (uint64_t)(gw * gh) > PNG_MAX_PIXELS)
        return jem_fail(JEM_ERR_ARG, "%s: grid of %lldx%lld pixels is too large", path, (long long)gw, (long long)gh);
    size_t stride = (size_t)gw * (size_t)c;
    uint8_t *pix = malloc(stride * (size_t)gh); /* (GH, GW, C) */
    if (!pix) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    memset(pix, 128, stride * (size_t)gh); /* mid-grey background */
    size_t hw = (size_t)h * (size_t)w;
    for (int i = 0; i < n; i++) {
        const float *img = x + (size_t)i * (size_t)c * hw; /* (C, H, W) */
        size_t oy = (size_t)pad + (size_t)(i / cols) * (size_t)(h + pad);
        size_t ox = (size_t)pad + (size_t)(i % cols) * (size_t)(w + pad);
        for (int y = 0; y < h; y++) {
            uint8_t *row = pix + (oy + (size_t)y) * stride + ox * (size_t)c;
            for (int xx = 0; xx < w; xx++)
                for (int k = 0; k < c; k++) row[(size_t)xx * c + k] = to_u8(img[k * hw + (size_t)y * w + xx]);
        }
    }
    jem_status st = png_write_atomic(path, pix, (int)gw, (int)gh, c);
    free(pix);
    return st;
}

jem_status jem_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h)
{
    if (w <= 0 || h <= 0 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE || (uint64_t)w * (uint64_t)h > PNG_MAX_PIXELS)
        return jem_fail(JEM_ERR_ARG, "%s: bad image size %dx%d", path, w, h);
    return png_write_atomic(path, rgb, w, h, 3);
}

jem_status jem_png_encode_rgb(const uint8_t *rgb, int w, int h, uint8_t **out, size_t *n)
{
    *out = NULL;
    *n = 0;
    if (w <= 0 || h <= 0 || w > PNG_MAX_SIDE || h > PNG_MAX_SIDE || (uint64_t)w * (uint64_t)h > PNG_MAX_PIXELS)
        return jem_fail(JEM_ERR_ARG, "PNG in memory: bad image size %dx%d", w, h);
    png_bytep *rows = malloc(sizeof(png_bytep) * (size_t)h); /* (H) */
    if (!rows) return jem_fail(JEM_ERR_NOMEM, "PNG in memory: out of memory");
    for (int y = 0; y < h; y++) rows[y] = (png_bytep)(rgb + (size_t)y * (size_t)w * 3);
    png_mem m = {0};
    jem_status s = png_encode(NULL, &m, "PNG in memory", rows, w, h, 3);
    free(rows);
    if (s) {
        free(m.p);
        return s;
    }
    *out = m.p;
    *n = m.n;
    return JEM_OK;
}

/* ------------------------------------------------------------ PNG folders */

typedef struct {
    char **v;
    int n, cap;
} strlist;

static void strlist_free(strlist *l)
{
    for (int i = 0; i < l->n; i++) free(l->v[i]);
    free(l->v);
    memset(l, 0, sizeof *l);
}

static int strlist_push(strlist *l, const char *s)
{
    if (l->n == l->cap) {
        int cap = l->cap ? 2 * l->cap : 16;
        char **v = realloc(l->v, sizeof(char *) * (size_t)cap);
        if (!v) return -1;
        l->v = v;
        l->cap = cap;
    }
    char *d = strdup(s);
    if (!d) return -1;
    l->v[l->n++] = d;
    return 0;
}

static int cmp_str(const void *a, const void *b) { return strcmp(*(char *const *)a, *(char *const *)b); }

static int has_png_ext(const char *name)
{
    size_t n = strlen(name);
    return n > 4 && (strcmp(name + n - 4, ".png") == 0 || strcmp(name + n - 4, ".PNG") == 0);
}

/* Entries of dir (hidden ones skipped): subdirectories (dirs = 1) or regular
 * files ending in .png / .PNG (dirs = 0), sorted by strcmp. */
static jem_status list_dir(const char *dir, int dirs, strlist *out)
{
    memset(out, 0, sizeof *out);
    DIR *d = opendir(dir);
    if (!d) return jem_fail(JEM_ERR_IO, "%s: cannot open folder: %s", dir, strerror(errno));
    jem_status st = JEM_OK;
    char path[4096];
    struct dirent *e;
    errno = 0;
    while ((e = readdir(d)) != NULL) {
        if (e->d_name[0] == '.') continue;
        if (!dirs && !has_png_ext(e->d_name)) continue;
        int r = snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
        if (r < 0 || (size_t)r >= sizeof path) {
            st = jem_fail(JEM_ERR_ARG, "%s/%s: path too long", dir, e->d_name);
            break;
        }
        struct stat sb;
        if (stat(path, &sb) != 0) continue; /* dangling link */
        if (dirs ? !S_ISDIR(sb.st_mode) : !S_ISREG(sb.st_mode)) continue;
        if (strlist_push(out, e->d_name)) {
            st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", dir);
            break;
        }
        errno = 0;
    }
    if (!st && errno) st = jem_fail(JEM_ERR_IO, "%s: cannot read folder: %s", dir, strerror(errno));
    closedir(d);
    if (st) {
        strlist_free(out);
        return st;
    }
    if (out->n > 1) qsort(out->v, (size_t)out->n, sizeof(char *), cmp_str);
    return JEM_OK;
}

jem_status jem_pngdir_load(const char *root, jem_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    strlist classes, files; /* files: "class/image.png" over all classes */
    memset(&files, 0, sizeof files);
    int32_t *label = NULL; /* (N) */
    jem_status st = list_dir(root, 1, &classes);
    if (st) return st;
    if (classes.n == 0) {
        st = jem_fail(JEM_ERR_FORMAT, "%s: no class subfolders (want ROOT/<class>/<image>.png)", root);
        goto out;
    }
    char path[4096];
    for (int k = 0; k < classes.n; k++) {
        int r = snprintf(path, sizeof path, "%s/%s", root, classes.v[k]);
        if (r < 0 || (size_t)r >= sizeof path) {
            st = jem_fail(JEM_ERR_ARG, "%s: path too long", root);
            goto out;
        }
        strlist imgs;
        if ((st = list_dir(path, 0, &imgs))) goto out;
        if (imgs.n == 0) {
            strlist_free(&imgs);
            st = jem_fail(JEM_ERR_FORMAT, "%s: class folder holds no .png files", path);
            goto out;
        }
        int32_t *nl = realloc(label, sizeof(int32_t) * (size_t)(files.n + imgs.n));
        if (!nl) {
            strlist_free(&imgs);
            st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", root);
            goto out;
        }
        label = nl;
        for (int i = 0; i < imgs.n && !st; i++) {
            r = snprintf(path, sizeof path, "%s/%s", classes.v[k], imgs.v[i]);
            if (r < 0 || (size_t)r >= sizeof path)
                st = jem_fail(JEM_ERR_ARG, "%s/%s: path too long", root, classes.v[k]);
            else if (strlist_push(&files, path)) st = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", root);
            else label[files.n - 1] = k;
        }
        strlist_free(&imgs);
        if (st) goto out;
    }

    /* pass 1: headers; one size for all, channels 3 if any file is colour */
    png_meta first = {0, 0, 0};
    int colour = 0, ifirst = 0;
    for (int i = 0; i < files.n; i++) {
        int r = snprintf(path, sizeof path, "%s/%s", root, files.v[i]);
        if (r < 0 || (size_t)r >= sizeof path) {
            st = jem_fail(JEM_ERR_ARG, "%s/%s: path too long", root, files.v[i]);
            goto out;
        }
        png_meta m;
        if ((st = png_load(path, 1, 0, 0, 0, NULL, NULL, &m))) goto out;
        if (i == 0) {
            first = m;
        } else if (m.w != first.w || m.h != first.h) {
            st = jem_fail(JEM_ERR_SHAPE,
                          "%s: size %dx%d differs from %dx%d of %s/%s "
                          "(all images of a folder must have one size)",
                          path, m.w, m.h, first.w, first.h, root, files.v[ifirst]);
            goto out;
        }
        colour |= m.colour;
    }
    int c = colour ? 3 : 1;
    if ((st = jem_data_alloc(ds, files.n, c, first.h, first.w, root))) goto out;

    /* pass 2: pixels */
    size_t chw = (size_t)c * (size_t)first.h * (size_t)first.w;
    for (int i = 0; i < files.n; i++) {
        snprintf(path, sizeof path, "%s/%s", root, files.v[i]); /* fitted in pass 1 */
        png_meta m;
        if ((st = png_load(path, 0, c, first.w, first.h, ds->x + (size_t)i * chw, NULL, &m))) goto out;
        ds->y[i] = label[i];
    }
    ds->n_classes = classes.n;
    /* the folder names are the class names, the paths under ROOT the files */
    ds->classes = classes.v;
    ds->files = files.v;
    memset(&classes, 0, sizeof classes);
    memset(&files, 0, sizeof files);
out:
    if (st) jem_dataset_free(ds);
    free(label);
    strlist_free(&files);
    strlist_free(&classes);
    return st;
}

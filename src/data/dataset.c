/*
 * dataset.c: data set specs (jem_dataset_open), synthetic sets, and the
 * operations on a loaded set (conform, split, truncate, free).
 *
 * Dimension letters: N images, C channels, H height, W width.
 * The spec grammar is documented in include/jem.h above jem_dataset_open.
 */
#include "data.h"

#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define SPEC_MAX_DEPTH  4 /* interp:interp:... nesting */
#define NOISE_DEFAULT_N 10000

/* ------------------------------------------------------------------ basics */

void jem_data_set_name(jem_dataset *ds, const char *name)
{
    size_t n = strlen(name);
    if (n >= sizeof ds->name) n = sizeof ds->name - 1;
    memcpy(ds->name, name, n);
    ds->name[n] = 0;
}

jem_status jem_data_alloc(jem_dataset *ds, int64_t n, int c, int h, int w, const char *what)
{
    memset(ds, 0, sizeof *ds);
    if (n <= 0 || c <= 0 || h <= 0 || w <= 0)
        return jem_fail(JEM_ERR_ARG, "%s: bad data set shape %lldx%dx%dx%d", what, (long long)n, c, h, w);
    uint64_t samples = (uint64_t)c * (uint64_t)h * (uint64_t)w;
    if (samples > JEM_DATA_MAX_SAMPLES || (uint64_t)n > JEM_DATA_MAX_SAMPLES / samples)
        return jem_fail(JEM_ERR_ARG, "%s: data set of %lld x %dx%dx%d is too large", what, (long long)n, c, h, w);
    ds->x = malloc(sizeof(float) * samples * (uint64_t)n);
    ds->y = malloc(sizeof(int32_t) * (size_t)n);
    if (!ds->x || !ds->y) {
        jem_dataset_free(ds);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory for %lld images of %dx%dx%d", what, (long long)n, c, h, w);
    }
    ds->n = (int)n;
    ds->c = c;
    ds->h = h;
    ds->w = w;
    jem_data_set_name(ds, what);
    return JEM_OK;
}

static void free_names(char **v, int n)
{
    if (!v) return;
    for (int i = 0; i < n; i++) free(v[i]);
    free(v);
}

void jem_dataset_free(jem_dataset *ds)
{
    if (!ds) return;
    free(ds->x);
    free(ds->y);
    free_names(ds->classes, ds->n_classes);
    free_names(ds->files, ds->n);
    memset(ds, 0, sizeof *ds);
}

/* A copy of n strings (NULL when v is NULL); *ok = 0 when out of memory. */
static char **copy_names(const char *const *v, int n, int *ok)
{
    *ok = 1;
    if (!v || n <= 0) return NULL;
    char **c = calloc((size_t)n, sizeof *c);
    if (!c) {
        *ok = 0;
        return NULL;
    }
    for (int i = 0; i < n; i++)
        if (!(c[i] = strdup(v[i] ? v[i] : ""))) {
            free_names(c, n);
            *ok = 0;
            return NULL;
        }
    return c;
}

jem_status jem_dataset_set_classes(jem_dataset *ds, const char *const *names, int n)
{
    if (!names) return JEM_OK;
    if (n != ds->n_classes)
        return jem_fail(JEM_ERR_ARG, "%s: %d class names for %d classes", ds->name, n, ds->n_classes);
    int ok;
    char **c = copy_names(names, n, &ok);
    if (!ok) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory for class names", ds->name);
    free_names(ds->classes, ds->n_classes);
    ds->classes = c;
    return JEM_OK;
}

static const char *const fmnist_classes[10] = {"T-shirt/top", "Trouser", "Pullover", "Dress", "Coat",
                                               "Sandal",      "Shirt",   "Sneaker",  "Bag",   "Ankle boot"};
static const char *const mnist_classes[10] = {"0", "1", "2", "3", "4", "5", "6", "7", "8", "9"};
static const char *const cifar10_classes[10] = {"airplane", "automobile", "bird",  "cat",  "deer",
                                                "dog",      "frog",       "horse", "ship", "truck"};

const char *const *jem_known_classes(const char *spec, int *n)
{
    static const struct {
        const char *prefix;
        const char *const *names;
    } known[] = {
        {"fmnist", fmnist_classes},
        {"mnist", mnist_classes},
        {"cifar10", cifar10_classes},
    };
    if (n) *n = 0;
    if (!spec) return NULL;
    size_t plen = strcspn(spec, ":");
    for (size_t i = 0; i < sizeof known / sizeof *known; i++)
        if (plen == strlen(known[i].prefix) && !strncmp(spec, known[i].prefix, plen)) {
            if (n) *n = 10;
            return known[i].names;
        }
    return NULL;
}

void jem_dataset_truncate(jem_dataset *ds, int n)
{
    if (!ds || n < 0 || n >= ds->n) return;
    if (ds->files) {
        for (int i = n; i < ds->n; i++) free(ds->files[i]);
        if (n == 0) {
            free(ds->files);
            ds->files = NULL;
        }
    }
    ds->n = n;
    if (n == 0) {
        free(ds->x);
        free(ds->y);
        ds->x = NULL;
        ds->y = NULL;
        return;
    }
    size_t chw = (size_t)ds->c * (size_t)ds->h * (size_t)ds->w;
    float *x = realloc(ds->x, sizeof(float) * chw * (size_t)n);
    if (x) ds->x = x; /* a failed shrink keeps the larger block */
    int32_t *y = realloc(ds->y, sizeof(int32_t) * (size_t)n);
    if (y) ds->y = y;
}

/* ----------------------------------------------------------------- conform */

jem_status jem_dataset_conform(jem_dataset *ds, int c, int h, int w)
{
    if ((c != 1 && c != 3) || h <= 0 || w <= 0)
        return jem_fail(JEM_ERR_ARG, "%s: cannot conform to %dx%dx%d (channels must be 1 or 3)", ds->name, c, h, w);
    if (ds->h != h || ds->w != w || (ds->c != c && ds->c != 1 && ds->c != 3))
        return jem_fail(JEM_ERR_SHAPE, "%s: images are %dx%dx%d, the model wants %dx%dx%d", ds->name, ds->c, ds->h,
                        ds->w, c, h, w);
    if (ds->c == c) return JEM_OK;
    if (ds->n == 0) {
        ds->c = c;
        return JEM_OK;
    }
    size_t hw = (size_t)h * (size_t)w, n = (size_t)ds->n;
    if (c == 3) {
        /* grey -> RGB in place: grow, then fill from the last image back so
         * that no source is overwritten before it is read */
        float *x = realloc(ds->x, sizeof(float) * 3 * hw * n);
        if (!x) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory converting to RGB", ds->name);
        ds->x = x;
        for (size_t i = n; i-- > 0;) {
            const float *src = x + i * hw; /* (H, W) */
            float *dst = x + i * 3 * hw;   /* (3, H, W) */
            for (int k = 2; k >= 0; k--) memmove(dst + (size_t)k * hw, src, sizeof(float) * hw);
        }
    } else {
        /* RGB -> grey (BT.601 luma) in place, first image forwards */
        float *x = ds->x;
        for (size_t i = 0; i < n; i++) {
            const float *src = x + i * 3 * hw; /* (3, H, W) */
            float *dst = x + i * hw;           /* (H, W) */
            for (size_t p = 0; p < hw; p++) {
                double r = src[p], g = src[hw + p], b = src[2 * hw + p];
                dst[p] = (float)(JEM_LUMA_R * r + JEM_LUMA_G * g + JEM_LUMA_B * b);
            }
        }
        float *s = realloc(x, sizeof(float) * hw * n);
        if (s) ds->x = s;
    }
    ds->c = c;
    return JEM_OK;
}

/* ------------------------------------------------------------------- split */

static void split_name(jem_dataset *ds, const char *base, const char *part)
{
    char buf[sizeof ds->name + 16];
    int r = snprintf(buf, sizeof buf, "%s [%s]", base, part);
    if (r < 0) buf[0] = 0;
    jem_data_set_name(ds, buf);
}

jem_status jem_dataset_split(jem_dataset *src, int n_val, uint64_t seed, jem_dataset *train, jem_dataset *val)
{
    JEM_ASSERT(train != val && src != val);
    if (n_val < 0 || n_val >= src->n)
        return jem_fail(JEM_ERR_ARG, "%s: cannot hold out %d of %d images", src->name, n_val, src->n);
    jem_dataset s = *src; /* train may be src itself */
    size_t chw = (size_t)s.c * (size_t)s.h * (size_t)s.w, n = (size_t)s.n;
    int32_t *perm = malloc(sizeof(int32_t) * n);
    uint8_t *is_val = calloc(n, 1);
    jem_dataset v;
    memset(&v, 0, sizeof v);
    if (!perm || !is_val) {
        free(perm);
        free(is_val);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory splitting", s.name);
    }
    if (n_val > 0) {
        jem_status st = jem_data_alloc(&v, n_val, s.c, s.h, s.w, s.name);
        if (st) {
            free(perm);
            free(is_val);
            return st;
        }
    }
    int ok = 1;
    v.classes = copy_names((const char *const *)s.classes, s.n_classes, &ok);
    if (ok && s.files && n_val > 0 && !(v.files = calloc((size_t)n_val, sizeof *v.files))) ok = 0;
    if (!ok) {
        free(perm);
        free(is_val);
        free_names(v.classes, s.n_classes);
        v.classes = NULL;
        jem_dataset_free(&v);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory splitting", s.name);
    }
    for (size_t i = 0; i < n; i++) perm[i] = (int32_t)i;
    jem_rng rng;
    jem_rng_seed(&rng, seed, 0x73706c6974ULL /* "split" */);
    jem_rng_shuffle(&rng, perm, n);
    for (int i = 0; i < n_val; i++) is_val[perm[i]] = 1;
    /* both parts keep the source order; train is compacted in place */
    size_t iv = 0, it = 0;
    for (size_t i = 0; i < n; i++) {
        if (is_val[i]) {
            memcpy(v.x + iv * chw, s.x + i * chw, sizeof(float) * chw);
            if (s.files) v.files[iv] = s.files[i];
            v.y[iv++] = s.y[i];
        } else {
            if (it != i) memmove(s.x + it * chw, s.x + i * chw, sizeof(float) * chw);
            if (s.files) s.files[it] = s.files[i];
            s.y[it++] = s.y[i];
        }
    }
    free(perm);
    free(is_val);
    s.n = (int)it;
    float *x = realloc(s.x, sizeof(float) * chw * it);
    if (x) s.x = x;
    int32_t *y = realloc(s.y, sizeof(int32_t) * it);
    if (y) s.y = y;
    v.n = n_val;
    v.n_classes = s.n_classes;
    split_name(&v, src->name, "val");
    split_name(&s, src->name, "train");
    memset(src, 0, sizeof *src);
    *train = s;
    *val = v;
    return JEM_OK;
}

/* --------------------------------------------------------------- synthetic */

jem_status jem_dataset_synthetic(const char *kind, int n, int c, int h, int w, const jem_dataset *base, uint64_t seed,
                                 jem_dataset *ds)
{
    memset(ds, 0, sizeof *ds);
    enum { UNIFORM, GAUSSIAN, CONSTANT, INTERP } k;
    if (!kind) kind = "";
    if (!strcmp(kind, "uniform")) k = UNIFORM;
    else if (!strcmp(kind, "gaussian")) k = GAUSSIAN;
    else if (!strcmp(kind, "constant")) k = CONSTANT;
    else if (!strcmp(kind, "interp")) k = INTERP;
    else
        return jem_fail(JEM_ERR_ARG,
                        "synthetic data: unknown kind '%s' (uniform, gaussian, "
                        "constant or interp)",
                        kind);
    if (n <= 0) return jem_fail(JEM_ERR_ARG, "synthetic data %s: n = %d", kind, n);
    if (k == INTERP) {
        if (!base || base->n <= 0 || !base->x)
            return jem_fail(JEM_ERR_ARG, "synthetic data interp: needs a non-empty base set");
        if (c == 0 && h == 0 && w == 0) {
            c = base->c;
            h = base->h;
            w = base->w;
        }
        if (c != base->c || h != base->h || w != base->w)
            return jem_fail(JEM_ERR_SHAPE,
                            "synthetic data interp: asked for %dx%dx%d but %s "
                            "is %dx%dx%d",
                            c, h, w, base->name, base->c, base->h, base->w);
    }
    char name[sizeof ds->name];
    if (k == INTERP) snprintf(name, sizeof name, "interp:%.200s:%d", base->name, n);
    else snprintf(name, sizeof name, "noise:%s:%d:%dx%dx%d", kind, n, c, h, w);
    jem_status st = jem_data_alloc(ds, n, c, h, w, name);
    if (st) return st;
    size_t chw = (size_t)c * (size_t)h * (size_t)w;
    jem_rng rng;
    jem_rng_seed(&rng, seed, (uint64_t)k + 1);
    for (size_t i = 0; i < (size_t)n; i++) {
        float *x = ds->x + i * chw; /* (C, H, W) */
        ds->y[i] = -1;
        switch (k) {
        case UNIFORM:
            for (size_t p = 0; p < chw; p++) x[p] = 2.0f * jem_rng_uniform(&rng) - 1.0f;
            break;
        case GAUSSIAN:
            for (size_t p = 0; p < chw; p++) {
                float g = jem_rng_normal(&rng);
                x[p] = g < -1.0f ? -1.0f : g > 1.0f ? 1.0f : g;
            }
            break;
        case CONSTANT: {
            float v = 2.0f * jem_rng_uniform(&rng) - 1.0f;
            for (size_t p = 0; p < chw; p++) x[p] = v;
            break;
        }
        case INTERP: {
            uint32_t nb = (uint32_t)base->n;
            uint32_t a = jem_rng_below(&rng, nb), b = a;
            if (nb > 1) {
                b = jem_rng_below(&rng, nb - 1);
                if (b >= a) b++;
            }
            const float *xa = base->x + (size_t)a * chw, *xb = base->x + (size_t)b * chw;
            for (size_t p = 0; p < chw; p++) x[p] = 0.5f * xa[p] + 0.5f * xb[p];
            break;
        }
        }
    }
    ds->n_classes = k == INTERP ? base->n_classes : 0;
    return JEM_OK;
}

/* ------------------------------------------------------------------- specs */

static int is_file(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISREG(sb.st_mode);
}

/* PREFIX-WHAT-ubyte, else PREFIX-WHAT-ubyte.gz, into out. */
static jem_status idx_resolve(const char *prefix, const char *what, char *out, size_t n)
{
    int r = snprintf(out, n, "%s-%s-ubyte", prefix, what);
    if (r < 0 || (size_t)r + 3 >= n) return jem_fail(JEM_ERR_ARG, "%s: path too long", prefix);
    if (is_file(out)) return JEM_OK;
    strcat(out, ".gz");
    if (is_file(out)) return JEM_OK;
    return jem_fail(JEM_ERR_IO, "%s-%s-ubyte[.gz]: no such file", prefix, what);
}

static jem_status idx_prefix_load(const char *prefix, int n_classes, jem_dataset *ds)
{
    char img[4096], lab[4096];
    jem_status st = idx_resolve(prefix, "images-idx3", img, sizeof img);
    if (!st) st = idx_resolve(prefix, "labels-idx1", lab, sizeof lab);
    if (st) return st;
    return jem_idx_load(img, lab, n_classes, ds);
}

/* ------------------------------------------------------ named set folders */

/* The folders of the named sets (jem_data_set_dir); NULL until set. */
static const char *const named_sets[] = {"fmnist", "mnist"};
#define N_NAMED ((int)(sizeof named_sets / sizeof *named_sets))
static char *named_dirs[N_NAMED];

static int named_index(const char *name)
{
    for (int i = 0; name && i < N_NAMED; i++)
        if (!strcmp(name, named_sets[i])) return i;
    return -1;
}

jem_status jem_data_set_dir(const char *name, const char *dir)
{
    int i = named_index(name);
    if (i < 0) return jem_fail(JEM_ERR_ARG, "data folder: unknown set '%s' (fmnist or mnist)", name ? name : "");
    char *copy = NULL;
    if (dir && !(copy = strdup(dir))) return jem_fail(JEM_ERR_NOMEM, "data folder: out of memory");
    free(named_dirs[i]);
    named_dirs[i] = copy;
    return JEM_OK;
}

const char *jem_data_dir(const char *name)
{
    int i = named_index(name);
    return i < 0 ? NULL : named_dirs[i];
}

static int parse_int(const char *s, long long lo, long long hi, long long *v)
{
    if (!*s) return 0;
    for (const char *p = s; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    errno = 0;
    char *end;
    long long x = strtoll(s, &end, 10);
    if (errno || *end || x < lo || x > hi) return 0;
    *v = x;
    return 1;
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (*s < '0' || *s > '9') return 0;
    return 1;
}

/* "CxHxW" or "HxW" (C = 1) */
static int parse_shape(const char *s, int *c, int *h, int *w)
{
    long long d[3];
    int nd = 0;
    char buf[64];
    size_t len = strlen(s);
    if (len == 0 || len >= sizeof buf) return 0;
    memcpy(buf, s, len + 1);
    char *save = NULL;
    for (char *t = strtok_r(buf, "x", &save); t; t = strtok_r(NULL, "x", &save)) {
        if (nd == 3 || !parse_int(t, 1, 1 << 16, &d[nd])) return 0;
        nd++;
    }
    if (s[0] == 'x' || s[len - 1] == 'x' || strstr(s, "xx")) return 0;
    if (nd == 2) {
        *c = 1;
        *h = (int)d[0];
        *w = (int)d[1];
        return 1;
    }
    if (nd == 3) {
        *c = (int)d[0];
        *h = (int)d[1];
        *w = (int)d[2];
        return 1;
    }
    return 0;
}

static int parse_seed(const char *s, uint64_t *seed)
{
    if (strncmp(s, "seed=", 5) != 0 || !s[5]) return 0;
    for (const char *p = s + 5; *p; p++)
        if (*p < '0' || *p > '9') return 0;
    errno = 0;
    char *end;
    unsigned long long v = strtoull(s + 5, &end, 10);
    if (errno || *end) return 0;
    *seed = v;
    return 1;
}

typedef jem_spec_mode spec_mode;

static jem_status open_spec(const char *spec, jem_dataset *ds, int depth, const spec_mode *m);

/* noise:KIND[:N][:CxHxW][:seed=S]; rest = "KIND[:...]" */
static jem_status open_noise(const char *spec, const char *rest, jem_dataset *ds, const spec_mode *m)
{
    char buf[512];
    if (strlen(rest) >= sizeof buf) return jem_fail(JEM_ERR_ARG, "%s: spec too long", spec);
    strcpy(buf, rest);
    char *save = NULL, *kind = strtok_r(buf, ":", &save);
    if (!kind || (strcmp(kind, "uniform") && strcmp(kind, "gaussian") && strcmp(kind, "constant")))
        return jem_fail(JEM_ERR_ARG,
                        "%s: unknown noise kind (noise:uniform, noise:gaussian "
                        "or noise:constant)",
                        spec);
    long long n = NOISE_DEFAULT_N;
    int c = 0, h = 0, w = 0, have_n = 0;
    uint64_t seed = 0;
    for (char *t = strtok_r(NULL, ":", &save); t; t = strtok_r(NULL, ":", &save)) {
        if (!have_n && !c && parse_int(t, 1, INT_MAX, &n)) have_n = 1;
        else if (!have_n && !c && all_digits(t))
            return jem_fail(JEM_ERR_ARG, "%s: %s images: N must be 1 to %d", spec, t, INT_MAX);
        else if (!c && parse_shape(t, &c, &h, &w)) continue;
        else if (parse_seed(t, &seed)) continue;
        else
            return jem_fail(JEM_ERR_ARG,
                            "%s: cannot parse '%s' (want "
                            "noise:KIND[:N][:CxHxW][:seed=S])",
                            spec, t);
    }
    if (!c && m->c > 0) {
        c = m->c;
        h = m->h;
        w = m->w;
    }
    if (!c) return jem_fail(JEM_ERR_ARG, "%s: needs an image shape, e.g. noise:%s:%lld:1x28x28", spec, kind, n);
    if (m->check_only) return JEM_OK;
    jem_status st = jem_dataset_synthetic(kind, (int)n, c, h, w, NULL, seed, ds);
    if (!st) jem_data_set_name(ds, spec);
    return st;
}

/* interp:SPEC[:N][:seed=S] */
static jem_status open_interp(const char *spec, const char *rest, jem_dataset *ds, int depth, const spec_mode *m)
{
    char buf[1024];
    if (strlen(rest) >= sizeof buf) return jem_fail(JEM_ERR_ARG, "%s: spec too long", spec);
    strcpy(buf, rest);
    long long n = 0;
    uint64_t seed = 0;
    int have_n = 0, have_seed = 0;
    for (;;) {
        char *colon = strrchr(buf, ':');
        if (!colon) break;
        const char *t = colon + 1;
        if (!have_seed && !have_n && parse_seed(t, &seed)) have_seed = 1;
        else if (!have_n && parse_int(t, 1, INT_MAX, &n)) have_n = 1;
        else if (!have_n && all_digits(t))
            return jem_fail(JEM_ERR_ARG, "%s: %s images: N must be 1 to %d", spec, t, INT_MAX);
        else break;
        *colon = 0;
    }
    if (!buf[0]) return jem_fail(JEM_ERR_ARG, "%s: want interp:SPEC[:N][:seed=S]", spec);
    jem_dataset base;
    jem_status st = open_spec(buf, &base, depth + 1, m);
    if (st || m->check_only) return st;
    st = jem_dataset_synthetic("interp", have_n ? (int)n : base.n, 0, 0, 0, &base, seed, ds);
    jem_dataset_free(&base);
    if (!st) jem_data_set_name(ds, spec);
    return st;
}

static jem_status open_cifar(const char *spec, const char *rest, int kind, jem_dataset *ds, int check_only)
{
    char dir[4096];
    size_t len = strlen(rest);
    if (len >= sizeof dir) return jem_fail(JEM_ERR_ARG, "%s: spec too long", spec);
    memcpy(dir, rest, len + 1);
    int train = 1;
    if (len >= 6 && !strcmp(dir + len - 6, ":train")) {
        dir[len - 6] = 0;
    } else if (len >= 5 && !strcmp(dir + len - 5, ":test")) {
        dir[len - 5] = 0;
        train = 0;
    }
    if (!dir[0]) return jem_fail(JEM_ERR_ARG, "%s: want cifar%d:DIR[:train|:test]", spec, kind);
    if (check_only) return jem_cifar_check(dir, kind, train);
    return jem_cifar_load(dir, kind, train, ds);
}

static int is_dir(const char *path)
{
    struct stat sb;
    return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static jem_status open_spec(const char *spec, jem_dataset *ds, int depth, const spec_mode *m)
{
    memset(ds, 0, sizeof *ds);
    if (!spec) return jem_fail(JEM_ERR_ARG, "data set spec is NULL");
    if (depth > SPEC_MAX_DEPTH) return jem_fail(JEM_ERR_ARG, "%s: specs nested too deeply", spec);
    const size_t base_len = jem_data_class_suffix(spec);
    if (base_len) return jem_data_open_classes(spec, base_len, ds, depth, m);
    const char *colon = strchr(spec, ':');
    size_t plen = colon ? (size_t)(colon - spec) : strlen(spec);
    const char *rest = colon ? colon + 1 : "";
#define PREFIX_IS(s) (plen == strlen(s) && !strncmp(spec, s, plen))
    jem_status st;
    char buf[4096], lab[4096];
    if (PREFIX_IS("fmnist") || PREFIX_IS("mnist")) {
        const char *set = PREFIX_IS("fmnist") ? "fmnist" : "mnist";
        const char *file = !strcmp(rest, "train") ? "train" : !strcmp(rest, "test") ? "t10k" : NULL;
        if (!file) return jem_fail(JEM_ERR_ARG, "%s: want %s:train or %s:test", spec, set, set);
        const char *dir = jem_data_dir(set);
        if (!dir) return jem_fail(JEM_ERR_IO, "%s: no folder is set for %s (jem_data_set_dir)", spec, set);
        int r = snprintf(buf, sizeof buf, "%s/%s", dir, file);
        if (r < 0 || (size_t)r >= sizeof buf) return jem_fail(JEM_ERR_ARG, "%s: path too long", spec);
        if (m->check_only) {
            st = idx_resolve(buf, "images-idx3", lab, sizeof lab);
            if (!st) st = idx_resolve(buf, "labels-idx1", lab, sizeof lab);
        } else {
            st = idx_prefix_load(buf, 10, ds);
            if (!st) st = jem_dataset_set_classes(ds, jem_known_classes(set, NULL), 10);
        }
        if (st) {
            /* the files' error, said of the spec that named them */
            char msg[sizeof buf + 256];
            snprintf(msg, sizeof msg, "%s", jem_last_error());
            jem_dataset_free(ds);
            return jem_fail(st, "%s: %s", spec, msg);
        }
        if (m->check_only) return JEM_OK;
    } else if (PREFIX_IS("idx")) {
        if (!*rest) return jem_fail(JEM_ERR_ARG, "%s: want idx:PREFIX or idx:IMAGES,LABELS", spec);
        const char *comma = strchr(rest, ',');
        if (comma) {
            size_t il = (size_t)(comma - rest);
            if (il == 0 || !comma[1] || il >= sizeof buf)
                return jem_fail(JEM_ERR_ARG, "%s: want idx:IMAGES,LABELS", spec);
            memcpy(buf, rest, il);
            buf[il] = 0;
            if (m->check_only) {
                if (!is_file(buf)) return jem_fail(JEM_ERR_IO, "%s: no such file", buf);
                if (!is_file(comma + 1)) return jem_fail(JEM_ERR_IO, "%s: no such file", comma + 1);
                return JEM_OK;
            }
            st = jem_idx_load(buf, comma + 1, 0, ds);
        } else if (m->check_only) {
            st = idx_resolve(rest, "images-idx3", buf, sizeof buf);
            if (!st) st = idx_resolve(rest, "labels-idx1", buf, sizeof buf);
            return st;
        } else {
            st = idx_prefix_load(rest, 0, ds);
        }
    } else if (PREFIX_IS("cifar10")) {
        st = open_cifar(spec, rest, 10, ds, m->check_only);
        if (m->check_only) return st;
    } else if (PREFIX_IS("cifar100")) {
        st = open_cifar(spec, rest, 100, ds, m->check_only);
        if (m->check_only) return st;
    } else if (PREFIX_IS("png")) {
        if (!*rest) return jem_fail(JEM_ERR_ARG, "%s: want png:ROOT", spec);
        if (m->check_only) return is_dir(rest) ? JEM_OK : jem_fail(JEM_ERR_IO, "%s: no such folder", spec);
        st = jem_pngdir_load(rest, ds);
    } else if (PREFIX_IS("noise")) {
        st = open_noise(spec, rest, ds, m);
        if (m->check_only) return st;
    } else if (PREFIX_IS("interp")) {
        st = open_interp(spec, rest, ds, depth, m);
        if (m->check_only) return st;
    } else if (PREFIX_IS("corrupt")) {
        st = jem_data_open_corrupt(spec, rest, ds, depth, m);
        if (m->check_only) return st;
    } else {
        return jem_fail(JEM_ERR_ARG,
                        "%s: unknown data set spec (want fmnist:, mnist:, idx:, "
                        "cifar10:, cifar100:, png:, noise:, interp: or corrupt:)",
                        spec);
    }
#undef PREFIX_IS
    if (st) {
        jem_dataset_free(ds);
        return st;
    }
    jem_data_set_name(ds, spec);
    return JEM_OK;
}

jem_status jem_data_open_nested(const char *spec, jem_dataset *ds, int depth, const jem_spec_mode *m)
{
    return open_spec(spec, ds, depth, m);
}

jem_status jem_dataset_open(const char *spec, jem_dataset *ds)
{
    const spec_mode m = {0, 0, 0, 0};
    return open_spec(spec, ds, 0, &m);
}

jem_status jem_dataset_open_as(const char *spec, int c, int h, int w, jem_dataset *ds)
{
    const spec_mode m = {0, c, h, w};
    jem_status st = open_spec(spec, ds, 0, &m);
    if (st) return st;
    st = jem_dataset_conform(ds, c, h, w);
    if (st) jem_dataset_free(ds);
    return st;
}

jem_status jem_dataset_check(const char *spec, int c, int h, int w)
{
    const spec_mode m = {1, c, h, w};
    jem_dataset ds;
    return open_spec(spec, &ds, 0, &m);
}

/*
 * subset.c: the class filter of data sets, jem_dataset_filter_classes, and
 * its spec form SPEC:classes=LIST[:relabel].
 *
 * Dimension letters: N images, C channels, H height, W width.
 */
#include "data.h"

#include <stdlib.h>
#include <string.h>

#define MAX_CLASS 65535

/* Parse LIST ("3", "0-5", "0,2,4-6") into keep (MAX_CLASS + 1 flags). */
static jem_status parse_list(const char *what, const char *list, uint8_t *keep)
{
    const char *p = list;
    if (!*p) return jem_fail(JEM_ERR_ARG, "%s: empty class list (want e.g. classes=0-5 or classes=0,2,4-6)", what);
    for (;;) {
        long v[2];
        int nv = 0;
        for (;;) {
            if (*p < '0' || *p > '9')
                return jem_fail(JEM_ERR_ARG,
                                "%s: bad class list '%s' (want numbers and ranges A-B "
                                "separated by commas, e.g. 0,2,4-6)",
                                what, list);
            long x = 0;
            while (*p >= '0' && *p <= '9') {
                x = x * 10 + (*p++ - '0');
                if (x > MAX_CLASS) return jem_fail(JEM_ERR_ARG, "%s: class number too large in '%s'", what, list);
            }
            v[nv++] = x;
            if (*p == '-' && nv == 1) {
                p++;
                continue;
            }
            break;
        }
        if (nv == 1) v[1] = v[0];
        if (v[1] < v[0]) return jem_fail(JEM_ERR_ARG, "%s: empty range %ld-%ld in '%s'", what, v[0], v[1], list);
        for (long k = v[0]; k <= v[1]; k++) keep[k] = 1;
        if (!*p) break;
        if (*p != ',')
            return jem_fail(JEM_ERR_ARG,
                            "%s: bad class list '%s' (want numbers and ranges A-B separated by "
                            "commas, e.g. 0,2,4-6)",
                            what, list);
        p++;
    }
    return JEM_OK;
}

jem_status jem_dataset_filter_classes(jem_dataset *ds, const char *list, int relabel)
{
    uint8_t *keep = calloc(MAX_CLASS + 1, 1);
    int32_t *map = malloc(sizeof(int32_t) * (MAX_CLASS + 1));
    if (!keep || !map) {
        free(keep);
        free(map);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", ds->name);
    }
    jem_status st = parse_list(ds->name, list ? list : "", keep);
    int max = -1, m = 0;
    for (int k = 0; k <= MAX_CLASS && !st; k++) {
        map[k] = keep[k] ? m : -1;
        if (keep[k]) {
            m++;
            max = k;
            if (ds->n_classes > 0 && k >= ds->n_classes)
                st = jem_fail(JEM_ERR_ARG, "%s: class %d is not in the set (classes 0 to %d)", ds->name, k,
                              ds->n_classes - 1);
        }
    }
    size_t kept = 0, labelled = 0;
    const size_t chw = (size_t)ds->c * ds->h * ds->w;
    for (int i = 0; i < ds->n && !st; i++) {
        kept += ds->y[i] >= 0 && ds->y[i] <= MAX_CLASS && keep[ds->y[i]];
        labelled += ds->y[i] >= 0;
    }
    if (!st && kept == 0)
        st = jem_fail(JEM_ERR_ARG, "%s: no image of classes %s%s", ds->name, list,
                      labelled ? ""
                               : " (its images are unlabelled; filter the set they are made from, "
                                 "e.g. interp:SPEC:classes=LIST:N)");
    if (st) {
        free(keep);
        free(map);
        return st;
    }
    /* compact in place, keeping the order (and the images' files) */
    size_t o = 0;
    for (int i = 0; i < ds->n; i++) {
        const int32_t y = ds->y[i];
        if (y < 0 || y > MAX_CLASS || !keep[y]) {
            if (ds->files) free(ds->files[i]);
            continue;
        }
        if (o != (size_t)i) memmove(ds->x + o * chw, ds->x + (size_t)i * chw, sizeof(float) * chw);
        if (ds->files) ds->files[o] = ds->files[i];
        ds->y[o++] = relabel ? map[y] : y;
    }
    /* the class names follow: the kept ones in their new order, or the
     * first max + 1 */
    const int nk = relabel ? m : max + 1;
    if (ds->classes) {
        char **names = ds->classes;
        if (relabel) {
            int j = 0;
            for (int k = 0; k < ds->n_classes; k++) {
                if (keep[k]) names[j++] = names[k];
                else free(names[k]);
            }
        } else {
            for (int k = nk; k < ds->n_classes; k++) free(names[k]);
        }
    }
    free(keep);
    free(map);
    ds->n = (int)o;
    float *x = realloc(ds->x, sizeof(float) * chw * o);
    if (x) ds->x = x;
    int32_t *y = realloc(ds->y, sizeof(int32_t) * o);
    if (y) ds->y = y;
    ds->n_classes = nk;
    return JEM_OK;
}

/* the field that starts after the last ':' of s[0..len) */
static const char *last_field(const char *s, size_t len, size_t *start)
{
    size_t i = len;
    while (i > 0 && s[i - 1] != ':') i--;
    *start = i;
    return s + i;
}

size_t jem_data_class_suffix(const char *spec)
{
    size_t len = strlen(spec), st;
    const char *f = last_field(spec, len, &st);
    if (st > 0 && !strcmp(f, "relabel")) {
        len = st - 1;
        f = last_field(spec, len, &st);
    }
    if (st == 0 || strncmp(f, "classes=", 8)) return 0;
    return st - 1;
}

jem_status jem_data_open_classes(const char *spec, size_t base_len, jem_dataset *ds, int depth, const jem_spec_mode *m)
{
    memset(ds, 0, sizeof *ds);
    char base[1024], list[256];
    if (base_len >= sizeof base) return jem_fail(JEM_ERR_ARG, "%s: spec too long", spec);
    memcpy(base, spec, base_len);
    base[base_len] = 0;
    const char *f = spec + base_len + 1 + 8; /* after ":classes=" */
    const char *end = strchr(f, ':');
    const int relabel = end != NULL; /* the only field that may follow is "relabel" */
    size_t ll = end ? (size_t)(end - f) : strlen(f);
    if (ll >= sizeof list) return jem_fail(JEM_ERR_ARG, "%s: class list too long", spec);
    memcpy(list, f, ll);
    list[ll] = 0;
    if (!base[0]) return jem_fail(JEM_ERR_ARG, "%s: want SPEC:classes=LIST[:relabel]", spec);
    /* the list is checked before the set is loaded */
    uint8_t *keep = calloc(MAX_CLASS + 1, 1);
    if (!keep) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", spec);
    jem_status st = parse_list(spec, list, keep);
    free(keep);
    if (st) return st;
    st = jem_data_open_nested(base, ds, depth + 1, m);
    if (st || m->check_only) return st;
    if (!st) {
        jem_data_set_name(ds, spec);
        st = jem_dataset_filter_classes(ds, list, relabel);
    }
    if (st) {
        jem_dataset_free(ds);
        return st;
    }
    jem_data_set_name(ds, spec);
    return JEM_OK;
}

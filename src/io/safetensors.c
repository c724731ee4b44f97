/* safetensors reading and writing.
 *
 * Layout: u64 little-endian N, N bytes of UTF-8 JSON header, data buffer.
 *   {"__metadata__": {"key": "value", ...},
 *    "name": {"dtype": "F32", "shape": [2, 3], "data_offsets": [0, 24]}, ...}
 * Offsets are relative to the data buffer; the tensors cover it exactly,
 * without gaps or overlaps. jem pads the header with spaces so that the data
 * buffer starts at a multiple of 8 bytes in the file, and writes tensors in
 * the order they were added.
 *
 * Byte order: tensor data is stored and returned in the machine's order,
 * which must be little-endian (checked at compile time below); the header
 * length is encoded byte by byte and so is independent of it.
 *
 * Reading loads the header and the data buffer into memory, validates every
 * field before returning, and hands out pointers into the buffer. A tensor
 * whose offset is not a multiple of its element size (possible in files from
 * other writers) is copied to an aligned block, so every pointer returned by
 * jem_st_get is aligned for its dtype. */
#include "io/io.h"
#include "io/json.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#if defined(__BYTE_ORDER__) && defined(__ORDER_LITTLE_ENDIAN__)
#if __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "jem's safetensors code stores tensors in machine order and needs a little-endian machine"
#endif
#endif

#define ST_MAX_DIMS   8
#define ST_MAX_HEADER ((uint64_t)100 << 20) /* same cap as the reference implementation */

typedef struct {
    const char *name; /* writer: owned copy; reader: inside doc */
    jem_dtype dt;
    int ndim;
    int64_t shape[ST_MAX_DIMS];
    uint64_t begin, end; /* byte offsets into the data buffer */
    const void *data;
    void *own; /* reader: aligned copy of a misaligned tensor */
} st_tensor;

typedef struct {
    const char *key, *val; /* writer: owned copies; reader: inside doc */
} st_meta;

struct jem_st {
    int reading;
    st_tensor *t; /* reader: in data order (by offset) */
    int nt, tcap;
    st_tensor **by_name; /* reader: sorted by name, for lookups */
    st_meta *m;
    int nm, mcap;
    unsigned char *data; /* reader: the data buffer */
    jem_json *doc;       /* reader: the parsed header */
};

/* ------------------------------------------------------------------ dtypes */

static const struct {
    const char *name;
    size_t size;
} dtypes[] = {
    [JEM_DT_F32] = {"F32", 4}, [JEM_DT_F64] = {"F64", 8}, [JEM_DT_I32] = {"I32", 4},
    [JEM_DT_I64] = {"I64", 8}, [JEM_DT_U8] = {"U8", 1},
};
#define N_DTYPES ((int)(sizeof dtypes / sizeof dtypes[0]))

/* safetensors dtypes that are valid in the format but not handled by jem */
static const char *const other_dtypes[] = {
    "BOOL", "I8",      "I16",     "U16",     "U32",     "U64",     "F16", "BF16",
    "C64",  "F8_E4M3", "F8_E5M2", "F8_E8M0", "F6_E2M3", "F6_E3M2", "F4",
};

size_t jem_dtype_size(jem_dtype dt) { return ((int)dt >= 0 && (int)dt < N_DTYPES) ? dtypes[dt].size : 0; }

const char *jem_dtype_name(jem_dtype dt) { return ((int)dt >= 0 && (int)dt < N_DTYPES) ? dtypes[dt].name : "?"; }

/* --------------------------------------------------------------- helpers */

/* A name from a file, made safe to print: at most 60 bytes, non-printable
 * bytes as '?'. */
static const char *shown(const char *s, char *buf, size_t cap)
{
    size_t k = 0, i = 0;
    if (!s) return "(null)";
    for (; s[i] && k + 4 < cap && i < 60; i++) {
        unsigned char c = (unsigned char)s[i];
        buf[k++] = (c >= 0x20 && c < 0x7F) ? (char)c : '?';
    }
    if (s[i]) {
        memcpy(buf + k, "...", 3);
        k += 3;
    }
    buf[k] = 0;
    return buf;
}

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

/* numel * size with overflow checks; 0 on overflow (*ok = 0). */
static uint64_t tensor_bytes(int ndim, const int64_t *shape, size_t size, int *ok)
{
    uint64_t n = 1;
    *ok = 1;
    for (int i = 0; i < ndim; i++) {
        uint64_t d = (uint64_t)shape[i];
        if (shape[i] < 0 || (d && n > UINT64_MAX / d)) {
            *ok = 0;
            return 0;
        }
        n *= d;
    }
    if (n > UINT64_MAX / size) {
        *ok = 0;
        return 0;
    }
    return n * size;
}

/* ----------------------------------------------------------------- writing */

jem_status jem_st_new(jem_st **out)
{
    *out = calloc(1, sizeof **out);
    if (!*out) return jem_fail(JEM_ERR_NOMEM, "safetensors: out of memory");
    return JEM_OK;
}

static const st_tensor *find_linear(const jem_st *st, const char *name)
{
    for (int i = 0; i < st->nt; i++)
        if (strcmp(st->t[i].name, name) == 0) return &st->t[i];
    return NULL;
}

jem_status jem_st_add(jem_st *st, const char *name, jem_dtype dt, int ndim, const int64_t *shape, const void *data)
{
    char sb[80];
    if (!st || st->reading) return jem_fail(JEM_ERR_ARG, "safetensors: add to a file opened for reading");
    if (!name || !*name) return jem_fail(JEM_ERR_ARG, "safetensors: empty tensor name");
    const char *nm = shown(name, sb, sizeof sb);
    if (!jem_utf8_valid(name, strlen(name)))
        return jem_fail(JEM_ERR_ARG, "safetensors: tensor name \"%s\" is not valid UTF-8", nm);
    if (strcmp(name, "__metadata__") == 0) return jem_fail(JEM_ERR_ARG, "safetensors: \"__metadata__\" is reserved");
    if ((int)dt < 0 || (int)dt >= N_DTYPES)
        return jem_fail(JEM_ERR_ARG, "safetensors: tensor \"%s\": unknown dtype %d", nm, (int)dt);
    if (ndim < 0 || ndim > ST_MAX_DIMS || (ndim > 0 && !shape))
        return jem_fail(JEM_ERR_ARG, "safetensors: tensor \"%s\": bad rank %d (0 to %d)", nm, ndim, ST_MAX_DIMS);
    for (int i = 0; i < ndim; i++)
        if (shape[i] < 0)
            return jem_fail(JEM_ERR_ARG, "safetensors: tensor \"%s\": negative dimension %lld", nm,
                            (long long)shape[i]);
    int ok;
    uint64_t nbytes = tensor_bytes(ndim, shape, dtypes[dt].size, &ok);
    if (!ok || nbytes > (uint64_t)INT64_MAX)
        return jem_fail(JEM_ERR_ARG, "safetensors: tensor \"%s\": size overflows", nm);
    if (nbytes && !data) return jem_fail(JEM_ERR_ARG, "safetensors: tensor \"%s\": no data", nm);
    if (find_linear(st, name)) return jem_fail(JEM_ERR_ARG, "safetensors: duplicate tensor name \"%s\"", nm);

    if (st->nt == st->tcap) {
        int cap = st->tcap ? st->tcap * 2 : 16;
        st_tensor *t = realloc(st->t, (size_t)cap * sizeof *t);
        if (!t) return jem_fail(JEM_ERR_NOMEM, "safetensors: out of memory");
        st->t = t;
        st->tcap = cap;
    }
    st_tensor *t = &st->t[st->nt];
    memset(t, 0, sizeof *t);
    t->name = dup_str(name);
    if (!t->name) return jem_fail(JEM_ERR_NOMEM, "safetensors: out of memory");
    t->dt = dt;
    t->ndim = ndim;
    for (int i = 0; i < ndim; i++) t->shape[i] = shape[i];
    t->end = nbytes; /* begin/end are assigned at commit */
    t->data = data ? data : "";
    st->nt++;
    return JEM_OK;
}

jem_status jem_st_meta(jem_st *st, const char *key, const char *value)
{
    char sb[80];
    if (!st || st->reading) return jem_fail(JEM_ERR_ARG, "safetensors: metadata added to a file opened for reading");
    if (!key || !value) return jem_fail(JEM_ERR_ARG, "safetensors: NULL metadata key or value");
    if (!jem_utf8_valid(key, strlen(key)))
        return jem_fail(JEM_ERR_ARG, "safetensors: metadata key \"%s\" is not valid UTF-8", shown(key, sb, sizeof sb));
    if (!jem_utf8_valid(value, strlen(value)))
        return jem_fail(JEM_ERR_ARG, "safetensors: metadata \"%s\": value is not valid UTF-8",
                        shown(key, sb, sizeof sb));
    char *v = dup_str(value);
    if (!v) return jem_fail(JEM_ERR_NOMEM, "safetensors: out of memory");
    for (int i = 0; i < st->nm; i++) {
        if (strcmp(st->m[i].key, key) == 0) { /* replace */
            free((char *)st->m[i].val);
            st->m[i].val = v;
            return JEM_OK;
        }
    }
    if (st->nm == st->mcap) {
        int cap = st->mcap ? st->mcap * 2 : 8;
        st_meta *m = realloc(st->m, (size_t)cap * sizeof *m);
        if (!m) {
            free(v);
            return jem_fail(JEM_ERR_NOMEM, "safetensors: out of memory");
        }
        st->m = m;
        st->mcap = cap;
    }
    char *k = dup_str(key);
    if (!k) {
        free(v);
        return jem_fail(JEM_ERR_NOMEM, "safetensors: out of memory");
    }
    st->m[st->nm].key = k;
    st->m[st->nm].val = v;
    st->nm++;
    return JEM_OK;
}

jem_status jem_st_commit(jem_st *st, const char *path)
{
    if (!st || st->reading)
        return jem_fail(JEM_ERR_ARG, "%s: safetensors: commit of a file opened for reading", path ? path : "(null)");
    if (!path || !*path) return jem_fail(JEM_ERR_ARG, "safetensors: commit: empty path");

    /* offsets in order of addition */
    uint64_t off = 0;
    for (int i = 0; i < st->nt; i++) {
        st_tensor *t = &st->t[i];
        uint64_t nb = t->end - t->begin;
        if (nb > (uint64_t)INT64_MAX - off) return jem_fail(JEM_ERR_ARG, "%s: total tensor size overflows", path);
        t->begin = off;
        t->end = off + nb;
        off += nb;
    }

    jem_jw w;
    jem_jw_init(&w);
    jem_jw_obj_begin(&w);
    if (st->nm > 0) {
        jem_jw_key(&w, "__metadata__");
        jem_jw_obj_begin(&w);
        for (int i = 0; i < st->nm; i++) jem_jw_kstr(&w, st->m[i].key, st->m[i].val);
        jem_jw_obj_end(&w);
    }
    for (int i = 0; i < st->nt; i++) {
        const st_tensor *t = &st->t[i];
        jem_jw_key(&w, t->name);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "dtype", dtypes[t->dt].name);
        jem_jw_key(&w, "shape");
        jem_jw_arr_begin(&w);
        for (int d = 0; d < t->ndim; d++) jem_jw_int(&w, t->shape[d]);
        jem_jw_arr_end(&w);
        jem_jw_key(&w, "data_offsets");
        jem_jw_arr_begin(&w);
        jem_jw_uint(&w, t->begin);
        jem_jw_uint(&w, t->end);
        jem_jw_arr_end(&w);
        jem_jw_obj_end(&w);
    }
    jem_jw_obj_end(&w);
    /* pad with spaces so the data buffer starts 8-byte aligned */
    while ((8 + jem_jw_len(&w)) % 8 != 0 && jem_jw_status(&w) == JEM_OK) jem_jw_raw(&w, " ");
    jem_status s = jem_jw_status(&w);
    if (s) {
        jem_jw_free(&w);
        return jem_fail(s, "%s: cannot build the safetensors header", path);
    }
    size_t hlen = jem_jw_len(&w);
    if ((uint64_t)hlen > ST_MAX_HEADER) {
        jem_jw_free(&w);
        return jem_fail(JEM_ERR_ARG, "%s: safetensors header of %zu bytes exceeds the %llu-byte limit", path, hlen,
                        (unsigned long long)ST_MAX_HEADER);
    }

    unsigned char len8[8];
    for (int i = 0; i < 8; i++) len8[i] = (unsigned char)((uint64_t)hlen >> (8 * i));

    jem_atomic a;
    s = jem_atomic_open(&a, path);
    if (s) {
        jem_jw_free(&w);
        return s;
    }
    int ok = fwrite(len8, 1, 8, a.fp) == 8 && fwrite(jem_jw_cstr(&w), 1, hlen, a.fp) == hlen;
    for (int i = 0; ok && i < st->nt; i++) {
        size_t nb = (size_t)(st->t[i].end - st->t[i].begin);
        ok = nb == 0 || fwrite(st->t[i].data, 1, nb, a.fp) == nb;
    }
    jem_jw_free(&w);
    if (!ok) {
        int e = errno;
        jem_atomic_abort(&a);
        return jem_fail(JEM_ERR_IO, "%s: write failed: %s", path, strerror(e));
    }
    return jem_atomic_commit(&a);
}

/* ----------------------------------------------------------------- reading */

static int cmp_offset(const void *pa, const void *pb)
{
    const st_tensor *a = pa, *b = pb;
    if (a->begin != b->begin) return a->begin < b->begin ? -1 : 1;
    if (a->end != b->end) return a->end < b->end ? -1 : 1;
    return 0;
}

static int cmp_name_ptr(const void *pa, const void *pb)
{
    const st_tensor *a = *(const st_tensor *const *)pa, *b = *(const st_tensor *const *)pb;
    return strcmp(a->name, b->name);
}

static int cmp_meta_key(const void *pa, const void *pb)
{
    const st_meta *a = pa, *b = pb;
    return strcmp(a->key, b->key);
}

/* One tensor entry of the header. */
static jem_status parse_entry(const char *path, const jem_json *e, uint64_t data_len, st_tensor *t)
{
    char sb[80];
    const char *nm = shown(e->key, sb, sizeof sb);
    if (e->type != JEM_JSON_OBJECT)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": entry is not an object (found %s)", path, nm,
                        jem_json_type_name(e->type));
    const jem_json *dtype = NULL, *shape = NULL, *offs = NULL;
    for (const jem_json *f = e->child; f; f = f->next) {
        const jem_json **slot = NULL;
        if (strcmp(f->key, "dtype") == 0) slot = &dtype;
        else if (strcmp(f->key, "shape") == 0) slot = &shape;
        else if (strcmp(f->key, "data_offsets") == 0) slot = &offs;
        else {
            char fb[80];
            return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": unknown field \"%s\"", path, nm,
                            shown(f->key, fb, sizeof fb));
        }
        if (*slot || strlen(f->key) != f->key_len)
            return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": field \"%s\" given twice", path, nm, f->key);
        *slot = f;
    }
    if (!dtype) return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": missing \"dtype\"", path, nm);
    if (!shape) return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": missing \"shape\"", path, nm);
    if (!offs) return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": missing \"data_offsets\"", path, nm);

    /* dtype */
    const char *ds = jem_json_string(dtype);
    if (!ds) return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": dtype is not a string", path, nm);
    int dt = -1;
    for (int i = 0; i < N_DTYPES; i++)
        if (strcmp(ds, dtypes[i].name) == 0 && strlen(ds) == dtype->len) dt = i;
    if (dt < 0) {
        char db[80];
        for (size_t i = 0; i < sizeof other_dtypes / sizeof other_dtypes[0]; i++)
            if (strcmp(ds, other_dtypes[i]) == 0)
                return jem_fail(JEM_ERR_UNSUPPORTED, "%s: tensor \"%s\": dtype %s is not supported by jem", path, nm,
                                other_dtypes[i]);
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": unknown dtype \"%s\"", path, nm, shown(ds, db, sizeof db));
    }
    t->dt = (jem_dtype)dt;

    /* shape */
    if (shape->type != JEM_JSON_ARRAY)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": shape is not an array", path, nm);
    if (shape->n > ST_MAX_DIMS)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": shape has %zu dimensions (at most %d)", path, nm, shape->n,
                        ST_MAX_DIMS);
    t->ndim = (int)shape->n;
    int d = 0;
    for (const jem_json *c = shape->child; c; c = c->next, d++) {
        int64_t v;
        if (!jem_json_int(c, &v) || v < 0)
            return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": shape[%d] is not a non-negative integer", path, nm, d);
        t->shape[d] = v;
    }

    /* data_offsets */
    int64_t b, en;
    if (offs->type != JEM_JSON_ARRAY || offs->n != 2)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": data_offsets is not an array of two integers", path, nm);
    if (!jem_json_int(offs->child, &b) || !jem_json_int(offs->child->next, &en) || b < 0 || en < 0)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": data_offsets are not non-negative integers", path, nm);
    if (b > en)
        return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%lld, %lld] are reversed", path, nm,
                        (long long)b, (long long)en);
    if ((uint64_t)en > data_len)
        return jem_fail(JEM_ERR_FORMAT,
                        "%s: tensor \"%s\": data_offsets [%lld, %lld] run past the "
                        "%llu-byte data buffer",
                        path, nm, (long long)b, (long long)en, (unsigned long long)data_len);
    t->begin = (uint64_t)b;
    t->end = (uint64_t)en;

    int ok;
    uint64_t nb = tensor_bytes(t->ndim, t->shape, dtypes[dt].size, &ok);
    if (!ok) return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": shape size overflows", path, nm);
    if (nb != t->end - t->begin)
        return jem_fail(JEM_ERR_FORMAT,
                        "%s: tensor \"%s\": shape and dtype give %llu bytes but "
                        "data_offsets span %llu",
                        path, nm, (unsigned long long)nb, (unsigned long long)(t->end - t->begin));
    return JEM_OK;
}

static jem_status parse_metadata(const char *path, const jem_json *md, jem_st *st)
{
    char sb[80];
    if (md->type != JEM_JSON_OBJECT)
        return jem_fail(JEM_ERR_FORMAT, "%s: __metadata__ is not an object (found %s)", path,
                        jem_json_type_name(md->type));
    if (md->n > 0) {
        st->m = malloc(md->n * sizeof *st->m);
        if (!st->m) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (const jem_json *c = md->child; c; c = c->next) {
        const char *k = shown(c->key, sb, sizeof sb);
        if (c->type != JEM_JSON_STRING)
            return jem_fail(JEM_ERR_FORMAT, "%s: __metadata__ \"%s\": value is not a string (found %s)", path, k,
                            jem_json_type_name(c->type));
        if (strlen(c->key) != c->key_len || strlen(c->str) != c->len)
            return jem_fail(JEM_ERR_FORMAT, "%s: __metadata__ \"%s\": contains a NUL character", path, k);
        st->m[st->nm].key = c->key;
        st->m[st->nm].val = c->str;
        st->nm++;
    }
    if (st->nm > 1) {
        /* duplicates: sort a copy by key, keep file order in st->m */
        st_meta *tmp = malloc((size_t)st->nm * sizeof *tmp);
        if (!tmp) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
        memcpy(tmp, st->m, (size_t)st->nm * sizeof *tmp);
        qsort(tmp, (size_t)st->nm, sizeof *tmp, cmp_meta_key);
        for (int i = 1; i < st->nm; i++) {
            if (strcmp(tmp[i - 1].key, tmp[i].key) == 0) {
                jem_status s = jem_fail(JEM_ERR_FORMAT, "%s: __metadata__ key \"%s\" given twice", path,
                                        shown(tmp[i].key, sb, sizeof sb));
                free(tmp);
                return s;
            }
        }
        free(tmp);
    }
    return JEM_OK;
}

static jem_status parse_header(jem_st *st, const char *path, const jem_json *root, uint64_t data_len)
{
    char sb[80];
    if (root->type != JEM_JSON_OBJECT)
        return jem_fail(JEM_ERR_FORMAT, "%s: safetensors header is not a JSON object (found %s)", path,
                        jem_json_type_name(root->type));
    const jem_json *md = NULL;
    size_t nt = 0;
    for (const jem_json *c = root->child; c; c = c->next) {
        if (strlen(c->key) != c->key_len)
            return jem_fail(JEM_ERR_FORMAT, "%s: a tensor name contains a NUL character", path);
        if (strcmp(c->key, "__metadata__") == 0) {
            if (md) return jem_fail(JEM_ERR_FORMAT, "%s: __metadata__ given twice", path);
            md = c;
        } else {
            nt++;
        }
    }
    if (md) {
        jem_status s = parse_metadata(path, md, st);
        if (s) return s;
    }
    if (nt > 0) {
        st->t = calloc(nt, sizeof *st->t);
        st->by_name = malloc(nt * sizeof *st->by_name);
        if (!st->t || !st->by_name) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    }
    for (const jem_json *c = root->child; c; c = c->next) {
        if (c == md) continue;
        st_tensor *t = &st->t[st->nt];
        t->name = c->key;
        jem_status s = parse_entry(path, c, data_len, t);
        if (s) return s;
        st->nt++;
    }

    /* duplicate names */
    for (int i = 0; i < st->nt; i++) st->by_name[i] = &st->t[i];
    if (st->nt > 1) qsort(st->by_name, (size_t)st->nt, sizeof *st->by_name, cmp_name_ptr);
    for (int i = 1; i < st->nt; i++)
        if (strcmp(st->by_name[i - 1]->name, st->by_name[i]->name) == 0)
            return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\" given twice", path,
                            shown(st->by_name[i]->name, sb, sizeof sb));

    /* the tensors must tile the data buffer: no gap, no overlap, no rest */
    if (st->nt > 1) qsort(st->t, (size_t)st->nt, sizeof *st->t, cmp_offset);
    uint64_t pos = 0;
    for (int i = 0; i < st->nt; i++) {
        const st_tensor *t = &st->t[i];
        if (t->begin != pos)
            return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\": data_offsets [%llu, %llu] %s", path,
                            shown(t->name, sb, sizeof sb), (unsigned long long)t->begin, (unsigned long long)t->end,
                            t->begin < pos ? "overlap the previous tensor" : "leave a gap after the previous tensor");
        pos = t->end;
    }
    if (pos != data_len)
        return jem_fail(JEM_ERR_FORMAT,
                        "%s: %llu bytes after the last tensor (data buffer is %llu "
                        "bytes, tensors cover %llu)",
                        path, (unsigned long long)(data_len - pos), (unsigned long long)data_len,
                        (unsigned long long)pos);
    /* the sort moved the tensors: rebuild the name index */
    for (int i = 0; i < st->nt; i++) st->by_name[i] = &st->t[i];
    if (st->nt > 1) qsort(st->by_name, (size_t)st->nt, sizeof *st->by_name, cmp_name_ptr);
    return JEM_OK;
}

jem_status jem_st_open(const char *path, jem_st **out)
{
    *out = NULL;
    if (!path || !*path) return jem_fail(JEM_ERR_ARG, "safetensors: empty path");
    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    jem_st *st = NULL;
    char *header = NULL;
    jem_status s = JEM_OK;
    struct stat sb;
    if (fstat(fileno(f), &sb) != 0 || !S_ISREG(sb.st_mode)) {
        s = jem_fail(JEM_ERR_IO, "%s: not a regular file", path);
        goto done;
    }
    uint64_t fsize = (uint64_t)sb.st_size;
    if (fsize < 8) {
        s = jem_fail(JEM_ERR_FORMAT, "%s: %llu bytes is too short for a safetensors file", path,
                     (unsigned long long)fsize);
        goto done;
    }
    unsigned char len8[8];
    if (fread(len8, 1, 8, f) != 8) {
        s = ferror(f) ? jem_fail(JEM_ERR_IO, "%s: read failed", path)
                      : jem_fail(JEM_ERR_FORMAT, "%s: truncated header length", path);
        goto done;
    }
    uint64_t hlen = 0;
    for (int i = 7; i >= 0; i--) hlen = hlen << 8 | len8[i];
    if (hlen > fsize - 8) {
        s = jem_fail(JEM_ERR_FORMAT, "%s: header length %llu exceeds the file size (%llu bytes)", path,
                     (unsigned long long)hlen, (unsigned long long)fsize);
        goto done;
    }
    if (hlen > ST_MAX_HEADER) {
        s = jem_fail(JEM_ERR_FORMAT, "%s: header length %llu exceeds the %llu-byte limit", path,
                     (unsigned long long)hlen, (unsigned long long)ST_MAX_HEADER);
        goto done;
    }
    uint64_t data_len = fsize - 8 - hlen;
    if (data_len > SIZE_MAX - 1) {
        s = jem_fail(JEM_ERR_NOMEM, "%s: file too large for this machine", path);
        goto done;
    }

    st = calloc(1, sizeof *st);
    header = malloc((size_t)hlen + 1);
    if (!st || !header) {
        s = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
        goto done;
    }
    st->reading = 1;
    st->data = malloc((size_t)data_len + 1); /* +1: a valid pointer when empty */
    if (!st->data) {
        s = jem_fail(JEM_ERR_NOMEM, "%s: out of memory for %llu bytes", path, (unsigned long long)data_len);
        goto done;
    }
    if (fread(header, 1, (size_t)hlen, f) != (size_t)hlen ||
        fread(st->data, 1, (size_t)data_len, f) != (size_t)data_len) {
        s = ferror(f) ? jem_fail(JEM_ERR_IO, "%s: read failed", path)
                      : jem_fail(JEM_ERR_FORMAT, "%s: file shorter than expected (changed while reading?)", path);
        goto done;
    }

    s = jem_json_parse(header, (size_t)hlen, path, &st->doc);
    if (s) goto done;
    s = parse_header(st, path, st->doc, data_len);
    if (s) goto done;

    for (int i = 0; i < st->nt; i++) {
        st_tensor *t = &st->t[i];
        size_t nb = (size_t)(t->end - t->begin), esz = dtypes[t->dt].size;
        const unsigned char *p = st->data + t->begin;
        if (nb == 0) {
            t->data = st->data; /* any aligned, valid pointer */
        } else if (((uintptr_t)p % esz) == 0) {
            t->data = p;
        } else {
            t->own = malloc(nb);
            if (!t->own) {
                s = jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
                goto done;
            }
            memcpy(t->own, p, nb);
            t->data = t->own;
        }
    }

done:
    fclose(f);
    free(header);
    if (s) {
        jem_st_free(st);
        return s;
    }
    *out = st;
    return JEM_OK;
}

/* ------------------------------------------------------------------ access */

static const st_tensor *find(const jem_st *st, const char *name)
{
    if (!st->reading) return find_linear(st, name);
    int lo = 0, hi = st->nt - 1;
    while (lo <= hi) {
        int mid = lo + (hi - lo) / 2;
        int c = strcmp(st->by_name[mid]->name, name);
        if (c == 0) return st->by_name[mid];
        if (c < 0) lo = mid + 1;
        else hi = mid - 1;
    }
    return NULL;
}

const void *jem_st_get(const jem_st *st, const char *name, jem_dtype *dt, int *ndim, int64_t *shape)
{
    if (!st || !name) return NULL;
    const st_tensor *t = find(st, name);
    if (!t) return NULL;
    if (dt) *dt = t->dt;
    if (ndim) *ndim = t->ndim;
    if (shape)
        for (int i = 0; i < t->ndim; i++) shape[i] = t->shape[i];
    return t->data;
}

const char *jem_st_get_meta(const jem_st *st, const char *key)
{
    if (!st || !key) return NULL;
    for (int i = 0; i < st->nm; i++)
        if (strcmp(st->m[i].key, key) == 0) return st->m[i].val;
    return NULL;
}

int jem_st_meta_count(const jem_st *st) { return st ? st->nm : 0; }

const char *jem_st_meta_key(const jem_st *st, int i) { return (st && i >= 0 && i < st->nm) ? st->m[i].key : NULL; }

int jem_st_count(const jem_st *st) { return st ? st->nt : 0; }

const char *jem_st_name(const jem_st *st, int i) { return (st && i >= 0 && i < st->nt) ? st->t[i].name : NULL; }

void jem_st_free(jem_st *st)
{
    if (!st) return;
    if (st->reading) {
        for (int i = 0; i < st->nt; i++) free(st->t[i].own);
    } else {
        for (int i = 0; i < st->nt; i++) free((char *)st->t[i].name);
        for (int i = 0; i < st->nm; i++) {
            free((char *)st->m[i].key);
            free((char *)st->m[i].val);
        }
    }
    free(st->t);
    free(st->by_name);
    free(st->m);
    free(st->data);
    jem_json_free(st->doc);
    free(st);
}

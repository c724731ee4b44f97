/* safetensors: round trips, the Python-written fixture, and hostile input
 * (every truncation, each kind of header violation, random mutations).
 *
 * JEM_ST_EXPORT=PATH writes the fixture's tensors and metadata with jem's
 * writer to PATH, for `scripts/make_st_fixture.py --check PATH`. */
#include "jem.h"
#include "tmpdir.h"

#include <fcntl.h>
#include <float.h>
#include <stdint.h>
#include <sys/stat.h>
#include <unistd.h>

/* Plain (non-atomic, no fsync) file writing for crafted inputs. */
static int put_file(const char *path, const void *a, size_t na, const void *b, size_t nb)
{
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    int ok = (na == 0 || fwrite(a, 1, na, f) == na) && (nb == 0 || fwrite(b, 1, nb, f) == nb);
    return fclose(f) == 0 && ok;
}

static unsigned char *slurp(const char *path, size_t *n)
{
    char *buf = NULL;
    if (jem_read_file(path, 0, &buf, n) != JEM_OK) return NULL;
    return (unsigned char *)buf;
}

/* A safetensors file with the given header text and hlen as its declared
 * length, followed by ndata data bytes (0, 1, 2, ...). */
static void make_st_len(const char *path, uint64_t hlen, const char *header, size_t ndata)
{
    size_t hl = strlen(header);
    unsigned char *b = malloc(8 + hl + ndata + 1);
    if (!b) {
        ASSERT(0);
        return;
    }
    for (int i = 0; i < 8; i++) b[i] = (unsigned char)(hlen >> (8 * i));
    memcpy(b + 8, header, hl);
    for (size_t i = 0; i < ndata; i++) b[8 + hl + i] = (unsigned char)i;
    ASSERT(put_file(path, b, 8 + hl + ndata, NULL, 0));
    free(b);
}

static void make_st(const char *path, const char *header, size_t ndata)
{
    make_st_len(path, strlen(header), header, ndata);
}

static jem_status try_open(const char *path)
{
    jem_st *st = NULL;
    jem_status s = jem_st_open(path, &st);
    if (s == JEM_OK) {
        /* touch every byte so the sanitizer sees any bad pointer */
        volatile unsigned sum = 0;
        for (int i = 0; i < jem_st_count(st); i++) {
            jem_dtype dt;
            int nd;
            int64_t sh[8];
            const unsigned char *p = jem_st_get(st, jem_st_name(st, i), &dt, &nd, sh);
            size_t n = jem_dtype_size(dt);
            for (int d = 0; d < nd; d++) n *= (size_t)sh[d];
            for (size_t k = 0; k < n; k++) sum += p[k];
        }
        for (int i = 0; i < jem_st_meta_count(st); i++)
            sum += (unsigned)strlen(jem_st_get_meta(st, jem_st_meta_key(st, i)));
        (void)sum;
        jem_st_free(st);
    } else {
        ASSERT_MSG(st == NULL, "*out not NULL after failure");
    }
    return s;
}

/* ------------------------------------------------ the fixture's contents */

#define UNICODE_NAME "unicode.\xd0\xb6\xe2\x82\xac\xf0\x9f\x98\x80"
#define QUOTE_KEY    "quote\"back\\slash"
#define QUOTE_VAL    "line1\nline2\ttab \"q\" \\ \xc3\xa9 \xd0\xb6 \xf0\x9f\x98\x80 \x01 end"

typedef struct {
    const char *name;
    jem_dtype dt;
    int ndim;
    int64_t shape[3];
    size_t nbytes;
    unsigned char data[256];
} expect_t;

/* Mirrors expected() in scripts/make_st_fixture.py, in its data order. */
static int expect_tensors(expect_t *e)
{
    memset(e, 0, 9 * sizeof *e);
    /* u8.odd (3, 5) */
    e[0] = (expect_t){"u8.odd", JEM_DT_U8, 2, {3, 5}, 15, {0}};
    for (int i = 0; i < 15; i++) e[0].data[i] = (unsigned char)((i * 37 + 11) % 256);
    /* f32.weight (2, 3, 4) */
    e[1] = (expect_t){"f32.weight", JEM_DT_F32, 3, {2, 3, 4}, 96, {0}};
    for (int i = 0; i < 24; i++) {
        float v = (float)(i / 10.0 - 1.0);
        memcpy(e[1].data + 4 * i, &v, 4);
    }
    /* f64.values (5) */
    e[2] = (expect_t){"f64.values", JEM_DT_F64, 1, {5}, 40, {0}};
    double d[5] = {1.0 / 3.0, -2.5e-300, 3.141592653589793, 1e308, -0.0};
    memcpy(e[2].data, d, 40);
    /* scalar () */
    e[3] = (expect_t){"scalar", JEM_DT_F32, 0, {0}, 4, {0}};
    float sc = 7.5f;
    memcpy(e[3].data, &sc, 4);
    /* empty (0, 4) */
    e[4] = (expect_t){"empty", JEM_DT_F32, 2, {0, 4}, 0, {0}};
    /* i32.ids (2, 2) */
    e[5] = (expect_t){"i32.ids", JEM_DT_I32, 2, {2, 2}, 16, {0}};
    int32_t ii[4] = {INT32_MIN, -1, 0, INT32_MAX};
    memcpy(e[5].data, ii, 16);
    /* f32.special (8): 0, -0, inf, -inf, nan, smallest denormal, max, 1/3 */
    e[6] = (expect_t){"f32.special", JEM_DT_F32, 1, {8}, 32, {0}};
    uint32_t sb[8] = {0x00000000u, 0x80000000u, 0x7f800000u, 0xff800000u, 0x7fc00000u, 0x00000001u, 0x7f7fffffu, 0};
    float third = (float)(1.0 / 3.0);
    memcpy(&sb[7], &third, 4);
    memcpy(e[6].data, sb, 32);
    /* i64.big (3) */
    e[7] = (expect_t){"i64.big", JEM_DT_I64, 1, {3}, 24, {0}};
    int64_t ll[3] = {INT64_MIN, -42, INT64_MAX};
    memcpy(e[7].data, ll, 24);
    /* unicode name, U8 (1) */
    e[8] = (expect_t){UNICODE_NAME, JEM_DT_U8, 1, {1}, 1, {200}};
    return 9;
}

static char *long_meta(void)
{
    char *s = malloc(5001);
    if (!s) return NULL;
    for (int i = 0; i < 5000; i++) s[i] = (char)('a' + i % 26);
    s[5000] = 0;
    return s;
}

/* Check st holds exactly the fixture's tensors (in data order) and metadata. */
static void check_fixture(const jem_st *st, const char *what)
{
    expect_t e[9];
    int n = expect_tensors(e);
    ASSERT_MSG(jem_st_count(st) == n, "%s: %d tensors", what, jem_st_count(st));
    for (int i = 0; i < n; i++) {
        const char *nm = jem_st_name(st, i);
        ASSERT_MSG(nm && strcmp(nm, e[i].name) == 0, "%s: tensor %d is %s, want %s", what, i, nm ? nm : "(null)",
                   e[i].name);
        jem_dtype dt = (jem_dtype)-1;
        int nd = -1;
        int64_t sh[8] = {-1, -1, -1, -1, -1, -1, -1, -1};
        const void *p = jem_st_get(st, e[i].name, &dt, &nd, sh);
        ASSERT_MSG(p != NULL, "%s: %s missing", what, e[i].name);
        if (!p) continue;
        ASSERT_EQ_INT(dt, e[i].dt);
        ASSERT_EQ_INT(nd, e[i].ndim);
        int shape_ok = 1;
        for (int k = 0; k < e[i].ndim; k++) shape_ok &= sh[k] == e[i].shape[k];
        ASSERT_MSG(shape_ok, "%s: %s shape", what, e[i].name);
        ASSERT_MSG((uintptr_t)p % jem_dtype_size(dt) == 0, "%s: %s misaligned", what, e[i].name);
        ASSERT_MSG(e[i].nbytes == 0 || memcmp(p, e[i].data, e[i].nbytes) == 0, "%s: %s data differs", what, e[i].name);
    }
    char *lm = long_meta();
    ASSERT_EQ_INT(jem_st_meta_count(st), 3);
    const char *v = jem_st_get_meta(st, "format");
    ASSERT(v && strcmp(v, "pt") == 0);
    v = jem_st_get_meta(st, QUOTE_KEY);
    ASSERT_MSG(v && strcmp(v, QUOTE_VAL) == 0, "%s: quoted metadata differs", what);
    v = jem_st_get_meta(st, "long");
    ASSERT(v && lm && strcmp(v, lm) == 0);
    ASSERT(jem_st_get_meta(st, "absent") == NULL);
    free(lm);
}

static jem_status write_fixture_set(const char *path)
{
    expect_t e[9];
    int n = expect_tensors(e);
    jem_st *st = NULL;
    jem_status s = jem_st_new(&st);
    if (s) return s;
    for (int i = 0; i < n && !s; i++) s = jem_st_add(st, e[i].name, e[i].dt, e[i].ndim, e[i].shape, e[i].data);
    char *lm = long_meta();
    if (!s) s = jem_st_meta(st, "format", "pt");
    if (!s) s = jem_st_meta(st, QUOTE_KEY, QUOTE_VAL);
    if (!s) s = lm ? jem_st_meta(st, "long", lm) : JEM_ERR_NOMEM;
    if (!s) s = jem_st_commit(st, path);
    free(lm);
    jem_st_free(st);
    return s;
}

static void test_python_fixture(void)
{
    const char *path = FIXTURES "/st/python.safetensors";
    jem_st *st = NULL;
    ASSERT_OK(jem_st_open(path, &st));
    if (st) check_fixture(st, "python fixture");
    jem_st_free(st);

    /* the same set written by jem reads back the same */
    const char *mine = t_path("jem_fixture.safetensors");
    ASSERT_OK(write_fixture_set(mine));
    st = NULL;
    ASSERT_OK(jem_st_open(mine, &st));
    if (st) check_fixture(st, "jem-written fixture");
    jem_st_free(st);

    const char *exp = getenv("JEM_ST_EXPORT");
    if (exp && *exp) {
        ASSERT_OK(write_fixture_set(exp));
        printf("wrote %s\n", exp);
    }
}

/* ------------------------------------------------------------ round trip */

static void test_round_trip(void)
{
    jem_rng r;
    jem_rng_seed(&r, 11, 0);
    float w[4 * 3 * 3 * 3];
    for (int i = 0; i < 108; i++) w[i] = jem_rng_normal(&r);
    w[0] = -0.0f;
    w[1] = INFINITY;
    w[2] = NAN;
    w[3] = FLT_MIN / 8;
    w[4] = -FLT_MAX;
    double b[10];
    for (int i = 0; i < 10; i++) b[i] = jem_rng_normal_d(&r) * 1e-200;
    int32_t lab[7] = {0, -1, 9, INT32_MIN, INT32_MAX, 12345, -54321};
    int64_t steps[4] = {INT64_MIN, INT64_MAX, 0, 1234567890123LL};
    uint8_t img[50];
    for (int i = 0; i < 50; i++) img[i] = (uint8_t)jem_rng_u64(&r);
    double scalar = -1.5;
    uint8_t one = 77;
    const char *weird = "we\"ird\\name\n\x01\t\xc3\xa9\xf0\x9f\x98\x80/";

    char ctl[40];
    for (int i = 1; i < 32; i++) ctl[i - 1] = (char)i;
    strcpy(ctl + 31, "\"\\end");
    size_t bign = 100000;
    char *bigval = malloc(bign + 1);
    if (!bigval) {
        ASSERT(0);
        return;
    }
    for (size_t i = 0; i < bign; i++) bigval[i] = "ab\"\\\n\x7f"[i % 6];
    bigval[bign] = 0;
    const char *opts = "{\"lr\": 0.0001, \"sgld\": {\"steps\": 20, \"sigma\": 0.01}, \"tags\": [\"a\", \"b\"]}";

    jem_st *st = NULL;
    ASSERT_OK(jem_st_new(&st));
    if (!st) {
        free(bigval);
        return;
    }
    ASSERT_OK(jem_st_add(st, "conv.weight", JEM_DT_F32, 4, (int64_t[]){4, 3, 3, 3}, w));
    ASSERT_OK(jem_st_add(st, "fc.bias", JEM_DT_F64, 1, (int64_t[]){10}, b));
    ASSERT_OK(jem_st_add(st, "labels", JEM_DT_I32, 1, (int64_t[]){7}, lab));
    ASSERT_OK(jem_st_add(st, "steps", JEM_DT_I64, 2, (int64_t[]){2, 2}, steps));
    ASSERT_OK(jem_st_add(st, "img", JEM_DT_U8, 3, (int64_t[]){2, 5, 5}, img));
    ASSERT_OK(jem_st_add(st, "scalar", JEM_DT_F64, 0, NULL, &scalar));
    ASSERT_OK(jem_st_add(st, "empty", JEM_DT_U8, 1, (int64_t[]){0}, NULL));
    ASSERT_OK(jem_st_add(st, "empty2", JEM_DT_F32, 3, (int64_t[]){3, 0, 2}, NULL));
    ASSERT_OK(jem_st_add(st, weird, JEM_DT_U8, 1, (int64_t[]){1}, &one));
    ASSERT_OK(jem_st_add(st, "eight", JEM_DT_U8, 8, (int64_t[]){1, 1, 1, 1, 1, 1, 1, 1}, &one));
    ASSERT_OK(jem_st_meta(st, "jem.arch", "name = ref\nin_c = 1\n# comment\n"));
    ASSERT_OK(jem_st_meta(st, "opts", opts));
    ASSERT_OK(jem_st_meta(st, "quote\"key\\", "\"quoted\"\\"));
    ASSERT_OK(jem_st_meta(st, "ctl", ctl));
    ASSERT_OK(jem_st_meta(st, "unicode", "\xc3\xa9 \xd0\xb6 \xf0\x9f\x98\x80"));
    ASSERT_OK(jem_st_meta(st, "empty", ""));
    ASSERT_OK(jem_st_meta(st, "big", "to be replaced"));
    ASSERT_OK(jem_st_meta(st, "big", bigval)); /* replaces */

    /* a handle being written answers queries too */
    ASSERT_EQ_INT(jem_st_count(st), 10);
    ASSERT(jem_st_get(st, "labels", NULL, NULL, NULL) == lab);
    ASSERT(jem_st_get(st, "empty", NULL, NULL, NULL) != NULL);
    ASSERT(strcmp(jem_st_get_meta(st, "big"), bigval) == 0);

    const char *p1 = t_path("rt1.safetensors"), *p2 = t_path("rt2.safetensors");
    ASSERT_OK(jem_st_commit(st, p1));
    ASSERT_OK(jem_st_commit(st, p2)); /* committing twice is allowed */
    jem_st_free(st);

    /* identical bytes both times; layout as documented */
    size_t n1 = 0, n2 = 0;
    unsigned char *f1 = slurp(p1, &n1), *f2 = slurp(p2, &n2);
    ASSERT(f1 && f2 && n1 == n2 && memcmp(f1, f2, n1) == 0);
    if (f1 && n1 >= 8) {
        uint64_t hl = 0;
        for (int i = 7; i >= 0; i--) hl = hl << 8 | f1[i];
        ASSERT_EQ_INT((8 + hl) % 8, 0);
        ASSERT(f1[8] == '{');
        size_t data_bytes = sizeof w + sizeof b + sizeof lab + sizeof steps + sizeof img + 8 + 1 + 1;
        ASSERT_EQ_INT(n1, 8 + hl + data_bytes);
        /* data in order of addition */
        ASSERT(memcmp(f1 + 8 + hl, w, sizeof w) == 0);
        ASSERT(memcmp(f1 + 8 + hl + sizeof w, b, sizeof b) == 0);
    }
    free(f1);
    free(f2);

    st = NULL;
    ASSERT_OK(jem_st_open(p1, &st));
    if (!st) {
        free(bigval);
        return;
    }
    static const char *const order[] = {"conv.weight", "fc.bias", "labels", "steps", "img",
                                        "scalar",      "empty",   "empty2", NULL,    "eight"};
    ASSERT_EQ_INT(jem_st_count(st), 10);
    for (int i = 0; i < 10; i++) {
        const char *want = order[i] ? order[i] : weird;
        ASSERT_MSG(jem_st_name(st, i) && strcmp(jem_st_name(st, i), want) == 0, "name %d", i);
    }
    ASSERT(jem_st_name(st, 10) == NULL && jem_st_name(st, -1) == NULL);

    jem_dtype dt;
    int nd;
    int64_t sh[8];
    const void *p = jem_st_get(st, "conv.weight", &dt, &nd, sh);
    ASSERT(p && dt == JEM_DT_F32 && nd == 4 && sh[0] == 4 && sh[1] == 3 && sh[3] == 3);
    ASSERT(p && memcmp(p, w, sizeof w) == 0);
    p = jem_st_get(st, "fc.bias", &dt, &nd, sh);
    ASSERT(p && dt == JEM_DT_F64 && nd == 1 && sh[0] == 10 && memcmp(p, b, sizeof b) == 0);
    ASSERT((uintptr_t)p % 8 == 0);
    p = jem_st_get(st, "labels", &dt, NULL, NULL);
    ASSERT(p && dt == JEM_DT_I32 && memcmp(p, lab, sizeof lab) == 0);
    p = jem_st_get(st, "steps", &dt, &nd, sh);
    ASSERT(p && dt == JEM_DT_I64 && nd == 2 && memcmp(p, steps, sizeof steps) == 0);
    p = jem_st_get(st, "img", &dt, &nd, sh);
    ASSERT(p && dt == JEM_DT_U8 && nd == 3 && sh[2] == 5 && memcmp(p, img, sizeof img) == 0);
    p = jem_st_get(st, "scalar", &dt, &nd, sh);
    ASSERT(p && dt == JEM_DT_F64 && nd == 0 && memcmp(p, &scalar, 8) == 0);
    p = jem_st_get(st, "empty", &dt, &nd, sh);
    ASSERT(p && nd == 1 && sh[0] == 0);
    p = jem_st_get(st, "empty2", &dt, &nd, sh);
    ASSERT(p && nd == 3 && sh[0] == 3 && sh[1] == 0 && sh[2] == 2);
    p = jem_st_get(st, weird, &dt, &nd, sh);
    ASSERT(p && *(const uint8_t *)p == 77);
    p = jem_st_get(st, "eight", &dt, &nd, sh);
    ASSERT(p && nd == 8 && sh[7] == 1);
    ASSERT(jem_st_get(st, "missing", &dt, &nd, sh) == NULL);
    ASSERT(jem_st_get(st, "", NULL, NULL, NULL) == NULL);

    ASSERT_EQ_INT(jem_st_meta_count(st), 7);
    static const char *const mkeys[] = {"jem.arch", "opts", "quote\"key\\", "ctl", "unicode", "empty", "big"};
    for (int i = 0; i < 7; i++)
        ASSERT_MSG(jem_st_meta_key(st, i) && strcmp(jem_st_meta_key(st, i), mkeys[i]) == 0, "meta key %d", i);
    ASSERT(jem_st_meta_key(st, 7) == NULL);
    ASSERT(strcmp(jem_st_get_meta(st, "jem.arch"), "name = ref\nin_c = 1\n# comment\n") == 0);
    ASSERT(strcmp(jem_st_get_meta(st, "opts"), opts) == 0);
    ASSERT(strcmp(jem_st_get_meta(st, "quote\"key\\"), "\"quoted\"\\") == 0);
    ASSERT(strcmp(jem_st_get_meta(st, "ctl"), ctl) == 0);
    ASSERT(strcmp(jem_st_get_meta(st, "unicode"), "\xc3\xa9 \xd0\xb6 \xf0\x9f\x98\x80") == 0);
    ASSERT(strcmp(jem_st_get_meta(st, "empty"), "") == 0);
    ASSERT(strcmp(jem_st_get_meta(st, "big"), bigval) == 0);

    /* a handle opened for reading cannot be written */
    ASSERT_ERR(jem_st_add(st, "x", JEM_DT_U8, 0, NULL, &one), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_meta(st, "k", "v"), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_commit(st, t_path("never.safetensors")), JEM_ERR_ARG);
    jem_st_free(st);
    free(bigval);

    /* no tensors, no metadata: header "{}" padded */
    ASSERT_OK(jem_st_new(&st));
    const char *p3 = t_path("empty.safetensors");
    ASSERT_OK(jem_st_commit(st, p3));
    jem_st_free(st);
    st = NULL;
    ASSERT_OK(jem_st_open(p3, &st));
    ASSERT_EQ_INT(jem_st_count(st), 0);
    ASSERT_EQ_INT(jem_st_meta_count(st), 0);
    jem_st_free(st);
    jem_st_free(NULL);
    ASSERT_EQ_INT(jem_st_count(NULL), 0);
    ASSERT(jem_st_get(NULL, "x", NULL, NULL, NULL) == NULL);
}

static void test_writer_args(void)
{
    jem_st *st = NULL;
    ASSERT_OK(jem_st_new(&st));
    if (!st) return;
    float x[4] = {1, 2, 3, 4};
    int64_t s4[1] = {4};
    ASSERT_OK(jem_st_add(st, "x", JEM_DT_F32, 1, s4, x));
    ASSERT_ERR(jem_st_add(st, "x", JEM_DT_F32, 1, s4, x), JEM_ERR_ARG); /* duplicate */
    ASSERT_STR_CONTAINS(jem_last_error(), "duplicate");
    ASSERT_ERR(jem_st_add(st, "", JEM_DT_F32, 1, s4, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, NULL, JEM_DT_F32, 1, s4, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "__metadata__", JEM_DT_F32, 1, s4, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "bad\xff", JEM_DT_F32, 1, s4, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", (jem_dtype)17, 1, s4, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F32, 9, (int64_t[9]){1, 1, 1, 1, 1, 1, 1, 1, 1}, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F32, -1, s4, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F32, 1, NULL, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F32, 1, (int64_t[]){-4}, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F32, 1, s4, NULL), JEM_ERR_ARG); /* no data */
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F64, 3, (int64_t[]){INT64_MAX, INT64_MAX, 2}, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_add(st, "y", JEM_DT_F64, 1, (int64_t[]){INT64_MAX / 4}, x), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_meta(st, NULL, "v"), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_meta(st, "k", NULL), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_meta(st, "k", "bad \xc0\xaf"), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_meta(st, "\xed\xa0\x80", "v"), JEM_ERR_ARG);
    ASSERT_EQ_INT(jem_st_count(st), 1);
    ASSERT_EQ_INT(jem_st_meta_count(st), 0);
    ASSERT_ERR(jem_st_commit(st, ""), JEM_ERR_ARG);
    ASSERT_ERR(jem_st_commit(st, NULL), JEM_ERR_ARG);
    /* a directory that does not exist: I/O error naming the path, nothing created */
    const char *bad = t_path("no/such/dir/x.safetensors");
    ASSERT_ERR(jem_st_commit(st, bad), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), bad);
    jem_st_free(st);

    ASSERT_STR_CONTAINS(jem_dtype_name(JEM_DT_I64), "I64");
    ASSERT_EQ_INT(jem_dtype_size(JEM_DT_F64), 8);
    ASSERT_EQ_INT(jem_dtype_size(JEM_DT_U8), 1);
    ASSERT_EQ_INT(jem_dtype_size((jem_dtype)99), 0);
}

/* ---------------------------------------------------------- hostile input */

#define GOOD_HDR                                                       \
    "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}," \
    "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}"

typedef struct {
    const char *header;
    size_t ndata;
    jem_status want;
    const char *msg; /* substring of the message, besides the file name */
} bad_case;

static void test_bad_headers(void)
{
    static const bad_case cases[] = {
        {GOOD_HDR, 11, JEM_OK, NULL},
        {GOOD_HDR "   \t\n ", 11, JEM_OK, NULL},
        {"{}", 0, JEM_OK, NULL},
        {"{\"__metadata__\":{}}", 0, JEM_OK, NULL},
        /* not JSON, not an object */
        {"hello", 11, JEM_ERR_FORMAT, "JSON"},
        {"", 0, JEM_ERR_FORMAT, "JSON"},
        {"[]", 0, JEM_ERR_FORMAT, "not a JSON object"},
        {"{\"a\":1", 0, JEM_ERR_FORMAT, "JSON"},
        {GOOD_HDR "x", 11, JEM_ERR_FORMAT, "after the JSON"},
        {"{\"a\":{\"dtype\":\"F32\xff\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "UTF-8"},
        /* dtype */
        {"{\"a\":{\"dtype\":\"X99\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"f32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "unknown dtype"},
        {"{\"a\":{\"dtype\":\"F32\\u0000\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "dtype"},
        {"{\"a\":{\"dtype\":4,\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "dtype"},
        {"{\"a\":{\"dtype\":\"F16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8, JEM_ERR_UNSUPPORTED, "F16"},
        {"{\"a\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[0,8]}}", 8, JEM_ERR_UNSUPPORTED, "BF16"},
        /* shape */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "span"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "span"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[-2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2.0],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,\"2\"],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "shape[1]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "shape"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1,1,1,1,2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT,
         "dimensions"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296,4],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT,
         "overflow"},
        {"{\"a\":{\"dtype\":\"F64\",\"shape\":[2305843009213693952],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT,
         "overflow"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[99999999999999999999],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT,
         "shape[0]"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[0,99999999999],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "span"},
        /* data_offsets */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 4, JEM_ERR_FORMAT, "run past"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, JEM_ERR_FORMAT, "reversed"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8.0]}}", 8, JEM_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[-1,7]}}", 8, JEM_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8,8]}}", 8, JEM_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, JEM_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":\"0,8\"}}", 8, JEM_ERR_FORMAT, "data_offsets"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,18446744073709551615]}}", 8, JEM_ERR_FORMAT,
         "data_offsets"},
        /* tiling: overlap, gap, trailing bytes, nothing covering the data */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[4,7]}}",
         11, JEM_ERR_FORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
         8, JEM_ERR_FORMAT, "overlap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"b\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[9,12]}}",
         12, JEM_ERR_FORMAT, "gap"},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12, JEM_ERR_FORMAT, "gap"},
        {GOOD_HDR, 12, JEM_ERR_FORMAT, "after the last tensor"},
        {GOOD_HDR, 4096, JEM_ERR_FORMAT, "after the last tensor"},
        {"{}", 3, JEM_ERR_FORMAT, "after the last tensor"},
        /* names */
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
         "\"a\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]}}",
         11, JEM_ERR_FORMAT, "given twice"},
        {"{\"a\\u0000b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "NUL"},
        /* entry fields */
        {"{\"a\":[1]}", 0, JEM_ERR_FORMAT, "not an object"},
        {"{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "missing \"dtype\""},
        {"{\"a\":{\"dtype\":\"F32\",\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT, "missing \"shape\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8, JEM_ERR_FORMAT, "missing \"data_offsets\""},
        {"{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8],\"extra\":1}}", 8, JEM_ERR_FORMAT,
         "unknown field"},
        {"{\"a\":{\"dtype\":\"F32\",\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, JEM_ERR_FORMAT,
         "twice"},
        /* metadata */
        {"{\"__metadata__\":{\"k\":1}}", 0, JEM_ERR_FORMAT, "not a string"},
        {"{\"__metadata__\":{\"k\":null}}", 0, JEM_ERR_FORMAT, "not a string"},
        {"{\"__metadata__\":[]}", 0, JEM_ERR_FORMAT, "__metadata__"},
        {"{\"__metadata__\":\"x\"}", 0, JEM_ERR_FORMAT, "__metadata__"},
        {"{\"__metadata__\":{\"k\":\"v\",\"k\":\"w\"}}", 0, JEM_ERR_FORMAT, "twice"},
        {"{\"__metadata__\":{},\"__metadata__\":{}}", 0, JEM_ERR_FORMAT, "twice"},
        {"{\"__metadata__\":{\"k\":\"a\\u0000b\"}}", 0, JEM_ERR_FORMAT, "NUL"},
    };
    const char *path = t_path("bad.safetensors");
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        const bad_case *c = &cases[i];
        make_st(path, c->header, c->ndata);
        jem_status s = try_open(path);
        ASSERT_MSG(s == c->want, "case %zu [%s]: %s (want %s): %s", i, c->header, jem_strerror(s),
                   jem_strerror(c->want), jem_last_error());
        if (c->want != JEM_OK && s != JEM_OK) {
            ASSERT_STR_CONTAINS(jem_last_error(), path);
            ASSERT_STR_CONTAINS(jem_last_error(), c->msg);
        }
    }

    /* a header with a NUL byte inside its declared length */
    {
        char h[] = "{}\0 ";
        unsigned char b[12] = {4, 0, 0, 0, 0, 0, 0, 0};
        memcpy(b + 8, h, 4);
        ASSERT(put_file(path, b, 12, NULL, 0));
        ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    }

    /* the message names the offending tensor */
    make_st(path, "{\"conv.weight\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "conv.weight");

    /* names that are hostile to print are shown safely and shortened */
    char hdr[600];
    snprintf(hdr, sizeof hdr, "{\"%s\\n\\u001b[31m%0200d\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}",
             "x", 0);
    make_st(path, hdr, 8);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    ASSERT(strchr(jem_last_error(), '\033') == NULL && strchr(jem_last_error(), '\n') == NULL);
    ASSERT_STR_CONTAINS(jem_last_error(), "...");

    /* deep nesting inside the header */
    size_t depth = 100000;
    char *deep = malloc(depth + 16);
    if (deep) {
        memcpy(deep, "{\"a\":", 5);
        memset(deep + 5, '[', depth);
        deep[5 + depth] = 0;
        make_st(path, deep, 0);
        ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
        ASSERT_STR_CONTAINS(jem_last_error(), "nesting");
        free(deep);
    }

    /* files too short for the length field */
    for (size_t k = 0; k < 8; k++) {
        ASSERT(put_file(path, "\x02\0\0\0\0\0\0\0", k, NULL, 0));
        ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
        ASSERT_STR_CONTAINS(jem_last_error(), path);
    }
    /* header length 0 */
    make_st_len(path, 0, "", 0);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    /* header length beyond the file */
    make_st_len(path, 1000, GOOD_HDR, 11);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "exceeds the file size");
    ASSERT_STR_CONTAINS(jem_last_error(), path);
    make_st_len(path, UINT64_MAX, GOOD_HDR, 11);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    make_st_len(path, (uint64_t)1 << 63, GOOD_HDR, 11);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);
    /* header length shorter than the JSON: the rest is taken as data */
    make_st_len(path, strlen(GOOD_HDR) - 1, GOOD_HDR, 11);
    ASSERT_ERR(try_open(path), JEM_ERR_FORMAT);

    /* a huge declared header within a (sparse) huge file: refused by the cap
     * before anything that size is allocated */
    const char *sparse = t_path("sparse.safetensors");
    int fd = open(sparse, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    if (fd >= 0) {
        unsigned char len8[8];
        uint64_t hl = (uint64_t)150 << 20;
        for (int i = 0; i < 8; i++) len8[i] = (unsigned char)(hl >> (8 * i));
        int ok = write(fd, len8, 8) == 8 && ftruncate(fd, (off_t)200 << 20) == 0;
        close(fd);
        if (ok) {
            ASSERT_ERR(try_open(sparse), JEM_ERR_FORMAT);
            ASSERT_STR_CONTAINS(jem_last_error(), "limit");
            ASSERT_STR_CONTAINS(jem_last_error(), sparse);
        }
        unlink(sparse);
    }

    /* not a file */
    ASSERT_ERR(try_open(t_dir()), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), t_dir());
    ASSERT_ERR(try_open(t_path("missing.safetensors")), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), "missing.safetensors");
    unlink(path);
}

/* Every proper prefix of a valid file must be refused cleanly. */
static void check_prefixes(const char *src, int stride)
{
    size_t n = 0;
    unsigned char *full = slurp(src, &n);
    ASSERT_MSG(full != NULL, "cannot read %s", src);
    if (!full) return;
    const char *path = t_path("prefix.safetensors");
    size_t tried = 0, refused = 0, unnamed = 0;
    for (size_t k = 0; k < n; k += (k < 64 || n - k < 64) ? 1 : (size_t)stride) {
        if (!put_file(path, full, k, NULL, 0)) break;
        tried++;
        jem_status s = try_open(path);
        if (s == JEM_ERR_FORMAT) refused++;
        if (!strstr(jem_last_error(), path)) unnamed++;
    }
    ASSERT_MSG(tried > 0 && refused == tried, "%s: %zu of %zu prefixes refused", src, refused, tried);
    ASSERT_EQ_INT(unnamed, 0);
    ASSERT(put_file(path, full, n, NULL, 0));
    ASSERT_OK(try_open(path));
    unlink(path);
    free(full);
}

static void test_truncation(void)
{
    int stride = t_quick() ? 7 : 1;
    /* a small jem file with every dtype and escaped metadata */
    const char *small = t_path("small.safetensors");
    float f[3] = {1, -2, 3};
    double d[2] = {0.5, -0.25};
    int32_t i32[2] = {-7, 7};
    int64_t i64[1] = {-1};
    uint8_t u8[5] = {1, 2, 3, 4, 5};
    jem_st *st = NULL;
    ASSERT_OK(jem_st_new(&st));
    ASSERT_OK(jem_st_add(st, "f", JEM_DT_F32, 1, (int64_t[]){3}, f));
    ASSERT_OK(jem_st_add(st, "d", JEM_DT_F64, 2, (int64_t[]){1, 2}, d));
    ASSERT_OK(jem_st_add(st, "i\"32", JEM_DT_I32, 1, (int64_t[]){2}, i32));
    ASSERT_OK(jem_st_add(st, "i64", JEM_DT_I64, 0, NULL, i64));
    ASSERT_OK(jem_st_add(st, "u8", JEM_DT_U8, 1, (int64_t[]){5}, u8));
    ASSERT_OK(jem_st_meta(st, "k\n", "v\"\\\x01\xc3\xa9"));
    ASSERT_OK(jem_st_commit(st, small));
    jem_st_free(st);
    check_prefixes(small, 1);
    check_prefixes(FIXTURES "/st/python.safetensors", stride);
}

/* Random byte mutations: open must succeed or fail with a status, never
 * crash or read out of bounds (the sanitizer build checks the latter). */
static void test_mutations(void)
{
    size_t n = 0;
    unsigned char *full = slurp(FIXTURES "/st/python.safetensors", &n);
    if (!full) {
        ASSERT(0);
        return;
    }
    unsigned char *buf = malloc(n);
    if (!buf) {
        free(full);
        ASSERT(0);
        return;
    }
    uint64_t hl = 0;
    for (int i = 7; i >= 0; i--) hl = hl << 8 | full[i];
    const char *path = t_path("mut.safetensors");
    jem_rng r;
    jem_rng_seed(&r, 2024, 0);
    int iters = t_quick() ? 400 : 3000, ok = 0, refused = 0, other = 0;
    static const char pool[] = "{}[]\",:0123456789-.eE \\u\x01\xff";
    for (int it = 0; it < iters; it++) {
        memcpy(buf, full, n);
        int nm = 1 + (int)jem_rng_below(&r, 4);
        for (int m = 0; m < nm; m++) {
            /* mostly inside the header, where the structure is */
            size_t pos = jem_rng_below(&r, 4) ? 8 + jem_rng_below(&r, (uint32_t)hl) : jem_rng_below(&r, (uint32_t)n);
            buf[pos] = jem_rng_below(&r, 2) ? (unsigned char)pool[jem_rng_below(&r, sizeof pool - 1)]
                                            : (unsigned char)jem_rng_u64(&r);
        }
        size_t len = jem_rng_below(&r, 8) ? n : jem_rng_below(&r, (uint32_t)n + 1);
        if (!put_file(path, buf, len, NULL, 0)) break;
        jem_status s = try_open(path);
        if (s == JEM_OK) ok++;
        else if (s == JEM_ERR_FORMAT || s == JEM_ERR_UNSUPPORTED) refused++;
        else other++;
    }
    ASSERT_EQ_INT(ok + refused, iters);
    ASSERT_EQ_INT(other, 0);
    ASSERT(refused > 0);
    unlink(path);
    free(buf);
    free(full);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_safetensors");
    t_tmpdir("st");
    test_round_trip();
    test_writer_args();
    test_python_fixture();
    test_bad_headers();
    test_truncation();
    test_mutations();
    t_check_no_temps(NULL);
    return t_finish();
}

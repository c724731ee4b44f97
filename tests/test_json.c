/* JSON writer and parser: escaping, numbers, misuse, round trips, malformed
 * input, nesting and size caps. */
#include "jem.h"
#include "io/json.h"
#include "test.h"

#include <locale.h>
#include <stdint.h>

/* Write with a fresh writer, compare the text. */
#define EXPECT_TEXT(w, want)                                                                             \
    do {                                                                                                 \
        ASSERT_OK(jem_jw_status(&(w)));                                                                  \
        ASSERT_MSG(strcmp(jem_jw_cstr(&(w)), (want)) == 0, "got %s want %s", jem_jw_cstr(&(w)), (want)); \
    } while (0)

static void test_writer_basic(void)
{
    jem_jw w;
    jem_jw_init(&w);
    ASSERT(strcmp(jem_jw_cstr(&w), "") == 0);
    jem_jw_obj_begin(&w);
    jem_jw_kint(&w, "a", 1);
    jem_jw_key(&w, "b");
    jem_jw_arr_begin(&w);
    jem_jw_bool(&w, 1);
    jem_jw_bool(&w, 0);
    jem_jw_null(&w);
    jem_jw_arr_begin(&w);
    jem_jw_arr_end(&w);
    jem_jw_arr_end(&w);
    jem_jw_kstr(&w, "c", "x\"y\\z\n\x01");
    jem_jw_key(&w, "d");
    jem_jw_obj_begin(&w);
    jem_jw_obj_end(&w);
    jem_jw_kint(&w, "min", INT64_MIN);
    jem_jw_key(&w, "umax");
    jem_jw_uint(&w, UINT64_MAX);
    jem_jw_kbool(&w, "t", 1);
    jem_jw_kdouble(&w, "x", 0.5);
    jem_jw_kstr(&w, "nul", NULL);
    jem_jw_obj_end(&w);
    EXPECT_TEXT(w, "{\"a\":1,\"b\":[true,false,null,[]],\"c\":\"x\\\"y\\\\z\\n\\u0001\",\"d\":{},"
                   "\"min\":-9223372036854775808,\"umax\":18446744073709551615,\"t\":true,"
                   "\"x\":0.5,\"nul\":null}");
    ASSERT_EQ_INT(jem_jw_len(&w), strlen(jem_jw_cstr(&w)));

    /* JSON lines: reset between records, or raw newlines */
    jem_jw_reset(&w);
    jem_jw_obj_begin(&w);
    jem_jw_kint(&w, "iter", 3);
    jem_jw_obj_end(&w);
    jem_jw_raw(&w, "\n");
    jem_jw_obj_begin(&w);
    jem_jw_kint(&w, "iter", 4);
    jem_jw_obj_end(&w);
    EXPECT_TEXT(w, "{\"iter\":3}\n{\"iter\":4}");

    size_t n = 0;
    char *t = jem_jw_take(&w, &n);
    ASSERT(t && n == strlen("{\"iter\":3}\n{\"iter\":4}"));
    free(t);
    ASSERT(strcmp(jem_jw_cstr(&w), "") == 0); /* writer is empty after take */
    jem_jw_int(&w, 7);
    EXPECT_TEXT(w, "7");
    jem_jw_free(&w);
    jem_jw_free(&w); /* twice is harmless */
}

static void test_writer_escaping(void)
{
    jem_jw w;
    jem_jw_init(&w);
    /* every control character */
    char ctl[33];
    for (int i = 1; i < 32; i++) ctl[i - 1] = (char)i;
    ctl[31] = 0;
    jem_jw_str(&w, ctl);
    EXPECT_TEXT(w, "\"\\u0001\\u0002\\u0003\\u0004\\u0005\\u0006\\u0007\\u0008\\t\\n\\u000b"
                   "\\u000c\\r\\u000e\\u000f\\u0010\\u0011\\u0012\\u0013\\u0014\\u0015\\u0016"
                   "\\u0017\\u0018\\u0019\\u001a\\u001b\\u001c\\u001d\\u001e\\u001f\"");
    /* embedded NUL through strn */
    jem_jw_reset(&w);
    jem_jw_strn(&w, "a\0b", 3);
    EXPECT_TEXT(w, "\"a\\u0000b\"");
    /* valid UTF-8 passes through, DEL is legal raw */
    jem_jw_reset(&w);
    jem_jw_str(&w, "\xc3\xa9\xd0\xb6\xe2\x82\xac\xf0\x9f\x98\x80\x7f/");
    EXPECT_TEXT(w, "\"\xc3\xa9\xd0\xb6\xe2\x82\xac\xf0\x9f\x98\x80\x7f/\"");
    /* invalid UTF-8 becomes U+FFFD, one per bad byte */
    jem_jw_reset(&w);
    jem_jw_str(&w, "a\xff"
                   "b\xc0\xaf"
                   "c\xed\xa0\x80"
                   "d\xe2\x82");
    EXPECT_TEXT(w, "\"a\\ufffdb\\ufffd\\ufffdc\\ufffd\\ufffd\\ufffdd\\ufffd\\ufffd\"");
    /* keys are escaped the same way */
    jem_jw_reset(&w);
    jem_jw_obj_begin(&w);
    jem_jw_kstr(&w, "k\"\\", "v");
    jem_jw_obj_end(&w);
    EXPECT_TEXT(w, "{\"k\\\"\\\\\":\"v\"}");
    /* the output is always parseable */
    jem_json *v = NULL;
    jem_jw_reset(&w);
    jem_jw_str(&w, "x\xff\x01\xf4\x90\x80\x80y");
    ASSERT_OK(jem_json_parse(jem_jw_cstr(&w), jem_jw_len(&w), "esc", &v));
    jem_json_free(v);
    jem_jw_free(&w);
}

static void test_writer_numbers(void)
{
    static const struct {
        double v;
        const char *want;
    } dcases[] = {
        {0.1, "0.1"},
        {-2.5, "-2.5"},
        {1e300, "1e+300"},
        {0.0, "0"},
        {-0.0, "-0"},
        {1.0 / 3.0, "0.3333333333333333"},
        {123456789.0, "123456789"},
        {5e-324, "4.94065645841247e-324"},
    };
    jem_jw w;
    jem_jw_init(&w);
    for (size_t i = 0; i < sizeof dcases / sizeof dcases[0]; i++) {
        jem_jw_reset(&w);
        jem_jw_double(&w, dcases[i].v);
        EXPECT_TEXT(w, dcases[i].want);
    }
    jem_jw_reset(&w);
    jem_jw_arr_begin(&w);
    jem_jw_double(&w, NAN);
    jem_jw_double(&w, INFINITY);
    jem_jw_float(&w, -INFINITY);
    jem_jw_float(&w, 0.1f);
    jem_jw_float(&w, 1.0f / 3.0f);
    jem_jw_float(&w, 16777216.0f);
    jem_jw_arr_end(&w);
    EXPECT_TEXT(w, "[null,null,null,0.1,0.33333334,16777216]");

    /* round trips through the parser, bit for bit */
    jem_rng r;
    jem_rng_seed(&r, 42, 0);
    int dbad = 0, fbad = 0;
    for (int i = 0; i < 20000; i++) {
        uint64_t bits = jem_rng_u64(&r);
        double d;
        memcpy(&d, &bits, sizeof d);
        if (!isfinite(d)) continue;
        jem_json *v = NULL;
        jem_jw_reset(&w);
        jem_jw_double(&w, d);
        if (jem_json_parse(jem_jw_cstr(&w), jem_jw_len(&w), "num", &v) != JEM_OK || v->type != JEM_JSON_NUMBER ||
            memcmp(&v->num, &d, sizeof d) != 0)
            dbad++;
        jem_json_free(v);

        uint32_t fb = (uint32_t)(jem_rng_u64(&r) >> 32);
        float f;
        memcpy(&f, &fb, sizeof f);
        if (!isfinite(f)) continue;
        jem_jw_reset(&w);
        jem_jw_float(&w, f);
        float back = strtof(jem_jw_cstr(&w), NULL);
        if (memcmp(&back, &f, sizeof f) != 0 || jem_jw_len(&w) > 16) fbad++;
    }
    ASSERT_EQ_INT(dbad, 0);
    ASSERT_EQ_INT(fbad, 0);
    jem_jw_free(&w);
}

static void test_writer_misuse(void)
{
    jem_jw w;
    jem_jw_init(&w);
    jem_jw_obj_begin(&w);
    jem_jw_int(&w, 1); /* value without a key */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);
    jem_jw_obj_end(&w); /* sticky: ignored */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);
    ASSERT(jem_jw_take(&w, NULL) == NULL);

    jem_jw_reset(&w);
    ASSERT_OK(jem_jw_status(&w));
    jem_jw_arr_begin(&w);
    jem_jw_obj_end(&w); /* mismatched end */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);

    jem_jw_reset(&w);
    jem_jw_arr_begin(&w);
    jem_jw_key(&w, "k"); /* key in an array */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);

    jem_jw_reset(&w);
    jem_jw_obj_begin(&w);
    jem_jw_key(&w, "k");
    jem_jw_obj_end(&w); /* key without value */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);

    jem_jw_reset(&w);
    jem_jw_arr_end(&w); /* end at top level */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);

    jem_jw_reset(&w);
    for (int i = 0; i < JEM_JW_MAX_DEPTH; i++) jem_jw_arr_begin(&w);
    ASSERT_OK(jem_jw_status(&w));
    jem_jw_arr_begin(&w); /* one too deep */
    ASSERT_EQ_INT(jem_jw_status(&w), JEM_ERR_ARG);
    jem_jw_free(&w);
}

static jem_json *parse_ok(const char *s)
{
    jem_json *v = NULL;
    jem_status st = jem_json_parse(s, strlen(s), "t.json", &v);
    ASSERT_MSG(st == JEM_OK && v, "parse of %s failed: %s", s, jem_last_error());
    return v;
}

static void test_parser_values(void)
{
    const char *doc = " {\"name\": \"jem\", \"n\": -42, \"x\": 2.5e-3, \"ok\": true, \"no\": false,\n"
                      "  \"nothing\": null, \"list\": [1, [2, []], {}], \"nested\": {\"a\": {\"b\": [0]}},\n"
                      "  \"big\": 9223372036854775807, \"small\": -9223372036854775808,\n"
                      "  \"huge\": 9223372036854775808, \"exp\": 1E2, \"zero\": -0, \"dup\": 1, \"dup\": 2} \r\n\t";
    jem_json *v = parse_ok(doc);
    if (!v) return;
    ASSERT_EQ_INT(v->type, JEM_JSON_OBJECT);
    ASSERT_EQ_INT(v->n, 15);
    ASSERT(strcmp(jem_json_string(jem_json_get(v, "name")), "jem") == 0);
    int64_t i;
    double d;
    int b;
    ASSERT(jem_json_int(jem_json_get(v, "n"), &i) && i == -42);
    ASSERT(!jem_json_int(jem_json_get(v, "x"), &i));
    ASSERT(jem_json_num(jem_json_get(v, "x"), &d) && d == 2.5e-3);
    ASSERT(strcmp(jem_json_get(v, "x")->str, "2.5e-3") == 0); /* literal kept */
    ASSERT(jem_json_bool(jem_json_get(v, "ok"), &b) && b == 1);
    ASSERT(jem_json_bool(jem_json_get(v, "no"), &b) && b == 0);
    ASSERT_EQ_INT(jem_json_get(v, "nothing")->type, JEM_JSON_NULL);
    ASSERT(jem_json_get(v, "absent") == NULL);
    ASSERT(jem_json_string(jem_json_get(v, "n")) == NULL); /* wrong type */
    const jem_json *list = jem_json_get(v, "list");
    ASSERT(list && list->type == JEM_JSON_ARRAY && list->n == 3);
    ASSERT(jem_json_at(list, 1)->type == JEM_JSON_ARRAY && jem_json_at(list, 1)->n == 2);
    ASSERT(jem_json_at(jem_json_at(list, 1), 1)->n == 0);
    ASSERT(jem_json_at(list, 2)->type == JEM_JSON_OBJECT && jem_json_at(list, 2)->child == NULL);
    ASSERT(jem_json_at(list, 3) == NULL);
    const jem_json *nb = jem_json_get(jem_json_get(jem_json_get(v, "nested"), "a"), "b");
    ASSERT(nb && nb->n == 1 && jem_json_int(nb->child, &i) && i == 0);
    ASSERT(jem_json_int(jem_json_get(v, "big"), &i) && i == INT64_MAX);
    ASSERT(jem_json_int(jem_json_get(v, "small"), &i) && i == INT64_MIN);
    ASSERT(!jem_json_int(jem_json_get(v, "huge"), &i)); /* out of int64 */
    ASSERT(jem_json_num(jem_json_get(v, "huge"), &d) && d == 9223372036854775808.0);
    ASSERT(jem_json_num(jem_json_get(v, "exp"), &d) && d == 100.0);
    ASSERT(!jem_json_int(jem_json_get(v, "exp"), &i));
    ASSERT(jem_json_int(jem_json_get(v, "zero"), &i) && i == 0);
    ASSERT(jem_json_int(jem_json_get(v, "dup"), &i) && i == 1); /* first wins */
    /* members in document order with keys */
    const char *order[] = {"name", "n",     "x",    "ok",  "no",   "nothing", "list", "nested",
                           "big",  "small", "huge", "exp", "zero", "dup",     "dup"};
    int k = 0, good = 1;
    for (const jem_json *c = v->child; c; c = c->next, k++)
        if (k >= 15 || strcmp(c->key, order[k]) != 0) good = 0;
    ASSERT(good && k == 15);
    jem_json_free(v);

    /* scalars at top level */
    v = parse_ok("\"s\"");
    ASSERT(v && v->type == JEM_JSON_STRING && v->len == 1);
    jem_json_free(v);
    v = parse_ok("  7  ");
    ASSERT(v && jem_json_int(v, &i) && i == 7);
    jem_json_free(v);
    /* not NUL-terminated input: only n bytes are read */
    char buf[4] = {'1', '2', '3', '4'};
    v = NULL;
    ASSERT_OK(jem_json_parse(buf, 2, "t", &v));
    ASSERT(v && jem_json_int(v, &i) && i == 12);
    jem_json_free(v);
    jem_json_free(NULL);
}

static void test_parser_strings(void)
{
    jem_json *v = parse_ok("[\"a\\\"b\\\\c\\/d\\b\\f\\n\\r\\t\", \"\\u00e9\\u0436\\u20AC\", "
                           "\"\\ud83d\\ude00\", \"x\\u0000y\", \"\xf0\x9f\x98\x80\xc3\xa9\", \"\"]");
    if (!v) return;
    const jem_json *s = v->child;
    ASSERT(strcmp(s->str, "a\"b\\c/d\b\f\n\r\t") == 0);
    s = s->next;
    ASSERT(strcmp(s->str, "\xc3\xa9\xd0\xb6\xe2\x82\xac") == 0 && s->len == 7);
    s = s->next;
    ASSERT(strcmp(s->str, "\xf0\x9f\x98\x80") == 0 && s->len == 4);
    s = s->next;
    ASSERT(s->len == 3 && memcmp(s->str, "x\0y", 4) == 0);
    s = s->next;
    ASSERT(strcmp(s->str, "\xf0\x9f\x98\x80\xc3\xa9") == 0);
    s = s->next;
    ASSERT(s->len == 0 && s->str && s->str[0] == 0);
    jem_json_free(v);

    /* keys are unescaped too */
    v = parse_ok("{\"k\\u00e9\\n\": 1}");
    ASSERT(v && jem_json_get(v, "k\xc3\xa9\n") != NULL);
    jem_json_free(v);
}

/* writer -> parser round trip of awkward strings */
static void test_round_trip(void)
{
    jem_rng r;
    jem_rng_seed(&r, 7, 1);
    jem_jw w;
    jem_jw_init(&w);
    int bad = 0;
    for (int it = 0; it < 300; it++) {
        /* a random valid UTF-8 string, control characters and quotes included */
        char s[400];
        size_t n = 0;
        int len = (int)jem_rng_below(&r, 60);
        for (int j = 0; j < len; j++) {
            uint32_t cp;
            switch (jem_rng_below(&r, 5)) {
            case 0: cp = jem_rng_below(&r, 0x20); break;
            case 1: cp = "\"\\/ab"[jem_rng_below(&r, 5)]; break;
            case 2: cp = 0x80 + jem_rng_below(&r, 0x780); break;
            case 3:
                cp = 0x800 + jem_rng_below(&r, 0xF800 - 0x800);
                if (cp >= 0xD800 && cp < 0xE000) cp = 0x41;
                break;
            default: cp = 0x10000 + jem_rng_below(&r, 0x100000); break;
            }
            if (cp < 0x80) s[n++] = (char)cp;
            else if (cp < 0x800) {
                s[n++] = (char)(0xC0 | cp >> 6);
                s[n++] = (char)(0x80 | (cp & 63));
            } else if (cp < 0x10000) {
                s[n++] = (char)(0xE0 | cp >> 12);
                s[n++] = (char)(0x80 | ((cp >> 6) & 63));
                s[n++] = (char)(0x80 | (cp & 63));
            } else {
                s[n++] = (char)(0xF0 | cp >> 18);
                s[n++] = (char)(0x80 | ((cp >> 12) & 63));
                s[n++] = (char)(0x80 | ((cp >> 6) & 63));
                s[n++] = (char)(0x80 | (cp & 63));
            }
        }
        if (!jem_utf8_valid(s, n)) {
            bad++;
            continue;
        }
        jem_jw_reset(&w);
        jem_jw_obj_begin(&w);
        jem_jw_keyn(&w, s, n);
        jem_jw_arr_begin(&w);
        jem_jw_strn(&w, s, n);
        jem_jw_int(&w, it);
        jem_jw_arr_end(&w);
        jem_jw_obj_end(&w);
        jem_json *v = NULL;
        if (jem_jw_status(&w) || jem_json_parse(jem_jw_cstr(&w), jem_jw_len(&w), "rt", &v)) {
            bad++;
            continue;
        }
        const jem_json *m = v->child;
        int64_t i;
        if (!m || m->key_len != n || memcmp(m->key, s, n) != 0 || m->n != 2 || m->child->len != n ||
            memcmp(m->child->str, s, n) != 0 || !jem_json_int(m->child->next, &i) || i != it)
            bad++;
        jem_json_free(v);
    }
    ASSERT_EQ_INT(bad, 0);
    jem_jw_free(&w);
}

static void test_malformed(void)
{
    static const char *const bad[] = {
        "",
        "   ",
        "{",
        "}",
        "[",
        "]",
        "[1,]",
        "[,1]",
        "{\"a\"}",
        "{\"a\":}",
        "{\"a\" 1}",
        "{\"a\":1,}",
        "{,}",
        "{1:2}",
        "{a:1}",
        "['a']",
        "01",
        "-01",
        "1.",
        ".5",
        "-",
        "1e",
        "1e+",
        "+1",
        "0x10",
        "tru",
        "nul",
        "falsey",
        "True",
        "NaN",
        "Infinity",
        "-Infinity",
        "\"abc",
        "\"\\x\"",
        "\"\\u12\"",
        "\"\\u12g4\"",
        "\"\\ud800\"",
        "\"\\udc00\"",
        "\"\\ud800\\u0041\"",
        "\"\\ud800x\"",
        "\"a\x01\"",
        "\"tab\there\"",
        "[1 2]",
        "1 2",
        "{} {}",
        "\xff",
        "\"\xff\"",
        "\"\xc0\xaf\"",
        "\"\xed\xa0\x80\"",
        "\"\xf4\x90\x80\x80\"",
        "\"\xe2\x82\"",
        "[\"\\",
        "\"\\",
        "/* c */ 1",
        "[1]x",
        "\xef\xbb\xbf{}",
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        jem_json *v = (jem_json *)1;
        jem_status s = jem_json_parse(bad[i], strlen(bad[i]), "bad.json", &v);
        ASSERT_MSG(s == JEM_ERR_FORMAT && v == NULL, "accepted or wrong status for [%s]: %s", bad[i], jem_strerror(s));
        ASSERT_STR_CONTAINS(jem_last_error(), "bad.json");
    }
    /* the message locates the error */
    jem_json *v = NULL;
    ASSERT_ERR(jem_json_parse("{\n  \"a\": ,\n}", 12, "loc.json", &v), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "loc.json: JSON line 2 column 8");
    /* a NUL byte inside the given length is not whitespace */
    ASSERT_ERR(jem_json_parse("1\0", 2, "nul.json", &v), JEM_ERR_FORMAT);
    /* NULL text with n = 0 */
    ASSERT_ERR(jem_json_parse(NULL, 0, "null.json", &v), JEM_ERR_FORMAT);

    /* every proper prefix of a valid document fails, never crashes */
    const char *doc = "{\"a\": [1, 2.5e3, \"x\\u00e9\\ud83d\\ude00\", true, null, {\"b\": false}], \"c\": -0.5}";
    size_t n = strlen(doc), fails = 0;
    for (size_t k = 0; k < n; k++) {
        char *cp = malloc(k ? k : 1); /* exact size: ASan sees any over-read */
        if (!cp) continue;
        memcpy(cp, doc, k);
        if (jem_json_parse(cp, k, "prefix", &v) == JEM_ERR_FORMAT) fails++;
        else jem_json_free(v);
        free(cp);
    }
    ASSERT_EQ_INT(fails, n);
    v = parse_ok(doc);
    jem_json_free(v);
}

static void test_caps(void)
{
    /* nesting: 64 levels accepted, 65 refused, a deep bomb refused */
    size_t big = 200000;
    char *s = malloc(2 * big + 1);
    if (!s) {
        ASSERT(0);
        return;
    }
    jem_json *v = NULL;
    for (int depth = JEM_JSON_MAX_DEPTH; depth <= JEM_JSON_MAX_DEPTH + 1; depth++) {
        for (int i = 0; i < depth; i++) {
            s[i] = '[';
            s[2 * depth - 1 - i] = ']';
        }
        jem_status st = jem_json_parse(s, (size_t)(2 * depth), "deep", &v);
        if (depth == JEM_JSON_MAX_DEPTH) {
            ASSERT_OK(st);
            jem_json_free(v);
        } else {
            ASSERT_EQ_INT(st, JEM_ERR_FORMAT);
            ASSERT_STR_CONTAINS(jem_last_error(), "nesting");
        }
    }
    memset(s, '[', big);
    ASSERT_ERR(jem_json_parse(s, big, "bomb", &v), JEM_ERR_FORMAT);
    for (size_t i = 0; i < big; i++) s[i] = "{\"a\":"[i % 5]; /* {"a":{"a":... */
    ASSERT_ERR(jem_json_parse(s, big, "bomb2", &v), JEM_ERR_FORMAT);
    free(s);

    /* node count: JEM_JSON_MAX_NODES values accepted, one more refused */
    size_t nz = JEM_JSON_MAX_NODES - 1; /* zeros, plus the array itself */
    s = malloc(2 * nz + 8);
    if (!s) {
        ASSERT(0);
        return;
    }
    size_t k = 0;
    s[k++] = '[';
    for (size_t i = 0; i < nz; i++) {
        s[k++] = '0';
        s[k++] = ',';
    }
    s[k - 1] = ']';
    ASSERT_OK(jem_json_parse(s, k, "many", &v));
    ASSERT(v && v->n == nz);
    jem_json_free(v);
    s[k - 1] = ',';
    s[k++] = '0';
    s[k++] = ']';
    ASSERT_ERR(jem_json_parse(s, k, "toomany", &v), JEM_ERR_FORMAT);
    ASSERT_STR_CONTAINS(jem_last_error(), "too many values");
    free(s);
}

static void test_utf8(void)
{
    ASSERT(jem_utf8_valid("", 0));
    ASSERT(jem_utf8_valid("abc\x7f", 4));
    ASSERT(jem_utf8_valid("\xc2\x80\xdf\xbf\xe0\xa0\x80\xef\xbf\xbf\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", 18));
    ASSERT(!jem_utf8_valid("\x80", 1));
    ASSERT(!jem_utf8_valid("\xc1\xbf", 2));         /* overlong */
    ASSERT(!jem_utf8_valid("\xe0\x9f\xbf", 3));     /* overlong */
    ASSERT(!jem_utf8_valid("\xed\xa0\x80", 3));     /* surrogate */
    ASSERT(!jem_utf8_valid("\xf0\x8f\xbf\xbf", 4)); /* overlong */
    ASSERT(!jem_utf8_valid("\xf4\x90\x80\x80", 4)); /* > U+10FFFF */
    ASSERT(!jem_utf8_valid("\xf5\x80\x80\x80", 4));
    ASSERT(!jem_utf8_valid("\xe2\x82", 2));     /* truncated */
    ASSERT(!jem_utf8_valid("\xe2\x82\xac", 2)); /* truncated by n */
}

/* Under a locale with a decimal comma, numbers stay in JSON notation. */
static void test_locale(void)
{
    static const char *const names[] = {"de_DE.UTF-8", "de_DE.utf8", "fr_FR.UTF-8", "fr_FR.utf8"};
    const char *got = NULL;
    for (size_t i = 0; i < 4 && !got; i++) got = setlocale(LC_NUMERIC, names[i]);
    if (!got) {
        printf("note: no decimal-comma locale installed; locale test skipped\n");
        return;
    }
    jem_jw w;
    jem_jw_init(&w);
    jem_jw_arr_begin(&w);
    jem_jw_double(&w, 2.5);
    jem_jw_float(&w, -0.125f);
    jem_jw_arr_end(&w);
    EXPECT_TEXT(w, "[2.5,-0.125]");
    jem_json *v = parse_ok(jem_jw_cstr(&w));
    ASSERT(v && v->child->num == 2.5 && v->child->next->num == -0.125);
    jem_json_free(v);
    jem_jw_free(&w);
    setlocale(LC_NUMERIC, "C");
}

int main(void)
{
    TEST_MAIN_BEGIN("test_json");
    test_writer_basic();
    test_writer_escaping();
    test_writer_numbers();
    test_writer_misuse();
    test_parser_values();
    test_parser_strings();
    test_round_trip();
    test_malformed();
    test_caps();
    test_utf8();
    test_locale();
    return t_finish();
}

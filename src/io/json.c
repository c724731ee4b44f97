/* JSON writer (growable buffer) and parser (two passes into one block).
 *
 * The parser first walks the text without allocating, checking the grammar
 * and counting the values and string bytes; the second walk fills one block
 * of exactly that size. Nesting is capped (JEM_JSON_MAX_DEPTH), so the
 * recursion depth is bounded, and so is the node count (JEM_JSON_MAX_NODES).
 * Every read of the input is bounds-checked against its length. */
#include "io/json.h"

#include <inttypes.h>
#include <locale.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------------- UTF-8 */

/* Length of the well-formed UTF-8 sequence at s (n bytes available), 0 if
 * the bytes there are not one. */
static size_t utf8_seq(const unsigned char *s, size_t n)
{
    unsigned c = s[0];
    if (c < 0x80) return 1;
    if (c < 0xC2) return 0; /* continuation or overlong */
    if (c < 0xE0) return (n >= 2 && (s[1] & 0xC0) == 0x80) ? 2 : 0;
    if (c < 0xF0) {
        if (n < 3 || (s[2] & 0xC0) != 0x80) return 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xE0) lo = 0xA0; /* overlong */
        if (c == 0xED) hi = 0x9F; /* surrogates */
        return (s[1] >= lo && s[1] <= hi) ? 3 : 0;
    }
    if (c < 0xF5) {
        if (n < 4 || (s[2] & 0xC0) != 0x80 || (s[3] & 0xC0) != 0x80) return 0;
        unsigned lo = 0x80, hi = 0xBF;
        if (c == 0xF0) lo = 0x90; /* overlong */
        if (c == 0xF4) hi = 0x8F; /* above U+10FFFF */
        return (s[1] >= lo && s[1] <= hi) ? 4 : 0;
    }
    return 0;
}

int jem_utf8_valid(const char *s, size_t n)
{
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        if (u[i] < 0x80) {
            i++;
            continue;
        }
        size_t k = utf8_seq(u + i, n - i);
        if (!k) return 0;
        i += k;
    }
    return 1;
}

/* Encode code point cp (valid scalar value) as UTF-8 into out (may be NULL:
 * count only). Returns the byte count. */
static size_t utf8_put(char *out, uint32_t cp)
{
    unsigned char b[4];
    size_t k;
    if (cp < 0x80) {
        b[0] = (unsigned char)cp;
        k = 1;
    } else if (cp < 0x800) {
        b[0] = (unsigned char)(0xC0 | (cp >> 6));
        b[1] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 2;
    } else if (cp < 0x10000) {
        b[0] = (unsigned char)(0xE0 | (cp >> 12));
        b[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[2] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 3;
    } else {
        b[0] = (unsigned char)(0xF0 | (cp >> 18));
        b[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
        b[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        b[3] = (unsigned char)(0x80 | (cp & 0x3F));
        k = 4;
    }
    if (out) memcpy(out, b, k);
    return k;
}

/* The C library formats and parses numbers with the locale's decimal point;
 * JSON always uses '.'. */
static const char *locale_point(void)
{
    const struct lconv *lc = localeconv();
    return (lc && lc->decimal_point && lc->decimal_point[0]) ? lc->decimal_point : ".";
}

/* ------------------------------------------------------------------ writer */

void jem_jw_init(jem_jw *w) { memset(w, 0, sizeof *w); }

void jem_jw_free(jem_jw *w)
{
    if (!w) return;
    free(w->buf);
    memset(w, 0, sizeof *w);
}

void jem_jw_reset(jem_jw *w)
{
    w->len = 0;
    if (w->buf) w->buf[0] = 0;
    w->depth = 0;
    w->want_value = 0;
    w->err = JEM_OK;
}

jem_status jem_jw_status(const jem_jw *w) { return w->err; }
const char *jem_jw_cstr(const jem_jw *w) { return w->buf ? w->buf : ""; }
size_t jem_jw_len(const jem_jw *w) { return w->len; }

char *jem_jw_take(jem_jw *w, size_t *n)
{
    if (w->err) return NULL;
    char *b = w->buf;
    if (!b) {
        b = malloc(1);
        if (!b) {
            w->err = JEM_ERR_NOMEM;
            return NULL;
        }
        b[0] = 0;
    }
    if (n) *n = w->len;
    memset(w, 0, sizeof *w);
    return b;
}

static int jw_reserve(jem_jw *w, size_t extra)
{
    if (w->err) return 0;
    if (extra > SIZE_MAX - 1 - w->len) {
        w->err = JEM_ERR_NOMEM;
        return 0;
    }
    size_t need = w->len + extra + 1;
    if (need <= w->cap) return 1;
    size_t cap = w->cap ? w->cap : 256;
    while (cap < need) cap = cap > SIZE_MAX / 2 ? need : cap * 2;
    char *b = realloc(w->buf, cap);
    if (!b) {
        w->err = JEM_ERR_NOMEM;
        return 0;
    }
    w->buf = b;
    w->cap = cap;
    return 1;
}

static void jw_put(jem_jw *w, const char *s, size_t n)
{
    if (!jw_reserve(w, n)) return;
    memcpy(w->buf + w->len, s, n);
    w->len += n;
    w->buf[w->len] = 0;
}

static void jw_putc(jem_jw *w, char c) { jw_put(w, &c, 1); }

/* Before any value: the separator, and checks that a value may go here. */
static int jw_value_begin(jem_jw *w)
{
    if (w->err) return 0;
    if (w->depth > 0) {
        int d = w->depth - 1;
        if (w->kind[d] == 'o') {
            if (!w->want_value) {
                w->err = JEM_ERR_ARG;
                return 0;
            }
            w->want_value = 0;
        } else {
            if (w->count[d]) jw_putc(w, ',');
            w->count[d] = 1;
        }
    }
    return !w->err;
}

static void jw_escaped(jem_jw *w, const char *s, size_t n)
{
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    jw_putc(w, '"');
    size_t i = 0;
    while (i < n && !w->err) {
        /* copy the longest run that needs no escaping in one go */
        size_t j = i;
        while (j < n) {
            unsigned c = u[j];
            if (c == '"' || c == '\\' || c < 0x20) break;
            if (c < 0x80) {
                j++;
                continue;
            }
            size_t k = utf8_seq(u + j, n - j);
            if (!k) break;
            j += k;
        }
        if (j > i) {
            jw_put(w, s + i, j - i);
            i = j;
            continue;
        }
        unsigned c = u[i];
        char e[8];
        switch (c) {
        case '"': jw_put(w, "\\\"", 2); break;
        case '\\': jw_put(w, "\\\\", 2); break;
        case '\n': jw_put(w, "\\n", 2); break;
        case '\r': jw_put(w, "\\r", 2); break;
        case '\t': jw_put(w, "\\t", 2); break;
        default:
            if (c < 0x20) {
                memcpy(e, "\\u00", 4);
                e[4] = hex[c >> 4];
                e[5] = hex[c & 15];
                jw_put(w, e, 6);
            } else {
                jw_put(w, "\\ufffd", 6); /* byte that is not valid UTF-8 */
            }
        }
        i++;
    }
    jw_putc(w, '"');
}

static void jw_open(jem_jw *w, char kind)
{
    if (!jw_value_begin(w)) return;
    if (w->depth >= JEM_JW_MAX_DEPTH) {
        w->err = JEM_ERR_ARG;
        return;
    }
    w->kind[w->depth] = (unsigned char)kind;
    w->count[w->depth] = 0;
    w->depth++;
    jw_putc(w, kind == 'o' ? '{' : '[');
}

static void jw_close(jem_jw *w, char kind)
{
    if (w->err) return;
    if (w->depth == 0 || w->kind[w->depth - 1] != (unsigned char)kind || w->want_value) {
        w->err = JEM_ERR_ARG;
        return;
    }
    w->depth--;
    jw_putc(w, kind == 'o' ? '}' : ']');
}

void jem_jw_obj_begin(jem_jw *w) { jw_open(w, 'o'); }
void jem_jw_obj_end(jem_jw *w) { jw_close(w, 'o'); }
void jem_jw_arr_begin(jem_jw *w) { jw_open(w, 'a'); }
void jem_jw_arr_end(jem_jw *w) { jw_close(w, 'a'); }

void jem_jw_keyn(jem_jw *w, const char *key, size_t n)
{
    if (w->err) return;
    int d = w->depth - 1;
    if (d < 0 || w->kind[d] != 'o' || w->want_value || !key) {
        w->err = JEM_ERR_ARG;
        return;
    }
    if (w->count[d]) jw_putc(w, ',');
    w->count[d] = 1;
    jw_escaped(w, key, n);
    jw_putc(w, ':');
    w->want_value = 1;
}

void jem_jw_key(jem_jw *w, const char *key)
{
    if (!key) {
        if (!w->err) w->err = JEM_ERR_ARG;
        return;
    }
    jem_jw_keyn(w, key, strlen(key));
}

void jem_jw_strn(jem_jw *w, const char *s, size_t n)
{
    if (!jw_value_begin(w)) return;
    if (!s) {
        jw_put(w, "null", 4);
        return;
    }
    jw_escaped(w, s, n);
}

void jem_jw_str(jem_jw *w, const char *s) { jem_jw_strn(w, s, s ? strlen(s) : 0); }

void jem_jw_int(jem_jw *w, int64_t v)
{
    char b[32];
    if (!jw_value_begin(w)) return;
    int k = snprintf(b, sizeof b, "%" PRId64, v);
    jw_put(w, b, (size_t)k);
}

void jem_jw_uint(jem_jw *w, uint64_t v)
{
    char b[32];
    if (!jw_value_begin(w)) return;
    int k = snprintf(b, sizeof b, "%" PRIu64, v);
    jw_put(w, b, (size_t)k);
}

/* Replace the locale's decimal point in b (if it is not '.') by '.'. */
static size_t fix_point(char *b, size_t k)
{
    const char *dp = locale_point();
    if (dp[0] == '.' && dp[1] == 0) return k;
    char *p = strstr(b, dp);
    if (!p) return k;
    size_t dl = strlen(dp);
    *p = '.';
    memmove(p + 1, p + dl, k - (size_t)(p - b) - dl + 1);
    return k - (dl - 1);
}

void jem_jw_double(jem_jw *w, double v)
{
    char b[64];
    if (!jw_value_begin(w)) return;
    if (!isfinite(v)) {
        jw_put(w, "null", 4);
        return;
    }
    int k = 0;
    for (int prec = 15; prec <= 17; prec++) {
        k = snprintf(b, sizeof b, "%.*g", prec, v);
        if (strtod(b, NULL) == v) break;
    }
    jw_put(w, b, fix_point(b, (size_t)k));
}

void jem_jw_float(jem_jw *w, float v)
{
    char b[64];
    if (!jw_value_begin(w)) return;
    if (!isfinite(v)) {
        jw_put(w, "null", 4);
        return;
    }
    int k = 0;
    for (int prec = 6; prec <= 9; prec++) {
        k = snprintf(b, sizeof b, "%.*g", prec, (double)v);
        if (strtof(b, NULL) == v) break;
    }
    jw_put(w, b, fix_point(b, (size_t)k));
}

void jem_jw_bool(jem_jw *w, int v)
{
    if (!jw_value_begin(w)) return;
    if (v) jw_put(w, "true", 4);
    else jw_put(w, "false", 5);
}

void jem_jw_null(jem_jw *w)
{
    if (!jw_value_begin(w)) return;
    jw_put(w, "null", 4);
}

void jem_jw_rawn(jem_jw *w, const char *text, size_t n)
{
    if (text) jw_put(w, text, n);
}
void jem_jw_raw(jem_jw *w, const char *text)
{
    if (text) jw_put(w, text, strlen(text));
}

void jem_jw_json(jem_jw *w, const char *json, size_t n)
{
    if (jw_value_begin(w)) jw_put(w, json, n);
}

void jem_jw_kstr(jem_jw *w, const char *key, const char *s)
{
    jem_jw_key(w, key);
    jem_jw_str(w, s);
}
void jem_jw_kint(jem_jw *w, const char *key, int64_t v)
{
    jem_jw_key(w, key);
    jem_jw_int(w, v);
}
void jem_jw_kdouble(jem_jw *w, const char *key, double v)
{
    jem_jw_key(w, key);
    jem_jw_double(w, v);
}
void jem_jw_kbool(jem_jw *w, const char *key, int v)
{
    jem_jw_key(w, key);
    jem_jw_bool(w, v);
}

/* ------------------------------------------------------------------ parser */

typedef struct {
    const unsigned char *s;
    size_t n, pos;
    const char *fname;
    int build;          /* 0: count pass, 1: fill pass */
    size_t nodes;       /* values seen */
    size_t bytes;       /* string bytes seen, NULs included */
    size_t bytes_total; /* fill pass: size of the string area */
    jem_json *pool;     /* fill pass: node array */
    char *sbuf;         /* fill pass: string area */
    jem_json scratch;   /* count pass: stand-in node */
    jem_status err;
} jparser;

static jem_status jp_fail(jparser *p, const char *what)
{
    if (p->err) return p->err;
    /* line and column of the offending byte, for the message */
    size_t line = 1, col = 1, end = p->pos < p->n ? p->pos : p->n;
    for (size_t i = 0; i < end; i++) {
        if (p->s[i] == '\n') {
            line++;
            col = 1;
        } else col++;
    }
    p->err =
        jem_fail(JEM_ERR_FORMAT, "%s: JSON line %zu column %zu: %s", p->fname ? p->fname : "(json)", line, col, what);
    return p->err;
}

static void jp_ws(jparser *p)
{
    while (p->pos < p->n) {
        unsigned char c = p->s[p->pos];
        if (c != ' ' && c != '\t' && c != '\n' && c != '\r') break;
        p->pos++;
    }
}

static jem_json *jp_node(jparser *p, jem_json_type t)
{
    if (p->nodes >= JEM_JSON_MAX_NODES) {
        jp_fail(p, "too many values");
        return NULL;
    }
    jem_json *v = p->build ? &p->pool[p->nodes] : &p->scratch;
    p->nodes++;
    memset(v, 0, sizeof *v);
    v->type = t;
    return v;
}

/* Reserve len+1 bytes of string storage; NULL in the count pass. */
static char *jp_bytes(jparser *p, size_t len)
{
    char *r = NULL;
    if (p->build) {
        if (len >= p->bytes_total - p->bytes) {
            jp_fail(p, "input changed while parsing");
            return NULL;
        }
        r = p->sbuf + p->bytes;
    }
    p->bytes += len + 1;
    return r;
}

static int hexval(unsigned char c)
{
    if (c >= '0' && c <= '9') return c - '0';
    if (c >= 'a' && c <= 'f') return c - 'a' + 10;
    if (c >= 'A' && c <= 'F') return c - 'A' + 10;
    return -1;
}

/* Four hex digits at p->pos (after "\u"). */
static int jp_hex4(jparser *p, uint32_t *out)
{
    if (p->n - p->pos < 4) return 0;
    uint32_t v = 0;
    for (int i = 0; i < 4; i++) {
        int h = hexval(p->s[p->pos + (size_t)i]);
        if (h < 0) return 0;
        v = v << 4 | (uint32_t)h;
    }
    p->pos += 4;
    *out = v;
    return 1;
}

/* A string starting at the opening quote, decoded into out (NULL in the
 * count pass) which has room for `room` bytes including the final NUL. The
 * decoded form is never longer than the escaped one. */
static int jp_string_decode(jparser *p, char *out, size_t room, size_t *len)
{
    size_t k = 0;
    p->pos++; /* opening quote */
    for (;;) {
        if (p->pos >= p->n) {
            jp_fail(p, "unterminated string");
            return 0;
        }
        unsigned char c = p->s[p->pos];
        if (c == '"') {
            p->pos++;
            break;
        }
        if (c < 0x20) {
            jp_fail(p, "control character in string");
            return 0;
        }
        char enc[4];
        size_t m;
        if (c == '\\') {
            if (p->n - p->pos < 2) {
                jp_fail(p, "unterminated escape");
                return 0;
            }
            unsigned char e = p->s[p->pos + 1];
            p->pos += 2;
            m = 1;
            switch (e) {
            case '"': enc[0] = '"'; break;
            case '\\': enc[0] = '\\'; break;
            case '/': enc[0] = '/'; break;
            case 'b': enc[0] = '\b'; break;
            case 'f': enc[0] = '\f'; break;
            case 'n': enc[0] = '\n'; break;
            case 'r': enc[0] = '\r'; break;
            case 't': enc[0] = '\t'; break;
            case 'u': {
                uint32_t cp, lo;
                if (!jp_hex4(p, &cp)) {
                    jp_fail(p, "bad \\u escape");
                    return 0;
                }
                if (cp >= 0xDC00 && cp <= 0xDFFF) {
                    jp_fail(p, "lone low surrogate in \\u escape");
                    return 0;
                }
                if (cp >= 0xD800 && cp <= 0xDBFF) {
                    if (p->n - p->pos < 2 || p->s[p->pos] != '\\' || p->s[p->pos + 1] != 'u') {
                        jp_fail(p, "high surrogate not followed by a low surrogate");
                        return 0;
                    }
                    p->pos += 2;
                    if (!jp_hex4(p, &lo)) {
                        jp_fail(p, "bad \\u escape");
                        return 0;
                    }
                    if (lo < 0xDC00 || lo > 0xDFFF) {
                        jp_fail(p, "high surrogate not followed by a low surrogate");
                        return 0;
                    }
                    cp = 0x10000 + ((cp - 0xD800) << 10) + (lo - 0xDC00);
                }
                m = utf8_put(enc, cp);
                break;
            }
            default:
                p->pos -= 1;
                jp_fail(p, "unknown escape in string");
                return 0;
            }
            if (out) {
                if (k + m >= room) {
                    jp_fail(p, "input changed while parsing");
                    return 0;
                }
                memcpy(out + k, enc, m);
            }
            k += m;
            continue;
        }
        m = 1;
        if (c >= 0x80) {
            m = utf8_seq(p->s + p->pos, p->n - p->pos);
            if (!m) {
                jp_fail(p, "invalid UTF-8 in string");
                return 0;
            }
        }
        if (out) {
            if (k + m >= room) {
                jp_fail(p, "input changed while parsing");
                return 0;
            }
            memcpy(out + k, p->s + p->pos, m);
        }
        k += m;
        p->pos += m;
    }
    if (out) out[k] = 0;
    *len = k;
    return 1;
}

static int jp_string(jparser *p, const char **str, size_t *len)
{
    char *out = p->build ? p->sbuf + p->bytes : NULL;
    size_t n, room = p->build ? p->bytes_total - p->bytes : 0;
    if (!jp_string_decode(p, out, room, &n)) return 0;
    p->bytes += n + 1;
    *str = out;
    *len = n;
    return 1;
}

static int is_digit(unsigned char c) { return c >= '0' && c <= '9'; }

static int jp_number(jparser *p, jem_json *v)
{
    size_t start = p->pos, i = p->pos;
    int integral = 1;
    if (i < p->n && p->s[i] == '-') i++;
    if (i >= p->n || !is_digit(p->s[i])) {
        p->pos = i;
        jp_fail(p, "bad number");
        return 0;
    }
    if (p->s[i] == '0') i++;
    else
        while (i < p->n && is_digit(p->s[i])) i++;
    if (i < p->n && p->s[i] == '.') {
        integral = 0;
        i++;
        if (i >= p->n || !is_digit(p->s[i])) {
            p->pos = i;
            jp_fail(p, "bad number: digits expected after '.'");
            return 0;
        }
        while (i < p->n && is_digit(p->s[i])) i++;
    }
    if (i < p->n && (p->s[i] == 'e' || p->s[i] == 'E')) {
        integral = 0;
        i++;
        if (i < p->n && (p->s[i] == '+' || p->s[i] == '-')) i++;
        if (i >= p->n || !is_digit(p->s[i])) {
            p->pos = i;
            jp_fail(p, "bad number: digits expected in exponent");
            return 0;
        }
        while (i < p->n && is_digit(p->s[i])) i++;
    }
    size_t len = i - start;
    p->pos = i;
    char *lit = jp_bytes(p, len);
    if (!p->build) return 1; /* count pass */
    if (!lit) return 0;
    memcpy(lit, p->s + start, len);
    lit[len] = 0;
    v->str = lit;
    v->len = len;

    /* exact integer value */
    if (integral) {
        const char *d = lit;
        int neg = *d == '-';
        if (neg) d++;
        uint64_t acc = 0, lim = neg ? (uint64_t)INT64_MAX + 1 : (uint64_t)INT64_MAX;
        int ok = 1;
        for (; *d; d++) {
            uint64_t dig = (uint64_t)(*d - '0');
            if (acc > (lim - dig) / 10) {
                ok = 0;
                break;
            }
            acc = acc * 10 + dig;
        }
        if (ok) {
            v->is_int = 1;
            v->ival = neg ? (acc == (uint64_t)INT64_MAX + 1 ? INT64_MIN : -(int64_t)acc) : (int64_t)acc;
        }
    }
    /* strtod in the locale's notation */
    const char *dp = locale_point();
    if (dp[0] == '.' && dp[1] == 0) {
        v->num = strtod(lit, NULL);
    } else {
        size_t dl = strlen(dp);
        char small[128], *tmp = len + dl + 1 <= sizeof small ? small : malloc(len + dl + 1);
        if (!tmp) {
            p->err = jem_fail(JEM_ERR_NOMEM, "%s: out of memory parsing JSON", p->fname ? p->fname : "(json)");
            return 0;
        }
        char *dot = strchr(lit, '.');
        if (dot) {
            size_t a = (size_t)(dot - lit);
            memcpy(tmp, lit, a);
            memcpy(tmp + a, dp, dl);
            memcpy(tmp + a + dl, dot + 1, len - a); /* includes the NUL */
        } else {
            memcpy(tmp, lit, len + 1);
        }
        v->num = strtod(tmp, NULL);
        if (tmp != small) free(tmp);
    }
    return 1;
}

static int jp_literal(jparser *p, const char *word)
{
    size_t k = strlen(word);
    if (p->n - p->pos < k || memcmp(p->s + p->pos, word, k) != 0) {
        jp_fail(p, "unexpected character");
        return 0;
    }
    p->pos += k;
    return 1;
}

static jem_json *jp_value(jparser *p, int depth);

/* Array or object starting at '[' or '{'. */
static jem_json *jp_container(jparser *p, int depth, int is_obj)
{
    if (depth >= JEM_JSON_MAX_DEPTH) {
        jp_fail(p, "nesting too deep (more than 64 levels)");
        return NULL;
    }
    jem_json *v = jp_node(p, is_obj ? JEM_JSON_OBJECT : JEM_JSON_ARRAY);
    if (!v) return NULL;
    char close = is_obj ? '}' : ']';
    jem_json *last = NULL;
    size_t count = 0;
    p->pos++;
    jp_ws(p);
    if (p->pos < p->n && p->s[p->pos] == (unsigned char)close) {
        p->pos++;
        return v;
    }
    for (;;) {
        const char *key = NULL;
        size_t key_len = 0;
        if (is_obj) {
            if (p->pos >= p->n || p->s[p->pos] != '"') {
                jp_fail(p, "expected a string (member name)");
                return NULL;
            }
            if (!jp_string(p, &key, &key_len)) return NULL;
            jp_ws(p);
            if (p->pos >= p->n || p->s[p->pos] != ':') {
                jp_fail(p, "expected ':'");
                return NULL;
            }
            p->pos++;
            jp_ws(p);
        }
        jem_json *c = jp_value(p, depth + 1);
        if (!c) return NULL;
        if (p->build) {
            c->key = key;
            c->key_len = key_len;
            if (last) last->next = c;
            else v->child = c;
            last = c;
        }
        count++;
        jp_ws(p);
        if (p->pos >= p->n) {
            jp_fail(p, is_obj ? "unterminated object" : "unterminated array");
            return NULL;
        }
        unsigned char ch = p->s[p->pos];
        if (ch == ',') {
            p->pos++;
            jp_ws(p);
            continue;
        }
        if (ch == (unsigned char)close) {
            p->pos++;
            break;
        }
        jp_fail(p, is_obj ? "expected ',' or '}'" : "expected ',' or ']'");
        return NULL;
    }
    v->n = count;
    return v;
}

static jem_json *jp_value(jparser *p, int depth)
{
    if (p->pos >= p->n) {
        jp_fail(p, "unexpected end of input");
        return NULL;
    }
    unsigned char c = p->s[p->pos];
    jem_json *v;
    switch (c) {
    case '{': return jp_container(p, depth, 1);
    case '[': return jp_container(p, depth, 0);
    case '"':
        if (!(v = jp_node(p, JEM_JSON_STRING))) return NULL;
        return jp_string(p, &v->str, &v->len) ? v : NULL;
    case 't':
        if (!(v = jp_node(p, JEM_JSON_BOOL))) return NULL;
        v->boolean = 1;
        return jp_literal(p, "true") ? v : NULL;
    case 'f':
        if (!(v = jp_node(p, JEM_JSON_BOOL))) return NULL;
        return jp_literal(p, "false") ? v : NULL;
    case 'n':
        if (!(v = jp_node(p, JEM_JSON_NULL))) return NULL;
        return jp_literal(p, "null") ? v : NULL;
    default:
        if (c == '-' || is_digit(c)) {
            if (!(v = jp_node(p, JEM_JSON_NUMBER))) return NULL;
            return jp_number(p, v) ? v : NULL;
        }
        jp_fail(p, "unexpected character");
        return NULL;
    }
}

static int jp_document(jparser *p)
{
    p->pos = 0;
    p->nodes = 0;
    p->bytes = 0;
    jp_ws(p);
    if (p->pos >= p->n) {
        jp_fail(p, "empty input");
        return 0;
    }
    if (!jp_value(p, 0)) return 0;
    jp_ws(p);
    if (p->pos != p->n) {
        jp_fail(p, "unexpected data after the JSON value");
        return 0;
    }
    return 1;
}

jem_status jem_json_parse(const char *text, size_t n, const char *fname, jem_json **out)
{
    *out = NULL;
    jparser p;
    memset(&p, 0, sizeof p);
    p.s = (const unsigned char *)(text ? text : "");
    p.n = text ? n : 0;
    p.fname = fname;

    if (!jp_document(&p)) return p.err ? p.err : JEM_ERR_FORMAT;

    size_t nodes = p.nodes, bytes = p.bytes;
    if (nodes > (SIZE_MAX - bytes) / sizeof(jem_json))
        return jem_fail(JEM_ERR_NOMEM, "%s: JSON document too large", fname ? fname : "(json)");
    void *block = malloc(nodes * sizeof(jem_json) + bytes);
    if (!block)
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory for a JSON document of %zu values", fname ? fname : "(json)",
                        nodes);
    p.build = 1;
    p.bytes_total = bytes;
    p.pool = block;
    p.sbuf = (char *)block + nodes * sizeof(jem_json);
    if (!jp_document(&p) || p.nodes != nodes || p.bytes != bytes) {
        free(block);
        return p.err ? p.err : jem_fail(JEM_ERR_FORMAT, "%s: JSON parse inconsistency", fname ? fname : "(json)");
    }
    *out = p.pool; /* the root is the first node of the block */
    return JEM_OK;
}

void jem_json_free(jem_json *root) { free(root); }

const jem_json *jem_json_get(const jem_json *obj, const char *key)
{
    if (!obj || obj->type != JEM_JSON_OBJECT || !key) return NULL;
    size_t kl = strlen(key);
    for (const jem_json *c = obj->child; c; c = c->next)
        if (c->key_len == kl && memcmp(c->key, key, kl) == 0) return c;
    return NULL;
}

const jem_json *jem_json_at(const jem_json *v, size_t i)
{
    if (!v || (v->type != JEM_JSON_ARRAY && v->type != JEM_JSON_OBJECT) || i >= v->n) return NULL;
    const jem_json *c = v->child;
    while (c && i--) c = c->next;
    return c;
}

int jem_json_int(const jem_json *v, int64_t *out)
{
    if (!v || v->type != JEM_JSON_NUMBER || !v->is_int) return 0;
    *out = v->ival;
    return 1;
}

int jem_json_num(const jem_json *v, double *out)
{
    if (!v || v->type != JEM_JSON_NUMBER) return 0;
    *out = v->num;
    return 1;
}

int jem_json_bool(const jem_json *v, int *out)
{
    if (!v || v->type != JEM_JSON_BOOL) return 0;
    *out = v->boolean;
    return 1;
}

const char *jem_json_string(const jem_json *v) { return (v && v->type == JEM_JSON_STRING) ? v->str : NULL; }

const char *jem_json_type_name(jem_json_type t)
{
    switch (t) {
    case JEM_JSON_NULL: return "null";
    case JEM_JSON_BOOL: return "boolean";
    case JEM_JSON_NUMBER: return "number";
    case JEM_JSON_STRING: return "string";
    case JEM_JSON_ARRAY: return "array";
    case JEM_JSON_OBJECT: return "object";
    }
    return "?";
}

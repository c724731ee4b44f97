/*
 * jem/json.h: a small JSON toolkit (public; jem.h includes it).
 *
 * 1. A writer that appends compact JSON to a growable buffer (CLI --json
 *    output, JSON-lines logs, safetensors headers).
 * 2. A parser that builds a read-only tree (safetensors headers, small
 *    configuration files), with caps on nesting depth and node count so that
 *    hostile input cannot exhaust the stack or memory.
 *
 * Both work on UTF-8 bytes. Numbers are formatted and parsed with '.' as the
 * decimal point whatever the C locale says.
 */
#ifndef JEM_JSON_H
#define JEM_JSON_H

#include "jem.h"

#include <stddef.h>
#include <stdint.h>

/* Everything declared below is the library's interface: libjem.so is built
 * with -fvisibility=hidden and exports these declarations only. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------ writer */

#define JEM_JW_MAX_DEPTH 64

/*
 * Usage:
 *     jem_jw w;
 *     jem_jw_init(&w);
 *     jem_jw_obj_begin(&w);
 *     jem_jw_key(&w, "loss");  jem_jw_double(&w, 0.25);
 *     jem_jw_kstr(&w, "name", "b1.c1.weight");
 *     jem_jw_obj_end(&w);
 *     if (jem_jw_status(&w) == JEM_OK) fputs(jem_jw_cstr(&w), f);
 *     jem_jw_free(&w);
 *
 * Commas and colons are inserted by the writer. Errors are sticky: the first
 * failure (out of memory, a value in an object without a key, unbalanced
 * end, nesting deeper than JEM_JW_MAX_DEPTH) is remembered, later calls do
 * nothing, and jem_jw_status() reports it (JEM_ERR_NOMEM or JEM_ERR_ARG).
 * Several top-level values may be written one after the other; they are
 * separated by nothing (use jem_jw_raw(&w, "\n") for JSON lines, or
 * jem_jw_reset between lines).
 *
 * Ownership: the buffer belongs to the writer until jem_jw_take() hands it to
 * the caller (then free() it); jem_jw_free() releases it otherwise.
 */
typedef struct {
    char *buf; /* NUL-terminated text (may be NULL before the first write) */
    size_t len, cap;
    int depth;                             /* open containers */
    unsigned char kind[JEM_JW_MAX_DEPTH];  /* 'o' object or 'a' array per level */
    unsigned char count[JEM_JW_MAX_DEPTH]; /* nonzero once the level has an element */
    int want_value;                        /* a key was written, its value is next */
    jem_status err;                        /* sticky */
} jem_jw;

void jem_jw_init(jem_jw *w);
void jem_jw_free(jem_jw *w);
/* Empty the text and the nesting state, keep the buffer and clear errors. */
void jem_jw_reset(jem_jw *w);
jem_status jem_jw_status(const jem_jw *w);
/* The text so far, always NUL-terminated ("" when empty). Owned by w. */
const char *jem_jw_cstr(const jem_jw *w);
size_t jem_jw_len(const jem_jw *w);
/* Hand the buffer to the caller (free() it) and reset w to empty. Returns
 * NULL (and w keeps its error) if the writer failed. *n (nullable) = length. */
char *jem_jw_take(jem_jw *w, size_t *n);

void jem_jw_obj_begin(jem_jw *w);
void jem_jw_obj_end(jem_jw *w);
void jem_jw_arr_begin(jem_jw *w);
void jem_jw_arr_end(jem_jw *w);
/* A member name inside an object; the next call writes its value. */
void jem_jw_key(jem_jw *w, const char *key);
void jem_jw_keyn(jem_jw *w, const char *key, size_t n);
/* Strings: '"' '\\' and control characters are escaped (\n \r \t, others as
 * \u00XX); bytes that are not valid UTF-8 are written as \ufffd, so the
 * output is always valid JSON. NULL is written as null. */
void jem_jw_str(jem_jw *w, const char *s);
void jem_jw_strn(jem_jw *w, const char *s, size_t n);
void jem_jw_int(jem_jw *w, int64_t v);
void jem_jw_uint(jem_jw *w, uint64_t v);
/* Shortest text that reads back to the same double (at most 17 digits);
 * NaN and infinities are written as null. */
void jem_jw_double(jem_jw *w, double v);
/* Shortest text that reads back to the same float (at most 9 digits). */
void jem_jw_float(jem_jw *w, float v);
void jem_jw_bool(jem_jw *w, int v);
void jem_jw_null(jem_jw *w);
/* Append text verbatim (no comma handling): pre-formatted JSON or newlines. */
void jem_jw_raw(jem_jw *w, const char *text);
void jem_jw_rawn(jem_jw *w, const char *text, size_t n);
/* One value given as JSON text json[0..n) (e.g. a document read back from a
 * file), with the commas and colons a value gets; the text is not checked. */
void jem_jw_json(jem_jw *w, const char *json, size_t n);

/* key + value shorthands for objects */
void jem_jw_kstr(jem_jw *w, const char *key, const char *s);
void jem_jw_kint(jem_jw *w, const char *key, int64_t v);
void jem_jw_kdouble(jem_jw *w, const char *key, double v);
void jem_jw_kbool(jem_jw *w, const char *key, int v);

/* ------------------------------------------------------------------ parser */

#define JEM_JSON_MAX_DEPTH 64        /* nested arrays/objects */
#define JEM_JSON_MAX_NODES (1 << 20) /* values in one document */

typedef enum {
    JEM_JSON_NULL = 0,
    JEM_JSON_BOOL,
    JEM_JSON_NUMBER,
    JEM_JSON_STRING,
    JEM_JSON_ARRAY,
    JEM_JSON_OBJECT
} jem_json_type;

/*
 * A parsed value. The whole tree (nodes and strings) lives in one block owned
 * by the root; release it with jem_json_free(root). Nothing in it may be
 * modified or freed separately.
 */
typedef struct jem_json jem_json;
struct jem_json {
    jem_json_type type;
    int boolean;     /* BOOL */
    int is_int;      /* NUMBER written without fraction/exponent and fitting int64 */
    int64_t ival;    /* NUMBER: exact value when is_int */
    double num;      /* NUMBER: value (strtod rounding) */
    const char *str; /* STRING: unescaped UTF-8, NUL-terminated; NUMBER: the literal text */
    size_t len;      /* STRING: bytes in str (str may contain NUL from \u0000) */
    const char *key; /* member of an OBJECT: its name, unescaped, NUL-terminated */
    size_t key_len;
    size_t n;        /* ARRAY/OBJECT: number of children */
    jem_json *child; /* ARRAY/OBJECT: first child, in document order */
    jem_json *next;  /* next sibling */
};

/*
 * Parse exactly one JSON value (RFC 8259) from text[0..n), surrounded by
 * optional whitespace; text need not be NUL-terminated. Strings must be valid
 * UTF-8; \uXXXX escapes (surrogate pairs included) are decoded to UTF-8, and
 * lone surrogates are refused. Duplicate object keys are kept (see
 * jem_json_get). Nesting deeper than JEM_JSON_MAX_DEPTH or more than
 * JEM_JSON_MAX_NODES values -> JEM_ERR_FORMAT.
 *
 * fname names the input in error messages ("fname: offset 12: ...").
 * On success *out receives the root (free with jem_json_free); on failure
 * *out is NULL and the status is JEM_ERR_FORMAT or JEM_ERR_NOMEM.
 */
jem_status jem_json_parse(const char *text, size_t n, const char *fname, jem_json **out);
void jem_json_free(jem_json *root);

/* First member named key of an object (NULL if absent or v is not an object). */
const jem_json *jem_json_get(const jem_json *obj, const char *key);
/* i-th child of an array or object (NULL if out of range); O(i). */
const jem_json *jem_json_at(const jem_json *v, size_t i);
/* Typed reads: return 1 and store the value if v has the type, else 0.
 * jem_json_int needs an integral literal in int64 range. */
int jem_json_int(const jem_json *v, int64_t *out);
int jem_json_num(const jem_json *v, double *out);
int jem_json_bool(const jem_json *v, int *out);
/* The string value (NUL-terminated) or NULL if v is not a string. */
const char *jem_json_string(const jem_json *v);
const char *jem_json_type_name(jem_json_type t);

/* ------------------------------------------------------------------- UTF-8 */

/* 1 if s[0..n) is well-formed UTF-8 (no overlong forms, no surrogates,
 * nothing above U+10FFFF), else 0. */
int jem_utf8_valid(const char *s, size_t n);

#ifdef __cplusplus
}
#endif
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#endif /* JEM_JSON_H */

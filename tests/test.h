/* Minimal test harness: assertions that print both operands, are never
 * compiled out, and make the binary exit non-zero on any failure.
 * Each test binary ends with one line "NAME: N passed, N failed". */
#ifndef JEM_TEST_H
#define JEM_TEST_H

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int t_pass, t_fail;
static const char *t_name = "test";

#define T_REPORT_FAIL(...)                                   \
    do {                                                     \
        t_fail++;                                            \
        fprintf(stderr, "FAIL %s:%d: ", __FILE__, __LINE__); \
        fprintf(stderr, __VA_ARGS__);                        \
        fputc('\n', stderr);                                 \
    } while (0)

#define ASSERT(c)                     \
    do {                              \
        if (c) t_pass++;              \
        else T_REPORT_FAIL("%s", #c); \
    } while (0)
#define ASSERT_MSG(c, ...)               \
    do {                                 \
        if (c) t_pass++;                 \
        else T_REPORT_FAIL(__VA_ARGS__); \
    } while (0)
#define ASSERT_EQ_INT(a, b)                                            \
    do {                                                               \
        long long _a = (long long)(a), _b = (long long)(b);            \
        if (_a == _b) t_pass++;                                        \
        else T_REPORT_FAIL("%s == %s (%lld vs %lld)", #a, #b, _a, _b); \
    } while (0)
#define ASSERT_NEAR(a, b, tol)                                                      \
    do {                                                                            \
        double _a = (double)(a), _b = (double)(b), _t = (double)(tol);              \
        if (fabs(_a - _b) <= _t) t_pass++;                                          \
        else T_REPORT_FAIL("%s ~ %s (%.9g vs %.9g, tol %.3g)", #a, #b, _a, _b, _t); \
    } while (0)
#define ASSERT_OK(expr)                                                                \
    do {                                                                               \
        jem_status _s = (expr);                                                        \
        if (_s == JEM_OK) t_pass++;                                                    \
        else T_REPORT_FAIL("%s -> %s: %s", #expr, jem_strerror(_s), jem_last_error()); \
    } while (0)
#define ASSERT_ERR(expr, want)                                                                 \
    do {                                                                                       \
        jem_status _s = (expr);                                                                \
        if (_s == (want)) t_pass++;                                                            \
        else T_REPORT_FAIL("%s -> %s (want %s)", #expr, jem_strerror(_s), jem_strerror(want)); \
    } while (0)
#define ASSERT_STR_CONTAINS(hay, needle)                                            \
    do {                                                                            \
        const char *_h = (hay), *_n = (needle);                                     \
        if (_h && strstr(_h, _n)) t_pass++;                                         \
        else T_REPORT_FAIL("\"%s\" should contain \"%s\"", _h ? _h : "(null)", _n); \
    } while (0)

#define TEST_MAIN_BEGIN(name) t_name = (name);
static inline int t_finish(void)
{
    printf("%s: %d passed, %d failed\n", t_name, t_pass, t_fail);
    return t_fail ? 1 : 0;
}

/* Directory of committed fixtures (relative to the project root). */
#define FIXTURES "tests/fixtures"

/* Quick mode (sanitizer runs): smaller problem sizes. */
static inline int t_quick(void)
{
    const char *q = getenv("JEM_TEST_QUICK");
    return q && *q && *q != '0';
}

#endif

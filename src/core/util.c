/* Errors, assertions, RNG and thread settings. */
#include "jem.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>
#include <cblas.h>

static _Thread_local char jem_errbuf[1024];

const char *jem_strerror(jem_status s)
{
    switch (s) {
    case JEM_OK: return "ok";
    case JEM_ERR_NOMEM: return "out of memory";
    case JEM_ERR_IO: return "i/o error";
    case JEM_ERR_FORMAT: return "bad file format";
    case JEM_ERR_SHAPE: return "shape mismatch";
    case JEM_ERR_ARG: return "bad argument";
    case JEM_ERR_NONFINITE: return "non-finite value";
    case JEM_ERR_DIVERGED: return "training diverged";
    case JEM_ERR_UNSUPPORTED: return "unsupported";
    case JEM_ERR_INTERRUPTED: return "interrupted";
    }
    return "unknown error";
}

const char *jem_last_error(void) { return jem_errbuf; }
void jem_clear_error(void) { jem_errbuf[0] = 0; }

jem_status jem_fail(jem_status s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(jem_errbuf, sizeof jem_errbuf, fmt, ap);
    va_end(ap);
    return s;
}

void jem_assert_fail(const char *expr, const char *file, int line)
{
    fprintf(stderr, "jem: assertion failed: %s (%s:%d)\n", expr, file, line);
    fflush(stderr);
    abort();
}

/* ---- xoshiro256** (Blackman & Vigna), seeded through splitmix64 ---- */

static uint64_t splitmix64(uint64_t *x)
{
    uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
    z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
    z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
    return z ^ (z >> 31);
}

void jem_rng_seed(jem_rng *r, uint64_t seed, uint64_t stream)
{
    uint64_t x = seed ^ (stream * 0xd1342543de82ef95ULL + 0x2545f4914f6cdd1dULL);
    for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&x);
    if (!(r->s[0] | r->s[1] | r->s[2] | r->s[3])) r->s[0] = 1;
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t jem_rng_u64(jem_rng *r)
{
    uint64_t *s = r->s;
    uint64_t res = rotl(s[1] * 5, 7) * 9;
    uint64_t t = s[1] << 17;
    s[2] ^= s[0];
    s[3] ^= s[1];
    s[1] ^= s[2];
    s[0] ^= s[3];
    s[2] ^= t;
    s[3] = rotl(s[3], 45);
    return res;
}

uint32_t jem_rng_below(jem_rng *r, uint32_t n)
{
    /* Lemire's nearly divisionless method, unbiased */
    uint64_t m = (uint64_t)(uint32_t)(jem_rng_u64(r) >> 32) * n;
    uint32_t l = (uint32_t)m;
    if (l < n) {
        uint32_t t = (uint32_t)(-n) % n;
        while (l < t) {
            m = (uint64_t)(uint32_t)(jem_rng_u64(r) >> 32) * n;
            l = (uint32_t)m;
        }
    }
    return (uint32_t)(m >> 32);
}

float jem_rng_uniform(jem_rng *r) { return (float)(jem_rng_u64(r) >> 40) * 0x1.0p-24f; }
double jem_rng_uniform_d(jem_rng *r) { return (double)(jem_rng_u64(r) >> 11) * 0x1.0p-53; }

double jem_rng_normal_d(jem_rng *r)
{
    /* Box-Muller; u1 in (0, 1] so the log is finite */
    double u1 = 1.0 - jem_rng_uniform_d(r), u2 = jem_rng_uniform_d(r);
    return sqrt(-2.0 * log(u1)) * cos(6.283185307179586 * u2);
}

float jem_rng_normal(jem_rng *r) { return (float)jem_rng_normal_d(r); }

void jem_rng_shuffle(jem_rng *r, int32_t *a, size_t n)
{
    for (size_t i = n; i > 1; i--) {
        size_t j = jem_rng_below(r, (uint32_t)i);
        int32_t t = a[i - 1];
        a[i - 1] = a[j];
        a[j] = t;
    }
}

/* ---- threads ---- */

static int jem_threads_set;

void jem_set_threads(int n)
{
    if (n <= 0) {
        /* all cores, shared among the ranks an MPI launcher put on this node */
        n = omp_get_num_procs();
        const char *l = getenv("OMPI_COMM_WORLD_LOCAL_SIZE");
        if (!l) l = getenv("MPI_LOCALNRANKS");
        int local = l ? atoi(l) : 1;
        if (local > 1) n = n / local > 0 ? n / local : 1;
    }
    omp_set_num_threads(n);
    openblas_set_num_threads(n);
    jem_threads_set = n;
}

int jem_get_threads(void) { return jem_threads_set > 0 ? jem_threads_set : omp_get_max_threads(); }

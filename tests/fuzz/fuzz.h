/*
 * fuzz.h: shared by the libFuzzer harnesses (tests/fuzz/fuzz_*.c).
 *
 * Each harness hands the fuzzer's bytes to one parser of outside input the
 * way a user would: as a file on disk, through the public loader. Files go
 * in a private directory made once per process under $TMPDIR.
 */
#ifndef JEM_FUZZ_H
#define JEM_FUZZ_H

#include "jem.h"

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

static char fuzz_dir[512];
/* Inputs the parser accepted (the replay test checks seeds are accepted). */
static long fuzz_accepted;

/* The per-process scratch directory (created on first use). */
static const char *fuzz_tmpdir(void)
{
    if (!fuzz_dir[0]) {
        const char *t = getenv("TMPDIR");
        snprintf(fuzz_dir, sizeof fuzz_dir, "%s/jem-fuzz-XXXXXX", t && *t ? t : "/tmp");
        if (!mkdtemp(fuzz_dir)) {
            perror("mkdtemp");
            abort();
        }
        jem_set_threads(1);
    }
    return fuzz_dir;
}

/* Write n bytes to <scratch>/<rel>, creating its parent folders; the full
 * path goes to out. */
static void fuzz_write(const char *rel, const void *p, size_t n, char *out, size_t outn)
{
    snprintf(out, outn, "%s/%s", fuzz_tmpdir(), rel);
    for (const char *q = strchr(rel, '/'); q; q = strchr(q + 1, '/')) {
        char d[600];
        snprintf(d, sizeof d, "%s/%.*s", fuzz_tmpdir(), (int)(q - rel), rel);
        mkdir(d, 0700);
    }
    FILE *f = fopen(out, "wb");
    if (!f) {
        perror(out);
        abort();
    }
    if (n && fwrite(p, 1, n, f) != n) {
        perror(out);
        abort();
    }
    if (fclose(f)) {
        perror(out);
        abort();
    }
}

/* Split data at the first occurrence of the 4-byte separator "JEM|":
 * the part before goes to a, the rest to b (empty when absent). */
static void fuzz_split(const uint8_t *d, size_t n, const uint8_t **a, size_t *na, const uint8_t **b, size_t *nb)
{
    *a = d;
    *na = n;
    *b = d + n;
    *nb = 0;
    for (size_t i = 0; i + 4 <= n; i++)
        if (!memcmp(d + i, "JEM|", 4)) {
            *na = i;
            *b = d + i + 4;
            *nb = n - i - 4;
            return;
        }
}

/* Run fn(argc, argv) with stdout and stderr sent to /dev/null (the command
 * line harnesses: the messages are not what is checked and would flood a
 * replay); returns fn's result. */
static int fuzz_quiet(int (*fn)(int, char **), int argc, char **argv)
{
    static int devnull = -1;
    if (devnull < 0) devnull = open("/dev/null", O_WRONLY);
    fflush(stdout);
    fflush(stderr);
    int o1 = dup(1), o2 = dup(2);
    dup2(devnull, 1);
    dup2(devnull, 2);
    int rc = fn(argc, argv);
    fflush(stdout);
    fflush(stderr);
    dup2(o1, 1);
    dup2(o2, 2);
    close(o1);
    close(o2);
    return rc;
}

#endif

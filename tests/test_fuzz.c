/*
 * Replay of the fuzz harnesses without libFuzzer: every file of the seed
 * corpora (tests/fuzz/corpus/<target>/) and of the crash regressions
 * (tests/fuzz/regress/<target>/) goes through its harness as it is, then as
 * deterministic mutations (truncations, bit flips, byte overwrites with
 * boundary values, insertions and deletions). A harness aborts on any broken
 * invariant and the sanitizers abort on memory errors, so this binary
 * exiting normally is the check; on top, each target's unmodified seeds must
 * be accepted (the parsers' success paths are reached) and some mutations
 * rejected (their error paths too).
 */
#include "test.h"

#define LLVMFuzzerTestOneInput fuzz_idx
#include "fuzz/fuzz_idx.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_cifar
#include "fuzz/fuzz_cifar.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_png
#include "fuzz/fuzz_png.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_pngdir
#include "fuzz/fuzz_pngdir.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_ckpt
#include "fuzz/fuzz_ckpt.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_arch
#include "fuzz/fuzz_arch.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_cli
#include "fuzz/fuzz_cli.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_cmd
#include "fuzz/fuzz_cmd.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_json
#include "fuzz/fuzz_json.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_spec
#include "fuzz/fuzz_spec.c"
#undef LLVMFuzzerTestOneInput
#define LLVMFuzzerTestOneInput fuzz_compose
#include "fuzz/fuzz_compose.c"
#undef LLVMFuzzerTestOneInput

#include <dirent.h>
#include <ftw.h>

typedef int (*harness_fn)(const uint8_t *, size_t);

static const struct {
    const char *name;
    harness_fn fn;
} targets[] = {
    {"idx", fuzz_idx},   {"cifar", fuzz_cifar}, {"png", fuzz_png},         {"pngdir", fuzz_pngdir},
    {"ckpt", fuzz_ckpt}, {"arch", fuzz_arch},   {"cli", fuzz_cli},         {"cmd", fuzz_cmd},
    {"json", fuzz_json}, {"spec", fuzz_spec},   {"compose", fuzz_compose},
};

static uint64_t mix_state;
static uint64_t mix(void) /* splitmix64: a fixed sequence, so runs repeat */
{
    uint64_t z = (mix_state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

/* Run fn on data and on n_mut mutations of it; count acceptances. */
static void replay(harness_fn fn, const uint8_t *data, size_t n, int n_mut, long *seed_ok, long *mut_ok, long *mut_runs)
{
    long before = fuzz_accepted;
    fn(data, n);
    *seed_ok += fuzz_accepted > before;
    uint8_t *m = malloc(n + 16);
    if (!m) abort();
    static const uint8_t special[] = {0x00, 0x01, 0x7f, 0x80, 0xfe, 0xff};
    for (int k = 0; k < n_mut; k++) {
        size_t len = n;
        memcpy(m, data, n);
        int op = (int)(mix() % 5);
        if (op == 0 || n == 0) { /* truncate */
            len = n ? (size_t)(mix() % n) : 0;
        } else if (op == 1) { /* flip 1-4 bits */
            for (int b = 1 + (int)(mix() % 4); b > 0; b--) m[mix() % n] ^= (uint8_t)(1u << (mix() % 8));
        } else if (op == 2) { /* boundary bytes */
            for (int b = 1 + (int)(mix() % 4); b > 0; b--) m[mix() % n] = special[mix() % sizeof special];
        } else if (op == 3) { /* insert up to 16 bytes */
            size_t at = mix() % (n + 1), k2 = 1 + mix() % 16;
            memmove(m + at + k2, m + at, n - at);
            for (size_t i = 0; i < k2; i++) m[at + i] = (uint8_t)mix();
            len = n + k2;
        } else { /* delete up to 16 bytes */
            size_t at = mix() % n, k2 = 1 + mix() % 16;
            if (k2 > n - at) k2 = n - at;
            memmove(m + at, m + at + k2, n - at - k2);
            len = n - k2;
        }
        before = fuzz_accepted;
        fn(m, len);
        *mut_ok += fuzz_accepted > before;
        (*mut_runs)++;
    }
    free(m);
}

static int rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_fuzz");
    int n_mut = t_quick() ? 40 : 200;
    long total = 0;
    for (size_t t = 0; t < sizeof targets / sizeof *targets; t++) {
        long seeds = 0, seed_ok = 0, mut_ok = 0, mut_runs = 0;
        mix_state = 0x6a656d + t;
        const char *kinds[] = {"corpus", "regress"};
        for (int kd = 0; kd < 2; kd++) {
            char dir[512];
            snprintf(dir, sizeof dir, "tests/fuzz/%s/%s", kinds[kd], targets[t].name);
            DIR *d = opendir(dir);
            if (!d) {
                if (kd == 0) ASSERT_MSG(0, "seed corpus %s missing", dir);
                continue; /* no regressions for this target */
            }
            struct dirent *e;
            while ((e = readdir(d))) {
                if (e->d_name[0] == '.') continue;
                char path[1024];
                snprintf(path, sizeof path, "%s/%s", dir, e->d_name);
                char *buf = NULL;
                size_t n = 0;
                if (jem_read_file(path, 1 << 24, &buf, &n) != JEM_OK) {
                    ASSERT_MSG(0, "cannot read %s", path);
                    continue;
                }
                long ok0 = seed_ok;
                replay(targets[t].fn, (const uint8_t *)buf, n, n_mut, &seed_ok, &mut_ok, &mut_runs);
                if (kd == 0) seeds++;
                else seed_ok = ok0; /* regressions are crash inputs: accepted or not */
                free(buf);
            }
            closedir(d);
        }
        printf("  %-7s %ld seeds (%ld accepted), %ld mutations (%ld accepted)\n", targets[t].name, seeds, seed_ok,
               mut_runs, mut_ok);
        ASSERT_MSG(seeds > 0 && seed_ok > 0, "%s: no seed accepted (%ld of %ld)", targets[t].name, seed_ok, seeds);
        ASSERT_MSG(mut_ok < mut_runs, "%s: every mutation accepted: error paths never reached", targets[t].name);
        total += mut_runs;
    }
    ASSERT(total > 0);
    if (fuzz_dir[0]) nftw(fuzz_dir, rm_entry, 8, FTW_DEPTH | FTW_PHYS);
    return t_finish();
}

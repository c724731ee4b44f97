/* Fuzz command-line option parsing: the input is split at NUL bytes into
 * arguments and parsed against a table holding one option of every type. */
#include "fuzz.h"
#include "cli/cli.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    char *buf = malloc(size + 1);
    if (!buf) return 0;
    memcpy(buf, data, size);
    buf[size] = 0;
    char *argv[64];
    int argc = 0;
    argv[argc++] = (char *)"jem";
    argv[argc++] = (char *)"fuzz";
    for (size_t i = 0; i <= size && argc < 64;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    int flag = 0, iv = 7;
    int64_t i64 = 0;
    uint64_t u64 = 0;
    float fv = 0;
    double dv = 0;
    const char *sv = NULL;
    const cli_opt opts[] = {
        {"flag", OPT_FLAG, &flag, "a flag"},
        {"int", OPT_INT, &iv, "an int"},
        {"i64", OPT_I64, &i64, "an int64"},
        {"u64", OPT_U64, &u64, "a uint64"},
        {"float", OPT_FLOAT, &fv, "a float"},
        {"double", OPT_DOUBLE, &dv, "a double"},
        {"str", OPT_STR, &sv, "a string"},
        {NULL, OPT_FLAG, NULL, NULL},
    };
    const char *pos[4];
    int npos = 0;
    int r = cli_parse("fuzz", "usage: jem fuzz [options]", opts, argc, argv, 2, pos, 4, &npos);
    if (r == 0) {
        if (npos < 0 || npos > 4) abort();
        if (!isfinite(fv) || !isfinite(dv)) abort();
        for (int i = 0; i < npos; i++) if (!pos[i]) abort();
        fuzz_accepted++;
    } else if (r != 1 && r != -1) {
        abort();
    }
    free(buf);
    return 0;
}

/* Fuzz command-line option parsing and checking: the input is split at NUL
 * bytes into arguments and run through the command preamble (parse, range
 * and choice checks, paths) against a table holding one option of every
 * type, in check-only mode (nothing is loaded or written). */
#include "fuzz.h"
#include "cli/cli.h"

#include <math.h>

static int fc_flag, fc_iv = 7, fc_ok;
static int64_t fc_i64;
static uint64_t fc_u64;
static float fc_fv;
static double fc_dv;
static const char *fc_sv, *fc_cv;

static int fuzz_cmd_table(int argc, char **argv)
{
    fc_flag = 0;
    fc_iv = 7;
    fc_i64 = 0;
    fc_u64 = 0;
    fc_fv = 0;
    fc_dv = 0;
    fc_sv = NULL;
    fc_cv = "b";
    cli_opt opts[] = {{OPT("flag", OPT_FLAG, &fc_flag, "a flag")},
                      {OPT("int", OPT_INT, &fc_iv, "an int"), RANGE(-5, 100)},
                      {OPT("i64", OPT_I64, &fc_i64, "an int64"), ATLEAST(-9)},
                      {OPT("u64", OPT_U64, &fc_u64, "a uint64")},
                      {OPT("float", OPT_FLOAT, &fc_fv, "a float"), ABOVE(0, 1e30)},
                      {OPT("double", OPT_DOUBLE, &fc_dv, "a double")},
                      {OPT("str", OPT_STR, &fc_sv, "a string")},
                      {OPT("choice", OPT_STR, &fc_cv, "a choice"), .choices = "a|b|cc"},
                      CLI_END};
    const cli_spec sp = {.name = "fuzz", .usage = "[options]", .opts = opts, .json = 1, .threads = 1, .max_pos = 4};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r == 0 && !cx.help) {
        /* what was accepted is within the table's ranges */
        if (cx.npos < 0 || cx.npos > 4 || cx.threads < 0 || cx.threads > 1024) abort();
        if (fc_iv < -5 || fc_iv > 100 || fc_i64 < -9 || !(fc_fv == 0 || fc_fv > 0) || !isfinite(fc_fv) ||
            !isfinite(fc_dv))
            abort();
        if (strcmp(fc_cv, "a") && strcmp(fc_cv, "b") && strcmp(fc_cv, "cc")) abort();
        for (int i = 0; i < cx.npos; i++)
            if (!cx.pos[i]) abort();
        fc_ok = 1;
    }
    return r;
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 4096) return 0;
    fuzz_tmpdir();
    cli_set_check_only(1);
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
    fc_ok = 0;
    int r = fuzz_quiet(fuzz_cmd_table, argc, argv);
    if (r == 0 && fc_ok) fuzz_accepted++;
    else if (r != 0 && r != 2) abort(); /* 0 (also after --help) or 2: a usage error */
    free(buf);
    return 0;
}

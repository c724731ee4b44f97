/* Fuzz the commands' checks: the first byte picks a command (train, eval,
 * ood, score, attack, sample, info, export, bench, report, logz), the rest is
 * split at NUL bytes into its arguments: option values, data set specs,
 * paths. Each runs in check-only mode: parsed, every value checked against
 * its range, the specs' syntax and files, the output paths, the command's
 * own checks; nothing is loaded or written. The result must be 0 or 2 (a
 * usage error), and the same when run again (no state left behind). */
#include "fuzz.h"
#include "cli/cli.h"

static int (*const fuzz_cmds[])(int, char **) = {cmd_train, cmd_eval,   cmd_ood,   cmd_score,  cmd_attack, cmd_sample,
                                                 cmd_info,  cmd_export, cmd_bench, cmd_report, cmd_logz};
static const char *const fuzz_cmd_names[] = {"train", "eval",   "ood",   "score",  "attack", "sample",
                                             "info",  "export", "bench", "report", "logz"};
#define FUZZ_NCMDS ((int)(sizeof fuzz_cmds / sizeof *fuzz_cmds))

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static int dirs;
    if (size < 1 || size > 4096) return 0;
    fuzz_tmpdir();
    if (!dirs) {
        cli_data_dirs();
        dirs = 1;
    }
    cli_set_check_only(1);
    const int c = data[0] % FUZZ_NCMDS;
    char *buf = malloc(size);
    if (!buf) return 0;
    memcpy(buf, data + 1, size - 1);
    buf[size - 1] = 0;
    char *argv[64], *copy[64];
    int argc = 0;
    argv[argc++] = (char *)"jem";
    argv[argc++] = (char *)fuzz_cmd_names[c];
    for (size_t i = 0; size > 1 && i < size - 1 && argc < 64;) {
        argv[argc++] = buf + i;
        i += strlen(buf + i) + 1;
    }
    memcpy(copy, argv, sizeof argv);
    int r = fuzz_quiet(fuzz_cmds[c], argc, argv);
    if (r != 0 && r != 2) abort();
    if (fuzz_quiet(fuzz_cmds[c], argc, copy) != r) abort();
    if (r == 0) fuzz_accepted++;
    free(buf);
    return 0;
}

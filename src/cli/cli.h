/* cli.h: option tables and helpers shared by the subcommands. */
#ifndef JEM_CLI_H
#define JEM_CLI_H

#include "jem.h"
#include <stdint.h>

typedef enum { OPT_FLAG, OPT_INT, OPT_I64, OPT_U64, OPT_FLOAT, OPT_DOUBLE, OPT_STR } opt_type;

typedef struct {
    const char *name;   /* long name without "--" */
    opt_type    type;
    void       *ptr;
    const char *help;
} cli_opt;

/* Parse argv[first..argc) against opts; positional arguments go to pos
 * (up to max_pos). Returns 0, 1 when --help was asked (help printed), or -1
 * after printing an error naming the bad option or value. */
int cli_parse(const char *cmd, const char *usage, const cli_opt *opts, int argc,
              char **argv, int first, const char **pos, int max_pos, int *npos);
void cli_help(const char *cmd, const char *usage, const cli_opt *opts);
/* Print "jem CMD: error: <jem_last_error()>" and return the exit status. */
int cli_fail(const char *cmd, jem_status s);
/* Open a data set and make it fit the model's input shape. */
jem_status cli_open_data(const char *spec, const jem_arch *a, jem_dataset *ds);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_ood(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_attack(int argc, char **argv);
int cmd_report(int argc, char **argv);

#endif

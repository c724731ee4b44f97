/* cli.h: what the subcommands share: the option table (types, valid ranges,
 * what a path names), the command preamble (parse, check, load, threads,
 * JSON mode), labels checked against the model, and the progress bar. The
 * tool is a client of the public API only (jem.h and include/jem/). */
#ifndef JEM_CLI_H
#define JEM_CLI_H

#include "jem.h"

#include <stdint.h>
#include <stdio.h>

typedef enum { OPT_FLAG, OPT_INT, OPT_I64, OPT_U64, OPT_FLOAT, OPT_DOUBLE, OPT_STR } opt_type;

/* What an option's value must be, checked before anything is loaded. */
enum {
    OPT_NONEMPTY = 1 << 1, /* strings: not "" */
    OPT_IN_FILE = 1 << 2,  /* an existing, readable file */
    OPT_OUT_FILE = 1 << 3, /* a file to write: not a folder, in an existing writable folder */
    OPT_OUT_DIR = 1 << 4,  /* a folder to write into (made if missing, in a writable folder) */
    OPT_SPEC = 1 << 5,     /* a data set spec (syntax, and the files it names exist) */
    OPT_SPECS = 1 << 6,    /* comma-separated data set specs */
    OPT_JEM = 1 << 7,      /* train: means something with --mode jem only */
    OPT_HIDDEN = 1 << 8,   /* a testing hook: not listed by --help */
    OPT_IF_GIVEN = 1 << 9, /* the path checks apply only when the option is given (not to its default) */
};

/* One option. Numbers are checked against [min, max] (ranged 1), (min,
 * max] (ranged 2) or [min, max) (ranged 3); strings against choices
 * ("a|b|c") when set.
 * The table ends with an entry whose name is NULL. help and the error
 * messages derive the range text from the same fields. */
typedef struct {
    const char *name; /* long name without "--" */
    opt_type type;
    void *ptr;
    const char *help;
    double min, max;
    int ranged; /* 0: any number, 1: min <= x <= max, 2: min < x <= max, 3: min <= x < max */
    const char *choices;
    unsigned flags;
    const char *def; /* the default as --help says it, when the value in ptr does not */
    int seen;        /* set by the parser when the option was given */
} cli_opt;

/* shorthands for the table: {OPT("lr", OPT_FLOAT, &lr, "learning rate"), RANGE(0, 10)} */
#define OPT(n, t, p, h) .name = (n), .type = (t), .ptr = (p), .help = (h)
#define CLI_END      \
    {                \
        .name = NULL \
    }
#define RANGE(lo, hi) .min = (lo), .max = (hi), .ranged = 1
#define ABOVE(lo, hi) .min = (lo), .max = (hi), .ranged = 2
#define BELOW(lo, hi) .min = (lo), .max = (hi), .ranged = 3
#define ATLEAST(lo)   .min = (lo), .max = 1e300, .ranged = 1
#define POSITIVE      .min = 0, .max = 1e300, .ranged = 2

/* What --model names for a command. */
typedef enum {
    CLI_MODEL_NONE = 0,
    CLI_MODEL_CKPT, /* a checkpoint (required; loaded by the preamble; a positional argument works too) */
    CLI_MODEL_DESC, /* a model description file (not loaded by the preamble; its default is
                             checked by the command, which may not need it) */
} cli_model_kind;

typedef struct cli_ctx cli_ctx;

/* --precision's help where every pass of the command may run in bf16 */
#define CLI_PRECISION_HELP "the convolutions' products: fp32, or bf16 with fp32 sums (AVX512-BF16; faster, less exact)"

/* A command: its options, and the checks across options that the table
 * cannot say (a list's syntax, one option's bound set by another). check
 * prints its error and returns 2, or returns 0; it runs before anything is
 * loaded and must not write anything. */
typedef struct {
    const char *name;
    const char *usage; /* after "jem NAME " */
    cli_opt *opts;     /* the command's own options */
    cli_model_kind model;
    const char *model_default; /* CLI_MODEL_DESC: the default description file */
    int json;                  /* the command takes --json */
    int threads;               /* the command takes --threads */
    /* the command takes --precision fp32|bf16 (the text of its help,
     * CLI_PRECISION_HELP unless the command says more; NULL: it does not);
     * the preamble checks that the CPU runs bf16 before anything is
     * loaded and sets the loaded model's precision */
    const char *precision;
    int max_pos; /* positional arguments besides the model (into pos) */
    int (*check)(cli_ctx *cx, void *ud);
    void *ud;
    const char *note;  /* printed by --help below the usage line (nullable) */
    unsigned inactive; /* --help: options with these flags say inactive_text instead of a default */
    const char *inactive_text;
} cli_spec;

/* The preamble's product, used by the command after it. */
struct cli_ctx {
    const char *cmd;
    const cli_spec *spec;
    int help;          /* --help was asked (and printed) */
    const char *model; /* --model (or the positional argument), else the spec's default */
    int model_given;   /* --model was on the command line */
    int threads, json;
    jem_precision precision; /* --precision (fp32 unless the command takes it) */
    int tty;                 /* progress bars drawn: stderr a terminal, no --json, rank 0 */
    const char *bar_prefix;  /* put before every bar's text (jem report: its step), nullable */
    const char *pos[4];      /* positional arguments */
    int npos;
    jem_net *net;         /* CLI_MODEL_CKPT: the loaded model */
    jem_st *st;           /* CLI_MODEL_CKPT: the checkpoint file (metadata, training state) */
    const jem_arch *arch; /* net's architecture */
    char **classes;       /* class names known for the model (n_classes of them), or NULL */
    int n_classes;
    char model_path[4096]; /* model, when cli_find_file found it among the shipped models */
};

/* Parse argv[2..argc) against the spec (plus --model, --threads, --json as
 * it says, and --help), check every value, check the data specs and output
 * paths and the kernel settings in the environment, run the spec's check,
 * set the thread count, load the checkpoint.
 * Returns -1 when the command should go on; otherwise the exit status: 0
 * after --help, 2 for a usage error (printed, naming the option or setting
 * and its valid values), 1 when the model does not load. */
int cli_begin(cli_ctx *cx, const cli_spec *sp, int argc, char **argv);
/* Release what cli_begin loaded. */
void cli_end(cli_ctx *cx);
/* The option named name in the spec's table (NULL if none). */
cli_opt *cli_find(const cli_spec *sp, const char *name);
/* 1 when the option was given on the command line. */
int cli_given(const cli_spec *sp, const char *name);

/* Print "jem CMD: error: <message>" for a usage error; returns 2. */
int cli_usage_error(const char *cmd, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
/* Print "jem CMD: error: <jem_last_error()>" and return the exit status
 * (130 when interrupted, else 1). */
int cli_fail(const char *cmd, jem_status s);
/* Print the option table as --help does (as the manual's section of the
 * command, in roff, between cli_set_man(what) and cli_set_man(NULL)). */
void cli_help(const cli_spec *sp);

/* ---- the manual page (man.c; main.c's `jem --man` puts it together) */
void cli_set_man(const char *what);
/* s as roff text (escapes; line_start: s begins an output line) */
void cli_roff(FILE *f, const char *s, int line_start);
void cli_man_head(void);
void cli_man_summary(const char *name, const char *what);
void cli_man_options_head(void);
void cli_man_tail(void);

/* Open a data set for the model (noise takes its shape; converted to its
 * channels); opt names the option in error messages. */
jem_status cli_open_data(const cli_ctx *cx, const char *opt, const char *spec, jem_dataset *ds);
/* The training set behind an fmnist spec, with the spec's class filter:
 * "fmnist:train" for fmnist:train and fmnist:test, "fmnist:train:classes=0-5"
 * for fmnist:test:classes=0-5; NULL for other data (or a buf too short).
 * Temperature scaling, thresholds and jem fit-ood hold out its first
 * CLI_FMNIST_HELDOUT images of the trainer's split by default, as jem train
 * --val does on the same --data. */
const char *cli_fmnist_train_of(const char *spec, char *buf, size_t n);
/* spec names that training set itself (cli_fmnist_train_of gives it back) */
int cli_is_fmnist_train(const char *spec);
/* Labels against the model's K classes: need_all: every image labelled in
 * [0, K) (attack, eval); else labels in [0, K) or -1 and at least one
 * labelled image (train). */
jem_status cli_check_labels(const cli_ctx *cx, const char *opt, const jem_dataset *ds, int need_all);
/* 1 for the specs of sets that carry no labels (noise:, interp:). */
int cli_spec_unlabelled(const char *spec);
/* The name of class k ("3" when unknown). */
const char *cli_class_name(const cli_ctx *cx, int k, char *buf, size_t n);
/* Check that path can be written (its folder exists and is writable; not a
 * folder itself); opt names the option. 0, or 2 after printing. */
int cli_check_out_file(const char *cmd, const char *opt, const char *path);
/* Make a folder if it is missing (one level). */
jem_status cli_make_dir(const char *path);

/* Validate-only mode (the fuzzing harness): cli_begin stops with 0 after
 * the checks, before loading anything, and nothing is written. */
void cli_set_check_only(int on);
int cli_check_only(void);

/* ---- progress: one line on stderr, "[#####.....] what 12/40 0:03 eta 0:09" */

typedef struct {
    int on; /* drawn (cx->tty) */
    char what[120];
    int64_t total;
    double t0, last;
} cli_bar;

void cli_bar_start(cli_bar *b, const cli_ctx *cx, const char *what, int64_t total);
void cli_bar_set(cli_bar *b, int64_t done);
/* Clear the line (the bar is redrawn by the next start). */
void cli_bar_end(cli_bar *b);
/* Callbacks for the library's progress hooks (ud: a cli_bar). */
void cli_bar_cb64(void *ud, int64_t done, int64_t total);
/* The bar's look, for the trainer's line: "[####......] " for frac in [0, 1]
 * (empty when frac < 0). */
void cli_bar_text(char *buf, size_t n, double frac);
/* "m:ss" or "h:mm:ss" ("?" when s < 0). */
void cli_fmt_time(double s, char *buf, size_t n);

/* The named sets' folders (fmnist, mnist): $JEM_FMNIST_DIR or Debian's
 * /usr/share/datasets/fashion-mnist; $JEM_MNIST_DIR, else
 * ../shared/data/mnist from the current folder or beside the project root
 * (found from the executable's path), else mnist/ in the share folder. */
void cli_data_dirs(void);
/* The folders that hold the shipped models (models/ inside each), in the
 * order they are searched: PREFIX/share/jem beside the executable
 * (PREFIX/bin/jem), the checkout the executable was built in, the folder
 * compiled in from the build's PREFIX (cli_datadir_built_in); those that
 * exist. NULL past the last. */
const char *cli_share_dir(int i);
const char *cli_datadir_built_in(void);
/* path when it names a file from the current folder (or is absolute, or
 * starts with ./ or ../); else the first of SHARE/path, and for a bare
 * name SHARE/models/path, that exists (written into buf); else path. */
const char *cli_find_file(const char *path, char *buf, size_t n);

int cmd_train(int argc, char **argv);
int cmd_eval(int argc, char **argv);
int cmd_info(int argc, char **argv);
int cmd_sample(int argc, char **argv);
int cmd_logz(int argc, char **argv);
int cmd_export(int argc, char **argv);
int cmd_bench(int argc, char **argv);
int cmd_ood(int argc, char **argv);
int cmd_score(int argc, char **argv);
int cmd_attack(int argc, char **argv);
int cmd_report(int argc, char **argv);
int cmd_fit_ood(int argc, char **argv);
int cmd_shift(int argc, char **argv);

#endif

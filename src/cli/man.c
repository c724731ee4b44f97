/* man.c: the manual page jem.1 (`jem --man`, run by the build). The
 * commands and their options come from the same tables as --help (main.c's
 * command list, each command's option table through cli_help); this file
 * holds the page's frame: name, synopsis, data set names, environment,
 * files, exit status. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

void cli_roff(FILE *f, const char *s, int line_start)
{
    char prev = line_start ? '\n' : ' ';
    for (; s && *s; prev = *s++) {
        const char c = *s;
        if (prev == '\n' && (c == '.' || c == '\'')) fputs("\\&", f);
        if (c == '\\') {
            fputs("\\e", f);
        } else if (c == '-' && (prev == '\n' || strchr(" \t([/,|'-", prev))) {
            /* an option or a negative number: a minus sign to type, not a hyphen */
            fputs("\\-", f);
        } else {
            fputc(c, f);
            /* a list may break after its commas ("mnist:test,noise:uniform:2000,...") */
            if (c == ',' && s[1] && s[1] != ' ') fputs("\\:", f);
        }
    }
}

/* lines of text, one output line each; those that start with a dot are
 * requests (".PP") */
static void lines(const char *const *l)
{
    for (; *l; l++) {
        if (**l == '.') fputs(*l, stdout);
        else cli_roff(stdout, *l, 1);
        fputc('\n', stdout);
    }
}

static void raw(const char *s) { fputs(s, stdout); }

void cli_man_head(void)
{
    printf(".TH JEM 1 \"\" \"jem %s\" \"User Commands\"\n", JEM_VERSION);
    /* ragged right and no hyphenation: option values and file names stay whole */
    raw(".ad l\n.nh\n");
    raw(".SH NAME\njem \\- train and evaluate Joint Energy-based Models\n");
    raw(".SH SYNOPSIS\n.B jem\n.I command\n[\\fIoptions\\fR]\n.br\n.B jem\n.I command\n\\fB\\-\\-help\\fR\n"
        ".br\n.B jem \\-\\-help\n.br\n.B jem \\-\\-version\n");
    raw(".SH DESCRIPTION\n");
    static const char *const desc[] = {
        "jem trains a softmax convolutional classifier whose logits f(x) double as an energy model,",
        "E(x, y) = -f(x)[y] and E(x) = -logsumexp_y f(x)[y] (Grathwohl et al. 2020),",
        "either with cross-entropy alone or as the hybrid JEM with SGLD chains from a replay buffer,",
        "and evaluates such models: accuracy and calibration, out-of-distribution detection,",
        "robustness to adversarial attacks, samples.",
        ".PP",
        "Every option's value, data set name and output path is checked before any data or model is",
        "loaded: a bad one stops the command with a message naming the option and what it accepts.",
        "An existing result is not replaced unless an option says so; files are written whole",
        "(to a temporary file that is then renamed). Long steps draw a progress bar on a terminal.",
        NULL};
    lines(desc);
    raw(".SH COMMANDS\n");
}

void cli_man_summary(const char *name, const char *what)
{
    printf(".TP\n.B %s\n", name);
    cli_roff(stdout, what, 1);
    fputc('\n', stdout);
}

void cli_man_options_head(void)
{
    raw(".SH OPTIONS\n");
    static const char *const intro[] = {
        "Each command's options, as its --help lists them. A value follows its option as the next",
        "argument or after =, as in --lr 1e-3 or --lr=1e-3.", NULL};
    lines(intro);
}

void cli_man_tail(void)
{
    raw(".SH DATA SETS\n");
    static const char *const data[] = {"Data sets are named by one string, the same in every option that takes a SPEC.",
                                       "Pixels are scaled to [-1, 1].", NULL};
    lines(data);
    static const char *const specs[][2] = {
        {"fmnist:train, fmnist:test",
         "Fashion-MNIST, from the folder in $JEM_FMNIST_DIR, else /usr/share/datasets/fashion-mnist "
         "(Debian's dataset-fashion-mnist)."},
        {"mnist:test, mnist:train", "MNIST, from the folder in $JEM_MNIST_DIR (see ENVIRONMENT)."},
        {"idx:PREFIX, idx:IMAGES,LABELS",
         "IDX files, plain or gzip: PREFIX-images-idx3-ubyte and PREFIX-labels-idx1-ubyte, or two named files."},
        {"cifar10:DIR[:train|:test], cifar100:DIR[:train|:test]", "CIFAR binary batches."},
        {"png:ROOT", "ROOT/CLASS/IMAGE.png, any PNG colour type and depth; classes are numbered in the byte order of "
                     "the folder names."},
        {"noise:uniform|gaussian|constant[:N]", "synthetic out-of-distribution sets in the model's shape."},
        {"interp:SPEC[:N]", "midpoints of pairs of images of SPEC."},
    };
    for (size_t i = 0; i < sizeof specs / sizeof *specs; i++) {
        raw(".TP\n.B ");
        cli_roff(stdout, specs[i][0], 0);
        fputc('\n', stdout);
        cli_roff(stdout, specs[i][1], 1);
        fputc('\n', stdout);
    }

    raw(".SH ENVIRONMENT\n");
    static const char *const env[][2] = {
        {"JEM_FMNIST_DIR", "the folder of Fashion-MNIST's IDX files (fmnist:)."},
        {"JEM_MNIST_DIR", "the folder of MNIST's IDX files (mnist:); without it, ../shared/data/mnist from the current "
                          "folder or beside the checkout the tool was built in, else mnist/ in the folders of FILES."},
        {"JEM_KERNELS", "convolution kernels: auto (the default), direct or gemm."},
        {"JEM_WINOGRAD_TILE", "Winograd tile: auto (the default), 2 or 4."},
        {"JEM_FUSE", "1 (the default): the two 3x3 convolutions of a block run fused; 0: layer by layer."},
    };
    for (size_t i = 0; i < sizeof env / sizeof *env; i++) {
        printf(".TP\n.B %s\n", env[i][0]);
        cli_roff(stdout, env[i][1], 1);
        fputc('\n', stdout);
    }
    static const char *const env_bad[] = {
        ".PP", "A bad value of JEM_KERNELS, JEM_WINOGRAD_TILE or JEM_FUSE stops every command before",
        "anything is loaded.", NULL};
    lines(env_bad);

    raw(".SH FILES\n");
    static const char *const files[] = {
        "A --model that does not name a file from the current folder is looked for in the folders",
        "below, as given (models/wrn-fmnist.model, the default model description of train and bench)",
        "and, for a bare file name, in their models/ folder (jem eval --model jem-fmnist.safetensors):", NULL};
    lines(files);
    raw(".TP\n.I PREFIX/share/jem\nbeside the executable \\fIPREFIX/bin/jem\\fR (an installed tool).\n");
    raw(".TP\n.I ROOT\nthe checkout whose \\fIROOT/build/jem\\fR is running.\n");
    raw(".TP\n.I ");
    cli_roff(stdout, cli_datadir_built_in(), 0);
    raw("\nthe folder this build installs into.\n");
    static const char *const shipped[] = {
        ".PP", "The models/ folder holds the model descriptions (wrn-fmnist.model, wrn-cifar.model) and the",
        "shipped checkpoints (jem-fmnist.safetensors, softmax-fmnist.safetensors).", NULL};
    lines(shipped);

    raw(".SH EXIT STATUS\n");
    static const char *const status[][2] = {
        {"0", "success."},
        {"1", "a failure found while running: a file that does not load, labels outside the model's classes, "
              "training that diverged beyond its retries."},
        {"2", "a usage error: an unknown option, a value out of range, a missing file; nothing was loaded or "
              "written."},
        {"130", "stopped by SIGINT or SIGTERM (train writes a checkpoint first)."},
    };
    for (size_t i = 0; i < sizeof status / sizeof *status; i++) {
        printf(".TP\n.B %s\n", status[i][0]);
        cli_roff(stdout, status[i][1], 1);
        fputc('\n', stdout);
    }
    raw(".SH EXAMPLES\n");
    static const char *const ex[] = {"jem train --mode softmax --minutes 10 --out runs/softmax.safetensors",
                                     "jem eval --model jem-fmnist.safetensors --data fmnist:test",
                                     "jem ood --model jem-fmnist.safetensors --out mnist:test,noise:uniform:2000",
                                     NULL};
    for (const char *const *e = ex; *e; e++) {
        raw(".PP\n.nf\n");
        cli_roff(stdout, *e, 1);
        raw("\n.fi\n");
    }
    raw(".SH SEE ALSO\n");
    static const char *const see[] = {
        "The C library behind the tool: the headers jem.h and jem/*.h (pkg-config --cflags --libs jem).", NULL};
    lines(see);
}

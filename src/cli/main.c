/* jem: command-line entry point. */
#include "cli/cli.h"

#include <stdio.h>
#include <string.h>

typedef struct {
    const char *name;
    int (*fn)(int, char **);
    const char *what;
    int single; /* one process only: refuses to run on several MPI ranks */
} command;

static const command commands[] = {
    {"train", cmd_train, "train a classifier (softmax) or a JEM hybrid model", 0},
    {"eval", cmd_eval, "accuracy and NLL of a checkpoint on a data set", 0},
    {"ood", cmd_ood, "out-of-distribution detection: AUROC/AUPR/FPR95 of every score, plots", 0},
    {"fit-ood", cmd_fit_ood, "fit an OOD detector (Mahalanobis or kNN on features) and store it beside the model", 1},
    {"score", cmd_score,
     "per-input scores (log p(x), max softmax, max logit, gradient norm, a fitted detector), "
     "predicted class, OOD decision",
     0},
    {"shift", cmd_shift, "accuracy, ECE and NLL under corruptions (covariate shift), by severity", 1},
    {"attack", cmd_attack, "robust accuracy under FGSM/PGD, undefended and with SGLD purification", 0},
    {"report", cmd_report, "the whole evaluation as one HTML page and JSON", 1},
    {"sample", cmd_sample,
     "draw samples from a model or a composition with SGLD, MALA or HMC (PNG grid, chain "
     "diagnostics)",
     1},
    {"logz", cmd_logz, "log Z by annealed importance sampling; normalised log p(x) and bits/dim of a data set", 1},
    {"info", cmd_info, "what a checkpoint holds", 0},
    {"export", cmd_export, "copy a checkpoint's model weights without the training state", 1},
    {"bench", cmd_bench, "images/s of forward, training step, SGLD step and JEM iteration", 1},
};

static void usage(FILE *f)
{
    fprintf(f, "usage: jem <command> [options]\n\ncommands:\n");
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        fprintf(f, "  %-8s %s\n", commands[i].name, commands[i].what);
    fprintf(f, "\n'jem <command> --help' lists a command's options. 'jem --version' prints the version.\n");
}

/* the manual page (jem.1, made by the build): every command with its
 * options, from the tables --help prints */
static int man_page(void)
{
    const size_t n = sizeof commands / sizeof *commands;
    cli_man_head();
    for (size_t i = 0; i < n; i++) cli_man_summary(commands[i].name, commands[i].what);
    cli_man_options_head();
    for (size_t i = 0; i < n; i++) {
        char prog[] = "jem", help[] = "--help", name[32];
        snprintf(name, sizeof name, "%s", commands[i].name);
        char *args[] = {prog, name, help, NULL};
        cli_set_man(commands[i].what);
        int rc = commands[i].fn(3, args);
        cli_set_man(NULL);
        if (rc != 0) return rc;
    }
    cli_man_tail();
    return fflush(stdout) == 0 && !ferror(stdout) ? 0 : 1;
}

int main(int argc, char **argv)
{
    if (argc < 2) {
        usage(stderr);
        return 2;
    }
    if (!strcmp(argv[1], "--help") || !strcmp(argv[1], "-h") || !strcmp(argv[1], "help")) {
        usage(stdout);
        return 0;
    }
    if (!strcmp(argv[1], "--man")) return man_page();
    if (!strcmp(argv[1], "--version")) {
        printf("jem %s%s\n", JEM_VERSION, jem_dist_enabled() ? " (MPI)" : "");
        return 0;
    }
    for (size_t i = 0; i < sizeof commands / sizeof *commands; i++)
        if (!strcmp(argv[1], commands[i].name)) {
            jem_dist_init(&argc, &argv);
            if (jem_dist_size() > 1 && commands[i].single) {
                if (jem_dist_rank() == 0)
                    fprintf(stderr,
                            "jem %s: error: runs as one process (under mpirun: -np 1); train, eval, ood, "
                            "score and attack split their work across ranks\n",
                            argv[1]);
                jem_dist_finalize();
                return 2;
            }
            /* several ranks compute alike; rank 0 alone reports on stdout */
            if (jem_dist_rank() != 0 && !freopen("/dev/null", "w", stdout)) return 1;
            cli_data_dirs();
            int rc = commands[i].fn(argc, argv);
            /* a failing rank ends the whole job: the others would wait for it */
            if (rc != 0 && jem_dist_size() > 1) jem_dist_abort(rc);
            jem_dist_finalize();
            return rc;
        }
    fprintf(stderr, "jem: unknown command '%s'\n", argv[1]);
    usage(stderr);
    return 2;
}

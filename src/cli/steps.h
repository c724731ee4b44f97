/* steps.h: the cores of jem eval, ood, attack and sample as functions of
 * checked options: each fills a result struct from the model the preamble
 * loaded (cli_ctx), prints nothing on stdout (progress bars on stderr as
 * cx->tty says) and returns a status with jem_last_error() set. The
 * commands print the results (text, or the JSON the _json functions
 * write); jem report runs the same functions for its sections.
 *
 * Ownership: a result is released by its _free function (which accepts a
 * zeroed or half-filled struct). The args structs are the commands' option
 * values; their _defaults functions set what the commands' tables show. */
#ifndef JEM_CLI_STEPS_H
#define JEM_CLI_STEPS_H

#include "cli/cli.h"

/* ------------------------------------------------------------ jem eval */

typedef struct {
    const char *data; /* labelled set */
    const char *val;  /* temperature-scaling set; NULL: the trainer's held-out 5000 of fmnist:train for fmnist: data */
    const char *dump; /* file for the raw logits (nullable) */
    const char *rel;  /* the command's reliability PNG (nullable; not used by cli_eval_run) */
    int limit;        /* the first N images (0: all) */
    int bins;         /* equal-width bins of the ECE */
    int refine;       /* test-time SGLD steps on the inputs (0: none), with sc's step size and noise */
    int noval;        /* no temperature scaling */
    jem_sgld_cfg sc;
} cli_eval_args;

typedef struct {
    int n;              /* images evaluated */
    jem_calib c, c20;   /* as trained: with the args' bins, and with 20 */
    jem_calib_bin *tb;  /* (bins) c's equal-width table */
    int have_t;         /* temperature scaling ran: */
    const char *val;    /*   fitted on this set (a spec) */
    char val_buf[1100]; /*   (its default spec) */
    int val_n;          /*   of so many images */
    jem_temp_fit tf;
    jem_calib ct; /*   the calibration after it */
} cli_eval_res;

void cli_eval_defaults(cli_eval_args *e);
jem_status cli_eval_run(const cli_ctx *cx, const cli_eval_args *e, cli_eval_res *r);
/* The reliability diagram. The plots of steps.h take options po (nullable:
 * the command's; a NULL title in them: the command's title). */
jem_status cli_eval_plot(const cli_ctx *cx, const cli_eval_args *e, const cli_eval_res *r, const jem_plot_opts *po,
                         jem_image *im);
/* The command's --json object. */
void cli_eval_json(jem_jw *w, const cli_ctx *cx, const cli_eval_args *e, const cli_eval_res *r);
void cli_eval_free(cli_eval_res *r);

/* ---------------------------------------------- fitted OOD detectors */

/* The score columns of jem ood and jem score: jem_scores' JEM_NSCORES,
 * then the fitted detector's (named by its kind: mahalanobis or knn), then
 * ODIN's. Higher = more in-distribution in every column. */
enum { CLI_SCORE_DET = JEM_NSCORES, CLI_SCORE_ODIN, CLI_NSCORES };

/* The default detector of jem ood and jem score (from the measured table in
 * README: >= 0.99 AUROC against MNIST and every noise set on the shipped
 * JEM): a fitted class-conditional Gaussian on the pooled features. */
#define CLI_DET_DEFAULT "mahalanobis"
/* Its fallback when no fitted detector is found. */
#define CLI_DET_FALLBACK "logpx"
/* The names of --detector, as messages list them. */
#define CLI_DET_LIST "logpx, max_softmax, max_logit, neg_grad_norm, energy_t, mahalanobis, knn or odin"

/* ODIN's defaults (Liang et al. 2018): temperature, and the perturbation on
 * the [0, 1] pixel scale (twice that in the model's units). */
#define CLI_ODIN_T   1000.0
#define CLI_ODIN_EPS 0.0014

/* The detector file beside a model: M.ood.safetensors for M.safetensors
 * (M.ood.safetensors appended to any other name). */
void cli_det_beside(const char *model, char *buf, size_t n);
/* The fitted detector a command uses: the file given (opt names the option)
 * or, when none is given, the one beside the model if it exists (else
 * path[0] = 0 and *kind = -1). A given file, or one found, must be a
 * detector file (its header and metadata are read; nothing else). 0, or a
 * usage error printed as cmd and 2. */
int cli_det_find(const char *cmd, const char *opt, const char *given, const char *model, char *path, size_t n,
                 int *kind);
/* The column of a --detector name (CLI_DET_LIST) given the fitted
 * detector's kind (-1: none found, path: where it was looked for): 0 and
 * *col, or a usage error printed as cmd and 2. NULL name: the default
 * (the fitted detector when there is one, else CLI_DET_FALLBACK). */
int cli_det_column(const char *cmd, const char *name, int kind, const char *path, int *col);
/* The name of a column ("mahalanobis" or "knn" for CLI_SCORE_DET by kind). */
const char *cli_score_col_name(int col, int kind);

/* The in-distribution images a decision threshold is fitted on: spec, with
 * its first `heldout` images of the trainer's split held out (seed 1, as
 * jem train --val N and jem fit-ood hold them out) when heldout > 0. */
jem_status cli_open_heldout(const cli_ctx *cx, const char *opt, const char *spec, int heldout, jem_dataset *ds);
/* The images jem fit-ood and the thresholds hold out of fmnist:train by
 * default (the trainer's --val 5000 split). */
#define CLI_FMNIST_HELDOUT 5000

/* ------------------------------------------------------------- jem ood */

#define CLI_OOD_MAX_SETS 16

typedef struct {
    const char *in;     /* in-distribution set */
    const char *outs;   /* OOD sets, comma-separated */
    const char *in_opt; /* the options that name them in messages ("in", "out") */
    const char *out_opt;
    const char *hist, *roc; /* the command's PNG files (nullable; not used by cli_ood_run) */
    const char *hist_score; /* the plots' score (a column name; NULL: the detector's) */
    int hs;                 /* its column (set by cli_ood_check) */
    int limit;              /* at most N images of each set (0: all) */
    int nograd;             /* skip the gradient-norm score */
    double T;               /* temperature of the energy_t score */
    /* detectors */
    const char *detector;    /* --detector (NULL: the default) */
    const char *det_given;   /* --ood FILE (NULL: beside the model when there) */
    const char *det_opt;     /* the option that names it in messages ("ood") */
    int odin;                /* add ODIN to the table */
    double odin_T, odin_eps; /* ODIN's temperature; perturbation on the [0, 1] pixel scale */
    /* the decision */
    double tpr;         /* --threshold-tpr (0: no decision) */
    const char *val;    /* the set the threshold is fitted on (NULL: see cli_ood_check) */
    int val_heldout;    /* its held-out part (cli_open_heldout) */
    char val_buf[1100]; /* the default val's spec */
    /* set by cli_ood_check */
    char det_path[4096]; /* the fitted detector's file ("" when none) */
    int det_kind;        /* its kind (-1: none) */
    int col;             /* the detector's column */
} cli_ood_args;

typedef struct {
    int nsets;
    char *list;                                       /* a copy of outs; names point into it */
    const char *names[CLI_OOD_MAX_SETS];              /* the OOD sets' specs */
    int n_in, n_out[CLI_OOD_MAX_SETS];                /* images scored */
    double *sin, *sout[CLI_OOD_MAX_SETS];             /* (n, CLI_NSCORES) the scores */
    int have[CLI_NSCORES];                            /* the columns computed */
    jem_detector *det;                                /* the fitted detector (nullable) */
    jem_ood_metrics m[CLI_OOD_MAX_SETS][CLI_NSCORES]; /* set x column (those of have) */
    /* the decision (tpr > 0): "in-distribution iff score >= thr" on column col */
    int have_thr;
    int val_n;                    /* held-out in-distribution images it was fitted on */
    double thr, kept;             /* the threshold, the fraction of them kept */
    double tpr_in;                /* the fraction of the in-distribution (test) set kept */
    double fpr[CLI_OOD_MAX_SETS]; /* the fraction of each OOD set kept (false positives) */
} cli_ood_res;

void cli_ood_defaults(cli_ood_args *o);
/* The checks the option table cannot make (the detector, its file, the plot
 * score, the number of sets, the threshold's set) for the model cx->model
 * (not loaded yet); prints a usage error as cmd and returns 2, or returns 0. */
int cli_ood_check(const char *cmd, const cli_ctx *cx, cli_ood_args *o);
jem_status cli_ood_run(const cli_ctx *cx, const cli_ood_args *o, cli_ood_res *r);
/* Histograms of the score hs, in-distribution against each OOD set; ROC
 * curves of that score. */
jem_status cli_ood_hist(const cli_ood_args *o, const cli_ood_res *r, const jem_plot_opts *po, jem_image *im);
jem_status cli_ood_roc(const cli_ood_args *o, const cli_ood_res *r, const jem_plot_opts *po, jem_image *im);
void cli_ood_json(jem_jw *w, const cli_ctx *cx, const cli_ood_args *o, const cli_ood_res *r);
void cli_ood_free(cli_ood_res *r);

/* ----------------------------------------------------------- jem shift */

#define CLI_SHIFT_MAX 16 /* corruptions */

typedef struct {
    const char *data;        /* labelled set */
    const char *corruptions; /* comma-separated names, or "all" */
    int limit;               /* the first N images (0: all) */
    int bins;                /* ECE bins */
    uint64_t seed;           /* the corruptions' seed */
    const char *plot;        /* the command's PNG (nullable; not used by cli_shift_run) */
    const char *plot_metric; /* accuracy, ece or nll */
    const char *compare;     /* jem shift: other checkpoints, comma-separated (nullable; not used by cli_shift_run) */
    /* set by cli_shift_check */
    int nk, kinds[CLI_SHIFT_MAX];
} cli_shift_args;

/* a metric per severity: [0] clean, [1..5] the severities */
typedef struct {
    double acc[JEM_CORRUPT_SEVERITIES + 1], ece[JEM_CORRUPT_SEVERITIES + 1], nll[JEM_CORRUPT_SEVERITIES + 1];
} cli_shift_row;

typedef struct {
    int n;                            /* images per set */
    int nk;                           /* corruptions */
    cli_shift_row row[CLI_SHIFT_MAX]; /* per corruption (clean column the same in each) */
    cli_shift_row mean;               /* averaged over the corruptions */
} cli_shift_res;

void cli_shift_defaults(cli_shift_args *a);
/* The corruption list: 0, or a usage error printed as cmd (naming opt) and 2. */
int cli_shift_check(const char *cmd, const char *opt, cli_shift_args *a);
jem_status cli_shift_run(const cli_ctx *cx, const cli_shift_args *a, cli_shift_res *r);
/* A metric (0 accuracy, 1 ECE, 2 NLL) against severity: a line per
 * corruption and their mean. */
jem_status cli_shift_plot(const cli_ctx *cx, const cli_shift_args *a, const cli_shift_res *r, int metric,
                          const jem_plot_opts *po, jem_image *im);
void cli_shift_json(jem_jw *w, const cli_ctx *cx, const cli_shift_args *a, const cli_shift_res *r);

/* ---------------------------------------------------------- jem attack */

#define CLI_MAX_EPS 32
#define CLI_MAX_ATK 3 /* attacks in a run: one, or the suite's */

/* The attacks (--attack, and the suite's members). */
enum { CLI_ATK_PGD = 0, CLI_ATK_FGSM, CLI_ATK_APGD_CE, CLI_ATK_APGD_DLR, CLI_ATK_SQUARE, CLI_NATK };
/* "pgd", "fgsm", "apgd-ce", "apgd-dlr", "square" */
const char *cli_attack_name(int k);

typedef struct {
    const char *data, *norm_s, *eps_s, *defence;
    const char *attack_s, *suite; /* --attack (a cli_attack_name), --suite (NULL or "auto") */
    const char *curve, *save;     /* the command's PNG and folder of adversarial grids (nullable) */
    int n, dn, steps, restarts, fgsm, dsteps, dchains, eot, no_random;
    int zero_grad;              /* a testing hook: the gradients reported as 0 (a masked model) */
    int queries, targets;       /* Square's budget per image; targeted DLR's target classes */
    int no_checks, check_n;     /* masking checks off; images their extra runs use (the first N) */
    double check_tol;           /* percentage points a check allows */
    int norm, ne;               /* set by cli_attack_eps */
    int natk, atk[CLI_MAX_ATK]; /* set by cli_attack_eps: the attacks in order (CLI_ATK_*) */
    double step_frac, eps[CLI_MAX_EPS];
    uint64_t seed;
} cli_attack_args;

/* One side's results (undefended, or through the defence). Robust accuracy
 * per epsilon is made monotone (an image broken at a smaller epsilon counts
 * as broken at every larger one) except in raw, where each epsilon stands
 * alone (the monotonicity check's input). */
typedef struct {
    double after[CLI_MAX_ATK][CLI_MAX_EPS]; /* after attacks 0..k, each on the images the earlier ones left */
    double raw[CLI_MAX_EPS];                /* after all of them, each epsilon on its own */
    double raw_grad[CLI_MAX_EPS];           /* the same after the gradient attacks only */
    double queries[CLI_MAX_EPS];            /* Square: mean queries per image it attacked (0: not run) */
    jem_check chk[JEM_NCHECKS];             /* the masking checks (ran = 0: not run) */
    int check_n;                            /* images behind the unbounded and stronger checks */
    double unb_eps;                         /* the unbounded check's radius ([0, 1] scale) */
} cli_attack_side;

typedef struct {
    int n, dn, ne; /* images attacked, through the defence (the first dn), epsilons */
    double eps[CLI_MAX_EPS];
    double accu[CLI_MAX_EPS];    /* undefended robust accuracy on the n images (after every attack) */
    double accu_dn[CLI_MAX_EPS]; /* the same on the first dn (the defence's images) */
    double acct[CLI_MAX_EPS];    /* the defence under transfer from the undefended model */
    double accd[CLI_MAX_EPS];    /* the defence under the attacks through it (BPDA + EOT; Square's queries) */
    double accdef[CLI_MAX_EPS];  /* the defence, per-image worst of both */
    cli_attack_side u, d;        /* per attack and the checks: undefended, through the defence */
    int nwarn;                   /* failed checks, as sentences naming the figure */
    char warn[2 * JEM_NCHECKS][400];
} cli_attack_res;

void cli_attack_defaults(cli_attack_args *a);
/* norm from norm_s, the attacks from attack_s, fgsm and suite, and the
 * epsilons from eps_s (NULL: the norm's default); 0, or a usage error
 * printed as cmd and 2. */
int cli_attack_eps(const char *cmd, cli_attack_args *a);
jem_status cli_attack_run(const cli_ctx *cx, const cli_attack_args *a, cli_attack_res *r);
/* "PGD", "APGD-CE, APGD-DLR, Square (AutoAttack order)", ... */
const char *cli_attack_title(const cli_attack_args *a, char *buf, size_t n);
/* Robust accuracy against epsilon: the undefended curve and, with the
 * defence, its worst case (the command's plot). */
jem_status cli_attack_curve(const cli_attack_args *a, const cli_attack_res *r, const jem_plot_opts *po, jem_image *im);
/* The command's --json object; same_images: the defence's object also holds
 * the undefended model's accuracy on its images ("undefended", jem report). */
void cli_attack_json(jem_jw *w, const cli_ctx *cx, const cli_attack_args *a, const cli_attack_res *r, int same_images);

/* ---------------------------------------------------------- jem sample */

typedef struct {
    const char *out, *from, *data, *raw, *inpaint;
    const char *sampler;         /* sgld, mala or hmc */
    const char *energy, *models; /* a composed energy and its models (NULL: --model's) */
    const char *trace;           /* PNG of the energy traces, or NULL */
    int n, conditional, cls, mala, noclamp;
    int warmup; /* steps before those the diagnostics use (-1: 50 for HMC, else 0) */
    float denoise;
    double mask_p;
    uint64_t seed;
    jem_sgld_cfg sc;
    jem_hmc_cfg hc;
    jem_compose comp;  /* energy, parsed by the command's checks */
    jem_model_list ml; /* models, parsed by the command's checks */
} cli_sample_args;

typedef struct {
    int total;             /* chains */
    float *x;              /* (total, D) the images the chains end at */
    int32_t *y;            /* (total) their classes (-1: unconditional) */
    float *orig, *corr;    /* (total, D) --inpaint, --denoise: the originals, the corrupted starts */
    jem_sgld_cfg sc;       /* what ran (SGLD, MALA; steps counts the warm-up too) */
    jem_hmc_cfg hc;        /* what ran (HMC) */
    int hmc, warmup, kept; /* HMC chains; steps before and after the warm-up */
    double grad_norm, accept, logp_start, logp_end; /* means over the chains */
    double step_size, dh_mean, dh_abs, dh_max;      /* HMC: mean adapted step, energy errors */
    long divergent;                                 /* HMC: divergent transitions */
    double seconds;                                 /* in the chains */
    double *trace;                                  /* (warmup + kept, trace_n) log p~ of the first chains */
    int trace_n;
    int have_diag; /* diag holds R-hat and ESS over the kept steps */
    jem_chain_diag diag;
} cli_sample_res;

void cli_sample_defaults(cli_sample_args *a);
/* The checks that need the model (the class, the replay buffer): 0, or a
 * usage error printed as cmd, naming from_opt for a->from, and 2. */
int cli_sample_ready(const char *cmd, const char *from_opt, const cli_ctx *cx, const cli_sample_args *a);
jem_status cli_sample_run(const cli_ctx *cx, const cli_sample_args *a, cli_sample_res *r);
/* The chains as a grid, rows labelled with class names for conditional
 * and one-class sampling. */
jem_status cli_sample_grid(const cli_ctx *cx, const cli_sample_args *a, const cli_sample_res *r, jem_image *im);
void cli_sample_free(cli_sample_res *r);

#endif

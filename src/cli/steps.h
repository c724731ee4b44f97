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
    int n;             /* images evaluated */
    jem_calib c, c20;  /* as trained: with the args' bins, and with 20 */
    jem_calib_bin *tb; /* (bins) c's equal-width table */
    int have_t;        /* temperature scaling ran: */
    const char *val;   /*   fitted on this set (a spec) */
    int val_n;         /*   of so many images */
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

/* ------------------------------------------------------------- jem ood */

#define CLI_OOD_MAX_SETS 16

typedef struct {
    const char *in;     /* in-distribution set */
    const char *outs;   /* OOD sets, comma-separated */
    const char *in_opt; /* the options that name them in messages ("in", "out") */
    const char *out_opt;
    const char *hist, *roc; /* the command's PNG files (nullable; not used by cli_ood_run) */
    const char *hist_score; /* the plots' score (a jem_score_name) */
    int hs;                 /* its index (set by cli_ood_check) */
    int limit;              /* at most N images of each set (0: all) */
    int nograd;             /* skip the gradient-norm score */
    double T;               /* temperature of the energy_t score */
} cli_ood_args;

typedef struct {
    int nsets;
    char *list;                                       /* a copy of outs; names point into it */
    const char *names[CLI_OOD_MAX_SETS];              /* the OOD sets' specs */
    int n_in, n_out[CLI_OOD_MAX_SETS];                /* images scored */
    double *sin, *sout[CLI_OOD_MAX_SETS];             /* (n, JEM_NSCORES) the scores */
    jem_ood_metrics m[CLI_OOD_MAX_SETS][JEM_NSCORES]; /* set x score (the gradient score's unset with nograd) */
} cli_ood_res;

void cli_ood_defaults(cli_ood_args *o);
/* The checks the option table cannot make (the plot score, the number of
 * sets); prints a usage error as cmd and returns 2, or returns 0. */
int cli_ood_check(const char *cmd, cli_ood_args *o);
jem_status cli_ood_run(const cli_ctx *cx, const cli_ood_args *o, cli_ood_res *r);
/* Histograms of the score hs, in-distribution against each OOD set; ROC
 * curves of that score. */
jem_status cli_ood_hist(const cli_ood_args *o, const cli_ood_res *r, const jem_plot_opts *po, jem_image *im);
jem_status cli_ood_roc(const cli_ood_args *o, const cli_ood_res *r, const jem_plot_opts *po, jem_image *im);
void cli_ood_json(jem_jw *w, const cli_ctx *cx, const cli_ood_args *o, const cli_ood_res *r);
void cli_ood_free(cli_ood_res *r);

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
    int total;          /* chains */
    float *x;           /* (total, D) the images the chains end at */
    int32_t *y;         /* (total) their classes (-1: unconditional) */
    float *orig, *corr; /* (total, D) --inpaint, --denoise: the originals, the corrupted starts */
    jem_sgld_cfg sc;    /* what ran (SGLD, MALA; steps counts the warm-up too) */
    jem_hmc_cfg hc;     /* what ran (HMC) */
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

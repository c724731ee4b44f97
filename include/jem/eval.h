/*
 * jem/eval.h: the evaluation library of jem (public; jem.h includes it):
 * out-of-distribution metrics, calibration, temperature scaling, plots and
 * drawing, per-input OOD scores of a network, and adversarial attacks.
 *
 * The metrics, calibration and plots are pure functions on arrays; the
 * scores and attacks run a network (jem_net). Every sum is accumulated in
 * double. Like the rest of the library these functions never print and
 * never exit; failures return a jem_status with a detail message
 * (jem_last_error()).
 *
 * Dimension letters: N samples, K classes, B bins, D values per input
 * (C * H * W).
 *
 * Units: inputs x are the model's pixels, scaled to [-1, 1] (see
 * jem_dataset_open); attack radii and step sizes are in those units too, so
 * an epsilon e on the [0, 1] pixel scale is 2e here. Scores and logits are
 * in nats; probabilities, accuracies, ECE, AUROC/AUPR and FPR are fractions
 * in [0, 1].
 *
 * Ownership: arrays passed in are borrowed for the call and never kept
 * (except where a struct says it keeps a pointer: jem_classifier and
 * jem_purifier keep the network, which must outlive them). Arrays a function
 * allocates belong to the caller and are released by the matching _free
 * (jem_roc_free, jem_image_free), which accepts a zeroed struct.
 *
 * Definitions (they follow scikit-learn 1.2 wherever it has the metric; the
 * tests compare against values scikit-learn computed, see
 * scripts/make_metric_fixtures.py):
 *
 *   OOD scores: higher = more in-distribution. In-distribution is the
 *   positive class for the ROC curve, AUROC and AUPR-in; AUPR-out takes the
 *   OOD set as positive with negated scores.
 *
 *   ROC curve: one point per distinct score (tied scores collapse into one
 *   threshold), preceded by (0, 0); thresholds[0] = +inf. AUROC is the
 *   trapezoid area under it, which counts each in/out tie as 1/2
 *   (= roc_auc_score).
 *
 *   AUPR: average precision without interpolation,
 *   sum over thresholds of (R_t - R_{t-1}) P_t (= average_precision_score).
 *
 *   FPR95: the FPR of the first ROC point (thresholds descending) whose TPR
 *   is >= 0.95, i.e. the fraction of OOD scores >= the highest threshold at
 *   which at least 95 % of the in-distribution scores are >= it. This is
 *   fpr[argmax(tpr >= 0.95)] of sklearn's roc_curve(drop_intermediate=False).
 *   (The default drop_intermediate=True removes collinear points and can
 *   then report a larger FPR when the 95 % point lies inside a straight run
 *   of tied in/out groups; jem does not depend on that artefact.)
 *
 *   NLL: mean over samples of -log(max(p[y], JEM_NLL_FLOOR)); the
 *   probabilities are used as given (rows are not renormalised).
 *
 *   Brier: the multiclass definition, mean over samples of
 *   sum_k (p_k - onehot(y)_k)^2 (range [0, 2]).
 *
 *   Confidence = max_k p_k, prediction = the first k reaching it (argmax).
 *   ECE: B equal-width bins (b/B, (b+1)/B], b = 0..B-1; confidence 0 goes to
 *   bin 0. ECE = sum_b n_b/N |acc_b - conf_b|, MCE = max over non-empty
 *   bins of |acc_b - conf_b|.
 *   Adaptive ECE (equal mass): samples sorted by confidence (ties keep
 *   sample order), split into B consecutive groups whose sizes differ by at
 *   most one, the larger ones first (numpy.array_split); the same weighted
 *   sum as ECE over the non-empty groups.
 */
#ifndef JEM_EVAL_H
#define JEM_EVAL_H

#include "jem.h"

/* Everything declared below is the library's interface: libjem.so is built
 * with -fvisibility=hidden and exports these declarations only. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* ============================================================ OOD metrics */

typedef struct {
    double auroc;    /* in = positive */
    double aupr_in;  /* average precision, in = positive */
    double aupr_out; /* average precision, OOD = positive, scores negated */
    double fpr95;    /* FPR at the first threshold with TPR >= 0.95 */
    double thr95;    /* that threshold (a score: in-distribution iff >= it) */
} jem_ood_metrics;

/* All four metrics in one O(n log n) pass. Scores may be +-inf (they sort
 * as usual); NaN is JEM_ERR_NONFINITE; an empty set is JEM_ERR_ARG. */
jem_status jem_ood_metrics_compute(const double *s_in /* (n_in) */, int n_in, const double *s_out /* (n_out) */,
                                   int n_out, jem_ood_metrics *out);

/* ROC curve points for plotting (in = positive). */
typedef struct {
    int n;       /* points, the first is (0, 0) */
    double *fpr; /* (n) non-decreasing, ends at 1 */
    double *tpr; /* (n) non-decreasing, ends at 1 */
    double *thr; /* (n) decreasing; thr[0] = +inf; score >= thr[i] -> "in" */
} jem_roc;

/* drop_intermediate != 0 removes points collinear with their neighbours,
 * exactly as sklearn's roc_curve(drop_intermediate=True) (the area is
 * unchanged). The arrays are one allocation owned by *out: jem_roc_free. */
jem_status jem_roc_curve(const double *s_in /* (n_in) */, int n_in, const double *s_out /* (n_out) */, int n_out,
                         int drop_intermediate, jem_roc *out);
void jem_roc_free(jem_roc *r);
/* Trapezoid area under a curve (= AUROC for a curve from jem_roc_curve). */
double jem_roc_area(const jem_roc *r);
/* FPR at the first point with TPR >= level (on a curve computed with
 * drop_intermediate = 0 this is the FPR95 definition above for level 0.95).
 * Returns 1 if no point reaches it. */
double jem_roc_fpr_at_tpr(const jem_roc *r, double level);

/* ============================================================ calibration */

/* Lower clamp of p[y] in the NLL: a sample whose true class got probability
 * 0 (float32 softmax underflows below about 1e-45) costs -log(1e-12) = 27.6
 * nats instead of infinity. */
#define JEM_NLL_FLOOR 1e-12

typedef struct {
    double lo, hi; /* confidence range: (lo, hi]; equal-mass bins: [lo, hi]
                       = smallest and largest confidence in the bin */
    int count;     /* samples in the bin */
    double conf;   /* mean confidence (0 if empty) */
    double acc;    /* accuracy (0 if empty) */
} jem_calib_bin;

typedef struct {
    int n;           /* samples */
    int n_bins;      /* B */
    double accuracy; /* fraction of argmax hits */
    double nll;      /* mean -log max(p[y], JEM_NLL_FLOOR) */
    double brier;    /* mean sum_k (p_k - onehot_k)^2 */
    double ece;      /* equal-width bins */
    double mce;      /* max |acc - conf| over non-empty equal-width bins */
    double ace;      /* adaptive (equal-mass) ECE */
} jem_calib;

/* Rows of a probability matrix may deviate from a distribution by this much
 * (float32 softmax rounding); beyond it jem_calibration refuses the input. */
#define JEM_PROB_ROW_TOL 1e-3

/* Calibration of a probability matrix. Labels must be in [0, K); the
 * probabilities must be finite (JEM_ERR_NONFINITE otherwise), each row
 * non-negative and summing to 1 within JEM_PROB_ROW_TOL (JEM_ERR_ARG
 * otherwise); they are used as given, not renormalised. bins (B, nullable)
 * receives the equal-width table, ada_bins (B, nullable) the equal-mass
 * table. */
jem_status jem_calibration(const float *probs /* (N, K) */, const int32_t *y /* (N) */, int N, int K, int n_bins,
                           jem_calib *out, jem_calib_bin *bins /* (B) */, jem_calib_bin *ada_bins /* (B) */);

/* The binning step alone, on per-sample confidences and hits (for scores
 * that do not come from a probability matrix). adaptive = 0: equal-width
 * bins (ece, mce); adaptive = 1: equal-mass bins (ece = adaptive ECE, mce
 * over those bins). bins (B) nullable; ece and mce nullable. */
jem_status jem_ece_bins(const double *conf /* (N) in [0, 1] */, const uint8_t *correct /* (N) 0 or 1 */, int N,
                        int n_bins, int adaptive, jem_calib_bin *bins /* (B) */, double *ece, double *mce);

/* ==================================================== temperature scaling */

#define JEM_TEMP_MIN 1e-2
#define JEM_TEMP_MAX 1e2

typedef struct {
    double T;          /* fitted temperature in [JEM_TEMP_MIN, JEM_TEMP_MAX] */
    double nll_before; /* mean NLL of softmax(logits) */
    double nll_after;  /* mean NLL of softmax(logits / T) */
    int iters;         /* Newton / bisection steps taken */
    int at_bound;      /* 1 if the optimum lies at or beyond a bound */
} jem_temp_fit;

/* Fit T > 0 minimising the mean NLL of softmax(logits / T). The NLL is
 * convex in beta = 1/T, so its derivative is found by Newton's method on beta
 * inside a bracket that shrinks each step (falling back to a geometric
 * bisection when a Newton step leaves it): the global minimum, to machine
 * precision. Labels in [0, K); non-finite logits are JEM_ERR_NONFINITE. */
jem_status jem_temp_scale_fit(const float *logits /* (N, K) */, const int32_t *y /* (N) */, int N, int K,
                              jem_temp_fit *out);
/* Mean NLL of softmax(logits / T), in double with log-sum-exp (no floor).
 * Labels must be in [0, K) (checked by the caller). */
double jem_nll_logits(const float *logits /* (N, K) */, const int32_t *y, int N, int K, double T);
/* probs = softmax(logits / T), row by row, computed in double. */
void jem_softmax_temp(const float *logits /* (N, K) */, int N, int K, double T, float *probs /* (N, K) */);

/* ================================================================== plots */

/* An 8-bit RGB image, rows top to bottom. */
typedef struct {
    int w, h;
    uint8_t *rgb; /* (h, w, 3) */
} jem_image;

jem_status jem_image_new(int w, int h, uint32_t bg /* 0xRRGGBB */, jem_image *out);
void jem_image_free(jem_image *im); /* frees rgb, zeroes the struct */
/* Write as PNG through jem_png_write_rgb (atomic). */
jem_status jem_image_write_png(const char *path, const jem_image *im);

/* Options shared by the plots; a zero-initialised struct gives the defaults. */
typedef struct {
    int width, height;           /* pixels; 0 = 800 x 600 */
    const char *title;           /* NULL = a default title per plot */
    const char *xlabel, *ylabel; /* NULL = a default per plot */
    double xmin, xmax;           /* axis range; xmin >= xmax = automatic */
    double ymin, ymax;           /* likewise */
    int bins;                    /* histograms: number of bins; 0 = 40 */
    int no_markers;              /* line charts: lines without point markers */
} jem_plot_opts;

/* A line series: points (x[i], y[i]); non-finite points break the line. */
typedef struct {
    const char *name; /* legend text; NULL = not in the legend */
    const double *x;  /* (n) */
    const double *y;  /* (n) */
    int n;
} jem_series;

/* A sample of scores for a histogram. */
typedef struct {
    const char *name; /* legend text */
    const double *v;  /* (n); non-finite values are left out */
    int n;
} jem_sample_set;

/* Each plot allocates out->rgb (free with jem_image_free); *out is
 * overwritten, not freed first. */

/* Reliability diagram from the equal-width table of jem_calibration: bars
 * of per-bin accuracy at the bin positions, the gap to the bin's mean
 * confidence overlaid, the diagonal, and a panel below with the sample count
 * per bin. The title gets "ECE x.xx %" appended. */
jem_status jem_plot_reliability(const jem_calib_bin *bins /* (B) */, int n_bins, double ece, const jem_plot_opts *o,
                                jem_image *out);
/* Overlaid histograms of several score sets on common bins, each
 * normalised to fractions of its own set (y axis "fraction"): filled
 * semi-transparent with an opaque outline, and a legend "name (n = ...)". */
jem_status jem_plot_histograms(const jem_sample_set *sets /* (n_sets) */, int n_sets, const jem_plot_opts *o,
                               jem_image *out);
/* ROC curves with the chance diagonal; the legend shows each name with the
 * curve's area ("name  AUC 0.953"). Axes are [0, 1] unless set. */
jem_status jem_plot_roc(const jem_roc *curves /* (n_curves) */, const char *const *names /* (n_curves) */, int n_curves,
                        const jem_plot_opts *o, jem_image *out);
/* Generic line chart (e.g. robust accuracy against epsilon), with markers
 * at the points and a legend. */
jem_status jem_plot_lines(const jem_series *series /* (n_series) */, int n_series, const jem_plot_opts *o,
                          jem_image *out);

/* Images x (N, C, H, W) in [-1, 1] (C = 1 or 3) as a grid, laid out as
 * jem_png_write_grid lays it out (cols columns, cols <= 0: the smallest
 * square; pad pixels of mid-grey; a value v becomes round((v + 1) * 127.5)
 * clamped to [0, 255], NaN 0), in RGB. row_labels (nullable; n_labels
 * entries, NULL entries blank): text written in white, right-aligned, in a
 * column left of row r (e.g. class names). */
jem_status jem_plot_grid(const float *x /* (N, C, H, W) */, int n, int c, int h, int w, int cols, int pad,
                         const char *const *row_labels, int n_labels, jem_image *out);

/* Energy traces of MCMC chains: trace (N, M) as jem_hmc_run writes it
 * (row n = iteration n, one column per chain), a line per chain (at most
 * the first 31), the iteration on the x axis; warmup > 0 marks the end of
 * warm-up with a vertical line. Legend "chain m" for up to 8 chains. */
jem_status jem_plot_traces(const double *trace /* (N, M) */, int N, int M, int warmup, const jem_plot_opts *o,
                           jem_image *out);

/* ----------------------------------------------------- drawing primitives */

/* Built-in bitmap font (font.c): printable ASCII 32..126 in a 5 x 9 cell
 * (7 rows above the baseline, 2 below for descenders); other characters
 * draw as '?'. */
#define JEM_FONT_W   5 /* glyph columns */
#define JEM_FONT_H   9 /* glyph rows */
#define JEM_FONT_ASC 7 /* rows above the baseline (cap height) */
#define JEM_FONT_ADV 6 /* horizontal advance per character */
/* 1 if pixel (col, row) of character c is set. */
int jem_font_pixel(int c, int col, int row);

/* Colours are 0xRRGGBB; alpha in [0, 1] blends over what is there. */
/* Filled rectangle covering pixels [x0, x1) x [y0, y1) (clipped). */
void jem_draw_rect(jem_image *im, int x0, int y0, int x1, int y1, uint32_t color, double alpha);
/* Anti-aliased line of the given width (pixels), with coordinates at pixel
 * centres; dash > 0 draws dashes and gaps of that length. */
void jem_draw_line(jem_image *im, double x0, double y0, double x1, double y1, double width, uint32_t color,
                   double alpha, double dash);
/* Text with its top-left corner at (x, y), each font pixel a scale x scale
 * square; vertical != 0 draws it rotated 90 degrees counter-clockwise,
 * reading bottom to top, with (x, y) the bottom-left corner. */
void jem_draw_text(jem_image *im, int x, int y, const char *s, int scale, uint32_t color, int vertical);
/* Width in pixels of s drawn at this scale (no trailing space). */
int jem_text_width(const char *s, int scale);

/* ================================================ scores of a network */

/* Per-input OOD scores, higher = more in-distribution:
 *   logpx          log p~(x) = logsumexp_y f(x)[y]
 *   max_softmax    max_y p(y|x)
 *   max_logit      max_y f(x)[y]
 *   neg_grad_norm  -||grad_x log p~(x)||_2
 *   energy_t       T logsumexp(f(x) / T) (the negative free energy at T) */
enum {
    JEM_SCORE_LOGPX = 0,
    JEM_SCORE_MAXSOFTMAX,
    JEM_SCORE_MAXLOGIT,
    JEM_SCORE_GRADNORM,
    JEM_SCORE_ENERGY_T,
    JEM_NSCORES
};
const char *jem_score_name(int k);
/* out (n, JEM_NSCORES); the gradient score only when want_grad (0 otherwise);
 * logits_out (nullable, (n, K)). */
jem_status jem_scores(jem_net *net, const float *x, int n, double T, int want_grad, double *out, float *logits_out);

/* ============================================================== attacks */

/* A differentiable classifier: logits of a batch x (B, D), and the gradient
 * dx (B, D) of sum(logits * dlogits) with respect to x (seed: for
 * stochastic classifiers, the draw of their noise). */
typedef struct {
    jem_status (*logits)(void *ctx, const float *x, int B, float *logits);
    jem_status (*grad)(void *ctx, const float *x, int B, const float *dlogits, float *dx, uint64_t seed);
    void *ctx;
    int D, K;
    int stochastic; /* judge each restart at its last iterate only */
    /* Optional (NULL: the attacks use logits and grad), deterministic
     * classifiers only: forward gives the logits of x (B, D) and keeps what
     * backward needs; backward gives dx (B, D) for dlogits at the x of the
     * last forward. PGD and APGD then pay one forward pass per step, not
     * two or three. */
    jem_status (*forward)(void *ctx, const float *x, int B, float *logits);
    jem_status (*backward)(void *ctx, const float *dlogits, float *dx);
} jem_classifier;

void jem_classifier_net(jem_classifier *c, jem_net *net);

/* The JEM defence: classify the average logits of `chains` copies of the
 * input, each refined by `steps` unconditional SGLD steps. Its gradient for
 * attacks is BPDA (the purifier passed as the identity) with EOT over `eot`
 * draws of the chains' noise. Use p->c as the classifier. */
typedef struct {
    jem_classifier c;
    jem_net *net;
    jem_sgld_cfg sgld;
    int chains, eot;
    uint64_t seed, calls;
} jem_purifier;
void jem_purifier_init(jem_purifier *p, jem_net *net, int steps, int chains, int eot, uint64_t seed);

typedef struct {
    int norm;         /* 0: L-inf, 2: L2 */
    double eps;       /* radius in the model's input units ([-1, 1] pixels) */
    double step;      /* PGD step size, same units */
    int steps;        /* PGD iterations */
    int restarts;     /* >= 1; an image is robust only if every restart fails */
    int random_start; /* start uniformly in the ball (L-inf) / at a random point of it (L2) */
    int fgsm;         /* one step of size eps from the clean image */
    uint64_t seed;
    /* nullable: called as the attack advances with (work done, total work)
     * (units: gradient steps over chunks of images), e.g. for a progress bar */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud;
} jem_attack_cfg;

/* Attack n images: robust (n) = 1 where the image is classified correctly
 * clean and at every iterate of every restart; adv (nullable, (n, D)) gets
 * the first misclassified point found (else the clean image). Iterates stay
 * inside the ball and the box [-1, 1]. */
jem_status jem_attack_run(const jem_classifier *c, const float *x, const int32_t *y, int n, const jem_attack_cfg *cfg,
                          uint8_t *robust, float *adv);

/* Adversarial examples for training (PGD-AT, TRADES): PGD on the network
 * itself from the batch x (B, D), its last iterate into xadv (B, D); there
 * is no early stop and no restart. It ascends the cross-entropy against the
 * labels y (B) (a row with y < 0 does not move from its start), or, when
 * target (B, K) is non-NULL, KL(target || softmax(f(x'))) (TRADES's inner
 * maximisation, target the clean prediction; y is then not read). Of cfg it
 * uses norm, eps, step, steps, random_start and fgsm (one step of eps from
 * x); the random start draws from rng (a seeded stream reproduces the
 * examples). Iterates stay inside the box [-1, 1] and, for x inside it, the
 * ball (a value of x beyond the box is pulled into it). The
 * network's gradients are not touched; the state of its last forward pass
 * is replaced. */
jem_status jem_attack_batch(jem_net *net, const float *x, const int32_t *y, const float *target, int B,
                            const jem_attack_cfg *cfg, jem_rng *rng, float *xadv);

/* ------------------------------------------ APGD (Croce and Hein, 2020) */

/* The losses APGD ascends:
 *   CE     cross-entropy, untargeted (AutoAttack's apgd-ce);
 *   DLR    -(z_y - max_{i != y} z_i) / (z_p1 - z_p3), untargeted;
 *   DLR_T  -(z_y - z_t) / (z_p1 - (z_p3 + z_p4) / 2), targeted at each of the
 *          `targets` classes with the highest clean logits other than y in
 *          turn (AutoAttack's apgd-t);
 * z_p1 >= z_p2 >= ... are the sorted logits; 1e-12 is added to each
 * denominator. DLR needs K >= 3 classes, DLR_T K >= 4 (JEM_ERR_ARG). */
enum { JEM_APGD_CE = 0, JEM_APGD_DLR, JEM_APGD_DLR_T };

typedef struct {
    int norm;     /* 0: L-inf, 2: L2 */
    double eps;   /* radius in the model's input units */
    int steps;    /* iterations per run (AutoAttack: 100) */
    int restarts; /* >= 1 runs from random points of the ball (per target with DLR_T) */
    int loss;     /* JEM_APGD_* */
    int targets;  /* DLR_T: target classes (0: min(K - 1, 9)); capped at K - 1 */
    double rho;   /* step-size check: halve when at most rho of the last steps raised the loss (0: 0.75) */
    uint64_t seed;
    /* nullable: (work done, total work) in iterations over chunks of images */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud;
} jem_apgd_cfg;

/* APGD as in the paper and AutoAttack: a random start at the sphere of
 * radius eps (clipped to the box), a first step of 2 eps (L-inf: the sign of
 * the gradient; L2: the normalised gradient), momentum 0.75, and checkpoints
 * at 0, 0.22, 0.22 + 0.19, ... of the iterations (gaps shrinking by 0.03,
 * at least 0.06) where the step is halved and the run goes back to its
 * highest-loss point if at most rho of the steps since the last checkpoint
 * raised the loss, or if neither the step nor the best loss changed since
 * then. Each restart and target runs on the images still robust.
 * robust (n) and adv (nullable, (n, D)) as jem_attack_run: a deterministic
 * classifier is judged at every iterate; a stochastic one (c->stochastic)
 * once at the end of each run, at its highest-loss point. */
jem_status jem_apgd_run(const jem_classifier *c, const float *x, const int32_t *y, int n, const jem_apgd_cfg *cfg,
                        uint8_t *robust, float *adv);

/* ---------------------------------- Square attack (Andriushchenko et al., 2020) */

typedef struct {
    int norm;      /* 0: L-inf, 2: L2 */
    double eps;    /* radius in the model's input units */
    int queries;   /* budget per image: classifier evaluations, the clean one included (>= 2) */
    double p_init; /* fraction of the pixels the first windows cover (0: 0.8), then AutoAttack's schedule */
    int c, h, w;   /* the images' shape (c * h * w = the classifier's D); windows are squares in h x w */
    uint64_t seed;
    /* nullable: (work done, total work) in iterations over chunks of images */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *progress_ud;
} jem_square_cfg;

/* Square attack, score-based and gradient-free (it calls c->logits only):
 * random search over square windows on the margin z_y - max_{i != y} z_i,
 * keeping a candidate when it lowers the margin, until the image is
 * misclassified or its budget is spent. L-inf: vertical stripes of +-eps to
 * start, then windows set to +-eps per channel; L2: the paper's start of
 * centred bumps and its updates that move mass between two windows, every
 * iterate on the sphere of radius eps (then clipped to the box).
 * robust (n) and adv (nullable, (n, D)) as jem_attack_run (an image counts
 * as broken at the first query that misclassifies it; for a stochastic
 * classifier that is one draw of its noise); queries (nullable, (n)) gets
 * the classifier evaluations each image used: 1 for an image misclassified
 * clean, at most cfg->queries. */
jem_status jem_square_run(const jem_classifier *c, const float *x, const int32_t *y, int n, const jem_square_cfg *cfg,
                          uint8_t *robust, float *adv, int64_t *queries);

/* ------------------------------------------------ gradient-masking checks */

/* Checks on a table of robust accuracies (fractions) that catch an
 * evaluation fooled by masked or obfuscated gradients (Athalye et al. 2018,
 * Carlini et al. 2019):
 *   MONOTONE   accuracy does not rise with eps by more than tol
 *              (value: the largest rise; e: the epsilon where it rose);
 *   UNBOUNDED  an attack at a radius covering the whole box leaves at most
 *              tol (value: that accuracy);
 *   GRADFREE   the gradient-free attack breaks at most tol of the images
 *              the gradient attacks left (value: the largest such fraction
 *              over eps; e: where);
 *   STRONGER   more steps and restarts lower accuracy by at most tol
 *              (value: how much they lowered it). */
enum { JEM_CHECK_MONOTONE = 0, JEM_CHECK_UNBOUNDED, JEM_CHECK_GRADFREE, JEM_CHECK_STRONGER, JEM_NCHECKS };

typedef struct {
    int ran;      /* 0: not measured (the check's pass is then 1) */
    int pass;     /* value <= tol */
    double value; /* see above */
    double tol;
    int e; /* index of the epsilon it concerns, -1: none */
} jem_check;

/* "monotone", "unbounded", "gradient_free", "stronger" */
const char *jem_check_name(int k);
/* acc (ne): robust accuracy per epsilon (eps non-decreasing), each epsilon
 * attacked on its own (not made monotone by carrying broken images over). */
void jem_check_monotone(const double *acc, int ne, double tol, jem_check *out);
void jem_check_unbounded(double acc, double tol, jem_check *out);
/* grad (ne): accuracy after the gradient attacks; all (ne): after those and
 * the gradient-free one on the images they left. */
void jem_check_gradfree(const double *grad, const double *all, int ne, double tol, jem_check *out);
/* base, stronger: accuracy at epsilon index e under the attack and under
 * its stronger version on the same images. */
void jem_check_stronger(double base, double stronger, int e, double tol, jem_check *out);

#ifdef __cplusplus
}
#endif
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#endif /* JEM_EVAL_H */

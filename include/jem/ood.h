/*
 * jem/ood.h: out-of-distribution detectors on a network's features, and
 * the decision threshold (public; jem.h includes it).
 *
 * Every detector gives a score where higher = more in-distribution, like
 * the scores of jem_scores (eval.h), so the metrics of eval.h apply as they
 * are:
 *
 *   mahalanobis  a Gaussian per class with one shared covariance on the
 *                features of a layer (Lee et al. 2018), fitted on labelled
 *                data: score = -min_k (f - mu_k)^T Sigma^-1 (f - mu_k), the
 *                negative squared Mahalanobis distance to the nearest class
 *                mean (Lee et al.'s confidence score).
 *   knn          the features scaled to unit L2 norm (Sun et al. 2022):
 *                score = -||f - t_(k)||, the negative Euclidean distance to
 *                the k-th nearest of the stored (unit) training features.
 *   odin         max softmax(f(x') / T) at an input moved against the
 *                confidence, x' = x - eps sign(-grad_x log max_y
 *                softmax(f(x) / T)) (Liang et al. 2018); eps is in the
 *                model's input units ([-1, 1] pixels), x' is not clipped.
 *
 * Feature layers (jem_net_features): 0 = "pool", the pooled vector the
 * linear head reads; k = "bk", the global average of block k's output.
 *
 * Dimension letters: N samples, D feature size, K classes.
 */
#ifndef JEM_OOD_H
#define JEM_OOD_H

#include "jem.h"

/* Everything declared below is the library's interface: libjem.so is built
 * with -fvisibility=hidden and exports these declarations only. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#ifdef __cplusplus
extern "C" {
#endif

/* "pool" -> 0, "b1", "b2", ... -> 1, 2, ...; -1 when malformed (the
 * network decides whether the layer exists: jem_net_feature_dim). */
int jem_ood_layer_parse(const char *name);
/* the name of a layer ("pool", "b3") into buf */
void jem_ood_layer_name(int layer, char *buf, size_t n);

/* ============================================ class-conditional Gaussian */

/* Streaming accumulation of the per-class means and the pooled
 * within-class scatter, in double: each batch's per-class scatter about
 * its own mean is added, and the shift of the mean merged in (Chan et al.'s
 * pairwise update), so no sum of squares of raw values is ever formed. */
typedef struct {
    int D, K;
    int64_t n;       /* samples so far */
    int64_t *count;  /* (K) */
    double *mean;    /* (K, D) */
    double *scatter; /* (D, D) sum over classes of sum (f - mu_k)(f - mu_k)^T; lower triangle */
    double *work;    /* (B_max, D) rows of one class of one batch */
    int work_rows;
} jem_maha_acc;

jem_status jem_maha_acc_init(jem_maha_acc *a, int D, int K);
/* add B feature rows f (B, D) of classes y (B) in [0, K); a label outside
 * it is JEM_ERR_ARG (naming the row), a non-finite feature
 * JEM_ERR_NONFINITE. On failure nothing was added. */
jem_status jem_maha_acc_add(jem_maha_acc *a, const float *f, const int32_t *y, int B);
void jem_maha_acc_free(jem_maha_acc *a);

/* A fitted Gaussian: Sigma = scatter / n (the maximum-likelihood estimate),
 * shrunk towards a multiple of the identity with the same trace,
 * Sigma_s = (1 - s) Sigma + s (tr(Sigma) / D) I for shrinkage s in [0, 1]
 * (scikit-learn's ShrunkCovariance). Classes without samples are left out
 * of the minimum. */
typedef struct {
    int D, K;
    double shrinkage;
    int64_t *count; /* (K) */
    double *mean;   /* (K, D) */
    double *chol;   /* (D, D) L, lower triangular, L L^T = Sigma_s (row-major, upper part 0) */
    double *wmean;  /* (K, D) L^-1 mu_k */
} jem_maha;

/* Relative pivot below which the covariance counts as singular: Cholesky
 * fails when a pivot is <= JEM_MAHA_PIVOT_TOL times the largest variance. */
#define JEM_MAHA_PIVOT_TOL 1e-10

/* Fit from an accumulator. A singular or not positive definite Sigma_s
 * (fewer samples than D + classes, a constant or linearly dependent
 * feature) is JEM_ERR_ARG with a message naming the pivot and the smallest
 * power of ten of shrinkage that makes it positive definite; no samples, or
 * shrinkage outside [0, 1], is JEM_ERR_ARG too. */
jem_status jem_maha_fit(const jem_maha_acc *a, double shrinkage, jem_maha *m);
/* From stored means, counts and factor (copied; checked: finite, L lower
 * triangular with a positive diagonal). */
jem_status jem_maha_from(const double *mean, const int64_t *count, const double *chol, int K, int D, double shrinkage,
                         jem_maha *m);
void jem_maha_free(jem_maha *m);
/* score (n) = -min_k squared distance of the rows of f (n, D); kmin
 * (nullable, n): the nearest class. */
jem_status jem_maha_score(const jem_maha *m, const float *f, int n, double *score, int32_t *kmin);

/* ================================================ k nearest neighbours */

/* Scale each row of f (n, D) to unit L2 norm in place (norm computed in
 * double); a zero row stays zero (its distance to every unit row is 1). */
void jem_l2_normalise(float *f, int n, int D);

typedef struct {
    int D, N, k;
    float *train; /* (N, D) unit rows */
} jem_knn;

/* Copy and normalise N training rows (N, D); 1 <= k <= N. */
jem_status jem_knn_init(const float *feats, int N, int D, int k, jem_knn *m);
void jem_knn_free(jem_knn *m);
/* Default working memory of a search. */
#define JEM_KNN_MEM_DEFAULT ((size_t)64 << 20)
/* score (n) = -(distance from the normalised row of f (n, D) to its k-th
 * nearest training row). Exact: every training row is compared. Queries
 * and training rows go in blocks whose similarity matrix (one sgemm) and
 * top-k lists take at most mem_bytes (0: JEM_KNN_MEM_DEFAULT; below 64 KB
 * is JEM_ERR_ARG); the k nearest are picked by the float dot products and
 * their distances recomputed in double. */
jem_status jem_knn_score(const jem_knn *m, const float *f, int n, size_t mem_bytes, double *score);

/* ================================================================ ODIN */

/* score (n) = max_y softmax(f(x') / T) with x' as above; xp (nullable,
 * (n, C, H, W)) receives x'. T > 0 and eps >= 0 (finite), else
 * JEM_ERR_ARG. Uses the network's input gradient (forward + backward per
 * chunk of 64 images; no parameter gradients). */
jem_status jem_odin_scores(jem_net *net, const float *x, int n, double T, double eps, double *score, float *xp);

/* ========================================================== decisions */

/* The threshold that keeps a fraction tpr of in-distribution scores: with
 * the rule "in-distribution iff score >= thr", thr is the m-th largest of
 * s_in for the smallest m with m / n >= tpr, so the kept fraction is >= tpr
 * (more when other scores tie with thr: all of a tie are kept). *kept
 * (nullable) receives the fraction kept, #{s_in >= thr} / n. tpr in
 * (0, 1]; NaN scores are JEM_ERR_NONFINITE; n < 1 JEM_ERR_ARG. On the
 * in-distribution test set itself this is the threshold of FPR95 (eval.h)
 * for tpr 0.95. */
jem_status jem_ood_threshold(const double *s_in, int n, double tpr, double *thr, double *kept);
/* The fraction of scores s (n) that are >= thr (the false-positive rate
 * when s are OOD scores); 0 when n < 1. */
double jem_ood_rate_at(const double *s, int n, double thr);

/* ======================================================= fitted detector */

typedef enum { JEM_DET_MAHALANOBIS = 0, JEM_DET_KNN, JEM_DET_NKINDS } jem_det_kind;

const char *jem_det_kind_name(jem_det_kind k); /* "mahalanobis", "knn" */
int jem_det_kind_parse(const char *name);      /* -1 when unknown */

typedef struct {
    jem_det_kind kind;
    int layer;        /* feature layer (0: pool) */
    double shrinkage; /* mahalanobis */
    int k;            /* knn: the neighbour whose distance scores (50) */
    size_t mem_bytes; /* knn search memory (0: JEM_KNN_MEM_DEFAULT) */
    int chunk;        /* images per forward pass while fitting (1024) */
    /* called after each chunk while fitting (nullable) */
    void (*progress)(void *ud, int64_t done, int64_t total);
    void *ud;
} jem_det_cfg;

void jem_det_defaults(jem_det_cfg *c);

/* A detector fitted on one model's features: a detector file records the
 * model's checksum and is refused by any other model. */
typedef struct {
    jem_det_kind kind;
    int layer;
    uint64_t model_sum; /* jem_net_checksum of the model it was fitted on */
    char model_name[64];
    char data[256]; /* the data set it was fitted on */
    int64_t n_fit;  /* images it was fitted on */
    size_t mem_bytes;
    jem_maha maha; /* kind mahalanobis */
    jem_knn knn;   /* kind knn */
} jem_detector;

/* FNV-1a (64 bit) over the model description and every parameter tensor
 * (name, then its float32 bytes): equal for the same weights wherever
 * they were loaded. */
uint64_t jem_net_checksum(jem_net *net);

/* Fit on a data set in one pass, chunk by chunk (features of cfg->layer;
 * mahalanobis needs labels in [0, K) of the model, knn stores the
 * normalised features of every image). */
jem_status jem_detector_fit(jem_net *net, const jem_dataset *ds, const jem_det_cfg *cfg, jem_detector **out);
/* score (n) of images x (n, C, H, W) for the model the detector was
 * fitted on (the caller checks: jem_detector_load refuses others). */
jem_status jem_detector_score(const jem_detector *d, jem_net *net, const float *x, int n, double *score);
/* Write as safetensors, atomically. Tensors: mahalanobis "mean" (K, D) F64,
 * "count" (K) I64, "chol" (D, D) F64; knn "train" (N, D) F32. Metadata:
 * jem.ood.kind, jem.ood.layer, jem.ood.model (checksum, 16 hex digits),
 * jem.ood.model_name, jem.ood.data, jem.ood.n, jem.ood.shrinkage,
 * jem.ood.k, jem.ood.score (what the score is), jem.version. */
jem_status jem_detector_save(const jem_detector *d, const char *path);
/* Read and check a detector file for net: a file of another model (its
 * checksum differs) is JEM_ERR_ARG naming both models; a malformed file
 * (missing or misshapen tensor, bad metadata, non-finite values) is
 * JEM_ERR_FORMAT naming the file and what is wrong. */
jem_status jem_detector_load(const char *path, jem_net *net, jem_detector **out);
void jem_detector_free(jem_detector *d);

#ifdef __cplusplus
}
#endif
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif
#endif /* JEM_OOD_H */

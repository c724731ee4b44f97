/*
 * jem.h: the one public header of jem, a toolkit for Joint Energy-based
 * Models (Grathwohl et al. 2020): a softmax CNN classifier whose logits f(x)
 * double as an energy model, E(x, y) = -f(x)[y], E(x) = -logsumexp_y f(x)[y].
 *
 * Conventions
 *   - Tensors are float32, NCHW. Dimension letters: B batch, C channels,
 *     H height, W width, K classes, OC/IC output/input channels,
 *     KH/KW kernel size.
 *   - Every function that can fail returns jem_status; on failure a message
 *     naming the file or value is available from jem_last_error() (per thread).
 *   - The library never prints to stdout and never exits.
 *   - Ownership: an object returned through an out-pointer belongs to the
 *     caller and is released with the matching _free(), which accepts NULL.
 */
#ifndef JEM_H
#define JEM_H

#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Everything declared below is the library's interface: libjem.so is built
 * with -fvisibility=hidden and exports these declarations only. */
#if defined(__GNUC__)
#pragma GCC visibility push(default)
#endif

#ifdef __cplusplus
extern "C" {
#endif

#define JEM_VERSION "0.1.0"

/* ------------------------------------------------------------------ status */

typedef enum {
    JEM_OK = 0,
    JEM_ERR_NOMEM,       /* allocation failed */
    JEM_ERR_IO,          /* open/read/write/fsync/rename failed */
    JEM_ERR_FORMAT,      /* malformed or truncated file */
    JEM_ERR_SHAPE,       /* shapes do not agree */
    JEM_ERR_ARG,         /* bad argument or option value */
    JEM_ERR_NONFINITE,   /* NaN or Inf where a finite number is required */
    JEM_ERR_DIVERGED,    /* training diverged and could not be recovered */
    JEM_ERR_UNSUPPORTED, /* valid input that jem does not handle */
    JEM_ERR_INTERRUPTED  /* stopped by a signal */
} jem_status;

const char *jem_strerror(jem_status s);
/* Detail message of the last failure in the calling thread ("" if none). */
const char *jem_last_error(void);
/* Record a detail message (printf format) and return s. */
jem_status jem_fail(jem_status s, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
void jem_clear_error(void);

/* Assertion for programming errors: never compiled out, prints file:line and
 * aborts. Not for bad input (that returns a jem_status). */
void jem_assert_fail(const char *expr, const char *file, int line);
#define JEM_ASSERT(x) ((x) ? (void)0 : jem_assert_fail(#x, __FILE__, __LINE__))

/* -------------------------------------------------------------------- rng */

/* xoshiro256** with explicit state; a seed (and stream) reproduces a run. */
typedef struct {
    uint64_t s[4];
} jem_rng;

void jem_rng_seed(jem_rng *r, uint64_t seed, uint64_t stream);
uint64_t jem_rng_u64(jem_rng *r);
uint32_t jem_rng_below(jem_rng *r, uint32_t n); /* uniform in [0, n) */
float jem_rng_uniform(jem_rng *r);              /* uniform in [0, 1) */
float jem_rng_normal(jem_rng *r);               /* standard normal */
double jem_rng_uniform_d(jem_rng *r);
double jem_rng_normal_d(jem_rng *r);
void jem_rng_shuffle(jem_rng *r, int32_t *a, size_t n);

/* ---------------------------------------------------------------- threads */

/* Set the thread count used by OpenMP loops and BLAS (n <= 0: all cores). */
void jem_set_threads(int n);
int jem_get_threads(void);

/* ---------------------------------------------------------------- kernels */

/* The convolution kernels follow three settings in the environment, read
 * once per process (README.md, "Design", says what they choose):
 *   JEM_KERNELS        auto (the default), direct, or gemm (also: ref)
 *   JEM_WINOGRAD_TILE  auto (the default), 2 or 4
 *   JEM_FUSE           1 (the default) or 0
 * Unset or empty means the default. JEM_ERR_ARG naming the variable and
 * its value when one holds anything else, else JEM_OK. jem_net_create
 * refuses a bad setting the same way; a tool calls this to refuse it
 * before loading anything. */
jem_status jem_conv_settings_check(void);

/* ------------------------------------------------------------ distributed */

/* Data-parallel runs across processes with MPI (built with `make MPI=1`;
 * without it these are single-process stand-ins: rank 0 of 1, and the
 * reductions do nothing). jem_dist_init is called once from main before any
 * other jem call; every other function is collective where it says so: all
 * ranks must call it in the same order. */
void jem_dist_init(int *argc, char ***argv);
void jem_dist_finalize(void);
int jem_dist_rank(void);
int jem_dist_size(void);
int jem_dist_enabled(void); /* 1 when built with MPI */
/* Collective: in-place sums over ranks. */
void jem_dist_sum_f32(float *x, size_t n);
void jem_dist_sum_f64(double *x, size_t n);
/* Collective: in-place maximum over ranks. */
void jem_dist_max_i64(int64_t *x, size_t n);
/* Collective: 1 when v is the same on every rank. */
int jem_dist_same_u64(uint64_t v);
/* Collective: rank 0's bytes copied to every rank. */
void jem_dist_bcast(void *p, size_t n);
/* Collective: rows [lo(r), lo(r+1)) of x (n_rows rows of `row` floats, lo(r)
 * = r * n_rows / size) are gathered from rank r into rank 0's x. */
void jem_dist_gather_rows(float *x, size_t row, int n_rows);
/* Collective: every rank's slice of rows (as jem_dist_gather_rows, rows of
 * row_bytes bytes) copied into every rank's x. */
void jem_dist_allgather(void *x, size_t row_bytes, int n_rows);
/* The slice of n items owned by this rank: [*lo, *hi). */
void jem_dist_slice(int64_t n, int64_t *lo, int64_t *hi);
/* Seconds spent inside the collectives so far (this rank). */
double jem_dist_comm_seconds(void);
/* With several ranks, end the whole job with this exit code (MPI_Abort does
 * not return); with one process it does nothing and the caller returns. */
void jem_dist_abort(int code);

/* ----------------------------------------------------------- architecture */

#define JEM_MAX_BLOCKS 16

typedef enum { JEM_ACT_LRELU = 0, JEM_ACT_RELU, JEM_ACT_SILU } jem_act;

/* Pre-activation wide-ResNet: stem conv3x3 -> wide blocks -> act -> global
 * average pool -> linear. */
typedef struct {
    char name[64];
    int in_c, in_h, in_w; /* input image shape */
    int n_classes;        /* K */
    int stem;             /* stem conv output channels */
    int n_blocks;
    int width[JEM_MAX_BLOCKS];  /* block output channels */
    int stride[JEM_MAX_BLOCKS]; /* block stride (1 or 2) */
    jem_act act;
    float slope; /* LeakyReLU negative slope */
} jem_arch;

/* Parse a model description ("key = value" lines, '#' comments). fname is
 * used in error messages ("file:line: ..."). */
jem_status jem_arch_parse(const char *text, const char *fname, jem_arch *a);
jem_status jem_arch_load(const char *path, jem_arch *a);
/* Write the description in the text form jem_arch_parse reads.
 * Returns the length it needs (like snprintf). */
int jem_arch_format(const jem_arch *a, char *buf, size_t n);
const char *jem_act_name(jem_act a);

/* ---------------------------------------------------------------- network */

#define JEM_MAX_PARAMS 128

typedef struct {
    char name[48]; /* PyTorch state_dict name, e.g. "b1.c1.weight" */
    int ndim;
    int shape[4];  /* PyTorch layout: conv (OC, IC, KH, KW), linear (OUT, IN) */
    size_t offset; /* in floats, into params / grads */
    size_t numel;
} jem_param;

typedef struct jem_net jem_net; /* opaque */

jem_status jem_net_create(const jem_arch *a, jem_net **out);
void jem_net_free(jem_net *net);
const jem_arch *jem_net_arch(const jem_net *net);

/* Parameters and gradients: one flat block each. */
size_t jem_net_nparams(const jem_net *net);
float *jem_net_params(jem_net *net);
float *jem_net_grads(jem_net *net);
int jem_net_ntensors(const jem_net *net);
const jem_param *jem_net_tensor(const jem_net *net, int i);
const jem_param *jem_net_find(const jem_net *net, const char *name);

/* PyTorch's default initialisation for conv and linear layers
 * (Kaiming-uniform a = sqrt(5): U(+-1/sqrt(fan_in)) for weights and biases). */
void jem_net_init(jem_net *net, jem_rng *rng);
void jem_net_zero_grad(jem_net *net);

/* Multiply-adds of one forward pass for one image. */
double jem_net_macs(const jem_net *net);

/* The precision of the products in the network's convolutions.
 * JEM_PRECISION_BF16: the convolutions of the fused wide-ResNet blocks
 * (every convolution but the stem's, unless JEM_FUSE=0) take bf16
 * operands with fp32 sums (AVX512-BF16's vdpbf16ps), in forward passes
 * and in backward passes that ask for the input gradient alone; the stem,
 * the linear head, the weight gradients and the passes that lead to them
 * stay fp32. Each rounded layer is off by 0.2 to 2.5 % of its output's
 * norm (F(4x4) Winograd the most): for sampling chains, attacks and
 * evaluation, not for training steps. */
typedef enum { JEM_PRECISION_FP32 = 0, JEM_PRECISION_BF16 } jem_precision;
/* whether this CPU runs bf16 products (AVX512-BF16) */
int jem_bf16_supported(void);
/* The network's precision from here on (JEM_PRECISION_FP32 on creation).
 * JEM_ERR_ARG for bf16 on a CPU without AVX512-BF16. */
jem_status jem_net_set_precision(jem_net *net, jem_precision p);
jem_precision jem_net_precision(const jem_net *net);
/* "fp32" or "bf16" to *p; JEM_ERR_ARG naming s otherwise, or for bf16 on a
 * CPU without it */
jem_status jem_precision_parse(const char *s, jem_precision *p);

/* Forward a batch x (B, C, H, W) to logits (B, K), keeping what backward
 * needs. Batches larger than any seen before grow the activation store. */
jem_status jem_net_forward(jem_net *net, const float *x, int B, float *logits);
/* Backward from dlogits (B, K) of the last forward. dx (B, C, H, W): written
 * (not accumulated) when non-NULL. Parameter gradients are accumulated (+=)
 * into jem_net_grads() when param_grads != 0 and not computed otherwise;
 * asking for them after a bf16 forward pass is JEM_ERR_ARG. */
jem_status jem_net_backward(jem_net *net, const float *dlogits, float *dx, int param_grads);
/* Forward without keeping activations for backward (any batch size, chunked
 * internally). */
jem_status jem_net_predict(jem_net *net, const float *x, int n, float *logits);
/* Features of a layer for n images x (n, C, H, W), in chunks like
 * jem_net_predict: layer 0 is the pooled vector the linear head reads
 * (global average of the activated last block, D = its channels); layer
 * k in 1..n_blocks is the global average of block k's output (before the
 * activation that follows it, D = width[k-1]). feats (n, D). Like
 * jem_net_predict it replaces the state of the last forward pass (a
 * jem_net_backward after it would not match any earlier forward). */
jem_status jem_net_features(jem_net *net, const float *x, int n, int layer, float *feats);
/* D of jem_net_features for a layer; 0 when the model has no such layer. */
int jem_net_feature_dim(const jem_net *net, int layer);

/* ------------------------------------------------------------------ losses */

/* Mean softmax cross-entropy over a batch. dlogits (nullable) receives
 * d(mean loss)/d(logits) scaled by `scale`. Returns the mean loss; *correct
 * (nullable) receives the number of argmax hits. Labels < 0 are skipped. */
double jem_softmax_xent(const float *logits, const int32_t *y, int B, int K, float *dlogits, float scale, int *correct);
/* logsumexp of each row: out (B) */
void jem_logsumexp(const float *logits, int B, int K, float *out);
void jem_softmax(const float *logits, int B, int K, float *probs);
/* TRADES's robustness term (Zhang et al. 2019): the mean over the B rows of
 * KL(softmax(zc) || softmax(za)), computed in double, between the logits of
 * clean inputs zc (B, K) and of their adversarial versions za (B, K).
 * dzc and dza (nullable) get `scale` times its gradient w.r.t. zc and za
 * added (+=): scale p_k (log p_k - log q_k - KL_row) / B and
 * scale (q_k - p_k) / B, with p = softmax(zc), q = softmax(za). Returns the
 * mean KL (>= 0). */
double jem_trades_kl(const float *zc, const float *za, int B, int K, float *dzc, float *dza, float scale);

/* --------------------------------------------------------------- optimiser */

typedef enum { JEM_OPT_ADAM = 0, JEM_OPT_SGD } jem_opt_kind;

typedef struct {
    jem_opt_kind kind;
    float lr;
    float beta1, beta2, eps; /* Adam */
    float momentum;          /* SGD */
    int nesterov;            /* SGD */
    float weight_decay;      /* L2 added to the gradient (PyTorch semantics) */
} jem_opt_cfg;

typedef struct {
    jem_opt_cfg cfg;
    size_t n;
    float *m;  /* (n) first moment / momentum buffer */
    float *v;  /* (n) second moment (Adam) */
    int64_t t; /* steps taken */
} jem_opt;

void jem_opt_defaults(jem_opt_cfg *c, jem_opt_kind kind);
jem_status jem_opt_init(jem_opt *o, const jem_opt_cfg *c, size_t n);
void jem_opt_free(jem_opt *o);
/* One step with learning rate lr (schedules are the caller's). */
void jem_opt_step(jem_opt *o, float *params, const float *grads, float lr);

/* Learning rate schedule: linear warm-up, then x gamma at each milestone
 * (iterations), and optionally a cosine decay to zero over the budget. */
typedef struct {
    float lr;
    int warmup;
    int n_milestones;
    int milestones[16];
    float gamma;
    int cosine; /* multiply by (1 + cos(pi * frac)) / 2 */
} jem_sched;
/* frac: the fraction of the training budget spent, in [0, 1] (used by the
 * cosine decay; pass 0 when unknown). */
float jem_sched_lr(const jem_sched *s, int64_t iter, double frac);

/* -------------------------------------------------------------------- data */

typedef struct {
    int n, c, h, w;
    int n_classes;
    float *x;       /* (N, C, H, W), pixels scaled to [-1, 1] */
    int32_t *y;     /* (N) labels in [0, n_classes), -1 = unlabelled */
    char name[256]; /* where it came from (spec) */
    char **classes; /* (n_classes) class names, or NULL when unknown */
    char **files;   /* (N) the file each image came from (png: folders,
                            relative to ROOT), or NULL */
} jem_dataset;

/* Open a data set named by one string. Every loader scales pixels to [-1, 1]:
 * an 8-bit value v -> v / 255 * 2 - 1, a 16-bit PNG value v / 65535 * 2 - 1.
 *
 *   fmnist:train | fmnist:test
 *       Fashion-MNIST in the folder set by jem_data_set_dir("fmnist", DIR):
 *       files {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]. 10 classes,
 *       named (T-shirt/top, Trouser, ..., Ankle boot).
 *   mnist:test | mnist:train
 *       MNIST, the same file names in the folder set for "mnist". 10 classes.
 *   idx:PREFIX
 *       PREFIX-images-idx3-ubyte and PREFIX-labels-idx1-ubyte, each tried
 *       as named, then with ".gz". n_classes = largest label + 1.
 *   idx:IMAGES,LABELS
 *       two explicit IDX files (plain or gzip, split at the first comma).
 *   cifar10:DIR[:train|:test]
 *       CIFAR-10 binary: DIR/data_batch_1.bin .. data_batch_5.bin (train,
 *       the default) or DIR/test_batch.bin; DIR may also be the folder that
 *       holds cifar-10-batches-bin/. 3x32x32, 10 classes, named from
 *       batches.meta.txt beside the batches, else CIFAR-10's own names.
 *   cifar100:DIR[:train|:test]
 *       CIFAR-100 binary: DIR/train.bin or DIR/test.bin (or inside
 *       cifar-100-binary/); fine labels, 100 classes, named from
 *       fine_label_names.txt beside the files when it is there.
 *   png:ROOT
 *       ROOT/<class>/<image>.png (or .PNG). Classes are the subfolders of
 *       ROOT sorted by strcmp (byte order: "B" before "a"), label =
 *       position, class names = the folder names; images sorted by strcmp
 *       within a class, ds->files = "<class>/<image>.png"; names starting
 *       with '.' and other files are skipped. All images must have one
 *       size. C = 3 if any image is colour, else 1; decoding and conversion
 *       follow jem_png_read.
 *   noise:KIND[:N][:SHAPE][:seed=S]
 *       KIND uniform | gaussian | constant (see jem_dataset_synthetic);
 *       N images (default 10000); SHAPE CxHxW or HxW (C = 1), required;
 *       seed S (default 0). Example: noise:uniform:1000:1x28x28.
 *   interp:SPEC[:N][:seed=S]
 *       N (default: the size of SPEC) midpoints of two distinct random
 *       images of the set SPEC, e.g. interp:fmnist:test:1000. A trailing
 *       all-digit field is taken as N.
 *   corrupt:SPEC:KIND:SEVERITY[:seed=S]
 *       the set SPEC with every image corrupted by jem_corrupt_apply: KIND
 *       one of jem_corrupt_name (gaussian_noise, shot_noise, impulse_noise,
 *       gaussian_blur, defocus_blur, contrast, brightness, rotation,
 *       translation, pixelate, jpeg), SEVERITY 1 to 5, seed S (default 0);
 *       labels kept. Example: corrupt:fmnist:test:gaussian_noise:3.
 *   SPEC:classes=LIST[:relabel]
 *       a class filter on any spec (the last field(s) of a spec, applying
 *       to all of it): only the images whose label is in LIST, numbers and
 *       ranges A-B joined by commas (classes=0-5, classes=0,2,4-6), in
 *       their order. Labels are kept as they are and n_classes becomes the
 *       largest listed class + 1, so a set filtered to classes 0-5 trains
 *       and evaluates a 6-class model and a held-out set (classes=6-9) keeps
 *       the true classes for reports; with `relabel` the listed classes are
 *       renumbered 0, 1, ... in increasing order and n_classes is their
 *       count (a 4-class model on classes=2-5:relabel). A listed class at
 *       or above the set's n_classes, or a filter that keeps no image, is
 *       JEM_ERR_ARG. The filter of a set made from another
 *       (interp:fmnist:test:classes=0-5:1000) goes on that set, before N:
 *       interp's and noise's own images are unlabelled.
 *
 * ds->name is set to the spec. Errors: a malformed spec -> JEM_ERR_ARG,
 * a missing file -> JEM_ERR_IO, a bad file -> JEM_ERR_FORMAT (truncated,
 * trailing data, bad magic, label out of range, size not a whole number
 * of records, corrupt PNG ...), images of different sizes in a PNG folder
 * -> JEM_ERR_SHAPE; the message names the file. On failure *ds is zeroed. */
jem_status jem_dataset_open(const char *spec, jem_dataset *ds);
/* Open a set for a model whose input is c x h x w: noise sets that name no
 * shape take this one, and the set is conformed to it
 * (jem_dataset_conform). */
jem_status jem_dataset_open_as(const char *spec, int c, int h, int w, jem_dataset *ds);
/* Check a spec without reading any data: its syntax, and that the files or
 * folders it names exist (the errors jem_dataset_open would give for them).
 * c, h, w: the shape noise sets take when they name none (0, 0, 0: none). */
jem_status jem_dataset_check(const char *spec, int c, int h, int w);
/* Where the named sets "fmnist" and "mnist" are read from (dir is copied;
 * NULL forgets it). The library knows no default folder: a program sets
 * these once, before opening sets (not while another thread opens one).
 * Opening fmnist:... or mnist:... with no folder set -> JEM_ERR_IO. */
jem_status jem_data_set_dir(const char *name, const char *dir);
const char *jem_data_dir(const char *name); /* NULL when not set */
/* The class names the library knows for a spec's set (fmnist, mnist,
 * cifar10: by the spec's prefix), static strings; NULL otherwise. *n
 * (nullable) receives their number. */
const char *const *jem_known_classes(const char *spec, int *n);
/* Free x, y, the names and files, and zero *ds (NULL is fine). */
void jem_dataset_free(jem_dataset *ds);
/* Make a data set fit a model's input (c = 1 or 3), in place: channels
 * converted (grey -> RGB by repetition, RGB -> grey by ITU-R BT.601 luma
 * 0.299 R + 0.587 G + 0.114 B); H and W must already match, else
 * JEM_ERR_SHAPE naming the set and both shapes. */
jem_status jem_dataset_conform(jem_dataset *ds, int c, int h, int w);
/* Hold out n_val images (0 <= n_val < src->n) from src into val, the rest
 * into train (both keep the class names, and the file names of their
 * images). The images held out are the first n_val of a seeded shuffle of
 * the indices; both parts keep src's order. src is consumed: its buffers
 * move to train and *src is zeroed (train may be src itself). n_val = 0
 * gives an empty val (n 0, x and y NULL). On failure src is untouched. */
jem_status jem_dataset_split(jem_dataset *src, int n_val, uint64_t seed, jem_dataset *train, jem_dataset *val);
/* Synthetic out-of-distribution sets of n images shaped (c, h, w), labels
 * -1, reproducible from the seed:
 *   "uniform"  every value U(-1, 1)
 *   "gaussian" every value N(0, 1) clipped to [-1, 1]
 *   "constant" one U(-1, 1) value for all pixels and channels of an image
 *   "interp"   0.5 a + 0.5 b for two distinct random images a, b of `base`
 *              (required; JEM's "Interp"); c = h = w = 0 takes base's shape,
 *              another shape -> JEM_ERR_SHAPE.
 * n_classes is 0, or base's for "interp". */
jem_status jem_dataset_synthetic(const char *kind, int n, int c, int h, int w, const jem_dataset *base, uint64_t seed,
                                 jem_dataset *ds);
/* Keep the first n images (n < 0 or n >= ds->n: nothing changes; n = 0
 * frees the pixels). */
void jem_dataset_truncate(jem_dataset *ds, int n);
/* Keep the images whose label is in list (the LIST of the classes= spec:
 * "0-5", "0,2,4-6"), in order, in place; relabel != 0 renumbers the listed
 * classes 0, 1, ... (see jem_dataset_open for n_classes). On failure
 * (a bad list, a class at or above n_classes, no image left) ds is
 * unchanged. */
jem_status jem_dataset_filter_classes(jem_dataset *ds, const char *list, int relabel);

/* Corruptions of images for covariate shift (Hendrycks & Dietterich 2019),
 * severities 1 to 5, in place on x (n, C, H, W). Each works on every
 * channel plane in the [0, 1] scale u = (x + 1) / 2 and clips the result
 * to [0, 1], so pixels end in [-1, 1]. Parameters per severity 1..5 (the
 * CIFAR-10-C ones, made for 32x32 images; rotation and translation added):
 *   gaussian_noise  u + N(0, s^2), s = 0.04 0.06 0.08 0.09 0.10
 *   shot_noise      Poisson(u c) / c, c = 500 250 100 75 50
 *   impulse_noise   a fraction a of pixels set to 0 or 1 (equally likely),
 *                   a = 0.01 0.02 0.03 0.05 0.07
 *   gaussian_blur   sigma = 0.4 0.6 0.7 0.8 1.0 pixels
 *   defocus_blur    mean over the disk dy^2 + dx^2 <= r^2, r = 0.3 0.4 0.5
 *                   1 1.5, then a Gaussian blur of sigma 0.4 0.5 0.6 0.2 0.1
 *   contrast        (u - m) c + m with m the plane's mean, c = 0.75 0.5 0.4
 *                   0.3 0.15
 *   brightness      u + b, b = 0.05 0.1 0.15 0.2 0.3
 *   rotation        about the centre by +-10 20 30 45 60 degrees (sign
 *                   random per image), bilinear, black (-1) outside
 *   translation     by 1 2 3 4 5 pixels in a random direction, bilinear,
 *                   black outside
 *   pixelate        area-averaged down to round(f H) x round(f W), f = 0.95
 *                   0.9 0.85 0.75 0.65, and area-resampled back
 *   jpeg            8x8 block DCT quantisation with the JPEG luminance
 *                   table at quality 80 65 58 50 40 (each channel alone)
 * Blurs clamp at the border. Image i draws from its own random stream
 * (seed, kind, severity, i), so the result does not depend on threads.
 * A bad kind, severity or shape -> JEM_ERR_ARG. */
#define JEM_CORRUPT_SEVERITIES 5
int jem_corrupt_count(void);
const char *jem_corrupt_name(int kind); /* NULL when out of range */
int jem_corrupt_find(const char *name); /* -1 when unknown */
/* The parameter of the table above (the first one for defocus_blur); NaN
 * when kind or severity is out of range. */
double jem_corrupt_param(int kind, int severity);
jem_status jem_corrupt_apply(int kind, int severity, float *x, int n, int c, int h, int w, uint64_t seed);

/* Training augmentation, applied in place to a batch x (B, C, H, W). Per
 * image, in batch order, random numbers are drawn in a fixed order so a seed
 * reproduces a batch: crop offsets dy then dx (each jem_rng_below(2P + 1)),
 * then the flip bit (jem_rng_below(2)), then one jem_rng_normal per value in
 * (C, H, W) order; a disabled step draws nothing. */
typedef struct {
    int crop_pad; /* P > 0: random crop of the image padded by P pixels
                            of -1 (black) on each side, i.e. a shift by up to
                            P pixels in each direction; 0 = off */
    int hflip;    /* random horizontal flip, probability 1/2 */
    float noise;  /* Gaussian noise sigma added (not clipped); 0 = off */
} jem_augment;
void jem_augment_batch(const jem_augment *a, float *x, int B, int C, int H, int W, jem_rng *rng);

/* ------------------------------------------------------------------ images */

/* PNG files are written atomically, like every file jem saves (see
 * jem_write_file_atomic): to "PATH.tmp-<pid>-<n>", fsync, rename over PATH,
 * fsync of the directory; on any failure (JEM_ERR_IO naming PATH) the
 * temporary file is removed and an existing PATH is left as it was. A
 * successful write also removes the temporary files of PATH left by
 * writers that no longer run. */

/* Write images (N, C, H, W) in [-1, 1] as one 8-bit PNG grid (grey for
 * C = 1, RGB for C = 3): `cols` columns (cols <= 0: the smallest cols with
 * cols * cols >= n; at most n), images in row-major order, `pad` pixels of
 * mid-grey (128) around and between images, and in empty cells. A value v
 * becomes round((v + 1) * 127.5), clamped to [0, 255]; NaN becomes 0. */
jem_status jem_png_write_grid(const char *path, const float *x, int n, int c, int h, int w, int cols, int pad);
/* Write an 8-bit RGB image rgb (H, W, 3). */
jem_status jem_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);
/* The PNG file jem_png_write_rgb would write, in memory: *out (malloc'd, the
 * caller frees it; NULL on failure) holds *n bytes. */
jem_status jem_png_encode_rgb(const uint8_t *rgb /* (H, W, 3) */, int w, int h, uint8_t **out, size_t *n);
/* Read a PNG into (C, H, W) floats in [-1, 1] with C = want_c (1 or 3;
 * 0 = the file's own: palette, RGB and RGBA files are colour (3), grey and
 * grey + alpha files are 1). Any colour type and bit depth: palette and
 * tRNS are expanded, samples keep 16-bit precision (v / (2^bits - 1) * 2
 * - 1). Alpha is dropped by compositing over black (value * alpha), so a
 * fully transparent pixel reads -1. Grey -> RGB repeats the value; RGB ->
 * grey is BT.601 luma. Gamma and colour profiles are ignored. c, h, w may be
 * NULL. Caller frees *out (NULL on failure). A malformed or truncated file ->
 * JEM_ERR_FORMAT naming it. */
jem_status jem_png_read(const char *path, int want_c, float **out, int *c, int *h, int *w);

/* ------------------------------------------------------------- checkpoints */

/* safetensors file (the Hugging Face format): 8-byte little-endian header
 * length N, N bytes of UTF-8 JSON header, then the data buffer. Tensors keep
 * PyTorch state_dict names; "__metadata__" holds string pairs. Data is
 * little-endian (jem builds only on little-endian machines). */

typedef enum { JEM_DT_F32 = 0, JEM_DT_F64, JEM_DT_I32, JEM_DT_I64, JEM_DT_U8 } jem_dtype;

size_t jem_dtype_size(jem_dtype dt);      /* bytes per element, 0 if unknown */
const char *jem_dtype_name(jem_dtype dt); /* "F32", "F64", "I32", "I64", "U8" */

typedef struct jem_st jem_st; /* a safetensors file being written or read */

/* Writing: add tensors and metadata, then commit atomically (temporary file,
 * fsync, rename). jem_st_add copies the name and shape but keeps the data
 * pointer: the data must stay valid until commit. Names must be non-empty,
 * unique, valid UTF-8 and not "__metadata__"; ndim is 0 to 8 (shape may be
 * NULL when ndim is 0). Tensors are stored in the order they were added, the
 * header padded with spaces so the data starts 8-byte aligned.
 * jem_st_meta sets key to value (both copied, valid UTF-8, any length); a
 * second call with the same key replaces the value. Bad arguments ->
 * JEM_ERR_ARG. jem_st_commit may be called more than once. */
jem_status jem_st_new(jem_st **out);
jem_status jem_st_add(jem_st *st, const char *name, jem_dtype dt, int ndim, const int64_t *shape, const void *data);
jem_status jem_st_meta(jem_st *st, const char *key, const char *value);
jem_status jem_st_commit(jem_st *st, const char *path);
/* Reading: the whole file is read into memory and validated before this
 * returns: header length (at most 100 MB and within the file), well-formed
 * JSON, every tensor's dtype, shape (at most 8 non-negative dims) and
 * data_offsets (size matching shape x dtype, within the data buffer; the
 * tensors must cover the buffer exactly, without overlap), no duplicate
 * names, metadata values all strings. Any violation -> JEM_ERR_FORMAT, with
 * a message naming the file and the tensor or field; a valid safetensors
 * dtype that jem does not handle (F16, BF16, ...) -> JEM_ERR_UNSUPPORTED. */
jem_status jem_st_open(const char *path, jem_st **out);
/* Find a tensor: returns a pointer to its data (owned by st, aligned for its
 * dtype, valid until jem_st_free) or NULL if there is none. dt, ndim and
 * shape (room for 8) are filled in when non-NULL. Works on a handle being
 * written too. */
const void *jem_st_get(const jem_st *st, const char *name, jem_dtype *dt, int *ndim, int64_t *shape /* [8] */);
/* Metadata value for key, or NULL. Owned by st. */
const char *jem_st_get_meta(const jem_st *st, const char *key);
/* Metadata keys in file (or insertion) order: i in [0, jem_st_meta_count). */
int jem_st_meta_count(const jem_st *st);
const char *jem_st_meta_key(const jem_st *st, int i);
/* Tensor names: in data order for a file read (the order a jem file was
 * written in), in insertion order for a file being written. */
int jem_st_count(const jem_st *st);
const char *jem_st_name(const jem_st *st, int i);
void jem_st_free(jem_st *st);

/* Model checkpoint: architecture in metadata ("jem.arch"), weights by name. */
jem_status jem_ckpt_save(const char *path, jem_net *net, const char *const *meta_kv);
jem_status jem_ckpt_load(const char *path, jem_net **net);

/* Atomic replacement of a file with the given bytes: a temporary file beside
 * it, fsync, rename over path, fsync of the directory. On failure the old
 * file is intact and no temporary file is left. */
jem_status jem_write_file_atomic(const char *path, const void *data, size_t n);
/* Atomic replacement of a file through a stdio stream:
 *
 *     jem_atomic a;
 *     jem_status s = jem_atomic_open(&a, path);
 *     if (s) return s;
 *     if (fwrite(buf, 1, n, a.fp) != n) { jem_atomic_abort(&a); return jem_fail(JEM_ERR_IO, ...); }
 *     return jem_atomic_commit(&a);
 *
 * jem_atomic_open creates a new temporary file in the target's directory
 * (named "<path>.tmp-<pid>-<n>", mode 0666 minus the umask, O_EXCL so it
 * never clobbers anything). The target is untouched until commit:
 *   commit: fflush, check the stream's error flag, fsync, fclose, rename over
 *           the target, fsync the directory, then remove the temporary files
 *           of the target left by writers that no longer run. On any failure
 *           the temporary file is removed, the target keeps its old contents,
 *           and JEM_ERR_IO names the path and the failing step.
 *   abort:  fclose and unlink the temporary file.
 * After either, the struct is cleared (fp == NULL); aborting a cleared or
 * zero-initialised struct does nothing, so `jem_atomic_abort(&a)` is safe on
 * every error path. The stream's error flag is checked at commit, but callers
 * should still check each fwrite to stop early. If path is a symbolic link,
 * the link itself is replaced by a regular file. Ownership: path and tmp are
 * the struct's own copies, released by commit and abort. */
typedef struct {
    FILE *fp;   /* write here (binary mode) */
    char *path; /* target (owned copy) */
    char *tmp;  /* temporary file beside it (owned) */
} jem_atomic;

jem_status jem_atomic_open(jem_atomic *a, const char *path);
jem_status jem_atomic_commit(jem_atomic *a);
void jem_atomic_abort(jem_atomic *a);

/* Read a whole file; caller frees *out, which is NUL-terminated (so text can
 * be used as a string; *n excludes the NUL, n may be NULL). Refuses files
 * above max_bytes with JEM_ERR_FORMAT (max_bytes 0: no limit). */
jem_status jem_read_file(const char *path, size_t max_bytes, char **out, size_t *n);
/* Base64 (RFC 4648: the standard alphabet, '=' padding, no line breaks) of
 * data[0..n): *out (malloc'd, NUL-terminated; the caller frees it) holds
 * *len characters (len nullable), 4 * ceil(n / 3) of them. */
jem_status jem_base64_encode(const void *data, size_t n, char **out, size_t *len);

/* ---------------------------------------------------------- energy models */

/* An energy model seen by the samplers: for a batch x (B, D) it fills
 * logp (B) with log p~(x) = -E(x) (or -E(x, y[b]) when y is non-NULL and
 * y[b] >= 0) and grad (B, D) with its gradient w.r.t. x. The network's energy
 * is jem_net_energy; tests plug in analytic energies. */
typedef jem_status (*jem_energy_fn)(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad);

/* The network as an energy model: log p~(x) = logsumexp_y f(x)[y],
 * log p~(x, y) = f(x)[y]. Gradients from the input backward only (no
 * parameter gradients). ctx is the jem_net. */
jem_status jem_net_energy(void *net, const float *x, int B, const int32_t *y, float *logp, float *grad);

typedef struct {
    int steps;       /* K */
    float step_size; /* alpha: x += alpha * grad log p~(x) */
    float noise;     /* sigma: + sigma * N(0, I) */
    int clamp;       /* clamp x to [lo, hi] after each step */
    float lo, hi;
    float max_step;    /* clip each pixel's drift alpha*grad to +-max_step (0: off) */
    int mala;          /* Metropolis-adjusted: accept/reject each proposal */
    float temperature; /* MALA target p~(x)^(1/T) */
    int final_logp;    /* SGLD: one more forward to report log p~ at the end */
    /* nullable: called before each step and once at the end with (steps
     * done, steps), e.g. to draw a progress bar; it must not call jem. */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
    double *trace; /* (steps, B) nullable: log p~ of each chain at the
                         * start of each step (the states after 0 .. steps-1
                         * steps), for chain diagnostics */
} jem_sgld_cfg;

typedef struct {
    double grad_norm;            /* mean ||grad log p~|| per chain over all steps */
    double accept;               /* MALA acceptance rate (1 for SGLD) */
    double logp_start, logp_end; /* mean log p~ before and after (SGLD: after
                                  * only with final_logp, else the last step's) */
} jem_sgld_stats;

void jem_sgld_defaults(jem_sgld_cfg *c);
/* Run cfg->steps steps on x (B, D) in place. mask (nullable, (B, D)): only
 * pixels with mask != 0 move (inpainting). Noise for chain b at step k comes
 * from the stream (seed, counter, b, k), so results do not depend on the
 * thread count. */
jem_status jem_sgld_run(jem_energy_fn f, void *ctx, float *x, int B, int D, const int32_t *y, const float *mask,
                        const jem_sgld_cfg *cfg, uint64_t seed, uint64_t counter, jem_sgld_stats *st);

/* Persistent replay buffer of SGLD chains. */
typedef enum { JEM_INIT_UNIFORM = 0, JEM_INIT_INFORMATIVE } jem_init_kind;

typedef struct {
    int n, c, h, w; /* n images of (C, H, W) */
    int n_classes;
    float *x;      /* (n, C, H, W) */
    int32_t *y;    /* (n) class of each slot (per-class partitions) */
    int per_class; /* draws for class k come from slots with y == k */
    jem_init_kind init;
    float reinit;                   /* probability a drawn chain restarts */
    int full_cov;                   /* informative init: full covariance (else diagonal) */
    struct jem_buffer_prior *prior; /* the fitted init (private; NULL until jem_buffer_fit) */
    int lo, hi;                     /* draws come from slots [lo, hi) (a rank's slice;
                                0 and n after jem_buffer_create) */
    int64_t *age;                   /* (n) iterations since each slot's chain was last
                                (re)initialised, counted by jem_buffer_tick; -1:
                                not known (a buffer restored without ages) */
} jem_buffer;

jem_status jem_buffer_create(jem_buffer *b, int n, int c, int h, int w, int n_classes, jem_init_kind init, float reinit,
                             int per_class);
void jem_buffer_free(jem_buffer *b);
/* Fit the informative init (per-class mean and variance, and the Cholesky
 * factor of the covariance when full_cov) to labelled data. */
jem_status jem_buffer_fit(jem_buffer *b, const jem_dataset *ds, int full_cov);
/* Fill every slot with a fresh draw from the init distribution (every age 0). */
void jem_buffer_reset(jem_buffer *b, jem_rng *rng);
/* One fresh image from the init distribution for class k (k < 0: a random
 * class), x (D). */
void jem_buffer_init_one(const jem_buffer *b, int k, float *x, jem_rng *rng);
/* Draw B chains: x (B, D) copied from random slots (class y[i] when y is
 * non-NULL and the buffer is per-class), each restarted with probability
 * reinit; idx (B) receives the slots; ycls (nullable, B) the slot classes;
 * age (nullable, B) each chain's age: 0 when restarted, else its slot's.
 * Returns the number restarted. */
int jem_buffer_draw(jem_buffer *b, int B, const int32_t *y, float *x, int32_t *idx, int32_t *ycls, int64_t *age,
                    jem_rng *rng);
/* Put B chains back into their slots idx (B) with their ages (nullable, B:
 * as jem_buffer_draw gave them; NULL leaves the slots' ages). A slot drawn
 * twice keeps the last chain stored, and that chain's age. */
void jem_buffer_store(jem_buffer *b, const float *x, const int32_t *idx, const int64_t *age, int B);
/* One iteration more on the known ages of the slots [lo, hi). */
void jem_buffer_tick(jem_buffer *b);

/* -------------------------------------------------------------------- HMC */

/* Hamiltonian Monte Carlo on an energy model. Each iteration draws a
 * momentum p ~ N(0, I) (mass 1), takes L leapfrog steps of size eps on
 * H(x, p) = -log p~(x) / T + |p|^2 / 2 and accepts the end point with
 * probability min(1, exp(-dH)), dH = H(end) - H(start) (the energy error).
 * With leapfrog = 1 this is MALA: the proposal x + eps^2/2 grad log p~ +
 * eps z with its Metropolis-Hastings correction.
 *
 * bounded: chains live in the box [lo, hi]^D. A position step that leaves
 * the box is mirrored at the wall and that momentum coordinate negated; the
 * leapfrog map stays reversible and volume-preserving, so the chains target
 * p~ restricted to the box. A start outside the box is clamped into it.
 *
 * Step size: one eps for all chains. During the `warmup` iterations it is
 * adapted by dual averaging (Hoffman & Gelman 2014, section 3.2; gamma
 * 0.05, t0 10, kappa 0.75, mu = log(10 eps0)) of the chains' mean
 * acceptance probability towards target_accept, and at the end of warm-up
 * fixed to the averaged value. (Pooling the chains' acceptance keeps the
 * adapted eps steady; a single chain's noisy acceptance leaves the
 * averaged eps short of its target, a few points of acceptance above it.)
 * Warm-up iterations do not count in the statistics. Chain b draws its
 * noise from the stream (seed, counter, b) (D normals for the momentum,
 * then one uniform per iteration), so the chains do not depend on the
 * thread count, and after warm-up (or with warmup 0) not on each other. */
typedef struct {
    int steps;           /* iterations after warm-up */
    int warmup;          /* iterations adapting the step size (0: eps fixed) */
    int leapfrog;        /* L >= 1 */
    float step_size;     /* eps, the start value when adapting */
    float target_accept; /* in (0, 1): 0.65 suits HMC, 0.57 MALA */
    float temperature;   /* target p~(x)^(1/T) */
    int bounded;         /* reflect at the walls of [lo, hi]^D */
    float lo, hi;
    /* nullable: called after each iteration with (iterations done,
     * warmup + steps), e.g. to draw a progress bar; it must not call jem */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
} jem_hmc_cfg;

typedef struct {
    double accept;               /* mean acceptance probability over chains and iterations after warm-up */
    double accept_rate;          /* fraction of those proposals taken */
    double dh_mean;              /* mean energy error dH (finite, <= 1000) */
    double dh_abs;               /* mean |dH| */
    double dh_max;               /* largest |dH| */
    long divergent;              /* proposals with dH > 1000 or not finite */
    double step_size;            /* eps after warm-up */
    double warmup_accept;        /* mean acceptance probability during warm-up */
    double logp_start, logp_end; /* mean log p~ before and after */
    long grad_evals;             /* energy evaluations per chain: 1 + L (warmup + steps) */
} jem_hmc_stats;

/* steps 100, warmup 100, leapfrog 10, step_size 0.01, target 0.65,
 * temperature 1, unbounded, box [-1, 1] */
void jem_hmc_defaults(jem_hmc_cfg *c);
/* Run warmup + steps iterations on x (B, D) in place. y (nullable) as for
 * jem_energy_fn; mask (nullable, (B, D)): only values with mask != 0 move.
 * eps (nullable): the step size to start from (a value <= 0 takes
 * cfg->step_size) and, on return, the step size after warm-up, so a later
 * call can go on with it (warmup 0). trace (nullable, (warmup + steps, B)):
 * log p~ of every chain after every iteration. st nullable. */
jem_status jem_hmc_run(jem_energy_fn f, void *ctx, float *x, int B, int D, const int32_t *y, const float *mask,
                       const jem_hmc_cfg *cfg, uint64_t seed, uint64_t counter, float *eps, double *trace,
                       jem_hmc_stats *st);

/* ----------------------------------------------------- composed energies */

/* A product of experts: log p~(x) = sum_i w_i l_i(x), where term i reads
 * model m_i and l_i = f_{m_i}(x)[c_i] for a class c_i, or logsumexp_y
 * f_{m_i}(x)[y] when unconditional. A negative weight divides by that
 * expert (negation: "a 5 that is not a 7").
 *
 * Text form (jem sample --energy):
 *     spec   := term { "," term }
 *     term   := name [ ":" select ] [ ":" weight ]
 *     select := "class=" digits | "uncond"
 *     name   := letter or '_', then letters, digits, '_' or '-' (< 32 chars)
 *     weight := a finite non-zero decimal number (strtod syntax), default 1
 * Spaces around tokens are allowed; at most JEM_COMPOSE_MAX terms; a term
 * without a selector is unconditional. Example:
 *     m1:class=5:1, m1:class=7:-1      (class 5 and not class 7)
 *     m1:class=5, m2                   (class 5 of m1, p(x) of m2)
 * Models are named separately (jem_model_list). */
#define JEM_COMPOSE_MAX  16
#define JEM_COMPOSE_NAME 32

typedef struct {
    char model[JEM_COMPOSE_NAME]; /* model name */
    int cls;                      /* class, or -1: unconditional */
    double weight;                /* finite, non-zero */
} jem_term;

typedef struct {
    int n_terms;
    jem_term terms[JEM_COMPOSE_MAX];
    /* filled by jem_compose_bind: */
    int n_models;
    jem_net *nets[JEM_COMPOSE_MAX];  /* borrowed, not freed here */
    int term_model[JEM_COMPOSE_MAX]; /* index into nets per term */
} jem_compose;

/* Parse the text form; JEM_ERR_ARG naming the term and what is wrong.
 * Only syntax is checked (classes are checked by jem_compose_bind). */
jem_status jem_compose_parse(const char *spec, jem_compose *c);
/* The canonical text form (parses back to the same terms); returns the
 * length it needs, like snprintf. */
int jem_compose_format(const jem_compose *c, char *buf, size_t n);
/* Attach networks: model names[i] is nets[i] (n <= JEM_COMPOSE_MAX). Every
 * term's model must be named, its class below that model's class count,
 * and every model used must share one input shape; else JEM_ERR_ARG or
 * JEM_ERR_SHAPE. Models named but unused are left out. */
jem_status jem_compose_bind(jem_compose *c, int n, const char *const *names, jem_net *const *nets);
/* The composed energy as a jem_energy_fn (ctx: a bound jem_compose): one
 * forward and one input backward per model used. y must be NULL or all
 * negative (the classes are in the terms), else JEM_ERR_ARG. */
jem_status jem_compose_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad);

/* Models by name: "name=PATH { , name=PATH }" (names as above, paths up to
 * 1023 bytes without ','; spaces around names allowed, not in paths). */
typedef struct {
    int n;
    char name[JEM_COMPOSE_MAX][JEM_COMPOSE_NAME];
    char path[JEM_COMPOSE_MAX][1024];
} jem_model_list;

jem_status jem_model_list_parse(const char *spec, jem_model_list *l);

/* ---------------------------------------------------- chain diagnostics */

/* Convergence diagnostics of a scalar (e.g. log p~) traced by M chains for
 * N draws each, draws (N, M): draw n of chain m at x[n * M + m]. Following
 * Vehtari, Gelman, Simpson, Carpenter & Buerkner (2021), "Rank-normalization,
 * folding, and localization: an improved R-hat":
 *   - chains are split in halves (an odd N drops the middle draw), giving
 *     2M chains of N/2 draws;
 *   - rank normalisation: the pooled draws' average ranks r (ties share
 *     their mean rank) become z = Phi^-1((r - 3/8) / (S + 1/4)), S draws;
 *   - split R-hat = sqrt(var+ / W), var+ = (n-1)/n W + B/n, W the mean
 *     within-chain variance, B/n the variance of the chain means;
 *   - R-hat = max(bulk, folded): bulk on the rank-normalised draws, folded
 *     on the rank-normalised |x - median(x)|;
 *   - ESS = S / tau, tau = -1 + 2 sum_t rho_t, rho_t = 1 - (W - mean_m
 *     acov_m(t)) / var+ (acov divides by n), summed over pairs
 *     rho_{2k} + rho_{2k+1} while positive (Geyer's initial positive
 *     sequence) and made monotone (initial monotone sequence), tau at least
 *     1 / log10(S);
 *   - bulk ESS on the rank-normalised split chains; tail ESS the smaller of
 *     the ESS of the indicators x <= q05 and x <= q95 (split chains).
 * A draw that is not finite, or a constant input, gives NaN figures. */
typedef struct {
    double rhat; /* max(rhat_bulk, rhat_folded) */
    double rhat_bulk, rhat_folded;
    double rhat_basic; /* split R-hat on the raw draws */
    double ess_bulk, ess_tail;
    double ess_basic; /* ESS of the raw split chains */
    double mean, sd;  /* of all draws */
} jem_chain_diag;

/* N >= 4, M >= 1; JEM_ERR_ARG otherwise, JEM_ERR_NOMEM. */
jem_status jem_chain_diag_compute(const double *x /* (N, M) */, int N, int M, jem_chain_diag *out);
/* The pieces, on chains as given (no splitting): R-hat and ESS of
 * x (N, M), N >= 2 (R-hat needs M >= 2: NaN otherwise). */
double jem_rhat(const double *x /* (N, M) */, int N, int M);
double jem_ess(const double *x /* (N, M) */, int N, int M);
/* Rank normalisation of n values into z (n) (see above). */
jem_status jem_rank_normalize(const double *x /* (n) */, size_t n, double *z /* (n) */);
/* The standard normal quantile function: Abramowitz & Stegun 26.2.23 as
 * the start, then Halley steps on erfc to about 1e-15 relative error; 0 and
 * 1 give -inf and +inf, outside [0, 1] or NaN gives NaN. */
double jem_norm_ppf(double p);

/* ------------------------------------------- annealed importance sampling */

/* A normalised base distribution for AIS:
 *   JEM_BASE_UNIFORM  U(lo, hi)^D (always bounded);
 *   JEM_BASE_GAUSS    an equal-weight mixture of K diagonal Gaussians
 *                     N(mu_k, sd_k^2) (sd floored at sd_min > 0), e.g. the
 *                     per-class Gaussians of the informative init
 *                     (jem_buffer_fit: mu, sd); when bounded, each
 *                     component is truncated to the box [lo, hi]^D and
 *                     renormalised there. */
typedef enum { JEM_BASE_UNIFORM = 0, JEM_BASE_GAUSS } jem_base_kind;

typedef struct {
    jem_base_kind kind;
    int D, K;
    const float *mu; /* (K, D) borrowed */
    const float *sd; /* (K, D) borrowed */
    float sd_min;
    int bounded;
    float lo, hi;
} jem_base;

/* A Gaussian base from the replay buffer's fitted informative init
 * (jem_buffer_fit): its per-class means and standard deviations, borrowed
 * (b must outlive q), sd floored at sd_min, on the box [-1, 1]^D. A buffer
 * that was not fitted is JEM_ERR_ARG. */
jem_status jem_base_from_buffer(jem_base *q, const jem_buffer *b, float sd_min);
/* log q(x) of a batch x (B, D) and (nullable) its gradient. JEM_ERR_ARG
 * for a malformed base. Points outside a bounded base's box get -inf. */
jem_status jem_base_logpdf(const jem_base *q, const float *x, int B, double *logq /* (B) */, float *grad /* (B, D) */);
/* One exact draw x (D) from the base. */
void jem_base_sample(const jem_base *q, float *x, jem_rng *rng);

/* Annealed importance sampling (Neal 2001) of Z = integral of p~(x) (over
 * the box when the base is bounded) on the geometric path
 * log p_t = (1 - beta_t) log q + beta_t log p~, 0 = beta_0 < ... < beta_T = 1:
 * each chain starts from an exact draw of q, and for t = 1..T adds
 * (beta_t - beta_{t-1}) (log p~(x) - log q(x)) to its log weight and then
 * moves x by `steps_per` HMC transitions that leave p_t invariant
 * (leapfrog = 1: MALA), reflecting at the box's walls when bounded.
 * Z-hat = mean of the weights, unbiased; log Z-hat = log-mean-exp of the log
 * weights (biased low by about var(w)/(2 n mean(w)^2)), its standard error
 * by the delta method: sd(w) / (sqrt(n) mean(w)), with the sample sd of the
 * weights scaled by their maximum.
 * Schedules: linear beta_t = t/T, or sigmoid (Grosse et al. 2015):
 * s_t = sigmoid(delta (2t/T - 1)), beta_t = (s_t - s_0) / (s_T - s_0).
 * Step size: a fixed eps for every t, or (pilot_chains > 0) a pilot run of
 * pilot_chains chains over the same schedule with its own noise, whose
 * log step size follows the mean acceptance towards target_accept
 * (log eps += 0.5 (mean acceptance - target) after each t); the main run
 * then uses the pilot's step size at each t. The pilot's choices do not
 * depend on the main run's chains, so its weights stay unbiased. */
typedef enum { JEM_AIS_SIGMOID = 0, JEM_AIS_LINEAR } jem_ais_schedule;

typedef struct {
    int chains; /* independent runs (weights) */
    int T;      /* intermediate distributions */
    jem_ais_schedule schedule;
    double delta;        /* sigmoid steepness */
    int leapfrog;        /* L of the transitions (1: MALA) */
    int steps_per;       /* transitions per distribution */
    float step_size;     /* eps (the pilot's start) */
    float target_accept; /* the pilot's target */
    int pilot_chains;    /* 0: no pilot, eps fixed */
    uint64_t seed;
    int batch; /* chains evaluated together (0: all) */
    /* nullable: called now and then with (work done, work in all), e.g.
     * to draw a progress bar; it must not call jem */
    void (*progress)(void *ud, int done, int total);
    void *progress_ud;
    volatile int *stop; /* nullable; non-zero stops with JEM_ERR_INTERRUPTED */
} jem_ais_cfg;

typedef struct {
    double logz;    /* log-mean-exp of the log weights */
    double logz_se; /* delta-method standard error of logz */
    double ess;     /* effective sample size of the weights: (sum w)^2 / sum w^2 */
    double logw_mean, logw_sd;
    double accept;             /* mean acceptance probability of the main run */
    double step_min, step_max; /* range of the step sizes used */
    int T, chains;
    long grad_evals; /* energy evaluations (images, with gradient), pilot included */
} jem_ais_result;

/* chains 32, T 1000, sigmoid with delta 4, leapfrog 5, steps_per 1,
 * step_size 0.01, target 0.65, pilot_chains 8, seed 1, batch 0 */
void jem_ais_defaults(jem_ais_cfg *c);
/* Run AIS on f (called with y = NULL) from the base q. logw (nullable,
 * (chains)) receives the log weights, x (nullable, (chains, D)) the final
 * states (approximate draws from p~). */
jem_status jem_ais_run(jem_energy_fn f, void *ctx, const jem_base *q, const jem_ais_cfg *cfg, double *logw, float *x,
                       jem_ais_result *res);
/* The schedule beta_0 .. beta_T (T + 1 values). */
jem_status jem_ais_betas(const jem_ais_cfg *cfg, double *beta /* (T + 1) */);

/* Bits per dimension of a log density (nats) of a D-dimensional point.
 * bits = 0: of the continuous density itself, -logp / (D ln 2). bits > 0:
 * of the discrete data, with the image in [lo, hi] coming from
 * 2^bits levels under uniform dequantisation (bins of width
 * (hi - lo) / 2^bits): -(logp + D log((hi - lo) / 2^bits)) / (D ln 2); on
 * [-1, 1] with 8 bits this adds 7 to the continuous figure. */
double jem_bits_per_dim(double logp, int D, int bits, double lo, double hi);

/* ---------------------------------------------------------------- training */

/* Checkpoint pieces for files that hold more than the model (training
 * state): add the model's tensors and description to a file being written;
 * build a network from an opened file (tensors named "_..." are ignored). */
jem_status jem_ckpt_add_model(jem_st *st, jem_net *net);
jem_status jem_ckpt_from_st(const jem_st *st, const char *path, jem_net **net);

typedef enum { JEM_MODE_SOFTMAX = 0, JEM_MODE_JEM } jem_mode;
/* The sampler of the training chains: SGLD (jem_sgld_run with
 * jem_train_cfg.sgld; sgld.mala makes it MALA) or HMC (jem_hmc_run with
 * jem_train_cfg.hmc). */
typedef enum { JEM_SAMPLER_SGLD = 0, JEM_SAMPLER_HMC } jem_sampler;

/* Adversarial training of the cross-entropy branch (see jem_train). */
typedef enum { JEM_ADV_NONE = 0, JEM_ADV_PGD, JEM_ADV_TRADES } jem_adv_kind;

typedef struct {
    jem_adv_kind kind;
    int norm;         /* 0: L-inf, 2: L2 */
    double eps;       /* radius in the model's input units ([-1, 1] pixels: twice
                            the [0, 1]-scale radius) */
    double step;      /* PGD step size as a fraction of the current radius */
    int steps;        /* PGD steps per training iteration */
    int random_start; /* start PGD at a random point of the ball */
    int ramp;         /* the radius grows linearly, eps (i + 1) / ramp at
                            iteration i, over the first ramp iterations (0: eps
                            throughout) */
    float beta;       /* TRADES: weight of the KL term */
} jem_adv_cfg;

typedef struct {
    int64_t iter;       /* iterations done */
    int64_t iter_total; /* the budget in iterations, or an estimate (0: unknown) */
    int epoch;
    double elapsed;       /* seconds in this run */
    double eta;           /* seconds left (estimate; < 0: unknown) */
    double loss, ce, acc; /* running means over the last log group */
    double e_data, e_sample, grad_norm, buf_mean, buf_std;
    double img_per_s, lr;
    double val_acc;  /* < 0 when not evaluated at this point */
    double adv_acc;  /* adversarial training: accuracy on the batches'
                              adversarial examples (running mean; acc is the
                              clean batches') */
    double adv_eps;  /* adversarial training: the current radius on the
                              [0, 1] pixel scale (half the model's units) */
    int event;       /* JEM_EV_* */
    const char *msg; /* for events (rollbacks, checkpoints) */
} jem_progress;

enum { JEM_EV_ITER = 0, JEM_EV_EPOCH, JEM_EV_ROLLBACK, JEM_EV_CKPT, JEM_EV_DONE };

typedef struct {
    jem_mode mode;
    int batch;  /* labelled images per iteration (64) */
    int epochs; /* budgets: 0 = none; training stops at the first reached */
    double minutes;
    int64_t iters;
    jem_opt_cfg opt;
    jem_sched sched;          /* lr, warm-up, milestones (iterations), gamma */
    jem_augment aug;          /* augmentation of the cross-entropy rows; in JEM
                                   mode with crop or flip see px_rows */
    int px_rows;              /* JEM mode, when aug crops or flips: the data side
                                   of the generative terms (E(x_data) in the p(x)
                                   and p(x|y) terms and the l2 penalty) takes this
                                   many extra rows, clean copies of the batch's
                                   first images with only aug.noise added; 0: as
                                   many as the chains (n_samples), at most batch;
                                   -1: no extra rows, the augmented batch rows
                                   themselves (JEM's original). Without crop and
                                   flip the data side is always the batch rows. */
    float ema;                /* moving average of the weights, decay in [0, 1)
                                   (0: off); see jem_train */
    float w_y, w_x, w_xy, l2; /* loss weights */
    jem_adv_cfg adv;          /* adversarial training of the cross-entropy
                                   branch (kind JEM_ADV_NONE: off); see jem_train */
    int gen_warmup; /* the generative weights (w_x, w_xy, l2) ramp up linearly over this many iterations (0: off) */
    jem_sampler sampler;           /* the chains' sampler (SGLD) */
    jem_sgld_cfg sgld;             /* sampler SGLD: steps (K), step size, noise, mala, clamp */
    jem_precision chain_precision; /* the chains' passes (jem_net_set_precision); the
                                      training step is fp32 (default fp32) */
    jem_hmc_cfg hmc;               /* sampler HMC: hmc.steps iterations of hmc.leapfrog
                                   leapfrog steps per training iteration, at
                                   hmc.temperature, reflecting at the walls of
                                   [-1, 1] when sgld.clamp (hmc.warmup, bounded,
                                   lo, hi and progress are not used). One step
                                   size for all chains: hmc.step_size at first,
                                   then after each iteration log eps += 0.5
                                   (mean acceptance - hmc.target_accept), the
                                   acceptance averaged over the iteration's
                                   chains (and ranks); target_accept 0 keeps it
                                   fixed. It is part of the training state. */
    int buffer_size;               /* replay buffer (10000) */
    float reinit;                  /* 0.05 */
    jem_init_kind init;
    int full_cov;          /* informative init with full covariance */
    int n_samples;         /* chains per iteration (= batch when 0) */
    float div_threshold;   /* |loss| or |energy| above this counts as divergence */
    int max_retries;       /* rollbacks before giving up */
    float retry_lr_factor; /* lr multiplier after each rollback */
    int snapshot_every;    /* iterations between in-memory good states */
    int labels_per_class;  /* semi-supervised: 0 = every label used */
    uint64_t seed;
    const char *ckpt_path;   /* NULL: no checkpoints */
    int ckpt_every;          /* iterations (0: at each epoch and at the end) */
    const char *log_path;    /* JSON lines, NULL: none */
    int log_every;           /* iterations per log group (default 20) */
    const char *sample_path; /* PNG grid of buffer samples, NULL: none */
    int sample_every;
    int eval_every;          /* validation every N iterations (0: per epoch) */
    const char *const *meta; /* extra checkpoint metadata, key/value, NULL-terminated */
    void (*progress)(void *ud, const jem_progress *p);
    void *ud;
    volatile int *stop; /* set non-zero (e.g. from a signal handler) to stop cleanly */
} jem_train_cfg;

void jem_train_defaults(jem_train_cfg *c, jem_mode mode);
/* Train net on train (validation on val, nullable). When resume_path is
 * non-NULL, the model, optimiser, buffer, RNG and iteration are restored from
 * that checkpoint first (net must have been loaded from it). Returns
 * JEM_ERR_INTERRUPTED (after a checkpoint) when *stop was set, and
 * JEM_ERR_DIVERGED when rollbacks did not help.
 *
 * Moving average (cfg->ema = decay > 0): after the optimiser's n-th step
 * (n = 1, 2, ...) ema = d ema + (1 - d) w with d = min(decay, n / (9 + n)),
 * starting from the initial weights. The average is what validation during
 * training measures, what net holds when jem_train returns, and what a
 * checkpoint's model tensors hold, so jem_ckpt_load, jem export and every
 * evaluation see it; the trained weights are saved beside it as the tensor
 * "_train.params" (np floats, the order of jem_net_params) and training
 * resumes from them. Resuming with cfg->ema from a checkpoint without
 * "_train.params" starts the average at its weights; resuming without
 * cfg->ema from one with it continues the trained weights and drops the
 * average. Rollbacks restore the average with the weights. */
jem_status jem_train(jem_net *net, const jem_dataset *train, const jem_dataset *val, const jem_train_cfg *cfg,
                     const char *resume_path);
/*
 * Adversarial training (cfg->adv.kind): each iteration crafts adversarial
 * versions of the batch with jem_attack_batch at the current radius
 * (cfg->adv.eps, ramped over the first adv.ramp iterations; step adv.step
 * times the radius), the balls centred on the batch rows clamped to
 * [-1, 1]. JEM_ADV_PGD (Madry et al. 2018): the cross-entropy term is
 * taken on them instead of the clean batch. JEM_ADV_TRADES (Zhang et al.
 * 2019): the cross-entropy term on the clean batch plus
 * beta KL(p(y|x) || p(y|x')) (jem_trades_kl), the attack ascending that
 * KL; both branches carry w_y (with labels_per_class the KL covers the
 * unlabelled rows too, PGD-AT's cross-entropy only the labelled ones). In
 * JEM mode the generative terms keep their clean data rows and chains.
 * The log adds the radius
 * (adv_eps, [0, 1] scale), the accuracy on the adversarial examples
 * (adv_acc; acc stays the clean batches') and, for TRADES, the mean KL
 * (trades_kl); a checkpoint records the settings (jem.train.adv,
 * adv_norm, adv_eps on the [0, 1] scale, adv_steps, adv_step, adv_ramp,
 * adv_random_start, trades_beta).
 */

/* Testing only (jem train --inject-blowup, the command-line tests of the
 * rollback): jem_train with a divergence on demand, the learning rate
 * multiplied by 1e6 at iteration blowup_at on that iteration's first try
 * (0: none, as jem_train). Not for training models. */
jem_status jem_train_test_blowup(jem_net *net, const jem_dataset *train, const jem_dataset *val,
                                 const jem_train_cfg *cfg, const char *resume_path, int64_t blowup_at);
/* Accuracy of net on a data set (top-1), and mean NLL (nullable). */
jem_status jem_evaluate(jem_net *net, const jem_dataset *ds, double *acc, double *nll);

#ifdef __cplusplus
}
#endif
#if defined(__GNUC__)
#pragma GCC visibility pop
#endif

/* The rest of the public API, one header per area. */
#include "jem/eval.h"  /* metrics, calibration, OOD scores, attacks, plots */
#include "jem/ood.h"   /* OOD detectors on features (Mahalanobis, kNN, ODIN), thresholds */
#include "jem/json.h"  /* JSON writer and parser */
#include "jem/bench.h" /* timings of the convolution kernels */

#endif /* JEM_H */

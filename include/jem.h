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
typedef struct { uint64_t s[4]; } jem_rng;

void     jem_rng_seed(jem_rng *r, uint64_t seed, uint64_t stream);
uint64_t jem_rng_u64(jem_rng *r);
uint32_t jem_rng_below(jem_rng *r, uint32_t n);   /* uniform in [0, n) */
float    jem_rng_uniform(jem_rng *r);             /* uniform in [0, 1) */
float    jem_rng_normal(jem_rng *r);              /* standard normal */
double   jem_rng_uniform_d(jem_rng *r);
double   jem_rng_normal_d(jem_rng *r);
void     jem_rng_shuffle(jem_rng *r, int32_t *a, size_t n);

/* ---------------------------------------------------------------- threads */

/* Set the thread count used by OpenMP loops and BLAS (n <= 0: all cores). */
void jem_set_threads(int n);
int  jem_get_threads(void);

/* ----------------------------------------------------------- architecture */

#define JEM_MAX_BLOCKS 16

typedef enum { JEM_ACT_LRELU = 0, JEM_ACT_RELU, JEM_ACT_SILU } jem_act;

/* Pre-activation wide-ResNet: stem conv3x3 -> wide blocks -> act -> global
 * average pool -> linear. */
typedef struct {
    char    name[64];
    int     in_c, in_h, in_w;          /* input image shape */
    int     n_classes;                 /* K */
    int     stem;                      /* stem conv output channels */
    int     n_blocks;
    int     width[JEM_MAX_BLOCKS];     /* block output channels */
    int     stride[JEM_MAX_BLOCKS];    /* block stride (1 or 2) */
    jem_act act;
    float   slope;                     /* LeakyReLU negative slope */
} jem_arch;

/* Parse a model description ("key = value" lines, '#' comments). fname is
 * used in error messages ("file:line: ..."). */
jem_status jem_arch_parse(const char *text, const char *fname, jem_arch *a);
jem_status jem_arch_load(const char *path, jem_arch *a);
/* Write the description in the text form jem_arch_parse reads.
 * Returns the length it needs (like snprintf). */
int        jem_arch_format(const jem_arch *a, char *buf, size_t n);
const char *jem_act_name(jem_act a);

/* ---------------------------------------------------------------- network */

#define JEM_MAX_PARAMS 128

typedef struct {
    char   name[48];   /* PyTorch state_dict name, e.g. "b1.c1.weight" */
    int    ndim;
    int    shape[4];   /* PyTorch layout: conv (OC, IC, KH, KW), linear (OUT, IN) */
    size_t offset;     /* in floats, into params / grads */
    size_t numel;
} jem_param;

typedef struct jem_net jem_net; /* opaque */

jem_status jem_net_create(const jem_arch *a, jem_net **out);
void       jem_net_free(jem_net *net);
const jem_arch *jem_net_arch(const jem_net *net);

/* Parameters and gradients: one flat block each. */
size_t     jem_net_nparams(const jem_net *net);
float     *jem_net_params(jem_net *net);
float     *jem_net_grads(jem_net *net);
int        jem_net_ntensors(const jem_net *net);
const jem_param *jem_net_tensor(const jem_net *net, int i);
const jem_param *jem_net_find(const jem_net *net, const char *name);

/* PyTorch's default initialisation for conv and linear layers
 * (Kaiming-uniform a = sqrt(5): U(+-1/sqrt(fan_in)) for weights and biases). */
void       jem_net_init(jem_net *net, jem_rng *rng);
void       jem_net_zero_grad(jem_net *net);

/* Multiply-adds of one forward pass for one image. */
double     jem_net_macs(const jem_net *net);

/* Forward a batch x (B, C, H, W) to logits (B, K), keeping what backward
 * needs. Batches larger than any seen before grow the activation store. */
jem_status jem_net_forward(jem_net *net, const float *x, int B, float *logits);
/* Backward from dlogits (B, K) of the last forward. dx (B, C, H, W): written
 * (not accumulated) when non-NULL. Parameter gradients are accumulated (+=)
 * into jem_net_grads() when param_grads != 0 and not computed otherwise. */
jem_status jem_net_backward(jem_net *net, const float *dlogits, float *dx,
                            int param_grads);
/* Forward without keeping activations for backward (any batch size, chunked
 * internally). */
jem_status jem_net_predict(jem_net *net, const float *x, int n, float *logits);

/* ------------------------------------------------------------------ losses */

/* Mean softmax cross-entropy over a batch. dlogits (nullable) receives
 * d(mean loss)/d(logits) scaled by `scale`. Returns the mean loss; *correct
 * (nullable) receives the number of argmax hits. Labels < 0 are skipped. */
double jem_softmax_xent(const float *logits, const int32_t *y, int B, int K,
                        float *dlogits, float scale, int *correct);
/* logsumexp of each row: out (B) */
void   jem_logsumexp(const float *logits, int B, int K, float *out);
void   jem_softmax(const float *logits, int B, int K, float *probs);

/* --------------------------------------------------------------- optimiser */

typedef enum { JEM_OPT_ADAM = 0, JEM_OPT_SGD } jem_opt_kind;

typedef struct {
    jem_opt_kind kind;
    float lr;
    float beta1, beta2, eps;     /* Adam */
    float momentum;              /* SGD */
    int   nesterov;              /* SGD */
    float weight_decay;          /* L2 added to the gradient (PyTorch semantics) */
} jem_opt_cfg;

typedef struct {
    jem_opt_cfg cfg;
    size_t  n;
    float  *m;      /* (n) first moment / momentum buffer */
    float  *v;      /* (n) second moment (Adam) */
    int64_t t;      /* steps taken */
} jem_opt;

void       jem_opt_defaults(jem_opt_cfg *c, jem_opt_kind kind);
jem_status jem_opt_init(jem_opt *o, const jem_opt_cfg *c, size_t n);
void       jem_opt_free(jem_opt *o);
/* One step with learning rate lr (schedules are the caller's). */
void       jem_opt_step(jem_opt *o, float *params, const float *grads, float lr);

/* Learning rate schedule: linear warm-up then x gamma at each milestone
 * (iterations). */
typedef struct {
    float lr;
    int   warmup;
    int   n_milestones;
    int   milestones[16];
    float gamma;
} jem_sched;
float jem_sched_lr(const jem_sched *s, int64_t iter);

/* -------------------------------------------------------------------- data */

typedef struct {
    int      n, c, h, w;
    int      n_classes;
    float   *x;          /* (N, C, H, W), pixels scaled to [-1, 1] */
    int32_t *y;          /* (N) labels in [0, n_classes), -1 = unlabelled */
    char     name[256];  /* where it came from (spec) */
} jem_dataset;

/* Open a data set named by one string:
 *   fmnist:train | fmnist:test            Debian's dataset-fashion-mnist
 *   mnist:test                            ../shared/data/mnist (or $JEM_MNIST_DIR)
 *   idx:PREFIX                            PREFIX-images-idx3-ubyte[.gz] + PREFIX-labels-idx1-ubyte[.gz]
 *   idx:IMAGES,LABELS                     two explicit IDX files
 *   cifar10:DIR[:train|:test]             CIFAR-10 binary batches
 *   cifar100:DIR[:train|:test]            CIFAR-100 binary (fine labels)
 *   png:ROOT                              ROOT/<class>/<image>.png
 *   noise:uniform|gaussian|constant[:N]   synthetic sets (need a shape: see
 *   interp:SPEC[:N]                       jem_dataset_synthetic) */
jem_status jem_dataset_open(const char *spec, jem_dataset *ds);
void       jem_dataset_free(jem_dataset *ds);
/* Make a data set fit a model's input: channels converted (grey -> RGB by
 * repetition, RGB -> grey by ITU-R 601 luma), sizes must match. */
jem_status jem_dataset_conform(jem_dataset *ds, int c, int h, int w);
/* Hold out n_val images (seeded shuffle) from src into val; the rest go to
 * train. src is consumed (its buffers move). */
jem_status jem_dataset_split(jem_dataset *src, int n_val, uint64_t seed,
                             jem_dataset *train, jem_dataset *val);
/* Synthetic out-of-distribution sets of n images shaped (c, h, w):
 * kind "uniform" U(-1,1), "gaussian" N(0,1) clipped, "constant" one random
 * value per image; "interp" mixes pairs from `base` (required). */
jem_status jem_dataset_synthetic(const char *kind, int n, int c, int h, int w,
                                 const jem_dataset *base, uint64_t seed,
                                 jem_dataset *ds);
/* Keep the first n images. */
void       jem_dataset_truncate(jem_dataset *ds, int n);

/* Training augmentation, applied in place to a batch. */
typedef struct {
    int   crop_pad;      /* random crop with this zero... (-1) padding; 0 = off */
    int   hflip;         /* random horizontal flip */
    float noise;         /* Gaussian noise sigma (0 = off) */
} jem_augment;
void jem_augment_batch(const jem_augment *a, float *x, int B, int C, int H,
                       int W, jem_rng *rng);

/* ------------------------------------------------------------------ images */

/* Write images (N, C, H, W) in [-1, 1] as one PNG grid of `cols` columns
 * (C = 1 or 3), atomically. */
jem_status jem_png_write_grid(const char *path, const float *x, int n, int c,
                              int h, int w, int cols, int pad);
/* Write an 8-bit RGB (H, W, 3) or grey image, atomically. */
jem_status jem_png_write_rgb(const char *path, const uint8_t *rgb, int w, int h);
/* Read a PNG into (C, H, W) floats in [-1, 1] with C = want_c (1 or 3;
 * 0 = the file's own: grey -> 1, colour -> 3). Caller frees *out. */
jem_status jem_png_read(const char *path, int want_c, float **out, int *c,
                        int *h, int *w);

/* ------------------------------------------------------------- checkpoints */

/* safetensors file (the Hugging Face format): 8-byte little-endian header
 * length N, N bytes of UTF-8 JSON header, then the data buffer. Tensors keep
 * PyTorch state_dict names; "__metadata__" holds string pairs. Data is
 * little-endian (jem builds only on little-endian machines). */

typedef enum { JEM_DT_F32 = 0, JEM_DT_F64, JEM_DT_I32, JEM_DT_I64, JEM_DT_U8 } jem_dtype;

size_t      jem_dtype_size(jem_dtype dt);   /* bytes per element, 0 if unknown */
const char *jem_dtype_name(jem_dtype dt);   /* "F32", "F64", "I32", "I64", "U8" */

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
jem_status jem_st_add(jem_st *st, const char *name, jem_dtype dt, int ndim,
                      const int64_t *shape, const void *data);
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
const void *jem_st_get(const jem_st *st, const char *name, jem_dtype *dt,
                       int *ndim, int64_t *shape /* [8] */);
/* Metadata value for key, or NULL. Owned by st. */
const char *jem_st_get_meta(const jem_st *st, const char *key);
/* Metadata keys in file (or insertion) order: i in [0, jem_st_meta_count). */
int         jem_st_meta_count(const jem_st *st);
const char *jem_st_meta_key(const jem_st *st, int i);
/* Tensor names: in data order for a file read (the order a jem file was
 * written in), in insertion order for a file being written. */
int         jem_st_count(const jem_st *st);
const char *jem_st_name(const jem_st *st, int i);
void        jem_st_free(jem_st *st);

/* Model checkpoint: architecture in metadata ("jem.arch"), weights by name. */
jem_status jem_ckpt_save(const char *path, jem_net *net, const char *const *meta_kv);
jem_status jem_ckpt_load(const char *path, jem_net **net);

/* Atomic replacement of a file with the given bytes: a temporary file beside
 * it, fsync, rename over path, fsync of the directory. On failure the old
 * file is intact and no temporary file is left. */
jem_status jem_write_file_atomic(const char *path, const void *data, size_t n);
/* Read a whole file; caller frees *out, which is NUL-terminated (so text can
 * be used as a string; *n excludes the NUL, n may be NULL). Refuses files
 * above max_bytes with JEM_ERR_FORMAT (max_bytes 0: no limit). */
jem_status jem_read_file(const char *path, size_t max_bytes, char **out, size_t *n);

#ifdef __cplusplus
}
#endif
#endif /* JEM_H */

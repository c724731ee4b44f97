/*
 * data.h: loaders and helpers shared by the files of src/data (internal).
 *
 * Dimension letters: N images, C channels, H height, W width.
 *
 * Pixel scaling, the same for every loader: an 8-bit sample v becomes
 * v / 255 * 2 - 1 and a 16-bit sample v / 65535 * 2 - 1 (16-bit PNG samples
 * keep their full precision), so 0 -> -1 and full scale -> +1 exactly.
 */
#ifndef JEM_DATA_H
#define JEM_DATA_H

#include "jem.h"

#include <stddef.h>
#include <stdint.h>

/* Largest data set accepted: N * C * H * W samples (2^31 - 1), checked
 * against the sizes a file declares before anything is allocated. */
#define JEM_DATA_MAX_SAMPLES ((uint64_t)INT32_MAX)

static inline float jem_px8(unsigned v) { return (float)((double)v / 255.0 * 2.0 - 1.0); }

/* ITU-R BT.601 luma weights (they sum to 1, so the luma of values in [-1, 1]
 * is the [-1, 1] value of the luma). */
#define JEM_LUMA_R 0.299
#define JEM_LUMA_G 0.587
#define JEM_LUMA_B 0.114

/* Allocate ds->x (N, C, H, W) and ds->y (N) for n images; other fields are
 * set (n_classes 0, name copied). `what` names the set in error messages. */
jem_status jem_data_alloc(jem_dataset *ds, int64_t n, int c, int h, int w, const char *what);
/* Copy name into ds->name, truncating to fit. */
void jem_data_set_name(jem_dataset *ds, const char *name);

/* Give ds a copy of n class names (n must be ds->n_classes; names NULL:
 * nothing changes). */
jem_status jem_dataset_set_classes(jem_dataset *ds, const char *const *names, int n);

/* CIFAR: check that the files of a set exist (without reading them). */
jem_status jem_cifar_check(const char *dir, int kind, int train);

/* IDX image + label files (plain or gzip). n_classes > 0: labels must be
 * below it; n_classes == 0: n_classes = max label + 1. */
jem_status jem_idx_load(const char *images, const char *labels, int n_classes, jem_dataset *ds);

/* CIFAR binary batches in dir: kind 10 (data_batch_1..5.bin / test_batch.bin)
 * or 100 (train.bin / test.bin, fine labels). */
jem_status jem_cifar_load(const char *dir, int kind, int train, jem_dataset *ds);

/* Folder of PNG files: root/<class>/<image>.png. */
jem_status jem_pngdir_load(const char *root, jem_dataset *ds);

/* How a spec is opened: check_only validates the syntax and that the files
 * exist without reading them (*ds stays zeroed); c, h, w (0: none) is the
 * shape of noise sets that do not name one. */
typedef struct {
    int check_only;
    int c, h, w;
} jem_spec_mode;

/* Open a spec nested in another one (depth: the nesting so far). */
jem_status jem_data_open_nested(const char *spec, jem_dataset *ds, int depth, const jem_spec_mode *m);

/* SPEC:classes=LIST[:relabel] (subset.c): the length of the SPEC part when
 * spec ends with a class filter, else 0; and opening such a spec. */
size_t jem_data_class_suffix(const char *spec);
jem_status jem_data_open_classes(const char *spec, size_t base_len, jem_dataset *ds, int depth, const jem_spec_mode *m);

/* corrupt:SPEC:KIND:SEVERITY[:seed=S] (corrupt.c); rest is what follows
 * "corrupt:". */
jem_status jem_data_open_corrupt(const char *spec, const char *rest, jem_dataset *ds, int depth,
                                 const jem_spec_mode *m);

/* The image operations behind the corruptions, on one plane (H, W) of
 * doubles (corrupt.c):
 *   gaussian blur with sigma in pixels (kernel radius ceil(4 sigma), at most
 *   16; borders clamped to the edge pixel); dst may be src; tmp (H, W);
 *   rotation by angle (radians) about the centre c = ((H-1)/2, (W-1)/2),
 *   then a shift t = (dy, dx): dst(p) = src(R^-1 (p - c - t) + c) for
 *   p = (y, x), R = [cos -sin; sin cos], with bilinear sampling and `fill`
 *   outside the image; a weight of exactly 0 leaves its neighbour out, so
 *   whole-pixel shifts copy exactly;
 *   area resampling from (SH, SW) to (DH, DW): each output pixel the
 *   area-weighted mean of the source pixels under its footprint;
 *   JPEG-like quantisation in place: u in [0, 1] -> 8-bit units - 128, 8x8
 *   blocks (padded with edge pixels), orthonormal DCT-II, coefficients
 *   rounded to multiples of the standard luminance table scaled to
 *   `quality` as the IJG library does (jem_jpeg_table), inverse DCT. */
void jem_img_gaussian_blur(double *dst, const double *src, double *tmp, int H, int W, double sigma);
void jem_img_affine(double *dst, const double *src, int H, int W, double angle, double dy, double dx, double fill);
void jem_img_resample_area(double *dst, int DH, int DW, const double *src, int SH, int SW);
void jem_img_jpeg(double *u, int H, int W, int quality);
void jem_jpeg_table(int quality, int q[64]);

#endif /* JEM_DATA_H */

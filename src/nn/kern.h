/*
 * kern.h: the convolution kernels (internal). First the layer-by-layer
 * kernels as the dispatcher (conv.c) runs them, NCHW in and out, one
 * table of functions per kernel file; then the per-image cores of the
 * AVX-512 kernels, which work on one image in channels-innermost layout
 * on buffers the caller owns: conv_winograd.c and conv_indirect.c wrap
 * them with the NCHW transposes (nn/hwc.h), block.c chains them through a
 * whole wide-ResNet block without leaving that layout. The cores need
 * channels that are multiples of 16; every pointer is a thread's own
 * except the transformed weights.
 */
#ifndef JEM_KERN_H
#define JEM_KERN_H

#include "nn/nn.h"

#include <stddef.h>
#include <stdint.h>
#include <string.h>

/* n rounded up to a multiple of 16 floats (64 bytes), for workspace parts */
static inline size_t jem_up16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- the layer-by-layer kernels. Each runs the passes the planner
 * (plan.h) gives it: the dispatcher calls them, and the tests call each on
 * its own. They return 0 when they ran, -1 when they could not (out of
 * memory, a CPU without AVX-512, a shape they do not take), having
 * written nothing then. */
typedef struct {
    /* out = the convolution of inp + bias (may be NULL), stored as st
     * says; tile: Winograd's output tile m (2 or 4), ignored elsewhere */
    int (*forward)(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                   const jem_conv_store *st, int tile, float *ws);
    /* whichever of dinp (stored as st says), dw and db (+=) is not NULL,
     * from dout */
    int (*backward)(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                    const jem_conv_shape *s, const jem_conv_store *st, int tile, float *ws);
    /* workspace floats per thread; 0 when the kernel does not take s */
    size_t (*ws)(const jem_conv_shape *s);
} jem_kernel_ops;
/* Winograd F(m x m, 3x3) for 3x3 stride-1 pad-1 layers with channels
 * multiples of 16, every pass (conv_winograd.c); indirect convolution for
 * 3x3 pad-1 layers of any stride with channels multiples of 16, every pass
 * (conv_indirect.c); direct 3x3 stride-1 pad-1 convolution, the forward
 * pass (output channels a multiple of 8, a store that sets) and the input
 * gradient (input channels a multiple of 8) (conv_avx512.c) */
extern const jem_kernel_ops jem_kernel_winograd, jem_kernel_indirect, jem_kernel_direct;

/* the gate and act_out parts of a store (nn.h) as passes over the stored
 * result out (n floats), for the kernels that cannot apply them while they
 * write */
static inline void jem_store_finish(float *out, size_t n, const jem_conv_store *st)
{
    if (st->gate) jem_act_grad_inplace(out, st->gate, n, st->act.act, st->act.slope);
    if (st->act_out) jem_act_forward(st->act_out, out, n, st->act.act, st->act.slope);
}

/* the transformed weights for w (nw floats) under tag (the kernel's kind
 * and sizes), nu floats, kept in *slot (see jem_wcache, nn.h): *fresh = 1
 * when the caller must fill them, 0 when they still hold the transform of
 * these weights. NULL when out of memory. */
float *jem_wcache_get(jem_wcache **slot, const float *w, size_t nw, uint64_t tag, size_t nu, int *fresh);
/* a tag for jem_wcache_get: the kernel's kind and the sizes it depends on */
static inline uint64_t jem_wcache_tag(int kind, int flip, int IC, int OC)
{
    return ((uint64_t)kind << 56) | ((uint64_t)flip << 48) | ((uint64_t)IC << 24) | (uint64_t)OC;
}

/* f rounded to bf16 (the upper half of its bits), to nearest even; a NaN
 * stays a NaN */
static inline uint16_t jem_bf16(float f)
{
    uint32_t b;
    memcpy(&b, &f, sizeof b);
    if ((b & 0x7fffffffu) > 0x7f800000u) return (uint16_t)((b >> 16) | 0x40);
    b += 0x7fffu + ((b >> 16) & 1);
    return (uint16_t)(b >> 16);
}

/* ---- Winograd F(m x m, 3x3), m = 2 or 4 (conv_winograd.c) */

/* rows (and columns) of the zero-padded input of an n-pixel side: the
 * tiles cover m * ceil(n / m) pixels, plus the border of 1 on each side */
static inline int jem_wino_padded(int n, int m) { return (n + m - 1) / m * m + 2; }
/* the transformed weights U ((m + 2)^2, IC, OC) of w, kept in *slot: w
 * (OC, IC, 3, 3) (flip 0), or the input gradient of a layer stored (IC,
 * OC, 3, 3) (flip 1); transforms with its own threads when stale. Call
 * outside parallel regions. NULL when out of memory. */
const float *jem_wino_weights(jem_wcache **slot, const float *w, int IC, int OC, int flip, int m);
/* the same transformed weights rounded to bf16, in pairs of input
 * channels: Ub[e][ic / 2][oc][ic % 2] (IC even), for jem_wino_core_bf16;
 * kept in a slot of their own. NULL when out of memory. */
const uint16_t *jem_wino_weights_bf16(jem_wcache **slot, const float *w, int IC, int OC, int flip, int m);
/* workspace floats of jem_wino_core (and jem_wino_core_bf16) and of
 * jem_wino_wgrad_core */
size_t jem_wino_core_ws(int IC, int OC, int m);
size_t jem_wino_wgrad_ws(int IC, int OC, int m);
/* Y (H, W, OC) = the convolution of Xp (jem_wino_padded(H, m),
 * jem_wino_padded(W, m), IC), the image at offset (1, 1) and zeros
 * around it, without bias */
void jem_wino_core(float *Y, const float *Xp, const float *U, int IC, int OC, int H, int W, int m, float *ws);
/* jem_wino_core with the elementwise products in bf16 with fp32 sums: the
 * transformed input tiles rounded to bf16 against Ub of
 * jem_wino_weights_bf16. Needs AVX512-BF16 (jem_conv_settings: bf16). */
void jem_wino_core_bf16(float *Y, const float *Xp, const uint16_t *Ub, int IC, int OC, int H, int W, int m, float *ws);
/* dU ((m + 2)^2, IC, OC) and then db (OC) += the gradients of the
 * transformed weights and of the bias from the padded input Xp (as above)
 * and the output gradient, whose pixel (y, x) is at Yt + (y ldy + x) OC */
void jem_wino_wgrad_core(float *dU, const float *Xp, const float *Yt, int ldy, int IC, int OC, int H, int W, int m,
                         float *ws);
/* inside a parallel region: dw (OC, IC, 3, 3) and db (OC) (either may be
 * NULL) += the sum over nth threads of the dU and db at dU0 + t * stride */
void jem_wino_reduce(float *dw, float *db, const float *dU0, size_t stride, int nth, int IC, int OC, int m);

/* ---- indirect convolution, 3x3 pad 1, stride st (conv_indirect.c) */

/* the tap-major weights of w (OC, IC, 3, 3) kept in *slot: (9, IC, OC)
 * for the forward pass (back 0), (9, OC, IC) for the input gradient */
const float *jem_ind_weights(jem_wcache **slot, const float *w, int IC, int OC, int back);
/* poff[p]: where output pixel p's 3x3 window starts in a padded (H + 2,
 * W + 2, IC) image */
void jem_ind_offsets(int *poff, int P, int OW, int Wp, int st, int IC);
/* Y (P, OC) = the convolution of Xp (H + 2, W + 2, IC), without bias */
void jem_ind_core(float *Y, const float *Xp, const float *Wk, const int *poff, int IC, int OC, int P, int Wp);
/* Dp (H + 2, W + 2, IC) = the input gradient of Yt (P, OC), border
 * included (the image is at offset (1, 1)) */
void jem_ind_bwd_core(float *Dp, const float *Yt, const float *Wb, const int *poff, int IC, int OC, int P, int H,
                      int Wp);
/* dW (9, IC, OC) and then db (OC) += the weight and bias gradients from Xp
 * (H + 2, W + 2, IC) followed by 16 floats of slack, and Yt (P, OC) */
void jem_ind_wgrad_core(float *dW, const float *Xp, const float *Yt, const int *poff, int IC, int OC, int P, int Wp);
/* a 1x1 convolution or its input gradient: row p of Y (N floats at Y +
 * yoff[p], or Y + p N when yoff is NULL) += row p of X (K floats at X +
 * xoff[p], or X + p K) times Wt (K, N), for p < P */
void jem_ind_pointwise(float *Y, const int *yoff, const float *X, const int *xoff, const float *Wt, int K, int N,
                       int P);
/* Wt (IC, OC) of a 1x1 convolution's weights w (OC, IC, 1, 1), kept in
 * *slot */
const float *jem_pw_weights(jem_wcache **slot, const float *w, int IC, int OC);
/* bf16 operands with fp32 sums (vdpbf16ps; AVX512-BF16, jem_conv_settings'
 * bf16), the same products as the fp32 cores above: images and output
 * gradients rounded with jem_to_bf16 into the same layout, weights in
 * pairs of rows, interleaved: (9, IC / 2, OC, 2) for the forward pass,
 * (9, OC / 2, IC, 2) for the input gradient (back 1); a 1x1 convolution's
 * (IC / 2, OC, 2), or (OC / 2, IC, 2) for its input gradient */
/* d[i] = x[i] rounded to bf16 (nearest even), n a multiple of 16; d may
 * lie in x's buffer where it starts at or below x: each group of 16 is
 * read before it is written */
void jem_to_bf16(uint16_t *d, const float *x, size_t n);
const uint16_t *jem_ind_weights_bf16(jem_wcache **slot, const float *w, int IC, int OC, int back);
const uint16_t *jem_pw_weights_bf16(jem_wcache **slot, const float *w, int IC, int OC, int back);
void jem_ind_core_bf16(float *Y, const uint16_t *Xpb, const uint16_t *Wkb, const int *poff, int IC, int OC, int P,
                       int Wp);
void jem_ind_bwd_core_bf16(float *Dp, const uint16_t *Ytb, const uint16_t *Wbb, const int *poff, int IC, int OC, int P,
                           int H, int Wp);
void jem_ind_pointwise_bf16(float *Y, const int *yoff, const uint16_t *Xb, const int *xoff, const uint16_t *Wtb, int K,
                            int N, int P);
/* inside a parallel region: dw (OC, IC, nk) (nk = 9 taps, or 1 for a 1x1
 * convolution) and db (OC) += the sum over nth threads of the dW (nk, IC,
 * OC) and db at dW0 + t * stride */
void jem_ind_reduce(float *dw, float *db, const float *dW0, size_t stride, int nth, int IC, int OC, int nk);

#endif

/*
 * kern.h: the per-image cores of the AVX-512 convolutions (internal). Each
 * core works on one image in channels-innermost layout, on buffers the
 * caller owns; conv_winograd.c and conv_indirect.c wrap them with the NCHW
 * transposes (nn/hwc.h), block.c chains them through a whole wide-ResNet
 * block without leaving that layout. Channels are multiples of 16; every
 * pointer is a thread's own except the transformed weights.
 */
#ifndef JEM_KERN_H
#define JEM_KERN_H

#include "nn/nn.h"

#include <stddef.h>

/* n rounded up to a multiple of 16 floats (64 bytes), for workspace parts */
static inline size_t jem_up16(size_t n) { return (n + 15) & ~(size_t)15; }

/* ---- Winograd F(m x m, 3x3), m = 2 or 4 (conv_winograd.c) */

/* rows (and columns) of the zero-padded input of an n-pixel side: the
 * tiles cover m * ceil(n / m) pixels, plus the border of 1 on each side */
static inline int jem_wino_padded(int n, int m) { return (n + m - 1) / m * m + 2; }
/* the transformed weights U ((m + 2)^2, IC, OC) of w, kept in *slot: w
 * (OC, IC, 3, 3) (flip 0), or the input gradient of a layer stored (IC,
 * OC, 3, 3) (flip 1); transforms with its own threads when stale. Call
 * outside parallel regions. NULL when out of memory. */
const float *jem_wino_weights(jem_wcache **slot, const float *w, int IC, int OC, int flip, int m);
/* workspace floats of jem_wino_core and of jem_wino_wgrad_core */
size_t jem_wino_core_ws(int IC, int OC, int m);
size_t jem_wino_wgrad_ws(int IC, int OC, int m);
/* Y (H, W, OC) = the convolution of Xp (jem_wino_padded(H, m),
 * jem_wino_padded(W, m), IC), the image at offset (1, 1) and zeros
 * around it, without bias */
void jem_wino_core(float *Y, const float *Xp, const float *U, int IC, int OC, int H, int W, int m, float *ws);
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
void jem_ind_wgrad_core(float *dW, const float *Xp, const float *Yt, const int *poff, int IC, int OC, int P,
                        int Wp);
/* a 1x1 convolution or its input gradient: row p of Y (N floats at Y +
 * yoff[p], or Y + p N when yoff is NULL) += row p of X (K floats at X +
 * xoff[p], or X + p K) times Wt (K, N), for p < P */
void jem_ind_pointwise(float *Y, const int *yoff, const float *X, const int *xoff, const float *Wt, int K, int N,
                       int P);
/* Wt (IC, OC) of a 1x1 convolution's weights w (OC, IC, 1, 1), kept in
 * *slot */
const float *jem_pw_weights(jem_wcache **slot, const float *w, int IC, int OC);
/* inside a parallel region: dw (OC, IC, nk) (nk = 9 taps, or 1 for a 1x1
 * convolution) and db (OC) += the sum over nth threads of the dW (nk, IC,
 * OC) and db at dW0 + t * stride */
void jem_ind_reduce(float *dw, float *db, const float *dW0, size_t stride, int nth, int IC, int OC, int nk);

#endif

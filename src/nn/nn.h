/*
 * nn.h: the layers of jem (internal). Each layer is a forward/backward pair
 * of plain functions with a fixed argument order: outputs, then inputs, then
 * sizes. Backward functions ACCUMULATE (+=) into every gradient they produce;
 * a NULL gradient pointer means "not needed" and skips that work (SGLD needs
 * the input gradient only, training needs both).
 *
 * Dimension letters: B batch, IC/OC input/output channels, H/W input height
 * and width, OH/OW output height and width, KH/KW kernel, N elements.
 *
 * Every layer has a naive reference version (suffix _ref) kept beside the
 * fast one, so tests can compare them.
 */
#ifndef JEM_NN_H
#define JEM_NN_H

#include "jem.h"

static inline int jem_conv_out(int n, int k, int stride, int pad)
{
    return (n + 2 * pad - k) / stride + 1;
}

/* ---- conv2d: out (B, OC, OH, OW) = inp (B, IC, H, W) * w (OC, IC, KH, KW) + bias (OC)
 * im2col + sgemm per image, images split across threads. ws: workspace of
 * jem_conv2d_ws() floats per thread, for omp_get_max_threads() threads. */
typedef struct {
    int B, IC, H, W, OC, KH, KW, stride, pad;
} jem_conv_shape;

/* How a convolution stores its result r (the forward output, or the input
 * gradient of a backward pass) into out, so that the passes around it fuse
 * into the store: out = r (+ bias in the forward pass), or out += r with
 * accumulate; then, with gate, out *= act'(gate) for LeakyReLU with the
 * given slope (1 where gate > 0, slope elsewhere; slope 0 is ReLU); then,
 * with act_out, act_out = LeakyReLU(out). gate and act_out have out's shape
 * and slope is in [0, 1]. The AVX-512 kernels apply it while they write;
 * the other paths in a pass after. */
typedef struct jem_wcache jem_wcache;
typedef struct {
    int accumulate;
    const float *gate;
    float *act_out;
    float slope;
    /* where the kernel may keep its transformed weights between calls (NULL:
     * transform on every call), see jem_wcache */
    jem_wcache **wcache;
} jem_conv_store;

/* A convolution's transformed weights (Winograd's G g G^T, the indirect
 * kernel's tap-major copy) kept with a copy of the weights they came from:
 * a call whose weights compare equal to the copy reuses them, so the K SGLD
 * steps of an iteration transform each layer's weights once. Created on
 * first use in the slot a jem_conv_store points at; one slot per layer and
 * direction, never shared between threads. */
void jem_wcache_free(jem_wcache *c);
/* the transformed weights for w (nw floats) under tag (the kernel's kind
 * and sizes), nu floats: *fresh = 1 when the caller must fill them, 0 when
 * they still hold the transform of these weights. NULL when out of memory. */
float *jem_wcache_get(jem_wcache **slot, const float *w, size_t nw, uint64_t tag, size_t nu, int *fresh);
/* a tag for jem_wcache_get: the kernel's kind and the sizes it depends on */
static inline uint64_t jem_wcache_tag(int kind, int flip, int IC, int OC)
{
    return ((uint64_t)kind << 56) | ((uint64_t)flip << 48) | ((uint64_t)IC << 24) | (uint64_t)OC;
}

/* the plain stores: "out = r + bias" (the forward pass) and "dinp += r"
 * (the input gradient) */
extern const jem_conv_store jem_store_set, jem_store_add;

size_t jem_conv2d_ws(const jem_conv_shape *s);
/* forward and backward with the result stored as st says (the two above
 * are these with "out = r + bias" and "dinp += r") */
void jem_conv2d_forward_st(float *out, const float *inp, const float *w, const float *bias,
                           const jem_conv_shape *s, const jem_conv_store *st, float *ws);
void jem_conv2d_backward_st(float *dinp, float *dw, float *db, const float *dout,
                            const float *inp, const float *w, const jem_conv_shape *s,
                            const jem_conv_store *st, float *ws);
void jem_conv2d_forward(float *out, const float *inp, const float *w,
                        const float *bias, const jem_conv_shape *s, float *ws);
void jem_conv2d_backward(float *dinp, float *dw, float *db, const float *dout,
                         const float *inp, const float *w,
                         const jem_conv_shape *s, float *ws);
/* the kernel the dispatcher picks for this shape on this CPU: which 0
 * forward, 1 input gradient, 2 weight gradient; "winograd", "indirect",
 * "direct" or "gemm" */
const char *jem_conv2d_kernel(const jem_conv_shape *s, int which);
void jem_conv2d_forward_ref(float *out, const float *inp, const float *w,
                            const float *bias, const jem_conv_shape *s);
void jem_conv2d_backward_ref(float *dinp, float *dw, float *db,
                             const float *dout, const float *inp,
                             const float *w, const jem_conv_shape *s);

/* Direct AVX-512 kernels for 3x3 stride-1 pad-1 convolutions (output
 * channels a multiple of 8). Return 0 when they ran, -1 when the shape or
 * the CPU does not fit (the caller then takes the GEMM path). The input
 * gradient accumulates (+=) like jem_conv2d_backward. */
int jem_conv3x3_avx512_available(void);
int jem_conv3x3_avx512_forward(float *out, const float *inp, const float *w,
                               const float *bias, const jem_conv_shape *s);
int jem_conv3x3_avx512_backward_input(float *dinp, const float *dout,
                                      const float *w, const jem_conv_shape *s);

/* Winograd F(2x2, 3x3) with AVX-512 for 3x3 stride-1 pad-1 convolutions
 * whose input and output channels are multiples of 16 (conv_winograd.c).
 * ws: jem_winograd_ws() floats per thread (jem_conv2d_ws() covers it).
 * Same return convention and accumulation as the direct kernels. */
int jem_winograd_available(void);
int jem_winograd_fits(const jem_conv_shape *s);
size_t jem_winograd_ws(const jem_conv_shape *s);
int jem_winograd_forward(float *out, const float *inp, const float *w,
                         const float *bias, const jem_conv_shape *s, float *ws);
int jem_winograd_backward_input(float *dinp, const float *dout,
                                const float *w, const jem_conv_shape *s, float *ws);
/* the same with the store chosen (st NULL: jem_store_set for the forward
 * pass, jem_store_add for the input gradient) and the output tile: m = 2
 * for F(2x2, 3x3), 4 for F(4x4, 3x3), 0 for jem_winograd_tile(s), what
 * the functions without a tile argument use: 4 unless 4x4 tiles pad the
 * image by more than 15 % (28 x 28: 4; 14 x 14: 2); JEM_WINOGRAD_TILE=2 or
 * 4 forces one. */
int jem_winograd_tile(const jem_conv_shape *s);
int jem_winograd_forward_st(float *out, const float *inp, const float *w, const float *bias,
                            const jem_conv_shape *s, const jem_conv_store *st, int m, float *ws);
int jem_winograd_backward_input_st(float *dinp, const float *dout, const float *w,
                                   const jem_conv_shape *s, const jem_conv_store *st, int m,
                                   float *ws);
/* dw (OC, IC, 3, 3) and db (OC) += the weight and bias gradients (either
 * may be NULL) */
int jem_winograd_backward_weight(float *dw, float *db, const float *dout,
                                 const float *inp, const jem_conv_shape *s, float *ws);
/* the same with the tile size m (2, 4, or 0 for jem_winograd_tile(s)) */
int jem_winograd_backward_weight_tile(float *dw, float *db, const float *dout, const float *inp,
                                      const jem_conv_shape *s, int m, float *ws);

/* Indirect AVX-512 convolution for 3x3 pad-1 layers of any stride whose
 * channels are multiples of 16 (conv_indirect.c): the dispatcher uses it
 * for the forward pass and input gradient of strided layers and for the
 * weight gradients of all of them. ws: jem_indirect_ws() floats per
 * thread. The backward accumulates into whichever of dinp, dw, db is not
 * NULL, like jem_conv2d_backward. */
int jem_indirect_fits(const jem_conv_shape *s);
size_t jem_indirect_ws(const jem_conv_shape *s);
int jem_indirect_forward(float *out, const float *inp, const float *w,
                         const float *bias, const jem_conv_shape *s, float *ws);
int jem_indirect_backward(float *dinp, float *dw, float *db, const float *dout,
                          const float *inp, const float *w,
                          const jem_conv_shape *s, float *ws);
/* with the store of the output or of dinp chosen (st NULL: as above) */
int jem_indirect_forward_st(float *out, const float *inp, const float *w, const float *bias,
                            const jem_conv_shape *s, const jem_conv_store *st, float *ws);
int jem_indirect_backward_st(float *dinp, float *dw, float *db, const float *dout,
                             const float *inp, const float *w, const jem_conv_shape *s,
                             const jem_conv_store *st, float *ws);

/* whether the convolutions' stores and the fused blocks apply this
 * activation themselves: LeakyReLU with a slope in [0, 1], or ReLU */
static inline int jem_act_fusable(jem_act a, float slope)
{
    return (a == JEM_ACT_LRELU && slope >= 0.0f && slope <= 1.0f) || a == JEM_ACT_RELU;
}

/* ---- a wide-ResNet block fused per image (block.c): from the block
 * input x, a1 = act(x), h1 = conv1(a1) + b1, out = conv2(act(h1)) + b2 +
 * shortcut(x), with act LeakyReLU of the given slope in [0, 1] (0: ReLU), conv2 of
 * stride 1 or 2 and the shortcut a 1x1 convolution of conv2's stride or,
 * without weights, the identity. h1 is kept channels innermost, (B, H, W,
 * OC); the input and output are NCHW or, as the descriptor says, channels
 * innermost too. */
typedef struct {
    jem_conv_shape s1, s2;       /* conv1 (IC -> OC, stride 1), conv2 (OC -> OC); B is the batch */
    const float *w1, *b1, *w2, *b2;
    const float *wsc, *bsc;      /* the shortcut (OC, IC, 1, 1) and (OC); NULL: identity */
    jem_wcache **wc1f, **wc2f, **wc1b, **wc2b, **wcsc; /* transformed weights: forward, input gradient */
    float slope;
    /* x and its gradient channels innermost, (B, H, W, IC), not NCHW; the
     * same for out and dout (then without act_out): between two fused
     * blocks */
    int in_hwc, out_hwc;
} jem_block_desc;
/* whether this CPU runs the block fused (AVX-512, channels multiples of
 * 16, JEM_FUSE not 0) */
int jem_block_fusable(const jem_conv_shape *s1, const jem_conv_shape *s2);
/* workspace floats per thread */
size_t jem_block_ws(const jem_conv_shape *s1, const jem_conv_shape *s2);
/* h1 and out (B, OC, OH, OW) as above; act_out = act(out) (when not NULL).
 * -1 when out of memory. */
int jem_block_forward(float *h1, float *out, float *act_out, const float *x, const jem_block_desc *d, float *ws);
/* da1 = the gradient of x from dout (set, not accumulated); dw1 .. dbsc
 * += the parameter gradients of conv1, conv2 and the shortcut (each may be
 * NULL). -1 when out of memory. */
int jem_block_backward(float *da1, float *dw1, float *db1, float *dw2, float *db2, float *dwsc, float *dbsc,
                       const float *dout, const float *x, const float *h1, const jem_block_desc *d, float *ws);

/* the blocks of n run fused (on 1, where jem_block_fusable allows; the
 * default) or layer by layer (on 0): the number of fused blocks. Drops the
 * last forward pass. */
int jem_net_fuse(jem_net *n, int on);

/* ---- linear: out (B, OUT) = inp (B, IN) w^T + bias; w (OUT, IN) */
void jem_linear_forward(float *out, const float *inp, const float *w,
                        const float *bias, int B, int IN, int OUT);
void jem_linear_backward(float *dinp, float *dw, float *db, const float *dout,
                         const float *inp, const float *w, int B, int IN, int OUT);
void jem_linear_forward_ref(float *out, const float *inp, const float *w,
                            const float *bias, int B, int IN, int OUT);

/* ---- elementwise activations over N elements; slope is LeakyReLU's */
void jem_act_forward(float *out, const float *inp, size_t N, jem_act a, float slope);
void jem_act_backward(float *dinp, const float *dout, const float *inp,
                      size_t N, jem_act a, float slope);
/* d *= f'(inp), in place */
void jem_act_grad_inplace(float *d, const float *inp, size_t N, jem_act a, float slope);
float jem_act_ref(float x, jem_act a, float slope);

/* ---- average pooling, kernel k, stride s, no padding: (B, C, H, W) -> (B, C, OH, OW) */
void jem_avgpool_forward(float *out, const float *inp, int B, int C, int H,
                         int W, int k, int s);
void jem_avgpool_backward(float *dinp, const float *dout, int B, int C, int H,
                          int W, int k, int s);
/* ---- global average pooling: (B, C, H, W) -> (B, C) */
void jem_gap_forward(float *out, const float *inp, int B, int C, int HW);
void jem_gap_backward(float *dinp, const float *dout, int B, int C, int HW);

/* ---- residual add: out = a + b; backward: da += dout, db += dout */
void jem_add_forward(float *out, const float *a, const float *b, size_t N);
void jem_add_backward(float *da, float *db, const float *dout, size_t N);

#endif

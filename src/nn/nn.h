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
#include "nn/act.h"

static inline int jem_conv_out(int n, int k, int stride, int pad) { return (n + 2 * pad - k) / stride + 1; }

/* ---- conv2d: out (B, OC, OH, OW) = inp (B, IC, H, W) * w (OC, IC, KH, KW) + bias (OC)
 * One dispatcher (conv.c) runs each pass on the kernel the planner
 * (plan.h) chooses for the shape, the CPU and the settings: Winograd,
 * indirect or direct AVX-512 kernels for 3x3 layers, im2col + sgemm for
 * the rest and wherever the CPU lacks AVX-512. ws: jem_conv2d_ws() floats
 * per thread, for omp_get_max_threads() threads. */
typedef struct {
    int B, IC, H, W, OC, KH, KW, stride, pad;
} jem_conv_shape;

/* How a convolution stores its result r (the forward output, or the input
 * gradient of a backward pass) into out, so that the passes around it fuse
 * into the store: out = r (+ bias in the forward pass), or out += r with
 * accumulate; then, with gate, out *= act'(gate); then, with act_out,
 * act_out = act(out), act being the fused activation (act.h). gate and
 * act_out have out's shape. The Winograd and indirect kernels apply it
 * while they write, the others in a pass after. */
typedef struct jem_wcache jem_wcache;
typedef struct {
    int accumulate;
    const float *gate;
    float *act_out;
    jem_fact act;
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

/* the plain stores: "out = r + bias" (the forward pass) and "dinp += r"
 * (the input gradient) */
extern const jem_conv_store jem_store_set, jem_store_add;

size_t jem_conv2d_ws(const jem_conv_shape *s);
/* the forward pass, stored as st says (NULL: jem_store_set) */
void jem_conv2d_forward(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s,
                        const jem_conv_store *st, float *ws);
/* the gradients of whichever of dinp, dw and db is not NULL from dout
 * (B, OC, OH, OW): dinp stored as st says (NULL: jem_store_add, dinp +=),
 * dw and db += */
void jem_conv2d_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                         const jem_conv_shape *s, const jem_conv_store *st, float *ws);
void jem_conv2d_forward_ref(float *out, const float *inp, const float *w, const float *bias, const jem_conv_shape *s);
void jem_conv2d_backward_ref(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w,
                             const jem_conv_shape *s);

/* ---- a wide-ResNet block fused per image (block.c): from the block
 * input x, a1 = act(x), h1 = conv1(a1) + b1, out = conv2(act(h1)) + b2 +
 * shortcut(x), with act the fused activation (act.h), conv1 Winograd,
 * conv2 Winograd at stride 1 or indirect at stride 2, and the shortcut a
 * 1x1 convolution of conv2's stride or, without weights, the identity, as
 * the block's plan (plan.h) says. h1 is kept channels innermost, (B, H, W,
 * OC); the input and output are NCHW or, as the descriptor says, channels
 * innermost too. */
typedef struct jem_block_plan jem_block_plan;
typedef struct {
    jem_conv_shape s1, s2;      /* conv1 (IC -> OC, stride 1), conv2 (OC -> OC); B is the batch */
    const jem_block_plan *plan; /* jem_conv_plan_block's for these shapes, fused */
    const float *w1, *b1, *w2, *b2;
    const float *wsc, *bsc;                            /* the shortcut (OC, IC, 1, 1) and (OC); NULL: identity */
    jem_wcache **wc1f, **wc2f, **wc1b, **wc2b, **wcsc; /* transformed weights: forward, input gradient */
    /* x and its gradient channels innermost, (B, H, W, IC), not NCHW; the
     * same for out and dout (then without act_out): between two fused
     * blocks */
    int in_hwc, out_hwc;
    /* bf16 products with fp32 sums (kern.h) in every convolution of the
     * forward pass and of an input gradient asked without parameter
     * gradients; the weights rounded once into wcb[0..5] (conv1, conv2
     * forward, conv1, conv2 input gradient, shortcut forward, input
     * gradient). 0: fp32 */
    int bf16;
    jem_wcache **wcb;
} jem_block_desc;
/* workspace floats per thread for a block of plan p (0 when p is not
 * fused) */
size_t jem_block_ws(const jem_block_plan *p, const jem_conv_shape *s1, const jem_conv_shape *s2);
/* h1 and out (B, OC, OH, OW) as above; act_out = act(out) (when not NULL).
 * -1 when out of memory. */
int jem_block_forward(float *h1, float *out, float *act_out, const float *x, const jem_block_desc *d, float *ws);
/* da1 = the gradient of x from dout (set, not accumulated); dw1 .. dbsc
 * += the parameter gradients of conv1, conv2 and the shortcut (each may be
 * NULL). -1 when out of memory. */
int jem_block_backward(float *da1, float *dw1, float *db1, float *dw2, float *db2, float *dwsc, float *dbsc,
                       const float *dout, const float *x, const float *h1, const jem_block_desc *d, float *ws);

/* the blocks of n run fused (on 1, where their plan allows; the default)
 * or layer by layer (on 0): the number of fused blocks. Drops the last
 * forward pass. */
int jem_net_fuse(jem_net *n, int on);

/* ---- linear: out (B, OUT) = inp (B, IN) w^T + bias; w (OUT, IN) */
void jem_linear_forward(float *out, const float *inp, const float *w, const float *bias, int B, int IN, int OUT);
void jem_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int B,
                         int IN, int OUT);
void jem_linear_forward_ref(float *out, const float *inp, const float *w, const float *bias, int B, int IN, int OUT);

/* ---- elementwise activations over N elements; slope is LeakyReLU's */
void jem_act_forward(float *out, const float *inp, size_t N, jem_act a, float slope);
void jem_act_backward(float *dinp, const float *dout, const float *inp, size_t N, jem_act a, float slope);
/* d *= f'(inp), in place */
void jem_act_grad_inplace(float *d, const float *inp, size_t N, jem_act a, float slope);

/* ---- average pooling, kernel k, stride s, no padding: (B, C, H, W) -> (B, C, OH, OW) */
void jem_avgpool_forward(float *out, const float *inp, int B, int C, int H, int W, int k, int s);
void jem_avgpool_backward(float *dinp, const float *dout, int B, int C, int H, int W, int k, int s);
/* ---- global average pooling: (B, C, H, W) -> (B, C) */
void jem_gap_forward(float *out, const float *inp, int B, int C, int HW);
void jem_gap_backward(float *dinp, const float *dout, int B, int C, int HW);

/* ---- residual add: out = a + b; backward: da += dout, db += dout */
void jem_add_forward(float *out, const float *a, const float *b, size_t N);
void jem_add_backward(float *da, float *db, const float *dout, size_t N);

#endif

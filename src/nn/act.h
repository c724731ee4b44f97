/*
 * act.h: the activation the AVX-512 kernels apply themselves (internal).
 * The convolutions' stores (jem_conv_store, nn.h), the fused blocks
 * (block.c) and jem_act_forward's vector path all apply the activation
 * and its derivative through this file and nowhere else: fusing another
 * activation means a case in jem_fact_of and its vector forms in
 * jem_factv_apply and jem_factv_grad.
 *
 * Fused today: LeakyReLU with a slope in [0, 1], ReLU being LeakyReLU of
 * slope 0: act(x) = max(slope x, x) (branch-free; a NaN propagates, max
 * returning its second operand when either is NaN), act'(x) = 1 where
 * x > 0 and slope elsewhere.
 */
#ifndef JEM_ACT_H
#define JEM_ACT_H

#include "jem.h"

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define HAVE_X86 1
#else
#define HAVE_X86 0
#endif

/* a fused activation: act as jem_act_forward takes it (JEM_ACT_LRELU
 * when slope > 0, JEM_ACT_RELU for slope 0) */
typedef struct {
    jem_act act;
    float slope;
} jem_fact;

/* whether activation a (slope: LeakyReLU's) fuses; if so *f (may be
 * NULL) is its fused form */
static inline int jem_fact_of(jem_act a, float slope, jem_fact *f)
{
    if (!(a == JEM_ACT_RELU || (a == JEM_ACT_LRELU && slope >= 0.0f && slope <= 1.0f))) return 0;
    if (f) {
        f->slope = a == JEM_ACT_RELU ? 0.0f : slope;
        f->act = f->slope > 0.0f ? JEM_ACT_LRELU : JEM_ACT_RELU;
    }
    return 1;
}

#if HAVE_X86
/* the constants of f's vector forms, made once before a loop */
typedef struct {
    __m512 slope, one, zero;
} jem_factv;

__attribute__((target("avx512f"), always_inline)) static inline jem_factv jem_factv_make(const jem_fact *f)
{
    jem_factv c = {_mm512_set1_ps(f->slope), _mm512_set1_ps(1.0f), _mm512_setzero_ps()};
    return c;
}

/* act(x), 16 lanes */
__attribute__((target("avx512f"), always_inline)) static inline __m512 jem_factv_apply(const jem_factv *c, __m512 x)
{
    return _mm512_max_ps(_mm512_mul_ps(c->slope, x), x);
}

/* d * act'(x), 16 lanes */
__attribute__((target("avx512f"), always_inline)) static inline __m512 jem_factv_grad(const jem_factv *c, __m512 d,
                                                                                      __m512 x)
{
    const __mmask16 pos = _mm512_cmp_ps_mask(x, c->zero, _CMP_GT_OQ);
    return _mm512_mul_ps(d, _mm512_mask_blend_ps(pos, c->slope, c->one));
}
#endif

#endif

/* Linear, activations, pooling and residual add. */
#include "nn/nn.h"
#include "nn/plan.h"

#include <math.h>
#include <string.h>
#include <cblas.h>

/* ---- linear ---- */

void jem_linear_forward(float *out, const float *inp, const float *w, const float *bias, int B, int IN, int OUT)
{
    if (bias)
        for (int b = 0; b < B; b++) memcpy(out + (size_t)b * OUT, bias, sizeof(float) * OUT);
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, B, OUT, IN, 1.0f, inp, IN, w, IN, bias ? 1.0f : 0.0f, out,
                OUT);
}

void jem_linear_backward(float *dinp, float *dw, float *db, const float *dout, const float *inp, const float *w, int B,
                         int IN, int OUT)
{
    if (dinp)
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasNoTrans, B, IN, OUT, 1.0f, dout, OUT, w, IN, 1.0f, dinp, IN);
    if (dw) cblas_sgemm(CblasRowMajor, CblasTrans, CblasNoTrans, OUT, IN, B, 1.0f, dout, OUT, inp, IN, 1.0f, dw, IN);
    if (db)
        for (int b = 0; b < B; b++)
            for (int o = 0; o < OUT; o++) db[o] += dout[(size_t)b * OUT + o];
}

void jem_linear_forward_ref(float *out, const float *inp, const float *w, const float *bias, int B, int IN, int OUT)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < IN; i++) acc += (double)inp[(size_t)b * IN + i] * w[(size_t)o * IN + i];
            out[(size_t)b * OUT + o] = (float)acc;
        }
}

/* ---- activations ---- */

static inline float sigmoidf(float x) { return 1.0f / (1.0f + expf(-x)); }

#if HAVE_X86
/* the fused activation's vector form (act.h) over n floats */
__attribute__((target("avx512f"))) static void fact_avx512(float *out, const float *inp, long n, const jem_fact *f)
{
    const jem_factv c = jem_factv_make(f);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n / 16; i++)
        _mm512_storeu_ps(out + 16 * i, jem_factv_apply(&c, _mm512_loadu_ps(inp + 16 * i)));
    const long t = n / 16 * 16;
    const __mmask16 mk = (__mmask16)((1u << (n - t)) - 1u);
    if (mk) _mm512_mask_storeu_ps(out + t, mk, jem_factv_apply(&c, _mm512_maskz_loadu_ps(mk, inp + t)));
}

/* d *= act'(inp) */
__attribute__((target("avx512f"))) static void fact_grad_avx512(float *d, const float *inp, long n, const jem_fact *f)
{
    const jem_factv c = jem_factv_make(f);
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n / 16; i++)
        _mm512_storeu_ps(d + 16 * i, jem_factv_grad(&c, _mm512_loadu_ps(d + 16 * i), _mm512_loadu_ps(inp + 16 * i)));
    const long t = n / 16 * 16;
    const __mmask16 mk = (__mmask16)((1u << (n - t)) - 1u);
    if (mk)
        _mm512_mask_storeu_ps(d + t, mk,
                              jem_factv_grad(&c, _mm512_maskz_loadu_ps(mk, d + t), _mm512_maskz_loadu_ps(mk, inp + t)));
}
#else
static void fact_avx512(float *o, const float *i, long n, const jem_fact *f)
{
    (void)o;
    (void)i;
    (void)n;
    (void)f;
}
static void fact_grad_avx512(float *d, const float *i, long n, const jem_fact *f)
{
    (void)d;
    (void)i;
    (void)n;
    (void)f;
}
#endif

void jem_act_forward(float *out, const float *inp, size_t N, jem_act a, float slope)
{
    const long n = (long)N;
    jem_fact f;
    if (jem_fact_of(a, slope, &f) && jem_conv_settings_get()->avx512) {
        fact_avx512(out, inp, n, &f);
        return;
    }
    switch (a) {
    case JEM_ACT_LRELU:
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : slope * inp[i];
        break;
    case JEM_ACT_RELU:
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) out[i] = inp[i] > 0.0f ? inp[i] : 0.0f;
        break;
    case JEM_ACT_SILU:
#pragma omp parallel for schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) out[i] = inp[i] * sigmoidf(inp[i]);
        break;
    }
}

static inline float act_deriv(float x, jem_act a, float slope)
{
    switch (a) {
    case JEM_ACT_LRELU: return x > 0.0f ? 1.0f : slope;
    case JEM_ACT_RELU: return x > 0.0f ? 1.0f : 0.0f;
    case JEM_ACT_SILU: {
        float sg = sigmoidf(x);
        return sg * (1.0f + x * (1.0f - sg));
    }
    }
    return 1.0f;
}

void jem_act_backward(float *dinp, const float *dout, const float *inp, size_t N, jem_act a, float slope)
{
    const long n = (long)N;
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) dinp[i] += dout[i] * act_deriv(inp[i], a, slope);
}

void jem_act_grad_inplace(float *d, const float *inp, size_t N, jem_act a, float slope)
{
    const long n = (long)N;
    jem_fact f;
    if (jem_fact_of(a, slope, &f) && jem_conv_settings_get()->avx512) {
        fact_grad_avx512(d, inp, n, &f);
        return;
    }
    if (a == JEM_ACT_LRELU) {
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) d[i] *= inp[i] > 0.0f ? 1.0f : slope;
        return;
    }
#pragma omp parallel for schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) d[i] *= act_deriv(inp[i], a, slope);
}

/* ---- pooling ---- */

void jem_avgpool_forward(float *out, const float *inp, int B, int C, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    const float inv = 1.0f / (float)(k * k);
    for (long bc = 0; bc < (long)B * C; bc++) {
        const float *ip = inp + (size_t)bc * H * W;
        float *op = out + (size_t)bc * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float acc = 0.0f;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) acc += ip[(size_t)(oh * s + i) * W + ow * s + j];
                op[oh * OW + ow] = acc * inv;
            }
    }
}

void jem_avgpool_backward(float *dinp, const float *dout, int B, int C, int H, int W, int k, int s)
{
    const int OH = (H - k) / s + 1, OW = (W - k) / s + 1;
    const float inv = 1.0f / (float)(k * k);
    for (long bc = 0; bc < (long)B * C; bc++) {
        float *ip = dinp + (size_t)bc * H * W;
        const float *op = dout + (size_t)bc * OH * OW;
        for (int oh = 0; oh < OH; oh++)
            for (int ow = 0; ow < OW; ow++) {
                float g = op[oh * OW + ow] * inv;
                for (int i = 0; i < k; i++)
                    for (int j = 0; j < k; j++) ip[(size_t)(oh * s + i) * W + ow * s + j] += g;
            }
    }
}

void jem_gap_forward(float *out, const float *inp, int B, int C, int HW)
{
    const float inv = 1.0f / (float)HW;
    for (long bc = 0; bc < (long)B * C; bc++) {
        const float *ip = inp + (size_t)bc * HW;
        float acc = 0.0f;
        for (int i = 0; i < HW; i++) acc += ip[i];
        out[bc] = acc * inv;
    }
}

void jem_gap_backward(float *dinp, const float *dout, int B, int C, int HW)
{
    const float inv = 1.0f / (float)HW;
    for (long bc = 0; bc < (long)B * C; bc++) {
        float g = dout[bc] * inv;
        float *ip = dinp + (size_t)bc * HW;
        for (int i = 0; i < HW; i++) ip[i] += g;
    }
}

/* ---- residual add ---- */

void jem_add_forward(float *out, const float *a, const float *b, size_t N)
{
    const long n = (long)N;
#pragma omp parallel for simd schedule(static) if (n > 65536)
    for (long i = 0; i < n; i++) out[i] = a[i] + b[i];
}

void jem_add_backward(float *da, float *db, const float *dout, size_t N)
{
    for (size_t i = 0; i < N; i++) {
        if (da) da[i] += dout[i];
        if (db) db[i] += dout[i];
    }
}

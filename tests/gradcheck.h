/* Double-precision reference layers for gradient checks: the function the
 * float kernels compute, evaluated in double, differentiated by central
 * finite differences. */
#ifndef JEM_GRADCHECK_H
#define JEM_GRADCHECK_H

#include "nn/nn.h"
#include <math.h>
#include <stdlib.h>
#include <string.h>

static inline void conv_d(double *out, const double *inp, const double *w, const double *bias, const jem_conv_shape *s)
{
    const int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad);
    const int OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    for (int b = 0; b < s->B; b++)
        for (int oc = 0; oc < s->OC; oc++)
            for (int oh = 0; oh < OH; oh++)
                for (int ow = 0; ow < OW; ow++) {
                    double acc = bias ? bias[oc] : 0.0;
                    for (int ic = 0; ic < s->IC; ic++)
                        for (int kh = 0; kh < s->KH; kh++)
                            for (int kw = 0; kw < s->KW; kw++) {
                                int ih = oh * s->stride - s->pad + kh, iw = ow * s->stride - s->pad + kw;
                                if (ih < 0 || ih >= s->H || iw < 0 || iw >= s->W) continue;
                                acc += inp[(((size_t)b * s->IC + ic) * s->H + ih) * s->W + iw] *
                                       w[(((size_t)oc * s->IC + ic) * s->KH + kh) * s->KW + kw];
                            }
                    out[(((size_t)b * s->OC + oc) * OH + oh) * OW + ow] = acc;
                }
}

static inline double act_d(double x, jem_act a, double slope)
{
    switch (a) {
    case JEM_ACT_LRELU: return x > 0 ? x : slope * x;
    case JEM_ACT_RELU: return x > 0 ? x : 0;
    case JEM_ACT_SILU: return x / (1.0 + exp(-x));
    }
    return x;
}

static inline void linear_d(double *out, const double *inp, const double *w, const double *bias, int B, int IN, int OUT)
{
    for (int b = 0; b < B; b++)
        for (int o = 0; o < OUT; o++) {
            double acc = bias ? bias[o] : 0.0;
            for (int i = 0; i < IN; i++) acc += inp[(size_t)b * IN + i] * w[(size_t)o * IN + i];
            out[(size_t)b * OUT + o] = acc;
        }
}

/* normalised error ||a - b|| / max(||a||, ||b||, tiny) */
static inline double rel_err_fd(const float *a, const double *b, size_t n)
{
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        na += (double)a[i] * a[i];
        nb += b[i] * b[i];
    }
    double den = sqrt(na > nb ? na : nb);
    return sqrt(d) / (den > 1e-30 ? den : 1e-30);
}

static inline double rel_err_ff(const float *a, const float *b, size_t n)
{
    double d = 0, na = 0, nb = 0;
    for (size_t i = 0; i < n; i++) {
        d += ((double)a[i] - b[i]) * ((double)a[i] - b[i]);
        na += (double)a[i] * a[i];
        nb += (double)b[i] * b[i];
    }
    double den = sqrt(na > nb ? na : nb);
    return sqrt(d) / (den > 1e-30 ? den : 1e-30);
}

static inline void fill_uniform(float *x, size_t n, jem_rng *r, float lo, float hi)
{
    for (size_t i = 0; i < n; i++) x[i] = lo + (hi - lo) * jem_rng_uniform(r);
}

static inline double *to_d(const float *x, size_t n)
{
    double *d = malloc(sizeof(double) * (n ? n : 1));
    for (size_t i = 0; i < n; i++) d[i] = x[i];
    return d;
}

#endif

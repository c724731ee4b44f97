/* Optimisers (Adam, SGD with momentum) and learning-rate schedules. */
#include "jem.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

void jem_opt_defaults(jem_opt_cfg *c, jem_opt_kind kind)
{
    memset(c, 0, sizeof *c);
    c->kind = kind;
    c->lr = kind == JEM_OPT_ADAM ? 1e-3f : 0.1f;
    c->beta1 = 0.9f;
    c->beta2 = 0.999f;
    c->eps = 1e-8f;
    c->momentum = 0.9f;
}

jem_status jem_opt_init(jem_opt *o, const jem_opt_cfg *c, size_t n)
{
    memset(o, 0, sizeof *o);
    o->cfg = *c;
    o->n = n;
    o->m = calloc(n ? n : 1, sizeof(float));
    o->v = c->kind == JEM_OPT_ADAM ? calloc(n ? n : 1, sizeof(float)) : NULL;
    if (!o->m || (c->kind == JEM_OPT_ADAM && !o->v)) {
        jem_opt_free(o);
        return jem_fail(JEM_ERR_NOMEM, "out of memory for optimiser state (%zu parameters)", n);
    }
    return JEM_OK;
}

void jem_opt_free(jem_opt *o)
{
    if (!o) return;
    free(o->m);
    free(o->v);
    o->m = o->v = NULL;
}

void jem_opt_step(jem_opt *o, float *params, const float *grads, float lr)
{
    const jem_opt_cfg *c = &o->cfg;
    const long n = (long)o->n;
    const float wd = c->weight_decay;
    o->t++;
    if (c->kind == JEM_OPT_ADAM) {
        const float b1 = c->beta1, b2 = c->beta2, eps = c->eps;
        const double bc1 = 1.0 - pow(b1, (double)o->t), bc2 = 1.0 - pow(b2, (double)o->t);
        const float step = (float)(lr / bc1), rbc2 = (float)(1.0 / sqrt(bc2));
        float *m = o->m, *v = o->v;
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) {
            float g = grads[i] + wd * params[i];
            m[i] = b1 * m[i] + (1.0f - b1) * g;
            v[i] = b2 * v[i] + (1.0f - b2) * g * g;
            params[i] -= step * m[i] / (sqrtf(v[i]) * rbc2 + eps);
        }
    } else {
        const float mu = c->momentum;
        float *m = o->m;
        const int nest = c->nesterov;
        const int first = o->t == 1;
#pragma omp parallel for simd schedule(static) if (n > 65536)
        for (long i = 0; i < n; i++) {
            float g = grads[i] + wd * params[i];
            m[i] = first ? g : mu * m[i] + g;
            params[i] -= lr * (nest ? g + mu * m[i] : m[i]);
        }
    }
}

float jem_sched_lr(const jem_sched *s, int64_t iter, double frac)
{
    float lr = s->lr;
    if (s->cosine) {
        frac = frac < 0 ? 0 : frac > 1 ? 1 : frac;
        lr *= (float)(0.5 * (1.0 + cos(3.141592653589793 * frac)));
    }
    if (s->warmup > 0 && iter < s->warmup) lr *= (float)(iter + 1) / (float)s->warmup;
    for (int i = 0; i < s->n_milestones; i++)
        if (iter >= s->milestones[i]) lr *= s->gamma;
    return lr;
}

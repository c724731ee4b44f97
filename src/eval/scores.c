/* Per-input out-of-distribution scores of a network: higher = more
 * in-distribution for every score. */
#include "eval/eval.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

const char *jem_score_name(int k)
{
    static const char *names[JEM_NSCORES] = {"logpx", "max_softmax", "max_logit", "neg_grad_norm", "energy_t"};
    return k >= 0 && k < JEM_NSCORES ? names[k] : "?";
}

jem_status jem_scores(jem_net *net, const float *x, int n, double T, int want_grad, double *out, float *logits_out)
{
    const jem_arch *a = jem_net_arch(net);
    const int K = a->n_classes;
    const size_t D = (size_t)a->in_c * a->in_h * a->in_w;
    if (!(T > 0)) return jem_fail(JEM_ERR_ARG, "score temperature must be positive, got %g", T);
    const int chunk = 128;
    float *lg = malloc(sizeof(float) * (size_t)chunk * K);
    float *g = want_grad ? malloc(sizeof(float) * (size_t)chunk * D) : NULL;
    float *lp = malloc(sizeof(float) * chunk);
    if (!lg || !lp || (want_grad && !g)) {
        free(lg);
        free(g);
        free(lp);
        return jem_fail(JEM_ERR_NOMEM, "scores: out of memory");
    }
    jem_status s = JEM_OK;
    for (int i = 0; i < n && !s; i += chunk) {
        int b = n - i < chunk ? n - i : chunk;
        const float *xb = x + (size_t)i * D;
        s = jem_net_forward(net, xb, b, lg);
        if (s) break;
        if (logits_out) memcpy(logits_out + (size_t)i * K, lg, sizeof(float) * (size_t)b * K);
        for (int k = 0; k < b; k++) {
            const float *l = lg + (size_t)k * K;
            double mx = l[0];
            for (int c = 1; c < K; c++) mx = l[c] > mx ? l[c] : mx;
            double se = 0, set = 0;
            for (int c = 0; c < K; c++) {
                se += exp(l[c] - mx);
                set += exp((l[c] - mx) / T);
            }
            double *o = out + (size_t)(i + k) * JEM_NSCORES;
            o[JEM_SCORE_LOGPX] = mx + log(se);
            o[JEM_SCORE_MAXSOFTMAX] = 1.0 / se;
            o[JEM_SCORE_MAXLOGIT] = mx;
            o[JEM_SCORE_ENERGY_T] = mx + T * log(set);
            o[JEM_SCORE_GRADNORM] = 0;
        }
        if (want_grad) {
            s = jem_net_energy(net, xb, b, NULL, lp, g);
            if (s) break;
            for (int k = 0; k < b; k++) {
                double q = 0;
                const float *gk = g + (size_t)k * D;
                for (size_t d = 0; d < D; d++) q += (double)gk[d] * gk[d];
                out[(size_t)(i + k) * JEM_NSCORES + JEM_SCORE_GRADNORM] = -sqrt(q);
            }
        }
    }
    free(lg);
    free(g);
    free(lp);
    return s;
}

/* ODIN (Liang et al. 2018): temperature scaling and a small input
 * perturbation that raises the confidence of in-distribution inputs more
 * than that of OOD ones. See ood_detect.h.
 *
 * Dimension letters: B batch, K classes, D = C H W input values. */
#include "eval/ood_detect.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

jem_status jem_odin_scores(jem_net *net, const float *x, int n, double T, double eps, double *score, float *xp)
{
    if (!(T > 0) || !isfinite(T)) return jem_fail(JEM_ERR_ARG, "odin: temperature %g must be positive", T);
    if (!(eps >= 0) || !isfinite(eps)) return jem_fail(JEM_ERR_ARG, "odin: perturbation %g must be >= 0", eps);
    if (n < 0) return jem_fail(JEM_ERR_ARG, "odin: %d images", n);
    const jem_arch *a = jem_net_arch(net);
    const int K = a->n_classes, chunk = 64;
    const size_t D = (size_t)a->in_c * a->in_h * a->in_w;
    float *lg = malloc(sizeof(float) * (size_t)chunk * K); /* (B, K) logits */
    float *dl = malloc(sizeof(float) * (size_t)chunk * K); /* (B, K) d log S_y* / d logits */
    float *g = malloc(sizeof(float) * (size_t)chunk * D);  /* (B, D) input gradient */
    float *xb = malloc(sizeof(float) * (size_t)chunk * D); /* (B, D) perturbed inputs */
    if (!lg || !dl || !g || !xb) {
        free(lg);
        free(dl);
        free(g);
        free(xb);
        return jem_fail(JEM_ERR_NOMEM, "odin: out of memory");
    }
    jem_status s = JEM_OK;
    for (int i = 0; i < n && !s; i += chunk) {
        const int B = n - i < chunk ? n - i : chunk;
        const float *x0 = x + (size_t)i * D;
        s = jem_net_forward(net, x0, B, lg);
        if (s) break;
        /* log S_y*(l / T) = l_y* / T - logsumexp(l / T): its gradient is
         * (onehot(y*) - softmax(l / T)) / T */
        for (int b = 0; b < B; b++) {
            const float *l = lg + (size_t)b * K;
            int ym = 0;
            for (int k = 1; k < K; k++) ym = l[k] > l[ym] ? k : ym;
            double se = 0;
            for (int k = 0; k < K; k++) se += exp((l[k] - (double)l[ym]) / T);
            for (int k = 0; k < K; k++) {
                const double p = exp((l[k] - (double)l[ym]) / T) / se;
                dl[(size_t)b * K + k] = (float)(((k == ym) - p) / T);
            }
        }
        s = jem_net_backward(net, dl, g, 0);
        if (s) break;
        /* x' = x - eps sign(-grad) = x + eps sign(grad) */
        for (size_t t = 0; t < (size_t)B * D; t++) xb[t] = (float)(x0[t] + eps * ((g[t] > 0) - (g[t] < 0)));
        if (xp) memcpy(xp + (size_t)i * D, xb, sizeof(float) * (size_t)B * D);
        s = jem_net_forward(net, xb, B, lg);
        if (s) break;
        for (int b = 0; b < B; b++) {
            const float *l = lg + (size_t)b * K;
            double mx = l[0], se = 0;
            for (int k = 1; k < K; k++) mx = l[k] > mx ? l[k] : mx;
            for (int k = 0; k < K; k++) se += exp((l[k] - mx) / T);
            score[i + b] = 1.0 / se;
        }
    }
    free(lg);
    free(dl);
    free(g);
    free(xb);
    return s;
}

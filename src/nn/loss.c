/* Softmax, logsumexp and cross-entropy over rows of logits (B, K). */
#include "jem.h"

#include <math.h>

void jem_logsumexp(const float *logits, int B, int K, float *out)
{
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * K;
        float mx = l[0];
        for (int k = 1; k < K; k++) mx = l[k] > mx ? l[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)l[k] - mx);
        out[b] = (float)(mx + log(s));
    }
}

void jem_softmax(const float *logits, int B, int K, float *probs)
{
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * K;
        float *p = probs + (size_t)b * K;
        float mx = l[0];
        for (int k = 1; k < K; k++) mx = l[k] > mx ? l[k] : mx;
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)l[k] - mx);
        for (int k = 0; k < K; k++) p[k] = (float)(exp((double)l[k] - mx) / s);
    }
}

double jem_softmax_xent(const float *logits, const int32_t *y, int B, int K, float *dlogits, float scale, int *correct)
{
    int nl = 0, hits = 0;
    for (int b = 0; b < B; b++) nl += y[b] >= 0;
    double loss = 0.0;
    for (int b = 0; b < B; b++) {
        const float *l = logits + (size_t)b * K;
        float *d = dlogits ? dlogits + (size_t)b * K : NULL;
        if (y[b] < 0) {
            if (d)
                for (int k = 0; k < K; k++) d[k] = 0.0f;
            continue;
        }
        int am = 0;
        float mx = l[0];
        for (int k = 1; k < K; k++)
            if (l[k] > mx) {
                mx = l[k];
                am = k;
            }
        hits += am == y[b];
        double s = 0.0;
        for (int k = 0; k < K; k++) s += exp((double)l[k] - mx);
        double lse = mx + log(s);
        loss += lse - l[y[b]];
        if (d)
            for (int k = 0; k < K; k++) {
                double p = exp((double)l[k] - lse);
                d[k] = (float)((p - (k == y[b])) * scale / nl);
            }
    }
    if (correct) *correct = hits;
    return nl ? loss / nl : 0.0;
}

double jem_trades_kl(const float *zc, const float *za, int B, int K, float *dzc, float *dza, float scale)
{
    double total = 0.0;
    for (int b = 0; b < B; b++) {
        const float *c = zc + (size_t)b * K, *a = za + (size_t)b * K;
        /* log-softmax of both rows, in double */
        double mc = c[0], ma = a[0];
        for (int k = 1; k < K; k++) {
            mc = c[k] > mc ? c[k] : mc;
            ma = a[k] > ma ? a[k] : ma;
        }
        double sc = 0.0, sa = 0.0;
        for (int k = 0; k < K; k++) {
            sc += exp((double)c[k] - mc);
            sa += exp((double)a[k] - ma);
        }
        const double lc = mc + log(sc), la = ma + log(sa);
        double kl = 0.0;
        for (int k = 0; k < K; k++) {
            const double lp = c[k] - lc, lq = a[k] - la;
            kl += exp(lp) * (lp - lq);
        }
        total += kl;
        for (int k = 0; dzc && k < K; k++) {
            const double lp = c[k] - lc, lq = a[k] - la;
            dzc[(size_t)b * K + k] += (float)(scale * exp(lp) * (lp - lq - kl) / B);
        }
        for (int k = 0; dza && k < K; k++)
            dza[(size_t)b * K + k] += (float)(scale * (exp((double)a[k] - la) - exp((double)c[k] - lc)) / B);
    }
    return B > 0 ? total / B : 0.0;
}

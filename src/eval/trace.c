/* Energy-trace plot of MCMC chains (a line chart without markers). */
#include "eval/eval.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>

jem_status jem_plot_traces(const double *trace, int N, int M, int warmup, const jem_plot_opts *o, jem_image *out)
{
    jem_plot_opts d = {0};
    if (o) d = *o;
    if (!trace || N < 1 || M < 1) return jem_fail(JEM_ERR_ARG, "trace plot: %d iterations of %d chains", N, M);
    const int shown = M < 31 ? M : 31;
    jem_series sr[32];
    char names[8][16];
    double *it = malloc(sizeof(double) * (size_t)N * (shown + 1) + sizeof(double) * 4);
    if (!it) return jem_fail(JEM_ERR_NOMEM, "trace plot: out of memory for %d iterations", N);
    double *ys = it + N, lo = INFINITY, hi = -INFINITY;
    for (int n = 0; n < N; n++) it[n] = n;
    for (int m = 0; m < shown; m++) {
        double *y = ys + (size_t)m * N;
        for (int n = 0; n < N; n++) {
            y[n] = trace[(size_t)n * M + m];
            if (isfinite(y[n])) {
                lo = fmin(lo, y[n]);
                hi = fmax(hi, y[n]);
            }
        }
        if (M <= 8) snprintf(names[m], sizeof names[m], "chain %d", m);
        sr[m].name = M <= 8 ? names[m] : NULL;
        sr[m].x = it;
        sr[m].y = y;
        sr[m].n = N;
    }
    int ns = shown;
    double *wl = ys + (size_t)shown * N;
    if (warmup > 0 && warmup < N && lo <= hi) {
        wl[0] = wl[1] = warmup - 0.5;
        wl[2] = lo;
        wl[3] = hi;
        sr[ns].name = "end of warm-up";
        sr[ns].x = wl;
        sr[ns].y = wl + 2;
        sr[ns].n = 2;
        ns++;
    }
    d.no_markers = 1;
    if (!d.title) d.title = "Energy traces";
    if (!d.xlabel) d.xlabel = "iteration";
    if (!d.ylabel) d.ylabel = "log p~(x) = -E(x)";
    jem_status s = jem_plot_lines(sr, ns, &d, out);
    free(it);
    return s;
}

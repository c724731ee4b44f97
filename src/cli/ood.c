/* jem ood: out-of-distribution detection: every score against one or more
 * OOD sets (AUROC, AUPR-in, AUPR-out, FPR at 95 % TPR), histograms and ROC
 * curves; jem score: the scores of every input of a data set. */
#include "cli/cli.h"
#include "eval/eval.h"
#include "io/io.h"
#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS 16

static jem_status score_set(jem_net *net, const char *spec, int limit, double T, int grad, jem_dataset *ds,
                            double **sc)
{
    jem_status s = cli_open_data(spec, jem_net_arch(net), ds);
    if (s) return s;
    if (limit > 0) jem_dataset_truncate(ds, limit);
    *sc = malloc(sizeof(double) * (size_t)ds->n * JEM_NSCORES);
    if (!*sc) { jem_dataset_free(ds); return jem_fail(JEM_ERR_NOMEM, "out of memory scoring %s", spec); }
    /* several MPI ranks: each scores its slice, then the rows are exchanged */
    int64_t lo, hi;
    jem_dist_slice(ds->n, &lo, &hi);
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    s = jem_scores(net, ds->x + D * (size_t)lo, (int)(hi - lo), T, grad, *sc + (size_t)lo * JEM_NSCORES, NULL);
    if (!s) jem_dist_allgather(*sc, sizeof(double) * JEM_NSCORES, ds->n);
    if (s) { free(*sc); *sc = NULL; jem_dataset_free(ds); }
    return s;
}

static double *column(const double *sc, int n, int k)
{
    double *c = malloc(sizeof(double) * (n ? n : 1));
    if (c) for (int i = 0; i < n; i++) c[i] = sc[(size_t)i * JEM_NSCORES + k];
    return c;
}

int cmd_ood(int argc, char **argv)
{
    const char *model = NULL, *in = "fmnist:test", *hist = NULL, *roc = NULL, *hist_score = "logpx";
    const char *outs = "mnist:test,noise:uniform:2000,noise:gaussian:2000,noise:constant:2000,interp:fmnist:test:2000";
    int limit = 0, threads = 0, json = 0, nograd = 0;
    double T = 1.0;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint"},
        {"in", OPT_STR, &in, "in-distribution data set"},
        {"out", OPT_STR, &outs, "comma-separated OOD data sets"},
        {"limit", OPT_INT, &limit, "use at most N images of each set (0: all)"},
        {"temperature", OPT_DOUBLE, &T, "temperature of the energy_t score"},
        {"no-grad", OPT_FLAG, &nograd, "skip the gradient-norm score (one backward pass per image)"},
        {"hist", OPT_STR, &hist, "PNG: histograms of a score, in-distribution against each OOD set"},
        {"hist-score", OPT_STR, &hist_score, "score of the histogram and ROC plots"},
        {"roc", OPT_STR, &roc, "PNG: ROC curves of that score against each OOD set"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"json", OPT_FLAG, &json, "print the table as JSON"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("ood", "--model CKPT [--in SPEC] [--out SPEC,SPEC] [options]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos) model = pos[0];
    if (!model) { fprintf(stderr, "jem ood: error: --model CKPT is required\n"); return 2; }
    int hs = -1;
    for (int k = 0; k < JEM_NSCORES; k++) if (!strcmp(hist_score, jem_score_name(k))) hs = k;
    if (hs < 0) { fprintf(stderr, "jem ood: error: unknown --hist-score '%s'\n", hist_score); return 2; }
    if (hs == JEM_SCORE_GRADNORM && nograd) { fprintf(stderr, "jem ood: error: --hist-score neg_grad_norm needs the gradient score\n"); return 2; }
    jem_set_threads(threads);
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(model, &net);
    if (s) return cli_fail("ood", s);
    char *list = strdup(outs);
    const char *names[MAX_SETS];
    int nsets = 0;
    for (char *save = NULL, *t = strtok_r(list, ",", &save); t && nsets < MAX_SETS; t = strtok_r(NULL, ",", &save)) {
        /* interp:SPEC[:N] contains a comma-free spec; keep it whole */
        names[nsets++] = t;
    }
    jem_dataset din, dout[MAX_SETS];
    double *sin = NULL, *sout[MAX_SETS] = {0};
    memset(dout, 0, sizeof dout);
    int rc = 0;
    s = score_set(net, in, limit, T, !nograd, &din, &sin);
    for (int i = 0; i < nsets && !s; i++) s = score_set(net, names[i], limit, T, !nograd, &dout[i], &sout[i]);
    if (s) { rc = cli_fail("ood", s); goto done; }
    jem_jw w;
    jem_jw_init(&w);
    jem_jw_obj_begin(&w);
    jem_jw_kstr(&w, "model", model);
    jem_jw_kstr(&w, "in", in);
    jem_jw_kint(&w, "n_in", din.n);
    jem_jw_key(&w, "sets");
    jem_jw_obj_begin(&w);
    if (!json) printf("in-distribution %s (%d images); higher score = more in-distribution\n\n%-28s %-14s %7s %8s %9s %7s\n",
                      in, din.n, "OOD set", "score", "AUROC", "AUPR-in", "AUPR-out", "FPR95");
    for (int i = 0; i < nsets && !s; i++) {
        jem_jw_key(&w, names[i]);
        jem_jw_obj_begin(&w);
        jem_jw_kint(&w, "n", dout[i].n);
        for (int k = 0; k < JEM_NSCORES; k++) {
            if (k == JEM_SCORE_GRADNORM && nograd) continue;
            double *a = column(sin, din.n, k), *b = column(sout[i], dout[i].n, k);
            jem_ood_metrics m;
            s = a && b ? jem_ood_metrics_compute(a, din.n, b, dout[i].n, &m) : jem_fail(JEM_ERR_NOMEM, "out of memory");
            free(a); free(b);
            if (s) break;
            jem_jw_key(&w, jem_score_name(k));
            jem_jw_obj_begin(&w);
            jem_jw_kdouble(&w, "auroc", m.auroc);
            jem_jw_kdouble(&w, "aupr_in", m.aupr_in);
            jem_jw_kdouble(&w, "aupr_out", m.aupr_out);
            jem_jw_kdouble(&w, "fpr95", m.fpr95);
            jem_jw_obj_end(&w);
            if (!json)
                printf("%-28s %-14s %7.4f %8.4f %9.4f %7.4f\n", k == 0 ? names[i] : "", jem_score_name(k), m.auroc,
                       m.aupr_in, m.aupr_out, m.fpr95);
        }
        jem_jw_obj_end(&w);
    }
    jem_jw_obj_end(&w);
    jem_jw_obj_end(&w);
    if (s) { jem_jw_free(&w); rc = cli_fail("ood", s); goto done; }
    if (json) printf("%s\n", jem_jw_cstr(&w));
    jem_jw_free(&w);
    if (hist || roc) {
        double *cols[MAX_SETS + 1];
        jem_sample_set sets[MAX_SETS + 1];
        jem_roc rocs[MAX_SETS];
        const char *rnames[MAX_SETS];
        memset(rocs, 0, sizeof rocs);
        cols[0] = column(sin, din.n, hs);
        sets[0] = (jem_sample_set){in, cols[0], din.n};
        for (int i = 0; i < nsets; i++) {
            cols[i + 1] = column(sout[i], dout[i].n, hs);
            sets[i + 1] = (jem_sample_set){names[i], cols[i + 1], dout[i].n};
        }
        char title[160];
        jem_plot_opts po;
        memset(&po, 0, sizeof po);
        po.title = title;
        jem_image im = {0};
        if (hist) {
            snprintf(title, sizeof title, "%s score: in-distribution vs OOD", jem_score_name(hs));
            po.xlabel = jem_score_name(hs);
            s = jem_plot_histograms(sets, nsets + 1, &po, &im);
            if (!s) s = jem_image_write_png(hist, &im);
            jem_image_free(&im);
        }
        if (!s && roc) {
            for (int i = 0; i < nsets && !s; i++) {
                s = jem_roc_curve(cols[0], din.n, cols[i + 1], dout[i].n, 1, &rocs[i]);
                rnames[i] = names[i];
            }
            snprintf(title, sizeof title, "ROC, %s score (in = %s)", jem_score_name(hs), in);
            po.xlabel = NULL;
            if (!s) s = jem_plot_roc(rocs, rnames, nsets, &po, &im);
            if (!s) s = jem_image_write_png(roc, &im);
            jem_image_free(&im);
        }
        for (int i = 0; i < nsets; i++) jem_roc_free(&rocs[i]);
        for (int i = 0; i <= nsets; i++) free(cols[i]);
        if (s) rc = cli_fail("ood", s);
    }
done:
    free(sin);
    for (int i = 0; i < nsets; i++) { free(sout[i]); jem_dataset_free(&dout[i]); }
    jem_dataset_free(&din);
    free(list);
    jem_net_free(net);
    return rc;
}

int cmd_score(int argc, char **argv)
{
    const char *model = NULL, *data = "fmnist:test", *format = "csv", *out = NULL;
    int limit = 0, threads = 0, nograd = 0;
    double T = 1.0;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint"},
        {"data", OPT_STR, &data, "data set to score"},
        {"format", OPT_STR, &format, "csv or jsonl"},
        {"out", OPT_STR, &out, "file to write (default: stdout)"},
        {"limit", OPT_INT, &limit, "score only the first N images (0: all)"},
        {"temperature", OPT_DOUBLE, &T, "temperature of the energy_t score"},
        {"no-grad", OPT_FLAG, &nograd, "skip the gradient-norm score"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("score", "--model CKPT --data SPEC [--format csv|jsonl] [--out FILE]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos) model = pos[0];
    if (!model) { fprintf(stderr, "jem score: error: --model CKPT is required\n"); return 2; }
    int jsonl = !strcmp(format, "jsonl");
    if (!jsonl && strcmp(format, "csv")) { fprintf(stderr, "jem score: error: --format must be csv or jsonl\n"); return 2; }
    jem_set_threads(threads);
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(model, &net);
    if (s) return cli_fail("score", s);
    jem_dataset ds;
    double *sc = NULL;
    s = score_set(net, data, limit, T, !nograd, &ds, &sc);
    if (s) { jem_net_free(net); return cli_fail("score", s); }
    jem_atomic at = {0};
    FILE *f = stdout;
    if (out) {
        s = jem_atomic_open(&at, out);
        if (s) { free(sc); jem_dataset_free(&ds); jem_net_free(net); return cli_fail("score", s); }
        f = at.fp;
    }
    jem_jw w;
    jem_jw_init(&w);
    if (!jsonl) {
        fprintf(f, "index,label");
        for (int k = 0; k < JEM_NSCORES; k++) if (!(k == JEM_SCORE_GRADNORM && nograd)) fprintf(f, ",%s", jem_score_name(k));
        fprintf(f, "\n");
    }
    for (int i = 0; i < ds.n; i++) {
        const double *o = sc + (size_t)i * JEM_NSCORES;
        if (jsonl) {
            jem_jw_reset(&w);
            jem_jw_obj_begin(&w);
            jem_jw_kint(&w, "index", i);
            jem_jw_kint(&w, "label", ds.y[i]);
            for (int k = 0; k < JEM_NSCORES; k++)
                if (!(k == JEM_SCORE_GRADNORM && nograd)) jem_jw_kdouble(&w, jem_score_name(k), o[k]);
            jem_jw_obj_end(&w);
            fprintf(f, "%s\n", jem_jw_cstr(&w));
        } else {
            fprintf(f, "%d,%d", i, ds.y[i]);
            for (int k = 0; k < JEM_NSCORES; k++)
                if (!(k == JEM_SCORE_GRADNORM && nograd)) fprintf(f, ",%.9g", o[k]);
            fprintf(f, "\n");
        }
    }
    jem_jw_free(&w);
    int rc = 0;
    if (out) {
        s = ferror(f) ? (jem_atomic_abort(&at), jem_fail(JEM_ERR_IO, "%s: write failed", out)) : jem_atomic_commit(&at);
        if (s) rc = cli_fail("score", s);
    }
    free(sc);
    jem_dataset_free(&ds);
    jem_net_free(net);
    return rc;
}

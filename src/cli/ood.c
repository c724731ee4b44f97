/* jem ood: out-of-distribution detection: every score against one or more
 * OOD sets (AUROC, AUPR-in, AUPR-out, FPR at 95 % TPR), histograms and ROC
 * curves; jem score: the scores of every input of a data set. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_SETS    16
#define SCORE_CHUNK 256

/* Open a set and score every image (a progress bar per set; several MPI
 * ranks each score their slice, then the rows are exchanged). logits
 * (nullable) receives (n, K). */
static jem_status score_set(const cli_ctx *cx, const char *opt, const char *spec, int limit, double T, int grad,
                            jem_dataset *ds, double **sc, float **logits)
{
    jem_status s = cli_open_data(cx, opt, spec, ds);
    if (s) return s;
    if (limit > 0) jem_dataset_truncate(ds, limit);
    const int K = cx->arch->n_classes;
    *sc = malloc(sizeof(double) * (size_t)(ds->n ? ds->n : 1) * JEM_NSCORES);
    if (logits) *logits = malloc(sizeof(float) * (size_t)(ds->n ? ds->n : 1) * K);
    if (!*sc || (logits && !*logits)) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory scoring %s", spec);
        goto fail;
    }
    int64_t lo, hi;
    jem_dist_slice(ds->n, &lo, &hi);
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    char what[300];
    snprintf(what, sizeof what, "scoring %s (%d images)", ds->name, ds->n);
    cli_bar bar;
    cli_bar_start(&bar, cx, what, hi - lo);
    for (int64_t i = lo; i < hi && !s; i += SCORE_CHUNK) {
        const int b = (int)(hi - i < SCORE_CHUNK ? hi - i : SCORE_CHUNK);
        s = jem_scores(cx->net, ds->x + D * (size_t)i, b, T, grad, *sc + (size_t)i * JEM_NSCORES,
                       logits ? *logits + (size_t)i * K : NULL);
        cli_bar_set(&bar, i + b - lo);
    }
    cli_bar_end(&bar);
    if (s) goto fail;
    jem_dist_allgather(*sc, sizeof(double) * JEM_NSCORES, ds->n);
    if (logits) jem_dist_allgather(*logits, sizeof(float) * (size_t)K, ds->n);
    return JEM_OK;
fail:
    free(*sc);
    *sc = NULL;
    if (logits) {
        free(*logits);
        *logits = NULL;
    }
    jem_dataset_free(ds);
    return s;
}

static double *column(const double *sc, int n, int k)
{
    double *c = malloc(sizeof(double) * (n ? n : 1));
    if (c)
        for (int i = 0; i < n; i++) c[i] = sc[(size_t)i * JEM_NSCORES + k];
    return c;
}

typedef struct {
    const char *in, *outs, *hist, *roc, *hist_score;
    int limit, nograd, hs;
    double T;
} ood_args;

static int ood_check(cli_ctx *cx, void *ud)
{
    ood_args *o = ud;
    (void)cx;
    o->hs = -1;
    for (int k = 0; k < JEM_NSCORES; k++)
        if (!strcmp(o->hist_score, jem_score_name(k))) o->hs = k;
    if (o->hs == JEM_SCORE_GRADNORM && o->nograd)
        return cli_usage_error("ood", "--hist-score neg_grad_norm needs the gradient score (drop --no-grad)");
    int n = 1;
    for (const char *p = o->outs; *p; p++) n += *p == ',';
    if (n > MAX_SETS) return cli_usage_error("ood", "--out: %d data sets, at most %d", n, MAX_SETS);
    return 0;
}

static int ood_run(cli_ctx *cx, ood_args *o)
{
    const int nograd = o->nograd, hs = o->hs;
    char *list = strdup(o->outs);
    const char *names[MAX_SETS];
    int nsets = 0;
    for (char *save = NULL, *t = list ? strtok_r(list, ",", &save) : NULL; t && nsets < MAX_SETS;
         t = strtok_r(NULL, ",", &save))
        names[nsets++] = t;
    jem_dataset din, dout[MAX_SETS];
    double *sin = NULL, *sout[MAX_SETS] = {0};
    memset(&din, 0, sizeof din);
    memset(dout, 0, sizeof dout);
    int rc = 0;
    jem_status s = list ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "out of memory");
    if (!s) s = score_set(cx, "in", o->in, o->limit, o->T, !nograd, &din, &sin, NULL);
    for (int i = 0; i < nsets && !s; i++)
        s = score_set(cx, "out", names[i], o->limit, o->T, !nograd, &dout[i], &sout[i], NULL);
    if (s) {
        rc = cli_fail("ood", s);
        goto done;
    }
    jem_jw w;
    jem_jw_init(&w);
    jem_jw_obj_begin(&w);
    jem_jw_kstr(&w, "model", cx->model);
    jem_jw_kstr(&w, "in", o->in);
    jem_jw_kint(&w, "n_in", din.n);
    jem_jw_key(&w, "sets");
    jem_jw_obj_begin(&w);
    if (!cx->json)
        printf("in-distribution %s (%d images); higher score = more in-distribution\n\n%-28s %-14s %7s %8s %9s %7s\n",
               o->in, din.n, "OOD set", "score", "AUROC", "AUPR-in", "AUPR-out", "FPR95");
    for (int i = 0; i < nsets && !s; i++) {
        jem_jw_key(&w, names[i]);
        jem_jw_obj_begin(&w);
        jem_jw_kint(&w, "n", dout[i].n);
        for (int k = 0; k < JEM_NSCORES; k++) {
            if (k == JEM_SCORE_GRADNORM && nograd) continue;
            double *a = column(sin, din.n, k), *b = column(sout[i], dout[i].n, k);
            jem_ood_metrics m;
            s = a && b ? jem_ood_metrics_compute(a, din.n, b, dout[i].n, &m) : jem_fail(JEM_ERR_NOMEM, "out of memory");
            free(a);
            free(b);
            if (s) break;
            jem_jw_key(&w, jem_score_name(k));
            jem_jw_obj_begin(&w);
            jem_jw_kdouble(&w, "auroc", m.auroc);
            jem_jw_kdouble(&w, "aupr_in", m.aupr_in);
            jem_jw_kdouble(&w, "aupr_out", m.aupr_out);
            jem_jw_kdouble(&w, "fpr95", m.fpr95);
            jem_jw_obj_end(&w);
            if (!cx->json)
                printf("%-28s %-14s %7.4f %8.4f %9.4f %7.4f\n", k == 0 ? names[i] : "", jem_score_name(k), m.auroc,
                       m.aupr_in, m.aupr_out, m.fpr95);
        }
        jem_jw_obj_end(&w);
    }
    jem_jw_obj_end(&w);
    jem_jw_obj_end(&w);
    if (s) {
        jem_jw_free(&w);
        rc = cli_fail("ood", s);
        goto done;
    }
    if (cx->json) printf("%s\n", jem_jw_cstr(&w));
    jem_jw_free(&w);
    if (o->hist || o->roc) {
        double *cols[MAX_SETS + 1];
        jem_sample_set sets[MAX_SETS + 1];
        jem_roc rocs[MAX_SETS];
        const char *rnames[MAX_SETS];
        memset(rocs, 0, sizeof rocs);
        cols[0] = column(sin, din.n, hs);
        sets[0] = (jem_sample_set){o->in, cols[0], din.n};
        for (int i = 0; i < nsets; i++) {
            cols[i + 1] = column(sout[i], dout[i].n, hs);
            sets[i + 1] = (jem_sample_set){names[i], cols[i + 1], dout[i].n};
        }
        char title[160];
        jem_plot_opts po;
        memset(&po, 0, sizeof po);
        po.title = title;
        jem_image im = {0};
        if (o->hist) {
            snprintf(title, sizeof title, "%s score: in-distribution vs OOD", jem_score_name(hs));
            po.xlabel = jem_score_name(hs);
            s = jem_plot_histograms(sets, nsets + 1, &po, &im);
            if (!s) s = jem_image_write_png(o->hist, &im);
            jem_image_free(&im);
        }
        if (!s && o->roc) {
            for (int i = 0; i < nsets && !s; i++) {
                s = jem_roc_curve(cols[0], din.n, cols[i + 1], dout[i].n, 1, &rocs[i]);
                rnames[i] = names[i];
            }
            snprintf(title, sizeof title, "ROC, %s score (in = %s)", jem_score_name(hs), o->in);
            po.xlabel = NULL;
            if (!s) s = jem_plot_roc(rocs, rnames, nsets, &po, &im);
            if (!s) s = jem_image_write_png(o->roc, &im);
            jem_image_free(&im);
        }
        for (int i = 0; i < nsets; i++) jem_roc_free(&rocs[i]);
        for (int i = 0; i <= nsets; i++) free(cols[i]);
        if (s) rc = cli_fail("ood", s);
    }
done:
    free(sin);
    for (int i = 0; i < nsets; i++) {
        free(sout[i]);
        jem_dataset_free(&dout[i]);
    }
    jem_dataset_free(&din);
    free(list);
    return rc;
}

/* "logpx|max_softmax|..." for the option table */
static const char *score_choices(void)
{
    static char buf[256];
    if (!buf[0])
        for (int k = 0; k < JEM_NSCORES; k++)
            snprintf(buf + strlen(buf), sizeof buf - strlen(buf), "%s%s", k ? "|" : "", jem_score_name(k));
    return buf;
}

int cmd_ood(int argc, char **argv)
{
    ood_args o = {.in = "fmnist:test",
                  .hist_score = "logpx",
                  .T = 1.0,
                  .outs = "mnist:test,noise:uniform:2000,noise:gaussian:2000,noise:constant:2000,"
                          "interp:fmnist:test:2000"};
    cli_opt opts[] = {
        {OPT("in", OPT_STR, &o.in, "in-distribution data set"), .flags = OPT_SPEC},
        {OPT("out", OPT_STR, &o.outs, "comma-separated OOD data sets"), .flags = OPT_SPECS},
        {OPT("limit", OPT_INT, &o.limit, "use at most N images of each set (0: all)"), ATLEAST(0)},
        {OPT("temperature", OPT_DOUBLE, &o.T, "temperature of the energy_t score"), ABOVE(0, 1e6)},
        {OPT("no-grad", OPT_FLAG, &o.nograd, "skip the gradient-norm score (one backward pass per image)")},
        {OPT("hist", OPT_STR, &o.hist, "PNG: histograms of a score, in-distribution against each OOD set"),
         .flags = OPT_OUT_FILE},
        {OPT("hist-score", OPT_STR, &o.hist_score, "score of the histogram and ROC plots"), .choices = score_choices()},
        {OPT("roc", OPT_STR, &o.roc, "PNG: ROC curves of that score against each OOD set"), .flags = OPT_OUT_FILE},
        CLI_END};
    const cli_spec sp = {.name = "ood",
                         .usage = "--model CKPT [--in SPEC] [--out SPEC,SPEC] [options]",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = ood_check,
                         .ud = &o};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = ood_run(&cx, &o);
    cli_end(&cx);
    return r;
}

/* ------------------------------------------------------------------ score */

typedef struct {
    const char *data, *format, *out;
    int limit, nograd;
    double T;
} score_args;

static int score_check(cli_ctx *cx, void *ud)
{
    score_args *a = ud;
    if (cx->json && cli_given(cx->spec, "format") && strcmp(a->format, "jsonl"))
        return cli_usage_error("score", "--json writes JSON lines: it excludes --format %s", a->format);
    if (cx->json) a->format = "jsonl";
    return 0;
}

/* a CSV field: quoted (quotes doubled) when it holds a comma, a quote or a
 * line break */
static void csv_field(jem_jw *w, const char *s)
{
    if (!strpbrk(s, ",\"\r\n")) {
        jem_jw_raw(w, s);
        return;
    }
    jem_jw_raw(w, "\"");
    for (; *s; s++) {
        if (*s == '"') jem_jw_raw(w, "\"\"");
        else jem_jw_rawn(w, s, 1);
    }
    jem_jw_raw(w, "\"");
}

/* the scores of every image, one line each, into a growing buffer (the
 * file is written whole, atomically) or straight to stdout */
static int score_run(cli_ctx *cx, score_args *a)
{
    const int jsonl = !strcmp(a->format, "jsonl"), nograd = a->nograd, K = cx->arch->n_classes;
    jem_dataset ds;
    double *sc = NULL;
    float *lg = NULL;
    jem_status s = score_set(cx, "data", a->data, a->limit, a->T, !nograd, &ds, &sc, &lg);
    if (s) return cli_fail("score", s);
    jem_jw w, line;
    jem_jw_init(&w);
    jem_jw_init(&line);
    char name_buf[32];
    /* the text goes to w; with stdout each line is flushed as it is made */
    if (!jsonl) {
        jem_jw_raw(&w, ds.files ? "index,file,label,pred,pred_name" : "index,label,pred,pred_name");
        for (int k = 0; k < JEM_NSCORES; k++)
            if (!(k == JEM_SCORE_GRADNORM && nograd)) {
                jem_jw_raw(&w, ",");
                jem_jw_raw(&w, jem_score_name(k));
            }
        jem_jw_raw(&w, "\n");
    }
    for (int i = 0; i < ds.n; i++) {
        const double *o = sc + (size_t)i * JEM_NSCORES;
        const float *l = lg + (size_t)i * K;
        int pred = 0;
        for (int k = 1; k < K; k++)
            if (l[k] > l[pred]) pred = k;
        const char *pname = cli_class_name(cx, pred, name_buf, sizeof name_buf);
        char buf[64];
        if (jsonl) {
            jem_jw_reset(&line);
            jem_jw_obj_begin(&line);
            jem_jw_kint(&line, "index", i);
            if (ds.files) jem_jw_kstr(&line, "file", ds.files[i]);
            jem_jw_kint(&line, "label", ds.y[i]);
            jem_jw_kint(&line, "pred", pred);
            jem_jw_kstr(&line, "pred_name", pname);
            for (int k = 0; k < JEM_NSCORES; k++)
                if (!(k == JEM_SCORE_GRADNORM && nograd)) jem_jw_kdouble(&line, jem_score_name(k), o[k]);
            jem_jw_obj_end(&line);
            jem_jw_raw(&w, jem_jw_cstr(&line));
            jem_jw_raw(&w, "\n");
        } else {
            snprintf(buf, sizeof buf, "%d,", i);
            jem_jw_raw(&w, buf);
            if (ds.files) {
                csv_field(&w, ds.files[i]);
                jem_jw_raw(&w, ",");
            }
            snprintf(buf, sizeof buf, "%d,%d,", ds.y[i], pred);
            jem_jw_raw(&w, buf);
            csv_field(&w, pname);
            for (int k = 0; k < JEM_NSCORES; k++)
                if (!(k == JEM_SCORE_GRADNORM && nograd)) {
                    snprintf(buf, sizeof buf, ",%.9g", o[k]);
                    jem_jw_raw(&w, buf);
                }
            jem_jw_raw(&w, "\n");
        }
        if (!a->out && jem_dist_rank() == 0) {
            fputs(jem_jw_cstr(&w), stdout);
            jem_jw_reset(&w);
        }
    }
    s = jem_jw_status(&w);
    if (!s && a->out && jem_dist_rank() == 0) s = jem_write_file_atomic(a->out, jem_jw_cstr(&w), jem_jw_len(&w));
    int rc = s ? cli_fail("score", s) : 0;
    jem_jw_free(&w);
    jem_jw_free(&line);
    free(sc);
    free(lg);
    jem_dataset_free(&ds);
    return rc;
}

int cmd_score(int argc, char **argv)
{
    score_args a = {.data = "fmnist:test", .format = "csv", .T = 1.0};
    cli_opt opts[] = {{OPT("data", OPT_STR, &a.data, "data set to score"), .flags = OPT_SPEC},
                      {OPT("format", OPT_STR, &a.format, "output format (--json: jsonl)"), .choices = "csv|jsonl"},
                      {OPT("out", OPT_STR, &a.out, "file to write (default: stdout)"), .flags = OPT_OUT_FILE},
                      {OPT("limit", OPT_INT, &a.limit, "score only the first N images (0: all)"), ATLEAST(0)},
                      {OPT("temperature", OPT_DOUBLE, &a.T, "temperature of the energy_t score"), ABOVE(0, 1e6)},
                      {OPT("no-grad", OPT_FLAG, &a.nograd, "skip the gradient-norm score")},
                      CLI_END};
    const cli_spec sp = {.name = "score",
                         .usage = "--model CKPT --data SPEC [--format csv|jsonl] [--out FILE]",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = score_check,
                         .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = score_run(&cx, &a);
    cli_end(&cx);
    return r;
}

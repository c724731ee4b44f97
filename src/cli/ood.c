/* jem ood: out-of-distribution detection: every score against one or more
 * OOD sets (AUROC, AUPR-in, AUPR-out, FPR at 95 % TPR), histograms and ROC
 * curves; jem score: the scores of every input of a data set. */
#include "cli/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void cli_ood_defaults(cli_ood_args *o)
{
    memset(o, 0, sizeof *o);
    o->in = "fmnist:test";
    o->in_opt = "in";
    o->out_opt = "out";
    o->hist_score = "logpx";
    o->T = 1.0;
    o->outs = "mnist:test,noise:uniform:2000,noise:gaussian:2000,noise:constant:2000,interp:fmnist:test:2000";
}

int cli_ood_check(const char *cmd, cli_ood_args *o)
{
    o->hs = -1;
    for (int k = 0; k < JEM_NSCORES; k++)
        if (!strcmp(o->hist_score, jem_score_name(k))) o->hs = k;
    if (o->hs < 0) return cli_usage_error(cmd, "--hist-score '%s': not a score", o->hist_score);
    if (o->hs == JEM_SCORE_GRADNORM && o->nograd)
        return cli_usage_error(cmd, "--hist-score neg_grad_norm needs the gradient score (drop --no-grad)");
    int n = 1;
    for (const char *p = o->outs; *p; p++) n += *p == ',';
    if (n > CLI_OOD_MAX_SETS)
        return cli_usage_error(cmd, "--%s: %d data sets, at most %d", o->out_opt, n, CLI_OOD_MAX_SETS);
    return 0;
}

static int ood_check(cli_ctx *cx, void *ud)
{
    (void)cx;
    return cli_ood_check("ood", ud);
}

void cli_ood_free(cli_ood_res *r)
{
    free(r->sin);
    for (int i = 0; i < r->nsets; i++) free(r->sout[i]);
    free(r->list);
    memset(r, 0, sizeof *r);
}

jem_status cli_ood_run(const cli_ctx *cx, const cli_ood_args *o, cli_ood_res *r)
{
    const int nograd = o->nograd;
    memset(r, 0, sizeof *r);
    r->list = strdup(o->outs);
    if (!r->list) return jem_fail(JEM_ERR_NOMEM, "out of memory");
    for (char *save = NULL, *t = strtok_r(r->list, ",", &save); t && r->nsets < CLI_OOD_MAX_SETS;
         t = strtok_r(NULL, ",", &save))
        r->names[r->nsets++] = t;
    jem_dataset ds;
    jem_status s = score_set(cx, o->in_opt, o->in, o->limit, o->T, !nograd, &ds, &r->sin, NULL);
    r->n_in = ds.n;
    jem_dataset_free(&ds);
    for (int i = 0; i < r->nsets && !s; i++) {
        s = score_set(cx, o->out_opt, r->names[i], o->limit, o->T, !nograd, &ds, &r->sout[i], NULL);
        r->n_out[i] = ds.n;
        jem_dataset_free(&ds);
    }
    for (int i = 0; i < r->nsets && !s; i++)
        for (int k = 0; k < JEM_NSCORES && !s; k++) {
            if (k == JEM_SCORE_GRADNORM && nograd) continue;
            double *a = column(r->sin, r->n_in, k), *b = column(r->sout[i], r->n_out[i], k);
            s = a && b ? jem_ood_metrics_compute(a, r->n_in, b, r->n_out[i], &r->m[i][k])
                       : jem_fail(JEM_ERR_NOMEM, "out of memory");
            free(a);
            free(b);
        }
    return s;
}

void cli_ood_json(jem_jw *w, const cli_ctx *cx, const cli_ood_args *o, const cli_ood_res *r)
{
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "model", cx->model);
    jem_jw_kstr(w, "in", o->in);
    jem_jw_kint(w, "n_in", r->n_in);
    jem_jw_key(w, "sets");
    jem_jw_obj_begin(w);
    for (int i = 0; i < r->nsets; i++) {
        jem_jw_key(w, r->names[i]);
        jem_jw_obj_begin(w);
        jem_jw_kint(w, "n", r->n_out[i]);
        for (int k = 0; k < JEM_NSCORES; k++) {
            if (k == JEM_SCORE_GRADNORM && o->nograd) continue;
            const jem_ood_metrics *m = &r->m[i][k];
            jem_jw_key(w, jem_score_name(k));
            jem_jw_obj_begin(w);
            jem_jw_kdouble(w, "auroc", m->auroc);
            jem_jw_kdouble(w, "aupr_in", m->aupr_in);
            jem_jw_kdouble(w, "aupr_out", m->aupr_out);
            jem_jw_kdouble(w, "fpr95", m->fpr95);
            jem_jw_obj_end(w);
        }
        jem_jw_obj_end(w);
    }
    jem_jw_obj_end(w);
    jem_jw_obj_end(w);
}

/* the score hs of every set: cols[0] in-distribution, cols[1 + i] OOD set i */
static jem_status score_columns(const cli_ood_args *o, const cli_ood_res *r, double **cols)
{
    cols[0] = column(r->sin, r->n_in, o->hs);
    int ok = cols[0] != NULL;
    for (int i = 0; i < r->nsets; i++) ok &= (cols[i + 1] = column(r->sout[i], r->n_out[i], o->hs)) != NULL;
    return ok ? JEM_OK : jem_fail(JEM_ERR_NOMEM, "out of memory");
}

jem_status cli_ood_hist(const cli_ood_args *o, const cli_ood_res *r, const jem_plot_opts *popts, jem_image *im)
{
    double *cols[CLI_OOD_MAX_SETS + 1] = {0};
    jem_sample_set sets[CLI_OOD_MAX_SETS + 1];
    jem_status s = score_columns(o, r, cols);
    sets[0] = (jem_sample_set){o->in, cols[0], r->n_in};
    for (int i = 0; i < r->nsets; i++) sets[i + 1] = (jem_sample_set){r->names[i], cols[i + 1], r->n_out[i]};
    char buf[160];
    snprintf(buf, sizeof buf, "%s score: in-distribution vs OOD", jem_score_name(o->hs));
    jem_plot_opts po;
    if (popts) po = *popts;
    else memset(&po, 0, sizeof po);
    if (!po.title) po.title = buf;
    if (!po.xlabel) po.xlabel = jem_score_name(o->hs);
    if (!s) s = jem_plot_histograms(sets, r->nsets + 1, &po, im);
    for (int i = 0; i <= r->nsets; i++) free(cols[i]);
    return s;
}

jem_status cli_ood_roc(const cli_ood_args *o, const cli_ood_res *r, const jem_plot_opts *popts, jem_image *im)
{
    double *cols[CLI_OOD_MAX_SETS + 1] = {0};
    jem_roc rocs[CLI_OOD_MAX_SETS];
    memset(rocs, 0, sizeof rocs);
    jem_status s = score_columns(o, r, cols);
    for (int i = 0; i < r->nsets && !s; i++) s = jem_roc_curve(cols[0], r->n_in, cols[i + 1], r->n_out[i], 1, &rocs[i]);
    char buf[160];
    snprintf(buf, sizeof buf, "ROC, %s score (in = %s)", jem_score_name(o->hs), o->in);
    jem_plot_opts po;
    if (popts) po = *popts;
    else memset(&po, 0, sizeof po);
    if (!po.title) po.title = buf;
    if (!s) s = jem_plot_roc(rocs, r->names, r->nsets, &po, im);
    for (int i = 0; i < r->nsets; i++) jem_roc_free(&rocs[i]);
    for (int i = 0; i <= r->nsets; i++) free(cols[i]);
    return s;
}

static jem_status write_plot(jem_status (*plot)(const cli_ood_args *, const cli_ood_res *, const jem_plot_opts *,
                                                jem_image *),
                             const cli_ood_args *o, const cli_ood_res *r, const char *path)
{
    jem_image im = {0};
    jem_status s = plot(o, r, NULL, &im);
    if (!s) s = jem_image_write_png(path, &im);
    jem_image_free(&im);
    return s;
}

static int ood_run(cli_ctx *cx, cli_ood_args *o)
{
    cli_ood_res r;
    jem_status s = cli_ood_run(cx, o, &r);
    if (s) {
        cli_ood_free(&r);
        return cli_fail("ood", s);
    }
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        cli_ood_json(&w, cx, o, &r);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("in-distribution %s (%d images); higher score = more in-distribution\n\n%-28s %-14s %7s %8s %9s %7s\n",
               o->in, r.n_in, "OOD set", "score", "AUROC", "AUPR-in", "AUPR-out", "FPR95");
        for (int i = 0; i < r.nsets; i++)
            for (int k = 0; k < JEM_NSCORES; k++) {
                if (k == JEM_SCORE_GRADNORM && o->nograd) continue;
                const jem_ood_metrics *m = &r.m[i][k];
                printf("%-28s %-14s %7.4f %8.4f %9.4f %7.4f\n", k == 0 ? r.names[i] : "", jem_score_name(k), m->auroc,
                       m->aupr_in, m->aupr_out, m->fpr95);
            }
    }
    if (o->hist) s = write_plot(cli_ood_hist, o, &r, o->hist);
    if (!s && o->roc) s = write_plot(cli_ood_roc, o, &r, o->roc);
    cli_ood_free(&r);
    return s ? cli_fail("ood", s) : 0;
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
    cli_ood_args o;
    cli_ood_defaults(&o);
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

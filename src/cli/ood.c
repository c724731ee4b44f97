/* jem ood: out-of-distribution detection: every score against one or more
 * OOD sets (AUROC, AUPR-in, AUPR-out, FPR at 95 % TPR), histograms and ROC
 * curves; jem score: the scores of every input of a data set. */
#include "cli/steps.h"

#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define SCORE_CHUNK 256

/* What score_set computes besides jem_scores' columns. */
typedef struct {
    double T;                /* energy_t's temperature */
    int grad;                /* the gradient-norm column */
    const jem_detector *det; /* the fitted detector's column (nullable) */
    int odin;                /* ODIN's column */
    double odin_T, odin_eps; /* its temperature and perturbation (model units) */
} scorer;

/* Score the images of an open set (a progress bar; several MPI ranks each
 * score their slice, then the rows are exchanged): sc (n, CLI_NSCORES),
 * columns not asked for 0; logits (nullable) (n, K). */
static jem_status score_images(const cli_ctx *cx, const scorer *sc, const jem_dataset *ds, double *out, float *logits)
{
    const int K = cx->arch->n_classes;
    int64_t lo, hi;
    jem_dist_slice(ds->n, &lo, &hi);
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    double *tmp = malloc(sizeof(double) * SCORE_CHUNK * (JEM_NSCORES + 2));
    if (!tmp) return jem_fail(JEM_ERR_NOMEM, "out of memory scoring %s", ds->name);
    double *col = tmp + SCORE_CHUNK * JEM_NSCORES; /* (SCORE_CHUNK) one extra column */
    char what[300];
    snprintf(what, sizeof what, "scoring %s (%d images)", ds->name, ds->n);
    cli_bar bar;
    cli_bar_start(&bar, cx, what, hi - lo);
    jem_status s = JEM_OK;
    memset(out, 0, sizeof(double) * (size_t)ds->n * CLI_NSCORES);
    for (int64_t i = lo; i < hi && !s; i += SCORE_CHUNK) {
        const int b = (int)(hi - i < SCORE_CHUNK ? hi - i : SCORE_CHUNK);
        const float *x = ds->x + D * (size_t)i;
        double *o = out + (size_t)i * CLI_NSCORES;
        s = jem_scores(cx->net, x, b, sc->T, sc->grad, tmp, logits ? logits + (size_t)i * K : NULL);
        for (int r = 0; r < b && !s; r++)
            memcpy(o + (size_t)r * CLI_NSCORES, tmp + (size_t)r * JEM_NSCORES, sizeof(double) * JEM_NSCORES);
        if (!s && sc->det) {
            s = jem_detector_score(sc->det, cx->net, x, b, col);
            for (int r = 0; r < b && !s; r++) o[(size_t)r * CLI_NSCORES + CLI_SCORE_DET] = col[r];
        }
        if (!s && sc->odin) {
            s = jem_odin_scores(cx->net, x, b, sc->odin_T, sc->odin_eps, col, NULL);
            for (int r = 0; r < b && !s; r++) o[(size_t)r * CLI_NSCORES + CLI_SCORE_ODIN] = col[r];
        }
        cli_bar_set(&bar, i + b - lo);
    }
    cli_bar_end(&bar);
    free(tmp);
    if (s) return s;
    jem_dist_allgather(out, sizeof(double) * CLI_NSCORES, ds->n);
    if (logits) jem_dist_allgather(logits, sizeof(float) * (size_t)K, ds->n);
    return JEM_OK;
}

/* Open a set (at most limit images) and score every image. */
static jem_status score_set(const cli_ctx *cx, const char *opt, const char *spec, int limit, const scorer *sc,
                            jem_dataset *ds, double **out, float **logits)
{
    jem_status s = cli_open_data(cx, opt, spec, ds);
    if (s) return s;
    if (limit > 0) jem_dataset_truncate(ds, limit);
    const int K = cx->arch->n_classes;
    *out = malloc(sizeof(double) * (size_t)(ds->n ? ds->n : 1) * CLI_NSCORES);
    if (logits) *logits = malloc(sizeof(float) * (size_t)(ds->n ? ds->n : 1) * K);
    if (!*out || (logits && !*logits)) s = jem_fail(JEM_ERR_NOMEM, "out of memory scoring %s", spec);
    if (!s) s = score_images(cx, sc, ds, *out, logits ? *logits : NULL);
    if (!s) return JEM_OK;
    free(*out);
    *out = NULL;
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
        for (int i = 0; i < n; i++) c[i] = sc[(size_t)i * CLI_NSCORES + k];
    return c;
}

void cli_ood_defaults(cli_ood_args *o)
{
    memset(o, 0, sizeof *o);
    o->in = "fmnist:test";
    o->in_opt = "in";
    o->out_opt = "out";
    o->det_opt = "ood";
    o->T = 1.0;
    o->odin_T = CLI_ODIN_T;
    o->odin_eps = CLI_ODIN_EPS;
    o->det_kind = -1;
    o->outs = "mnist:test,noise:uniform:2000,noise:gaussian:2000,noise:constant:2000,interp:fmnist:test:2000";
}

/* The set a threshold is fitted on when --val is not given: the 5000
 * images the trainer's split (and jem fit-ood) hold out of the fmnist
 * training set behind an fmnist in-distribution set, with its class
 * filter (cli_fmnist_train_of); NULL for other data. A --val naming that
 * training set means those held-out images too. */
static const char *default_val(const char *in, const char *val, int *heldout, char *buf, size_t n)
{
    *heldout = 0;
    if (val) {
        if (cli_is_fmnist_train(val)) *heldout = CLI_FMNIST_HELDOUT;
        return val;
    }
    const char *v = cli_fmnist_train_of(in, buf, n);
    if (v) *heldout = CLI_FMNIST_HELDOUT;
    return v;
}

int cli_ood_check(const char *cmd, const cli_ctx *cx, cli_ood_args *o)
{
    if (cli_det_find(cmd, o->det_opt, o->det_given, cx ? cx->model : NULL, o->det_path, sizeof o->det_path,
                     &o->det_kind))
        return 2;
    if (cli_det_column(cmd, o->detector, o->det_kind, o->det_path, &o->col)) return 2;
    o->hs = o->col;
    if (o->hist_score) {
        /* the same names as --detector */
        int ok =
            !strcmp(o->hist_score, "odin") || (o->det_kind >= 0 && jem_det_kind_parse(o->hist_score) == o->det_kind);
        for (int k = 0; k < JEM_NSCORES && !ok; k++) ok = !strcmp(o->hist_score, jem_score_name(k));
        if (!ok)
            return cli_usage_error(cmd, "--hist-score '%s': want %s (mahalanobis or knn: the fitted detector's kind)",
                                   o->hist_score, CLI_DET_LIST);
        if (cli_det_column(cmd, o->hist_score, o->det_kind, o->det_path, &o->hs)) return 2;
    }
    if (o->col == CLI_SCORE_ODIN || o->hs == CLI_SCORE_ODIN) o->odin = 1;
    if (o->nograd && (o->col == JEM_SCORE_GRADNORM || o->hs == JEM_SCORE_GRADNORM))
        return cli_usage_error(cmd, "--%s neg_grad_norm needs the gradient score (drop --no-grad)",
                               o->hs == JEM_SCORE_GRADNORM && o->col != JEM_SCORE_GRADNORM ? "hist-score" : "detector");
    int n = 1;
    for (const char *p = o->outs; *p; p++) n += *p == ',';
    if (n > CLI_OOD_MAX_SETS)
        return cli_usage_error(cmd, "--%s: %d data sets, at most %d", o->out_opt, n, CLI_OOD_MAX_SETS);
    if (o->tpr > 0) {
        o->val = default_val(o->in, o->val, &o->val_heldout, o->val_buf, sizeof o->val_buf);
        if (!o->val && !strcmp(cmd, "report"))
            return cli_usage_error(cmd,
                                   "--threshold-tpr: the report fits the threshold on the 5000 held-out images "
                                   "of fmnist:train, for fmnist --%s only (not %s)",
                                   o->in_opt, o->in);
        if (!o->val)
            return cli_usage_error(cmd,
                                   "--threshold-tpr needs --val SPEC: in-distribution images, not those of --%s "
                                   "%s, to fit the threshold on",
                                   o->in_opt, o->in);
    }
    return 0;
}

static int ood_check(cli_ctx *cx, void *ud)
{
    cli_ood_args *o = ud;
    const cli_spec *sp = cx->spec;
    if (!o->tpr && cli_given(sp, "val"))
        return cli_usage_error("ood", "--val is the threshold's set: it needs --threshold-tpr");
    if (!o->odin && (!o->detector || strcmp(o->detector, "odin")) &&
        (cli_given(sp, "odin-T") || cli_given(sp, "odin-eps")))
        return cli_usage_error("ood", "--%s is ODIN's: it needs --detector odin or --odin",
                               cli_given(sp, "odin-T") ? "odin-T" : "odin-eps");
    return cli_ood_check("ood", cx, o);
}

void cli_ood_free(cli_ood_res *r)
{
    free(r->sin);
    for (int i = 0; i < r->nsets; i++) free(r->sout[i]);
    free(r->list);
    jem_detector_free(r->det);
    memset(r, 0, sizeof *r);
}

/* The threshold on column col that keeps a fraction tpr of the held-out
 * in-distribution set val (at most limit images): only that column is
 * computed. */
static jem_status fit_threshold(const cli_ctx *cx, const scorer *base, int col, const char *val, int heldout, int limit,
                                double tpr, double *thr, double *kept, int *n)
{
    scorer sc = *base;
    sc.grad = col == JEM_SCORE_GRADNORM;
    if (col != CLI_SCORE_DET) sc.det = NULL;
    sc.odin = col == CLI_SCORE_ODIN;
    jem_dataset ds;
    jem_status s = cli_open_heldout(cx, "val", val, heldout, &ds);
    if (s) return s;
    if (limit > 0) jem_dataset_truncate(&ds, limit);
    double *all = malloc(sizeof(double) * (size_t)(ds.n ? ds.n : 1) * CLI_NSCORES), *c = NULL;
    s = all ? score_images(cx, &sc, &ds, all, NULL) : jem_fail(JEM_ERR_NOMEM, "out of memory");
    if (!s && !(c = column(all, ds.n, col))) s = jem_fail(JEM_ERR_NOMEM, "out of memory");
    if (!s) s = jem_ood_threshold(c, ds.n, tpr, thr, kept);
    *n = ds.n;
    free(all);
    free(c);
    jem_dataset_free(&ds);
    return s;
}

static void scorer_of(const cli_ood_args *o, const jem_detector *det, scorer *sc)
{
    sc->T = o->T;
    sc->grad = !o->nograd;
    sc->det = det;
    sc->odin = o->odin;
    sc->odin_T = o->odin_T;
    sc->odin_eps = 2 * o->odin_eps; /* [0, 1] pixels -> the model's [-1, 1] */
}

jem_status cli_ood_run(const cli_ctx *cx, const cli_ood_args *o, cli_ood_res *r)
{
    memset(r, 0, sizeof *r);
    r->list = strdup(o->outs);
    if (!r->list) return jem_fail(JEM_ERR_NOMEM, "out of memory");
    for (char *save = NULL, *t = strtok_r(r->list, ",", &save); t && r->nsets < CLI_OOD_MAX_SETS;
         t = strtok_r(NULL, ",", &save))
        r->names[r->nsets++] = t;
    jem_status s = JEM_OK;
    if (o->det_path[0]) {
        s = jem_detector_load(o->det_path, cx->net, &r->det);
        if (s) return s;
    }
    scorer sc;
    scorer_of(o, r->det, &sc);
    for (int k = 0; k < CLI_NSCORES; k++)
        r->have[k] = k < JEM_NSCORES      ? (k != JEM_SCORE_GRADNORM || sc.grad)
                     : k == CLI_SCORE_DET ? r->det != NULL
                                          : sc.odin;
    jem_dataset ds;
    s = score_set(cx, o->in_opt, o->in, o->limit, &sc, &ds, &r->sin, NULL);
    r->n_in = ds.n;
    jem_dataset_free(&ds);
    for (int i = 0; i < r->nsets && !s; i++) {
        s = score_set(cx, o->out_opt, r->names[i], o->limit, &sc, &ds, &r->sout[i], NULL);
        r->n_out[i] = ds.n;
        jem_dataset_free(&ds);
    }
    for (int i = 0; i < r->nsets && !s; i++)
        for (int k = 0; k < CLI_NSCORES && !s; k++) {
            if (!r->have[k]) continue;
            double *a = column(r->sin, r->n_in, k), *b = column(r->sout[i], r->n_out[i], k);
            s = a && b ? jem_ood_metrics_compute(a, r->n_in, b, r->n_out[i], &r->m[i][k])
                       : jem_fail(JEM_ERR_NOMEM, "out of memory");
            free(a);
            free(b);
        }
    if (!s && o->tpr > 0) {
        s = fit_threshold(cx, &sc, o->col, o->val, o->val_heldout, o->limit, o->tpr, &r->thr, &r->kept, &r->val_n);
        double *c = s ? NULL : column(r->sin, r->n_in, o->col);
        if (!s && !c) s = jem_fail(JEM_ERR_NOMEM, "out of memory");
        if (!s) r->tpr_in = jem_ood_rate_at(c, r->n_in, r->thr);
        free(c);
        for (int i = 0; i < r->nsets && !s; i++) {
            c = column(r->sout[i], r->n_out[i], o->col);
            if (!c) s = jem_fail(JEM_ERR_NOMEM, "out of memory");
            else r->fpr[i] = jem_ood_rate_at(c, r->n_out[i], r->thr);
            free(c);
        }
        r->have_thr = !s;
    }
    return s;
}

/* the fitted detector's kind as the results know it */
static int res_kind(const cli_ood_res *r) { return r->det ? (int)r->det->kind : -1; }

void cli_ood_json(jem_jw *w, const cli_ctx *cx, const cli_ood_args *o, const cli_ood_res *r)
{
    const int kind = res_kind(r);
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "model", cx->model);
    jem_jw_kstr(w, "in", o->in);
    jem_jw_kint(w, "n_in", r->n_in);
    jem_jw_kstr(w, "detector", cli_score_col_name(o->col, kind));
    if (r->det) {
        char lname[32];
        jem_ood_layer_name(r->det->layer, lname, sizeof lname);
        jem_jw_key(w, "fitted");
        jem_jw_obj_begin(w);
        jem_jw_kstr(w, "file", o->det_path);
        jem_jw_kstr(w, "kind", jem_det_kind_name(r->det->kind));
        jem_jw_kstr(w, "layer", lname);
        jem_jw_kstr(w, "data", r->det->data);
        jem_jw_kint(w, "n", r->det->n_fit);
        jem_jw_obj_end(w);
    }
    if (r->have[CLI_SCORE_ODIN]) {
        jem_jw_key(w, "odin");
        jem_jw_obj_begin(w);
        jem_jw_kdouble(w, "T", o->odin_T);
        jem_jw_kdouble(w, "eps", o->odin_eps);
        jem_jw_obj_end(w);
    }
    jem_jw_key(w, "sets");
    jem_jw_obj_begin(w);
    for (int i = 0; i < r->nsets; i++) {
        jem_jw_key(w, r->names[i]);
        jem_jw_obj_begin(w);
        jem_jw_kint(w, "n", r->n_out[i]);
        for (int k = 0; k < CLI_NSCORES; k++) {
            if (!r->have[k]) continue;
            const jem_ood_metrics *m = &r->m[i][k];
            jem_jw_key(w, cli_score_col_name(k, kind));
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
    if (r->have_thr) {
        jem_jw_key(w, "decision");
        jem_jw_obj_begin(w);
        jem_jw_kstr(w, "score", cli_score_col_name(o->col, kind));
        jem_jw_kdouble(w, "tpr", o->tpr);
        jem_jw_kstr(w, "val", o->val);
        jem_jw_kint(w, "val_held_out", o->val_heldout);
        jem_jw_kint(w, "val_n", r->val_n);
        jem_jw_kdouble(w, "threshold", r->thr);
        jem_jw_kdouble(w, "kept_val", r->kept);
        jem_jw_kdouble(w, "kept_in", r->tpr_in);
        jem_jw_key(w, "fpr");
        jem_jw_obj_begin(w);
        for (int i = 0; i < r->nsets; i++) jem_jw_kdouble(w, r->names[i], r->fpr[i]);
        jem_jw_obj_end(w);
        jem_jw_obj_end(w);
    }
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
    const char *name = cli_score_col_name(o->hs, res_kind(r));
    snprintf(buf, sizeof buf, "%s score: in-distribution vs OOD", name);
    jem_plot_opts po;
    if (popts) po = *popts;
    else memset(&po, 0, sizeof po);
    if (!po.title) po.title = buf;
    if (!po.xlabel) po.xlabel = name;
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
    snprintf(buf, sizeof buf, "ROC, %s score (in = %s)", cli_score_col_name(o->hs, res_kind(r)), o->in);
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
    const int kind = res_kind(&r);
    const char *dname = cli_score_col_name(o->col, kind);
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        cli_ood_json(&w, cx, o, &r);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("in-distribution %s (%d images); higher score = more in-distribution; detector %s", o->in, r.n_in,
               dname);
        if (r.det) {
            char lname[32];
            jem_ood_layer_name(r.det->layer, lname, sizeof lname);
            printf(" (%s: layer %s, fitted on %" PRId64 " images of %s)", o->det_path, lname, r.det->n_fit,
                   r.det->data);
        } else if (!o->detector) {
            char beside[4096];
            cli_det_beside(cx->model, beside, sizeof beside);
            printf(" (no fitted detector %s: jem fit-ood makes one)", beside);
        }
        printf("\n\n%-28s %-14s %7s %8s %9s %7s\n", "OOD set", "score", "AUROC", "AUPR-in", "AUPR-out", "FPR95");
        for (int i = 0; i < r.nsets; i++)
            for (int k = 0, first = 1; k < CLI_NSCORES; k++) {
                if (!r.have[k]) continue;
                const jem_ood_metrics *m = &r.m[i][k];
                printf("%-28s %-14s %7.4f %8.4f %9.4f %7.4f\n", first ? r.names[i] : "", cli_score_col_name(k, kind),
                       m->auroc, m->aupr_in, m->aupr_out, m->fpr95);
                first = 0;
            }
        if (r.have_thr) {
            printf("\ndecision: in-distribution iff %s >= %.6g, the threshold that keeps %.1f %% of %d held-out "
                   "images of %s (kept %.2f %%)\n",
                   dname, r.thr, 100 * o->tpr, r.val_n, o->val, 100 * r.kept);
            printf("  %-28s kept %6.2f %% (true-positive rate)\n", o->in, 100 * r.tpr_in);
            for (int i = 0; i < r.nsets; i++)
                printf("  %-28s kept %6.2f %% (false-positive rate)\n", r.names[i], 100 * r.fpr[i]);
        }
    }
    if (o->hist) s = write_plot(cli_ood_hist, o, &r, o->hist);
    if (!s && o->roc) s = write_plot(cli_ood_roc, o, &r, o->roc);
    cli_ood_free(&r);
    return s ? cli_fail("ood", s) : 0;
}

#define DETECTOR_DEF CLI_DET_DEFAULT " (the fitted one) if found, else " CLI_DET_FALLBACK
/* what --help says of the detectors (the names are checked by cli_det_column) */
#define DETECTOR_NOTE                                                                                                  \
    "Detectors (--detector; higher score = more in-distribution): logpx, max_softmax, max_logit, neg_grad_norm, "      \
    "energy_t;\nmahalanobis or knn, fitted by jem fit-ood (--ood FILE, else MODEL.ood.safetensors beside the model); " \
    "odin (--odin-T, --odin-eps).\nDefault: " CLI_DET_DEFAULT " (>= 0.99 AUROC against MNIST and the noise sets on "   \
    "the shipped JEM, see README), else " CLI_DET_FALLBACK " when no fitted detector is found."

int cmd_ood(int argc, char **argv)
{
    cli_ood_args o;
    cli_ood_defaults(&o);
    cli_opt opts[] = {
        {OPT("in", OPT_STR, &o.in, "in-distribution data set"), .flags = OPT_SPEC},
        {OPT("out", OPT_STR, &o.outs, "comma-separated OOD data sets"), .flags = OPT_SPECS},
        {OPT("limit", OPT_INT, &o.limit, "use at most N images of each set (0: all)"), ATLEAST(0)},
        {OPT("detector", OPT_STR, &o.detector, "the score that decides and is plotted (every score is in the table)"),
         .def = DETECTOR_DEF},
        {OPT("ood", OPT_STR, &o.det_given, "fitted detector file (jem fit-ood)"), .flags = OPT_IN_FILE,
         .def = "MODEL.ood.safetensors beside the model, when it exists"},
        {OPT("odin", OPT_FLAG, &o.odin, "add ODIN to the table (a backward pass per image)")},
        {OPT("odin-T", OPT_DOUBLE, &o.odin_T, "ODIN's temperature"), ABOVE(0, 1e9)},
        {OPT("odin-eps", OPT_DOUBLE, &o.odin_eps, "ODIN's input perturbation, on the [0, 1] pixel scale"), RANGE(0, 1)},
        {OPT("threshold-tpr", OPT_DOUBLE, &o.tpr, "decide with the threshold keeping this fraction of --val (0: none)"),
         RANGE(0, 1)},
        {OPT("val", OPT_STR, &o.val, "held-out in-distribution set of --threshold-tpr"), .flags = OPT_SPEC,
         .def = "the 5000 of fmnist:train fit-ood holds out"},
        {OPT("temperature", OPT_DOUBLE, &o.T, "temperature of the energy_t score"), ABOVE(0, 1e6)},
        {OPT("no-grad", OPT_FLAG, &o.nograd, "skip the gradient-norm score (one backward pass per image)")},
        {OPT("hist", OPT_STR, &o.hist, "PNG: histograms of a score, in-distribution against each OOD set"),
         .flags = OPT_OUT_FILE},
        {OPT("hist-score", OPT_STR, &o.hist_score, "score of the histogram and ROC plots (a detector's name)"),
         .def = "the detector's"},
        {OPT("roc", OPT_STR, &o.roc, "PNG: ROC curves of that score against each OOD set"), .flags = OPT_OUT_FILE},
        CLI_END};
    const cli_spec sp = {.name = "ood",
                         .usage = "--model CKPT [--in SPEC] [--out SPEC,SPEC] [--detector NAME] [options]",
                         .note = DETECTOR_NOTE,
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .precision = CLI_PRECISION_HELP,
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
    /* the detector and the decision */
    const char *detector, *det_given, *val;
    int odin, val_heldout;
    double odin_T, odin_eps, thr, tpr;
    char det_path[4096], val_buf[1100];
    int det_kind, col, decide;
} score_args;

static int score_check(cli_ctx *cx, void *ud)
{
    score_args *a = ud;
    const cli_spec *sp = cx->spec;
    if (cx->json && cli_given(sp, "format") && strcmp(a->format, "jsonl"))
        return cli_usage_error("score", "--json writes JSON lines: it excludes --format %s", a->format);
    if (cx->json) a->format = "jsonl";
    if (cli_det_find("score", "ood", a->det_given, cx->model, a->det_path, sizeof a->det_path, &a->det_kind)) return 2;
    if (cli_det_column("score", a->detector, a->det_kind, a->det_path, &a->col)) return 2;
    if (a->col == CLI_SCORE_ODIN) a->odin = 1;
    if (!a->odin && (cli_given(sp, "odin-T") || cli_given(sp, "odin-eps")))
        return cli_usage_error("score", "--%s is ODIN's: it needs --detector odin or --odin",
                               cli_given(sp, "odin-T") ? "odin-T" : "odin-eps");
    if (a->nograd && a->col == JEM_SCORE_GRADNORM)
        return cli_usage_error("score", "--detector neg_grad_norm needs the gradient score (drop --no-grad)");
    if (cli_given(sp, "threshold") && cli_given(sp, "threshold-tpr"))
        return cli_usage_error("score", "--threshold and --threshold-tpr exclude each other");
    if (!a->tpr && cli_given(sp, "val"))
        return cli_usage_error("score", "--val is the threshold's set: it needs --threshold-tpr");
    a->decide = cli_given(sp, "threshold") || a->tpr > 0;
    /* without --val: the fmnist held-out images (the models jem ships) */
    if (a->tpr > 0) a->val = default_val("fmnist:test", a->val, &a->val_heldout, a->val_buf, sizeof a->val_buf);
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
    const int jsonl = !strcmp(a->format, "jsonl"), K = cx->arch->n_classes;
    jem_detector *det = NULL;
    jem_status s = JEM_OK;
    if (a->det_path[0]) s = jem_detector_load(a->det_path, cx->net, &det);
    if (s) return cli_fail("score", s);
    scorer sc = {
        .T = a->T, .grad = !a->nograd, .det = det, .odin = a->odin, .odin_T = a->odin_T, .odin_eps = 2 * a->odin_eps};
    int have[CLI_NSCORES];
    for (int k = 0; k < CLI_NSCORES; k++)
        have[k] = k < JEM_NSCORES ? (k != JEM_SCORE_GRADNORM || sc.grad) : k == CLI_SCORE_DET ? det != NULL : sc.odin;
    const char *dname = cli_score_col_name(a->col, a->det_kind);
    double thr = a->thr, kept = 0;
    int val_n = 0;
    if (a->tpr > 0) {
        s = fit_threshold(cx, &sc, a->col, a->val, a->val_heldout, 0, a->tpr, &thr, &kept, &val_n);
        if (s) {
            jem_detector_free(det);
            return cli_fail("score", s);
        }
        if (jem_dist_rank() == 0)
            fprintf(stderr,
                    "jem score: threshold %.9g on %s keeps %.2f %% of %d held-out images of %s; column ood = 1 "
                    "below it\n",
                    thr, dname, 100 * kept, val_n, a->val);
    }
    jem_dataset ds;
    double *scs = NULL;
    float *lg = NULL;
    s = score_set(cx, "data", a->data, a->limit, &sc, &ds, &scs, &lg);
    if (s) {
        jem_detector_free(det);
        return cli_fail("score", s);
    }
    jem_jw w, line;
    jem_jw_init(&w);
    jem_jw_init(&line);
    char name_buf[32];
    /* the text goes to w; with stdout each line is flushed as it is made */
    if (!jsonl) {
        jem_jw_raw(&w, ds.files ? "index,file,label,pred,pred_name" : "index,label,pred,pred_name");
        for (int k = 0; k < CLI_NSCORES; k++)
            if (have[k]) {
                jem_jw_raw(&w, ",");
                jem_jw_raw(&w, cli_score_col_name(k, a->det_kind));
            }
        if (a->decide) jem_jw_raw(&w, ",ood");
        jem_jw_raw(&w, "\n");
    }
    for (int i = 0; i < ds.n; i++) {
        const double *o = scs + (size_t)i * CLI_NSCORES;
        const float *l = lg + (size_t)i * K;
        int pred = 0;
        for (int k = 1; k < K; k++)
            if (l[k] > l[pred]) pred = k;
        const char *pname = cli_class_name(cx, pred, name_buf, sizeof name_buf);
        const int flag = !(o[a->col] >= thr);
        char buf[64];
        if (jsonl) {
            jem_jw_reset(&line);
            jem_jw_obj_begin(&line);
            jem_jw_kint(&line, "index", i);
            if (ds.files) jem_jw_kstr(&line, "file", ds.files[i]);
            jem_jw_kint(&line, "label", ds.y[i]);
            jem_jw_kint(&line, "pred", pred);
            jem_jw_kstr(&line, "pred_name", pname);
            for (int k = 0; k < CLI_NSCORES; k++)
                if (have[k]) jem_jw_kdouble(&line, cli_score_col_name(k, a->det_kind), o[k]);
            if (a->decide) jem_jw_kint(&line, "ood", flag);
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
            for (int k = 0; k < CLI_NSCORES; k++)
                if (have[k]) {
                    snprintf(buf, sizeof buf, ",%.9g", o[k]);
                    jem_jw_raw(&w, buf);
                }
            if (a->decide) jem_jw_raw(&w, flag ? ",1" : ",0");
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
    free(scs);
    free(lg);
    jem_dataset_free(&ds);
    jem_detector_free(det);
    return rc;
}

int cmd_score(int argc, char **argv)
{
    score_args a = {.data = "fmnist:test",
                    .format = "csv",
                    .T = 1.0,
                    .odin_T = CLI_ODIN_T,
                    .odin_eps = CLI_ODIN_EPS,
                    .det_kind = -1};
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &a.data, "data set to score"), .flags = OPT_SPEC},
        {OPT("format", OPT_STR, &a.format, "output format (--json: jsonl)"), .choices = "csv|jsonl"},
        {OPT("out", OPT_STR, &a.out, "file to write (default: stdout)"), .flags = OPT_OUT_FILE},
        {OPT("limit", OPT_INT, &a.limit, "score only the first N images (0: all)"), ATLEAST(0)},
        {OPT("temperature", OPT_DOUBLE, &a.T, "temperature of the energy_t score"), ABOVE(0, 1e6)},
        {OPT("no-grad", OPT_FLAG, &a.nograd, "skip the gradient-norm score")},
        {OPT("ood", OPT_STR, &a.det_given, "fitted detector file (jem fit-ood); its score becomes a column"),
         .flags = OPT_IN_FILE, .def = "MODEL.ood.safetensors beside the model, when it exists"},
        {OPT("detector", OPT_STR, &a.detector, "the score the ood column decides on"), .def = DETECTOR_DEF},
        {OPT("odin", OPT_FLAG, &a.odin, "add ODIN's column (a backward pass per image)")},
        {OPT("odin-T", OPT_DOUBLE, &a.odin_T, "ODIN's temperature"), ABOVE(0, 1e9)},
        {OPT("odin-eps", OPT_DOUBLE, &a.odin_eps, "ODIN's input perturbation, on the [0, 1] pixel scale"), RANGE(0, 1)},
        {OPT("threshold", OPT_DOUBLE, &a.thr, "add a column ood: 1 when the detector's score is below this value")},
        {OPT("threshold-tpr", OPT_DOUBLE, &a.tpr, "column ood at the threshold keeping this fraction of --val"),
         ABOVE(0, 1)},
        {OPT("val", OPT_STR, &a.val, "held-out in-distribution set of --threshold-tpr"), .flags = OPT_SPEC,
         .def = "the 5000 of fmnist:train fit-ood holds out"},
        CLI_END};
    const cli_spec sp = {.name = "score",
                         .usage = "--model CKPT --data SPEC [--format csv|jsonl] [--out FILE] [--threshold-tpr X]",
                         .note = DETECTOR_NOTE,
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .precision = CLI_PRECISION_HELP,
                         .check = score_check,
                         .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = score_run(&cx, &a);
    cli_end(&cx);
    return r;
}

/* jem report: the evaluation of a checkpoint as one self-contained HTML page
 * (pictures inline as PNG data URIs, no outside links) and report.json, in a
 * folder: the model and its training, accuracy and calibration, calibration
 * under covariate shift (jem shift), out-of-distribution detection (with the
 * fitted detector beside the model and its decision threshold), robustness
 * to L-inf and L2 PGD (undefended, and through SGLD purification attacked
 * with BPDA + EOT and by transfer), the worst case over APGD-CE, APGD-DLR
 * and Square in AutoAttack's order, the gradient-masking checks of every
 * attack table with their warnings, and class-conditional samples.
 *
 * How it runs
 *   Every option is checked (the table in cmd_report, then report_check)
 *   before anything is loaded; cli_begin loads the checkpoint once; each
 *   section's `ready` check that needs the model runs; then the sections of
 *   `sections` run in turn, each a function call into the same cores the
 *   commands use (steps.h: jem eval, ood, attack, sample). Only when every
 *   section has succeeded is the folder made and report.html and report.json
 *   written (each atomically). The first section that fails stops the
 *   report with one message, "jem report: error: SECTION: what failed", and
 *   exit status 1; nothing is written.
 *
 * Adding a section: one function and one line in `sections`.
 *
 *     static jem_status sec_NAME(report *r, part *p);
 *
 *   It computes what it shows (through steps.h or the library; the loaded
 *   model is r->cx->net, the options r->o) and fills its part:
 *     p->html   its HTML body (the page adds <section> and the title), written
 *               with the h_* functions: h_put takes a template of trusted
 *               markup whose %s arguments are escaped (h_text is the one
 *               place text is escaped), h_num writes a table cell, h_figure
 *               embeds a jem_image as a PNG data URI with a caption;
 *     p->json   its member of report.json: one value, usually the core's
 *               JSON object (the command's --json output);
 *     summary   headline figures for the page's summary table and the
 *               summary --json prints: sum_add(r, key, pct, label...) then
 *               sum_val(row, name, value).
 *   Say in captions, legends or titles how many images stand behind every
 *   table and picture, and name data sets by what was used. Its options:
 *   add them to the table in cmd_report, check them in report_check (before
 *   anything loads) and write them in settings_json. A section that needs
 *   the loaded model to check its options gets a `ready` function (it prints
 *   a usage error and returns 2); one that can be switched off gets an `on`
 *   function. Sections planned: chain diagnostics, adversarial-training
 *   settings. */
#include "cli/steps.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* ------------------------------------------------------------- options */

typedef struct {
    const char *out, *data, *ood, *sample_from, *ood_det, *shift;
    int limit, an, dn, steps, dsteps, dchains, eot, no_def, quick, sample_n, sample_steps, no_temp, shift_n;
    int queries, no_suite; /* Square's budget in the worst-case sections; those sections off */
    double tpr;
    cli_shift_args sa;   /* the shift section's arguments (report_check) */
    char ood_used[4096]; /* the OOD sets run: --ood (or the default) with synthetic sets' sizes cut to --limit */
} report_opts;

/* ----------------------------------------------------------------- HTML */

/* A growing text buffer; errors are sticky (as jem_jw's). */
typedef struct {
    char *p;
    size_t n, cap;
    jem_status err;
} html;

static void h_raw(html *h, const char *s, size_t n)
{
    if (h->err || !n) return;
    if (h->n + n + 1 > h->cap) {
        size_t cap = h->cap ? h->cap : 4096;
        while (cap < h->n + n + 1) cap *= 2;
        char *q = realloc(h->p, cap);
        if (!q) {
            h->err = jem_fail(JEM_ERR_NOMEM, "out of memory for the page (%zu bytes)", cap);
            return;
        }
        h->p = q;
        h->cap = cap;
    }
    memcpy(h->p + h->n, s, n);
    h->n += n;
    h->p[h->n] = 0;
}

/* Text into the page: the one place where it is escaped. */
static void h_text(html *h, const char *s)
{
    for (; s && *s; s++) {
        const char *e = *s == '&'    ? "&amp;"
                        : *s == '<'  ? "&lt;"
                        : *s == '>'  ? "&gt;"
                        : *s == '"'  ? "&quot;"
                        : *s == '\'' ? "&#39;"
                                     : NULL;
        if (e) h_raw(h, e, strlen(e));
        else h_raw(h, s, 1);
    }
}

/* A template of trusted markup, printf-style: %s arguments are text (escaped
 * by h_text; NULL writes nothing); numbers take one of %d %u %zu %lld %g
 * %.4g %.1f %.2f %.3f %.4f (formatted as printf does; another conversion is
 * an error of the page); %% is '%'. */
static void h_put(html *h, const char *tpl, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;
static void h_put(html *h, const char *tpl, ...)
{
    static const char *const convs[] = {"%%", "%s",   "%d",   "%u",   "%zu",  "%lld",
                                        "%g", "%.4g", "%.1f", "%.2f", "%.3f", "%.4f"};
    va_list ap;
    va_start(ap, tpl);
    for (const char *p = tpl; *p;) {
        const char *q = strchr(p, '%');
        if (!q) {
            h_raw(h, p, strlen(p));
            break;
        }
        h_raw(h, p, (size_t)(q - p));
        int c = -1;
        size_t len = 1;
        for (int i = 0; i < (int)(sizeof convs / sizeof *convs) && c < 0; i++)
            if (!strncmp(q, convs[i], strlen(convs[i]))) c = i, len = strlen(convs[i]);
        char buf[64] = "?";
        switch (c) {
        case 0: snprintf(buf, sizeof buf, "%%"); break;
        case 1:
            buf[0] = 0;
            h_text(h, va_arg(ap, const char *));
            break;
        case 2: snprintf(buf, sizeof buf, "%d", va_arg(ap, int)); break;
        case 3: snprintf(buf, sizeof buf, "%u", va_arg(ap, unsigned)); break;
        case 4: snprintf(buf, sizeof buf, "%zu", va_arg(ap, size_t)); break;
        case 5: snprintf(buf, sizeof buf, "%lld", va_arg(ap, long long)); break;
        case 6: snprintf(buf, sizeof buf, "%g", va_arg(ap, double)); break;
        case 7: snprintf(buf, sizeof buf, "%.4g", va_arg(ap, double)); break;
        case 8: snprintf(buf, sizeof buf, "%.1f", va_arg(ap, double)); break;
        case 9: snprintf(buf, sizeof buf, "%.2f", va_arg(ap, double)); break;
        case 10: snprintf(buf, sizeof buf, "%.3f", va_arg(ap, double)); break;
        case 11: snprintf(buf, sizeof buf, "%.4f", va_arg(ap, double)); break;
        default: /* a template the page cannot trust: the report fails (and no argument is read past it) */
            if (!h->err) h->err = jem_fail(JEM_ERR_ARG, "page template '%.40s': a conversion h_put does not take", tpl);
            va_end(ap);
            return;
        }
        h_raw(h, buf, strlen(buf));
        p = q + len;
    }
    va_end(ap);
}

/* A table cell holding v with `digits` decimals (pct: as a percentage);
 * "-" when v is not finite. */
static void h_num(html *h, double v, int digits, int pct)
{
    char buf[64];
    if (!(v - v == 0)) snprintf(buf, sizeof buf, "<td>-</td>");
    else if (pct) snprintf(buf, sizeof buf, "<td>%.*f %%</td>", digits, 100 * v);
    else snprintf(buf, sizeof buf, "<td>%.*f</td>", digits, v);
    h_raw(h, buf, strlen(buf));
}

/* A picture as a PNG data URI, with its caption (text), shown `zoom` times
 * its size (pixels kept sharp). */
static jem_status h_figure_zoom(html *h, const jem_image *im, const char *alt, const char *caption, int zoom)
{
    uint8_t *png = NULL;
    char *b64 = NULL;
    size_t n = 0, m = 0;
    jem_status s = jem_png_encode_rgb(im->rgb, im->w, im->h, &png, &n);
    if (!s) s = jem_base64_encode(png, n, &b64, &m);
    if (!s) {
        h_put(h, "<figure><img alt=\"%s\" width=\"%d\" height=\"%d\"%s src=\"data:image/png;base64,", alt, zoom * im->w,
              zoom * im->h, zoom > 1 ? " class=pix" : "");
        h_raw(h, b64, m);
        h_put(h, "\"><figcaption>%s</figcaption></figure>", caption);
    }
    free(png);
    free(b64);
    if (s && !h->err) h->err = s;
    return h->err;
}

static jem_status h_figure(html *h, const jem_image *im, const char *alt, const char *caption)
{
    return h_figure_zoom(h, im, alt, caption, 1);
}

/* ------------------------------------------------------------- sections */

/* One headline figure (or a row of them: one per epsilon, per set) of the
 * summary. */
#define SUM_ROWS 48
typedef struct {
    char key[64];
    char label[200];
    int pct; /* shown as percentages */
    int n;
    char name[CLI_MAX_EPS][64]; /* "" for a single value */
    double v[CLI_MAX_EPS];
} sum_row;

typedef struct {
    html html;   /* the section's body */
    jem_jw json; /* its member of report.json (one value) */
} part;

typedef struct {
    cli_ctx *cx;
    report_opts *o;
    sum_row sum[SUM_ROWS];
    int nsum;
} report;

typedef struct {
    const char *key;   /* report.json member and HTML id */
    const char *name;  /* in progress lines and errors */
    const char *title; /* the section's heading */
    jem_status (*run)(report *r, part *p);
    int (*ready)(report *r);    /* nullable: checks that need the model; 0 or 2 after a usage error */
    int (*on)(const report *r); /* nullable: 0 leaves the section out */
} section;

static sum_row *sum_add(report *r, const char *key, int pct, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 4, 5)))
#endif
    ;
static sum_row *sum_add(report *r, const char *key, int pct, const char *fmt, ...)
{
    static sum_row spare; /* past SUM_ROWS: written to, never shown */
    sum_row *w = r->nsum < SUM_ROWS ? &r->sum[r->nsum++] : &spare;
    memset(w, 0, sizeof *w);
    snprintf(w->key, sizeof w->key, "%s", key);
    w->pct = pct;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(w->label, sizeof w->label, fmt, ap);
    va_end(ap);
    return w;
}

static void sum_val(sum_row *w, const char *name, double v)
{
    if (w->n == CLI_MAX_EPS) return;
    snprintf(w->name[w->n], sizeof w->name[w->n], "%s", name ? name : "");
    w->v[w->n++] = v;
}

static const char *plural(int n) { return n == 1 ? "" : "s"; }

/* A plot's options in the page (the plots' default size: legends stay
 * legible). */
static jem_plot_opts plot_opts(const char *title)
{
    jem_plot_opts po;
    memset(&po, 0, sizeof po);
    po.title = title;
    return po;
}

/* "0.05" */
static const char *eps_name(double e, char *buf, size_t n)
{
    snprintf(buf, n, "%g", e);
    return buf;
}

/* --- the model */

static void meta_row(html *h, const jem_st *st, const char *key, const char *label)
{
    const char *v = jem_st_get_meta(st, key);
    if (v) h_put(h, "<tr><th>%s</th><td>%s</td></tr>", label, v);
}

/* the adversarial training's settings, as jem train records them */
static void adv_row(html *h, const jem_st *st)
{
    const char *kind = jem_st_get_meta(st, "jem.train.adv");
    if (!kind) return;
    const char *norm = jem_st_get_meta(st, "jem.train.adv_norm"), *eps = jem_st_get_meta(st, "jem.train.adv_eps");
    const char *steps = jem_st_get_meta(st, "jem.train.adv_steps"), *step = jem_st_get_meta(st, "jem.train.adv_step");
    const char *ramp = jem_st_get_meta(st, "jem.train.adv_ramp"), *beta = jem_st_get_meta(st, "jem.train.trades_beta");
    const char *rs = jem_st_get_meta(st, "jem.train.adv_random_start");
    h_put(h, "<tr><th>adversarial training</th><td>%s, %s eps %s ([0, 1] scale); PGD of %s steps of %s eps%s",
          !strcmp(kind, "trades") ? "TRADES"
          : !strcmp(kind, "pgd")  ? "PGD-AT"
                                  : kind,
          norm && !strcmp(norm, "l2") ? "L2" : "L-inf", eps ? eps : "?", steps ? steps : "?", step ? step : "?",
          rs && !strcmp(rs, "0") ? "" : " from a random start");
    if (beta) h_put(h, ", beta %s", beta);
    if (ramp && strcmp(ramp, "0")) h_put(h, "; eps ramped up over the first %s iterations", ramp);
    h_put(h, "</td></tr>");
}

static jem_status sec_model(report *r, part *p)
{
    const cli_ctx *cx = r->cx;
    const jem_arch *a = cx->arch;
    const jem_st *st = cx->st;
    html *h = &p->html;
    const int resumable = jem_st_get(st, "_opt.m", NULL, NULL, NULL) != NULL;
    char nb[16];
    h_put(h, "<table class=kv><tr><th>checkpoint</th><td><code>%s</code> (%s)</td></tr>", cx->model,
          resumable ? "with its training state" : "weights only");
    h_put(h, "<tr><th>architecture</th><td>%s: %dx%dx%d input, %d classes, %zu parameters</td></tr>", a->name, a->in_c,
          a->in_h, a->in_w, a->n_classes, jem_net_nparams(cx->net));
    h_put(h, "<tr><th>classes</th><td>");
    for (int k = 0; k < a->n_classes; k++) h_put(h, "%s%d %s", k ? ", " : "", k, cli_class_name(cx, k, nb, sizeof nb));
    h_put(h, "</td></tr>");
    meta_row(h, st, "jem.train.command", "training command");
    meta_row(h, st, "jem.train.mode", "mode");
    meta_row(h, st, "jem.train.iter", "iterations");
    meta_row(h, st, "jem.train.epoch", "epochs completed");
    meta_row(h, st, "jem.train.data", "training data");
    meta_row(h, st, "jem.train.ema", "weights: moving average, decay");
    adv_row(h, st);
    const char *va = jem_st_get_meta(st, "jem.train.val_acc"), *vn = jem_st_get_meta(st, "jem.train.val_n");
    const char *vi = jem_st_get_meta(st, "jem.train.val_iter");
    if (va)
        h_put(h, "<tr><th>accuracy at save</th><td>%s on %s held-out images (validation after iteration %s)</td></tr>",
              va, vn ? vn : "?", vi ? vi : "?");
    else h_put(h, "<tr><th>accuracy at save</th><td>not recorded (no validation during the training run)</td></tr>");
    meta_row(h, st, "jem.version", "written by jem");
    h_put(h, "</table>");
    const char *desc = jem_st_get_meta(st, "jem.arch");
    if (desc) h_put(h, "<details><summary>model description</summary><pre>%s</pre></details>", desc);

    jem_jw *w = &p->json;
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "path", cx->model);
    jem_jw_kstr(w, "arch", a->name);
    jem_jw_kint(w, "parameters", (int64_t)jem_net_nparams(cx->net));
    jem_jw_key(w, "input");
    jem_jw_arr_begin(w);
    jem_jw_int(w, a->in_c);
    jem_jw_int(w, a->in_h);
    jem_jw_int(w, a->in_w);
    jem_jw_arr_end(w);
    jem_jw_key(w, "classes");
    jem_jw_arr_begin(w);
    for (int k = 0; k < a->n_classes; k++) jem_jw_str(w, cli_class_name(cx, k, nb, sizeof nb));
    jem_jw_arr_end(w);
    jem_jw_kbool(w, "training_state", resumable);
    jem_jw_key(w, "metadata");
    jem_jw_obj_begin(w);
    for (int i = 0; i < jem_st_meta_count(st); i++) {
        const char *k = jem_st_meta_key(st, i);
        jem_jw_kstr(w, k, jem_st_get_meta(st, k));
    }
    jem_jw_obj_end(w);
    jem_jw_obj_end(w);
    return h->err;
}

/* --- accuracy and calibration */

static jem_status sec_calibration(report *r, part *p)
{
    const cli_ctx *cx = r->cx;
    cli_eval_args e;
    cli_eval_defaults(&e);
    e.data = r->o->data;
    e.limit = r->o->limit;
    e.noval = r->o->no_temp;
    cli_eval_res res;
    jem_status s = cli_eval_run(cx, &e, &res);
    html *h = &p->html;
    if (!s) {
        const jem_calib *c = &res.c, *ct = &res.ct;
        h_put(h, "<p class=cap>%d images of %s", res.n, e.data);
        if (res.have_t) h_put(h, "; temperature T = %.3f fitted on %d images of %s", res.tf.T, res.val_n, res.val);
        h_put(h, "</p><table><tr><th>metric</th><th>as trained</th>%s</tr>",
              res.have_t ? "<th>temperature scaled</th>" : "");
        const char *names[] = {"accuracy", "NLL", "Brier", "ECE (15 bins)", "MCE", "adaptive ECE"};
        const double v0[] = {c->accuracy, c->nll, c->brier, c->ece, c->mce, c->ace};
        const double v1[] = {c->accuracy, ct->nll, ct->brier, ct->ece, ct->mce, ct->ace};
        for (int k = 0; k < 6; k++) {
            h_put(h, "<tr><td>%s</td>", k == 3 ? (e.bins == 15 ? names[k] : "ECE") : names[k]);
            h_num(h, v0[k], 4, 0);
            if (res.have_t) h_num(h, v1[k], 4, 0);
            h_put(h, "</tr>");
        }
        h_put(h, "<tr><td>ECE (20 bins)</td>");
        h_num(h, res.c20.ece, 4, 0);
        h_put(h, "%s</tr></table>", res.have_t ? "<td>-</td>" : "");
        jem_image im = {0};
        char title[200], cap[300];
        jem_plot_opts po = plot_opts(title);
        snprintf(title, sizeof title, "Reliability, %d images of %s", res.n, e.data);
        snprintf(cap, sizeof cap,
                 "Reliability diagram (as trained): accuracy per confidence bin, %d bins, %d images of %s; the "
                 "panel below counts the images in each bin.",
                 e.bins, res.n, e.data);
        s = cli_eval_plot(cx, &e, &res, &po, &im);
        if (!s) s = h_figure(h, &im, "reliability diagram", cap);
        jem_image_free(&im);
    }
    if (!s) {
        cli_eval_json(&p->json, cx, &e, &res);
        sum_val(sum_add(r, "accuracy", 1, "accuracy, %d images of %s", res.n, e.data), NULL, res.c.accuracy);
        sum_val(sum_add(r, "ece", 1, "ECE (%d bins), as trained", e.bins), NULL, res.c.ece);
        if (res.have_t)
            sum_val(sum_add(r, "ece_temperature_scaled", 1, "ECE after temperature scaling (T = %.3f)", res.tf.T), NULL,
                    res.ct.ece);
        sum_val(sum_add(r, "nll", 0, "NLL, as trained"), NULL, res.c.nll);
    }
    cli_eval_free(&res);
    return s;
}

/* --- out-of-distribution detection */

static void ood_args(const report *r, cli_ood_args *o)
{
    cli_ood_defaults(o);
    o->in = r->o->data;
    o->in_opt = "data";
    o->outs = r->o->ood_used;
    o->out_opt = "ood";
    o->det_given = r->o->ood_det;
    o->det_opt = "ood-detector";
    o->limit = r->o->limit;
    o->tpr = r->o->tpr;
}

static jem_status sec_ood(report *r, part *p)
{
    const cli_ctx *cx = r->cx;
    cli_ood_args o;
    ood_args(r, &o);
    if (cli_ood_check("report", cx, &o)) return jem_fail(JEM_ERR_ARG, "--ood: bad set list"); /* passed before */
    cli_ood_res res;
    jem_status s = cli_ood_run(cx, &o, &res);
    html *h = &p->html;
    const int kind = res.det ? (int)res.det->kind : -1;
    const char *dname = cli_score_col_name(o.col, kind);
    if (!s) {
        h_put(h,
              "<p class=cap>In-distribution: %d images of %s; higher scores mean more in-distribution; each OOD "
              "set's images counted beside it. Detector: <b>%s</b>",
              res.n_in, o.in, dname);
        if (res.det) {
            char lname[32];
            jem_ood_layer_name(res.det->layer, lname, sizeof lname);
            h_put(h, " (fitted on layer %s, %lld images of %s; file %s)", lname, (long long)res.det->n_fit,
                  res.det->data, o.det_path);
        } else {
            h_put(h, " (no fitted detector: jem fit-ood --model %s writes one beside the model)", cx->model);
        }
        h_put(h, ".</p><table>");
        h_put(h, "<tr><th>OOD set</th><th>images</th><th>score</th><th>AUROC</th><th>AUPR-in</th>"
                 "<th>AUPR-out</th><th>FPR at 95 %% TPR</th></tr>");
        for (int i = 0; i < res.nsets; i++)
            for (int k = 0, first = 1; k < CLI_NSCORES; k++) {
                if (!res.have[k]) continue;
                const jem_ood_metrics *m = &res.m[i][k];
                if (first) h_put(h, "<tr class=first><td>%s</td><td>%d</td>", res.names[i], res.n_out[i]);
                else h_put(h, "<tr><td></td><td></td>");
                first = 0;
                h_put(h, k == o.col ? "<td class=t><b>%s</b></td>" : "<td class=t>%s</td>",
                      cli_score_col_name(k, kind));
                h_num(h, m->auroc, 4, 0);
                h_num(h, m->aupr_in, 4, 0);
                h_num(h, m->aupr_out, 4, 0);
                h_num(h, m->fpr95, 4, 0);
                h_put(h, "</tr>");
            }
        h_put(h, "</table>");
        if (res.have_thr) {
            h_put(h,
                  "<p class=cap>Decision: in-distribution iff %s &ge; %g, the threshold that keeps %.1f %% of %d "
                  "held-out images of %s (kept %.2f %%); the fraction of each set it keeps:</p><table><tr><th>set"
                  "</th><th>images</th><th>kept</th></tr>",
                  dname, res.thr, 100 * o.tpr, res.val_n, o.val, 100 * res.kept);
            h_put(h, "<tr><td>%s (in-distribution: true-positive rate)</td><td>%d</td>", o.in, res.n_in);
            h_num(h, res.tpr_in, 2, 1);
            h_put(h, "</tr>");
            for (int i = 0; i < res.nsets; i++) {
                h_put(h, "<tr><td>%s (false-positive rate)</td><td>%d</td>", res.names[i], res.n_out[i]);
                h_num(h, res.fpr[i], 2, 1);
                h_put(h, "</tr>");
            }
            h_put(h, "</table>");
        }
        h_put(h, "<div class=figs>");
        jem_image im = {0};
        char title[200], cap[300];
        const char *hname = cli_score_col_name(o.hs, kind);
        jem_plot_opts po = plot_opts(title);
        snprintf(title, sizeof title, "%s score: %s (%d) and OOD sets", hname, o.in, res.n_in);
        snprintf(cap, sizeof cap, "Histograms of the %s score, each set normalised to its own count (n in the legend).",
                 hname);
        s = cli_ood_hist(&o, &res, &po, &im);
        if (!s) s = h_figure(h, &im, "score histograms", cap);
        jem_image_free(&im);
        snprintf(title, sizeof title, "ROC, %s (in: %d of %s)", hname, res.n_in, o.in);
        snprintf(cap, sizeof cap, "ROC curves of the %s score: %d in-distribution images against each OOD set.", hname,
                 res.n_in);
        if (!s) s = cli_ood_roc(&o, &res, &po, &im);
        if (!s) s = h_figure(h, &im, "ROC curves", cap);
        jem_image_free(&im);
        h_put(h, "</div>");
    }
    if (!s) {
        cli_ood_json(&p->json, cx, &o, &res);
        sum_row *w = sum_add(r, "ood_auroc_logpx", 0,
                             "OOD AUROC of log p(x) against each set (%d in-distribution images)", res.n_in);
        for (int i = 0; i < res.nsets; i++) sum_val(w, res.names[i], res.m[i][JEM_SCORE_LOGPX].auroc);
        if (o.col != JEM_SCORE_LOGPX) {
            char key[64];
            snprintf(key, sizeof key, "ood_auroc_%s", dname);
            w = sum_add(r, key, 0, "OOD AUROC of the detector, %s, against each set (%d in-distribution images)", dname,
                        res.n_in);
            for (int i = 0; i < res.nsets; i++) sum_val(w, res.names[i], res.m[i][o.col].auroc);
        }
        if (res.have_thr) {
            w = sum_add(r, "ood_fpr_at_threshold", 1,
                        "OOD sets kept by %s at the threshold keeping %.0f %% of held-out images (%.1f %% of %s kept)",
                        dname, 100 * o.tpr, 100 * res.tpr_in, o.in);
            for (int i = 0; i < res.nsets; i++) sum_val(w, res.names[i], res.fpr[i]);
        }
    }
    cli_ood_free(&res);
    return s;
}

/* --- covariate shift */

static int shift_on(const report *r) { return r->o->shift_n > 0; }

static jem_status sec_shift(report *r, part *p)
{
    const cli_ctx *cx = r->cx;
    cli_shift_args a = r->o->sa;
    cli_shift_res res;
    jem_status s = cli_shift_run(cx, &a, &res);
    if (s) return s;
    html *h = &p->html;
    h_put(h,
          "<p class=cap>The first %d images of %s, clean (severity 0) and corrupted at severities 1 to 5 (the sets "
          "corrupt:%s:KIND:SEVERITY:seed=%lld); ECE with %d equal-width bins; the mean is over the %d "
          "corruptions.</p>",
          res.n, a.data, a.data, (long long)a.seed, a.bins, res.nk);
    const char *names[3] = {"accuracy", "ECE", "NLL"};
    for (int m = 0; m < 3; m++) {
        h_put(h, "<table><caption>%s</caption><tr><th>corruption</th><th>clean</th>", names[m]);
        for (int v = 1; v <= JEM_CORRUPT_SEVERITIES; v++) h_put(h, "<th>%d</th>", v);
        h_put(h, "</tr>");
        for (int i = 0; i <= res.nk; i++) {
            const cli_shift_row *w = i < res.nk ? &res.row[i] : &res.mean;
            const double *v = m == 0 ? w->acc : m == 1 ? w->ece : w->nll;
            h_put(h, i < res.nk ? "<tr><td>%s</td>" : "<tr class=first><td><b>%s</b></td>",
                  i < res.nk ? jem_corrupt_name(a.kinds[i]) : "mean");
            for (int k = 0; k <= JEM_CORRUPT_SEVERITIES; k++) h_num(h, v[k], m == 2 ? 3 : 1, m != 2);
            h_put(h, "</tr>");
        }
        h_put(h, "</table>");
    }
    h_put(h, "<div class=figs>");
    for (int m = 0; m < 3 && !s; m++) {
        char title[200], cap[300];
        jem_plot_opts po = plot_opts(title);
        snprintf(title, sizeof title, "%s against severity, %d images of %s", names[m], res.n, a.data);
        snprintf(cap, sizeof cap, "%s against severity (0: clean), a line per corruption and their mean; %d images.",
                 names[m], res.n);
        jem_image im = {0};
        s = cli_shift_plot(cx, &a, &res, m, &po, &im);
        if (!s) s = h_figure(h, &im, names[m], cap);
        jem_image_free(&im);
    }
    h_put(h, "</div>");
    if (s) return s;
    cli_shift_json(&p->json, cx, &a, &res);
    sum_row *w =
        sum_add(r, "shift_accuracy", 1, "accuracy under corruption by severity, mean of %d (%d images)", res.nk, res.n);
    char nm[16];
    for (int v = 0; v <= JEM_CORRUPT_SEVERITIES; v++) {
        snprintf(nm, sizeof nm, v ? "%d" : "clean", v);
        sum_val(w, nm, res.mean.acc[v]);
    }
    w = sum_add(r, "shift_ece", 1, "ECE under corruption by severity, mean of %d", res.nk);
    for (int v = 0; v <= JEM_CORRUPT_SEVERITIES; v++) {
        snprintf(nm, sizeof nm, v ? "%d" : "clean", v);
        sum_val(w, nm, res.mean.ece[v]);
    }
    return jem_jw_status(&p->json);
}

/* --- adversarial robustness */

/* the attack's options from the report's (suite: the worst-case suite) */
static int attack_args(const report *r, const char *norm, int suite, cli_attack_args *a)
{
    const report_opts *ro = r->o;
    cli_attack_defaults(a);
    a->data = ro->data;
    a->norm_s = norm;
    a->n = ro->an;
    a->steps = ro->steps;
    a->defence = ro->no_def ? NULL : "sgld";
    a->dn = ro->dn;
    a->dsteps = ro->dsteps;
    a->dchains = ro->dchains;
    a->eot = ro->eot;
    a->queries = ro->queries;
    if (suite) a->suite = "auto";
    return cli_attack_eps("report", a);
}

/* the masking checks of one side as a table, pass or FAIL */
static void checks_html(html *h, const cli_attack_args *a, const char *side, const cli_attack_side *sd)
{
    h_put(h,
          "<p class=cap>Gradient-masking checks, %s (tolerance %.1f points; the unbounded and stronger runs on "
          "the first %d images):</p><table><tr><th>check</th><th>result</th><th>value</th><th>at eps</th></tr>",
          side, a->check_tol, sd->check_n);
    static const char *const what[JEM_NCHECKS] = {
        "accuracy falls with eps (largest rise, each eps on its own)", "unbounded eps (the whole box) reaches 0 %",
        "Square breaks no more than the gradient attacks left", "4x the steps, 2x the restarts lower nothing"};
    for (int k = 0; k < JEM_NCHECKS; k++) {
        const jem_check *c = &sd->chk[k];
        h_put(h, "<tr><td class=t>%s</td>", what[k]);
        if (!c->ran) {
            h_put(h, "<td>not run</td><td>-</td><td>-</td></tr>");
            continue;
        }
        if (c->pass) h_put(h, "<td>pass</td>");
        else h_put(h, "<td class=warn>FAIL</td>");
        h_num(h, c->value, 1, 1);
        if (k == JEM_CHECK_UNBOUNDED) h_put(h, "<td>%g</td></tr>", sd->unb_eps);
        else if (c->e >= 0) h_put(h, "<td>%g</td></tr>", a->eps[c->e]);
        else h_put(h, "<td>-</td></tr>");
    }
    h_put(h, "</table>");
}

static void warnings_html(html *h, const cli_attack_res *res)
{
    for (int i = 0; i < res->nwarn; i++) h_put(h, "<p class=warn>Warning: %s.</p>", res->warn[i]);
}

static jem_status attack_section(report *r, part *p, const char *norm)
{
    const cli_ctx *cx = r->cx;
    cli_attack_args a;
    if (attack_args(r, norm, 0, &a)) return jem_fail(JEM_ERR_ARG, "bad epsilons"); /* the defaults */
    const char *nn = a.norm ? "L2" : "L-inf", *key = a.norm ? "l2" : "linf";
    cli_attack_res res;
    jem_status s = cli_attack_run(cx, &a, &res);
    if (s) return s;
    html *h = &p->html;
    char en[32], title[200], cap[400], k[64];
    h_put(h,
          "<p>PGD %s with a random start, %d step%s of eps/4, %d restart%s; epsilons on the [0, 1] pixel scale; "
          "robust accuracy is the fraction of images still classified correctly (an image broken at a smaller "
          "epsilon counts as broken at every larger one).</p>",
          nn, a.steps, plural(a.steps), a.restarts, plural(a.restarts));
    h_put(h,
          "<p class=cap>Undefended: the first %d images of %s.</p><table><tr><th>epsilon</th>"
          "<th>robust accuracy</th></tr>",
          res.n, a.data);
    for (int e = 0; e < res.ne; e++) {
        h_put(h, "<tr><td>%g</td>", res.eps[e]);
        h_num(h, res.accu[e], 1, 1);
        h_put(h, "</tr>");
    }
    h_put(h, "</table>");
    if (a.defence) {
        h_put(h,
              "<p class=cap>Through SGLD purification (%d step%s, %d chain%s, averaged logits): the first %d "
              "images, attacked with BPDA + EOT (%d draw%s) and by transfer of the undefended attack; the "
              "undefended model on the same %d images beside it.</p><table>",
              a.dsteps, plural(a.dsteps), a.dchains, plural(a.dchains), res.dn, a.eot, plural(a.eot), res.dn);
        h_put(h, "<tr><th>epsilon</th><th>undefended</th><th>transfer</th><th>BPDA + EOT</th>"
                 "<th>defended (worst)</th></tr>");
        for (int e = 0; e < res.ne; e++) {
            h_put(h, "<tr><td>%g</td>", res.eps[e]);
            h_num(h, res.accu_dn[e], 1, 1);
            h_num(h, res.acct[e], 1, 1);
            h_num(h, res.accd[e], 1, 1);
            h_num(h, res.accdef[e], 1, 1);
            h_put(h, "</tr>");
        }
        h_put(h, "</table>");
    }
    checks_html(h, &a, "undefended", &res.u);
    if (a.defence) checks_html(h, &a, "SGLD purification", &res.d);
    warnings_html(h, &res);
    h_put(h, "<div class=figs>");
    jem_plot_opts po = plot_opts(title);
    po.xlabel = "epsilon ([0, 1] pixel scale)";
    po.ylabel = "robust accuracy";
    po.ymin = 0;
    po.ymax = 1;
    char l0[80];
    snprintf(l0, sizeof l0, "undefended (%d images)", res.n);
    jem_series su = {l0, res.eps, res.accu, res.ne};
    snprintf(title, sizeof title, "PGD %s, undefended, %d images", nn, res.n);
    snprintf(cap, sizeof cap, "Undefended robust accuracy against epsilon, the first %d images of %s.", res.n, a.data);
    jem_image im = {0};
    s = jem_plot_lines(&su, 1, &po, &im);
    if (!s) s = h_figure(h, &im, "robust accuracy, undefended", cap);
    jem_image_free(&im);
    if (!s && a.defence) {
        snprintf(l0, sizeof l0, "undefended, the same %d", res.dn);
        jem_series sd[4] = {{l0, res.eps, res.accu_dn, res.ne},
                            {"defence, transfer", res.eps, res.acct, res.ne},
                            {"defence, BPDA + EOT", res.eps, res.accd, res.ne},
                            {"defence, worst of both", res.eps, res.accdef, res.ne}};
        snprintf(title, sizeof title, "PGD %s, SGLD purification, %d images", nn, res.dn);
        snprintf(cap, sizeof cap,
                 "SGLD purification against epsilon on the first %d images (a subset of the undefended plot's %d), "
                 "with the undefended model on the same images.",
                 res.dn, res.n);
        s = jem_plot_lines(sd, 4, &po, &im);
        if (!s) s = h_figure(h, &im, "robust accuracy through the defence", cap);
        jem_image_free(&im);
    }
    h_put(h, "</div>");
    if (s) return s;
    /* the command's JSON, with the undefended model on the defence's images */
    jem_jw *w = &p->json;
    cli_attack_json(w, cx, &a, &res, 1);
    snprintf(k, sizeof k, "robust_%s_undefended", key);
    sum_row *row = sum_add(r, k, 1, "PGD %s robust accuracy per epsilon, undefended (%d images)", nn, res.n);
    for (int e = 0; e < res.ne; e++) sum_val(row, eps_name(res.eps[e], en, sizeof en), res.accu[e]);
    if (a.defence) {
        snprintf(k, sizeof k, "robust_%s_undefended_defence_images", key);
        row = sum_add(r, k, 1, "PGD %s robust accuracy, undefended, on the defence's %d images", nn, res.dn);
        for (int e = 0; e < res.ne; e++) sum_val(row, eps_name(res.eps[e], en, sizeof en), res.accu_dn[e]);
        snprintf(k, sizeof k, "robust_%s_defended", key);
        row = sum_add(r, k, 1, "PGD %s robust accuracy, SGLD purification, worst attack (%d images)", nn, res.dn);
        for (int e = 0; e < res.ne; e++) sum_val(row, eps_name(res.eps[e], en, sizeof en), res.accdef[e]);
    }
    return jem_jw_status(w);
}

static jem_status sec_attack_linf(report *r, part *p) { return attack_section(r, p, "linf"); }
static jem_status sec_attack_l2(report *r, part *p) { return attack_section(r, p, "l2"); }

/* --- the worst case over a stronger attacker: APGD-CE, targeted APGD-DLR
 * and Square in AutoAttack's order, with the masking checks */

static void suite_table(html *h, const cli_attack_args *a, const cli_attack_res *res, const cli_attack_side *sd,
                        int def)
{
    static const char *const title[CLI_NATK] = {"PGD", "FGSM", "APGD-CE", "+ APGD-DLR", "+ Square"};
    h_put(h, "<table><tr><th>epsilon</th>");
    if (def) h_put(h, "<th>transfer</th>");
    for (int k = 0; k < a->natk; k++) h_put(h, "<th>%s</th>", title[a->atk[k]]);
    h_put(h, "<th>worst case</th><th>Square queries (mean)</th></tr>");
    for (int e = 0; e < res->ne; e++) {
        h_put(h, "<tr><td>%g</td>", res->eps[e]);
        if (def) h_num(h, res->acct[e], 1, 1);
        for (int k = 0; k < a->natk; k++) h_num(h, sd->after[k][e], 1, 1);
        int flagged = 0;
        for (int k = 0; k < JEM_NCHECKS; k++) flagged |= sd->chk[k].ran && !sd->chk[k].pass && sd->chk[k].e == e;
        char cell[64];
        snprintf(cell, sizeof cell, "%.1f %%", 100 * (def ? res->accdef[e] : res->accu[e]));
        if (flagged) h_put(h, "<td class=warn>%s (see the warnings)</td>", cell);
        else h_put(h, "<td>%s</td>", cell);
        h_put(h, "<td>%.1f</td></tr>", sd->queries[e]);
    }
    h_put(h, "</table>");
}

static jem_status worst_section(report *r, part *p, const char *norm)
{
    const cli_ctx *cx = r->cx;
    cli_attack_args a;
    if (attack_args(r, norm, 1, &a)) return jem_fail(JEM_ERR_ARG, "bad epsilons");
    const char *nn = a.norm ? "L2" : "L-inf", *key = a.norm ? "l2" : "linf";
    cli_attack_res res;
    jem_status s = cli_attack_run(cx, &a, &res);
    if (s) return s;
    html *h = &p->html;
    h_put(h,
          "<p>APGD with the cross-entropy loss, then APGD with the targeted DLR loss (the top %d classes), then the "
          "gradient-free Square attack (%d queries per image), each on the images the ones before left, as "
          "AutoAttack runs them; APGD %d step%s, %d restart%s; %s; epsilons on the [0, 1] pixel scale. The worst case "
          "is the figure to quote; each column is robust accuracy after that attack and the ones before it.</p>",
          a.targets, a.queries, a.steps, plural(a.steps), a.restarts, plural(a.restarts), nn);
    h_put(h, "<p class=cap>Undefended: the first %d images of %s.</p>", res.n, a.data);
    suite_table(h, &a, &res, &res.u, 0);
    if (a.defence) {
        h_put(h,
              "<p class=cap>Through SGLD purification (%d step%s, %d chain%s): the first %d images; APGD by BPDA + "
              "EOT (%d draw%s), Square by plain queries of the defence, transfer of the undefended attack's "
              "examples; the worst case per image over all of them.</p>",
              a.dsteps, plural(a.dsteps), a.dchains, plural(a.dchains), res.dn, a.eot, plural(a.eot));
        suite_table(h, &a, &res, &res.d, 1);
    }
    checks_html(h, &a, "undefended", &res.u);
    if (a.defence) checks_html(h, &a, "SGLD purification", &res.d);
    warnings_html(h, &res);
    jem_jw *w = &p->json;
    cli_attack_json(w, cx, &a, &res, 1);
    char k[64], en[32];
    snprintf(k, sizeof k, "worst_%s_undefended", key);
    sum_row *row =
        sum_add(r, k, 1, "%s worst-case robust accuracy (APGD-CE, APGD-DLR, Square), undefended (%d images)%s", nn,
                res.n, res.u.chk[0].ran && res.nwarn ? ", masking checks failed" : "");
    for (int e = 0; e < res.ne; e++) sum_val(row, eps_name(res.eps[e], en, sizeof en), res.accu[e]);
    if (a.defence) {
        snprintf(k, sizeof k, "worst_%s_defended", key);
        row = sum_add(r, k, 1, "%s worst-case robust accuracy, SGLD purification (%d images)", nn, res.dn);
        for (int e = 0; e < res.ne; e++) sum_val(row, eps_name(res.eps[e], en, sizeof en), res.accdef[e]);
    }
    return jem_jw_status(w);
}

static int worst_on(const report *r) { return !r->o->no_suite; }
static jem_status sec_worst_linf(report *r, part *p) { return worst_section(r, p, "linf"); }
static jem_status sec_worst_l2(report *r, part *p) { return worst_section(r, p, "l2"); }

/* --- samples */

static void samples_args(const report *r, cli_sample_args *a)
{
    cli_sample_defaults(a);
    a->conditional = 1;
    a->n = r->o->sample_n;
    a->sc.steps = r->o->sample_steps;
    a->from = r->o->sample_from;
    a->data = r->o->data;
}

static int samples_on(const report *r) { return r->o->sample_n > 0; }

static int samples_ready(report *r)
{
    cli_sample_args a;
    samples_args(r, &a);
    return cli_sample_ready("report", "sample-from", r->cx, &a);
}

static jem_status sec_samples(report *r, part *p)
{
    const cli_ctx *cx = r->cx;
    cli_sample_args a;
    samples_args(r, &a);
    cli_sample_res res;
    jem_status s = cli_sample_run(cx, &a, &res);
    jem_image im = {0};
    if (!s) s = cli_sample_grid(cx, &a, &res, &im);
    if (!s) {
        const char *from = !strcmp(a.from, "noise")    ? "uniform noise"
                           : !strcmp(a.from, "buffer") ? "the checkpoint's replay buffer"
                                                       : "per-class Gaussians of the data";
        char cap[400];
        snprintf(cap, sizeof cap,
                 "%d chains per class (%d in all), each %d steps of SGLD on log p(x, y) (step size %g, noise %g) "
                 "from %s; a row per class. Mean log p~(x) %.3f at the start, %.3f at the end.",
                 a.n, res.total, res.sc.steps, (double)res.sc.step_size, (double)res.sc.noise, from, res.logp_start,
                 res.logp_end);
        s = h_figure_zoom(&p->html, &im, "class-conditional samples", cap, 3);
    }
    jem_image_free(&im);
    if (!s) {
        jem_jw *w = &p->json;
        jem_jw_obj_begin(w);
        jem_jw_kstr(w, "from", a.from);
        jem_jw_kint(w, "per_class", a.n);
        jem_jw_kint(w, "chains", res.total);
        jem_jw_kint(w, "steps", res.sc.steps);
        jem_jw_key(w, "step_size");
        jem_jw_float(w, res.sc.step_size);
        jem_jw_key(w, "noise");
        jem_jw_float(w, res.sc.noise);
        jem_jw_kdouble(w, "grad_norm", res.grad_norm);
        jem_jw_kdouble(w, "logp_start", res.logp_start);
        jem_jw_kdouble(w, "logp_end", res.logp_end);
        jem_jw_obj_end(w);
        sum_val(sum_add(r, "samples_logp_end", 0, "mean log p~(x) of %d samples after %d SGLD steps", res.total,
                        res.sc.steps),
                NULL, res.logp_end);
    }
    cli_sample_free(&res);
    return s;
}

/* --- the replay buffer */

/* The checkpoint's replay buffer, as the trainer saves it (src/ebm/train.c):
 * _buffer.x (N, C, H, W) the chains' images, _buffer.y (N) their classes and
 * _buffer.age (N) the iterations since each chain was last (re)initialised
 * (-1: not known; the tensor is missing from checkpoints written before the
 * ages were kept). */
typedef struct {
    int n;              /* slots */
    const float *x;     /* (n, C, H, W) */
    const int64_t *age; /* (n), NULL when not kept */
    long long iter;     /* the checkpoint's iteration (jem.train.iter), -1 when not recorded */
} buffer_view;

/* *found = 0 for a checkpoint without a replay buffer (a weights-only file,
 * a softmax run); an error for a buffer that does not fit the model or whose
 * ages cannot be (below -1, or above the iteration count). */
static jem_status buffer_view_get(const cli_ctx *cx, buffer_view *b, int *found)
{
    const jem_arch *a = cx->arch;
    memset(b, 0, sizeof *b);
    *found = 0;
    jem_dtype dt, dty, dta;
    int nd, ndy, nda;
    int64_t shp[8], shpy[8], shpa[8];
    const float *x = jem_st_get(cx->st, "_buffer.x", &dt, &nd, shp);
    const int32_t *y = jem_st_get(cx->st, "_buffer.y", &dty, &ndy, shpy);
    const int64_t *age = jem_st_get(cx->st, "_buffer.age", &dta, &nda, shpa);
    if (!x && !y && !age) return JEM_OK;
    if (!x || dt != JEM_DT_F32 || nd != 4 || shp[0] < 1 || shp[0] > INT32_MAX || shp[1] != a->in_c ||
        shp[2] != a->in_h || shp[3] != a->in_w || !y || dty != JEM_DT_I32 || ndy != 1 || shpy[0] != shp[0])
        return jem_fail(JEM_ERR_FORMAT, "%s: the replay buffer (_buffer.x, _buffer.y) is not one of %dx%dx%d images",
                        cx->model, a->in_c, a->in_h, a->in_w);
    if (age && (dta != JEM_DT_I64 || nda != 1 || shpa[0] != shp[0]))
        return jem_fail(JEM_ERR_FORMAT, "%s: _buffer.age is not one int64 per slot of the replay buffer", cx->model);
    const char *it = jem_st_get_meta(cx->st, "jem.train.iter");
    char *end = NULL;
    b->iter = it ? strtoll(it, &end, 10) : -1;
    if (!it || end == it || *end || b->iter < 0) b->iter = -1;
    b->n = (int)shp[0];
    b->x = x;
    b->age = age;
    for (int i = 0; age && i < b->n; i++)
        if (age[i] < -1 || (b->iter >= 0 && age[i] > b->iter))
            return jem_fail(JEM_ERR_FORMAT, "%s: _buffer.age is corrupt (slot %d: age %lld at iteration %lld)",
                            cx->model, i, (long long)age[i], b->iter);
    *found = 1;
    return JEM_OK;
}

/* E(x) = -logsumexp_y f(x)[y] of n images x (n, C, H, W) into e (n), by
 * forward passes over chunks of images. */
#define ENERGY_CHUNK 1024
static jem_status energies_of(const cli_ctx *cx, const float *x, int n, const char *what, double *e)
{
    const jem_arch *a = cx->arch;
    const int K = a->n_classes;
    const size_t D = (size_t)a->in_c * a->in_h * a->in_w;
    float *lg = malloc(sizeof(float) * ENERGY_CHUNK * (size_t)K), *lse = malloc(sizeof(float) * ENERGY_CHUNK);
    jem_status s = !lg || !lse ? jem_fail(JEM_ERR_NOMEM, "out of memory for the logits of %d images", n) : JEM_OK;
    cli_bar bar = {0};
    if (!s) cli_bar_start(&bar, cx, what, n);
    for (int i = 0; i < n && !s; i += ENERGY_CHUNK) {
        const int b = n - i < ENERGY_CHUNK ? n - i : ENERGY_CHUNK;
        cli_bar_set(&bar, i);
        s = jem_net_predict(cx->net, x + D * (size_t)i, b, lg);
        if (s) break;
        jem_logsumexp(lg, b, K, lse);
        for (int k = 0; k < b; k++) e[i + k] = -(double)lse[k];
    }
    if (lg && lse) cli_bar_end(&bar);
    free(lg);
    free(lse);
    return s;
}

static int cmp_double(const void *pa, const void *pb)
{
    const double u = *(const double *)pa, v = *(const double *)pb;
    return (u > v) - (u < v);
}

static int cmp_int64(const void *pa, const void *pb)
{
    const int64_t u = *(const int64_t *)pa, v = *(const int64_t *)pb;
    return (u > v) - (u < v);
}

/* A set of energies: the finite ones moved to the front and sorted (n of
 * them), their mean, standard deviation (n - 1) and order statistics. */
typedef struct {
    int n, nonfinite;
    double mean, sd, min, median, max;
} energy_stats;

static void energy_stats_of(double *e, int total, energy_stats *st)
{
    int n = 0;
    for (int i = 0; i < total; i++)
        if (isfinite(e[i])) e[n++] = e[i];
    qsort(e, (size_t)n, sizeof *e, cmp_double);
    double m = 0, ss = 0;
    for (int i = 0; i < n; i++) m += e[i];
    m = n ? m / n : NAN;
    for (int i = 0; i < n; i++) ss += (e[i] - m) * (e[i] - m);
    st->n = n;
    st->nonfinite = total - n;
    st->mean = m;
    st->sd = n > 1 ? sqrt(ss / (n - 1)) : NAN;
    st->min = n ? e[0] : NAN;
    st->median = n ? (n % 2 ? e[n / 2] : 0.5 * (e[n / 2 - 1] + e[n / 2])) : NAN;
    st->max = n ? e[n - 1] : NAN;
}

static void energy_stats_json(jem_jw *w, const char *key, const energy_stats *st)
{
    jem_jw_key(w, key);
    jem_jw_obj_begin(w);
    jem_jw_kint(w, "n", st->n);
    jem_jw_kint(w, "nonfinite", st->nonfinite);
    jem_jw_kdouble(w, "mean", st->mean);
    jem_jw_kdouble(w, "sd", st->sd);
    jem_jw_kdouble(w, "min", st->min);
    jem_jw_kdouble(w, "median", st->median);
    jem_jw_kdouble(w, "max", st->max);
    jem_jw_obj_end(w);
}

static void energy_stats_row(html *h, const char *name, const energy_stats *st)
{
    h_put(h, "<tr><td>%s</td><td>%d</td>", name, st->n);
    h_num(h, st->mean, 3, 0);
    h_num(h, st->sd, 3, 0);
    h_num(h, st->min, 3, 0);
    h_num(h, st->median, 3, 0);
    h_num(h, st->max, 3, 0);
    h_put(h, "</tr>");
}

/* The ages' quantiles: the levels of the training log's buffer_age_q, each
 * the order statistic at round(p (n - 1)) of the known ages. */
static const double age_levels[] = {0, 0.1, 0.25, 0.5, 0.75, 0.9, 1};
#define N_AGE_LEVELS ((int)(sizeof age_levels / sizeof *age_levels))

static jem_status sec_buffer(report *r, part *p)
{
    const cli_ctx *cx = r->cx;
    html *h = &p->html;
    jem_jw *w = &p->json;
    buffer_view b;
    int found;
    jem_status s = buffer_view_get(cx, &b, &found);
    if (s) return s;
    if (!found) {
        h_put(h,
              "<p class=cap>Not shown: <code>%s</code> holds no replay buffer (a weights-only file, such as an "
              "exported model, or a softmax run).</p>",
              cx->model);
        jem_jw_obj_begin(w);
        jem_jw_kbool(w, "present", 0);
        jem_jw_kstr(w, "reason", "the checkpoint holds no replay buffer (weights only, or a softmax run)");
        jem_jw_obj_end(w);
        return h->err;
    }
    const jem_arch *a = cx->arch;
    const int nb = r->o->limit > 0 && r->o->limit < b.n ? r->o->limit : b.n;
    const char *spec = r->o->data;
    jem_dataset ds;
    memset(&ds, 0, sizeof ds);
    int64_t *ages = malloc(sizeof(int64_t) * (size_t)b.n);
    double *agev = malloc(sizeof(double) * (size_t)b.n), *eb = malloc(sizeof(double) * (size_t)nb), *ed = NULL;
    if (!ages || !agev || !eb) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for a replay buffer of %d images", b.n);
        goto done;
    }
    /* the ages: the known ones sorted, with their quantiles and mean */
    int known = 0;
    double age_sum = 0;
    for (int i = 0; b.age && i < b.n; i++)
        if (b.age[i] >= 0) {
            ages[known] = b.age[i];
            agev[known++] = (double)b.age[i];
            age_sum += (double)b.age[i];
        }
    const int unknown = b.n - known;
    qsort(ages, (size_t)known, sizeof *ages, cmp_int64);
    long long q[N_AGE_LEVELS];
    for (int k = 0; k < N_AGE_LEVELS; k++)
        q[k] = known ? (long long)ages[(size_t)llround(age_levels[k] * (double)(known - 1))] : -1;
    const double age_mean = known ? age_sum / known : NAN;
    /* the energies of the buffer's first nb images and of the data */
    char what[300];
    snprintf(what, sizeof what, "energies of the replay buffer (%d images)", nb);
    s = energies_of(cx, b.x, nb, what, eb);
    if (!s) s = cli_open_data(cx, "data", spec, &ds);
    if (s) goto done;
    if (r->o->limit > 0) jem_dataset_truncate(&ds, r->o->limit);
    ed = malloc(sizeof(double) * (size_t)(ds.n > 0 ? ds.n : 1));
    if (!ed) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for the energies of %d images", ds.n);
        goto done;
    }
    snprintf(what, sizeof what, "energies of %s (%d images)", spec, ds.n);
    s = energies_of(cx, ds.x, ds.n, what, ed);
    if (s) goto done;
    energy_stats sb, sd;
    energy_stats_of(eb, nb, &sb);
    energy_stats_of(ed, ds.n, &sd);

    /* the page */
    char it[32] = "?", title[300], cap[600];
    if (b.iter >= 0) snprintf(it, sizeof it, "%lld", b.iter);
    h_put(h,
          "<p class=cap>%d chain%s of %dx%dx%d images saved at iteration %s; an age is the number of iterations "
          "since the chain was last (re)initialised.",
          b.n, plural(b.n), a->in_c, a->in_h, a->in_w, it);
    if (unknown)
        h_put(h, " %d slot%s of unknown age (%s) left out of the ages.", unknown, plural(unknown),
              b.age ? "resumed from a checkpoint written before the ages were kept"
                    : "the checkpoint was written before the ages were kept");
    h_put(h, "</p><table><tr><th>ages</th><th>slots</th><th>known</th>");
    for (int k = 0; k < N_AGE_LEVELS; k++) {
        if (k == 0) h_put(h, "<th>min</th>");
        else if (k == N_AGE_LEVELS - 1) h_put(h, "<th>max</th>");
        else if (age_levels[k] == 0.5) h_put(h, "<th>median</th>");
        else h_put(h, "<th>q%d</th>", (int)lround(100 * age_levels[k]));
    }
    h_put(h, "<th>mean</th></tr><tr><td>iterations</td><td>%d</td><td>%d</td>", b.n, known);
    for (int k = 0; k < N_AGE_LEVELS; k++) {
        if (known) h_put(h, "<td>%lld</td>", q[k]);
        else h_put(h, "<td>-</td>");
    }
    h_num(h, age_mean, 1, 0);
    h_put(h, "</tr></table>");
    h_put(h,
          "<p class=cap>Energies E(x) = -logsumexp<sub>y</sub> f(x)[y] (lower: more likely under the model) of "
          "%s%d of the buffer's %d images and of %d images of %s.",
          nb < b.n ? "the first " : "", nb, b.n, ds.n, spec);
    if (sb.nonfinite || sd.nonfinite)
        h_put(h, " Not finite, left out: %d of the buffer's, %d of the data's.", sb.nonfinite, sd.nonfinite);
    h_put(h, "</p><table><tr><th>E(x)</th><th>images</th><th>mean</th><th>sd</th><th>min</th><th>median</th>"
             "<th>max</th></tr>");
    energy_stats_row(h, "replay buffer", &sb);
    energy_stats_row(h, spec, &sd);
    h_put(h, "</table><div class=figs>");
    jem_image im = {0};
    jem_plot_opts po = plot_opts(title);
    if (known) {
        const jem_sample_set set = {"slots of known age", agev, known};
        po.xlabel = "age (iterations since the chain was (re)initialised)";
        if (q[N_AGE_LEVELS - 1] - q[0] < 40) { /* a bin per age */
            po.bins = (int)(q[N_AGE_LEVELS - 1] - q[0] + 1);
            po.xmin = (double)q[0] - 0.5;
            po.xmax = (double)q[N_AGE_LEVELS - 1] + 0.5;
        }
        snprintf(title, sizeof title, "Replay buffer ages, %d slots at iteration %s", known, it);
        char more[120] = "";
        if (unknown) snprintf(more, sizeof more, "; %d more of unknown age not plotted", unknown);
        snprintf(cap, sizeof cap,
                 "Ages of the replay buffer's %d slot%s of known age (iterations since each chain was last "
                 "(re)initialised), at iteration %s%s.",
                 known, plural(known), it, more);
        s = jem_plot_histograms(&set, 1, &po, &im);
        if (!s) s = h_figure(h, &im, "replay buffer ages", cap);
        jem_image_free(&im);
    } else {
        h_put(h, "<p>No slot's age is known: no histogram of ages.</p>");
    }
    if (!s) {
        const jem_sample_set sets[2] = {{"replay buffer", eb, sb.n}, {spec, ed, sd.n}};
        po = plot_opts(title);
        po.xlabel = "E(x) = -logsumexp_y f(x)[y]";
        snprintf(title, sizeof title, "E(x): replay buffer (%d) and %s (%d)", sb.n, spec, sd.n);
        char which[80];
        if (nb < b.n) snprintf(which, sizeof which, "the first %d of its %d", nb, b.n);
        else snprintf(which, sizeof which, "all %d", b.n);
        snprintf(cap, sizeof cap,
                 "Histograms of E(x) of the replay buffer's images (%s) and of %d images of %s, each "
                 "normalised to its own count (n in the legend).",
                 which, sd.n, spec);
        s = jem_plot_histograms(sets, 2, &po, &im);
        if (!s) s = h_figure(h, &im, "energy histograms, replay buffer and data", cap);
        jem_image_free(&im);
    }
    h_put(h, "</div>");
    if (s) goto done;

    /* report.json and the summary */
    jem_jw_obj_begin(w);
    jem_jw_kbool(w, "present", 1);
    jem_jw_kint(w, "slots", b.n);
    jem_jw_key(w, "iteration");
    if (b.iter >= 0) jem_jw_int(w, b.iter);
    else jem_jw_null(w);
    jem_jw_key(w, "ages");
    jem_jw_obj_begin(w);
    jem_jw_kint(w, "n", b.n);
    jem_jw_kint(w, "known", known);
    jem_jw_kint(w, "unknown", unknown);
#define AGE_Q(key, k)                   \
    do {                                \
        jem_jw_key(w, key);             \
        if (known) jem_jw_int(w, q[k]); \
        else jem_jw_null(w);            \
    } while (0)
    AGE_Q("min", 0);
    AGE_Q("median", 3);
    AGE_Q("max", N_AGE_LEVELS - 1);
    jem_jw_kdouble(w, "mean", age_mean);
    jem_jw_key(w, "quantiles");
    jem_jw_obj_begin(w);
    jem_jw_key(w, "levels");
    jem_jw_arr_begin(w);
    for (int k = 0; k < N_AGE_LEVELS; k++) jem_jw_double(w, age_levels[k]);
    jem_jw_arr_end(w);
    jem_jw_key(w, "values");
    jem_jw_arr_begin(w);
    for (int k = 0; k < N_AGE_LEVELS; k++) {
        if (known) jem_jw_int(w, q[k]);
        else jem_jw_null(w);
    }
    jem_jw_arr_end(w);
    jem_jw_obj_end(w);
#undef AGE_Q
    jem_jw_obj_end(w);
    jem_jw_key(w, "energy");
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "data_set", spec);
    jem_jw_kint(w, "buffer_images", nb);
    energy_stats_json(w, "buffer", &sb);
    energy_stats_json(w, "data", &sd);
    jem_jw_kdouble(w, "gap", sd.mean - sb.mean);
    jem_jw_obj_end(w);
    jem_jw_obj_end(w);
    if (known)
        sum_val(sum_add(r, "buffer_age_median", 0,
                        "median age of the replay buffer's %d chains of known age (iterations)", known),
                NULL, (double)q[3]);
    sum_row *row =
        sum_add(r, "buffer_energy_mean", 0, "mean E(x): replay buffer (%d images), %s (%d images)", sb.n, spec, sd.n);
    sum_val(row, "buffer", sb.mean);
    sum_val(row, "data", sd.mean);
done:
    jem_dataset_free(&ds);
    free(ages);
    free(agev);
    free(eb);
    free(ed);
    return s ? s : h->err;
}

/* The sections, in the page's order. */
static const section sections[] = {
    {"checkpoint", "model", "Model", sec_model, NULL, NULL},
    {"calibration", "calibration", "Accuracy and calibration", sec_calibration, NULL, NULL},
    {"shift", "shift", "Accuracy and calibration under covariate shift", sec_shift, NULL, shift_on},
    {"ood", "OOD", "Out-of-distribution detection", sec_ood, NULL, NULL},
    {"attack_linf", "L-inf attacks", "Adversarial robustness, PGD L-inf", sec_attack_linf, NULL, NULL},
    {"attack_l2", "L2 attacks", "Adversarial robustness, PGD L2", sec_attack_l2, NULL, NULL},
    {"worst_linf", "L-inf worst case", "Worst case over a stronger attacker, L-inf", sec_worst_linf, NULL, worst_on},
    {"worst_l2", "L2 worst case", "Worst case over a stronger attacker, L2", sec_worst_l2, NULL, worst_on},
    {"samples", "samples", "Samples", sec_samples, samples_ready, samples_on},
    {"buffer", "replay buffer", "Replay buffer", sec_buffer, NULL, NULL},
};
#define N_SECTIONS ((int)(sizeof sections / sizeof *sections))

/* ---------------------------------------------------------------- page */

static const char *const CSS =
    "body{font-family:sans-serif;max-width:1100px;margin:2em auto;padding:0 1em;color:#222}"
    "table{border-collapse:collapse;margin:1em 0}caption{text-align:left;padding:4px 0;color:#444}"
    "td,th{border:1px solid #bbb;padding:4px 10px;text-align:right}th{background:#eee}"
    "td:first-child,th:first-child{text-align:left}table.kv td{text-align:left}"
    "tr.first td{border-top:2px solid #888}figure{margin:.5em 0;display:inline-block;max-width:100%}"
    "figure img{max-width:100%;height:auto}figcaption{color:#444;font-size:90%;max-width:800px}"
    ".figs{display:flex;flex-wrap:wrap;gap:1em}pre{background:#f4f4f4;padding:.5em}"
    "code{background:#f4f4f4;padding:1px 4px}.meta{color:#555}nav a{margin-right:1em}.cap{color:#444;margin-bottom:0}"
    "td.t,table.summary td{text-align:left}img.pix{image-rendering:pixelated}.warn{color:#a00;font-weight:bold}";

static void settings_json(jem_jw *w, const report *r)
{
    const report_opts *o = r->o;
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "data", o->data);
    jem_jw_kstr(w, "ood", o->ood_used);
    jem_jw_kint(w, "limit", o->limit);
    jem_jw_kbool(w, "temperature_scaling", !o->no_temp);
    jem_jw_kint(w, "attack_n", o->an);
    jem_jw_kint(w, "steps", o->steps);
    jem_jw_kbool(w, "suite", !o->no_suite);
    if (!o->no_suite) jem_jw_kint(w, "queries", o->queries);
    jem_jw_kbool(w, "defence", !o->no_def);
    if (!o->no_def) {
        jem_jw_kint(w, "defence_n", o->dn);
        jem_jw_kint(w, "defence_steps", o->dsteps);
        jem_jw_kint(w, "defence_chains", o->dchains);
        jem_jw_kint(w, "eot", o->eot);
    }
    jem_jw_kint(w, "sample_n", o->sample_n);
    if (o->sample_n) {
        jem_jw_kint(w, "sample_steps", o->sample_steps);
        jem_jw_kstr(w, "sample_from", o->sample_from);
    }
    jem_jw_kstr(w, "ood_detector", o->ood_det ? o->ood_det : "beside the model");
    jem_jw_kdouble(w, "threshold_tpr", o->tpr);
    jem_jw_kint(w, "shift_n", o->shift_n);
    if (o->shift_n) jem_jw_kstr(w, "shift", o->shift);
    jem_jw_kbool(w, "quick", o->quick);
    jem_jw_kint(w, "threads", jem_get_threads());
    jem_jw_obj_end(w);
}

static void settings_html(html *h, const report *r)
{
    const report_opts *o = r->o;
    h_put(h, "<p class=cap>What ran%s.</p><table class=kv>", o->quick ? " (--quick)" : "");
    h_put(h, "<tr><th>test set</th><td>%s</td></tr>", o->data);
    h_put(h, "<tr><th>OOD sets</th><td>");
    for (const char *q = o->ood_used; *q;) {
        const size_t len = strcspn(q, ",");
        char one[1100];
        snprintf(one, sizeof one, "%.*s", (int)len, q);
        h_put(h, "%s%s", q == o->ood_used ? "" : ", ", one);
        q += len + (q[len] == ',');
    }
    h_put(h, "</td></tr>");
    if (o->limit) h_put(h, "<tr><th>images per set</th><td>at most %d (--limit)</td></tr>", o->limit);
    h_put(h, "<tr><th>attacks</th><td>PGD, %d step%s, on the first %d images</td></tr>", o->steps, plural(o->steps),
          o->an);
    if (o->no_suite) h_put(h, "<tr><th>worst case</th><td>not run (--no-suite)</td></tr>");
    else
        h_put(h,
              "<tr><th>worst case</th><td>APGD-CE, APGD-DLR (%d step%s), Square (%d queries), on the same images</td>"
              "</tr>",
              o->steps, plural(o->steps), o->queries);
    if (o->no_def) h_put(h, "<tr><th>defence</th><td>not run (--no-defence)</td></tr>");
    else
        h_put(h,
              "<tr><th>defence</th><td>SGLD purification, %d step%s, %d chain%s, EOT %d, on the first %d images</td>"
              "</tr>",
              o->dsteps, plural(o->dsteps), o->dchains, plural(o->dchains), o->eot, o->dn);
    if (o->tpr > 0)
        h_put(h, "<tr><th>OOD decision</th><td>threshold keeping %.1f %% of held-out in-distribution images</td></tr>",
              100 * o->tpr);
    if (o->shift_n)
        h_put(h, "<tr><th>covariate shift</th><td>%s, severities 1 to 5, %d images each</td></tr>", o->shift,
              o->shift_n);
    if (o->sample_n)
        h_put(h, "<tr><th>samples</th><td>%d per class, %d steps, from %s</td></tr>", o->sample_n, o->sample_steps,
              o->sample_from);
    h_put(h, "</table>");
}

static void summary_html(html *h, const report *r)
{
    h_put(h, "<table class=summary><tr><th>figure</th><th>value</th></tr>");
    for (int i = 0; i < r->nsum; i++) {
        const sum_row *w = &r->sum[i];
        h_put(h, "<tr><td>%s</td><td>", w->label);
        for (int k = 0; k < w->n; k++) {
            if (w->name[k][0]) h_put(h, "%s%s: ", k ? "; " : "", w->name[k]);
            if (w->pct) h_put(h, "%.1f %%", 100 * w->v[k]);
            else h_put(h, "%.4g", w->v[k]);
        }
        h_put(h, "</td></tr>");
    }
    h_put(h, "</table>");
}

static void summary_json(jem_jw *w, const report *r)
{
    jem_jw_obj_begin(w);
    for (int i = 0; i < r->nsum; i++) {
        const sum_row *s = &r->sum[i];
        jem_jw_key(w, s->key);
        if (s->n == 1 && !s->name[0][0]) {
            jem_jw_double(w, s->v[0]);
            continue;
        }
        jem_jw_obj_begin(w);
        for (int k = 0; k < s->n; k++) {
            jem_jw_key(w, s->name[k]);
            jem_jw_double(w, s->v[k]);
        }
        jem_jw_obj_end(w);
    }
    jem_jw_obj_end(w);
}

static void page_head(html *h, const report *r, const char *date, const int *on)
{
    h_put(h,
          "<!DOCTYPE html>\n<html lang=en><head><meta charset=utf-8>"
          "<meta name=viewport content=\"width=device-width\"><title>jem report: %s</title><style>",
          r->cx->model);
    h_raw(h, CSS, strlen(CSS));
    h_put(h,
          "</style></head><body><header><h1>jem report</h1><p class=meta>Model <code>%s</code> &middot; "
          "jem %s &middot; %s</p></header><nav><a href=\"#summary\">Summary</a>",
          r->cx->model, JEM_VERSION, date);
    for (int i = 0; i < N_SECTIONS; i++)
        if (on[i]) h_put(h, "<a href=\"#%s\">%s</a>", sections[i].key, sections[i].title);
    h_put(h, "<a href=\"#settings\">Settings</a></nav>");
}

static int all_digits(const char *s)
{
    if (!*s) return 0;
    for (; *s; s++)
        if (!isdigit((unsigned char)*s)) return 0;
    return 1;
}

/* The synthetic set spec with at most `limit` images (noise:KIND[:N][:SHAPE]
 * [:seed=S], interp:SPEC[:N][:seed=S]), so a set is named by what is used;
 * other specs as they are. */
static void spec_for(const char *spec, int limit, char *out, size_t n)
{
    snprintf(out, n, "%s", spec);
    const int noise = !strncmp(spec, "noise:", 6), interp = !strncmp(spec, "interp:", 7);
    if (limit <= 0 || (!noise && !interp)) return;
    char f[16][256];
    int nf = 0;
    for (const char *p = spec;;) {
        const size_t len = strcspn(p, ":");
        if (nf == 16 || len >= sizeof f[0]) return; /* not a spec this can rewrite: left as it is */
        snprintf(f[nf++], sizeof f[0], "%.*s", (int)len, p);
        if (!p[len]) break;
        p += len + 1;
    }
    /* the count: noise's third field when all digits; interp's last field
     * (before a seed=) when all digits (else the whole set) */
    int at = -1, end = nf;
    if (!strncmp(f[end - 1], "seed=", 5)) end--;
    const int cand = noise ? 2 : end - 1;
    if (cand >= 2 && cand < end && all_digits(f[cand])) at = cand;
    long count = at >= 0 ? strtol(f[at], NULL, 10) : noise ? 10000 : (long)1 << 30;
    if (count <= limit) return;
    /* rebuild with the count cut to limit (inserted after noise's KIND or
     * before interp's seed when absent) */
    const int ins = at >= 0 ? at : noise ? 2 : end;
    size_t k = 0;
    out[0] = 0;
    for (int i = 0; i <= nf; i++) {
        if (i == ins) k += (size_t)snprintf(out + k, k < n ? n - k : 0, "%s%d", k ? ":" : "", limit);
        if (i == nf) break;
        if (i == at) continue;
        k += (size_t)snprintf(out + k, k < n ? n - k : 0, "%s%s", k ? ":" : "", f[i]);
    }
}

static int report_check(cli_ctx *cx, void *ud)
{
    report_opts *o = ud;
    const cli_spec *sp = cx->spec;
    if (o->no_def) {
        static const char *const def_only[] = {"defence-n", "defence-steps", "defence-chains", "eot"};
        for (int i = 0; i < 4; i++)
            if (cli_given(sp, def_only[i]))
                return cli_usage_error("report", "--%s and --no-defence exclude each other", def_only[i]);
    }
    /* --quick sets the sizes that were not given */
    if (o->quick) {
        struct {
            const char *name;
            int *v, q;
        } qs[] = {{"limit", &o->limit, 300},
                  {"attack-n", &o->an, 50},
                  {"defence-n", &o->dn, 10},
                  {"steps", &o->steps, 3},
                  {"defence-steps", &o->dsteps, 2},
                  {"defence-chains", &o->dchains, 1},
                  {"eot", &o->eot, 1},
                  {"sample-n", &o->sample_n, 2},
                  {"queries", &o->queries, 50},
                  {"sample-steps", &o->sample_steps, 10},
                  {"shift-n", &o->shift_n, 100}};
        for (size_t i = 0; i < sizeof qs / sizeof *qs; i++)
            if (!cli_given(sp, qs[i].name)) *qs[i].v = qs[i].q;
    }
    if (o->dn > o->an) {
        if (cli_given(sp, "defence-n"))
            return cli_usage_error("report", "--defence-n %d: more than the %d images of --attack-n", o->dn, o->an);
        o->dn = o->an; /* the default follows a smaller --attack-n */
    }
    if (o->no_suite && cli_given(sp, "queries"))
        return cli_usage_error("report", "--queries: --no-suite leaves the worst-case sections (and Square) out");
    if (!o->sample_n && (cli_given(sp, "sample-steps") || cli_given(sp, "sample-from")))
        return cli_usage_error("report", "--%s: --sample-n 0 leaves the samples out",
                               cli_given(sp, "sample-steps") ? "sample-steps" : "sample-from");
    if (cli_spec_unlabelled(o->data))
        return cli_usage_error("report", "--data %s: the set has no labels (the report measures accuracy on it)",
                               o->data);
    /* the OOD sets: the default follows --data; synthetic sets cut to --limit */
    char def[2048];
    const char *list = o->ood;
    if (!list) {
        snprintf(def, sizeof def, "%snoise:uniform:2000,noise:gaussian:2000,noise:constant:2000,interp:%s:2000",
                 !strncmp(o->data, "fmnist:", 7) ? "mnist:test," : "", o->data);
        list = def;
    }
    o->ood_used[0] = 0;
    for (const char *p = list; *p;) {
        size_t len = strcspn(p, ",");
        char spec[1024], cut[1100];
        snprintf(spec, sizeof spec, "%.*s", (int)len, p);
        spec_for(spec, o->limit, cut, sizeof cut);
        if (jem_dataset_check(cut, 1, 1, 1)) return cli_usage_error("report", "--ood %s", jem_last_error());
        size_t used = strlen(o->ood_used);
        if (used + strlen(cut) + 2 > sizeof o->ood_used)
            return cli_usage_error("report", "--ood: the list is too long");
        snprintf(o->ood_used + used, sizeof o->ood_used - used, "%s%s", used ? "," : "", cut);
        p += len + (p[len] == ',');
    }
    /* the decision needs held-out in-distribution images: by default those
     * of fmnist:train, so other data leave it out unless asked for */
    if (strncmp(o->data, "fmnist:", 7) && !cli_given(sp, "threshold-tpr")) o->tpr = 0;
    if (!o->shift_n && cli_given(sp, "shift"))
        return cli_usage_error("report", "--shift: --shift-n 0 leaves the shift section out");
    /* the shift section's images follow a smaller --limit unless given */
    if (o->limit > 0 && o->shift_n > o->limit && !cli_given(sp, "shift-n")) o->shift_n = o->limit;
    cli_shift_defaults(&o->sa);
    o->sa.data = o->data;
    o->sa.corruptions = o->shift;
    o->sa.limit = o->shift_n;
    if (o->shift_n && cli_shift_check("report", "shift", &o->sa)) return 2;
    static report rr; /* ood_args reads the options through a report */
    rr.cx = cx;
    rr.o = o;
    cli_ood_args oa;
    ood_args(&rr, &oa);
    return cli_ood_check("report", cx, &oa);
}

static void local_date(char *buf, size_t n)
{
    time_t t = time(NULL);
    struct tm tm;
    if (!localtime_r(&t, &tm) || !strftime(buf, n, "%Y-%m-%dT%H:%M:%S%z", &tm)) snprintf(buf, n, "unknown");
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* The sections in turn; then the page, report.json and the summary. */
static int report_run(cli_ctx *cx, report_opts *o)
{
    static report r; /* its summary rows are large */
    memset(&r, 0, sizeof r);
    r.cx = cx;
    r.o = o;
    int on[N_SECTIONS], n_on = 0, rc = 0;
    for (int i = 0; i < N_SECTIONS; i++) {
        on[i] = !sections[i].on || sections[i].on(&r);
        n_on += on[i];
        if (on[i] && sections[i].ready && (rc = sections[i].ready(&r))) return rc;
    }
    part parts[N_SECTIONS];
    double secs[N_SECTIONS] = {0};
    memset(parts, 0, sizeof parts);
    for (int i = 0; i < N_SECTIONS; i++) jem_jw_init(&parts[i].json);
    char date[64], prefix[80], el[32];
    local_date(date, sizeof date);
    jem_status s = JEM_OK;
    int step = 0, failed = -1;
    for (int i = 0; i < N_SECTIONS && !s; i++) {
        if (!on[i]) continue;
        snprintf(prefix, sizeof prefix, "[%d/%d] %s: ", ++step, n_on, sections[i].name);
        cx->bar_prefix = prefix;
        const double t0 = now_s();
        s = sections[i].run(&r, &parts[i]);
        if (!s) s = parts[i].html.err ? parts[i].html.err : jem_jw_status(&parts[i].json);
        secs[i] = now_s() - t0;
        if (s) failed = i;
        else if (cx->tty) {
            cli_fmt_time(secs[i], el, sizeof el);
            fprintf(stderr, "jem report: [%d/%d] %s: done in %s\n", step, n_on, sections[i].name, el);
        }
    }
    cx->bar_prefix = NULL;
    html page = {0};
    jem_jw j;
    jem_jw_init(&j);
    char hp[4200], jp[4200];
    snprintf(hp, sizeof hp, "%s/report.html", o->out);
    snprintf(jp, sizeof jp, "%s/report.json", o->out);
    if (s) {
        const char *m = jem_last_error();
        fprintf(stderr, "jem report: error: %s: %s\n", sections[failed].name, m && *m ? m : jem_strerror(s));
        rc = s == JEM_ERR_INTERRUPTED ? 130 : 1;
        goto done;
    }
    /* the page */
    page_head(&page, &r, date, on);
    h_put(&page, "<section id=summary><h2>Summary</h2>");
    summary_html(&page, &r);
    h_put(&page, "</section>");
    for (int i = 0; i < N_SECTIONS; i++) {
        if (!on[i]) continue;
        h_put(&page, "<section id=\"%s\"><h2>%s</h2>", sections[i].key, sections[i].title);
        h_raw(&page, parts[i].html.p, parts[i].html.n);
        h_put(&page, "</section>");
    }
    h_put(&page, "<section id=settings><h2>Settings</h2>");
    settings_html(&page, &r);
    h_put(&page, "</section></body></html>\n");
    /* report.json: the settings, the summary, each section's member */
    jem_jw_obj_begin(&j);
    jem_jw_kstr(&j, "jem_version", JEM_VERSION);
    jem_jw_kstr(&j, "date", date);
    jem_jw_kstr(&j, "model", cx->model);
    jem_jw_key(&j, "settings");
    settings_json(&j, &r);
    jem_jw_key(&j, "summary");
    summary_json(&j, &r);
    jem_jw_key(&j, "seconds");
    jem_jw_obj_begin(&j);
    for (int i = 0; i < N_SECTIONS; i++)
        if (on[i]) jem_jw_kdouble(&j, sections[i].key, secs[i]);
    jem_jw_obj_end(&j);
    for (int i = 0; i < N_SECTIONS; i++) {
        if (!on[i]) continue;
        jem_jw_key(&j, sections[i].key);
        jem_jw_json(&j, jem_jw_cstr(&parts[i].json), jem_jw_len(&parts[i].json));
    }
    jem_jw_obj_end(&j);
    jem_jw_raw(&j, "\n");
    s = page.err ? page.err : jem_jw_status(&j);
    if (!s) s = cli_make_dir(o->out);
    if (!s) s = jem_write_file_atomic(hp, page.p, page.n);
    if (!s) s = jem_write_file_atomic(jp, jem_jw_cstr(&j), jem_jw_len(&j));
    if (s) {
        rc = cli_fail("report", s);
        goto done;
    }
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "jem_version", JEM_VERSION);
        jem_jw_kstr(&w, "date", date);
        jem_jw_kstr(&w, "model", cx->model);
        jem_jw_kstr(&w, "html", hp);
        jem_jw_kstr(&w, "json", jp);
        jem_jw_key(&w, "summary");
        summary_json(&w, &r);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("wrote %s and %s\n", hp, jp);
        for (int i = 0; i < r.nsum; i++) {
            const sum_row *w = &r.sum[i];
            printf("  %s:", w->label);
            for (int k = 0; k < w->n; k++) {
                printf("%s%s%s", k ? "," : "", w->name[k][0] ? " " : "", w->name[k]);
                if (w->pct) printf(" %.1f %%", 100 * w->v[k]);
                else printf(" %.4g", w->v[k]);
            }
            printf("\n");
        }
    }
done:
    for (int i = 0; i < N_SECTIONS; i++) {
        free(parts[i].html.p);
        jem_jw_free(&parts[i].json);
    }
    free(page.p);
    jem_jw_free(&j);
    return rc;
}

int cmd_report(int argc, char **argv)
{
    static report_opts o; /* ood_used is large */
    memset(&o, 0, sizeof o);
    o.out = "report";
    o.data = "fmnist:test";
    o.an = 500;
    o.dn = 100;
    o.steps = 20;
    o.dsteps = 5;
    o.dchains = 2;
    o.eot = 2;
    o.queries = 1000;
    o.sample_n = 8;
    o.sample_steps = 100;
    o.sample_from = "noise";
    o.tpr = 0.95;
    o.shift = "all";
    o.shift_n = 1000;
    cli_opt opts[] = {
        {OPT("out", OPT_STR, &o.out, "output folder (report.html, report.json; made if missing)"),
         .flags = OPT_OUT_DIR},
        {OPT("data", OPT_STR, &o.data, "labelled test set (calibration, in-distribution set, attacks)"),
         .flags = OPT_SPEC},
        {OPT("ood", OPT_STR, &o.ood, "comma-separated OOD sets"), .flags = OPT_SPECS,
         .def = "mnist:test (fmnist data), noise:uniform, gaussian and constant, interp of --data; 2000 each"},
        {OPT("limit", OPT_INT, &o.limit,
             "images per set for calibration and OOD (0: all; synthetic sets are made this size)"),
         ATLEAST(0)},
        {OPT("ood-detector", OPT_STR, &o.ood_det, "fitted OOD detector file (jem fit-ood)"), .flags = OPT_IN_FILE,
         .def = "MODEL.ood.safetensors beside the model, when it exists"},
        {OPT("threshold-tpr", OPT_DOUBLE, &o.tpr, "OOD decision keeping this fraction of held-out images (0: none)"),
         RANGE(0, 1), .def = "0.95 for fmnist data, else 0"},
        {OPT("shift", OPT_STR, &o.shift, "corruptions of the covariate-shift section (comma-separated, or all)")},
        {OPT("shift-n", OPT_INT, &o.shift_n, "images per corruption and severity (0: no shift section)"), ATLEAST(0),
         .def = "1000, or a smaller --limit"},
        {OPT("no-temperature", OPT_FLAG, &o.no_temp,
             "skip temperature scaling (it fits on the 5000 images the trainer holds out of fmnist:train)")},
        {OPT("attack-n", OPT_INT, &o.an, "test images attacked"), RANGE(1, 1 << 30)},
        {OPT("defence-n", OPT_INT, &o.dn, "test images attacked through the SGLD defence (at most --attack-n)"),
         RANGE(1, 1 << 30)},
        {OPT("steps", OPT_INT, &o.steps, "PGD and APGD steps"), RANGE(1, 100000)},
        {OPT("queries", OPT_INT, &o.queries, "Square's queries per image in the worst-case sections"),
         RANGE(2, 1000000)},
        {OPT("no-suite", OPT_FLAG, &o.no_suite, "leave out the worst-case sections (APGD-CE, APGD-DLR, Square)")},
        {OPT("defence-steps", OPT_INT, &o.dsteps, "SGLD purification steps"), RANGE(0, 100000)},
        {OPT("defence-chains", OPT_INT, &o.dchains, "purification chains per image"), RANGE(1, 1000)},
        {OPT("eot", OPT_INT, &o.eot, "EOT draws per gradient"), RANGE(1, 1000)},
        {OPT("no-defence", OPT_FLAG, &o.no_def, "attack the undefended model only")},
        {OPT("sample-n", OPT_INT, &o.sample_n, "class-conditional samples per class (0: no samples section)"),
         RANGE(0, 1000)},
        {OPT("sample-steps", OPT_INT, &o.sample_steps, "SGLD steps of each sample chain"), RANGE(1, 100000)},
        {OPT("sample-from", OPT_STR, &o.sample_from,
             "chains start from uniform noise, per-class Gaussians of --data or the checkpoint's replay buffer"),
         .choices = "noise|informative|buffer"},
        {OPT("quick", OPT_FLAG, &o.quick, "a small, fast run: sets the sizes not given (see above)")},
        CLI_END};
    const cli_spec sp = {.name = "report",
                         .usage = "--model CKPT [--out DIR] [options]",
                         .note =
                             "Runs calibration, OOD detection, L-inf and L2 attacks and sampling on the model, then "
                             "writes DIR/report.html (self-contained)\nand DIR/report.json; nothing is written "
                             "if a step fails. --quick sets every size not given on the command line to\n"
                             "--limit 300 --attack-n 50 --defence-n 10 --steps 3 --queries 50 --defence-steps 2 "
                             "--defence-chains 1 --eot 1 --sample-n 2\n--sample-steps 10 --shift-n 100 (sizes given "
                             "keep their values).",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = report_check,
                         .ud = &o};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = report_run(&cx, &o);
    cli_end(&cx);
    return r;
}

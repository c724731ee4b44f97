/* jem shift: accuracy, ECE and NLL under covariate shift (Ovadia et al.
 * 2019): the labelled set clean, then corrupted by each corruption of
 * jem_corrupt_apply at severities 1 to 5 (the images of
 * corrupt:DATA:KIND:SEVERITY:seed=S), per corruption and averaged, with a
 * plot of one metric against severity. */
#include "cli/steps.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define SEV     JEM_CORRUPT_SEVERITIES
#define CHUNK   1024
#define METRICS "accuracy|ece|nll"

void cli_shift_defaults(cli_shift_args *a)
{
    memset(a, 0, sizeof *a);
    a->data = "fmnist:test";
    a->corruptions = "all";
    a->bins = 15;
    a->plot_metric = "ece";
}

int cli_shift_check(const char *cmd, const char *opt, cli_shift_args *a)
{
    a->nk = 0;
    if (!strcmp(a->corruptions, "all")) {
        for (int k = 0; k < jem_corrupt_count() && k < CLI_SHIFT_MAX; k++) a->kinds[a->nk++] = k;
        return 0;
    }
    char all[512] = "";
    for (int k = 0; k < jem_corrupt_count(); k++)
        snprintf(all + strlen(all), sizeof all - strlen(all), "%s%s", k ? ", " : "", jem_corrupt_name(k));
    for (const char *p = a->corruptions;;) {
        const size_t len = strcspn(p, ",");
        char name[64];
        if (!len || len >= sizeof name)
            return cli_usage_error(cmd,
                                   "--%s '%s': an empty or overlong name in the list (want all, or names "
                                   "among %s)",
                                   opt, a->corruptions, all);
        snprintf(name, sizeof name, "%.*s", (int)len, p);
        const int k = jem_corrupt_find(name);
        if (k < 0)
            return cli_usage_error(cmd, "--%s: unknown corruption '%s' (want all, or names among %s)", opt, name, all);
        for (int i = 0; i < a->nk; i++)
            if (a->kinds[i] == k) return cli_usage_error(cmd, "--%s: '%s' is listed twice", opt, name);
        if (a->nk == CLI_SHIFT_MAX) return cli_usage_error(cmd, "--%s: at most %d corruptions", opt, CLI_SHIFT_MAX);
        a->kinds[a->nk++] = k;
        if (!p[len]) return 0;
        p += len + 1;
    }
}

/* accuracy, ECE and NLL of the model on n images x (n, D) labelled y */
static jem_status measure(const cli_ctx *cx, const float *x, const int32_t *y, int n, int bins, float *lg, float *pr,
                          double *acc, double *ece, double *nll)
{
    const int K = cx->arch->n_classes;
    const size_t D = (size_t)cx->arch->in_c * cx->arch->in_h * cx->arch->in_w;
    jem_status s = JEM_OK;
    for (int i = 0; i < n && !s; i += CHUNK) {
        const int b = n - i < CHUNK ? n - i : CHUNK;
        s = jem_net_predict(cx->net, x + D * (size_t)i, b, lg + (size_t)i * K);
    }
    if (s) return s;
    jem_softmax_temp(lg, n, K, 1.0, pr);
    jem_calib c;
    s = jem_calibration(pr, y, n, K, bins, &c, NULL, NULL);
    if (s) return s;
    *acc = c.accuracy;
    *ece = c.ece;
    *nll = c.nll;
    return JEM_OK;
}

jem_status cli_shift_run(const cli_ctx *cx, const cli_shift_args *a, cli_shift_res *r)
{
    memset(r, 0, sizeof *r);
    const int K = cx->arch->n_classes;
    jem_dataset ds;
    jem_status s = cli_open_data(cx, "data", a->data, &ds);
    if (s) return s;
    if (a->limit > 0) jem_dataset_truncate(&ds, a->limit);
    s = cli_check_labels(cx, "data", &ds, 1);
    const size_t D = (size_t)ds.c * ds.h * ds.w;
    float *x = NULL, *lg = NULL, *pr = NULL;
    if (!s) {
        x = malloc(sizeof(float) * D * (size_t)ds.n);
        lg = malloc(sizeof(float) * (size_t)ds.n * K);
        pr = malloc(sizeof(float) * (size_t)ds.n * K);
        if (!x || !lg || !pr) s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d images", ds.n);
    }
    r->n = ds.n;
    r->nk = a->nk;
    double acc0 = 0, ece0 = 0, nll0 = 0;
    if (!s) s = measure(cx, ds.x, ds.y, ds.n, a->bins, lg, pr, &acc0, &ece0, &nll0);
    cli_bar bar;
    char what[400];
    snprintf(what, sizeof what, "%s under %d corruption%s x %d severities (%d images each)", a->data, a->nk,
             a->nk == 1 ? "" : "s", SEV, ds.n);
    cli_bar_start(&bar, cx, what, (int64_t)a->nk * SEV);
    for (int i = 0; i < a->nk && !s; i++) {
        cli_shift_row *w = &r->row[i];
        w->acc[0] = acc0;
        w->ece[0] = ece0;
        w->nll[0] = nll0;
        for (int v = 1; v <= SEV && !s; v++) {
            /* the images of corrupt:DATA:KIND:v:seed=S, first N (image i's
             * noise depends on i alone) */
            memcpy(x, ds.x, sizeof(float) * D * (size_t)ds.n);
            s = jem_corrupt_apply(a->kinds[i], v, x, ds.n, ds.c, ds.h, ds.w, a->seed);
            if (!s) s = measure(cx, x, ds.y, ds.n, a->bins, lg, pr, &w->acc[v], &w->ece[v], &w->nll[v]);
            cli_bar_set(&bar, (int64_t)i * SEV + v);
        }
    }
    cli_bar_end(&bar);
    for (int v = 0; v <= SEV && !s; v++) {
        for (int i = 0; i < a->nk; i++) {
            r->mean.acc[v] += r->row[i].acc[v] / a->nk;
            r->mean.ece[v] += r->row[i].ece[v] / a->nk;
            r->mean.nll[v] += r->row[i].nll[v] / a->nk;
        }
    }
    free(x);
    free(lg);
    free(pr);
    jem_dataset_free(&ds);
    return s;
}

static const double *metric_of(const cli_shift_row *w, int metric)
{
    return metric == 0 ? w->acc : metric == 1 ? w->ece : w->nll;
}

static const char *const metric_names[3] = {"accuracy", "ECE", "NLL"};

jem_status cli_shift_plot(const cli_ctx *cx, const cli_shift_args *a, const cli_shift_res *r, int metric,
                          const jem_plot_opts *popts, jem_image *im)
{
    static const double sev[SEV + 1] = {0, 1, 2, 3, 4, 5};
    jem_series ser[CLI_SHIFT_MAX + 1];
    char mean_name[64];
    int n = 0;
    for (int i = 0; i < r->nk; i++)
        ser[n++] = (jem_series){jem_corrupt_name(a->kinds[i]), sev, metric_of(&r->row[i], metric), SEV + 1};
    snprintf(mean_name, sizeof mean_name, "mean of %d", r->nk);
    if (r->nk > 1) ser[n++] = (jem_series){mean_name, sev, metric_of(&r->mean, metric), SEV + 1};
    char title[300], ylabel[64];
    snprintf(title, sizeof title, "%s under corruption, %s (%d images of %s)", metric_names[metric], cx->arch->name,
             r->n, a->data);
    snprintf(ylabel, sizeof ylabel, "%s%s", metric_names[metric], metric == 1 ? " (15 bins)" : "");
    if (metric == 1 && a->bins != 15) snprintf(ylabel, sizeof ylabel, "ECE (%d bins)", a->bins);
    jem_plot_opts po;
    if (popts) po = *popts;
    else memset(&po, 0, sizeof po);
    if (!po.title) po.title = title;
    if (!po.xlabel) po.xlabel = "severity (0: clean)";
    if (!po.ylabel) po.ylabel = ylabel;
    if (metric == 0 && !(po.ymin < po.ymax)) {
        po.ymin = 0;
        po.ymax = 1;
    }
    return jem_plot_lines(ser, n, &po, im);
}

static void row_json(jem_jw *w, const cli_shift_row *row)
{
    const char *keys[3] = {"accuracy", "ece", "nll"};
    jem_jw_obj_begin(w);
    for (int m = 0; m < 3; m++) {
        jem_jw_key(w, keys[m]);
        jem_jw_arr_begin(w);
        for (int v = 0; v <= SEV; v++) jem_jw_double(w, metric_of(row, m)[v]);
        jem_jw_arr_end(w);
    }
    jem_jw_obj_end(w);
}

void cli_shift_json(jem_jw *w, const cli_ctx *cx, const cli_shift_args *a, const cli_shift_res *r)
{
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "model", cx->model);
    jem_jw_kstr(w, "data", a->data);
    jem_jw_kint(w, "n", r->n);
    jem_jw_kint(w, "bins", a->bins);
    jem_jw_kint(w, "seed", (int64_t)a->seed);
    jem_jw_kstr(w, "severities", "index 0 is the clean set, 1 to 5 the severities");
    jem_jw_key(w, "corruptions");
    jem_jw_obj_begin(w);
    for (int i = 0; i < r->nk; i++) {
        jem_jw_key(w, jem_corrupt_name(a->kinds[i]));
        row_json(w, &r->row[i]);
    }
    jem_jw_obj_end(w);
    jem_jw_key(w, "mean");
    row_json(w, &r->mean);
    jem_jw_obj_end(w);
}

static void print_table(const cli_shift_args *a, const cli_shift_res *r, int m)
{
    printf("\n%s%s\n%-16s", metric_names[m], m == 1 ? " (equal-width bins)" : "", "corruption");
    printf(" %8s", "clean");
    for (int v = 1; v <= SEV; v++) printf(" %7s%d", "sev ", v);
    printf("\n");
    for (int i = 0; i <= r->nk; i++) {
        if (i == r->nk && r->nk < 2) break;
        const cli_shift_row *w = i < r->nk ? &r->row[i] : &r->mean;
        printf("%-16s", i < r->nk ? jem_corrupt_name(a->kinds[i]) : "mean");
        for (int v = 0; v <= SEV; v++) printf(" %8.4f", metric_of(w, m)[v]);
        printf("\n");
    }
}

#define MAX_COMPARE 7

/* the --compare list: each an existing file; 0, or a usage error and 2 */
static int compare_check(const char *list, char paths[][4096], int *n)
{
    *n = 0;
    if (!list) return 0;
    for (const char *p = list;;) {
        const size_t len = strcspn(p, ",");
        if (!len || len >= 4096)
            return cli_usage_error("shift", "--compare '%s': an empty or overlong file name", list);
        if (*n == MAX_COMPARE) return cli_usage_error("shift", "--compare: at most %d checkpoints", MAX_COMPARE);
        snprintf(paths[*n], 4096, "%.*s", (int)len, p);
        if (access(paths[*n], R_OK) != 0)
            return cli_usage_error("shift", "--compare %s: %s", paths[*n], strerror(errno));
        (*n)++;
        if (!p[len]) return 0;
        p += len + 1;
    }
}

static char cmp_paths[MAX_COMPARE][4096];
static int n_cmp;

static int shift_check(cli_ctx *cx, void *ud)
{
    cli_shift_args *a = ud;
    if (compare_check(a->compare, cmp_paths, &n_cmp)) return 2;
    if (cli_spec_unlabelled(a->data))
        return cli_usage_error("shift", "--data %s: the set has no labels to measure accuracy on", a->data);
    if (!a->plot && cli_given(cx->spec, "plot-metric"))
        return cli_usage_error("shift", "--plot-metric needs --plot FILE");
    return cli_shift_check("shift", "corruptions", a);
}

/* the mean of one metric against severity, a line per model (--compare) */
static jem_status compare_plot(const cli_shift_args *a, const cli_shift_res *res, const char *const *names, int n,
                               int metric, jem_image *im)
{
    static const double sev[SEV + 1] = {0, 1, 2, 3, 4, 5};
    jem_series ser[MAX_COMPARE + 1];
    for (int i = 0; i < n; i++) ser[i] = (jem_series){names[i], sev, metric_of(&res[i].mean, metric), SEV + 1};
    char title[300];
    snprintf(title, sizeof title, "%s under corruption, mean of %d, by model (%d images of %s)", metric_names[metric],
             res[0].nk, res[0].n, a->data);
    jem_plot_opts po;
    memset(&po, 0, sizeof po);
    po.title = title;
    po.xlabel = "severity (0: clean)";
    po.ylabel = metric_names[metric];
    if (metric == 0) {
        po.ymin = 0;
        po.ymax = 1;
    }
    return jem_plot_lines(ser, n, &po, im);
}

/* every --compare model on the same images; res[0] is --model's */
static jem_status compare_run(cli_ctx *cx, const cli_shift_args *a, cli_shift_res *res)
{
    jem_status s = JEM_OK;
    for (int i = 0; i < n_cmp && !s; i++) {
        jem_net *net = NULL;
        s = jem_ckpt_load(cmp_paths[i], &net);
        if (s) {
            char msg[1200];
            snprintf(msg, sizeof msg, "%s", jem_last_error());
            return jem_fail(s, "--compare %s", msg);
        }
        const jem_arch *ar = jem_net_arch(net);
        if (ar->in_c != cx->arch->in_c || ar->in_h != cx->arch->in_h || ar->in_w != cx->arch->in_w ||
            ar->n_classes != cx->arch->n_classes)
            s = jem_fail(JEM_ERR_SHAPE,
                         "--compare %s: model '%s' takes %dx%dx%d images into %d classes, --model's "
                         "%dx%dx%d into %d",
                         cmp_paths[i], ar->name, ar->in_c, ar->in_h, ar->in_w, ar->n_classes, cx->arch->in_c,
                         cx->arch->in_h, cx->arch->in_w, cx->arch->n_classes);
        cli_ctx c2 = *cx;
        c2.net = net;
        c2.arch = ar;
        c2.model = cmp_paths[i];
        if (!s) s = cli_shift_run(&c2, a, &res[i + 1]);
        jem_net_free(net);
    }
    return s;
}

static int shift_run(cli_ctx *cx, cli_shift_args *a)
{
    static cli_shift_res res[MAX_COMPARE + 1];
    cli_shift_res *rp = &res[0];
    jem_status s = cli_shift_run(cx, a, rp);
    if (!s && n_cmp) s = compare_run(cx, a, res);
    const char *names[MAX_COMPARE + 1] = {cx->model};
    for (int i = 0; i < n_cmp; i++) names[i + 1] = cmp_paths[i];
    if (!s && a->plot && n_cmp) {
        const int m = !strcmp(a->plot_metric, "accuracy") ? 0 : !strcmp(a->plot_metric, "ece") ? 1 : 2;
        jem_image im = {0};
        s = compare_plot(a, res, names, n_cmp + 1, m, &im);
        if (!s) s = jem_image_write_png(a->plot, &im);
        jem_image_free(&im);
        if (s) return cli_fail("shift", s);
    }
    if (s) return cli_fail("shift", s);
    if (n_cmp) {
        if (cx->json) {
            jem_jw w;
            jem_jw_init(&w);
            jem_jw_arr_begin(&w);
            for (int i = 0; i <= n_cmp; i++) {
                cli_ctx c2 = *cx;
                c2.model = names[i];
                cli_shift_json(&w, &c2, a, &res[i]);
            }
            jem_jw_arr_end(&w);
            printf("%s\n", jem_jw_cstr(&w));
            jem_jw_free(&w);
            return 0;
        }
        printf("%d images of %s, each corrupted at severities 1 to 5 (corrupt:%s:KIND:SEVERITY:seed=%llu); the mean "
               "over %d corruptions; ECE with %d bins\n\n%-40s %-9s %8s",
               res[0].n, a->data, a->data, (unsigned long long)a->seed, a->nk, a->bins, "model", "metric", "clean");
        for (int v = 1; v <= SEV; v++) printf(" %7s%d", "sev ", v);
        printf("\n");
        for (int i = 0; i <= n_cmp; i++)
            for (int m = 0; m < 3; m++) {
                printf("%-40s %-9s", m ? "" : names[i], metric_names[m]);
                for (int v = 0; v <= SEV; v++) printf(" %8.4f", metric_of(&res[i].mean, m)[v]);
                printf("\n");
            }
        if (a->plot) printf("\nplot: %s\n", a->plot);
        return 0;
    }
    cli_shift_res r = res[0];
    if (!s && a->plot) {
        const int m = !strcmp(a->plot_metric, "accuracy") ? 0 : !strcmp(a->plot_metric, "ece") ? 1 : 2;
        jem_image im = {0};
        s = cli_shift_plot(cx, a, &r, m, NULL, &im);
        if (!s) s = jem_image_write_png(a->plot, &im);
        jem_image_free(&im);
    }
    if (s) return cli_fail("shift", s);
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        cli_shift_json(&w, cx, a, &r);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
        return 0;
    }
    printf("model %s, %d images of %s, each corrupted at severities 1 to 5 (corrupt:%s:KIND:SEVERITY:seed=%llu); "
           "ECE with %d bins\n",
           cx->model, r.n, a->data, a->data, (unsigned long long)a->seed, a->bins);
    for (int m = 0; m < 3; m++) print_table(a, &r, m);
    if (a->plot) printf("\nplot: %s\n", a->plot);
    return 0;
}

int cmd_shift(int argc, char **argv)
{
    cli_shift_args a;
    cli_shift_defaults(&a);
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &a.data, "labelled data set"), .flags = OPT_SPEC},
        {OPT("corruptions", OPT_STR, &a.corruptions, "comma-separated corruptions (see above), or all")},
        {OPT("limit", OPT_INT, &a.limit, "use only the first N images (0: all)"), ATLEAST(0)},
        {OPT("bins", OPT_INT, &a.bins, "equal-width bins of the ECE"), RANGE(1, 1000)},
        {OPT("seed", OPT_U64, &a.seed, "seed of the random corruptions (noise, rotation and translation directions)")},
        {OPT("plot", OPT_STR, &a.plot, "PNG: a metric against severity, a line per corruption and their mean"),
         .flags = OPT_OUT_FILE},
        {OPT("plot-metric", OPT_STR, &a.plot_metric, "the plot's metric"), .choices = METRICS},
        {OPT("compare", OPT_STR, &a.compare,
             "other checkpoints on the same images: the mean over the corruptions, a line per model")},
        CLI_END};
    const cli_spec sp = {.name = "shift",
                         .usage = "--model CKPT [--data SPEC] [--corruptions LIST] [--plot FILE] [options]",
                         .note =
                             "Corruptions: gaussian_noise, shot_noise, impulse_noise, gaussian_blur, defocus_blur, "
                             "contrast, brightness, rotation,\ntranslation, pixelate, jpeg. Severity 0 is the clean "
                             "set; the corrupted sets are those of the spec\ncorrupt:DATA:KIND:SEVERITY:seed=S.",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = shift_check,
                         .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = shift_run(&cx, &a);
    cli_end(&cx);
    return r;
}

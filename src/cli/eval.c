/* jem eval: accuracy, NLL, Brier, ECE (equal-width and adaptive), MCE,
 * temperature scaling fitted on a validation set, a reliability diagram,
 * and optional test-time SGLD refinement of the inputs. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFINE_CHUNK 128

typedef struct {
    cli_bar *bar;
    int64_t base; /* images refined before this chunk */
} refine_prog;

/* logits of every image, optionally after K unconditional SGLD steps */
static jem_status logits_slice(jem_net *net, const jem_dataset *ds, int lo, int hi, int refine, const jem_sgld_cfg *sc,
                               float *out, cli_bar *bar)
{
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    const int K = jem_net_arch(net)->n_classes, chunk = REFINE_CHUNK;
    if (!refine) return jem_net_predict(net, ds->x + D * lo, hi - lo, out + (size_t)lo * K);
    float *xb = malloc(sizeof(float) * D * chunk);
    if (!xb) return jem_fail(JEM_ERR_NOMEM, "out of memory for refinement");
    jem_status s = JEM_OK;
    for (int i = lo; i < hi && !s; i += chunk) {
        int b = hi - i < chunk ? hi - i : chunk;
        cli_bar_set(bar, i - lo);
        memcpy(xb, ds->x + D * i, sizeof(float) * D * b);
        s = jem_sgld_run(jem_net_energy, net, xb, b, (int)D, NULL, NULL, sc, 7, (uint64_t)i, NULL);
        if (!s) s = jem_net_predict(net, xb, b, out + (size_t)i * K);
    }
    free(xb);
    return s;
}

/* logits of every image; with several MPI ranks each computes its slice and
 * the rows are exchanged, so every rank ends with all of them */
static jem_status logits_of(const cli_ctx *cx, const jem_dataset *ds, int refine, const jem_sgld_cfg *sc, float *out)
{
    int64_t lo, hi;
    jem_dist_slice(ds->n, &lo, &hi);
    cli_bar bar = {0};
    if (refine) {
        char what[300];
        snprintf(what, sizeof what, "refining %s (%d SGLD steps)", ds->name, refine);
        cli_bar_start(&bar, cx, what, hi - lo);
    }
    jem_status s = logits_slice(cx->net, ds, (int)lo, (int)hi, refine, sc, out, &bar);
    cli_bar_end(&bar);
    if (s) return s;
    jem_dist_allgather(out, sizeof(float) * (size_t)cx->arch->n_classes, ds->n);
    return JEM_OK;
}

typedef struct {
    const char *data, *dump, *rel, *val;
    int limit, bins, refine, noval;
    jem_sgld_cfg sc;
} eval_args;

static int check(cli_ctx *cx, void *ud)
{
    eval_args *e = ud;
    (void)cx;
    if (cli_spec_unlabelled(e->data))
        return cli_usage_error("eval", "--data %s: the set has no labels to measure accuracy on", e->data);
    if (e->val && cli_spec_unlabelled(e->val))
        return cli_usage_error("eval", "--val %s: the set has no labels to fit a temperature on", e->val);
    if (e->val && e->noval) return cli_usage_error("eval", "--val and --no-temperature exclude each other");
    if (!e->refine && (cli_given(cx->spec, "refine-step") || cli_given(cx->spec, "refine-noise")))
        return cli_usage_error("eval", "--refine-step and --refine-noise need --refine K");
    return 0;
}

static int run(cli_ctx *cx, eval_args *e)
{
    const int K = cx->arch->n_classes, bins = e->bins;
    jem_dataset ds, vds;
    memset(&ds, 0, sizeof ds);
    memset(&vds, 0, sizeof vds);
    float *lg = NULL, *pr = NULL, *vlg = NULL;
    jem_calib_bin *tb = NULL;
    int rc = 0;
    jem_status s = cli_open_data(cx, "data", e->data, &ds);
    if (s) return cli_fail("eval", s);
    if (e->limit > 0) jem_dataset_truncate(&ds, e->limit);
    s = cli_check_labels(cx, "data", &ds, 1);
    if (s) goto fail;
    lg = malloc(sizeof(float) * (size_t)ds.n * K);
    pr = malloc(sizeof(float) * (size_t)ds.n * K);
    tb = malloc(sizeof(jem_calib_bin) * (size_t)(bins > 20 ? bins : 20) * 2);
    if (!lg || !pr || !tb) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d x %d logits", ds.n, K);
        goto fail;
    }
    s = logits_of(cx, &ds, e->refine, &e->sc, lg);
    if (s) goto fail;
    if (e->dump) {
        s = jem_write_file_atomic(e->dump, lg, sizeof(float) * (size_t)ds.n * K);
        if (s) goto fail;
    }
    jem_softmax_temp(lg, ds.n, K, 1.0, pr);
    jem_calib c, c20;
    s = jem_calibration(pr, ds.y, ds.n, K, bins, &c, tb, tb + bins);
    if (!s) {
        jem_calib_bin tmp[20];
        s = jem_calibration(pr, ds.y, ds.n, K, 20, &c20, tmp, NULL);
    }
    if (s) goto fail;
    if (e->rel) {
        jem_plot_opts po;
        memset(&po, 0, sizeof po);
        char title[200];
        snprintf(title, sizeof title, "Reliability, %s on %s", cx->arch->name, e->data);
        po.title = title;
        jem_image im = {0};
        s = jem_plot_reliability(tb, bins, c.ece, &po, &im);
        if (!s) s = jem_image_write_png(e->rel, &im);
        jem_image_free(&im);
        if (s) goto fail;
    }
    /* temperature scaling on the validation split */
    const char *vspec = e->val;
    int from_train = 0;
    if (!vspec && !e->noval && !strncmp(e->data, "fmnist:", 7)) {
        vspec = "fmnist:train";
        from_train = 1;
    }
    jem_temp_fit tf = {0};
    jem_calib ct = {0};
    int have_t = 0;
    if (vspec && !e->noval) {
        jem_dataset all;
        s = cli_open_data(cx, "val", vspec, &all);
        if (s) goto fail;
        if (from_train) {
            /* the same 5000 the trainer holds out with its default seed */
            jem_dataset tr;
            s = jem_dataset_split(&all, 5000, 1, &tr, &vds);
            jem_dataset_free(&tr);
        } else {
            vds = all;
        }
        if (!s) s = cli_check_labels(cx, "val", &vds, 1);
        if (s) goto fail;
        vlg = malloc(sizeof(float) * (size_t)vds.n * K);
        if (!vlg) {
            s = jem_fail(JEM_ERR_NOMEM, "out of memory");
            goto fail;
        }
        s = logits_of(cx, &vds, e->refine, &e->sc, vlg);
        if (!s) s = jem_temp_scale_fit(vlg, vds.y, vds.n, K, &tf);
        if (s) goto fail;
        jem_softmax_temp(lg, ds.n, K, tf.T, pr);
        jem_calib_bin tmp[1024];
        s = jem_calibration(pr, ds.y, ds.n, K, bins, &ct, bins <= 1024 ? tmp : NULL, NULL);
        if (s) goto fail;
        have_t = 1;
    }
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "model", cx->model);
        jem_jw_kstr(&w, "data", e->data);
        jem_jw_kint(&w, "n", ds.n);
        jem_jw_kdouble(&w, "accuracy", c.accuracy);
        jem_jw_kdouble(&w, "nll", c.nll);
        jem_jw_kdouble(&w, "brier", c.brier);
        jem_jw_kint(&w, "bins", bins);
        jem_jw_kdouble(&w, "ece", c.ece);
        jem_jw_kdouble(&w, "mce", c.mce);
        jem_jw_kdouble(&w, "ace", c.ace);
        jem_jw_kdouble(&w, "ece20", c20.ece);
        if (e->refine) jem_jw_kint(&w, "refine_steps", e->refine);
        if (have_t) {
            jem_jw_key(&w, "temperature_scaling");
            jem_jw_obj_begin(&w);
            jem_jw_kstr(&w, "val", vspec);
            jem_jw_kint(&w, "val_n", vds.n);
            jem_jw_kdouble(&w, "T", tf.T);
            jem_jw_kdouble(&w, "nll", ct.nll);
            jem_jw_kdouble(&w, "brier", ct.brier);
            jem_jw_kdouble(&w, "ece", ct.ece);
            jem_jw_kdouble(&w, "mce", ct.mce);
            jem_jw_kdouble(&w, "ace", ct.ace);
            jem_jw_obj_end(&w);
        }
        jem_jw_key(&w, "reliability");
        jem_jw_arr_begin(&w);
        for (int b = 0; b < bins; b++) {
            jem_jw_obj_begin(&w);
            jem_jw_kdouble(&w, "lo", tb[b].lo);
            jem_jw_kdouble(&w, "hi", tb[b].hi);
            jem_jw_kint(&w, "count", tb[b].count);
            jem_jw_kdouble(&w, "conf", tb[b].conf);
            jem_jw_kdouble(&w, "acc", tb[b].acc);
            jem_jw_obj_end(&w);
        }
        jem_jw_arr_end(&w);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("model     %s\ndata      %s (%d images)%s\n", cx->model, e->data, ds.n,
               e->refine ? " after SGLD refinement" : "");
        printf("accuracy  %.4f\n\n%-22s %10s", c.accuracy, "", "as trained");
        if (have_t) printf("  T = %.3f (fitted on %d of %s)", tf.T, vds.n, vspec);
        printf("\n");
#define ROW(name, a, b)                    \
    do {                                   \
        printf("%-22s %10.4f", name, a);   \
        if (have_t) printf("  %10.4f", b); \
        printf("\n");                      \
    } while (0)
        ROW("nll", c.nll, ct.nll);
        ROW("brier", c.brier, ct.brier);
        char nm[40];
        snprintf(nm, sizeof nm, "ece (%d bins)", bins);
        ROW(nm, c.ece, ct.ece);
        ROW("mce", c.mce, ct.mce);
        ROW("adaptive ece", c.ace, ct.ace);
#undef ROW
        printf("%-22s %10.4f\n", "ece (20 bins)", c20.ece);
        if (e->rel) printf("\nreliability diagram: %s\n", e->rel);
    }
    goto done;
fail:
    rc = cli_fail("eval", s);
done:
    free(lg);
    free(pr);
    free(vlg);
    free(tb);
    jem_dataset_free(&vds);
    jem_dataset_free(&ds);
    return rc;
}

int cmd_eval(int argc, char **argv)
{
    eval_args e = {.data = "fmnist:test", .bins = 15};
    jem_sgld_defaults(&e.sc);
    e.sc.clamp = 1;
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &e.data, "data set (labelled)"), .flags = OPT_SPEC},
        {OPT("limit", OPT_INT, &e.limit, "use only the first N images (0: all)"), ATLEAST(0)},
        {OPT("bins", OPT_INT, &e.bins, "confidence bins of the ECE (20 is reported too)"), RANGE(1, 1000)},
        {OPT("reliability", OPT_STR, &e.rel, "PNG: reliability diagram"), .flags = OPT_OUT_FILE},
        {OPT("val", OPT_STR, &e.val,
             "validation set for temperature scaling (default: the trainer's held-out "
             "5000 of fmnist:train when evaluating on fmnist)"),
         .flags = OPT_SPEC},
        {OPT("no-temperature", OPT_FLAG, &e.noval, "skip temperature scaling")},
        {OPT("refine", OPT_INT, &e.refine, "test-time SGLD steps on the inputs before classifying (0: off)"),
         RANGE(0, 100000)},
        {OPT("refine-step", OPT_FLOAT, &e.sc.step_size, "refinement step size"), ABOVE(0, 1e6)},
        {OPT("refine-noise", OPT_FLOAT, &e.sc.noise, "refinement noise"), RANGE(0, 100)},
        {OPT("dump-logits", OPT_STR, &e.dump, "write the logits (N, K) as raw little-endian float32"),
         .flags = OPT_OUT_FILE},
        CLI_END};
    const cli_spec sp = {.name = "eval",
                         .usage = "--model CKPT [--data SPEC] [options]",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = check,
                         .ud = &e};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    e.sc.steps = e.refine;
    r = run(&cx, &e);
    cli_end(&cx);
    return r;
}

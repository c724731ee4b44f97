/* jem eval: accuracy, NLL, Brier, ECE (equal-width and adaptive), MCE,
 * temperature scaling fitted on a validation set, a reliability diagram,
 * and optional test-time SGLD refinement of the inputs. */
#include "cli/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define REFINE_CHUNK 128
#define LOGIT_CHUNK  1024 /* a multiple of jem_net_predict's batch: the same logits in one call or many */

/* logits of every image, optionally after K unconditional SGLD steps */
static jem_status logits_slice(jem_net *net, const jem_dataset *ds, int lo, int hi, int refine, const jem_sgld_cfg *sc,
                               float *out, cli_bar *bar)
{
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    const int K = jem_net_arch(net)->n_classes, chunk = refine ? REFINE_CHUNK : LOGIT_CHUNK;
    float *xb = refine ? malloc(sizeof(float) * D * chunk) : NULL;
    if (refine && !xb) return jem_fail(JEM_ERR_NOMEM, "out of memory for refinement");
    jem_status s = JEM_OK;
    for (int i = lo; i < hi && !s; i += chunk) {
        int b = hi - i < chunk ? hi - i : chunk;
        cli_bar_set(bar, i - lo);
        if (refine) {
            memcpy(xb, ds->x + D * i, sizeof(float) * D * b);
            s = jem_sgld_run(jem_net_energy, net, xb, b, (int)D, NULL, NULL, sc, 7, (uint64_t)i, NULL);
        }
        if (!s) s = jem_net_predict(net, refine ? xb : ds->x + D * i, b, out + (size_t)i * K);
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
    char what[300];
    if (refine) snprintf(what, sizeof what, "refining %s (%d SGLD steps)", ds->name, refine);
    else snprintf(what, sizeof what, "classifying %s (%d images)", ds->name, ds->n);
    cli_bar_start(&bar, cx, what, hi - lo);
    jem_status s = logits_slice(cx->net, ds, (int)lo, (int)hi, refine, sc, out, &bar);
    cli_bar_end(&bar);
    if (s) return s;
    jem_dist_allgather(out, sizeof(float) * (size_t)cx->arch->n_classes, ds->n);
    return JEM_OK;
}

static int check(cli_ctx *cx, void *ud)
{
    cli_eval_args *e = ud;
    if (cli_spec_unlabelled(e->data))
        return cli_usage_error("eval", "--data %s: the set has no labels to measure accuracy on", e->data);
    if (e->val && cli_spec_unlabelled(e->val))
        return cli_usage_error("eval", "--val %s: the set has no labels to fit a temperature on", e->val);
    if (e->val && e->noval) return cli_usage_error("eval", "--val and --no-temperature exclude each other");
    if (!e->refine && (cli_given(cx->spec, "refine-step") || cli_given(cx->spec, "refine-noise")))
        return cli_usage_error("eval", "--refine-step and --refine-noise need --refine K");
    return 0;
}

void cli_eval_defaults(cli_eval_args *e)
{
    memset(e, 0, sizeof *e);
    e->data = "fmnist:test";
    e->bins = 15;
    jem_sgld_defaults(&e->sc);
    e->sc.clamp = 1;
}

void cli_eval_free(cli_eval_res *r)
{
    free(r->tb);
    memset(r, 0, sizeof *r);
}

jem_status cli_eval_run(const cli_ctx *cx, const cli_eval_args *e, cli_eval_res *r)
{
    const int K = cx->arch->n_classes, bins = e->bins;
    jem_sgld_cfg sc = e->sc;
    sc.steps = e->refine;
    memset(r, 0, sizeof *r);
    jem_dataset ds, vds;
    memset(&ds, 0, sizeof ds);
    memset(&vds, 0, sizeof vds);
    float *lg = NULL, *pr = NULL, *vlg = NULL;
    jem_status s = cli_open_data(cx, "data", e->data, &ds);
    if (s) return s;
    if (e->limit > 0) jem_dataset_truncate(&ds, e->limit);
    s = cli_check_labels(cx, "data", &ds, 1);
    if (s) goto done;
    r->n = ds.n;
    lg = malloc(sizeof(float) * (size_t)ds.n * K);
    pr = malloc(sizeof(float) * (size_t)ds.n * K);
    r->tb = malloc(sizeof(jem_calib_bin) * (size_t)(bins > 20 ? bins : 20) * 2);
    if (!lg || !pr || !r->tb) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d x %d logits", ds.n, K);
        goto done;
    }
    s = logits_of(cx, &ds, e->refine, &sc, lg);
    if (s) goto done;
    if (e->dump) {
        s = jem_write_file_atomic(e->dump, lg, sizeof(float) * (size_t)ds.n * K);
        if (s) goto done;
    }
    jem_softmax_temp(lg, ds.n, K, 1.0, pr);
    s = jem_calibration(pr, ds.y, ds.n, K, bins, &r->c, r->tb, r->tb + bins);
    if (!s) {
        jem_calib_bin tmp[20];
        s = jem_calibration(pr, ds.y, ds.n, K, 20, &r->c20, tmp, NULL);
    }
    if (s) goto done;
    /* temperature scaling on the validation split */
    const char *vspec = e->val;
    int from_train = 0;
    if (!vspec && !e->noval) {
        vspec = cli_fmnist_train_of(e->data, r->val_buf, sizeof r->val_buf);
        from_train = vspec != NULL;
    }
    if (vspec && !e->noval) {
        jem_dataset all;
        s = cli_open_data(cx, "val", vspec, &all);
        if (s) goto done;
        if (from_train) {
            /* the same 5000 the trainer holds out with its default seed */
            jem_dataset tr;
            s = jem_dataset_split(&all, CLI_FMNIST_HELDOUT, 1, &tr, &vds);
            jem_dataset_free(&tr);
        } else {
            vds = all;
        }
        if (!s) s = cli_check_labels(cx, "val", &vds, 1);
        if (s) goto done;
        vlg = malloc(sizeof(float) * (size_t)vds.n * K);
        if (!vlg) {
            s = jem_fail(JEM_ERR_NOMEM, "out of memory");
            goto done;
        }
        s = logits_of(cx, &vds, e->refine, &sc, vlg);
        if (!s) s = jem_temp_scale_fit(vlg, vds.y, vds.n, K, &r->tf);
        if (s) goto done;
        jem_softmax_temp(lg, ds.n, K, r->tf.T, pr);
        jem_calib_bin tmp[1024];
        s = jem_calibration(pr, ds.y, ds.n, K, bins, &r->ct, bins <= 1024 ? tmp : NULL, NULL);
        if (s) goto done;
        r->have_t = 1;
        r->val = vspec;
        r->val_n = vds.n;
    }
done:
    free(lg);
    free(pr);
    free(vlg);
    jem_dataset_free(&vds);
    jem_dataset_free(&ds);
    return s;
}

jem_status cli_eval_plot(const cli_ctx *cx, const cli_eval_args *e, const cli_eval_res *r, const jem_plot_opts *po,
                         jem_image *im)
{
    jem_plot_opts o;
    if (po) o = *po;
    else memset(&o, 0, sizeof o);
    char buf[200];
    snprintf(buf, sizeof buf, "Reliability, %s on %s", cx->arch->name, e->data);
    if (!o.title) o.title = buf;
    return jem_plot_reliability(r->tb, e->bins, r->c.ece, &o, im);
}

void cli_eval_json(jem_jw *w, const cli_ctx *cx, const cli_eval_args *e, const cli_eval_res *r)
{
    const jem_calib *c = &r->c, *ct = &r->ct;
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "model", cx->model);
    jem_jw_kstr(w, "data", e->data);
    jem_jw_kint(w, "n", r->n);
    jem_jw_kdouble(w, "accuracy", c->accuracy);
    jem_jw_kdouble(w, "nll", c->nll);
    jem_jw_kdouble(w, "brier", c->brier);
    jem_jw_kint(w, "bins", e->bins);
    jem_jw_kdouble(w, "ece", c->ece);
    jem_jw_kdouble(w, "mce", c->mce);
    jem_jw_kdouble(w, "ace", c->ace);
    jem_jw_kdouble(w, "ece20", r->c20.ece);
    if (e->refine) jem_jw_kint(w, "refine_steps", e->refine);
    if (r->have_t) {
        jem_jw_key(w, "temperature_scaling");
        jem_jw_obj_begin(w);
        jem_jw_kstr(w, "val", r->val);
        jem_jw_kint(w, "val_n", r->val_n);
        jem_jw_kdouble(w, "T", r->tf.T);
        jem_jw_kdouble(w, "nll", ct->nll);
        jem_jw_kdouble(w, "brier", ct->brier);
        jem_jw_kdouble(w, "ece", ct->ece);
        jem_jw_kdouble(w, "mce", ct->mce);
        jem_jw_kdouble(w, "ace", ct->ace);
        jem_jw_obj_end(w);
    }
    jem_jw_key(w, "reliability");
    jem_jw_arr_begin(w);
    for (int b = 0; b < e->bins; b++) {
        const jem_calib_bin *t = &r->tb[b];
        jem_jw_obj_begin(w);
        jem_jw_kdouble(w, "lo", t->lo);
        jem_jw_kdouble(w, "hi", t->hi);
        jem_jw_kint(w, "count", t->count);
        jem_jw_kdouble(w, "conf", t->conf);
        jem_jw_kdouble(w, "acc", t->acc);
        jem_jw_obj_end(w);
    }
    jem_jw_arr_end(w);
    jem_jw_obj_end(w);
}

static void print_text(const cli_ctx *cx, const cli_eval_args *e, const cli_eval_res *r)
{
    const jem_calib *c = &r->c, *ct = &r->ct;
    const int have_t = r->have_t;
    printf("model     %s\ndata      %s (%d images)%s\n", cx->model, e->data, r->n,
           e->refine ? " after SGLD refinement" : "");
    printf("accuracy  %.4f\n\n%-22s %10s", c->accuracy, "", "as trained");
    if (have_t) printf("  T = %.3f (fitted on %d of %s)", r->tf.T, r->val_n, r->val);
    printf("\n");
#define ROW(name, a, b)                    \
    do {                                   \
        printf("%-22s %10.4f", name, a);   \
        if (have_t) printf("  %10.4f", b); \
        printf("\n");                      \
    } while (0)
    ROW("nll", c->nll, ct->nll);
    ROW("brier", c->brier, ct->brier);
    char nm[40];
    snprintf(nm, sizeof nm, "ece (%d bins)", e->bins);
    ROW(nm, c->ece, ct->ece);
    ROW("mce", c->mce, ct->mce);
    ROW("adaptive ece", c->ace, ct->ace);
#undef ROW
    printf("%-22s %10.4f\n", "ece (20 bins)", r->c20.ece);
    if (e->rel) printf("\nreliability diagram: %s\n", e->rel);
}

static int run(cli_ctx *cx, cli_eval_args *e)
{
    cli_eval_res r;
    jem_status s = cli_eval_run(cx, e, &r);
    if (!s && e->rel) {
        jem_image im = {0};
        s = cli_eval_plot(cx, e, &r, NULL, &im);
        if (!s) s = jem_image_write_png(e->rel, &im);
        jem_image_free(&im);
    }
    if (s) {
        cli_eval_free(&r);
        return cli_fail("eval", s);
    }
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        cli_eval_json(&w, cx, e, &r);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        print_text(cx, e, &r);
    }
    cli_eval_free(&r);
    return 0;
}

int cmd_eval(int argc, char **argv)
{
    cli_eval_args e;
    cli_eval_defaults(&e);
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &e.data, "data set (labelled)"), .flags = OPT_SPEC},
        {OPT("limit", OPT_INT, &e.limit, "use only the first N images (0: all)"), ATLEAST(0)},
        {OPT("bins", OPT_INT, &e.bins, "confidence bins of the ECE (20 is reported too)"), RANGE(1, 1000)},
        {OPT("reliability", OPT_STR, &e.rel, "PNG: reliability diagram"), .flags = OPT_OUT_FILE},
        {OPT("val", OPT_STR, &e.val,
             "validation set for temperature scaling (default: the trainer's held-out "
             "5000 of fmnist:train (--data's classes) for fmnist data)"),
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
                         .precision = CLI_PRECISION_HELP,
                         .check = check,
                         .ud = &e};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = run(&cx, &e);
    cli_end(&cx);
    return r;
}

/* jem eval: accuracy, NLL, Brier, ECE (equal-width and adaptive), MCE,
 * temperature scaling fitted on a validation set, a reliability diagram,
 * and optional test-time SGLD refinement of the inputs. */
#include "cli/cli.h"
#include "eval/eval.h"
#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* logits of every image, optionally after K unconditional SGLD steps */
static jem_status logits_slice(jem_net *net, const jem_dataset *ds, int lo, int hi, int refine,
                               const jem_sgld_cfg *sc, float *out)
{
    const size_t D = (size_t)ds->c * ds->h * ds->w;
    const int K = jem_net_arch(net)->n_classes, chunk = 128;
    if (!refine) return jem_net_predict(net, ds->x + D * lo, hi - lo, out + (size_t)lo * K);
    float *xb = malloc(sizeof(float) * D * chunk);
    if (!xb) return jem_fail(JEM_ERR_NOMEM, "out of memory for refinement");
    jem_status s = JEM_OK;
    for (int i = lo; i < hi && !s; i += chunk) {
        int b = hi - i < chunk ? hi - i : chunk;
        memcpy(xb, ds->x + D * i, sizeof(float) * D * b);
        s = jem_sgld_run(jem_net_energy, net, xb, b, (int)D, NULL, NULL, sc, 7, (uint64_t)i, NULL);
        if (!s) s = jem_net_predict(net, xb, b, out + (size_t)i * K);
    }
    free(xb);
    return s;
}

/* logits of every image; with several MPI ranks each computes its slice and
 * the rows are exchanged, so every rank ends with all of them */
static jem_status logits_of(jem_net *net, const jem_dataset *ds, int refine, const jem_sgld_cfg *sc, float *out)
{
    int64_t lo, hi;
    jem_dist_slice(ds->n, &lo, &hi);
    jem_status s = logits_slice(net, ds, (int)lo, (int)hi, refine, sc, out);
    if (s) return s;
    jem_dist_allgather(out, sizeof(float) * (size_t)jem_net_arch(net)->n_classes, ds->n);
    return JEM_OK;
}

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = "fmnist:test", *dump = NULL, *rel = NULL, *val = NULL;
    int threads = 0, json = 0, limit = 0, bins = 15, refine = 0, noval = 0;
    jem_sgld_cfg sc;
    jem_sgld_defaults(&sc);
    sc.clamp = 1;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint (.safetensors)"},
        {"data", OPT_STR, &data, "data set"},
        {"limit", OPT_INT, &limit, "use only the first N images (0: all)"},
        {"bins", OPT_INT, &bins, "confidence bins of the ECE (20 is reported too)"},
        {"reliability", OPT_STR, &rel, "PNG: reliability diagram"},
        {"val", OPT_STR, &val, "validation set for temperature scaling (default: the trainer's held-out "
                               "5000 of fmnist:train when evaluating on fmnist)"},
        {"no-temperature", OPT_FLAG, &noval, "skip temperature scaling"},
        {"refine", OPT_INT, &refine, "test-time SGLD steps on the inputs before classifying (0: off)"},
        {"refine-step", OPT_FLOAT, &sc.step_size, "refinement step size"},
        {"refine-noise", OPT_FLOAT, &sc.noise, "refinement noise"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"json", OPT_FLAG, &json, "print the figures as JSON"},
        {"dump-logits", OPT_STR, &dump, "write the logits (N, K) as raw little-endian float32"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("eval", "--model CKPT [--data SPEC] [options]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos) model = pos[0];
    if (!model) { fprintf(stderr, "jem eval: error: --model CKPT is required\n"); return 2; }
    if (bins < 1 || bins > 1000 || refine < 0) { fprintf(stderr, "jem eval: error: --bins must be in [1, 1000], --refine >= 0\n"); return 2; }
    sc.steps = refine;
    jem_set_threads(threads);
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(model, &net);
    if (s) return cli_fail("eval", s);
    const int K = jem_net_arch(net)->n_classes;
    jem_dataset ds, vds;
    memset(&vds, 0, sizeof vds);
    float *lg = NULL, *pr = NULL, *vlg = NULL;
    jem_calib_bin *tb = NULL;
    int rc = 0;
    s = cli_open_data(data, jem_net_arch(net), &ds);
    if (s) { jem_net_free(net); return cli_fail("eval", s); }
    if (limit > 0) jem_dataset_truncate(&ds, limit);
    for (int i = 0; i < ds.n && !s; i++)
        if (ds.y[i] < 0 || ds.y[i] >= K)
            s = jem_fail(JEM_ERR_ARG, "%s: image %d has label %d, the model has %d classes", ds.name, i, ds.y[i], K);
    if (s) goto fail;
    lg = malloc(sizeof(float) * (size_t)ds.n * K);
    pr = malloc(sizeof(float) * (size_t)ds.n * K);
    tb = malloc(sizeof(jem_calib_bin) * (size_t)(bins > 20 ? bins : 20) * 2);
    if (!lg || !pr || !tb) { s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d x %d logits", ds.n, K); goto fail; }
    s = logits_of(net, &ds, refine, &sc, lg);
    if (s) goto fail;
    if (dump) {
        s = jem_write_file_atomic(dump, lg, sizeof(float) * (size_t)ds.n * K);
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
    if (rel) {
        jem_plot_opts po;
        memset(&po, 0, sizeof po);
        char title[200];
        snprintf(title, sizeof title, "Reliability, %s on %s", jem_net_arch(net)->name, data);
        po.title = title;
        jem_image im = {0};
        s = jem_plot_reliability(tb, bins, c.ece, &po, &im);
        if (!s) s = jem_image_write_png(rel, &im);
        jem_image_free(&im);
        if (s) goto fail;
    }
    /* temperature scaling on the validation split */
    const char *vspec = val;
    int from_train = 0;
    if (!vspec && !noval && !strncmp(data, "fmnist:", 7)) { vspec = "fmnist:train"; from_train = 1; }
    jem_temp_fit tf = {0};
    jem_calib ct = {0};
    int have_t = 0;
    if (vspec && !noval) {
        jem_dataset all;
        s = cli_open_data(vspec, jem_net_arch(net), &all);
        if (s) goto fail;
        if (from_train) {
            /* the same 5000 the trainer holds out with its default seed */
            jem_dataset tr;
            s = jem_dataset_split(&all, 5000, 1, &tr, &vds);
            jem_dataset_free(&tr);
        } else {
            vds = all;
        }
        if (s) goto fail;
        vlg = malloc(sizeof(float) * (size_t)vds.n * K);
        if (!vlg) { s = jem_fail(JEM_ERR_NOMEM, "out of memory"); goto fail; }
        s = logits_of(net, &vds, refine, &sc, vlg);
        if (!s) s = jem_temp_scale_fit(vlg, vds.y, vds.n, K, &tf);
        if (s) goto fail;
        jem_softmax_temp(lg, ds.n, K, tf.T, pr);
        jem_calib_bin tmp[1024];
        s = jem_calibration(pr, ds.y, ds.n, K, bins, &ct, bins <= 1024 ? tmp : NULL, NULL);
        if (s) goto fail;
        have_t = 1;
    }
    if (json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "model", model);
        jem_jw_kstr(&w, "data", data);
        jem_jw_kint(&w, "n", ds.n);
        jem_jw_kdouble(&w, "accuracy", c.accuracy);
        jem_jw_kdouble(&w, "nll", c.nll);
        jem_jw_kdouble(&w, "brier", c.brier);
        jem_jw_kint(&w, "bins", bins);
        jem_jw_kdouble(&w, "ece", c.ece);
        jem_jw_kdouble(&w, "mce", c.mce);
        jem_jw_kdouble(&w, "ace", c.ace);
        jem_jw_kdouble(&w, "ece20", c20.ece);
        if (refine) jem_jw_kint(&w, "refine_steps", refine);
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
        printf("model     %s\ndata      %s (%d images)%s\n", model, data, ds.n, refine ? " after SGLD refinement" : "");
        printf("accuracy  %.4f\n\n%-22s %10s", c.accuracy, "", "as trained");
        if (have_t) printf("  T = %.3f (fitted on %d of %s)", tf.T, vds.n, vspec);
        printf("\n");
#define ROW(name, a, b) do { printf("%-22s %10.4f", name, a); if (have_t) printf("  %10.4f", b); printf("\n"); } while (0)
        ROW("nll", c.nll, ct.nll);
        ROW("brier", c.brier, ct.brier);
        char nm[40];
        snprintf(nm, sizeof nm, "ece (%d bins)", bins);
        ROW(nm, c.ece, ct.ece);
        ROW("mce", c.mce, ct.mce);
        ROW("adaptive ece", c.ace, ct.ace);
#undef ROW
        printf("%-22s %10.4f\n", "ece (20 bins)", c20.ece);
        if (rel) printf("\nreliability diagram: %s\n", rel);
    }
    goto done;
fail:
    rc = cli_fail("eval", s);
done:
    free(lg); free(pr); free(vlg); free(tb);
    jem_dataset_free(&vds);
    jem_dataset_free(&ds);
    jem_net_free(net);
    return rc;
}

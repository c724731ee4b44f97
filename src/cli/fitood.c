/* jem fit-ood: fit an out-of-distribution detector on a model's features
 * (a class-conditional Gaussian with a shared covariance, or k nearest
 * neighbours on unit features) in one pass over a data set, and store it
 * as a safetensors file beside the model (M.ood.safetensors), where jem
 * ood, score and report find it. Also the helpers those commands share to
 * find a fitted detector and name its score. */
#include "cli/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

/* ------------------------------------------------------ shared helpers */

void cli_det_beside(const char *model, char *buf, size_t n)
{
    const char *ext = ".safetensors";
    const size_t len = strlen(model), el = strlen(ext);
    if (len > el && !strcmp(model + len - el, ext)) snprintf(buf, n, "%.*s.ood%s", (int)(len - el), model, ext);
    else snprintf(buf, n, "%s.ood%s", model, ext);
}

/* the kind recorded in a detector file (its header only), or -1 after a
 * usage error */
static int file_kind(const char *cmd, const char *opt, const char *path, int given)
{
    jem_st *st = NULL;
    jem_status s = jem_st_open(path, &st);
    if (s) {
        cli_usage_error(cmd, "%s%s%s: %s", given ? "--" : "", given ? opt : "the detector beside the model, ",
                        given ? "" : path, jem_last_error());
        return -1;
    }
    const char *k = jem_st_get_meta(st, "jem.ood.kind");
    const int kind = k ? jem_det_kind_parse(k) : -1;
    jem_st_free(st);
    if (kind < 0)
        cli_usage_error(cmd,
                        "%s%s %s: not an OOD detector file (no jem.ood.kind mahalanobis or knn; jem fit-ood "
                        "writes one)",
                        given ? "--" : "", given ? opt : "the file beside the model,", path);
    return kind;
}

int cli_det_find(const char *cmd, const char *opt, const char *given, const char *model, char *path, size_t n,
                 int *kind)
{
    *kind = -1;
    path[0] = 0;
    if (given) {
        snprintf(path, n, "%s", given);
        *kind = file_kind(cmd, opt, path, 1);
        return *kind < 0 ? 2 : 0;
    }
    if (!model) return 0;
    char beside[4096];
    cli_det_beside(model, beside, sizeof beside);
    if (access(beside, F_OK) != 0) return 0;
    snprintf(path, n, "%s", beside);
    *kind = file_kind(cmd, opt, path, 0);
    return *kind < 0 ? 2 : 0;
}

const char *cli_score_col_name(int col, int kind)
{
    if (col == CLI_SCORE_DET) return kind >= 0 ? jem_det_kind_name((jem_det_kind)kind) : "detector";
    if (col == CLI_SCORE_ODIN) return "odin";
    return jem_score_name(col);
}

int cli_det_column(const char *cmd, const char *name, int kind, const char *path, int *col)
{
    if (!name) {
        *col = kind >= 0 ? CLI_SCORE_DET : JEM_SCORE_LOGPX;
        return 0;
    }
    if (!strcmp(name, "odin")) {
        *col = CLI_SCORE_ODIN;
        return 0;
    }
    const int want = jem_det_kind_parse(name);
    if (want >= 0) {
        if (kind < 0)
            return cli_usage_error(cmd,
                                   "--detector %s: no fitted detector found (looked for %s); make one with "
                                   "jem fit-ood --model MODEL --detector %s, or name one with --ood FILE",
                                   name, path && *path ? path : "MODEL.ood.safetensors", name);
        if (kind != want)
            return cli_usage_error(cmd,
                                   "--detector %s: the fitted detector %s is %s; fit a %s detector with jem "
                                   "fit-ood --detector %s --out FILE and give --ood FILE",
                                   name, path, jem_det_kind_name((jem_det_kind)kind), name, name);
        *col = CLI_SCORE_DET;
        return 0;
    }
    for (int k = 0; k < JEM_NSCORES; k++)
        if (!strcmp(name, jem_score_name(k))) {
            *col = k;
            return 0;
        }
    return cli_usage_error(cmd, "--detector '%s': want %s", name, CLI_DET_LIST);
}

jem_status cli_open_heldout(const cli_ctx *cx, const char *opt, const char *spec, int heldout, jem_dataset *ds)
{
    jem_dataset all;
    jem_status s = cli_open_data(cx, opt, spec, &all);
    if (s || heldout <= 0) {
        if (!s) *ds = all;
        return s;
    }
    if (heldout >= all.n) {
        const int n = all.n;
        jem_dataset_free(&all);
        return jem_fail(JEM_ERR_ARG, "--%s %s: %d images, cannot hold out %d of them", opt, spec, n, heldout);
    }
    jem_dataset tr;
    s = jem_dataset_split(&all, heldout, 1, &tr, ds);
    jem_dataset_free(&tr);
    if (s) jem_dataset_free(&all);
    return s;
}

/* -------------------------------------------------------------- fit-ood */

typedef struct {
    const char *data, *out, *detector, *layer;
    double shrinkage;
    int k, holdout, force, limit;
    char out_path[4096];
    int layer_i;
} fit_args;

/* the held-out images of a spec by default: the trainer's split of the
 * fmnist training set (with or without a class filter) */
static int default_holdout(const char *spec) { return cli_is_fmnist_train(spec) ? CLI_FMNIST_HELDOUT : 0; }

/* the blocks of a checkpoint's model from its description in the header
 * (-1 when it does not say: the layer is checked once the model loads) */
static int model_blocks(const char *model)
{
    jem_st *st = NULL;
    if (jem_st_open(model, &st)) return -1;
    const char *desc = jem_st_get_meta(st, "jem.arch");
    jem_arch arch;
    const int n = desc && jem_arch_parse(desc, model, &arch) == JEM_OK ? arch.n_blocks : -1;
    jem_st_free(st);
    return n;
}

static int fit_check(cli_ctx *cx, void *ud)
{
    fit_args *a = ud;
    const cli_spec *sp = cx->spec;
    if (cli_spec_unlabelled(a->data) && !strcmp(a->detector, "mahalanobis"))
        return cli_usage_error("fit-ood",
                               "--data %s: the set has no labels; the Gaussian per class needs them "
                               "(--detector knn needs none)",
                               a->data);
    if ((a->layer_i = jem_ood_layer_parse(a->layer)) < 0)
        return cli_usage_error("fit-ood",
                               "--layer '%s': want pool (the features the linear head reads) or b1, b2, "
                               "... (a block's output, averaged over space)",
                               a->layer);
    const int nb = cli_check_only() ? -1 : model_blocks(cx->model);
    if (nb >= 0 && a->layer_i > nb)
        return cli_usage_error("fit-ood", "--layer %s: the model has %d blocks (pool, or b1 to b%d)", a->layer, nb, nb);
    if (strcmp(a->detector, "knn") && cli_given(sp, "k"))
        return cli_usage_error("fit-ood", "--k is kNN's: it needs --detector knn");
    if (strcmp(a->detector, "mahalanobis") && cli_given(sp, "shrinkage"))
        return cli_usage_error("fit-ood", "--shrinkage is the Gaussian's: it needs --detector mahalanobis");
    if (a->holdout < 0) a->holdout = default_holdout(a->data);
    if (a->out) snprintf(a->out_path, sizeof a->out_path, "%s", a->out);
    else cli_det_beside(cx->model, a->out_path, sizeof a->out_path);
    if (!a->out && cli_check_out_file("fit-ood", "out", a->out_path)) return 2;
    if (!strcmp(a->out_path, cx->model))
        return cli_usage_error("fit-ood", "--out %s: is the model itself", a->out_path);
    if (!a->force && access(a->out_path, F_OK) == 0)
        return cli_usage_error("fit-ood", "--out %s exists; --force replaces it", a->out_path);
    return 0;
}

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static int fit_run(cli_ctx *cx, fit_args *a)
{
    const jem_arch *arch = cx->arch;
    const int D = jem_net_feature_dim(cx->net, a->layer_i);
    if (D < 1)
        return cli_usage_error("fit-ood", "--layer %s: model '%s' has no such layer (pool, or b1 to b%d)", a->layer,
                               arch->name, arch->n_blocks);
    jem_dataset ds;
    jem_status s = cli_open_heldout(cx, "data", a->data, 0, &ds);
    if (s) return cli_fail("fit-ood", s);
    int n_all = ds.n;
    if (a->holdout > 0) {
        if (a->holdout >= ds.n) {
            jem_dataset_free(&ds);
            return cli_usage_error("fit-ood", "--holdout %d: --data %s has only %d images", a->holdout, a->data, n_all);
        }
        jem_dataset tr, va;
        s = jem_dataset_split(&ds, a->holdout, 1, &tr, &va);
        jem_dataset_free(&va);
        if (s) {
            jem_dataset_free(&ds);
            return cli_fail("fit-ood", s);
        }
        ds = tr;
    }
    if (a->limit > 0) jem_dataset_truncate(&ds, a->limit);
    if (!strcmp(a->detector, "mahalanobis")) s = cli_check_labels(cx, "data", &ds, 1);
    if (s) {
        jem_dataset_free(&ds);
        return cli_fail("fit-ood", s);
    }
    jem_det_cfg cfg;
    jem_det_defaults(&cfg);
    cfg.kind = (jem_det_kind)jem_det_kind_parse(a->detector);
    cfg.layer = a->layer_i;
    cfg.shrinkage = a->shrinkage;
    cfg.k = a->k;
    cli_bar bar;
    char what[400];
    snprintf(what, sizeof what, "features of %s (%d images, layer %s)", a->data, ds.n, a->layer);
    cli_bar_start(&bar, cx, what, ds.n);
    cfg.progress = cli_bar_cb64;
    cfg.ud = &bar;
    jem_detector *d = NULL;
    const double t0 = now_s();
    s = jem_detector_fit(cx->net, &ds, &cfg, &d);
    cli_bar_end(&bar);
    const double secs = now_s() - t0;
    /* the data the detector records: the spec and what was held out */
    if (!s && (a->holdout > 0 || a->limit > 0)) {
        char desc[256];
        snprintf(desc, sizeof desc, "%s without the %d held out (seed 1)%s", a->data, a->holdout,
                 a->limit > 0 ? ", first images only" : "");
        snprintf(d->data, sizeof d->data, "%s", a->holdout > 0 ? desc : a->data);
    }
    if (!s) s = jem_detector_save(d, a->out_path);
    if (s) {
        /* the library names the shrinkage that would do: as the option */
        char msg[1024];
        snprintf(msg, sizeof msg, "%s", jem_last_error());
        char *at = strstr(msg, "fit with shrinkage ");
        int rc;
        if (at) {
            fprintf(stderr, "jem fit-ood: error: %.*sgive --shrinkage %s\n", (int)(at - msg), msg,
                    at + strlen("fit with shrinkage "));
            rc = 1;
        } else {
            rc = cli_fail("fit-ood", s);
        }
        jem_detector_free(d);
        jem_dataset_free(&ds);
        return rc;
    }
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "model", cx->model);
        jem_jw_kstr(&w, "out", a->out_path);
        jem_jw_kstr(&w, "detector", a->detector);
        jem_jw_kstr(&w, "layer", a->layer);
        jem_jw_kint(&w, "features", D);
        jem_jw_kstr(&w, "data", a->data);
        jem_jw_kint(&w, "n", ds.n);
        jem_jw_kint(&w, "held_out", a->holdout);
        if (cfg.kind == JEM_DET_MAHALANOBIS) jem_jw_kdouble(&w, "shrinkage", a->shrinkage);
        else jem_jw_kint(&w, "k", a->k);
        jem_jw_kdouble(&w, "seconds", secs);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("wrote %s: %s detector on %d features of layer %s, fitted on %d images of %s", a->out_path, a->detector,
               D, a->layer, ds.n, a->data);
        if (a->holdout > 0) printf(" (%d held out for thresholds)", a->holdout);
        if (cfg.kind == JEM_DET_MAHALANOBIS) printf(", shrinkage %g", a->shrinkage);
        else printf(", k = %d", a->k);
        printf(", in %.1f s\n", secs);
    }
    jem_detector_free(d);
    jem_dataset_free(&ds);
    return 0;
}

int cmd_fit_ood(int argc, char **argv)
{
    fit_args a;
    memset(&a, 0, sizeof a);
    a.data = "fmnist:train";
    a.detector = "mahalanobis";
    a.layer = "pool";
    a.k = 50;
    a.holdout = -1;
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &a.data, "in-distribution set to fit on (labelled for mahalanobis)"), .flags = OPT_SPEC},
        {OPT("out", OPT_STR, &a.out, "detector file to write (atomically)"), .flags = OPT_OUT_FILE,
         .def = "MODEL.ood.safetensors beside the model, where ood, score and report look"},
        {OPT("force", OPT_FLAG, &a.force, "replace an existing --out file")},
        {OPT("detector", OPT_STR, &a.detector,
             "mahalanobis: a Gaussian per class, shared covariance; knn: k-th nearest"),
         .choices = "mahalanobis|knn"},
        {OPT("layer", OPT_STR, &a.layer,
             "feature layer: pool (what the linear head reads) or b1, b2, ... (a block's "
             "output averaged over space)")},
        {OPT("shrinkage", OPT_DOUBLE, &a.shrinkage, "mahalanobis: shrink the covariance towards the identity by this"),
         RANGE(0, 1)},
        {OPT("k", OPT_INT, &a.k, "knn: the neighbour whose distance scores"), RANGE(1, 1 << 20)},
        {OPT("holdout", OPT_INT, &a.holdout, "images held out of the fit (the trainer's split)"), ATLEAST(0),
         .def = "5000 for fmnist:train[:classes=...], else 0"},
        {OPT("limit", OPT_INT, &a.limit, "fit on the first N images only (0: all)"), ATLEAST(0)},
        CLI_END};
    const cli_spec sp = {.name = "fit-ood",
                         .usage = "--model CKPT [--data SPEC] [--out FILE] [--detector mahalanobis|knn] [options]",
                         .note = "mahalanobis scores -min_k (f - mu_k)^T Sigma^-1 (f - mu_k) on the layer's features f "
                                 "(Sigma shrunk by --shrinkage; a singular one\nnames the shrinkage to use); knn "
                                 "scores -(distance of the unit feature to its k-th nearest unit training feature).\n"
                                 "Higher = more in-distribution. The file records the model's checksum: another model "
                                 "refuses it. --holdout keeps the\nimages jem ood --threshold-tpr fits on out of the "
                                 "fit.",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = fit_check,
                         .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = fit_run(&cx, &a);
    cli_end(&cx);
    return r;
}

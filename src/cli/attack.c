/* jem attack: robust accuracy under FGSM / PGD (L-inf, L2), undefended and
 * with the SGLD-purification defence attacked by BPDA + EOT and by transfer
 * from the undefended model. Epsilons are on the [0, 1] pixel scale; the
 * model sees [-1, 1], so they are doubled before the attack. */
#include "cli/cli.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define MAX_EPS  32
#define EPS_LINF "0,0.02,0.05,0.1,0.2"
#define EPS_L2   "0,0.5,1,2"

/* "a,b,c": non-decreasing, each in [0, 1e3] */
static int parse_list(const char *s, double *v, int max)
{
    int n = 0;
    if (!*s) return -1;
    while (*s) {
        if (n == max) return -1;
        char *end;
        double x = strtod(s, &end);
        if (end == s || !(x >= 0 && x <= 1e3)) return -1;
        if (n && x < v[n - 1]) return -1;
        v[n++] = x;
        s = end;
        if (*s == ',' && s[1]) s++;
        else if (*s) return -1;
    }
    return n;
}

static double frac(const uint8_t *r, int n)
{
    int k = 0;
    for (int i = 0; i < n; i++) k += r[i];
    return n ? (double)k / n : 0;
}

/* jem_attack_run on this rank's slice of the n images (all of them without
 * MPI), then the per-image results exchanged so every rank has them all;
 * a progress bar says what runs */
static jem_status attack_split(const cli_ctx *cx, const char *what, const jem_classifier *c, const float *x,
                               const int32_t *y, int n, jem_attack_cfg *cfg, uint8_t *robust, float *adv, size_t D)
{
    int64_t lo, hi;
    jem_dist_slice(n, &lo, &hi);
    cli_bar bar;
    cli_bar_start(&bar, cx, what, 1);
    cfg->progress = cli_bar_cb64;
    cfg->progress_ud = &bar;
    jem_status s = jem_attack_run(c, x + D * (size_t)lo, y + lo, (int)(hi - lo), cfg, robust + lo,
                                  adv ? adv + D * (size_t)lo : NULL);
    cfg->progress = NULL;
    cfg->progress_ud = NULL;
    cli_bar_end(&bar);
    if (s) return s;
    jem_dist_allgather(robust, 1, n);
    if (adv) jem_dist_allgather(adv, sizeof(float) * D, n);
    return JEM_OK;
}

typedef struct {
    const char *data, *norm_s, *eps_s, *defence, *curve, *save;
    int n, dn, steps, restarts, fgsm, dsteps, dchains, eot, no_random, norm, ne;
    double step_frac, eps[MAX_EPS];
    uint64_t seed;
} attack_args;

static int check(cli_ctx *cx, void *ud)
{
    attack_args *a = ud;
    a->norm = !strcmp(a->norm_s, "l2") ? 2 : 0;
    if (cli_spec_unlabelled(a->data))
        return cli_usage_error("attack",
                               "--data %s: the set has no labels to attack (noise: and interp: sets have "
                               "none)",
                               a->data);
    a->ne = parse_list(a->eps_s ? a->eps_s : (a->norm == 0 ? EPS_LINF : EPS_L2), a->eps, MAX_EPS);
    if (a->ne < 1)
        return cli_usage_error("attack",
                               "--eps '%s': want 1 to %d non-decreasing epsilons from 0 to 1000 on the "
                               "[0, 1] pixel scale, e.g. " EPS_LINF,
                               a->eps_s, MAX_EPS);
    if (!a->defence) {
        static const char *const def_only[] = {"defence-n", "defence-steps", "defence-chains", "eot"};
        for (int i = 0; i < 4; i++)
            if (cli_given(cx->spec, def_only[i]))
                return cli_usage_error("attack", "--%s needs --defence sgld", def_only[i]);
    }
    if (a->dn > a->n) return cli_usage_error("attack", "--defence-n %d: more than the %d images of --n", a->dn, a->n);
    if (a->fgsm && (cli_given(cx->spec, "steps") || cli_given(cx->spec, "step-size")))
        return cli_usage_error("attack", "--fgsm takes one step of size epsilon: --steps and --step-size do not apply");
    return 0;
}

static int run(cli_ctx *cx, attack_args *a)
{
    jem_dataset ds;
    const int norm = a->norm, ne = a->ne, fgsm = a->fgsm, steps = a->steps, restarts = a->restarts;
    const double *eps = a->eps;
    jem_status s = cli_open_data(cx, "data", a->data, &ds);
    if (s) return cli_fail("attack", s);
    if (a->n < ds.n) jem_dataset_truncate(&ds, a->n);
    const int n = ds.n;
    s = cli_check_labels(cx, "data", &ds, 1);
    if (s) {
        jem_dataset_free(&ds);
        return cli_fail("attack", s);
    }
    const int dn = a->dn <= 0 || a->dn > n ? n : a->dn;
    const int D = ds.c * ds.h * ds.w;
    jem_classifier cu;
    jem_classifier_net(&cu, cx->net);
    jem_purifier pur;
    jem_purifier_init(&pur, cx->net, a->dsteps, a->dchains, a->eot, a->seed);
    uint8_t *ru = malloc(n), *prev_u = malloc(n), *rt = malloc(n), *rd = malloc(n), *prev_d = malloc(n);
    float *adv = malloc(sizeof(float) * (size_t)n * D);
    double accu[MAX_EPS], acct[MAX_EPS], accd[MAX_EPS], accdef[MAX_EPS];
    int rc = 0;
    if (!ru || !prev_u || !rt || !rd || !prev_d || !adv) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory");
        goto fail;
    }
    memset(prev_u, 1, n);
    memset(prev_d, 1, n);
    if (a->save && (s = cli_make_dir(a->save))) goto fail;
    if (!cx->json) {
        printf("%s on %s, %d images, %s %s, %d steps of %.2f eps, %d restart%s\n", cx->model, a->data, n,
               fgsm ? "FGSM" : "PGD", norm ? "L2" : "L-inf", fgsm ? 1 : steps, fgsm ? 1.0 : a->step_frac, restarts,
               restarts > 1 ? "s" : "");
        if (a->defence)
            printf("defence (first %d images): SGLD purification, %d steps, %d chains; BPDA + EOT over %d draws\n", dn,
                   a->dsteps, a->dchains, a->eot);
        printf("\n%8s %12s", "eps", "undefended");
        if (a->defence) printf(" %12s %12s %12s", "def:transfer", "def:BPDA+EOT", "def:worst");
        printf("\n");
        fflush(stdout);
    }
    for (int e = 0; e < ne; e++) {
        /* [0, 1]-scale epsilon -> the model's [-1, 1] units */
        jem_attack_cfg ac = {.norm = norm,
                             .eps = 2.0 * eps[e],
                             .step = 2.0 * eps[e] * a->step_frac,
                             .steps = steps,
                             .restarts = restarts,
                             .random_start = !a->no_random,
                             .fgsm = fgsm,
                             .seed = a->seed + (uint64_t)e};
        char what[200];
        snprintf(what, sizeof what, "eps %g: %s %d images", eps[e], fgsm ? "FGSM on" : "PGD on", n);
        s = attack_split(cx, what, &cu, ds.x, ds.y, n, &ac, ru, adv, (size_t)D);
        if (s) goto fail;
        /* monotone: an image broken at a smaller epsilon stays broken */
        for (int i = 0; i < n; i++) {
            ru[i] &= prev_u[i];
            prev_u[i] = ru[i];
        }
        accu[e] = frac(ru, n);
        if (a->save && eps[e] > 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/adv-%s-%g.png", a->save, norm ? "l2" : "linf", eps[e]);
            s = jem_png_write_grid(path, adv, n < 64 ? n : 64, ds.c, ds.h, ds.w, 8, 2);
            if (s) goto fail;
        }
        if (a->defence) {
            /* transfer: the undefended model's adversarial examples against the defence */
            jem_classifier *cd = &pur.c;
            jem_attack_cfg clean = ac;
            clean.eps = 0;
            snprintf(what, sizeof what, "eps %g: transfer to the defence, %d images", eps[e], dn);
            s = attack_split(cx, what, cd, adv, ds.y, dn, &clean, rt, NULL, (size_t)D);
            if (s) goto fail;
            acct[e] = frac(rt, dn);
            /* the adaptive attack: PGD with BPDA + EOT gradients through the defence */
            snprintf(what, sizeof what, "eps %g: BPDA + EOT through the defence, %d images", eps[e], dn);
            s = attack_split(cx, what, cd, ds.x, ds.y, dn, &ac, rd, NULL, (size_t)D);
            if (s) goto fail;
            accd[e] = frac(rd, dn);
            /* defended robust accuracy: an image survives only if neither
             * attack broke it, at this or any smaller epsilon */
            for (int i = 0; i < dn; i++) {
                prev_d[i] = rd[i] & rt[i] & prev_d[i];
            }
            accdef[e] = frac(prev_d, dn);
        }
        if (!cx->json) {
            printf("%8g %12.4f", eps[e], accu[e]);
            if (a->defence) printf(" %12.4f %12.4f %12.4f", acct[e], accd[e], accdef[e]);
            printf("\n");
            fflush(stdout);
        }
    }
    if (a->curve) {
        jem_series ser[2] = {{"undefended", eps, accu, ne}, {"SGLD purification (worst attack)", eps, accdef, ne}};
        jem_plot_opts po;
        memset(&po, 0, sizeof po);
        char title[160];
        snprintf(title, sizeof title, "Robust accuracy, %s %s", fgsm ? "FGSM" : "PGD", norm ? "L2" : "L-inf");
        po.title = title;
        po.xlabel = "epsilon ([0, 1] pixel scale)";
        po.ylabel = "robust accuracy";
        po.ymin = 0;
        po.ymax = 1;
        jem_image im = {0};
        s = jem_plot_lines(ser, a->defence ? 2 : 1, &po, &im);
        if (!s) s = jem_image_write_png(a->curve, &im);
        jem_image_free(&im);
        if (s) goto fail;
    }
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "model", cx->model);
        jem_jw_kstr(&w, "data", a->data);
        jem_jw_kint(&w, "n", n);
        jem_jw_kstr(&w, "attack", fgsm ? "fgsm" : "pgd");
        jem_jw_kstr(&w, "norm", norm ? "l2" : "linf");
        jem_jw_kint(&w, "steps", fgsm ? 1 : steps);
        jem_jw_kint(&w, "restarts", restarts);
        jem_jw_key(&w, "eps");
        jem_jw_arr_begin(&w);
        for (int e = 0; e < ne; e++) jem_jw_double(&w, eps[e]);
        jem_jw_arr_end(&w);
        jem_jw_key(&w, "undefended");
        jem_jw_arr_begin(&w);
        for (int e = 0; e < ne; e++) jem_jw_double(&w, accu[e]);
        jem_jw_arr_end(&w);
        if (a->defence) {
            jem_jw_key(&w, "defence");
            jem_jw_obj_begin(&w);
            jem_jw_kint(&w, "n", dn);
            jem_jw_kint(&w, "sgld_steps", a->dsteps);
            jem_jw_kint(&w, "chains", a->dchains);
            jem_jw_kint(&w, "eot", a->eot);
            const char *keys[3] = {"transfer", "bpda_eot", "worst"};
            double *vals[3] = {acct, accd, accdef};
            for (int k = 0; k < 3; k++) {
                jem_jw_key(&w, keys[k]);
                jem_jw_arr_begin(&w);
                for (int e = 0; e < ne; e++) jem_jw_double(&w, vals[k][e]);
                jem_jw_arr_end(&w);
            }
            jem_jw_obj_end(&w);
        }
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    }
    goto done;
fail:
    rc = cli_fail("attack", s);
done:
    free(ru);
    free(prev_u);
    free(rt);
    free(rd);
    free(prev_d);
    free(adv);
    jem_dataset_free(&ds);
    return rc;
}

int cmd_attack(int argc, char **argv)
{
    attack_args a = {.data = "fmnist:test",
                     .norm_s = "linf",
                     .n = 1000,
                     .steps = 20,
                     .restarts = 1,
                     .dsteps = 10,
                     .dchains = 4,
                     .eot = 4,
                     .step_frac = 0.25,
                     .seed = 1};
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &a.data, "data set (labelled)"), .flags = OPT_SPEC},
        {OPT("n", OPT_INT, &a.n, "images attacked (the first N)"), RANGE(1, 1 << 30)},
        {OPT("norm", OPT_STR, &a.norm_s, "threat model"), .choices = "linf|l2"},
        {OPT("eps", OPT_STR, &a.eps_s, "epsilons on the [0, 1] scale, 0 = clean accuracy"),
         .def = "linf " EPS_LINF "; l2 " EPS_L2},
        {OPT("steps", OPT_INT, &a.steps, "PGD steps"), RANGE(1, 100000)},
        {OPT("step-size", OPT_DOUBLE, &a.step_frac, "PGD step as a fraction of epsilon"), ABOVE(0, 10)},
        {OPT("restarts", OPT_INT, &a.restarts, "random restarts (worst case per image)"), RANGE(1, 1000)},
        {OPT("no-random-start", OPT_FLAG, &a.no_random, "start PGD at the clean image")},
        {OPT("fgsm", OPT_FLAG, &a.fgsm, "FGSM (one step of size epsilon) instead of PGD")},
        {OPT("defence", OPT_STR, &a.defence, "also attack the SGLD-purification defence"), .choices = "sgld"},
        {OPT("defence-n", OPT_INT, &a.dn, "images attacked through the defence (the first N; 0: all --n)"),
         RANGE(0, 1 << 30)},
        {OPT("defence-steps", OPT_INT, &a.dsteps, "SGLD purification steps"), RANGE(0, 100000)},
        {OPT("defence-chains", OPT_INT, &a.dchains, "purification chains per image (logits averaged)"), RANGE(1, 1000)},
        {OPT("eot", OPT_INT, &a.eot, "draws of the defence's noise averaged per gradient (EOT)"), RANGE(1, 1000)},
        {OPT("curve", OPT_STR, &a.curve, "PNG: robust accuracy against epsilon"), .flags = OPT_OUT_FILE},
        {OPT("save-adv", OPT_STR, &a.save, "folder for PNG grids of adversarial examples"), .flags = OPT_OUT_DIR},
        {OPT("seed", OPT_U64, &a.seed, "random seed")},
        CLI_END};
    const cli_spec sp = {.name = "attack",
                         .usage = "--model CKPT [--norm linf|l2] [--eps LIST] [options]",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .check = check,
                         .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = run(&cx, &a);
    cli_end(&cx);
    return r;
}

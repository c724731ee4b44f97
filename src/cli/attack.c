/* jem attack: robust accuracy under FGSM / PGD (L-inf, L2), undefended and
 * with the SGLD-purification defence attacked by BPDA + EOT and by transfer
 * from the undefended model. Epsilons are on the [0, 1] pixel scale; the
 * model sees [-1, 1], so they are doubled before the attack. */
#include "cli/steps.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

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

void cli_attack_defaults(cli_attack_args *a)
{
    memset(a, 0, sizeof *a);
    a->data = "fmnist:test";
    a->norm_s = "linf";
    a->n = 1000;
    a->steps = 20;
    a->restarts = 1;
    a->dsteps = 10;
    a->dchains = 4;
    a->eot = 4;
    a->step_frac = 0.25;
    a->seed = 1;
}

int cli_attack_eps(const char *cmd, cli_attack_args *a)
{
    a->norm = !strcmp(a->norm_s, "l2") ? 2 : 0;
    a->ne = parse_list(a->eps_s ? a->eps_s : (a->norm == 0 ? EPS_LINF : EPS_L2), a->eps, CLI_MAX_EPS);
    if (a->ne < 1)
        return cli_usage_error(cmd,
                               "--eps '%s': want 1 to %d non-decreasing epsilons from 0 to 1000 on the "
                               "[0, 1] pixel scale, e.g. " EPS_LINF,
                               a->eps_s, CLI_MAX_EPS);
    return 0;
}

static int check(cli_ctx *cx, void *ud)
{
    cli_attack_args *a = ud;
    if (cli_spec_unlabelled(a->data))
        return cli_usage_error("attack",
                               "--data %s: the set has no labels to attack (noise: and interp: sets have "
                               "none)",
                               a->data);
    if (cli_attack_eps("attack", a)) return 2;
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

jem_status cli_attack_run(const cli_ctx *cx, const cli_attack_args *a, cli_attack_res *r)
{
    jem_dataset ds;
    const int norm = a->norm, ne = a->ne, fgsm = a->fgsm, steps = a->steps, restarts = a->restarts;
    const double *eps = a->eps;
    memset(r, 0, sizeof *r);
    jem_status s = cli_open_data(cx, "data", a->data, &ds);
    if (s) return s;
    if (a->n < ds.n) jem_dataset_truncate(&ds, a->n);
    const int n = ds.n;
    s = cli_check_labels(cx, "data", &ds, 1);
    if (s) {
        jem_dataset_free(&ds);
        return s;
    }
    const int dn = a->dn <= 0 || a->dn > n ? n : a->dn;
    const int D = ds.c * ds.h * ds.w;
    r->n = n;
    r->dn = a->defence ? dn : 0;
    r->ne = ne;
    memcpy(r->eps, eps, sizeof(double) * (size_t)ne);
    jem_classifier cu;
    jem_classifier_net(&cu, cx->net);
    jem_purifier pur;
    jem_purifier_init(&pur, cx->net, a->dsteps, a->dchains, a->eot, a->seed);
    uint8_t *ru = malloc(n), *prev_u = malloc(n), *rt = malloc(n), *rd = malloc(n), *prev_d = malloc(n);
    float *adv = malloc(sizeof(float) * (size_t)n * D);
    if (!ru || !prev_u || !rt || !rd || !prev_d || !adv) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(prev_u, 1, n);
    memset(prev_d, 1, n);
    if (a->save && (s = cli_make_dir(a->save))) goto done;
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
        if (s) goto done;
        /* monotone: an image broken at a smaller epsilon stays broken */
        for (int i = 0; i < n; i++) {
            ru[i] &= prev_u[i];
            prev_u[i] = ru[i];
        }
        r->accu[e] = frac(ru, n);
        r->accu_dn[e] = frac(ru, dn);
        if (a->save && eps[e] > 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/adv-%s-%g.png", a->save, norm ? "l2" : "linf", eps[e]);
            s = jem_png_write_grid(path, adv, n < 64 ? n : 64, ds.c, ds.h, ds.w, 8, 2);
            if (s) goto done;
        }
        if (a->defence) {
            /* transfer: the undefended model's adversarial examples against the defence */
            jem_classifier *cd = &pur.c;
            jem_attack_cfg clean = ac;
            clean.eps = 0;
            snprintf(what, sizeof what, "eps %g: transfer to the defence, %d images", eps[e], dn);
            s = attack_split(cx, what, cd, adv, ds.y, dn, &clean, rt, NULL, (size_t)D);
            if (s) goto done;
            r->acct[e] = frac(rt, dn);
            /* the adaptive attack: PGD with BPDA + EOT gradients through the defence */
            snprintf(what, sizeof what, "eps %g: BPDA + EOT through the defence, %d images", eps[e], dn);
            s = attack_split(cx, what, cd, ds.x, ds.y, dn, &ac, rd, NULL, (size_t)D);
            if (s) goto done;
            r->accd[e] = frac(rd, dn);
            /* defended robust accuracy: an image survives only if neither
             * attack broke it, at this or any smaller epsilon */
            for (int i = 0; i < dn; i++) {
                prev_d[i] = rd[i] & rt[i] & prev_d[i];
            }
            r->accdef[e] = frac(prev_d, dn);
        }
    }
done:
    free(ru);
    free(prev_u);
    free(rt);
    free(rd);
    free(prev_d);
    free(adv);
    jem_dataset_free(&ds);
    return s;
}

jem_status cli_attack_curve(const cli_attack_args *a, const cli_attack_res *r, const jem_plot_opts *popts,
                            jem_image *im)
{
    jem_series ser[2] = {{"undefended", r->eps, r->accu, r->ne},
                         {"SGLD purification (worst attack)", r->eps, r->accdef, r->ne}};
    jem_plot_opts po;
    if (popts) po = *popts;
    else memset(&po, 0, sizeof po);
    char buf[160];
    snprintf(buf, sizeof buf, "Robust accuracy, %s %s", a->fgsm ? "FGSM" : "PGD", a->norm ? "L2" : "L-inf");
    if (!po.title) po.title = buf;
    po.xlabel = "epsilon ([0, 1] pixel scale)";
    po.ylabel = "robust accuracy";
    po.ymin = 0;
    po.ymax = 1;
    return jem_plot_lines(ser, a->defence ? 2 : 1, &po, im);
}

static void json_row(jem_jw *w, const char *key, const double *v, int ne)
{
    jem_jw_key(w, key);
    jem_jw_arr_begin(w);
    for (int e = 0; e < ne; e++) jem_jw_double(w, v[e]);
    jem_jw_arr_end(w);
}

void cli_attack_json(jem_jw *w, const cli_ctx *cx, const cli_attack_args *a, const cli_attack_res *r, int same_images)
{
    const int ne = r->ne;
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "model", cx->model);
    jem_jw_kstr(w, "data", a->data);
    jem_jw_kint(w, "n", r->n);
    jem_jw_kstr(w, "attack", a->fgsm ? "fgsm" : "pgd");
    jem_jw_kstr(w, "norm", a->norm ? "l2" : "linf");
    jem_jw_kint(w, "steps", a->fgsm ? 1 : a->steps);
    jem_jw_kint(w, "restarts", a->restarts);
    json_row(w, "eps", r->eps, ne);
    json_row(w, "undefended", r->accu, ne);
    if (a->defence) {
        jem_jw_key(w, "defence");
        jem_jw_obj_begin(w);
        jem_jw_kint(w, "n", r->dn);
        jem_jw_kint(w, "sgld_steps", a->dsteps);
        jem_jw_kint(w, "chains", a->dchains);
        jem_jw_kint(w, "eot", a->eot);
        json_row(w, "transfer", r->acct, ne);
        json_row(w, "bpda_eot", r->accd, ne);
        json_row(w, "worst", r->accdef, ne);
        if (same_images) json_row(w, "undefended", r->accu_dn, ne);
        jem_jw_obj_end(w);
    }
    jem_jw_obj_end(w);
}

static void print_text(const cli_ctx *cx, const cli_attack_args *a, const cli_attack_res *r)
{
    const int fgsm = a->fgsm, norm = a->norm;
    printf("%s on %s, %d images, %s %s, %d steps of %.2f eps, %d restart%s\n", cx->model, a->data, r->n,
           fgsm ? "FGSM" : "PGD", norm ? "L2" : "L-inf", fgsm ? 1 : a->steps, fgsm ? 1.0 : a->step_frac, a->restarts,
           a->restarts > 1 ? "s" : "");
    if (a->defence)
        printf("defence (first %d images): SGLD purification, %d steps, %d chains; BPDA + EOT over %d draws\n", r->dn,
               a->dsteps, a->dchains, a->eot);
    printf("\n%8s %12s", "eps", "undefended");
    if (a->defence) printf(" %12s %12s %12s", "def:transfer", "def:BPDA+EOT", "def:worst");
    printf("\n");
    for (int e = 0; e < r->ne; e++) {
        printf("%8g %12.4f", r->eps[e], r->accu[e]);
        if (a->defence) printf(" %12.4f %12.4f %12.4f", r->acct[e], r->accd[e], r->accdef[e]);
        printf("\n");
    }
}

static int run(cli_ctx *cx, cli_attack_args *a)
{
    cli_attack_res r;
    jem_status s = cli_attack_run(cx, a, &r);
    if (!s && a->curve) {
        jem_image im = {0};
        s = cli_attack_curve(a, &r, NULL, &im);
        if (!s) s = jem_image_write_png(a->curve, &im);
        jem_image_free(&im);
    }
    if (s) return cli_fail("attack", s);
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        cli_attack_json(&w, cx, a, &r, 0);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        print_text(cx, a, &r);
    }
    return 0;
}

int cmd_attack(int argc, char **argv)
{
    cli_attack_args a;
    cli_attack_defaults(&a);
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

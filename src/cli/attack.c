/* jem attack: robust accuracy under FGSM / PGD (L-inf, L2), undefended and
 * with the SGLD-purification defence attacked by BPDA + EOT and by transfer
 * from the undefended model. Epsilons are on the [0, 1] pixel scale; the
 * model sees [-1, 1], so they are doubled before the attack. */
#include "cli/cli.h"
#include "eval/eval.h"
#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_EPS 32

static int parse_list(const char *s, double *v, int max)
{
    int n = 0;
    while (*s && n < max) {
        char *end;
        double x = strtod(s, &end);
        if (end == s || !(x >= 0)) return -1;
        v[n++] = x;
        s = end;
        if (*s == ',') s++;
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
 * MPI), then the per-image results exchanged so every rank has them all */
static jem_status attack_split(const jem_classifier *c, const float *x, const int32_t *y, int n,
                               const jem_attack_cfg *cfg, uint8_t *robust, float *adv, size_t D)
{
    int64_t lo, hi;
    jem_dist_slice(n, &lo, &hi);
    jem_status s = jem_attack_run(c, x + D * (size_t)lo, y + lo, (int)(hi - lo), cfg, robust + lo,
                                  adv ? adv + D * (size_t)lo : NULL);
    if (s) return s;
    jem_dist_allgather(robust, 1, n);
    if (adv) jem_dist_allgather(adv, sizeof(float) * D, n);
    return JEM_OK;
}

int cmd_attack(int argc, char **argv)
{
    const char *model = NULL, *data = "fmnist:test", *norm_s = "linf", *eps_s = NULL, *defence = NULL;
    const char *curve = NULL, *save = NULL;
    int n = 1000, dn = 0, steps = 20, restarts = 1, fgsm = 0, threads = 0, json = 0, dsteps = 10, dchains = 4, eot = 4;
    int no_random = 0;
    double step_frac = 0.25;
    uint64_t seed = 1;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint"},
        {"data", OPT_STR, &data, "data set"},
        {"n", OPT_INT, &n, "images attacked (the first N)"},
        {"norm", OPT_STR, &norm_s, "linf or l2"},
        {"eps", OPT_STR, &eps_s, "epsilons on the [0, 1] scale (default linf 0.02,0.05,0.1,0.2; l2 0.5,1,2)"},
        {"steps", OPT_INT, &steps, "PGD steps"},
        {"step-size", OPT_DOUBLE, &step_frac, "PGD step as a fraction of epsilon"},
        {"restarts", OPT_INT, &restarts, "random restarts (worst case per image)"},
        {"no-random-start", OPT_FLAG, &no_random, "start PGD at the clean image"},
        {"fgsm", OPT_FLAG, &fgsm, "FGSM (one step of size epsilon) instead of PGD"},
        {"defence", OPT_STR, &defence, "sgld: also attack the SGLD-purification defence"},
        {"defence-n", OPT_INT, &dn, "images attacked through the defence (the first N; 0: all --n)"},
        {"defence-steps", OPT_INT, &dsteps, "SGLD purification steps"},
        {"defence-chains", OPT_INT, &dchains, "purification chains per image (logits averaged)"},
        {"eot", OPT_INT, &eot, "draws of the defence's noise averaged per gradient (EOT)"},
        {"curve", OPT_STR, &curve, "PNG: robust accuracy against epsilon"},
        {"save-adv", OPT_STR, &save, "directory for PNG grids of adversarial examples"},
        {"seed", OPT_U64, &seed, "random seed"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"json", OPT_FLAG, &json, "print JSON"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("attack", "--model CKPT [--norm linf|l2] [--eps LIST] [options]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos) model = pos[0];
    if (!model) { fprintf(stderr, "jem attack: error: --model CKPT is required\n"); return 2; }
    int norm = !strcmp(norm_s, "linf") ? 0 : !strcmp(norm_s, "l2") ? 2 : -1;
    if (norm < 0) { fprintf(stderr, "jem attack: error: --norm must be linf or l2\n"); return 2; }
    if (defence && strcmp(defence, "sgld")) { fprintf(stderr, "jem attack: error: --defence must be sgld\n"); return 2; }
    double eps[MAX_EPS];
    int ne = parse_list(eps_s ? eps_s : (norm == 0 ? "0,0.02,0.05,0.1,0.2" : "0,0.5,1,2"), eps, MAX_EPS);
    if (ne < 1) { fprintf(stderr, "jem attack: error: bad --eps '%s'\n", eps_s); return 2; }
    for (int i = 1; i < ne; i++)
        if (eps[i] < eps[i - 1]) { fprintf(stderr, "jem attack: error: --eps must be increasing\n"); return 2; }
    if (n < 1 || steps < 1 || restarts < 1 || dsteps < 0 || dchains < 1 || eot < 1 || !(step_frac > 0)) {
        fprintf(stderr, "jem attack: error: --n, --steps, --restarts, --defence-chains, --eot must be positive\n");
        return 2;
    }
    jem_set_threads(threads);
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(model, &net);
    if (s) return cli_fail("attack", s);
    jem_dataset ds;
    s = cli_open_data(data, jem_net_arch(net), &ds);
    if (s) { jem_net_free(net); return cli_fail("attack", s); }
    if (n < ds.n) jem_dataset_truncate(&ds, n);
    n = ds.n;
    for (int i = 0; i < n; i++)
        if (ds.y[i] < 0 || ds.y[i] >= jem_net_arch(net)->n_classes) {
            s = jem_fail(JEM_ERR_ARG, "%s: image %d has label %d, the model has %d classes (attacks need labelled data)",
                         ds.name, i, ds.y[i], jem_net_arch(net)->n_classes);
            jem_dataset_free(&ds);
            jem_net_free(net);
            return cli_fail("attack", s);
        }
    if (dn <= 0 || dn > n) dn = n;
    const int D = ds.c * ds.h * ds.w;
    jem_classifier cu;
    jem_classifier_net(&cu, net);
    jem_purifier pur;
    jem_purifier_init(&pur, net, dsteps, dchains, eot, seed);
    uint8_t *ru = malloc(n), *prev_u = malloc(n), *rt = malloc(n), *rd = malloc(n), *prev_d = malloc(n);
    float *adv = malloc(sizeof(float) * (size_t)n * D);
    double accu[MAX_EPS], acct[MAX_EPS], accd[MAX_EPS], accdef[MAX_EPS];
    int rc = 0;
    if (!ru || !prev_u || !rt || !rd || !prev_d || !adv) { s = jem_fail(JEM_ERR_NOMEM, "out of memory"); goto fail; }
    memset(prev_u, 1, n);
    memset(prev_d, 1, n);
    if (save) mkdir(save, 0777);
    if (!json) {
        printf("%s on %s, %d images, %s %s, %d steps of %.2f eps, %d restart%s\n", model, data, n,
               fgsm ? "FGSM" : "PGD", norm ? "L2" : "L-inf", fgsm ? 1 : steps, fgsm ? 1.0 : step_frac, restarts,
               restarts > 1 ? "s" : "");
        if (defence) printf("defence (first %d images): SGLD purification, %d steps, %d chains; BPDA + EOT over %d draws\n", dn, dsteps, dchains, eot);
        printf("\n%8s %12s", "eps", "undefended");
        if (defence) printf(" %12s %12s %12s", "def:transfer", "def:BPDA+EOT", "def:worst");
        printf("\n");
    }
    for (int e = 0; e < ne; e++) {
        /* [0, 1]-scale epsilon -> the model's [-1, 1] units */
        jem_attack_cfg ac = {norm, 2.0 * eps[e], 2.0 * eps[e] * step_frac, steps, restarts, !no_random, fgsm, seed + (uint64_t)e};
        s = attack_split(&cu, ds.x, ds.y, n, &ac, ru, adv, (size_t)D);
        if (s) goto fail;
        /* monotone: an image broken at a smaller epsilon stays broken */
        for (int i = 0; i < n; i++) { ru[i] &= prev_u[i]; prev_u[i] = ru[i]; }
        accu[e] = frac(ru, n);
        if (save && eps[e] > 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/adv-%s-%g.png", save, norm ? "l2" : "linf", eps[e]);
            s = jem_png_write_grid(path, adv, n < 64 ? n : 64, ds.c, ds.h, ds.w, 8, 2);
            if (s) goto fail;
        }
        if (defence) {
            /* transfer: the undefended model's adversarial examples against the defence */
            jem_classifier *cd = &pur.c;
            jem_attack_cfg clean = ac;
            clean.eps = 0;
            s = attack_split(cd, adv, ds.y, dn, &clean, rt, NULL, (size_t)D);
            if (s) goto fail;
            acct[e] = frac(rt, dn);
            /* the adaptive attack: PGD with BPDA + EOT gradients through the defence */
            s = attack_split(cd, ds.x, ds.y, dn, &ac, rd, NULL, (size_t)D);
            if (s) goto fail;
            accd[e] = frac(rd, dn);
            /* defended robust accuracy: an image survives only if neither
             * attack broke it, at this or any smaller epsilon */
            for (int i = 0; i < dn; i++) { prev_d[i] = rd[i] & rt[i] & prev_d[i]; }
            accdef[e] = frac(prev_d, dn);
        }
        if (!json) {
            printf("%8g %12.4f", eps[e], accu[e]);
            if (defence) printf(" %12.4f %12.4f %12.4f", acct[e], accd[e], accdef[e]);
            printf("\n");
            fflush(stdout);
        }
    }
    if (curve) {
        jem_series ser[2] = {{"undefended", eps, accu, ne}, {"SGLD purification (worst attack)", eps, accdef, ne}};
        jem_plot_opts po;
        memset(&po, 0, sizeof po);
        char title[160];
        snprintf(title, sizeof title, "Robust accuracy, %s %s", fgsm ? "FGSM" : "PGD", norm ? "L2" : "L-inf");
        po.title = title;
        po.xlabel = "epsilon ([0, 1] pixel scale)";
        po.ylabel = "robust accuracy";
        po.ymin = 0; po.ymax = 1;
        jem_image im = {0};
        s = jem_plot_lines(ser, defence ? 2 : 1, &po, &im);
        if (!s) s = jem_image_write_png(curve, &im);
        jem_image_free(&im);
        if (s) goto fail;
    }
    if (json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "model", model);
        jem_jw_kstr(&w, "data", data);
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
        if (defence) {
            jem_jw_key(&w, "defence");
            jem_jw_obj_begin(&w);
            jem_jw_kint(&w, "n", dn);
            jem_jw_kint(&w, "sgld_steps", dsteps);
            jem_jw_kint(&w, "chains", dchains);
            jem_jw_kint(&w, "eot", eot);
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
    free(ru); free(prev_u); free(rt); free(rd); free(prev_d); free(adv);
    jem_dataset_free(&ds);
    jem_net_free(net);
    return rc;
}

/* jem logz: the normalising constant of a model's p~(x) = exp(logsumexp_y
 * f(x)[y]) on the box [-1, 1]^D by annealed importance sampling, and the
 * normalised log p(x) of a data set in nats and bits per dimension. */
#include "cli/cli.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct {
    const char *data, *base, *base_data, *schedule;
    int limit, chains, T, leapfrog, steps_per, pilot;
    float step, target, sd_min;
    uint64_t seed;
} logz_args;

static int check(cli_ctx *cx, void *ud)
{
    logz_args *a = ud;
    const cli_spec *sp = cx->spec;
    if (strcmp(a->base, "gauss") && cli_given(sp, "base-data"))
        return cli_usage_error("logz", "--base-data is for --base gauss");
    if (strcmp(a->base, "gauss") && cli_given(sp, "sd-min"))
        return cli_usage_error("logz", "--sd-min is for --base gauss");
    if (!strcmp(a->base, "gauss") && cli_spec_unlabelled(a->base_data))
        return cli_usage_error("logz", "--base-data %s: the per-class Gaussians need labels", a->base_data);
    if (a->pilot > a->chains && cli_given(sp, "pilot") == 0) a->pilot = a->chains;
    return 0;
}

static void on_progress(void *ud, int done, int total)
{
    cli_bar *b = ud;
    (void)total;
    cli_bar_set(b, done);
}

static int run(cli_ctx *cx, logz_args *a)
{
    const jem_arch *ar = cx->arch;
    const int K = ar->n_classes, C = ar->in_c, H = ar->in_h, W = ar->in_w;
    const int D = C * H * W;
    jem_dataset ds, bd;
    memset(&ds, 0, sizeof ds);
    memset(&bd, 0, sizeof bd);
    jem_buffer buf;
    memset(&buf, 0, sizeof buf);
    float *logits = NULL, *lse = NULL;
    int rc = 0;
    /* the data to score first: a bad set fails before the long part */
    jem_status s = cli_open_data(cx, "data", a->data, &ds);
    if (s) goto fail;
    if (a->limit > 0) jem_dataset_truncate(&ds, a->limit);
    jem_base q;
    memset(&q, 0, sizeof q);
    if (!strcmp(a->base, "gauss")) {
        s = cli_open_data(cx, "base-data", a->base_data, &bd);
        if (!s) s = cli_check_labels(cx, "base-data", &bd, 0);
        if (!s) s = jem_buffer_create(&buf, K, C, H, W, K, JEM_INIT_INFORMATIVE, 0, 0);
        if (!s) s = jem_buffer_fit(&buf, &bd, 0);
        if (!s) s = jem_base_from_buffer(&q, &buf, a->sd_min);
        if (s) goto fail;
    } else {
        q.kind = JEM_BASE_UNIFORM;
        q.D = D;
        q.bounded = 1;
        q.lo = -1;
        q.hi = 1;
    }
    jem_ais_cfg c;
    jem_ais_defaults(&c);
    c.chains = a->chains;
    c.T = a->T;
    c.schedule = !strcmp(a->schedule, "linear") ? JEM_AIS_LINEAR : JEM_AIS_SIGMOID;
    c.leapfrog = a->leapfrog;
    c.steps_per = a->steps_per;
    c.step_size = a->step;
    c.target_accept = a->target;
    c.pilot_chains = a->pilot;
    c.seed = a->seed;
    cli_bar bar;
    char what[200];
    snprintf(what, sizeof what, "AIS: %d chains x %d distributions (%s)", a->chains, a->T,
             a->leapfrog == 1 ? "MALA" : "HMC");
    cli_bar_start(&bar, cx, what, 1000);
    c.progress = on_progress;
    c.progress_ud = &bar;
    jem_ais_result r;
    s = jem_ais_run(jem_net_energy, cx->net, &q, &c, NULL, NULL, &r);
    cli_bar_end(&bar);
    if (s) goto fail;
    /* log p~(x) of the data, then normalised */
    const int n = ds.n;
    logits = malloc(sizeof(float) * (size_t)n * K);
    lse = malloc(sizeof(float) * (size_t)n);
    if (!logits || !lse) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d images", n);
        goto fail;
    }
    s = jem_net_predict(cx->net, ds.x, n, logits);
    if (s) goto fail;
    jem_logsumexp(logits, n, K, lse);
    double m = 0, v = 0;
    for (int i = 0; i < n; i++) m += lse[i];
    m /= n;
    for (int i = 0; i < n; i++) v += (lse[i] - m) * (lse[i] - m);
    const double sd = n > 1 ? sqrt(v / (n - 1)) : 0;
    const double lp = m - r.logz;
    const double bpd = jem_bits_per_dim(lp, D, 0, -1, 1), bpd8 = jem_bits_per_dim(lp, D, 8, -1, 1);
    const double bpd_se = r.logz_se / (D * log(2.0));
    const int weak = r.ess < fmax(2.0, 0.1 * r.chains);
    if (cx->json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "data", ds.name);
        jem_jw_kint(&w, "n", n);
        jem_jw_kstr(&w, "base", a->base);
        jem_jw_kint(&w, "T", r.T);
        jem_jw_kint(&w, "chains", r.chains);
        jem_jw_kstr(&w, "transitions", a->leapfrog == 1 ? "mala" : "hmc");
        jem_jw_kint(&w, "leapfrog", a->leapfrog);
        jem_jw_kdouble(&w, "logz", r.logz);
        jem_jw_kdouble(&w, "logz_se", r.logz_se);
        jem_jw_kdouble(&w, "weights_ess", r.ess);
        jem_jw_kdouble(&w, "logw_sd", r.logw_sd);
        jem_jw_kdouble(&w, "accept", r.accept);
        jem_jw_kdouble(&w, "step_min", r.step_min);
        jem_jw_kdouble(&w, "step_max", r.step_max);
        jem_jw_kint(&w, "energy_evals", r.grad_evals);
        jem_jw_kdouble(&w, "logpx_unnorm", m);
        jem_jw_kdouble(&w, "logpx_unnorm_sd", sd);
        jem_jw_kdouble(&w, "logpx", lp);
        jem_jw_kdouble(&w, "bits_per_dim", bpd);
        jem_jw_kdouble(&w, "bits_per_dim_8bit", bpd8);
        jem_jw_kdouble(&w, "bits_per_dim_se", bpd_se);
        jem_jw_kdouble(&w, "logz_uniform", D * log(2.0));
        jem_jw_kint(&w, "weights_degenerate", weak);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("log Z = %.3f +- %.3f (AIS: %d chains, %d intermediate distributions, %s base, %s transitions, "
               "acceptance %.3f, weights' ESS %.1f)\n",
               r.logz, r.logz_se, r.chains, r.T, a->base, a->leapfrog == 1 ? "MALA" : "HMC", r.accept, r.ess);
        printf("  (the uniform density on [-1, 1]^%d has log Z = %.3f)\n", D, D * log(2.0));
        printf("%s (%d images): log p~(x) %.3f (sd %.3f), log p(x) = %.3f nats, %.4f bits/dim on [-1, 1]^D, "
               "%.4f bits/dim as 8-bit data (+- %.2g from log Z)\n",
               ds.name, n, m, sd, lp, bpd, bpd8, bpd_se);
    }
    if (weak)
        fprintf(stderr,
                "jem logz: warning: the weights' ESS is %.1f of %d chains: log Z is then an underestimate "
                "and its standard error unreliable; use more distributions (--T) or another --base\n",
                r.ess, r.chains);
    goto done;
fail:
    rc = cli_fail("logz", s);
done:
    free(logits);
    free(lse);
    jem_buffer_free(&buf);
    jem_dataset_free(&ds);
    jem_dataset_free(&bd);
    return rc;
}

int cmd_logz(int argc, char **argv)
{
    logz_args a = {.data = "fmnist:test",
                   .base = "uniform",
                   .base_data = "fmnist:train",
                   .schedule = "sigmoid",
                   .limit = 0,
                   .chains = 32,
                   .T = 1000,
                   .leapfrog = 5,
                   .steps_per = 1,
                   .pilot = 8,
                   .step = 0.01f,
                   .target = 0.65f,
                   .sd_min = 0.05f,
                   .seed = 1};
    cli_opt opts[] = {
        {OPT("data", OPT_STR, &a.data, "data whose normalised log p(x) is reported"), .flags = OPT_SPEC},
        {OPT("limit", OPT_INT, &a.limit, "use only the first N images (0: all)"), RANGE(0, 1 << 30)},
        {OPT("chains", OPT_INT, &a.chains, "AIS chains (independent weights)"), RANGE(2, 100000)},
        {OPT("T", OPT_INT, &a.T, "intermediate distributions"), RANGE(1, 10000000)},
        {OPT("schedule", OPT_STR, &a.schedule, "spacing of the inverse temperatures"), .choices = "sigmoid|linear"},
        {OPT("leapfrog", OPT_INT, &a.leapfrog, "leapfrog steps of each HMC transition (1: MALA)"), RANGE(1, 10000)},
        {OPT("steps-per", OPT_INT, &a.steps_per, "transitions per distribution"), RANGE(1, 10000)},
        {OPT("step-size", OPT_FLOAT, &a.step, "leapfrog step the pilot starts from (without a pilot: the step)"),
         ABOVE(0, 100)},
        {OPT("target-accept", OPT_FLOAT, &a.target, "the pilot's target acceptance"), RANGE(0.05, 0.99)},
        {OPT("pilot", OPT_INT, &a.pilot, "chains of the pilot run that picks each distribution's step (0: fixed step)"),
         RANGE(0, 100000)},
        {OPT("base", OPT_STR, &a.base,
             "uniform on [-1, 1]^D, or gauss: the per-class Gaussians of --base-data "
             "(diagonal, truncated to the box)"),
         .choices = "uniform|gauss"},
        {OPT("base-data", OPT_STR, &a.base_data, "labelled data for --base gauss"), .flags = OPT_SPEC},
        {OPT("sd-min", OPT_FLOAT, &a.sd_min, "--base gauss: floor of the per-pixel standard deviations"), ABOVE(0, 10)},
        {OPT("seed", OPT_U64, &a.seed, "random seed")},
        CLI_END};
    const cli_spec sp = {.name = "logz",
                         .usage = "--model CKPT [--data SPEC] [options]",
                         .opts = opts,
                         .model = CLI_MODEL_CKPT,
                         .json = 1,
                         .threads = 1,
                         .precision = CLI_PRECISION_HELP,
                         .check = check,
                         .ud = &a,
                         .note = "log Z of exp(logsumexp f(x)) on [-1, 1]^D by AIS (Neal 2001), delta-method "
                                 "standard error; 8-bit bits/dim = bits/dim on [-1, 1]^D + 7"};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = run(&cx, &a);
    cli_end(&cx);
    return r;
}

/* jem attack: robust accuracy under FGSM, PGD, APGD (CE, targeted DLR) and
 * Square (L-inf, L2), or the suite of APGD-CE, APGD-DLR and Square in
 * AutoAttack's order (each on the images the ones before left), undefended
 * and with the SGLD-purification defence (gradients by BPDA + EOT, Square by
 * plain queries, and transfer from the undefended model); then the
 * gradient-masking checks on each table, whose failures are warnings.
 * Epsilons are on the [0, 1] pixel scale; the model sees [-1, 1], so they
 * are doubled before the attack. */
#include "cli/steps.h"

#include <math.h>
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

static const char *const ATK_NAME[CLI_NATK] = {"pgd", "fgsm", "apgd-ce", "apgd-dlr", "square"};
static const char *const ATK_TITLE[CLI_NATK] = {"PGD", "FGSM", "APGD-CE", "APGD-DLR", "Square"};

const char *cli_attack_name(int k) { return k >= 0 && k < CLI_NATK ? ATK_NAME[k] : "?"; }

const char *cli_attack_title(const cli_attack_args *a, char *buf, size_t n)
{
    if (a->suite) snprintf(buf, n, "APGD-CE, APGD-DLR, Square (AutoAttack order)");
    else snprintf(buf, n, "%s", ATK_TITLE[a->atk[0]]);
    return buf;
}

/* the iterations an attack runs (--steps, else its default) */
static int steps_of(const cli_attack_args *a, int kind)
{
    if (kind == CLI_ATK_FGSM) return 1;
    return a->steps > 0 ? a->steps : kind == CLI_ATK_PGD ? 20 : 100;
}

/* a testing hook (--zero-grad): the model with its gradient reported as 0,
 * a model that masks its gradient */
typedef struct {
    const jem_classifier *in;
} masked;

static jem_status masked_logits(void *ctx, const float *x, int B, float *lg)
{
    const masked *m = ctx;
    return m->in->logits(m->in->ctx, x, B, lg);
}

static jem_status masked_grad(void *ctx, const float *x, int B, const float *dl, float *dx, uint64_t seed)
{
    (void)x, (void)dl, (void)seed;
    const masked *m = ctx;
    memset(dx, 0, sizeof(float) * (size_t)B * m->in->D);
    return JEM_OK;
}

/* One attack in full: the attack of that kind at eps (model units), with
 * mult times the steps (Square: queries) and restarts, on the n images of
 * x (all ranks split them and exchange the results); robust (n), adv
 * (nullable, (n, D)), queries (nullable, (n)). */
typedef struct {
    const cli_ctx *cx;
    const cli_attack_args *a;
    int D, shape[3];
} env;

static jem_status attack_one(const env *v, const char *what, int kind, const jem_classifier *c, const float *x,
                             const int32_t *y, int n, double eps, int mult, uint64_t seed, uint8_t *robust, float *adv,
                             int64_t *queries)
{
    const cli_attack_args *a = v->a;
    const size_t D = (size_t)v->D;
    int64_t lo, hi;
    jem_dist_slice(n, &lo, &hi);
    const int m = (int)(hi - lo);
    cli_bar bar;
    cli_bar_start(&bar, v->cx, what, 1);
    const float *xs = x + D * (size_t)lo;
    const int32_t *ys = y + lo;
    float *as = adv ? adv + D * (size_t)lo : NULL;
    jem_status s;
    if (kind == CLI_ATK_PGD || kind == CLI_ATK_FGSM) {
        /* FGSM's stronger version is PGD */
        const int fgsm = kind == CLI_ATK_FGSM && mult == 1;
        jem_attack_cfg ac = {.norm = a->norm,
                             .eps = eps,
                             .step = eps * (kind == CLI_ATK_FGSM ? 0.25 : a->step_frac),
                             .steps = kind == CLI_ATK_FGSM ? 10 * mult : steps_of(a, kind) * mult,
                             .restarts = a->restarts * (mult > 1 ? 2 : 1),
                             .random_start = !a->no_random,
                             .fgsm = fgsm,
                             .seed = seed,
                             .progress = cli_bar_cb64,
                             .progress_ud = &bar};
        s = jem_attack_run(c, xs, ys, m, &ac, robust + lo, as);
    } else if (kind == CLI_ATK_SQUARE) {
        jem_square_cfg sc = {.norm = a->norm,
                             .eps = eps,
                             .queries = a->queries * mult,
                             .c = v->shape[0],
                             .h = v->shape[1],
                             .w = v->shape[2],
                             .seed = seed,
                             .progress = cli_bar_cb64,
                             .progress_ud = &bar};
        s = jem_square_run(c, xs, ys, m, &sc, robust + lo, as, queries ? queries + lo : NULL);
    } else {
        jem_apgd_cfg gc = {.norm = a->norm,
                           .eps = eps,
                           .steps = steps_of(a, kind) * mult,
                           .restarts = a->restarts * (mult > 1 ? 2 : 1),
                           .loss = kind == CLI_ATK_APGD_CE ? JEM_APGD_CE : JEM_APGD_DLR_T,
                           .targets = a->targets,
                           .seed = seed,
                           .progress = cli_bar_cb64,
                           .progress_ud = &bar};
        s = jem_apgd_run(c, xs, ys, m, &gc, robust + lo, as);
    }
    cli_bar_end(&bar);
    if (s) return s;
    jem_dist_allgather(robust, 1, n);
    if (adv) jem_dist_allgather(adv, sizeof(float) * D, n);
    if (queries && kind == CLI_ATK_SQUARE) jem_dist_allgather(queries, sizeof(int64_t), n);
    return JEM_OK;
}

/* scratch for a side's run: images gathered, their results */
typedef struct {
    float *xs, *advs; /* (n, D) */
    int32_t *ys;      /* (n) */
    int *map;         /* (n) the gathered images' places */
    uint8_t *rk;      /* (n) */
    int64_t *qs;      /* (n) */
} scratch;

/* The run's attacks in order at epsilon index e on the n images of one
 * side (who: "" or "defence: "): surv (n) = survived them all at this
 * epsilon, adv (nullable) the first adversarial point found; fills the
 * side's after[.][e] (with prev (n): survived every smaller epsilon), raw,
 * raw_grad, queries. */
static jem_status side_eps(const env *v, const char *who, const jem_classifier *c, const float *x, const int32_t *y,
                           int n, int e, scratch *w, uint8_t *surv, float *adv, const uint8_t *prev,
                           cli_attack_side *sd)
{
    const cli_attack_args *a = v->a;
    const size_t D = (size_t)v->D;
    const double eps = 2.0 * a->eps[e]; /* [0, 1]-scale epsilon -> the model's [-1, 1] units */
    int grad_only = 1;
    sd->queries[e] = 0;
    /* an image no attack breaks keeps its clean self as its "adversarial" point */
    if (adv) memcpy(adv, x, sizeof(float) * D * (size_t)n);
    for (int k = 0; k < a->natk; k++) {
        const int kind = a->atk[k];
        int m = 0;
        for (int i = 0; i < n; i++) {
            if (k && !surv[i]) continue;
            w->map[m] = i;
            w->ys[m] = y[i];
            memcpy(w->xs + (size_t)m * D, x + (size_t)i * D, sizeof(float) * D);
            m++;
        }
        char what[200];
        snprintf(what, sizeof what, "eps %g: %s%s on %d images", a->eps[e], who, ATK_TITLE[kind], m);
        jem_status s = m ? attack_one(v, what, kind, c, w->xs, w->ys, m, eps, 1, a->seed + (uint64_t)e * 16 + k, w->rk,
                                      adv ? w->advs : NULL, w->qs)
                         : JEM_OK;
        if (s) return s;
        for (int j = 0; j < m; j++) {
            const int i = w->map[j];
            if (!k) surv[i] = 1;
            if (!w->rk[j] && surv[i]) {
                surv[i] = 0;
                if (adv) memcpy(adv + (size_t)i * D, w->advs + (size_t)j * D, sizeof(float) * D);
            }
        }
        if (kind == CLI_ATK_SQUARE && m && eps > 0) {
            double q = 0;
            for (int j = 0; j < m; j++) q += (double)w->qs[j];
            sd->queries[e] = q / m;
        }
        grad_only &= kind != CLI_ATK_SQUARE;
        if (grad_only) sd->raw_grad[e] = frac(surv, n);
        int alive = 0;
        for (int i = 0; i < n; i++) alive += surv[i] && prev[i];
        sd->after[k][e] = n ? (double)alive / n : 0;
    }
    sd->raw[e] = frac(surv, n);
    return JEM_OK;
}

/* The masking checks of one side on its n images: rawsurv (n, ne) each
 * image's survival at each epsilon on its own. */
static jem_status side_checks(const env *v, const char *who, const jem_classifier *c, const float *x, const int32_t *y,
                              int n, const uint8_t *rawsurv, scratch *w, cli_attack_side *sd)
{
    const cli_attack_args *a = v->a;
    const size_t D = (size_t)v->D;
    const int ne = a->ne;
    const double tol = a->check_tol / 100;
    int has_grad = 0, has_free = 0, first_grad = -1;
    for (int k = 0; k < a->natk; k++) {
        has_free |= a->atk[k] == CLI_ATK_SQUARE;
        has_grad |= a->atk[k] != CLI_ATK_SQUARE;
        if (first_grad < 0 && a->atk[k] != CLI_ATK_SQUARE) first_grad = a->atk[k];
    }
    jem_check_monotone(sd->raw, ne, tol, &sd->chk[JEM_CHECK_MONOTONE]);
    if (has_grad && has_free) jem_check_gradfree(sd->raw_grad, sd->raw, ne, tol, &sd->chk[JEM_CHECK_GRADFREE]);
    const int cn = a->check_n < n ? a->check_n : n;
    sd->check_n = cn;
    if (!cn) return JEM_OK;
    const int kind = first_grad >= 0 ? first_grad : a->atk[0];
    char what[200];
    /* an unbounded radius: the whole box (L-inf 1, L2 the box's diagonal,
     * on the [0, 1] scale) */
    sd->unb_eps = a->norm ? sqrt((double)D) : 1.0;
    snprintf(what, sizeof what, "check: %s%s at eps %g on %d images", who, ATK_TITLE[kind], sd->unb_eps, cn);
    jem_status s = attack_one(v, what, kind, c, x, y, cn, 2.0 * sd->unb_eps, 1, a->seed + 7777, w->rk, NULL, w->qs);
    if (s) return s;
    jem_check_unbounded(frac(w->rk, cn), 0.0, &sd->chk[JEM_CHECK_UNBOUNDED]);
    /* stronger: 4 times the steps (Square: queries), twice the restarts, at
     * the epsilon whose accuracy is nearest half the clean accuracy, on the
     * images that survived there */
    snprintf(what, sizeof what, "check: %sclean accuracy of %d images", who, cn);
    s = attack_one(v, what, CLI_ATK_PGD, c, x, y, cn, 0.0, 1, a->seed, w->rk, NULL, NULL);
    if (s) return s;
    const double clean = frac(w->rk, cn);
    int es = -1;
    double best = 2;
    for (int e = 0; e < ne; e++) {
        if (!(a->eps[e] > 0)) continue;
        int k = 0;
        for (int i = 0; i < cn; i++) k += rawsurv[(size_t)i * ne + e];
        const double d = fabs((double)k / cn - clean / 2);
        if (d < best) best = d, es = e;
    }
    if (es < 0) return JEM_OK;
    int m = 0;
    for (int i = 0; i < cn; i++) {
        if (!rawsurv[(size_t)i * ne + es]) continue;
        w->ys[m] = y[i];
        memcpy(w->xs + (size_t)m * D, x + (size_t)i * D, sizeof(float) * D);
        m++;
    }
    int broke = 0;
    if (m) {
        snprintf(what, sizeof what, "check: %s%s, 4x %s, at eps %g on %d images", who, ATK_TITLE[kind],
                 kind == CLI_ATK_SQUARE ? "the queries" : "the steps, 2x the restarts", a->eps[es], m);
        s = attack_one(v, what, kind, c, w->xs, w->ys, m, 2.0 * a->eps[es], 4, a->seed + 8888, w->rk, NULL, w->qs);
        if (s) return s;
        for (int j = 0; j < m; j++) broke += !w->rk[j];
    }
    jem_check_stronger((double)m / cn, (double)(m - broke) / cn, es, tol, &sd->chk[JEM_CHECK_STRONGER]);
    return JEM_OK;
}

/* the failed checks of a side as sentences naming the figure */
static void side_warnings(const cli_attack_args *a, const char *side, const cli_attack_side *sd, cli_attack_res *r)
{
    char t[120];
    cli_attack_title(a, t, sizeof t);
    for (int k = 0; k < JEM_NCHECKS; k++) {
        const jem_check *c = &sd->chk[k];
        if (!c->ran || c->pass || r->nwarn >= 2 * JEM_NCHECKS) continue;
        char *o = r->warn[r->nwarn++];
        const size_t n = sizeof r->warn[0];
        const double e = c->e >= 0 ? a->eps[c->e] : 0;
        if (k == JEM_CHECK_MONOTONE)
            snprintf(o, n,
                     "%s, %s, eps %g: robust accuracy rises by %.1f points over a smaller epsilon (tolerance %.1f): "
                     "the attack is not finding the worst case, possibly masked gradients",
                     side, t, e, 100 * c->value, 100 * c->tol);
        else if (k == JEM_CHECK_UNBOUNDED)
            snprintf(o, n,
                     "%s, %s: at eps %g (the whole box) %.1f %% of %d images stay correct instead of 0 %%: the "
                     "gradient attacks fail, possibly masked gradients; the table's figures are upper bounds at best",
                     side, ATK_TITLE[a->atk[0] == CLI_ATK_SQUARE && a->natk == 1 ? CLI_ATK_SQUARE : a->atk[0]],
                     sd->unb_eps, 100 * c->value, sd->check_n);
        else if (k == JEM_CHECK_GRADFREE)
            snprintf(o, n,
                     "%s, eps %g: Square breaks %.1f %% of the images the gradient attacks left (tolerance %.1f): "
                     "masked gradients; quote the worst case, not the gradient attacks",
                     side, e, 100 * c->value, 100 * c->tol);
        else
            snprintf(o, n,
                     "%s, %s, eps %g: %s lower robust accuracy by %.1f points on %d images (tolerance %.1f): the "
                     "figures have not converged",
                     side, t, e,
                     a->atk[0] == CLI_ATK_SQUARE && a->natk == 1 ? "4x the queries"
                                                                 : "4x the steps and 2x the restarts",
                     100 * c->value, sd->check_n, 100 * c->tol);
    }
}
void cli_attack_defaults(cli_attack_args *a)
{
    memset(a, 0, sizeof *a);
    a->data = "fmnist:test";
    a->norm_s = "linf";
    a->attack_s = "pgd";
    a->n = 1000;
    a->steps = 0; /* per attack: PGD 20, APGD 100 */
    a->restarts = 1;
    a->dsteps = 10;
    a->dchains = 4;
    a->eot = 4;
    a->step_frac = 0.25;
    a->queries = 5000;
    a->targets = 9;
    a->check_n = 100;
    a->check_tol = 3;
    a->seed = 1;
}

int cli_attack_eps(const char *cmd, cli_attack_args *a)
{
    a->norm = !strcmp(a->norm_s, "l2") ? 2 : 0;
    if (a->suite) {
        if (strcmp(a->suite, "auto")) return cli_usage_error(cmd, "--suite '%s': want auto", a->suite);
        a->natk = 3;
        a->atk[0] = CLI_ATK_APGD_CE;
        a->atk[1] = CLI_ATK_APGD_DLR;
        a->atk[2] = CLI_ATK_SQUARE;
    } else {
        int k = 0;
        while (k < CLI_NATK && strcmp(a->attack_s, ATK_NAME[k])) k++;
        if (k == CLI_NATK)
            return cli_usage_error(cmd, "--attack '%s': want pgd, fgsm, apgd-ce, apgd-dlr or square", a->attack_s);
        if (a->fgsm) k = CLI_ATK_FGSM;
        a->natk = 1;
        a->atk[0] = k;
    }
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
    const cli_spec *sp = cx->spec;
    if (cli_spec_unlabelled(a->data))
        return cli_usage_error("attack",
                               "--data %s: the set has no labels to attack (noise: and interp: sets have "
                               "none)",
                               a->data);
    if (a->suite && cli_given(sp, "attack"))
        return cli_usage_error("attack", "--suite auto runs apgd-ce, apgd-dlr and square: --attack does not apply");
    if (a->fgsm && (a->suite || (strcmp(a->attack_s, "pgd") && strcmp(a->attack_s, "fgsm"))))
        return cli_usage_error("attack", "--fgsm is --attack fgsm: it does not go with %s%s",
                               a->suite ? "--suite " : "--attack ", a->suite ? a->suite : a->attack_s);
    if (cli_attack_eps("attack", a)) return 2;
    const int k = a->atk[0], pgd = !a->suite && (k == CLI_ATK_PGD || k == CLI_ATK_FGSM);
    const int square = a->suite || k == CLI_ATK_SQUARE, grad = a->suite || k != CLI_ATK_SQUARE;
    if (!a->defence) {
        static const char *const def_only[] = {"defence-n", "defence-steps", "defence-chains", "eot"};
        for (int i = 0; i < 4; i++)
            if (cli_given(sp, def_only[i])) return cli_usage_error("attack", "--%s needs --defence sgld", def_only[i]);
    }
    if (a->dn > a->n) return cli_usage_error("attack", "--defence-n %d: more than the %d images of --n", a->dn, a->n);
    if (k == CLI_ATK_FGSM && (cli_given(sp, "steps") || cli_given(sp, "step-size") || cli_given(sp, "restarts")))
        return cli_usage_error(
            "attack", "--fgsm takes one step of size epsilon: --steps, --step-size and --restarts do not apply");
    if (!pgd && (cli_given(sp, "step-size") || cli_given(sp, "no-random-start")))
        return cli_usage_error("attack", "--%s applies to pgd only (APGD sets its own step sizes and starts)",
                               cli_given(sp, "step-size") ? "step-size" : "no-random-start");
    if (!grad && (cli_given(sp, "steps") || cli_given(sp, "restarts")))
        return cli_usage_error("attack", "--%s does not apply to square (its budget is --queries)",
                               cli_given(sp, "steps") ? "steps" : "restarts");
    if (!square && cli_given(sp, "queries"))
        return cli_usage_error("attack", "--queries is the budget of square: it needs --attack square or --suite auto");
    if (!a->suite && k != CLI_ATK_APGD_DLR && cli_given(sp, "targets"))
        return cli_usage_error("attack", "--targets needs --attack apgd-dlr or --suite auto");
    if (a->no_checks && (cli_given(sp, "check-n") || cli_given(sp, "check-tol")))
        return cli_usage_error("attack", "--%s does not apply with --no-checks",
                               cli_given(sp, "check-n") ? "check-n" : "check-tol");
    return 0;
}

static void side_free(scratch *w)
{
    free(w->xs);
    free(w->advs);
    free(w->ys);
    free(w->map);
    free(w->rk);
    free(w->qs);
}

jem_status cli_attack_run(const cli_ctx *cx, const cli_attack_args *a, cli_attack_res *r)
{
    jem_dataset ds;
    const int ne = a->ne;
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
    memcpy(r->eps, a->eps, sizeof(double) * (size_t)ne);
    const env v = {cx, a, D, {ds.c, ds.h, ds.w}};
    jem_classifier cu;
    jem_classifier_net(&cu, cx->net);
    jem_purifier pur;
    jem_purifier_init(&pur, cx->net, a->dsteps, a->dchains, a->eot, a->seed);
    jem_classifier *cd = &pur.c;
    /* --zero-grad: both classifiers with their gradients masked */
    masked mu = {NULL}, md = {NULL};
    jem_classifier cu0 = cu, cd0 = *cd;
    if (a->zero_grad) {
        mu.in = &cu0;
        md.in = &cd0;
        cu.logits = masked_logits, cu.grad = masked_grad, cu.ctx = &mu;
        pur.c.logits = masked_logits, pur.c.grad = masked_grad, pur.c.ctx = &md;
        cu.forward = NULL, cu.backward = NULL;
    }
    scratch w = {malloc(sizeof(float) * (size_t)n * D),
                 malloc(sizeof(float) * (size_t)n * D),
                 malloc(sizeof(int32_t) * n),
                 malloc(sizeof(int) * n),
                 malloc(n),
                 malloc(sizeof(int64_t) * n)};
    uint8_t *su = malloc(n), *sd = malloc(n), *prev_u = malloc(n), *prev_da = malloc(n), *rt = malloc(n);
    uint8_t *prev_d = malloc(n), *raw_u = malloc((size_t)n * ne), *raw_d = malloc((size_t)n * ne);
    float *adv = malloc(sizeof(float) * (size_t)n * D);
    if (!w.xs || !w.advs || !w.ys || !w.map || !w.rk || !w.qs || !su || !sd || !prev_u || !prev_da || !rt || !prev_d ||
        !raw_u || !raw_d || !adv) {
        s = jem_fail(JEM_ERR_NOMEM, "out of memory");
        goto done;
    }
    memset(prev_u, 1, n);
    memset(prev_da, 1, n);
    memset(prev_d, 1, n);
    if (a->save && (s = cli_make_dir(a->save))) goto done;
    for (int e = 0; e < ne; e++) {
        s = side_eps(&v, "", &cu, ds.x, ds.y, n, e, &w, su, adv, prev_u, &r->u);
        if (s) goto done;
        for (int i = 0; i < n; i++) {
            raw_u[(size_t)i * ne + e] = su[i];
            /* monotone: an image broken at a smaller epsilon stays broken */
            prev_u[i] &= su[i];
        }
        r->accu[e] = frac(prev_u, n);
        r->accu_dn[e] = frac(prev_u, dn);
        if (a->save && a->eps[e] > 0) {
            char path[1024];
            snprintf(path, sizeof path, "%s/adv-%s-%g.png", a->save, a->norm ? "l2" : "linf", a->eps[e]);
            s = jem_png_write_grid(path, adv, n < 64 ? n : 64, ds.c, ds.h, ds.w, 8, 2);
            if (s) goto done;
        }
        if (!a->defence) continue;
        /* transfer: the undefended model's adversarial examples against the defence */
        char what[200];
        snprintf(what, sizeof what, "eps %g: transfer to the defence, %d images", a->eps[e], dn);
        s = attack_one(&v, what, CLI_ATK_PGD, cd, adv, ds.y, dn, 0.0, 1, a->seed + (uint64_t)e, rt, NULL, NULL);
        if (s) goto done;
        r->acct[e] = frac(rt, dn);
        /* the adaptive attacks: gradients by BPDA + EOT through the defence, Square's plain queries */
        s = side_eps(&v, "defence: ", cd, ds.x, ds.y, dn, e, &w, sd, NULL, prev_da, &r->d);
        if (s) goto done;
        for (int i = 0; i < dn; i++) {
            raw_d[(size_t)i * ne + e] = sd[i];
            prev_da[i] &= sd[i];
            /* defended robust accuracy: an image survives only if neither
             * attack broke it, at this or any smaller epsilon */
            prev_d[i] = sd[i] & rt[i] & prev_d[i];
        }
        r->accd[e] = frac(prev_da, dn);
        r->accdef[e] = frac(prev_d, dn);
    }
    if (!a->no_checks) {
        s = side_checks(&v, "", &cu, ds.x, ds.y, n, raw_u, &w, &r->u);
        if (!s && a->defence) s = side_checks(&v, "defence: ", cd, ds.x, ds.y, dn, raw_d, &w, &r->d);
        if (s) goto done;
        side_warnings(a, "undefended", &r->u, r);
        if (a->defence) side_warnings(a, "SGLD purification", &r->d, r);
    }
done:
    side_free(&w);
    free(su);
    free(sd);
    free(prev_u);
    free(prev_da);
    free(rt);
    free(prev_d);
    free(raw_u);
    free(raw_d);
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
    char buf[160], t[120];
    snprintf(buf, sizeof buf, "Robust accuracy, %s %s", cli_attack_title(a, t, sizeof t), a->norm ? "L2" : "L-inf");
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

/* a side's accuracy after each attack, Square's queries and the checks */
static void json_side(jem_jw *w, const cli_attack_args *a, const cli_attack_res *r, const cli_attack_side *sd)
{
    const int ne = r->ne;
    jem_jw_key(w, "after");
    jem_jw_obj_begin(w);
    for (int k = 0; k < a->natk; k++) json_row(w, ATK_NAME[a->atk[k]], sd->after[k], ne);
    jem_jw_obj_end(w);
    for (int k = 0; k < a->natk; k++)
        if (a->atk[k] == CLI_ATK_SQUARE) json_row(w, "square_queries", sd->queries, ne);
    if (a->no_checks) return;
    jem_jw_key(w, "checks");
    jem_jw_obj_begin(w);
    jem_jw_kint(w, "n", sd->check_n);
    for (int k = 0; k < JEM_NCHECKS; k++) {
        const jem_check *c = &sd->chk[k];
        jem_jw_key(w, jem_check_name(k));
        if (!c->ran) {
            jem_jw_null(w);
            continue;
        }
        jem_jw_obj_begin(w);
        jem_jw_kbool(w, "pass", c->pass);
        jem_jw_kdouble(w, "value", c->value);
        jem_jw_kdouble(w, "tol", c->tol);
        if (c->e >= 0) jem_jw_kdouble(w, "eps", a->eps[c->e]);
        if (k == JEM_CHECK_UNBOUNDED) jem_jw_kdouble(w, "eps", sd->unb_eps);
        jem_jw_obj_end(w);
    }
    jem_jw_obj_end(w);
}

void cli_attack_json(jem_jw *w, const cli_ctx *cx, const cli_attack_args *a, const cli_attack_res *r, int same_images)
{
    const int ne = r->ne, k0 = a->atk[0];
    jem_jw_obj_begin(w);
    jem_jw_kstr(w, "model", cx->model);
    jem_jw_kstr(w, "data", a->data);
    jem_jw_kint(w, "n", r->n);
    jem_jw_kstr(w, "attack", a->suite ? "auto" : ATK_NAME[k0]);
    if (a->suite) {
        jem_jw_key(w, "suite");
        jem_jw_arr_begin(w);
        for (int k = 0; k < a->natk; k++) jem_jw_str(w, ATK_NAME[a->atk[k]]);
        jem_jw_arr_end(w);
    }
    jem_jw_kstr(w, "norm", a->norm ? "l2" : "linf");
    if (a->suite || k0 != CLI_ATK_SQUARE) {
        jem_jw_kint(w, "steps", steps_of(a, a->suite ? CLI_ATK_APGD_CE : k0));
        jem_jw_kint(w, "restarts", a->restarts);
    }
    if (a->suite || k0 == CLI_ATK_SQUARE) jem_jw_kint(w, "queries", a->queries);
    if (a->suite || k0 == CLI_ATK_APGD_DLR) jem_jw_kint(w, "targets", a->targets);
    json_row(w, "eps", r->eps, ne);
    json_row(w, "undefended", r->accu, ne);
    json_side(w, a, r, &r->u);
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
        json_side(w, a, r, &r->d);
        jem_jw_obj_end(w);
    }
    jem_jw_key(w, "warnings");
    jem_jw_arr_begin(w);
    for (int i = 0; i < r->nwarn; i++) jem_jw_str(w, r->warn[i]);
    jem_jw_arr_end(w);
    jem_jw_obj_end(w);
}

/* "!" beside a figure a failed check concerns */
static const char *mark(const cli_attack_side *sd, int e)
{
    for (int k = 0; k < JEM_NCHECKS; k++)
        if (sd->chk[k].ran && !sd->chk[k].pass && sd->chk[k].e == e) return "!";
    return " ";
}

static void print_checks(const cli_attack_args *a, const char *side, const cli_attack_side *sd)
{
    printf("masking checks, %s (tolerance %.1f points; extra runs on %d images):\n", side, a->check_tol, sd->check_n);
    for (int k = 0; k < JEM_NCHECKS; k++) {
        const jem_check *c = &sd->chk[k];
        char what[200];
        if (k == JEM_CHECK_MONOTONE) snprintf(what, sizeof what, "accuracy falls with eps (largest rise)");
        else if (k == JEM_CHECK_UNBOUNDED) snprintf(what, sizeof what, "eps %g (whole box) reaches 0 %%", sd->unb_eps);
        else if (k == JEM_CHECK_GRADFREE)
            snprintf(what, sizeof what, "Square breaks no more than the gradient attacks");
        else snprintf(what, sizeof what, "4x steps, 2x restarts change nothing");
        if (!c->ran) {
            printf("  %-52s  not run%s\n", what,
                   k == JEM_CHECK_GRADFREE ? " (needs a gradient and a gradient-free attack: --suite auto)" : "");
            continue;
        }
        char at[40] = "";
        if (c->e >= 0 && k != JEM_CHECK_UNBOUNDED) snprintf(at, sizeof at, " at eps %g", a->eps[c->e]);
        printf("  %-52s  %s  %.1f %%%s\n", what, c->pass ? "pass" : "FAIL", 100 * c->value, at);
    }
}

static void print_side(const cli_attack_args *a, const cli_attack_res *r, const cli_attack_side *sd, int def)
{
    int sq = 0;
    printf("%8s", "eps");
    if (def) printf(" %10s", "transfer");
    for (int k = 0; k < a->natk; k++) {
        char h[40];
        snprintf(h, sizeof h, "%s%s", k ? "+" : "", ATK_TITLE[a->atk[k]]);
        printf(" %10s", h);
        sq |= a->atk[k] == CLI_ATK_SQUARE;
    }
    if (a->natk > 1 || def) printf(" %10s", "worst");
    if (sq) printf(" %10s", "queries");
    printf("\n");
    for (int e = 0; e < r->ne; e++) {
        printf("%8g", r->eps[e]);
        if (def) printf(" %10.4f", r->acct[e]);
        for (int k = 0; k < a->natk; k++) printf(" %9.4f%s", sd->after[k][e], k == a->natk - 1 ? mark(sd, e) : " ");
        if (a->natk > 1 || def) printf(" %10.4f", def ? r->accdef[e] : r->accu[e]);
        if (sq) printf(" %10.0f", sd->queries[e]);
        printf("\n");
    }
}

static void print_text(const cli_ctx *cx, const cli_attack_args *a, const cli_attack_res *r)
{
    const int k0 = a->atk[0];
    char t[120];
    printf("%s on %s, %d images, %s %s", cx->model, a->data, r->n, cli_attack_title(a, t, sizeof t),
           a->norm ? "L2" : "L-inf");
    if (k0 == CLI_ATK_PGD && !a->suite)
        printf(", %d steps of %.2f eps, %d restart%s", steps_of(a, k0), a->step_frac, a->restarts,
               a->restarts > 1 ? "s" : "");
    else if (k0 == CLI_ATK_FGSM) printf(", 1 step of eps");
    else if (a->suite || k0 != CLI_ATK_SQUARE)
        printf(", APGD %d steps, %d restart%s", steps_of(a, CLI_ATK_APGD_CE), a->restarts, a->restarts > 1 ? "s" : "");
    if (a->suite || k0 == CLI_ATK_APGD_DLR) printf(", targeted DLR over %d classes", a->targets);
    if (a->suite || k0 == CLI_ATK_SQUARE) printf(", Square %d queries", a->queries);
    printf("\n");
    if (a->natk > 1)
        printf("robust accuracy after each attack in turn, each on the images the ones before left; an image broken "
               "at a smaller eps counts as broken\n");
    printf("\nundefended, %d images:\n", r->n);
    print_side(a, r, &r->u, 0);
    if (a->defence) {
        printf(
            "\nSGLD purification (%d steps, %d chains), the first %d images: gradients by BPDA + EOT over %d draws%s; "
            "transfer of the undefended attack's examples; worst of all per image:\n",
            a->dsteps, a->dchains, r->dn, a->eot, a->suite || k0 == CLI_ATK_SQUARE ? ", Square by plain queries" : "");
        print_side(a, r, &r->d, 1);
    }
    if (a->no_checks) return;
    printf("\n");
    print_checks(a, "undefended", &r->u);
    if (a->defence) print_checks(a, "SGLD purification", &r->d);
    for (int i = 0; i < r->nwarn; i++) printf("warning: %s\n", r->warn[i]);
}

static int run(cli_ctx *cx, cli_attack_args *a)
{
    /* the model's classes, before any data loads: targeted DLR needs 4 */
    for (int k = 0; k < a->natk; k++)
        if (a->atk[k] == CLI_ATK_APGD_DLR && cx->arch->n_classes < 4)
            return cli_usage_error("attack", "%s: the targeted DLR loss needs at least 4 classes, %s has %d",
                                   a->suite ? "--suite auto" : "--attack apgd-dlr", cx->model, cx->arch->n_classes);
    cli_attack_res r;
    jem_status s = cli_attack_run(cx, a, &r);
    if (!s && a->curve) {
        jem_image im = {0};
        s = cli_attack_curve(a, &r, NULL, &im);
        if (!s) s = jem_image_write_png(a->curve, &im);
        jem_image_free(&im);
    }
    if (s) return cli_fail("attack", s);
    for (int i = 0; i < r.nwarn; i++) fprintf(stderr, "jem attack: warning: %s\n", r.warn[i]);
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
        {OPT("attack", OPT_STR, &a.attack_s, "the attack"), .choices = "pgd|fgsm|apgd-ce|apgd-dlr|square"},
        {OPT("suite", OPT_STR, &a.suite, "apgd-ce, apgd-dlr, square in turn, each on the images still correct"),
         .choices = "auto"},
        {OPT("norm", OPT_STR, &a.norm_s, "threat model"), .choices = "linf|l2"},
        {OPT("eps", OPT_STR, &a.eps_s, "epsilons on the [0, 1] scale, 0 = clean accuracy"),
         .def = "linf " EPS_LINF "; l2 " EPS_L2},
        {OPT("steps", OPT_INT, &a.steps, "PGD and APGD iterations"), RANGE(1, 100000), .def = "pgd 20, apgd 100"},
        {OPT("step-size", OPT_DOUBLE, &a.step_frac, "PGD step as a fraction of epsilon"), ABOVE(0, 10)},
        {OPT("restarts", OPT_INT, &a.restarts, "random restarts (worst case per image; APGD-DLR: per target)"),
         RANGE(1, 1000)},
        {OPT("no-random-start", OPT_FLAG, &a.no_random, "start PGD at the clean image")},
        {OPT("fgsm", OPT_FLAG, &a.fgsm, "FGSM (one step of size epsilon): --attack fgsm")},
        {OPT("queries", OPT_INT, &a.queries, "Square's budget per image (classifier evaluations)"), RANGE(2, 1000000)},
        {OPT("targets", OPT_INT, &a.targets, "APGD-DLR's target classes (the top ones; at most classes - 1)"),
         RANGE(1, 1000)},
        {OPT("no-checks", OPT_FLAG, &a.no_checks, "skip the gradient-masking checks")},
        {OPT("check-n", OPT_INT, &a.check_n, "images of the checks' extra runs (the first N)"), RANGE(1, 1 << 30)},
        {OPT("check-tol", OPT_DOUBLE, &a.check_tol, "percentage points a masking check allows"), RANGE(0, 100)},
        {OPT("zero-grad", OPT_FLAG, &a.zero_grad, "testing: report every gradient as 0"), .flags = OPT_HIDDEN},
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
    const cli_spec sp = {
        .name = "attack",
        .usage = "--model CKPT [--attack NAME | --suite auto] [--norm linf|l2] [--eps LIST] [options]",
        .opts = opts,
        .model = CLI_MODEL_CKPT,
        .json = 1,
        .threads = 1,
        .precision = "the convolutions' products (attacks and defence): fp32, or bf16 with fp32 sums (AVX512-BF16)",
        .check = check,
        .ud = &a};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    r = run(&cx, &a);
    cli_end(&cx);
    return r;
}

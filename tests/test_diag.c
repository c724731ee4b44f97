/* Chain diagnostics: R-hat and ESS against an independent implementation
 * (tests/fixtures/diag, written by scripts/make_diag_fixtures.py with numpy
 * and scipy), against hand-computed values, and against the known ESS of
 * long AR(1) chains; the normal quantile function; the trace plot. */
#include "jem.h"
#include "eval/eval.h"
#include "test.h"

#include <ctype.h>
#include <math.h>

/* ------------------------------------------------------- fixture reader */

typedef struct {
    char key[32];
    double *v;
    int n, cap;
} fx_rec;
typedef struct {
    fx_rec r[32];
    int n;
} fixture;

static int is_number(const char *t)
{
    if (!strcmp(t, "nan") || !strcmp(t, "inf") || !strcmp(t, "-inf")) return 1;
    return !isalpha((unsigned char)t[0]);
}

static int fx_load(const char *name, fixture *f)
{
    char path[256];
    snprintf(path, sizeof path, FIXTURES "/diag/%s.txt", name);
    char *text = NULL;
    if (jem_read_file(path, 1 << 24, &text, NULL)) return -1;
    memset(f, 0, sizeof *f);
    fx_rec *cur = NULL;
    char *save = NULL;
    for (char *line = strtok_r(text, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
        if (line[0] == '#') continue;
        char *s2 = NULL;
        for (char *t = strtok_r(line, " \t", &s2); t; t = strtok_r(NULL, " \t", &s2)) {
            if (!is_number(t)) {
                if (f->n == 32) {
                    free(text);
                    return -1;
                }
                cur = &f->r[f->n++];
                snprintf(cur->key, sizeof cur->key, "%s", t);
                continue;
            }
            if (!cur) {
                free(text);
                return -1;
            }
            if (cur->n == cur->cap) {
                cur->cap = cur->cap ? 2 * cur->cap : 16;
                cur->v = realloc(cur->v, sizeof(double) * cur->cap);
            }
            cur->v[cur->n++] = strtod(t, NULL);
        }
    }
    free(text);
    return 0;
}

static const fx_rec *fx_get(const fixture *f, const char *key)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->r[i].key, key)) return &f->r[i];
    fprintf(stderr, "fixture: no record '%s'\n", key);
    abort();
}

static void fx_free(fixture *f)
{
    for (int i = 0; i < f->n; i++) free(f->r[i].v);
}

/* equal within a relative tolerance, or both NaN */
static int close_or_nan(double a, double b, double rel)
{
    if (isnan(a) || isnan(b)) return isnan(a) && isnan(b);
    return fabs(a - b) <= rel * fmax(1.0, fabs(b));
}

static void check_fixture(const char *name)
{
    fixture f;
    ASSERT_MSG(fx_load(name, &f) == 0, "fixture %s unreadable", name);
    const fx_rec *sh = fx_get(&f, "shape"), *dr = fx_get(&f, "draws");
    const int N = (int)sh->v[0], M = (int)sh->v[1];
    ASSERT_EQ_INT(dr->n, N * M);
    jem_chain_diag d;
    ASSERT_OK(jem_chain_diag_compute(dr->v, N, M, &d));
    const struct {
        const char *k;
        double v;
    } want[] = {{"rhat", d.rhat},
                {"rhat_bulk", d.rhat_bulk},
                {"rhat_folded", d.rhat_folded},
                {"rhat_basic", d.rhat_basic},
                {"ess_bulk", d.ess_bulk},
                {"ess_tail", d.ess_tail},
                {"ess_basic", d.ess_basic},
                {"rhat_raw", jem_rhat(dr->v, N, M)},
                {"ess_raw", jem_ess(dr->v, N, M)}};
    for (size_t i = 0; i < sizeof want / sizeof want[0]; i++) {
        double ref = fx_get(&f, want[i].k)->v[0];
        ASSERT_MSG(close_or_nan(want[i].v, ref, 1e-9), "%s: %s %.12g vs reference %.12g", name, want[i].k, want[i].v,
                   ref);
    }
    /* rank normalisation, value by value */
    const fx_rec *zr = fx_get(&f, "z");
    double *z = malloc(sizeof(double) * N * M);
    ASSERT_OK(jem_rank_normalize(dr->v, (size_t)N * M, z));
    double worst = 0;
    for (int i = 0; i < N * M; i++) worst = fmax(worst, fabs(z[i] - zr->v[i]));
    ASSERT_MSG(worst < 1e-12, "%s: rank normalisation off by %.3g", name, worst);
    free(z);
    fx_free(&f);
}

/* values worked out by hand */
static void check_by_hand(void)
{
    /* chains 1 2 3 4 and 3 4 5 6: means 2.5, 4.5, within variances 5/3,
     * W = 5/3, var of the means 2, var+ = 3/4 W + 2 = 3.25,
     * R-hat = sqrt(3.25 / (5/3)) = sqrt(1.95) */
    const double x[8] = {1, 3, 2, 4, 3, 5, 4, 6};
    ASSERT_NEAR(jem_rhat(x, 4, 2), sqrt(1.95), 1e-14);
    /* one chain 0 2 0 2 0 2: mean 1, W = 6/5, var+ = 5/6 W = 1;
     * acov(1) = -5/6, rho_1 = 1 - (6/5 + 5/6) = -31/30, the first pair
     * 1 + rho_1 < 0 ends the sum: tau = -1 is floored at 1 / log10(6) */
    const double y[6] = {0, 2, 0, 2, 0, 2};
    ASSERT_NEAR(jem_ess(y, 6, 1), 6.0 * log10(6.0), 1e-12);
    /* one chain 1 1 1 1 2 2 2 2: mean 1.5, W = 2/7, var+ = 1/4;
     * acov(1) = 0.25 (3 - 1 + 3) / 8 = 5/32, rho_1 = 1 - 4 (2/7 - 5/32)
     * = 27/56, first pair 83/56; acov(2) = 0.25 (2 - 2 + 2) / 8 = 1/16,
     * rho_2 = 3/28; acov(3) = -0.25 / 8, rho_3 = -15/56; the second pair
     * -9/56 < 0 stops: tau = -1 + 2 * 83/56 = 55/28, ESS = 8 * 28 / 55 */
    const double w[8] = {1, 1, 1, 1, 2, 2, 2, 2};
    ASSERT_NEAR(jem_ess(w, 8, 1), 8.0 * 28.0 / 55.0, 1e-12);
    /* the normal quantiles */
    ASSERT_NEAR(jem_norm_ppf(0.975), 1.959963984540054, 1e-14);
    ASSERT_NEAR(jem_norm_ppf(0.5), 0.0, 0);
    ASSERT_NEAR(jem_norm_ppf(0.1), -1.2815515655446004, 1e-14);
    ASSERT_NEAR(jem_norm_ppf(1e-10), -6.361340902404056, 1e-12);
    ASSERT_NEAR(jem_norm_ppf(1 - 1e-6), 4.753424308822899, 1e-9);
    ASSERT(isinf(jem_norm_ppf(0)) && jem_norm_ppf(0) < 0 && isinf(jem_norm_ppf(1)));
    ASSERT(isnan(jem_norm_ppf(-0.1)) && isnan(jem_norm_ppf(NAN)));
    /* ranks with ties: 3 1 3 2 -> ranks 3.5 1 3.5 2 */
    const double r[4] = {3, 1, 3, 2};
    double z[4];
    ASSERT_OK(jem_rank_normalize(r, 4, z));
    ASSERT_NEAR(z[0], jem_norm_ppf((3.5 - 0.375) / 4.25), 1e-15);
    ASSERT_NEAR(z[1], jem_norm_ppf((1 - 0.375) / 4.25), 1e-15);
    ASSERT(z[0] == z[2]);
}

/* chains of an AR(1) process x_t = phi x_t-1 + e_t have ESS / S near
 * (1 - phi) / (1 + phi); chains around different means have R-hat > 1 */
static void check_ar1(void)
{
    const int N = t_quick() ? 2000 : 8000, M = 4;
    double *x = malloc(sizeof(double) * N * M);
    jem_rng r;
    jem_rng_seed(&r, 12, 0);
    const double phis[3] = {0.0, 0.5, 0.9};
    for (int k = 0; k < 3; k++) {
        double phi = phis[k];
        for (int m = 0; m < M; m++) {
            double v = jem_rng_normal_d(&r) / sqrt(1 - phi * phi);
            for (int n = 0; n < N; n++) {
                x[(size_t)n * M + m] = v;
                v = phi * v + jem_rng_normal_d(&r);
            }
        }
        jem_chain_diag d;
        ASSERT_OK(jem_chain_diag_compute(x, N, M, &d));
        double want = (double)N * M * (1 - phi) / (1 + phi);
        ASSERT_MSG(fabs(d.ess_bulk / want - 1) < 0.15, "AR(1) phi %.1f: bulk ESS %.0f, expected about %.0f", phi,
                   d.ess_bulk, want);
        ASSERT_MSG(fabs(d.ess_basic / want - 1) < 0.15, "AR(1) phi %.1f: ESS %.0f, expected about %.0f", phi,
                   d.ess_basic, want);
        ASSERT_MSG(d.rhat < 1.01 && d.rhat > 0.99, "AR(1) phi %.1f: R-hat %.4f of mixed chains", phi, d.rhat);
        ASSERT_MSG(d.ess_tail > 0.2 * want && d.ess_tail < 3 * want, "AR(1) phi %.1f: tail ESS %.0f", phi, d.ess_tail);
    }
    /* shift one chain by one standard deviation of the process */
    for (int n = 0; n < N; n++) x[(size_t)n * M] += 1.0 / sqrt(1 - 0.81);
    jem_chain_diag d;
    ASSERT_OK(jem_chain_diag_compute(x, N, M, &d));
    ASSERT_MSG(d.rhat > 1.05, "a shifted chain: R-hat %.4f", d.rhat);
    free(x);
}

static void check_edges(void)
{
    double x[40];
    for (int i = 0; i < 40; i++) x[i] = 2.5;
    jem_chain_diag d;
    ASSERT_OK(jem_chain_diag_compute(x, 10, 4, &d));
    ASSERT(isnan(d.rhat) && isnan(d.ess_bulk) && isnan(d.ess_basic));
    ASSERT_NEAR(d.mean, 2.5, 0);
    for (int i = 0; i < 40; i++) x[i] = i % 7;
    x[13] = NAN;
    ASSERT_OK(jem_chain_diag_compute(x, 10, 4, &d));
    ASSERT(isnan(d.rhat) && isnan(d.ess_tail));
    ASSERT_ERR(jem_chain_diag_compute(x, 3, 4, &d), JEM_ERR_ARG);
    ASSERT_ERR(jem_chain_diag_compute(x, 10, 0, &d), JEM_ERR_ARG);
    ASSERT(isnan(jem_rhat(x, 10, 1)));
}

static void check_plot(void)
{
    const int N = 120, M = 3;
    double t[360];
    for (int n = 0; n < N; n++)
        for (int m = 0; m < M; m++) t[n * M + m] = -100.0 * exp(-n / 20.0) + m + sin(n * 0.3 + m);
    jem_image im;
    ASSERT_OK(jem_plot_traces(t, N, M, 40, NULL, &im));
    ASSERT(im.w == 800 && im.h == 600);
    /* lines were drawn: the plot area has pixels of the first series' colour
     * family (not white, not grey) */
    long coloured = 0;
    for (int i = 0; i < im.w * im.h; i++) {
        const uint8_t *p = im.rgb + 3 * i;
        coloured += abs(p[0] - p[1]) > 40 || abs(p[1] - p[2]) > 40;
    }
    ASSERT_MSG(coloured > 1000, "trace plot: %ld coloured pixels", coloured);
    jem_image_free(&im);
    ASSERT_ERR(jem_plot_traces(t, 0, M, 0, NULL, &im), JEM_ERR_ARG);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_diag");
    const char *fx[] = {"ar_mixed", "ar_shifted", "scales", "cauchy_ties", "antithetic", "antithetic_floor", "single"};
    for (size_t i = 0; i < sizeof fx / sizeof fx[0]; i++) check_fixture(fx[i]);
    check_by_hand();
    check_ar1();
    check_edges();
    check_plot();
    return t_finish();
}

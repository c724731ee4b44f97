/* Evaluation metrics: OOD metrics, ROC curves, calibration and temperature
 * scaling against values from scikit-learn / numpy / scipy
 * (tests/fixtures/metrics, written by scripts/make_metric_fixtures.py), plus
 * brute-force references and properties. */
#include "jem.h"
#include "eval/eval.h"
#include "test.h"

#include <ctype.h>

#define REL   1e-9 /* float64 inputs: agreement with the reference */
#define REL32 1e-6 /* where the reference itself rounds through float32 */

#define ASSERT_REL(a, b, rel)                                                            \
    do {                                                                                 \
        double _a = (double)(a), _b = (double)(b), _r = (double)(rel);                   \
        if (fabs(_a - _b) <= _r * fabs(_b) + 1e-15 || (isinf(_a) && _a == _b)) t_pass++; \
        else T_REPORT_FAIL("%s ~ %s (%.17g vs %.17g, rel %.3g)", #a, #b, _a, _b, _r);    \
    } while (0)

/* ------------------------------------------------------- fixture reader */

#define FX_MAX 64

typedef struct {
    char key[48];
    double *v;
    int n;
} fx_rec;

typedef struct {
    char name[96];
    fx_rec r[FX_MAX];
    int n;
} fixture;

static int is_key(const char *t)
{
    if (!isalpha((unsigned char)t[0])) return 0;
    return strcmp(t, "inf") != 0 && strcmp(t, "nan") != 0;
}

static int fx_load(const char *name, fixture *f)
{
    memset(f, 0, sizeof *f);
    snprintf(f->name, sizeof f->name, "%s", name);
    char path[256];
    snprintf(path, sizeof path, FIXTURES "/metrics/%s", name);
    char *text;
    size_t len;
    jem_status st = jem_read_file(path, 1 << 24, &text, &len);
    if (st) {
        T_REPORT_FAIL("cannot read %s: %s", path, jem_last_error());
        return 0;
    }
    int cap = 0;
    fx_rec *cur = NULL;
    char *p = text;
    while (*p) {
        while (*p && isspace((unsigned char)*p)) p++;
        if (!*p) break;
        if (*p == '#') {
            while (*p && *p != '\n') p++;
            continue;
        }
        char *e = p;
        while (*e && !isspace((unsigned char)*e)) e++;
        char save = *e;
        *e = 0;
        if (is_key(p)) {
            if (f->n == FX_MAX) {
                T_REPORT_FAIL("%s: too many records", path);
                break;
            }
            cur = &f->r[f->n++];
            snprintf(cur->key, sizeof cur->key, "%s", p);
            cap = 0;
        } else if (cur) {
            if (cur->n == cap) {
                cap = cap ? 2 * cap : 16;
                double *nv = realloc(cur->v, (size_t)cap * sizeof *nv);
                if (!nv) abort();
                cur->v = nv;
            }
            char *end;
            cur->v[cur->n++] = strtod(p, &end);
            if (*end) T_REPORT_FAIL("%s: bad number '%s'", path, p);
        }
        *e = save;
        p = e;
    }
    free(text);
    return 1;
}

static const fx_rec *fx_find(const fixture *f, const char *key)
{
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->r[i].key, key)) return &f->r[i];
    return NULL;
}

static const fx_rec *fx_get(const fixture *f, const char *key)
{
    const fx_rec *r = fx_find(f, key);
    if (!r) {
        T_REPORT_FAIL("%s: no record '%s'", f->name, key);
        static double zero = 0;
        static fx_rec none = {"", &zero, 1};
        return &none;
    }
    return r;
}

static double fx_val(const fixture *f, const char *key) { return fx_get(f, key)->v[0]; }

static void fx_free(fixture *f)
{
    for (int i = 0; i < f->n; i++) free(f->r[i].v);
    f->n = 0;
}

/* ------------------------------------------------------- OOD fixtures */

static void check_ood_fixture(const char *name)
{
    fixture f;
    if (!fx_load(name, &f)) return;
    const fx_rec *in = fx_get(&f, "in"), *out = fx_get(&f, "out");
    jem_ood_metrics m;
    ASSERT_OK(jem_ood_metrics_compute(in->v, in->n, out->v, out->n, &m));
    ASSERT_REL(m.auroc, fx_val(&f, "auroc"), REL);
    ASSERT_REL(m.aupr_in, fx_val(&f, "aupr_in"), REL);
    ASSERT_REL(m.aupr_out, fx_val(&f, "aupr_out"), REL);
    ASSERT_REL(m.fpr95, fx_val(&f, "fpr95"), REL);

    /* the threshold: >= 95 % of in-scores at or above it, fpr95 of OOD */
    int ci = 0, co = 0;
    for (int i = 0; i < in->n; i++) ci += in->v[i] >= m.thr95;
    for (int i = 0; i < out->n; i++) co += out->v[i] >= m.thr95;
    ASSERT((double)ci / in->n >= 0.95);
    ASSERT_REL((double)co / out->n, m.fpr95, REL);

    jem_roc r;
    ASSERT_OK(jem_roc_curve(in->v, in->n, out->v, out->n, 0, &r));
    const fx_rec *rf = fx_get(&f, "roc_fpr"), *rt = fx_get(&f, "roc_tpr"), *rh = fx_get(&f, "roc_thr");
    ASSERT_EQ_INT(r.n, rf->n);
    int bad = 0;
    for (int i = 0; i < r.n && i < rf->n; i++) {
        if (fabs(r.fpr[i] - rf->v[i]) > REL * fabs(rf->v[i]) + 1e-15) bad++;
        if (fabs(r.tpr[i] - rt->v[i]) > REL * fabs(rt->v[i]) + 1e-15) bad++;
        if (r.thr[i] != rh->v[i]) bad++;
    }
    ASSERT_MSG(bad == 0, "%s: %d ROC values differ", name, bad);
    ASSERT_REL(jem_roc_area(&r), fx_val(&f, "auroc"), REL);
    ASSERT_REL(jem_roc_fpr_at_tpr(&r, 0.95), fx_val(&f, "fpr95"), REL);
    jem_roc_free(&r);
    ASSERT(r.fpr == NULL && r.n == 0);

    ASSERT_OK(jem_roc_curve(in->v, in->n, out->v, out->n, 1, &r));
    rf = fx_get(&f, "roc_drop_fpr");
    rt = fx_get(&f, "roc_drop_tpr");
    ASSERT_EQ_INT(r.n, rf->n);
    bad = 0;
    for (int i = 0; i < r.n && i < rf->n; i++) {
        if (fabs(r.fpr[i] - rf->v[i]) > REL * fabs(rf->v[i]) + 1e-15) bad++;
        if (fabs(r.tpr[i] - rt->v[i]) > REL * fabs(rt->v[i]) + 1e-15) bad++;
    }
    ASSERT_MSG(bad == 0, "%s: %d dropped-ROC values differ", name, bad);
    ASSERT_REL(jem_roc_area(&r), fx_val(&f, "auroc"), REL);
    /* the sklearn-default curve gives the "fpr95_dropped" reading */
    ASSERT_REL(jem_roc_fpr_at_tpr(&r, 0.95), fx_val(&f, "fpr95_dropped"), REL);
    jem_roc_free(&r);

    /* AUPR-out is AUPR-in with the roles swapped and the scores negated */
    double *ni = malloc(sizeof(double) * in->n), *no = malloc(sizeof(double) * out->n);
    for (int i = 0; i < in->n; i++) ni[i] = -in->v[i];
    for (int i = 0; i < out->n; i++) no[i] = -out->v[i];
    jem_ood_metrics sw;
    ASSERT_OK(jem_ood_metrics_compute(no, out->n, ni, in->n, &sw));
    ASSERT_REL(sw.aupr_in, m.aupr_out, 1e-12);
    ASSERT_REL(sw.aupr_out, m.aupr_in, 1e-12);
    ASSERT_REL(sw.auroc, m.auroc, 1e-12);
    free(ni);
    free(no);
    fx_free(&f);
}

/* ------------------------------------------------ brute-force references */

/* AUROC by pairs, AP and FPR95 by scanning every distinct threshold. */
static void brute(const double *si, int ni, const double *so, int no, jem_ood_metrics *m)
{
    double pairs = 0;
    for (int i = 0; i < ni; i++)
        for (int j = 0; j < no; j++) pairs += si[i] > so[j] ? 1 : si[i] == so[j] ? 0.5 : 0;
    m->auroc = pairs / ((double)ni * no);
    /* distinct thresholds, descending */
    int n = ni + no;
    double *t = malloc(sizeof(double) * n);
    for (int i = 0; i < ni; i++) t[i] = si[i];
    for (int j = 0; j < no; j++) t[ni + j] = so[j];
    for (int a = 1; a < n; a++) /* insertion sort, descending */
        for (int b = a; b > 0 && t[b] > t[b - 1]; b--) {
            double x = t[b];
            t[b] = t[b - 1];
            t[b - 1] = x;
        }
    double ap_in = 0, ap_out = 0, rin_prev = 0, rout_prev = 0;
    int found = 0;
    m->fpr95 = 1;
    for (int k = 0; k < n; k++) {
        if (k > 0 && t[k] == t[k - 1]) continue;
        int tp = 0, fp = 0;
        for (int i = 0; i < ni; i++) tp += si[i] >= t[k];
        for (int j = 0; j < no; j++) fp += so[j] >= t[k];
        double rec = (double)tp / ni;
        ap_in += (rec - rin_prev) * tp / (tp + fp);
        rin_prev = rec;
        if (!found && rec >= 0.95) {
            found = 1;
            m->fpr95 = (double)fp / no;
        }
    }
    for (int k = n - 1; k >= 0; k--) { /* OOD positive: score <= t */
        if (k < n - 1 && t[k] == t[k + 1]) continue;
        int tp = 0, fp = 0;
        for (int j = 0; j < no; j++) tp += so[j] <= t[k];
        for (int i = 0; i < ni; i++) fp += si[i] <= t[k];
        double rec = (double)tp / no;
        ap_out += (rec - rout_prev) * tp / (tp + fp);
        rout_prev = rec;
    }
    m->aupr_in = ap_in;
    m->aupr_out = ap_out;
    free(t);
}

static void test_ood_brute(void)
{
    jem_rng rng;
    jem_rng_seed(&rng, 7, 0);
    for (int trial = 0; trial < 12; trial++) {
        int ni = 1 + (int)jem_rng_below(&rng, 150), no = 1 + (int)jem_rng_below(&rng, 150);
        int levels = 2 + (int)jem_rng_below(&rng, 30); /* few levels: many ties */
        double *si = malloc(sizeof(double) * ni), *so = malloc(sizeof(double) * no);
        for (int i = 0; i < ni; i++) si[i] = (double)jem_rng_below(&rng, levels) + 3;
        for (int j = 0; j < no; j++) so[j] = (double)jem_rng_below(&rng, levels);
        jem_ood_metrics m, b;
        ASSERT_OK(jem_ood_metrics_compute(si, ni, so, no, &m));
        brute(si, ni, so, no, &b);
        ASSERT_REL(m.auroc, b.auroc, 1e-12);
        ASSERT_REL(m.aupr_in, b.aupr_in, 1e-12);
        ASSERT_REL(m.aupr_out, b.aupr_out, 1e-12);
        ASSERT_REL(m.fpr95, b.fpr95, 1e-12);
        free(si);
        free(so);
    }
}

static void test_ood_properties(void)
{
    jem_ood_metrics m;
    const double sep_in[] = {2, 3, 4, 5}, sep_out[] = {0, 1, 1.5};
    ASSERT_OK(jem_ood_metrics_compute(sep_in, 4, sep_out, 3, &m));
    ASSERT_NEAR(m.auroc, 1, 0);
    ASSERT_NEAR(m.aupr_in, 1, 0);
    ASSERT_NEAR(m.aupr_out, 1, 0);
    ASSERT_NEAR(m.fpr95, 0, 0);
    ASSERT_NEAR(m.thr95, 2, 0);
    /* reversed */
    ASSERT_OK(jem_ood_metrics_compute(sep_out, 3, sep_in, 4, &m));
    ASSERT_NEAR(m.auroc, 0, 0);
    ASSERT_NEAR(m.fpr95, 1, 0);
    /* all identical: one threshold, AUROC 1/2, AP = prevalence */
    const double same[] = {0.7, 0.7, 0.7, 0.7, 0.7};
    ASSERT_OK(jem_ood_metrics_compute(same, 2, same, 3, &m));
    ASSERT_NEAR(m.auroc, 0.5, 0);
    ASSERT_NEAR(m.aupr_in, 0.4, 1e-15);
    ASSERT_NEAR(m.aupr_out, 0.6, 1e-15);
    ASSERT_NEAR(m.fpr95, 1, 0);
    /* one each */
    const double one_in[] = {1}, one_out[] = {0};
    ASSERT_OK(jem_ood_metrics_compute(one_in, 1, one_out, 1, &m));
    ASSERT_NEAR(m.auroc, 1, 0);

    /* infinities order like huge numbers; NaN and empty sets are refused */
    const double ii[] = {INFINITY, 1, 2, -1}, oo[] = {-INFINITY, 0, 2, 3};
    const double ih[] = {1e300, 1, 2, -1}, oh[] = {-1e300, 0, 2, 3};
    jem_ood_metrics m2;
    ASSERT_OK(jem_ood_metrics_compute(ii, 4, oo, 4, &m));
    ASSERT_OK(jem_ood_metrics_compute(ih, 4, oh, 4, &m2));
    ASSERT_NEAR(m.auroc, m2.auroc, 0);
    ASSERT_NEAR(m.aupr_in, m2.aupr_in, 0);
    ASSERT_NEAR(m.aupr_out, m2.aupr_out, 0);
    ASSERT_NEAR(m.fpr95, m2.fpr95, 0);
    const double nan_in[] = {1, NAN};
    ASSERT_ERR(jem_ood_metrics_compute(nan_in, 2, oo, 4, &m), JEM_ERR_NONFINITE);
    ASSERT_ERR(jem_ood_metrics_compute(ii, 0, oo, 4, &m), JEM_ERR_ARG);
    ASSERT_ERR(jem_ood_metrics_compute(ii, 4, oo, 0, &m), JEM_ERR_ARG);
    jem_roc r;
    ASSERT_ERR(jem_roc_curve(ii, 4, oo, 0, 0, &r), JEM_ERR_ARG);
    ASSERT(r.fpr == NULL);

    /* invariant under an increasing map and under permutation */
    jem_rng rng;
    jem_rng_seed(&rng, 3, 1);
    enum { NI = 500, NO = 400 };
    static double a[NI], b[NO], ea[NI], eb[NO];
    for (int i = 0; i < NI; i++) a[i] = round(10 * jem_rng_normal_d(&rng)) / 10 + 0.5;
    for (int i = 0; i < NO; i++) b[i] = round(10 * jem_rng_normal_d(&rng)) / 10;
    for (int i = 0; i < NI; i++) ea[NI - 1 - i] = 3 * a[i] + 1;
    for (int i = 0; i < NO; i++) eb[(i * 7) % NO] = 3 * b[i] + 1; /* 7 coprime to 400 */
    ASSERT_OK(jem_ood_metrics_compute(a, NI, b, NO, &m));
    ASSERT_OK(jem_ood_metrics_compute(ea, NI, eb, NO, &m2));
    ASSERT_NEAR(m.auroc, m2.auroc, 0);
    ASSERT_NEAR(m.aupr_in, m2.aupr_in, 1e-15);
    ASSERT_NEAR(m.aupr_out, m2.aupr_out, 1e-15);
    ASSERT_NEAR(m.fpr95, m2.fpr95, 0);
    ASSERT_NEAR(3 * m.thr95 + 1, m2.thr95, 1e-12);

    /* curve shape: starts at (0, 0) with +inf, ends at (1, 1), monotone */
    ASSERT_OK(jem_roc_curve(a, NI, b, NO, 0, &r));
    ASSERT(r.fpr[0] == 0 && r.tpr[0] == 0 && isinf(r.thr[0]));
    ASSERT(r.fpr[r.n - 1] == 1 && r.tpr[r.n - 1] == 1);
    int mono = 1;
    for (int i = 1; i < r.n; i++)
        mono &= r.fpr[i] >= r.fpr[i - 1] && r.tpr[i] >= r.tpr[i - 1] && r.thr[i] < r.thr[i - 1];
    ASSERT(mono);
    jem_roc_free(&r);
    jem_roc_free(NULL);

    /* a large set: O(n log n) */
    int n = t_quick() ? 20000 : 400000;
    double *x = malloc(sizeof(double) * n), *y = malloc(sizeof(double) * n);
    for (int i = 0; i < n; i++) {
        x[i] = jem_rng_normal_d(&rng) + 1;
        y[i] = jem_rng_normal_d(&rng);
    }
    ASSERT_OK(jem_ood_metrics_compute(x, n, y, n, &m));
    /* AUROC of N(1,1) vs N(0,1) is Phi(1/sqrt(2)) = 0.76025 */
    ASSERT_NEAR(m.auroc, 0.760250, t_quick() ? 0.01 : 0.003);
    free(x);
    free(y);
}

/* --------------------------------------------------------- calibration */

static void check_calib_fixture(const char *name)
{
    fixture f;
    if (!fx_load(name, &f)) return;
    const fx_rec *sh = fx_get(&f, "shape"), *pr = fx_get(&f, "probs"), *lb = fx_get(&f, "labels");
    int N = (int)sh->v[0], K = sh->n > 1 ? (int)sh->v[1] : 1;
    ASSERT_EQ_INT(pr->n, N * K);
    ASSERT_EQ_INT(lb->n, N);
    if (pr->n != N * K || lb->n != N) {
        fx_free(&f);
        return;
    }
    float *p = malloc(sizeof(float) * N * K);
    int32_t *y = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N * K; i++) p[i] = (float)pr->v[i];
    for (int i = 0; i < N; i++) y[i] = (int32_t)lb->v[i];

    for (int ri = 0; ri < f.n; ri++) {
        if (strncmp(f.r[ri].key, "ece_", 4)) continue;
        int B = atoi(f.r[ri].key + 4);
        jem_calib c;
        jem_calib_bin *bins = malloc(sizeof *bins * B), *ada = malloc(sizeof *ada * B);
        ASSERT_OK(jem_calibration(p, y, N, K, B, &c, bins, ada));
        ASSERT_EQ_INT(c.n, N);
        ASSERT_EQ_INT(c.n_bins, B);
        ASSERT_REL(c.accuracy, fx_val(&f, "accuracy"), REL);
        ASSERT_REL(c.nll, fx_val(&f, "nll"), REL);
        ASSERT_REL(c.brier, fx_val(&f, "brier"), REL);
        char k[64];
        snprintf(k, sizeof k, "ece_%d", B);
        ASSERT_REL(c.ece, fx_val(&f, k), REL);
        snprintf(k, sizeof k, "mce_%d", B);
        ASSERT_REL(c.mce, fx_val(&f, k), REL);
        snprintf(k, sizeof k, "ace_%d", B);
        ASSERT_REL(c.ace, fx_val(&f, k), REL);
        for (int t = 0; t < 2; t++) {
            const jem_calib_bin *tb = t ? ada : bins;
            const char *pre = t ? "ada" : "bin";
            snprintf(k, sizeof k, "%s_count_%d", pre, B);
            const fx_rec *cnt = fx_get(&f, k);
            snprintf(k, sizeof k, "%s_conf_%d", pre, B);
            const fx_rec *cf = fx_get(&f, k);
            snprintf(k, sizeof k, "%s_acc_%d", pre, B);
            const fx_rec *ac = fx_get(&f, k);
            int bad = 0;
            if (cnt->n != B || cf->n != B || ac->n != B) bad = 1000;
            else
                for (int b = 0; b < B; b++) {
                    bad += tb[b].count != (int)cnt->v[b];
                    bad += fabs(tb[b].conf - cf->v[b]) > REL * fabs(cf->v[b]) + 1e-15;
                    bad += fabs(tb[b].acc - ac->v[b]) > REL * fabs(ac->v[b]) + 1e-15;
                }
            ASSERT_MSG(bad == 0, "%s: %s table, B = %d: %d entries differ", name, pre, B, bad);
        }
        /* the lower-level entry point gives the same numbers */
        double *conf = malloc(sizeof(double) * N);
        uint8_t *hit = malloc(N);
        for (int i = 0; i < N; i++) {
            int a = 0;
            for (int j = 1; j < K; j++)
                if (p[i * K + j] > p[i * K + a]) a = j;
            conf[i] = p[i * K + a];
            hit[i] = a == y[i];
        }
        double e, mc;
        ASSERT_OK(jem_ece_bins(conf, hit, N, B, 0, NULL, &e, &mc));
        ASSERT_NEAR(e, c.ece, 0);
        ASSERT_NEAR(mc, c.mce, 0);
        ASSERT_OK(jem_ece_bins(conf, hit, N, B, 1, NULL, &e, NULL));
        ASSERT_NEAR(e, c.ace, 0);
        free(conf);
        free(hit);
        free(bins);
        free(ada);
    }
    const fx_rec *sk = fx_find(&f, "sk_log_loss");
    jem_calib c;
    ASSERT_OK(jem_calibration(p, y, N, K, 15, &c, NULL, NULL));
    if (sk) ASSERT_REL(c.nll, sk->v[0], REL32);
    sk = fx_find(&f, "sk_brier_binary");
    if (sk) ASSERT_REL(c.brier, 2 * sk->v[0], REL32); /* K = 2: twice the binary score */
    free(p);
    free(y);
    fx_free(&f);
}

static void test_calib_properties(void)
{
    /* perfectly calibrated by construction: at confidence c, exactly a
     * fraction c of the samples is right */
    enum { PER = 20, LEVELS = 5 };
    const double cs[LEVELS] = {0.55, 0.65, 0.75, 0.85, 0.95};
    float p[PER * LEVELS * 2];
    int32_t y[PER * LEVELS];
    for (int l = 0; l < LEVELS; l++)
        for (int i = 0; i < PER; i++) {
            int s = l * PER + i;
            p[2 * s] = (float)cs[l];
            p[2 * s + 1] = (float)(1 - cs[l]);
            y[s] = i < (int)lround(cs[l] * PER) ? 0 : 1;
        }
    jem_calib c;
    jem_calib_bin bins[10];
    ASSERT_OK(jem_calibration(p, y, PER * LEVELS, 2, 10, &c, bins, NULL));
    ASSERT_NEAR(c.ece, 0, 1e-7);
    ASSERT_NEAR(c.mce, 0, 1e-7);
    ASSERT_NEAR(c.accuracy, 0.75, 1e-12);
    /* equal-mass bins see it as calibrated when they align with the levels */
    jem_calib_bin ab[LEVELS];
    ASSERT_OK(jem_calibration(p, y, PER * LEVELS, 2, LEVELS, &c, NULL, ab));
    ASSERT_NEAR(c.ace, 0, 1e-7);
    ASSERT_EQ_INT(ab[0].count, PER);
    ASSERT_NEAR(ab[4].lo, 0.95f, 0);
    ASSERT_NEAR(ab[4].hi, 0.95f, 0);
    ASSERT_EQ_INT(bins[5].count, PER); /* 0.55 in (0.5, 0.6] */
    ASSERT_EQ_INT(bins[0].count, 0);

    /* sampled: hits drawn with probability = confidence */
    jem_rng rng;
    jem_rng_seed(&rng, 5, 0);
    int n = t_quick() ? 20000 : 200000;
    double *conf = malloc(sizeof(double) * n);
    uint8_t *hit = malloc(n);
    for (int i = 0; i < n; i++) {
        conf[i] = 0.1 + 0.9 * jem_rng_uniform_d(&rng);
        hit[i] = jem_rng_uniform_d(&rng) < conf[i];
    }
    /* sampling noise alone: about 0.8 sqrt(0.25 B / n) per bin */
    double e, mc, tol = 3 * 0.8 * sqrt(0.25 * 15 / n);
    ASSERT_OK(jem_ece_bins(conf, hit, n, 15, 0, NULL, &e, &mc));
    ASSERT_MSG(e < tol, "sampled calibrated ECE %g (tol %g)", e, tol);
    ASSERT_OK(jem_ece_bins(conf, hit, n, 15, 1, NULL, &e, NULL));
    ASSERT_MSG(e < tol, "sampled calibrated adaptive ECE %g (tol %g)", e, tol);
    /* always confident, right half the time */
    for (int i = 0; i < n; i++) {
        conf[i] = 1.0;
        hit[i] = i & 1;
    }
    ASSERT_OK(jem_ece_bins(conf, hit, n, 15, 0, NULL, &e, &mc));
    ASSERT_NEAR(e, 0.5, 1e-12);
    ASSERT_NEAR(mc, 0.5, 1e-12);

    /* bin edges: (b/B, (b+1)/B], 0 in the first bin, 1 in the last */
    const double edge[] = {0.0, 1.0, 0.5, 0.3, 0.30000000000000004, 0.1, 1e-300};
    const int want[] = {0, 9, 4, 2, 3, 0, 0};
    for (int i = 0; i < 7; i++) {
        jem_calib_bin tb[10];
        uint8_t h1 = 1;
        ASSERT_OK(jem_ece_bins(&edge[i], &h1, 1, 10, 0, tb, NULL, NULL));
        ASSERT_MSG(tb[want[i]].count == 1, "confidence %.17g should be in bin %d", edge[i], want[i]);
    }
    /* float 0.1 lies above 1/10: bin 1 */
    double c01 = (double)0.1f;
    jem_calib_bin tb[10];
    uint8_t h1 = 0;
    ASSERT_OK(jem_ece_bins(&c01, &h1, 1, 10, 0, tb, NULL, NULL));
    ASSERT_EQ_INT(tb[1].count, 1);
    ASSERT_NEAR(tb[1].lo, 0.1, 0);
    ASSERT_NEAR(tb[1].hi, 0.2, 0);

    /* NLL floor and Brier on a certain, wrong prediction */
    float pw[3] = {1, 0, 0};
    int32_t yw = 2;
    ASSERT_OK(jem_calibration(pw, &yw, 1, 3, 15, &c, NULL, NULL));
    ASSERT_NEAR(c.nll, -log(JEM_NLL_FLOOR), 1e-12);
    ASSERT_NEAR(c.brier, 2, 0);
    ASSERT_NEAR(c.accuracy, 0, 0);

    /* bad input */
    yw = 3;
    ASSERT_ERR(jem_calibration(pw, &yw, 1, 3, 15, &c, NULL, NULL), JEM_ERR_ARG);
    yw = -1;
    ASSERT_ERR(jem_calibration(pw, &yw, 1, 3, 15, &c, NULL, NULL), JEM_ERR_ARG);
    yw = 0;
    pw[1] = NAN;
    ASSERT_ERR(jem_calibration(pw, &yw, 1, 3, 15, &c, NULL, NULL), JEM_ERR_NONFINITE);
    pw[1] = 0;
    ASSERT_ERR(jem_calibration(pw, &yw, 1, 3, 0, &c, NULL, NULL), JEM_ERR_ARG);
    float lg[3] = {2.5f, -1.0f, 0.3f}; /* logits, not probabilities */
    ASSERT_ERR(jem_calibration(lg, &yw, 1, 3, 15, &c, NULL, NULL), JEM_ERR_ARG);
    ASSERT_STR_CONTAINS(jem_last_error(), "not a probability vector");
    ASSERT_ERR(jem_calibration(pw, &yw, 0, 3, 15, &c, NULL, NULL), JEM_ERR_ARG);
    double bad = 1.5;
    ASSERT_ERR(jem_ece_bins(&bad, &h1, 1, 10, 0, NULL, &e, NULL), JEM_ERR_ARG);
    bad = NAN;
    ASSERT_ERR(jem_ece_bins(&bad, &h1, 1, 10, 0, NULL, &e, NULL), JEM_ERR_NONFINITE);
    free(conf);
    free(hit);
}

/* -------------------------------------------------- temperature scaling */

static void check_temp_fixture(void)
{
    fixture f;
    if (!fx_load("temp_fit.txt", &f)) return;
    const fx_rec *sh = fx_get(&f, "shape"), *lg = fx_get(&f, "logits"), *lb = fx_get(&f, "labels");
    int N = (int)sh->v[0], K = sh->n > 1 ? (int)sh->v[1] : 1;
    if (lg->n != N * K || lb->n != N) {
        T_REPORT_FAIL("temp_fit.txt: sizes");
        fx_free(&f);
        return;
    }
    float *z = malloc(sizeof(float) * N * K);
    int32_t *y = malloc(sizeof(int32_t) * N);
    for (int i = 0; i < N * K; i++) z[i] = (float)lg->v[i];
    for (int i = 0; i < N; i++) y[i] = (int32_t)lb->v[i];
    jem_temp_fit t;
    ASSERT_OK(jem_temp_scale_fit(z, y, N, K, &t));
    ASSERT_REL(t.T, fx_val(&f, "t_opt"), REL32);
    ASSERT_REL(t.nll_before, fx_val(&f, "nll_before"), REL);
    ASSERT_REL(t.nll_after, fx_val(&f, "nll_after"), REL);
    ASSERT(t.nll_after <= fx_val(&f, "nll_after") * (1 + 1e-12)); /* at least as good */
    ASSERT_REL(jem_nll_logits(z, y, N, K, 2.5), fx_val(&f, "nll_t2_5"), REL);
    ASSERT(!t.at_bound);
    free(z);
    free(y);
    fx_free(&f);
}

/* logits z ~ N(0, s^2), labels drawn from softmax(z / T0) */
static void tempered(jem_rng *rng, float *z, int32_t *y, int N, int K, double s, double T0)
{
    double *p = malloc(sizeof(double) * K);
    for (int i = 0; i < N; i++) {
        double mx = -INFINITY, sum = 0;
        for (int k = 0; k < K; k++) {
            z[i * K + k] = (float)(s * jem_rng_normal_d(rng));
            if (z[i * K + k] / T0 > mx) mx = z[i * K + k] / T0;
        }
        for (int k = 0; k < K; k++) sum += p[k] = exp(z[i * K + k] / T0 - mx);
        double u = jem_rng_uniform_d(rng) * sum;
        int k = 0;
        while (k < K - 1 && u >= p[k]) u -= p[k++];
        y[i] = k;
    }
    free(p);
}

static void test_temp_properties(void)
{
    jem_rng rng;
    jem_rng_seed(&rng, 11, 0);
    int N = t_quick() ? 8000 : 40000, K = 10;
    float *z = malloc(sizeof(float) * N * K);
    int32_t *y = malloc(sizeof(int32_t) * N);
    const double T0s[] = {2.0, 0.5, 1.0};
    for (int j = 0; j < 3; j++) {
        tempered(&rng, z, y, N, K, 3.0, T0s[j]);
        jem_temp_fit t;
        ASSERT_OK(jem_temp_scale_fit(z, y, N, K, &t));
        ASSERT_MSG(fabs(t.T / T0s[j] - 1) < 0.04, "fitted T %g, true %g", t.T, T0s[j]);
        ASSERT(t.nll_after <= t.nll_before + 1e-15);
        ASSERT(!t.at_bound);
        /* the derivative at the optimum is zero: nearby temperatures are worse */
        double f0 = jem_nll_logits(z, y, N, K, t.T);
        ASSERT_NEAR(f0, t.nll_after, 1e-14);
        ASSERT(jem_nll_logits(z, y, N, K, t.T * 1.01) >= f0);
        ASSERT(jem_nll_logits(z, y, N, K, t.T / 1.01) >= f0);
        /* scaling the logits scales T */
        if (j == 0) {
            float *z2 = malloc(sizeof(float) * N * K);
            for (int i = 0; i < N * K; i++) z2[i] = 4 * z[i];
            jem_temp_fit t2;
            ASSERT_OK(jem_temp_scale_fit(z2, y, N, K, &t2));
            ASSERT_REL(t2.T, 4 * t.T, 1e-6);
            free(z2);
        }
    }
    /* separable: every label is the argmax, so T wants to go to 0 */
    for (int i = 0; i < 200; i++) {
        int a = 0;
        for (int k = 1; k < K; k++)
            if (z[i * K + k] > z[i * K + a]) a = k;
        y[i] = a;
    }
    jem_temp_fit t;
    ASSERT_OK(jem_temp_scale_fit(z, y, 200, K, &t));
    ASSERT(t.at_bound);
    ASSERT_NEAR(t.T, JEM_TEMP_MIN, 1e-12);
    /* labels against the logits: T goes to the upper bound */
    for (int i = 0; i < 200; i++) {
        int a = 0;
        for (int k = 1; k < K; k++)
            if (z[i * K + k] < z[i * K + a]) a = k;
        y[i] = a;
    }
    ASSERT_OK(jem_temp_scale_fit(z, y, 200, K, &t));
    ASSERT(t.at_bound);
    ASSERT_NEAR(t.T, JEM_TEMP_MAX, 1e-9);

    /* softmax with T: rows sum to 1; T = 1 matches jem_softmax */
    float *p = malloc(sizeof(float) * 4 * K), *q = malloc(sizeof(float) * 4 * K);
    jem_softmax_temp(z, 4, K, 1.0, p);
    jem_softmax(z, 4, K, q);
    double md = 0, rs = 0;
    for (int i = 0; i < 4 * K; i++) md = fmax(md, fabs(p[i] - q[i]));
    ASSERT_NEAR(md, 0, 1e-6);
    jem_softmax_temp(z, 4, K, 3.0, p);
    for (int k = 0; k < K; k++) rs += p[k];
    ASSERT_NEAR(rs, 1, 1e-6);

    /* bad input */
    y[0] = K;
    ASSERT_ERR(jem_temp_scale_fit(z, y, 10, K, &t), JEM_ERR_ARG);
    y[0] = 0;
    z[3] = INFINITY;
    ASSERT_ERR(jem_temp_scale_fit(z, y, 10, K, &t), JEM_ERR_NONFINITE);
    ASSERT_ERR(jem_temp_scale_fit(z, y, 0, K, &t), JEM_ERR_ARG);
    free(p);
    free(q);
    free(z);
    free(y);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_metrics");
    const char *ood[] = {"ood_ties.txt", "ood_int.txt", "ood_cont.txt", "ood_f32.txt", "ood_collinear.txt"};
    for (int i = 0; i < 5; i++) check_ood_fixture(ood[i]);
    test_ood_brute();
    test_ood_properties();
    const char *cal[] = {"calib_dirichlet.txt", "calib_binary.txt", "calib_tiny.txt"};
    for (int i = 0; i < 3; i++) check_calib_fixture(cal[i]);
    test_calib_properties();
    check_temp_fixture();
    test_temp_properties();
    return t_finish();
}

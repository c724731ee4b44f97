/* Composed energies (products of experts): a weighted sum of class or
 * unconditional log-densities of one or several networks, its text form,
 * and the list of named models it refers to. */
#include "jem.h"

#include <ctype.h>
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ------------------------------------------------------------- parsing */

static const char *skip_sp(const char *p)
{
    while (*p == ' ' || *p == '\t') p++;
    return p;
}

/* a name at p: [A-Za-z_][A-Za-z0-9_-]*, shorter than JEM_COMPOSE_NAME;
 * returns the end, or NULL */
static const char *read_name(const char *p, char *out)
{
    if (!(isalpha((unsigned char)*p) || *p == '_')) return NULL;
    size_t n = 0;
    while (isalnum((unsigned char)p[n]) || p[n] == '_' || p[n] == '-') {
        if (n + 1 >= JEM_COMPOSE_NAME) return NULL;
        out[n] = p[n];
        n++;
    }
    out[n] = 0;
    return p + n;
}

/* a field of a term: up to ':' or ',' or the end, spaces trimmed */
static const char *field(const char *p, char *out, size_t cap, int *overflow)
{
    p = skip_sp(p);
    const char *e = p;
    while (*e && *e != ':' && *e != ',') e++;
    const char *t = e;
    while (t > p && (t[-1] == ' ' || t[-1] == '\t')) t--;
    size_t n = (size_t)(t - p);
    *overflow = n >= cap;
    if (n >= cap) n = cap - 1;
    memcpy(out, p, n);
    out[n] = 0;
    return e;
}

static int printable(const char *s, char *buf, size_t n)
{
    /* a copy safe to quote in a message: control bytes as '?' */
    size_t i = 0;
    for (; s[i] && i + 1 < n; i++) buf[i] = (unsigned char)s[i] < 32 || s[i] == 127 ? '?' : s[i];
    buf[i] = 0;
    return (int)i;
}

jem_status jem_compose_parse(const char *spec, jem_compose *c)
{
    memset(c, 0, sizeof *c);
    if (!spec) return jem_fail(JEM_ERR_ARG, "energy: no terms");
    char shown[96];
    printable(spec, shown, sizeof shown);
    const char *p = spec;
    for (int k = 1;; k++) {
        if (c->n_terms == JEM_COMPOSE_MAX)
            return jem_fail(JEM_ERR_ARG, "energy '%s': more than %d terms", shown, JEM_COMPOSE_MAX);
        jem_term *t = &c->terms[c->n_terms];
        t->cls = -1;
        t->weight = 1.0;
        char f[64];
        int over;
        p = field(p, f, sizeof f, &over);
        char nm[JEM_COMPOSE_NAME];
        const char *e = over ? NULL : read_name(f, nm);
        if (!e || *e) {
            char b[64];
            printable(f, b, sizeof b);
            return jem_fail(JEM_ERR_ARG,
                            "energy '%s', term %d: '%s' is not a model name (a letter or '_', then "
                            "letters, digits, '_' or '-', at most %d characters)",
                            shown, k, b, JEM_COMPOSE_NAME - 1);
        }
        memcpy(t->model, nm, sizeof nm);
        int have_sel = 0, have_w = 0;
        while (*p == ':') {
            p = field(p + 1, f, sizeof f, &over);
            char b[64];
            printable(f, b, sizeof b);
            if (over) return jem_fail(JEM_ERR_ARG, "energy '%s', term %d: field '%s...' is too long", shown, k, b);
            if (!strncmp(f, "class=", 6) || !strcmp(f, "uncond")) {
                if (have_sel || have_w)
                    return jem_fail(JEM_ERR_ARG,
                                    "energy '%s', term %d: '%s' must come right after the model "
                                    "name, once",
                                    shown, k, b);
                have_sel = 1;
                if (f[0] == 'c') {
                    const char *d = f + 6;
                    size_t nd = strspn(d, "0123456789");
                    if (nd == 0 || d[nd] || nd > 5 || atoi(d) > 65535)
                        return jem_fail(JEM_ERR_ARG,
                                        "energy '%s', term %d: '%s': the class must be a number "
                                        "from 0 to 65535",
                                        shown, k, b);
                    t->cls = atoi(d);
                }
                continue;
            }
            if (have_w) return jem_fail(JEM_ERR_ARG, "energy '%s', term %d: a second weight '%s'", shown, k, b);
            char *end;
            errno = 0;
            double w = f[0] ? strtod(f, &end) : 0;
            int num = f[0] && !*end && (isdigit((unsigned char)f[0]) || f[0] == '-' || f[0] == '+' || f[0] == '.');
            if (!num)
                return jem_fail(JEM_ERR_ARG,
                                "energy '%s', term %d: '%s' is neither class=K, uncond nor a "
                                "weight",
                                shown, k, b);
            if (!isfinite(w) || w == 0 || errno == ERANGE || fabs(w) > 1e6)
                return jem_fail(JEM_ERR_ARG,
                                "energy '%s', term %d: weight '%s' must be finite, non-zero and "
                                "at most 1e6 in size",
                                shown, k, b);
            t->weight = w;
            have_w = 1;
        }
        c->n_terms++;
        if (!*p) break;
        /* *p == ',' */
        p++;
    }
    return JEM_OK;
}

int jem_compose_format(const jem_compose *c, char *buf, size_t n)
{
    size_t len = 0;
    for (int i = 0; i < c->n_terms; i++) {
        const jem_term *t = &c->terms[i];
        char cl[24];
        if (t->cls >= 0) snprintf(cl, sizeof cl, "class=%d", t->cls);
        else snprintf(cl, sizeof cl, "uncond");
        int k = snprintf(len < n ? buf + len : NULL, len < n ? n - len : 0, "%s%s:%s:%.17g", i ? "," : "", t->model, cl,
                         t->weight);
        if (k < 0) return -1;
        len += (size_t)k;
    }
    if (n && len >= n) buf[n - 1] = 0;
    if (n && !c->n_terms) buf[0] = 0;
    return (int)len;
}

jem_status jem_model_list_parse(const char *spec, jem_model_list *l)
{
    memset(l, 0, sizeof *l);
    if (!spec || !*skip_sp(spec)) return jem_fail(JEM_ERR_ARG, "models: empty list (want NAME=PATH[,NAME=PATH...])");
    char shown[96];
    printable(spec, shown, sizeof shown);
    const char *p = spec;
    for (int k = 1;; k++) {
        if (l->n == JEM_COMPOSE_MAX)
            return jem_fail(JEM_ERR_ARG, "models '%s': more than %d models", shown, JEM_COMPOSE_MAX);
        p = skip_sp(p);
        const char *e = read_name(p, l->name[l->n]);
        if (e) e = skip_sp(e);
        if (!e || *e != '=')
            return jem_fail(JEM_ERR_ARG,
                            "models '%s', entry %d: want NAME=PATH with NAME a letter or '_', then "
                            "letters, digits, '_' or '-' (at most %d characters)",
                            shown, k, JEM_COMPOSE_NAME - 1);
        for (int i = 0; i < l->n; i++)
            if (!strcmp(l->name[i], l->name[l->n]))
                return jem_fail(JEM_ERR_ARG, "models '%s': the name '%s' is given twice", shown, l->name[i]);
        const char *q = e + 1;
        size_t n = strcspn(q, ",");
        if (n == 0) return jem_fail(JEM_ERR_ARG, "models '%s', entry %d (%s): empty path", shown, k, l->name[l->n]);
        if (n >= sizeof l->path[0])
            return jem_fail(JEM_ERR_ARG, "models '%s', entry %d (%s): path longer than %zu bytes", shown, k,
                            l->name[l->n], sizeof l->path[0] - 1);
        memcpy(l->path[l->n], q, n);
        l->path[l->n][n] = 0;
        l->n++;
        p = q + n;
        if (!*p) break;
        p++;
    }
    return JEM_OK;
}

/* ------------------------------------------------------------- binding */

jem_status jem_compose_bind(jem_compose *c, int n, const char *const *names, jem_net *const *nets)
{
    if (n < 1 || n > JEM_COMPOSE_MAX || !names || !nets)
        return jem_fail(JEM_ERR_ARG, "energy: %d models given (1 to %d)", n, JEM_COMPOSE_MAX);
    if (c->n_terms < 1) return jem_fail(JEM_ERR_ARG, "energy: no terms");
    c->n_models = 0;
    int used[JEM_COMPOSE_MAX];
    for (int i = 0; i < c->n_terms; i++) {
        jem_term *t = &c->terms[i];
        int j = 0;
        while (j < n && !(names[j] && !strcmp(names[j], t->model))) j++;
        if (j == n)
            return jem_fail(JEM_ERR_ARG, "energy: term %d names model '%s', which is not given", i + 1, t->model);
        if (!nets[j]) return jem_fail(JEM_ERR_ARG, "energy: model '%s' is not loaded", t->model);
        const jem_arch *a = jem_net_arch(nets[j]);
        if (t->cls >= a->n_classes)
            return jem_fail(JEM_ERR_ARG, "energy: term %d asks for class %d of model '%s', which has %d classes", i + 1,
                            t->cls, t->model, a->n_classes);
        int k = 0;
        while (k < c->n_models && used[k] != j) k++;
        if (k == c->n_models) {
            const jem_arch *a0 = c->n_models ? jem_net_arch(c->nets[0]) : a;
            if (a->in_c != a0->in_c || a->in_h != a0->in_h || a->in_w != a0->in_w)
                return jem_fail(JEM_ERR_SHAPE, "energy: model '%s' takes %dx%dx%d images, model '%s' %dx%dx%d",
                                t->model, a->in_c, a->in_h, a->in_w, names[used[0]], a0->in_c, a0->in_h, a0->in_w);
            used[k] = j;
            c->nets[k] = nets[j];
            c->n_models++;
        }
        c->term_model[i] = k;
    }
    return JEM_OK;
}

/* ------------------------------------------------------------- energy */

jem_status jem_compose_energy(void *ctx, const float *x, int B, const int32_t *y, float *logp, float *grad)
{
    jem_compose *c = ctx;
    if (c->n_models < 1) return jem_fail(JEM_ERR_ARG, "energy: the composition is not bound to models");
    if (y)
        for (int b = 0; b < B; b++)
            if (y[b] >= 0)
                return jem_fail(JEM_ERR_ARG,
                                "energy: a composed energy takes no class labels (chain %d has %d); "
                                "classes belong in its terms",
                                b, y[b]);
    const jem_arch *a0 = jem_net_arch(c->nets[0]);
    const size_t D = (size_t)a0->in_c * a0->in_h * a0->in_w;
    int Kmax = 1;
    for (int m = 0; m < c->n_models; m++)
        if (jem_net_arch(c->nets[m])->n_classes > Kmax) Kmax = jem_net_arch(c->nets[m])->n_classes;
    float *logits = malloc(sizeof(float) * (size_t)B * Kmax * 3);
    double *acc = malloc(sizeof(double) * B);
    float *gm = grad && c->n_models > 1 ? malloc(sizeof(float) * (size_t)B * D) : NULL;
    jem_status s = JEM_OK;
    if (!logits || !acc || (grad && c->n_models > 1 && !gm)) {
        s = jem_fail(JEM_ERR_NOMEM, "energy: out of memory for %d images", B);
        goto out;
    }
    float *dl = logits + (size_t)B * Kmax, *sm = dl + (size_t)B * Kmax;
    for (int b = 0; b < B; b++) acc[b] = 0;
    for (int m = 0; m < c->n_models; m++) {
        jem_net *net = c->nets[m];
        const int K = jem_net_arch(net)->n_classes;
        s = jem_net_forward(net, x, B, logits);
        if (s) goto out;
        memset(dl, 0, sizeof(float) * (size_t)B * K);
        for (int b = 0; b < B; b++) {
            const float *l = logits + (size_t)b * K;
            float *d = dl + (size_t)b * K, *p = sm + (size_t)b * K;
            int have_sm = 0;
            float lse = 0;
            for (int i = 0; i < c->n_terms; i++) {
                if (c->term_model[i] != m) continue;
                const jem_term *t = &c->terms[i];
                if (t->cls >= 0) {
                    acc[b] += t->weight * l[t->cls];
                    d[t->cls] += (float)t->weight;
                } else {
                    if (!have_sm) {
                        jem_logsumexp(l, 1, K, &lse);
                        jem_softmax(l, 1, K, p);
                        have_sm = 1;
                    }
                    acc[b] += t->weight * lse;
                    for (int k = 0; k < K; k++) d[k] += (float)t->weight * p[k];
                }
            }
        }
        if (grad) {
            s = jem_net_backward(net, dl, m == 0 ? grad : gm, 0);
            if (s) goto out;
            if (m > 0)
                for (size_t i = 0; i < (size_t)B * D; i++) grad[i] += gm[i];
        }
    }
    for (int b = 0; b < B; b++) logp[b] = (float)acc[b];
out:
    free(logits);
    free(acc);
    free(gm);
    return s;
}

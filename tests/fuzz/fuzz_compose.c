/* Fuzz the composed-energy text form (jem sample --energy) and the model
 * list (--models): the bytes before "JEM|" are an energy, the rest a model
 * list. An accepted energy must print in its canonical form, parse back to
 * the same terms, and print the same again. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 14) return 0;
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    char *e = malloc(na + 1), *m = malloc(nb + 1);
    if (!e || !m) {
        free(e);
        free(m);
        return 0;
    }
    memcpy(e, a, na);
    e[na] = 0;
    memcpy(m, b, nb);
    m[nb] = 0;
    jem_compose c, c2;
    if (jem_compose_parse(e, &c) == JEM_OK) {
        if (c.n_terms < 1 || c.n_terms > JEM_COMPOSE_MAX) abort();
        char buf[4096], buf2[4096];
        int n = jem_compose_format(&c, buf, sizeof buf);
        if (n < 0 || (size_t)n >= sizeof buf) abort();
        if (jem_compose_parse(buf, &c2) != JEM_OK) abort();
        if (c2.n_terms != c.n_terms) abort();
        for (int i = 0; i < c.n_terms; i++)
            if (strcmp(c.terms[i].model, c2.terms[i].model) || c.terms[i].cls != c2.terms[i].cls ||
                c.terms[i].weight != c2.terms[i].weight || !(c.terms[i].weight != 0))
                abort();
        jem_compose_format(&c2, buf2, sizeof buf2);
        if (strcmp(buf, buf2)) abort();
        fuzz_accepted++;
    }
    jem_model_list l;
    if (nb && jem_model_list_parse(m, &l) == JEM_OK) {
        if (l.n < 1 || l.n > JEM_COMPOSE_MAX) abort();
        for (int i = 0; i < l.n; i++)
            if (!l.name[i][0] || !l.path[i][0] || strchr(l.path[i], ',')) abort();
    }
    free(e);
    free(m);
    return 0;
}

/* opts.c: option parsing and helpers shared by the subcommands. */
#include "cli/cli.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* ---- option parsing ---- */

static const char *type_hint(opt_type t)
{
    switch (t) {
    case OPT_FLAG: return "";
    case OPT_INT: case OPT_I64: case OPT_U64: return " N";
    case OPT_FLOAT: case OPT_DOUBLE: return " X";
    case OPT_STR: return " S";
    }
    return "";
}

void cli_help(const char *cmd, const char *usage_text, const cli_opt *opts)
{
    printf("usage: jem %s %s\n\noptions:\n", cmd, usage_text);
    for (const cli_opt *o = opts; o->name; o++) {
        char left[64];
        snprintf(left, sizeof left, "--%s%s", o->name, type_hint(o->type));
        printf("  %-24s %s", left, o->help);
        switch (o->type) {
        case OPT_INT: printf(" (default %d)", *(int *)o->ptr); break;
        case OPT_I64: printf(" (default %lld)", (long long)*(int64_t *)o->ptr); break;
        case OPT_U64: printf(" (default %llu)", (unsigned long long)*(uint64_t *)o->ptr); break;
        case OPT_FLOAT: printf(" (default %g)", (double)*(float *)o->ptr); break;
        case OPT_DOUBLE: printf(" (default %g)", *(double *)o->ptr); break;
        case OPT_STR: if (*(const char **)o->ptr) printf(" (default %s)", *(const char **)o->ptr); break;
        case OPT_FLAG: break;
        }
        printf("\n");
    }
    printf("  %-24s %s\n", "--help", "this text");
}

static int set_value(const char *cmd, const cli_opt *o, const char *v)
{
    char *end;
    errno = 0;
    switch (o->type) {
    case OPT_FLAG: *(int *)o->ptr = 1; return 0;
    case OPT_STR: *(const char **)o->ptr = v; return 0;
    case OPT_INT: {
        long x = strtol(v, &end, 10);
        if (errno || end == v || *end || x < INT_MIN || x > INT_MAX) break;
        *(int *)o->ptr = (int)x;
        return 0;
    }
    case OPT_I64: {
        long long x = strtoll(v, &end, 10);
        if (errno || end == v || *end) break;
        *(int64_t *)o->ptr = x;
        return 0;
    }
    case OPT_U64: {
        if (*v == '-') break;
        unsigned long long x = strtoull(v, &end, 10);
        if (errno || end == v || *end) break;
        *(uint64_t *)o->ptr = x;
        return 0;
    }
    case OPT_FLOAT: case OPT_DOUBLE: {
        double x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        if (o->type == OPT_FLOAT && fabs(x) > FLT_MAX) break; /* would become infinite */
        if (o->type == OPT_FLOAT) *(float *)o->ptr = (float)x;
        else *(double *)o->ptr = x;
        return 0;
    }
    }
    fprintf(stderr, "jem %s: error: bad value '%s' for --%s\n", cmd, v, o->name);
    return -1;
}

int cli_parse(const char *cmd, const char *usage_text, const cli_opt *opts, int argc,
              char **argv, int first, const char **pos, int max_pos, int *npos)
{
    *npos = 0;
    for (int i = first; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) { cli_help(cmd, usage_text, opts); return 1; }
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            const cli_opt *o = NULL;
            for (const cli_opt *p = opts; p->name; p++)
                if (strlen(p->name) == len && !strncmp(p->name, name, len)) { o = p; break; }
            if (!o) {
                fprintf(stderr, "jem %s: error: unknown option '%.*s' ('jem %s --help' lists them)\n", cmd,
                        (int)(len + 2), a, cmd);
                return -1;
            }
            const char *v;
            if (o->type == OPT_FLAG) {
                if (eq) { fprintf(stderr, "jem %s: error: --%s takes no value\n", cmd, o->name); return -1; }
                v = "1";
            } else if (eq) {
                v = eq + 1;
            } else {
                if (i + 1 >= argc) { fprintf(stderr, "jem %s: error: --%s needs a value\n", cmd, o->name); return -1; }
                v = argv[++i];
            }
            if (set_value(cmd, o, v)) return -1;
        } else {
            if (*npos >= max_pos) {
                fprintf(stderr, "jem %s: error: unexpected argument '%s'\n", cmd, a);
                return -1;
            }
            pos[(*npos)++] = a;
        }
    }
    return 0;
}

int cli_fail(const char *cmd, jem_status s)
{
    const char *m = jem_last_error();
    fprintf(stderr, "jem %s: error: %s%s%s\n", cmd, m && *m ? m : jem_strerror(s), m && *m ? "" : "", "");
    return s == JEM_ERR_INTERRUPTED ? 130 : 1;
}

jem_status cli_open_data(const char *spec, const jem_arch *a, jem_dataset *ds)
{
    /* synthetic noise sets take the model's input shape unless given one */
    char buf[600];
    if (!strncmp(spec, "noise:", 6) && !strchr(spec + 6, 'x') && strlen(spec) < 500) {
        snprintf(buf, sizeof buf, "%s:%dx%dx%d", spec, a->in_c, a->in_h, a->in_w);
        spec = buf;
    }
    jem_status s = jem_dataset_open(spec, ds);
    if (s) return s;
    s = jem_dataset_conform(ds, a->in_c, a->in_h, a->in_w);
    if (s) { jem_dataset_free(ds); return s; }
    return JEM_OK;
}

/* opts.c: the command preamble shared by the subcommands: option parsing
 * against a table that also holds each value's valid range, the checks of
 * data specs and output paths, model loading, threads, JSON mode; labels
 * against the model; the progress bar. */
#include "cli/cli.h"

#include <errno.h>
#include <float.h>
#include <limits.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define MAX_THREADS 1024
#define MAX_OPTS    96

static int check_only;
void cli_set_check_only(int on) { check_only = on; }
int cli_check_only(void) { return check_only; }

int cli_usage_error(const char *cmd, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fprintf(stderr, "jem %s: error: ", cmd);
    vfprintf(stderr, fmt, ap);
    fputc('\n', stderr);
    va_end(ap);
    return 2;
}

int cli_fail(const char *cmd, jem_status s)
{
    const char *m = jem_last_error();
    fprintf(stderr, "jem %s: error: %s\n", cmd, m && *m ? m : jem_strerror(s));
    return s == JEM_ERR_INTERRUPTED ? 130 : 1;
}

/* ------------------------------------------------------------ the table */

static int is_number(opt_type t) { return t != OPT_FLAG && t != OPT_STR; }
static int is_integer(opt_type t) { return t == OPT_INT || t == OPT_I64 || t == OPT_U64; }

/* "softmax or jem", "a, b or c" */
static void choices_text(const char *ch, char *buf, size_t n)
{
    size_t k = 0, len = strlen(ch);
    int bars = 0;
    for (size_t i = 0; i < len; i++) bars += ch[i] == '|';
    for (size_t i = 0; i < len && k + 6 < n; i++) {
        if (ch[i] != '|') {
            buf[k++] = ch[i];
            continue;
        }
        const char *sep = --bars ? ", " : " or ";
        for (const char *p = sep; *p && k + 1 < n; p++) buf[k++] = *p;
    }
    buf[k] = 0;
}

/* the valid values of an option, for help and errors ("" when any) */
static void range_text(const cli_opt *o, char *buf, size_t n)
{
    buf[0] = 0;
    if (o->type == OPT_STR && o->choices) {
        choices_text(o->choices, buf, n);
        return;
    }
    if (!is_number(o->type) || !o->ranged) return;
    const char *what = is_integer(o->type) ? "an integer" : "a number";
    const int open = o->ranged == 2, hi = o->max < 1e299;
    if (o->ranged == 3) snprintf(buf, n, "%s of at least %.12g and below %.12g", what, o->min, o->max);
    else if (hi && !open) snprintf(buf, n, "%s from %.12g to %.12g", what, o->min, o->max);
    else if (hi) snprintf(buf, n, "%s above %.12g and at most %.12g", what, o->min, o->max);
    else snprintf(buf, n, "%s %s %.12g", what, open ? "above" : "of at least", o->min);
}

static void default_text(const cli_opt *o, char *buf, size_t n)
{
    buf[0] = 0;
    if (o->def) {
        snprintf(buf, n, "%s", o->def);
        return;
    }
    switch (o->type) {
    case OPT_INT: snprintf(buf, n, "%d", *(int *)o->ptr); break;
    case OPT_I64: snprintf(buf, n, "%lld", (long long)*(int64_t *)o->ptr); break;
    case OPT_U64: snprintf(buf, n, "%llu", (unsigned long long)*(uint64_t *)o->ptr); break;
    case OPT_FLOAT: snprintf(buf, n, "%g", (double)*(float *)o->ptr); break;
    case OPT_DOUBLE: snprintf(buf, n, "%g", *(double *)o->ptr); break;
    case OPT_STR:
        if (*(const char **)o->ptr) snprintf(buf, n, "%s", *(const char **)o->ptr);
        break;
    case OPT_FLAG: break;
    }
}

/* short choice lists name themselves: "--mode softmax|jem" */
#define CHOICES_IN_HINT 24

static const char *type_hint(const cli_opt *o, char *buf, size_t n)
{
    if (o->type == OPT_STR && o->choices && strlen(o->choices) <= CHOICES_IN_HINT) {
        snprintf(buf, n, " %s", o->choices);
        return buf;
    }
    switch (o->type) {
    case OPT_FLAG: return "";
    case OPT_INT:
    case OPT_I64:
    case OPT_U64: return " N";
    case OPT_FLOAT:
    case OPT_DOUBLE: return " X";
    case OPT_STR:
        if (o->flags & (OPT_SPEC | OPT_SPECS)) return o->flags & OPT_SPECS ? " SPEC,..." : " SPEC";
        if (o->flags & (OPT_IN_FILE | OPT_OUT_FILE)) return " FILE";
        if (o->flags & OPT_OUT_DIR) return " DIR";
        return " S";
    }
    return "";
}

/* the command's table with the shared options after it */
typedef struct {
    cli_opt all[MAX_OPTS];
    int n;
    const char *model;
    int threads, json;
    const char *precision;
} table;

static void build_table(const cli_spec *sp, table *t)
{
    t->n = 0;
    t->model = sp->model == CLI_MODEL_DESC ? sp->model_default : NULL;
    t->threads = 0;
    t->json = 0;
    t->precision = "fp32";
    if (sp->model == CLI_MODEL_CKPT)
        t->all[t->n++] = (cli_opt){OPT("model", OPT_STR, &t->model,
                                       "checkpoint (.safetensors); may also be given "
                                       "as the first argument"),
                                   .flags = OPT_IN_FILE};
    else if (sp->model == CLI_MODEL_DESC)
        t->all[t->n++] =
            (cli_opt){OPT("model", OPT_STR, &t->model, "model description file"), .flags = OPT_IN_FILE | OPT_IF_GIVEN};
    for (cli_opt *o = sp->opts; o && o->name && t->n < MAX_OPTS - 4; o++) t->all[t->n++] = *o;
    if (sp->precision)
        t->all[t->n++] = (cli_opt){OPT("precision", OPT_STR, &t->precision, sp->precision), .choices = "fp32|bf16"};
    if (sp->threads)
        t->all[t->n++] =
            (cli_opt){OPT("threads", OPT_INT, &t->threads, "threads (0: all cores)"), RANGE(0, MAX_THREADS)};
    if (sp->json) t->all[t->n++] = (cli_opt){OPT("json", OPT_FLAG, &t->json, "print the results as JSON")};
    t->all[t->n] = (cli_opt)CLI_END;
}

/* What --help and the manual say of one option. */
typedef struct {
    char hint[64];   /* after the name: " N", " softmax|jem", ... ("" for a flag) */
    char range[160]; /* the valid values ("" when any) */
    char def[200];   /* the default ("" when none) */
    int range_shown; /* the range goes into the description (choices too long for the hint) */
    int inactive;    /* the spec's inactive_text replaces the default */
} opt_text;

static void option_text(const cli_spec *sp, const cli_opt *o, opt_text *x)
{
    char hint[64];
    snprintf(x->hint, sizeof x->hint, "%s", type_hint(o, hint, sizeof hint));
    range_text(o, x->range, sizeof x->range);
    default_text(o, x->def, sizeof x->def);
    x->range_shown = x->range[0] && !(o->type == OPT_STR && o->choices && strlen(o->choices) <= CHOICES_IN_HINT);
    x->inactive = (o->flags & sp->inactive) != 0;
}

/* the manual's entry for a command (cli_set_man) */
static const char *man_what;
void cli_set_man(const char *what) { man_what = what; }

static void man_help(const cli_spec *sp, const table *t)
{
    printf(".SS %s\n.B jem %s\n", sp->name, sp->name);
    cli_roff(stdout, sp->usage, 0);
    printf("\n.PP\n");
    cli_roff(stdout, man_what, 1);
    printf("\n");
    if (sp->note) {
        printf(".PP\n");
        cli_roff(stdout, sp->note, 1);
        printf("\n");
    }
    for (const cli_opt *o = t->all; o->name; o++) {
        if (o->flags & OPT_HIDDEN) continue;
        opt_text x;
        option_text(sp, o, &x);
        printf(".TP\n\\fB");
        cli_roff(stdout, "--", 0);
        cli_roff(stdout, o->name, 0);
        printf("\\fR");
        if (x.hint[0]) {
            /* a value to give in italics, choices to type in bold */
            const int literal = o->type == OPT_STR && o->choices;
            printf(" ");
            for (const char *p = x.hint + 1; *p;) {
                size_t len = strcspn(p, "|");
                char w[64];
                snprintf(w, sizeof w, "%.*s", (int)len, p);
                printf("%s", literal ? "\\fB" : "\\fI");
                cli_roff(stdout, w, 0);
                printf("\\fR%s", p[len] ? "|" : "");
                p += len + (p[len] == '|');
            }
        }
        printf("\n");
        cli_roff(stdout, o->help, 1);
        if (x.range_shown) {
            printf(o->type == OPT_STR ? ": " : " (");
            cli_roff(stdout, x.range, 0);
            printf(o->type == OPT_STR ? "" : ")");
        }
        printf(".");
        if (x.inactive) {
            printf(" ");
            cli_roff(stdout, sp->inactive_text, 0);
            printf(".");
        } else if (x.def[0]) {
            printf(" Default: ");
            cli_roff(stdout, x.def, 0);
            printf(".");
        }
        printf("\n");
    }
}

void cli_help(const cli_spec *sp)
{
    table t;
    build_table(sp, &t);
    if (man_what) {
        man_help(sp, &t);
        return;
    }
    printf("usage: jem %s %s\n", sp->name, sp->usage);
    if (sp->note) printf("%s\n", sp->note);
    printf("\noptions:\n");
    for (const cli_opt *o = t.all; o->name; o++) {
        if (o->flags & OPT_HIDDEN) continue;
        opt_text x;
        option_text(sp, o, &x);
        char left[96];
        snprintf(left, sizeof left, "--%s%s", o->name, x.hint);
        printf("  %-24s %s", left, o->help);
        if (x.range_shown) printf(o->type == OPT_STR ? ": %s" : " (%s)", x.range);
        if (x.inactive) printf(" [%s]", sp->inactive_text);
        else if (x.def[0]) printf(" [default %s]", x.def);
        printf("\n");
    }
    printf("  %-24s %s\n", "--help", "this text");
}

cli_opt *cli_find(const cli_spec *sp, const char *name)
{
    for (cli_opt *o = sp->opts; o && o->name; o++)
        if (!strcmp(o->name, name)) return o;
    return NULL;
}

int cli_given(const cli_spec *sp, const char *name)
{
    const cli_opt *o = cli_find(sp, name);
    return o && o->seen;
}

/* -------------------------------------------------------------- parsing */

static int set_value(const char *cmd, cli_opt *o, const char *v)
{
    char *end;
    double x = 0;
    errno = 0;
    switch (o->type) {
    case OPT_FLAG: *(int *)o->ptr = 1; return 0;
    case OPT_STR: *(const char **)o->ptr = v; return 0;
    case OPT_INT:
    case OPT_I64: {
        long long iv = strtoll(v, &end, 10);
        if (errno || end == v || *end || (o->type == OPT_INT && (iv < INT_MIN || iv > INT_MAX))) break;
        x = (double)iv;
        if (o->type == OPT_INT) *(int *)o->ptr = (int)iv;
        else *(int64_t *)o->ptr = iv;
        goto ranged;
    }
    case OPT_U64: {
        if (*v == '-') break;
        unsigned long long uv = strtoull(v, &end, 10);
        if (errno || end == v || *end) break;
        *(uint64_t *)o->ptr = uv;
        x = (double)uv;
        goto ranged;
    }
    case OPT_FLOAT:
    case OPT_DOUBLE: {
        x = strtod(v, &end);
        if (errno || end == v || *end || !isfinite(x)) break;
        if (o->type == OPT_FLOAT && fabs(x) > FLT_MAX) break; /* would become infinite */
        if (o->type == OPT_FLOAT) {
            /* the range holds for the value as stored: 1e-50 is 0 as a float */
            *(float *)o->ptr = (float)x;
            x = (double)(float)x;
        } else {
            *(double *)o->ptr = x;
        }
        goto ranged;
    }
    }
    {
        char range[160];
        range_text(o, range, sizeof range);
        if (!range[0]) snprintf(range, sizeof range, "%s", is_integer(o->type) ? "an integer" : "a number");
        return cli_usage_error(cmd, "--%s '%s': not a valid value (want %s)", o->name, v, range);
    }
ranged:
    if (o->ranged && (x < o->min || x > o->max || (o->ranged == 2 && x == o->min) || (o->ranged == 3 && x == o->max))) {
        char range[160];
        range_text(o, range, sizeof range);
        return cli_usage_error(cmd, "--%s %s: out of range (want %s)", o->name, v, range);
    }
    return 0;
}

static int parse(const cli_spec *sp, table *t, cli_ctx *cx, int argc, char **argv)
{
    const char *cmd = sp->name;
    for (int i = 2; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_help(sp);
            cx->help = 1;
            return 0;
        }
        if (a[0] == '-' && a[1] == '-' && a[2]) {
            const char *name = a + 2, *eq = strchr(name, '=');
            size_t len = eq ? (size_t)(eq - name) : strlen(name);
            cli_opt *o = NULL;
            for (cli_opt *p = t->all; p->name; p++)
                if (strlen(p->name) == len && !strncmp(p->name, name, len)) {
                    o = p;
                    break;
                }
            if (!o)
                return cli_usage_error(cmd, "unknown option '%.*s' ('jem %s --help' lists them)", (int)(len + 2), a,
                                       cmd);
            const char *v;
            if (o->type == OPT_FLAG) {
                if (eq) return cli_usage_error(cmd, "--%s takes no value", o->name);
                v = "1";
            } else if (eq) {
                v = eq + 1;
            } else {
                if (i + 1 >= argc) return cli_usage_error(cmd, "--%s needs a value", o->name);
                v = argv[++i];
            }
            if (set_value(cmd, o, v)) return 2;
            o->seen = 1;
        } else if (sp->model == CLI_MODEL_CKPT && !t->model && cx->npos == 0) {
            t->model = a; /* the checkpoint as the first argument */
        } else {
            if (cx->npos >= sp->max_pos || cx->npos >= 4) return cli_usage_error(cmd, "unexpected argument '%s'", a);
            cx->pos[cx->npos++] = a;
        }
    }
    return -1;
}

/* ------------------------------------------------------------ the paths */

/* the folder part of a path ("." for a bare name) */
static void dir_of(const char *path, char *buf, size_t n)
{
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(buf, n, ".");
    else if (slash == path) snprintf(buf, n, "/");
    else snprintf(buf, n, "%.*s", (int)(slash - path), path);
}

int cli_check_out_file(const char *cmd, const char *opt, const char *path)
{
    struct stat sb;
    char dir[4096];
    if (!*path) return cli_usage_error(cmd, "--%s '': names no file", opt);
    if (strlen(path) >= sizeof dir) return cli_usage_error(cmd, "--%s: path too long", opt);
    if (path[strlen(path) - 1] == '/' || (stat(path, &sb) == 0 && S_ISDIR(sb.st_mode)))
        return cli_usage_error(cmd, "--%s %s: is a folder (want a file name)", opt, path);
    dir_of(path, dir, sizeof dir);
    if (stat(dir, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cli_usage_error(cmd, "--%s %s: folder %s does not exist", opt, path, dir);
    if (access(dir, W_OK | X_OK) != 0)
        return cli_usage_error(cmd, "--%s %s: cannot write in folder %s (%s)", opt, path, dir, strerror(errno));
    if (access(path, F_OK) == 0 && access(path, W_OK) != 0)
        return cli_usage_error(cmd, "--%s %s: the file is not writable (%s)", opt, path, strerror(errno));
    return 0;
}

static int check_out_dir(const char *cmd, const char *opt, const char *path)
{
    struct stat sb;
    char dir[4096];
    if (!*path) return cli_usage_error(cmd, "--%s '': names no folder", opt);
    if (strlen(path) >= sizeof dir) return cli_usage_error(cmd, "--%s: path too long", opt);
    if (stat(path, &sb) == 0) {
        if (!S_ISDIR(sb.st_mode)) return cli_usage_error(cmd, "--%s %s: exists and is not a folder", opt, path);
        if (access(path, W_OK | X_OK) != 0)
            return cli_usage_error(cmd, "--%s %s: cannot write in it (%s)", opt, path, strerror(errno));
        return 0;
    }
    snprintf(dir, sizeof dir, "%s", path);
    size_t len = strlen(dir);
    while (len > 1 && dir[len - 1] == '/') dir[--len] = 0;
    char parent[4096];
    dir_of(dir, parent, sizeof parent);
    if (stat(parent, &sb) != 0 || !S_ISDIR(sb.st_mode))
        return cli_usage_error(cmd, "--%s %s: folder %s does not exist", opt, path, parent);
    if (access(parent, W_OK | X_OK) != 0)
        return cli_usage_error(cmd, "--%s %s: cannot create it in %s (%s)", opt, path, parent, strerror(errno));
    return 0;
}

jem_status cli_make_dir(const char *path)
{
    if (mkdir(path, 0777) == 0 || errno == EEXIST) return JEM_OK;
    return jem_fail(JEM_ERR_IO, "%s: cannot create the folder: %s", path, strerror(errno));
}

static int check_in_file(const char *cmd, const char *opt, const char *path)
{
    struct stat sb;
    if (!*path) return cli_usage_error(cmd, "--%s '': names no file", opt);
    if (stat(path, &sb) != 0) return cli_usage_error(cmd, "--%s %s: %s", opt, path, strerror(errno));
    if (S_ISDIR(sb.st_mode)) return cli_usage_error(cmd, "--%s %s: is a folder (want a file)", opt, path);
    if (!S_ISREG(sb.st_mode)) return cli_usage_error(cmd, "--%s %s: not a regular file", opt, path);
    if (access(path, R_OK) != 0) return cli_usage_error(cmd, "--%s %s: %s", opt, path, strerror(errno));
    return 0;
}

static int check_spec(const char *cmd, const char *opt, const char *spec)
{
    if (!*spec) return cli_usage_error(cmd, "--%s '': names no data set", opt);
    /* noise sets without a shape take the model's: any shape passes here */
    jem_status s = jem_dataset_check(spec, 1, 1, 1);
    if (s) return cli_usage_error(cmd, "--%s %s", opt, jem_last_error());
    return 0;
}

static int check_specs(const char *cmd, const char *opt, const char *list)
{
    if (!*list) return cli_usage_error(cmd, "--%s '': names no data set", opt);
    const char *p = list;
    for (;;) {
        const char *comma = strchr(p, ',');
        size_t len = comma ? (size_t)(comma - p) : strlen(p);
        char spec[1024];
        if (len == 0) return cli_usage_error(cmd, "--%s %s: an empty data set name between commas", opt, list);
        if (len >= sizeof spec) return cli_usage_error(cmd, "--%s: a data set spec is too long", opt);
        memcpy(spec, p, len);
        spec[len] = 0;
        if (check_spec(cmd, opt, spec)) return 2;
        if (!comma) return 0;
        p = comma + 1;
    }
}

/* A safetensors file starts with its header's length (8 bytes, little
 * endian) and the header's '{'. */
static int looks_like_checkpoint(const char *path)
{
    FILE *f = fopen(path, "rb");
    if (!f) return 0;
    unsigned char b[9];
    size_t n = fread(b, 1, sizeof b, f);
    fclose(f);
    if (n < 9 || b[8] != '{') return 0;
    uint64_t len = 0;
    for (int i = 7; i >= 0; i--) len = len << 8 | b[i];
    return len > 1 && len < (100u << 20);
}

static int check_values(const cli_spec *sp, table *t)
{
    const char *cmd = sp->name;
    for (cli_opt *o = t->all; o->name; o++) {
        if (o->type != OPT_STR) continue;
        const char *v = *(const char **)o->ptr;
        if (!v || ((o->flags & OPT_IF_GIVEN) && !o->seen)) continue;
        if (o->choices) {
            int ok = 0;
            for (const char *p = o->choices; *p && !ok;) {
                size_t len = strcspn(p, "|");
                ok = strlen(v) == len && !strncmp(p, v, len);
                p += len + (p[len] == '|');
            }
            if (!ok) {
                char range[160];
                range_text(o, range, sizeof range);
                return cli_usage_error(cmd, "--%s '%s': want %s", o->name, v, range);
            }
        }
        if ((o->flags & OPT_NONEMPTY) && !*v) return cli_usage_error(cmd, "--%s must not be empty", o->name);
        if ((o->flags & OPT_IN_FILE) && check_in_file(cmd, o->name, v)) return 2;
        if ((o->flags & OPT_OUT_FILE) && cli_check_out_file(cmd, o->name, v)) return 2;
        if ((o->flags & OPT_OUT_DIR) && check_out_dir(cmd, o->name, v)) return 2;
        if ((o->flags & OPT_SPEC) && check_spec(cmd, o->name, v)) return 2;
        if ((o->flags & OPT_SPECS) && check_specs(cmd, o->name, v)) return 2;
    }
    return 0;
}

/* ---------------------------------------------------------- the preamble */

/* class names: the checkpoint's "jem.classes" (a JSON array of strings),
 * else the names the library knows for its training data */
static void load_classes(cli_ctx *cx)
{
    const int K = cx->arch->n_classes;
    const char *js = jem_st_get_meta(cx->st, "jem.classes");
    jem_json *j = NULL;
    if (js && jem_json_parse(js, strlen(js), "jem.classes", &j) == JEM_OK && j->type == JEM_JSON_ARRAY &&
        j->n == (size_t)K) {
        char **v = calloc((size_t)K, sizeof *v);
        int ok = v != NULL;
        for (int k = 0; ok && k < K; k++) {
            const char *s = jem_json_string(jem_json_at(j, (size_t)k));
            ok = s && (v[k] = strdup(s));
        }
        if (ok) {
            cx->classes = v;
            cx->n_classes = K;
        } else if (v) {
            for (int k = 0; k < K; k++) free(v[k]);
            free(v);
        }
    }
    jem_json_free(j);
    if (cx->classes) return;
    int n = 0;
    const char *const *known = jem_known_classes(jem_st_get_meta(cx->st, "jem.train.data"), &n);
    if (!known || n != K) return;
    cx->classes = calloc((size_t)K, sizeof *cx->classes);
    for (int k = 0; cx->classes && k < K; k++) cx->classes[k] = strdup(known[k]);
    cx->n_classes = cx->classes ? K : 0;
}

int cli_begin(cli_ctx *cx, const cli_spec *sp, int argc, char **argv)
{
    memset(cx, 0, sizeof *cx);
    cx->cmd = sp->name;
    cx->spec = sp;
    for (cli_opt *o = sp->opts; o && o->name; o++) o->seen = 0;
    table t;
    build_table(sp, &t);
    int r = parse(sp, &t, cx, argc, argv);
    /* the command's own entries keep what the parser saw */
    for (int i = 0, k = 0; sp->opts && sp->opts[i].name; i++) {
        while (t.all[k].name && strcmp(t.all[k].name, sp->opts[i].name)) k++;
        if (t.all[k].name) sp->opts[i].seen = t.all[k].seen;
    }
    if (r >= 0) return r;
    /* a model not found from here: the shipped one of that name */
    if (t.model) t.model = cli_find_file(t.model, cx->model_path, sizeof cx->model_path);
    cx->model = t.model;
    for (const cli_opt *o = t.all; o->name; o++)
        if (o->ptr == &t.model) cx->model_given = o->seen;
    cx->threads = t.threads;
    cx->json = t.json;
    if (sp->model == CLI_MODEL_CKPT && !cx->model)
        return cli_usage_error(sp->name, "--model CKPT is required (a checkpoint written by jem train)");
    if (check_values(sp, &t)) return 2;
    cx->precision = JEM_PRECISION_FP32;
    if (sp->precision && jem_precision_parse(t.precision, &cx->precision))
        return cli_usage_error(sp->name, "--precision %s", jem_last_error());
    if (cx->model && sp->model == CLI_MODEL_CKPT && !looks_like_checkpoint(cx->model))
        return cli_usage_error(sp->name, "--model %s: not a checkpoint (a .safetensors file written by jem train)%s",
                               cx->model,
                               jem_arch_load(cx->model, &(jem_arch){0}) == JEM_OK
                                   ? "; it is a model description: train it with jem train --model"
                                   : "");
    if (cx->model && sp->model == CLI_MODEL_DESC && looks_like_checkpoint(cx->model))
        return cli_usage_error(sp->name,
                               "--model %s: is a checkpoint; %s --model takes a model description "
                               "(a text file such as models/wrn-fmnist.model)%s",
                               cx->model, sp->name,
                               !strcmp(sp->name, "train")
                                   ? ": use --resume to continue its training or --init-from to start from its weights"
                                   : "");
    /* the kernel settings in the environment (JEM_KERNELS, JEM_WINOGRAD_TILE,
     * JEM_FUSE): every command runs or loads a network */
    if (jem_conv_settings_check()) return cli_usage_error(sp->name, "%s", jem_last_error());
    if (sp->check && (r = sp->check(cx, sp->ud))) return r;
    if (check_only) return 0;
    jem_set_threads(cx->threads);
    cx->tty = isatty(2) && !cx->json && jem_dist_rank() == 0;
    if (sp->model == CLI_MODEL_CKPT) {
        jem_status s = jem_st_open(cx->model, &cx->st);
        if (!s) s = jem_ckpt_from_st(cx->st, cx->model, &cx->net);
        if (s) {
            cli_end(cx);
            return cli_fail(sp->name, s);
        }
        cx->arch = jem_net_arch(cx->net);
        load_classes(cx);
        jem_net_set_precision(cx->net, cx->precision); /* checked above */
    }
    return -1;
}

void cli_end(cli_ctx *cx)
{
    for (int k = 0; cx->classes && k < cx->n_classes; k++) free(cx->classes[k]);
    free(cx->classes);
    jem_net_free(cx->net);
    jem_st_free(cx->st);
    cx->classes = NULL;
    cx->net = NULL;
    cx->st = NULL;
}

/* ------------------------------------------------------------- the data */

jem_status cli_open_data(const cli_ctx *cx, const char *opt, const char *spec, jem_dataset *ds)
{
    const jem_arch *a = cx->arch;
    jem_status s = jem_dataset_open_as(spec, a->in_c, a->in_h, a->in_w, ds);
    if (s) {
        char msg[1200];
        snprintf(msg, sizeof msg, "%s", jem_last_error());
        return jem_fail(s, "--%s %s", opt, msg);
    }
    /* a folder's classes are numbered in the byte order of their names: say so */
    if (!strncmp(spec, "png:", 4) && ds->classes && !cx->json && jem_dist_rank() == 0) {
        fprintf(stderr, "jem %s: %s: %d classes, numbered in the byte order of the folder names:", cx->cmd, spec,
                ds->n_classes);
        for (int k = 0; k < ds->n_classes; k++) fprintf(stderr, "%s %d %s", k ? "," : "", k, ds->classes[k]);
        fputc('\n', stderr);
    }
    return JEM_OK;
}

const char *cli_fmnist_train_of(const char *spec, char *buf, size_t n)
{
    const char *rest;
    if (!strncmp(spec, "fmnist:train", 12)) rest = spec + 12;
    else if (!strncmp(spec, "fmnist:test", 11)) rest = spec + 11;
    else return NULL;
    if (*rest && strncmp(rest, ":classes=", 9)) return NULL;
    int len = snprintf(buf, n, "fmnist:train%s", rest);
    return len > 0 && (size_t)len < n ? buf : NULL;
}

int cli_is_fmnist_train(const char *spec)
{
    char buf[1100];
    const char *t = cli_fmnist_train_of(spec, buf, sizeof buf);
    return t && !strcmp(t, spec);
}

jem_status cli_check_labels(const cli_ctx *cx, const char *opt, const jem_dataset *ds, int need_all)
{
    const int K = cx->arch->n_classes;
    int labelled = 0;
    for (int i = 0; i < ds->n; i++) {
        const int y = ds->y[i];
        if (y >= 0 && y < K) {
            labelled++;
            continue;
        }
        if (y < 0 && need_all)
            return jem_fail(JEM_ERR_ARG,
                            "--%s %s: image %d has no label; jem %s needs labelled data "
                            "(noise: and interp: sets have none)",
                            opt, ds->name, i, cx->cmd);
        if (y >= K)
            return jem_fail(JEM_ERR_ARG, "--%s %s: image %d has label %d, but the model has %d classes (0 to %d)", opt,
                            ds->name, i, y, K, K - 1);
    }
    if (!labelled)
        return jem_fail(JEM_ERR_ARG,
                        "--%s %s: no image has a label; jem %s needs labelled data (noise: and "
                        "interp: sets have none)",
                        opt, ds->name, cx->cmd);
    return JEM_OK;
}

int cli_spec_unlabelled(const char *spec) { return !strncmp(spec, "noise:", 6) || !strncmp(spec, "interp:", 7); }

const char *cli_class_name(const cli_ctx *cx, int k, char *buf, size_t n)
{
    if (cx->classes && k >= 0 && k < cx->n_classes) return cx->classes[k];
    snprintf(buf, n, "%d", k);
    return buf;
}

/* ------------------------------------------------------------- progress */

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

void cli_fmt_time(double s, char *buf, size_t n)
{
    if (s < 0) {
        snprintf(buf, n, "?");
        return;
    }
    long t = (long)(s + 0.5);
    if (t >= 3600) snprintf(buf, n, "%ld:%02ld:%02ld", t / 3600, t / 60 % 60, t % 60);
    else snprintf(buf, n, "%ld:%02ld", t / 60, t % 60);
}

void cli_bar_text(char *buf, size_t n, double frac)
{
    const int w = 20;
    if (frac < 0 || n < (size_t)w + 4) {
        buf[0] = 0;
        return;
    }
    int f = (int)(w * frac);
    if (f > w) f = w;
    buf[0] = '[';
    for (int i = 0; i < w; i++) buf[1 + i] = i < f ? '#' : '.';
    buf[w + 1] = ']';
    buf[w + 2] = ' ';
    buf[w + 3] = 0;
}

static void bar_draw(cli_bar *b, int64_t done)
{
    char bar[32], el[32], eta[32];
    const double t = now_s() - b->t0, frac = b->total > 0 ? (double)done / b->total : 0;
    cli_bar_text(bar, sizeof bar, frac);
    cli_fmt_time(t, el, sizeof el);
    cli_fmt_time(done > 0 && b->total > 0 ? t * (b->total - done) / done : -1, eta, sizeof eta);
    fprintf(stderr, "\r\033[K%s%s %3.0f%% %s eta %s", bar, b->what, 100 * frac, el, eta);
    fflush(stderr);
}

void cli_bar_start(cli_bar *b, const cli_ctx *cx, const char *what, int64_t total)
{
    b->on = cx->tty;
    snprintf(b->what, sizeof b->what, "%s%s", cx->bar_prefix ? cx->bar_prefix : "", what);
    b->total = total;
    b->t0 = now_s();
    b->last = 0;
    if (b->on) bar_draw(b, 0);
}

void cli_bar_set(cli_bar *b, int64_t done)
{
    if (!b->on) return;
    const double t = now_s();
    if (t - b->last < 0.1 && done < b->total) return;
    b->last = t;
    bar_draw(b, done);
}

void cli_bar_end(cli_bar *b)
{
    if (!b->on) return;
    fprintf(stderr, "\r\033[K");
    fflush(stderr);
}

void cli_bar_cb64(void *ud, int64_t done, int64_t total)
{
    cli_bar *b = ud;
    if (total != b->total) b->total = total;
    cli_bar_set(b, done);
}

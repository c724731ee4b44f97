/* Model descriptions: "key = value" text files in models/. */
#include "jem.h"

#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *jem_act_name(jem_act a)
{
    switch (a) {
    case JEM_ACT_LRELU: return "lrelu";
    case JEM_ACT_RELU: return "relu";
    case JEM_ACT_SILU: return "silu";
    }
    return "?";
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int parse_int(const char *s, long lo, long hi, int *out)
{
    char *end;
    errno = 0;
    long v = strtol(s, &end, 10);
    if (errno || end == s || *trim(end) || v < lo || v > hi) return -1;
    *out = (int)v;
    return 0;
}

jem_status jem_arch_parse(const char *text, const char *fname, jem_arch *a)
{
    memset(a, 0, sizeof *a);
    a->act = JEM_ACT_LRELU;
    a->slope = 0.2f;
    snprintf(a->name, sizeof a->name, "model");
    int have_input = 0, have_classes = 0, have_stem = 0, have_blocks = 0;
    const char *p = text;
    int lineno = 0;
    char line[1024];
    while (*p) {
        lineno++;
        size_t len = strcspn(p, "\n");
        if (len >= sizeof line) return jem_fail(JEM_ERR_FORMAT, "%s:%d: line too long", fname, lineno);
        memcpy(line, p, len);
        line[len] = 0;
        p += len + (p[len] == '\n');
        char *hash = strchr(line, '#');
        if (hash) *hash = 0;
        char *s = trim(line);
        if (!*s) continue;
        char *eq = strchr(s, '=');
        if (!eq) return jem_fail(JEM_ERR_FORMAT, "%s:%d: expected 'key = value', got '%s'", fname, lineno, s);
        *eq = 0;
        char *key = trim(s), *val = trim(eq + 1);
        if (!*val) return jem_fail(JEM_ERR_FORMAT, "%s:%d: empty value for '%s'", fname, lineno, key);
        if (!strcmp(key, "name")) {
            if (strlen(val) >= sizeof a->name) return jem_fail(JEM_ERR_FORMAT, "%s:%d: name too long", fname, lineno);
            snprintf(a->name, sizeof a->name, "%s", val);
        } else if (!strcmp(key, "input")) {
            int c, h, w, n = 0;
            if (sscanf(val, "%dx%dx%d%n", &c, &h, &w, &n) != 3 || val[n] || c < 1 || c > 64 || h < 1 || h > 1024 ||
                w < 1 || w > 1024)
                return jem_fail(JEM_ERR_FORMAT, "%s:%d: input must be CxHxW (e.g. 1x28x28), got '%s'", fname, lineno,
                                val);
            a->in_c = c;
            a->in_h = h;
            a->in_w = w;
            have_input = 1;
        } else if (!strcmp(key, "classes")) {
            if (parse_int(val, 1, 100000, &a->n_classes))
                return jem_fail(JEM_ERR_FORMAT, "%s:%d: classes must be an integer in [1, 100000], got '%s'", fname,
                                lineno, val);
            have_classes = 1;
        } else if (!strcmp(key, "stem")) {
            if (parse_int(val, 1, 4096, &a->stem))
                return jem_fail(JEM_ERR_FORMAT, "%s:%d: stem must be an integer in [1, 4096], got '%s'", fname, lineno,
                                val);
            have_stem = 1;
        } else if (!strcmp(key, "blocks")) {
            a->n_blocks = 0;
            char *save = NULL;
            for (char *tok = strtok_r(val, " \t,", &save); tok; tok = strtok_r(NULL, " \t,", &save)) {
                int wd, sd, n = 0;
                if (a->n_blocks >= JEM_MAX_BLOCKS)
                    return jem_fail(JEM_ERR_FORMAT, "%s:%d: more than %d blocks", fname, lineno, JEM_MAX_BLOCKS);
                if (sscanf(tok, "%d/%d%n", &wd, &sd, &n) != 2 || tok[n] || wd < 1 || wd > 4096 || (sd != 1 && sd != 2))
                    return jem_fail(JEM_ERR_FORMAT, "%s:%d: block '%s' must be WIDTH/STRIDE with stride 1 or 2", fname,
                                    lineno, tok);
                a->width[a->n_blocks] = wd;
                a->stride[a->n_blocks] = sd;
                a->n_blocks++;
            }
            have_blocks = 1;
        } else if (!strcmp(key, "activation")) {
            if (!strcmp(val, "lrelu")) a->act = JEM_ACT_LRELU;
            else if (!strcmp(val, "relu")) a->act = JEM_ACT_RELU;
            else if (!strcmp(val, "silu") || !strcmp(val, "swish")) a->act = JEM_ACT_SILU;
            else
                return jem_fail(JEM_ERR_FORMAT, "%s:%d: unknown activation '%s' (lrelu, relu, silu)", fname, lineno,
                                val);
        } else if (!strcmp(key, "slope")) {
            char *end;
            errno = 0;
            double v = strtod(val, &end);
            if (errno || end == val || *trim(end) || !(v >= 0.0 && v < 1.0))
                return jem_fail(JEM_ERR_FORMAT, "%s:%d: slope must be a number in [0, 1), got '%s'", fname, lineno,
                                val);
            a->slope = (float)v;
        } else {
            return jem_fail(JEM_ERR_FORMAT,
                            "%s:%d: unknown key '%s' (name, input, classes, stem, blocks, activation, slope)", fname,
                            lineno, key);
        }
    }
    if (!have_input) return jem_fail(JEM_ERR_FORMAT, "%s: missing 'input = CxHxW'", fname);
    if (!have_classes) return jem_fail(JEM_ERR_FORMAT, "%s: missing 'classes'", fname);
    if (!have_stem) return jem_fail(JEM_ERR_FORMAT, "%s: missing 'stem'", fname);
    if (!have_blocks || a->n_blocks == 0) return jem_fail(JEM_ERR_FORMAT, "%s: missing 'blocks'", fname);
    int h = a->in_h, w = a->in_w;
    for (int i = 0; i < a->n_blocks; i++) {
        h = (h - 1) / a->stride[i] + 1;
        w = (w - 1) / a->stride[i] + 1;
    }
    if (h < 1 || w < 1)
        return jem_fail(JEM_ERR_SHAPE, "%s: input %dx%d is too small for the block strides", fname, a->in_h, a->in_w);
    return JEM_OK;
}

jem_status jem_arch_load(const char *path, jem_arch *a)
{
    char *text = NULL;
    size_t n = 0;
    FILE *f = fopen(path, "rb");
    if (!f) return jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path, strerror(errno));
    text = malloc(65537);
    if (!text) {
        fclose(f);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    }
    n = fread(text, 1, 65537, f);
    int err = ferror(f);
    fclose(f);
    if (err) {
        free(text);
        return jem_fail(JEM_ERR_IO, "%s: read error", path);
    }
    if (n > 65536) {
        free(text);
        return jem_fail(JEM_ERR_FORMAT, "%s: model description larger than 64 KiB", path);
    }
    text[n] = 0;
    if (memchr(text, 0, n)) {
        free(text);
        return jem_fail(JEM_ERR_FORMAT, "%s: binary data in model description", path);
    }
    jem_status s = jem_arch_parse(text, path, a);
    free(text);
    return s;
}

int jem_arch_format(const jem_arch *a, char *buf, size_t n)
{
    char blocks[JEM_MAX_BLOCKS * 16] = "";
    size_t off = 0;
    for (int i = 0; i < a->n_blocks; i++)
        off += (size_t)snprintf(blocks + off, sizeof blocks - off, "%s%d/%d", i ? " " : "", a->width[i], a->stride[i]);
    return snprintf(buf, n,
                    "name = %s\ninput = %dx%dx%d\nclasses = %d\nstem = %d\nblocks = %s\n"
                    "activation = %s\nslope = %.9g\n",
                    a->name, a->in_c, a->in_h, a->in_w, a->n_classes, a->stem, blocks, jem_act_name(a->act),
                    (double)a->slope);
}

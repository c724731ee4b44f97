/* jem info: what a checkpoint holds; jem export: model weights only. */
#include "cli/cli.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <string.h>
#include <sys/stat.h>

static const char *dt_name(jem_dtype d)
{
    const char *n = jem_dtype_name(d);
    return n ? n : "?";
}

/* Compare the model weights of two checkpoints of the same architecture:
 * the largest absolute difference, and the largest relative to the tensor's
 * largest magnitude, over every parameter. */
static int diff_models(const char *pa, const char *pb, int json)
{
    jem_net *a = NULL, *b = NULL;
    jem_status s = jem_ckpt_load(pa, &a);
    if (!s) s = jem_ckpt_load(pb, &b);
    if (s) {
        jem_net_free(a);
        return cli_fail("info", s);
    }
    if (jem_net_nparams(a) != jem_net_nparams(b) || jem_net_ntensors(a) != jem_net_ntensors(b)) {
        fprintf(stderr, "jem info: error: %s and %s hold different models\n", pa, pb);
        jem_net_free(a);
        jem_net_free(b);
        return 1;
    }
    double max_abs = 0, max_rel = 0;
    const char *worst = "";
    for (int t = 0; t < jem_net_ntensors(a); t++) {
        const jem_param *ta = jem_net_tensor(a, t), *tb = jem_net_find(b, ta->name);
        if (!tb || tb->numel != ta->numel) {
            fprintf(stderr, "jem info: error: tensor %s differs in shape between %s and %s\n", ta->name, pa, pb);
            jem_net_free(a);
            jem_net_free(b);
            return 1;
        }
        const float *xa = jem_net_params(a) + ta->offset, *xb = jem_net_params(b) + tb->offset;
        double scale = 0, dmax = 0;
        for (size_t i = 0; i < ta->numel; i++) {
            double m = fabs((double)xa[i]);
            if (m > scale) scale = m;
            double d = fabs((double)xa[i] - (double)xb[i]);
            if (!(d <= dmax)) dmax = d; /* NaN propagates */
        }
        double rel = dmax / (scale > 0 ? scale : 1);
        if (!(dmax <= max_abs)) max_abs = dmax;
        if (!(rel <= max_rel)) {
            max_rel = rel;
            worst = ta->name;
        }
    }
    if (json)
        printf("{\"max_abs_diff\":%.9g,\"max_rel_diff\":%.9g,\"worst_tensor\":\"%s\",\"parameters\":%zu}\n", max_abs,
               max_rel, worst, jem_net_nparams(a));
    else
        printf("%zu parameters: max |a - b| %.3g, max relative %.3g (%s)\n", jem_net_nparams(a), max_abs, max_rel,
               worst);
    jem_net_free(a);
    jem_net_free(b);
    return 0;
}

static int info_check(cli_ctx *cx, void *ud)
{
    (void)ud;
    if (!cx->npos) return cli_usage_error("info", "a checkpoint path is required");
    struct stat sb;
    if (stat(cx->pos[0], &sb) != 0) return cli_usage_error("info", "%s: %s", cx->pos[0], strerror(errno));
    return 0;
}

int cmd_info(int argc, char **argv)
{
    const char *diff = NULL;
    cli_opt opts[] = {{OPT("diff", OPT_STR, &diff, "compare the weights with this checkpoint's"), .flags = OPT_IN_FILE},
                      CLI_END};
    const cli_spec sp = {.name = "info",
                         .usage = "CKPT [--json] [--diff OTHER]",
                         .opts = opts,
                         .json = 1,
                         .max_pos = 1,
                         .check = info_check};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    const int json = cx.json;
    const char *pos[1] = {cx.pos[0]};
    if (diff) return diff_models(pos[0], diff, json);
    jem_st *st = NULL;
    jem_status s = jem_st_open(pos[0], &st);
    if (s) return cli_fail("info", s);
    jem_net *net = NULL;
    s = jem_ckpt_from_st(st, pos[0], &net);
    if (s) {
        jem_st_free(st);
        return cli_fail("info", s);
    }
    const jem_arch *a = jem_net_arch(net);
    jem_jw w;
    jem_jw_init(&w);
    if (json) {
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "path", pos[0]);
        jem_jw_kstr(&w, "model", a->name);
        jem_jw_kint(&w, "parameters", (int64_t)jem_net_nparams(net));
        jem_jw_kdouble(&w, "mflops_per_image", 2 * jem_net_macs(net) / 1e6);
        jem_jw_key(&w, "tensors");
        jem_jw_obj_begin(&w);
    } else {
        char desc[2048];
        jem_arch_format(a, desc, sizeof desc);
        printf("checkpoint  %s\nparameters  %zu\nforward     %.1f MFLOP per image\n\nmodel description:\n%s\n"
               "tensors:\n",
               pos[0], jem_net_nparams(net), 2 * jem_net_macs(net) / 1e6, desc);
    }
    for (int i = 0; i < jem_st_count(st); i++) {
        const char *nm = jem_st_name(st, i);
        jem_dtype dt;
        int nd;
        int64_t shp[8];
        jem_st_get(st, nm, &dt, &nd, shp);
        if (json) {
            jem_jw_key(&w, nm);
            jem_jw_obj_begin(&w);
            jem_jw_kstr(&w, "dtype", dt_name(dt));
            jem_jw_key(&w, "shape");
            jem_jw_arr_begin(&w);
            for (int k = 0; k < nd; k++) jem_jw_int(&w, shp[k]);
            jem_jw_arr_end(&w);
            jem_jw_obj_end(&w);
        } else {
            printf("  %-16s %s (", nm, dt_name(dt));
            for (int k = 0; k < nd; k++) printf("%s%lld", k ? ", " : "", (long long)shp[k]);
            printf(")\n");
        }
    }
    if (json) {
        jem_jw_obj_end(&w);
        jem_jw_key(&w, "metadata");
        jem_jw_obj_begin(&w);
        for (int i = 0; i < jem_st_meta_count(st); i++) {
            const char *k = jem_st_meta_key(st, i);
            jem_jw_kstr(&w, k, jem_st_get_meta(st, k));
        }
        jem_jw_obj_end(&w);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
    } else {
        printf("\nmetadata:\n");
        for (int i = 0; i < jem_st_meta_count(st); i++) {
            const char *k = jem_st_meta_key(st, i);
            if (!strcmp(k, "jem.arch")) continue;
            printf("  %-20s %s\n", k, jem_st_get_meta(st, k));
        }
    }
    jem_jw_free(&w);
    jem_net_free(net);
    jem_st_free(st);
    return 0;
}

/* the same file, through any path */
static int same_file(const char *a, const char *b)
{
    struct stat sa, sb;
    return stat(a, &sa) == 0 && stat(b, &sb) == 0 && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

static int export_check(cli_ctx *cx, void *ud)
{
    (void)ud;
    if (cx->npos != 2) return cli_usage_error("export", "need an input and an output path (IN OUT)");
    const char *in = cx->pos[0], *out = cx->pos[1];
    struct stat sb;
    if (stat(in, &sb) != 0) return cli_usage_error("export", "%s: %s", in, strerror(errno));
    if (!strcmp(in, out) || same_file(in, out))
        return cli_usage_error("export",
                               "%s and %s are the same file: export writes a new file and keeps the "
                               "checkpoint with its training state",
                               in, out);
    return cli_check_out_file("export", "OUT", out);
}

int cmd_export(int argc, char **argv)
{
    cli_opt opts[] = {CLI_END};
    const cli_spec sp = {
        .name = "export", .usage = "IN.safetensors OUT.safetensors", .opts = opts, .max_pos = 2, .check = export_check};
    cli_ctx cx;
    int r = cli_begin(&cx, &sp, argc, argv);
    if (r >= 0) return r;
    const char *pos[2] = {cx.pos[0], cx.pos[1]};
    jem_st *st = NULL;
    jem_status s = jem_st_open(pos[0], &st);
    if (s) return cli_fail("export", s);
    jem_net *net = NULL;
    s = jem_ckpt_from_st(st, pos[0], &net);
    if (s) {
        jem_st_free(st);
        return cli_fail("export", s);
    }
    /* keep the descriptive metadata (with jem.train.ema: the weights are a
     * moving average; the adversarial training's settings), drop the
     * training state */
    const char *meta[64];
    int nm = 0;
    for (int i = 0; i < jem_st_meta_count(st) && nm < 62; i++) {
        const char *k = jem_st_meta_key(st, i);
        if (!strcmp(k, "jem.arch") || !strcmp(k, "jem.version") || !strcmp(k, "format")) continue;
        if (!strncmp(k, "jem.train.", 10) && strcmp(k, "jem.train.command") && strcmp(k, "jem.train.iter") &&
            strcmp(k, "jem.train.mode") && strcmp(k, "jem.train.data") && strcmp(k, "jem.train.ema") &&
            strncmp(k, "jem.train.adv", 13) && strcmp(k, "jem.train.trades_beta"))
            continue;
        meta[nm++] = k;
        meta[nm++] = jem_st_get_meta(st, k);
    }
    meta[nm] = NULL;
    meta[nm + 1] = NULL;
    s = jem_ckpt_save(pos[1], net, meta);
    jem_net_free(net);
    jem_st_free(st);
    if (s) return cli_fail("export", s);
    return 0;
}

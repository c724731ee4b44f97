/* jem info: what a checkpoint holds; jem export: model weights only. */
#include "cli/cli.h"
#include "io/json.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

static const char *dt_name(jem_dtype d)
{
    switch (d) {
    case JEM_DT_F32: return "F32";
    case JEM_DT_F64: return "F64";
    case JEM_DT_I32: return "I32";
    case JEM_DT_I64: return "I64";
    case JEM_DT_U8: return "U8";
    }
    return "?";
}

/* Compare the model weights of two checkpoints of the same architecture:
 * the largest absolute difference, and the largest relative to the tensor's
 * largest magnitude, over every parameter. */
static int diff_models(const char *pa, const char *pb, int json)
{
    jem_net *a = NULL, *b = NULL;
    jem_status s = jem_ckpt_load(pa, &a);
    if (!s) s = jem_ckpt_load(pb, &b);
    if (s) { jem_net_free(a); return cli_fail("info", s); }
    if (jem_net_nparams(a) != jem_net_nparams(b) || jem_net_ntensors(a) != jem_net_ntensors(b)) {
        fprintf(stderr, "jem info: error: %s and %s hold different models\n", pa, pb);
        jem_net_free(a); jem_net_free(b);
        return 1;
    }
    double max_abs = 0, max_rel = 0;
    const char *worst = "";
    for (int t = 0; t < jem_net_ntensors(a); t++) {
        const jem_param *ta = jem_net_tensor(a, t), *tb = jem_net_find(b, ta->name);
        if (!tb || tb->numel != ta->numel) {
            fprintf(stderr, "jem info: error: tensor %s differs in shape between %s and %s\n", ta->name, pa, pb);
            jem_net_free(a); jem_net_free(b);
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
        if (!(rel <= max_rel)) { max_rel = rel; worst = ta->name; }
    }
    if (json) printf("{\"max_abs_diff\":%.9g,\"max_rel_diff\":%.9g,\"worst_tensor\":\"%s\",\"parameters\":%zu}\n",
                     max_abs, max_rel, worst, jem_net_nparams(a));
    else printf("%zu parameters: max |a - b| %.3g, max relative %.3g (%s)\n", jem_net_nparams(a), max_abs, max_rel, worst);
    jem_net_free(a); jem_net_free(b);
    return 0;
}

int cmd_info(int argc, char **argv)
{
    int json = 0;
    const char *diff = NULL;
    const cli_opt opts[] = {{"json", OPT_FLAG, &json, "print as JSON"},
                            {"diff", OPT_STR, &diff, "compare the weights with this checkpoint's"},
                            {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("info", "CKPT [--json] [--diff OTHER]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (!npos) { fprintf(stderr, "jem info: error: a checkpoint path is required\n"); return 2; }
    if (diff) return diff_models(pos[0], diff, json);
    jem_st *st = NULL;
    jem_status s = jem_st_open(pos[0], &st);
    if (s) return cli_fail("info", s);
    jem_net *net = NULL;
    s = jem_ckpt_from_st(st, pos[0], &net);
    if (s) { jem_st_free(st); return cli_fail("info", s); }
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
        printf("checkpoint  %s\nparameters  %zu\nforward     %.1f MFLOP per image\n\nmodel description:\n%s\ntensors:\n",
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

int cmd_export(int argc, char **argv)
{
    const cli_opt opts[] = {{NULL, 0, NULL, NULL}};
    const char *pos[2];
    int npos;
    int r = cli_parse("export", "IN.safetensors OUT.safetensors", opts, argc, argv, 2, pos, 2, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos != 2) { fprintf(stderr, "jem export: error: need an input and an output path\n"); return 2; }
    jem_st *st = NULL;
    jem_status s = jem_st_open(pos[0], &st);
    if (s) return cli_fail("export", s);
    jem_net *net = NULL;
    s = jem_ckpt_from_st(st, pos[0], &net);
    if (s) { jem_st_free(st); return cli_fail("export", s); }
    /* keep the descriptive metadata, drop the training state */
    const char *meta[64];
    int nm = 0;
    for (int i = 0; i < jem_st_meta_count(st) && nm < 62; i++) {
        const char *k = jem_st_meta_key(st, i);
        if (!strcmp(k, "jem.arch") || !strcmp(k, "jem.version") || !strcmp(k, "format")) continue;
        if (!strncmp(k, "jem.train.", 10) && strcmp(k, "jem.train.command") && strcmp(k, "jem.train.iter") &&
            strcmp(k, "jem.train.mode") && strcmp(k, "jem.train.data"))
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

/* jem info: what a checkpoint holds; jem export: model weights only. */
#include "cli/cli.h"
#include "io/json.h"

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

int cmd_info(int argc, char **argv)
{
    int json = 0;
    const cli_opt opts[] = {{"json", OPT_FLAG, &json, "print as JSON"}, {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("info", "CKPT [--json]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (!npos) { fprintf(stderr, "jem info: error: a checkpoint path is required\n"); return 2; }
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

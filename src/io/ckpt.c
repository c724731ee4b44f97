/* Model checkpoints: safetensors with PyTorch state_dict names and layouts,
 * the model description in the "jem.arch" metadata. */
#include "jem.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

jem_status jem_ckpt_add_model(jem_st *st, jem_net *net)
{
    char arch[2048];
    if (jem_arch_format(jem_net_arch(net), arch, sizeof arch) >= (int)sizeof arch)
        return jem_fail(JEM_ERR_ARG, "model description too long");
    jem_status s = jem_st_meta(st, "jem.arch", arch);
    if (!s) s = jem_st_meta(st, "jem.version", JEM_VERSION);
    if (!s) s = jem_st_meta(st, "format", "pt");
    const float *p = jem_net_params(net);
    for (int i = 0; i < jem_net_ntensors(net) && !s; i++) {
        const jem_param *t = jem_net_tensor(net, i);
        int64_t shape[4];
        for (int d = 0; d < t->ndim; d++) shape[d] = t->shape[d];
        s = jem_st_add(st, t->name, JEM_DT_F32, t->ndim, shape, p + t->offset);
    }
    return s;
}

jem_status jem_ckpt_save(const char *path, jem_net *net, const char *const *meta_kv)
{
    jem_st *st = NULL;
    jem_status s = jem_st_new(&st);
    if (s) return s;
    s = jem_ckpt_add_model(st, net);
    for (int i = 0; meta_kv && meta_kv[i] && meta_kv[i + 1] && !s; i += 2)
        s = jem_st_meta(st, meta_kv[i], meta_kv[i + 1]);
    if (!s) s = jem_st_commit(st, path);
    jem_st_free(st);
    return s;
}

jem_status jem_ckpt_from_st(const jem_st *st, const char *path, jem_net **out)
{
    *out = NULL;
    const char *desc = jem_st_get_meta(st, "jem.arch");
    if (!desc) return jem_fail(JEM_ERR_FORMAT, "%s: not a jem checkpoint (no \"jem.arch\" in the metadata)", path);
    jem_arch a;
    char where[1100];
    snprintf(where, sizeof where, "%s [jem.arch]", path);
    jem_status s = jem_arch_parse(desc, where, &a);
    if (s) return s;
    jem_net *net = NULL;
    s = jem_net_create(&a, &net);
    if (s) return s;
    float *p = jem_net_params(net);
    for (int i = 0; i < jem_net_ntensors(net); i++) {
        const jem_param *t = jem_net_tensor(net, i);
        jem_dtype dt;
        int nd;
        int64_t shape[8];
        const void *d = jem_st_get(st, t->name, &dt, &nd, shape);
        if (!d) {
            /* the message first: t points into net */
            s = jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\" is missing", path, t->name);
            jem_net_free(net);
            return s;
        }
        int ok = dt == JEM_DT_F32 && nd == t->ndim;
        for (int k = 0; ok && k < nd; k++) ok = shape[k] == t->shape[k];
        if (!ok) {
            char want[64], got[96];
            int o = 0;
            for (int k = 0; k < t->ndim; k++)
                o += snprintf(want + o, sizeof want - o, "%s%d", k ? "," : "", t->shape[k]);
            o = 0;
            got[0] = 0;
            for (int k = 0; k < nd && k < 8; k++)
                o += snprintf(got + o, sizeof got - o, "%s%lld", k ? "," : "", (long long)shape[k]);
            s = jem_fail(JEM_ERR_SHAPE, "%s: tensor \"%s\" is %s (%s), the model needs F32 (%s)", path, t->name,
                         dt == JEM_DT_F32 ? "F32" : "not F32", got, want);
            jem_net_free(net);
            return s;
        }
        memcpy(p + t->offset, d, sizeof(float) * t->numel);
    }
    for (int i = 0; i < jem_st_count(st); i++) {
        const char *nm = jem_st_name(st, i);
        if (nm[0] != '_' && !jem_net_find(net, nm)) {
            jem_net_free(net);
            return jem_fail(JEM_ERR_FORMAT, "%s: tensor \"%s\" does not belong to model '%s'", path, nm, a.name);
        }
    }
    const size_t np = jem_net_nparams(net);
    for (size_t i = 0; i < np; i++)
        if (!(p[i] == p[i]) || p[i] - p[i] != 0.0f) {
            jem_net_free(net);
            return jem_fail(JEM_ERR_NONFINITE, "%s: the weights hold a non-finite value", path);
        }
    *out = net;
    return JEM_OK;
}

jem_status jem_ckpt_load(const char *path, jem_net **out)
{
    jem_st *st = NULL;
    *out = NULL;
    jem_status s = jem_st_open(path, &st);
    if (s) return s;
    s = jem_ckpt_from_st(st, path, out);
    jem_st_free(st);
    return s;
}

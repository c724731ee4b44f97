/* The network against PyTorch: fixtures written by
 * scripts/make_torch_fixtures.py (PyTorch in double precision) hold weights,
 * inputs, logits and the gradients of sum(logits * R) with respect to the
 * input and to parameters. jem must reproduce them. */
#include "jem.h"
#include "test.h"
#include "gradcheck.h"

static const float *get(const jem_st *st, const char *name, size_t want)
{
    jem_dtype dt;
    int nd;
    int64_t shp[8];
    const float *p = jem_st_get(st, name, &dt, &nd, shp);
    size_t n = 1;
    for (int i = 0; p && i < nd; i++) n *= (size_t)shp[i];
    if (!p || dt != JEM_DT_F32 || n != want) return NULL;
    return p;
}

static void check_fixture(const char *path)
{
    jem_net *net = NULL;
    jem_st *st = NULL;
    ASSERT_OK(jem_ckpt_load(path, &net));
    ASSERT_OK(jem_st_open(path, &st));
    if (!net || !st) {
        jem_net_free(net);
        jem_st_free(st);
        return;
    }
    const jem_arch *a = jem_net_arch(net);
    jem_dtype dt;
    int nd;
    int64_t shp[8];
    ASSERT(jem_st_get(st, "_x", &dt, &nd, shp) != NULL && nd == 4);
    int B = (int)shp[0];
    size_t nx = (size_t)B * a->in_c * a->in_h * a->in_w, nl = (size_t)B * a->n_classes;
    const float *x = get(st, "_x", nx), *r = get(st, "_r", nl), *ref_l = get(st, "_logits", nl);
    const float *ref_dx = get(st, "_dx", nx);
    ASSERT(x && r && ref_l && ref_dx);
    if (!x || !r || !ref_l || !ref_dx) {
        jem_net_free(net);
        jem_st_free(st);
        return;
    }
    float *logits = malloc(sizeof(float) * nl), *dx = malloc(sizeof(float) * nx);
    ASSERT_OK(jem_net_forward(net, x, B, logits));
    double el = rel_err_ff(logits, ref_l, nl);
    ASSERT_MSG(el < 1e-5, "%s: logits differ from PyTorch's: %.3g", path, el);
    jem_net_zero_grad(net);
    ASSERT_OK(jem_net_backward(net, r, dx, 1));
    double ex = rel_err_ff(dx, ref_dx, nx);
    ASSERT_MSG(ex < 1e-4, "%s: input gradient differs from PyTorch's: %.3g", path, ex);
    int ngrads = 0;
    for (int i = 0; i < jem_net_ntensors(net); i++) {
        const jem_param *p = jem_net_tensor(net, i);
        char nm[80];
        snprintf(nm, sizeof nm, "_grad.%s", p->name);
        const float *g = get(st, nm, p->numel);
        if (!g) continue;
        ngrads++;
        double e = rel_err_ff(jem_net_grads(net) + p->offset, g, p->numel);
        ASSERT_MSG(e < 1e-4, "%s: gradient of %s differs from PyTorch's: %.3g", path, p->name, e);
    }
    ASSERT_MSG(ngrads >= 4, "%s: only %d parameter gradients in the fixture", path, ngrads);
    free(logits);
    free(dx);
    jem_net_free(net);
    jem_st_free(st);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_torch");
    check_fixture(FIXTURES "/torch/tiny-silu.safetensors");
    check_fixture(FIXTURES "/torch/wrn-fmnist.safetensors");
    return t_finish();
}

/*
 * The network: a pre-activation wide-ResNet (stem conv3x3, wide blocks,
 * activation, global average pool, linear), with parameters, gradients and
 * activations each in one flat allocation.
 *
 * Wide block (input x, IC -> OC channels, stride s):
 *   a1 = act(x); h1 = conv3x3(IC->OC, 1, 1)(a1); a2 = act(h1)
 *   h2 = conv3x3(OC->OC, s, 1)(a2); out = h2 + sc(x)
 *   sc = conv1x1(IC->OC, s) when s != 1 or IC != OC, else identity.
 * Where the planner (plan.c) says so (the AVX-512 kernels take the block's
 * shapes), the whole block runs per image (block.c, "fused"); otherwise
 * layer by layer.
 */
#include "nn/nn.h"
#include "nn/plan.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <omp.h>

typedef struct {
    int ic, oc, stride, h, w, oh, ow; /* input h, w; output oh, ow */
    int has_sc;
    jem_block_plan plan;              /* the planner's for this block (plan.c) */
    int fused;                        /* conv1 and conv2 run as one (block.c); h1 channels innermost */
    int c1w, c1b, c2w, c2b, scw, scb; /* indices into the param table */
    jem_conv_shape s1, s2, ssc;       /* conv shapes for batch 1 */
    /* activation offsets in floats per image (multiply by B) */
    size_t a1, h1, a2, out; /* out holds h2 + shortcut; no a1, a2 when fused */
} blk;

struct jem_net {
    jem_arch arch;
    int ntensors;
    jem_param tensors[JEM_MAX_PARAMS];
    size_t nparams;
    float *params; /* (nparams) */
    float *grads;  /* (nparams) */

    int stem_w, stem_b, fc_w, fc_b;
    jem_conv_shape stem;
    blk blocks[JEM_MAX_BLOCKS];
    int fin_c, fin_h, fin_w; /* last block output shape */

    /* activations, per image offsets; the store holds B_cap images */
    size_t x0;          /* stem output */
    size_t af;          /* act(last block out) */
    size_t g;           /* pooled (C) */
    size_t act_per_img; /* total floats per image */
    size_t max_map;     /* largest single map per image (gradient buffers) */
    int B_cap;
    float *act;  /* (B_cap * act_per_img) */
    float *gbuf; /* 3 x (B_cap * max_map) gradient buffers */
    float *ws;   /* conv workspace, ws_threads x ws_per_thread */
    /* transformed weights of the 3x3 convolutions (stem, then c1 and c2 of
     * each block), forward and input gradient */
    jem_wcache *wc[2][1 + 2 * JEM_MAX_BLOCKS];
    jem_wcache *wsc[JEM_MAX_BLOCKS];    /* the fused blocks' 1x1 shortcut weights, (IC, OC) */
    jem_wcache *wcb[JEM_MAX_BLOCKS][6]; /* the fused blocks' bf16 Winograd weights (jem_block_desc) */
    jem_precision prec;                 /* jem_net_set_precision */
    int fwd_bf16;                       /* the last forward pass ran bf16 products */
    size_t ws_per_thread;
    int ws_threads;

    /* the last forward */
    int B;
    const float *x; /* the caller's input (not owned) */
    double macs;
};

static int add_param(jem_net *n, const char *name, int ndim, int d0, int d1, int d2, int d3)
{
    JEM_ASSERT(n->ntensors < JEM_MAX_PARAMS);
    jem_param *p = &n->tensors[n->ntensors];
    snprintf(p->name, sizeof p->name, "%s", name);
    p->ndim = ndim;
    int d[4] = {d0, d1, d2, d3};
    p->numel = 1;
    for (int i = 0; i < 4; i++) {
        p->shape[i] = i < ndim ? d[i] : 1;
        if (i < ndim) p->numel *= (size_t)d[i];
    }
    p->offset = n->nparams;
    n->nparams += (p->numel + 15) & ~(size_t)15; /* 64-byte aligned views */
    return n->ntensors++;
}

static jem_conv_shape conv_shape(int IC, int H, int W, int OC, int k, int stride, int pad)
{
    jem_conv_shape s = {1, IC, H, W, OC, k, k, stride, pad};
    return s;
}

static double conv_macs(const jem_conv_shape *s)
{
    int OH = jem_conv_out(s->H, s->KH, s->stride, s->pad), OW = jem_conv_out(s->W, s->KW, s->stride, s->pad);
    return (double)s->OC * OH * OW * s->IC * s->KH * s->KW;
}

static size_t maxz(size_t a, size_t b) { return a > b ? a : b; }

/* the activations' offsets (floats per image) and the largest map */
static void plan_acts(jem_net *n)
{
    const jem_arch *a = &n->arch;
    size_t off = 0;
    n->x0 = off;
    off += (size_t)a->stem * a->in_h * a->in_w;
    n->max_map = (size_t)a->stem * a->in_h * a->in_w;
    for (int i = 0; i < a->n_blocks; i++) {
        blk *b = &n->blocks[i];
        const size_t in = (size_t)b->ic * b->h * b->w, mid = (size_t)b->oc * b->h * b->w;
        b->a1 = off;
        off += b->fused ? 0 : in;
        b->h1 = off;
        off += mid;
        b->a2 = off;
        off += b->fused ? 0 : mid;
        b->out = off;
        off += (size_t)b->oc * b->oh * b->ow;
        n->max_map = maxz(n->max_map, maxz(in, mid));
    }
    n->af = off;
    off += (size_t)n->fin_c * n->fin_h * n->fin_w;
    n->g = off;
    off += (size_t)n->fin_c;
    n->act_per_img = off;
}

jem_status jem_net_create(const jem_arch *a, jem_net **out)
{
    *out = NULL;
    if (a->in_c < 1 || a->in_h < 1 || a->in_w < 1 || a->n_classes < 1 || a->stem < 1 || a->n_blocks < 1 ||
        a->n_blocks > JEM_MAX_BLOCKS)
        return jem_fail(JEM_ERR_ARG, "model '%s': incomplete description", a->name);
    jem_status st = jem_conv_settings_check(); /* the kernel settings in the environment */
    if (st) return st;
    jem_net *n = calloc(1, sizeof *n);
    if (!n) return jem_fail(JEM_ERR_NOMEM, "out of memory creating the network");
    n->arch = *a;
    char nm[48];
    int H = a->in_h, W = a->in_w, C = a->in_c;
    n->stem_w = add_param(n, "stem.weight", 4, a->stem, C, 3, 3);
    n->stem_b = add_param(n, "stem.bias", 1, a->stem, 0, 0, 0);
    n->stem = conv_shape(C, H, W, a->stem, 3, 1, 1);
    n->macs = conv_macs(&n->stem);
    C = a->stem;
    for (int i = 0; i < a->n_blocks; i++) {
        blk *b = &n->blocks[i];
        b->ic = C;
        b->oc = a->width[i];
        b->stride = a->stride[i];
        b->h = H;
        b->w = W;
        b->oh = (H - 1) / b->stride + 1;
        b->ow = (W - 1) / b->stride + 1;
        b->has_sc = b->stride != 1 || b->ic != b->oc;
        snprintf(nm, sizeof nm, "b%d.c1.weight", i + 1);
        b->c1w = add_param(n, nm, 4, b->oc, b->ic, 3, 3);
        snprintf(nm, sizeof nm, "b%d.c1.bias", i + 1);
        b->c1b = add_param(n, nm, 1, b->oc, 0, 0, 0);
        snprintf(nm, sizeof nm, "b%d.c2.weight", i + 1);
        b->c2w = add_param(n, nm, 4, b->oc, b->oc, 3, 3);
        snprintf(nm, sizeof nm, "b%d.c2.bias", i + 1);
        b->c2b = add_param(n, nm, 1, b->oc, 0, 0, 0);
        b->s1 = conv_shape(b->ic, H, W, b->oc, 3, 1, 1);
        b->s2 = conv_shape(b->oc, H, W, b->oc, 3, b->stride, 1);
        n->macs += conv_macs(&b->s1) + conv_macs(&b->s2);
        if (b->has_sc) {
            snprintf(nm, sizeof nm, "b%d.sc.weight", i + 1);
            b->scw = add_param(n, nm, 4, b->oc, b->ic, 1, 1);
            snprintf(nm, sizeof nm, "b%d.sc.bias", i + 1);
            b->scb = add_param(n, nm, 1, b->oc, 0, 0, 0);
            b->ssc = conv_shape(b->ic, H, W, b->oc, 1, b->stride, 0);
            n->macs += conv_macs(&b->ssc);
        } else {
            b->scw = b->scb = -1;
        }
        b->plan =
            jem_conv_plan_block(&b->s1, &b->s2, b->has_sc ? &b->ssc : NULL, a->act, a->slope, jem_conv_settings_get());
        b->fused = b->plan.fused;
        C = b->oc;
        H = b->oh;
        W = b->ow;
    }
    n->fin_c = C;
    n->fin_h = H;
    n->fin_w = W;
    plan_acts(n);
    n->fc_w = add_param(n, "fc.weight", 2, a->n_classes, C, 0, 0);
    n->fc_b = add_param(n, "fc.bias", 1, a->n_classes, 0, 0, 0);
    n->macs += (double)a->n_classes * C;

    n->params = aligned_alloc(64, sizeof(float) * n->nparams);
    n->grads = aligned_alloc(64, sizeof(float) * n->nparams);
    if (!n->params || !n->grads) {
        size_t np = n->nparams;
        jem_net_free(n);
        return jem_fail(JEM_ERR_NOMEM, "out of memory for %zu parameters", np);
    }
    memset(n->params, 0, sizeof(float) * n->nparams);
    memset(n->grads, 0, sizeof(float) * n->nparams);
    *out = n;
    return JEM_OK;
}

void jem_net_free(jem_net *n)
{
    if (!n) return;
    free(n->params);
    free(n->grads);
    free(n->act);
    free(n->gbuf);
    free(n->ws);
    for (int d = 0; d < 2; d++)
        for (int i = 0; i < 1 + 2 * JEM_MAX_BLOCKS; i++) jem_wcache_free(n->wc[d][i]);
    for (int i = 0; i < JEM_MAX_BLOCKS; i++) {
        jem_wcache_free(n->wsc[i]);
        for (int k = 0; k < 6; k++) jem_wcache_free(n->wcb[i][k]);
    }
    free(n);
}

const jem_arch *jem_net_arch(const jem_net *n) { return &n->arch; }
size_t jem_net_nparams(const jem_net *n) { return n->nparams; }
float *jem_net_params(jem_net *n) { return n->params; }
float *jem_net_grads(jem_net *n) { return n->grads; }
int jem_net_ntensors(const jem_net *n) { return n->ntensors; }
const jem_param *jem_net_tensor(const jem_net *n, int i) { return i >= 0 && i < n->ntensors ? &n->tensors[i] : NULL; }
double jem_net_macs(const jem_net *n) { return n->macs; }

const jem_param *jem_net_find(const jem_net *n, const char *name)
{
    for (int i = 0; i < n->ntensors; i++)
        if (!strcmp(n->tensors[i].name, name)) return &n->tensors[i];
    return NULL;
}

void jem_net_init(jem_net *n, jem_rng *rng)
{
    memset(n->params, 0, sizeof(float) * n->nparams);
    for (int i = 0; i < n->ntensors; i++) {
        jem_param *p = &n->tensors[i];
        /* fan_in of the layer: weights (OC, IC, KH, KW) or (OUT, IN); a bias
         * takes its weight's fan_in (the tensor just before it) */
        const jem_param *w = p->ndim == 1 ? &n->tensors[i - 1] : p;
        size_t fan_in = w->numel / (size_t)w->shape[0];
        float bound = 1.0f / sqrtf((float)fan_in);
        float *d = n->params + p->offset;
        for (size_t k = 0; k < p->numel; k++) d[k] = (2.0f * jem_rng_uniform(rng) - 1.0f) * bound;
    }
}

void jem_net_zero_grad(jem_net *n) { memset(n->grads, 0, sizeof(float) * n->nparams); }

static float *P(jem_net *n, int i) { return n->params + n->tensors[i].offset; }
static float *G(jem_net *n, int i) { return n->grads + n->tensors[i].offset; }

static jem_status reserve(jem_net *n, int B)
{
    int T = omp_get_max_threads();
    if (T > n->ws_threads || !n->ws) {
        size_t per = jem_conv2d_ws(&n->stem);
        for (int i = 0; i < n->arch.n_blocks; i++) {
            blk *b = &n->blocks[i];
            per = maxz(per, jem_conv2d_ws(&b->s1));
            per = maxz(per, jem_conv2d_ws(&b->s2));
            if (b->has_sc) per = maxz(per, jem_conv2d_ws(&b->ssc));
            per = maxz(per, jem_block_ws(&b->plan, &b->s1, &b->s2));
        }
        float *ws = aligned_alloc(64, sizeof(float) * per * (size_t)T);
        if (!ws) return jem_fail(JEM_ERR_NOMEM, "out of memory for the convolution workspace");
        free(n->ws);
        n->ws = ws;
        n->ws_per_thread = per;
        n->ws_threads = T;
    }
    if (B > n->B_cap) {
        size_t na = n->act_per_img * (size_t)B, ng = 3 * n->max_map * (size_t)B;
        float *act = aligned_alloc(64, sizeof(float) * ((na + 15) & ~(size_t)15));
        float *gb = aligned_alloc(64, sizeof(float) * ((ng + 15) & ~(size_t)15));
        if (!act || !gb) {
            free(act);
            free(gb);
            return jem_fail(JEM_ERR_NOMEM, "out of memory for activations of batch %d", B);
        }
        free(n->act);
        free(n->gbuf);
        n->act = act;
        n->gbuf = gb;
        n->B_cap = B;
    }
    return JEM_OK;
}

static jem_conv_shape with_batch(jem_conv_shape s, int B)
{
    s.B = B;
    return s;
}

/* bf16: the block's Winograd products in bf16 (jem_block_desc) */
static jem_block_desc block_desc(jem_net *n, int i, int B, int bf16)
{
    blk *b = &n->blocks[i];
    jem_block_desc d = {with_batch(b->s1, B),
                        with_batch(b->s2, B),
                        &b->plan,
                        P(n, b->c1w),
                        P(n, b->c1b),
                        P(n, b->c2w),
                        P(n, b->c2b),
                        b->has_sc ? P(n, b->scw) : NULL,
                        b->has_sc ? P(n, b->scb) : NULL,
                        &n->wc[0][1 + 2 * i],
                        &n->wc[0][2 + 2 * i],
                        &n->wc[1][1 + 2 * i],
                        &n->wc[1][2 + 2 * i],
                        &n->wsc[i],
                        i > 0 && n->blocks[i - 1].fused,
                        i + 1 < n->arch.n_blocks && n->blocks[i + 1].fused,
                        bf16,
                        n->wcb[i]};
    return d;
}

/* where a block's input activation goes: the next block's a1, or af after
 * the last; NULL when that block is fused (it applies the activation
 * itself) */
static float *act_dest(jem_net *n, int next, int B)
{
    if (next < n->arch.n_blocks) return n->blocks[next].fused ? NULL : n->act + n->blocks[next].a1 * B;
    return n->act + n->af * B;
}

int jem_net_fuse(jem_net *n, int on)
{
    int k = 0;
    for (int i = 0; i < n->arch.n_blocks; i++) {
        blk *b = &n->blocks[i];
        b->fused = on && b->plan.fused;
        k += b->fused;
    }
    /* the activations' layout changed: new buffers, and a backward pass
     * needs a new forward pass */
    plan_acts(n);
    free(n->act);
    free(n->gbuf);
    n->act = n->gbuf = NULL;
    n->B_cap = n->B = 0;
    return k;
}

jem_status jem_net_forward(jem_net *n, const float *x, int B, float *logits)
{
    if (B < 1) return jem_fail(JEM_ERR_ARG, "batch size %d", B);
    jem_status st = reserve(n, B);
    if (st) return st;
    const jem_arch *a = &n->arch;
    float *A = n->act;
    n->B = B;
    n->x = x;
    n->fwd_bf16 = n->prec == JEM_PRECISION_BF16;
    /* A fused block (block.c) takes its input x and does the rest per
     * image. Otherwise an activation that fuses (act.h: LeakyReLU, ReLU)
     * goes into the convolutions' stores: each conv also writes the activation its consumer reads
     * (conv1 -> a2, conv2 and the stem -> the next block's a1, unless that
     * block is fused), and conv2 adds into the shortcut's output. Other
     * activations take a pass of their own. */
    jem_fact fa;
    const int fuse = jem_fact_of(a->act, a->slope, &fa);
    size_t HW = (size_t)n->fin_h * n->fin_w;
    float *af = A + n->af * B, *g = A + n->g * B;
    jem_conv_shape s = with_batch(n->stem, B);
    jem_conv_store sto = {0, NULL, NULL, fa, &n->wc[0][0]};
    if (fuse) sto.act_out = act_dest(n, 0, B);
    jem_conv2d_forward(A + n->x0 * B, x, P(n, n->stem_w), P(n, n->stem_b), &s, &sto, n->ws);
    const float *cur = A + n->x0 * B;
    for (int i = 0; i < a->n_blocks; i++) {
        blk *b = &n->blocks[i];
        float *a1 = A + b->a1 * B, *h1 = A + b->h1 * B, *a2 = A + b->a2 * B, *o = A + b->out * B;
        size_t nin = (size_t)B * b->ic * b->h * b->w, nmid = (size_t)B * b->oc * b->h * b->w;
        size_t nout = (size_t)B * b->oc * b->oh * b->ow;
        if (b->fused) {
            const jem_block_desc d = block_desc(n, i, B, n->fwd_bf16);
            if (jem_block_forward(h1, o, act_dest(n, i + 1, B), cur, &d, n->ws))
                return jem_fail(JEM_ERR_NOMEM, "out of memory for the transformed weights of block %d", i + 1);
            cur = o;
            continue;
        }
        if (!fuse) jem_act_forward(a1, cur, nin, a->act, a->slope);
        s = with_batch(b->s1, B);
        sto.accumulate = 0;
        sto.act_out = fuse ? a2 : NULL;
        sto.wcache = &n->wc[0][1 + 2 * i];
        jem_conv2d_forward(h1, a1, P(n, b->c1w), P(n, b->c1b), &s, &sto, n->ws);
        if (!fuse) jem_act_forward(a2, h1, nmid, a->act, a->slope);
        if (b->has_sc) {
            s = with_batch(b->ssc, B);
            jem_conv2d_forward(o, cur, P(n, b->scw), P(n, b->scb), &s, NULL, n->ws);
        } else {
            memcpy(o, cur, sizeof(float) * nout);
        }
        /* out = shortcut + conv2 */
        s = with_batch(b->s2, B);
        sto.accumulate = 1;
        sto.act_out = fuse ? act_dest(n, i + 1, B) : NULL;
        sto.wcache = &n->wc[0][2 + 2 * i];
        jem_conv2d_forward(o, a2, P(n, b->c2w), P(n, b->c2b), &s, &sto, n->ws);
        cur = o;
    }
    if (!fuse) jem_act_forward(af, cur, (size_t)B * n->fin_c * HW, a->act, a->slope);
    jem_gap_forward(g, af, B, n->fin_c, (int)HW);
    jem_linear_forward(logits, g, P(n, n->fc_w), P(n, n->fc_b), B, n->fin_c, a->n_classes);
    return JEM_OK;
}

jem_status jem_net_backward(jem_net *n, const float *dlogits, float *dx, int param_grads)
{
    const int B = n->B;
    if (B < 1) return jem_fail(JEM_ERR_ARG, "backward without a forward pass");
    if (param_grads && n->fwd_bf16)
        return jem_fail(JEM_ERR_ARG, "parameter gradients after a bf16 forward pass (train in fp32)");
    const jem_arch *a = &n->arch;
    float *A = n->act;
    const size_t gsz = n->max_map * (size_t)B;
    float *gP = n->gbuf, *gQ = n->gbuf + gsz, *gR = n->gbuf + 2 * gsz;
    size_t HW = (size_t)n->fin_h * n->fin_w;
    const float *g = A + n->g * B;
    float *dg = gQ; /* (B, C) */
    memset(dg, 0, sizeof(float) * (size_t)B * n->fin_c);
    jem_linear_backward(dg, param_grads ? G(n, n->fc_w) : NULL, param_grads ? G(n, n->fc_b) : NULL, dlogits, g,
                        P(n, n->fc_w), B, n->fin_c, a->n_classes);
    /* d(last block out) = gap backward, times act'(out) */
    size_t nfin = (size_t)B * n->fin_c * HW;
    memset(gP, 0, sizeof(float) * nfin);
    jem_gap_backward(gP, dg, B, n->fin_c, (int)HW);
    const float *last_out = n->arch.n_blocks ? A + n->blocks[a->n_blocks - 1].out * B : A + n->x0 * B;
    jem_act_grad_inplace(gP, last_out, nfin, a->act, a->slope);

    jem_fact fa;
    const int fuse = jem_fact_of(a->act, a->slope, &fa);
    float *dcur = gP; /* gradient w.r.t. the current block's output */
    for (int i = a->n_blocks - 1; i >= 0; i--) {
        blk *b = &n->blocks[i];
        const float *xin = i == 0 ? A + n->x0 * B : A + n->blocks[i - 1].out * B;
        float *a1 = A + b->a1 * B, *h1 = A + b->h1 * B, *a2 = A + b->a2 * B;
        size_t nin = (size_t)B * b->ic * b->h * b->w, nmid = (size_t)B * b->oc * b->h * b->w;
        size_t nout = (size_t)B * b->oc * b->oh * b->ow;
        /* three buffers in rotation: dcur -> da2 -> da1 (the next dcur); a
         * fused block (block.c) goes from dcur to da1 on its own */
        float *da2 = dcur == gP ? gQ : dcur == gQ ? gR : gP;
        float *da1 = da2 == gP ? gQ : da2 == gQ ? gR : gP;
        jem_conv_shape s;
        if (b->fused) {
            const jem_block_desc d = block_desc(n, i, B, n->fwd_bf16);
            const int sg = param_grads && b->has_sc;
            if (jem_block_backward(da1, param_grads ? G(n, b->c1w) : NULL, param_grads ? G(n, b->c1b) : NULL,
                                   param_grads ? G(n, b->c2w) : NULL, param_grads ? G(n, b->c2b) : NULL,
                                   sg ? G(n, b->scw) : NULL, sg ? G(n, b->scb) : NULL, dcur, xin, h1, &d, n->ws))
                return jem_fail(JEM_ERR_NOMEM, "out of memory for the transformed weights of block %d", i + 1);
            dcur = da1;
            continue;
        }
        /* conv2, then conv1: each input gradient set (not accumulated) and,
         * for an activation that fuses, times act' in the same store */
        jem_conv_store sto = {0, fuse ? h1 : NULL, NULL, fa, &n->wc[1][2 + 2 * i]};
        s = with_batch(b->s2, B);
        jem_conv2d_backward(da2, param_grads ? G(n, b->c2w) : NULL, param_grads ? G(n, b->c2b) : NULL, dcur, a2,
                            P(n, b->c2w), &s, &sto, n->ws);
        if (!fuse) jem_act_grad_inplace(da2, h1, nmid, a->act, a->slope);
        sto.gate = fuse ? xin : NULL;
        sto.wcache = &n->wc[1][1 + 2 * i];
        s = with_batch(b->s1, B);
        jem_conv2d_backward(da1, param_grads ? G(n, b->c1w) : NULL, param_grads ? G(n, b->c1b) : NULL, da2, a1,
                            P(n, b->c1w), &s, &sto, n->ws);
        if (!fuse) jem_act_grad_inplace(da1, xin, nin, a->act, a->slope);
        /* shortcut */
        if (b->has_sc) {
            s = with_batch(b->ssc, B);
            jem_conv2d_backward(da1, param_grads ? G(n, b->scw) : NULL, param_grads ? G(n, b->scb) : NULL, dcur, xin,
                                P(n, b->scw), &s, NULL, n->ws);
        } else {
            jem_add_backward(da1, NULL, dcur, nout);
        }
        dcur = da1;
    }
    /* stem */
    jem_conv_shape s = with_batch(n->stem, B);
    if (dx) memset(dx, 0, sizeof(float) * (size_t)B * a->in_c * a->in_h * a->in_w);
    jem_conv2d_backward(dx, param_grads ? G(n, n->stem_w) : NULL, param_grads ? G(n, n->stem_b) : NULL, dcur, n->x,
                        P(n, n->stem_w), &s, NULL, n->ws);
    return JEM_OK;
}

int jem_bf16_supported(void) { return jem_conv_settings_get()->bf16; }

jem_status jem_net_set_precision(jem_net *n, jem_precision p)
{
    if (p != JEM_PRECISION_FP32 && p != JEM_PRECISION_BF16) return jem_fail(JEM_ERR_ARG, "precision %d", (int)p);
    if (p == JEM_PRECISION_BF16 && !jem_bf16_supported())
        return jem_fail(JEM_ERR_ARG, "bf16: this CPU has no AVX512-BF16 (vdpbf16ps); use fp32");
    n->prec = p;
    return JEM_OK;
}

jem_precision jem_net_precision(const jem_net *n) { return n->prec; }

jem_status jem_precision_parse(const char *s, jem_precision *p)
{
    if (s && !strcmp(s, "fp32")) {
        *p = JEM_PRECISION_FP32;
        return JEM_OK;
    }
    if (s && !strcmp(s, "bf16")) {
        if (!jem_bf16_supported())
            return jem_fail(JEM_ERR_ARG, "bf16: this CPU has no AVX512-BF16 (vdpbf16ps); use fp32");
        *p = JEM_PRECISION_BF16;
        return JEM_OK;
    }
    return jem_fail(JEM_ERR_ARG, "precision %s: want fp32 or bf16", s ? s : "(none)");
}

jem_status jem_net_predict(jem_net *n, const float *x, int N, float *logits)
{
    const int chunk = 128;
    const size_t img = (size_t)n->arch.in_c * n->arch.in_h * n->arch.in_w;
    for (int i = 0; i < N; i += chunk) {
        int b = N - i < chunk ? N - i : chunk;
        jem_status s = jem_net_forward(n, x + (size_t)i * img, b, logits + (size_t)i * n->arch.n_classes);
        if (s) return s;
    }
    return JEM_OK;
}

int jem_net_feature_dim(const jem_net *n, int layer)
{
    if (layer == 0) return n->fin_c;
    if (layer >= 1 && layer <= n->arch.n_blocks) return n->blocks[layer - 1].oc;
    return 0;
}

jem_status jem_net_features(jem_net *n, const float *x, int N, int layer, float *feats)
{
    const int D = jem_net_feature_dim(n, layer), K = n->arch.n_classes, chunk = 128;
    if (D == 0)
        return jem_fail(JEM_ERR_ARG, "model '%s' has no feature layer %d (0: the pooled features, 1 to %d: blocks)",
                        n->arch.name, layer, n->arch.n_blocks);
    if (N < 0) return jem_fail(JEM_ERR_ARG, "features of %d images", N);
    const size_t img = (size_t)n->arch.in_c * n->arch.in_h * n->arch.in_w;
    float *lg = malloc(sizeof(float) * (size_t)chunk * K); /* (chunk, K) */
    if (!lg) return jem_fail(JEM_ERR_NOMEM, "out of memory for features");
    jem_status s = JEM_OK;
    for (int i = 0; i < N && !s; i += chunk) {
        const int B = N - i < chunk ? N - i : chunk;
        s = jem_net_forward(n, x + (size_t)i * img, B, lg);
        if (s) break;
        float *f = feats + (size_t)i * D; /* (B, D) */
        if (layer == 0) {
            memcpy(f, n->act + n->g * B, sizeof(float) * (size_t)B * D);
            continue;
        }
        /* a block's output, (B, D, OH, OW), or channels innermost (B, OH,
         * OW, D) between two fused blocks: averaged over its pixels */
        const blk *b = &n->blocks[layer - 1];
        const float *o = n->act + b->out * B;
        const size_t P = (size_t)b->oh * b->ow;
        const int hwc = b->fused && layer < n->arch.n_blocks && n->blocks[layer].fused;
        for (int k = 0; k < B; k++) {
            const float *ok = o + (size_t)k * P * D;
            for (int c = 0; c < D; c++) {
                double sum = 0;
                for (size_t p = 0; p < P; p++) sum += hwc ? ok[p * D + c] : ok[(size_t)c * P + p];
                f[(size_t)k * D + c] = (float)(sum / (double)P);
            }
        }
    }
    free(lg);
    return s;
}

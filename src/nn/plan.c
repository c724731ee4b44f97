/*
 * The convolution planner (plan.h): the kernels in the order they are
 * preferred, each with the passes it serves and its conditions; a pass
 * runs on the first kernel whose conditions all hold. The settings and
 * the CPU are read once, here and nowhere else.
 */
#include "nn/plan.h"

#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum {
    FWD = 1 << JEM_PASS_FORWARD,
    INP = 1 << JEM_PASS_INPUT_GRAD,
    WGT = 1 << JEM_PASS_WEIGHT_GRAD,
    ALL = FWD | INP | WGT
};
enum { AUTO = 1 << JEM_KERNELS_AUTO, DIRECT = 1 << JEM_KERNELS_DIRECT, GEMM = 1 << JEM_KERNELS_GEMM };
enum { LAYER = 1, BLOCK = 2 }; /* where it runs: layer by layer, inside a fused block */

typedef struct {
    jem_kernel kernel;
    int tile;          /* Winograd's output tile; 0 for the other kernels */
    unsigned passes;   /* FWD, INP, WGT */
    unsigned settings; /* the JEM_KERNELS values that allow it */
    unsigned where;    /* LAYER, BLOCK */
    int avx512;        /* needs AVX-512F */
    int k;             /* KH = KW = k (0: any) */
    int pad;           /* the padding it needs (-1: any) */
    int stride;        /* 1: stride 1; 2: stride 2 or more; 0: any */
    int ch;            /* input and output channels multiples of ch */
    int ch_out;        /* the channels the pass writes (output channels forward, input channels for the
                        * input gradient) multiples of ch_out */
    int sets;          /* forward only when it sets its output (no accumulate) */
    int pad4;          /* JEM_WINOGRAD_TILE=auto: only when 4x4 tiles pad the image by at most 15 % */
} candidate;

/* Winograd first: F(4x4, 3x3) (4x fewer multiplies than direct
 * convolution) where 4x4 tiles fit the image well (28 x 28: 4 x 7 tiles;
 * 14 x 14 would be covered as 16 x 16, 31 % more work), F(2x2, 3x3)
 * (2.25x fewer) otherwise. Indirect for the strided layers and the weight
 * gradients Winograd does not take, direct for the stride-1 layers whose
 * channels are not multiples of 16, im2col + sgemm for the rest. */
/* clang-format off */
static const candidate table[] = {
    /* kernel              tile passes     JEM_KERNELS           where          avx k  pad str ch  out sets pad4 */
    {JEM_KERNEL_WINOGRAD,  4,   ALL,       AUTO,                 LAYER | BLOCK, 1,  3, 1,  1,  16, 1,  0,   1},
    {JEM_KERNEL_WINOGRAD,  2,   ALL,       AUTO,                 LAYER | BLOCK, 1,  3, 1,  1,  16, 1,  0,   0},
    {JEM_KERNEL_INDIRECT,  0,   FWD | INP, AUTO | DIRECT,        LAYER | BLOCK, 1,  3, 1,  2,  16, 1,  0,   0},
    {JEM_KERNEL_INDIRECT,  0,   WGT,       AUTO | DIRECT,        LAYER | BLOCK, 1,  3, 1,  0,  16, 1,  0,   0},
    {JEM_KERNEL_POINTWISE, 0,   ALL,       AUTO | DIRECT,        BLOCK,         1,  1, 0,  0,  16, 1,  0,   0},
    {JEM_KERNEL_DIRECT,    0,   FWD,       AUTO | DIRECT,        LAYER,         1,  3, 1,  1,  1,  8,  1,   0},
    {JEM_KERNEL_DIRECT,    0,   INP,       AUTO | DIRECT,        LAYER,         1,  3, 1,  1,  1,  8,  0,   0},
    {JEM_KERNEL_GEMM,      0,   ALL,       AUTO | DIRECT | GEMM, LAYER,         0,  0, -1, 0,  1,  1,  0,   0},
};
/* clang-format on */

/* whether 4x4 output tiles cover an H x W image with at most 15 % more
 * pixels than it has */
static int tiles4_fit(int H, int W)
{
    const long a4 = (long)((H + 3) / 4 * 4) * ((W + 3) / 4 * 4);
    return a4 * 100 <= (long)H * W * 115;
}

static int fits(const candidate *c, const jem_conv_shape *s, jem_conv_pass pass, int accumulate, int in_block,
                const jem_conv_settings *set)
{
    if (!(c->passes & (1u << pass)) || !(c->settings & (1u << set->kernels))) return 0;
    if (!(c->where & (in_block ? BLOCK : LAYER)) || (c->avx512 && !set->avx512)) return 0;
    if (c->tile && set->tile && c->tile != set->tile) return 0;
    if (c->pad4 && !set->tile && !tiles4_fit(s->H, s->W)) return 0;
    if (c->k && (s->KH != c->k || s->KW != c->k)) return 0;
    if (c->pad >= 0 && s->pad != c->pad) return 0;
    if ((c->stride == 1 && s->stride != 1) || (c->stride == 2 && s->stride < 2)) return 0;
    if (s->IC % c->ch || s->OC % c->ch) return 0;
    if ((pass == JEM_PASS_FORWARD ? s->OC : s->IC) % c->ch_out) return 0;
    return !(c->sets && accumulate);
}

jem_conv_plan jem_conv_plan_layer(const jem_conv_shape *s, jem_conv_pass pass, int accumulate, int in_block,
                                  const jem_conv_settings *set)
{
    for (size_t i = 0; i < sizeof table / sizeof table[0]; i++)
        if (fits(&table[i], s, pass, accumulate, in_block, set)) return (jem_conv_plan){table[i].kernel, table[i].tile};
    return (jem_conv_plan){JEM_KERNEL_NONE, 0};
}

jem_block_plan jem_conv_plan_block(const jem_conv_shape *s1, const jem_conv_shape *s2, const jem_conv_shape *ssc,
                                   jem_act act, float slope, const jem_conv_settings *set)
{
    jem_block_plan p;
    memset(&p, 0, sizeof p);
    p.c1 = jem_conv_plan_layer(s1, JEM_PASS_FORWARD, 0, 1, set);
    p.c2 = jem_conv_plan_layer(s2, JEM_PASS_FORWARD, 0, 1, set);
    if (ssc) p.sc = jem_conv_plan_layer(ssc, JEM_PASS_FORWARD, 0, 1, set);
    const int chain = s2->IC == s1->OC && s2->OC == s1->OC && s2->H == s1->H && s2->W == s1->W;
    const int shortcut = ssc ? p.sc.kernel == JEM_KERNEL_POINTWISE : s1->IC == s1->OC && s2->stride == 1;
    p.fused = set->fuse && jem_fact_of(act, slope, &p.act) && chain && shortcut && p.c1.kernel == JEM_KERNEL_WINOGRAD &&
              (p.c2.kernel == JEM_KERNEL_WINOGRAD || p.c2.kernel == JEM_KERNEL_INDIRECT);
    return p;
}

const char *jem_kernel_name(jem_kernel k)
{
    switch (k) {
    case JEM_KERNEL_GEMM: return "gemm";
    case JEM_KERNEL_DIRECT: return "direct";
    case JEM_KERNEL_INDIRECT: return "indirect";
    case JEM_KERNEL_WINOGRAD: return "winograd";
    case JEM_KERNEL_POINTWISE: return "pointwise";
    case JEM_KERNEL_NONE: break;
    }
    return "none";
}

/* ---- the settings ---- */

static const struct {
    const char *name, *want;
} vars[3] = {{"JEM_KERNELS", "auto, direct or gemm"}, {"JEM_WINOGRAD_TILE", "2, 4 or auto"}, {"JEM_FUSE", "0 or 1"}};

/* variable i's value v (NULL or "": the default) into *set: 0, or -1 when
 * v is none of its values */
static int parse_var(jem_conv_settings *set, int i, const char *v)
{
    const int dflt = !v || !*v;
    switch (i) {
    case 0:
        if (dflt || !strcmp(v, "auto")) set->kernels = JEM_KERNELS_AUTO;
        else if (!strcmp(v, "direct")) set->kernels = JEM_KERNELS_DIRECT;
        else if (!strcmp(v, "gemm") || !strcmp(v, "ref")) set->kernels = JEM_KERNELS_GEMM;
        else return -1;
        return 0;
    case 1:
        if (dflt || !strcmp(v, "auto")) set->tile = 0;
        else if (!strcmp(v, "2") || !strcmp(v, "4")) set->tile = v[0] - '0';
        else return -1;
        return 0;
    default:
        if (dflt || !strcmp(v, "1")) set->fuse = 1;
        else if (!strcmp(v, "0")) set->fuse = 0;
        else return -1;
        return 0;
    }
}

jem_status jem_conv_settings_parse(jem_conv_settings *set, const char *kernels, const char *tile, const char *fuse)
{
    const char *v[3] = {kernels, tile, fuse};
    jem_conv_settings r = *set;
    for (int i = 0; i < 3; i++)
        if (parse_var(&r, i, v[i])) return jem_fail(JEM_ERR_ARG, "%s=%s: want %s", vars[i].name, v[i], vars[i].want);
    *set = r;
    return JEM_OK;
}

static jem_conv_settings g_set;
static char g_bad[200]; /* what was wrong with the first bad setting; "" when none */
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void read_settings(void)
{
    g_set.avx512 = g_set.bf16 = 0;
#if HAVE_X86
    __builtin_cpu_init();
    g_set.avx512 = __builtin_cpu_supports("avx512f") != 0;
    g_set.bf16 = g_set.avx512 && __builtin_cpu_supports("avx512bf16");
#endif
    for (int i = 0; i < 3; i++) {
        const char *v = getenv(vars[i].name);
        if (parse_var(&g_set, i, v)) {
            parse_var(&g_set, i, NULL);
            if (!g_bad[0]) snprintf(g_bad, sizeof g_bad, "%s=%s: want %s", vars[i].name, v, vars[i].want);
        }
    }
}

const jem_conv_settings *jem_conv_settings_get(void)
{
    pthread_once(&g_once, read_settings);
    return &g_set;
}

jem_status jem_conv_settings_check(void)
{
    jem_conv_settings_get();
    return g_bad[0] ? jem_fail(JEM_ERR_ARG, "%s", g_bad) : JEM_OK;
}

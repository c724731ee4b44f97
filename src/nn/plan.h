/*
 * plan.h: which kernel runs a convolution (internal). One table (plan.c)
 * lists the kernels with the passes they serve and what each needs of the
 * shape, the CPU and the settings; the first that fits runs the pass. The
 * dispatcher (conv.c), the network's choice of fused blocks (net.c) and
 * `jem bench --layers` all ask here.
 *
 * The settings come from the environment, read once per process:
 *   JEM_KERNELS        auto (the default): every kernel; direct: no
 *                      Winograd (the direct and indirect AVX-512 kernels,
 *                      GEMM); gemm (or ref): im2col + sgemm only
 *   JEM_WINOGRAD_TILE  2 or 4: F(2x2, 3x3) or F(4x4, 3x3) everywhere; auto
 *                      (the default): 4x4 output tiles unless they pad the
 *                      image by more than 15 %, 2x2 then
 *   JEM_FUSE           1 (the default): wide-ResNet blocks fused per image
 *                      where the kernels allow (block.c); 0: layer by layer
 * Unset or empty means the default.
 */
#ifndef JEM_PLAN_H
#define JEM_PLAN_H

#include "nn/nn.h"

typedef enum { JEM_PASS_FORWARD = 0, JEM_PASS_INPUT_GRAD, JEM_PASS_WEIGHT_GRAD } jem_conv_pass;

/* the kernels: im2col + sgemm (conv.c), direct AVX-512 3x3 (conv_avx512.c),
 * indirect AVX-512 3x3 (conv_indirect.c), Winograd (conv_winograd.c), and
 * inside a fused block the channels-innermost 1x1 shortcut (block.c) */
typedef enum {
    JEM_KERNEL_NONE = 0,
    JEM_KERNEL_GEMM,
    JEM_KERNEL_DIRECT,
    JEM_KERNEL_INDIRECT,
    JEM_KERNEL_WINOGRAD,
    JEM_KERNEL_POINTWISE
} jem_kernel;

typedef enum { JEM_KERNELS_AUTO = 0, JEM_KERNELS_DIRECT, JEM_KERNELS_GEMM } jem_kernels_setting;

/* what the planner decides from besides the shape */
typedef struct {
    int avx512;                  /* the CPU runs AVX-512F (detected, not set) */
    jem_kernels_setting kernels; /* JEM_KERNELS */
    int tile;                    /* JEM_WINOGRAD_TILE: 2 or 4; 0: auto */
    int fuse;                    /* JEM_FUSE: 1 or 0 */
    int bf16;                    /* the CPU runs AVX512-BF16 (vdpbf16ps; detected, not set) */
} jem_conv_settings;

/* a pass's kernel and, for Winograd, its output tile m (F(m x m, 3x3));
 * tile 0 for the other kernels */
typedef struct {
    jem_kernel kernel;
    int tile;
} jem_conv_plan;

/* this process's settings: the CPU and the environment, read on first use
 * (thread-safe). A bad value leaves that setting's default in force;
 * jem_conv_settings_check (public, jem.h) reports it. */
const jem_conv_settings *jem_conv_settings_get(void);
/* set's settings from the three variables' values (NULL or "": the
 * default); set->avx512 is left alone. A bad value: JEM_ERR_ARG naming
 * the variable and the value, and *set unchanged. */
jem_status jem_conv_settings_parse(jem_conv_settings *set, const char *kernels, const char *tile, const char *fuse);

/* the kernel for pass of the convolution s under set. accumulate: the
 * forward pass adds into its output (jem_conv_store). in_block: inside a
 * fused block, where only the channels-innermost kernels run (Winograd,
 * indirect, pointwise; JEM_KERNEL_NONE when none fits); layer by layer
 * GEMM takes whatever nothing else does. */
jem_conv_plan jem_conv_plan_layer(const jem_conv_shape *s, jem_conv_pass pass, int accumulate, int in_block,
                                  const jem_conv_settings *set);

/* A wide-ResNet block (net.c): conv1 s1 (IC -> OC, stride 1), conv2 s2
 * (OC -> OC), the 1x1 shortcut ssc (NULL: identity), activation act with
 * LeakyReLU's slope. Fused (block.c) when JEM_FUSE allows, the activation
 * fuses and conv1 plans to Winograd, conv2 to Winograd or indirect and the
 * shortcut to the pointwise kernel inside a block; each convolution then
 * runs all three passes with the kernel and tile of its forward pass. */
struct jem_block_plan {
    int fused;
    jem_conv_plan c1, c2, sc; /* sc.kernel JEM_KERNEL_NONE: identity */
    jem_fact act;
};
jem_block_plan jem_conv_plan_block(const jem_conv_shape *s1, const jem_conv_shape *s2, const jem_conv_shape *ssc,
                                   jem_act act, float slope, const jem_conv_settings *set);

/* "gemm", "direct", "indirect", "winograd", "pointwise", "none" */
const char *jem_kernel_name(jem_kernel k);

#endif

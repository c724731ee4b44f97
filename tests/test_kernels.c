/* The fast convolution kernels (direct AVX-512 3x3 where the CPU has it,
 * im2col + sgemm otherwise) against the naive reference, on the shapes the
 * direct kernel takes (output channels a multiple of 8) and on awkward ones:
 * widths below, at and above a vector (16), a single row or column, batch 1
 * and odd batches, accumulation into a non-zero input gradient. */
#include "jem.h"
#include "nn/nn.h"
#include "test.h"
#include "gradcheck.h"

#include <omp.h>

static void check(int B, int IC, int H, int W, int OC)
{
    jem_conv_shape s = {B, IC, H, W, OC, 3, 3, 1, 1};
    size_t nx = (size_t)B * IC * H * W, nw = (size_t)OC * IC * 9, no = (size_t)B * OC * H * W;
    jem_rng r;
    jem_rng_seed(&r, (uint64_t)(B * 1000 + IC * 100 + H * 10 + W), (uint64_t)OC);
    float *x = malloc(sizeof(float) * nx), *w = malloc(sizeof(float) * nw), *b = malloc(sizeof(float) * OC);
    float *o1 = malloc(sizeof(float) * no), *o2 = malloc(sizeof(float) * no), *d = malloc(sizeof(float) * no);
    float *g1 = malloc(sizeof(float) * nx), *g2 = malloc(sizeof(float) * nx);
    float *ws = malloc(sizeof(float) * jem_conv2d_ws(&s) * omp_get_max_threads());
    fill_uniform(x, nx, &r, -1, 1); fill_uniform(w, nw, &r, -1, 1); fill_uniform(b, OC, &r, -1, 1);
    fill_uniform(d, no, &r, -1, 1);
    jem_conv2d_forward(o1, x, w, b, &s, ws);
    jem_conv2d_forward_ref(o2, x, w, b, &s);
    double e = rel_err_ff(o1, o2, no);
    ASSERT_MSG(e < 1e-5, "forward B%d %dx%dx%d->%d: err %.3g", B, IC, H, W, OC, e);
    /* input gradient accumulates on top of what is there */
    for (size_t i = 0; i < nx; i++) g1[i] = g2[i] = 0.5f;
    jem_conv2d_backward(g1, NULL, NULL, d, x, w, &s, ws);
    jem_conv2d_backward_ref(g2, NULL, NULL, d, x, w, &s);
    e = rel_err_ff(g1, g2, nx);
    ASSERT_MSG(e < 1e-5, "input gradient B%d %dx%dx%d->%d: err %.3g", B, IC, H, W, OC, e);
    /* NaN in the input reaches the output (nothing masks it away) */
    x[0] = NAN;
    jem_conv2d_forward(o1, x, w, b, &s, ws);
    ASSERT(isnan(o1[0]));
    free(x); free(w); free(b); free(o1); free(o2); free(d); free(g1); free(g2); free(ws);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_kernels");
    printf("direct AVX-512 3x3 kernels %s\n", jem_conv3x3_avx512_available() ? "in use" : "not available here");
    check(1, 8, 28, 28, 16);
    check(3, 16, 14, 14, 32);
    check(2, 3, 7, 7, 8);
    check(2, 8, 5, 17, 24);
    check(1, 5, 1, 40, 8);
    check(1, 8, 40, 1, 16);
    check(5, 16, 16, 16, 8);
    check(2, 24, 3, 33, 40);
    check(1, 7, 6, 6, 12);    /* OC not a multiple of 8: the GEMM path */
    return t_finish();
}

/*
 * augment.c: training augmentation applied in place to a batch x (B, C, H, W).
 *
 * For each image in batch order, the random numbers are drawn in a fixed
 * order, so a seed reproduces a batch exactly:
 *   1. crop (crop_pad = P > 0): dy then dx, each jem_rng_below(2P + 1); the
 *      image is shifted as if padded by P pixels of -1 (black in [-1, 1]) on
 *      every side and cropped back to H x W at offset (dy, dx):
 *      out[y][x] = in[y + dy - P][x + dx - P], or -1 outside the image.
 *   2. flip (hflip): one jem_rng_below(2); 1 mirrors the image left-right.
 *   3. noise (sigma > 0): one jem_rng_normal per sample, in (C, H, W) order,
 *      x += sigma * n; the result is not clipped.
 * All channels of an image get the same crop and flip.
 */
#include "jem.h"

#include <string.h>

/* Shift plane (H, W) in place: out[y][x] = in[y + oy][x + ox], -1 outside. */
static void shift_plane(float *p, int H, int W, int oy, int ox)
{
    int ax = ox < 0 ? -ox : ox;
    int keep = W - ax;           /* columns copied per row */
    int dst0 = ox < 0 ? -ox : 0; /* first destination column */
    int src0 = ox > 0 ? ox : 0;  /* first source column */
    for (int i = 0; i < H; i++) {
        /* rows in the direction that reads each source row before it is written */
        int y = oy >= 0 ? i : H - 1 - i;
        int sy = y + oy;
        float *row = p + (size_t)y * W;
        if (sy < 0 || sy >= H || keep <= 0) {
            for (int x = 0; x < W; x++) row[x] = -1.0f;
            continue;
        }
        memmove(row + dst0, p + (size_t)sy * W + src0, sizeof(float) * (size_t)keep);
        for (int x = 0; x < dst0; x++) row[x] = -1.0f;
        for (int x = dst0 + keep; x < W; x++) row[x] = -1.0f;
    }
}

static void flip_plane(float *p, int H, int W)
{
    for (int y = 0; y < H; y++) {
        float *row = p + (size_t)y * W;
        for (int a = 0, b = W - 1; a < b; a++, b--) {
            float t = row[a];
            row[a] = row[b];
            row[b] = t;
        }
    }
}

void jem_augment_batch(const jem_augment *a, float *x, int B, int C, int H, int W, jem_rng *rng)
{
    if (!a || !x || B <= 0 || C <= 0 || H <= 0 || W <= 0) return;
    size_t hw = (size_t)H * (size_t)W, chw = (size_t)C * hw;
    int P = a->crop_pad > 0 ? a->crop_pad : 0;
    if (P > (1 << 20)) P = 1 << 20; /* far beyond any image: all -1 either way */
    for (int b = 0; b < B; b++) {
        float *img = x + (size_t)b * chw; /* (C, H, W) */
        if (P > 0) {
            int dy = (int)jem_rng_below(rng, (uint32_t)(2 * P + 1)) - P;
            int dx = (int)jem_rng_below(rng, (uint32_t)(2 * P + 1)) - P;
            if (dy || dx)
                for (int c = 0; c < C; c++) shift_plane(img + (size_t)c * hw, H, W, dy, dx);
        }
        if (a->hflip && jem_rng_below(rng, 2))
            for (int c = 0; c < C; c++) flip_plane(img + (size_t)c * hw, H, W);
        if (a->noise > 0.0f)
            for (size_t p = 0; p < chw; p++) img[p] += a->noise * jem_rng_normal(rng);
    }
}

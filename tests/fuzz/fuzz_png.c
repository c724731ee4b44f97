/* Fuzz the PNG reader (libpng underneath) with every channel conversion:
 * the first byte picks the channel count asked for (1 or 3). */
#include "fuzz.h"

#include <math.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size < 1) return 0;
    int want_c = data[0] & 1 ? 3 : 1;
    char p[600];
    fuzz_write("img.png", data + 1, size - 1, p, sizeof p);
    float *x = NULL;
    int c = 0, h = 0, w = 0;
    if (jem_png_read(p, want_c, &x, &c, &h, &w) == JEM_OK) {
        if (c != want_c || h <= 0 || w <= 0) abort();
        for (size_t i = 0; i < (size_t)c * (size_t)h * (size_t)w; i++)
            if (!(x[i] >= -1.0f && x[i] <= 1.0f)) abort();
        fuzz_accepted++;
    }
    free(x);
    return 0;
}

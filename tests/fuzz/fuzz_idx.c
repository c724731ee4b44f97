/* Fuzz the IDX loader (images + labels, plain or gzip): the input is the
 * image file, "JEM|", then the label file. */
#include "fuzz.h"
#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    char pi[600], pl[600];
    fuzz_write("images.idx", a, na, pi, sizeof pi);
    fuzz_write("labels.idx", b, nb, pl, sizeof pl);
    jem_dataset ds;
    memset(&ds, 0, sizeof ds);
    if (jem_idx_load(pi, pl, size & 1 ? 10 : 0, &ds) == JEM_OK) {
        /* a loaded set is consistent: labels in range, pixels in [-1, 1] */
        for (int64_t i = 0; i < ds.n; i++)
            if (ds.y[i] < 0 || ds.y[i] >= ds.n_classes) abort();
        size_t m = (size_t)ds.n * (size_t)(ds.c * ds.h * ds.w);
        for (size_t i = 0; i < m; i++)
            if (!(ds.x[i] >= -1.0f && ds.x[i] <= 1.0f)) abort();
        fuzz_accepted++;
        jem_dataset_free(&ds);
    }
    return 0;
}

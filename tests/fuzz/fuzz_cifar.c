/* Fuzz the CIFAR binary loader: the input is one batch file, read as the
 * CIFAR-10 test batch (even first byte) or the CIFAR-100 test file (odd). */
#include "fuzz.h"
#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    int kind = size && (data[0] & 1) ? 100 : 10;
    char p[600];
    /* only the file of the chosen kind exists, so the other is never read */
    fuzz_write(kind == 10 ? "c10/test_batch.bin" : "c100/test.bin", data, size, p, sizeof p);
    char dir[600];
    snprintf(dir, sizeof dir, "%s/%s", fuzz_tmpdir(), kind == 10 ? "c10" : "c100");
    jem_dataset ds;
    if (jem_cifar_load(dir, kind, 0, &ds) == JEM_OK) {
        if (ds.c != 3 || ds.h != 32 || ds.w != 32 || ds.n_classes != kind) abort();
        for (int i = 0; i < ds.n; i++)
            if (ds.y[i] < 0 || ds.y[i] >= kind) abort();
        fuzz_accepted++;
        jem_dataset_free(&ds);
    }
    return 0;
}

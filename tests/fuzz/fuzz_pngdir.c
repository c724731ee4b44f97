/* Fuzz the PNG folder loader (root/<class>/<image>.png): the input holds two
 * PNG files separated by "JEM|", written to two class folders. */
#include "fuzz.h"
#include "data/data.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    const uint8_t *a, *b;
    size_t na, nb;
    fuzz_split(data, size, &a, &na, &b, &nb);
    char p[600];
    fuzz_write("root/ca/x.png", a, na, p, sizeof p);
    fuzz_write("root/cb/y.png", b, nb, p, sizeof p);
    char root[600];
    snprintf(root, sizeof root, "%s/root", fuzz_tmpdir());
    jem_dataset ds;
    if (jem_pngdir_load(root, &ds) == JEM_OK) {
        if (ds.n != 2 || ds.n_classes != 2 || ds.y[0] != 0 || ds.y[1] != 1) abort();
        fuzz_accepted++;
        jem_dataset_free(&ds);
    }
    return 0;
}

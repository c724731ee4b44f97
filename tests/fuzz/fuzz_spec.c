/* Fuzz the data set spec grammar (jem_dataset_open): the input is a spec in
 * which "@" stands for a small labelled IDX set written once per process
 * (six 6x6 images, classes 0 to 2). Specs that would read real data sets or
 * other files (mnist, cifar, png, idx, '/'), or whose numbers multiply to
 * more than 2e5 (with noise sets, whose N defaults to 10000: 4e6 after a
 * factor 1e4), are skipped: large synthetic sets are slow, not wrong. An accepted spec must
 * give a sound set: images, labels in [-1, n_classes), finite pixels, and
 * pixels in [-1, 1] after a corruption; and jem_dataset_check, which reads no
 * data, must accept it. */
#include "fuzz.h"

#include <math.h>

static char spec_set[600];

static void spec_write_set(void)
{
    if (spec_set[0]) return;
    uint8_t img[16 + 6 * 36], lab[8 + 6];
    const uint8_t ih[16] = {0, 0, 8, 3, 0, 0, 0, 6, 0, 0, 0, 6, 0, 0, 0, 6};
    const uint8_t lh[8] = {0, 0, 8, 1, 0, 0, 0, 6};
    memcpy(img, ih, 16);
    memcpy(lab, lh, 8);
    for (int i = 0; i < 6 * 36; i++) img[16 + i] = (uint8_t)(i * 37);
    for (int i = 0; i < 6; i++) lab[8 + i] = (uint8_t)(i % 3);
    char p[600];
    fuzz_write("spec/t-images-idx3-ubyte", img, sizeof img, p, sizeof p);
    fuzz_write("spec/t-labels-idx1-ubyte", lab, sizeof lab, p, sizeof p);
    snprintf(spec_set, sizeof spec_set, "idx:%s/spec/t", fuzz_tmpdir());
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 512) return 0;
    char in[513];
    memcpy(in, data, size);
    in[size] = 0;
    if (strlen(in) != size) return 0;
    static const char *const skip[] = {"mnist", "cifar", "png", "idx", "/"};
    for (size_t i = 0; i < sizeof skip / sizeof *skip; i++)
        if (strstr(in, skip[i])) return 0;
    double prod = 1;
    for (const char *p = in; *p;) {
        if (*p < '0' || *p > '9') {
            p++;
            continue;
        }
        double v = 0;
        while (*p >= '0' && *p <= '9') v = v * 10 + (*p++ - '0');
        prod *= v > 1 ? v : 1;
    }
    if (strstr(in, "noise") ? prod * 1e4 > 4e6 : prod > 2e5) return 0;
    spec_write_set();
    char spec[8192];
    size_t o = 0;
    for (const char *p = in; *p && o + 700 < sizeof spec; p++) {
        if (*p == '@') o += (size_t)snprintf(spec + o, sizeof spec - o, "%s", spec_set);
        else spec[o++] = *p;
    }
    spec[o] = 0;
    jem_dataset ds;
    /* checking a spec (no data read) refuses nothing that opens, and what it
     * refuses does not open */
    const jem_status chk = jem_dataset_check(spec, 0, 0, 0);
    if (jem_dataset_open(spec, &ds) != JEM_OK) return 0;
    if (chk != JEM_OK) abort();
    const size_t n = (size_t)ds.n * (size_t)ds.c * (size_t)ds.h * (size_t)ds.w;
    if (ds.n < 1 || !ds.x || !ds.y || n == 0 || ds.n_classes < 0) abort();
    for (int i = 0; i < ds.n; i++)
        if (ds.y[i] < -1 || (ds.y[i] >= 0 && ds.y[i] >= ds.n_classes)) abort();
    const int corrupted = !strncmp(spec, "corrupt:", 8);
    for (size_t i = 0; i < n; i++)
        if (!isfinite(ds.x[i]) || (corrupted && (ds.x[i] < -1.0f || ds.x[i] > 1.0f))) abort();
    if (strncmp(ds.name, spec, sizeof ds.name - 1)) abort();
    fuzz_accepted++;
    jem_dataset_free(&ds);
    return 0;
}

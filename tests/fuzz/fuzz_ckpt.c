/* Fuzz checkpoint loading: the safetensors container (header length, JSON
 * header, offsets, dtypes, shapes) and the model it describes. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    char p[600];
    fuzz_write("model.safetensors", data, size, p, sizeof p);
    jem_st *st = NULL;
    if (jem_st_open(p, &st) != JEM_OK) return 0;
    /* every tensor the container lists is readable within the file */
    for (int i = 0; i < jem_st_count(st); i++) {
        jem_dtype dt;
        int ndim;
        int64_t shape[8];
        const uint8_t *d = jem_st_get(st, jem_st_name(st, i), &dt, &ndim, shape);
        if (!d || ndim < 0 || ndim > 8) abort();
        size_t nbytes = jem_dtype_size(dt);
        for (int k = 0; k < ndim; k++) {
            if (shape[k] < 0) abort();
            nbytes *= (size_t)shape[k];
        }
        volatile uint8_t sink = 0;
        for (size_t k = 0; k < nbytes; k += 4096) sink ^= d[k];
        if (nbytes) sink ^= d[nbytes - 1];
        (void)sink;
    }
    for (int i = 0; i < jem_st_meta_count(st); i++)
        if (!jem_st_get_meta(st, jem_st_meta_key(st, i))) abort();
    jem_net *net = NULL;
    if (jem_ckpt_from_st(st, p, &net) == JEM_OK) {
        fuzz_accepted++;
        jem_net_free(net);
    }
    jem_st_free(st);
    return 0;
}

/* Fuzz the model description parser; a description it accepts must build a
 * network and survive a format/parse round trip. */
#include "fuzz.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    if (size > 1 << 16) return 0;
    char *text = malloc(size + 1);
    if (!text) return 0;
    memcpy(text, data, size);
    text[size] = 0;
    jem_arch a;
    if (jem_arch_parse(text, "fuzz.model", &a) == JEM_OK) {
        char buf[4096];
        int n = jem_arch_format(&a, buf, sizeof buf);
        if (n < 0 || (size_t)n >= sizeof buf) abort();
        jem_arch b;
        if (jem_arch_parse(buf, "roundtrip.model", &b) != JEM_OK) abort();
        char buf2[4096];
        jem_arch_format(&b, buf2, sizeof buf2);
        if (strcmp(buf, buf2)) abort();
        jem_net *net = NULL;
        if (jem_net_create(&a, &net) == JEM_OK) {
            fuzz_accepted++;
            jem_net_free(net);
        }
    }
    free(text);
    return 0;
}

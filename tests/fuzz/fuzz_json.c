/* Fuzz the JSON parser (safetensors headers and metadata go through it). */
#include "fuzz.h"
#include "io/json.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    jem_json *root = NULL;
    if (jem_json_parse((const char *)data, size, "fuzz.json", &root) == JEM_OK) {
        fuzz_accepted++;
        jem_json_free(root);
    }
    return 0;
}

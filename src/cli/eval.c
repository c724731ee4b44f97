/* jem eval: accuracy and NLL of a checkpoint on a data set. */
#include "cli/cli.h"
#include "io/json.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

int cmd_eval(int argc, char **argv)
{
    const char *model = NULL, *data = "fmnist:test", *dump = NULL;
    int threads = 0, json = 0, limit = 0;
    const cli_opt opts[] = {
        {"model", OPT_STR, &model, "checkpoint (.safetensors)"},
        {"data", OPT_STR, &data, "data set"},
        {"limit", OPT_INT, &limit, "use only the first N images (0: all)"},
        {"threads", OPT_INT, &threads, "threads (0: all cores)"},
        {"json", OPT_FLAG, &json, "print the figures as JSON"},
        {"dump-logits", OPT_STR, &dump, "write the logits (N, K) as raw little-endian float32"},
        {NULL, 0, NULL, NULL}};
    const char *pos[1];
    int npos;
    int r = cli_parse("eval", "--model CKPT [--data SPEC] [options]", opts, argc, argv, 2, pos, 1, &npos);
    if (r) return r > 0 ? 0 : 2;
    if (npos) model = pos[0];
    if (!model) { fprintf(stderr, "jem eval: error: --model CKPT is required\n"); return 2; }
    jem_set_threads(threads);
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(model, &net);
    if (s) return cli_fail("eval", s);
    jem_dataset ds;
    s = cli_open_data(data, jem_net_arch(net), &ds);
    if (s) { jem_net_free(net); return cli_fail("eval", s); }
    if (limit > 0) jem_dataset_truncate(&ds, limit);
    if (dump) {
        const int K = jem_net_arch(net)->n_classes;
        float *lg = malloc(sizeof(float) * (size_t)ds.n * K);
        if (!lg) s = jem_fail(JEM_ERR_NOMEM, "out of memory for %d x %d logits", ds.n, K);
        if (!s) s = jem_net_predict(net, ds.x, ds.n, lg);
        if (!s) s = jem_write_file_atomic(dump, lg, sizeof(float) * (size_t)ds.n * K);
        free(lg);
        if (s) { jem_dataset_free(&ds); jem_net_free(net); return cli_fail("eval", s); }
    }
    double acc = 0, nll = 0;
    s = jem_evaluate(net, &ds, &acc, &nll);
    if (s) { jem_dataset_free(&ds); jem_net_free(net); return cli_fail("eval", s); }
    if (json) {
        jem_jw w;
        jem_jw_init(&w);
        jem_jw_obj_begin(&w);
        jem_jw_kstr(&w, "model", model);
        jem_jw_kstr(&w, "data", data);
        jem_jw_kint(&w, "n", ds.n);
        jem_jw_kdouble(&w, "accuracy", acc);
        jem_jw_kdouble(&w, "nll", nll);
        jem_jw_obj_end(&w);
        printf("%s\n", jem_jw_cstr(&w));
        jem_jw_free(&w);
    } else {
        printf("model     %s\ndata      %s (%d images)\naccuracy  %.4f\nnll       %.4f\n", model, data, ds.n, acc, nll);
    }
    jem_dataset_free(&ds);
    jem_net_free(net);
    return 0;
}

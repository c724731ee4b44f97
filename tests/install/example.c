/* example.c: a program built against an installed jem with pkg-config,
 *
 *     cc example.c $(pkg-config --cflags --libs jem) -o example
 *
 * that loads a checkpoint, classifies the first N images of a data set and
 * measures the result with the library's evaluation functions.
 *
 *     example CKPT [SPEC [N [LOGITS]]]
 *
 * SPEC defaults to fmnist:test (from $JEM_FMNIST_DIR, else Debian's
 * /usr/share/datasets/fashion-mnist), N to 64. LOGITS, when given, receives
 * the logits (N, K) as raw float32. Prints accuracy, NLL and ECE (15 bins),
 * the figures `jem eval` prints for the same images. */
#include <jem.h>

#include <stdio.h>
#include <stdlib.h>

static int fail(const char *what, jem_status s)
{
    fprintf(stderr, "example: %s: %s\n", what, *jem_last_error() ? jem_last_error() : jem_strerror(s));
    return 1;
}

int main(int argc, char **argv)
{
    if (argc < 2 || argc > 5) {
        fprintf(stderr, "usage: example CKPT [SPEC [N [LOGITS]]]\n");
        return 2;
    }
    const char *ckpt = argv[1], *spec = argc > 2 ? argv[2] : "fmnist:test", *out = argc > 4 ? argv[4] : NULL;
    const int n_max = argc > 3 ? atoi(argv[3]) : 64;
    if (n_max < 1) {
        fprintf(stderr, "example: N must be at least 1\n");
        return 2;
    }
    const char *fm = getenv("JEM_FMNIST_DIR");
    jem_data_set_dir("fmnist", fm && *fm ? fm : "/usr/share/datasets/fashion-mnist");

    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(ckpt, &net);
    if (s) return fail(ckpt, s);
    const jem_arch *a = jem_net_arch(net);
    const int K = a->n_classes;

    jem_dataset ds;
    s = jem_dataset_open_as(spec, a->in_c, a->in_h, a->in_w, &ds);
    if (s) {
        jem_net_free(net);
        return fail(spec, s);
    }
    jem_dataset_truncate(&ds, n_max);
    const int n = ds.n;

    float *logits = malloc(sizeof(float) * (size_t)n * K); /* (N, K) */
    float *probs = malloc(sizeof(float) * (size_t)n * K);  /* (N, K) */
    int rc = 1;
    if (!logits || !probs) {
        fprintf(stderr, "example: out of memory\n");
        goto done;
    }
    s = jem_net_predict(net, ds.x, n, logits);
    if (s) {
        rc = fail("predict", s);
        goto done;
    }
    jem_softmax_temp(logits, n, K, 1.0, probs);
    jem_calib c;
    jem_calib_bin bins[15];
    s = jem_calibration(probs, ds.y, n, K, 15, &c, bins, NULL);
    if (s) {
        rc = fail("calibration", s);
        goto done;
    }
    if (out) {
        FILE *f = fopen(out, "wb");
        if (!f || fwrite(logits, sizeof(float) * K, (size_t)n, f) != (size_t)n || fclose(f) != 0) {
            fprintf(stderr, "example: %s: cannot write the logits\n", out);
            goto done;
        }
    }

    int nk = 0;
    const char *const *names = jem_known_classes(spec, &nk);
    printf("model    %s (%s, %d classes)\n", ckpt, a->name, K);
    printf("data     %s, first %d images\n", spec, n);
    printf("accuracy %.17g\n", c.accuracy);
    printf("nll      %.17g\n", c.nll);
    printf("ece      %.17g\n", c.ece);
    printf("first    ");
    for (int i = 0; i < n && i < 4; i++) {
        int best = 0;
        for (int k = 1; k < K; k++)
            if (logits[(size_t)i * K + k] > logits[(size_t)i * K + best]) best = k;
        printf("%s%s (label %s)", i ? ", " : "", names && best < nk ? names[best] : "?",
               names && ds.y[i] >= 0 && ds.y[i] < nk ? names[ds.y[i]] : "?");
    }
    printf("\n");
    rc = 0;
done:
    free(logits);
    free(probs);
    jem_dataset_free(&ds);
    jem_net_free(net);
    return rc;
}

/* ood_dump: features and detector scores for scripts/ood_reference.py.
 * Fits jem's Mahalanobis and kNN detectors on the first N_FIT images of a
 * training set and writes, as one safetensors file: the training features
 * and labels, the features of the first N_TEST images of an in-distribution
 * and an OOD set, and jem's two scores of those test images.
 *   ood_dump MODEL TRAIN N_FIT IN OUT N_TEST LAYER K OUT.safetensors */
#include "jem.h"
#include "eval/eval.h"
#include "eval/ood_detect.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static int die(const char *what)
{
    fprintf(stderr, "ood_dump: %s: %s\n", what, jem_last_error());
    return 1;
}

int main(int argc, char **argv)
{
    if (argc != 10) {
        fprintf(stderr, "usage: ood_dump MODEL TRAIN N_FIT IN OUT N_TEST LAYER K OUT.safetensors\n");
        return 2;
    }
    const int n_fit = atoi(argv[3]), n_test = atoi(argv[6]), layer = jem_ood_layer_parse(argv[7]), k = atoi(argv[8]);
    jem_net *net = NULL;
    if (jem_ckpt_load(argv[1], &net)) return die(argv[1]);
    const jem_arch *a = jem_net_arch(net);
    jem_dataset tr, in, out;
    if (jem_dataset_open(argv[2], &tr) || jem_dataset_conform(&tr, a->in_c, a->in_h, a->in_w)) return die(argv[2]);
    if (jem_dataset_open(argv[4], &in) || jem_dataset_conform(&in, a->in_c, a->in_h, a->in_w)) return die(argv[4]);
    if (jem_dataset_open(argv[5], &out) || jem_dataset_conform(&out, a->in_c, a->in_h, a->in_w)) return die(argv[5]);
    jem_dataset_truncate(&tr, n_fit);
    jem_dataset_truncate(&in, n_test);
    jem_dataset_truncate(&out, n_test);
    const int D = jem_net_feature_dim(net, layer), M = in.n + out.n;
    if (D < 1) return die(argv[7]);
    const size_t img = (size_t)a->in_c * a->in_h * a->in_w;
    float *x = malloc(sizeof(float) * (size_t)M * img);
    memcpy(x, in.x, sizeof(float) * (size_t)in.n * img);
    memcpy(x + (size_t)in.n * img, out.x, sizeof(float) * (size_t)out.n * img);
    float *ftr = malloc(sizeof(float) * (size_t)tr.n * D), *fte = malloc(sizeof(float) * (size_t)M * D);
    double *s_maha = malloc(sizeof(double) * M), *s_knn = malloc(sizeof(double) * M);
    if (jem_net_features(net, tr.x, tr.n, layer, ftr) || jem_net_features(net, x, M, layer, fte)) return die("features");
    jem_det_cfg cfg;
    jem_det_defaults(&cfg);
    cfg.layer = layer;
    cfg.k = k;
    jem_detector *d = NULL;
    cfg.kind = JEM_DET_MAHALANOBIS;
    if (jem_detector_fit(net, &tr, &cfg, &d) || jem_detector_score(d, net, x, M, s_maha)) return die("mahalanobis");
    jem_detector_free(d);
    cfg.kind = JEM_DET_KNN;
    if (jem_detector_fit(net, &tr, &cfg, &d) || jem_detector_score(d, net, x, M, s_knn)) return die("knn");
    jem_detector_free(d);
    int32_t *is_in = malloc(sizeof(int32_t) * M);
    for (int i = 0; i < M; i++) is_in[i] = i < in.n;
    jem_st *st = NULL;
    const int64_t s_tr[2] = {tr.n, D}, s_te[2] = {M, D}, n_tr = tr.n, m = M;
    char kb[16];
    snprintf(kb, sizeof kb, "%d", k);
    if (jem_st_new(&st) || jem_st_add(st, "train_feats", JEM_DT_F32, 2, s_tr, ftr) ||
        jem_st_add(st, "train_y", JEM_DT_I32, 1, &n_tr, tr.y) || jem_st_add(st, "test_feats", JEM_DT_F32, 2, s_te, fte) ||
        jem_st_add(st, "test_in", JEM_DT_I32, 1, &m, is_in) || jem_st_add(st, "jem_mahalanobis", JEM_DT_F64, 1, &m, s_maha) ||
        jem_st_add(st, "jem_knn", JEM_DT_F64, 1, &m, s_knn) || jem_st_meta(st, "k", kb) ||
        jem_st_meta(st, "n_classes", (snprintf(kb, sizeof kb, "%d", a->n_classes), kb)) || jem_st_commit(st, argv[9]))
        return die(argv[9]);
    jem_st_free(st);
    printf("ood_dump: %d training and %d + %d test features of layer %s (D = %d) -> %s\n", tr.n, in.n, out.n, argv[7],
           D, argv[9]);
    return 0;
}

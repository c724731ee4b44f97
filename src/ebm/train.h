/*
 * train.h: the trainer's test hooks (internal to jem). The tests reach
 * the trainer through jem_train_hooked, the command line's testing option
 * --inject-blowup through jem_train_test_blowup (jem.h), which sets
 * blowup_at alone; users call jem_train.
 */
#ifndef JEM_EBM_TRAIN_H
#define JEM_EBM_TRAIN_H

#include "jem.h"

typedef struct {
    int64_t blowup_at; /* multiply the lr by 1e6 at this iteration, on its
                           first try only (0: off): a divergence on demand */
    /* Called each iteration once the batch is loaded and augmented, before
     * the chains run: x (N, D) and y (N) are the iteration's rows, rows
     * [0, batch) the cross-entropy's, rows [px0, px0 + npx) the data side
     * of the generative terms (px0 = 0: the cross-entropy's rows
     * themselves). NULL: not called. */
    void (*batch)(void *ud, const float *x, const int32_t *y, int batch, int px0, int npx);
    /* Adversarial training: called each iteration once the adversarial
     * examples are made, with the balls' centres x (batch, D: the clean
     * rows clamped to [-1, 1]), the adversarial examples xadv (batch, D) and
     * the radius they were made at (model units). NULL: not called. */
    void (*adv)(void *ud, const float *x, const float *xadv, int batch, double eps);
    void *ud;
} jem_train_hooks;

/* jem_train with test hooks (hooks may be NULL: none). */
jem_status jem_train_hooked(jem_net *net, const jem_dataset *train, const jem_dataset *val, const jem_train_cfg *cfg,
                            const char *resume_path, const jem_train_hooks *hooks);

#endif

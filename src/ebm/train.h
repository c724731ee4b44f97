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
    int64_t blowup_at;  /* multiply the lr by 1e6 at this iteration, on its
                           first try only (0: off): a divergence on demand */
} jem_train_hooks;

/* jem_train with test hooks (hooks may be NULL: none). */
jem_status jem_train_hooked(jem_net *net, const jem_dataset *train,
                            const jem_dataset *val, const jem_train_cfg *cfg,
                            const char *resume_path,
                            const jem_train_hooks *hooks);

#endif

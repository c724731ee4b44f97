/*
 * io.h: internal file helpers of jem. The atomic writer (jem_atomic_open,
 * _commit, _abort) is public (include/jem.h); every file jem replaces
 * (checkpoints, PNG, JSON, scores, reports) goes through that one
 * implementation; the training log is only appended to.
 */
#ifndef JEM_IO_IO_H
#define JEM_IO_IO_H

#include "jem.h"

#include <stdio.h>

/* Suffix marker of temporary files ("<path>" JEM_ATOMIC_TMP_MARK "<pid>-<n>"). */
#define JEM_ATOMIC_TMP_MARK ".tmp-"

#endif /* JEM_IO_IO_H */

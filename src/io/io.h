/*
 * io.h: internal file helpers of jem.
 *
 * Atomic replacement of a file through a stdio stream:
 *
 *     jem_atomic a;
 *     jem_status s = jem_atomic_open(&a, path);
 *     if (s) return s;
 *     if (fwrite(buf, 1, n, a.fp) != n) { jem_atomic_abort(&a); return jem_fail(JEM_ERR_IO, ...); }
 *     return jem_atomic_commit(&a);
 *
 * jem_atomic_open creates a new temporary file in the target's directory
 * (named "<path>.tmp-<pid>-<n>", mode 0666 minus the umask, O_EXCL so it
 * never clobbers anything). The target is untouched until commit:
 *   commit: fflush, check the stream's error flag, fsync, fclose, rename over
 *           the target, fsync the directory, then remove the temporary files
 *           of the target left by writers that no longer run. On any failure
 *           the temporary file is removed, the target keeps its old contents,
 *           and JEM_ERR_IO names the path and the failing step.
 *   abort:  fclose and unlink the temporary file.
 * After either, the struct is cleared (fp == NULL); aborting a cleared or
 * zero-initialised struct does nothing, so `jem_atomic_abort(&a)` is safe on
 * every error path. The stream's error flag is checked at commit, but callers
 * should still check each fwrite to stop early.
 * If path is a symbolic link, the link itself is replaced by a regular file.
 * Every file jem replaces (checkpoints, PNG, JSON, scores, reports) goes
 * through this one implementation; the training log is only appended to.
 */
#ifndef JEM_IO_IO_H
#define JEM_IO_IO_H

#include "jem.h"

#include <stdio.h>

typedef struct {
    FILE *fp;    /* write here (binary mode) */
    char *path;  /* target (owned copy) */
    char *tmp;   /* temporary file beside it (owned) */
} jem_atomic;

jem_status jem_atomic_open(jem_atomic *a, const char *path);
jem_status jem_atomic_commit(jem_atomic *a);
void       jem_atomic_abort(jem_atomic *a);

/* Suffix marker of temporary files ("<path>" JEM_ATOMIC_TMP_MARK "<pid>-<n>"). */
#define JEM_ATOMIC_TMP_MARK ".tmp-"

#endif /* JEM_IO_IO_H */

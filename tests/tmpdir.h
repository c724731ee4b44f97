/* Scratch directories for tests.
 *
 *   t_tmpdir("png")      a new empty directory $TMPDIR/jem_png_XXXXXX (or
 *                        under /tmp), which becomes the current one; every
 *                        directory made so is removed, with all it holds,
 *                        when the test process exits
 *   t_path("a/b.png")    "<current directory>/a/b.png" (one of 8 rotating
 *                        buffers, so a few can be used at once)
 *   t_count_temps(dir)   files in dir (NULL: the current directory) named
 *                        like an atomic writer's temporary files
 *   t_count_entries(dir) entries in dir other than "." and ".."
 *   t_check_no_temps(dir) one check per entry of dir: not a temporary file
 *
 * A failure to make a directory ends the test binary with status 2. */
#ifndef JEM_TEST_TMPDIR_H
#define JEM_TEST_TMPDIR_H

#include "io/io.h"
#include "test.h"

#include <dirent.h>
#include <ftw.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#define T_MAX_DIRS 8

static char t_dirs[T_MAX_DIRS][256];
static int t_ndirs;
static pid_t t_dirs_owner; /* forked children leave the directories alone */

static inline int t_rm_entry(const char *p, const struct stat *sb, int flag, struct FTW *ftw)
{
    (void)sb;
    (void)flag;
    (void)ftw;
    return remove(p);
}

static inline void t_rm_rf(const char *dir) { nftw(dir, t_rm_entry, 16, FTW_DEPTH | FTW_PHYS); }

static inline void t_tmpdir_remove_all(void)
{
    if (getpid() != t_dirs_owner) return;
    for (int i = 0; i < t_ndirs; i++) t_rm_rf(t_dirs[i]);
}

/* the current directory: the last one made */
static inline const char *t_dir(void) { return t_ndirs ? t_dirs[t_ndirs - 1] : "."; }

static inline const char *t_tmpdir(const char *tag)
{
    const char *base = getenv("TMPDIR");
    if (!base || !*base) base = "/tmp";
    if (t_ndirs == T_MAX_DIRS) {
        fprintf(stderr, "%s: more than %d scratch directories\n", t_name, T_MAX_DIRS);
        exit(2);
    }
    char *d = t_dirs[t_ndirs];
    int r = snprintf(d, sizeof t_dirs[0], "%s/jem_%s_XXXXXX", base, tag);
    if (r < 0 || (size_t)r >= sizeof t_dirs[0] || !mkdtemp(d)) {
        fprintf(stderr, "%s: cannot make a scratch directory %s\n", t_name, d);
        exit(2);
    }
    if (t_ndirs++ == 0) {
        t_dirs_owner = getpid();
        atexit(t_tmpdir_remove_all);
    }
    return d;
}

static inline const char *t_path(const char *name)
{
    static char buf[8][512];
    static int k;
    k = (k + 1) % 8;
    snprintf(buf[k], sizeof buf[k], "%s/%s", t_dir(), name);
    return buf[k];
}

/* entries of dir (NULL: the current one) whose name contains mark (NULL:
 * every entry but "." and ".."); -1 if dir cannot be read */
static inline int t_count_named(const char *dir, const char *mark)
{
    DIR *d = opendir(dir ? dir : t_dir());
    if (!d) return -1;
    int n = 0;
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        n += !mark || strstr(e->d_name, mark) != NULL;
    }
    closedir(d);
    return n;
}

static inline int t_count_temps(const char *dir) { return t_count_named(dir, JEM_ATOMIC_TMP_MARK); }
static inline int t_count_entries(const char *dir) { return t_count_named(dir, NULL); }

static inline void t_check_no_temps(const char *dir)
{
    DIR *d = opendir(dir ? dir : t_dir());
    if (!d) {
        T_REPORT_FAIL("cannot read %s", dir ? dir : t_dir());
        return;
    }
    for (struct dirent *e; (e = readdir(d));) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        ASSERT_MSG(strstr(e->d_name, JEM_ATOMIC_TMP_MARK) == NULL, "temporary file left: %s", e->d_name);
    }
    closedir(d);
}

#endif

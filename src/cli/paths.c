/* paths.c: where the tool finds its files when a path does not name them
 * from the current folder: the shipped models and model descriptions, and
 * the data sets' folders. An installed tool looks in PREFIX/share/jem (found
 * beside its own executable, PREFIX/bin/jem, so a tree installed under any
 * prefix or DESTDIR finds its own files; else the folder compiled in from
 * the build's PREFIX); a tool built in a checkout looks in the checkout. */
#include "cli/cli.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#ifndef JEM_DATADIR
#define JEM_DATADIR "/usr/local/share/jem"
#endif

#define MAX_SHARE 3

static char share[MAX_SHARE][PATH_MAX];
static int n_share = -1;

static int is_dir(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int is_file(const char *p)
{
    struct stat sb;
    return stat(p, &sb) == 0 && S_ISREG(sb.st_mode);
}

static void add_share(const char *dir)
{
    if (n_share >= MAX_SHARE || !is_dir(dir) || strlen(dir) >= PATH_MAX) return;
    char real[PATH_MAX];
    if (!realpath(dir, real)) return;
    for (int i = 0; i < n_share; i++)
        if (!strcmp(share[i], real)) return;
    snprintf(share[n_share++], PATH_MAX, "%s", real);
}

static void find_share(void)
{
    if (n_share >= 0) return;
    n_share = 0;
    char exe[PATH_MAX], dir[PATH_MAX + 32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    char *slash = NULL;
    if (len > 0) {
        exe[len] = 0;
        slash = strrchr(exe, '/');
    }
    if (slash && slash != exe) {
        *slash = 0; /* exe: the executable's folder */
        /* installed: PREFIX/bin/jem beside PREFIX/share/jem */
        snprintf(dir, sizeof dir, "%s/../share/jem", exe);
        add_share(dir);
        /* a checkout: build/jem (build-san/jem, ...) below the models/ folder */
        snprintf(dir, sizeof dir, "%s/../models/wrn-fmnist.model", exe);
        if (is_file(dir)) {
            snprintf(dir, sizeof dir, "%s/..", exe);
            add_share(dir);
        }
    }
    add_share(JEM_DATADIR);
}

const char *cli_share_dir(int i)
{
    find_share();
    return i >= 0 && i < n_share ? share[i] : NULL;
}

const char *cli_datadir_built_in(void) { return JEM_DATADIR; }

const char *cli_find_file(const char *path, char *buf, size_t n)
{
    if (!path || !*path || path[0] == '/' || access(path, F_OK) == 0) return path;
    /* ./x and ../x name a place on purpose */
    if (!strncmp(path, "./", 2) || !strncmp(path, "../", 3)) return path;
    const char *base = strrchr(path, '/') ? NULL : path;
    for (int i = 0; cli_share_dir(i); i++) {
        int k = snprintf(buf, n, "%s/%s", cli_share_dir(i), path);
        if (k > 0 && (size_t)k < n && is_file(buf)) return buf;
        if (!base) continue;
        k = snprintf(buf, n, "%s/models/%s", cli_share_dir(i), base);
        if (k > 0 && (size_t)k < n && is_file(buf)) return buf;
    }
    return path;
}

static int has_idx(const char *dir, const char *file)
{
    char p[PATH_MAX + 64];
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte", dir, file);
    if (is_file(p)) return 1;
    snprintf(p, sizeof p, "%s/%s-images-idx3-ubyte.gz", dir, file);
    return is_file(p);
}

static int has_mnist(const char *dir) { return has_idx(dir, "t10k") || has_idx(dir, "train"); }

void cli_data_dirs(void)
{
    const char *fm = getenv("JEM_FMNIST_DIR");
    jem_data_set_dir("fmnist", fm && *fm ? fm : "/usr/share/datasets/fashion-mnist");
    const char *mn = getenv("JEM_MNIST_DIR"), *rel = "../shared/data/mnist";
    if (mn && *mn) {
        jem_data_set_dir("mnist", mn);
        return;
    }
    if (has_mnist(rel)) {
        jem_data_set_dir("mnist", rel);
        return;
    }
    /* beside the project root: up from the executable's folder (build/jem,
     * build/tests/...) */
    char exe[PATH_MAX], dir[PATH_MAX + 32];
    ssize_t len = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (len > 0) {
        exe[len] = 0;
        for (int up = 0; up < 4; up++) {
            char *slash = strrchr(exe, '/');
            if (!slash || slash == exe) break;
            *slash = 0;
            snprintf(dir, sizeof dir, "%s/%s", exe, rel);
            if (has_mnist(dir)) {
                jem_data_set_dir("mnist", dir);
                return;
            }
        }
    }
    /* an installed tool: PREFIX/share/jem/mnist */
    for (int i = 0; cli_share_dir(i); i++) {
        int k = snprintf(dir, sizeof dir, "%s/mnist", cli_share_dir(i));
        if (k > 0 && (size_t)k < sizeof dir && has_mnist(dir)) {
            jem_data_set_dir("mnist", dir);
            return;
        }
    }
    /* not found: opening mnist: names the files looked for here */
    jem_data_set_dir("mnist", rel);
}

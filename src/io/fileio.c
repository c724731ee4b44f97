/* Atomic file replacement (temporary file, fsync, rename, fsync of the
 * directory), whole-file reading, and base64 for embedding files in text. */
#include "io/io.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

static char *dup_str(const char *s)
{
    size_t n = strlen(s) + 1;
    char *d = malloc(n);
    if (d) memcpy(d, s, n);
    return d;
}

static void atomic_clear(jem_atomic *a)
{
    free(a->path);
    free(a->tmp);
    a->fp = NULL;
    a->path = NULL;
    a->tmp = NULL;
}

jem_status jem_atomic_open(jem_atomic *a, const char *path)
{
    static atomic_uint counter;
    a->fp = NULL;
    a->path = NULL;
    a->tmp = NULL;
    if (!path || !*path) return jem_fail(JEM_ERR_ARG, "atomic write: empty path");
    size_t plen = strlen(path);
    if (path[plen - 1] == '/') return jem_fail(JEM_ERR_ARG, "%s: is a directory name", path);

    size_t tlen = plen + sizeof(JEM_ATOMIC_TMP_MARK) + 48;
    a->path = dup_str(path);
    a->tmp = malloc(tlen);
    if (!a->path || !a->tmp) {
        atomic_clear(a);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    }
    int fd = -1, err = 0;
    for (int attempt = 0; attempt < 100; attempt++) {
        unsigned k = atomic_fetch_add(&counter, 1u);
        snprintf(a->tmp, tlen, "%s" JEM_ATOMIC_TMP_MARK "%ld-%u", path, (long)getpid(), k);
        fd = open(a->tmp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0666);
        if (fd >= 0 || errno != EEXIST) break;
    }
    if (fd < 0) {
        err = errno;
        jem_status s = jem_fail(JEM_ERR_IO, "%s: cannot create temporary file %s: %s", path, a->tmp, strerror(err));
        atomic_clear(a);
        return s;
    }
    a->fp = fdopen(fd, "wb");
    if (!a->fp) {
        err = errno;
        close(fd);
        unlink(a->tmp);
        jem_status s = jem_fail(JEM_ERR_IO, "%s: fdopen: %s", path, strerror(err));
        atomic_clear(a);
        return s;
    }
    return JEM_OK;
}

void jem_atomic_abort(jem_atomic *a)
{
    if (!a) return;
    if (a->fp) fclose(a->fp);
    if (a->tmp) unlink(a->tmp);
    atomic_clear(a);
}

/* fsync the directory holding path, so the rename itself is durable.
 * File systems that cannot fsync a directory (EINVAL, ENOTSUP) are accepted. */
static jem_status fsync_dir(const char *path)
{
    const char *slash = strrchr(path, '/');
    char *dir;
    if (!slash) dir = dup_str(".");
    else if (slash == path) dir = dup_str("/");
    else {
        size_t n = (size_t)(slash - path);
        dir = malloc(n + 1);
        if (dir) {
            memcpy(dir, path, n);
            dir[n] = 0;
        }
    }
    if (!dir) return jem_fail(JEM_ERR_NOMEM, "%s: out of memory", path);
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) {
        int e = errno;
        jem_status s = jem_fail(JEM_ERR_IO, "%s: cannot open directory %s to fsync it: %s", path, dir, strerror(e));
        free(dir);
        return s;
    }
    jem_status s = JEM_OK;
    if (fsync(fd) != 0 && errno != EINVAL && errno != ENOTSUP)
        s = jem_fail(JEM_ERR_IO, "%s: fsync of directory %s: %s", path, dir, strerror(errno));
    close(fd);
    free(dir);
    return s;
}

/* Remove temporary files of path left by writers that were killed (SIGKILL,
 * power loss) before they could clean up: "<path>.tmp-<pid>-<n>" whose pid no
 * longer exists. Best effort; errors are ignored. */
static void sweep_stale(const char *path)
{
    const char *slash = strrchr(path, '/');
    const char *base = slash ? slash + 1 : path;
    size_t dlen = slash ? (size_t)(slash - path) : 0;
    char dir[4096];
    if (dlen + 2 > sizeof dir) return;
    if (!slash) strcpy(dir, ".");
    else if (dlen == 0) strcpy(dir, "/");
    else {
        memcpy(dir, path, dlen);
        dir[dlen] = 0;
    }
    size_t blen = strlen(base), mlen = strlen(JEM_ATOMIC_TMP_MARK);
    DIR *d = opendir(dir);
    if (!d) return;
    struct dirent *e;
    while ((e = readdir(d))) {
        const char *n = e->d_name;
        if (strncmp(n, base, blen) || strncmp(n + blen, JEM_ATOMIC_TMP_MARK, mlen)) continue;
        char *end;
        errno = 0;
        long pid = strtol(n + blen + mlen, &end, 10);
        if (errno || end == n + blen + mlen || *end != '-' || pid <= 0 || pid == (long)getpid()) continue;
        if (kill((pid_t)pid, 0) == 0 || errno != ESRCH) continue;
        char full[4096 + 256];
        snprintf(full, sizeof full, "%s/%s", dir, n);
        unlink(full);
    }
    closedir(d);
}

jem_status jem_atomic_commit(jem_atomic *a)
{
    if (!a || !a->fp) return jem_fail(JEM_ERR_ARG, "atomic write: commit without an open file");
    const char *step = NULL;
    int err = 0;
    if (fflush(a->fp) != 0) {
        step = "write";
        err = errno;
    } else if (ferror(a->fp)) {
        step = "write";
        err = EIO;
    } else if (fsync(fileno(a->fp)) != 0) {
        step = "fsync";
        err = errno;
    }
    if (step) {
        jem_status s = jem_fail(JEM_ERR_IO, "%s: %s of temporary file failed: %s", a->path, step, strerror(err));
        jem_atomic_abort(a);
        return s;
    }
    FILE *fp = a->fp;
    a->fp = NULL;
    if (fclose(fp) != 0) {
        err = errno;
        jem_status s = jem_fail(JEM_ERR_IO, "%s: close of temporary file failed: %s", a->path, strerror(err));
        unlink(a->tmp);
        atomic_clear(a);
        return s;
    }
    if (rename(a->tmp, a->path) != 0) {
        err = errno;
        jem_status s = jem_fail(JEM_ERR_IO, "%s: cannot rename %s over it: %s", a->path, a->tmp, strerror(err));
        unlink(a->tmp);
        atomic_clear(a);
        return s;
    }
    jem_status s = fsync_dir(a->path);
    if (s == JEM_OK) sweep_stale(a->path);
    atomic_clear(a);
    return s;
}

jem_status jem_write_file_atomic(const char *path, const void *data, size_t n)
{
    if (n && !data) return jem_fail(JEM_ERR_ARG, "%s: no data to write", path ? path : "(null)");
    jem_atomic a;
    jem_status s = jem_atomic_open(&a, path);
    if (s) return s;
    if (n && fwrite(data, 1, n, a.fp) != n) {
        int e = errno;
        s = jem_fail(JEM_ERR_IO, "%s: write failed: %s", path, strerror(e));
        jem_atomic_abort(&a);
        return s;
    }
    return jem_atomic_commit(&a);
}

jem_status jem_read_file(const char *path, size_t max_bytes, char **out, size_t *n)
{
    *out = NULL;
    if (n) *n = 0;
    if (!path || !*path) return jem_fail(JEM_ERR_ARG, "read: empty path");
    if (max_bytes == 0 || max_bytes > SIZE_MAX - 1) max_bytes = SIZE_MAX - 1;

    FILE *f = fopen(path, "rb");
    if (!f) {
        int e = errno;
        return jem_fail(JEM_ERR_IO, "%s: cannot open: %s", path, strerror(e));
    }
    struct stat st;
    size_t cap = 4096;
    if (fstat(fileno(f), &st) == 0) {
        if (S_ISDIR(st.st_mode)) {
            fclose(f);
            return jem_fail(JEM_ERR_IO, "%s: is a directory", path);
        }
        if (S_ISREG(st.st_mode)) {
            if ((uintmax_t)st.st_size > (uintmax_t)max_bytes) {
                fclose(f);
                return jem_fail(JEM_ERR_FORMAT, "%s: file too large (%jd bytes, limit %zu)", path, (intmax_t)st.st_size,
                                max_bytes);
            }
            cap = (size_t)st.st_size + 1; /* +1: EOF is seen without a regrow */
        }
    }
    char *buf = malloc(cap + 1);
    if (!buf) {
        fclose(f);
        return jem_fail(JEM_ERR_NOMEM, "%s: out of memory for %zu bytes", path, cap);
    }
    size_t len = 0;
    jem_status s = JEM_OK;
    for (;;) {
        if (len == cap) {
            if (cap >= max_bytes + 1) {
                s = jem_fail(JEM_ERR_FORMAT, "%s: file too large (limit %zu bytes)", path, max_bytes);
                break;
            }
            size_t ncap = cap > (SIZE_MAX - 1) / 2 ? SIZE_MAX - 1 : cap * 2;
            if (ncap > max_bytes + 1) ncap = max_bytes + 1;
            char *nb = realloc(buf, ncap + 1);
            if (!nb) {
                s = jem_fail(JEM_ERR_NOMEM, "%s: out of memory for %zu bytes", path, ncap);
                break;
            }
            buf = nb;
            cap = ncap;
        }
        size_t got = fread(buf + len, 1, cap - len, f);
        len += got;
        if (got == 0) {
            if (ferror(f)) {
                int e = errno;
                s = jem_fail(JEM_ERR_IO, "%s: read failed: %s", path, strerror(e));
            }
            break;
        }
    }
    fclose(f);
    if (s == JEM_OK && len > max_bytes)
        s = jem_fail(JEM_ERR_FORMAT, "%s: file too large (limit %zu bytes)", path, max_bytes);
    if (s) {
        free(buf);
        return s;
    }
    buf[len] = 0;
    *out = buf;
    if (n) *n = len;
    return JEM_OK;
}

jem_status jem_base64_encode(const void *data, size_t n, char **out, size_t *len)
{
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    const unsigned char *p = data;
    *out = NULL;
    if (len) *len = 0;
    if (!p && n) return jem_fail(JEM_ERR_ARG, "base64: no data for %zu bytes", n);
    if (n / 3 >= (SIZE_MAX - 1) / 4 - 1) return jem_fail(JEM_ERR_NOMEM, "base64: %zu bytes is too large", n);
    const size_t m = (n + 2) / 3 * 4;
    char *s = malloc(m + 1);
    if (!s) return jem_fail(JEM_ERR_NOMEM, "base64: out of memory for %zu characters", m);
    size_t k = 0;
    for (size_t i = 0; i < n; i += 3) {
        /* three bytes (zero past the end) as four 6-bit digits */
        const size_t left = n - i;
        const uint32_t v =
            (uint32_t)p[i] << 16 | (uint32_t)(left > 1 ? p[i + 1] : 0) << 8 | (uint32_t)(left > 2 ? p[i + 2] : 0);
        s[k++] = abc[v >> 18 & 63];
        s[k++] = abc[v >> 12 & 63];
        s[k++] = left > 1 ? abc[v >> 6 & 63] : '=';
        s[k++] = left > 2 ? abc[v & 63] : '=';
    }
    s[k] = 0;
    *out = s;
    if (len) *len = k;
    return JEM_OK;
}

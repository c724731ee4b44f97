/*
 * Failure paths that need the process's limits changed, each in a forked
 * child so the limits do not leak into the rest of the suite:
 *  - disk full: with RLIMIT_FSIZE below a file's size, saving over a good
 *    file fails with an I/O error, the good file is unchanged byte for byte
 *    and no temporary file is left (every writer: files, checkpoints, PNG
 *    grids and images);
 *  - out of memory: with RLIMIT_AS a little above what the process uses,
 *    building a huge network or data set returns JEM_ERR_NOMEM (no crash);
 *    skipped under AddressSanitizer, which reserves address space itself;
 *  - temporary files of a killed writer (a pid that no longer exists) are
 *    removed by the next successful write; those of a live writer are kept
 *    (every writer).
 */
#include "jem.h"
#include "tmpdir.h"

#include <signal.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

/* Run fn in a child; its exit status is the number of failed checks
 * (255: it died). Passed checks are added from the child's report. */
static void in_child(const char *what, int (*fn)(int *npass))
{
    int pfd[2];
    if (pipe(pfd)) {
        ASSERT_MSG(0, "pipe");
        return;
    }
    fflush(NULL);
    pid_t pid = fork();
    if (pid == 0) {
        close(pfd[0]);
        int np = 0;
        int nf = fn(&np);
        if (write(pfd[1], &np, sizeof np) != sizeof np) nf++;
        _exit(nf > 254 ? 254 : nf);
    }
    close(pfd[1]);
    int np = 0;
    if (read(pfd[0], &np, sizeof np) != sizeof np) np = 0;
    close(pfd[0]);
    int st = 0;
    waitpid(pid, &st, 0);
    int ok = WIFEXITED(st) && WEXITSTATUS(st) == 0;
    ASSERT_MSG(ok, "%s: child %s %d", what, WIFEXITED(st) ? "failed checks:" : "died of signal",
               WIFEXITED(st) ? WEXITSTATUS(st) : WTERMSIG(st));
    if (ok) t_pass += np;
}

#define CHILD_CHECK(c)                                                                          \
    do {                                                                                        \
        if (c) (*npass)++;                                                                      \
        else {                                                                                  \
            nf++;                                                                               \
            fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #c, jem_last_error()); \
        }                                                                                       \
    } while (0)

static jem_status make_net(jem_net **net, const char *desc)
{
    jem_arch a;
    jem_status s = jem_arch_parse(desc, "limits.model", &a);
    if (s) return s;
    s = jem_net_create(&a, net);
    if (s) return s;
    jem_rng r;
    jem_rng_seed(&r, 3, 0);
    jem_net_init(*net, &r);
    return JEM_OK;
}

/* Every kind of file jem saves, each through its own writer: version 0 and
 * version 1 are different contents of the same size, so version 1 cannot be
 * written in half the size of version 0; read checks the file as its own
 * format. */
typedef struct {
    const char *what, *file;
    jem_status (*write)(const char *path, int version);
    jem_status (*read)(const char *path);
} writer;

#define IMG 64 /* side of the PNG images: noise, about 12 kB compressed */

static void noise(unsigned char *b, size_t n, int version)
{
    jem_rng r;
    jem_rng_seed(&r, 10 + (uint64_t)version, 0);
    for (size_t i = 0; i < n; i++) b[i] = (unsigned char)jem_rng_u64(&r);
}

static jem_status write_bytes(const char *path, int version)
{
    static unsigned char b[1 << 16];
    noise(b, sizeof b, version);
    return jem_write_file_atomic(path, b, sizeof b);
}

static jem_status read_bytes(const char *path)
{
    char *b = NULL;
    size_t n = 0;
    jem_status s = jem_read_file(path, 0, &b, &n);
    free(b);
    return s ? s : n == 1 << 16 ? JEM_OK : JEM_ERR_FORMAT;
}

static jem_status write_ckpt(const char *path, int version)
{
    jem_net *net = NULL;
    jem_status s = make_net(&net, "input = 1x28x28\nclasses = 10\nstem = 8\nblocks = 16/1 32/2\n");
    if (s) return s;
    jem_net_params(net)[0] += (float)version;
    s = jem_ckpt_save(path, net, NULL);
    jem_net_free(net);
    return s;
}

static jem_status read_ckpt(const char *path)
{
    jem_net *net = NULL;
    jem_status s = jem_ckpt_load(path, &net);
    jem_net_free(net);
    return s;
}

static jem_status write_grid(const char *path, int version)
{
    unsigned char b[3 * IMG * IMG];
    float x[3 * IMG * IMG]; /* (1, 3, IMG, IMG) */
    noise(b, sizeof b, version);
    for (size_t i = 0; i < sizeof b; i++) x[i] = b[i] / 127.5f - 1.0f;
    return jem_png_write_grid(path, x, 1, 3, IMG, IMG, 1, 0);
}

static jem_status write_rgb(const char *path, int version)
{
    uint8_t rgb[IMG * IMG * 3]; /* (IMG, IMG, 3) */
    noise(rgb, sizeof rgb, version);
    return jem_png_write_rgb(path, rgb, IMG, IMG);
}

static jem_status read_png(const char *path)
{
    float *x = NULL;
    int c = 0, h = 0, w = 0;
    jem_status s = jem_png_read(path, 0, &x, &c, &h, &w);
    free(x);
    return s ? s : c == 3 && h == IMG && w == IMG ? JEM_OK : JEM_ERR_SHAPE;
}

static const writer writers[] = {
    {"file", "w.bin", write_bytes, read_bytes},
    {"checkpoint", "model.safetensors", write_ckpt, read_ckpt},
    {"PNG grid", "grid.png", write_grid, read_png},
    {"PNG image", "image.png", write_rgb, read_png},
};
#define NWRITERS (int)(sizeof writers / sizeof writers[0])

#define WRITER_CHECK(wr, c)                                                                                     \
    do {                                                                                                        \
        if (c) (*npass)++;                                                                                      \
        else {                                                                                                  \
            nf++;                                                                                               \
            fprintf(stderr, "FAIL %s:%d: %s: %s (%s)\n", __FILE__, __LINE__, (wr)->what, #c, jem_last_error()); \
        }                                                                                                       \
    } while (0)

/* For each writer: saving over a good file with the file size limited to
 * half of it fails with an I/O error naming the file, the good file is
 * unchanged byte for byte and still reads, no temporary file is left; the
 * same write without the limit succeeds. */
static int child_disk_full(int *npass)
{
    int nf = 0;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit old;
    CHILD_CHECK(getrlimit(RLIMIT_FSIZE, &old) == 0);
    for (int i = 0; i < NWRITERS; i++) {
        const writer *wr = &writers[i];
        const char *path = t_path(wr->file);
        WRITER_CHECK(wr, wr->write(path, 0) == JEM_OK);
        char *good = NULL, *now = NULL;
        size_t ngood = 0, nnow = 0;
        WRITER_CHECK(wr, jem_read_file(path, 0, &good, &ngood) == JEM_OK);
        struct rlimit half = old;
        half.rlim_cur = (rlim_t)(ngood / 2);
        WRITER_CHECK(wr, setrlimit(RLIMIT_FSIZE, &half) == 0);
        jem_status s = wr->write(path, 1);
        WRITER_CHECK(wr, setrlimit(RLIMIT_FSIZE, &old) == 0);
        WRITER_CHECK(wr, s == JEM_ERR_IO);
        WRITER_CHECK(wr, strstr(jem_last_error(), wr->file) != NULL);
        WRITER_CHECK(wr, jem_read_file(path, 0, &now, &nnow) == JEM_OK);
        WRITER_CHECK(wr, nnow == ngood && now && good && memcmp(now, good, ngood) == 0);
        WRITER_CHECK(wr, t_count_temps(NULL) == 0);
        WRITER_CHECK(wr, wr->read(path) == JEM_OK);
        WRITER_CHECK(wr, wr->write(path, 1) == JEM_OK);
        WRITER_CHECK(wr, wr->read(path) == JEM_OK);
        WRITER_CHECK(wr, t_count_temps(NULL) == 0);
        free(good);
        free(now);
        unlink(path);
    }
    return nf;
}

static int child_oom(int *npass)
{
    int nf = 0;
    /* address space: what is mapped now plus 256 MB */
    long vm_kb = 0;
    FILE *f = fopen("/proc/self/status", "r");
    if (f) {
        char line[256];
        while (fgets(line, sizeof line, f))
            if (!strncmp(line, "VmSize:", 7)) vm_kb = atol(line + 7);
        fclose(f);
    }
    CHILD_CHECK(vm_kb > 0);
    rlim_t lim = (rlim_t)(vm_kb + 256 * 1024) * 1024;
    struct rlimit rl = {lim, lim};
    CHILD_CHECK(setrlimit(RLIMIT_AS, &rl) == 0);
    /* ~600 M parameters (2.4 GB for the weights alone) */
    jem_net *net = NULL;
    jem_status s = make_net(&net, "input = 3x32x32\nclasses = 10\nstem = 512\nblocks = 4096/1 4096/1\n");
    CHILD_CHECK(s == JEM_ERR_NOMEM);
    CHILD_CHECK(net == NULL);
    /* a data set of 1.5e9 samples (6 GB) */
    jem_dataset ds;
    s = jem_dataset_synthetic("uniform", 1500000, 1, 32, 32, NULL, 1, &ds);
    CHILD_CHECK(s == JEM_ERR_NOMEM);
    /* and a small one still works afterwards */
    s = jem_dataset_synthetic("uniform", 10, 1, 8, 8, NULL, 1, &ds);
    CHILD_CHECK(s == JEM_OK);
    if (s == JEM_OK) jem_dataset_free(&ds);
    return nf;
}

/* For each writer: temporary files of its target left by a killed writer
 * (a pid that no longer exists) are removed by the next successful write;
 * those of a live writer are kept. */
static int child_sweep(int *npass)
{
    int nf = 0;
    /* a pid that has exited: fork a child and reap it */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    for (int i = 0; i < NWRITERS; i++) {
        const writer *wr = &writers[i];
        char path[512], stale[600], live[600];
        snprintf(path, sizeof path, "%s", t_path(wr->file));
        snprintf(stale, sizeof stale, "%s" JEM_ATOMIC_TMP_MARK "%ld-0", path, (long)dead);
        snprintf(live, sizeof live, "%s" JEM_ATOMIC_TMP_MARK "%ld-0", path, (long)getppid());
        FILE *a = fopen(stale, "w"), *b = fopen(live, "w");
        WRITER_CHECK(wr, a && b);
        if (a) fclose(a);
        if (b) fclose(b);
        WRITER_CHECK(wr, wr->write(path, 0) == JEM_OK);
        WRITER_CHECK(wr, wr->read(path) == JEM_OK);
        WRITER_CHECK(wr, access(stale, F_OK) != 0);
        WRITER_CHECK(wr, access(live, F_OK) == 0);
        unlink(live);
        unlink(path);
    }
    return nf;
}

int main(void)
{
    TEST_MAIN_BEGIN("test_limits");
    t_tmpdir("limits");
    in_child("disk full", child_disk_full);
    in_child("stale temporary files", child_sweep);
#if defined(__SANITIZE_ADDRESS__)
    printf("  out of memory: skipped under AddressSanitizer\n");
#else
    in_child("out of memory", child_oom);
#endif
    return t_finish();
}

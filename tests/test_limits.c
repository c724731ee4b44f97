/*
 * Failure paths that need the process's limits changed, each in a forked
 * child so the limits do not leak into the rest of the suite:
 *  - disk full: with RLIMIT_FSIZE below a checkpoint's size, saving over a
 *    good checkpoint fails with an I/O error, the good file is unchanged
 *    byte for byte and no temporary file is left;
 *  - out of memory: with RLIMIT_AS a little above what the process uses,
 *    building a huge network or data set returns JEM_ERR_NOMEM (no crash);
 *    skipped under AddressSanitizer, which reserves address space itself;
 *  - temporary files of a killed writer (a pid that no longer exists) are
 *    removed by the next successful write; those of a live writer are kept.
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
    if (pipe(pfd)) { ASSERT_MSG(0, "pipe"); return; }
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

#define CHILD_CHECK(c) do { if (c) (*npass)++; else { nf++; fprintf(stderr, "FAIL %s:%d: %s (%s)\n", __FILE__, __LINE__, #c, jem_last_error()); } } while (0)

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

static int child_disk_full(int *npass)
{
    int nf = 0;
    char path[512];
    snprintf(path, sizeof path, "%s", t_path("model.safetensors"));
    jem_net *net = NULL;
    CHILD_CHECK(make_net(&net, "input = 1x28x28\nclasses = 10\nstem = 8\nblocks = 16/1 32/2\n") == JEM_OK);
    if (!net) return nf + 1;
    CHILD_CHECK(jem_ckpt_save(path, net, NULL) == JEM_OK);
    char *good = NULL;
    size_t ngood = 0;
    CHILD_CHECK(jem_read_file(path, 0, &good, &ngood) == JEM_OK);
    /* change the weights, then save with the file size limited to half */
    jem_net_params(net)[0] += 1.0f;
    signal(SIGXFSZ, SIG_IGN);
    struct rlimit rl = {(rlim_t)(ngood / 2), (rlim_t)(ngood / 2)};
    CHILD_CHECK(setrlimit(RLIMIT_FSIZE, &rl) == 0);
    jem_status s = jem_ckpt_save(path, net, NULL);
    CHILD_CHECK(s == JEM_ERR_IO);
    CHILD_CHECK(strstr(jem_last_error(), "model.safetensors") != NULL);
    char *now = NULL;
    size_t nnow = 0;
    CHILD_CHECK(jem_read_file(path, 0, &now, &nnow) == JEM_OK);
    CHILD_CHECK(nnow == ngood && now && good && memcmp(now, good, ngood) == 0);
    CHILD_CHECK(t_count_temps(NULL) == 0);
    jem_net *back = NULL;
    CHILD_CHECK(jem_ckpt_load(path, &back) == JEM_OK);
    jem_net_free(back);
    free(good);
    free(now);
    jem_net_free(net);
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

static int child_sweep(int *npass)
{
    int nf = 0;
    char path[512], stale[600], live[600];
    snprintf(path, sizeof path, "%s", t_path("w.bin"));
    /* a pid that has exited: fork a child and reap it */
    pid_t dead = fork();
    if (dead == 0) _exit(0);
    waitpid(dead, NULL, 0);
    snprintf(stale, sizeof stale, "%s" JEM_ATOMIC_TMP_MARK "%ld-0", path, (long)dead);
    snprintf(live, sizeof live, "%s" JEM_ATOMIC_TMP_MARK "%ld-0", path, (long)getppid());
    FILE *a = fopen(stale, "w"), *b = fopen(live, "w");
    CHILD_CHECK(a && b);
    if (a) fclose(a);
    if (b) fclose(b);
    CHILD_CHECK(jem_write_file_atomic(path, "x", 1) == JEM_OK);
    CHILD_CHECK(access(stale, F_OK) != 0);
    CHILD_CHECK(access(live, F_OK) == 0);
    unlink(live);
    unlink(path);
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

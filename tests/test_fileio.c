/* Atomic writes (commit, abort, failed commit, no leftover temporary files)
 * and whole-file reads. */
#include "jem.h"
#include "tmpdir.h"

#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

static int file_is(const char *path, const char *want)
{
    char *got = NULL;
    size_t n = 0;
    if (jem_read_file(path, 0, &got, &n) != JEM_OK) return 0;
    int ok = n == strlen(want) && memcmp(got, want, n) == 0;
    free(got);
    return ok;
}

static void test_write_replace(void)
{
    const char *p = t_path("a.txt");
    ASSERT_OK(jem_write_file_atomic(p, "first", 5));
    ASSERT(file_is(p, "first"));
    ASSERT_OK(jem_write_file_atomic(p, "second version", 14));
    ASSERT(file_is(p, "second version"));
    ASSERT_OK(jem_write_file_atomic(p, NULL, 0)); /* empty file */
    ASSERT(file_is(p, ""));
    ASSERT_EQ_INT(t_count_temps(NULL), 0);

    /* permissions follow the umask like an ordinary new file */
    mode_t old = umask(022);
    const char *q = t_path("mode.txt");
    ASSERT_OK(jem_write_file_atomic(q, "x", 1));
    struct stat st;
    ASSERT(stat(q, &st) == 0 && (st.st_mode & 0777) == 0644);
    umask(old);
    unlink(q);

    ASSERT_ERR(jem_write_file_atomic(p, NULL, 3), JEM_ERR_ARG);
    ASSERT_ERR(jem_write_file_atomic("", "x", 1), JEM_ERR_ARG);
    ASSERT(file_is(p, ""));
}

static void test_helper_commit_abort(void)
{
    const char *p = t_path("b.txt");
    ASSERT_OK(jem_write_file_atomic(p, "old contents", 12));

    /* abort: the target keeps its old contents, the temporary file is gone */
    jem_atomic a;
    ASSERT_OK(jem_atomic_open(&a, p));
    ASSERT(a.fp != NULL);
    ASSERT_EQ_INT(t_count_temps(NULL), 1);
    ASSERT(fputs("half-written new contents", a.fp) >= 0);
    fflush(a.fp);
    ASSERT(file_is(p, "old contents")); /* not visible yet */
    jem_atomic_abort(&a);
    ASSERT(a.fp == NULL && a.tmp == NULL && a.path == NULL);
    jem_atomic_abort(&a); /* second abort: no-op */
    ASSERT(file_is(p, "old contents"));
    ASSERT_EQ_INT(t_count_temps(NULL), 0);

    /* a zero-initialised struct can be aborted */
    jem_atomic z = {0};
    jem_atomic_abort(&z);
    jem_atomic_abort(NULL);
    ASSERT_ERR(jem_atomic_commit(&z), JEM_ERR_ARG);

    /* commit replaces */
    ASSERT_OK(jem_atomic_open(&a, p));
    ASSERT(fprintf(a.fp, "new %d", 42) > 0);
    ASSERT_OK(jem_atomic_commit(&a));
    ASSERT(a.fp == NULL);
    ASSERT(file_is(p, "new 42"));
    ASSERT_EQ_INT(t_count_temps(NULL), 0);

    /* two writers of the same target at once: distinct temporary files,
     * the last commit wins, nothing left over */
    jem_atomic a1, a2;
    ASSERT_OK(jem_atomic_open(&a1, p));
    ASSERT_OK(jem_atomic_open(&a2, p));
    ASSERT(strcmp(a1.tmp, a2.tmp) != 0);
    ASSERT_EQ_INT(t_count_temps(NULL), 2);
    fputs("one", a1.fp);
    fputs("two", a2.fp);
    ASSERT_OK(jem_atomic_commit(&a1));
    ASSERT_OK(jem_atomic_commit(&a2));
    ASSERT(file_is(p, "two"));
    ASSERT_EQ_INT(t_count_temps(NULL), 0);

    /* a relative path without a directory part (fsync of ".") */
    char cwd[512];
    if (getcwd(cwd, sizeof cwd) && chdir(t_dir()) == 0) {
        ASSERT_OK(jem_write_file_atomic("rel.txt", "rel", 3));
        ASSERT(file_is("rel.txt", "rel"));
        unlink("rel.txt");
        ASSERT(chdir(cwd) == 0);
    }
}

static void test_failures(void)
{
    /* commit fails at the rename (the target is a non-empty directory): the
     * directory is intact, no temporary file is left, the message names it */
    const char *d = t_path("adir");
    ASSERT(mkdir(d, 0755) == 0);
    char inner[300];
    snprintf(inner, sizeof inner, "%s/keep", d);
    ASSERT_OK(jem_write_file_atomic(inner, "kept", 4));
    int before = t_count_entries(NULL);
    jem_atomic a;
    ASSERT_OK(jem_atomic_open(&a, d));
    fputs("data", a.fp);
    ASSERT_ERR(jem_atomic_commit(&a), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), d);
    ASSERT_STR_CONTAINS(jem_last_error(), "rename");
    ASSERT(a.fp == NULL && a.tmp == NULL);
    ASSERT_EQ_INT(t_count_temps(NULL), 0);
    ASSERT_EQ_INT(t_count_entries(NULL), before);
    ASSERT(file_is(inner, "kept"));
    ASSERT_ERR(jem_write_file_atomic(d, "x", 1), JEM_ERR_IO);
    ASSERT_EQ_INT(t_count_temps(NULL), 0);
    unlink(inner);
    rmdir(d);

    /* the directory does not exist */
    const char *nodir = t_path("missing/dir/file.bin");
    ASSERT_ERR(jem_write_file_atomic(nodir, "x", 1), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), nodir);
    ASSERT_ERR(jem_atomic_open(&a, nodir), JEM_ERR_IO);
    ASSERT(a.fp == NULL);
    jem_atomic_abort(&a);
    ASSERT_ERR(jem_atomic_open(&a, "trailing/"), JEM_ERR_ARG);
    ASSERT_ERR(jem_atomic_open(&a, NULL), JEM_ERR_ARG);
}

static void test_read(void)
{
    char *buf = NULL;
    size_t n = 99;

    /* missing file, directory */
    const char *miss = t_path("nope.bin");
    ASSERT_ERR(jem_read_file(miss, 0, &buf, &n), JEM_ERR_IO);
    ASSERT(buf == NULL && n == 0);
    ASSERT_STR_CONTAINS(jem_last_error(), miss);
    ASSERT_ERR(jem_read_file(t_dir(), 0, &buf, &n), JEM_ERR_IO);
    ASSERT_STR_CONTAINS(jem_last_error(), t_dir());

    /* empty file: a valid empty string */
    const char *e = t_path("empty");
    ASSERT_OK(jem_write_file_atomic(e, "", 0));
    ASSERT_OK(jem_read_file(e, 0, &buf, &n));
    ASSERT(buf && n == 0 && buf[0] == 0);
    free(buf);

    /* binary data of 1 MB, exact bytes and a terminating NUL */
    size_t big = 1u << 20;
    unsigned char *data = malloc(big);
    if (!data) {
        ASSERT(0);
        return;
    }
    jem_rng r;
    jem_rng_seed(&r, 3, 0);
    for (size_t i = 0; i < big; i++) data[i] = (unsigned char)jem_rng_u64(&r);
    const char *b = t_path("big.bin");
    ASSERT_OK(jem_write_file_atomic(b, data, big));
    ASSERT_OK(jem_read_file(b, 0, &buf, &n));
    ASSERT(n == big && buf && memcmp(buf, data, big) == 0 && buf[big] == 0);
    free(buf);

    /* size limit: exactly at the limit is fine, one byte over is refused */
    ASSERT_OK(jem_read_file(b, big, &buf, &n));
    free(buf);
    ASSERT_ERR(jem_read_file(b, big - 1, &buf, &n), JEM_ERR_FORMAT);
    ASSERT(buf == NULL);
    ASSERT_STR_CONTAINS(jem_last_error(), b);
    ASSERT_STR_CONTAINS(jem_last_error(), "too large");
    free(data);
    unlink(b);

    /* n may be NULL; text is usable as a string */
    const char *t = t_path("t.txt");
    ASSERT_OK(jem_write_file_atomic(t, "hello\n", 6));
    ASSERT_OK(jem_read_file(t, 0, &buf, NULL));
    ASSERT(buf && strcmp(buf, "hello\n") == 0);
    free(buf);

    /* a file whose size stat() does not report (procfs): read to EOF */
    ASSERT_OK(jem_read_file("/proc/self/status", 0, &buf, &n));
    ASSERT(buf && n > 0 && strstr(buf, "Name:") != NULL && strlen(buf) == n);
    free(buf);
    ASSERT_ERR(jem_read_file("/proc/self/status", 10, &buf, &n), JEM_ERR_FORMAT);
    ASSERT(buf == NULL);
}

/* base64: RFC 4648's examples, then every length up to 40 against a
 * digit-by-digit reading of the bits */
static void test_base64(void)
{
    static const char *const plain[] = {"", "f", "fo", "foo", "foob", "fooba", "foobar"};
    static const char *const coded[] = {"", "Zg==", "Zm8=", "Zm9v", "Zm9vYg==", "Zm9vYmE=", "Zm9vYmFy"};
    for (int i = 0; i < 7; i++) {
        char *s = NULL;
        size_t n = 99;
        ASSERT_OK(jem_base64_encode(plain[i], strlen(plain[i]), &s, &n));
        ASSERT_MSG(s && !strcmp(s, coded[i]), "base64('%s') = '%s', want '%s'", plain[i], s ? s : "(null)", coded[i]);
        ASSERT_EQ_INT((int)n, (int)strlen(coded[i]));
        free(s);
    }
    static const char abc[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    unsigned char d[40];
    for (int i = 0; i < 40; i++) d[i] = (unsigned char)(i * 97 + 255 * (i % 3 == 1));
    int bad = 0;
    for (size_t n = 0; n <= 40; n++) {
        char *s = NULL;
        size_t len = 0;
        ASSERT_OK(jem_base64_encode(d, n, &s, &len));
        if (!s) continue;
        bad += len != (n + 2) / 3 * 4 || strlen(s) != len;
        /* digit j holds bits 6j .. 6j+5 of the data, most significant first */
        for (size_t j = 0; j < len; j++) {
            if (6 * j >= 8 * n) {
                bad += s[j] != '=';
                continue;
            }
            int v = 0;
            for (size_t b = 6 * j; b < 6 * j + 6; b++) v = v << 1 | (b < 8 * n ? d[b / 8] >> (7 - b % 8) & 1 : 0);
            bad += s[j] != abc[v];
        }
        free(s);
    }
    ASSERT_EQ_INT(bad, 0);
    char *s = (char *)1;
    ASSERT_ERR(jem_base64_encode(NULL, 3, &s, NULL), JEM_ERR_ARG);
    ASSERT(s == NULL);
}

int main(void)
{
    TEST_MAIN_BEGIN("test_fileio");
    t_tmpdir("fileio");
    test_write_replace();
    test_helper_commit_abort();
    test_failures();
    test_read();
    test_base64();
    ASSERT_EQ_INT(t_count_temps(NULL), 0);
    return t_finish();
}

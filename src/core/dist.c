/*
 * dist.c: the few MPI collectives data-parallel training and evaluation use.
 *
 * Built with -DJEM_MPI (make MPI=1) these wrap MPI on MPI_COMM_WORLD; without
 * it they are the single-process identities, so callers need no #ifdefs.
 * Every call that communicates is timed, so a run can report its
 * communication time against its compute time.
 */
#include "jem.h"

#include <stdlib.h>
#include <time.h>

#ifdef JEM_MPI
#include <mpi.h>
#endif

static int d_rank = 0, d_size = 1;
static double d_comm = 0.0;

#ifdef JEM_MPI
static int d_inited = 0;

static double wall(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + 1e-9 * (double)ts.tv_nsec;
}
#endif

int jem_dist_enabled(void)
{
#ifdef JEM_MPI
    return 1;
#else
    return 0;
#endif
}

void jem_dist_init(int *argc, char ***argv)
{
#ifdef JEM_MPI
    int provided = 0;
    /* OpenMP threads compute; only the main thread calls MPI */
    MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
    MPI_Comm_rank(MPI_COMM_WORLD, &d_rank);
    MPI_Comm_size(MPI_COMM_WORLD, &d_size);
    /* errors in a collective end the job rather than hang it */
    MPI_Comm_set_errhandler(MPI_COMM_WORLD, MPI_ERRORS_ARE_FATAL);
    d_inited = 1;
#else
    (void)argc;
    (void)argv;
#endif
}

void jem_dist_finalize(void)
{
#ifdef JEM_MPI
    if (d_inited) MPI_Finalize();
    d_inited = 0;
#endif
}

int jem_dist_rank(void) { return d_rank; }
int jem_dist_size(void) { return d_size; }
double jem_dist_comm_seconds(void) { return d_comm; }

#ifdef JEM_MPI
/* In-place allreduce of n elements of elt bytes, in int-sized chunks, timed. */
static void reduce(void *x, size_t n, size_t elt, MPI_Datatype dt, MPI_Op op)
{
    if (d_size < 2) return;
    double t = wall();
    const size_t chunk = (size_t)1 << 30;
    for (size_t o = 0; o < n; o += chunk) {
        size_t k = n - o < chunk ? n - o : chunk;
        MPI_Allreduce(MPI_IN_PLACE, (char *)x + o * elt, (int)k, dt, op, MPI_COMM_WORLD);
    }
    d_comm += wall() - t;
}
#endif

void jem_dist_sum_f32(float *x, size_t n)
{
#ifdef JEM_MPI
    reduce(x, n, sizeof *x, MPI_FLOAT, MPI_SUM);
#else
    (void)x;
    (void)n;
#endif
}

void jem_dist_sum_f64(double *x, size_t n)
{
#ifdef JEM_MPI
    reduce(x, n, sizeof *x, MPI_DOUBLE, MPI_SUM);
#else
    (void)x;
    (void)n;
#endif
}

void jem_dist_max_i64(int64_t *x, size_t n)
{
#ifdef JEM_MPI
    reduce(x, n, sizeof *x, MPI_INT64_T, MPI_MAX);
#else
    (void)x;
    (void)n;
#endif
}

int jem_dist_same_u64(uint64_t v)
{
#ifdef JEM_MPI
    if (d_size < 2) return 1;
    double t = wall();
    uint64_t mn = v, mx = v;
    MPI_Allreduce(MPI_IN_PLACE, &mn, 1, MPI_UINT64_T, MPI_MIN, MPI_COMM_WORLD);
    MPI_Allreduce(MPI_IN_PLACE, &mx, 1, MPI_UINT64_T, MPI_MAX, MPI_COMM_WORLD);
    d_comm += wall() - t;
    return mn == mx;
#else
    (void)v;
    return 1;
#endif
}

void jem_dist_bcast(void *p, size_t n)
{
#ifdef JEM_MPI
    if (d_size < 2) return;
    double t = wall();
    MPI_Bcast(p, (int)n, MPI_BYTE, 0, MPI_COMM_WORLD);
    d_comm += wall() - t;
#else
    (void)p;
    (void)n;
#endif
}

void jem_dist_slice(int64_t n, int64_t *lo, int64_t *hi)
{
    *lo = n * d_rank / d_size;
    *hi = n * (d_rank + 1) / d_size;
}

#ifdef JEM_MPI
/* Every rank's slice of n_rows rows of row_bytes bytes (rank r owns
 * [r n / size, (r + 1) n / size), as jem_dist_slice says) gathered into
 * rank 0's x (all = 0) or every rank's x (all = 1). */
static void rows_collective(void *x, size_t row_bytes, int n_rows, int all)
{
    if (d_size < 2 || row_bytes == 0) return;
    double t = wall();
    int *cnt = malloc(sizeof(int) * (size_t)d_size), *off = malloc(sizeof(int) * (size_t)d_size);
    if (!cnt || !off) MPI_Abort(MPI_COMM_WORLD, 1); /* a rank alone cannot leave a collective */
    for (int r = 0; r < d_size; r++) {
        off[r] = (int)((int64_t)n_rows * r / d_size);
        cnt[r] = (int)((int64_t)n_rows * (r + 1) / d_size) - off[r];
    }
    /* one row per element of a contiguous datatype, so counts stay small */
    MPI_Datatype rt;
    MPI_Type_contiguous((int)row_bytes, MPI_BYTE, &rt);
    MPI_Type_commit(&rt);
    if (all) MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_DATATYPE_NULL, x, cnt, off, rt, MPI_COMM_WORLD);
    else if (d_rank == 0) MPI_Gatherv(MPI_IN_PLACE, cnt[0], rt, x, cnt, off, rt, 0, MPI_COMM_WORLD);
    else
        MPI_Gatherv((char *)x + (size_t)off[d_rank] * row_bytes, cnt[d_rank], rt, NULL, NULL, NULL, rt, 0,
                    MPI_COMM_WORLD);
    MPI_Type_free(&rt);
    free(cnt);
    free(off);
    d_comm += wall() - t;
}
#endif

void jem_dist_gather_rows(float *x, size_t row, int n_rows)
{
#ifdef JEM_MPI
    rows_collective(x, row * sizeof(float), n_rows, 0);
#else
    (void)x;
    (void)row;
    (void)n_rows;
#endif
}

void jem_dist_allgather(void *x, size_t row_bytes, int n_rows)
{
#ifdef JEM_MPI
    rows_collective(x, row_bytes, n_rows, 1);
#else
    (void)x;
    (void)row_bytes;
    (void)n_rows;
#endif
}

void jem_dist_abort(int code)
{
#ifdef JEM_MPI
    if (d_inited && d_size > 1) MPI_Abort(MPI_COMM_WORLD, code ? code : 1);
#else
    (void)code;
#endif
}

/*
 * What this machine allows for a sparse int8 row kernel, measured without the JVM: the `ROWS` layout of one
 * Qwen3-30B-A3B expert's gate/up side (2048 input channels, each a row of 768 gate + 768 up int8 weights and 48 float
 * block scales), read for all rows, a random half and a random 30% (sparsity 0, 0.5, 0.7), by
 *
 *   kernel      the same AXPY as VectorPanelKernels' int8 rows (eight rows per pass, 32 columns per step,
 *               out[c] += x[r] * scale[r][c/32] * w[r][c]) in AVX-512 intrinsics;
 *   kernel+pf   the same with prefetcht0 of the next pass's rows spread over the steps (Java has no prefetch);
 *   read        a plain read of the same rows, eight side by side (no arithmetic): the ceiling of any kernel.
 *
 * Copies of the weights span 768 MiB so every call reads DRAM; the two threads split a call's rows. Median of 1500
 * calls; the last line of each block is the speedup of 0.5 and 0.7 over the same mode's dense call.
 *
 *   gcc -O3 -march=native -pthread -o /tmp/sparse-rows tools/sparse-rows/sparse-rows.c
 *   /tmp/sparse-rows [threads=2] [rounds=3]        HUGE=1: madvise(MADV_HUGEPAGE) the weights
 *
 * x86-64 with AVX-512F only. A development tool: nothing in the build uses it.
 */
#define _GNU_SOURCE
#include <immintrin.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <time.h>

#define ROWS 2048           /* input channels (hiddenSize) */
#define COLS 1536           /* 768 gate + 768 up int8 weights per row */
#define BLOCKS (COLS / 32)  /* float scales per row */
#define PASS 8              /* rows per pass, as the Java kernel */
#define CALLS 1500

enum mode { KERNEL, KERNEL_PF, READ, MODES };
static const char *MODE_NAMES[] = {"kernel", "kernel+pf", "read"};

typedef struct {
    const int8_t *w; const float *scales; const float *x; const int *rows; int n; float *out; enum mode mode;
} call_t;

static const int8_t *row_of(const int8_t *w, int r) { return w + (size_t) r * COLS; }

static void kernel(const call_t *c, int prefetch) {
    float *out = c->out;
    int p = 0;
    for (; p + PASS <= c->n; p += PASS) {
        const int8_t *r[PASS]; const float *s[PASS]; float x[PASS]; const char *next[PASS];
        int has_next = prefetch && p + 2 * PASS <= c->n;
        for (int i = 0; i < PASS; i++) {
            r[i] = row_of(c->w, c->rows[p + i]);
            s[i] = c->scales + (size_t) c->rows[p + i] * BLOCKS;
            x[i] = c->x[c->rows[p + i]];
            if (has_next) next[i] = (const char *) row_of(c->w, c->rows[p + PASS + i]);
        }
        for (int q = 0; q < BLOCKS; q++) {
            int col = q * 32;
            if (has_next) /* 8 rows x 24 lines over 48 steps: four lines per step */
                for (int j = q * 4; j < q * 4 + 4; j++) _mm_prefetch(next[j / 24] + (j % 24) * 64, _MM_HINT_T0);
            __m512 a0 = _mm512_loadu_ps(out + col), a1 = _mm512_loadu_ps(out + col + 16);
            for (int i = 0; i < PASS; i++) {
                __m512 xs = _mm512_set1_ps(s[i][q] * x[i]);
                __m512 w0 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (r[i] + col))));
                __m512 w1 = _mm512_cvtepi32_ps(_mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *) (r[i] + col + 16))));
                a0 = _mm512_fmadd_ps(w0, xs, a0);
                a1 = _mm512_fmadd_ps(w1, xs, a1);
            }
            _mm512_storeu_ps(out + col, a0);
            _mm512_storeu_ps(out + col + 16, a1);
        }
    }
    for (; p < c->n; p++) { /* tail rows, scalar */
        const int8_t *r = row_of(c->w, c->rows[p]);
        const float *s = c->scales + (size_t) c->rows[p] * BLOCKS;
        float x = c->x[c->rows[p]];
        for (int col = 0; col < COLS; col++) out[col] += x * s[col / 32] * r[col];
    }
}

static volatile int32_t SINK;

static void read_rows(const call_t *c) {
    __m512i acc = _mm512_setzero_si512();
    int p = 0;
    for (; p + PASS <= c->n; p += PASS) {
        const int8_t *r[PASS];
        for (int i = 0; i < PASS; i++) r[i] = row_of(c->w, c->rows[p + i]);
        for (int col = 0; col < COLS; col += 64)
            for (int i = 0; i < PASS; i++) acc = _mm512_add_epi32(acc, _mm512_loadu_si512(r[i] + col));
    }
    for (; p < c->n; p++)
        for (int col = 0; col < COLS; col += 64) acc = _mm512_add_epi32(acc, _mm512_loadu_si512(row_of(c->w, c->rows[p]) + col));
    SINK += _mm512_reduce_add_epi32(acc);
}

static void run(const call_t *c) {
    if (c->mode == READ) read_rows(c); else kernel(c, c->mode == KERNEL_PF);
}

/* The second thread: waits for a new generation, runs its half of the call, reports done. */
static call_t HALF;
static int GO, DONE;

static void *helper(void *unused) {
    (void) unused;
    for (int seen = 0;;) {
        while (__atomic_load_n(&GO, __ATOMIC_ACQUIRE) == seen) _mm_pause();
        seen = GO;
        run(&HALF);
        __atomic_store_n(&DONE, seen, __ATOMIC_RELEASE);
    }
    return NULL;
}

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int by_value(const void *a, const void *b) { double x = *(const double *) a, y = *(const double *) b; return (x > y) - (x < y); }

int main(int argc, char **argv) {
    int threads = argc > 1 ? atoi(argv[1]) : 2, rounds = argc > 2 ? atoi(argv[2]) : 3;
    size_t bytes = ((size_t) ROWS * COLS + (2u << 20) - 1) & ~(size_t) ((2u << 20) - 1);
    int copies = (int) ((768L << 20) / bytes);
    int8_t **w = malloc(sizeof *w * copies); float **scales = malloc(sizeof *scales * copies);
    srand(1);
    fprintf(stderr, "filling %d copies of %zu bytes...\n", copies, bytes);
    for (int c = 0; c < copies; c++) {
        w[c] = aligned_alloc(2u << 20, bytes);
        if (getenv("HUGE")) madvise(w[c], bytes, MADV_HUGEPAGE);
        for (size_t i = 0; i < bytes; i++) w[c][i] = (int8_t) rand();
        scales[c] = malloc(sizeof(float) * ROWS * BLOCKS);
        for (int i = 0; i < ROWS * BLOCKS; i++) scales[c][i] = rand() / (float) RAND_MAX;
    }
    float *x = malloc(sizeof(float) * ROWS), *out[2] = {aligned_alloc(64, 4 * COLS), aligned_alloc(64, 4 * COLS)};
    for (int i = 0; i < ROWS; i++) x[i] = rand() / (float) RAND_MAX;
    const double density[] = {1.0, 0.5, 0.3};
    int *active[3][64], count[3][64];
    for (int d = 0; d < 3; d++)
        for (int v = 0; v < 64; v++) {
            active[d][v] = malloc(sizeof(int) * ROWS);
            count[d][v] = 0;
            for (int r = 0; r < ROWS; r++) if (rand() / (double) RAND_MAX < density[d]) active[d][v][count[d][v]++] = r;
        }
    pthread_t thread;
    if (threads == 2) pthread_create(&thread, NULL, helper, NULL);
    double *times = malloc(sizeof(double) * CALLS);
    for (int round = 0; round < rounds; round++)
        for (enum mode mode = 0; mode < MODES; mode++) {
            double median[3];
            for (int d = 0; d < 3; d++) {
                double read = 0;
                for (int k = 0; k < CALLS; k++) {
                    int m = k % copies, n = count[d][k % 64];
                    const int *rows = active[d][k % 64];
                    read += n * (double) (COLS + 4 * BLOCKS);
                    memset(out[0], 0, 4 * COLS); memset(out[1], 0, 4 * COLS);
                    double t0 = now();
                    if (threads == 1) {
                        call_t all = {w[m], scales[m], x, rows, n, out[0], mode};
                        run(&all);
                    } else {
                        int half = (n / 2) & ~(PASS - 1);
                        HALF = (call_t) {w[m], scales[m], x, rows + half, n - half, out[1], mode};
                        __atomic_store_n(&GO, GO + 1, __ATOMIC_RELEASE);
                        call_t mine = {w[m], scales[m], x, rows, half, out[0], mode};
                        run(&mine);
                        while (__atomic_load_n(&DONE, __ATOMIC_ACQUIRE) != GO) _mm_pause();
                    }
                    times[k] = now() - t0;
                }
                qsort(times, CALLS, sizeof(double), by_value);
                median[d] = times[CALLS / 2];
                printf("%-10s sparsity %.1f threads %d: %.4f ms %6.1f GB/s\n", MODE_NAMES[mode], 1 - density[d], threads,
                       median[d] * 1e3, read / CALLS / median[d] / 1e9);
            }
            printf("%-10s x dense: 0.5 %.2fx  0.7 %.2fx\n", MODE_NAMES[mode], median[0] / median[1], median[0] / median[2]);
            fflush(stdout);
        }
    return 0;
}

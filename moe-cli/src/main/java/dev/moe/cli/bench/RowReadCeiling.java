package dev.moe.cli.bench;

import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.VectorPanelKernels;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The most a sparse single token can gain on this machine from skipping rows: plain vector reads (no arithmetic) of
 * exactly the rows the whole-row kernels read, in their access pattern, timed against a plain read of all rows.
 *
 * <p>Same pattern as {@code VectorPanelKernels.accumulateRows}: each of the pool's threads takes an equal share of a
 * projection's active rows and reads them in passes of several rows side by side, one from each part of its share
 * (eight parts when the rows are not one run, four when they are: a dense projection is four long streams). A row is
 * one contiguous run of the projection's row bytes (int8: codes and scales together, which is kinder to the prefetcher
 * than the kernels' separate scale array, so this stays an upper bound). The rows live in {@link #buffer}, far larger
 * than the caches, one expert's worth after another, and every call takes the next expert so each reads from DRAM.
 *
 * <p>Dense reads stream at the machine's sequential bandwidth; a sparse row is a short run at a random place, whose
 * first lines the prefetcher has to miss. {@code dense read ms / sparse read ms} is the speedup a kernel that reads
 * at the memory's speed in both cases would get.
 */
final class RowReadCeiling {
    private static final VectorSpecies<Float> V = FloatVector.SPECIES_PREFERRED;
    private static final FloatVector ZERO = FloatVector.zero(V);
    /** Floats per 64-byte line. */
    private static final int LINE = 16;
    /** Rows per pass of a dense split (four long streams), as the kernels. */
    private static final int DENSE_PASS = 4;

    private final float[] buffer;
    private final int gateUpRowFloats;
    private final int gateUpRows;
    private final int downRowFloats;
    private final int downRows;
    private final int expertFloats;
    private final int experts;
    /** Rows per pass of a sparse split: the kernels' {@link VectorPanelKernels#sparseRowsPerPass}, 8 or 4. */
    private final int sparsePass;
    /** Per split: the sum of what it read, so the reads cannot be optimised away (and can be checked). */
    private final double[] partial;
    private int next;

    /**
     * @param buffer        working set of {@code float}s (the bandwidth buffer: only its size matters)
     * @param gateUpRowBytes bytes of one gate/up row (an input channel's outputs, int8 scales included)
     * @param gateUpRows    gate/up input channels (hidden size)
     * @param downRowBytes  bytes of one down row
     * @param downRows      down input channels (intermediate size)
     * @param sparsePass    rows per pass of a sparse split ({@link VectorPanelKernels#sparseRowsPerPass})
     * @param threads       most threads of the pools the reads will run on
     */
    RowReadCeiling(float[] buffer, long gateUpRowBytes, int gateUpRows, long downRowBytes, int downRows,
                   int sparsePass, int threads) {
        if (sparsePass != 4 && sparsePass != 8) {
            throw new IllegalArgumentException("a sparse pass reads 4 or 8 rows, not " + sparsePass);
        }
        this.sparsePass = sparsePass;
        this.buffer = buffer;
        this.gateUpRowFloats = lines(gateUpRowBytes) * LINE;
        this.gateUpRows = gateUpRows;
        this.downRowFloats = lines(downRowBytes) * LINE;
        this.downRows = downRows;
        long floats = (long) gateUpRowFloats * gateUpRows + (long) downRowFloats * downRows;
        if (floats > buffer.length) {
            throw new IllegalArgumentException("one expert (" + floats * Float.BYTES + " bytes) exceeds the read buffer ("
                    + (long) buffer.length * Float.BYTES + " bytes): give the bench a bigger one (--bw-mib)");
        }
        this.expertFloats = (int) floats;
        this.experts = buffer.length / expertFloats;
        this.partial = new double[threads];
    }

    private static int lines(long bytes) {
        return (int) ((bytes + 63) / 64);
    }

    /** Distinct experts the reads rotate over (at least two, so a call never finds the last one in cache). */
    int experts() {
        return experts;
    }

    /**
     * One call's reads: gate/up rows {@code gateUpActive} then down rows {@code downActive} of the next expert, each
     * split over the pool's threads like the kernels' row splits. Returns the sum of the floats read (each row once).
     */
    double read(KernelPool pool, int[] gateUpActive, int[] downActive) {
        int base = next * expertFloats;
        next = next + 1 == experts ? 0 : next + 1;
        int splits = pool.threads();
        double sum = 0;
        pool.parallelFor(splits, split -> partial[split] = readSplit(split, splits, base, gateUpRowFloats,
                gateUpActive));
        for (int i = 0; i < splits; i++) {
            sum += partial[i];
        }
        int downBase = base + gateUpRowFloats * gateUpRows;
        pool.parallelFor(splits, split -> partial[split] = readSplit(split, splits, downBase, downRowFloats,
                downActive));
        for (int i = 0; i < splits; i++) {
            sum += partial[i];
        }
        return sum;
    }

    /** Floats of one gate/up row, then of one down row, as laid out in the buffer (whole 64-byte lines). */
    int[] rowFloats() {
        return new int[] {gateUpRowFloats, downRowFloats};
    }

    /** Index in the buffer of row {@code row} of expert {@code expert}'s gate/up ({@code down} false) or down. */
    int rowStart(int expert, boolean down, int row) {
        int base = expert * expertFloats;
        return down ? base + gateUpRowFloats * gateUpRows + row * downRowFloats : base + row * gateUpRowFloats;
    }

    private double readSplit(int split, int splits, int base, int rowFloats, int[] rows) {
        int from = (int) ((long) rows.length * split / splits);
        int to = (int) ((long) rows.length * (split + 1) / splits);
        if (from >= to) {
            return 0;
        }
        boolean eight = sparsePass == 8 && to - from >= 8 && rows[to - 1] - rows[from] + 1 > to - from;
        int perPass = eight ? 8 : DENSE_PASS;
        int part = (to - from + perPass - 1) / perPass;
        double sum = 0;
        for (int k = from; k < from + part; k++) {
            int real = Math.min(perPass, (to - k + part - 1) / part); // places of this pass holding their own row
            // The pass's places past the last row repeat its first row, as the kernels' padded passes do.
            int r0 = base + rows[k] * rowFloats;
            int r1 = base + rows[row(k, 1, part, to)] * rowFloats;
            int r2 = base + rows[row(k, 2, part, to)] * rowFloats;
            int r3 = base + rows[row(k, 3, part, to)] * rowFloats;
            if (eight) {
                sum += read8(r0, r1, r2, r3, base + rows[row(k, 4, part, to)] * rowFloats,
                        base + rows[row(k, 5, part, to)] * rowFloats, base + rows[row(k, 6, part, to)] * rowFloats,
                        base + rows[row(k, 7, part, to)] * rowFloats, rowFloats, real);
            } else {
                sum += read4(r0, r1, r2, r3, rowFloats, real);
            }
        }
        return sum;
    }

    private static int row(int k, int j, int part, int to) {
        int i = k + j * part;
        return i < to ? i : k;
    }

    /** Reads four rows side by side; returns the sum of the first {@code real} (the rest are padding). */
    private float read4(int b0, int b1, int b2, int b3, int length, int real) {
        FloatVector s0 = FloatVector.zero(V), s1 = s0, s2 = s0, s3 = s0;
        for (int c = 0; c < length; c += V.length()) {
            s0 = s0.add(FloatVector.fromArray(V, buffer, b0 + c));
            s1 = s1.add(FloatVector.fromArray(V, buffer, b1 + c));
            s2 = s2.add(FloatVector.fromArray(V, buffer, b2 + c));
            s3 = s3.add(FloatVector.fromArray(V, buffer, b3 + c));
        }
        // Padding places come last: stream j counts when j < real
        FloatVector sum = s0.add(real > 1 ? s1 : ZERO).add(real > 2 ? s2 : ZERO).add(real > 3 ? s3 : ZERO);
        return sum.reduceLanes(VectorOperators.ADD);
    }

    /** Reads eight rows side by side; returns the sum of the first {@code real}. */
    private float read8(int b0, int b1, int b2, int b3, int b4, int b5, int b6, int b7, int length, int real) {
        FloatVector s0 = FloatVector.zero(V), s1 = s0, s2 = s0, s3 = s0, s4 = s0, s5 = s0, s6 = s0, s7 = s0;
        for (int c = 0; c < length; c += V.length()) {
            s0 = s0.add(FloatVector.fromArray(V, buffer, b0 + c));
            s1 = s1.add(FloatVector.fromArray(V, buffer, b1 + c));
            s2 = s2.add(FloatVector.fromArray(V, buffer, b2 + c));
            s3 = s3.add(FloatVector.fromArray(V, buffer, b3 + c));
            s4 = s4.add(FloatVector.fromArray(V, buffer, b4 + c));
            s5 = s5.add(FloatVector.fromArray(V, buffer, b5 + c));
            s6 = s6.add(FloatVector.fromArray(V, buffer, b6 + c));
            s7 = s7.add(FloatVector.fromArray(V, buffer, b7 + c));
        }
        FloatVector sum = s0.add(real > 1 ? s1 : ZERO).add(real > 2 ? s2 : ZERO).add(real > 3 ? s3 : ZERO)
                .add(real > 4 ? s4 : ZERO).add(real > 5 ? s5 : ZERO).add(real > 6 ? s6 : ZERO)
                .add(real > 7 ? s7 : ZERO);
        return sum.reduceLanes(VectorOperators.ADD);
    }

    /** Channels with {@code |v| > threshold} among {@code v[from, from + n)}: the rows the sparse path reads. */
    static int[] activeRows(float[] v, int from, int n, float threshold) {
        int[] rows = new int[n];
        int count = 0;
        for (int i = 0; i < n; i++) {
            if (Math.abs(v[from + i]) > threshold) {
                rows[count++] = i;
            }
        }
        return java.util.Arrays.copyOf(rows, count);
    }
}

package dev.moe.cli.bench;

import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Arrays;
import java.util.Locale;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * What the machine can do at most, measured in the same JVM as the kernels: DRAM read bandwidth (a Vector API sum over
 * a buffer far larger than the caches, several independent accumulators so no add latency chain limits it) and the
 * FMA peak (a register-only loop of independent FMAs on the widest vectors, the width the batch kernels use: 512-bit
 * on AVX-512, where a 256-bit loop measures half the machine's peak).
 */
final class MachineLimits {
    /** Vectors of the bandwidth read: the widest the machine has, as the kernels use. */
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;
    /** Streams read side by side per thread by {@link #sum}. */
    private static final int STREAMS = 8;
    /** Vectors of the FMA peak loop: the widest the machine has. */
    static final VectorSpecies<Float> FMA = FloatVector.SPECIES_PREFERRED;
    /** Independent FMA chains per thread: Zen 4 has 2 FMA pipes of latency 4, so 8 hide it; 12 leave a margin. */
    private static final int CHAINS = 12;
    private static volatile float sink;

    /** Limits at one thread count. */
    record Limits(int threads, double bwGbps, double bwBestGbps, double peakGflops) {
    }

    private MachineLimits() {
    }

    /**
     * Measures bandwidth and FMA peak at every thread count of {@code threadCounts}; {@code buffer} (from
     * {@link #buffer}) is the bandwidth measurement's working set.
     */
    static Limits[] measure(int[] threadCounts, float[] buffer, int bwRepeats, double fmaSeconds, int fmaRepeats,
                            PrintStream log) {
        log.printf(Locale.ROOT, "machine: %d processors, last-level cache %s%n",
                Runtime.getRuntime().availableProcessors(), llcBytes() > 0 ? mib(llcBytes()) : "unknown");
        Limits[] limits = new Limits[threadCounts.length];
        for (int i = 0; i < threadCounts.length; i++) {
            int t = threadCounts[i];
            double[] bw = readBandwidth(buffer, t, bwRepeats);
            double peak = fmaPeak(t, fmaSeconds, fmaRepeats);
            limits[i] = new Limits(t, bw[0], bw[1], peak);
            log.printf(Locale.ROOT, "machine: %d thread%s: read bandwidth %.1f GB/s (median of %d passes over %s, best"
                            + " %.1f); FMA peak %.1f GFLOP/s (" + FMA.vectorBitSize() + "-bit)%n",
                    t, t == 1 ? "" : "s", bw[0], bwRepeats, mib((long) buffer.length * Float.BYTES), bw[1], peak);
        }
        return limits;
    }

    /** Re-measures the bandwidth of {@code old} (the FMA peak does not drift; DRAM bandwidth of a shared VM does). */
    static Limits remeasureBandwidth(Limits old, float[] buffer, int bwRepeats) {
        double[] bw = readBandwidth(buffer, old.threads(), bwRepeats);
        return new Limits(old.threads(), bw[0], bw[1], old.peakGflops());
    }

    /** A bandwidth working set of about {@code bytes}, every page touched. */
    static float[] buffer(long bytes) {
        long elements = Math.max(1 << 16, bytes / Float.BYTES) & ~63L;
        if (elements > Integer.MAX_VALUE - 64) {
            elements = (Integer.MAX_VALUE - 64) & ~63L;
        }
        float[] buffer = new float[(int) elements];
        Arrays.fill(buffer, 1f);
        return buffer;
    }

    /** {median, best} GB/s of full read passes over {@code buffer} by {@code threads} threads. */
    static double[] readBandwidth(float[] buffer, int threads, int repeats) {
        int n = buffer.length;
        int[] bounds = new int[threads + 1];
        for (int t = 0; t <= threads; t++) {
            bounds[t] = (int) ((long) n * t / threads) & ~63;
        }
        bounds[threads] = n;
        float[] partial = new float[threads];
        try (Gang gang = new Gang(threads)) {
            for (int w = 0; w < 3; w++) { // compile and settle
                gang.run(m -> partial[m] = sum(buffer, bounds[m], bounds[m + 1]));
            }
            double[] gbps = new double[repeats];
            for (int r = 0; r < repeats; r++) {
                long t0 = System.nanoTime();
                gang.run(m -> partial[m] = sum(buffer, bounds[m], bounds[m + 1]));
                long dt = System.nanoTime() - t0;
                gbps[r] = (double) n * Float.BYTES / dt;
            }
            float total = 0;
            for (float p : partial) {
                total += p;
            }
            sink = total;
            return new double[] {Measure.median(gbps), Arrays.stream(gbps).max().orElse(0)};
        }
    }

    /**
     * Sum of a[from, to), read as eight streams side by side (the range cut into eight parts, one vector from each per
     * step) into four accumulators. One stream per thread leaves read bandwidth unused: on this VM eight read 8-12%
     * more (a per-call read of 9 MiB on 2 threads: 76-80 GB/s with one stream, 84-86 with eight), as the kernels'
     * several panels at a time do; a ceiling measured with one would flatter them.
     */
    static float sum(float[] a, int from, int to) {
        int part = (to - from) / STREAMS / F.length() * F.length();
        int b0 = from, b1 = b0 + part, b2 = b1 + part, b3 = b2 + part, b4 = b3 + part, b5 = b4 + part;
        int b6 = b5 + part, b7 = b6 + part;
        FloatVector s0 = FloatVector.zero(F), s1 = s0, s2 = s0, s3 = s0;
        for (int i = 0; i < part; i += F.length()) {
            s0 = s0.add(FloatVector.fromArray(F, a, b0 + i));
            s1 = s1.add(FloatVector.fromArray(F, a, b1 + i));
            s2 = s2.add(FloatVector.fromArray(F, a, b2 + i));
            s3 = s3.add(FloatVector.fromArray(F, a, b3 + i));
            s0 = s0.add(FloatVector.fromArray(F, a, b4 + i));
            s1 = s1.add(FloatVector.fromArray(F, a, b5 + i));
            s2 = s2.add(FloatVector.fromArray(F, a, b6 + i));
            s3 = s3.add(FloatVector.fromArray(F, a, b7 + i));
        }
        float s = s0.add(s1).add(s2).add(s3).reduceLanes(VectorOperators.ADD);
        for (int i = from + STREAMS * part; i < to; i++) { // the tail after the eight parts
            s += a[i];
        }
        return s;
    }

    /** GFLOP/s of {@code threads} threads each running independent FMA chains in registers (median of repeats). */
    static double fmaPeak(int threads, double seconds, int repeats) {
        // Compile spin() fully (not just on-stack replacement) before sizing the loop.
        for (int w = 0; w < 20; w++) {
            sink += spin(20_000, w);
        }
        long t0 = System.nanoTime();
        sink += spin(2_000_000, 1f);
        double nsPerIter = Math.max(0.01, (System.nanoTime() - t0) / 2e6);
        int iters = (int) Math.max(10_000, Math.min(Integer.MAX_VALUE / 2, seconds * 1e9 / nsPerIter));
        float[] results = new float[threads];
        double[] gflops = new double[repeats];
        try (Gang gang = new Gang(threads)) {
            gang.run(m -> results[m] = spin(Math.max(10_000, iters / 10), m));
            for (int r = 0; r < repeats; r++) {
                long start = System.nanoTime();
                gang.run(m -> results[m] = spin(iters, m));
                long dt = System.nanoTime() - start;
                gflops[r] = (double) threads * iters * CHAINS * FMA.length() * 2 / dt;
            }
        }
        for (float v : results) {
            sink += v;
        }
        return Measure.median(gflops);
    }

    /** {@value #CHAINS} independent chains {@code a = a·m + c} of FMAs; no memory traffic in the loop. */
    static float spin(int iters, float seed) {
        FloatVector m = FloatVector.broadcast(FMA, 0.9999f);
        FloatVector c = FloatVector.broadcast(FMA, 1e-4f);
        FloatVector a0 = FloatVector.broadcast(FMA, seed), a1 = a0.add(1f), a2 = a0.add(2f), a3 = a0.add(3f);
        FloatVector a4 = a0.add(4f), a5 = a0.add(5f), a6 = a0.add(6f), a7 = a0.add(7f);
        FloatVector a8 = a0.add(8f), a9 = a0.add(9f), a10 = a0.add(10f), a11 = a0.add(11f);
        for (int i = 0; i < iters; i++) {
            a0 = a0.fma(m, c);
            a1 = a1.fma(m, c);
            a2 = a2.fma(m, c);
            a3 = a3.fma(m, c);
            a4 = a4.fma(m, c);
            a5 = a5.fma(m, c);
            a6 = a6.fma(m, c);
            a7 = a7.fma(m, c);
            a8 = a8.fma(m, c);
            a9 = a9.fma(m, c);
            a10 = a10.fma(m, c);
            a11 = a11.fma(m, c);
        }
        return a0.add(a1).add(a2).add(a3).add(a4).add(a5).add(a6).add(a7).add(a8).add(a9).add(a10).add(a11)
                .reduceLanes(VectorOperators.ADD);
    }

    /** Size of the last-level cache from sysfs, or 0 when unknown. */
    static long llcBytes() {
        long best = 0;
        for (int index = 0; index < 8; index++) {
            Path size = Path.of("/sys/devices/system/cpu/cpu0/cache/index" + index + "/size");
            try {
                if (!Files.isReadable(size)) {
                    continue;
                }
                String s = Files.readString(size).trim().toUpperCase(Locale.ROOT);
                long factor = 1;
                if (s.endsWith("K")) {
                    factor = 1024;
                    s = s.substring(0, s.length() - 1);
                } else if (s.endsWith("M")) {
                    factor = 1024 * 1024;
                    s = s.substring(0, s.length() - 1);
                }
                best = Math.max(best, Long.parseLong(s) * factor);
            } catch (java.io.IOException | NumberFormatException e) {
                // unknown: keep what we have
            }
        }
        return best;
    }

    static String mib(long bytes) {
        return String.format(Locale.ROOT, "%.0f MiB", bytes / 1048576.0);
    }
}

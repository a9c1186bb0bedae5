package dev.moe.cli.bench;

import dev.moe.core.kernels.Kernels;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.VectorKernels;
import dev.moe.core.kernels.WeightType;
import java.util.Arrays;
import java.util.SplittableRandom;
import java.util.stream.IntStream;

/** Random weights and inputs for the benchmarks, deterministic in their seeds, and the byte/quantile arithmetic. */
final class Synth {
    private static final int CHUNK = 1 << 20;

    private Synth() {
    }

    /** Row-major PyTorch weights of one SwiGLU expert. */
    record RawExpert(int hidden, int intermediate, float[] gate, float[] up, float[] down) {
        PackedExpert pack(WeightType type) {
            return pack(type, PanelMatrix.Layout.PANELS);
        }

        PackedExpert pack(WeightType type, PanelMatrix.Layout layout) {
            return PackedExpert.pack(hidden, intermediate, gate, up, down, type, layout);
        }
    }

    /** Uniform weights of standard deviation 1/√fan_in (the scale of trained projections), so h has sane values. */
    static RawExpert rawExpert(int hidden, int inter, long seed) {
        float[] gate = uniform((long) inter * hidden, Math.sqrt(3.0 / hidden), seed * 3 + 1);
        float[] up = uniform((long) inter * hidden, Math.sqrt(3.0 / hidden), seed * 3 + 2);
        float[] down = uniform((long) hidden * inter, Math.sqrt(3.0 / inter), seed * 3 + 3);
        return new RawExpert(hidden, inter, gate, up, down);
    }

    /** {@code n} values uniform in [−bound, bound], filled in parallel by chunks with their own seeds. */
    static float[] uniform(long n, double bound, long seed) {
        if (n > Integer.MAX_VALUE - 64) {
            throw new IllegalArgumentException(n + " values exceed one Java array");
        }
        float[] a = new float[(int) n];
        int chunks = (int) ((n + CHUNK - 1) / CHUNK);
        IntStream.range(0, chunks).parallel().forEach(c -> {
            SplittableRandom r = new SplittableRandom(seed * 1_000_003L + c);
            int end = (int) Math.min(n, (long) (c + 1) * CHUNK);
            for (int i = c * CHUNK; i < end; i++) {
                a[i] = (float) ((2 * r.nextDouble() - 1) * bound);
            }
        });
        return a;
    }

    /** Standard normal values. */
    static float[] gaussian(int n, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) r.nextGaussian();
        }
        return a;
    }

    /** gate·x and up·x, each {@code [numTokens, intermediate]}, in float32 from the unquantised weights. */
    static float[][] gateUp(RawExpert e, float[] x, int numTokens) {
        float[] g = new float[numTokens * e.intermediate()];
        float[] u = new float[numTokens * e.intermediate()];
        VectorKernels.INSTANCE.linear(e.gate(), e.intermediate(), e.hidden(), x, numTokens, g);
        VectorKernels.INSTANCE.linear(e.up(), e.intermediate(), e.hidden(), x, numTokens, u);
        return new float[][] {g, u};
    }

    /** h = silu(g) ⊙ u: the input of down_proj. */
    static float[] hidden(float[] g, float[] u) {
        float[] h = new float[g.length];
        for (int i = 0; i < h.length; i++) {
            h[i] = Kernels.silu(g[i]) * u[i];
        }
        return h;
    }

    /** {@code v[0, n)} pruned as the server prunes (mode 0): values with {@code |v| <= threshold} become 0. */
    static float[] pruned(float[] v, int n, float threshold) {
        float[] out = java.util.Arrays.copyOf(v, n);
        for (int i = 0; i < n; i++) {
            out[i] = Math.abs(out[i]) <= threshold ? 0f : out[i];
        }
        return out;
    }

    /**
     * The SCAP threshold (mode 0) that prunes a fraction {@code s} of {@code v[from, to)}: the k-th smallest |v| with
     * k = round(s·n), since a value is pruned iff |v| <= threshold. Negative (prunes nothing) for k = 0.
     */
    static float thresholdForFraction(float[] v, int from, int to, double s) {
        int n = to - from;
        float[] abs = new float[n];
        for (int i = 0; i < n; i++) {
            abs[i] = Math.abs(v[from + i]);
        }
        Arrays.sort(abs);
        int k = (int) Math.round(s * n);
        return k <= 0 ? -1f : abs[Math.min(n, k) - 1];
    }

    /** Bytes one dense pass over gate/up reads (panels of 32 gate + 32 up outputs, every hidden channel). */
    static long gateUpBytes(WeightType type, int hidden, int inter) {
        long panels = (inter + 31) / 32;
        return bytes(type, panels * hidden * 64);
    }

    /** Bytes one dense pass over down reads (panels of 64 hidden outputs, every intermediate channel). */
    static long downBytes(WeightType type, int hidden, int inter) {
        long panels = (hidden + 63) / 64;
        return bytes(type, panels * inter * 64);
    }

    private static long bytes(WeightType type, long elements) {
        return switch (type) {
            case F32 -> elements * 4;
            case BF16 -> elements * 2;
            case INT8 -> elements + elements / 32 * 4;
        };
    }

    /** {gate/up bytes, down bytes} of a packed expert, scaled to its own total if the layout ever differs. */
    static long[] projectionBytes(PackedExpert e) {
        long gu = gateUpBytes(e.type(), e.hiddenSize(), e.intermediateSize());
        long down = downBytes(e.type(), e.hiddenSize(), e.intermediateSize());
        long total = e.weightBytes();
        if (gu + down != total) {
            double scale = (double) total / (gu + down);
            gu = Math.round(gu * scale);
            down = total - gu;
        }
        return new long[] {gu, down};
    }
}

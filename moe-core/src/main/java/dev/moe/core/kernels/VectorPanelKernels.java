package dev.moe.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector API panel kernels. One 64-wide panel row is eight 8-lane vectors; each token keeps its eight accumulators in
 * registers for the whole pass over the active rows (register blocking: one load and store of the accumulators per
 * panel, not per row). Float32 weights feed two tokens per weight load; narrow weights are widened in registers for a
 * single token, and widened once per call into a float32 copy of the active rows for a batch. 256-bit vectors: full-rate FMA on every
 * x86 with AVX2 (Zen 4 splits 512-bit ones), and the same code shape on AVX-512 machines.
 */
public final class VectorPanelKernels implements PanelKernels {
    public static final VectorPanelKernels INSTANCE = new VectorPanelKernels();
    static final VectorSpecies<Float> F = FloatVector.SPECIES_256;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_256;
    private static final int W = PanelMatrix.WIDTH;

    static {
        if (W != 8 * F.length()) {
            throw new AssertionError("panel width must be eight 8-lane vectors");
        }
    }

    @Override
    public void accumulate(PanelMatrix m, int panel, int[] rows, int numRows, float[] a, int aStride, int numTokens,
                           float[] out) {
        int rowBase = panel * m.rows;
        if (m.type != WeightType.F32 && numTokens == 1) {
            // Decode: widen in registers, straight into the FMAs; the weights are read exactly once.
            if (m.type == WeightType.BF16) {
                bf16One(m.bf16, rowBase, rows, numRows, a, 0, out, 0);
            } else {
                i8One(m.i8, m.scales, rowBase, rows, numRows, a, 0, out, 0);
            }
            return;
        }
        java.util.Arrays.fill(out, 0, numTokens * W, 0f);
        if (m.type == WeightType.F32) {
            f32(m.f32, rowBase, rows, rows, 0, numRows, a, aStride, numTokens, out);
            return;
        }
        // Batches of narrow weights: widen ROW_BLOCK active rows at a time into an L1-resident float32 copy and run
        // every token pair over it, so each weight is read from memory and converted once per call, not per token.
        float[] scratch = SCRATCH.get();
        for (int from = 0; from < numRows; from += ROW_BLOCK) {
            int count = Math.min(ROW_BLOCK, numRows - from);
            if (m.type == WeightType.BF16) {
                widenBf16(m.bf16, rowBase, rows, from, count, scratch);
            } else {
                widenI8(m.i8, m.scales, rowBase, rows, from, count, scratch);
            }
            f32(scratch, 0, IDENTITY, rows, from, count, a, aStride, numTokens, out);
        }
    }

    /** Rows widened per step of a batch: 32 rows × 64 floats = 8 KiB, which stays in L1 beside the streaming weights. */
    private static final int ROW_BLOCK = 32;
    private static final ThreadLocal<float[]> SCRATCH = ThreadLocal.withInitial(() -> new float[ROW_BLOCK * W]);
    private static final int[] IDENTITY = java.util.stream.IntStream.range(0, ROW_BLOCK).toArray();

    /**
     * Float32 weights, accumulating into {@code out}: token pairs, then the odd token. Weight row {@code wRows[k]} meets
     * activation channel {@code aRows[aFrom + k]}, k in [0, count).
     */
    private static void f32(float[] w, int rowBase, int[] wRows, int[] aRows, int aFrom, int count, float[] a,
                            int aStride, int numTokens, float[] out) {
        int t = 0;
        for (; t + 1 < numTokens; t += 2) {
            f32Two(w, rowBase, wRows, aRows, aFrom, count, a, t * aStride, (t + 1) * aStride, out, t * W);
        }
        if (t < numTokens) {
            f32One(w, rowBase, wRows, aRows, aFrom, count, a, t * aStride, out, t * W);
        }
    }

    private static void widenBf16(int[] w, int rowBase, int[] rows, int from, int count, float[] scratch) {
        for (int k = 0; k < count; k++) {
            int i = (rowBase + rows[from + k]) * (W / 2);
            int o = k * W;
            for (int c = 0; c < W / 2; c += 8) {
                IntVector v = IntVector.fromArray(I, w, i + c);
                low(v).intoArray(scratch, o + 2 * c);
                high(v).intoArray(scratch, o + 2 * c + 8);
            }
        }
    }

    private static void widenI8(int[] w, float[] scales, int rowBase, int[] rows, int from, int count,
                                float[] scratch) {
        for (int k = 0; k < count; k++) {
            int e = (rowBase + rows[from + k]) * W;
            int o = k * W;
            for (int c = 0; c < W; c += PanelMatrix.BLOCK) {
                FloatVector s = FloatVector.broadcast(F, scales[(e + c) >>> 5]);
                IntVector v = IntVector.fromArray(I, w, (e + c) >>> 2);
                byte0(v).mul(s).intoArray(scratch, o + c);
                byte1(v).mul(s).intoArray(scratch, o + c + 8);
                byte2(v).mul(s).intoArray(scratch, o + c + 16);
                byte3(v).mul(s).intoArray(scratch, o + c + 24);
            }
        }
    }

    // ---- weight loads: 8 consecutive weights as float32 ----

    // bf16 → f32 is "put the 16 bits in the upper half": the low bf16 of each int by a shift, the high one by a mask.
    private static FloatVector low(IntVector v) {
        return v.lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector high(IntVector v) {
        return v.and(0xFFFF0000).reinterpretAsFloats();
    }

    // int8 → f32: byte b of each int is moved to the top and shifted down arithmetically (sign-extended), then converted.
    private static FloatVector byte0(IntVector v) {
        return v.lanewise(VectorOperators.LSHL, 24).lanewise(VectorOperators.ASHR, 24).convert(VectorOperators.I2F, 0)
                .reinterpretAsFloats();
    }

    private static FloatVector byte1(IntVector v) {
        return v.lanewise(VectorOperators.LSHL, 16).lanewise(VectorOperators.ASHR, 24).convert(VectorOperators.I2F, 0)
                .reinterpretAsFloats();
    }

    private static FloatVector byte2(IntVector v) {
        return v.lanewise(VectorOperators.LSHL, 8).lanewise(VectorOperators.ASHR, 24).convert(VectorOperators.I2F, 0)
                .reinterpretAsFloats();
    }

    private static FloatVector byte3(IntVector v) {
        return v.lanewise(VectorOperators.ASHR, 24).convert(VectorOperators.I2F, 0).reinterpretAsFloats();
    }

    // ---- F32 ----

    private static void f32One(float[] w, int rowBase, int[] wRows, int[] aRows, int aFrom, int count, float[] a,
                               int aOff, float[] out, int outOff) {
        FloatVector c0 = load(out, outOff), c1 = load(out, outOff + 8), c2 = load(out, outOff + 16);
        FloatVector c3 = load(out, outOff + 24), c4 = load(out, outOff + 32), c5 = load(out, outOff + 40);
        FloatVector c6 = load(out, outOff + 48), c7 = load(out, outOff + 56);
        for (int k = 0; k < count; k++) {
            FloatVector x = FloatVector.broadcast(F, a[aOff + aRows[aFrom + k]]);
            int i = (rowBase + wRows[k]) * W;
            c0 = FloatVector.fromArray(F, w, i).fma(x, c0);
            c1 = FloatVector.fromArray(F, w, i + 8).fma(x, c1);
            c2 = FloatVector.fromArray(F, w, i + 16).fma(x, c2);
            c3 = FloatVector.fromArray(F, w, i + 24).fma(x, c3);
            c4 = FloatVector.fromArray(F, w, i + 32).fma(x, c4);
            c5 = FloatVector.fromArray(F, w, i + 40).fma(x, c5);
            c6 = FloatVector.fromArray(F, w, i + 48).fma(x, c6);
            c7 = FloatVector.fromArray(F, w, i + 56).fma(x, c7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    private static void f32Two(float[] w, int rowBase, int[] wRows, int[] aRows, int aFrom, int count, float[] a,
                               int aOff0, int aOff1, float[] out, int outOff) {
        FloatVector c0 = load(out, outOff), c1 = load(out, outOff + 8), c2 = load(out, outOff + 16);
        FloatVector c3 = load(out, outOff + 24), c4 = load(out, outOff + 32), c5 = load(out, outOff + 40);
        FloatVector c6 = load(out, outOff + 48), c7 = load(out, outOff + 56);
        int o = outOff + W;
        FloatVector d0 = load(out, o), d1 = load(out, o + 8), d2 = load(out, o + 16), d3 = load(out, o + 24);
        FloatVector d4 = load(out, o + 32), d5 = load(out, o + 40), d6 = load(out, o + 48), d7 = load(out, o + 56);
        for (int k = 0; k < count; k++) {
            int r = aRows[aFrom + k];
            FloatVector x = FloatVector.broadcast(F, a[aOff0 + r]);
            FloatVector y = FloatVector.broadcast(F, a[aOff1 + r]);
            int i = (rowBase + wRows[k]) * W;
            FloatVector v;
            v = FloatVector.fromArray(F, w, i); c0 = v.fma(x, c0); d0 = v.fma(y, d0);
            v = FloatVector.fromArray(F, w, i + 8); c1 = v.fma(x, c1); d1 = v.fma(y, d1);
            v = FloatVector.fromArray(F, w, i + 16); c2 = v.fma(x, c2); d2 = v.fma(y, d2);
            v = FloatVector.fromArray(F, w, i + 24); c3 = v.fma(x, c3); d3 = v.fma(y, d3);
            v = FloatVector.fromArray(F, w, i + 32); c4 = v.fma(x, c4); d4 = v.fma(y, d4);
            v = FloatVector.fromArray(F, w, i + 40); c5 = v.fma(x, c5); d5 = v.fma(y, d5);
            v = FloatVector.fromArray(F, w, i + 48); c6 = v.fma(x, c6); d6 = v.fma(y, d6);
            v = FloatVector.fromArray(F, w, i + 56); c7 = v.fma(x, c7); d7 = v.fma(y, d7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
        store(out, outOff + W, d0, d1, d2, d3, d4, d5, d6, d7);
    }

    // ---- BF16 ----

    private static void bf16One(int[] w, int rowBase, int[] rows, int numRows, float[] a, int aOff, float[] out,
                                int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff + r]);
            int i = (rowBase + r) * (W / 2); // 64 bf16 = 32 ints
            IntVector v;
            v = IntVector.fromArray(I, w, i); c0 = low(v).fma(x, c0); c1 = high(v).fma(x, c1);
            v = IntVector.fromArray(I, w, i + 8); c2 = low(v).fma(x, c2); c3 = high(v).fma(x, c3);
            v = IntVector.fromArray(I, w, i + 16); c4 = low(v).fma(x, c4); c5 = high(v).fma(x, c5);
            v = IntVector.fromArray(I, w, i + 24); c6 = low(v).fma(x, c6); c7 = high(v).fma(x, c7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    // ---- INT8: the block scale is folded into the broadcast activation (a·scale), two blocks per row ----

    private static void i8One(int[] w, float[] scales, int rowBase, int[] rows, int numRows, float[] a, int aOff,
                              float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int e = (rowBase + r) * W; // element index of the row; 64 codes = 16 ints, 2 blocks
            float av = a[aOff + r];
            FloatVector x0 = FloatVector.broadcast(F, av * scales[e >>> 5]);
            FloatVector x1 = FloatVector.broadcast(F, av * scales[(e >>> 5) + 1]);
            IntVector v = IntVector.fromArray(I, w, e >>> 2);
            c0 = byte0(v).fma(x0, c0);
            c1 = byte1(v).fma(x0, c1);
            c2 = byte2(v).fma(x0, c2);
            c3 = byte3(v).fma(x0, c3);
            v = IntVector.fromArray(I, w, (e >>> 2) + 8);
            c4 = byte0(v).fma(x1, c4);
            c5 = byte1(v).fma(x1, c5);
            c6 = byte2(v).fma(x1, c6);
            c7 = byte3(v).fma(x1, c7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    private static FloatVector load(float[] out, int off) {
        return FloatVector.fromArray(F, out, off);
    }

    private static void store(float[] out, int off, FloatVector c0, FloatVector c1, FloatVector c2, FloatVector c3,
                              FloatVector c4, FloatVector c5, FloatVector c6, FloatVector c7) {
        c0.intoArray(out, off);
        c1.intoArray(out, off + 8);
        c2.intoArray(out, off + 16);
        c3.intoArray(out, off + 24);
        c4.intoArray(out, off + 32);
        c5.intoArray(out, off + 40);
        c6.intoArray(out, off + 48);
        c7.intoArray(out, off + 56);
    }
}

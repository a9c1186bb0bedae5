package dev.moe.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector API panel kernels. One 64-wide panel row is eight 8-lane vectors; each token keeps its eight accumulators in
 * registers for the whole pass over the active rows (register blocking: one load and store of the accumulators per
 * panel, not per row), and two tokens share every weight load and conversion. 256-bit vectors: full-rate FMA on every
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
        int t = 0;
        for (; t + 1 < numTokens; t += 2) {
            switch (m.type) {
                case F32 -> f32Two(m.f32, panel * m.rows, rows, numRows, a, t * aStride, (t + 1) * aStride, out, t * W);
                case BF16 -> bf16Two(m.bf16, panel * m.rows, rows, numRows, a, t * aStride, (t + 1) * aStride, out, t * W);
                case INT8 -> i8Two(m.i8, m.scales, panel * m.rows, rows, numRows, a, t * aStride, (t + 1) * aStride, out,
                        t * W);
            }
        }
        if (t < numTokens) { // odd token out
            switch (m.type) {
                case F32 -> f32One(m.f32, panel * m.rows, rows, numRows, a, t * aStride, out, t * W);
                case BF16 -> bf16One(m.bf16, panel * m.rows, rows, numRows, a, t * aStride, out, t * W);
                case INT8 -> i8One(m.i8, m.scales, panel * m.rows, rows, numRows, a, t * aStride, out, t * W);
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

    private static void f32One(float[] w, int rowBase, int[] rows, int numRows, float[] a, int aOff, float[] out,
                               int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff + r]);
            int i = (rowBase + r) * W;
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

    private static void f32Two(float[] w, int rowBase, int[] rows, int numRows, float[] a, int aOff0, int aOff1,
                               float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        FloatVector d0 = c0, d1 = c0, d2 = c0, d3 = c0, d4 = c0, d5 = c0, d6 = c0, d7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff0 + r]);
            FloatVector y = FloatVector.broadcast(F, a[aOff1 + r]);
            int i = (rowBase + r) * W;
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

    private static void bf16Two(int[] w, int rowBase, int[] rows, int numRows, float[] a, int aOff0, int aOff1,
                                float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        FloatVector d0 = c0, d1 = c0, d2 = c0, d3 = c0, d4 = c0, d5 = c0, d6 = c0, d7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff0 + r]);
            FloatVector y = FloatVector.broadcast(F, a[aOff1 + r]);
            int i = (rowBase + r) * (W / 2);
            IntVector v;
            FloatVector lo;
            FloatVector hi;
            v = IntVector.fromArray(I, w, i); lo = low(v); hi = high(v);
            c0 = lo.fma(x, c0); d0 = lo.fma(y, d0); c1 = hi.fma(x, c1); d1 = hi.fma(y, d1);
            v = IntVector.fromArray(I, w, i + 8); lo = low(v); hi = high(v);
            c2 = lo.fma(x, c2); d2 = lo.fma(y, d2); c3 = hi.fma(x, c3); d3 = hi.fma(y, d3);
            v = IntVector.fromArray(I, w, i + 16); lo = low(v); hi = high(v);
            c4 = lo.fma(x, c4); d4 = lo.fma(y, d4); c5 = hi.fma(x, c5); d5 = hi.fma(y, d5);
            v = IntVector.fromArray(I, w, i + 24); lo = low(v); hi = high(v);
            c6 = lo.fma(x, c6); d6 = lo.fma(y, d6); c7 = hi.fma(x, c7); d7 = hi.fma(y, d7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
        store(out, outOff + W, d0, d1, d2, d3, d4, d5, d6, d7);
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

    private static void i8Two(int[] w, float[] scales, int rowBase, int[] rows, int numRows, float[] a, int aOff0,
                              int aOff1, float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        FloatVector d0 = c0, d1 = c0, d2 = c0, d3 = c0, d4 = c0, d5 = c0, d6 = c0, d7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int e = (rowBase + r) * W;
            float s0 = scales[e >>> 5];
            float s1 = scales[(e >>> 5) + 1];
            float av = a[aOff0 + r];
            float bv = a[aOff1 + r];
            FloatVector x0 = FloatVector.broadcast(F, av * s0);
            FloatVector x1 = FloatVector.broadcast(F, av * s1);
            FloatVector y0 = FloatVector.broadcast(F, bv * s0);
            FloatVector y1 = FloatVector.broadcast(F, bv * s1);
            IntVector v = IntVector.fromArray(I, w, e >>> 2);
            FloatVector q;
            q = byte0(v); c0 = q.fma(x0, c0); d0 = q.fma(y0, d0);
            q = byte1(v); c1 = q.fma(x0, c1); d1 = q.fma(y0, d1);
            q = byte2(v); c2 = q.fma(x0, c2); d2 = q.fma(y0, d2);
            q = byte3(v); c3 = q.fma(x0, c3); d3 = q.fma(y0, d3);
            v = IntVector.fromArray(I, w, (e >>> 2) + 8);
            q = byte0(v); c4 = q.fma(x1, c4); d4 = q.fma(y1, d4);
            q = byte1(v); c5 = q.fma(x1, c5); d5 = q.fma(y1, d5);
            q = byte2(v); c6 = q.fma(x1, c6); d6 = q.fma(y1, d6);
            q = byte3(v); c7 = q.fma(x1, c7); d7 = q.fma(y1, d7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
        store(out, outOff + W, d0, d1, d2, d3, d4, d5, d6, d7);
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

package dev.moe.core.kernels;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.ShortVector;
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
    private static final VectorSpecies<Short> S = ShortVector.SPECIES_128;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_256;
    private static final VectorSpecies<Byte> B = ByteVector.SPECIES_64;
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

    private static FloatVector bf16(short[] w, int index) {
        // bf16 → f32: widen to 32 bits and shift the 16 payload bits into the upper half
        return ((IntVector) ShortVector.fromArray(S, w, index).convertShape(VectorOperators.S2I, I, 0))
                .lanewise(VectorOperators.LSHL, 16).reinterpretAsFloats();
    }

    private static FloatVector i8(byte[] w, int index) {
        return (FloatVector) ByteVector.fromArray(B, w, index).convertShape(VectorOperators.B2F, F, 0);
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

    private static void bf16One(short[] w, int rowBase, int[] rows, int numRows, float[] a, int aOff, float[] out,
                                int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff + r]);
            int i = (rowBase + r) * W;
            c0 = bf16(w, i).fma(x, c0);
            c1 = bf16(w, i + 8).fma(x, c1);
            c2 = bf16(w, i + 16).fma(x, c2);
            c3 = bf16(w, i + 24).fma(x, c3);
            c4 = bf16(w, i + 32).fma(x, c4);
            c5 = bf16(w, i + 40).fma(x, c5);
            c6 = bf16(w, i + 48).fma(x, c6);
            c7 = bf16(w, i + 56).fma(x, c7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    private static void bf16Two(short[] w, int rowBase, int[] rows, int numRows, float[] a, int aOff0, int aOff1,
                                float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        FloatVector d0 = c0, d1 = c0, d2 = c0, d3 = c0, d4 = c0, d5 = c0, d6 = c0, d7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff0 + r]);
            FloatVector y = FloatVector.broadcast(F, a[aOff1 + r]);
            int i = (rowBase + r) * W;
            FloatVector v;
            v = bf16(w, i); c0 = v.fma(x, c0); d0 = v.fma(y, d0);
            v = bf16(w, i + 8); c1 = v.fma(x, c1); d1 = v.fma(y, d1);
            v = bf16(w, i + 16); c2 = v.fma(x, c2); d2 = v.fma(y, d2);
            v = bf16(w, i + 24); c3 = v.fma(x, c3); d3 = v.fma(y, d3);
            v = bf16(w, i + 32); c4 = v.fma(x, c4); d4 = v.fma(y, d4);
            v = bf16(w, i + 40); c5 = v.fma(x, c5); d5 = v.fma(y, d5);
            v = bf16(w, i + 48); c6 = v.fma(x, c6); d6 = v.fma(y, d6);
            v = bf16(w, i + 56); c7 = v.fma(x, c7); d7 = v.fma(y, d7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
        store(out, outOff + W, d0, d1, d2, d3, d4, d5, d6, d7);
    }

    // ---- INT8: the block scale is folded into the broadcast activation (a·scale), two blocks per row ----

    private static void i8One(byte[] w, float[] scales, int rowBase, int[] rows, int numRows, float[] a, int aOff,
                              float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int i = (rowBase + r) * W;
            float av = a[aOff + r];
            FloatVector x0 = FloatVector.broadcast(F, av * scales[i >>> 5]);
            FloatVector x1 = FloatVector.broadcast(F, av * scales[(i >>> 5) + 1]);
            c0 = i8(w, i).fma(x0, c0);
            c1 = i8(w, i + 8).fma(x0, c1);
            c2 = i8(w, i + 16).fma(x0, c2);
            c3 = i8(w, i + 24).fma(x0, c3);
            c4 = i8(w, i + 32).fma(x1, c4);
            c5 = i8(w, i + 40).fma(x1, c5);
            c6 = i8(w, i + 48).fma(x1, c6);
            c7 = i8(w, i + 56).fma(x1, c7);
        }
        store(out, outOff, c0, c1, c2, c3, c4, c5, c6, c7);
    }

    private static void i8Two(byte[] w, float[] scales, int rowBase, int[] rows, int numRows, float[] a, int aOff0,
                              int aOff1, float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        FloatVector d0 = c0, d1 = c0, d2 = c0, d3 = c0, d4 = c0, d5 = c0, d6 = c0, d7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int i = (rowBase + r) * W;
            float s0 = scales[i >>> 5];
            float s1 = scales[(i >>> 5) + 1];
            float av = a[aOff0 + r];
            float bv = a[aOff1 + r];
            FloatVector x0 = FloatVector.broadcast(F, av * s0);
            FloatVector x1 = FloatVector.broadcast(F, av * s1);
            FloatVector y0 = FloatVector.broadcast(F, bv * s0);
            FloatVector y1 = FloatVector.broadcast(F, bv * s1);
            FloatVector v;
            v = i8(w, i); c0 = v.fma(x0, c0); d0 = v.fma(y0, d0);
            v = i8(w, i + 8); c1 = v.fma(x0, c1); d1 = v.fma(y0, d1);
            v = i8(w, i + 16); c2 = v.fma(x0, c2); d2 = v.fma(y0, d2);
            v = i8(w, i + 24); c3 = v.fma(x0, c3); d3 = v.fma(y0, d3);
            v = i8(w, i + 32); c4 = v.fma(x1, c4); d4 = v.fma(y1, d4);
            v = i8(w, i + 40); c5 = v.fma(x1, c5); d5 = v.fma(y1, d5);
            v = i8(w, i + 48); c6 = v.fma(x1, c6); d6 = v.fma(y1, d6);
            v = i8(w, i + 56); c7 = v.fma(x1, c7); d7 = v.fma(y1, d7);
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

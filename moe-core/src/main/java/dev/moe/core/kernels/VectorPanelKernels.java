package dev.moe.core.kernels;

import static jdk.incubator.vector.VectorOperators.B2F;
import static jdk.incubator.vector.VectorOperators.LSHL;

import jdk.incubator.vector.ByteVector;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.IntVector;
import jdk.incubator.vector.VectorMask;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorShape;
import jdk.incubator.vector.VectorShuffle;
import jdk.incubator.vector.VectorSpecies;

/**
 * Vector API panel kernels. Each token keeps a panel's 64 accumulators in registers for the whole pass over the active
 * rows (register blocking: one load and store of the accumulators per panel, not per row).
 * <ul>
 *   <li>One token (decode): narrow weights are widened in registers. On AVX-512 a thread runs four panels side by side
 *       ({@link #accumulatePanels}: four weight streams keep more lines in flight than one, which is what takes int8
 *       from about 35-60% to 70-100% of read bandwidth); elsewhere one panel at a time on 256-bit vectors.</li>
 *   <li>A batch: on AVX-512 four tokens per pass over the panel ({@link #tokensByFour}), each weight widened in
 *       registers and fed to the FMAs of all four; on 256-bit vectors narrow weights are widened once per call into a
 *       float32 copy of {@code ROW_BLOCK} active rows, which token pairs then share.</li>
 *   <li>Whole rows ({@link #accumulateRows}, ROWS layout): full output rows accumulated into an L1 array, four rows
 *       per pass taken one from each quarter of the active rows (four long streams when dense; a sparse token takes
 *       eight, one from each eighth).</li>
 * </ul>
 * Chunks are addressed as panel base + row · {@link PanelMatrix#rowStride()}, so every kernel runs on both layouts.
 *
 * <p>Widening: bf16 → f32 puts the 16 bits in the upper half (the low bf16 of each int by a shift, the high one by a
 * mask); int8 → f32 is one B2F cast of a byte vector (sign extension and conversion); the int8 block scale is folded
 * into the broadcast activation ({@code a·scale}), once per row and block of 32.
 * The kernels write this out instead of calling helper methods: when C2 inlines such a
 * kernel into its caller and runs into its node budget ({@code NodeCountInliningCutoff}), it still inlines the
 * {@code @ForceInline} Vector API methods, but a helper of ours that takes or returns a vector is left as a call and
 * every vector crossing it is boxed (seen twice: i8One inlined into {@link #accumulate} with its accumulator store
 * left as a call, int8 dense 4x slower; and a store/load helper in the batch kernels, bf16 at 2 tokens 4-100x
 * slower once {@link #accumulatePanels} was added to the class).
 */
public final class VectorPanelKernels implements PanelKernels {
    public static final VectorPanelKernels INSTANCE = new VectorPanelKernels();
    static final VectorSpecies<Float> F = FloatVector.SPECIES_256;
    private static final VectorSpecies<Integer> I = IntVector.SPECIES_256;
    /** int8 codes of one F vector: 8 bytes, widened to 8 floats by one cast (sign-extend + convert). */
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
        int base = m.chunkOffset(panel, 0); // element index of chunk (panel, r) = base + r · stride
        int stride = m.rowStride();
        if (m.type != WeightType.F32 && numTokens == 1) {
            // Decode: widen in registers, straight into the FMAs; the weights are read exactly once.
            if (m.type == WeightType.BF16) {
                bf16One(m.bf16, base, stride, rows, numRows, a, 0, out, 0);
            } else {
                i8One(m.i8, m.scales, base, stride, rows, numRows, a, 0, out, 0);
            }
            return;
        }
        if (WIDE && numTokens > 1) {
            tokensByFour(m, base, stride, rows, numRows, a, aStride, numTokens, out);
            return;
        }
        java.util.Arrays.fill(out, 0, numTokens * W, 0f);
        if (m.type == WeightType.F32 && stride == W) {
            f32(m.f32, base, rows, rows, 0, numRows, a, aStride, numTokens, out);
            return;
        }
        // 256-bit batches of narrow weights (and of float32 ones whose chunks are a row apart, ROWS): widen (copy)
        // ROW_BLOCK active rows at a time into an L1-resident float32 copy and run every token pair over it, so each
        // weight is read from memory and converted once per call, not per token.
        float[] scratch = SCRATCH.get();
        for (int from = 0; from < numRows; from += ROW_BLOCK) {
            int count = Math.min(ROW_BLOCK, numRows - from);
            switch (m.type) {
                case BF16 -> widenBf16(m.bf16, base, stride, rows, from, count, scratch);
                case INT8 -> widenI8(m.i8, m.scales, base, stride, rows, from, count, scratch);
                case F32 -> {
                    for (int k = 0; k < count; k++) {
                        System.arraycopy(m.f32, base + rows[from + k] * stride, scratch, k * W, W);
                    }
                }
            }
            f32(scratch, 0, IDENTITY, rows, from, count, a, aStride, numTokens, out);
        }
    }

    /**
     * A batch on 512-bit vectors: four tokens per pass over the panel's active rows, each row's weights widened in
     * registers and fed straight to the sixteen FMAs of the four tokens (no float32 copy). A pass is limited by
     * memory at four tokens and by the FMAs from about sixteen, where the passes after the first find the panel
     * (64-256 KiB) in L2. Measured against widening 32 rows into an L1 copy first (Qwen3 expert, 2 threads): bf16
     * batch 4 0.31 → 0.20 ms, 16 0.95 → 0.47 ms, 64 2.3 → 1.5 ms; int8 batch 16 0.74 → 0.58 ms (batch 64 about 5%
     * slower, 2.04 → 2.16 ms: the copy converts each weight once for all tokens). Loads in the widening phase of
     * the copy never overlapped its FMAs; here every row's loads are spread among them. Blocking the rows so later
     * passes hit L1 measured slower, and so did taking the rows of a pass from four quarters of the panel; two
     * halves (float32 and int8: a row from each per step) measured faster. When every row is active (the dense
     * path) float32 runs a twin that indexes the rows directly ({@link #f32Tokens4Dense}).
     *
     * <p>The last pass of a batch of 4k + j tokens repeats its last token in the missing places, their outputs
     * written to a scratch row.
     */
    private static void tokensByFour(PanelMatrix m, int base, int stride, int[] rows, int numRows, float[] a,
                                     int aStride, int numTokens, float[] out) {
        float[] spare = SPARE_TOKENS.get();
        int last = numTokens - 1;
        // float32 and int8 kernels take one row from each half of an even count (two weight streams per thread)
        int paired = m.type == WeightType.BF16 ? numRows : numRows & ~1;
        boolean allRows = allRowsOfPanels(m, stride, rows, numRows); // float32's dense path indexes the rows directly
        for (int t = 0; t < numTokens; t += 4) {
            int a0 = t * aStride;
            int a1 = Math.min(t + 1, last) * aStride, a2 = Math.min(t + 2, last) * aStride;
            int a3 = Math.min(t + 3, last) * aStride;
            float[] out1 = t + 1 <= last ? out : spare, out2 = t + 2 <= last ? out : spare;
            float[] out3 = t + 3 <= last ? out : spare;
            int o1 = t + 1 <= last ? (t + 1) * W : 0, o2 = t + 2 <= last ? (t + 2) * W : W;
            int o3 = t + 3 <= last ? (t + 3) * W : 2 * W;
            switch (m.type) {
                case BF16 -> bf16Tokens4(m.bf16, base, stride, rows, numRows, a, a0, a1, a2, a3, out, t * W,
                        out1, o1, out2, o2, out3, o3);
                case INT8 -> i8Tokens4(m.i8, m.scales, base, stride, rows, paired, a, a0, a1, a2, a3, out, t * W,
                        out1, o1, out2, o2, out3, o3);
                case F32 -> {
                    if (allRows) {
                        f32Tokens4Dense(m.f32, base, paired, a, a0, a1, a2, a3, out, t * W,
                                out1, o1, out2, o2, out3, o3);
                    } else {
                        f32Tokens4(m.f32, base, stride, rows, paired, a, a0, a1, a2, a3, out, t * W,
                                out1, o1, out2, o2, out3, o3);
                    }
                }
            }
        }
        if (m.type == WeightType.BF16) {
            for (int t = 0; t < numTokens; t++) {
                swapHalves(out, t * W, W); // lane order → column order
            }
        } else if (paired < numRows) {
            addRow(m, base, stride, rows[paired], a, aStride, numTokens, out);
        }
    }

    /**
     * {@code out_t[c] += a[t · aStride + r] · W[r][c]} for every token: the odd last row of a float32 or int8 batch
     * pass, whose kernels take their rows in pairs (an odd row inside them, as a second loop, made C2 compile int8
     * 4x slower in three runs of five).
     */
    private static void addRow(PanelMatrix m, int base, int stride, int r, float[] a, int aStride, int numTokens,
                               float[] out) {
        int e = base + r * stride;
        for (int c = 0; c < W; c++) {
            float w = m.element(e + c);
            for (int t = 0; t < numTokens; t++) {
                out[t * W + c] += a[t * aStride + r] * w;
            }
        }
    }

    /** Outputs of the repeated tokens of a last, partial pass of {@link #tokensByFour}: never read. */
    private static final ThreadLocal<float[]> SPARE_TOKENS = ThreadLocal.withInitial(() -> new float[3 * W]);

    @Override
    public int prune(float[] v, int vOff, int n, float mode, float threshold, float[] out, int outOff,
                     float[] active) {
        int pruned = 0;
        int i = 0;
        for (int bound = R.loopBound(n); i < bound; i += L) {
            FloatVector c = FloatVector.fromArray(R, v, vOff + i).sub(mode);
            VectorMask<Float> drop = c.abs().compare(VectorOperators.LE, threshold); // NaN: not LE, so kept
            c.blend(0f, drop).intoArray(out, outOff + i);
            FloatVector.fromArray(R, active, i).blend(1f, drop.not()).intoArray(active, i);
            pruned += drop.trueCount();
        }
        return pruned + PanelKernels.pruneRange(v, vOff, i, n, mode, threshold, out, outOff, active); // tail
    }

    /**
     * Sixteen (eight) flags per step: the lanes whose flag is set are compressed to the front of a vector of channel
     * indices and stored under a mask, instead of a branch per channel (the scalar scan was most of the mask time of a
     * single token: 2816 channels of a Qwen3 expert).
     */
    @Override
    public int activeRows(float[] active, int n, int[] rows) {
        int count = 0;
        int i = 0;
        IntVector lanes = IntVector.zero(RI).addIndex(1);
        for (int bound = R.loopBound(n); i < bound; i += L) {
            VectorMask<Integer> set = FloatVector.fromArray(R, active, i).compare(VectorOperators.NE, 0f).cast(RI);
            lanes.add(i).compress(set).intoArray(rows, count, set.compress());
            count += set.trueCount();
        }
        return PanelKernels.activeRowsRange(active, i, n, rows, count); // tail
    }

    @Override
    public void accumulatePanels(PanelMatrix m, int first, int step, int count, int[] rows, int numRows, float[] a,
                                 float[] out) {
        int stride = m.rowStride();
        if (WIDE && count == PANEL_GROUP && m.type != WeightType.F32) {
            int b0 = m.chunkOffset(first, 0), b1 = m.chunkOffset(first + step, 0);
            int b2 = m.chunkOffset(first + 2 * step, 0), b3 = m.chunkOffset(first + 3 * step, 0);
            boolean allRows = allRowsOfPanels(m, stride, rows, numRows); // the dense twins index the rows directly
            if (m.type == WeightType.BF16) {
                if (allRows) {
                    bf16Panels4Dense(m.bf16, b0, b1, b2, b3, numRows, a, out);
                } else {
                    bf16Panels4(m.bf16, b0, b1, b2, b3, stride, rows, numRows, a, out);
                }
                swapHalves(out, 0, PANEL_GROUP * W); // lane order → column order
            } else if (allRows) {
                i8Panels4Dense(m.i8, m.scales, b0, b1, b2, b3, numRows, a, out);
            } else {
                i8Panels4(m.i8, m.scales, b0, b1, b2, b3, stride, rows, numRows, a, out);
            }
            return;
        }
        for (int j = 0; j < count; j++) { // one panel after another
            int base = m.chunkOffset(first + j * step, 0);
            switch (m.type) {
                case BF16 -> bf16One(m.bf16, base, stride, rows, numRows, a, 0, out, j * W);
                case INT8 -> i8One(m.i8, m.scales, base, stride, rows, numRows, a, 0, out, j * W);
                case F32 -> {
                    float[] one = PANEL.get();
                    accumulate(m, first + j * step, rows, numRows, a, 0, 1, one);
                    System.arraycopy(one, 0, out, j * W, W);
                }
            }
        }
    }

    private static final ThreadLocal<float[]> PANEL = ThreadLocal.withInitial(() -> new float[W]);

    /**
     * Whether {@code rows} is every row of a panel-major matrix, in order: the rows are ascending and distinct, so a
     * full count whose last row is the last index is the identity. The dense twins of the kernels then index the rows
     * directly.
     */
    private static boolean allRowsOfPanels(PanelMatrix m, int stride, int[] rows, int numRows) {
        return stride == W && numRows == m.rows && rows[numRows - 1] == numRows - 1;
    }

    /**
     * int8, four tokens ({@link #tokensByFour}): {@code out_t[c] = Σ_k a[a_t + rows[k]] · scale · code[rows[k]][c]},
     * each 16-code load widened once (B2F cast), scaled by its block's scale and fed to the four tokens' FMAs. Each
     * step takes row k and row k + numRows/2 (numRows even): two weight streams per thread, 32 FMAs per step. Against
     * one row per step (Qwen3 expert, 2 threads, PANELS dense): batch 4 0.20-0.21 → 0.19-0.20 ms, 16 0.57-0.58 →
     * 0.51-0.53 ms (49 → 52-55% of the FMA peak), 64 2.03-2.09 → 1.86-1.91 ms.
     */
    private static void i8Tokens4(byte[] w, float[] scales, int base, int stride, int[] rows, int numRows, float[] a,
                                  int a0, int a1, int a2, int a3, float[] out0, int o0, float[] out1, int o1,
                                  float[] out2, int o2, float[] out3, int o3) {
        FloatVector p0 = FloatVector.zero(R), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
        FloatVector u0 = p0, u1 = p0, u2 = p0, u3 = p0, z0 = p0, z1 = p0, z2 = p0, z3 = p0;
        int half = numRows >>> 1;
        for (int k = 0; k < half; k++) {
            int r = rows[k];
            int e = base + r * stride;
            FloatVector x0 = FloatVector.broadcast(R, a[a0 + r]);
            FloatVector x1 = FloatVector.broadcast(R, a[a1 + r]);
            FloatVector x2 = FloatVector.broadcast(R, a[a2 + r]);
            FloatVector x3 = FloatVector.broadcast(R, a[a3 + r]);
            float s0 = scales[e >>> 5], s1 = scales[(e >>> 5) + 1];
            FloatVector d;
            d = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).mul(s0);
            p0 = d.fma(x0, p0);
            q0 = d.fma(x1, q0);
            u0 = d.fma(x2, u0);
            z0 = d.fma(x3, z0);
            d = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).mul(s0);
            p1 = d.fma(x0, p1);
            q1 = d.fma(x1, q1);
            u1 = d.fma(x2, u1);
            z1 = d.fma(x3, z1);
            d = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).mul(s1);
            p2 = d.fma(x0, p2);
            q2 = d.fma(x1, q2);
            u2 = d.fma(x2, u2);
            z2 = d.fma(x3, z2);
            d = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).mul(s1);
            p3 = d.fma(x0, p3);
            q3 = d.fma(x1, q3);
            u3 = d.fma(x2, u3);
            z3 = d.fma(x3, z3);
            r = rows[k + half];
            e = base + r * stride;
            x0 = FloatVector.broadcast(R, a[a0 + r]);
            x1 = FloatVector.broadcast(R, a[a1 + r]);
            x2 = FloatVector.broadcast(R, a[a2 + r]);
            x3 = FloatVector.broadcast(R, a[a3 + r]);
            s0 = scales[e >>> 5];
            s1 = scales[(e >>> 5) + 1];
            d = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).mul(s0);
            p0 = d.fma(x0, p0);
            q0 = d.fma(x1, q0);
            u0 = d.fma(x2, u0);
            z0 = d.fma(x3, z0);
            d = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).mul(s0);
            p1 = d.fma(x0, p1);
            q1 = d.fma(x1, q1);
            u1 = d.fma(x2, u1);
            z1 = d.fma(x3, z1);
            d = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).mul(s1);
            p2 = d.fma(x0, p2);
            q2 = d.fma(x1, q2);
            u2 = d.fma(x2, u2);
            z2 = d.fma(x3, z2);
            d = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).mul(s1);
            p3 = d.fma(x0, p3);
            q3 = d.fma(x1, q3);
            u3 = d.fma(x2, u3);
            z3 = d.fma(x3, z3);
        }
        p0.intoArray(out0, o0);
        p1.intoArray(out0, o0 + 16);
        p2.intoArray(out0, o0 + 32);
        p3.intoArray(out0, o0 + 48);
        q0.intoArray(out1, o1);
        q1.intoArray(out1, o1 + 16);
        q2.intoArray(out1, o1 + 32);
        q3.intoArray(out1, o1 + 48);
        u0.intoArray(out2, o2);
        u1.intoArray(out2, o2 + 16);
        u2.intoArray(out2, o2 + 32);
        u3.intoArray(out2, o2 + 48);
        z0.intoArray(out3, o3);
        z1.intoArray(out3, o3 + 16);
        z2.intoArray(out3, o3 + 32);
        z3.intoArray(out3, o3 + 48);
    }

    /**
     * float32, four tokens ({@link #tokensByFour}): {@code out_t[c] = Σ_k a[a_t + rows[k]] · W[rows[k]][c]}, rows
     * taken in pairs from the two halves as in {@link #i8Tokens4}: a float32 pass reads 256 bytes per row for 16 FMAs,
     * and one stream per thread left its first pass waiting on DRAM (Qwen3 expert, 2 threads: batch 4 0.45-0.47 →
     * 0.29-0.44 ms, 16 0.77 → 0.61-0.73 ms). bf16 stays at one row per step: two measured 7-20% slower.
     */
    private static void f32Tokens4(float[] w, int base, int stride, int[] rows, int numRows, float[] a, int a0, int a1,
                                   int a2, int a3, float[] out0, int o0, float[] out1, int o1, float[] out2, int o2,
                                   float[] out3, int o3) {
        FloatVector p0 = FloatVector.zero(R), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
        FloatVector u0 = p0, u1 = p0, u2 = p0, u3 = p0, z0 = p0, z1 = p0, z2 = p0, z3 = p0;
        int half = numRows >>> 1;
        for (int k = 0; k < half; k++) {
            int r = rows[k];
            int i = base + r * stride;
            FloatVector x0 = FloatVector.broadcast(R, a[a0 + r]);
            FloatVector x1 = FloatVector.broadcast(R, a[a1 + r]);
            FloatVector x2 = FloatVector.broadcast(R, a[a2 + r]);
            FloatVector x3 = FloatVector.broadcast(R, a[a3 + r]);
            FloatVector d;
            d = FloatVector.fromArray(R, w, i);
            p0 = d.fma(x0, p0);
            q0 = d.fma(x1, q0);
            u0 = d.fma(x2, u0);
            z0 = d.fma(x3, z0);
            d = FloatVector.fromArray(R, w, i + 16);
            p1 = d.fma(x0, p1);
            q1 = d.fma(x1, q1);
            u1 = d.fma(x2, u1);
            z1 = d.fma(x3, z1);
            d = FloatVector.fromArray(R, w, i + 32);
            p2 = d.fma(x0, p2);
            q2 = d.fma(x1, q2);
            u2 = d.fma(x2, u2);
            z2 = d.fma(x3, z2);
            d = FloatVector.fromArray(R, w, i + 48);
            p3 = d.fma(x0, p3);
            q3 = d.fma(x1, q3);
            u3 = d.fma(x2, u3);
            z3 = d.fma(x3, z3);
            r = rows[k + half];
            i = base + r * stride;
            x0 = FloatVector.broadcast(R, a[a0 + r]);
            x1 = FloatVector.broadcast(R, a[a1 + r]);
            x2 = FloatVector.broadcast(R, a[a2 + r]);
            x3 = FloatVector.broadcast(R, a[a3 + r]);
            d = FloatVector.fromArray(R, w, i);
            p0 = d.fma(x0, p0);
            q0 = d.fma(x1, q0);
            u0 = d.fma(x2, u0);
            z0 = d.fma(x3, z0);
            d = FloatVector.fromArray(R, w, i + 16);
            p1 = d.fma(x0, p1);
            q1 = d.fma(x1, q1);
            u1 = d.fma(x2, u1);
            z1 = d.fma(x3, z1);
            d = FloatVector.fromArray(R, w, i + 32);
            p2 = d.fma(x0, p2);
            q2 = d.fma(x1, q2);
            u2 = d.fma(x2, u2);
            z2 = d.fma(x3, z2);
            d = FloatVector.fromArray(R, w, i + 48);
            p3 = d.fma(x0, p3);
            q3 = d.fma(x1, q3);
            u3 = d.fma(x2, u3);
            z3 = d.fma(x3, z3);
        }
        p0.intoArray(out0, o0);
        p1.intoArray(out0, o0 + 16);
        p2.intoArray(out0, o0 + 32);
        p3.intoArray(out0, o0 + 48);
        q0.intoArray(out1, o1);
        q1.intoArray(out1, o1 + 16);
        q2.intoArray(out1, o1 + 32);
        q3.intoArray(out1, o1 + 48);
        u0.intoArray(out2, o2);
        u1.intoArray(out2, o2 + 16);
        u2.intoArray(out2, o2 + 32);
        u3.intoArray(out2, o2 + 48);
        z0.intoArray(out3, o3);
        z1.intoArray(out3, o3 + 16);
        z2.intoArray(out3, o3 + 32);
        z3.intoArray(out3, o3 + 48);
    }

    /**
     * {@link #f32Tokens4} over all rows of a panel-major panel (the dense path, no thresholds), the same arithmetic in
     * the same order. Row k is the loop's induction variable and the rows are {@code WIDTH} apart, so C2 proves every
     * load in bounds once before the loop; through {@code rows[k]} each step checks each load and computes its
     * address (about 40 more instructions per 32 FMAs, 15% slower from L2). Qwen3 expert, 2 threads, two A/B pairs:
     * batch 4 0.33-0.35 → 0.28-0.33 ms, 16 0.64 → 0.51-0.56 ms (41-43% → 48-54% of the FMA peak), 64 1.81-1.82 →
     * 1.43-1.48 ms. The same twin of bf16 and int8 measured within 5% (bf16 batch 2-4 a little slower, 64 4-7% faster;
     * int8 batch 16-64 3-5% faster) and no different in a whole layer, where an expert gets about four tokens.
     */
    private static void f32Tokens4Dense(float[] w, int base, int numRows, float[] a, int a0, int a1,
                                        int a2, int a3, float[] out0, int o0, float[] out1, int o1, float[] out2,
                                        int o2, float[] out3, int o3) {
        FloatVector p0 = FloatVector.zero(R), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
        FloatVector u0 = p0, u1 = p0, u2 = p0, u3 = p0, z0 = p0, z1 = p0, z2 = p0, z3 = p0;
        int half = numRows >>> 1;
        for (int k = 0; k < half; k++) {
            int r = k;
            int i = base + r * W;
            FloatVector x0 = FloatVector.broadcast(R, a[a0 + r]);
            FloatVector x1 = FloatVector.broadcast(R, a[a1 + r]);
            FloatVector x2 = FloatVector.broadcast(R, a[a2 + r]);
            FloatVector x3 = FloatVector.broadcast(R, a[a3 + r]);
            FloatVector d;
            d = FloatVector.fromArray(R, w, i);
            p0 = d.fma(x0, p0);
            q0 = d.fma(x1, q0);
            u0 = d.fma(x2, u0);
            z0 = d.fma(x3, z0);
            d = FloatVector.fromArray(R, w, i + 16);
            p1 = d.fma(x0, p1);
            q1 = d.fma(x1, q1);
            u1 = d.fma(x2, u1);
            z1 = d.fma(x3, z1);
            d = FloatVector.fromArray(R, w, i + 32);
            p2 = d.fma(x0, p2);
            q2 = d.fma(x1, q2);
            u2 = d.fma(x2, u2);
            z2 = d.fma(x3, z2);
            d = FloatVector.fromArray(R, w, i + 48);
            p3 = d.fma(x0, p3);
            q3 = d.fma(x1, q3);
            u3 = d.fma(x2, u3);
            z3 = d.fma(x3, z3);
            r = k + half;
            i = base + r * W;
            x0 = FloatVector.broadcast(R, a[a0 + r]);
            x1 = FloatVector.broadcast(R, a[a1 + r]);
            x2 = FloatVector.broadcast(R, a[a2 + r]);
            x3 = FloatVector.broadcast(R, a[a3 + r]);
            d = FloatVector.fromArray(R, w, i);
            p0 = d.fma(x0, p0);
            q0 = d.fma(x1, q0);
            u0 = d.fma(x2, u0);
            z0 = d.fma(x3, z0);
            d = FloatVector.fromArray(R, w, i + 16);
            p1 = d.fma(x0, p1);
            q1 = d.fma(x1, q1);
            u1 = d.fma(x2, u1);
            z1 = d.fma(x3, z1);
            d = FloatVector.fromArray(R, w, i + 32);
            p2 = d.fma(x0, p2);
            q2 = d.fma(x1, q2);
            u2 = d.fma(x2, u2);
            z2 = d.fma(x3, z2);
            d = FloatVector.fromArray(R, w, i + 48);
            p3 = d.fma(x0, p3);
            q3 = d.fma(x1, q3);
            u3 = d.fma(x2, u3);
            z3 = d.fma(x3, z3);
        }
        p0.intoArray(out0, o0);
        p1.intoArray(out0, o0 + 16);
        p2.intoArray(out0, o0 + 32);
        p3.intoArray(out0, o0 + 48);
        q0.intoArray(out1, o1);
        q1.intoArray(out1, o1 + 16);
        q2.intoArray(out1, o1 + 32);
        q3.intoArray(out1, o1 + 48);
        u0.intoArray(out2, o2);
        u1.intoArray(out2, o2 + 16);
        u2.intoArray(out2, o2 + 32);
        u3.intoArray(out2, o2 + 48);
        z0.intoArray(out3, o3);
        z1.intoArray(out3, o3 + 16);
        z2.intoArray(out3, o3 + 32);
        z3.intoArray(out3, o3 + 48);
    }

    /**
     * bf16, four tokens ({@link #tokensByFour}): {@code out_t[c] = Σ_k a[a_t + rows[k]] · W[rows[k]][c]}, each 16-int
     * load widened to two 16-lane vectors in lane order (the caller swaps them back to column order).
     */
    private static void bf16Tokens4(int[] w, int base, int stride, int[] rows, int numRows, float[] a, int a0, int a1,
                                    int a2, int a3, float[] out0, int o0, float[] out1, int o1, float[] out2, int o2,
                                    float[] out3, int o3) {
        FloatVector p0 = FloatVector.zero(R), p1 = p0, p2 = p0, p3 = p0, q0 = p0, q1 = p0, q2 = p0, q3 = p0;
        FloatVector u0 = p0, u1 = p0, u2 = p0, u3 = p0, z0 = p0, z1 = p0, z2 = p0, z3 = p0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int i = (base + r * stride) >>> 1;
            FloatVector x0 = FloatVector.broadcast(R, a[a0 + r]);
            FloatVector x1 = FloatVector.broadcast(R, a[a1 + r]);
            FloatVector x2 = FloatVector.broadcast(R, a[a2 + r]);
            FloatVector x3 = FloatVector.broadcast(R, a[a3 + r]);
            IntVector v;
            FloatVector l, h;
            v = IntVector.fromArray(RI, w, i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            p0 = l.fma(x0, p0);
            p1 = h.fma(x0, p1);
            q0 = l.fma(x1, q0);
            q1 = h.fma(x1, q1);
            u0 = l.fma(x2, u0);
            u1 = h.fma(x2, u1);
            z0 = l.fma(x3, z0);
            z1 = h.fma(x3, z1);
            v = IntVector.fromArray(RI, w, i + 16);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            p2 = l.fma(x0, p2);
            p3 = h.fma(x0, p3);
            q2 = l.fma(x1, q2);
            q3 = h.fma(x1, q3);
            u2 = l.fma(x2, u2);
            u3 = h.fma(x2, u3);
            z2 = l.fma(x3, z2);
            z3 = h.fma(x3, z3);
        }
        p0.intoArray(out0, o0);
        p1.intoArray(out0, o0 + 16);
        p2.intoArray(out0, o0 + 32);
        p3.intoArray(out0, o0 + 48);
        q0.intoArray(out1, o1);
        q1.intoArray(out1, o1 + 16);
        q2.intoArray(out1, o1 + 32);
        q3.intoArray(out1, o1 + 48);
        u0.intoArray(out2, o2);
        u1.intoArray(out2, o2 + 16);
        u2.intoArray(out2, o2 + 32);
        u3.intoArray(out2, o2 + 48);
        z0.intoArray(out3, o3);
        z1.intoArray(out3, o3 + 16);
        z2.intoArray(out3, o3 + 32);
        z3.intoArray(out3, o3 + 48);
    }

    /** Rows widened per step of a batch: 32 rows × 64 floats = 8 KiB, which stays in L1 beside the streaming weights. */
    private static final int ROW_BLOCK = 32;
    private static final ThreadLocal<float[]> SCRATCH = ThreadLocal.withInitial(() -> new float[ROW_BLOCK * W]);
    private static final int[] IDENTITY = java.util.stream.IntStream.range(0, ROW_BLOCK).toArray();

    /**
     * Float32 weights, accumulating into {@code out}: token pairs, then the odd token. Weight row {@code wRows[k]} (at
     * element {@code base + wRows[k] · WIDTH}: a PANELS panel or the scratch copy) meets activation channel
     * {@code aRows[aFrom + k]}, k in [0, count). The row stride is the constant WIDTH on purpose: passed as a variable
     * it cost 8% on int8 batch 64.
     */
    private static void f32(float[] w, int base, int[] wRows, int[] aRows, int aFrom, int count, float[] a,
                            int aStride, int numTokens, float[] out) {
        int t = 0;
        for (; t + 1 < numTokens; t += 2) {
            f32Two(w, base, wRows, aRows, aFrom, count, a, t * aStride, (t + 1) * aStride, out, t * W);
        }
        if (t < numTokens) {
            f32One(w, base, wRows, aRows, aFrom, count, a, t * aStride, out, t * W);
        }
    }

    private static void widenBf16(int[] w, int base, int stride, int[] rows, int from, int count, float[] scratch) {
        for (int k = 0; k < count; k++) {
            int i = (base + rows[from + k] * stride) >>> 1;
            int o = k * W;
            for (int c = 0; c < W / 2; c += 8) {
                IntVector v = IntVector.fromArray(I, w, i + c);
                v.lanewise(LSHL, 16).reinterpretAsFloats().intoArray(scratch, o + 2 * c);
                v.and(0xFFFF0000).reinterpretAsFloats().intoArray(scratch, o + 2 * c + 8);
            }
        }
    }

    private static void widenI8(byte[] w, float[] scales, int base, int stride, int[] rows, int from, int count,
                                float[] scratch) {
        for (int k = 0; k < count; k++) {
            int e = base + rows[from + k] * stride;
            int o = k * W;
            for (int c = 0; c < W; c += PanelMatrix.BLOCK) {
                FloatVector s = FloatVector.broadcast(F, scales[(e + c) >>> 5]);
                for (int v = 0; v < PanelMatrix.BLOCK; v += F.length()) {
                    ((FloatVector) ByteVector.fromArray(B, w, e + c + v).convertShape(B2F, F, 0)).mul(s)
                            .intoArray(scratch, o + c + v);
                }
            }
        }
    }

    // ---- F32 ----

    private static void f32One(float[] w, int base, int[] wRows, int[] aRows, int aFrom, int count, float[] a,
                               int aOff, float[] out, int outOff) {
        FloatVector c0 = FloatVector.fromArray(F, out, outOff);
        FloatVector c1 = FloatVector.fromArray(F, out, outOff + 8);
        FloatVector c2 = FloatVector.fromArray(F, out, outOff + 16);
        FloatVector c3 = FloatVector.fromArray(F, out, outOff + 24);
        FloatVector c4 = FloatVector.fromArray(F, out, outOff + 32);
        FloatVector c5 = FloatVector.fromArray(F, out, outOff + 40);
        FloatVector c6 = FloatVector.fromArray(F, out, outOff + 48), c7 = FloatVector.fromArray(F, out, outOff + 56);
        for (int k = 0; k < count; k++) {
            FloatVector x = FloatVector.broadcast(F, a[aOff + aRows[aFrom + k]]);
            int i = base + wRows[k] * W;
            c0 = FloatVector.fromArray(F, w, i).fma(x, c0);
            c1 = FloatVector.fromArray(F, w, i + 8).fma(x, c1);
            c2 = FloatVector.fromArray(F, w, i + 16).fma(x, c2);
            c3 = FloatVector.fromArray(F, w, i + 24).fma(x, c3);
            c4 = FloatVector.fromArray(F, w, i + 32).fma(x, c4);
            c5 = FloatVector.fromArray(F, w, i + 40).fma(x, c5);
            c6 = FloatVector.fromArray(F, w, i + 48).fma(x, c6);
            c7 = FloatVector.fromArray(F, w, i + 56).fma(x, c7);
        }
        c0.intoArray(out, outOff);
        c1.intoArray(out, outOff + 8);
        c2.intoArray(out, outOff + 16);
        c3.intoArray(out, outOff + 24);
        c4.intoArray(out, outOff + 32);
        c5.intoArray(out, outOff + 40);
        c6.intoArray(out, outOff + 48);
        c7.intoArray(out, outOff + 56);
    }

    private static void f32Two(float[] w, int base, int[] wRows, int[] aRows, int aFrom, int count, float[] a,
                               int aOff0, int aOff1, float[] out, int outOff) {
        FloatVector c0 = FloatVector.fromArray(F, out, outOff);
        FloatVector c1 = FloatVector.fromArray(F, out, outOff + 8);
        FloatVector c2 = FloatVector.fromArray(F, out, outOff + 16);
        FloatVector c3 = FloatVector.fromArray(F, out, outOff + 24);
        FloatVector c4 = FloatVector.fromArray(F, out, outOff + 32);
        FloatVector c5 = FloatVector.fromArray(F, out, outOff + 40);
        FloatVector c6 = FloatVector.fromArray(F, out, outOff + 48), c7 = FloatVector.fromArray(F, out, outOff + 56);
        int o = outOff + W;
        FloatVector d0 = FloatVector.fromArray(F, out, o);
        FloatVector d1 = FloatVector.fromArray(F, out, o + 8);
        FloatVector d2 = FloatVector.fromArray(F, out, o + 16);
        FloatVector d3 = FloatVector.fromArray(F, out, o + 24);
        FloatVector d4 = FloatVector.fromArray(F, out, o + 32);
        FloatVector d5 = FloatVector.fromArray(F, out, o + 40);
        FloatVector d6 = FloatVector.fromArray(F, out, o + 48);
        FloatVector d7 = FloatVector.fromArray(F, out, o + 56);
        for (int k = 0; k < count; k++) {
            int r = aRows[aFrom + k];
            FloatVector x = FloatVector.broadcast(F, a[aOff0 + r]);
            FloatVector y = FloatVector.broadcast(F, a[aOff1 + r]);
            int i = base + wRows[k] * W;
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
        c0.intoArray(out, outOff);
        c1.intoArray(out, outOff + 8);
        c2.intoArray(out, outOff + 16);
        c3.intoArray(out, outOff + 24);
        c4.intoArray(out, outOff + 32);
        c5.intoArray(out, outOff + 40);
        c6.intoArray(out, outOff + 48);
        c7.intoArray(out, outOff + 56);
        d0.intoArray(out, outOff + W);
        d1.intoArray(out, outOff + W + 8);
        d2.intoArray(out, outOff + W + 16);
        d3.intoArray(out, outOff + W + 24);
        d4.intoArray(out, outOff + W + 32);
        d5.intoArray(out, outOff + W + 40);
        d6.intoArray(out, outOff + W + 48);
        d7.intoArray(out, outOff + W + 56);
    }

    // ---- BF16 ----

    private static void bf16One(int[] w, int base, int stride, int[] rows, int numRows, float[] a, int aOff,
                                float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            FloatVector x = FloatVector.broadcast(F, a[aOff + r]);
            int i = (base + r * stride) >>> 1; // 64 bf16 = 32 ints
            IntVector v;
            v = IntVector.fromArray(I, w, i);
            c0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c0);
            c1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c1);
            v = IntVector.fromArray(I, w, i + 8);
            c2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c2);
            c3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c3);
            v = IntVector.fromArray(I, w, i + 16);
            c4 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c4);
            c5 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c5);
            v = IntVector.fromArray(I, w, i + 24);
            c6 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c6);
            c7 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c7);
        }
        c0.intoArray(out, outOff);
        c1.intoArray(out, outOff + 8);
        c2.intoArray(out, outOff + 16);
        c3.intoArray(out, outOff + 24);
        c4.intoArray(out, outOff + 32);
        c5.intoArray(out, outOff + 40);
        c6.intoArray(out, outOff + 48);
        c7.intoArray(out, outOff + 56);
    }

    // ---- INT8: the block scale is folded into the broadcast activation (a·scale), two blocks per row ----

    private static void i8One(byte[] w, float[] scales, int base, int stride, int[] rows, int numRows, float[] a,
                              int aOff, float[] out, int outOff) {
        FloatVector c0 = FloatVector.zero(F), c1 = c0, c2 = c0, c3 = c0, c4 = c0, c5 = c0, c6 = c0, c7 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int e = base + r * stride; // element index of the row's 64 codes: 2 blocks
            float av = a[aOff + r];
            FloatVector x0 = FloatVector.broadcast(F, av * scales[e >>> 5]);
            FloatVector x1 = FloatVector.broadcast(F, av * scales[(e >>> 5) + 1]);
            c0 = ((FloatVector) ByteVector.fromArray(B, w, e).convertShape(B2F, F, 0)).fma(x0, c0);
            c1 = ((FloatVector) ByteVector.fromArray(B, w, e + 8).convertShape(B2F, F, 0)).fma(x0, c1);
            c2 = ((FloatVector) ByteVector.fromArray(B, w, e + 16).convertShape(B2F, F, 0)).fma(x0, c2);
            c3 = ((FloatVector) ByteVector.fromArray(B, w, e + 24).convertShape(B2F, F, 0)).fma(x0, c3);
            c4 = ((FloatVector) ByteVector.fromArray(B, w, e + 32).convertShape(B2F, F, 0)).fma(x1, c4);
            c5 = ((FloatVector) ByteVector.fromArray(B, w, e + 40).convertShape(B2F, F, 0)).fma(x1, c5);
            c6 = ((FloatVector) ByteVector.fromArray(B, w, e + 48).convertShape(B2F, F, 0)).fma(x1, c6);
            c7 = ((FloatVector) ByteVector.fromArray(B, w, e + 56).convertShape(B2F, F, 0)).fma(x1, c7);
        }
        c0.intoArray(out, outOff);
        c1.intoArray(out, outOff + 8);
        c2.intoArray(out, outOff + 16);
        c3.intoArray(out, outOff + 24);
        c4.intoArray(out, outOff + 32);
        c5.intoArray(out, outOff + 40);
        c6.intoArray(out, outOff + 48);
        c7.intoArray(out, outOff + 56);
    }

    // ---- Four panels side by side, one token, 512-bit (accumulatePanels) ----

    /**
     * bf16, four panel streams: per row, each panel's 64 weights are two 16-int loads widened to four 16-lane vectors
     * in lane order ({@code [c0..7, c16..23]}, {@code [c8..15, c24..31]}, ...; the caller swaps them back).
     */
    private static void bf16Panels4(int[] w, int b0, int b1, int b2, int b3, int stride, int[] rows, int numRows,
                                    float[] a, float[] out) {
        FloatVector c0 = FloatVector.zero(R), c1 = c0, c2 = c0, c3 = c0, d0 = c0, d1 = c0, d2 = c0, d3 = c0;
        FloatVector e0 = c0, e1 = c0, e2 = c0, e3 = c0, f0 = c0, f1 = c0, f2 = c0, f3 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int o = r * stride;
            FloatVector x = FloatVector.broadcast(R, a[r]);
            IntVector v;
            int i = (b0 + o) >>> 1;
            v = IntVector.fromArray(RI, w, i);
            c0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c0);
            c1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c1);
            v = IntVector.fromArray(RI, w, i + 16);
            c2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c2);
            c3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c3);
            i = (b1 + o) >>> 1;
            v = IntVector.fromArray(RI, w, i);
            d0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, d0);
            d1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, d1);
            v = IntVector.fromArray(RI, w, i + 16);
            d2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, d2);
            d3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, d3);
            i = (b2 + o) >>> 1;
            v = IntVector.fromArray(RI, w, i);
            e0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, e0);
            e1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, e1);
            v = IntVector.fromArray(RI, w, i + 16);
            e2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, e2);
            e3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, e3);
            i = (b3 + o) >>> 1;
            v = IntVector.fromArray(RI, w, i);
            f0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, f0);
            f1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, f1);
            v = IntVector.fromArray(RI, w, i + 16);
            f2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, f2);
            f3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, f3);
        }
        c0.intoArray(out, 0);
        c1.intoArray(out, 16);
        c2.intoArray(out, 32);
        c3.intoArray(out, 48);
        d0.intoArray(out, 64);
        d1.intoArray(out, 80);
        d2.intoArray(out, 96);
        d3.intoArray(out, 112);
        e0.intoArray(out, 128);
        e1.intoArray(out, 144);
        e2.intoArray(out, 160);
        e3.intoArray(out, 176);
        f0.intoArray(out, 192);
        f1.intoArray(out, 208);
        f2.intoArray(out, 224);
        f3.intoArray(out, 240);
    }

    /**
     * int8, four panel streams: per row, each panel's 64 codes are four 16-byte loads (two blocks), in column order;
     * each block's scale times the activation as in {@link #i8Rows4}.
     */
    private static void i8Panels4(byte[] w, float[] scales, int b0, int b1, int b2, int b3, int stride, int[] rows,
                                  int numRows, float[] a, float[] out) {
        FloatVector c0 = FloatVector.zero(R), c1 = c0, c2 = c0, c3 = c0, d0 = c0, d1 = c0, d2 = c0, d3 = c0;
        FloatVector e0 = c0, e1 = c0, e2 = c0, e3 = c0, f0 = c0, f1 = c0, f2 = c0, f3 = c0;
        for (int k = 0; k < numRows; k++) {
            int r = rows[k];
            int o = r * stride;
            FloatVector av = FloatVector.broadcast(R, a[r]);
            int e;
            FloatVector x0, x1;
            e = b0 + o;
            x0 = FloatVector.broadcast(R, scales[e >>> 5]).mul(av);
            x1 = FloatVector.broadcast(R, scales[(e >>> 5) + 1]).mul(av);
            c0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, c0);
            c1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, c1);
            c2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, c2);
            c3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, c3);
            e = b1 + o;
            x0 = FloatVector.broadcast(R, scales[e >>> 5]).mul(av);
            x1 = FloatVector.broadcast(R, scales[(e >>> 5) + 1]).mul(av);
            d0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, d0);
            d1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, d1);
            d2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, d2);
            d3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, d3);
            e = b2 + o;
            x0 = FloatVector.broadcast(R, scales[e >>> 5]).mul(av);
            x1 = FloatVector.broadcast(R, scales[(e >>> 5) + 1]).mul(av);
            e0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, e0);
            e1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, e1);
            e2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, e2);
            e3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, e3);
            e = b3 + o;
            x0 = FloatVector.broadcast(R, scales[e >>> 5]).mul(av);
            x1 = FloatVector.broadcast(R, scales[(e >>> 5) + 1]).mul(av);
            f0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, f0);
            f1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, f1);
            f2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, f2);
            f3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, f3);
        }
        c0.intoArray(out, 0);
        c1.intoArray(out, 16);
        c2.intoArray(out, 32);
        c3.intoArray(out, 48);
        d0.intoArray(out, 64);
        d1.intoArray(out, 80);
        d2.intoArray(out, 96);
        d3.intoArray(out, 112);
        e0.intoArray(out, 128);
        e1.intoArray(out, 144);
        e2.intoArray(out, 160);
        e3.intoArray(out, 176);
        f0.intoArray(out, 192);
        f1.intoArray(out, 208);
        f2.intoArray(out, 224);
        f3.intoArray(out, 240);
    }

    /** {@link #bf16Panels4} over every row of panel-major panels, the row the loop variable (see {@link #i8Panels4Dense}). */
    private static void bf16Panels4Dense(int[] w, int b0, int b1, int b2, int b3, int numRows, float[] a,
                                         float[] out) {
        FloatVector c0 = FloatVector.zero(R), c1 = c0, c2 = c0, c3 = c0, d0 = c0, d1 = c0, d2 = c0, d3 = c0;
        FloatVector e0 = c0, e1 = c0, e2 = c0, e3 = c0, f0 = c0, f1 = c0, f2 = c0, f3 = c0;
        int i0 = b0 >>> 1, i1 = b1 >>> 1, i2 = b2 >>> 1, i3 = b3 >>> 1; // W / 2 = 32 ints per row
        for (int r = 0; r < numRows; r++) {
            FloatVector x = FloatVector.broadcast(R, a[r]);
            IntVector v;
            int i = i0 + 32 * r;
            v = IntVector.fromArray(RI, w, i);
            c0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c0);
            c1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c1);
            v = IntVector.fromArray(RI, w, i + 16);
            c2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, c2);
            c3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, c3);
            i = i1 + 32 * r;
            v = IntVector.fromArray(RI, w, i);
            d0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, d0);
            d1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, d1);
            v = IntVector.fromArray(RI, w, i + 16);
            d2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, d2);
            d3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, d3);
            i = i2 + 32 * r;
            v = IntVector.fromArray(RI, w, i);
            e0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, e0);
            e1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, e1);
            v = IntVector.fromArray(RI, w, i + 16);
            e2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, e2);
            e3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, e3);
            i = i3 + 32 * r;
            v = IntVector.fromArray(RI, w, i);
            f0 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, f0);
            f1 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, f1);
            v = IntVector.fromArray(RI, w, i + 16);
            f2 = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x, f2);
            f3 = v.and(0xFFFF0000).reinterpretAsFloats().fma(x, f3);
        }
        c0.intoArray(out, 0);
        c1.intoArray(out, 16);
        c2.intoArray(out, 32);
        c3.intoArray(out, 48);
        d0.intoArray(out, 64);
        d1.intoArray(out, 80);
        d2.intoArray(out, 96);
        d3.intoArray(out, 112);
        e0.intoArray(out, 128);
        e1.intoArray(out, 144);
        e2.intoArray(out, 160);
        e3.intoArray(out, 176);
        f0.intoArray(out, 192);
        f1.intoArray(out, 208);
        f2.intoArray(out, 224);
        f3.intoArray(out, 240);
    }

    /**
     * {@link #i8Panels4} over every row of panel-major panels, the row the loop variable: each load's index is then
     * {@code base + 64·r} (codes) or {@code base/32 + 2·r} (scales), which C2 range-checks once before the loop;
     * through {@code rows[k]} and {@code e >>> 5} it checked all six loads of each panel on every row.
     */
    private static void i8Panels4Dense(byte[] w, float[] scales, int b0, int b1, int b2, int b3, int numRows,
                                       float[] a, float[] out) {
        FloatVector c0 = FloatVector.zero(R), c1 = c0, c2 = c0, c3 = c0, d0 = c0, d1 = c0, d2 = c0, d3 = c0;
        FloatVector e0 = c0, e1 = c0, e2 = c0, e3 = c0, f0 = c0, f1 = c0, f2 = c0, f3 = c0;
        int s0 = b0 >>> 5, s1 = b1 >>> 5, s2 = b2 >>> 5, s3 = b3 >>> 5; // W / BLOCK = 2 scales per row
        for (int r = 0; r < numRows; r++) {
            FloatVector av = FloatVector.broadcast(R, a[r]);
            int e = b0 + r * W;
            int q = s0 + 2 * r;
            FloatVector x0 = FloatVector.broadcast(R, scales[q]).mul(av);
            FloatVector x1 = FloatVector.broadcast(R, scales[q + 1]).mul(av);
            c0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, c0);
            c1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, c1);
            c2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, c2);
            c3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, c3);
            e = b1 + r * W;
            q = s1 + 2 * r;
            x0 = FloatVector.broadcast(R, scales[q]).mul(av);
            x1 = FloatVector.broadcast(R, scales[q + 1]).mul(av);
            d0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, d0);
            d1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, d1);
            d2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, d2);
            d3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, d3);
            e = b2 + r * W;
            q = s2 + 2 * r;
            x0 = FloatVector.broadcast(R, scales[q]).mul(av);
            x1 = FloatVector.broadcast(R, scales[q + 1]).mul(av);
            e0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, e0);
            e1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, e1);
            e2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, e2);
            e3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, e3);
            e = b3 + r * W;
            q = s3 + 2 * r;
            x0 = FloatVector.broadcast(R, scales[q]).mul(av);
            x1 = FloatVector.broadcast(R, scales[q + 1]).mul(av);
            f0 = ((FloatVector) ByteVector.fromArray(RB, w, e).convertShape(B2F, R, 0)).fma(x0, f0);
            f1 = ((FloatVector) ByteVector.fromArray(RB, w, e + 16).convertShape(B2F, R, 0)).fma(x0, f1);
            f2 = ((FloatVector) ByteVector.fromArray(RB, w, e + 32).convertShape(B2F, R, 0)).fma(x1, f2);
            f3 = ((FloatVector) ByteVector.fromArray(RB, w, e + 48).convertShape(B2F, R, 0)).fma(x1, f3);
        }
        c0.intoArray(out, 0);
        c1.intoArray(out, 16);
        c2.intoArray(out, 32);
        c3.intoArray(out, 48);
        d0.intoArray(out, 64);
        d1.intoArray(out, 80);
        d2.intoArray(out, 96);
        d3.intoArray(out, 112);
        e0.intoArray(out, 128);
        e1.intoArray(out, 144);
        e2.intoArray(out, 160);
        e3.intoArray(out, 176);
        f0.intoArray(out, 192);
        f1.intoArray(out, 208);
        f2.intoArray(out, 224);
        f3.intoArray(out, 240);
    }

    // ---- Whole rows, one token (accumulateRows): an L1 accumulator of the full output width ----

    /**
     * Row kernels use the widest vectors (512-bit on AVX-512): they stream whole rows through an accumulator in L1, so
     * wider loads mean fewer accumulator loads and stores per weight.
     */
    static final VectorSpecies<Float> R = FloatVector.SPECIES_PREFERRED.length() >= 16
            ? FloatVector.SPECIES_512 : FloatVector.SPECIES_256;
    private static final VectorSpecies<Integer> RI = R.length() == 16 ? IntVector.SPECIES_512 : IntVector.SPECIES_256;
    private static final int L = R.length();
    /** int8 codes of one R vector (L bytes). */
    private static final VectorSpecies<Byte> RB = VectorSpecies.of(byte.class, VectorShape.forBitSize(8 * L));
    /**
     * With 16 lanes, one int load spans two bf16 groups of 16, so the widened vectors hold columns of both:
     * {@code [c0..7, c16..23]} and {@code [c8..15, c24..31]}. The bf16 accumulator is kept in that
     * lane order during a call and swapped from and back to column order at its ends ({@link #swapHalves}).
     */
    private static final boolean WIDE = L == 16;
    /** Rows per accumulator pass: each accumulator vector is loaded and stored once per 4 rows. */
    private static final int ROW_PASS = 4;
    /** Rows per pass of a sparse single token on 16 lanes (see {@link #rowSpan}). */
    private static final int SPARSE_PASS = 8;
    /** Most rows per pass of a batch (see {@link #rowSpanBatch}): eight on 16 lanes, four on 8. */
    private static final int BATCH_PASS = WIDE ? 2 * ROW_PASS : ROW_PASS;
    private static final VectorShuffle<Float> LOWS = halves(0);
    private static final VectorShuffle<Float> HIGHS = halves(L / 2);

    /** Per-thread row bases and activations of one pass: no allocation per call. */
    private static final ThreadLocal<RowPass> ROW_PASS_SCRATCH = ThreadLocal.withInitial(RowPass::new);

    private static final class RowPass {
        final int[] base = new int[SPARSE_PASS];
        final float[] x = new float[SPARSE_PASS];
        /** Batch: token t's activation of row j of the pass at {@code xt[t · rows per pass + j]}; grown on demand. */
        float[] xt = new float[0];
        /** One half of a batch pass for the tokens left over after the groups of four (rows, then activations). */
        final int[] half = new int[ROW_PASS];
        float[] xtHalf = new float[0];
    }

    static {
        if (L != 8 && L != 16) {
            throw new AssertionError("row kernels need 8 or 16 float lanes");
        }
    }

    /** Lanes {@code [from, from + L/2)} of two vectors side by side: pairs (X, Y) with X.rearrange(s, Y). */
    private static VectorShuffle<Float> halves(int from) {
        int[] source = new int[L];
        for (int i = 0; i < L / 2; i++) {
            source[i] = from + i;
            source[L / 2 + i] = L + from + i;
        }
        return VectorShuffle.fromArray(R, source, 0);
    }

    @Override
    public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, float[] acc) {
        if (from >= to) {
            return;
        }
        int width = m.numPanels * W;
        boolean laneOrder = WIDE && m.type == WeightType.BF16;
        if (laneOrder) {
            swapHalves(acc, 0, width);
        }
        RowPass pass = ROW_PASS_SCRATCH.get();
        if (m.layout == PanelMatrix.Layout.ROWS) {
            rowSpan(m, 0, m.rowStride(), rows, from, to, a, acc, 0, width, pass);
        } else {
            for (int p = 0; p < m.numPanels; p++) {
                rowSpan(m, m.chunkOffset(p, 0), m.rowStride(), rows, from, to, a, acc, p * W, W, pass);
            }
        }
        if (laneOrder) {
            swapHalves(acc, 0, width);
        }
    }

    /**
     * {@code acc[accOff + c] += Σ_k a[rows[k]] · w[base + rows[k]·stride + c]} for c in [0, columns). Each accumulator
     * pass takes one row from each quarter of the rows (each eighth when sparse), so the thread reads several long
     * streams (on a dense pass each quarter is one contiguous run) rather than short rows side by side; the last
     * part is padded (zero activations on a row the pass reads anyway).
     */
    private static void rowSpan(PanelMatrix m, int base, int stride, int[] rows, int from, int to, float[] a,
                                float[] acc, int accOff, int columns, RowPass pass) {
        // Sparse (the rows are not one run): eight rows per pass, one from each eighth. Each active row is a short
        // run the prefetcher must pick up anew, so more rows in flight at once hide more of that latency (bf16 and
        // int8, Qwen3 expert, 2 threads: 13-22% faster than four rows per pass at sparsity 0.5 and 0.7; sixteen rows
        // measured no better; dense, four long streams stay faster).
        boolean sparse = WIDE && m.type != WeightType.F32 && to - from >= SPARSE_PASS
                && rows[to - 1] - rows[from] + 1 > to - from;
        int perPass = sparse ? SPARSE_PASS : ROW_PASS;
        // Every pass is full: the last part is up to perPass − 1 rows short, and its missing places repeat the pass's
        // first row (just read, so from L1) with a zero activation. Taking the leftover rows one by one instead, on a
        // single stream, took three more kernels and was no faster (one MoE layer, int8 sparse: 0-3% slower).
        int part = (to - from + perPass - 1) / perPass;
        for (int k = from; k < from + part; k++) {
            for (int j = 0; j < perPass; j++) {
                int i = k + j * part;
                boolean real = i < to;
                int r = rows[real ? i : k];
                pass.base[j] = base + r * stride;
                pass.x[j] = real ? a[r] : 0f;
            }
            switch (m.type) {
                case F32 -> f32Rows4(m.f32, pass.base, pass.x, acc, accOff, columns);
                case BF16 -> {
                    if (sparse) {
                        bf16Rows8(m.bf16, pass.base, pass.x, acc, accOff, columns);
                    } else {
                        bf16Rows4(m.bf16, pass.base, pass.x, acc, accOff, columns);
                    }
                }
                case INT8 -> {
                    if (sparse) {
                        i8Rows8(m.i8, m.scales, pass.base, pass.x, acc, accOff, columns);
                    } else {
                        i8Rows4(m.i8, m.scales, pass.base, pass.x, acc, accOff, columns);
                    }
                }
            }
        }
    }

    private static void f32Rows4(float[] w, int[] base, float[] xs, float[] acc, int accOff, int columns) {
        int b0 = base[0], b1 = base[1], b2 = base[2], b3 = base[3];
        FloatVector x0 = FloatVector.broadcast(R, xs[0]), x1 = FloatVector.broadcast(R, xs[1]);
        FloatVector x2 = FloatVector.broadcast(R, xs[2]), x3 = FloatVector.broadcast(R, xs[3]);
        for (int c = 0; c < columns; c += L) {
            FloatVector s = FloatVector.fromArray(R, acc, accOff + c);
            s = FloatVector.fromArray(R, w, b0 + c).fma(x0, s);
            s = FloatVector.fromArray(R, w, b1 + c).fma(x1, s);
            s = FloatVector.fromArray(R, w, b2 + c).fma(x2, s);
            s = FloatVector.fromArray(R, w, b3 + c).fma(x3, s);
            s.intoArray(acc, accOff + c);
        }
    }

    // bf16: one load of L ints is 2·L columns; its low halves go to acc[c..c+L), its high halves to acc[c+L..c+2L).

    private static void bf16Rows4(int[] w, int[] base, float[] xs, float[] acc, int accOff, int columns) {
        int b0 = base[0] >>> 1, b1 = base[1] >>> 1, b2 = base[2] >>> 1, b3 = base[3] >>> 1;
        FloatVector x0 = FloatVector.broadcast(R, xs[0]), x1 = FloatVector.broadcast(R, xs[1]);
        FloatVector x2 = FloatVector.broadcast(R, xs[2]), x3 = FloatVector.broadcast(R, xs[3]);
        for (int c = 0; c < columns; c += 2 * L) {
            int o = accOff + c;
            int i = c >>> 1;
            FloatVector lo = FloatVector.fromArray(R, acc, o), hi = FloatVector.fromArray(R, acc, o + L);
            IntVector v;
            v = IntVector.fromArray(RI, w, b0 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x0, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x0, hi);
            v = IntVector.fromArray(RI, w, b1 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x1, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x1, hi);
            v = IntVector.fromArray(RI, w, b2 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x2, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x2, hi);
            v = IntVector.fromArray(RI, w, b3 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x3, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x3, hi);
            lo.intoArray(acc, o);
            hi.intoArray(acc, o + L);
        }
    }

    /** {@link #bf16Rows4} on eight rows (the sparse pass). */
    private static void bf16Rows8(int[] w, int[] base, float[] xs, float[] acc, int accOff, int columns) {
        int b0 = base[0] >>> 1;
        FloatVector x0 = FloatVector.broadcast(R, xs[0]);
        int b1 = base[1] >>> 1;
        FloatVector x1 = FloatVector.broadcast(R, xs[1]);
        int b2 = base[2] >>> 1;
        FloatVector x2 = FloatVector.broadcast(R, xs[2]);
        int b3 = base[3] >>> 1;
        FloatVector x3 = FloatVector.broadcast(R, xs[3]);
        int b4 = base[4] >>> 1;
        FloatVector x4 = FloatVector.broadcast(R, xs[4]);
        int b5 = base[5] >>> 1;
        FloatVector x5 = FloatVector.broadcast(R, xs[5]);
        int b6 = base[6] >>> 1;
        FloatVector x6 = FloatVector.broadcast(R, xs[6]);
        int b7 = base[7] >>> 1;
        FloatVector x7 = FloatVector.broadcast(R, xs[7]);
        // The loop runs over the int index (two weights per int), so every index in it is the loop variable plus an
        // invariant (b0 + i, accOff + 2·i) and C2 checks the bounds once before the loop; over the column c with
        // i = c >>> 1 it checked each weight load (standalone driver, Qwen3 rows, 2 threads, half the rows: 42 → 48
        // GB/s; all rows 53 → 56).
        for (int i = 0; i < columns >>> 1; i += L) {
            int o = accOff + 2 * i;
            FloatVector lo = FloatVector.fromArray(R, acc, o), hi = FloatVector.fromArray(R, acc, o + L);
            IntVector v;
            v = IntVector.fromArray(RI, w, b0 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x0, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x0, hi);
            v = IntVector.fromArray(RI, w, b1 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x1, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x1, hi);
            v = IntVector.fromArray(RI, w, b2 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x2, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x2, hi);
            v = IntVector.fromArray(RI, w, b3 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x3, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x3, hi);
            v = IntVector.fromArray(RI, w, b4 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x4, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x4, hi);
            v = IntVector.fromArray(RI, w, b5 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x5, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x5, hi);
            v = IntVector.fromArray(RI, w, b6 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x6, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x6, hi);
            v = IntVector.fromArray(RI, w, b7 + i);
            lo = v.lanewise(LSHL, 16).reinterpretAsFloats().fma(x7, lo);
            hi = v.and(0xFFFF0000).reinterpretAsFloats().fma(x7, hi);
            lo.intoArray(acc, o);
            hi.intoArray(acc, o + L);
        }
    }

    /**
     * int8: each row's block scale is broadcast (from memory) and multiplied by the row's broadcast activation once per
     * two vectors of columns (2·L ≤ 32, so both share one block): one vector multiply where a scalar multiply and a
     * register broadcast took two vector-unit operations (dense rows 0.105-0.111 → 0.100 ms, {@link #i8Panels4} 2%
     * faster; the same products, bit for bit); each L-byte load is widened by one B2F cast. The two vectors are written
     * out, with an accumulator each: as an inner loop over a block's vectors they stayed a loop in C2's code, whose
     * overhead was paid per two vectors (Qwen3 gate/up rows from L2, one thread: 27 → 38 GB/s; from DRAM, sparsity 0.5:
     * +9-13%). Columns stay in order (no lane shuffle, unlike bf16).
     */
    private static void i8Rows4(byte[] w, float[] scales, int[] base, float[] xs, float[] acc, int accOff,
                                int columns) {
        int b0 = base[0], b1 = base[1], b2 = base[2], b3 = base[3];
        FloatVector a0 = FloatVector.broadcast(R, xs[0]), a1 = FloatVector.broadcast(R, xs[1]);
        FloatVector a2 = FloatVector.broadcast(R, xs[2]), a3 = FloatVector.broadcast(R, xs[3]);
        for (int c = 0; c < columns; c += 2 * L) {
            FloatVector x0 = FloatVector.broadcast(R, scales[(b0 + c) >>> 5]).mul(a0);
            FloatVector x1 = FloatVector.broadcast(R, scales[(b1 + c) >>> 5]).mul(a1);
            FloatVector x2 = FloatVector.broadcast(R, scales[(b2 + c) >>> 5]).mul(a2);
            FloatVector x3 = FloatVector.broadcast(R, scales[(b3 + c) >>> 5]).mul(a3);
            int o = accOff + c, d = c + L;
            FloatVector s = FloatVector.fromArray(R, acc, o), t = FloatVector.fromArray(R, acc, o + L);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b0 + c).convertShape(B2F, R, 0)).fma(x0, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b0 + d).convertShape(B2F, R, 0)).fma(x0, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b1 + c).convertShape(B2F, R, 0)).fma(x1, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b1 + d).convertShape(B2F, R, 0)).fma(x1, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b2 + c).convertShape(B2F, R, 0)).fma(x2, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b2 + d).convertShape(B2F, R, 0)).fma(x2, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b3 + c).convertShape(B2F, R, 0)).fma(x3, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b3 + d).convertShape(B2F, R, 0)).fma(x3, t);
            s.intoArray(acc, o);
            t.intoArray(acc, o + L);
        }
    }

    /** {@link #i8Rows4} on eight rows (the sparse pass). */
    private static void i8Rows8(byte[] w, float[] scales, int[] base, float[] xs, float[] acc, int accOff,
                                int columns) {
        int b0 = base[0];
        FloatVector a0 = FloatVector.broadcast(R, xs[0]);
        int b1 = base[1];
        FloatVector a1 = FloatVector.broadcast(R, xs[1]);
        int b2 = base[2];
        FloatVector a2 = FloatVector.broadcast(R, xs[2]);
        int b3 = base[3];
        FloatVector a3 = FloatVector.broadcast(R, xs[3]);
        int b4 = base[4];
        FloatVector a4 = FloatVector.broadcast(R, xs[4]);
        int b5 = base[5];
        FloatVector a5 = FloatVector.broadcast(R, xs[5]);
        int b6 = base[6];
        FloatVector a6 = FloatVector.broadcast(R, xs[6]);
        int b7 = base[7];
        FloatVector a7 = FloatVector.broadcast(R, xs[7]);
        for (int c = 0; c < columns; c += 2 * L) {
            FloatVector x0 = FloatVector.broadcast(R, scales[(b0 + c) >>> 5]).mul(a0);
            FloatVector x1 = FloatVector.broadcast(R, scales[(b1 + c) >>> 5]).mul(a1);
            FloatVector x2 = FloatVector.broadcast(R, scales[(b2 + c) >>> 5]).mul(a2);
            FloatVector x3 = FloatVector.broadcast(R, scales[(b3 + c) >>> 5]).mul(a3);
            FloatVector x4 = FloatVector.broadcast(R, scales[(b4 + c) >>> 5]).mul(a4);
            FloatVector x5 = FloatVector.broadcast(R, scales[(b5 + c) >>> 5]).mul(a5);
            FloatVector x6 = FloatVector.broadcast(R, scales[(b6 + c) >>> 5]).mul(a6);
            FloatVector x7 = FloatVector.broadcast(R, scales[(b7 + c) >>> 5]).mul(a7);
            int o = accOff + c, d = c + L;
            FloatVector s = FloatVector.fromArray(R, acc, o), t = FloatVector.fromArray(R, acc, o + L);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b0 + c).convertShape(B2F, R, 0)).fma(x0, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b0 + d).convertShape(B2F, R, 0)).fma(x0, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b1 + c).convertShape(B2F, R, 0)).fma(x1, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b1 + d).convertShape(B2F, R, 0)).fma(x1, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b2 + c).convertShape(B2F, R, 0)).fma(x2, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b2 + d).convertShape(B2F, R, 0)).fma(x2, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b3 + c).convertShape(B2F, R, 0)).fma(x3, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b3 + d).convertShape(B2F, R, 0)).fma(x3, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b4 + c).convertShape(B2F, R, 0)).fma(x4, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b4 + d).convertShape(B2F, R, 0)).fma(x4, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b5 + c).convertShape(B2F, R, 0)).fma(x5, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b5 + d).convertShape(B2F, R, 0)).fma(x5, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b6 + c).convertShape(B2F, R, 0)).fma(x6, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b6 + d).convertShape(B2F, R, 0)).fma(x6, t);
            s = ((FloatVector) ByteVector.fromArray(RB, w, b7 + c).convertShape(B2F, R, 0)).fma(x7, s);
            t = ((FloatVector) ByteVector.fromArray(RB, w, b7 + d).convertShape(B2F, R, 0)).fma(x7, t);
            s.intoArray(acc, o);
            t.intoArray(acc, o + L);
        }
    }

    // ---- Whole rows, a small batch (accumulateRows with numTokens): eight rows per pass on 512-bit, four on 256 (a
    // tail of fewer rows is padded with zero activations on the last real row's weights), run through a four-token
    // kernel per group of four tokens (512-bit), then, four rows at a time, a two-token kernel per pair and the
    // single-token kernel for an odd one, all on the same rows: each weight is loaded from memory once for the whole
    // batch and widened once per group (the later groups find the rows in L1). Measured (Qwen3 expert, 2 threads): a
    // four-token kernel against two pairs, bf16 batch 8 0.63 -> 0.52 ms, int8 batch 4 0.38 -> 0.31 ms, and eight rows
    // against four another 15-20%; a generic kernel with an inner loop over the tokens was 1.5-2x slower than pairs.
    // Whole rows still run a batch slower than PANELS (tokensByFour): the accumulators of the full output width live
    // in L1 and are loaded and stored per pass.

    @Override
    public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, int aStride, int numTokens,
                               float[] acc) {
        if (numTokens == 1) {
            accumulateRows(m, rows, from, to, a, acc);
            return;
        }
        if (from >= to || numTokens <= 0) {
            return;
        }
        int width = m.numPanels * W;
        boolean laneOrder = WIDE && m.type == WeightType.BF16;
        if (laneOrder) {
            for (int t = 0; t < numTokens; t++) {
                swapHalves(acc, t * width, width);
            }
        }
        RowPass pass = ROW_PASS_SCRATCH.get();
        if (pass.xt.length < numTokens * BATCH_PASS) {
            pass.xt = new float[numTokens * BATCH_PASS];
            pass.xtHalf = new float[numTokens * ROW_PASS];
        }
        if (m.layout == PanelMatrix.Layout.ROWS) {
            rowSpanBatch(m, 0, rows, from, to, a, aStride, numTokens, acc, 0, width, width, pass);
        } else {
            for (int p = 0; p < m.numPanels; p++) {
                rowSpanBatch(m, m.chunkOffset(p, 0), rows, from, to, a, aStride, numTokens, acc, p * W, W, width,
                        pass);
            }
        }
        if (laneOrder) {
            for (int t = 0; t < numTokens; t++) {
                swapHalves(acc, t * width, width);
            }
        }
    }

    /**
     * {@code acc[t·tokenStride + accOff + c] += Σ_k a[t·aStride + rows[k]] · w[base + rows[k]·stride + c]} for c in
     * [0, columns), eight rows per pass (four below four tokens or on 256-bit vectors), one from each part of the
     * rows (the tail pass padded with zero activations).
     */
    private static void rowSpanBatch(PanelMatrix m, int base, int[] rows, int from, int to, float[] a, int aStride,
                                     int numTokens, float[] acc, int accOff, int columns, int tokenStride,
                                     RowPass pass) {
        int stride = m.rowStride();
        float[] xt = pass.xt;
        // Eight rows per pass where a group of four tokens uses them; two or three tokens keep four (measured faster)
        int perPass = WIDE && numTokens >= 4 ? 2 * ROW_PASS : ROW_PASS;
        int part = (to - from) / perPass; // as rowSpan: one row from each part per pass, then a padded tail
        int tail = from + perPass * part;
        int passes = part + (tail < to ? 1 : 0);
        for (int i = 0; i < passes; i++) {
            for (int j = 0; j < perPass; j++) {
                int k = i < part ? from + i + j * part : tail + j;
                boolean real = k < to;
                int r = rows[real ? k : to - 1];
                pass.base[j] = base + r * stride;
                for (int t = 0; t < numTokens; t++) {
                    xt[t * perPass + j] = real ? a[t * aStride + r] : 0f;
                }
            }
            int t = 0;
            if (perPass == 2 * ROW_PASS) {
                for (; t + 4 <= numTokens; t += 4) {
                    int o = accOff + t * tokenStride;
                    switch (m.type) {
                        case F32 -> f32Rows8T4(m.f32, pass.base, xt, t * perPass, acc, o, columns, tokenStride);
                        case BF16 -> bf16Rows8T4(m.bf16, pass.base, xt, t * perPass, acc, o, columns, tokenStride);
                        case INT8 -> i8Rows8T4(m.i8, m.scales, pass.base, xt, t * perPass, acc, o, columns,
                                tokenStride);
                    }
                }
            }
            if (perPass == ROW_PASS) {
                rowPassRest(m, pass.base, xt, t * ROW_PASS, numTokens - t, pass.x, acc, accOff + t * tokenStride,
                        columns, tokenStride);
                continue;
            }
            // The tokens left over: four rows of the pass at a time (found in L1 after the groups of four)
            for (int h = 0; h < perPass && t < numTokens; h += ROW_PASS) {
                int rest = numTokens - t;
                System.arraycopy(pass.base, h, pass.half, 0, ROW_PASS);
                for (int u = 0; u < rest; u++) {
                    System.arraycopy(xt, (t + u) * perPass + h, pass.xtHalf, u * ROW_PASS, ROW_PASS);
                }
                rowPassRest(m, pass.half, pass.xtHalf, 0, rest, pass.x, acc, accOff + t * tokenStride, columns,
                        tokenStride);
            }
        }
    }

    /**
     * {@code rest} tokens on four rows ({@code base}, token u's activations at {@code xt[xOff + u · ROW_PASS + j]}):
     * a two-token kernel per pair, then the single-token kernel for an odd one ({@code x}: four floats of scratch).
     */
    private static void rowPassRest(PanelMatrix m, int[] base, float[] xt, int xOff, int rest, float[] x, float[] acc,
                                    int accOff, int columns, int tokenStride) {
        int u = 0;
        for (; u + 2 <= rest; u += 2) {
            int o = accOff + u * tokenStride;
            int xo = xOff + u * ROW_PASS;
            switch (m.type) {
                case F32 -> f32RowsT2(m.f32, base, xt, xo, acc, o, columns, tokenStride);
                case BF16 -> bf16RowsT2(m.bf16, base, xt, xo, acc, o, columns, tokenStride);
                case INT8 -> i8RowsT2(m.i8, m.scales, base, xt, xo, acc, o, columns, tokenStride);
            }
        }
        if (u < rest) {
            System.arraycopy(xt, xOff + u * ROW_PASS, x, 0, ROW_PASS);
            int o = accOff + u * tokenStride;
            switch (m.type) {
                case F32 -> f32Rows4(m.f32, base, x, acc, o, columns);
                case BF16 -> bf16Rows4(m.bf16, base, x, acc, o, columns);
                case INT8 -> i8Rows4(m.i8, m.scales, base, x, acc, o, columns);
            }
        }
    }

    // Batch kernels: tokens t0.. (activations xt[xOff + (t − t0)·ROW_PASS + j], accumulators at accOff + (t − t0) ·
    // tokenStride); per column step, the tokens' accumulator vectors stay in registers over an inner loop over the
    // pass's four rows, each row's weights loaded and widened once for all of them.

    /**
     * Four tokens on the pass's eight rows (512-bit): per column step, the four tokens' accumulators are loaded and
     * stored once for 32 FMAs per vector of columns; each weight load (widened once) feeds the four tokens. The
     * activations are broadcast from {@code xt} as they are used (32 would not fit in registers). int8 scales the
     * widened codes by their block's scale (one multiply per vector, not four). Eight rows rather than four halve the
     * accumulator traffic: bf16 batch 4 0.33 -> 0.26 ms, 8 0.49 -> 0.41 ms (Qwen3 expert, 2 threads); sixteen rows
     * made the kernel too large for C2 (100x slower).
     */
    private static void f32Rows8T4(float[] w, int[] base, float[] xt, int xOff, float[] acc, int accOff, int columns,
                                   int tokenStride) {
        int b0 = base[0], b1 = base[1], b2 = base[2], b3 = base[3];
        int b4 = base[4], b5 = base[5], b6 = base[6], b7 = base[7];
        for (int c = 0; c < columns; c += L) {
            int o0 = accOff + c, o1 = o0 + tokenStride, o2 = o1 + tokenStride, o3 = o2 + tokenStride;
            FloatVector s0 = FloatVector.fromArray(R, acc, o0), s1 = FloatVector.fromArray(R, acc, o1);
            FloatVector s2 = FloatVector.fromArray(R, acc, o2), s3 = FloatVector.fromArray(R, acc, o3);
            FloatVector v;
            v = FloatVector.fromArray(R, w, b0 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 0]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 8]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 16]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 24]), s3);
            v = FloatVector.fromArray(R, w, b1 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 1]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 9]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 17]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 25]), s3);
            v = FloatVector.fromArray(R, w, b2 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 2]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 10]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 18]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 26]), s3);
            v = FloatVector.fromArray(R, w, b3 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 3]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 11]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 19]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 27]), s3);
            v = FloatVector.fromArray(R, w, b4 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 4]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 12]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 20]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 28]), s3);
            v = FloatVector.fromArray(R, w, b5 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 5]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 13]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 21]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 29]), s3);
            v = FloatVector.fromArray(R, w, b6 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 6]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 14]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 22]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 30]), s3);
            v = FloatVector.fromArray(R, w, b7 + c);
            s0 = v.fma(FloatVector.broadcast(R, xt[xOff + 7]), s0);
            s1 = v.fma(FloatVector.broadcast(R, xt[xOff + 15]), s1);
            s2 = v.fma(FloatVector.broadcast(R, xt[xOff + 23]), s2);
            s3 = v.fma(FloatVector.broadcast(R, xt[xOff + 31]), s3);
            s0.intoArray(acc, o0);
            s1.intoArray(acc, o1);
            s2.intoArray(acc, o2);
            s3.intoArray(acc, o3);
        }
    }

    private static void bf16Rows8T4(int[] w, int[] base, float[] xt, int xOff, float[] acc, int accOff, int columns,
                                    int tokenStride) {
        int b0 = base[0] >>> 1, b1 = base[1] >>> 1, b2 = base[2] >>> 1, b3 = base[3] >>> 1;
        int b4 = base[4] >>> 1, b5 = base[5] >>> 1, b6 = base[6] >>> 1, b7 = base[7] >>> 1;
        for (int c = 0; c < columns; c += 2 * L) {
            int i = c >>> 1;
            int o0 = accOff + c, o1 = o0 + tokenStride, o2 = o1 + tokenStride, o3 = o2 + tokenStride;
            FloatVector l0 = FloatVector.fromArray(R, acc, o0), h0 = FloatVector.fromArray(R, acc, o0 + L);
            FloatVector l1 = FloatVector.fromArray(R, acc, o1), h1 = FloatVector.fromArray(R, acc, o1 + L);
            FloatVector l2 = FloatVector.fromArray(R, acc, o2), h2 = FloatVector.fromArray(R, acc, o2 + L);
            FloatVector l3 = FloatVector.fromArray(R, acc, o3), h3 = FloatVector.fromArray(R, acc, o3 + L);
            IntVector v;
            FloatVector l, h, x;
            v = IntVector.fromArray(RI, w, b0 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 0]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 8]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 16]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 24]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b1 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 1]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 9]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 17]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 25]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b2 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 2]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 10]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 18]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 26]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b3 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 3]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 11]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 19]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 27]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b4 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 4]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 12]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 20]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 28]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b5 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 5]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 13]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 21]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 29]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b6 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 6]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 14]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 22]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 30]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            v = IntVector.fromArray(RI, w, b7 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            x = FloatVector.broadcast(R, xt[xOff + 7]);
            l0 = l.fma(x, l0);
            h0 = h.fma(x, h0);
            x = FloatVector.broadcast(R, xt[xOff + 15]);
            l1 = l.fma(x, l1);
            h1 = h.fma(x, h1);
            x = FloatVector.broadcast(R, xt[xOff + 23]);
            l2 = l.fma(x, l2);
            h2 = h.fma(x, h2);
            x = FloatVector.broadcast(R, xt[xOff + 31]);
            l3 = l.fma(x, l3);
            h3 = h.fma(x, h3);
            l0.intoArray(acc, o0);
            h0.intoArray(acc, o0 + L);
            l1.intoArray(acc, o1);
            h1.intoArray(acc, o1 + L);
            l2.intoArray(acc, o2);
            h2.intoArray(acc, o2 + L);
            l3.intoArray(acc, o3);
            h3.intoArray(acc, o3 + L);
        }
    }

    private static void i8Rows8T4(byte[] w, float[] scales, int[] base, float[] xt, int xOff, float[] acc, int accOff,
                                  int columns, int tokenStride) {
        int b0 = base[0], b1 = base[1], b2 = base[2], b3 = base[3];
        int b4 = base[4], b5 = base[5], b6 = base[6], b7 = base[7];
        for (int c = 0; c < columns; c += PanelMatrix.BLOCK) {
            float c0 = scales[(b0 + c) >>> 5], c1 = scales[(b1 + c) >>> 5];
            float c2 = scales[(b2 + c) >>> 5], c3 = scales[(b3 + c) >>> 5];
            float c4 = scales[(b4 + c) >>> 5], c5 = scales[(b5 + c) >>> 5];
            float c6 = scales[(b6 + c) >>> 5], c7 = scales[(b7 + c) >>> 5];
            for (int v = c; v < c + PanelMatrix.BLOCK; v += L) {
                int o0 = accOff + v, o1 = o0 + tokenStride, o2 = o1 + tokenStride, o3 = o2 + tokenStride;
                FloatVector s0 = FloatVector.fromArray(R, acc, o0), s1 = FloatVector.fromArray(R, acc, o1);
                FloatVector s2 = FloatVector.fromArray(R, acc, o2), s3 = FloatVector.fromArray(R, acc, o3);
                FloatVector d;
                d = ((FloatVector) ByteVector.fromArray(RB, w, b0 + v).convertShape(B2F, R, 0)).mul(c0);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 0]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 8]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 16]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 24]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b1 + v).convertShape(B2F, R, 0)).mul(c1);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 1]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 9]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 17]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 25]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b2 + v).convertShape(B2F, R, 0)).mul(c2);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 2]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 10]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 18]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 26]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b3 + v).convertShape(B2F, R, 0)).mul(c3);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 3]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 11]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 19]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 27]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b4 + v).convertShape(B2F, R, 0)).mul(c4);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 4]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 12]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 20]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 28]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b5 + v).convertShape(B2F, R, 0)).mul(c5);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 5]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 13]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 21]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 29]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b6 + v).convertShape(B2F, R, 0)).mul(c6);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 6]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 14]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 22]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 30]), s3);
                d = ((FloatVector) ByteVector.fromArray(RB, w, b7 + v).convertShape(B2F, R, 0)).mul(c7);
                s0 = d.fma(FloatVector.broadcast(R, xt[xOff + 7]), s0);
                s1 = d.fma(FloatVector.broadcast(R, xt[xOff + 15]), s1);
                s2 = d.fma(FloatVector.broadcast(R, xt[xOff + 23]), s2);
                s3 = d.fma(FloatVector.broadcast(R, xt[xOff + 31]), s3);
                s0.intoArray(acc, o0);
                s1.intoArray(acc, o1);
                s2.intoArray(acc, o2);
                s3.intoArray(acc, o3);
            }
        }
    }

    private static void f32RowsT2(float[] w, int[] base, float[] xt, int xOff, float[] acc, int accOff, int columns,
                                  int tokenStride) {
        int b0 = base[0], b1 = base[1], b2 = base[2], b3 = base[3];
        FloatVector x0 = FloatVector.broadcast(R, xt[xOff]), x1 = FloatVector.broadcast(R, xt[xOff + 1]);
        FloatVector x2 = FloatVector.broadcast(R, xt[xOff + 2]), x3 = FloatVector.broadcast(R, xt[xOff + 3]);
        FloatVector y0 = FloatVector.broadcast(R, xt[xOff + 4]), y1 = FloatVector.broadcast(R, xt[xOff + 5]);
        FloatVector y2 = FloatVector.broadcast(R, xt[xOff + 6]), y3 = FloatVector.broadcast(R, xt[xOff + 7]);
        for (int c = 0; c < columns; c += L) {
            int o = accOff + c, p = o + tokenStride;
            FloatVector s = FloatVector.fromArray(R, acc, o), t = FloatVector.fromArray(R, acc, p);
            FloatVector v;
            v = FloatVector.fromArray(R, w, b0 + c);
            s = v.fma(x0, s);
            t = v.fma(y0, t);
            v = FloatVector.fromArray(R, w, b1 + c);
            s = v.fma(x1, s);
            t = v.fma(y1, t);
            v = FloatVector.fromArray(R, w, b2 + c);
            s = v.fma(x2, s);
            t = v.fma(y2, t);
            v = FloatVector.fromArray(R, w, b3 + c);
            s = v.fma(x3, s);
            t = v.fma(y3, t);
            s.intoArray(acc, o);
            t.intoArray(acc, p);
        }
    }

    private static void bf16RowsT2(int[] w, int[] base, float[] xt, int xOff, float[] acc, int accOff, int columns,
                                   int tokenStride) {
        int b0 = base[0] >>> 1, b1 = base[1] >>> 1, b2 = base[2] >>> 1, b3 = base[3] >>> 1;
        FloatVector x0 = FloatVector.broadcast(R, xt[xOff]), x1 = FloatVector.broadcast(R, xt[xOff + 1]);
        FloatVector x2 = FloatVector.broadcast(R, xt[xOff + 2]), x3 = FloatVector.broadcast(R, xt[xOff + 3]);
        FloatVector y0 = FloatVector.broadcast(R, xt[xOff + 4]), y1 = FloatVector.broadcast(R, xt[xOff + 5]);
        FloatVector y2 = FloatVector.broadcast(R, xt[xOff + 6]), y3 = FloatVector.broadcast(R, xt[xOff + 7]);
        for (int c = 0; c < columns; c += 2 * L) {
            int i = c >>> 1;
            int o = accOff + c, p = o + tokenStride;
            FloatVector l0 = FloatVector.fromArray(R, acc, o), h0 = FloatVector.fromArray(R, acc, o + L);
            FloatVector l1 = FloatVector.fromArray(R, acc, p), h1 = FloatVector.fromArray(R, acc, p + L);
            IntVector v;
            FloatVector l, h;
            v = IntVector.fromArray(RI, w, b0 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            l0 = l.fma(x0, l0);
            h0 = h.fma(x0, h0);
            l1 = l.fma(y0, l1);
            h1 = h.fma(y0, h1);
            v = IntVector.fromArray(RI, w, b1 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            l0 = l.fma(x1, l0);
            h0 = h.fma(x1, h0);
            l1 = l.fma(y1, l1);
            h1 = h.fma(y1, h1);
            v = IntVector.fromArray(RI, w, b2 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            l0 = l.fma(x2, l0);
            h0 = h.fma(x2, h0);
            l1 = l.fma(y2, l1);
            h1 = h.fma(y2, h1);
            v = IntVector.fromArray(RI, w, b3 + i);
            l = v.lanewise(LSHL, 16).reinterpretAsFloats();
            h = v.and(0xFFFF0000).reinterpretAsFloats();
            l0 = l.fma(x3, l0);
            h0 = h.fma(x3, h0);
            l1 = l.fma(y3, l1);
            h1 = h.fma(y3, h1);
            l0.intoArray(acc, o);
            h0.intoArray(acc, o + L);
            l1.intoArray(acc, p);
            h1.intoArray(acc, p + L);
        }
    }

    /**
     * int8, two tokens: per block of 32 columns and row, both tokens' activations times the block scale are broadcast
     * once; each widened load feeds both tokens.
     */
    private static void i8RowsT2(byte[] w, float[] scales, int[] base, float[] xt, int xOff, float[] acc, int accOff,
                                 int columns, int tokenStride) {
        int b0 = base[0], b1 = base[1], b2 = base[2], b3 = base[3];
        for (int c = 0; c < columns; c += PanelMatrix.BLOCK) {
            float s0 = scales[(b0 + c) >>> 5], s1 = scales[(b1 + c) >>> 5];
            float s2 = scales[(b2 + c) >>> 5], s3 = scales[(b3 + c) >>> 5];
            FloatVector x0 = FloatVector.broadcast(R, xt[xOff] * s0), y0 = FloatVector.broadcast(R, xt[xOff + 4] * s0);
            FloatVector x1 = FloatVector.broadcast(R, xt[xOff + 1] * s1);
            FloatVector y1 = FloatVector.broadcast(R, xt[xOff + 5] * s1);
            FloatVector x2 = FloatVector.broadcast(R, xt[xOff + 2] * s2);
            FloatVector y2 = FloatVector.broadcast(R, xt[xOff + 6] * s2);
            FloatVector x3 = FloatVector.broadcast(R, xt[xOff + 3] * s3);
            FloatVector y3 = FloatVector.broadcast(R, xt[xOff + 7] * s3);
            for (int v = c; v < c + PanelMatrix.BLOCK; v += L) {
                int o = accOff + v, p = o + tokenStride;
                FloatVector s = FloatVector.fromArray(R, acc, o), t = FloatVector.fromArray(R, acc, p);
                FloatVector u;
                u = (FloatVector) ByteVector.fromArray(RB, w, b0 + v).convertShape(B2F, R, 0);
                s = u.fma(x0, s);
                t = u.fma(y0, t);
                u = (FloatVector) ByteVector.fromArray(RB, w, b1 + v).convertShape(B2F, R, 0);
                s = u.fma(x1, s);
                t = u.fma(y1, t);
                u = (FloatVector) ByteVector.fromArray(RB, w, b2 + v).convertShape(B2F, R, 0);
                s = u.fma(x2, s);
                t = u.fma(y2, t);
                u = (FloatVector) ByteVector.fromArray(RB, w, b3 + v).convertShape(B2F, R, 0);
                s = u.fma(x3, s);
                t = u.fma(y3, t);
                s.intoArray(acc, o);
                t.intoArray(acc, p);
            }
        }
    }

    /**
     * Column order ↔ the bf16 row kernels' lane order (an involution; nothing to do with 8 lanes): swaps the upper half
     * of acc[o..o+L) with the lower half of acc[o+L..o+2L) for every 2·L columns.
     */
    private static void swapHalves(float[] acc, int off, int width) {
        for (int o = off; o < off + width; o += 2 * L) {
            FloatVector x = FloatVector.fromArray(R, acc, o);
            FloatVector y = FloatVector.fromArray(R, acc, o + L);
            x.rearrange(LOWS, y).intoArray(acc, o);
            x.rearrange(HIGHS, y).intoArray(acc, o + L);
        }
    }
}

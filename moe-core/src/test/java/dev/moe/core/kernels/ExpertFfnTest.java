package dev.moe.core.kernels;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.kernels.PanelMatrix.Layout;
import dev.moe.core.sparsity.SparsityThresholds;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The whole expert FFN on the pool against the SwiGLU reference, dense and sparse, on odd shapes and batches. */
class ExpertFfnTest {
    private static final KernelPool POOL = new KernelPool(2);

    @AfterAll
    static void closePool() {
        POOL.close();
    }

    private record Weights(int hidden, int inter, float[] gate, float[] up, float[] down) {
        static Weights random(int hidden, int inter, long seed) {
            SplittableRandom r = new SplittableRandom(seed);
            float[] g = new float[hidden * inter];
            float[] u = new float[hidden * inter];
            float[] d = new float[hidden * inter];
            for (int i = 0; i < g.length; i++) {
                g[i] = (float) (r.nextGaussian() / Math.sqrt(hidden));
                u[i] = (float) (r.nextGaussian() / Math.sqrt(hidden));
                d[i] = (float) (r.nextGaussian() / Math.sqrt(inter));
            }
            return new Weights(hidden, inter, g, u, d);
        }

        /** The expert in double with the given input pruning: the oracle of the sparse path. */
        double[] reference(float[] x, int t, float tx, float mx, float th, float mh) {
            double[] h = new double[inter];
            for (int i = 0; i < inter; i++) {
                double gs = 0;
                double us = 0;
                for (int j = 0; j < hidden; j++) {
                    double v = x[t * hidden + j];
                    double kept = Math.abs(v - mx) <= tx ? mx : v; // pruned: treated as the mode
                    gs += gate[i * hidden + j] * kept;
                    us += up[i * hidden + j] * kept;
                }
                double hv = gs / (1 + Math.exp(-gs)) * us;
                h[i] = Math.abs(hv - mh) <= th ? mh : hv;
            }
            double[] y = new double[hidden];
            for (int o = 0; o < hidden; o++) {
                double s = 0;
                for (int i = 0; i < inter; i++) {
                    s += down[o * inter + i] * h[i];
                }
                y[o] = s;
            }
            return y;
        }
    }

    @ParameterizedTest(name = "{0} h={1} i={2} tokens={3} {4}")
    @CsvSource({"F32,37,19,1,PANELS", "F32,64,96,5,PANELS", "BF16,130,70,2,PANELS", "BF16,64,32,17,PANELS",
            "INT8,100,200,3,PANELS", "INT8,64,64,64,PANELS", "F32,200,33,64,PANELS",
            "F32,37,19,1,ROWS", "F32,64,96,5,ROWS", "BF16,130,70,2,ROWS", "BF16,64,32,17,ROWS", "BF16,70,50,1,ROWS",
            "INT8,100,200,3,ROWS", "INT8,64,64,64,ROWS", "INT8,33,65,1,ROWS", "F32,200,33,64,ROWS",
            "F32,37,19,2,ROWS", "BF16,130,70,3,ROWS", "INT8,100,200,4,ROWS", "BF16,70,50,6,ROWS", "INT8,33,65,8,ROWS",
            "F32,37,19,2,PANELS", "BF16,130,70,3,PANELS", "INT8,100,200,4,PANELS", "BF16,70,50,6,PANELS",
            "INT8,33,65,8,PANELS", "BF16,300,200,1,PANELS", "INT8,300,200,1,PANELS", "INT8,256,128,1,PANELS",
            "BF16,256,128,1,PANELS"})
    void densePathMatchesTheSwigluExpert(WeightType type, int hidden, int inter, int tokens, Layout layout) {
        Weights w = Weights.random(hidden, inter, hidden * 7L + inter);
        PackedExpert packed = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), type, layout);
        float[] x = input(tokens, hidden, 3);
        float[] y = new float[tokens * hidden];
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 0.75);
        ExpertFfn.Stats[] stats = ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens, null, y)));
        assertThat(stats[0].gateUp().sparse()).isFalse();
        double tol = switch (type) {
            case F32 -> 1e-4;
            case BF16 -> 2e-2;  // weights rounded to 8 significant bits
            case INT8 -> 3e-2;  // 127 levels per block of 32
        };
        for (int t = 0; t < tokens; t++) {
            double[] ref = w.reference(x, t, -1f, 0f, -1f, 0f);
            double max = 0;
            for (double v : ref) {
                max = Math.max(max, Math.abs(v));
            }
            for (int o = 0; o < hidden; o++) {
                assertThat((double) y[t * hidden + o]).as("token %d out %d", t, o)
                        .isCloseTo(ref[o], org.assertj.core.data.Offset.offset(tol * Math.max(1e-3, max)));
            }
        }
    }

    @ParameterizedTest(name = "{2} tokens={0} {1}")
    @CsvSource({"4,PANELS,BF16", "1,PANELS,BF16", "4,ROWS,BF16", "1,ROWS,BF16", "4,PANELS,INT8", "1,ROWS,INT8",
            "3,ROWS,INT8", "4,PANELS,F32", "1,ROWS,F32", "1,PANELS,F32"})
    void thresholdZeroEqualsTheDensePathToFloatRounding(int tokens, Layout layout, WeightType type) {
        Weights w = Weights.random(96, 80, 11);
        PackedExpert packed = PackedExpert.pack(96, 80, w.gate(), w.up(), w.down(), type, layout);
        float[] x = input(tokens, 96, 5);
        float[] dense = new float[tokens * 96];
        float[] sparse = new float[tokens * 96];
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 1.0); // always take the sparse path
        ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens, null, dense)));
        ExpertFfn.Stats[] stats = ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens,
                new SparsityThresholds(0f, 0f, 0f, 0f), sparse)));
        assertThat(stats[0].gateUp().sparse()).isTrue();
        assertThat(stats[0].gateUp().prunedFraction()).isZero();
        for (int i = 0; i < dense.length; i++) {
            assertThat(sparse[i]).isCloseTo(dense[i],
                    org.assertj.core.data.Offset.offset(2e-6f * (1 + Math.abs(dense[i]))));
        }
    }

    @ParameterizedTest(name = "{0} mode centering {1} tokens={2} {3}")
    @CsvSource({"F32,false,3,PANELS", "F32,true,3,PANELS", "INT8,false,3,PANELS", "BF16,true,3,PANELS",
            "BF16,false,1,PANELS", "F32,false,1,ROWS", "F32,true,1,ROWS", "INT8,false,1,ROWS", "INT8,true,1,ROWS",
            "BF16,false,1,ROWS", "BF16,true,1,ROWS", "BF16,true,3,ROWS", "INT8,false,3,ROWS", "F32,false,5,PANELS",
            "F32,true,17,PANELS", "F32,true,9,ROWS"})
    void sparsePathComputesThePrunedExpert(WeightType type, boolean centering, int tokens, Layout layout) {
        int hidden = 72;
        int inter = 45;
        Weights w = Weights.random(hidden, inter, 21);
        PackedExpert packed = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), type, layout);
        float[] x = input(tokens, hidden, 8);
        float mx = centering ? 0.2f : 0f;
        float mh = centering ? 0.01f : 0f;
        SparsityThresholds thresholds = new SparsityThresholds(0.6f, mx, 0.05f, mh);
        float[] y = new float[tokens * hidden];
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 1.0);
        ExpertFfn.Stats[] stats = ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens, thresholds, y)));
        assertThat(stats[0].gateUp().sparse()).isTrue();
        assertThat(stats[0].gateUp().prunedFraction()).isBetween(0.3, 0.7);
        assertThat(stats[0].down().prunedFraction()).isGreaterThan(0.05);
        double tol = type == WeightType.F32 ? 1e-4 : 3e-2;
        for (int t = 0; t < tokens; t++) {
            double[] ref = w.reference(x, t, 0.6f, mx, 0.05f, mh);
            double max = 0;
            for (double v : ref) {
                max = Math.max(max, Math.abs(v));
            }
            for (int o = 0; o < hidden; o++) {
                assertThat((double) y[t * hidden + o]).isCloseTo(ref[o],
                        org.assertj.core.data.Offset.offset(tol * Math.max(1e-3, max)));
            }
        }
    }

    /**
     * Whole rows (ROWS, 1..16 tokens, sparse; 17 take the panel loop) against the panel path on the same stored
     * weights, for pools that split the active rows unevenly or not at all, and for inputs where every channel is
     * pruned.
     */
    @ParameterizedTest(name = "{0} threads={1} threshold={2} tokens={3}")
    @CsvSource({"F32,1,0.5,1", "BF16,1,0.5,1", "INT8,1,0.5,1", "F32,3,0.5,1", "BF16,3,0.5,1", "INT8,3,0.5,1",
            "BF16,2,100,1", "INT8,3,100,1", "BF16,5,1.5,1",
            "F32,1,0.5,2", "BF16,3,0.5,2", "INT8,2,0.5,3", "F32,3,0.5,4", "BF16,2,0.5,4", "INT8,3,0.5,4",
            "BF16,2,100,3", "INT8,3,100,2", "BF16,5,1.5,4", "F32,2,0.5,5", "BF16,3,0.5,6", "INT8,2,0.5,7",
            "BF16,2,0.5,8", "INT8,3,0,8", "F32,3,0.5,9", "BF16,2,0.5,13", "INT8,2,0.5,16", "BF16,3,0.5,17"})
    void wholeRowsMatchThePanelPath(WeightType type, int threads, float threshold, int tokens) {
        int hidden = 130;
        int inter = 77;
        Weights w = Weights.random(hidden, inter, 31);
        PackedExpert panels = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), type, Layout.PANELS);
        PackedExpert rows = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), type, Layout.ROWS);
        float[] x = input(tokens, hidden, 4);
        SparsityThresholds thresholds = new SparsityThresholds(threshold, 0.1f, threshold / 20, 0.01f);
        float[] expected = new float[tokens * hidden];
        float[] actual = new float[tokens * hidden];
        try (KernelPool pool = new KernelPool(threads)) {
            ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, pool, 1.0);
            ffn.run(List.of(new ExpertFfn.Work(panels, x, tokens, thresholds, expected)));
            for (int repeat = 0; repeat < 2; repeat++) { // the accumulators are reused: nothing may leak between calls
                ExpertFfn.Stats[] stats = ffn.run(List.of(new ExpertFfn.Work(rows, x, tokens, thresholds, actual)));
                assertThat(stats[0].gateUp().sparse()).isTrue();
            }
        }
        double max = 0;
        for (float v : expected) {
            max = Math.max(max, Math.abs(v));
        }
        for (int o = 0; o < tokens * hidden; o++) {
            assertThat(actual[o]).as("token %d out %d", o / hidden, o % hidden).isCloseTo(expected[o],
                    org.assertj.core.data.Offset.offset((float) (1e-5 * Math.max(1e-3, max))));
        }
    }

    @Test
    void denseUnionFallsBackToTheExactPath() {
        Weights w = Weights.random(64, 64, 2);
        PackedExpert packed = PackedExpert.pack(64, 64, w.gate(), w.up(), w.down(), WeightType.F32);
        float[] x = input(32, 64, 1); // 32 tokens: the union of |x| > 0.3 covers nearly every channel
        float[] y = new float[32 * 64];
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 0.75);
        ExpertFfn.Stats[] stats = ffn.run(List.of(new ExpertFfn.Work(packed, x, 32,
                new SparsityThresholds(0.3f, 0f, 0.001f, 0f), y)));
        assertThat(stats[0].gateUp().sparse()).isFalse();
        assertThat(stats[0].gateUp().prunedFraction()).isZero();
        double[] ref = w.reference(x, 31, -1f, 0f, -1f, 0f);
        for (int o = 0; o < 64; o++) {
            assertThat((double) y[31 * 64 + o]).isCloseTo(ref[o], org.assertj.core.data.Offset.offset(1e-4));
        }
    }

    /**
     * Pruning stops early once the union is over the crossover (checked after 1, 2, 4, ... tokens), so the decision
     * must still see every token: token t keeps exactly channels [8t, 8t + 8), so the union is 1/8, 2/8, ... of them.
     */
    @ParameterizedTest(name = "crossover {0}: sparse {1}")
    @CsvSource({"0.7,true", "0.55,false", "0.3,false", "0.2,false"})
    void unionDensityDecidesOnTheWholeBatch(double crossover, boolean sparse) {
        int hidden = 64;
        int inter = 40;
        int tokens = 5;
        Weights w = Weights.random(hidden, inter, 12);
        PackedExpert packed = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), WeightType.F32);
        float[] x = new float[tokens * hidden];
        for (int t = 0; t < tokens; t++) {
            for (int c = 8 * t; c < 8 * t + 8; c++) {
                x[t * hidden + c] = 1f + 0.1f * c;
            }
        }
        float[] y = new float[tokens * hidden];
        float[] dense = new float[tokens * hidden];
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, crossover);
        ExpertFfn.Stats[] stats = ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens,
                new SparsityThresholds(0.5f, 0f, -1f, 0f), y)));
        ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens, null, dense)));
        assertThat(stats[0].gateUp().sparse()).isEqualTo(sparse);
        assertThat(stats[0].gateUp().unionDensity()).isEqualTo(sparse ? 40.0 / 64 : 1.0);
        assertThat(stats[0].gateUp().prunedFraction()).isEqualTo(sparse ? 1 - 8.0 / 64 : 0.0);
        for (int o = 0; o < y.length; o++) { // the pruned inputs were zero: same result either way
            assertThat(y[o]).as("out %d", o).isCloseTo(dense[o], org.assertj.core.data.Offset.offset(1e-5f));
        }
    }

    /**
     * A thread that served a big sparse batch keeps at most the retention budget of scratch afterwards, and the next
     * call (whose buffers may have been dropped) is still right.
     */
    @Test
    void aBigBatchLeavesBoundedScratchBehind() {
        int hidden = 256;
        int inter = 64;
        Weights w = Weights.random(hidden, inter, 23);
        PackedExpert packed = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), WeightType.F32);
        SparsityThresholds thresholds = new SparsityThresholds(0.6f, 0f, 0.05f, 0f);
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 1.0);
        int tokens = 12_000; // 12000 × 256 pruned x values per expert: 3 M floats, two experts over the budget
        float[] big = input(tokens, hidden, 32);
        ffn.run(List.of(new ExpertFfn.Work(packed, big, tokens, thresholds, new float[tokens * hidden]),
                new ExpertFfn.Work(packed, big, tokens, thresholds, new float[tokens * hidden])));

        assertThat(ExpertFfn.retainedScratchFloats()).isLessThanOrEqualTo(4L << 20)
                .isGreaterThan(0); // the first expert's buffers stay: the budget is used, not emptied

        float[] x = input(3, hidden, 33);
        float[] y = new float[3 * hidden];
        ffn.run(List.of(new ExpertFfn.Work(packed, x, 3, thresholds, y),
                new ExpertFfn.Work(packed, x, 3, thresholds, new float[3 * hidden])));
        assertPrunedExpert(w, x, 3, y);
    }

    /** The pruning buffers are reused by the calling thread: a small batch after a big one must not see its leftovers. */
    @Test
    void prunedBuffersAreReusedWithoutLeftovers() {
        int hidden = 72;
        int inter = 45;
        Weights w = Weights.random(hidden, inter, 22);
        PackedExpert packed = PackedExpert.pack(hidden, inter, w.gate(), w.up(), w.down(), WeightType.F32);
        SparsityThresholds thresholds = new SparsityThresholds(0.6f, 0f, 0.05f, 0f);
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 1.0);
        float[] big = input(7, hidden, 30);
        ffn.run(List.of(new ExpertFfn.Work(packed, big, 7, thresholds, new float[7 * hidden]),
                new ExpertFfn.Work(packed, big, 7, thresholds, new float[7 * hidden])));
        float[] x = input(2, hidden, 31);
        float[] y = new float[2 * hidden];
        ffn.run(List.of(new ExpertFfn.Work(packed, x, 2, thresholds, y)));
        assertPrunedExpert(w, x, 2, y);
    }

    /** y = the float64 reference of the expert with x pruned below 0.6 and h below 0.05 (no centering), token by token. */
    private static void assertPrunedExpert(Weights w, float[] x, int tokens, float[] y) {
        int hidden = y.length / tokens;
        for (int t = 0; t < tokens; t++) {
            double[] ref = w.reference(x, t, 0.6f, 0f, 0.05f, 0f);
            for (int o = 0; o < hidden; o++) {
                assertThat((double) y[t * hidden + o]).as("token %d out %d", t, o)
                        .isCloseTo(ref[o], org.assertj.core.data.Offset.offset(1e-4));
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"PANELS", "ROWS"})
    void manyExpertsInOneCallMatchOneAtATime(Layout layout) {
        List<ExpertFfn.Work> together = new ArrayList<>();
        List<float[]> alone = new ArrayList<>();
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 0.75);
        for (int e = 0; e < 5; e++) {
            Weights w = Weights.random(48, 40 + e, 100 + e);
            PackedExpert packed = PackedExpert.pack(48, 40 + e, w.gate(), w.up(), w.down(), WeightType.BF16, layout);
            // single-token experts, a 3-token one (ROWS: whole rows too) and a 9-token one (panels on either layout)
            int tokens = e < 3 ? 1 : e == 3 ? 3 : 9;
            float[] x = input(tokens, 48, 30 + e);
            float[] y = new float[tokens * 48];
            SparsityThresholds thresholds = e == 2 ? null : new SparsityThresholds(0.5f, 0f, 0.02f, 0f);
            together.add(new ExpertFfn.Work(packed, x, tokens, thresholds, y));
            float[] single = new float[tokens * 48];
            ffn.run(List.of(new ExpertFfn.Work(packed, x, tokens, together.get(e).thresholds(), single)));
            alone.add(single);
        }
        ffn.run(together);
        for (int e = 0; e < 5; e++) {
            assertThat(together.get(e).y()).containsExactly(alone.get(e));
        }
    }

    /** The real kernels, noting which threads ran them; the caller's first unit waits until another thread ran one. */
    private static final class ThreadRecordingKernels implements PanelKernels {
        final java.util.Set<Thread> threads = java.util.concurrent.ConcurrentHashMap.newKeySet();
        final java.util.concurrent.CountDownLatch otherThread = new java.util.concurrent.CountDownLatch(1);
        final Thread caller = Thread.currentThread();
        volatile boolean waited;

        private void record() {
            threads.add(Thread.currentThread());
            if (Thread.currentThread() != caller) {
                otherThread.countDown();
            } else if (!waited) {
                waited = true;
                try {
                    otherThread.await(10, java.util.concurrent.TimeUnit.SECONDS);
                } catch (InterruptedException e) {
                    Thread.currentThread().interrupt();
                }
            }
        }

        @Override
        public void accumulate(PanelMatrix m, int panel, int[] rows, int numRows, float[] a, int aStride,
                               int numTokens, float[] out) {
            record();
            VectorPanelKernels.INSTANCE.accumulate(m, panel, rows, numRows, a, aStride, numTokens, out);
        }

        @Override
        public void accumulatePanels(PanelMatrix m, int first, int step, int count, int[] rows, int numRows,
                                     float[] a, float[] out) {
            record();
            VectorPanelKernels.INSTANCE.accumulatePanels(m, first, step, count, rows, numRows, a, out);
        }

        @Override
        public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, float[] acc) {
            record();
            VectorPanelKernels.INSTANCE.accumulateRows(m, rows, from, to, a, acc);
        }

        @Override
        public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, int aStride,
                                   int numTokens, float[] acc) {
            record();
            VectorPanelKernels.INSTANCE.accumulateRows(m, rows, from, to, a, aStride, numTokens, acc);
        }
    }

    /** One expert, one token: its projections are split over the pool, so both threads compute, with the same result. */
    @ParameterizedTest(name = "{0}")
    @CsvSource({"PANELS", "ROWS"})
    void aSingleExpertCallRunsOnEveryThreadOfThePool(Layout layout) {
        Weights w = Weights.random(512, 384, 5);
        PackedExpert packed = PackedExpert.pack(512, 384, w.gate(), w.up(), w.down(), WeightType.BF16, layout);
        float[] x = input(1, 512, 8);
        float[] alone = new float[512];
        float[] split = new float[512];
        try (KernelPool one = new KernelPool(1)) {
            new ExpertFfn(VectorPanelKernels.INSTANCE, one, 0.75).run(List.of(new ExpertFfn.Work(packed, x, 1, null,
                    alone)));
        }
        ThreadRecordingKernels kernels = new ThreadRecordingKernels();
        new ExpertFfn(kernels, POOL, 0.75).run(List.of(new ExpertFfn.Work(packed, x, 1, null, split)));
        assertThat(kernels.threads).hasSize(2);
        for (int o = 0; o < 512; o++) {
            assertThat(split[o]).as("out %d", o).isCloseTo(alone[o], org.assertj.core.data.Offset.offset(
                    1e-5f * (1 + Math.abs(alone[o]))));
        }
    }

    private static float[] input(int tokens, int hidden, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] x = new float[tokens * hidden];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) r.nextGaussian();
        }
        return x;
    }
}

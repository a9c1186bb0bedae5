package dev.moe.core.kernels;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.kernels.PanelMatrix.Layout;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/** Every dtype and layout of the vector panel kernels against the scalar oracle over the same stored weights. */
class PanelKernelsTest {

    static Stream<Arguments> cases() {
        Stream.Builder<Arguments> b = Stream.builder();
        for (Layout layout : Layout.values()) {
            for (WeightType type : WeightType.values()) {
                for (int inputs : new int[] {1, 7, 33, 130}) {
                    for (int outputs : new int[] {1, 63, 64, 65, 200}) {
                        for (int tokens : new int[] {1, 2, 3, 6, 8, 17, 64}) {
                            for (String mask : new String[] {"all", "none", "half"}) {
                                if ((inputs * 7 + outputs * 3 + tokens) % 4 == 0 || tokens == 1
                                        || mask.equals("none")) {
                                    b.add(Arguments.of(layout, type, inputs, outputs, tokens, mask));
                                }
                            }
                        }
                    }
                }
            }
        }
        return b.build();
    }

    private static PanelMatrix matrix(Layout layout, WeightType type, int inputs, int outputs,
                                      SplittableRandom random) {
        float[] w = new float[outputs * inputs];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) random.nextGaussian();
        }
        int panels = (outputs + 63) / 64;
        return PanelMatrix.pack(type, layout, w, inputs, outputs, panels,
                (p, c) -> p * 64 + c < outputs ? p * 64 + c : -1);
    }

    private static int[] activeRows(int inputs, String mask, SplittableRandom random) {
        int[] rows = new int[inputs];
        int numRows = 0;
        for (int r = 0; r < inputs; r++) {
            if (mask.equals("all") || (mask.equals("half") && random.nextBoolean())) {
                rows[numRows++] = r;
            }
        }
        return java.util.Arrays.copyOf(rows, numRows);
    }

    @ParameterizedTest(name = "{0} {1} in={2} out={3} tokens={4} rows={5}")
    @MethodSource("cases")
    void vectorMatchesScalarOracle(Layout layout, WeightType type, int inputs, int outputs, int tokens, String mask) {
        SplittableRandom random = new SplittableRandom(inputs * 1000L + outputs * 10L + tokens);
        PanelMatrix m = matrix(layout, type, inputs, outputs, random);
        int panels = m.numPanels();
        int stride = inputs + 3; // activations with a stride wider than the rows
        float[] a = new float[tokens * stride];
        for (int i = 0; i < a.length; i++) {
            a[i] = random.nextInt(5) == 0 ? 0f : (float) random.nextGaussian();
        }
        int[] rows = activeRows(inputs, mask, random);
        int numRows = rows.length;
        for (int p = 0; p < panels; p++) {
            float[] expected = new float[tokens * 64];
            float[] actual = new float[tokens * 64];
            java.util.Arrays.fill(actual, Float.NaN); // every element must be written
            ScalarPanelKernels.INSTANCE.accumulate(m, p, rows, numRows, a, stride, tokens, expected);
            VectorPanelKernels.INSTANCE.accumulate(m, p, rows, numRows, a, stride, tokens, actual);
            for (int i = 0; i < expected.length; i++) {
                float scale = 0f;
                int t = i / 64;
                for (int k = 0; k < numRows; k++) {
                    scale += Math.abs(a[t * stride + rows[k]] * m.weight(p, rows[k], i % 64));
                }
                assertThat(actual[i]).as("panel %d element %d", p, i)
                        .isCloseTo(expected[i], org.assertj.core.data.Offset.offset(1e-5f * (scale + 1e-6f)));
            }
            if (numRows == 0) {
                assertThat(actual).containsOnly(0f);
            }
        }
    }

    static Stream<Arguments> panelGroupCases() {
        return maskGrid(new int[] {1, 7, 130}, new int[] {64, 65, 200, 256, 517});
    }

    /** Every layout, weight type and row mask on the given sizes: (layout, type, inputs, outputs, mask). */
    private static Stream<Arguments> maskGrid(int[] inputSizes, int[] outputSizes) {
        Stream.Builder<Arguments> b = Stream.builder();
        for (Layout layout : Layout.values()) {
            for (WeightType type : WeightType.values()) {
                for (int inputs : inputSizes) {
                    for (int outputs : outputSizes) {
                        for (String mask : new String[] {"all", "none", "half"}) {
                            b.add(Arguments.of(layout, type, inputs, outputs, mask));
                        }
                    }
                }
            }
        }
        return b.build();
    }

    /**
     * The decode group kernel (four panel streams side by side, or one panel after another for a short group) on
     * every grouping of every panel: {@code first + j·step} for every first panel, step and count that fit.
     */
    @ParameterizedTest(name = "{0} {1} in={2} out={3} rows={4}")
    @MethodSource("panelGroupCases")
    void panelGroupsMatchScalarOracle(Layout layout, WeightType type, int inputs, int outputs, String mask) {
        SplittableRandom random = new SplittableRandom(inputs * 1000L + outputs);
        PanelMatrix m = matrix(layout, type, inputs, outputs, random);
        int panels = m.numPanels();
        float[] a = new float[inputs];
        for (int i = 0; i < a.length; i++) {
            a[i] = random.nextInt(5) == 0 ? 0f : (float) random.nextGaussian();
        }
        int[] rows = activeRows(inputs, mask, random);
        int groups = 0;
        for (int step = 1; step <= panels; step++) {
            for (int first = 0; first < panels; first++) {
                int count = Math.min(PanelKernels.PANEL_GROUP, (panels - 1 - first) / step + 1);
                float[] expected = new float[count * 64];
                float[] actual = new float[count * 64];
                java.util.Arrays.fill(actual, Float.NaN); // every element must be written
                ScalarPanelKernels.INSTANCE.accumulatePanels(m, first, step, count, rows, rows.length, a, expected);
                VectorPanelKernels.INSTANCE.accumulatePanels(m, first, step, count, rows, rows.length, a, actual);
                for (int i = 0; i < expected.length; i++) {
                    int p = first + i / 64 * step;
                    float scale = 0f;
                    for (int r : rows) {
                        scale += Math.abs(a[r] * m.weight(p, r, i % 64));
                    }
                    assertThat(actual[i]).as("first %d step %d count %d element %d", first, step, count, i)
                            .isCloseTo(expected[i], org.assertj.core.data.Offset.offset(1e-5f * (scale + 1e-6f)));
                }
                if (rows.length == 0) {
                    assertThat(actual).containsOnly(0f);
                }
                groups += count == PanelKernels.PANEL_GROUP ? 1 : 0;
            }
        }
        assertThat(groups > 0).as("some groups of %d panels", PanelKernels.PANEL_GROUP).isEqualTo(panels >= 4);
    }

    static Stream<Arguments> rowCases() {
        return maskGrid(new int[] {1, 3, 4, 5, 7, 33, 130}, new int[] {1, 63, 64, 65, 200, 1536});
    }

    /** Whole-row kernel: every split [from, to) of the active rows (tails of 0..3 rows), accumulating onto acc. */
    @ParameterizedTest(name = "{0} {1} in={2} out={3} rows={4}")
    @MethodSource("rowCases")
    void accumulateRowsMatchesScalarOracle(Layout layout, WeightType type, int inputs, int outputs, String mask) {
        SplittableRandom random = new SplittableRandom(inputs * 1000L + outputs * 10L + 7);
        PanelMatrix m = matrix(layout, type, inputs, outputs, random);
        int width = m.numPanels() * 64;
        float[] a = new float[inputs];
        for (int i = 0; i < a.length; i++) {
            a[i] = random.nextInt(5) == 0 ? 0f : (float) random.nextGaussian();
        }
        int[] rows = activeRows(inputs, mask, random);
        int[][] splits = {{0, rows.length}, {0, rows.length / 2}, {rows.length / 2, rows.length},
                {Math.min(1, rows.length), rows.length}};
        for (int[] split : splits) {
            float[] start = new float[width];
            for (int c = 0; c < width; c++) {
                start[c] = (float) random.nextGaussian();
            }
            float[] expected = start.clone();
            float[] actual = start.clone();
            ScalarPanelKernels.INSTANCE.accumulateRows(m, rows, split[0], split[1], a, expected);
            VectorPanelKernels.INSTANCE.accumulateRows(m, rows, split[0], split[1], a, actual);
            for (int c = 0; c < width; c++) {
                float scale = Math.abs(start[c]);
                for (int k = split[0]; k < split[1]; k++) {
                    scale += Math.abs(a[rows[k]] * m.weight(c / 64, rows[k], c % 64));
                }
                assertThat(actual[c]).as("rows [%d, %d) column %d", split[0], split[1], c)
                        .isCloseTo(expected[c], org.assertj.core.data.Offset.offset(1e-5f * (scale + 1e-6f)));
            }
            if (split[0] == split[1]) {
                assertThat(actual).containsExactly(start);
            }
        }
    }

    static Stream<Arguments> batchRowCases() {
        Stream.Builder<Arguments> b = Stream.builder();
        for (Layout layout : Layout.values()) {
            for (WeightType type : WeightType.values()) {
                for (int inputs : new int[] {1, 3, 5, 8, 33, 130}) {
                    for (int outputs : new int[] {1, 63, 65, 200, 1536}) {
                        for (int tokens : new int[] {1, 2, 3, 4, 5, 6, 7, 8, 16}) {
                            for (String mask : new String[] {"all", "none", "half"}) {
                                if (!mask.equals("none") || tokens == 2) {
                                    b.add(Arguments.of(layout, type, inputs, outputs, tokens, mask));
                                }
                            }
                        }
                    }
                }
            }
        }
        return b.build();
    }

    /**
     * Whole-row kernel of a small batch: every split [from, to) of up to 8 active rows (else the halves and tails of
     * 1..3 rows), activations with a stride wider than the rows, some of them zero and token 1 all zero from 3 tokens.
     */
    @ParameterizedTest(name = "{0} {1} in={2} out={3} tokens={4} rows={5}")
    @MethodSource("batchRowCases")
    void batchAccumulateRowsMatchesScalarOracle(Layout layout, WeightType type, int inputs, int outputs, int tokens,
                                                String mask) {
        SplittableRandom random = new SplittableRandom(inputs * 1000L + outputs * 10L + tokens);
        PanelMatrix m = matrix(layout, type, inputs, outputs, random);
        int width = m.numPanels() * 64;
        int stride = inputs + 3;
        float[] a = new float[tokens * stride];
        for (int t = 0; t < tokens; t++) {
            for (int r = 0; r < inputs; r++) {
                boolean zero = (tokens >= 3 && t == 1) || random.nextInt(5) == 0;
                a[t * stride + r] = zero ? 0f : (float) random.nextGaussian();
            }
            for (int r = inputs; r < stride; r++) {
                a[t * stride + r] = Float.NaN; // past the rows: never read
            }
        }
        int[] rows = activeRows(inputs, mask, random);
        int n = rows.length;
        java.util.List<int[]> splits = new java.util.ArrayList<>();
        if (n <= 8) {
            for (int from = 0; from <= n; from++) {
                for (int to = from; to <= n; to++) {
                    splits.add(new int[] {from, to});
                }
            }
        } else {
            for (int[] split : new int[][] {{0, n}, {0, n / 2}, {n / 2, n}, {1, n}, {0, n - 1}, {0, n - 2},
                    {0, n - 3}, {3, n - 2}}) {
                splits.add(split);
            }
        }
        for (int[] split : splits) {
            float[] start = new float[tokens * width];
            for (int c = 0; c < start.length; c++) {
                start[c] = (float) random.nextGaussian();
            }
            float[] expected = start.clone();
            float[] actual = start.clone();
            ScalarPanelKernels.INSTANCE.accumulateRows(m, rows, split[0], split[1], a, stride, tokens, expected);
            VectorPanelKernels.INSTANCE.accumulateRows(m, rows, split[0], split[1], a, stride, tokens, actual);
            for (int i = 0; i < start.length; i++) {
                int t = i / width;
                int c = i % width;
                float scale = Math.abs(start[i]);
                for (int k = split[0]; k < split[1]; k++) {
                    scale += Math.abs(a[t * stride + rows[k]] * m.weight(c / 64, rows[k], c % 64));
                }
                assertThat(actual[i]).as("rows [%d, %d) token %d column %d", split[0], split[1], t, c)
                        .isCloseTo(expected[i], org.assertj.core.data.Offset.offset(1e-5f * (scale + 1e-6f)));
            }
            if (split[0] == split[1]) {
                assertThat(actual).containsExactly(start);
            }
            if (tokens >= 3) {
                assertThat(java.util.Arrays.copyOfRange(actual, width, 2 * width))
                        .containsExactly(java.util.Arrays.copyOfRange(start, width, 2 * width));
            }
        }
    }

    /** SCAP pruning: the vector kernel against the scalar oracle, values on the threshold, NaN, tails, offsets. */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(ints = {0, 1, 15, 16, 17, 33, 768, 2049})
    void pruneMatchesScalarOracle(int n) {
        SplittableRandom random = new SplittableRandom(n);
        float mode = 0.25f;
        float threshold = 0.5f;
        int off = 3;
        float[] v = new float[off + 2 * n];
        for (int i = 0; i < v.length; i++) {
            v[i] = switch (random.nextInt(6)) {
                case 0 -> mode + threshold;  // exactly on the threshold: pruned
                case 1 -> mode - threshold;
                case 2 -> Float.NaN;          // kept, never silently dropped
                default -> (float) random.nextGaussian();
            };
        }
        float[] expectedOut = new float[2 * n + 1];
        float[] actualOut = new float[2 * n + 1];
        float[] expectedActive = new float[n];
        float[] actualActive = new float[n];
        int expectedPruned = 0;
        int actualPruned = 0;
        for (int t = 0; t < 2; t++) { // two tokens: the active channels are their union
            expectedPruned += ScalarPanelKernels.INSTANCE.prune(v, off + t * n, n, mode, threshold, expectedOut,
                    1 + t * n, expectedActive);
            actualPruned += VectorPanelKernels.INSTANCE.prune(v, off + t * n, n, mode, threshold, actualOut,
                    1 + t * n, actualActive);
        }
        assertThat(actualOut).containsExactly(expectedOut);
        assertThat(actualActive).containsExactly(expectedActive);
        assertThat(actualPruned).isEqualTo(expectedPruned);
        int independent = 0;
        for (int t = 0; t < 2; t++) {
            for (int i = 0; i < n; i++) {
                float c = v[off + t * n + i] - mode;
                boolean drop = Math.abs(c) <= threshold;
                independent += drop ? 1 : 0;
                assertThat(Float.floatToIntBits(actualOut[1 + t * n + i]))
                        .isEqualTo(Float.floatToIntBits(drop ? 0f : c));
            }
        }
        assertThat(actualPruned).isEqualTo(independent);
    }

    /** Active lists: the vector kernel against the scalar oracle; nothing written past the last active channel. */
    @ParameterizedTest
    @org.junit.jupiter.params.provider.ValueSource(ints = {0, 1, 7, 15, 16, 17, 33, 768, 2051})
    void activeRowsMatchesScalarOracle(int n) {
        SplittableRandom random = new SplittableRandom(31 + n);
        for (double density : new double[] {0.0, 0.3, 0.9, 1.0}) {
            float[] active = new float[n];
            for (int i = 0; i < n; i++) {
                active[i] = random.nextDouble() < density ? 1f : 0f;
            }
            int[] expected = new int[n];
            int expectedCount = PanelKernels.activeRowsRange(active, 0, n, expected, 0);
            int[] actual = new int[n];
            java.util.Arrays.fill(actual, -1);
            int count = VectorPanelKernels.INSTANCE.activeRows(active, n, actual);
            assertThat(count).as("density %s", density).isEqualTo(expectedCount);
            assertThat(java.util.Arrays.copyOf(actual, count)).isEqualTo(java.util.Arrays.copyOf(expected, count));
            for (int k = count; k < n; k++) {
                assertThat(actual[k]).as("untouched past the list").isEqualTo(-1);
            }
            int independent = 0;
            for (int i = 0; i < n; i++) {
                independent += active[i] != 0f ? 1 : 0;
            }
            assertThat(count).isEqualTo(independent);
        }
    }

    @org.junit.jupiter.api.Test
    void pruneByHand() {
        float[] v = {1.0f, 0.2f, -0.3f, 0.9f, Float.NaN};
        float[] out = new float[5];
        float[] active = new float[5];
        int pruned = VectorPanelKernels.INSTANCE.prune(v, 0, 5, 0.1f, 0.4f, out, 0, active);
        assertThat(pruned).isEqualTo(2); // 0.2 − 0.1 and −0.3 − 0.1 are within 0.4
        assertThat(out).containsExactly(1.0f - 0.1f, 0f, 0f, 0.9f - 0.1f, Float.NaN);
        assertThat(active).containsExactly(1f, 0f, 0f, 1f, 1f);
    }

    /** Both layouts store the same weights: only where the chunks go differs. */
    @ParameterizedTest
    @MethodSource("types")
    void layoutsHoldTheSameWeights(WeightType type) {
        PanelMatrix panels = matrix(Layout.PANELS, type, 37, 150, new SplittableRandom(9));
        PanelMatrix rows = matrix(Layout.ROWS, type, 37, 150, new SplittableRandom(9));
        assertThat(rows.bytes()).isEqualTo(panels.bytes());
        for (int p = 0; p < panels.numPanels(); p++) {
            for (int r = 0; r < 37; r++) {
                assertThat(rows.chunkOffset(p, r)).isEqualTo((r * panels.numPanels() + p) * 64);
                assertThat(panels.chunkOffset(p, r)).isEqualTo((p * 37 + r) * 64);
                for (int c = 0; c < 64; c++) {
                    assertThat(rows.weight(p, r, c)).isEqualTo(panels.weight(p, r, c));
                }
            }
        }
    }

    @ParameterizedTest
    @MethodSource("types")
    void packingKeepsWeightsWithinTheTypesPrecision(WeightType type) {
        SplittableRandom random = new SplittableRandom(5);
        int inputs = 40;
        int outputs = 100;
        float[] w = new float[outputs * inputs];
        for (int i = 0; i < w.length; i++) {
            w[i] = (float) random.nextGaussian();
        }
        PanelMatrix m = PanelMatrix.pack(type, w, inputs, outputs, 2, (p, c) -> p * 64 + c < outputs ? p * 64 + c : -1);
        for (int o = 0; o < outputs; o++) {
            for (int r = 0; r < inputs; r++) {
                // int8 block: 32 consecutive outputs of one input row
                float blockMax = 0f;
                for (int b = o / 32 * 32; b < Math.min(outputs, o / 32 * 32 + 32); b++) {
                    blockMax = Math.max(blockMax, Math.abs(w[b * inputs + r]));
                }
                float original = w[o * inputs + r];
                float stored = m.weight(o / 64, r, o % 64);
                double tolerance = switch (type) {
                    case F32 -> 0.0;
                    case BF16 -> Math.abs(original) * 0x1p-8;             // half an ulp of 8 significant bits
                    case INT8 -> blockMax / 127 / 2 * 1.0001;              // half a quantisation step of its block
                };
                assertThat((double) stored).isCloseTo(original, org.assertj.core.data.Offset.offset(tolerance + 1e-12));
            }
        }
        assertThat(m.weight(1, 0, 63)).as("padding").isZero();
    }

    static Stream<WeightType> types() {
        return Stream.of(WeightType.values());
    }
}

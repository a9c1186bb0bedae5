package dev.moe.core.kernels;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class VectorKernelsTest {
    private static final int[] SIZES = {1, 3, 15, 16, 17, 31, 33, 100, 1023};
    private static final VectorKernels VECTOR = VectorKernels.INSTANCE;
    private static final ScalarKernels SCALAR = ScalarKernels.INSTANCE;

    private static float[] random(SplittableRandom r, int n) {
        float[] out = new float[n];
        for (int i = 0; i < n; i++) {
            out[i] = (float) (r.nextDouble() * 2 - 1);
        }
        return out;
    }

    private static double absDot(float[] a, int aOff, float[] b, int bOff, int n) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += Math.abs((double) a[aOff + i] * b[bOff + i]);
        }
        return s;
    }

    private static double exactDot(float[] a, int aOff, float[] b, int bOff, int n) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += (double) a[aOff + i] * b[bOff + i];
        }
        return s;
    }

    @Test
    void dotMatchesScalarOnOddSizesAndOffsets() {
        SplittableRandom r = new SplittableRandom(1);
        int[][] offsets = {{0, 0}, {3, 7}, {1, 0}, {0, 5}, {13, 2}};
        for (int n : SIZES) {
            for (int[] off : offsets) {
                // NaN outside the range: reading one element too many poisons the result
                float[] a = new float[off[0] + n + 9];
                float[] b = new float[off[1] + n + 9];
                Arrays.fill(a, Float.NaN);
                Arrays.fill(b, Float.NaN);
                System.arraycopy(random(r, n), 0, a, off[0], n);
                System.arraycopy(random(r, n), 0, b, off[1], n);
                float v = VECTOR.dot(a, off[0], b, off[1], n);
                float s = SCALAR.dot(a, off[0], b, off[1], n);
                double tol = 1e-5 * absDot(a, off[0], b, off[1], n) + 1e-30;
                String what = "n=" + n + " offsets=" + Arrays.toString(off);
                assertThat((double) v).as(what).isFinite().isCloseTo(s, within(tol));
                assertThat((double) v).as(what + " vs double").isCloseTo(exactDot(a, off[0], b, off[1], n), within(tol));
            }
        }
    }

    @Test
    void dotOfKnownValues() {
        float[] a = new float[40];
        float[] b = new float[40];
        for (int i = 0; i < 40; i++) {
            a[i] = i;
            b[i] = 1;
        }
        for (int n = 0; n <= 37; n++) {
            // Σ_{i=2}^{n+1} i, all exact in float
            float expected = (float) ((n + 1) * (n + 2) / 2 - 1);
            assertThat(VECTOR.dot(a, 2, b, 3, n)).as("n=%d", n).isEqualTo(expected);
            assertThat(SCALAR.dot(a, 2, b, 3, n)).as("n=%d", n).isEqualTo(expected);
        }
        assertThat(VECTOR.dot(a, 0, b, 0, 0)).isZero();
    }

    @Test
    void dotReachingTheArrayEndDoesNotOverrun() {
        SplittableRandom r = new SplittableRandom(3);
        for (int n : SIZES) {
            float[] a = random(r, n + 1);
            float[] b = random(r, n);
            // a's range ends exactly at a.length, b's covers the whole array
            float v = VECTOR.dot(a, 1, b, 0, n);
            assertThat((double) v).isCloseTo(exactDot(a, 1, b, 0, n), within(1e-5 * absDot(a, 1, b, 0, n)));
        }
    }

    @Test
    void linearMatchesScalarForOddShapesAndBatches() {
        SplittableRandom r = new SplittableRandom(2);
        int[] rowCounts = {1, 3, 17};
        for (int cols : SIZES) {
            for (int rows : rowCounts) {
                float[] w = random(r, rows * cols);
                for (int tokens = 1; tokens <= 5; tokens++) {
                    float[] x = random(r, tokens * cols);
                    float[] yv = new float[tokens * rows];
                    float[] ys = new float[tokens * rows];
                    Arrays.fill(yv, Float.NaN); // overwritten, not accumulated
                    Arrays.fill(ys, Float.NaN);
                    VECTOR.linear(w, rows, cols, x, tokens, yv);
                    SCALAR.linear(w, rows, cols, x, tokens, ys);
                    for (int t = 0; t < tokens; t++) {
                        for (int row = 0; row < rows; row++) {
                            double tol = 1e-5 * absDot(w, row * cols, x, t * cols, cols) + 1e-30;
                            double exact = exactDot(w, row * cols, x, t * cols, cols);
                            String what = "rows=" + rows + " cols=" + cols + " tokens=" + tokens + " y[" + t + "," + row + "]";
                            assertThat((double) yv[t * rows + row]).as(what).isCloseTo(ys[t * rows + row], within(tol));
                            assertThat((double) yv[t * rows + row]).as(what).isCloseTo(exact, within(tol));
                        }
                    }
                }
            }
        }
    }

    @Test
    void linearLayoutIsXTimesWTransposed() {
        // w = [[1, 2], [3, 4], [5, 6]] (3 rows, 2 cols); x = [[1, 0], [0, 1], [1, 1]]
        float[] w = {1, 2, 3, 4, 5, 6};
        float[] x = {1, 0, 0, 1, 1, 1};
        float[] y = new float[9];
        VECTOR.linear(w, 3, 2, x, 3, y);
        assertThat(y).containsExactly(1, 3, 5, 2, 4, 6, 3, 7, 11);
        float[] ys = new float[9];
        SCALAR.linear(w, 3, 2, x, 3, ys);
        assertThat(ys).containsExactly(y);
    }

    @Test
    void silu() {
        assertThat(Kernels.silu(0f)).isZero();
        assertThat((double) Kernels.silu(1f)).isCloseTo(1 / (1 + Math.exp(-1)), within(1e-7));
        assertThat((double) Kernels.silu(-2f)).isCloseTo(-2 / (1 + Math.exp(2)), within(1e-7));
        assertThat(Kernels.silu(100f)).isEqualTo(100f);
        assertThat(Kernels.silu(-1000f)).isFinite().isCloseTo(0f, within(1e-30f));
        assertThat(Kernels.silu(1000f)).isEqualTo(1000f);
    }

    /** down(silu(gate·x) ⊙ up·x) entirely in double. */
    private static double[] swigluReference(float[] gate, float[] up, float[] down, int hidden, int inter,
                                            float[] x, int tokens) {
        double[] y = new double[tokens * hidden];
        for (int t = 0; t < tokens; t++) {
            double[] h = new double[inter];
            for (int i = 0; i < inter; i++) {
                double g = 0;
                double u = 0;
                for (int c = 0; c < hidden; c++) {
                    g += (double) gate[i * hidden + c] * x[t * hidden + c];
                    u += (double) up[i * hidden + c] * x[t * hidden + c];
                }
                h[i] = g / (1 + Math.exp(-g)) * u;
            }
            for (int o = 0; o < hidden; o++) {
                double acc = 0;
                for (int i = 0; i < inter; i++) {
                    acc += down[o * inter + i] * h[i];
                }
                y[t * hidden + o] = acc;
            }
        }
        return y;
    }

    @Test
    void swiGluExpertMatchesDoubleReference() {
        SplittableRandom r = new SplittableRandom(4);
        int[][] shapes = {{1, 1}, {16, 8}, {33, 17}, {64, 96}, {100, 31}};
        for (int[] shape : shapes) {
            int hidden = shape[0];
            int inter = shape[1];
            float[] gate = random(r, inter * hidden);
            float[] up = random(r, inter * hidden);
            float[] down = random(r, hidden * inter);
            SwiGluExpert expert = new SwiGluExpert(hidden, inter, gate, up, down);
            assertThat(expert.hiddenSize()).isEqualTo(hidden);
            assertThat(expert.intermediateSize()).isEqualTo(inter);
            assertThat(expert.weightBytes()).isEqualTo(12L * hidden * inter);
            for (int tokens = 1; tokens <= 4; tokens++) {
                float[] x = random(r, tokens * hidden);
                float[] y = new float[tokens * hidden];
                Arrays.fill(y, Float.NaN);
                expert.forward(VECTOR, x, tokens, y);
                double[] ref = swigluReference(gate, up, down, hidden, inter, x, tokens);
                double maxRef = 0;
                for (double v : ref) {
                    maxRef = Math.max(maxRef, Math.abs(v));
                }
                double tol = 2e-5 * Math.max(1, maxRef);
                for (int i = 0; i < y.length; i++) {
                    assertThat((double) y[i]).as("hidden=%d inter=%d tokens=%d y[%d]", hidden, inter, tokens, i)
                            .isCloseTo(ref[i], within(tol));
                }
                float[] ys = new float[tokens * hidden];
                expert.forward(SCALAR, x, tokens, ys);
                for (int i = 0; i < y.length; i++) {
                    assertThat((double) ys[i]).isCloseTo(ref[i], within(tol));
                }
            }
        }
    }

    @Test
    void swiGluHandComputed() {
        // hidden 2, inter 1: gate = [1, 0], up = [0, 2], down = [[1], [-1]]; x = [1, 3]
        // g = 1, u = 6, h = silu(1)·6, y = [h, -h]
        SwiGluExpert expert = new SwiGluExpert(2, 1, new float[] {1, 0}, new float[] {0, 2}, new float[] {1, -1});
        float[] y = new float[2];
        expert.forward(VECTOR, new float[] {1, 3}, 1, y);
        double h = 6 / (1 + Math.exp(-1));
        assertThat((double) y[0]).isCloseTo(h, within(1e-5));
        assertThat((double) y[1]).isCloseTo(-h, within(1e-5));
    }

    @Test
    void swiGluRefusesMismatchedWeights() {
        assertThatThrownBy(() -> new SwiGluExpert(4, 2, new float[8], new float[8], new float[7]))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("[2, 4]");
        assertThatThrownBy(() -> new SwiGluExpert(4, 2, new float[8], new float[9], new float[8]))
                .isInstanceOf(IllegalArgumentException.class);
    }
}

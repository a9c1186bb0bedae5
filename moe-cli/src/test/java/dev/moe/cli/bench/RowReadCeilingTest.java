package dev.moe.cli.bench;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.kernels.KernelPool;
import java.util.SplittableRandom;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** The ceiling's reads cover exactly the rows they are given, once each, in both pass shapes and any thread count. */
class RowReadCeilingTest {

    @ParameterizedTest(name = "rows of {0}/{1} bytes, {2} per sparse pass, {3} threads")
    @CsvSource({"1728, 2304, 8, 1", "1728, 2304, 8, 2", "3072, 4096, 8, 3", "6144, 8192, 4, 2", "100, 30, 8, 2"})
    void readsEveryGivenRowOnce(long gateUpRowBytes, long downRowBytes, int sparsePass, int threads) {
        int gateUpRows = 70;
        int downRows = 45;
        float[] buffer = new float[1 << 20];
        for (int i = 0; i < buffer.length; i++) {
            buffer[i] = i % 7 - 3; // small integers: every float sum below is exact
        }
        RowReadCeiling ceiling = new RowReadCeiling(buffer, gateUpRowBytes, gateUpRows, downRowBytes, downRows,
                sparsePass, threads);
        assertThat(ceiling.experts()).isGreaterThan(1);
        int[] floats = ceiling.rowFloats();
        assertThat(floats[0] % 16).isZero(); // whole lines
        assertThat(floats[0] * 4L).isBetween(gateUpRowBytes, gateUpRowBytes + 63);
        SplittableRandom random = new SplittableRandom(gateUpRowBytes + threads);
        try (KernelPool pool = new KernelPool(threads)) {
            for (int call = 0; call < 2 * ceiling.experts() + 1; call++) {
                int expert = call % ceiling.experts();
                double density = new double[] {0, 0.1, 0.5, 1.0}[call % 4];
                int[] gateUp = rows(gateUpRows, density, random);
                int[] down = rows(downRows, 1 - density, random);
                double expected = 0;
                for (int r : gateUp) {
                    expected += sum(buffer, ceiling.rowStart(expert, false, r), floats[0]);
                }
                for (int r : down) {
                    expected += sum(buffer, ceiling.rowStart(expert, true, r), floats[1]);
                }
                assertThat(ceiling.read(pool, gateUp, down)).as("call %d", call).isEqualTo(expected);
            }
        }
    }

    @ParameterizedTest
    @CsvSource({"0.0, 4", "1.5, 2", "-2, 5"})
    void activeRowsAreTheValuesAboveTheThreshold(float threshold, int expected) {
        float[] v = {9f, 0f, -1f, 2f, -3f, 1.5f};
        int[] rows = RowReadCeiling.activeRows(v, 1, 5, threshold); // 0, -1, 2, -3, 1.5
        assertThat(rows).hasSize(expected).isSorted();
        for (int r : rows) {
            assertThat(Math.abs(v[1 + r])).isGreaterThan(threshold);
        }
    }

    @org.junit.jupiter.api.Test
    void anExpertLargerThanTheBufferIsRefusedWithWhatToDo() {
        assertThatThrownBy(() -> new RowReadCeiling(new float[1024], 4096, 64, 4096, 64, 8, 2))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("--bw-mib");
        assertThatThrownBy(() -> new RowReadCeiling(new float[1 << 20], 64, 4, 64, 4, 6, 2))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("4 or 8");
    }

    private static int[] rows(int n, double density, SplittableRandom random) {
        int[] rows = new int[n];
        int count = 0;
        for (int i = 0; i < n; i++) {
            if (density >= 1.0 || random.nextDouble() < density) {
                rows[count++] = i;
            }
        }
        return java.util.Arrays.copyOf(rows, count);
    }

    private static double sum(float[] buffer, int from, int n) {
        double s = 0;
        for (int i = 0; i < n; i++) {
            s += buffer[from + i];
        }
        return s;
    }
}

package dev.moe.core.kernels;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.time.Duration;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.EnumSource;

class KernelWarmupTest {
    private static KernelPool pool;

    @BeforeAll
    static void startPool() {
        pool = new KernelPool(2);
    }

    @AfterAll
    static void stopPool() {
        pool.close();
    }

    @ParameterizedTest
    @EnumSource(WeightType.class)
    void aCallLimitStopsAfterWholeRoundsAndTheSparsePathRuns(WeightType type) {
        // a generous budget: the call limit ends it, after two whole rounds
        int round = KernelWarmup.callsPerRound(true);
        for (PanelMatrix.Layout layout : PanelMatrix.Layout.values()) {
            KernelWarmup.Result result = KernelWarmup.run(type, layout, true, pool, Duration.ofMinutes(5), round + 1);

            assertThat(result.calls()).as("%s %s", type, layout).isEqualTo(2L * round);
            // every one of the sparse half's calls pruned x and h (crossover 1.0): two projections per expert run,
            // one expert per call except the several-experts call of each round
            int expertRuns = (round / 2 - 1) + 4;
            assertThat(result.sparseProjections()).as("%s %s", type, layout).isEqualTo(2L * 2 * expertRuns);
        }
    }

    @Test
    void withoutThresholdsEveryProjectionRunsDense() {
        KernelWarmup.Result result = KernelWarmup.run(WeightType.BF16, PanelMatrix.Layout.PANELS, false, pool,
                Duration.ofMinutes(5), 1);

        assertThat(result.calls()).isEqualTo(KernelWarmup.callsPerRound(false));
        assertThat(result.sparseProjections()).isZero();
    }

    @Test
    void aZeroBudgetSkipsIt() {
        KernelWarmup.Result result = KernelWarmup.run(WeightType.INT8, PanelMatrix.Layout.ROWS, true, pool,
                Duration.ZERO, Long.MAX_VALUE);

        assertThat(result.calls()).isZero();
        assertThat(KernelWarmup.once(WeightType.INT8, PanelMatrix.Layout.ROWS, true, pool, Duration.ZERO).calls())
                .isZero();
        assertThat(KernelWarmup.isWarm(WeightType.INT8, PanelMatrix.Layout.ROWS, true)).isFalse();
    }

    @Test
    void onceWarmsACombinationOnlyOncePerJvm() {
        // F32 rows dense: a combination no other test of this class warms through once()
        assertThat(KernelWarmup.isWarm(WeightType.F32, PanelMatrix.Layout.ROWS, false)).isFalse();

        KernelWarmup.Result first = KernelWarmup.once(WeightType.F32, PanelMatrix.Layout.ROWS, false, pool,
                Duration.ofMillis(1));
        KernelWarmup.Result second = KernelWarmup.once(WeightType.F32, PanelMatrix.Layout.ROWS, false, pool,
                Duration.ofSeconds(30));

        // a budget of 1 ms still makes the minimum of calls that gets the kernels to C2
        assertThat(first.calls()).isGreaterThanOrEqualTo(KernelWarmup.MIN_CALLS);
        assertThat(first.cutShort()).isFalse();
        assertThat(second.calls()).isZero();
        assertThat(KernelWarmup.isWarm(WeightType.F32, PanelMatrix.Layout.ROWS, false)).isTrue();
        assertThat(KernelWarmup.isWarm(WeightType.F32, PanelMatrix.Layout.ROWS, true)).isFalse();
    }

    @Test
    void aWarmUpThatCannotMakeItsMinimumInTimeStopsAndSaysSo() {
        // no overrun allowed past a 1 ns budget: one whole round, then cut short
        KernelWarmup.Result result = KernelWarmup.run(WeightType.BF16, PanelMatrix.Layout.PANELS, false, pool,
                Duration.ofNanos(1), Long.MAX_VALUE, Duration.ZERO);

        assertThat(result.calls()).isEqualTo(KernelWarmup.callsPerRound(false));
        assertThat(result.cutShort()).isTrue();
    }

    @Test
    void aCallLimitBelowTheMinimumIsNotCutShort() {
        KernelWarmup.Result result = KernelWarmup.run(WeightType.BF16, PanelMatrix.Layout.PANELS, false, pool,
                Duration.ofNanos(1), 1, Duration.ZERO);

        assertThat(result.calls()).isEqualTo(KernelWarmup.callsPerRound(false));
        assertThat(result.cutShort()).isFalse();
    }

    @Test
    void negativeBudgetsAndLimitsAreRejected() {
        assertThatThrownBy(() -> KernelWarmup.run(WeightType.BF16, PanelMatrix.Layout.PANELS, false, pool,
                Duration.ofSeconds(-1), 1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("PT-1S");
        assertThatThrownBy(() -> KernelWarmup.run(WeightType.BF16, PanelMatrix.Layout.PANELS, false, pool,
                Duration.ofSeconds(1), -1)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("-1");
    }
}

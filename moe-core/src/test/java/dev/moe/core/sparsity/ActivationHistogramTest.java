package dev.moe.core.sparsity;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import java.util.Arrays;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

/** The streaming histogram against exact statistics of the same values. */
class ActivationHistogramTest {

    private static float[] gaussian(int n, double mean, double std, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[n];
        for (int i = 0; i < n; i++) {
            v[i] = (float) (mean + std * r.nextGaussian());
        }
        return v;
    }

    private static ActivationHistogram of(float[] values) {
        ActivationHistogram h = new ActivationHistogram();
        // in uneven chunks, as batches arrive
        for (int from = 0; from < values.length; from += 777) {
            h.add(values, from, Math.min(777, values.length - from));
        }
        return h;
    }

    /** Exact fraction with |v − m| <= tau, in float as the kernels compare. */
    private static double exactWithin(float[] values, float m, float tau) {
        long n = 0;
        for (float v : values) {
            if (Math.abs(v - m) <= tau) {
                n++;
            }
        }
        return (double) n / values.length;
    }

    /** The exact p-quantile of |v − m| (sorted, nearest rank). */
    private static double exactDeviationQuantile(float[] values, float m, double p) {
        double[] d = new double[values.length];
        for (int i = 0; i < d.length; i++) {
            d[i] = Math.abs(values[i] - m);
        }
        Arrays.sort(d);
        return d[(int) Math.ceil(p * d.length) - 1];
    }

    @Test
    void deviationQuantilesMatchTheSortedValues() {
        float[] v = gaussian(200_000, 0.0, 1.7, 1);
        ActivationHistogram h = of(v);
        assertThat(h.count()).isEqualTo(200_000);
        for (double p : new double[] {0.05, 0.3, 0.5, 0.7, 0.9, 0.99}) {
            for (float m : new float[] {0f, 0.4f}) {
                double exact = exactDeviationQuantile(v, m, p);
                float tau = (float) h.quantileOfDeviation(m, p);
                assertThat(tau).as("p=%s m=%s", p, m).isCloseTo((float) exact, within((float) (2e-3 * exact)));
                // What matters for pruning: the fraction the threshold actually prunes.
                assertThat(exactWithin(v, m, tau)).as("p=%s m=%s", p, m).isCloseTo(p, within(1e-3));
                assertThat(h.fractionWithin(m, tau)).isCloseTo(p, within(1e-6));
            }
        }
        assertThat(h.quantile(0.5)).isCloseTo(0.0, within(0.02));
        assertThat(h.mean()).isCloseTo(0.0, within(0.02));
        assertThat(h.standardDeviation()).isCloseTo(1.7, within(0.01));
    }

    @Test
    void negativeOnlyAndHugeValuesKeepTheirOrder() {
        SplittableRandom r = new SplittableRandom(2);
        float[] v = new float[50_000];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (-1 - 2 * r.nextDouble()); // uniform in (-3, -1]
        }
        ActivationHistogram h = of(v);
        assertThat(h.quantile(0.5)).isCloseTo(-2.0, within(0.02));
        assertThat(h.quantile(0.1)).isCloseTo(-2.8, within(0.02));
        assertThat(h.countAtOrBelow(-2.0) / v.length).isCloseTo(0.5, within(0.01));
        assertThat(h.countAtOrBelow(-3.5)).isZero();
        assertThat(h.countAtOrBelow(-0.5)).isEqualTo(v.length);

        // beyond 2^24 everything shares the overflow bin, clipped to the observed maximum
        ActivationHistogram big = of(new float[] {1e8f, 2e8f, 3e8f, 4e8f, 1f});
        assertThat(big.max()).isEqualTo(4e8f);
        assertThat(big.countAtOrBelow(4e8f)).isEqualTo(5);
        assertThat(big.countAtOrBelow(2)).isCloseTo(1.0, within(1e-9));
    }

    @Test
    void exactZerosArePrunedByAZeroThresholdAndNothingElseIs() {
        float[] v = gaussian(10_000, 0, 1, 3);
        for (int i = 0; i < v.length; i += 10) {
            v[i] = (i % 20 == 0) ? 0f : -0f; // 10 % exact zeros of both signs
        }
        ActivationHistogram h = of(v);
        assertThat(h.fractionWithin(0, 0)).isEqualTo(0.1);
        assertThat(h.quantileOfDeviation(0, 0.05)).isZero();
        assertThat(h.quantileOfDeviation(0, 0.1)).isZero();
        float tau = (float) h.quantileOfDeviation(0, 0.5);
        assertThat(exactWithin(v, 0f, tau)).isCloseTo(0.5, within(2e-3));
        assertThat(h.quantileOfDeviation(0, 0)).isZero();
    }

    @Test
    void aConstantIsItsOwnModeAndNeedsNoThreshold() {
        float[] v = new float[1000];
        Arrays.fill(v, 2.5f);
        ActivationHistogram h = of(v);
        assertThat(h.mode()).isEqualTo(2.5);
        assertThat(h.fractionWithin(2.5, 0)).isEqualTo(1.0);
        assertThat(h.quantileOfDeviation(2.5, 0.7)).isZero();
        assertThat(h.fractionWithin(0, 1)).isZero();
    }

    @Test
    void theModeIsThePeakNotTheMean() {
        // 70 % N(0.3, 0.2) + 30 % N(3, 1): mean 1.11, median ~0.5, mode ~0.3
        SplittableRandom r = new SplittableRandom(4);
        float[] v = new float[100_000];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (r.nextDouble() < 0.7 ? 0.3 + 0.2 * r.nextGaussian() : 3 + r.nextGaussian());
        }
        ActivationHistogram h = of(v);
        assertThat(h.mean()).isCloseTo(1.11, within(0.02));
        assertThat(h.mode()).isCloseTo(0.3, within(0.03));
        // a sharp peak at 0 in heavy tails, like h = silu(g)·u
        float[] peaked = new float[100_000];
        for (int i = 0; i < peaked.length; i++) {
            double g = r.nextGaussian();
            double u = r.nextGaussian();
            peaked[i] = (float) (g / (1 + Math.exp(-g)) * u);
        }
        assertThat(of(peaked).mode()).isCloseTo(0.0, within(0.02));
        assertThat(new ActivationHistogram().mode()).isZero();
    }

    @Test
    void theModeOfAShiftedGaussianIsUnbiased() {
        // 20 samples of 40 000 values of N(0.5, 1): each mode within ~3 standard errors, their mean within ~4
        double sum = 0;
        for (int seed = 0; seed < 20; seed++) {
            double mode = of(gaussian(40_000, 0.5, 1.0, 100 + seed)).mode();
            assertThat(mode).isCloseTo(0.5, within(0.12));
            sum += mode;
        }
        assertThat(sum / 20).isCloseTo(0.5, within(0.03));
    }

    @Test
    void nonFiniteValuesAreRefusedWithTheirIndex() {
        ActivationHistogram h = new ActivationHistogram();
        assertThatThrownBy(() -> h.add(new float[] {1f, Float.NaN}, 0, 2))
                .isInstanceOf(IllegalArgumentException.class).hasMessage("non-finite value NaN at index 1");
        assertThatThrownBy(() -> h.add(new float[] {Float.NEGATIVE_INFINITY}, 0, 1))
                .hasMessageContaining("-Infinity");
        assertThat(h.count()).isZero();
        assertThat(h.countAtOrBelow(5)).isZero(); // the 1f before the NaN was not kept
        h.add(new float[] {1f}, 0, 1);
        assertThat(h.countAtOrBelow(5)).isEqualTo(1);
    }
}

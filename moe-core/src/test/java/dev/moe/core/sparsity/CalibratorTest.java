package dev.moe.core.sparsity;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;
import static org.assertj.core.api.Assertions.withinPercentage;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SafetensorsWriter;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.gating.RouterSpec;
import dev.moe.core.gating.RoutingDecision;
import dev.moe.core.gating.TopKRouter;
import dev.moe.core.kernels.Kernels;
import dev.moe.core.kernels.ScalarKernels;
import dev.moe.core.kernels.SwiGluExpert;
import dev.moe.core.moe.MoeWeights;
import dev.moe.core.moe.RouterLayer;
import dev.moe.core.sparsity.Calibrator.LayerSummary;
import dev.moe.core.sparsity.Calibrator.Options;
import dev.moe.core.sparsity.Calibrator.Result;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.SplittableRandom;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/**
 * Calibration on a synthetic Qwen3-MoE checkpoint (hidden 64, 8 experts, top-2, intermediate 48, 2 layers), checked
 * on held-out inputs by an independent measurement: the real gate routes the tokens (scalar kernels), the dense
 * expert computes h, and the values with {@code |v − mode| <= threshold} (float, as the kernels compare) are counted.
 */
class CalibratorTest {
    private static final int HIDDEN = 64;
    private static final int INTER = 48;
    private static final int TOKENS = 4096;

    @TempDir
    static Path dir;
    private static Checkpoint checkpoint;

    @BeforeAll
    static void writeCheckpoint() throws Exception {
        SyntheticCheckpoint.write(dir.resolve("model"), new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, HIDDEN, 2,
                8, 2, INTER, 0, 1, 1, true, DType.F32, 1, 11), SyntheticCheckpoint.SILENT);
        checkpoint = Checkpoint.open(dir.resolve("model"));
    }

    @AfterAll
    static void close() {
        checkpoint.close();
    }

    /**
     * Receives every (token, chosen expert) of a layer with x and the expert's h = silu(gate·x̃) ⊙ up·x̃, where x̃ is x
     * pruned with the expert's gate/up threshold when a profile is given (as the server computes h), else x.
     */
    @FunctionalInterface
    private interface RoutedVisitor {
        void visit(int layer, int expert, float[] x, float[] h);
    }

    private static void forEachRouted(CalibrationSource inputs, RoutedVisitor visitor) {
        forEachRouted(inputs, null, visitor);
    }

    /** Routes every input row with the real gate (scalar kernels) and runs the experts it chose. */
    private static void forEachRouted(CalibrationSource inputs, SparsityProfile pruneWith, RoutedVisitor visitor) {
        MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
        Kernels k = ScalarKernels.INSTANCE;
        for (int layer : config.moeLayers()) {
            RouterLayer router = MoeWeights.loadRouterLayer(checkpoint, config, layer);
            List<SwiGluExpert> experts = new ArrayList<>();
            for (int e = 0; e < config.numExperts(); e++) {
                experts.add(MoeWeights.loadExpert(checkpoint, config, layer, e));
            }
            float[] x = new float[HIDDEN];
            float[] h = new float[INTER];
            for (int t = 0; t < inputs.numTokens(layer); t++) {
                inputs.read(layer, new int[] {t}, 0, 1, x);
                RoutingDecision d = TopKRouter.route(RouterSpec.of(config), router.routerLogits(k, x, 1), 1,
                        router.correctionBias());
                for (int j = 0; j < d.topK(); j++) {
                    int e = d.expertId(0, j);
                    float[] input = x;
                    if (pruneWith != null) { // a pruned value enters as the mode, as in the kernels
                        SparsityThresholds th = pruneWith.thresholds(layer, e);
                        input = x.clone();
                        for (int i = 0; i < input.length; i++) {
                            if (Math.abs(input[i] - th.gateUpMode()) <= th.gateUpThreshold()) {
                                input[i] = th.gateUpMode();
                            }
                        }
                    }
                    experts.get(e).intermediate(k, input, 1, h);
                    visitor.visit(layer, e, x, h);
                }
            }
        }
    }

    /**
     * Per layer: {pruned fraction of the x values the experts received, of the h values (computed from the pruned x)},
     * pooled over experts (each weighted by the tokens it received), pruning as the kernels do:
     * {@code |v − mode| <= threshold} in float.
     */
    /** Pruned and seen values per (layer, expert, projection input: 0 = x, 1 = h) under a profile's thresholds. */
    private record Counts(long[][][] pruned, long[][][] seen) {
        double expert(int layer, int expert, int projection) {
            return (double) pruned[layer][expert][projection] / seen[layer][expert][projection];
        }
    }

    private static Counts countPruned(SparsityProfile profile, CalibrationSource inputs) {
        long[][][] pruned = new long[2][8][2];
        long[][][] seen = new long[2][8][2];
        forEachRouted(inputs, profile, (layer, e, x, h) -> {
            SparsityThresholds th = profile.thresholds(layer, e);
            for (float v : x) {
                pruned[layer][e][0] += Math.abs(v - th.gateUpMode()) <= th.gateUpThreshold() ? 1 : 0;
            }
            for (float v : h) {
                pruned[layer][e][1] += Math.abs(v - th.downMode()) <= th.downThreshold() ? 1 : 0;
            }
            seen[layer][e][0] += x.length;
            seen[layer][e][1] += h.length;
        });
        return new Counts(pruned, seen);
    }

    /** Pruned fraction per (layer, projection input) over all experts. */
    private static double[][] heldOutSparsity(SparsityProfile profile, CalibrationSource inputs) {
        Counts counts = countPruned(profile, inputs);
        double[][] out = new double[2][2];
        for (int layer = 0; layer < 2; layer++) {
            for (int p = 0; p < 2; p++) {
                long pruned = 0;
                long seen = 0;
                for (int e = 0; e < 8; e++) {
                    pruned += counts.pruned()[layer][e][p];
                    seen += counts.seen()[layer][e][p];
                }
                out[layer][p] = (double) pruned / seen;
            }
        }
        return out;
    }

    /**
     * The q-quantile of |silu(g)·u| for independent g, u ~ N(0, σ²), by Monte Carlo, where σ² is the variance left in
     * N(0, 1) values once those with |v| <= {@code xThreshold} are pruned to 0 (g and u are sums over the pruned x).
     */
    private static double swiGluQuantile(double q, double xThreshold) {
        SplittableRandom r = new SplittableRandom(99);
        double kept = 0;
        int n = 400_000;
        for (int i = 0; i < n; i++) {
            double v = r.nextGaussian();
            kept += Math.abs(v) > xThreshold ? v * v : 0;
        }
        double sigma = Math.sqrt(kept / n);
        double[] v = new double[n];
        for (int i = 0; i < v.length; i++) {
            double g = sigma * r.nextGaussian();
            v[i] = Math.abs(g / (1 + Math.exp(-g)) * sigma * r.nextGaussian());
        }
        java.util.Arrays.sort(v);
        return v[(int) (q * v.length)];
    }

    private static Result calibrate(double target, boolean centering, CalibrationSource source) {
        return Calibrator.calibrate(checkpoint, source, Options.of(target, centering).withThreads(2),
                Calibrator.ProgressListener.NONE);
    }

    @ParameterizedTest(name = "target {0}, mode centering {1}")
    @CsvSource({"0.5, false", "0.7, false", "0.5, true", "0.7, true"})
    void heldOutSparsityIsTheTarget(double target, boolean centering) {
        Result result = calibrate(target, centering, new SyntheticActivations(HIDDEN, TOKENS, 1));
        SparsityProfile profile = result.profile();
        assertThat(profile.layers().keySet()).containsExactly(0, 1);
        for (int layer = 0; layer < 2; layer++) {
            long pairs = 0;
            for (int e = 0; e < 8; e++) {
                SparsityProfile.Expert entry = profile.expert(layer, e);
                assertThat(entry.gateUp().tokens()).as("every expert gets tokens").isPositive();
                assertThat(entry.down().tokens()).isEqualTo(entry.gateUp().tokens());
                pairs += entry.gateUp().tokens();
                if (!centering) {
                    assertThat(entry.gateUp().mode()).isZero();
                    assertThat(entry.down().mode()).isZero();
                } else {
                    // x is N(0, 1); h = silu(g)·u peaks sharply at 0: the modes are near 0, not exactly 0
                    assertThat(entry.gateUp().mode()).isCloseTo(0f, within(0.15f));
                    assertThat(entry.down().mode()).isCloseTo(0f, within(0.01f));
                }
            }
            assertThat(pairs).isEqualTo(2L * TOKENS); // top-2
        }
        // What the calibrator counted on its own inputs is what an independent count finds there (up to a few
        // values that vector and scalar rounding put on the other side of a threshold).
        assertThat(result.measured()).isTrue();
        double[][] onCalibrationSet = heldOutSparsity(profile, new SyntheticActivations(HIDDEN, TOKENS, 1));
        for (int layer = 0; layer < 2; layer++) {
            LayerSummary summary = result.layers().get(layer);
            assertThat(summary.tokenExpertPairs()).isEqualTo(2L * TOKENS);
            assertThat(summary.gateUpSparsity()).isCloseTo(onCalibrationSet[layer][0], within(1e-9));
            assertThat(summary.downSparsity()).isCloseTo(onCalibrationSet[layer][1], within(1e-4));
            assertThat(summary.gateUpSparsity()).isCloseTo(target, within(0.01));
            assertThat(summary.downSparsity()).isCloseTo(target, within(0.01));
        }
        // Held out: each expert's own thresholds hit the target on inputs it has not seen (about 1000 tokens each).
        Counts heldOut = countPruned(profile, new SyntheticActivations(HIDDEN, TOKENS, 2));
        for (int layer = 0; layer < 2; layer++) {
            for (int e = 0; e < 8; e++) {
                assertThat(heldOut.expert(layer, e, 0)).as("layer %d expert %d gate_up", layer, e)
                        .isCloseTo(target, within(0.02));
                assertThat(heldOut.expert(layer, e, 1)).as("layer %d expert %d down", layer, e)
                        .isCloseTo(target, within(0.02));
            }
        }
        // Real values: x is N(0, 1) whichever expert it reaches, so the gate_up threshold is the target quantile of
        // |N(0, 1)|: 0.674 at 0.5, 1.036 at 0.7.
        double expected = target == 0.5 ? 0.6745 : 1.0364;
        assertThat(result.meanGateUpThreshold()).isCloseTo(expected, within(0.03));
        // h: gate·x̃ and up·x̃ of the pruned x are close to N(0, σ²) here (weight rows of norm ~1; σ² = 0.93 at 0.5,
        // 0.78 at 0.7), so the down threshold is the target quantile of |silu(g)·u| for those
        assertThat(result.meanDownThreshold()).isCloseTo(swiGluQuantile(target, expected), withinPercentage(5));
    }

    @Test
    void targetZeroPrunesNothing() {
        Result result = calibrate(0.0, false, new SyntheticActivations(HIDDEN, 1024, 1));
        result.profile().layers().forEach((layer, experts) -> experts.forEach((e, entry) -> assertThat(
                entry.thresholds()).isEqualTo(new SparsityThresholds(0f, 0f, 0f, 0f))));
        assertThat(result.gateUpSparsity()).isZero();
        assertThat(result.downSparsity()).isZero();
        double[][] heldOut = heldOutSparsity(result.profile(), new SyntheticActivations(HIDDEN, 1024, 2));
        assertThat(heldOut[0]).containsExactly(0.0, 0.0);
        assertThat(heldOut[1]).containsExactly(0.0, 0.0);
        // centering moves the interval but a zero-width interval still prunes nothing continuous
        Result centred = calibrate(0.0, true, new SyntheticActivations(HIDDEN, 1024, 1));
        double[][] centredHeldOut = heldOutSparsity(centred.profile(), new SyntheticActivations(HIDDEN, 1024, 2));
        assertThat(centredHeldOut[0]).containsExactly(0.0, 0.0);
        assertThat(centredHeldOut[1]).containsExactly(0.0, 0.0);
    }

    @Test
    void theProfileNamesTheModelAndTheInputsAndDoesNotDependOnThreads() {
        List<String> progress = new ArrayList<>();
        Result one = Calibrator.calibrate(checkpoint, new SyntheticActivations(HIDDEN, 300, 9),
                Options.of(0.6, true).withThreads(1).withBatchTokens(7), (d, t) -> progress.add(d + "/" + t));
        Result three = Calibrator.calibrate(checkpoint, new SyntheticActivations(HIDDEN, 300, 9),
                Options.of(0.6, true).withThreads(3).withMeasure(false), Calibrator.ProgressListener.NONE);
        // without the second pass the sparsity is the histograms' estimate: the target, by construction
        assertThat(three.measured()).isFalse();
        assertThat(three.gateUpSparsity()).isCloseTo(0.6, within(1e-6));
        assertThat(three.downSparsity()).isCloseTo(0.6, within(1e-6));
        // one step per (layer, expert): 2 layers x 8 experts
        assertThat(progress).hasSize(17).startsWith("0/16", "1/16").endsWith("15/16", "16/16");
        for (int i = 0; i < progress.size(); i++) {
            assertThat(progress.get(i)).isEqualTo(i + "/16");
        }
        assertThat(one.profile().toJson()).isEqualTo(three.profile().toJson());
        SparsityProfile p = one.profile();
        assertThat(p.modelFingerprint()).isEqualTo(checkpoint.fingerprint());
        assertThat(p.modelType()).isEqualTo("qwen3_moe");
        assertThat(p.targetSparsity()).isEqualTo(0.6);
        assertThat(p.modeCentering()).isTrue();
        assertThat(p.calibration()).isEqualTo(new SparsityProfile.Calibration(Calibrator.SYNTHETIC_SOURCE, 300, 9L));
        // vector and scalar kernels agree to rounding: same thresholds to 1e-4 relative
        Result scalar = Calibrator.calibrate(checkpoint, new SyntheticActivations(HIDDEN, 300, 9),
                Options.of(0.6, true).withKernels(ScalarKernels.INSTANCE), Calibrator.ProgressListener.NONE);
        for (int layer = 0; layer < 2; layer++) {
            for (int e = 0; e < 8; e++) {
                assertThat(scalar.profile().thresholds(layer, e).downThreshold()).isCloseTo(
                        p.thresholds(layer, e).downThreshold(), within(1e-4f * p.thresholds(layer, e).downThreshold()));
            }
        }
    }

    private static float[] gaussianRows(int rows, double mean, long seed) {
        SplittableRandom r = new SplittableRandom(seed);
        float[] v = new float[rows * HIDDEN];
        for (int i = 0; i < v.length; i++) {
            v[i] = (float) (mean + r.nextGaussian());
        }
        return v;
    }

    @Test
    void anActivationsFileFeedsEveryLayerAndExpertsWithoutTokensPruneNothing() throws Exception {
        Path file = dir.resolve("few.safetensors");
        new SafetensorsWriter()
                .addF32("hidden_states", new long[] {3, HIDDEN}, gaussianRows(3, 0, 5))
                .addBf16("layer1.input", new long[] {5, HIDDEN}, gaussianRows(5, 0, 6))
                .write(file);
        try (ActivationsFile inputs = ActivationsFile.open(file, HIDDEN, List.of(0, 1), Integer.MAX_VALUE)) {
            assertThat(inputs.tensorOf(0)).isEqualTo("hidden_states");
            assertThat(inputs.tensorOf(1)).isEqualTo("layer1.input");
            Result result = calibrate(0.5, false, inputs);
            SparsityProfile p = result.profile();
            assertThat(p.calibration()).isEqualTo(new SparsityProfile.Calibration("file few.safetensors", 5, null));
            long[] pairs = new long[2];
            int[] idle = new int[2];
            for (int layer = 0; layer < 2; layer++) {
                for (int e = 0; e < 8; e++) {
                    SparsityProfile.Expert entry = p.expert(layer, e);
                    pairs[layer] += entry.gateUp().tokens();
                    if (entry.gateUp().tokens() == 0) {
                        idle[layer]++;
                        assertThat(entry.thresholds()).isEqualTo(new SparsityThresholds(0f, 0f, 0f, 0f));
                        assertThat(entry.down().tokens()).isZero();
                    } else {
                        assertThat(entry.gateUp().threshold()).isPositive();
                        assertThat(entry.down().threshold()).isPositive();
                    }
                }
            }
            assertThat(pairs).containsExactly(3 * 2, 5 * 2);
            assertThat(idle[0]).isGreaterThanOrEqualTo(2); // 3 tokens x top-2 reach at most 6 of 8 experts
            assertThat(result.layers().get(0).expertsWithTokens()).isEqualTo(8 - idle[0]);
        }
        // --tokens caps the rows used
        try (ActivationsFile inputs = ActivationsFile.open(file, HIDDEN, List.of(0, 1), 2)) {
            assertThat(inputs.numTokens(0)).isEqualTo(2);
            assertThat(inputs.numTokens(1)).isEqualTo(2);
        }
    }

    @Test
    void modeCenteringFindsAShiftedPeak() throws Exception {
        // Inputs N(0.5, 1). Routing favours tokens along each expert's gate direction, which moves the mean of the
        // values an expert receives a little away from 0.5; the mode follows that mean (measured here independently).
        // Centred, the interval has the half-width of |N(0, 1)|'s median (0.674); uncentred it must reach further,
        // to cover half of |N(0.5, 1)| (median 0.755).
        Path file = dir.resolve("shifted.safetensors");
        new SafetensorsWriter().addF32("hidden_states", new long[] {2048, HIDDEN}, gaussianRows(2048, 0.5, 8))
                .write(file);
        try (ActivationsFile inputs = ActivationsFile.open(file, HIDDEN, List.of(0, 1), Integer.MAX_VALUE)) {
            SparsityProfile centred = calibrate(0.5, true, inputs).profile();
            SparsityProfile plain = calibrate(0.5, false, inputs).profile();
            double[][] sums = new double[2][8];
            long[][] counts = new long[2][8];
            forEachRouted(inputs, (layer, e, x, h) -> {
                for (float v : x) {
                    sums[layer][e] += v;
                }
                counts[layer][e] += x.length;
            });
            for (int layer = 0; layer < 2; layer++) {
                for (int e = 0; e < 8; e++) {
                    SparsityProfile.Expert c = centred.expert(layer, e);
                    double mean = sums[layer][e] / counts[layer][e];
                    assertThat(counts[layer][e]).isEqualTo(c.gateUp().tokens() * HIDDEN);
                    assertThat(mean).isCloseTo(0.5, within(0.1));
                    // 0.1 is about 3 standard errors of the mode estimate at 200 tokens (12 800 values)
                    assertThat((double) c.gateUp().mode()).as("layer %d expert %d", layer, e)
                            .isCloseTo(mean, within(c.gateUp().tokens() >= 200 ? 0.1 : 0.2));
                    assertThat(c.gateUp().threshold()).isCloseTo(0.674f, within(0.04f));
                    assertThat(plain.expert(layer, e).gateUp().threshold()).isCloseTo(0.755f, within(0.04f));
                    assertThat(plain.expert(layer, e).gateUp().mode()).isZero();
                }
            }
        }
    }

    @Test
    void inputsThatDoNotFitAreRefusedWithAReason() throws Exception {
        Path file = dir.resolve("bad.safetensors");
        float[] rows = gaussianRows(4, 0, 1);
        rows[2 * HIDDEN + 5] = Float.NaN;
        new SafetensorsWriter().addF32("hidden_states", new long[] {4, HIDDEN}, rows)
                .addF32("layer0.input", new long[] {4, 32}, new float[4 * 32]).write(file);
        assertThatThrownBy(() -> ActivationsFile.open(file, HIDDEN, List.of(0, 1), Integer.MAX_VALUE))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer0.input must be [tokens >= 1, 64] (the model's hidden size), got [4, 32]");
        try (ActivationsFile inputs = ActivationsFile.open(file, HIDDEN, List.of(1), Integer.MAX_VALUE)) {
            assertThatThrownBy(() -> calibrate(0.5, false, inputs)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessageContaining("no input for layer 0");
        }
        Path other = dir.resolve("other.safetensors");
        new SafetensorsWriter().addF32("hidden_states", new long[] {4, HIDDEN}, rows).write(other);
        try (ActivationsFile inputs = ActivationsFile.open(other, HIDDEN, List.of(0, 1), Integer.MAX_VALUE)) {
            assertThatThrownBy(() -> calibrate(0.5, false, inputs)).isInstanceOf(IllegalArgumentException.class)
                    .hasMessage("calibration input of layer 0, token 2, element 5 is NaN");
        }
        Path none = dir.resolve("none.safetensors");
        new SafetensorsWriter().addF32("x", new long[] {1, HIDDEN}, new float[HIDDEN]).write(none);
        assertThatThrownBy(() -> ActivationsFile.open(none, HIDDEN, List.of(0, 1), Integer.MAX_VALUE))
                .hasMessageContaining("has neither layer0.input nor hidden_states for MoE layer 0 (found [x])");
        assertThatThrownBy(() -> calibrate(0.5, false, new SyntheticActivations(32, 10, 1)))
                .hasMessage("calibration inputs have hidden size 32 but the model has 64");
        assertThatThrownBy(() -> Options.of(1.0, false)).hasMessage("target sparsity must be in [0, 1), got 1.0");
        assertThatThrownBy(() -> Options.of(-0.1, false)).isInstanceOf(IllegalArgumentException.class);
    }
}

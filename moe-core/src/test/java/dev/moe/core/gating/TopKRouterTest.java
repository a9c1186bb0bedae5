package dev.moe.core.gating;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.SafetensorsFile;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.config.MoeConfig.ScoringFunc;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;
import tools.jackson.databind.json.JsonMapper;

class TopKRouterTest {
    private static final double EPS = 1e-6;

    private static RouterSpec softmax(int experts, int k, boolean norm) {
        return new RouterSpec(ScoringFunc.SOFTMAX, experts, k, norm, 1, 1, 1.0);
    }

    private static float[] logs(double... values) {
        float[] out = new float[values.length];
        for (int i = 0; i < values.length; i++) {
            out[i] = (float) Math.log(values[i]);
        }
        return out;
    }

    private static double sigmoid(float x) {
        return 1.0 / (1.0 + Math.exp(-(double) x));
    }

    private static void assertWeights(RoutingDecision d, double... expected) {
        assertThat(d.routingWeights()).hasSize(expected.length);
        for (int i = 0; i < expected.length; i++) {
            assertThat((double) d.routingWeights()[i]).as("weight %d", i).isCloseTo(expected[i], within(EPS));
        }
    }

    @Test
    void softmaxWithoutRenormalisation() {
        // softmax(log [1, 2, 3, 4]) = [0.1, 0.2, 0.3, 0.4]
        RoutingDecision d = TopKRouter.route(softmax(4, 2, false), logs(1, 2, 3, 4), 1, null);
        assertThat(d.numTokens()).isEqualTo(1);
        assertThat(d.topK()).isEqualTo(2);
        assertThat(d.expertIds()).containsExactly(2, 3);
        assertWeights(d, 0.3, 0.4);
    }

    @Test
    void softmaxWithRenormalisation() {
        RoutingDecision d = TopKRouter.route(softmax(4, 2, true), logs(1, 2, 3, 4), 1, null);
        assertThat(d.expertIds()).containsExactly(2, 3);
        assertWeights(d, 3.0 / 7, 4.0 / 7);
        RoutingDecision three = TopKRouter.route(softmax(4, 3, true), logs(1, 2, 3, 4), 1, null);
        assertThat(three.expertIds()).containsExactly(1, 2, 3);
        assertWeights(three, 2.0 / 9, 3.0 / 9, 4.0 / 9);
    }

    @Test
    void softmaxIsShiftInvariantAndStableForLargeLogits() {
        float[] shifted = logs(1, 2, 3, 4);
        for (int i = 0; i < shifted.length; i++) {
            shifted[i] += 80f; // exp(80+) overflows float but the max is subtracted first
        }
        RoutingDecision d = TopKRouter.route(softmax(4, 2, false), shifted, 1, null);
        assertThat(d.expertIds()).containsExactly(2, 3);
        assertWeights(d, 0.3, 0.4);
        RoutingDecision huge = TopKRouter.route(softmax(3, 2, false), new float[] {1000f, 0f, -1000f}, 1, null);
        assertThat(huge.expertIds()).containsExactly(0, 1);
        assertWeights(huge, 1.0, Math.exp(-1000));
    }

    @Test
    void mixtralAlwaysRenormalisesOlmoeFollowsTheFlag() {
        JsonMapper json = JsonMapper.builder().build();
        MoeConfig mixtral = MoeConfig.from(json.readTree("""
                {"model_type":"mixtral","hidden_size":4,"num_hidden_layers":1,"num_local_experts":4,
                 "num_experts_per_tok":2,"norm_topk_prob":false}"""));
        RouterSpec spec = RouterSpec.of(mixtral);
        assertThat(spec.normTopkProb()).isTrue();
        assertThat(spec.numExperts()).isEqualTo(4);
        assertThat(spec.topK()).isEqualTo(2);
        assertThat(spec.routedScalingFactor()).isEqualTo(1.0);
        RoutingDecision d = TopKRouter.route(spec, logs(1, 2, 3, 4), 1, null);
        assertWeights(d, 3.0 / 7, 4.0 / 7);

        MoeConfig olmoe = MoeConfig.from(json.readTree("""
                {"model_type":"olmoe","hidden_size":4,"num_hidden_layers":1,"num_experts":4,
                 "num_experts_per_tok":2,"norm_topk_prob":false}"""));
        RoutingDecision o = TopKRouter.route(RouterSpec.of(olmoe), logs(1, 2, 3, 4), 1, null);
        assertWeights(o, 0.3, 0.4);
    }

    @Test
    void sigmoidCorrectionBiasSelectsButDoesNotWeigh() {
        // scores σ([0, 1, -1, 2]) = [0.5, 0.7311, 0.2689, 0.8808]; bias lifts expert 2 to 1.2689
        float[] logits = {0f, 1f, -1f, 2f};
        float[] bias = {0f, 0f, 1.0f, 0f};
        double s2 = 0.2689414213699951;
        double s3 = 0.8807970779778823;
        RouterSpec renorm = new RouterSpec(ScoringFunc.SIGMOID, 4, 2, true, 1, 1, 1.0);
        RoutingDecision d = TopKRouter.route(renorm, logits, 1, bias);
        assertThat(d.expertIds()).containsExactly(2, 3);
        assertWeights(d, s2 / (s2 + s3), s3 / (s2 + s3)); // unbiased: 0.2339, 0.7661

        RouterSpec raw = new RouterSpec(ScoringFunc.SIGMOID, 4, 2, false, 1, 1, 1.0);
        RoutingDecision r = TopKRouter.route(raw, logits, 1, bias);
        assertThat(r.expertIds()).containsExactly(2, 3);
        assertWeights(r, s2, s3); // not s2 + 1.0

        // without the bias expert 1 (0.7311) wins over expert 2
        RoutingDecision noBias = TopKRouter.route(raw, logits, 1, null);
        assertThat(noBias.expertIds()).containsExactly(1, 3);
        assertWeights(noBias, 0.7310585786300049, s3);
    }

    @Test
    void routedScalingFactorMultipliesFinalWeights() {
        float[] logits = {0f, 1f, -1f, 2f};
        float[] bias = {0f, 0f, 1.0f, 0f};
        double s2 = 0.2689414213699951;
        double s3 = 0.8807970779778823;
        RoutingDecision raw = TopKRouter.route(new RouterSpec(ScoringFunc.SIGMOID, 4, 2, false, 1, 1, 2.5), logits, 1, bias);
        assertWeights(raw, 2.5 * s2, 2.5 * s3);
        RoutingDecision norm = TopKRouter.route(new RouterSpec(ScoringFunc.SIGMOID, 4, 2, true, 1, 1, 2.5), logits, 1, bias);
        assertWeights(norm, 2.5 * s2 / (s2 + s3), 2.5 * s3 / (s2 + s3));
        assertThat((double) norm.routingWeights()[0] + norm.routingWeights()[1]).isCloseTo(2.5, within(EPS));
        // applies to softmax specs too when set
        RoutingDecision sm = TopKRouter.route(new RouterSpec(ScoringFunc.SOFTMAX, 4, 2, false, 1, 1, 2.0),
                logs(1, 2, 3, 4), 1, null);
        assertWeights(sm, 0.6, 0.8);
    }

    /** Bias that puts σ(logit) + bias at the target selection score. */
    private static float[] biasFor(float[] logits, double[] targets) {
        float[] bias = new float[logits.length];
        for (int e = 0; e < logits.length; e++) {
            bias[e] = (float) (targets[e] - sigmoid(logits[e]));
        }
        return bias;
    }

    @Test
    void groupLimitedSelectionMasksOtherGroupsToMinusInfinity() {
        // 8 experts in 4 groups of 2; keep 2 groups; k = 3.
        // selection scores:   g0 [0.9, -0.5]  g1 [0.8, -0.6]  g2 [0.1, 0.05]  g3 [0.05, 0.05]
        // group scores (top-2 sums): 0.4, 0.2, 0.15, 0.1 → keep g0, g1.
        // Only 2 experts of the kept groups have a positive score: with -inf masking the third choice is expert 1
        // (-0.5 > -0.6); an older 0.0 fill would have picked expert 4 (0.0 > -0.5).
        float[] logits = {1.0f, -0.5f, 0.5f, 0.0f, -1.0f, 2.0f, 0.3f, -0.2f};
        double[] targets = {0.9, -0.5, 0.8, -0.6, 0.1, 0.05, 0.05, 0.05};
        float[] bias = biasFor(logits, targets);
        RouterSpec spec = new RouterSpec(ScoringFunc.SIGMOID, 8, 3, true, 4, 2, 2.5);
        RoutingDecision d = TopKRouter.route(spec, logits, 1, bias);
        assertThat(d.expertIds()).containsExactly(0, 1, 2);
        double s0 = sigmoid(1.0f);
        double s1 = sigmoid(-0.5f);
        double s2 = sigmoid(0.5f);
        double sum = s0 + s1 + s2;
        assertWeights(d, 2.5 * s0 / sum, 2.5 * s1 / sum, 2.5 * s2 / sum);

        // the same scores without group limit pick the globally best three
        RoutingDecision flat = TopKRouter.route(new RouterSpec(ScoringFunc.SIGMOID, 8, 3, true, 1, 1, 2.5),
                logits, 1, bias);
        assertThat(flat.expertIds()).containsExactly(0, 2, 4);
    }

    @Test
    void maskToTopGroupsDirectly() {
        double[] scores = {0.9, -0.5, 0.8, -0.6, 0.1, 0.05, 0.05, 0.05};
        TopKRouter.maskToTopGroups(scores, 4, 2);
        assertThat(scores).containsExactly(0.9, -0.5, 0.8, -0.6, Double.NEGATIVE_INFINITY, Double.NEGATIVE_INFINITY,
                Double.NEGATIVE_INFINITY, Double.NEGATIVE_INFINITY);
        // groups of one expert: the group score is that expert's score
        double[] singles = {0.1, 0.7, 0.3, 0.5};
        TopKRouter.maskToTopGroups(singles, 4, 2);
        assertThat(singles).containsExactly(Double.NEGATIVE_INFINITY, 0.7, Double.NEGATIVE_INFINITY, 0.5);
    }

    @Test
    void groupScoreIsTheSumOfTheTopTwoNotTheMax() {
        // g0 [0.95, 0.05] sum 1.0 (best single expert); g1 [0.6, 0.6] sum 1.2 → g1 kept with topk_group 1
        float[] logits = new float[8];
        double[] targets = {0.95, 0.05, 0.6, 0.6, 0.1, 0.1, 0.1, 0.1};
        float[] bias = biasFor(logits, targets);
        RoutingDecision d = TopKRouter.route(new RouterSpec(ScoringFunc.SIGMOID, 8, 2, true, 4, 1, 1.0), logits, 1, bias);
        assertThat(d.expertIds()).containsExactly(2, 3);
        assertWeights(d, 0.5, 0.5); // all unbiased scores are σ(0)
    }

    @Test
    void idsAreAscendingWithWeightsAligned() {
        float[] logits = {1f, 3f, 2f, 5f, 4f};
        RoutingDecision d = TopKRouter.route(softmax(5, 3, false), logits, 1, null);
        // by score: 3, 4, 1 → reported ascending
        assertThat(d.expertIds()).containsExactly(1, 3, 4);
        double z = Math.exp(1) + Math.exp(3) + Math.exp(2) + Math.exp(5) + Math.exp(4);
        assertWeights(d, Math.exp(3) / z, Math.exp(5) / z, Math.exp(4) / z);
        assertThat(d.expertId(0, 1)).isEqualTo(3);
        assertThat((double) d.weight(0, 1)).isCloseTo(Math.exp(5) / z, within(EPS));
    }

    @Test
    void kEqualsOneAndKEqualsE() {
        float[] logits = {0.5f, -1f, 2f, 0f};
        double z = Math.exp(0.5) + Math.exp(-1) + Math.exp(2) + Math.exp(0);
        RoutingDecision one = TopKRouter.route(softmax(4, 1, false), logits, 1, null);
        assertThat(one.expertIds()).containsExactly(2);
        assertWeights(one, Math.exp(2) / z);
        RoutingDecision oneNorm = TopKRouter.route(softmax(4, 1, true), logits, 1, null);
        assertWeights(oneNorm, 1.0);

        RoutingDecision all = TopKRouter.route(softmax(4, 4, false), logits, 1, null);
        assertThat(all.expertIds()).containsExactly(0, 1, 2, 3);
        assertWeights(all, Math.exp(0.5) / z, Math.exp(-1) / z, Math.exp(2) / z, 1 / z);

        RoutingDecision allSigmoid = TopKRouter.route(new RouterSpec(ScoringFunc.SIGMOID, 4, 4, false, 2, 2, 1.0),
                logits, 1, new float[] {5f, 5f, -5f, 0f});
        assertThat(allSigmoid.expertIds()).containsExactly(0, 1, 2, 3);
        assertWeights(allSigmoid, sigmoid(0.5f), sigmoid(-1f), sigmoid(2f), 0.5);
    }

    @Test
    void tiesGoToTheLowerExpertId() {
        RoutingDecision d = TopKRouter.route(softmax(4, 2, false), new float[4], 1, null);
        assertThat(d.expertIds()).containsExactly(0, 1);
        assertWeights(d, 0.25, 0.25);
        RoutingDecision tail = TopKRouter.route(softmax(4, 2, false), new float[] {0f, 1f, 0f, 1f}, 1, null);
        assertThat(tail.expertIds()).containsExactly(1, 3);
    }

    @Test
    void batchRowsAreRoutedIndependently() {
        float[] logits = {
                0f, 0f, 5f, 4f,   // token 0 → 2, 3
                9f, 0f, 0f, 8f,   // token 1 → 0, 3
                1f, 2f, 0f, 0f};  // token 2 → 0, 1
        RoutingDecision d = TopKRouter.route(softmax(4, 2, true), logits, 3, null);
        assertThat(d.numTokens()).isEqualTo(3);
        assertThat(d.expertIds()).containsExactly(2, 3, 0, 3, 0, 1);
        double a = 1 / (1 + Math.exp(-1)); // e^5/(e^5+e^4)
        assertWeights(d, a, 1 - a, a, 1 - a, 1 - a, a);
        assertThat(d.expertId(2, 1)).isEqualTo(1);
    }

    // ---- conformance: routing decisions of every MoE layer of every case ----

    record LayerCase(String name, int layer) {
        @Override
        public String toString() {
            return name + " layer " + layer;
        }
    }

    static List<LayerCase> layers() {
        List<LayerCase> out = new ArrayList<>();
        JsonMapper json = JsonMapper.builder().build();
        for (String name : ConformanceCases.NAMES) {
            MoeConfig config = MoeConfig.from(json.readTree(ConformanceCases.dir(name).resolve("config.json").toFile()));
            for (int layer : config.moeLayers()) {
                out.add(new LayerCase(name, layer));
            }
        }
        return out;
    }

    @Test
    void everyConformanceLayerIsCovered() {
        assertThat(layers()).extracting(LayerCase::toString).containsExactly(
                "mixtral-tiny layer 0", "mixtral-tiny layer 1", "qwen2-moe-tiny layer 1", "qwen2-moe-tiny layer 2",
                "deepseek-v3-tiny layer 1", "deepseek-v3-tiny layer 2", "deepseek-v3-fp8-tiny layer 1");
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("layers")
    void matchesConformanceRouting(LayerCase lc) {
        try (Checkpoint checkpoint = Checkpoint.open(ConformanceCases.dir(lc.name()));
             SafetensorsFile expected = SafetensorsFile.open(ConformanceCases.dir(lc.name()).resolve("expected.safetensors"))) {
            MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
            ModelFamily family = config.family();
            int hidden = config.hiddenSize();
            int experts = config.numExperts();
            int k = config.numExpertsPerToken();
            String prefix = "layer" + lc.layer() + ".";
            float[] x = expected.readFloats(expected.tensor(prefix + "input"));
            int tokens = x.length / hidden;
            assertThat(tokens * hidden).isEqualTo(x.length);
            assertThat(tokens).isPositive();

            float[] w = checkpoint.readMatrix(family.routerWeight(lc.layer()), experts, hidden);
            float[] logits = new float[tokens * experts];
            for (int t = 0; t < tokens; t++) {
                for (int e = 0; e < experts; e++) {
                    double acc = 0;
                    for (int h = 0; h < hidden; h++) {
                        acc += (double) x[t * hidden + h] * w[e * hidden + h];
                    }
                    logits[t * experts + e] = (float) acc;
                }
            }
            String biasName = family.correctionBias(lc.layer());
            float[] bias = checkpoint.hasTensor(biasName) ? checkpoint.readFloats(biasName) : null;
            assertThat(bias != null).isEqualTo(family == ModelFamily.DEEPSEEK_V3);

            RoutingDecision d = TopKRouter.route(RouterSpec.of(config), logits, tokens, bias);
            int[] ids = expected.readInts(expected.tensor(prefix + "topk_ids"));
            float[] weights = expected.readFloats(expected.tensor(prefix + "topk_weights"));
            assertThat(ids).hasSize(tokens * k);
            assertThat(d.topK()).isEqualTo(k);
            assertThat(d.expertIds()).as("topk_ids").containsExactly(ids);
            for (int i = 0; i < weights.length; i++) {
                assertThat(d.routingWeights()[i]).as("topk_weights[%d]", i).isCloseTo(weights[i], within(1e-5f));
            }
        }
    }
}

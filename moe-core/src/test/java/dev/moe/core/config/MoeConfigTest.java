package dev.moe.core.config;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.checkpoint.CheckpointException;
import java.io.IOException;
import java.nio.file.Files;
import java.util.List;
import org.junit.jupiter.api.Test;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

class MoeConfigTest {
    private static final JsonMapper JSON = JsonMapper.builder().build();

    private static MoeConfig conformance(String name) throws IOException {
        return MoeConfig.from(JSON.readTree(Files.readAllBytes(ConformanceCases.dir(name).resolve("config.json"))))
                .validate();
    }

    private static MoeConfig parse(String json) {
        return MoeConfig.from(JSON.readTree(json));
    }

    @Test
    void mixtralTiny() throws IOException {
        MoeConfig c = conformance("mixtral-tiny");
        assertThat(c.family()).isEqualTo(ModelFamily.MIXTRAL);
        assertThat(c.hiddenSize()).isEqualTo(64);
        assertThat(c.numHiddenLayers()).isEqualTo(2);
        assertThat(c.numExperts()).isEqualTo(8);
        assertThat(c.numExpertsPerToken()).isEqualTo(2);
        assertThat(c.moeIntermediateSize()).isEqualTo(96);
        assertThat(c.sharedExpertIntermediateSize()).isZero();
        assertThat(c.hasSharedExpert()).isFalse();
        assertThat(c.normTopkProb()).isTrue();
        assertThat(c.scoringFunc()).isEqualTo(MoeConfig.ScoringFunc.SOFTMAX);
        assertThat(c.nGroup()).isEqualTo(1);
        assertThat(c.topkGroup()).isEqualTo(1);
        assertThat(c.routedScalingFactor()).isEqualTo(1.0);
        assertThat(c.moeLayers()).containsExactly(0, 1);
    }

    @Test
    void qwen2MoeTiny() throws IOException {
        MoeConfig c = conformance("qwen2-moe-tiny");
        assertThat(c.family()).isEqualTo(ModelFamily.QWEN2_MOE);
        assertThat(c.hiddenSize()).isEqualTo(64);
        assertThat(c.numHiddenLayers()).isEqualTo(3);
        assertThat(c.numExperts()).isEqualTo(16);
        assertThat(c.numExpertsPerToken()).isEqualTo(4);
        assertThat(c.moeIntermediateSize()).isEqualTo(32); // moe_intermediate_size, not intermediate_size (128)
        assertThat(c.sharedExpertIntermediateSize()).isEqualTo(64);
        assertThat(c.hasSharedExpert()).isTrue();
        assertThat(c.sharedExpertGated()).isTrue();
        assertThat(c.normTopkProb()).isFalse();
        assertThat(c.scoringFunc()).isEqualTo(MoeConfig.ScoringFunc.SOFTMAX);
        assertThat(c.routedScalingFactor()).isEqualTo(1.0);
        assertThat(c.moeLayers()).containsExactly(1, 2); // mlp_only_layers [0]
        assertThat(c.isMoeLayer(0)).isFalse();
        assertThat(c.isMoeLayer(1)).isTrue();
        assertThat(c.isMoeLayer(3)).isFalse();
    }

    @Test
    void deepseekV3Tiny() throws IOException {
        MoeConfig c = conformance("deepseek-v3-tiny");
        assertThat(c.family()).isEqualTo(ModelFamily.DEEPSEEK_V3);
        assertThat(c.hiddenSize()).isEqualTo(64);
        assertThat(c.numExperts()).isEqualTo(16);
        assertThat(c.numExpertsPerToken()).isEqualTo(4);
        assertThat(c.moeIntermediateSize()).isEqualTo(32);
        assertThat(c.sharedExpertIntermediateSize()).isEqualTo(32); // n_shared_experts 1 × 32
        assertThat(c.sharedExpertGated()).isFalse();
        assertThat(c.normTopkProb()).isTrue();
        assertThat(c.scoringFunc()).isEqualTo(MoeConfig.ScoringFunc.SIGMOID);
        assertThat(c.nGroup()).isEqualTo(4);
        assertThat(c.topkGroup()).isEqualTo(2);
        assertThat(c.routedScalingFactor()).isEqualTo(2.5);
        assertThat(c.moeLayers()).containsExactly(1, 2); // first_k_dense_replace 1
    }

    @Test
    void deepseekV3Fp8Tiny() throws IOException {
        MoeConfig c = conformance("deepseek-v3-fp8-tiny");
        assertThat(c.hiddenSize()).isEqualTo(256);
        assertThat(c.numExperts()).isEqualTo(8);
        assertThat(c.numExpertsPerToken()).isEqualTo(2);
        assertThat(c.moeIntermediateSize()).isEqualTo(192);
        assertThat(c.sharedExpertIntermediateSize()).isEqualTo(192);
        assertThat(c.nGroup()).isEqualTo(4);
        assertThat(c.topkGroup()).isEqualTo(2);
        assertThat(c.moeLayers()).containsExactly(1);
    }

    @Test
    void deepseekSeveralSharedExperts() {
        MoeConfig c = parse("""
                {"model_type":"deepseek_v3","hidden_size":8,"num_hidden_layers":5,"moe_intermediate_size":4,
                 "n_shared_experts":3,"n_routed_experts":8,"num_experts_per_tok":2,"n_group":2,"topk_group":1,
                 "first_k_dense_replace":2}""").validate();
        assertThat(c.sharedExpertIntermediateSize()).isEqualTo(12);
        assertThat(c.moeLayers()).containsExactly(2, 3, 4);
        assertThat(c.routedScalingFactor()).isEqualTo(2.5); // default
        assertThat(c.normTopkProb()).isTrue();               // default
    }

    @Test
    void deepseekFirstDenseBeyondLayerCountHasNoMoeLayers() {
        MoeConfig c = parse("""
                {"model_type":"deepseek_v3","hidden_size":8,"num_hidden_layers":2,"first_k_dense_replace":5}""");
        assertThat(c.moeLayers()).isEmpty();
        // defaults of DeepseekV3Config
        assertThat(c.numExperts()).isEqualTo(256);
        assertThat(c.numExpertsPerToken()).isEqualTo(8);
        assertThat(c.nGroup()).isEqualTo(8);
        assertThat(c.topkGroup()).isEqualTo(4);
        assertThat(c.moeIntermediateSize()).isEqualTo(2048);
    }

    @Test
    void qwenSparseStepAndMlpOnlyLayers() {
        MoeConfig c = parse("""
                {"model_type":"qwen2_moe","hidden_size":8,"num_hidden_layers":8,"decoder_sparse_step":2,
                 "mlp_only_layers":[3, 6],"num_experts":4,"num_experts_per_tok":2,"moe_intermediate_size":4,
                 "shared_expert_intermediate_size":0}""").validate();
        // (layer + 1) % 2 == 0 → 1, 3, 5, 7; minus mlp_only 3 (6 is not sparse anyway)
        assertThat(c.moeLayers()).containsExactly(1, 5, 7);
        assertThat(c.hasSharedExpert()).isFalse();

        MoeConfig step3 = parse("""
                {"model_type":"qwen3_moe","hidden_size":8,"num_hidden_layers":7,"decoder_sparse_step":3}""");
        assertThat(step3.moeLayers()).containsExactly(2, 5);
        assertThat(step3.sharedExpertIntermediateSize()).isZero(); // Qwen3 has no shared expert

        MoeConfig noExperts = parse("""
                {"model_type":"qwen2_moe","hidden_size":8,"num_hidden_layers":3,"num_experts":0}""");
        assertThat(noExperts.moeLayers()).isEmpty();
    }

    @Test
    void qwenDefaults() {
        MoeConfig q2 = parse("{\"model_type\":\"qwen2_moe\",\"hidden_size\":8,\"num_hidden_layers\":2}");
        assertThat(q2.numExperts()).isEqualTo(60);
        assertThat(q2.numExpertsPerToken()).isEqualTo(4);
        assertThat(q2.moeIntermediateSize()).isEqualTo(1408);
        assertThat(q2.sharedExpertIntermediateSize()).isEqualTo(5632);
        assertThat(q2.normTopkProb()).isFalse();
        assertThat(q2.moeLayers()).containsExactly(0, 1);
        MoeConfig q3 = parse("{\"model_type\":\"qwen3_moe\",\"hidden_size\":8,\"num_hidden_layers\":2,"
                + "\"norm_topk_prob\":true}");
        assertThat(q3.numExperts()).isEqualTo(128);
        assertThat(q3.numExpertsPerToken()).isEqualTo(8);
        assertThat(q3.moeIntermediateSize()).isEqualTo(768);
        assertThat(q3.normTopkProb()).isTrue();
    }

    @Test
    void mixtralIgnoresNormFlagAndHasDefaults() {
        MoeConfig c = parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"norm_topk_prob":false}""");
        assertThat(c.normTopkProb()).isTrue();
        assertThat(c.numExperts()).isEqualTo(8);
        assertThat(c.numExpertsPerToken()).isEqualTo(2);
        assertThat(c.moeIntermediateSize()).isEqualTo(14336);
    }

    @Test
    void olmoe() {
        MoeConfig c = parse("""
                {"model_type":"olmoe","hidden_size":8,"num_hidden_layers":2,"num_experts":16,"num_experts_per_tok":4,
                 "intermediate_size":12,"norm_topk_prob":false}""").validate();
        assertThat(c.family()).isEqualTo(ModelFamily.OLMOE);
        assertThat(c.numExperts()).isEqualTo(16);
        assertThat(c.numExpertsPerToken()).isEqualTo(4);
        assertThat(c.moeIntermediateSize()).isEqualTo(12);
        assertThat(c.normTopkProb()).isFalse();
        assertThat(c.moeLayers()).containsExactly(0, 1);
    }

    @Test
    void nullValuesFallBackToDefaults() {
        MoeConfig c = parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"num_local_experts":null}""");
        assertThat(c.numExperts()).isEqualTo(8);
    }

    @Test
    void unknownModelTypeListsSupportedTypes() {
        assertThatThrownBy(() -> parse("{\"model_type\":\"llama\",\"hidden_size\":8,\"num_hidden_layers\":1}"))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("unsupported model_type 'llama'")
                .hasMessageContaining("mixtral, qwen2_moe, qwen3_moe, olmoe, deepseek_v3");
        assertThatThrownBy(() -> ModelFamily.fromModelType("gpt2"))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("supported: mixtral");
        assertThat(ModelFamily.fromModelType("olmoe")).isEqualTo(ModelFamily.OLMOE);
    }

    @Test
    void missingModelTypeAndMissingSizes() {
        assertThatThrownBy(() -> parse("{\"hidden_size\":8}"))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("config.json has no model_type");
        assertThatThrownBy(() -> parse("{\"model_type\":\"mixtral\",\"num_hidden_layers\":1}"))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("config.json has no 'hidden_size'");
        assertThatThrownBy(() -> parse("{\"model_type\":\"mixtral\",\"hidden_size\":8,\"num_hidden_layers\":\"2\"}"))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("'num_hidden_layers'");
    }

    @Test
    void geluIsRefused() {
        assertThatThrownBy(() -> parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"hidden_act":"gelu"}"""))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("hidden_act 'gelu' is not supported")
                .hasMessageContaining("silu");
    }

    @Test
    void deepseekSoftmaxScoringIsRefused() {
        assertThatThrownBy(() -> parse("""
                {"model_type":"deepseek_v3","hidden_size":8,"num_hidden_layers":1,"scoring_func":"softmax"}"""))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("scoring_func 'softmax' is not supported");
    }

    @Test
    void validateRefusesTopKAboveExperts() {
        MoeConfig c = parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"num_local_experts":4,
                 "num_experts_per_tok":5,"intermediate_size":4}""");
        assertThatThrownBy(c::validate)
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("num_experts_per_tok 5 must be in [1, 4]");
        MoeConfig zero = parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"num_local_experts":4,
                 "num_experts_per_tok":0,"intermediate_size":4}""");
        assertThatThrownBy(zero::validate).hasMessageContaining("num_experts_per_tok 0");
        MoeConfig kEqualsE = parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"num_local_experts":4,
                 "num_experts_per_tok":4,"intermediate_size":4}""");
        assertThat(kEqualsE.validate()).isSameAs(kEqualsE);
    }

    @Test
    void validateRefusesBadGroups() {
        String base = """
                {"model_type":"deepseek_v3","hidden_size":8,"num_hidden_layers":2,"n_routed_experts":16,
                 "moe_intermediate_size":4,"num_experts_per_tok":%d,"n_group":%d,"topk_group":%d}""";
        assertThatThrownBy(() -> parse(base.formatted(2, 3, 1)).validate())
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("n_group 3 must divide 16 experts");
        assertThatThrownBy(() -> parse(base.formatted(2, 4, 5)).validate())
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("topk_group 5 must be in [1, n_group]");
        assertThatThrownBy(() -> parse(base.formatted(2, 0, 1)).validate())
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("n_group 0");
        assertThatThrownBy(() -> parse(base.formatted(2, 4, 0)).validate())
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("topk_group 0");
        // 1 group of 4 experts cannot supply 5
        assertThatThrownBy(() -> parse(base.formatted(5, 4, 1)).validate())
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("topk_group 1 groups of 4 experts cannot supply num_experts_per_tok 5");
        // exactly enough is fine
        assertThat(parse(base.formatted(4, 4, 1)).validate().topkGroup()).isEqualTo(1);
    }

    @Test
    void validateRefusesNonPositiveSizes() {
        MoeConfig c = parse("""
                {"model_type":"olmoe","hidden_size":8,"num_hidden_layers":1,"intermediate_size":0}""");
        assertThatThrownBy(c::validate)
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("must be positive");
    }

    @Test
    void moeLayersIsImmutable() {
        MoeConfig c = new MoeConfig(ModelFamily.MIXTRAL, 8, 2, 4, 2, 4, 0, true, MoeConfig.ScoringFunc.SOFTMAX, 1, 1,
                1.0, new java.util.ArrayList<>(List.of(0, 1)));
        assertThatThrownBy(() -> c.moeLayers().add(5)).isInstanceOf(UnsupportedOperationException.class);
    }

    @Test
    void familyTensorNames() {
        assertThat(ModelFamily.MIXTRAL.routerWeight(3)).isEqualTo("model.layers.3.block_sparse_moe.gate.weight");
        assertThat(ModelFamily.MIXTRAL.expertGateProj(0, 5)).isEqualTo("model.layers.0.block_sparse_moe.experts.5.w1.weight");
        assertThat(ModelFamily.MIXTRAL.expertUpProj(0, 5)).isEqualTo("model.layers.0.block_sparse_moe.experts.5.w3.weight");
        assertThat(ModelFamily.MIXTRAL.expertDownProj(0, 5)).isEqualTo("model.layers.0.block_sparse_moe.experts.5.w2.weight");
        assertThat(ModelFamily.QWEN2_MOE.sharedExpertProj(1, "up_proj")).isEqualTo("model.layers.1.mlp.shared_expert.up_proj.weight");
        assertThat(ModelFamily.QWEN2_MOE.sharedExpertGate(1)).isEqualTo("model.layers.1.mlp.shared_expert_gate.weight");
        assertThat(ModelFamily.DEEPSEEK_V3.sharedExpertProj(2, "down_proj"))
                .isEqualTo("model.layers.2.mlp.shared_experts.down_proj.weight");
        assertThat(ModelFamily.DEEPSEEK_V3.correctionBias(2)).isEqualTo("model.layers.2.mlp.gate.e_score_correction_bias");
        assertThat(ModelFamily.OLMOE.sharedExpertProj(0, "up_proj")).isNull();
        assertThat(ModelFamily.QWEN3_MOE.expertDownProj(4, 0)).isEqualTo("model.layers.4.mlp.experts.0.down_proj.weight");
    }

    @Test
    void decoderSparseStepZeroIsACheckpointException() {
        assertThatThrownBy(() -> parse("""
                {"model_type":"qwen2_moe","hidden_size":8,"num_hidden_layers":2,"decoder_sparse_step":0}"""))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("decoder_sparse_step");
    }

    @Test
    void nonNumericOptionalKeyIsACheckpointException() {
        assertThatThrownBy(() -> parse("""
                {"model_type":"mixtral","hidden_size":8,"num_hidden_layers":1,"num_local_experts":"abc"}"""))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("num_local_experts");
    }

    @Test
    void checkpointConfigNodeParsesLikeTheFile() throws IOException {
        for (String name : ConformanceCases.NAMES) {
            try (dev.moe.core.checkpoint.Checkpoint c =
                         dev.moe.core.checkpoint.Checkpoint.open(ConformanceCases.dir(name))) {
                assertThat(MoeConfig.from(c.config())).as(name).isEqualTo(conformance(name));
            }
        }
        JsonNode node = JSON.readTree("{\"model_type\":\"olmoe\",\"hidden_size\":8,\"num_hidden_layers\":1}");
        assertThat(MoeConfig.from(node).numExperts()).isEqualTo(64);
        assertThat(MoeConfig.from(node).numExpertsPerToken()).isEqualTo(8);
    }
}

package dev.moe.core.config;

import dev.moe.core.checkpoint.CheckpointException;
import java.util.ArrayList;
import java.util.List;
import java.util.Set;
import java.util.TreeSet;
import tools.jackson.databind.JsonNode;

/**
 * What the MoE blocks of a checkpoint need from its {@code config.json}, resolved per family with the defaults of the
 * transformers config classes when a key is absent.
 *
 * @param family                        model family ({@code model_type})
 * @param hiddenSize                    {@code hidden_size}
 * @param numHiddenLayers               {@code num_hidden_layers}
 * @param numExperts                    routed experts per MoE layer ({@code num_local_experts} / {@code num_experts} /
 *                                      {@code n_routed_experts})
 * @param numExpertsPerToken            top-k ({@code num_experts_per_tok})
 * @param moeIntermediateSize           intermediate size of one routed expert
 * @param sharedExpertIntermediateSize  intermediate size of the shared-expert MLP, 0 when none
 * @param normTopkProb                  renormalise the top-k weights (Mixtral: always)
 * @param scoringFunc                   softmax or sigmoid router scores
 * @param nGroup                        expert groups for group-limited top-k (1 = plain top-k)
 * @param topkGroup                     groups kept per token
 * @param routedScalingFactor           multiplier of the routed weights (DeepSeek)
 * @param moeLayers                     decoder layers that have a MoE block, ascending
 */
public record MoeConfig(ModelFamily family, int hiddenSize, int numHiddenLayers, int numExperts, int numExpertsPerToken,
                        int moeIntermediateSize, int sharedExpertIntermediateSize, boolean normTopkProb,
                        ScoringFunc scoringFunc, int nGroup, int topkGroup, double routedScalingFactor,
                        List<Integer> moeLayers) {

    public enum ScoringFunc { SOFTMAX, SIGMOID }

    public MoeConfig {
        moeLayers = List.copyOf(moeLayers);
    }

    public static MoeConfig from(JsonNode json) {
        String modelType = json.path("model_type").asString("");
        if (modelType.isEmpty()) {
            throw new CheckpointException("config.json has no model_type");
        }
        ModelFamily family;
        try {
            family = ModelFamily.fromModelType(modelType);
        } catch (IllegalArgumentException e) {
            throw new CheckpointException(e.getMessage());
        }
        String act = json.path("hidden_act").asString("silu");
        if (!act.equals("silu")) {
            throw new CheckpointException("config.json hidden_act '" + act + "' is not supported: experts are SwiGLU (silu)");
        }
        int hiddenSize = required(json, "hidden_size");
        int numLayers = required(json, "num_hidden_layers");
        return switch (family) {
            case MIXTRAL -> new MoeConfig(family, hiddenSize, numLayers,
                    intOr(json, "num_local_experts", 8), intOr(json, "num_experts_per_tok", 2),
                    intOr(json, "intermediate_size", 14336), 0,
                    true, // Mixtral renormalises the top-k weights unconditionally (no flag)
                    ScoringFunc.SOFTMAX, 1, 1, 1.0, range(0, numLayers));
            case QWEN2_MOE, QWEN3_MOE -> {
                int numExperts = intOr(json, "num_experts", family == ModelFamily.QWEN2_MOE ? 60 : 128);
                int sparseStep = intOr(json, "decoder_sparse_step", 1);
                if (sparseStep < 1) {
                    throw new CheckpointException("config.json decoder_sparse_step " + sparseStep + " must be >= 1");
                }
                Set<Integer> mlpOnly = new TreeSet<>();
                json.path("mlp_only_layers").forEach(n -> mlpOnly.add(n.asInt()));
                List<Integer> moeLayers = new ArrayList<>();
                for (int layer = 0; layer < numLayers; layer++) {
                    // Qwen2MoeDecoderLayer / Qwen3MoeDecoderLayer: the same rule
                    if (!mlpOnly.contains(layer) && numExperts > 0 && (layer + 1) % sparseStep == 0) {
                        moeLayers.add(layer);
                    }
                }
                yield new MoeConfig(family, hiddenSize, numLayers, numExperts,
                        intOr(json, "num_experts_per_tok", family == ModelFamily.QWEN2_MOE ? 4 : 8),
                        intOr(json, "moe_intermediate_size", family == ModelFamily.QWEN2_MOE ? 1408 : 768),
                        family == ModelFamily.QWEN2_MOE ? intOr(json, "shared_expert_intermediate_size", 5632) : 0,
                        json.path("norm_topk_prob").asBoolean(false), // Qwen2-MoE checkpoints: false; Qwen3: true
                        ScoringFunc.SOFTMAX, 1, 1, 1.0, moeLayers);
            }
            case OLMOE -> new MoeConfig(family, hiddenSize, numLayers,
                    intOr(json, "num_experts", 64), intOr(json, "num_experts_per_tok", 8),
                    intOr(json, "intermediate_size", 1024), 0,
                    json.path("norm_topk_prob").asBoolean(false), ScoringFunc.SOFTMAX, 1, 1, 1.0, range(0, numLayers));
            case DEEPSEEK_V3 -> {
                String scoring = json.path("scoring_func").asString("sigmoid");
                if (!scoring.equals("sigmoid")) {
                    throw new CheckpointException("deepseek_v3 scoring_func '" + scoring + "' is not supported (sigmoid only)");
                }
                int moeIntermediate = intOr(json, "moe_intermediate_size", 2048);
                int numShared = intOr(json, "n_shared_experts", 1);
                int firstDense = intOr(json, "first_k_dense_replace", 3);
                yield new MoeConfig(family, hiddenSize, numLayers,
                        intOr(json, "n_routed_experts", 256), intOr(json, "num_experts_per_tok", 8),
                        moeIntermediate, moeIntermediate * numShared,
                        json.path("norm_topk_prob").asBoolean(true), ScoringFunc.SIGMOID,
                        intOr(json, "n_group", 8), intOr(json, "topk_group", 4),
                        json.path("routed_scaling_factor").asDouble(2.5),
                        // DeepseekV3DecoderLayer: MoE iff layer_idx >= first_k_dense_replace
                        range(Math.min(firstDense, numLayers), numLayers));
            }
        };
    }

    /** Checks the values against each other; called once after parsing. */
    public MoeConfig validate() {
        if (hiddenSize <= 0 || numExperts <= 0 || moeIntermediateSize <= 0) {
            throw new CheckpointException("config.json: hidden_size, experts and intermediate size must be positive");
        }
        if (numExpertsPerToken < 1 || numExpertsPerToken > numExperts) {
            throw new CheckpointException("config.json: num_experts_per_tok " + numExpertsPerToken + " must be in [1, "
                    + numExperts + "]");
        }
        if (nGroup < 1 || numExperts % nGroup != 0 || topkGroup < 1 || topkGroup > nGroup) {
            throw new CheckpointException("config.json: n_group " + nGroup + " must divide " + numExperts
                    + " experts and topk_group " + topkGroup + " must be in [1, n_group]");
        }
        if (nGroup > 1 && topkGroup * (numExperts / nGroup) < numExpertsPerToken) {
            throw new CheckpointException("config.json: topk_group " + topkGroup + " groups of " + numExperts / nGroup
                    + " experts cannot supply num_experts_per_tok " + numExpertsPerToken);
        }
        return this;
    }

    public boolean isMoeLayer(int layer) {
        return moeLayers.contains(layer);
    }

    public boolean hasSharedExpert() {
        return sharedExpertIntermediateSize > 0;
    }

    /** Qwen2-MoE scales its shared expert by {@code sigmoid(shared_expert_gate(x))}; DeepSeek adds it ungated. */
    public boolean sharedExpertGated() {
        return family == ModelFamily.QWEN2_MOE;
    }

    private static int required(JsonNode json, String key) {
        JsonNode node = json.get(key);
        if (node == null || node.isNull()) {
            throw new CheckpointException("config.json has no '" + key + "'");
        }
        return integer(key, node);
    }

    private static int intOr(JsonNode json, String key, int fallback) {
        JsonNode node = json.get(key);
        return node == null || node.isNull() ? fallback : integer(key, node);
    }

    /** A non-negative integer value (2.0 is accepted, 2.5 and "abc" are not). */
    private static int integer(String key, JsonNode node) {
        if (!node.isNumber() || node.asDouble() != Math.rint(node.asDouble()) || node.asDouble() < 0
                || node.asDouble() > Integer.MAX_VALUE) {
            throw new CheckpointException("config.json '" + key + "' must be a non-negative integer, got " + node);
        }
        return node.asInt();
    }

    private static List<Integer> range(int from, int to) {
        List<Integer> layers = new ArrayList<>();
        for (int i = from; i < to; i++) {
            layers.add(i);
        }
        return layers;
    }
}

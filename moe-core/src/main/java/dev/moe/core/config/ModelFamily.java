package dev.moe.core.config;

import java.util.Arrays;
import java.util.stream.Collectors;

/**
 * The MoE model families served, keyed by config.json {@code model_type}, with their checkpoint tensor names.
 * Routing semantics live in {@link dev.moe.core.gating.RouterSpec#of(MoeConfig)}.
 */
public enum ModelFamily {
    /** MixtralSparseMoeBlock: {@code block_sparse_moe.experts.E.w1/w3/w2} = gate/up/down. */
    MIXTRAL("mixtral", "block_sparse_moe", "w1", "w3", "w2"),
    /** Qwen2MoeSparseMoeBlock: sigmoid-gated shared expert. */
    QWEN2_MOE("qwen2_moe", "mlp", "gate_proj", "up_proj", "down_proj"),
    /** Qwen3MoeSparseMoeBlock: no shared expert. */
    QWEN3_MOE("qwen3_moe", "mlp", "gate_proj", "up_proj", "down_proj"),
    /** OlmoeSparseMoeBlock. */
    OLMOE("olmoe", "mlp", "gate_proj", "up_proj", "down_proj"),
    /** DeepseekV3MoE: sigmoid router with e_score_correction_bias, ungated shared experts. */
    DEEPSEEK_V3("deepseek_v3", "mlp", "gate_proj", "up_proj", "down_proj");

    public final String modelType;
    private final String block;
    private final String gateProj;
    private final String upProj;
    private final String downProj;

    ModelFamily(String modelType, String block, String gateProj, String upProj, String downProj) {
        this.modelType = modelType;
        this.block = block;
        this.gateProj = gateProj;
        this.upProj = upProj;
        this.downProj = downProj;
    }

    public static ModelFamily fromModelType(String modelType) {
        for (ModelFamily f : values()) {
            if (f.modelType.equals(modelType)) {
                return f;
            }
        }
        throw new IllegalArgumentException("unsupported model_type '" + modelType + "' in config.json; supported: "
                + Arrays.stream(values()).map(f -> f.modelType).collect(Collectors.joining(", ")));
    }

    private String blockPrefix(int layer) {
        return "model.layers." + layer + "." + block + ".";
    }

    /** Router (gate) weight, {@code [numExperts, hiddenSize]}. */
    public String routerWeight(int layer) {
        return blockPrefix(layer) + "gate.weight";
    }

    /** DeepSeek-V3 selection bias, {@code [numExperts]}. */
    public String correctionBias(int layer) {
        return blockPrefix(layer) + "gate.e_score_correction_bias";
    }

    /** {@code [moeIntermediateSize, hiddenSize]}. */
    public String expertGateProj(int layer, int expert) {
        return blockPrefix(layer) + "experts." + expert + "." + gateProj + ".weight";
    }

    /** {@code [moeIntermediateSize, hiddenSize]}. */
    public String expertUpProj(int layer, int expert) {
        return blockPrefix(layer) + "experts." + expert + "." + upProj + ".weight";
    }

    /** {@code [hiddenSize, moeIntermediateSize]}. */
    public String expertDownProj(int layer, int expert) {
        return blockPrefix(layer) + "experts." + expert + "." + downProj + ".weight";
    }

    /** Shared expert projection ({@code gate_proj}, {@code up_proj} or {@code down_proj}); null when the family has none. */
    public String sharedExpertProj(int layer, String proj) {
        return switch (this) {
            case QWEN2_MOE -> blockPrefix(layer) + "shared_expert." + proj + ".weight";
            case DEEPSEEK_V3 -> blockPrefix(layer) + "shared_experts." + proj + ".weight";
            default -> null;
        };
    }

    /** Qwen2-MoE: {@code shared_expert_gate.weight} {@code [1, hiddenSize]}. */
    public String sharedExpertGate(int layer) {
        return blockPrefix(layer) + "shared_expert_gate.weight";
    }
}

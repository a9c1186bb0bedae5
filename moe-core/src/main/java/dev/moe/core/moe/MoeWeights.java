package dev.moe.core.moe;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.SwiGluExpert;
import dev.moe.core.kernels.WeightType;

/**
 * Reads MoE weights out of a checkpoint by their Hugging Face names, widening them to float32 (FP8 blocks
 * dequantised). Every other tensor of the checkpoint is never touched.
 */
public final class MoeWeights {
    private MoeWeights() {
    }

    /** The gate (and bias, shared expert) of one MoE layer. */
    public static RouterLayer loadRouterLayer(Checkpoint checkpoint, MoeConfig config, int layer) {
        requireMoeLayer(config, layer);
        ModelFamily family = config.family();
        int hidden = config.hiddenSize();
        float[] routerWeight = checkpoint.readMatrix(family.routerWeight(layer), config.numExperts(), hidden);
        float[] bias = null;
        if (family == ModelFamily.DEEPSEEK_V3) {
            String name = family.correctionBias(layer);
            if (checkpoint.hasTensor(name)) {
                bias = checkpoint.readFloats(name);
                if (bias.length != config.numExperts()) {
                    throw new CheckpointException("'" + name + "' has " + bias.length + " values, expected "
                            + config.numExperts());
                }
            }
        }
        SwiGluExpert shared = null;
        float[] sharedGate = null;
        if (config.hasSharedExpert()) {
            int inter = config.sharedExpertIntermediateSize();
            shared = new SwiGluExpert(hidden, inter,
                    checkpoint.readMatrix(family.sharedExpertProj(layer, "gate_proj"), inter, hidden),
                    checkpoint.readMatrix(family.sharedExpertProj(layer, "up_proj"), inter, hidden),
                    checkpoint.readMatrix(family.sharedExpertProj(layer, "down_proj"), hidden, inter));
            if (config.sharedExpertGated()) {
                sharedGate = checkpoint.readMatrix(family.sharedExpertGate(layer), 1, hidden);
            }
        }
        return new RouterLayer(layer, config.numExperts(), hidden, routerWeight, bias, shared, sharedGate);
    }

    /** One routed expert of one MoE layer, float32. */
    public static SwiGluExpert loadExpert(Checkpoint checkpoint, MoeConfig config, int layer, int expert) {
        float[][] w = readExpert(checkpoint, config, layer, expert);
        return new SwiGluExpert(config.hiddenSize(), config.moeIntermediateSize(), w[0], w[1], w[2]);
    }

    /** One routed expert packed for the FFN kernels in {@code type} (weights widened to float32 first, then narrowed). */
    public static PackedExpert loadPackedExpert(Checkpoint checkpoint, MoeConfig config, int layer, int expert,
                                                WeightType type) {
        return loadPackedExpert(checkpoint, config, layer, expert, type, PanelMatrix.Layout.PANELS);
    }

    /** {@link #loadPackedExpert(Checkpoint, MoeConfig, int, int, WeightType)} in the given layout. */
    public static PackedExpert loadPackedExpert(Checkpoint checkpoint, MoeConfig config, int layer, int expert,
                                                WeightType type, PanelMatrix.Layout layout) {
        float[][] w = readExpert(checkpoint, config, layer, expert);
        return PackedExpert.pack(config.hiddenSize(), config.moeIntermediateSize(), w[0], w[1], w[2], type, layout);
    }

    /** gate_proj, up_proj {@code [inter, hidden]} and down_proj {@code [hidden, inter]} of one routed expert. */
    private static float[][] readExpert(Checkpoint checkpoint, MoeConfig config, int layer, int expert) {
        requireMoeLayer(config, layer);
        if (expert < 0 || expert >= config.numExperts()) {
            throw new CheckpointException("expert " + expert + " is not in [0, " + config.numExperts() + ")");
        }
        ModelFamily family = config.family();
        int hidden = config.hiddenSize();
        int inter = config.moeIntermediateSize();
        return new float[][] {
                checkpoint.readMatrix(family.expertGateProj(layer, expert), inter, hidden),
                checkpoint.readMatrix(family.expertUpProj(layer, expert), inter, hidden),
                checkpoint.readMatrix(family.expertDownProj(layer, expert), hidden, inter)};
    }

    private static void requireMoeLayer(MoeConfig config, int layer) {
        if (!config.isMoeLayer(layer)) {
            throw new CheckpointException("layer " + layer + " has no MoE block");
        }
    }
}

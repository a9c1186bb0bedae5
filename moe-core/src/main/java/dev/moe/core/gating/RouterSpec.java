package dev.moe.core.gating;

import dev.moe.core.config.MoeConfig;
import dev.moe.core.config.MoeConfig.ScoringFunc;

/**
 * The knobs that make up every family's top-k routing, as vLLM's FusedMoE names them.
 *
 * @param scoringFunc          softmax (Mixtral, Qwen, OLMoE) or sigmoid (DeepSeek-V3)
 * @param numExperts           routed experts
 * @param topK                 experts chosen per token
 * @param normTopkProb         renormalise the chosen weights to sum to 1
 * @param nGroup               expert groups (1 = no group limit)
 * @param topkGroup            groups a token may choose from
 * @param routedScalingFactor  multiplier applied to the final weights
 */
public record RouterSpec(ScoringFunc scoringFunc, int numExperts, int topK, boolean normTopkProb, int nGroup,
                         int topkGroup, double routedScalingFactor) {

    public static RouterSpec of(MoeConfig config) {
        return new RouterSpec(config.scoringFunc(), config.numExperts(), config.numExpertsPerToken(),
                config.normTopkProb(), config.nGroup(), config.topkGroup(), config.routedScalingFactor());
    }
}

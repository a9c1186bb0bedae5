package dev.moe.core.moe;

import dev.moe.core.kernels.Kernels;
import dev.moe.core.kernels.SwiGluExpert;

/**
 * What the router holds of one MoE layer: the gate, the DeepSeek selection bias, and the shared expert (computed on
 * the router, next to the gate, so expert servers only ever see routed experts).
 *
 * @param layer             decoder layer index
 * @param routerWeight      {@code [numExperts, hiddenSize]} ({@code mlp.gate.weight})
 * @param correctionBias    {@code [numExperts]} DeepSeek-V3 {@code e_score_correction_bias}, else null
 * @param sharedExpert      shared-expert MLP, or null
 * @param sharedExpertGate  {@code [1, hiddenSize]} Qwen2-MoE {@code shared_expert_gate.weight}, or null (ungated)
 */
public record RouterLayer(int layer, int numExperts, int hiddenSize, float[] routerWeight, float[] correctionBias,
                          SwiGluExpert sharedExpert, float[] sharedExpertGate) {

    /** {@code router_logits = F.linear(hidden_states, self.weight)}: {@code [numTokens, numExperts]}. */
    public float[] routerLogits(Kernels kernels, float[] x, int numTokens) {
        float[] logits = new float[numTokens * numExperts];
        kernels.linear(routerWeight, numExperts, hiddenSize, x, numTokens, logits);
        return logits;
    }

    /**
     * Adds the shared expert's contribution to {@code out}.
     * Qwen2-MoE: {@code F.sigmoid(self.shared_expert_gate(x)) * self.shared_expert(x)};
     * DeepSeek-V3: {@code self.shared_experts(x)}, ungated.
     */
    public void addSharedExpert(Kernels kernels, float[] x, int numTokens, float[] out) {
        if (sharedExpert == null) {
            return;
        }
        float[] shared = new float[numTokens * hiddenSize];
        sharedExpert.forward(kernels, x, numTokens, shared);
        for (int t = 0; t < numTokens; t++) {
            float scale = 1f;
            if (sharedExpertGate != null) {
                float g = kernels.dot(sharedExpertGate, 0, x, t * hiddenSize, hiddenSize);
                scale = 1f / (1f + (float) Math.exp(-g));
            }
            int row = t * hiddenSize;
            for (int h = 0; h < hiddenSize; h++) {
                out[row + h] += scale * shared[row + h];
            }
        }
    }
}

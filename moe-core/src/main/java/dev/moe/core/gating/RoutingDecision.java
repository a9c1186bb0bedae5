package dev.moe.core.gating;

/**
 * The routing of a batch: for each token its {@code topK} experts, ascending, and their combine weights.
 *
 * @param numTokens       rows
 * @param topK            experts per token
 * @param expertIds       {@code [numTokens, topK]} row-major, ascending within a row
 * @param routingWeights  {@code [numTokens, topK]} aligned with {@code expertIds}
 */
public record RoutingDecision(int numTokens, int topK, int[] expertIds, float[] routingWeights) {

    public int expertId(int token, int slot) {
        return expertIds[token * topK + slot];
    }

    public float weight(int token, int slot) {
        return routingWeights[token * topK + slot];
    }
}

package dev.moe.expert.shard;

import dev.moe.core.kernels.Kernels;
import dev.moe.core.kernels.SwiGluExpert;

/**
 * Expert compute of one call: groups the (token, expert, weight) assignments by expert so every expert reads its
 * weights once for all its tokens, then accumulates {@code weight · expert(x)} into each token's partial sum.
 */
public final class ExpertComputer {
    private final Kernels kernels;

    public ExpertComputer(Kernels kernels) {
        this.kernels = kernels;
    }

    /**
     * @param experts          the expert of each assignment (aligned with expertIds)
     * @param x                {@code [numTokens, hiddenSize]}
     * @param expertsPerToken  assignments per token, in token order
     * @param expertIds        global expert id of each assignment
     * @param routingWeights   combine weight of each assignment
     * @return {@code [numTokens, hiddenSize]}: per token Σ weight · expert(x)
     */
    public float[] compute(SwiGluExpert[] experts, float[] x, int numTokens, int hiddenSize, int[] expertsPerToken,
                           int[] expertIds, float[] routingWeights) {
        int numAssignments = expertIds.length;
        int[] tokenOf = new int[numAssignments];
        for (int t = 0, a = 0; t < numTokens; t++) {
            for (int j = 0; j < expertsPerToken[t]; j++) {
                tokenOf[a++] = t;
            }
        }
        // Bucket assignments by expert id (a counting sort keeps token order inside each bucket).
        int maxId = 0;
        for (int id : expertIds) {
            maxId = Math.max(maxId, id);
        }
        int[] start = new int[maxId + 2];
        for (int id : expertIds) {
            start[id + 1]++;
        }
        for (int i = 0; i <= maxId; i++) {
            start[i + 1] += start[i];
        }
        int[] order = new int[numAssignments];
        int[] fill = start.clone();
        for (int a = 0; a < numAssignments; a++) {
            order[fill[expertIds[a]]++] = a;
        }
        float[] out = new float[numTokens * hiddenSize];
        for (int id = 0; id <= maxId; id++) {
            int n = start[id + 1] - start[id];
            if (n == 0) {
                continue;
            }
            float[] batch = new float[n * hiddenSize];
            for (int i = 0; i < n; i++) {
                int t = tokenOf[order[start[id] + i]];
                System.arraycopy(x, t * hiddenSize, batch, i * hiddenSize, hiddenSize);
            }
            float[] y = new float[n * hiddenSize];
            experts[order[start[id]]].forward(kernels, batch, n, y);
            // out[t] += routing_weight · expert(x_t): the weight is applied here, visibly, before the sum.
            for (int i = 0; i < n; i++) {
                int a = order[start[id] + i];
                float w = routingWeights[a];
                int row = tokenOf[a] * hiddenSize;
                for (int h = 0; h < hiddenSize; h++) {
                    out[row + h] += w * y[i * hiddenSize + h];
                }
            }
        }
        return out;
    }
}

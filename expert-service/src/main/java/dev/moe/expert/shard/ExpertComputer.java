package dev.moe.expert.shard;

import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.sparsity.SparsityThresholds;
import java.util.ArrayList;
import java.util.List;

/**
 * Expert compute of one call: groups the (token, expert, weight) assignments by expert so every expert reads its
 * weights once for all its tokens (one {@link ExpertFfn} run for the whole call, both loops spread over the kernel
 * pool), then accumulates {@code weight · expert(x)} into each token's partial sum.
 */
public final class ExpertComputer {
    private final ExpertFfn ffn;

    public ExpertComputer(ExpertFfn ffn) {
        this.ffn = ffn;
    }

    /** The partial sums of a call and what each expert's projections did. */
    public record Result(float[] partial, int[] expertIds, int[] tokensPerExpert, ExpertFfn.Stats[] stats) {
    }

    /**
     * @param experts          the expert of each assignment (aligned with expertIds)
     * @param thresholds       its SCAP thresholds, or null entries for the dense path
     * @param x                {@code [numTokens, hiddenSize]}
     * @param expertsPerToken  assignments per token, in token order
     * @param expertIds        global expert id of each assignment
     * @param routingWeights   combine weight of each assignment
     * @return per token Σ weight · expert(x), {@code [numTokens, hiddenSize]}, and per-expert statistics
     */
    public Result compute(PackedExpert[] experts, SparsityThresholds[] thresholds, float[] x, int numTokens,
                          int hiddenSize, int[] expertsPerToken, int[] expertIds, float[] routingWeights) {
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
        // Dispatch: one batch of rows per expert.
        List<ExpertFfn.Work> work = new ArrayList<>();
        List<Integer> ids = new ArrayList<>();
        for (int id = 0; id <= maxId; id++) {
            int n = start[id + 1] - start[id];
            if (n == 0) {
                continue;
            }
            float[] batch = new float[n * hiddenSize];
            for (int i = 0; i < n; i++) {
                System.arraycopy(x, tokenOf[order[start[id] + i]] * hiddenSize, batch, i * hiddenSize, hiddenSize);
            }
            int first = order[start[id]];
            work.add(new ExpertFfn.Work(experts[first], batch, n, thresholds[first], new float[n * hiddenSize]));
            ids.add(id);
        }
        ExpertFfn.Stats[] stats = ffn.run(work);
        // Combine locally: out[t] += routing_weight · expert(x_t), the weight applied here, visibly, before the sum.
        float[] out = new float[numTokens * hiddenSize];
        int[] tokensPerExpert = new int[work.size()];
        for (int w = 0; w < work.size(); w++) {
            int id = ids.get(w);
            float[] y = work.get(w).y();
            tokensPerExpert[w] = work.get(w).numTokens();
            for (int i = 0; i < tokensPerExpert[w]; i++) {
                int a = order[start[id] + i];
                float weight = routingWeights[a];
                int row = tokenOf[a] * hiddenSize;
                for (int h = 0; h < hiddenSize; h++) {
                    out[row + h] += weight * y[i * hiddenSize + h];
                }
            }
        }
        return new Result(out, ids.stream().mapToInt(Integer::intValue).toArray(), tokensPerExpert, stats);
    }
}

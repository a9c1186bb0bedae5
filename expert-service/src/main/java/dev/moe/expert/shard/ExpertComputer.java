package dev.moe.expert.shard;

import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.sparsity.SparsityThresholds;
import java.util.ArrayList;
import java.util.List;

/**
 * Expert compute of one call: groups the (token, expert, weight) assignments by expert so every expert reads its
 * weights once for all its tokens (one {@link ExpertFfn} run for the whole call, both loops spread over the kernel
 * pool), then accumulates {@code weight · expert(x)} into each token's partial sum. A call whose (token, expert) pairs
 * would need more working memory than the server allows runs as several passes over consecutive tokens, so any call
 * within the token limit is served.
 */
public final class ExpertComputer {
    /** Working memory of one pass by default: each (token, expert) pair holds a copy of x, its h and its y. */
    public static final long DEFAULT_MAX_PASS_BYTES = 2L << 30;

    private final ExpertFfn ffn;
    private final long maxPassBytes;

    public ExpertComputer(ExpertFfn ffn) {
        this(ffn, DEFAULT_MAX_PASS_BYTES);
    }

    /** @param maxPassBytes working memory of the pairs of one pass (a pass holds at least one token) */
    public ExpertComputer(ExpertFfn ffn, long maxPassBytes) {
        if (maxPassBytes <= 0) {
            throw new IllegalArgumentException("maxPassBytes must be positive, got " + maxPassBytes);
        }
        this.ffn = ffn;
        this.maxPassBytes = maxPassBytes;
    }

    /**
     * The partial sums of a call and what each expert run did: one entry per (pass, expert), so an expert appears
     * once per pass that used it.
     */
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
        float[] out = new float[numTokens * hiddenSize];
        List<Run> runs = new ArrayList<>();
        if (expertIds.length > 0) {
            long pairBytes = (2L * hiddenSize + experts[0].intermediateSize()) * Float.BYTES;
            long maxPairs = Math.max(1, maxPassBytes / pairBytes);
            // Passes over consecutive tokens: a token's pairs stay in one pass, so its sum keeps its order.
            for (int t0 = 0, a0 = 0; t0 < numTokens; ) {
                int t1 = t0;
                int a1 = a0;
                while (t1 < numTokens && (t1 == t0 || a1 - a0 + expertsPerToken[t1] <= maxPairs)) {
                    a1 += expertsPerToken[t1++];
                }
                computePass(experts, thresholds, x, t0, t1, a0, a1, hiddenSize, expertsPerToken, expertIds,
                        routingWeights, out, runs);
                t0 = t1;
                a0 = a1;
            }
        }
        return new Result(out, runs.stream().mapToInt(Run::expertId).toArray(),
                runs.stream().mapToInt(Run::numTokens).toArray(),
                runs.stream().map(Run::stats).toArray(ExpertFfn.Stats[]::new));
    }

    private record Run(int expertId, int numTokens, ExpertFfn.Stats stats) {
    }

    /** Tokens [t0, t1), whose assignments are [a0, a1): their expert runs, combined into {@code out}. */
    private void computePass(PackedExpert[] experts, SparsityThresholds[] thresholds, float[] x, int t0, int t1,
                             int a0, int a1, int hiddenSize, int[] expertsPerToken, int[] expertIds,
                             float[] routingWeights, float[] out, List<Run> runs) {
        int numAssignments = a1 - a0;
        int[] tokenOf = new int[numAssignments]; // assignment a0 + i belongs to token tokenOf[i]
        for (int t = t0, i = 0; t < t1; t++) {
            for (int j = 0; j < expertsPerToken[t]; j++) {
                tokenOf[i++] = t;
            }
        }
        // Bucket assignments by expert id (a counting sort keeps token order inside each bucket).
        int maxId = 0;
        for (int a = a0; a < a1; a++) {
            maxId = Math.max(maxId, expertIds[a]);
        }
        int[] start = new int[maxId + 2];
        for (int a = a0; a < a1; a++) {
            start[expertIds[a] + 1]++;
        }
        for (int i = 0; i <= maxId; i++) {
            start[i + 1] += start[i];
        }
        int[] order = new int[numAssignments]; // indices relative to a0
        int[] fill = start.clone();
        for (int i = 0; i < numAssignments; i++) {
            order[fill[expertIds[a0 + i]]++] = i;
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
            int first = a0 + order[start[id]];
            work.add(new ExpertFfn.Work(experts[first], batch, n, thresholds[first], new float[n * hiddenSize]));
            ids.add(id);
        }
        ExpertFfn.Stats[] stats = ffn.run(work);
        // Combine locally: out[t] += routing_weight · expert(x_t), the weight applied here, visibly, before the sum.
        for (int w = 0; w < work.size(); w++) {
            int id = ids.get(w);
            float[] y = work.get(w).y();
            int n = work.get(w).numTokens();
            for (int i = 0; i < n; i++) {
                int rel = order[start[id] + i];
                float weight = routingWeights[a0 + rel];
                int row = tokenOf[rel] * hiddenSize;
                for (int h = 0; h < hiddenSize; h++) {
                    out[row + h] += weight * y[i * hiddenSize + h];
                }
            }
            runs.add(new Run(id, n, stats[w]));
        }
    }
}

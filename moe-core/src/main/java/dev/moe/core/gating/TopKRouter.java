package dev.moe.core.gating;

import dev.moe.core.config.MoeConfig.ScoringFunc;
import java.util.Arrays;

/**
 * Top-k expert selection with the exact semantics of each family's transformers code. A pure function of the router
 * logits: no state, no I/O. Scores are computed in double, so the weights are as close to a float64 reference as
 * the float32 logits allow.
 */
public final class TopKRouter {
    /** DeepseekV3TopkRouter: {@code denominator = topk_weights.sum(-1, keepdim=True) + 1e-20}. */
    private static final double DEEPSEEK_NORM_EPS = 1e-20;

    private TopKRouter() {
    }

    /**
     * Routes a batch.
     *
     * @param spec            the family's routing knobs
     * @param routerLogits    {@code [numTokens, numExperts]}: {@code x · W_gateᵀ}
     * @param numTokens       rows of routerLogits
     * @param correctionBias  DeepSeek-V3 {@code e_score_correction_bias} {@code [numExperts]}, or null
     */
    public static RoutingDecision route(RouterSpec spec, float[] routerLogits, int numTokens, float[] correctionBias) {
        int numExperts = spec.numExperts();
        int k = spec.topK();
        int[] expertIds = new int[numTokens * k];
        float[] routingWeights = new float[numTokens * k];
        double[] scores = new double[numExperts];
        double[] selectionScores = new double[numExperts];
        int[] chosen = new int[k];
        double[] chosenWeights = new double[k];
        for (int t = 0; t < numTokens; t++) {
            int row = t * numExperts;
            if (spec.scoringFunc() == ScoringFunc.SOFTMAX) {
                // routing_weights = F.softmax(router_logits, dim=1, dtype=torch.float)
                double max = Double.NEGATIVE_INFINITY;
                for (int e = 0; e < numExperts; e++) {
                    max = Math.max(max, routerLogits[row + e]);
                }
                double sum = 0;
                for (int e = 0; e < numExperts; e++) {
                    scores[e] = Math.exp(routerLogits[row + e] - max);
                    sum += scores[e];
                }
                for (int e = 0; e < numExperts; e++) {
                    scores[e] /= sum;
                    selectionScores[e] = scores[e];
                }
            } else {
                // DeepSeek-V3: scores = router_logits.sigmoid();
                // scores_for_choice = scores + e_score_correction_bias  (selection only)
                for (int e = 0; e < numExperts; e++) {
                    scores[e] = 1.0 / (1.0 + Math.exp(-(double) routerLogits[row + e]));
                    selectionScores[e] = scores[e] + (correctionBias == null ? 0.0 : correctionBias[e]);
                }
            }
            if (spec.nGroup() > 1) {
                maskToTopGroups(selectionScores, spec.nGroup(), spec.topkGroup());
            }
            // topk_weights, topk_idx = torch.topk(scores_for_choice, k)
            topK(selectionScores, k, chosen);
            // The weights come from the unbiased scores (identical to selection scores for softmax families).
            double sum = 0;
            for (int j = 0; j < k; j++) {
                chosenWeights[j] = scores[chosen[j]];
                sum += chosenWeights[j];
            }
            if (spec.normTopkProb()) {
                // Qwen2-MoE / OLMoE: only when norm_topk_prob; Mixtral: always. DeepSeek adds 1e-20.
                double denominator = spec.scoringFunc() == ScoringFunc.SIGMOID ? sum + DEEPSEEK_NORM_EPS : sum;
                for (int j = 0; j < k; j++) {
                    chosenWeights[j] /= denominator;
                }
            }
            // DeepSeek-V3: topk_weights = topk_weights * routed_scaling_factor (1.0 elsewhere)
            sortById(chosen, chosenWeights);
            for (int j = 0; j < k; j++) {
                expertIds[t * k + j] = chosen[j];
                routingWeights[t * k + j] = (float) (chosenWeights[j] * spec.routedScalingFactor());
            }
        }
        return new RoutingDecision(numTokens, k, expertIds, routingWeights);
    }

    /**
     * Group-limited selection (DeepSeek-V3 noaux_tc): a group's score is the sum of its two best selection scores; the
     * {@code topkGroup} best groups stay, every expert of the other groups is set to -inf (current transformers and
     * DeepSeek's inference code; older transformers filled 0.0).
     */
    static void maskToTopGroups(double[] selectionScores, int nGroup, int topkGroup) {
        int groupSize = selectionScores.length / nGroup;
        double[] groupScores = new double[nGroup];
        for (int g = 0; g < nGroup; g++) {
            double best = Double.NEGATIVE_INFINITY;
            double second = Double.NEGATIVE_INFINITY;
            for (int e = g * groupSize; e < (g + 1) * groupSize; e++) {
                double s = selectionScores[e];
                if (s > best) {
                    second = best;
                    best = s;
                } else if (s > second) {
                    second = s;
                }
            }
            groupScores[g] = groupSize >= 2 ? best + second : best;
        }
        int[] keptGroups = new int[topkGroup];
        topK(groupScores, topkGroup, keptGroups);
        boolean[] kept = new boolean[nGroup];
        for (int g : keptGroups) {
            kept[g] = true;
        }
        for (int g = 0; g < nGroup; g++) {
            if (!kept[g]) {
                Arrays.fill(selectionScores, g * groupSize, (g + 1) * groupSize, Double.NEGATIVE_INFINITY);
            }
        }
    }

    /** Indices of the k largest values, by value descending; ties go to the lower index. */
    static void topK(double[] values, int k, int[] out) {
        int n = values.length;
        boolean[] taken = new boolean[n];
        for (int j = 0; j < k; j++) {
            int best = -1;
            for (int i = 0; i < n; i++) {
                if (!taken[i] && (best < 0 || values[i] > values[best])) {
                    best = i;
                }
            }
            taken[best] = true;
            out[j] = best;
        }
    }

    private static void sortById(int[] ids, double[] weights) {
        for (int i = 1; i < ids.length; i++) {
            int id = ids[i];
            double w = weights[i];
            int j = i - 1;
            while (j >= 0 && ids[j] > id) {
                ids[j + 1] = ids[j];
                weights[j + 1] = weights[j];
                j--;
            }
            ids[j + 1] = id;
            weights[j + 1] = w;
        }
    }
}

package dev.moe.core.oracle;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.config.MoeConfig.ScoringFunc;
import java.util.ArrayList;
import java.util.Comparator;
import java.util.List;
import java.util.stream.IntStream;

/**
 * The scalar oracle of a whole MoE block: plain loops in double precision, routing written from the transformers code
 * with sorts instead of the production selection code. Slow and obviously correct; the fast, distributed path is
 * tested against it.
 */
public final class ReferenceMoeBlock {

    /**
     * Output {@code [numTokens, hiddenSize]}, chosen ids ascending {@code [numTokens, k]}, weights aligned, and per
     * token the selection margin: how far the k-th selection score is above the (k+1)-th (infinite when k = E).
     * A token with a tiny margin is a near-tie that float32 rounding may legitimately decide either way.
     */
    public record Result(double[] output, int[] topkIds, double[] topkWeights, double[] selectionMargins) {
    }

    private ReferenceMoeBlock() {
    }

    public static Result forward(Checkpoint checkpoint, MoeConfig config, int layer, float[] x, int numTokens) {
        ModelFamily family = config.family();
        int hidden = config.hiddenSize();
        int numExperts = config.numExperts();
        int k = config.numExpertsPerToken();
        float[] gate = checkpoint.readMatrix(family.routerWeight(layer), numExperts, hidden);
        float[] bias = family == ModelFamily.DEEPSEEK_V3 && checkpoint.hasTensor(family.correctionBias(layer))
                ? checkpoint.readFloats(family.correctionBias(layer)) : new float[numExperts];
        double[] output = new double[numTokens * hidden];
        int[] ids = new int[numTokens * k];
        double[] weights = new double[numTokens * k];
        double[] margins = new double[numTokens];
        for (int t = 0; t < numTokens; t++) {
            double[] xt = new double[hidden];
            for (int h = 0; h < hidden; h++) {
                xt[h] = x[t * hidden + h];
            }
            double[] logits = matVec(gate, numExperts, hidden, xt);
            double[] margin = new double[1];
            List<double[]> chosen = route(config, logits, bias, margin); // each {id, weight}
            margins[t] = margin[0];
            chosen.sort(Comparator.comparingDouble(c -> c[0]));
            for (int j = 0; j < k; j++) {
                int id = (int) chosen.get(j)[0];
                ids[t * k + j] = id;
                weights[t * k + j] = chosen.get(j)[1];
                double[] y = swiglu(checkpoint, family.expertGateProj(layer, id), family.expertUpProj(layer, id),
                        family.expertDownProj(layer, id), config.moeIntermediateSize(), hidden, xt);
                for (int h = 0; h < hidden; h++) {
                    output[t * hidden + h] += weights[t * k + j] * y[h];
                }
            }
            if (config.hasSharedExpert()) {
                double[] y = swiglu(checkpoint, family.sharedExpertProj(layer, "gate_proj"),
                        family.sharedExpertProj(layer, "up_proj"), family.sharedExpertProj(layer, "down_proj"),
                        config.sharedExpertIntermediateSize(), hidden, xt);
                double scale = 1.0;
                if (family == ModelFamily.QWEN2_MOE) {
                    double g = matVec(checkpoint.readMatrix(family.sharedExpertGate(layer), 1, hidden), 1, hidden, xt)[0];
                    scale = 1.0 / (1.0 + Math.exp(-g));
                }
                for (int h = 0; h < hidden; h++) {
                    output[t * hidden + h] += scale * y[h];
                }
            }
        }
        return new Result(output, ids, weights, margins);
    }

    /** Routing of one token, straight from the transformers code, with full sorts. Returns {id, weight} pairs. */
    static List<double[]> route(MoeConfig config, double[] logits, float[] bias, double[] margin) {
        int numExperts = logits.length;
        int k = config.numExpertsPerToken();
        double[] scores = new double[numExperts];
        double[] forChoice = new double[numExperts];
        if (config.scoringFunc() == ScoringFunc.SOFTMAX) {
            double max = IntStream.range(0, numExperts).mapToDouble(e -> logits[e]).max().orElseThrow();
            double sum = 0;
            for (int e = 0; e < numExperts; e++) {
                scores[e] = Math.exp(logits[e] - max);
                sum += scores[e];
            }
            for (int e = 0; e < numExperts; e++) {
                scores[e] /= sum;
                forChoice[e] = scores[e];
            }
        } else {
            for (int e = 0; e < numExperts; e++) {
                scores[e] = 1.0 / (1.0 + Math.exp(-logits[e]));
                forChoice[e] = scores[e] + bias[e];
            }
            int groups = config.nGroup();
            int perGroup = numExperts / groups;
            List<double[]> groupScores = new ArrayList<>(); // {group, score}
            for (int g = 0; g < groups; g++) {
                double[] members = new double[perGroup];
                System.arraycopy(forChoice, g * perGroup, members, 0, perGroup);
                java.util.Arrays.sort(members);
                double top2 = members[perGroup - 1] + (perGroup > 1 ? members[perGroup - 2] : 0.0);
                groupScores.add(new double[] {g, top2});
            }
            groupScores.sort((a, b) -> a[1] != b[1] ? Double.compare(b[1], a[1]) : Double.compare(a[0], b[0]));
            boolean[] kept = new boolean[groups];
            for (int i = 0; i < config.topkGroup(); i++) {
                kept[(int) groupScores.get(i)[0]] = true;
            }
            for (int e = 0; e < numExperts; e++) {
                if (!kept[e / perGroup]) {
                    forChoice[e] = Double.NEGATIVE_INFINITY; // masked_fill(~score_mask, -inf)
                }
            }
        }
        List<Integer> order = new ArrayList<>(IntStream.range(0, numExperts).boxed().toList());
        order.sort((a, b) -> forChoice[a] != forChoice[b] ? Double.compare(forChoice[b], forChoice[a]) : a - b);
        margin[0] = k == numExperts ? Double.POSITIVE_INFINITY : forChoice[order.get(k - 1)] - forChoice[order.get(k)];
        List<double[]> chosen = new ArrayList<>();
        double sum = 0;
        for (int j = 0; j < k; j++) {
            chosen.add(new double[] {order.get(j), scores[order.get(j)]});
            sum += scores[order.get(j)];
        }
        boolean renormalise = config.family() == ModelFamily.MIXTRAL || config.normTopkProb();
        double denominator = config.scoringFunc() == ScoringFunc.SIGMOID ? sum + 1e-20 : sum;
        for (double[] c : chosen) {
            if (renormalise) {
                c[1] /= denominator;
            }
            c[1] *= config.routedScalingFactor();
        }
        return chosen;
    }

    private static double[] swiglu(Checkpoint checkpoint, String gateName, String upName, String downName,
                                   int intermediate, int hidden, double[] x) {
        double[] g = matVec(checkpoint.readMatrix(gateName, intermediate, hidden), intermediate, hidden, x);
        double[] u = matVec(checkpoint.readMatrix(upName, intermediate, hidden), intermediate, hidden, x);
        double[] h = new double[intermediate];
        for (int i = 0; i < intermediate; i++) {
            h[i] = g[i] / (1.0 + Math.exp(-g[i])) * u[i];
        }
        return matVec(checkpoint.readMatrix(downName, hidden, intermediate), hidden, intermediate, h);
    }

    private static double[] matVec(float[] w, int rows, int cols, double[] x) {
        double[] y = new double[rows];
        for (int r = 0; r < rows; r++) {
            double s = 0;
            for (int c = 0; c < cols; c++) {
                s += w[r * cols + c] * x[c];
            }
            y[r] = s;
        }
        return y;
    }
}

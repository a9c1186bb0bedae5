package dev.moe.expert.shard;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.PanelKernels;
import dev.moe.core.kernels.ScalarPanelKernels;
import dev.moe.core.kernels.VectorPanelKernels;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.sparsity.SparsityThresholds;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.Collections;
import java.util.List;
import java.util.Random;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.Test;

/**
 * {@link ExpertComputer} against a straightforward per-token double-precision oracle
 * {@code out[t] = Σ_j w_j · down(silu(gate·x_t) ⊙ up·x_t)}.
 */
class ExpertComputerTest {

    private static final double REL_TOL = 1e-4;
    private static final KernelPool POOL = new KernelPool(2);

    @AfterAll
    static void closePool() {
        POOL.close();
    }

    private static ExpertComputer computer(PanelKernels kernels) {
        return new ExpertComputer(new ExpertFfn(kernels, POOL, 0.75));
    }

    /** A random expert with its weights kept for the oracle. */
    private record Expert(int hidden, int inter, float[] gate, float[] up, float[] down, PackedExpert packed) {
        static Expert random(Random rnd, int hidden, int inter) {
            float[] g = randomArray(rnd, hidden * inter, 1.0 / Math.sqrt(hidden));
            float[] u = randomArray(rnd, hidden * inter, 1.0 / Math.sqrt(hidden));
            float[] d = randomArray(rnd, hidden * inter, 1.0 / Math.sqrt(inter));
            return new Expert(hidden, inter, g, u, d, PackedExpert.pack(hidden, inter, g, u, d, WeightType.F32));
        }

        /** down(silu(gate·x) ⊙ up·x) in double. */
        double[] forward(float[] x, int off) {
            double[] h = new double[inter];
            for (int r = 0; r < inter; r++) {
                double g = 0;
                double u = 0;
                for (int c = 0; c < hidden; c++) {
                    g += (double) gate[r * hidden + c] * x[off + c];
                    u += (double) up[r * hidden + c] * x[off + c];
                }
                h[r] = g / (1 + Math.exp(-g)) * u;
            }
            double[] y = new double[hidden];
            for (int o = 0; o < hidden; o++) {
                double s = 0;
                for (int r = 0; r < inter; r++) {
                    s += down[o * inter + r] * h[r];
                }
                y[o] = s;
            }
            return y;
        }
    }

    /** One call: global ids of the hosted experts, and the per-token assignments. */
    private record Call(int numTokens, int hidden, float[] x, int[] expertsPerToken, int[] expertIds,
                        float[] weights) {
    }

    private static float[] randomArray(Random rnd, int n, double scale) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) ((rnd.nextDouble() * 2 - 1) * scale);
        }
        return a;
    }

    private static double[] oracle(Expert[] byId, Call call) {
        double[] out = new double[call.numTokens() * call.hidden()];
        for (int t = 0, a = 0; t < call.numTokens(); t++) {
            for (int j = 0; j < call.expertsPerToken()[t]; j++, a++) {
                double[] y = byId[call.expertIds()[a]].forward(call.x(), t * call.hidden());
                for (int h = 0; h < call.hidden(); h++) {
                    out[t * call.hidden() + h] += call.weights()[a] * y[h];
                }
            }
        }
        return out;
    }

    private static PackedExpert[] aligned(Expert[] byId, Call call) {
        PackedExpert[] aligned = new PackedExpert[call.expertIds().length];
        for (int a = 0; a < aligned.length; a++) {
            aligned[a] = byId[call.expertIds()[a]].packed();
        }
        return aligned;
    }

    private static float[] compute(ExpertComputer computer, Expert[] byId, Call call) {
        return computer.compute(aligned(byId, call), new SparsityThresholds[call.expertIds().length], call.x(),
                call.numTokens(), call.hidden(), call.expertsPerToken(), call.expertIds(), call.weights()).partial();
    }

    /** Element-wise: |actual − expected| ≤ 1e-4 · max(|expected|, largest |expected| of the token's row). */
    private static void assertClose(String ctx, float[] actual, double[] expected, int hidden) {
        assertThat(actual).as(ctx).hasSize(expected.length);
        for (int row = 0; row < expected.length / hidden; row++) {
            double rowMax = 0;
            for (int h = 0; h < hidden; h++) {
                rowMax = Math.max(rowMax, Math.abs(expected[row * hidden + h]));
            }
            for (int h = 0; h < hidden; h++) {
                int i = row * hidden + h;
                double tol = REL_TOL * Math.max(Math.abs(expected[i]), rowMax);
                assertThat(Math.abs(actual[i] - expected[i])).as("%s: token %d, element %d: %s vs %s", ctx, row, h,
                        actual[i], expected[i]).isLessThanOrEqualTo(tol);
            }
        }
    }

    /** Hosted experts with scattered global ids (a strided shard), so ids are not 0..E-1. */
    private static Expert[] randomShard(Random rnd, int[] hostedIds, int hidden, int inter) {
        Expert[] byId = new Expert[Arrays.stream(hostedIds).max().orElse(0) + 1];
        for (int id : hostedIds) {
            byId[id] = Expert.random(rnd, hidden, inter);
        }
        return byId;
    }

    /** Each token gets 1..E distinct hosted experts (random order), random weights. */
    private static Call randomCall(Random rnd, int numTokens, int hidden, int[] hostedIds) {
        List<Integer> hosted = new ArrayList<>();
        for (int id : hostedIds) {
            hosted.add(id);
        }
        int[] perToken = new int[numTokens];
        List<Integer> ids = new ArrayList<>();
        for (int t = 0; t < numTokens; t++) {
            perToken[t] = 1 + rnd.nextInt(hostedIds.length);
            Collections.shuffle(hosted, rnd);
            ids.addAll(hosted.subList(0, perToken[t]));
        }
        float[] w = new float[ids.size()];
        for (int a = 0; a < w.length; a++) {
            w[a] = 0.05f + rnd.nextFloat();
        }
        return new Call(numTokens, hidden, randomArray(rnd, numTokens * hidden, 2.0), perToken,
                ids.stream().mapToInt(Integer::intValue).toArray(), w);
    }

    @Test
    void randomCallsMatchTheDoubleOracle() {
        Random rnd = new Random(20240611L);
        ExpertComputer computer = computer(VectorPanelKernels.INSTANCE);
        int[] hiddens = {1, 3, 5, 7, 13, 17, 31, 33, 67};
        int[] inters = {1, 3, 5, 9, 11, 21, 37};
        for (int trial = 0; trial < 120; trial++) {
            int hidden = hiddens[rnd.nextInt(hiddens.length)];
            int inter = inters[rnd.nextInt(inters.length)];
            int numHosted = 1 + rnd.nextInt(6);
            // distinct global ids in [0, 32)
            List<Integer> pool = new ArrayList<>();
            for (int i = 0; i < 32; i++) {
                pool.add(i);
            }
            Collections.shuffle(pool, rnd);
            int[] hostedIds = pool.subList(0, numHosted).stream().mapToInt(Integer::intValue).sorted().toArray();
            Expert[] byId = randomShard(rnd, hostedIds, hidden, inter);
            Call call = randomCall(rnd, 1 + rnd.nextInt(20), hidden, hostedIds);

            float[] out = compute(computer, byId, call);

            assertClose("trial " + trial + " hidden=" + hidden + " inter=" + inter + " hosted="
                    + Arrays.toString(hostedIds), out, oracle(byId, call), hidden);
        }
    }

    @Test
    void oneTokenOneExpertIsTheWeightedExpertOutput() {
        Random rnd = new Random(1);
        int hidden = 9;
        Expert[] byId = randomShard(rnd, new int[] {4}, hidden, 7);
        float[] x = randomArray(rnd, hidden, 1.5);
        Call call = new Call(1, hidden, x, new int[] {1}, new int[] {4}, new float[] {0.375f});

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        double[] y = byId[4].forward(x, 0);
        double[] expected = new double[hidden];
        for (int h = 0; h < hidden; h++) {
            expected[h] = 0.375 * y[h];
        }
        assertClose("one token", out, expected, hidden);
        // and it is not the unweighted output
        assertThat(Math.abs(out[0] - y[0])).isGreaterThan(1e-3 * Math.abs(y[0]));
    }

    @Test
    void oneTokenSeveralExpertsSumsTheirWeightedOutputs() {
        Random rnd = new Random(2);
        int hidden = 11;
        int[] hosted = {0, 3, 8};
        Expert[] byId = randomShard(rnd, hosted, hidden, 5);
        Call call = new Call(1, hidden, randomArray(rnd, hidden, 1.0), new int[] {3}, new int[] {8, 0, 3},
                new float[] {0.5f, 0.3f, 0.2f});

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        assertClose("one token, three experts", out, oracle(byId, call), hidden);
    }

    @Test
    void tokensSharingExpertsGetTheirOwnWeights() {
        Random rnd = new Random(3);
        int hidden = 15;
        int[] hosted = {2, 5, 6};
        Expert[] byId = randomShard(rnd, hosted, hidden, 13);
        // tokens 0..3 all use experts 2 and 5 (shared), token 2 also 6; different weights per token
        Call call = new Call(4, hidden, randomArray(rnd, 4 * hidden, 1.0), new int[] {2, 2, 3, 2},
                new int[] {2, 5, 5, 2, 2, 5, 6, 2, 5},
                new float[] {0.9f, 0.1f, 0.7f, 0.3f, 0.25f, 0.25f, 0.5f, 0.05f, 0.95f});

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        assertClose("shared experts", out, oracle(byId, call), hidden);
    }

    @Test
    void identicalTokensWithDifferentWeightsDifferByTheirWeights() {
        Random rnd = new Random(4);
        int hidden = 7;
        Expert[] byId = randomShard(rnd, new int[] {1}, hidden, 3);
        float[] row = randomArray(rnd, hidden, 1.0);
        float[] x = new float[3 * hidden];
        for (int t = 0; t < 3; t++) {
            System.arraycopy(row, 0, x, t * hidden, hidden);
        }
        Call call = new Call(3, hidden, x, new int[] {1, 1, 1}, new int[] {1, 1, 1}, new float[] {1f, 2f, -0.5f});

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        for (int h = 0; h < hidden; h++) {
            // same input, same expert → outputs scale with the weight (exactly: w·y with w a power of two or 1)
            assertThat(out[hidden + h]).isEqualTo(2f * out[h]);
            assertThat(out[2 * hidden + h]).isEqualTo(-0.5f * out[h]);
        }
        assertClose("identical tokens", out, oracle(byId, call), hidden);
    }

    @Test
    void allTokensToOneExpert() {
        Random rnd = new Random(5);
        int hidden = 21;
        int numTokens = 37;
        Expert[] byId = randomShard(rnd, new int[] {13}, hidden, 9);
        int[] perToken = new int[numTokens];
        Arrays.fill(perToken, 1);
        int[] ids = new int[numTokens];
        Arrays.fill(ids, 13);
        Call call = new Call(numTokens, hidden, randomArray(rnd, numTokens * hidden, 1.0), perToken, ids,
                randomArray(rnd, numTokens, 1.0));

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        assertClose("all tokens to expert 13", out, oracle(byId, call), hidden);
    }

    @Test
    void allTokensToExpertZero() {
        Random rnd = new Random(6);
        int hidden = 5;
        int numTokens = 4;
        Expert[] byId = randomShard(rnd, new int[] {0}, hidden, 3);
        int[] perToken = {1, 1, 1, 1};
        int[] ids = {0, 0, 0, 0};
        Call call = new Call(numTokens, hidden, randomArray(rnd, numTokens * hidden, 1.0), perToken, ids,
                new float[] {0.1f, 0.2f, 0.3f, 0.4f});

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        assertClose("all tokens to expert 0", out, oracle(byId, call), hidden);
    }

    @Test
    void zeroWeightContributesNothing() {
        Random rnd = new Random(7);
        int hidden = 3;
        Expert[] byId = randomShard(rnd, new int[] {0, 1}, hidden, 5);
        Call call = new Call(2, hidden, randomArray(rnd, 2 * hidden, 1.0), new int[] {1, 2}, new int[] {0, 0, 1},
                new float[] {0f, 0.5f, 0f});

        float[] out = compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        assertThat(Arrays.copyOfRange(out, 0, hidden)).containsOnly(0f);
        double[] y = byId[0].forward(call.x(), hidden);
        for (int h = 0; h < hidden; h++) {
            assertThat((double) out[hidden + h]).isCloseTo(0.5 * y[h],
                    org.assertj.core.data.Offset.offset(1e-4 * Math.abs(y[h]) + 1e-7));
        }
    }

    @Test
    void vectorAndScalarKernelsAgree() {
        Random rnd = new Random(8);
        int hidden = 35;
        int[] hosted = {1, 4, 9, 10};
        Expert[] byId = randomShard(rnd, hosted, hidden, 19);
        Call call = randomCall(rnd, 25, hidden, hosted);

        float[] vector = compute(computer(VectorPanelKernels.INSTANCE), byId, call);
        float[] scalar = compute(computer(ScalarPanelKernels.INSTANCE), byId, call);

        double[] scalarAsDouble = new double[scalar.length];
        for (int i = 0; i < scalar.length; i++) {
            scalarAsDouble[i] = scalar[i];
        }
        assertClose("vector vs scalar", vector, scalarAsDouble, hidden);
        assertClose("scalar vs oracle", scalar, oracle(byId, call), hidden);
    }

    @Test
    void inputsAreNotModified() {
        Random rnd = new Random(9);
        int hidden = 6;
        int[] hosted = {0, 2};
        Expert[] byId = randomShard(rnd, hosted, hidden, 4);
        Call call = randomCall(rnd, 5, hidden, hosted);
        float[] x = call.x().clone();
        int[] ids = call.expertIds().clone();
        float[] w = call.weights().clone();

        compute(computer(VectorPanelKernels.INSTANCE), byId, call);

        assertThat(call.x()).isEqualTo(x);
        assertThat(call.expertIds()).isEqualTo(ids);
        assertThat(call.weights()).isEqualTo(w);
    }
    @Test
    void aCallOverTheWorkingMemoryBudgetRunsInPassesWithTheSameResult() {
        Random rnd = new Random(10);
        int hidden = 19;
        int inter = 11;
        int[] hosted = {0, 3, 5, 6};
        Expert[] byId = randomShard(rnd, hosted, hidden, inter);
        Call call = randomCall(rnd, 23, hidden, hosted);
        long pairBytes = (2L * hidden + inter) * Float.BYTES;
        int numPairs = call.expertIds().length;

        ExpertComputer.Result whole = computer(VectorPanelKernels.INSTANCE).compute(aligned(byId, call),
                new SparsityThresholds[numPairs], call.x(), call.numTokens(), hidden, call.expertsPerToken(),
                call.expertIds(), call.weights());
        // At most 5 pairs a pass: a token's pairs never split, so every pass holds whole tokens (1 to 4 pairs each).
        ExpertComputer.Result passes = new ExpertComputer(new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 0.75),
                5 * pairBytes).compute(aligned(byId, call), new SparsityThresholds[numPairs], call.x(),
                call.numTokens(), hidden, call.expertsPerToken(), call.expertIds(), call.weights());
        // Below one pair: one token a pass.
        ExpertComputer.Result perToken = new ExpertComputer(new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 0.75),
                1).compute(aligned(byId, call), new SparsityThresholds[numPairs], call.x(), call.numTokens(), hidden,
                call.expertsPerToken(), call.expertIds(), call.weights());

        double[] expected = oracle(byId, call);
        assertClose("one pass", whole.partial(), expected, hidden);
        assertClose("passes of at most 5 pairs", passes.partial(), expected, hidden);
        assertClose("one token a pass", perToken.partial(), expected, hidden);
        // One run per expert in one pass; per (pass, expert) otherwise, every pair counted once.
        assertThat(whole.expertIds()).hasSize(hosted.length);
        assertThat(passes.expertIds().length).isGreaterThan(hosted.length);
        assertThat(perToken.expertIds()).hasSize(numPairs);
        for (ExpertComputer.Result r : List.of(whole, passes, perToken)) {
            assertThat(Arrays.stream(r.tokensPerExpert()).sum()).isEqualTo(numPairs);
            assertThat(r.stats()).hasSize(r.expertIds().length);
        }
        for (int id : hosted) {
            long pairs = Arrays.stream(call.expertIds()).filter(e -> e == id).count();
            int counted = 0;
            for (int i = 0; i < passes.expertIds().length; i++) {
                counted += passes.expertIds()[i] == id ? passes.tokensPerExpert()[i] : 0;
            }
            assertThat(counted).as("tokens of expert %d over the passes", id).isEqualTo(pairs);
        }
    }

    @Test
    void aNonPositiveBudgetIsRefused() {
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, POOL, 0.75);
        org.assertj.core.api.Assertions.assertThatThrownBy(() -> new ExpertComputer(ffn, 0))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("maxPassBytes must be positive");
    }
}

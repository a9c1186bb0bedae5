package dev.moe.core.kernels;

import dev.moe.core.sparsity.SparsityThresholds;
import java.time.Duration;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.concurrent.ConcurrentHashMap;

/**
 * Gets the Vector API kernels compiled by C2 before anything depends on their speed. Interpreted or C1-compiled Vector
 * API code boxes every vector: on a cold JVM the first call of eight Qwen3 experts (bf16, one token, 2 threads) took
 * 426 ms, the second 90, then 3-9 ms until about the seventieth reached the steady 0.9-1.1 ms; after two seconds of
 * this, the first took 1.4 ms ({@code bin/moe bench warmup}). An expert server runs it before it starts listening, so
 * a new pod is not ready until its kernels are; the benchmarks run it before timing.
 *
 * <p>Runs a small random expert (hidden 256, intermediate 192, four of them) through {@link ExpertFfn} on the given
 * pool: one token and groups of tokens, full and partial groups of four, beyond the whole-row limit, one and several
 * experts per call, dense and (when asked) sparse. A kernel first reached after its caller was compiled would cost a
 * deoptimization in the middle of real traffic, hence the variety. Nothing here touches served experts or their
 * statistics.
 *
 * <p>The budget alone does not end it: it also runs {@link #MIN_CALLS} calls. A cold JVM spends its first second or so
 * on a few dozen boxed calls (64-80 in 0.75 s with 2 threads here); a kernel that got no C1 profile in that time is
 * later compiled by C2 straight from the interpreter's, and that code ran bf16's four-panel kernel 4-6x slower for the
 * life of the JVM (5 of 10 benchmark runs whose warm-up gave it 0.75 s; none of 6 given 2.5 s). 20,000 calls brought
 * every kernel of each weight type and layout to C2 in 1.1-1.6 s from cold.
 */
public final class KernelWarmup {
    /** Tokens per expert that reach every kernel: one, groups of four full and partial, more than the whole-row limit. */
    private static final int[] BATCHES = {1, 2, 3, 4, 5, 8, ExpertFfn.MAX_ROW_TOKENS + 1};
    private static final int HIDDEN = 256;
    private static final int INTERMEDIATE = 192;
    private static final int EXPERTS = 4;
    /** Calls a warm-up makes whatever its budget (unless its call limit is lower): see the class comment. */
    public static final long MIN_CALLS = 20_000;
    /** How far past its budget a warm-up may run to make {@link #MIN_CALLS}: a starved machine must not block forever. */
    static final Duration MAX_OVERRUN = Duration.ofSeconds(60);

    /**
     * What a warm-up did: FFN calls made, of which some ran a projection sparse, the time taken, and whether it was
     * cut short by {@link #MAX_OVERRUN} before {@link #MIN_CALLS} calls (the kernels may then still be uncompiled).
     */
    public record Result(long calls, long sparseProjections, double seconds, boolean cutShort) {
        /** Nothing run: the warm-up was skipped. */
        public static final Result SKIPPED = new Result(0, 0, 0, false);
    }

    /** (weight type, layout, sparse) combinations already warmed in this JVM: compiled code is shared by all users. */
    private static final Set<String> WARM = ConcurrentHashMap.newKeySet();

    private KernelWarmup() {
    }

    /**
     * Warms the kernels of {@code type} in {@code layout} unless this JVM already did (several expert servers in one
     * process, as {@code bin/moe local} runs them, pay once).
     *
     * @return the warm-up's result, or an empty one when it was already done or {@code budget} is zero
     */
    public static Result once(WeightType type, PanelMatrix.Layout layout, boolean sparse, KernelPool pool,
                              Duration budget) {
        if (budget.isZero() || !WARM.add(key(type, layout, sparse))) {
            return Result.SKIPPED;
        }
        return run(type, layout, sparse, pool, budget, Long.MAX_VALUE);
    }

    /** Whether {@link #once} warmed (or is warming) these kernels in this JVM. */
    public static boolean isWarm(WeightType type, PanelMatrix.Layout layout, boolean sparse) {
        return WARM.contains(key(type, layout, sparse));
    }

    private static String key(WeightType type, PanelMatrix.Layout layout, boolean sparse) {
        return type + "/" + layout + "/" + (sparse ? "sparse" : "dense");
    }

    /**
     * Runs rounds of small FFN calls until {@code budget} has passed and {@link #MIN_CALLS} calls were made, or
     * {@code maxCalls} calls were made, or {@link #MAX_OVERRUN} past the budget (a round is finished first: one round
     * is {@link #callsPerRound} calls). A zero budget skips it.
     *
     * @param sparse also run the pruned (SCAP) path, as a server with a thresholds file will
     */
    public static Result run(WeightType type, PanelMatrix.Layout layout, boolean sparse, KernelPool pool,
                             Duration budget, long maxCalls) {
        return run(type, layout, sparse, pool, budget, maxCalls, MAX_OVERRUN);
    }

    static Result run(WeightType type, PanelMatrix.Layout layout, boolean sparse, KernelPool pool, Duration budget,
                      long maxCalls, Duration maxOverrun) {
        if (budget.isNegative() || maxCalls < 0) {
            throw new IllegalArgumentException("warm-up budget " + budget + " and call limit " + maxCalls
                    + " must not be negative");
        }
        long start = System.nanoTime();
        if (budget.isZero()) {
            return Result.SKIPPED;
        }
        long deadline = start + budget.toNanos();
        long overrunDeadline = deadline + maxOverrun.toNanos();
        long minCalls = Math.min(MIN_CALLS, maxCalls);
        SplittableRandom random = new SplittableRandom(20261124);
        PackedExpert[] experts = new PackedExpert[EXPERTS];
        for (int i = 0; i < EXPERTS; i++) {
            experts[i] = randomExpert(random, type, layout);
        }
        int maxTokens = Arrays.stream(BATCHES).max().orElseThrow();
        float[] x = new float[maxTokens * HIDDEN];
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) random.nextGaussian();
        }
        // About half of x pruned (|x| below the median of a standard normal, 0.674); h is small, prune below 0.05.
        SparsityThresholds thresholds = sparse ? new SparsityThresholds(0.674f, 0f, 0.05f, 0f) : null;
        // Crossover 1.0: a pruned projection always runs sparse, whatever its union density.
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, pool, 1.0);
        long calls = 0;
        long sparseProjections = 0;
        boolean cutShort = false;
        while (calls < maxCalls) {
            long now = System.nanoTime();
            if (calls > 0 && now >= deadline && calls >= minCalls) {
                break;
            }
            if (calls > 0 && now >= overrunDeadline) {
                cutShort = true;
                break;
            }
            for (SparsityThresholds t : sparse ? new SparsityThresholds[] {null, thresholds}
                    : new SparsityThresholds[] {null}) {
                for (int b : BATCHES) {
                    sparseProjections += sparseProjections(ffn.run(List.of(
                            new ExpertFfn.Work(experts[0], x, b, t, new float[b * HIDDEN]))));
                    calls++;
                }
                List<ExpertFfn.Work> several = new ArrayList<>(); // as a layer's call: several experts, few tokens
                for (int i = 0; i < EXPERTS; i++) {
                    int b = 1 + i % 3;
                    several.add(new ExpertFfn.Work(experts[i], x, b, t, new float[b * HIDDEN]));
                }
                sparseProjections += sparseProjections(ffn.run(several));
                calls++;
            }
        }
        return new Result(calls, sparseProjections, (System.nanoTime() - start) / 1e9, cutShort);
    }

    /** FFN calls in one round of {@link #run}. */
    public static int callsPerRound(boolean sparse) {
        return (BATCHES.length + 1) * (sparse ? 2 : 1);
    }

    private static long sparseProjections(ExpertFfn.Stats[] stats) {
        long n = 0;
        for (ExpertFfn.Stats s : stats) {
            n += (s.gateUp().sparse() ? 1 : 0) + (s.down().sparse() ? 1 : 0);
        }
        return n;
    }

    /** Uniform weights of standard deviation 1/√fan_in, so h has the scale of a trained expert's. */
    private static PackedExpert randomExpert(SplittableRandom random, WeightType type, PanelMatrix.Layout layout) {
        float[] gate = uniform(random, INTERMEDIATE * HIDDEN, Math.sqrt(3.0 / HIDDEN));
        float[] up = uniform(random, INTERMEDIATE * HIDDEN, Math.sqrt(3.0 / HIDDEN));
        float[] down = uniform(random, HIDDEN * INTERMEDIATE, Math.sqrt(3.0 / INTERMEDIATE));
        return PackedExpert.pack(HIDDEN, INTERMEDIATE, gate, up, down, type, layout);
    }

    private static float[] uniform(SplittableRandom random, int n, double bound) {
        float[] a = new float[n];
        for (int i = 0; i < n; i++) {
            a[i] = (float) ((2 * random.nextDouble() - 1) * bound);
        }
        return a;
    }
}

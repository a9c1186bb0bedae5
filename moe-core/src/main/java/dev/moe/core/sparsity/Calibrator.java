package dev.moe.core.sparsity;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.gating.RouterSpec;
import dev.moe.core.gating.RoutingDecision;
import dev.moe.core.gating.TopKRouter;
import dev.moe.core.kernels.Kernels;
import dev.moe.core.kernels.SwiGluExpert;
import dev.moe.core.kernels.VectorKernels;
import dev.moe.core.moe.MoeWeights;
import dev.moe.core.moe.RouterLayer;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.concurrent.ExecutionException;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Post-training statistical calibration of activation sparsity (SCAP, Chua, Pan &amp; Jain 2024) for the routed
 * experts of a MoE checkpoint.
 *
 * <p>For every MoE layer the calibration hidden states are routed with the model's own gate (router logits,
 * {@link TopKRouter} with the family's semantics), and each (layer, expert) gathers statistics of the inputs it
 * actually receives: x, shared by gate_proj and up_proj, and h = silu(gate·x) ⊙ up·x entering down_proj, computed as
 * the server computes it, from x pruned with x's threshold (a second pass over the expert's tokens). Its thresholds are the {@code targetSparsity}-quantiles of |x − m| and |h − m|, so that a
 * fraction {@code targetSparsity} of each input's values satisfies {@code |v − m| <= threshold} and is pruned. m is 0
 * (SCAP's choice for SwiGLU models) or, with mode-centering, the mode of the signed distribution
 * ({@link ActivationHistogram#mode()}). Experts that received no token get threshold 0: nothing pruned.
 *
 * <p>Memory is bounded: per layer only the routing (token ids per expert, {@code 4·T·k} bytes) is kept; each expert
 * streams its tokens in batches through two {@link ActivationHistogram}s and is dropped once its thresholds are known.
 * Experts run in parallel on {@code threads} workers, each holding one expert's float32 weights at a time. With
 * {@link Options#measure()} each expert streams its tokens a third time to count exactly what its thresholds prune.
 */
public final class Calibrator {
    /** {@code calibration.source} when the project drew the inputs. */
    public static final String SYNTHETIC_SOURCE = "synthetic gaussian hidden states (no activations file given)";

    private Calibrator() {
    }

    /**
     * @param targetSparsity  fraction of each input's values to prune, in [0, 1)
     * @param modeCentering   centre the pruning interval on the distribution's mode instead of 0
     * @param batchTokens     rows per routing and expert batch
     * @param threads         experts calibrated at once
     * @param kernels         the float32 math
     * @param measure         count the achieved sparsity on the calibration set exactly, with one more pass over
     *                        each expert's tokens (as costly as the one that computes h); otherwise it is estimated
     *                        from the histograms, which by construction gives the target to within interpolation
     */
    public record Options(double targetSparsity, boolean modeCentering, int batchTokens, int threads, Kernels kernels,
                          boolean measure) {
        public Options {
            if (!(targetSparsity >= 0 && targetSparsity < 1)) {
                throw new IllegalArgumentException("target sparsity must be in [0, 1), got " + targetSparsity);
            }
            if (batchTokens < 1 || threads < 1) {
                throw new IllegalArgumentException("batch tokens and threads must be >= 1");
            }
            if (kernels == null) {
                throw new IllegalArgumentException("kernels must not be null");
            }
        }

        /** 256-token batches, one thread per core, Vector API kernels, exact measurement. */
        public static Options of(double targetSparsity, boolean modeCentering) {
            return new Options(targetSparsity, modeCentering, 256, Runtime.getRuntime().availableProcessors(),
                    VectorKernels.INSTANCE, true);
        }

        public Options withThreads(int n) {
            return new Options(targetSparsity, modeCentering, batchTokens, n, kernels, measure);
        }

        public Options withBatchTokens(int n) {
            return new Options(targetSparsity, modeCentering, n, threads, kernels, measure);
        }

        public Options withKernels(Kernels k) {
            return new Options(targetSparsity, modeCentering, batchTokens, threads, k, measure);
        }

        public Options withMeasure(boolean exact) {
            return new Options(targetSparsity, modeCentering, batchTokens, threads, kernels, exact);
        }
    }

    /** Progress: called with 0 before the first layer and after each layer. */
    @FunctionalInterface
    public interface ProgressListener {
        /** Called with 0 first, then after each (layer, expert) is calibrated, in layer and expert order. */
        void onProgress(long expertsDone, long expertsTotal);

        ProgressListener NONE = (done, total) -> { };
    }

    /**
     * What one layer looked like on the calibration set.
     *
     * @param tokens              calibration rows routed through the layer
     * @param tokenExpertPairs    rows × top-k: the tokens all experts received together
     * @param expertsWithTokens   experts that received at least one token
     * @param gateUpSparsity      fraction of the x values the experts received that their thresholds prune, pooled
     *                            over experts (each weighted by its tokens); counted exactly when
     *                            {@link Options#measure()}, else estimated from the histograms
     * @param downSparsity        the same for h
     * @param meanGateUpThreshold mean over the experts with tokens
     * @param meanDownThreshold   mean over the experts with tokens
     */
    public record LayerSummary(int layer, int tokens, long tokenExpertPairs, int expertsWithTokens,
                               double gateUpSparsity, double downSparsity,
                               double meanGateUpThreshold, double meanDownThreshold) {
    }

    /**
     * The thresholds and a per-layer summary.
     *
     * @param measured  the sparsities were counted exactly (else estimated from the histograms)
     */
    public record Result(SparsityProfile profile, List<LayerSummary> layers, boolean measured) {
        /** Pooled over all layers, weighting each layer by its token-expert pairs. */
        public double gateUpSparsity() {
            return pooled(true);
        }

        public double downSparsity() {
            return pooled(false);
        }

        private double pooled(boolean gateUp) {
            double weighted = 0;
            long pairs = 0;
            for (LayerSummary s : layers) {
                weighted += (gateUp ? s.gateUpSparsity() : s.downSparsity()) * s.tokenExpertPairs();
                pairs += s.tokenExpertPairs();
            }
            return pairs == 0 ? 0 : weighted / pairs;
        }

        /** Mean threshold over every (layer, expert) that received tokens. */
        public double meanGateUpThreshold() {
            return meanThreshold(true);
        }

        public double meanDownThreshold() {
            return meanThreshold(false);
        }

        private double meanThreshold(boolean gateUp) {
            double sum = 0;
            int n = 0;
            for (var layer : profile.layers().values()) {
                for (var expert : layer.values()) {
                    SparsityProfile.Projection p = gateUp ? expert.gateUp() : expert.down();
                    if (p.tokens() > 0) {
                        sum += p.threshold();
                        n++;
                    }
                }
            }
            return n == 0 ? 0 : sum / n;
        }
    }

    /** One expert's outcome inside a layer. */
    private record ExpertOutcome(SparsityProfile.Expert entry, double gateUpPruned, double downPruned) {
    }

    /**
     * Calibrates every MoE layer of the checkpoint.
     *
     * @throws IllegalArgumentException for inputs that do not fit the model or hold NaN/infinity (message names the
     *                                  layer, token and element)
     */
    public static Result calibrate(Checkpoint checkpoint, CalibrationSource source, Options options,
                                   ProgressListener progress) {
        MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
        if (source.hiddenSize() != config.hiddenSize()) {
            throw new IllegalArgumentException("calibration inputs have hidden size " + source.hiddenSize()
                    + " but the model has " + config.hiddenSize());
        }
        List<Integer> moeLayers = config.moeLayers();
        Map<Integer, Map<Integer, SparsityProfile.Expert>> layers = new TreeMap<>();
        List<LayerSummary> summaries = new ArrayList<>();
        long maxTokens = 0;
        long total = (long) moeLayers.size() * config.numExperts();
        progress.onProgress(0, total);
        try (ExecutorService workers = Executors.newFixedThreadPool(options.threads(), daemonThreads())) {
            for (int li = 0; li < moeLayers.size(); li++) {
                int layer = moeLayers.get(li);
                int numTokens = source.numTokens(layer);
                maxTokens = Math.max(maxTokens, numTokens);
                int[][] tokensOf = route(checkpoint, config, source, options, layer, numTokens);
                List<Future<ExpertOutcome>> futures = new ArrayList<>();
                for (int e = 0; e < config.numExperts(); e++) {
                    int expert = e;
                    futures.add(workers.submit(() -> calibrateExpert(checkpoint, config, source, options, layer,
                            expert, tokensOf[expert])));
                }
                Map<Integer, SparsityProfile.Expert> experts = new TreeMap<>();
                double gateUpPruned = 0;
                double downPruned = 0;
                long pairs = 0;
                int withTokens = 0;
                double gateUpThresholds = 0;
                double downThresholds = 0;
                for (int e = 0; e < futures.size(); e++) {
                    ExpertOutcome outcome = await(futures, e);
                    progress.onProgress((long) li * config.numExperts() + e + 1, total);
                    experts.put(e, outcome.entry());
                    long tokens = outcome.entry().gateUp().tokens();
                    if (tokens > 0) {
                        withTokens++;
                        pairs += tokens;
                        gateUpPruned += outcome.gateUpPruned() * tokens;
                        downPruned += outcome.downPruned() * tokens;
                        gateUpThresholds += outcome.entry().gateUp().threshold();
                        downThresholds += outcome.entry().down().threshold();
                    }
                }
                layers.put(layer, experts);
                summaries.add(new LayerSummary(layer, numTokens, pairs, withTokens,
                        pairs == 0 ? 0 : gateUpPruned / pairs, pairs == 0 ? 0 : downPruned / pairs,
                        withTokens == 0 ? 0 : gateUpThresholds / withTokens,
                        withTokens == 0 ? 0 : downThresholds / withTokens));
            }
        }
        SparsityProfile profile = new SparsityProfile(checkpoint.fingerprint(), config.family().modelType,
                options.targetSparsity(), options.modeCentering(),
                new SparsityProfile.Calibration(source.description(), maxTokens, source.seed()), layers);
        return new Result(profile, List.copyOf(summaries), options.measure());
    }

    /** Routes the layer's calibration rows in batches with the real gate: the token ids each expert receives. */
    private static int[][] route(Checkpoint checkpoint, MoeConfig config, CalibrationSource source, Options options,
                                 int layer, int numTokens) {
        RouterLayer router = MoeWeights.loadRouterLayer(checkpoint, config, layer);
        RouterSpec spec = RouterSpec.of(config);
        int hidden = config.hiddenSize();
        int batch = Math.min(options.batchTokens(), numTokens);
        float[] x = new float[batch * hidden];
        int[] ids = new int[batch];
        int[] counts = new int[config.numExperts()];
        int[][] tokensOf = new int[config.numExperts()][];
        int expected = (int) Math.min(Integer.MAX_VALUE - 16,
                (long) numTokens * config.numExpertsPerToken() / config.numExperts());
        Arrays.setAll(tokensOf, e -> new int[Math.max(16, expected)]);
        for (int start = 0; start < numTokens; start += batch) {
            int count = Math.min(batch, numTokens - start);
            for (int i = 0; i < count; i++) {
                ids[i] = start + i;
            }
            source.read(layer, ids, 0, count, x);
            requireFinite(x, count, hidden, layer, ids);
            float[] logits = router.routerLogits(options.kernels(), x, count);
            RoutingDecision decision = TopKRouter.route(spec, logits, count, router.correctionBias());
            for (int t = 0; t < count; t++) {
                for (int j = 0; j < decision.topK(); j++) {
                    int e = decision.expertId(t, j);
                    if (counts[e] == tokensOf[e].length) {
                        tokensOf[e] = Arrays.copyOf(tokensOf[e], tokensOf[e].length * 2);
                    }
                    tokensOf[e][counts[e]++] = start + t;
                }
            }
        }
        for (int e = 0; e < tokensOf.length; e++) {
            tokensOf[e] = Arrays.copyOf(tokensOf[e], counts[e]);
        }
        return tokensOf;
    }

    private static void requireFinite(float[] x, int count, int hidden, int layer, int[] ids) {
        for (int i = 0; i < count * hidden; i++) {
            if (!Float.isFinite(x[i])) {
                throw new IllegalArgumentException("calibration input of layer " + layer + ", token " + ids[i / hidden]
                        + ", element " + i % hidden + " is " + x[i]);
            }
        }
    }

    /** Streams one expert's tokens through its histograms and reads off the thresholds. */
    private static ExpertOutcome calibrateExpert(Checkpoint checkpoint, MoeConfig config, CalibrationSource source,
                                                 Options options, int layer, int expert, int[] tokens) {
        if (tokens.length == 0) {
            return new ExpertOutcome(new SparsityProfile.Expert(SparsityProfile.Projection.none(0),
                    SparsityProfile.Projection.none(0)), 0, 0);
        }
        SwiGluExpert weights = MoeWeights.loadExpert(checkpoint, config, layer, expert);
        int hidden = config.hiddenSize();
        int inter = config.moeIntermediateSize();
        int batch = Math.min(options.batchTokens(), tokens.length);
        float[] x = new float[batch * hidden];
        float[] h = new float[batch * inter];
        double p = options.targetSparsity();
        // Pass 1: x and its threshold.
        ActivationHistogram xs = new ActivationHistogram();
        for (int from = 0; from < tokens.length; from += batch) {
            int count = Math.min(batch, tokens.length - from);
            source.read(layer, tokens, from, count, x);
            xs.add(x, 0, count * hidden);
        }
        float xMode = options.modeCentering() ? (float) xs.mode() : 0f;
        float xThreshold = (float) xs.quantileOfDeviation(xMode, p);
        // Pass 2: h as the server computes it, from the pruned x, so that the down threshold prunes its target share
        // of what down_proj really receives (h from the dense x is larger: it would prune less than the target).
        ActivationHistogram hs = new ActivationHistogram();
        for (int from = 0; from < tokens.length; from += batch) {
            int count = Math.min(batch, tokens.length - from);
            source.read(layer, tokens, from, count, x);
            pruneToMode(x, count * hidden, xMode, xThreshold);
            weights.intermediate(options.kernels(), x, count, h);
            try {
                hs.add(h, 0, count * inter);
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("layer " + layer + " expert " + expert + ": down_proj input "
                        + e.getMessage() + " (weights or inputs out of float32 range)", e);
            }
        }
        float hMode = options.modeCentering() ? (float) hs.mode() : 0f;
        float hThreshold = (float) hs.quantileOfDeviation(hMode, p);
        SparsityProfile.Expert entry = new SparsityProfile.Expert(
                new SparsityProfile.Projection(xThreshold, xMode, tokens.length),
                new SparsityProfile.Projection(hThreshold, hMode, tokens.length));
        if (!options.measure()) {
            return new ExpertOutcome(entry, xs.fractionWithin(xMode, xThreshold), hs.fractionWithin(hMode, hThreshold));
        }
        // Second pass: prune as the kernels do (|v − mode| <= threshold in float) and count.
        long xPruned = 0;
        long hPruned = 0;
        for (int from = 0; from < tokens.length; from += batch) {
            int count = Math.min(batch, tokens.length - from);
            source.read(layer, tokens, from, count, x);
            xPruned += pruneToMode(x, count * hidden, xMode, xThreshold);
            weights.intermediate(options.kernels(), x, count, h);
            hPruned += countPruned(h, count * inter, hMode, hThreshold);
        }
        return new ExpertOutcome(entry, (double) xPruned / ((long) tokens.length * hidden),
                (double) hPruned / ((long) tokens.length * inter));
    }

    /**
     * Prunes as the kernels do: a value with {@code |v − mode| <= threshold} enters the projection as the mode (0
     * without mode-centering; with it, the kernels skip {@code v − mode} and add {@code W·mode} back as a bias).
     *
     * @return how many values were pruned
     */
    private static long pruneToMode(float[] values, int n, float mode, float threshold) {
        long pruned = 0;
        for (int i = 0; i < n; i++) {
            if (Math.abs(values[i] - mode) <= threshold) {
                values[i] = mode;
                pruned++;
            }
        }
        return pruned;
    }

    private static long countPruned(float[] values, int n, float mode, float threshold) {
        long pruned = 0;
        for (int i = 0; i < n; i++) {
            if (Math.abs(values[i] - mode) <= threshold) {
                pruned++;
            }
        }
        return pruned;
    }

    private static ExpertOutcome await(List<Future<ExpertOutcome>> futures, int index) {
        try {
            return futures.get(index).get();
        } catch (InterruptedException e) {
            futures.forEach(f -> f.cancel(true));
            Thread.currentThread().interrupt();
            throw new IllegalStateException("calibration interrupted", e);
        } catch (ExecutionException e) {
            futures.forEach(f -> f.cancel(true));
            if (e.getCause() instanceof RuntimeException runtime) {
                throw runtime;
            }
            if (e.getCause() instanceof Error error) {
                throw error;
            }
            throw new IllegalStateException(e.getCause());
        }
    }

    private static java.util.concurrent.ThreadFactory daemonThreads() {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, "calibrate-" + n.getAndIncrement());
            t.setDaemon(true);
            return t;
        };
    }
}

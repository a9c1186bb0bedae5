package dev.moe.expert.metrics;

import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.WeightType;
import dev.moe.expert.shard.ExpertComputer;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.function.IntSupplier;

/**
 * What an expert server measures (Micrometer names; Prometheus names after its naming convention):
 * <ul>
 *   <li>{@value #TOKENS} counter, tag {@code expert} (and {@code layer} when enabled) → {@code
 *       moe_expert_tokens_total}: (token, expert) pairs computed;</li>
 *   <li>{@value #COMPUTE} timer → {@code moe_expert_compute_seconds}: expert compute of one call (all its experts);
 *       </li>
 *   <li>{@value #CALL_TOKENS} / {@value #BATCH_TOKENS} summaries → {@code moe_expert_call_tokens} / {@code
 *       moe_expert_batch_tokens}: tokens per call, and tokens per expert per call (the batch its kernel runs);</li>
 *   <li>{@value #ACTIVATIONS} / {@value #PRUNED} counters, tags {@code expert}, {@code projection} (gate_up, down)
 *       → {@code moe_expert_activations_values_total} / {@code moe_expert_activations_pruned_values_total}: input
 *       activations entering each projection and those SCAP thresholds pruned (achieved sparsity = the ratio of
 *       their rates);</li>
 *   <li>{@value #KERNEL_RUNS} counter, tags {@code path} (dense, sparse), {@code projection} → {@code
 *       moe_expert_kernel_runs_total};</li>
 *   <li>gauges {@value #INFLIGHT} (calls being served), {@value #KERNEL_QUEUE} (calls waiting for the kernel pool),
 *       {@value #WEIGHTS} (bytes of resident expert weights, tag {@code dtype}), {@value #HOSTED}.</li>
 * </ul>
 * Per-expert meters exist for the hosted experts only, created up front: the hot path only looks them up.
 */
public final class ExpertMetrics {
    public static final String TOKENS = "moe.expert.tokens";
    public static final String COMPUTE = "moe.expert.compute";
    public static final String CALL_TOKENS = "moe.expert.call.tokens";
    public static final String BATCH_TOKENS = "moe.expert.batch.tokens";
    public static final String ACTIVATIONS = "moe.expert.activations";
    public static final String PRUNED = "moe.expert.activations.pruned";
    public static final String KERNEL_RUNS = "moe.expert.kernel.runs";
    public static final String INFLIGHT = "moe.expert.calls.inflight";
    public static final String KERNEL_QUEUE = "moe.expert.kernel.queue";
    public static final String WEIGHTS = "moe.expert.weights";
    public static final String HOSTED = "moe.expert.hosted";

    private static final String GATE_UP = "gate_up";
    private static final String DOWN = "down";

    private final int hiddenSize;
    private final int intermediateSize;
    private final int[] layerSlot;        // [layer] → 0.. for tagged layers, or 0 for all when untagged
    private final Counter[] tokens;       // [layerSlot * numExperts + expert], null where not hosted
    private final Counter[][] activations; // [expert] {gate_up, down}
    private final Counter[][] pruned;      // [expert] {gate_up, down}
    private final Counter[] runs;          // {gate_up dense, gate_up sparse, down dense, down sparse}
    private final Timer compute;
    private final DistributionSummary callTokens;
    private final DistributionSummary batchTokens;
    private final AtomicInteger inflight = new AtomicInteger();

    /**
     * @param hostedExperts experts of this server
     * @param moeLayers     MoE layer numbers (for the layer tag)
     * @param layerTag      tag token counts with the layer
     * @param kernelQueue   callers waiting for the kernel pool
     */
    public ExpertMetrics(MeterRegistry registry, int numExperts, int[] hostedExperts, List<Integer> moeLayers,
                         boolean layerTag, int hiddenSize, int intermediateSize, WeightType weightType,
                         long weightBytes, IntSupplier kernelQueue) {
        this.hiddenSize = hiddenSize;
        this.intermediateSize = intermediateSize;
        int maxLayer = moeLayers.stream().mapToInt(Integer::intValue).max().orElse(0);
        this.layerSlot = new int[maxLayer + 1];
        int slots = layerTag ? moeLayers.size() : 1;
        for (int i = 0; i < moeLayers.size(); i++) {
            layerSlot[moeLayers.get(i)] = layerTag ? i : 0;
        }
        this.tokens = new Counter[slots * numExperts];
        this.activations = new Counter[numExperts][];
        this.pruned = new Counter[numExperts][];
        for (int e : hostedExperts) {
            String expert = Integer.toString(e);
            for (int s = 0; s < slots; s++) {
                Counter.Builder b = Counter.builder(TOKENS).baseUnit("tokens").tag("expert", expert)
                        .description("(token, expert) pairs computed by the expert");
                if (layerTag) {
                    b.tag("layer", Integer.toString(moeLayers.get(s)));
                }
                tokens[s * numExperts + e] = b.register(registry);
            }
            activations[e] = new Counter[] {values(registry, ACTIVATIONS, expert, GATE_UP,
                    "Input activations entering the projection"), values(registry, ACTIVATIONS, expert, DOWN,
                    "Input activations entering the projection")};
            pruned[e] = new Counter[] {values(registry, PRUNED, expert, GATE_UP,
                    "Input activations the SCAP thresholds pruned (skipped weight rows)"), values(registry, PRUNED,
                    expert, DOWN, "Input activations the SCAP thresholds pruned (skipped weight rows)")};
        }
        this.runs = new Counter[4];
        String[] projections = {GATE_UP, DOWN};
        String[] paths = {"dense", "sparse"};
        for (int p = 0; p < 2; p++) {
            for (int k = 0; k < 2; k++) {
                runs[p * 2 + k] = Counter.builder(KERNEL_RUNS).tags("projection", projections[p], "path", paths[k])
                        .description("Projection kernel runs by the path chosen (sparse: union of active input"
                                + " channels below the crossover density)").register(registry);
            }
        }
        this.compute = Timer.builder(COMPUTE)
                .description("Expert compute of one ComputeExperts call (all its experts and tokens)")
                .publishPercentileHistogram()
                .minimumExpectedValue(Duration.ofMillis(1).dividedBy(10)).maximumExpectedValue(Duration.ofSeconds(60))
                .register(registry);
        this.callTokens = DistributionSummary.builder(CALL_TOKENS).baseUnit("tokens")
                .description("Tokens per ComputeExperts call").publishPercentileHistogram()
                .minimumExpectedValue(1.0).maximumExpectedValue(16384.0).register(registry);
        this.batchTokens = DistributionSummary.builder(BATCH_TOKENS).baseUnit("tokens")
                .description("Tokens one expert processes in one call: the batch its kernel reads the weights once for")
                .publishPercentileHistogram().minimumExpectedValue(1.0).maximumExpectedValue(16384.0)
                .register(registry);
        Gauge.builder(INFLIGHT, inflight, AtomicInteger::get).description("ComputeExperts calls being served")
                .register(registry);
        Gauge.builder(KERNEL_QUEUE, kernelQueue::getAsInt)
                .description("Calls waiting for the kernel thread pool while another call's loop runs")
                .register(registry);
        for (WeightType t : WeightType.values()) {
            long bytes = t == weightType ? weightBytes : 0;
            Gauge.builder(WEIGHTS, () -> bytes).baseUnit("bytes").tag("dtype", t.name())
                    .description("Bytes of expert weights resident on this server, by storage type").register(registry);
        }
        Gauge.builder(HOSTED, () -> hostedExperts.length).baseUnit("experts")
                .description("Routed experts this server hosts (every MoE layer)").register(registry);
    }

    private static Counter values(MeterRegistry registry, String name, String expert, String projection,
                                  String description) {
        return Counter.builder(name).baseUnit("values").tags("expert", expert, "projection", projection)
                .description(description).register(registry);
    }

    /** A call was accepted; pair with {@link #callEnded()}. */
    public void callStarted() {
        inflight.incrementAndGet();
    }

    public void callEnded() {
        inflight.decrementAndGet();
    }

    /** One call's expert compute of {@code numTokens} tokens on {@code layer} took {@code nanos}. */
    public void computed(int layer, int numTokens, ExpertComputer.Result result, long nanos) {
        compute.record(nanos, TimeUnit.NANOSECONDS);
        callTokens.record(numTokens);
        int numExperts = activations.length;
        int slot = layer < layerSlot.length ? layerSlot[layer] : 0;
        for (int i = 0; i < result.expertIds().length; i++) {
            int e = result.expertIds()[i];
            int n = result.tokensPerExpert()[i];
            ExpertFfn.Stats s = result.stats()[i];
            tokens[slot * numExperts + e].increment(n);
            batchTokens.record(n);
            long x = (long) n * hiddenSize;
            long h = (long) n * intermediateSize;
            activations[e][0].increment(x);
            activations[e][1].increment(h);
            pruned[e][0].increment(Math.round(s.gateUp().prunedFraction() * x));
            pruned[e][1].increment(Math.round(s.down().prunedFraction() * h));
            runs[s.gateUp().sparse() ? 1 : 0].increment();
            runs[s.down().sparse() ? 3 : 2].increment();
        }
    }
}

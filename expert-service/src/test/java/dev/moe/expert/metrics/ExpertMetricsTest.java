package dev.moe.expert.metrics;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.kernels.ExpertFfn.ProjectionStats;
import dev.moe.core.kernels.ExpertFfn.Stats;
import dev.moe.core.kernels.WeightType;
import dev.moe.expert.shard.ExpertComputer;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.DistributionSummary;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.MockClock;
import io.micrometer.core.instrument.simple.SimpleConfig;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.util.List;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

class ExpertMetricsTest {

    private static final int NUM_EXPERTS = 4;
    private static final int HIDDEN = 16;
    private static final int INTER = 24;
    private static final int[] HOSTED = {1, 3};
    private static final List<Integer> LAYERS = List.of(1, 3);

    private static ProjectionStats dense() {
        return new ProjectionStats(false, 1.0, 0.0);
    }

    private static ProjectionStats sparse(double prunedFraction) {
        return new ProjectionStats(true, 0.5, prunedFraction);
    }

    private static ExpertComputer.Result result(int[] experts, int[] tokens, Stats... stats) {
        return new ExpertComputer.Result(new float[0], experts, tokens, stats);
    }

    private static ExpertMetrics metrics(MeterRegistry registry, boolean layerTag, AtomicInteger queue) {
        return new ExpertMetrics(registry, NUM_EXPERTS, HOSTED, LAYERS, layerTag, HIDDEN, INTER, WeightType.BF16,
                123_456_789L, queue::get);
    }

    private static double count(MeterRegistry registry, String name, String expert, String projection) {
        return registry.get(name).tags("expert", expert, "projection", projection).counter().count();
    }

    private static double runs(MeterRegistry registry, String projection, String path) {
        return registry.get(ExpertMetrics.KERNEL_RUNS).tags("projection", projection, "path", path).counter().count();
    }

    private static List<String> tagKeys(Meter m) {
        return m.getId().getTags().stream().map(Tag::getKey).sorted().toList();
    }

    @Test
    void countersPerExpertAndProjection() {
        var registry = new SimpleMeterRegistry();
        var m = metrics(registry, false, new AtomicInteger());

        // Call 1, 6 tokens: expert 1 gets 5 (gate_up sparse, 25 % pruned; down dense),
        //                  expert 3 gets 2 (gate_up dense; down sparse, 60 % pruned).
        m.computed(1, 6, result(new int[] {1, 3}, new int[] {5, 2},
                new Stats(sparse(0.25), dense()), new Stats(dense(), sparse(0.6))), 2_000_000);
        // Call 2, 7 tokens, layer 3: expert 3 gets all 7 (both sparse, 1/3 and 0.1 pruned).
        m.computed(3, 7, result(new int[] {3}, new int[] {7},
                new Stats(sparse(1.0 / 3), sparse(0.1))), 3_500_000);

        // Tokens: expert 1: 5; expert 3: 2 + 7.
        assertThat(registry.get(ExpertMetrics.TOKENS).tag("expert", "1").counter().count()).isEqualTo(5);
        assertThat(registry.get(ExpertMetrics.TOKENS).tag("expert", "3").counter().count()).isEqualTo(9);

        // Activations: n·hidden into gate_up, n·intermediate into down.
        assertThat(count(registry, ExpertMetrics.ACTIVATIONS, "1", "gate_up")).isEqualTo(5 * 16);
        assertThat(count(registry, ExpertMetrics.ACTIVATIONS, "1", "down")).isEqualTo(5 * 24);
        assertThat(count(registry, ExpertMetrics.ACTIVATIONS, "3", "gate_up")).isEqualTo(2 * 16 + 7 * 16);
        assertThat(count(registry, ExpertMetrics.ACTIVATIONS, "3", "down")).isEqualTo(2 * 24 + 7 * 24);

        // Pruned: round(fraction · values) per call.
        assertThat(count(registry, ExpertMetrics.PRUNED, "1", "gate_up")).isEqualTo(20);      // 0.25 · 80
        assertThat(count(registry, ExpertMetrics.PRUNED, "1", "down")).isZero();
        assertThat(count(registry, ExpertMetrics.PRUNED, "3", "gate_up")).isEqualTo(37);      // 0 + 112 / 3
        assertThat(count(registry, ExpertMetrics.PRUNED, "3", "down")).isEqualTo(29 + 17);   // 28.8 + 16.8
        assertThat(count(registry, ExpertMetrics.PRUNED, "3", "down"))
                .isEqualTo(Math.round(0.6 * 48) + Math.round(0.1 * 168));

        // Kernel runs: one per (expert, projection) per call, by path.
        assertThat(runs(registry, "gate_up", "sparse")).isEqualTo(2);
        assertThat(runs(registry, "gate_up", "dense")).isEqualTo(1);
        assertThat(runs(registry, "down", "sparse")).isEqualTo(2);
        assertThat(runs(registry, "down", "dense")).isEqualTo(1);
        assertThat(registry.find(ExpertMetrics.KERNEL_RUNS).counters()).hasSize(4);

        // Base units.
        assertThat(registry.get(ExpertMetrics.TOKENS).tag("expert", "1").counter().getId().getBaseUnit())
                .isEqualTo("tokens");
        assertThat(registry.get(ExpertMetrics.ACTIVATIONS).tags("expert", "1", "projection", "down").counter()
                .getId().getBaseUnit()).isEqualTo("values");
    }

    @Test
    void computeTimerAndTokenSummaries() {
        // A mock clock: maxima are time-windowed, and no assertion may depend on the wall clock.
        var registry = new SimpleMeterRegistry(SimpleConfig.DEFAULT, new MockClock());
        var m = metrics(registry, false, new AtomicInteger());
        m.computed(1, 6, result(new int[] {1, 3}, new int[] {5, 2}, new Stats(dense(), dense()),
                new Stats(dense(), dense())), 2_000_000);
        m.computed(3, 7, result(new int[] {3}, new int[] {7}, new Stats(dense(), dense())), 3_500_000);
        m.computed(1, 1, result(new int[] {1}, new int[] {1}, new Stats(dense(), dense())), 40_000);

        Timer compute = registry.get(ExpertMetrics.COMPUTE).timer();
        assertThat(compute.count()).isEqualTo(3);
        assertThat(compute.totalTime(TimeUnit.NANOSECONDS)).isEqualTo(2_000_000 + 3_500_000 + 40_000);
        assertThat(compute.max(TimeUnit.NANOSECONDS)).isEqualTo(3_500_000);

        DistributionSummary call = registry.get(ExpertMetrics.CALL_TOKENS).summary();
        assertThat(call.count()).isEqualTo(3);
        assertThat(call.totalAmount()).isEqualTo(6 + 7 + 1);
        assertThat(call.max()).isEqualTo(7);

        DistributionSummary batch = registry.get(ExpertMetrics.BATCH_TOKENS).summary();
        assertThat(batch.count()).as("one per expert per call").isEqualTo(4);
        assertThat(batch.totalAmount()).isEqualTo(5 + 2 + 7 + 1);
        assertThat(batch.max()).isEqualTo(7);
        assertThat(batch.getId().getBaseUnit()).isEqualTo("tokens");
    }

    @Test
    void gaugesFollowCallsQueueAndWeights() {
        var registry = new SimpleMeterRegistry();
        var queue = new AtomicInteger();
        var m = metrics(registry, false, queue);

        assertThat(registry.get(ExpertMetrics.INFLIGHT).gauge().value()).isZero();
        m.callStarted();
        m.callStarted();
        m.callStarted();
        assertThat(registry.get(ExpertMetrics.INFLIGHT).gauge().value()).isEqualTo(3);
        m.callEnded();
        assertThat(registry.get(ExpertMetrics.INFLIGHT).gauge().value()).isEqualTo(2);
        m.callEnded();
        m.callEnded();
        assertThat(registry.get(ExpertMetrics.INFLIGHT).gauge().value()).isZero();

        assertThat(registry.get(ExpertMetrics.KERNEL_QUEUE).gauge().value()).isZero();
        queue.set(5);
        assertThat(registry.get(ExpertMetrics.KERNEL_QUEUE).gauge().value()).isEqualTo(5);
        queue.set(1);
        assertThat(registry.get(ExpertMetrics.KERNEL_QUEUE).gauge().value()).isEqualTo(1);

        assertThat(registry.get(ExpertMetrics.WEIGHTS).tag("dtype", "BF16").gauge().value()).isEqualTo(123_456_789.0);
        assertThat(registry.get(ExpertMetrics.WEIGHTS).tag("dtype", "F32").gauge().value()).isZero();
        assertThat(registry.get(ExpertMetrics.WEIGHTS).tag("dtype", "INT8").gauge().value()).isZero();
        assertThat(registry.find(ExpertMetrics.WEIGHTS).gauges()).hasSize(WeightType.values().length);
        assertThat(registry.get(ExpertMetrics.WEIGHTS).tag("dtype", "BF16").gauge().getId().getBaseUnit())
                .isEqualTo("bytes");
        assertThat(registry.get(ExpertMetrics.HOSTED).gauge().value()).isEqualTo(HOSTED.length);
    }

    @Test
    void weightsGaugeShowsTheGivenDtypeOnly() {
        for (WeightType type : WeightType.values()) {
            var registry = new SimpleMeterRegistry();
            new ExpertMetrics(registry, NUM_EXPERTS, HOSTED, LAYERS, false, HIDDEN, INTER, type, 4096L, () -> 0);
            for (WeightType other : WeightType.values()) {
                assertThat(registry.get(ExpertMetrics.WEIGHTS).tag("dtype", other.name()).gauge().value())
                        .as("%s server, dtype %s", type, other).isEqualTo(other == type ? 4096.0 : 0.0);
            }
        }
    }

    @Test
    void expertsNotHostedHaveNoSeries() {
        var registry = new SimpleMeterRegistry();
        metrics(registry, false, new AtomicInteger());
        for (String name : List.of(ExpertMetrics.TOKENS, ExpertMetrics.ACTIVATIONS, ExpertMetrics.PRUNED)) {
            assertThat(registry.find(name).tag("expert", "0").meters()).as(name).isEmpty();
            assertThat(registry.find(name).tag("expert", "2").meters()).as(name).isEmpty();
            assertThat(registry.find(name).meters().stream().map(c -> c.getId().getTag("expert")).distinct().sorted())
                    .as(name).containsExactly("1", "3");
        }
        assertThat(registry.find(ExpertMetrics.TOKENS).counters()).hasSize(HOSTED.length);
        assertThat(registry.find(ExpertMetrics.ACTIVATIONS).counters()).hasSize(2 * HOSTED.length);
        assertThat(registry.find(ExpertMetrics.PRUNED).counters()).hasSize(2 * HOSTED.length);
    }

    @Test
    void layerTagSplitsTokenCountsByLayer() {
        var registry = new SimpleMeterRegistry();
        var m = metrics(registry, true, new AtomicInteger());
        m.computed(3, 4, result(new int[] {3}, new int[] {4}, new Stats(dense(), dense())), 1_000);
        m.computed(1, 3, result(new int[] {1, 3}, new int[] {2, 3}, new Stats(dense(), dense()),
                new Stats(dense(), dense())), 1_000);
        m.computed(3, 2, result(new int[] {1}, new int[] {2}, new Stats(dense(), dense())), 1_000);

        List<Counter> tokens = List.copyOf(registry.find(ExpertMetrics.TOKENS).counters());
        assertThat(tokens).hasSize(HOSTED.length * LAYERS.size())
                .allSatisfy(c -> assertThat(tagKeys(c)).containsExactly("expert", "layer"));
        assertThat(layerTokens(registry, "1", "1")).isEqualTo(2);
        assertThat(layerTokens(registry, "1", "3")).isEqualTo(2);
        assertThat(layerTokens(registry, "3", "1")).isEqualTo(3);
        assertThat(layerTokens(registry, "3", "3")).isEqualTo(4);
        assertThat(tokens.stream().map(c -> c.getId().getTag("layer")).collect(Collectors.toSet()))
                .containsExactlyInAnyOrder("1", "3");
        // Only token counts carry the layer.
        assertThat(registry.find(ExpertMetrics.ACTIVATIONS).counters())
                .allSatisfy(c -> assertThat(tagKeys(c)).containsExactly("expert", "projection"));
        assertThat(count(registry, ExpertMetrics.ACTIVATIONS, "1", "gate_up")).isEqualTo((2 + 2) * HIDDEN);
    }

    private static double layerTokens(MeterRegistry registry, String expert, String layer) {
        return registry.get(ExpertMetrics.TOKENS).tags("expert", expert, "layer", layer).counter().count();
    }

    @Test
    void withoutLayerTagAllLayersShareOneSeries() {
        var registry = new SimpleMeterRegistry();
        var m = metrics(registry, false, new AtomicInteger());
        m.computed(3, 4, result(new int[] {3}, new int[] {4}, new Stats(dense(), dense())), 1_000);
        m.computed(1, 3, result(new int[] {3}, new int[] {3}, new Stats(dense(), dense())), 1_000);
        assertThat(registry.find(ExpertMetrics.TOKENS).counters())
                .allSatisfy(c -> assertThat(tagKeys(c)).containsExactly("expert"));
        assertThat(registry.get(ExpertMetrics.TOKENS).tag("expert", "3").counter().count()).isEqualTo(7);
    }

    @Test
    void prometheusNamesAreTheDocumentedOnes() {
        var registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        var m = metrics(registry, false, new AtomicInteger(2));
        m.computed(1, 5, result(new int[] {1}, new int[] {5}, new Stats(sparse(0.5), dense())), 1_000_000);
        List<String> lines = registry.scrape().lines().filter(l -> l.startsWith("moe_expert_")).toList();
        assertThat(lines).contains(
                "moe_expert_tokens_total{expert=\"1\"} 5.0",
                "moe_expert_activations_values_total{expert=\"1\",projection=\"gate_up\"} 80.0",
                "moe_expert_activations_pruned_values_total{expert=\"1\",projection=\"gate_up\"} 40.0",
                "moe_expert_kernel_runs_total{path=\"sparse\",projection=\"gate_up\"} 1.0",
                "moe_expert_kernel_queue 2.0",
                "moe_expert_calls_inflight 0.0",
                "moe_expert_weights_bytes{dtype=\"BF16\"} 1.23456789E8");
        assertThat(lines).anyMatch(l -> l.startsWith("moe_expert_compute_seconds_count "))
                .anyMatch(l -> l.startsWith("moe_expert_call_tokens_count "))
                .anyMatch(l -> l.startsWith("moe_expert_batch_tokens_count "))
                .anyMatch(l -> l.startsWith("moe_expert_hosted_experts "));
    }
}

package dev.moe.router.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.gating.RoutingDecision;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Random;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.stream.Collectors;
import org.junit.jupiter.api.Test;

class ExpertLoadMetricsTest {

    private static final int WINDOW = 64;       // 8 buckets of 8 tokens
    private static final int CHUNK = 8;         // tokens per synthetic forward = one bucket

    /** topK experts per token, row-major. */
    private static RoutingDecision routing(int topK, int... expertIds) {
        float[] w = new float[expertIds.length];
        Arrays.fill(w, 1f / topK);
        return new RoutingDecision(expertIds.length / topK, topK, expertIds, w);
    }

    private static int[] repeat(int expert, int n) {
        int[] ids = new int[n];
        Arrays.fill(ids, expert);
        return ids;
    }

    private static Map<String, Integer> servers(int... tokens) {
        Map<String, Integer> m = new LinkedHashMap<>();
        for (int s = 0; s < tokens.length; s++) {
            m.put("expert-" + s, tokens[s]);
        }
        return m;
    }

    private static double routed(MeterRegistry registry, int expert) {
        return registry.get(ExpertLoadMetrics.ROUTED).tag("expert", Integer.toString(expert)).counter().count();
    }

    /** Records CHUNK-token top-1 forwards drawing experts from the sampler and returns the per-expert counts. */
    private static long[] recordTop1(ExpertLoadMetrics m, int layer, int numExperts, int tokens,
                                     java.util.function.IntSupplier sampler) {
        long[] counts = new long[numExperts];
        for (int done = 0; done < tokens; done += CHUNK) {
            int[] ids = new int[CHUNK];
            for (int t = 0; t < CHUNK; t++) {
                ids[t] = sampler.getAsInt();
                counts[ids[t]]++;
            }
            m.record(layer, routing(1, ids), servers(CHUNK));
        }
        return counts;
    }

    @Test
    void countsPerExpertAndServerAreExact() {
        var registry = new SimpleMeterRegistry();
        var m = new ExpertLoadMetrics(registry, 8, List.of(0, 1), false, WINDOW);
        m.record(0, routing(2, 0, 3, 3, 5, 1, 3), Map.of("a", 3, "b", 1));
        m.record(1, routing(2, 3, 7), Map.of("a", 0, "b", 1));
        m.record(0, routing(2, 2, 3, 5, 6, 0, 1, 4, 7), Map.of("a", 4, "b", 3));

        long[] expected = {2, 2, 1, 5, 1, 2, 1, 2};
        for (int e = 0; e < 8; e++) {
            assertThat(routed(registry, e)).as("expert %d", e).isEqualTo(expected[e]);
        }
        assertThat(registry.get(ExpertLoadMetrics.DISPATCHED).tag("server", "a").counter().count()).isEqualTo(7);
        assertThat(registry.get(ExpertLoadMetrics.DISPATCHED).tag("server", "b").counter().count()).isEqualTo(5);
        assertThat(registry.find(ExpertLoadMetrics.ROUTED).tagKeys("layer").counters()).isEmpty();
    }

    @Test
    void prometheusTextHasUnitSuffixTotalAndNoLayerTagByDefault() {
        var registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        var m = new ExpertLoadMetrics(registry, 4, List.of(0, 1), false, WINDOW);
        m.record(0, routing(2, 1, 3, 0, 3), servers(2, 0));
        m.record(1, routing(2, 2, 3), servers(0, 1));

        String text = registry.scrape();
        List<String> lines = text.lines().filter(l -> l.startsWith("moe_")).toList();
        assertThat(lines).contains("moe_router_routed_tokens_total{expert=\"3\"} 3.0",
                "moe_router_routed_tokens_total{expert=\"0\"} 1.0",
                "moe_router_dispatched_tokens_total{server=\"expert-0\"} 2.0",
                "moe_router_dispatched_tokens_total{server=\"expert-1\"} 1.0");
        assertThat(lines).anyMatch(l -> l.startsWith("moe_router_balancedness "))
                .anyMatch(l -> l.startsWith("moe_router_routing_entropy "))
                .anyMatch(l -> l.startsWith("moe_router_routing_drift "));
        assertThat(lines).noneMatch(l -> l.contains("layer="));
        assertThat(text).contains("# TYPE moe_router_routed_tokens_total counter");
        System.out.println(lines.stream().collect(Collectors.joining("\n", "--- scrape, perLayerTags=false\n", "")));
    }

    @Test
    void prometheusTextHasLayerTagWhenPerLayerTags() {
        var registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        var m = new ExpertLoadMetrics(registry, 4, List.of(0, 1), true, WINDOW);
        m.record(0, routing(2, 1, 3, 0, 3), servers(2, 0));
        m.record(1, routing(2, 2, 3), servers(0, 1));

        List<String> lines = registry.scrape().lines().filter(l -> l.startsWith("moe_")).toList();
        assertThat(lines).contains("moe_router_routed_tokens_total{expert=\"3\",layer=\"0\"} 2.0",
                "moe_router_routed_tokens_total{expert=\"3\",layer=\"1\"} 1.0",
                "moe_router_dispatched_tokens_total{layer=\"0\",server=\"expert-0\"} 2.0",
                "moe_router_balancedness{layer=\"0\"} 0.5",
                "moe_router_routing_entropy{layer=\"1\"} 0.5");
        assertThat(lines).allMatch(l -> l.contains("layer=\""));
        System.out.println(lines.stream().collect(Collectors.joining("\n", "--- scrape, perLayerTags=true\n", "")));
    }

    @Test
    void balancednessIsMeanOverMaxOfServerTokensInTheWindow() {
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0, 1), true, WINDOW);
        assertThat(m.balancedness(0)).isNaN();

        m.record(0, routing(1, repeat(0, 8)), servers(2, 2, 2, 2));
        assertThat(m.balancedness(0)).isEqualTo(1.0);

        m.record(1, routing(1, repeat(0, 8)), servers(8, 0, 0, 0));
        assertThat(m.balancedness(1)).isEqualTo(0.25);

        // Group of all layers, as vLLM: Σ mean / Σ max = (2 + 2) / (2 + 8).
        assertThat(m.balancedness()).isCloseTo(0.4, within(1e-12));

        // Uneven accumulation over several forwards matches the oracle on the window sums.
        m.record(0, routing(1, repeat(1, 8)), servers(5, 0, 1, 2));
        m.record(0, routing(1, repeat(1, 8)), servers(1, 0, 7, 0));
        assertThat(m.balancedness(0)).isCloseTo(MetricsOracle.balancedness(8, 2, 10, 4), within(1e-12));
    }

    @Test
    void balancednessForgetsWhatLeftTheWindow() {
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0), false, WINDOW);
        m.record(0, routing(1, repeat(0, 8)), servers(8, 0, 0, 0));
        for (int i = 0; i < WINDOW / CHUNK; i++) {
            m.record(0, routing(1, repeat(0, 8)), servers(2, 2, 2, 2));
        }
        assertThat(m.balancedness()).isEqualTo(1.0);
    }

    @Test
    void entropyIsOneForUniformAndZeroForOneExpert() {
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0, 1), true, WINDOW);
        assertThat(m.entropy(0)).isNaN();
        m.record(0, routing(1, 0, 1, 2, 3, 4, 5, 6, 7), servers(8));
        m.record(0, routing(1, 7, 6, 5, 4, 3, 2, 1, 0), servers(8));
        m.record(1, routing(1, repeat(5, 8)), servers(8));

        assertThat(m.entropy(0)).isCloseTo(1.0, within(1e-12));
        assertThat(m.entropy(1)).isEqualTo(0.0);
        assertThat(m.entropy()).isCloseTo(0.5, within(1e-12));

        var random = new Random(7);
        var m2 = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0), false, WINDOW);
        long[] counts = recordTop1(m2, 0, 8, WINDOW, () -> Math.min(7, (int) Math.abs(random.nextGaussian() * 3)));
        assertThat(m2.entropy()).isCloseTo(MetricsOracle.normalisedEntropy(counts), within(1e-12));
    }

    @Test
    void driftAgainstAGivenReference() {
        double[] uniformHalf = {1, 1, 1, 1, 0, 0, 0, 0};
        var same = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0), false, WINDOW, uniformHalf);
        assertThat(same.drift()).isNaN();
        same.record(0, routing(1, 0, 1, 2, 3, 3, 2, 1, 0), servers(8));
        assertThat(same.drift()).isCloseTo(0.0, within(1e-12));

        var disjoint = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0), false, WINDOW, uniformHalf);
        disjoint.record(0, routing(1, 4, 5, 6, 7, 7, 6, 5, 4), servers(8));
        assertThat(disjoint.drift()).isCloseTo(1.0, within(1e-12));

        var random = new Random(42);
        double[] ref = new double[16];
        for (int e = 0; e < ref.length; e++) {
            ref[e] = random.nextDouble() * (e % 3 == 0 ? 0 : 1);
        }
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 16, List.of(3), false, WINDOW, ref);
        long[] counts = recordTop1(m, 3, 16, WINDOW, () -> random.nextInt(16) * random.nextInt(2));
        double[] refNorm = Arrays.stream(ref).map(v -> v / Arrays.stream(ref).sum()).toArray();
        double expected = MetricsOracle.jensenShannon(MetricsOracle.normalise(counts), refNorm);
        assertThat(expected).isBetween(0.05, 0.95);
        assertThat(m.drift()).isCloseTo(expected, within(1e-12));
        assertThat(m.drift(3)).isEqualTo(m.drift());
    }

    @Test
    void driftAgainstTheWarmUpWindow() {
        var random = new Random(1);
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 16, List.of(0), false, WINDOW);
        long[] warmup = recordTop1(m, 0, 16, WINDOW - CHUNK, () -> random.nextInt(8));
        assertThat(m.drift()).as("no reference before the first full window").isNaN();
        long[] last = recordTop1(m, 0, 16, CHUNK, () -> random.nextInt(8));
        for (int e = 0; e < 16; e++) {
            warmup[e] += last[e];
        }
        assertThat(m.drift()).isCloseTo(0.0, within(1e-12));

        // A full window of different traffic replaces the window; the reference stays the warm-up one.
        long[] recent = recordTop1(m, 0, 16, WINDOW, () -> 4 + random.nextInt(12));
        double expected = MetricsOracle.jensenShannon(MetricsOracle.normalise(recent), MetricsOracle.normalise(warmup));
        assertThat(expected).isBetween(0.05, 0.95);
        assertThat(m.drift()).isCloseTo(expected, within(1e-12));

        // Fully disjoint traffic drifts to 1.
        recordTop1(m, 0, 16, WINDOW, () -> 8 + random.nextInt(8));
        assertThat(m.drift()).isCloseTo(1.0, within(1e-12));
    }

    @Test
    void concurrentRecordsLoseNoCounts() throws Exception {
        int threads = 4;
        int forwards = 2_000;
        var registry = new SimpleMeterRegistry();
        var m = new ExpertLoadMetrics(registry, 8, List.of(0, 1, 2), false, WINDOW);
        ExecutorService pool = Executors.newFixedThreadPool(threads);
        try {
            List<Future<long[]>> futures = new ArrayList<>();
            for (int t = 0; t < threads; t++) {
                int seed = t;
                futures.add(pool.submit(() -> {
                    var random = new Random(seed);
                    long[] counts = new long[9];   // [8] = tokens sent to "expert-0"
                    for (int f = 0; f < forwards; f++) {
                        int[] ids = new int[4];
                        for (int i = 0; i < ids.length; i++) {
                            ids[i] = random.nextInt(8);
                            counts[ids[i]]++;
                        }
                        counts[8] += 2;
                        m.record(random.nextInt(3), routing(2, ids), servers(2, 1));
                        if (f % 100 == 0) {
                            m.balancedness();
                            m.entropy();
                            m.drift();
                        }
                    }
                    return counts;
                }));
            }
            long[] expected = new long[9];
            for (Future<long[]> f : futures) {
                long[] c = f.get();
                for (int i = 0; i < c.length; i++) {
                    expected[i] += c[i];
                }
            }
            for (int e = 0; e < 8; e++) {
                assertThat(routed(registry, e)).as("expert %d", e).isEqualTo(expected[e]);
            }
            assertThat(registry.get(ExpertLoadMetrics.DISPATCHED).tag("server", "expert-0").counter().count())
                    .isEqualTo(expected[8]).isEqualTo(threads * forwards * 2.0);
            assertThat(m.balancedness()).isCloseTo(0.75, within(1e-12));
        } finally {
            pool.shutdownNow();
        }
    }

    @Test
    void rejectsBadInputWithoutCounting() {
        var registry = new SimpleMeterRegistry();
        var m = new ExpertLoadMetrics(registry, 4, List.of(1, 3), false, WINDOW);
        assertThatThrownBy(() -> m.record(2, routing(1, 0), servers(1)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("layer 2");
        assertThatThrownBy(() -> m.record(1, routing(1, 0, 4), servers(2)))
                .isInstanceOf(IllegalArgumentException.class).hasMessageContaining("expert id 4");
        assertThatThrownBy(() -> new ExpertLoadMetrics(registry, 4, List.of(0), false, WINDOW, new double[3]))
                .isInstanceOf(IllegalArgumentException.class);
        assertThat(routed(registry, 0)).isZero();
        assertThat(m.entropy()).isNaN();
    }

    @Test
    void perLayerReferenceForOneLayerWarmUpForTheOther() {
        double[] lowHalf = {1, 1, 1, 1, 0, 0, 0, 0};
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0, 1), true, WINDOW,
                Map.of(0, lowHalf));
        assertThat(m.drift(0)).isNaN();
        assertThat(m.drift(1)).isNaN();

        // Layer 0 has its reference from the first forward: traffic on the other half drifts fully.
        m.record(0, routing(1, 4, 5, 6, 7, 7, 6, 5, 4), servers(8));
        assertThat(m.drift(0)).isCloseTo(1.0, within(1e-12));
        // ... and keeps the given reference after a full window (no warm-up replaces it).
        for (int i = 0; i < WINDOW / CHUNK; i++) {
            m.record(0, routing(1, 4, 5, 6, 7, 7, 6, 5, 4), servers(8));
        }
        assertThat(m.drift(0)).isCloseTo(1.0, within(1e-12));

        // Layer 1 takes the warm-up: NaN until its first full window, whatever layer 0 saw.
        var random = new Random(5);
        long[] warmup = recordTop1(m, 1, 8, WINDOW - CHUNK, () -> random.nextInt(8));
        assertThat(m.drift(1)).isNaN();
        assertThat(m.drift()).as("mean over the layers that have a drift").isCloseTo(1.0, within(1e-12));
        long[] last = recordTop1(m, 1, 8, CHUNK, () -> random.nextInt(8));
        for (int e = 0; e < 8; e++) {
            warmup[e] += last[e];
        }
        assertThat(m.drift(1)).isCloseTo(0.0, within(1e-12));
        assertThat(m.drift()).isCloseTo(0.5, within(1e-12));

        // A full window of skewed traffic on layer 1 drifts against the warm-up, not against layer 0's reference.
        long[] recent = recordTop1(m, 1, 8, WINDOW, () -> random.nextInt(3));
        double expected = MetricsOracle.jensenShannon(MetricsOracle.normalise(recent), MetricsOracle.normalise(warmup));
        double againstLayer0Ref = MetricsOracle.jensenShannon(MetricsOracle.normalise(recent),
                MetricsOracle.normalise(new long[] {1, 1, 1, 1, 0, 0, 0, 0}));
        assertThat(expected).isBetween(0.05, 0.95);
        assertThat(Math.abs(expected - againstLayer0Ref)).isGreaterThan(0.01);
        assertThat(m.drift(1)).isCloseTo(expected, within(1e-12));
        assertThat(m.drift()).isCloseTo((1.0 + expected) / 2, within(1e-12));
    }

    @Test
    void perLayerReferencesAreNormalisedIndependently() {
        var random = new Random(9);
        double[] ref0 = new double[8];
        double[] ref2 = new double[8];
        for (int e = 0; e < 8; e++) {
            ref0[e] = 1000 * random.nextDouble();      // different scales: only proportions matter
            ref2[e] = random.nextDouble() / 1000;
        }
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(0, 2), false, WINDOW,
                Map.of(0, ref0, 2, ref2));
        long[] c0 = recordTop1(m, 0, 8, 3 * CHUNK, () -> random.nextInt(8));
        long[] c2 = recordTop1(m, 2, 8, 2 * CHUNK, () -> random.nextInt(4));
        double d0 = MetricsOracle.jensenShannon(MetricsOracle.normalise(c0), normalise(ref0));
        double d2 = MetricsOracle.jensenShannon(MetricsOracle.normalise(c2), normalise(ref2));
        assertThat(m.drift(0)).isCloseTo(d0, within(1e-12));
        assertThat(m.drift(2)).isCloseTo(d2, within(1e-12));
        assertThat(m.drift()).isCloseTo((d0 + d2) / 2, within(1e-12));
    }

    private static double[] normalise(double[] v) {
        double sum = Arrays.stream(v).sum();
        return Arrays.stream(v).map(x -> x / sum).toArray();
    }

    @Test
    void perLayerReferenceRejectionsNameTheLayer() {
        var registry = new SimpleMeterRegistry();
        List<Integer> layers = List.of(1, 3);
        assertThatThrownBy(() -> new ExpertLoadMetrics(registry, 4, layers, false, WINDOW,
                Map.of(1, new double[] {1, 1, 1, 1}, 2, new double[] {1, 1, 1, 1})))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("reference for layer 2")
                .hasMessageContaining("not an MoE layer");
        assertThatThrownBy(() -> new ExpertLoadMetrics(registry, 4, layers, false, WINDOW,
                Map.of(3, new double[] {1, 1, 1})))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 3")
                .hasMessageContaining("3 entries, expected 4");
        assertThatThrownBy(() -> new ExpertLoadMetrics(registry, 4, layers, false, WINDOW,
                Map.of(1, new double[] {1, -1, 1, 1})))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 1");
        assertThatThrownBy(() -> new ExpertLoadMetrics(registry, 4, layers, false, WINDOW,
                Map.of(3, new double[] {0, 0, 0, 0})))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 3")
                .hasMessageContaining("sums to 0");
        assertThatThrownBy(() -> new ExpertLoadMetrics(registry, 4, layers, false, WINDOW,
                Map.of(1, new double[] {1, Double.NaN, 1, 1})))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 1");
        // An empty map is every layer on warm-up.
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 4, layers, false, WINDOW, Map.of());
        m.record(1, routing(1, 0, 1, 2, 3), servers(4));
        assertThat(m.drift(1)).isNaN();
    }

    @Test
    void windowCountsAreWhatWasRecordedInTheWindow() {
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 8, List.of(5, 1, 3), false, WINDOW);
        assertThat(m.moeLayers()).containsExactly(5, 1, 3);
        assertThat(m.windowCounts(3)).containsExactly(new long[8]);

        // Top-2: both slots count.
        m.record(1, routing(2, 0, 7, 3, 7, 2, 3), servers(3));
        m.record(5, routing(1, 6, 6), servers(2));
        assertThat(m.windowCounts(1)).containsExactly(1, 0, 1, 2, 0, 0, 0, 2);
        assertThat(m.windowCounts(5)).containsExactly(0, 0, 0, 0, 0, 0, 2, 0);
        assertThat(m.windowCounts(3)).containsExactly(new long[8]);

        // A copy: changing it changes nothing.
        long[] copy = m.windowCounts(1);
        copy[0] = 1_000;
        assertThat(m.windowCounts(1)[0]).isEqualTo(1);

        // One bucket per CHUNK-token forward: after BUCKETS + 1 forwards the first one has left the window.
        var random = new Random(13);
        List<long[]> perForward = new ArrayList<>();
        for (int f = 0; f < ExpertLoadMetrics.BUCKETS + 1; f++) {
            perForward.add(recordTop1(m, 3, 8, CHUNK, () -> random.nextInt(8)));
        }
        long[] expected = new long[8];
        for (int f = 1; f < perForward.size(); f++) {
            for (int e = 0; e < 8; e++) {
                expected[e] += perForward.get(f)[e];
            }
        }
        assertThat(m.windowCounts(3)).containsExactly(expected);
        assertThat(Arrays.stream(m.windowCounts(3)).sum()).isEqualTo(WINDOW);

        assertThatThrownBy(() -> m.windowCounts(2)).isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("layer 2");
    }
}

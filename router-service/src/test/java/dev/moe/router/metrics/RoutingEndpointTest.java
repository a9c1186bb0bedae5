package dev.moe.router.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.gating.RoutingDecision;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Random;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class RoutingEndpointTest {

    private static final int NUM_EXPERTS = 6;
    private static final int WINDOW = 1024;    // large enough that nothing leaves the window here

    @TempDir
    Path dir;

    private static RoutingDecision routing(int topK, int... expertIds) {
        float[] w = new float[expertIds.length];
        Arrays.fill(w, 1f / topK);
        return new RoutingDecision(expertIds.length / topK, topK, expertIds, w);
    }

    /** {@code forwards} random top-2 forwards of 4 tokens each (two distinct experts per token, ascending). */
    private static List<int[]> forwards(int forwards, Random random) {
        List<int[]> out = new ArrayList<>();
        for (int f = 0; f < forwards; f++) {
            int[] ids = new int[8];
            for (int t = 0; t < 4; t++) {
                int a = random.nextInt(NUM_EXPERTS);
                int b = (a + 1 + random.nextInt(NUM_EXPERTS - 1)) % NUM_EXPERTS;
                ids[2 * t] = Math.min(a, b);
                ids[2 * t + 1] = Math.max(a, b);
            }
            out.add(ids);
        }
        return out;
    }

    /** Records the forwards on the layer and returns their per-expert counts, tallied here. */
    private static long[] replay(ExpertLoadMetrics load, int layer, List<int[]> forwards) {
        long[] counts = new long[NUM_EXPERTS];
        for (int[] ids : forwards) {
            for (int id : ids) {
                counts[id]++;
            }
            load.record(layer, routing(2, ids), Map.of("s", ids.length / 2));
        }
        return counts;
    }

    @Test
    void currentHasTheRecordedCountsOfLayersWithTraffic() {
        var load = new ExpertLoadMetrics(new SimpleMeterRegistry(), NUM_EXPERTS, List.of(1, 3, 5), false, WINDOW);
        var endpoint = new RoutingEndpoint(load, "fp-xyz", NUM_EXPERTS);
        assertThat(endpoint.current().expertCounts()).as("no traffic yet").isEmpty();

        var random = new Random(3);
        long[] layer1 = replay(load, 1, forwards(10, random));
        long[] layer5 = replay(load, 5, forwards(3, random));

        RoutingReference ref = endpoint.current();
        assertThat(ref.modelFingerprint()).isEqualTo("fp-xyz");
        assertThat(ref.numExperts()).isEqualTo(NUM_EXPERTS);
        assertThat(ref.expertCounts().keySet()).as("layer 3 has no traffic").containsExactly(1, 5);
        assertThat(ref.expertCounts().get(1)).containsExactly(layer1);
        assertThat(ref.expertCounts().get(5)).containsExactly(layer5);
        assertThat(Arrays.stream(ref.expertCounts().get(1)).sum()).isEqualTo(10 * 4 * 2);
        assertThat(Arrays.stream(ref.expertCounts().get(5)).sum()).isEqualTo(3 * 4 * 2);
    }

    @Test
    void aLayerWhoseForwardsHadNoTokensIsLeftOut() {
        var load = new ExpertLoadMetrics(new SimpleMeterRegistry(), NUM_EXPERTS, List.of(0, 1), false, WINDOW);
        load.record(0, routing(2), Map.of());                  // a forward of 0 tokens
        load.record(1, routing(1, 4, 4, 0), Map.of("s", 3));
        RoutingReference ref = new RoutingEndpoint(load, "fp", NUM_EXPERTS).current();
        assertThat(ref.expertCounts().keySet()).containsExactly(1);
        assertThat(ref.expertCounts().get(1)).containsExactly(1, 0, 0, 0, 2, 0);
    }

    @Test
    void theJsonItServesReadsBackAsAReference() throws IOException {
        var load = new ExpertLoadMetrics(new SimpleMeterRegistry(), NUM_EXPERTS, List.of(2, 4), true, WINDOW);
        var endpoint = new RoutingEndpoint(load, "fp-abc", NUM_EXPERTS);
        var random = new Random(11);
        List<int[]> traffic2 = forwards(7, random);
        List<int[]> traffic4 = forwards(5, random);
        long[] layer2 = replay(load, 2, traffic2);
        long[] layer4 = replay(load, 4, traffic4);

        Path file = dir.resolve("routing-reference.json");
        Files.writeString(file, endpoint.routing());
        RoutingReference back = RoutingReference.read(file);
        assertThat(back.modelFingerprint()).isEqualTo("fp-abc");
        assertThat(back.numExperts()).isEqualTo(NUM_EXPERTS);
        assertThat(back.expertCounts().keySet()).containsExactly(2, 4);
        assertThat(back.expertCounts().get(2)).containsExactly(layer2);
        assertThat(back.expertCounts().get(4)).containsExactly(layer4);

        // Given back to a router seeing the same traffic, drift is 0 from the first forward (no warm-up).
        var next = new ExpertLoadMetrics(new SimpleMeterRegistry(), NUM_EXPERTS, List.of(2, 4), true, WINDOW,
                back.distributions());
        assertThat(next.drift(2)).isNaN();
        replay(next, 2, traffic2.subList(0, 1));
        assertThat(next.drift(2)).as("reference in use after one forward").isNotNaN();
        replay(next, 2, traffic2.subList(1, traffic2.size()));
        replay(next, 4, traffic4);
        assertThat(next.drift(2)).isCloseTo(0.0, within(1e-12));
        assertThat(next.drift(4)).isCloseTo(0.0, within(1e-12));

        // Layer 2's reference given to layer 4: layer 4's traffic drifts by the JSD of the two count vectors.
        var swapped = new ExpertLoadMetrics(new SimpleMeterRegistry(), NUM_EXPERTS, List.of(2, 4), true, WINDOW,
                Map.of(4, back.distributions().get(2)));
        replay(swapped, 4, traffic4);
        double expected = MetricsOracle.jensenShannon(MetricsOracle.normalise(layer4), MetricsOracle.normalise(layer2));
        assertThat(expected).isGreaterThan(0.001);
        assertThat(swapped.drift(4)).isCloseTo(expected, within(1e-12));
        assertThat(swapped.drift(2)).as("layer 2 has no reference and no traffic").isNaN();
    }

    @Test
    void routingOfARouterWithoutTrafficIsAnEmptyButReadableReference() throws IOException {
        var load = new ExpertLoadMetrics(new SimpleMeterRegistry(), NUM_EXPERTS, List.of(0), false, WINDOW);
        Path file = dir.resolve("empty.json");
        Files.writeString(file, new RoutingEndpoint(load, "fp", NUM_EXPERTS).routing());
        RoutingReference back = RoutingReference.read(file);
        assertThat(back.expertCounts()).isEmpty();
        assertThat(back.numExperts()).isEqualTo(NUM_EXPERTS);
    }
}

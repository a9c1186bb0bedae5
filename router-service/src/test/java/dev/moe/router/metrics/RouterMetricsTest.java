package dev.moe.router.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.gating.RoutingDecision;
import dev.moe.router.dispatch.DispatchPlan;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import dev.moe.router.dispatch.ExpertEndpoint;
import dev.moe.router.dispatch.ExpertRoutingTable;
import io.grpc.Status;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Tag;
import io.micrometer.core.instrument.Timer;
import io.micrometer.core.instrument.MockClock;
import io.micrometer.core.instrument.simple.SimpleConfig;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import io.micrometer.prometheusmetrics.PrometheusConfig;
import io.micrometer.prometheusmetrics.PrometheusMeterRegistry;
import java.util.Arrays;
import java.util.HashMap;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.atomic.AtomicReference;
import org.junit.jupiter.api.Test;

class RouterMetricsTest {

    private static final int NUM_EXPERTS = 4;
    private static final int WINDOW = 64;

    private static ExpertEndpoint endpoint(String serverId, String address, int... experts) {
        return new ExpertEndpoint(serverId, address, experts, null);
    }

    private static RoutingDecision routing(int topK, int... expertIds) {
        float[] w = new float[expertIds.length];
        Arrays.fill(w, 1f / topK);
        return new RoutingDecision(expertIds.length / topK, topK, expertIds, w);
    }

    private record Setup(SimpleMeterRegistry registry, ExpertLoadMetrics load, RouterMetrics metrics,
                         AtomicReference<ExpertRoutingTable> table) {
    }

    private static Setup setup(ExpertRoutingTable initial) {
        // A mock clock: timer maxima are time-windowed, and no assertion may depend on the wall clock.
        var registry = new SimpleMeterRegistry(SimpleConfig.DEFAULT, new MockClock());
        var load = new ExpertLoadMetrics(registry, NUM_EXPERTS, List.of(0, 1), false, WINDOW);
        var table = new AtomicReference<>(initial);
        return new Setup(registry, load, new RouterMetrics(registry, load, NUM_EXPERTS, table::get), table);
    }

    private static double gauge(MeterRegistry registry, String name) {
        return registry.get(name).gauge().value();
    }

    private static Map<String, String> tags(Meter meter) {
        Map<String, String> m = new HashMap<>();
        for (Tag t : meter.getId().getTags()) {
            m.put(t.getKey(), t.getValue());
        }
        return m;
    }

    private record Forward(String rpc, Status.Code status, int tokens, long nanos) {
        String key() {
            return rpc + " " + status;
        }
    }

    @Test
    void forwardTimersAndTokenCountersArePerRpcAndStatus() {
        Setup s = setup(ExpertRoutingTable.empty(NUM_EXPERTS));
        List<Forward> forwards = List.of(
                new Forward("Forward", Status.Code.OK, 5, 1_000_000),
                new Forward("Forward", Status.Code.OK, 3, 2_500_000),
                new Forward("ForwardStream", Status.Code.OK, 7, 4_000_000),
                new Forward("ForwardStream", Status.Code.OK, 1, 500_000),
                new Forward("Forward", Status.Code.INVALID_ARGUMENT, 0, 10_000),
                new Forward("Forward", Status.Code.UNAVAILABLE, 2, 30_000_000),
                new Forward("ForwardStream", Status.Code.RESOURCE_EXHAUSTED, 0, 20_000));
        for (Forward f : forwards) {
            s.metrics().forwardCompleted(f.rpc(), f.status(), f.tokens(), f.nanos());
        }

        // Expected values from the list above, per (rpc, status).
        Map<String, long[]> expected = new LinkedHashMap<>();   // {count, nanos, tokens, maxNanos}
        for (Forward f : forwards) {
            long[] e = expected.computeIfAbsent(f.key(), k -> new long[4]);
            e[0]++;
            e[1] += f.nanos();
            e[2] += f.tokens();
            e[3] = Math.max(e[3], f.nanos());
        }
        assertThat(expected).hasSize(5);

        for (Forward f : forwards) {
            long[] e = expected.get(f.key());
            Timer timer = s.registry().get(RouterMetrics.FORWARD)
                    .tags("rpc", f.rpc(), "status", f.status().name()).timer();
            assertThat(timer.count()).as("count %s", f.key()).isEqualTo(e[0]);
            assertThat(timer.totalTime(TimeUnit.NANOSECONDS)).as("total %s", f.key()).isEqualTo((double) e[1]);
            assertThat(timer.max(TimeUnit.NANOSECONDS)).as("max %s", f.key()).isEqualTo((double) e[3]);
            assertThat(tags(timer)).containsOnlyKeys("rpc", "status");

            Counter tokens = s.registry().find(RouterMetrics.FORWARD_TOKENS)
                    .tags("rpc", f.rpc(), "status", f.status().name()).counter();
            if (e[2] == 0) {
                assertThat(tokens).as("no token series for %s", f.key()).isNull();
            } else {
                assertThat(tokens).as("token series for %s", f.key()).isNotNull();
                assertThat(tokens.count()).as("tokens %s", f.key()).isEqualTo((double) e[2]);
                assertThat(tokens.getId().getBaseUnit()).isEqualTo("tokens");
            }
        }
        // Spot values, by hand.
        assertThat(s.registry().get(RouterMetrics.FORWARD).tags("rpc", "Forward", "status", "OK").timer()
                .totalTime(TimeUnit.MILLISECONDS)).isEqualTo(3.5);
        assertThat(s.registry().get(RouterMetrics.FORWARD_TOKENS).tags("rpc", "ForwardStream", "status", "OK")
                .counter().count()).isEqualTo(8.0);
        assertThat(s.registry().find(RouterMetrics.FORWARD).timers()).hasSize(5);
        assertThat(s.registry().find(RouterMetrics.FORWARD_TOKENS).counters()).hasSize(3);
    }

    @Test
    void dispatchTimersArePerServerAndStatusAndBytesPerServer() {
        ExpertEndpoint a = endpoint("expert-a", "10.0.0.1:9090", 0, 1);
        ExpertEndpoint aRestarted = endpoint("expert-a", "10.0.0.9:9090", 0, 1);  // same pod name, new address
        ExpertEndpoint b = endpoint("expert-b", "10.0.0.2:9090", 2, 3);
        ExpertEndpoint c = endpoint("expert-c", "10.0.0.3:9090", 2);
        Setup s = setup(ExpertRoutingTable.of(NUM_EXPERTS, List.of(a, b, c)));
        RouterMetrics m = s.metrics();

        m.callCompleted(a, Status.Code.OK, 2_000_000, 1_000, 4_000);
        m.callCompleted(aRestarted, Status.Code.OK, 3_000_000, 500, 2_000);
        m.callCompleted(a, Status.Code.DEADLINE_EXCEEDED, 50_000_000, 700, 0);
        m.callCompleted(b, Status.Code.OK, 1_000_000, 100, 300);
        m.callCompleted(b, Status.Code.CANCELLED, 5_000_000, 200, 0);
        m.callCompleted(c, Status.Code.UNAVAILABLE, 40_000, 64, 0);

        Timer aOk = s.registry().get(RouterMetrics.DISPATCH).tags("server", "expert-a", "status", "OK").timer();
        assertThat(aOk.count()).isEqualTo(2);
        assertThat(aOk.totalTime(TimeUnit.NANOSECONDS)).isEqualTo(5_000_000.0);
        assertThat(tags(aOk)).containsOnlyKeys("server", "status");
        Timer aDeadline = s.registry().get(RouterMetrics.DISPATCH)
                .tags("server", "expert-a", "status", "DEADLINE_EXCEEDED").timer();
        assertThat(aDeadline.count()).isEqualTo(1);
        assertThat(aDeadline.totalTime(TimeUnit.MILLISECONDS)).isEqualTo(50.0);
        assertThat(s.registry().get(RouterMetrics.DISPATCH).tags("server", "expert-b", "status", "OK").timer()
                .totalTime(TimeUnit.NANOSECONDS)).isEqualTo(1_000_000.0);
        assertThat(s.registry().get(RouterMetrics.DISPATCH).tags("server", "expert-b", "status", "CANCELLED")
                .timer().count()).isEqualTo(1);
        assertThat(s.registry().find(RouterMetrics.DISPATCH).timers()).hasSize(5);
        // Series are by server id, never by address.
        assertThat(s.registry().find(RouterMetrics.DISPATCH).timers())
                .allSatisfy(t -> assertThat(tags(t).get("server")).startsWith("expert-"));

        assertThat(bytes(s, RouterMetrics.SENT, "expert-a")).isEqualTo(1_000 + 500 + 700);
        assertThat(bytes(s, RouterMetrics.RECEIVED, "expert-a")).isEqualTo(4_000 + 2_000);
        assertThat(bytes(s, RouterMetrics.SENT, "expert-b")).isEqualTo(100 + 200);
        assertThat(bytes(s, RouterMetrics.RECEIVED, "expert-b")).isEqualTo(300);
        // A server whose calls all failed: bytes sent, nothing received (the series exists, at 0).
        assertThat(bytes(s, RouterMetrics.SENT, "expert-c")).isEqualTo(64);
        assertThat(bytes(s, RouterMetrics.RECEIVED, "expert-c")).isZero();
        assertThat(s.registry().get(RouterMetrics.SENT).tag("server", "expert-a").counter().getId().getBaseUnit())
                .isEqualTo("bytes");
        assertThat(s.registry().find(RouterMetrics.SENT).counters()).hasSize(3);
        assertThat(s.registry().find(RouterMetrics.RECEIVED).counters()).hasSize(3);
    }

    private static double bytes(Setup s, String name, String server) {
        return s.registry().get(name).tag("server", server).counter().count();
    }

    @Test
    void tableGaugesFollowTheCurrentTable() {
        Setup s = setup(ExpertRoutingTable.empty(NUM_EXPERTS));
        assertTableGauges(s, List.of());

        List<ExpertEndpoint> first = List.of(endpoint("a", "a:1", 0, 1), endpoint("b", "b:1", 1, 2));
        s.table().set(ExpertRoutingTable.of(NUM_EXPERTS, first));
        assertTableGauges(s, first);
        // By hand: servers 2, entries 4, expert 3 uncovered, replicas [1, 2, 1, 0].
        assertThat(gauge(s.registry(), RouterMetrics.SERVERS)).isEqualTo(2);
        assertThat(gauge(s.registry(), RouterMetrics.TABLE_ENTRIES)).isEqualTo(4);
        assertThat(gauge(s.registry(), RouterMetrics.UNCOVERED)).isEqualTo(1);
        assertThat(s.registry().get(RouterMetrics.REPLICAS).tag("expert", "1").gauge().value()).isEqualTo(2);
        assertThat(s.registry().get(RouterMetrics.REPLICAS).tag("expert", "3").gauge().value()).isZero();

        List<ExpertEndpoint> second = List.of(endpoint("a", "a:1", 0, 1, 2, 3), endpoint("b", "b:1", 0, 1, 2, 3),
                endpoint("c", "c:1", 3));
        s.table().set(ExpertRoutingTable.of(NUM_EXPERTS, second));
        assertTableGauges(s, second);
        assertThat(gauge(s.registry(), RouterMetrics.TABLE_ENTRIES)).isEqualTo(9);
        assertThat(gauge(s.registry(), RouterMetrics.UNCOVERED)).isZero();

        s.table().set(ExpertRoutingTable.empty(NUM_EXPERTS));
        assertTableGauges(s, List.of());
        assertThat(s.registry().find(RouterMetrics.REPLICAS).gauges()).hasSize(NUM_EXPERTS);
    }

    /** The gauges against counts derived from the endpoints' expert lists. */
    private static void assertTableGauges(Setup s, List<ExpertEndpoint> endpoints) {
        int[] replicas = new int[NUM_EXPERTS];
        int entries = 0;
        for (ExpertEndpoint e : endpoints) {
            for (int expert : e.expertIds()) {
                replicas[expert]++;
                entries++;
            }
        }
        int uncovered = (int) Arrays.stream(replicas).filter(r -> r == 0).count();
        assertThat(gauge(s.registry(), RouterMetrics.SERVERS)).isEqualTo(endpoints.size());
        assertThat(gauge(s.registry(), RouterMetrics.TABLE_ENTRIES)).isEqualTo(entries);
        assertThat(gauge(s.registry(), RouterMetrics.UNCOVERED)).isEqualTo(uncovered);
        for (int e = 0; e < NUM_EXPERTS; e++) {
            assertThat(s.registry().get(RouterMetrics.REPLICAS).tag("expert", Integer.toString(e)).gauge().value())
                    .as("replicas of expert %d", e).isEqualTo(replicas[e]);
        }
    }

    @Test
    void routedCountsIdleTableServersInBalancedness() {
        ExpertEndpoint a = endpoint("a", "a:1", 0, 1);
        ExpertEndpoint b = endpoint("b", "b:1", 2, 3);
        ExpertRoutingTable table = ExpertRoutingTable.of(NUM_EXPERTS, List.of(a, b));
        Setup s = setup(table);
        assertThat(s.metrics().load()).isSameAs(s.load());

        // 4 tokens, top-2, all on experts 0 and 1 → all on server a; b idle.
        RoutingDecision r = routing(2, 0, 1, 0, 1, 0, 1, 0, 1);
        List<ServerBatch> batches = DispatchPlan.plan(r, table, 0);
        assertThat(batches).hasSize(1);
        s.metrics().routed(0, r, batches, table);

        assertThat(s.load().balancedness(0)).isEqualTo(0.5);           // mean (4 + 0) / 2 over max 4
        assertThat(s.load().balancedness()).isEqualTo(0.5);
        assertThat(s.registry().get(ExpertLoadMetrics.DISPATCHED).tag("server", "a").counter().count()).isEqualTo(4);
        assertThat(s.registry().get(ExpertLoadMetrics.DISPATCHED).tag("server", "b").counter().count()).isZero();
        assertThat(routedCount(s, 0)).isEqualTo(4);
        assertThat(routedCount(s, 1)).isEqualTo(4);
        assertThat(routedCount(s, 2)).isZero();
        assertThat(routedCount(s, 3)).isZero();

        // Layer 1: token 0 → {0, 2} (a and b), token 1 → {2, 3} (b), token 2 → {1, 3} (a and b).
        RoutingDecision r1 = routing(2, 0, 2, 2, 3, 1, 3);
        s.metrics().routed(1, r1, DispatchPlan.plan(r1, table, 1), table);
        assertThat(s.load().balancedness(1)).isCloseTo(MetricsOracle.balancedness(2, 3), within(1e-12));
        // Both layers: Σ mean / Σ max = (2 + 2.5) / (4 + 3).
        assertThat(s.load().balancedness()).isCloseTo(4.5 / 7, within(1e-12));
        assertThat(s.registry().get(ExpertLoadMetrics.DISPATCHED).tag("server", "a").counter().count()).isEqualTo(6);
        assertThat(s.registry().get(ExpertLoadMetrics.DISPATCHED).tag("server", "b").counter().count()).isEqualTo(3);
        assertThat(routedCount(s, 0)).isEqualTo(5);
        assertThat(routedCount(s, 1)).isEqualTo(5);
        assertThat(routedCount(s, 2)).isEqualTo(2);
        assertThat(routedCount(s, 3)).isEqualTo(2);
    }

    @Test
    void routedCountsTheServersThePlanCanSelectOfTheTableGiven() {
        ExpertEndpoint a = endpoint("a", "a:1", 0, 1);
        ExpertEndpoint b = endpoint("b", "b:1", 2, 3);
        ExpertEndpoint replicaOfA = endpoint("a2", "a2:1", 0, 1);
        ExpertRoutingTable table = ExpertRoutingTable.of(NUM_EXPERTS, List.of(a, replicaOfA, b));
        // The gauge supplier serves an empty table: routed() must use the table the forward was planned on.
        Setup s = setup(ExpertRoutingTable.empty(NUM_EXPERTS));

        RoutingDecision r = routing(1, 0, 1, 0, 1, 0, 1);
        List<ServerBatch> batches = DispatchPlan.plan(r, table, 0);
        s.metrics().routed(0, r, batches, table);

        // select() takes each expert's first replica: a gets all 6 tokens, b is idle (0) and counts, a2 is never
        // selected and does not (it would pin balancedness at <= 1/replicas forever) → mean 3, max 6.
        assertThat(s.load().balancedness(0)).isCloseTo(MetricsOracle.balancedness(6, 0), within(1e-12))
                .isCloseTo(0.5, within(1e-12));
        assertThat(s.registry().find(ExpertLoadMetrics.DISPATCHED).counters())
                .extracting(c -> c.getId().getTag("server")).containsExactlyInAnyOrder("a", "b");
    }

    @Test
    void aForwardThatCouldNotBeDispatchedStillCountsItsExperts() {
        Setup s = setup(ExpertRoutingTable.empty(NUM_EXPERTS));
        s.metrics().routedUndispatched(0, routing(2, 3, 1, 3, 0));
        assertThat(routedCount(s, 3)).isEqualTo(2);
        assertThat(routedCount(s, 1)).isEqualTo(1);
        assertThat(routedCount(s, 0)).isEqualTo(1);
        assertThat(s.load().windowCounts(0)).containsExactly(1, 1, 0, 2);
        assertThat(s.load().balancedness(0)).isNaN(); // no server got anything
    }

    @Test
    void abandonedCallsAreCountedApartFromCompletedOnes() {
        Setup s = setup(ExpertRoutingTable.empty(NUM_EXPERTS));
        ExpertEndpoint a = endpoint("a", "a:1", 0);
        s.metrics().callAbandoned(a, 100);
        s.metrics().callAbandoned(a, 50);
        assertThat(s.registry().get(RouterMetrics.ABANDONED).tag("server", "a").counter().count()).isEqualTo(2);
        assertThat(s.registry().find(RouterMetrics.DISPATCH).timers()).isEmpty();
        assertThat(s.registry().get(RouterMetrics.SENT).tag("server", "a").counter().count()).isEqualTo(150);
        // A server's abandoned series exists at 0 from its first completed call, so rate() over it reads 0.
        s.metrics().callCompleted(endpoint("b", "b:1", 1), io.grpc.Status.Code.OK, 1000, 10, 20);
        assertThat(s.registry().get(RouterMetrics.ABANDONED).tag("server", "b").counter().count()).isZero();
    }

    @Test
    void serverIdsBeyondTheCapShareOneOverflowSeries() {
        Setup s = setup(ExpertRoutingTable.empty(NUM_EXPERTS));
        for (int i = 0; i < ExpertLoadMetrics.MAX_SERVERS + 10; i++) {
            s.metrics().callCompleted(endpoint("pod-" + i, "p" + i + ":1", 0), io.grpc.Status.Code.OK, 1000, 10, 20);
        }
        var timers = s.registry().find(RouterMetrics.DISPATCH).timers();
        assertThat(timers).hasSize(ExpertLoadMetrics.MAX_SERVERS);
        assertThat(s.registry().get(RouterMetrics.DISPATCH).tag("server", ExpertLoadMetrics.OVERFLOW_SERVER).timer()
                .count()).isEqualTo(11);
    }

    private static double routedCount(Setup s, int expert) {
        return s.registry().get(ExpertLoadMetrics.ROUTED).tag("expert", Integer.toString(expert)).counter().count();
    }

    @Test
    void prometheusNamesAreTheDocumentedOnes() {
        var registry = new PrometheusMeterRegistry(PrometheusConfig.DEFAULT);
        var load = new ExpertLoadMetrics(registry, NUM_EXPERTS, List.of(0), false, WINDOW);
        ExpertEndpoint a = endpoint("expert-a", "a:1", 0, 1, 2);
        var m = new RouterMetrics(registry, load, NUM_EXPERTS, () -> ExpertRoutingTable.of(NUM_EXPERTS, List.of(a)));
        m.forwardCompleted("Forward", Status.Code.OK, 3, 2_000_000);
        m.callCompleted(a, Status.Code.OK, 1_000_000, 100, 200);

        List<String> lines = registry.scrape().lines().filter(l -> l.startsWith("moe_router_")).toList();
        assertThat(lines).contains(
                "moe_router_forward_seconds_count{rpc=\"Forward\",status=\"OK\"} 1",
                "moe_router_forward_tokens_total{rpc=\"Forward\",status=\"OK\"} 3.0",
                "moe_router_dispatch_seconds_count{server=\"expert-a\",status=\"OK\"} 1",
                "moe_router_dispatch_sent_bytes_total{server=\"expert-a\"} 100.0",
                "moe_router_dispatch_received_bytes_total{server=\"expert-a\"} 200.0",
                "moe_router_expert_servers 1.0",
                "moe_router_expert_table_entries 3.0",
                "moe_router_experts_uncovered 1.0",
                "moe_router_expert_replicas{expert=\"3\"} 0.0",
                "moe_router_expert_replicas{expert=\"0\"} 1.0");
        assertThat(lines).anyMatch(l -> l.startsWith("moe_router_forward_seconds_bucket{"))
                .anyMatch(l -> l.startsWith("moe_router_dispatch_seconds_bucket{"));
    }
}

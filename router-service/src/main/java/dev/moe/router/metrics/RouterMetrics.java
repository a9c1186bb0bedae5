package dev.moe.router.metrics;

import dev.moe.core.gating.RoutingDecision;
import dev.moe.router.dispatch.DispatchListener;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import dev.moe.router.dispatch.ExpertEndpoint;
import dev.moe.router.dispatch.ExpertRoutingTable;
import io.grpc.Status;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.Timer;
import java.time.Duration;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.TimeUnit;
import java.util.function.Supplier;

/**
 * Everything the router measures, besides the expert-load meters of {@link ExpertLoadMetrics} it feeds:
 * <ul>
 *   <li>{@value #FORWARD} timer, tags {@code rpc}, {@code status} → {@code moe_router_forward_seconds}: one MoE-layer
 *       forward end to end (a unary Forward or one ForwardStream message); its count is requests by RPC and status;
 *       </li>
 *   <li>{@value #FORWARD_TOKENS} counter, tags {@code rpc}, {@code status} → {@code moe_router_forward_tokens_total};
 *       a request rejected for declaring more tokens than the router accepts counts 0;</li>
 *   <li>{@value #DISPATCH} timer, tags {@code server}, {@code status} → {@code moe_router_dispatch_seconds}: one
 *       ComputeExperts call to one expert server;</li>
 *   <li>{@value #SENT} / {@value #RECEIVED} counters, tag {@code server}, bytes → {@code
 *       moe_router_dispatch_sent_bytes_total} / {@code ..._received_bytes_total}: serialized messages each way;</li>
 *   <li>{@value #ABANDONED} counter, tag {@code server} → {@code moe_router_dispatch_abandoned_total}: calls the
 *       router cancelled because another server of the same forward had failed first (not in {@value #DISPATCH}:
 *       they say nothing about this server);</li>
 *   <li>gauges of the current expert → server table: {@value #SERVERS}, {@value #TABLE_ENTRIES}, {@value #REPLICAS}
 *       (tag {@code expert}) and {@value #UNCOVERED}.</li>
 * </ul>
 * {@code server} is the id the expert server reports (its pod name in Kubernetes), so series survive pod restarts;
 * at most {@link ExpertLoadMetrics#MAX_SERVERS} distinct ids get series of their own, later ones count under
 * {@code server="}{@value ExpertLoadMetrics#OVERFLOW_SERVER}{@code "}.
 */
public final class RouterMetrics implements DispatchListener {
    public static final String FORWARD = "moe.router.forward";
    public static final String FORWARD_TOKENS = "moe.router.forward.tokens";
    public static final String DISPATCH = "moe.router.dispatch";
    public static final String SENT = "moe.router.dispatch.sent";
    public static final String RECEIVED = "moe.router.dispatch.received";
    public static final String ABANDONED = "moe.router.dispatch.abandoned";
    public static final String SERVERS = "moe.router.expert.servers";
    public static final String TABLE_ENTRIES = "moe.router.expert.table.entries";
    public static final String REPLICAS = "moe.router.expert.replicas";
    public static final String UNCOVERED = "moe.router.experts.uncovered";

    // Forwards take ~1 ms (one layer, small batch) to seconds (big batches); expert calls likewise.
    private static final Duration MIN_LATENCY = Duration.ofMillis(1).dividedBy(10);
    private static final Duration MAX_LATENCY = Duration.ofSeconds(60);

    private final MeterRegistry registry;
    private final ExpertLoadMetrics load;
    private final ConcurrentMap<String, Timer> forwardTimers = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, Counter> forwardTokens = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, Timer> dispatchTimers = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, Counter[]> wireBytes = new ConcurrentHashMap<>();
    private final ConcurrentMap<String, Counter> abandoned = new ConcurrentHashMap<>();
    private final java.util.Set<String> servers = ConcurrentHashMap.newKeySet();
    private volatile Selectable selectable = new Selectable(null, List.of());

    /** The servers a table's plan can send to (one per expert today), computed once per table. */
    private record Selectable(ExpertRoutingTable table, List<String> serverIds) {
    }

    /**
     * @param load  expert-load meters, fed by {@link #routed}
     * @param table the current expert → server table, read at scrape time
     */
    public RouterMetrics(MeterRegistry registry, ExpertLoadMetrics load, int numExperts,
                         Supplier<ExpertRoutingTable> table) {
        this.registry = registry;
        this.load = load;
        Gauge.builder(SERVERS, () -> table.get().endpoints().size())
                .description("Expert servers in the router's current expert-to-server table").register(registry);
        Gauge.builder(TABLE_ENTRIES, () -> entries(table.get()))
                .description("(expert, server) entries in the router's current expert-to-server table")
                .register(registry);
        Gauge.builder(UNCOVERED, () -> table.get().uncoveredExperts().size())
                .description("Routed experts without a ready server: forwards that choose them fail UNAVAILABLE")
                .register(registry);
        for (int e = 0; e < numExperts; e++) {
            int expert = e;
            Gauge.builder(REPLICAS, () -> table.get().replicas(expert).size()).tag("expert", Integer.toString(e))
                    .description("Ready expert servers hosting the expert (0: not servable)").register(registry);
        }
    }

    public ExpertLoadMetrics load() {
        return load;
    }

    /** One forward has ended, successfully or not, after {@code nanos}. */
    public void forwardCompleted(String rpc, Status.Code status, int tokens, long nanos) {
        String key = rpc + '/' + status.name();
        forwardTimers.computeIfAbsent(key, k -> Timer.builder(FORWARD)
                .description("One MoE-layer forward through the router, end to end (count: requests)")
                .tags("rpc", rpc, "status", status.name())
                .publishPercentileHistogram().minimumExpectedValue(MIN_LATENCY).maximumExpectedValue(MAX_LATENCY)
                .register(registry)).record(nanos, TimeUnit.NANOSECONDS);
        if (tokens > 0) {
            forwardTokens.computeIfAbsent(key, k -> Counter.builder(FORWARD_TOKENS).baseUnit(ExpertLoadMetrics.TOKENS)
                    .description("Tokens in forwards, by RPC and status").tags("rpc", rpc, "status", status.name())
                    .register(registry)).increment(tokens);
        }
    }

    /**
     * The routing of one forward and the servers it went to. Every server the table can send to counts, those that
     * got no token with 0, so balancedness sees idle servers; replicas the dispatcher never selects (it takes each
     * expert's first replica until replica load balancing exists) are left out, or they would read as idle forever.
     */
    public void routed(int layer, RoutingDecision routing, List<ServerBatch> batches, ExpertRoutingTable table) {
        Map<String, Integer> tokensPerServer = new LinkedHashMap<>();
        for (String server : selectable(table)) {
            tokensPerServer.put(server, 0);
        }
        for (ServerBatch batch : batches) {
            tokensPerServer.merge(batch.endpoint().serverId(), batch.tokens().length, Integer::sum);
        }
        load.record(layer, routing, tokensPerServer);
    }

    /** A forward routed but not dispatched (an expert without a server): its expert demand still counts. */
    public void routedUndispatched(int layer, RoutingDecision routing) {
        load.record(layer, routing, null);
    }

    private List<String> selectable(ExpertRoutingTable table) {
        Selectable s = selectable;
        if (s.table() != table) {
            java.util.Set<String> ids = new java.util.LinkedHashSet<>();
            for (int e = 0; e < table.numExperts(); e++) {
                ExpertEndpoint endpoint = table.select(e);
                if (endpoint != null) {
                    ids.add(endpoint.serverId());
                }
            }
            s = new Selectable(table, List.copyOf(ids));
            selectable = s;
        }
        return s.serverIds();
    }

    /** The server's own id, or the overflow name once {@link ExpertLoadMetrics#MAX_SERVERS} ids have series. */
    private String serverTag(String serverId) {
        if (servers.contains(serverId)) {
            return serverId;
        }
        if (servers.size() >= ExpertLoadMetrics.MAX_SERVERS - 1) {
            return ExpertLoadMetrics.OVERFLOW_SERVER;
        }
        servers.add(serverId);
        return serverId;
    }

    @Override
    public void callCompleted(ExpertEndpoint endpoint, Status.Code code, long nanos, long requestBytes,
                              long responseBytes) {
        String server = serverTag(endpoint.serverId());
        dispatchTimers.computeIfAbsent(server + '/' + code.name(), k -> Timer.builder(DISPATCH)
                .description("One ComputeExperts call from the router to an expert server")
                .tags("server", server, "status", code.name())
                .publishPercentileHistogram().minimumExpectedValue(MIN_LATENCY).maximumExpectedValue(MAX_LATENCY)
                .register(registry)).record(nanos, TimeUnit.NANOSECONDS);
        Counter[] bytes = wireBytes(server);
        bytes[0].increment(requestBytes);
        if (responseBytes > 0) {
            bytes[1].increment(responseBytes);
        }
        abandoned(server); // a server's abandoned-calls series exists (at 0) from its first call: rate() sees 0
    }

    @Override
    public void callAbandoned(ExpertEndpoint endpoint, long requestBytes) {
        String server = serverTag(endpoint.serverId());
        abandoned(server).increment();
        wireBytes(server)[0].increment(requestBytes);
    }

    private Counter abandoned(String server) {
        return abandoned.computeIfAbsent(server, s -> Counter.builder(ABANDONED).tag("server", s)
                .description("ComputeExperts calls the router cancelled because another server of the same forward"
                        + " had already failed").register(registry));
    }

    private Counter[] wireBytes(String server) {
        return wireBytes.computeIfAbsent(server, s -> new Counter[] {
                Counter.builder(SENT).baseUnit("bytes").tag("server", s)
                        .description("Bytes of ComputeExperts requests sent to the expert server").register(registry),
                Counter.builder(RECEIVED).baseUnit("bytes").tag("server", s)
                        .description("Bytes of ComputeExperts responses received from the expert server")
                        .register(registry)});
    }

    private static int entries(ExpertRoutingTable table) {
        int n = 0;
        for (int e = 0; e < table.numExperts(); e++) {
            n += table.replicas(e).size();
        }
        return n;
    }
}

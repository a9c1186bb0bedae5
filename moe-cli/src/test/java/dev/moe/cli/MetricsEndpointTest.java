package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardResponse;
import dev.moe.proto.router.v1.ForwardStreamResponse;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.router.metrics.RoutingReference;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.stub.StreamObserver;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.List;
import java.util.Random;
import java.util.Set;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.MethodOrderer;
import org.junit.jupiter.api.Order;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.TestMethodOrder;
import org.junit.jupiter.api.io.TempDir;

/**
 * The metrics of a real router and two expert servers, scraped from their HTTP management ports after known
 * traffic: every count is checked against the routing the router returned. The test that adds traffic of its own
 * runs last.
 */
@TestMethodOrder(MethodOrderer.OrderAnnotation.class)
class MetricsEndpointTest {
    private static final int HIDDEN = 64;
    private static final int EXPERTS = 8;
    private static final int TOP_K = 2;
    private static final List<Integer> LAYERS = List.of(0, 1);
    private static final int FORWARDS_PER_LAYER = 6;
    private static final int TOKENS = 5;

    @TempDir
    static Path dir;
    private static EmbeddedCluster cluster;
    private static ManagedChannel channel;
    private static Path model;
    private static final long[][] routedPerLayer = new long[LAYERS.size()][EXPERTS];
    private static final long[] tokensPerServer = new long[2];
    private static final long[][] tokensPerLayerServer = new long[LAYERS.size()][2];
    private static final long[] callsPerServer = new long[2];

    @BeforeAll
    static void startAndDriveTraffic() throws Exception {
        model = dir.resolve("qwen3");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, HIDDEN, 2, EXPERTS, TOP_K,
                48, 0, 1, 1, true, DType.F32, 1, 11), SyntheticCheckpoint.SILENT);
        cluster = EmbeddedCluster.start(EmbeddedCluster.Options.of(model, 2).withProperties(RouterCalls.EXACT));
        channel = RouterCalls.channel(cluster.routerAddress());
        var router = RouterServiceGrpc.newBlockingStub(channel);
        Random random = new Random(5);
        // Contiguous placement over 2 servers: experts 0-3 on expert-0, 4-7 on expert-1.
        for (int l = 0; l < LAYERS.size(); l++) {
            for (int f = 0; f < FORWARDS_PER_LAYER; f++) {
                float[] x = new float[TOKENS * HIDDEN];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) random.nextGaussian();
                }
                ForwardResponse response = router.forward(RouterCalls.request(LAYERS.get(l), x, TOKENS, HIDDEN,
                        WireType.FLOAT32));
                int[] ids = RouterCalls.ids(response);
                boolean[] called = new boolean[2];
                for (int t = 0; t < TOKENS; t++) {
                    Set<Integer> servers = new HashSet<>();
                    for (int j = 0; j < TOP_K; j++) {
                        int e = ids[t * TOP_K + j];
                        routedPerLayer[l][e]++;
                        servers.add(e / 4);
                    }
                    for (int s : servers) {
                        tokensPerServer[s]++;
                        tokensPerLayerServer[l][s]++;
                        called[s] = true;
                    }
                }
                for (int s = 0; s < 2; s++) {
                    callsPerServer[s] += called[s] ? 1 : 0;
                }
            }
        }
    }

    @AfterAll
    static void stop() throws InterruptedException {
        if (channel != null) {
            RouterCalls.close(channel);
        }
        if (cluster != null) {
            cluster.close();
        }
    }

    private static long routed(int expert) {
        long n = 0;
        for (long[] layer : routedPerLayer) {
            n += layer[expert];
        }
        return n;
    }

    @Test
    @Order(1)
    void routerCountsTokensPerExpertAndServerAsRouted() throws Exception {
        Scrape router = Scrape.of(cluster.router().managementUrl());
        for (int e = 0; e < EXPERTS; e++) {
            assertThat(router.value("moe_router_routed_tokens_total", "expert", Integer.toString(e)))
                    .as("expert %d", e).isEqualTo(routed(e));
        }
        for (int s = 0; s < 2; s++) {
            String server = "expert-" + s;
            assertThat(router.value("moe_router_dispatched_tokens_total", "server", server)).isEqualTo(tokensPerServer[s]);
            assertThat(router.value("moe_router_dispatch_seconds_count", "server", server, "status", "OK"))
                    .isEqualTo(callsPerServer[s]);
            // F32 on the wire: at least 4 bytes per hidden value each way (plus protobuf framing and the routing).
            assertThat(router.value("moe_router_dispatch_sent_bytes_total", "server", server))
                    .isGreaterThan(tokensPerServer[s] * HIDDEN * 4.0);
            assertThat(router.value("moe_router_dispatch_received_bytes_total", "server", server))
                    .isBetween(tokensPerServer[s] * HIDDEN * 4.0, tokensPerServer[s] * HIDDEN * 4.0 + callsPerServer[s] * 64.0);
        }
        int forwards = LAYERS.size() * FORWARDS_PER_LAYER;
        assertThat(router.value("moe_router_forward_seconds_count", "rpc", "Forward", "status", "OK")).isEqualTo(forwards);
        assertThat(router.value("moe_router_forward_tokens_total", "rpc", "Forward", "status", "OK"))
                .isEqualTo(forwards * TOKENS);
        assertThat(router.value("moe_router_forward_seconds_bucket", "rpc", "Forward", "status", "OK", "le", "+Inf"))
                .isEqualTo(forwards);
        assertThat(router.value("grpc_server_seconds_count", "rpc_method", "Forward", "grpc_status_code", "OK"))
                .isEqualTo(forwards);
        assertThat(router.sum("grpc_client_seconds_count", "rpc_method", "ComputeExperts", "grpc_status_code", "OK"))
                .isEqualTo(callsPerServer[0] + callsPerServer[1]);
        // No per-peer client series (one set per expert pod IP ever seen would never go away).
        assertThat(router.named("grpc_client_seconds_count")).isNotEmpty()
                .allSatisfy(s -> assertThat(s.labels()).doesNotContainKeys("net_peer_name", "net_peer_port"));
        // The table: two servers, each expert once, none missing.
        assertThat(router.value("moe_router_expert_servers")).isEqualTo(2);
        assertThat(router.value("moe_router_expert_table_entries")).isEqualTo(EXPERTS);
        assertThat(router.value("moe_router_experts_uncovered")).isZero();
        for (int e = 0; e < EXPERTS; e++) {
            assertThat(router.value("moe_router_expert_replicas", "expert", Integer.toString(e))).isEqualTo(1);
        }
        // Window gauges over the traffic so far (window 4096 tokens per layer holds all of it).
        // Balancedness over layers = Σ mean / Σ max of tokens per server (as vLLM aggregates layers).
        double sumMean = 0;
        double sumMax = 0;
        for (long[] servers : tokensPerLayerServer) {
            sumMean += (servers[0] + servers[1]) / 2.0;
            sumMax += Math.max(servers[0], servers[1]);
        }
        double balancedness = sumMean / sumMax;
        assertThat(router.value("moe_router_balancedness")).isCloseTo(balancedness, within(1e-9));
        assertThat(router.value("moe_router_routing_entropy")).isBetween(0.5, 1.0);
        assertThat(router.named("moe_router_routing_drift").getFirst().value()).isNaN(); // warm-up window not full
        assertThat(router.value("jvm_memory_used_bytes", "area", "heap", "id", "G1 Eden Space")).isPositive();
        assertThat(router.named("moe_router_routed_tokens_total"))
                .allSatisfy(s -> assertThat(s.labels()).containsEntry("application", "router-service")
                        .doesNotContainKey("layer"));
    }

    @Test
    @Order(2)
    void expertServersCountWhatTheyComputed() throws Exception {
        for (int s = 0; s < 2; s++) {
            Scrape expert = Scrape.of(cluster.experts().get(s).managementUrl());
            long assignments = 0;
            for (int e = 4 * s; e < 4 * s + 4; e++) {
                String id = Integer.toString(e);
                assertThat(expert.value("moe_expert_tokens_total", "expert", id)).as("expert %d", e).isEqualTo(routed(e));
                assignments += routed(e);
                // Dense (no thresholds): every activation is counted, none pruned.
                assertThat(expert.value("moe_expert_activations_values_total", "expert", id, "projection", "gate_up"))
                        .isEqualTo(routed(e) * HIDDEN);
                assertThat(expert.value("moe_expert_activations_values_total", "expert", id, "projection", "down"))
                        .isEqualTo(routed(e) * 48);
                assertThat(expert.value("moe_expert_activations_pruned_values_total", "expert", id,
                        "projection", "down")).isZero();
            }
            assertThat(expert.named("moe_expert_tokens_total")).hasSize(4); // hosted experts only
            assertThat(expert.value("moe_expert_call_tokens_count")).isEqualTo(callsPerServer[s]);
            assertThat(expert.value("moe_expert_call_tokens_sum")).isEqualTo(tokensPerServer[s]);
            assertThat(expert.value("moe_expert_batch_tokens_sum")).isEqualTo(assignments);
            assertThat(expert.value("moe_expert_compute_seconds_count")).isEqualTo(callsPerServer[s]);
            assertThat(expert.value("moe_expert_kernel_runs_total", "path", "sparse", "projection", "gate_up")).isZero();
            assertThat(expert.value("moe_expert_kernel_runs_total", "path", "dense", "projection", "gate_up"))
                    .isEqualTo(expert.value("moe_expert_batch_tokens_count"));
            assertThat(expert.value("moe_expert_calls_inflight")).isZero();
            assertThat(expert.value("moe_expert_hosted_experts")).isEqualTo(4);
            // Resident = packed: 64-wide output panels pad gate/up's 48 columns to 64 (down's 64 fit); 4 experts x
            // 2 layers x (gate + up: 64 x 64 each, down: 48 x 64) float32.
            assertThat(expert.value("moe_expert_weights_bytes", "dtype", "F32"))
                    .isEqualTo(4 * 2 * (2 * 64 * 64 + 48 * 64) * 4.0);
            assertThat(expert.value("moe_expert_weights_bytes", "dtype", "BF16")).isZero();
            assertThat(expert.value("grpc_server_seconds_count", "rpc_method", "ComputeExperts",
                    "grpc_status_code", "OK")).isEqualTo(callsPerServer[s]);
        }
    }

    @Test
    @Order(4)
    void failedForwardsAreCountedByStatusAndStreamsByTheirRpc() throws Exception {
        var router = RouterServiceGrpc.newBlockingStub(channel);
        Scrape before = Scrape.of(cluster.router().managementUrl());
        float[] x = new float[3 * HIDDEN];
        for (int i = 0; i < 2; i++) {
            assertThatThrownBy(() -> router.forward(RouterCalls.request(7, x, 3, HIDDEN, WireType.FLOAT32)))
                    .isInstanceOfSatisfying(StatusRuntimeException.class,
                            e -> assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT));
        }
        CompletableFuture<Integer> answers = new CompletableFuture<>();
        var requests = RouterServiceGrpc.newStub(channel).forwardStream(new StreamObserver<>() {
            int n;

            @Override
            public void onNext(ForwardStreamResponse value) {
                n++;
            }

            @Override
            public void onError(Throwable t) {
                answers.completeExceptionally(t);
            }

            @Override
            public void onCompleted() {
                answers.complete(n);
            }
        });
        ForwardRequest good = RouterCalls.request(0, x, 3, HIDDEN, WireType.FLOAT32);
        requests.onNext(good);
        requests.onNext(good.toBuilder().setLayer(9).build());
        requests.onNext(good);
        requests.onCompleted();
        assertThat(answers.get(30, TimeUnit.SECONDS)).isEqualTo(3);

        Scrape after = Scrape.of(cluster.router().managementUrl());
        assertThat(after.sum("moe_router_forward_seconds_count", "rpc", "Forward", "status", "INVALID_ARGUMENT")
                - before.sum("moe_router_forward_seconds_count", "rpc", "Forward", "status", "INVALID_ARGUMENT"))
                .isEqualTo(2);
        assertThat(after.sum("moe_router_forward_tokens_total", "rpc", "Forward", "status", "INVALID_ARGUMENT")
                - before.sum("moe_router_forward_tokens_total", "rpc", "Forward", "status", "INVALID_ARGUMENT"))
                .isEqualTo(6);
        assertThat(after.value("moe_router_forward_seconds_count", "rpc", "ForwardStream", "status", "OK"))
                .isEqualTo(2);
        assertThat(after.value("moe_router_forward_seconds_count", "rpc", "ForwardStream", "status",
                "INVALID_ARGUMENT")).isEqualTo(1);
        assertThat(after.value("grpc_server_seconds_count", "rpc_method", "ForwardStream", "grpc_status_code", "OK"))
                .isEqualTo(1); // one stream, however many messages
    }

    @Test
    @Order(3)
    void routingEndpointGivesAReferenceADriftingRouterReadsBack() throws Exception {
        String json = Scrape.get(cluster.router().managementUrl() + "/actuator/routing");
        Path file = dir.resolve("routing-reference.json");
        Files.writeString(file, json);
        RoutingReference reference = RoutingReference.read(file);
        assertThat(reference.numExperts()).isEqualTo(EXPERTS);
        assertThat(reference.expertCounts().keySet()).containsExactlyElementsOf(LAYERS);
        for (int l = 0; l < LAYERS.size(); l++) {
            assertThat(reference.expertCounts().get(LAYERS.get(l))).containsExactly(routedPerLayer[l]);
        }
        // A second router measures drift against that file from its first forward on (without a reference it reports
        // NaN until its warm-up window of 4096 tokens is full, as the first test sees).
        try (EmbeddedCluster.Service second = EmbeddedCluster.startRouter(model, "127.0.0.1",
                cluster.experts().stream().map(EmbeddedCluster.Service::address).toList(),
                java.util.Map.of("logging.level.root", "WARN", "moe.router.metrics.drift-reference", file.toString()))) {
            ManagedChannel c = RouterCalls.channel(second.address());
            try {
                awaitServing(second);
                Random random = new Random(5);
                var stub = RouterServiceGrpc.newBlockingStub(c);
                float[] x = new float[TOKENS * HIDDEN];
                for (int i = 0; i < x.length; i++) {
                    x[i] = (float) random.nextGaussian();
                }
                stub.forward(RouterCalls.request(1, x, TOKENS, HIDDEN, WireType.FLOAT32));
                double drift = Scrape.of(second.managementUrl()).value("moe_router_routing_drift");
                assertThat(drift).isBetween(0.0, 1.0);
                assertThat(Double.isNaN(drift)).isFalse();
            } finally {
                RouterCalls.close(c);
            }
        }
    }

    @Test
    @Order(5)
    void serverPortMinusOneTurnsHttpOffAndGrpcStillServes() throws Exception {
        // What the chart passes with metrics.enabled=false.
        try (EmbeddedCluster.Service expert = EmbeddedCluster.startExpert(model, "127.0.0.1",
                java.util.Map.of("logging.level.root", "WARN", "server.port", -1))) {
            assertThat(expert.managementUrl()).isNull();
            ManagedChannel c = RouterCalls.channel(expert.address());
            try {
                assertThat(dev.moe.proto.expert.v1.ExpertServiceGrpc.newBlockingStub(c).describeShard(
                        dev.moe.proto.expert.v1.DescribeShardRequest.getDefaultInstance()).getExpertIdsCount())
                        .isEqualTo(EXPERTS);
            } finally {
                RouterCalls.close(c);
            }
        }
    }

    private static void awaitServing(EmbeddedCluster.Service router) throws InterruptedException {
        var directory = router.context().getBean(dev.moe.router.discovery.ExpertDirectory.class);
        assertThat(directory.awaitCoverage(java.time.Duration.ofSeconds(30))).isTrue();
    }
}

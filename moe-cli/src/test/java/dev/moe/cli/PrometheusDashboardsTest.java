package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.router.discovery.ExpertDirectory;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.Optional;
import java.util.Random;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Assumptions;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * The chart's dashboards and alerts against a real Prometheus scraping a real router and three expert servers.
 *
 * <p>Traffic with a known skew: phase A sends tokens whose hidden states point along the gate rows of experts 0 and 1
 * (both on expert-0), so the router picks them for every token; phase B does the same for experts 11 and 12 (on
 * expert-2). Expert 15 is hosted by no server (uncovered), one request in ten names a layer that does not exist
 * (INVALID_ARGUMENT), and phase C stops expert-1 and sends tokens for its experts (expert calls fail UNAVAILABLE).
 * Then every panel query of every dashboard and every alert expression is evaluated through Prometheus' HTTP API
 * and must return data, and the skew must be visible: favoured experts on top, balancedness low, drift rising.
 */
class PrometheusDashboardsTest {
    private static final String NAMESPACE = "moe-test";
    private static final int HIDDEN = 64;
    private static final int EXPERTS = 16;
    private static final String[] SHARDS = {"0-5", "6-10", "11-14"}; // expert 15: no server
    private static final Duration SCRAPE = Duration.ofSeconds(1);
    /** What Grafana would make {@code $__rate_interval} with a 1 s scrape interval (≥ 4 scrapes). */
    private static final String RATE_INTERVAL = "5s";
    private static final Duration PHASE = Duration.ofSeconds(7);
    private static final Pattern LABEL_VALUES = Pattern.compile("label_values\\((.*),\\s*(\\w+)\\)");
    /** A metric selector: a name followed by its label matchers (label names such as grpc_status_code are not). */
    private static final Pattern METRIC_NAME = Pattern.compile("\\b(?:moe|grpc|jvm|process)_[a-z_]+(?=\\{)");

    @TempDir
    Path dir;

    @Test
    void everyPanelAndAlertReturnsDataAndTheSkewShows() throws Exception {
        Optional<Path> prometheus = PrometheusServer.binary();
        Assumptions.assumeTrue(prometheus.isPresent(), "Prometheus is not installed, so the dashboards cannot be"
                + " checked against it: install Debian's package (apt-get install -y --no-install-recommends"
                + " prometheus), as .ci/run does");
        Path model = dir.resolve("model");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, HIDDEN, 1, EXPERTS, 2, 32,
                0, 1, 1, true, DType.F32, 1, 21), SyntheticCheckpoint.SILENT);
        float[] gate;
        try (Checkpoint checkpoint = Checkpoint.open(model)) {
            gate = checkpoint.readMatrix(ModelFamily.QWEN3_MOE.routerWeight(0), EXPERTS, HIDDEN);
        }
        Path thresholds = dir.resolve("thresholds.json");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                thresholds.toString(), "--tokens", "512")).isZero();

        List<EmbeddedCluster.Service> experts = new ArrayList<>();
        EmbeddedCluster.Service router = null;
        ManagedChannel channel = null;
        try {
            for (int s = 0; s < SHARDS.length; s++) {
                Map<String, Object> props = new LinkedHashMap<>();
                props.put("logging.level.root", "WARN");
                props.put("moe.expert.server-id", "expert-" + s);
                props.put("moe.expert.experts", SHARDS[s]);
                props.put("moe.expert.kernel-threads", 1);
                props.put("moe.expert.sparsity", thresholds.toString());
                // expert-0 always takes the sparse path, the others choose by density: both paths show.
                props.put("moe.expert.sparse-crossover", s == 0 ? 1.0 : 0.0);
                props.put("moe.expert.metrics.layer-tag", true);
                experts.add(EmbeddedCluster.startExpert(model, "127.0.0.1", props));
            }
            router = EmbeddedCluster.startRouter(model, "127.0.0.1",
                    experts.stream().map(EmbeddedCluster.Service::address).toList(),
                    Map.of("logging.level.root", "WARN", "moe.router.metrics.layer-tag", true,
                            "moe.router.metrics.window-tokens", 256, "moe.router.dispatch-timeout", "5s"));
            awaitServers(router, SHARDS.length);
            channel = RouterCalls.channel(router.address());

            List<PrometheusServer.Target> expertTargets = new ArrayList<>();
            for (int s = 0; s < experts.size(); s++) {
                expertTargets.add(new PrometheusServer.Target(hostPort(experts.get(s)), "pod: expert-" + s));
            }
            try (PrometheusServer server = PrometheusServer.start(prometheus.get(), dir, SCRAPE,
                    "namespace: " + NAMESPACE, List.of(
                            new PrometheusServer.Job("moe-router", "/actuator/prometheus",
                                    List.of(new PrometheusServer.Target(hostPort(router), "pod: router-0"))),
                            new PrometheusServer.Job("moe-expert", "/actuator/prometheus", expertTargets)))) {
                var stub = RouterServiceGrpc.newBlockingStub(channel);
                Random random = new Random(3);

                drive(stub, gate, 0, 1, random, PHASE);
                double endOfA = afterNextScrape(server);
                drive(stub, gate, 11, 12, random, PHASE);
                double endOfB = afterNextScrape(server);

                String rate = "[" + RATE_INTERVAL + "]";
                String routed = "sum by (expert) (rate(moe_router_routed_tokens_total" + rate + "))";
                assertThat(topExperts(server, routed, endOfA)).containsExactly("0", "1");
                assertThat(topExperts(server, routed, endOfB)).containsExactly("11", "12");
                // All tokens go to one server of three: mean/max = 1/3.
                assertThat(server.value("min(moe_router_balancedness)", endOfA)).isCloseTo(1.0 / 3, within(0.02));
                double driftA = server.value("max(moe_router_routing_drift)", endOfA);
                double driftB = server.value("max(moe_router_routing_drift)", endOfB);
                assertThat(driftA).as("drift while traffic matches the warm-up window").isLessThan(0.1);
                assertThat(driftB).as("drift after the traffic moved to other experts").isGreaterThan(0.8);
                // Phase A ran on expert-0, which always takes the sparse path; phase B on expert-2, always dense.
                assertThat(server.value("sum(moe_expert_kernel_runs_total{pod=\"expert-0\", path=\"sparse\"})",
                        endOfB)).isPositive();
                assertThat(server.value("sum(moe_expert_kernel_runs_total{pod=\"expert-2\", path=\"dense\"})",
                        endOfB)).isPositive();
                assertThat(server.value("sum(moe_expert_activations_pruned_values_total{pod=\"expert-0\"})"
                        + " / sum(moe_expert_activations_values_total{pod=\"expert-0\"})", endOfB))
                        .as("sparsity achieved by expert-0's calibrated thresholds").isBetween(0.05, 0.95);

                Map<String, String> variables = new LinkedHashMap<>();
                variables.put("$__rate_interval", RATE_INTERVAL);
                List<String> checked = new ArrayList<>();
                for (Path file : dashboards()) {
                    JsonNode dashboard = JsonMapper.builder().build().readTree(Files.readString(file));
                    resolveVariables(server, dashboard, variables, file);
                    for (JsonNode panel : panels(dashboard)) {
                        for (JsonNode target : panel.path("targets")) {
                            String expr = substitute(target.path("expr").asString(), variables);
                            assertThat(expr).as("%s / %s", file.getFileName(), panel.path("title").asString())
                                    .doesNotContain("$");
                            assertThat(server.query(expr, endOfB))
                                    .as("%s / panel '%s': %s", file.getFileName(), panel.path("title").asString(), expr)
                                    .isNotEmpty();
                            checked.add(expr);
                            // A fallback such as `or vector(0)` returns data anyway: every metric the query names
                            // must itself have series, so a misspelt name or label cannot hide behind it.
                            Matcher names = METRIC_NAME.matcher(expr);
                            while (names.find()) {
                                assertThat(server.query("count(" + names.group() + "{namespace=\"" + NAMESPACE
                                        + "\"})", endOfB)).as("%s / panel '%s': series of %s", file.getFileName(),
                                        panel.path("title").asString(), names.group()).isNotEmpty();
                            }
                        }
                    }
                }
                assertThat(checked).hasSizeGreaterThan(50);

                // Phase C: expert-1 goes away; the router still lists it (static endpoints), so calls to it fail.
                experts.get(1).close();
                drive(stub, gate, 6, 7, random, Duration.ofSeconds(4));
                double endOfC = afterNextScrape(server);
                Map<String, String> alerts = renderAlerts();
                assertThat(alerts.keySet()).containsExactlyInAnyOrder("MoeExpertWithoutReadyPod",
                        "MoeExpertLoadImbalanced", "MoeRoutingDrift", "MoeRouterForwardErrors", "MoeExpertServerErrors",
                        "MoeTargetDown", "MoeRouterMetricsAbsent", "MoeForwardLatencyHigh", "MoeExpertServerSaturated");
                for (Map.Entry<String, String> alert : alerts.entrySet()) {
                    assertThat(server.query(alert.getValue(), endOfC)).as("alert %s: %s", alert.getKey(),
                            alert.getValue()).isNotEmpty();
                }
                assertThat(server.query(alerts.get("MoeExpertWithoutReadyPod"), endOfC))
                        .extracting(r -> r.path("metric").path("expert").asString()).containsExactly("15");
                assertThat(server.query(alerts.get("MoeExpertServerErrors"), endOfC))
                        .extracting(r -> r.path("metric").path("server").asString()).containsExactly("expert-1");
                assertThat(server.query(alerts.get("MoeTargetDown"), endOfC))
                        .extracting(r -> r.path("metric").path("pod").asString()).containsExactly("expert-1");
            }
        } finally {
            if (channel != null) {
                RouterCalls.close(channel);
            }
            if (router != null) {
                router.close();
            }
            experts.forEach(EmbeddedCluster.Service::close);
        }
    }

    /**
     * Sends forwards for {@code duration}: 16 tokens each, every hidden state along the gate rows of experts
     * {@code a} and {@code b} (so both win the top-2 by a wide margin); every tenth request names a missing layer.
     */
    private static void drive(RouterServiceGrpc.RouterServiceBlockingStub stub, float[] gate, int a, int b,
                              Random random, Duration duration) throws InterruptedException {
        int tokens = 16;
        float[] ua = unitRow(gate, a);
        float[] ub = unitRow(gate, b);
        long end = System.nanoTime() + duration.toNanos();
        for (int n = 0; System.nanoTime() < end; n++) {
            float[] x = new float[tokens * HIDDEN];
            for (int t = 0; t < tokens; t++) {
                for (int h = 0; h < HIDDEN; h++) {
                    x[t * HIDDEN + h] = 4 * (ua[h] + ub[h]) + 0.05f * (float) random.nextGaussian();
                }
            }
            ForwardRequest request = RouterCalls.request(n % 10 == 9 ? 5 : 0, x, tokens, HIDDEN, WireType.FLOAT32);
            try {
                stub.forward(request);
            } catch (StatusRuntimeException expected) {
                // INVALID_ARGUMENT for the missing layer, UNAVAILABLE once an expert server is gone: both counted.
            }
            Thread.sleep(5);
        }
    }

    /** Expert {@code e}'s gate row scaled to unit length. */
    private static float[] unitRow(float[] gate, int e) {
        double norm = 0;
        for (int i = 0; i < HIDDEN; i++) {
            norm += gate[e * HIDDEN + i] * gate[e * HIDDEN + i];
        }
        float[] row = new float[HIDDEN];
        for (int h = 0; h < HIDDEN; h++) {
            row[h] = (float) (gate[e * HIDDEN + h] / Math.sqrt(norm));
        }
        return row;
    }

    /**
     * The time to query the traffic so far at: now, once every target up has been scraped after it, so later
     * queries at that time see all the samples before it (the last at most one scrape interval before the end of the
     * traffic, none of the traffic after).
     */
    private static double afterNextScrape(PrometheusServer server) throws Exception {
        double now = System.currentTimeMillis() / 1000.0;
        return server.awaitSamplesAfter(now, Duration.ofSeconds(30));
    }

    private static List<String> topExperts(PrometheusServer server, String perExpert, double time) throws Exception {
        List<String> top = new ArrayList<>();
        for (JsonNode r : server.query("sort_desc(topk(2, " + perExpert + "))", time)) {
            top.add(r.path("metric").path("expert").asString());
        }
        return top.stream().sorted(java.util.Comparator.comparingInt(Integer::parseInt)).toList();
    }

    private static String hostPort(EmbeddedCluster.Service service) {
        return service.managementUrl().substring("http://".length());
    }

    private static void awaitServers(EmbeddedCluster.Service router, int servers) throws InterruptedException {
        ExpertDirectory directory = router.context().getBean(ExpertDirectory.class);
        long deadline = System.nanoTime() + Duration.ofSeconds(60).toNanos();
        while (directory.table().endpoints().size() < servers) {
            assertThat(System.nanoTime()).as("router found %d expert servers", servers).isLessThan(deadline);
            Thread.sleep(50);
        }
    }

    private static List<Path> dashboards() throws Exception {
        try (Stream<Path> files = Files.list(RenderedChart.CHART.resolve("dashboards"))) {
            List<Path> out = files.filter(f -> f.toString().endsWith(".json")).sorted().toList();
            assertThat(out).isNotEmpty();
            return out;
        }
    }

    /** Every panel, rows' nested panels included. */
    private static List<JsonNode> panels(JsonNode dashboard) {
        List<JsonNode> out = new ArrayList<>();
        for (JsonNode panel : dashboard.path("panels")) {
            out.add(panel);
            panel.path("panels").forEach(out::add);
        }
        return out;
    }

    /**
     * Resolves each query variable as Grafana would ({@code label_values(selector, label)} through the label API,
     * earlier variables substituted); each must find a value. Multi-value variables become a regex alternation.
     */
    private static void resolveVariables(PrometheusServer server, JsonNode dashboard, Map<String, String> variables,
                                         Path file) throws Exception {
        for (JsonNode variable : dashboard.path("templating").path("list")) {
            if (!"query".equals(variable.path("type").asString())) {
                continue;
            }
            JsonNode q = variable.path("query");
            String query = q.isObject() ? q.path("query").asString() : q.asString();
            Matcher m = LABEL_VALUES.matcher(query);
            assertThat(m.matches()).as("%s: variable %s query %s", file, variable.path("name"), query).isTrue();
            List<String> values = server.labelValues(m.group(2), substitute(m.group(1), variables));
            assertThat(values).as("%s: values of variable %s", file, variable.path("name").asString()).isNotEmpty();
            variables.put("$" + variable.path("name").asString(), String.join("|", values));
        }
    }

    /** Longest names first, so {@code $job} does not eat the start of {@code $job_x}. */
    private static String substitute(String expr, Map<String, String> variables) {
        List<String> names = new ArrayList<>(variables.keySet());
        names.sort((x, y) -> y.length() - x.length());
        String out = expr.replace("${__rate_interval}", "$__rate_interval");
        for (String name : names) {
            out = out.replace("${" + name.substring(1) + "}", variables.get(name)).replace(name, variables.get(name));
        }
        return out;
    }

    /**
     * The chart's PrometheusRule, rendered for this test's namespace: alert name → expression. Three thresholds are
     * set so that their alerts fire under this traffic too (one router where two are expected, any latency, any
     * queue); the others fire from the traffic itself.
     */
    private static Map<String, String> renderAlerts() {
        Map<String, String> alerts = new LinkedHashMap<>();
        List<GenericKubernetesResource> rules = RenderedChart.render(NAMESPACE, Map.of("prometheusRule.enabled", true,
                        "prometheusRule.rules.routerMetricsAbsent.threshold", 2,
                        "prometheusRule.rules.forwardLatency.threshold", 0,
                        "prometheusRule.rules.expertServerSaturated.threshold", -1))
                .stream().filter(o -> o instanceof GenericKubernetesResource && "PrometheusRule".equals(o.getKind()))
                .map(GenericKubernetesResource.class::cast).toList();
        assertThat(rules).hasSize(1);
        JsonNode spec = JsonMapper.builder().build().valueToTree(rules.getFirst().getAdditionalProperties().get("spec"));
        for (JsonNode group : spec.path("groups")) {
            for (JsonNode rule : group.path("rules")) {
                if (rule.has("alert")) {
                    alerts.put(rule.path("alert").asString(), rule.path("expr").asString());
                }
            }
        }
        return alerts;
    }
}

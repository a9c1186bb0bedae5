package dev.moe.helm;

import static dev.moe.helm.Charts.CHART;
import static dev.moe.helm.Charts.NAMESPACE;
import static dev.moe.helm.Charts.render;
import static org.assertj.core.api.Assertions.assertThat;

import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.InputStream;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.Files;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The chart's PrometheusRule (templates/prometheusrule.yaml): rendered, checked by promtool and unit-tested with
 * promtool against crafted series (src/test/resources/promtool/alerts-test.yaml, and alerts-forced-test.yaml for the
 * thresholds an end-to-end test sets to see every alert fire).
 */
class PrometheusRuleTest {
    static final List<String> ALERTS = List.of("MoeExpertWithoutReadyPod", "MoeExpertLoadImbalanced",
            "MoeRoutingDrift", "MoeRouterForwardErrors", "MoeExpertServerErrors", "MoeTargetDown",
            "MoeRouterMetricsAbsent", "MoeForwardLatencyHigh", "MoeExpertServerSaturated");
    /** Thresholds that make the alerts a healthy system never raises fire (alerts-forced-test.yaml). */
    static final Map<String, Object> FORCED = Map.of("prometheusRule.enabled", true,
            "prometheusRule.rules.forwardLatency.threshold", 0,
            "prometheusRule.rules.expertServerSaturated.threshold", -1,
            "prometheusRule.rules.routerMetricsAbsent.threshold", 2);
    /** Default forwardErrors.codes: server-side failures only. */
    static final String SERVER_CODES = "UNAVAILABLE|DEADLINE_EXCEEDED|INTERNAL|UNKNOWN|DATA_LOSS|FAILED_PRECONDITION";
    /** The matching of a router gauge with the same target's traffic: pod may be missing, instance never is. */
    static final String TRAFFIC_GUARD = "and on (namespace, job, instance, pod) (sum by (namespace, job, instance, pod) "
            + "(rate(moe_router_routed_tokens_total{%s}[%s])) > 0)";
    /** A metric selector in PromQL: name{matchers}. */
    static final Pattern SELECTOR = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)\\{([^}]*)}");

    static GenericKubernetesResource prometheusRule(Path values, Map<String, Object> sets) {
        List<GenericKubernetesResource> rules = render(values, sets).custom("PrometheusRule");
        assertThat(rules).as("PrometheusRule with %s %s", values, sets).hasSize(1);
        return rules.getFirst();
    }

    @SuppressWarnings("unchecked")
    static List<Map<String, Object>> rules(GenericKubernetesResource rule) {
        List<Map<String, Object>> groups = rule.get("spec", "groups");
        assertThat(groups).hasSize(1);
        return (List<Map<String, Object>>) groups.getFirst().get("rules");
    }

    /** Writes the PrometheusRule's spec (its groups) as a Prometheus rules file. */
    static Path writeRulesFile(GenericKubernetesResource rule, Path file) throws IOException {
        Files.writeString(file, Serialization.yamlMapper().writeValueAsString(rule.getAdditionalProperties()
                .get("spec")));
        return file;
    }

    static Stream<Arguments> renderings() {
        return Stream.of(Arguments.of(null, Map.of("prometheusRule.enabled", true), 9),
                Arguments.of(CHART.resolve("ci/alerts-values.yaml"), Map.of(), 8),
                Arguments.of(null, FORCED, 9),
                Arguments.of(null, Map.of("prometheusRule.enabled", true, "metrics.layerTag", true,
                        "prometheusRule.rules.forwardErrors.codes", "UNAVAILABLE|RESOURCE_EXHAUSTED"), 9),
                Arguments.of(null, Map.of("prometheusRule.enabled", true, "prometheusRule.selector",
                        "job=~\".+\""), 9));
    }

    @ParameterizedTest(name = "{0} {1}")
    @MethodSource("renderings")
    void promtoolAcceptsTheRules(Path values, Map<String, Object> sets, int expectedRules, @TempDir Path dir)
            throws Exception {
        Path file = writeRulesFile(prometheusRule(values, sets), dir.resolve("moe-serving-rules.yaml"));
        Promtool.Result result = Promtool.run(dir, "check", "rules", file.toString());
        assertThat(result.exitCode()).as(result.output()).isZero();
        assertThat(result.output()).contains("SUCCESS: " + expectedRules + " rules found");
    }

    @Test
    void alertsFireAfterTheirForDurationAndOnlyWhenTheyShould(@TempDir Path dir) throws Exception {
        String tests = runPromtoolTests(Map.of("prometheusRule.enabled", true), "alerts-test.yaml", dir);
        // Every alert of the chart has a group in the unit tests that expects it to fire, and one that it does not.
        for (String alert : ALERTS) {
            assertThat(tests).as("unit tests of %s", alert).contains("alertname: " + alert);
            assertThat(Pattern.compile("alertname: " + alert + "\\s+exp_alerts:\\s+- exp_labels:").matcher(tests)
                    .find()).as("a test expecting %s to fire", alert).isTrue();
            assertThat(Pattern.compile("alertname: " + alert + "\\s+exp_alerts: \\[]").matcher(tests).find())
                    .as("a test expecting %s not to fire", alert).isTrue();
        }
    }

    /**
     * With the thresholds an end-to-end test sets (latency 0, saturation -1, two routers expected), the alerts that
     * healthy traffic never raises fire on a healthy system.
     */
    @Test
    void forcedThresholdsMakeEveryQuietAlertFire(@TempDir Path dir) throws Exception {
        String tests = runPromtoolTests(FORCED, "alerts-forced-test.yaml", dir);
        for (String alert : List.of("MoeForwardLatencyHigh", "MoeExpertServerSaturated", "MoeRouterMetricsAbsent")) {
            assertThat(tests).as("forced test of %s", alert).contains("alertname: " + alert);
        }
    }

    /** Renders the rules with {@code sets}, runs the promtool unit tests of {@code resource} on them; the tests. */
    private String runPromtoolTests(Map<String, Object> sets, String resource, Path dir) throws Exception {
        Path rules = writeRulesFile(prometheusRule(null, sets), dir.resolve("moe-serving-rules.yaml"));
        String tests;
        try (InputStream in = getClass().getResourceAsStream("/promtool/" + resource)) {
            assertThat(in).as("promtool/%s on the test classpath", resource).isNotNull();
            tests = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        Path testFile = dir.resolve(resource);
        Files.writeString(testFile, "rule_files:\n  - " + rules + "\n" + tests);
        Promtool.Result result = Promtool.run(dir, "test", "rules", testFile.toString());
        assertThat(result.exitCode()).as(result.output()).isZero();
        assertThat(result.output()).contains("SUCCESS");
        return tests;
    }

    @Test
    void everyMetricSelectorCarriesTheSelectorValue() {
        Map<String, String> cases = Map.of("", "namespace=\"" + NAMESPACE + "\"", // default: the release namespace
                "job=~\".+\"", "job=~\".+\"",
                "namespace=\"{{ .Release.Namespace }}\", job=\"moe-serving\"",
                "namespace=\"" + NAMESPACE + "\", job=\"moe-serving\""); // through tpl
        cases.forEach((selector, expected) -> {
            GenericKubernetesResource rule = prometheusRule(null, Map.of("prometheusRule.enabled", true,
                    "prometheusRule.selector", selector));
            int selectors = 0;
            for (Map<String, Object> r : rules(rule)) {
                Matcher m = SELECTOR.matcher((String) r.get("expr"));
                while (m.find()) {
                    selectors++;
                    assertThat(m.group(2)).as("selector of %s in %s", m.group(1), r.get("alert")).startsWith(expected);
                    if (!expected.contains("namespace")) {
                        assertThat(m.group(2)).doesNotContain("namespace");
                    }
                }
            }
            // 1 + 2 + 2 + 2 + 2 (ratios, traffic guards) + 3 (up, MoE jobs) + 2 (absent, count) + 1 + 1
            assertThat(selectors).as("metric selectors with selector %s", selector).isEqualTo(16);
        });
    }

    /** The rules read only series the services export (metric-names.txt) and the scrape's own up series. */
    @Test
    void rulesReadOnlyMetricsOfTheContract() {
        Set<String> used = new TreeSet<>();
        for (Map<String, Object> r : rules(prometheusRule(null, Map.of("prometheusRule.enabled", true)))) {
            Matcher m = SELECTOR.matcher((String) r.get("expr"));
            while (m.find()) {
                used.add(m.group(1));
            }
        }
        Set<String> allowed = new TreeSet<>(DashboardsTest.CONTRACT);
        allowed.add("up");
        assertThat(allowed).containsAll(used);
        assertThat(used).contains("up", "moe_router_routed_tokens_total", "moe_router_forward_seconds_bucket",
                "moe_expert_kernel_queue", "moe_expert_hosted_experts");
    }

    /**
     * With metrics.layerTag the router gauges have a layer label and the traffic counter expert and layer labels:
     * the guard still matches each gauge series with its target's total traffic (promtool: alerts-test.yaml, router d).
     */
    @Test
    void trafficGuardIgnoresTheLayerLabel() {
        for (Map<String, Object> r : rules(prometheusRule(null, Map.of("prometheusRule.enabled", true,
                "metrics.layerTag", true)))) {
            String expr = oneLine((String) r.get("expr"));
            if (expr.contains("moe_router_routed_tokens_total")) {
                assertThat(expr).as("%s", r.get("alert")).doesNotContain("layer").doesNotContain("expert)")
                        .contains("sum by (namespace, job, instance, pod) (rate(moe_router_routed_tokens_total");
            }
        }
    }

    @Test
    void valuesSetThresholdsDurationsLabelsAndRunbookUrls() {
        assertThat(render(null).custom("PrometheusRule")).as("prometheusRule.enabled defaults to false").isEmpty();

        // Defaults: every alert, with the documented thresholds, for: and severities.
        List<Map<String, Object>> defaults = rules(prometheusRule(null, Map.of("prometheusRule.enabled", true)));
        assertThat(defaults).extracting(r -> r.get("alert")).containsExactlyElementsOf(ALERTS);
        assertRule(defaults, "MoeExpertWithoutReadyPod", "== 0", "2m", "critical");
        assertRule(defaults, "MoeExpertLoadImbalanced", "(moe_router_balancedness{namespace=\"inference\"} < 0.5)",
                "15m", "warning");
        assertRule(defaults, "MoeRoutingDrift", "(moe_router_routing_drift{namespace=\"inference\"} > 0.2)", "30m",
                "warning");
        assertRule(defaults, "MoeRouterForwardErrors", "> 0.05", "5m", "critical");
        assertRule(defaults, "MoeExpertServerErrors", "> 0.05", "5m", "warning");
        assertRule(defaults, "MoeTargetDown", "(up{namespace=\"inference\"} == 0)", "5m", "warning");
        assertRule(defaults, "MoeRouterMetricsAbsent", "< 1)", "5m", "critical");
        assertRule(defaults, "MoeForwardLatencyHigh", "> 1", "10m", "warning");
        assertRule(defaults, "MoeExpertServerSaturated", "[5m]) > 1", "15m", "warning");
        for (Map<String, Object> r : defaults) {
            assertThat(annotations(r)).containsOnlyKeys("summary", "description", "runbook");
        }
        assertThat(expr(defaults, "MoeExpertWithoutReadyPod")).contains("by (namespace, job, expert)");
        assertThat(expr(defaults, "MoeExpertServerErrors")).contains("by (namespace, job, server)")
                .contains("status!=\"OK\"").contains("[5m]");
        // The sliding-window gauges keep their last value without traffic: both alerts need the router's traffic.
        String sel = "namespace=\"inference\"";
        assertThat(oneLine(expr(defaults, "MoeExpertLoadImbalanced"))).endsWith(TRAFFIC_GUARD.formatted(sel, "5m"));
        assertThat(oneLine(expr(defaults, "MoeRoutingDrift"))).endsWith(TRAFFIC_GUARD.formatted(sel, "5m"));
        // Only server-side failures count as failed forwards; client mistakes are in the total only.
        assertThat(expr(defaults, "MoeRouterForwardErrors"))
                .contains("status=~\"" + SERVER_CODES + "\"}[5m]")
                .doesNotContain("status!=").doesNotContain("INVALID_ARGUMENT").doesNotContain("RESOURCE_EXHAUSTED")
                .doesNotContain("CANCELLED");
        assertThat(expr(defaults, "MoeTargetDown")).contains("and on (namespace, job)")
                .contains("last_over_time(moe_router_expert_servers{" + sel + "}[1h])")
                .contains("last_over_time(moe_expert_hosted_experts{" + sel + "}[1h])");
        assertThat(expr(defaults, "MoeRouterMetricsAbsent")).startsWith("absent(moe_router_expert_servers{" + sel + "})")
                .contains("or (count(moe_router_expert_servers{" + sel + "}) < 1)");
        assertThat(expr(defaults, "MoeForwardLatencyHigh")).startsWith("histogram_quantile(0.99, sum by (namespace, job, le) "
                + "(rate(moe_router_forward_seconds_bucket{" + sel + ", status=\"OK\"}[5m])))");
        assertThat(expr(defaults, "MoeExpertServerSaturated"))
                .isEqualTo("avg_over_time(moe_expert_kernel_queue{" + sel + "}[5m]) > 1");
        // Without metrics.driftReference the drift alert says what its reference is.
        assertThat(annotations(rule(defaults, "MoeRoutingDrift")).get("description"))
                .contains("own first full window after it started (no metrics.driftReference)");

        // Every threshold, window, quantile and code list is a value.
        List<Map<String, Object>> tuned = rules(prometheusRule(CHART.resolve("ci/alerts-values.yaml"), Map.of(
                "prometheusRule.rules.lowBalancedness.trafficWindow", "10m",
                "prometheusRule.rules.forwardErrors.codes", "UNAVAILABLE|DEADLINE_EXCEEDED",
                "prometheusRule.rules.targetDown.lookback", "6h",
                "prometheusRule.rules.routerMetricsAbsent.threshold", 3,
                "prometheusRule.rules.forwardLatency.window", "10m",
                "prometheusRule.rules.forwardLatency.threshold", 2,
                "prometheusRule.rules.expertServerSaturated.window", "15m",
                "prometheusRule.rules.expertServerSaturated.threshold", 4)));
        String tunedSel = "namespace=\"inference\"";
        assertThat(oneLine(expr(tuned, "MoeExpertLoadImbalanced"))).endsWith(TRAFFIC_GUARD.formatted(tunedSel, "10m"));
        assertThat(expr(tuned, "MoeRouterForwardErrors")).contains("status=~\"UNAVAILABLE|DEADLINE_EXCEEDED\"}");
        assertThat(annotations(rule(tuned, "MoeRouterForwardErrors")).get("description"))
                .contains("(UNAVAILABLE, DEADLINE_EXCEEDED)");
        assertThat(expr(tuned, "MoeTargetDown")).contains("[6h]").doesNotContain("[1h]");
        assertThat(expr(tuned, "MoeRouterMetricsAbsent")).endsWith("< 3)");
        assertThat(annotations(rule(tuned, "MoeRouterMetricsAbsent")).get("summary"))
                .isEqualTo("Fewer than 3 routers export metrics");
        assertThat(expr(tuned, "MoeForwardLatencyHigh")).contains("[10m]").endsWith("> 2");
        assertThat(expr(tuned, "MoeExpertServerSaturated")).contains("[15m]").endsWith("> 4");
        // ci/alerts-values.yaml pins a drift reference (its drift alert is off: turn it on to see the description).
        List<Map<String, Object>> pinned = rules(prometheusRule(CHART.resolve("ci/alerts-values.yaml"),
                Map.of("prometheusRule.rules.routingDrift.enabled", true)));
        assertThat(annotations(rule(pinned, "MoeRoutingDrift")).get("description"))
                .contains("Reference: ConfigMap moe-routing-reference.").doesNotContain("first full window");

        // ci/alerts-values.yaml: one alert off, other threshold and for:, extra labels, runbook URLs.
        GenericKubernetesResource rule = prometheusRule(CHART.resolve("ci/alerts-values.yaml"), Map.of());
        assertThat(rule.getMetadata().getLabels()).containsEntry("release", "kube-prometheus-stack")
                .containsEntry("app.kubernetes.io/component", "alerts");
        assertThat(rule.getMetadata().getNamespace()).isEqualTo(NAMESPACE);
        List<Map<String, Object>> custom = rules(rule);
        assertThat(custom).extracting(r -> r.get("alert")).doesNotContain("MoeRoutingDrift").hasSize(8);
        assertRule(custom, "MoeExpertLoadImbalanced", "< 0.6)", "10m", "warning");
        assertRule(custom, "MoeRouterMetricsAbsent", "< 2)", "5m", "critical");
        assertRule(custom, "MoeForwardLatencyHigh", "> 0.5", "10m", "warning");
        assertThat(expr(custom, "MoeForwardLatencyHigh")).contains("[10m]");
        assertRule(custom, "MoeExpertServerSaturated", "> 2", "15m", "warning");
        for (Map<String, Object> r : custom) {
            assertThat(labels(r)).containsEntry("team", "inference");
            assertThat(annotations(r)).containsEntry("runbook_url",
                    "https://runbooks.example.com/moe-serving/" + r.get("alert"));
        }
    }

    /** The alert's threshold comparison (at the end of the expression, or of its first operand), for and severity. */
    private static void assertRule(List<Map<String, Object>> rules, String alert, String comparison, String forDuration,
                                   String severity) {
        Map<String, Object> r = rule(rules, alert);
        String expr = ((String) r.get("expr")).strip();
        assertThat(expr.endsWith(comparison) || expr.lines().findFirst().orElseThrow().endsWith(comparison))
                .as("expr of %s has %s: %s", alert, comparison, expr).isTrue();
        assertThat(r.get("for")).as("for of %s", alert).isEqualTo(forDuration);
        assertThat(labels(r)).as("labels of %s", alert).containsEntry("severity", severity);
    }

    private static String oneLine(String expr) {
        return expr.strip().replaceAll("\\s+", " ");
    }

    private static Map<String, Object> rule(List<Map<String, Object>> rules, String alert) {
        return rules.stream().filter(x -> alert.equals(x.get("alert"))).findFirst().orElseThrow();
    }

    private static String expr(List<Map<String, Object>> rules, String alert) {
        return (String) rule(rules, alert).get("expr");
    }

    @SuppressWarnings("unchecked")
    private static Map<String, String> labels(Map<String, Object> rule) {
        return (Map<String, String>) rule.get("labels");
    }

    @SuppressWarnings("unchecked")
    private static Map<String, String> annotations(Map<String, Object> rule) {
        return (Map<String, String>) rule.get("annotations");
    }
}

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
 * promtool against crafted series (src/test/resources/promtool/alerts-test.yaml).
 */
class PrometheusRuleTest {
    static final List<String> ALERTS = List.of("MoeExpertWithoutReadyPod", "MoeExpertLoadImbalanced",
            "MoeRoutingDrift", "MoeRouterForwardErrors", "MoeExpertServerErrors");
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
        return Stream.of(Arguments.of(null, Map.of("prometheusRule.enabled", true), 5),
                Arguments.of(CHART.resolve("ci/alerts-values.yaml"), Map.of(), 4),
                Arguments.of(null, Map.of("prometheusRule.enabled", true, "prometheusRule.selector",
                        "job=~\".+\""), 5));
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
        writeRulesFile(prometheusRule(null, Map.of("prometheusRule.enabled", true)),
                dir.resolve("moe-serving-rules.yaml"));
        String tests;
        try (InputStream in = getClass().getResourceAsStream("/promtool/alerts-test.yaml")) {
            assertThat(in).as("promtool/alerts-test.yaml on the test classpath").isNotNull();
            tests = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        Path testFile = dir.resolve("alerts-test.yaml");
        Files.writeString(testFile, "rule_files:\n  - " + dir.resolve("moe-serving-rules.yaml") + "\n" + tests);

        Promtool.Result result = Promtool.run(dir, "test", "rules", testFile.toString());
        assertThat(result.exitCode()).as(result.output()).isZero();
        assertThat(result.output()).contains("SUCCESS");
        // Every alert of the chart has a group in the unit tests that expects it to fire.
        for (String alert : ALERTS) {
            assertThat(tests).as("unit tests of %s", alert).contains("alertname: " + alert);
        }
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
            assertThat(selectors).as("metric selectors with selector %s", selector).isEqualTo(7);
        });
    }

    @Test
    void valuesSetThresholdsDurationsLabelsAndRunbookUrls() {
        assertThat(render(null).custom("PrometheusRule")).as("prometheusRule.enabled defaults to false").isEmpty();

        // Defaults: every alert, with the documented thresholds, for: and severities.
        List<Map<String, Object>> defaults = rules(prometheusRule(null, Map.of("prometheusRule.enabled", true)));
        assertThat(defaults).extracting(r -> r.get("alert")).containsExactlyElementsOf(ALERTS);
        assertRule(defaults, "MoeExpertWithoutReadyPod", "== 0", "2m", "critical");
        assertRule(defaults, "MoeExpertLoadImbalanced", "< 0.5", "15m", "warning");
        assertRule(defaults, "MoeRoutingDrift", "> 0.2", "30m", "warning");
        assertRule(defaults, "MoeRouterForwardErrors", "> 0.05", "5m", "critical");
        assertRule(defaults, "MoeExpertServerErrors", "> 0.05", "5m", "warning");
        for (Map<String, Object> r : defaults) {
            assertThat(annotations(r)).containsOnlyKeys("summary", "description", "runbook");
        }
        assertThat(expr(defaults, "MoeExpertWithoutReadyPod")).contains("by (namespace, job, expert)");
        assertThat(expr(defaults, "MoeExpertServerErrors")).contains("by (namespace, job, server)")
                .contains("status!=\"OK\"").contains("[5m]");

        // ci/alerts-values.yaml: one alert off, other threshold and for:, extra labels, runbook URLs.
        GenericKubernetesResource rule = prometheusRule(CHART.resolve("ci/alerts-values.yaml"), Map.of());
        assertThat(rule.getMetadata().getLabels()).containsEntry("release", "kube-prometheus-stack")
                .containsEntry("app.kubernetes.io/component", "alerts");
        assertThat(rule.getMetadata().getNamespace()).isEqualTo(NAMESPACE);
        List<Map<String, Object>> custom = rules(rule);
        assertThat(custom).extracting(r -> r.get("alert")).doesNotContain("MoeRoutingDrift").hasSize(4);
        assertRule(custom, "MoeExpertLoadImbalanced", "< 0.6", "10m", "warning");
        for (Map<String, Object> r : custom) {
            assertThat(labels(r)).containsEntry("team", "inference");
            assertThat(annotations(r)).containsEntry("runbook_url",
                    "https://runbooks.example.com/moe-serving/" + r.get("alert"));
        }
    }

    private static void assertRule(List<Map<String, Object>> rules, String alert, String comparison, String forDuration,
                                   String severity) {
        Map<String, Object> r = rules.stream().filter(x -> alert.equals(x.get("alert"))).findFirst().orElseThrow();
        assertThat(((String) r.get("expr")).strip()).as("expr of %s", alert).endsWith(comparison);
        assertThat(r.get("for")).as("for of %s", alert).isEqualTo(forDuration);
        assertThat(labels(r)).as("labels of %s", alert).containsEntry("severity", severity);
    }

    private static String expr(List<Map<String, Object>> rules, String alert) {
        return rules.stream().filter(x -> alert.equals(x.get("alert"))).map(x -> (String) x.get("expr")).findFirst()
                .orElseThrow();
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

package dev.moe.helm;

import static dev.moe.helm.Charts.CHART;
import static org.assertj.core.api.Assertions.assertThat;

import com.fasterxml.jackson.databind.JsonNode;
import com.fasterxml.jackson.databind.ObjectMapper;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.HashSet;
import java.util.LinkedHashMap;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Map;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;
import java.util.stream.Collectors;
import java.util.stream.Stream;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The Grafana dashboards in helm/moe-serving/dashboards: Grafana conventions (variables, units, descriptions, ids,
 * layout), PromQL conventions (every selector scoped by the namespace and job variables, every counter under
 * rate/increase over $__rate_interval), only metrics of the contract (src/test/resources/metric-names.txt), and every
 * query returns data for a synthetic scrape that follows the contract (evaluated by promtool).
 */
class DashboardsTest {
    static final ObjectMapper JSON = Serialization.jsonMapper();
    /** Stable uid of each dashboard file: links and bookmarks survive re-imports. */
    static final Map<String, String> UIDS = Map.of("expert-load.json", "moe-expert-load",
            "latency-and-errors.json", "moe-latency-errors", "kernels.json", "moe-kernels");
    static final Set<String> VARIABLES = Set.of("datasource", "namespace", "job", "expert_job");
    /** What the dashboards' queries may reference besides label values: Grafana's interval and our variables. */
    static final Pattern DOLLAR = Pattern.compile("\\$(\\w+)");
    static final Set<String> ALLOWED_DOLLARS = Set.of("__rate_interval", "__interval", "namespace", "job", "expert_job");
    static final Pattern SELECTOR = Pattern.compile("([a-zA-Z_:][a-zA-Z0-9_:]*)\\{([^}]*)}");
    static final Pattern COUNTER = Pattern.compile(".*_(total|count|sum|bucket)$");
    static final Pattern JOB_MATCHER =
            Pattern.compile("(^|,\\s*)job=~\"\\$(job|expert_job)(\\|\\$(job|expert_job))*\"");
    static final String NAMESPACE_MATCHER = "namespace=~\"$namespace\"";
    static final Set<String> CONTRACT = contract();
    static final Set<String> KEYWORDS = Set.of("by", "without", "on", "ignoring", "group_left", "group_right", "or",
            "and", "unless", "bool", "offset", "inf", "nan");

    static Set<String> contract() {
        try (InputStream in = DashboardsTest.class.getResourceAsStream("/metric-names.txt")) {
            assertThat(in).as("metric-names.txt on the test classpath").isNotNull();
            Set<String> names = new LinkedHashSet<>();
            for (String line : new String(in.readAllBytes(), StandardCharsets.UTF_8).split("\n")) {
                String name = line.replaceAll("#.*", "").strip();
                if (!name.isEmpty()) {
                    assertThat(name).matches("[a-zA-Z_:][a-zA-Z0-9_:]*");
                    assertThat(names.add(name)).as("%s listed twice", name).isTrue();
                }
            }
            return names;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static Stream<Path> dashboards() throws IOException {
        try (Stream<Path> files = Files.list(CHART.resolve("dashboards"))) {
            return files.filter(p -> p.toString().endsWith(".json")).sorted().toList().stream();
        }
    }

    static JsonNode read(Path file) {
        try {
            return JSON.readTree(file.toFile());
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    static List<JsonNode> panels(JsonNode dashboard) {
        List<JsonNode> panels = new ArrayList<>();
        for (JsonNode p : dashboard.path("panels")) {
            panels.add(p);
            p.path("panels").forEach(panels::add); // collapsed rows keep their panels inside
        }
        return panels;
    }

    static List<String> exprs(JsonNode panel) {
        return StreamSupport.stream(panel.path("targets").spliterator(), false).map(t -> t.path("expr").asText())
                .toList();
    }

    /** Metric names of the selectors in a PromQL expression, in order of appearance. */
    static Set<String> metrics(String expr) {
        Set<String> names = new LinkedHashSet<>();
        Matcher m = SELECTOR.matcher(expr);
        while (m.find()) {
            names.add(m.group(1));
        }
        return names;
    }

    @Test
    void everyDashboardFileIsKnownAndUidsAreUnique() throws IOException {
        List<String> files = dashboards().map(p -> p.getFileName().toString()).toList();
        assertThat(files).containsExactlyInAnyOrderElementsOf(UIDS.keySet());
        assertThat(dashboards().map(p -> read(p).path("uid").asText()).collect(Collectors.toSet()))
                .hasSize(files.size());
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("dashboards")
    void dashboardFollowsTheGrafanaConventions(Path file) {
        String name = file.getFileName().toString();
        JsonNode d = read(file);
        assertThat(d.path("uid").asText()).isEqualTo(UIDS.get(name));
        assertThat(d.path("title").asText()).startsWith("MoE serving / ");
        assertThat(d.path("schemaVersion").asInt()).isGreaterThanOrEqualTo(39);
        assertThat(d.path("id").isNull()).as("id: null (Grafana assigns it)").isTrue();

        // Variables: a Prometheus datasource variable, namespace and job query variables on it.
        Map<String, JsonNode> vars = new LinkedHashMap<>();
        d.path("templating").path("list").forEach(v -> vars.put(v.path("name").asText(), v));
        assertThat(vars.keySet()).containsExactlyInAnyOrderElementsOf(VARIABLES);
        assertThat(vars.get("datasource").path("type").asText()).isEqualTo("datasource");
        assertThat(vars.get("datasource").path("query").asText()).isEqualTo("prometheus");
        for (String v : List.of("namespace", "job", "expert_job")) {
            JsonNode var = vars.get(v);
            assertThat(var.path("type").asText()).isEqualTo("query");
            assertThat(var.path("datasource").path("uid").asText()).isEqualTo("${datasource}");
            String query = var.path("query").path("query").asText();
            String label = v.equals("namespace") ? "namespace" : "job";
            assertThat(query).as("query of $%s", v).matches("label_values\\(.*, " + label + "\\)");
            assertThat(query.replaceAll("^label_values\\(([a-zA-Z_:][a-zA-Z0-9_:]*).*$", "$1"))
                    .as("metric of $%s", v).isIn(CONTRACT);
        }

        List<JsonNode> panels = panels(d);
        assertThat(panels).isNotEmpty();
        Set<Integer> ids = new HashSet<>();
        List<int[]> boxes = new ArrayList<>();
        for (JsonNode p : panels) {
            String title = p.path("title").asText();
            assertThat(title).as("panel title").isNotBlank();
            assertThat(p.path("id").isInt()).as("id of %s", title).isTrue();
            assertThat(ids.add(p.path("id").asInt())).as("id %s of %s is unique", p.path("id"), title).isTrue();
            JsonNode g = p.path("gridPos");
            int[] box = {g.path("x").asInt(-1), g.path("y").asInt(-1), g.path("w").asInt(-1), g.path("h").asInt(-1)};
            assertThat(Arrays.stream(box).min().orElseThrow()).as("gridPos of %s: %s", title, g).isNotNegative();
            assertThat(box[0] + box[2]).as("right edge of %s", title).isLessThanOrEqualTo(24);
            assertThat(box[2]).as("width of %s", title).isPositive();
            assertThat(box[3]).as("height of %s", title).isPositive();
            for (int[] other : boxes) {
                boolean overlap = box[0] < other[0] + other[2] && other[0] < box[0] + box[2]
                        && box[1] < other[1] + other[3] && other[1] < box[1] + box[3];
                assertThat(overlap).as("%s overlaps another panel", title).isFalse();
            }
            boxes.add(box);
            assertThat(p.path("fieldConfig").path("defaults").path("unit").asText()).as("unit of %s", title)
                    .isNotBlank();
            assertThat(p.path("datasource").path("uid").asText()).as("datasource of %s", title)
                    .isEqualTo("${datasource}");

            List<String> exprs = exprs(p);
            assertThat(exprs).as("queries of %s", title).isNotEmpty().allMatch(e -> !e.isBlank());
            Set<String> refIds = new HashSet<>();
            for (JsonNode t : p.path("targets")) {
                assertThat(refIds.add(t.path("refId").asText())).as("refIds of %s", title).isTrue();
                assertThat(t.path("datasource").path("uid").asText()).isEqualTo("${datasource}");
            }
            for (String expr : exprs) {
                assertPromqlConventions(expr, title);
            }
            Set<String> used = exprs.stream().flatMap(e -> metrics(e).stream()).collect(Collectors.toSet());
            String description = p.path("description").asText();
            assertThat(used).as("description of %s names a metric of its queries: %s", title, description)
                    .anyMatch(description::contains);
        }
    }

    /** Selectors scoped by $namespace and a job variable, counters in rate()/increase() over $__rate_interval. */
    static void assertPromqlConventions(String expr, String title) {
        Matcher dollars = DOLLAR.matcher(expr);
        while (dollars.find()) {
            assertThat(dollars.group(1)).as("$-reference in %s: %s", title, expr).isIn(ALLOWED_DOLLARS);
        }
        Matcher ranges = Pattern.compile("\\[[^]]*]").matcher(expr);
        while (ranges.find()) {
            assertThat(ranges.group()).as("range in %s: %s", title, expr).isEqualTo("[$__rate_interval]");
        }
        Matcher m = SELECTOR.matcher(expr);
        int selectors = 0;
        while (m.find()) {
            selectors++;
            String metric = m.group(1);
            String matchers = m.group(2);
            assertThat(metric).as("metric in %s: %s", title, expr).isIn(CONTRACT);
            assertThat(matchers).as("matchers of %s in %s", metric, title).startsWith(NAMESPACE_MATCHER);
            assertThat(JOB_MATCHER.matcher(matchers).find()).as("job matcher of %s in %s: %s", metric, title, matchers)
                    .isTrue();
            String before = expr.substring(0, m.start());
            String after = expr.substring(m.end());
            if (COUNTER.matcher(metric).matches()) {
                assertThat(before).as("function around counter %s in %s", metric, title)
                        .matches("(?s).*\\b(rate|increase)\\($");
                assertThat(after).as("range of counter %s in %s", metric, title).startsWith("[$__rate_interval])");
            } else {
                assertThat(after).as("gauge %s in %s has no range", metric, title).doesNotStartWith("[");
            }
        }
        // Nothing else names a metric: with strings, selectors, ranges and label lists removed, every identifier left
        // is a function or aggregation (followed by "(") or a PromQL keyword.
        String rest = expr.replaceAll("\"[^\"]*\"", "\"\"")
                .replaceAll("[a-zA-Z_:][a-zA-Z0-9_:]*\\{[^}]*}", " S ")
                .replaceAll("\\[[^]]*]", "")
                .replaceAll("\\b(by|without|on|ignoring|group_left|group_right)\\s*\\([^)]*\\)", " ");
        Matcher ids = Pattern.compile("\\b([a-zA-Z_][a-zA-Z0-9_]*)\\b(\\s*\\()?").matcher(rest);
        while (ids.find()) {
            String id = ids.group(1);
            boolean call = ids.group(2) != null;
            assertThat(call || KEYWORDS.contains(id) || id.equals("S"))
                    .as("'%s' in %s is neither a function nor a keyword (a metric without selector?): %s", id, title,
                            expr).isTrue();
        }
        assertThat(selectors).as("metric selectors in %s: %s", title, expr).isPositive();
    }

    @Test
    void dashboardsShowEveryMetricFamilyOfTheServices() throws IOException {
        Set<String> used = new TreeSet<>();
        for (Path file : dashboards().toList()) {
            panels(read(file)).forEach(p -> exprs(p).forEach(e -> used.addAll(metrics(e))));
        }
        Set<String> families = CONTRACT.stream().filter(n -> n.startsWith("moe_"))
                .map(n -> n.replaceAll("_(bucket|count|sum|max)$", "")).collect(Collectors.toCollection(TreeSet::new));
        Set<String> usedFamilies = used.stream().map(n -> n.replaceAll("_(bucket|count|sum|max)$", ""))
                .collect(Collectors.toSet());
        assertThat(usedFamilies).as("metric families on the dashboards").containsAll(families);
    }

    /**
     * Every panel query, with Grafana's variables replaced, returns data for a synthetic scrape that follows the
     * contract (promtool/dashboard-series.yaml: skewed load, every call OK, nothing pruned): each query becomes an
     * alert on absent(query) and the promtool unit test expects none of them to fire.
     */
    @Test
    void everyQueryReturnsDataForAScrapeThatFollowsTheContract(@TempDir Path dir) throws Exception {
        List<Map<String, Object>> rules = new ArrayList<>();
        for (Path file : dashboards().toList()) {
            JsonNode d = read(file);
            for (JsonNode p : panels(d)) {
                for (JsonNode t : p.path("targets")) {
                    String expr = t.path("expr").asText().replace("$__rate_interval", "30s")
                            .replace("$__interval", "15s").replace("$namespace", "inference")
                            .replace("$expert_job", "moe-expert").replace("$job", "moe-router");
                    Map<String, Object> rule = new LinkedHashMap<>();
                    rule.put("alert", "DashboardQueryReturnsNothing");
                    rule.put("expr", "absent(" + expr + ")");
                    rule.put("labels", Map.of("dashboard", d.path("uid").asText(),
                            "panel", p.path("id").asInt() + " " + p.path("title").asText(),
                            "ref", t.path("refId").asText()));
                    rules.add(rule);
                }
            }
        }
        assertThat(rules).hasSizeGreaterThan(50);
        Path rulesFile = dir.resolve("dashboard-queries.yaml");
        Files.writeString(rulesFile, Serialization.yamlMapper().writeValueAsString(
                Map.of("groups", List.of(Map.of("name", "dashboard-queries", "rules", rules)))));

        String series;
        try (InputStream in = getClass().getResourceAsStream("/promtool/dashboard-series.yaml")) {
            assertThat(in).isNotNull();
            series = new String(in.readAllBytes(), StandardCharsets.UTF_8);
        }
        String test = "rule_files:\n  - " + rulesFile + "\nevaluation_interval: 15s\ntests:\n  - interval: 15s\n"
                + series.lines().filter(l -> !l.startsWith("#")).map(l -> "    " + l)
                        .collect(Collectors.joining("\n"))
                + "\n    alert_rule_test:\n      - eval_time: 9m\n        alertname: DashboardQueryReturnsNothing\n"
                + "        exp_alerts: []\n";
        Path testFile = dir.resolve("dashboard-queries-test.yaml");
        Files.writeString(testFile, test);

        Promtool.Result check = Promtool.run(dir, "check", "rules", rulesFile.toString());
        assertThat(check.exitCode()).as("promtool check rules (PromQL syntax): %s", check.output()).isZero();
        Promtool.Result result = Promtool.run(dir, "test", "rules", testFile.toString());
        assertThat(result.exitCode()).as("queries without data (alerts that fired):\n%s", result.output()).isZero();
        assertThat(result.output()).contains("SUCCESS");
    }
}

package dev.moe.helm;

import static org.assertj.core.api.Assertions.assertThat;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.LintResult;
import com.marcnuri.helm.TemplateCommand;
import io.fabric8.kubernetes.api.model.GenericKubernetesResource;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.KubernetesList;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.io.IOException;
import java.io.UncheckedIOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;

/** Renders and lints helm/moe-serving with the bundled Helm (helm-java) and parses the output with fabric8. */
final class Charts {
    static final Path CHART = Path.of("moe-serving").toAbsolutePath();
    static final String RELEASE = "moe";
    static final String NAMESPACE = "inference";

    private Charts() {
    }

    /** One rendering: the values file (null = defaults) and its parsed objects. */
    record Rendering(String name, List<HasMetadata> objects) {
        <T extends HasMetadata> List<T> all(Class<T> type) {
            return objects.stream().filter(type::isInstance).map(type::cast).toList();
        }

        <T extends HasMetadata> T one(Class<T> type) {
            List<T> found = all(type);
            assertThat(found).as("%s in %s", type.getSimpleName(), name).hasSize(1);
            return found.getFirst();
        }

        /** Objects of a kind fabric8 has no model class for (ServiceMonitor, PrometheusRule). */
        List<GenericKubernetesResource> custom(String kind) {
            return all(GenericKubernetesResource.class).stream().filter(o -> kind.equals(o.getKind())).toList();
        }

        @Override
        public String toString() {
            return name;
        }
    }

    /** null (the chart's defaults) and every ci/*-values.yaml. */
    static Stream<Path> valuesFiles() throws IOException {
        List<Path> files = new ArrayList<>();
        files.add(null);
        try (Stream<Path> ci = Files.list(CHART.resolve("ci"))) {
            ci.filter(p -> p.getFileName().toString().endsWith("-values.yaml")).sorted().forEach(files::add);
        }
        return files.stream();
    }

    static String template(Path values, Map<String, Object> sets) {
        TemplateCommand command = new Helm(CHART).template().withName(RELEASE).withNamespace(NAMESPACE)
                .withKubeVersion("1.31.0"); // the chart needs >= 1.28 (pod-index label); helm defaults to 1.20
        if (values != null) {
            command = command.withValuesFile(values);
        }
        for (Map.Entry<String, Object> set : sets.entrySet()) {
            command = command.set(set.getKey(), set.getValue());
        }
        return command.call();
    }

    static Rendering render(Path values) {
        return render(values, Map.of());
    }

    static Rendering render(Path values, Map<String, Object> sets) {
        String yaml = template(values, sets);
        List<HasMetadata> objects = new ArrayList<>();
        for (String document : yaml.split("(?m)^---\\s*$")) {
            if (document.lines().allMatch(l -> l.isBlank() || l.startsWith("#"))) {
                continue;
            }
            Object parsed = Serialization.unmarshal(document);
            if (parsed instanceof KubernetesList list) {
                objects.addAll(list.getItems());
            } else {
                assertThat(parsed).as("document of %s:\n%s", values, document).isInstanceOf(HasMetadata.class);
                objects.add((HasMetadata) parsed);
            }
        }
        String name = values == null ? "default values" : values.getFileName().toString();
        return new Rendering(sets.isEmpty() ? name : name + " " + sets, objects);
    }

    /**
     * {@code helm lint --strict} of the chart with a values file. helm-java's lint takes no values file, so the lint
     * runs on a copy of the chart whose values.yaml is the chart's defaults deep-merged with the file (as Helm merges).
     */
    static LintResult lint(Path values, Path scratch) throws IOException {
        if (values == null) {
            return new Helm(CHART).lint().strict().call();
        }
        Path copy = scratch.resolve("moe-serving");
        try (Stream<Path> tree = Files.walk(CHART)) {
            for (Path p : (Iterable<Path>) tree::iterator) {
                Path target = copy.resolve(CHART.relativize(p).toString());
                if (Files.isDirectory(p)) {
                    Files.createDirectories(target);
                } else {
                    Files.copy(p, target);
                }
            }
        }
        Map<String, Object> merged = deepMerge(readYaml(CHART.resolve("values.yaml")), readYaml(values));
        Files.writeString(copy.resolve("values.yaml"), Serialization.yamlMapper().writeValueAsString(merged));
        return new Helm(copy).lint().strict().call();
    }

    @SuppressWarnings("unchecked")
    static Map<String, Object> readYaml(Path file) {
        try {
            Map<String, Object> map = Serialization.yamlMapper().readValue(Files.readString(file), LinkedHashMap.class);
            return map == null ? new LinkedHashMap<>() : map;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    @SuppressWarnings("unchecked")
    private static Map<String, Object> deepMerge(Map<String, Object> base, Map<String, Object> override) {
        Map<String, Object> out = new LinkedHashMap<>(base);
        override.forEach((k, v) -> {
            if (v instanceof Map<?, ?> m && out.get(k) instanceof Map<?, ?> b) {
                out.put(k, deepMerge((Map<String, Object>) b, (Map<String, Object>) m));
            } else {
                out.put(k, v);
            }
        });
        return out;
    }

    /** The values of a file (null: the chart's values.yaml) flattened to dotted keys of scalars: key -> value. */
    static Map<String, String> yamlValues(Path values) {
        Map<String, String> flat = new TreeMap<>();
        flatten("", readYaml(values == null ? CHART.resolve("values.yaml") : values), flat);
        return flat;
    }

    private static void flatten(String prefix, Map<?, ?> map, Map<String, String> flat) {
        map.forEach((k, v) -> {
            String key = prefix.isEmpty() ? k.toString() : prefix + "." + k;
            if (v instanceof Map<?, ?> m) {
                flatten(key, m, flat);
            } else if (v != null && !(v instanceof List<?>)) {
                flat.put(key, v.toString());
            }
        });
    }

    /** A value (scalar, list or map) at a dotted key of the values file, else of the chart's defaults; null if none. */
    static Object raw(Path values, String key) {
        Object v = values == null ? null : at(readYaml(values), key);
        return v != null ? v : at(readYaml(CHART.resolve("values.yaml")), key);
    }

    private static Object at(Map<?, ?> map, String key) {
        Object v = map;
        for (String part : key.split("\\.")) {
            if (!(v instanceof Map<?, ?> m)) {
                return null;
            }
            v = m.get(part);
        }
        return v;
    }

    /** A scalar of the values file, else of the chart's defaults. */
    static String value(Path values, String key) {
        String v = yamlValues(values).get(key);
        return v != null ? v : yamlValues(null).get(key);
    }

    static int intValue(Path values, String key) {
        return Integer.parseInt(value(values, key));
    }

    static boolean boolValue(Path values, String key) {
        return Boolean.parseBoolean(value(values, key));
    }
}

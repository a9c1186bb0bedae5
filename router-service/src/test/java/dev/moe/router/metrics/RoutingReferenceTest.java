package dev.moe.router.metrics;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.gating.RoutingDecision;
import io.micrometer.core.instrument.simple.SimpleMeterRegistry;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

class RoutingReferenceTest {

    @TempDir
    Path dir;

    private static RoutingReference sample() {
        TreeMap<Integer, long[]> counts = new TreeMap<>();
        counts.put(5, new long[] {2, 2, 2, 2});
        counts.put(0, new long[] {1, 0, 3, 6});
        counts.put(12, new long[] {0, 0, 0, 9_000_000_000L});
        return new RoutingReference("fp-0123abcd", 4, counts);
    }

    private Path write(String name, String text) throws IOException {
        Path file = dir.resolve(name);
        Files.writeString(file, text, StandardCharsets.UTF_8);
        return file;
    }

    @Test
    void roundTripThroughAFileKeepsEverything() throws IOException {
        RoutingReference ref = sample();
        Path file = write("ref.json", ref.toJson());

        RoutingReference back = RoutingReference.read(file);
        assertThat(back.modelFingerprint()).isEqualTo("fp-0123abcd");
        assertThat(back.numExperts()).isEqualTo(4);
        assertThat(back.expertCounts().keySet()).containsExactly(0, 5, 12);
        assertThat(back.expertCounts().get(0)).containsExactly(1, 0, 3, 6);
        assertThat(back.expertCounts().get(5)).containsExactly(2, 2, 2, 2);
        assertThat(back.expertCounts().get(12)).containsExactly(0, 0, 0, 9_000_000_000L);
        // And again: the written form is stable.
        assertThat(back.toJson()).isEqualTo(ref.toJson());
    }

    @Test
    void documentHasTheDocumentedShape() {
        JsonNode root = JsonMapper.builder().build().readTree(sample().toJson());
        assertThat(root.get("format").asString()).isEqualTo("moe-routing-reference/v1").isEqualTo(RoutingReference.FORMAT);
        assertThat(root.get("model_fingerprint").asString()).isEqualTo("fp-0123abcd");
        assertThat(root.get("num_experts").asInt()).isEqualTo(4);
        JsonNode layers = root.get("layers");
        assertThat(layers.propertyNames()).containsExactly("0", "5", "12");
        assertThat(layers.get("0").get("assignments").asLong()).isEqualTo(1 + 0 + 3 + 6);
        assertThat(layers.get("5").get("assignments").asLong()).isEqualTo(8);
        assertThat(layers.get("12").get("assignments").asLong()).isEqualTo(9_000_000_000L);
        assertThat(layers.get("0").get("expert_counts").size()).isEqualTo(4);
        assertThat(layers.get("0").get("expert_counts").get(3).asLong()).isEqualTo(6);
        // Same document as a tree (numeric node types differ between built and parsed trees: compare as text).
        assertThat(sample().toTree().toString()).isEqualTo(root.toString());
    }

    @Test
    void distributionsAreTheCountsPerLayer() {
        Map<Integer, double[]> d = sample().distributions();
        assertThat(d.keySet()).containsExactly(0, 5, 12);
        assertThat(d.get(0)).containsExactly(1.0, 0.0, 3.0, 6.0);
        assertThat(d.get(5)).containsExactly(2.0, 2.0, 2.0, 2.0);
        assertThat(d.get(12)).containsExactly(0.0, 0.0, 0.0, 9.0e9);
    }

    @Test
    void readAcceptsAMinimalHandWrittenFile() throws IOException {
        Path file = write("hand.json", """
                {"format": "moe-routing-reference/v1", "num_experts": 3,
                 "layers": {"7": {"expert_counts": [0, 4, 1]}}}
                """);
        RoutingReference ref = RoutingReference.read(file);
        assertThat(ref.modelFingerprint()).isEmpty();
        assertThat(ref.numExperts()).isEqualTo(3);
        assertThat(ref.expertCounts()).containsOnlyKeys(7);
        assertThat(ref.expertCounts().get(7)).containsExactly(0, 4, 1);
    }

    @Test
    void missingFileSaysHowToMakeOne() {
        Path missing = dir.resolve("nope.json");
        assertThatThrownBy(() -> RoutingReference.read(missing))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining(missing.toString())
                .hasMessageContaining("does not exist")
                .hasMessageContaining("/actuator/routing");
    }

    private static final String HEAD = "\"format\": \"moe-routing-reference/v1\", \"num_experts\": 4, ";

    static Stream<Arguments> invalidDocuments() {
        return Stream.of(
                Arguments.of("not JSON", "{\"format\": ", List.of("not valid JSON")),
                Arguments.of("top-level array", "[1, 2]", List.of("expected a JSON object")),
                Arguments.of("missing format", "{\"num_experts\": 4, \"layers\": {}}",
                        List.of("format must be \"moe-routing-reference/v1\"", "got null")),
                Arguments.of("wrong format", "{\"format\": \"moe-routing-reference/v2\", \"num_experts\": 4,"
                        + " \"layers\": {}}", List.of("format must be", "moe-routing-reference/v2")),
                Arguments.of("missing num_experts", "{\"format\": \"moe-routing-reference/v1\", \"layers\": {}}",
                        List.of("num_experts must be an integer in [2, 1048576]", "got null")),
                Arguments.of("num_experts 1", "{\"format\": \"moe-routing-reference/v1\", \"num_experts\": 1,"
                        + " \"layers\": {}}", List.of("num_experts", "got 1")),
                Arguments.of("num_experts string", "{\"format\": \"moe-routing-reference/v1\", \"num_experts\": \"4\","
                        + " \"layers\": {}}", List.of("num_experts")),
                Arguments.of("num_experts fraction", "{\"format\": \"moe-routing-reference/v1\", \"num_experts\": 4.5,"
                        + " \"layers\": {}}", List.of("num_experts", "4.5")),
                Arguments.of("num_experts huge", "{\"format\": \"moe-routing-reference/v1\","
                        + " \"num_experts\": 4294967298, \"layers\": {}}", List.of("num_experts")),
                Arguments.of("missing layers", "{" + HEAD.substring(0, HEAD.length() - 2) + "}",
                        List.of("layers must be an object")),
                Arguments.of("layers array", "{" + HEAD + "\"layers\": [[1, 2, 3, 4]]}",
                        List.of("layers must be an object")),
                Arguments.of("non-integer layer key", "{" + HEAD + "\"layers\": {\"first\": {\"expert_counts\":"
                        + " [1, 1, 1, 1]}}}", List.of("layer key 'first'", "not a non-negative integer")),
                Arguments.of("negative layer key", "{" + HEAD + "\"layers\": {\"-1\": {\"expert_counts\":"
                        + " [1, 1, 1, 1]}}}", List.of("layer key '-1'")),
                Arguments.of("fractional layer key", "{" + HEAD + "\"layers\": {\"1.5\": {\"expert_counts\":"
                        + " [1, 1, 1, 1]}}}", List.of("layer key '1.5'")),
                Arguments.of("non-canonical layer key", "{" + HEAD + "\"layers\": {\"1\": {\"expert_counts\":"
                        + " [1, 1, 1, 1]}, \"01\": {\"expert_counts\": [0, 0, 0, 9]}}}",
                        List.of("layer key '01'", "canonical")),
                Arguments.of("count beyond 64 bits", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\":"
                        + " [100000000000000000000, 0, 0, 1]}}}",
                        List.of("layers.0.expert_counts[0]", "below 2^63", "100000000000000000000")),
                Arguments.of("missing expert_counts", "{" + HEAD + "\"layers\": {\"3\": {\"assignments\": 4}}}",
                        List.of("layers.3.expert_counts must be an array of num_experts = 4 counts")),
                Arguments.of("expert_counts not an array", "{" + HEAD + "\"layers\": {\"3\": {\"expert_counts\": 4}}}",
                        List.of("layers.3.expert_counts must be an array")),
                Arguments.of("too short", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 2, 3]}}}",
                        List.of("layers.0.expert_counts must be an array of num_experts = 4 counts")),
                Arguments.of("too long", "{" + HEAD + "\"layers\": {\"2\": {\"expert_counts\": [1, 2, 3, 4, 5]}}}",
                        List.of("layers.2.expert_counts must be an array of num_experts = 4")),
                Arguments.of("negative count", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 2, -3, 4]}}}",
                        List.of("layers.0.expert_counts[2] must be a non-negative integer", "got -3")),
                Arguments.of("fractional count", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 2.5, 3, 4]}}}",
                        List.of("layers.0.expert_counts[1] must be a non-negative integer", "2.5")),
                Arguments.of("string count", "{" + HEAD + "\"layers\": {\"1\": {\"expert_counts\": [1, 2, 3, \"4\"]}}}",
                        List.of("layers.1.expert_counts[3] must be a non-negative integer")),
                Arguments.of("null count", "{" + HEAD + "\"layers\": {\"1\": {\"expert_counts\": [null, 2, 3, 4]}}}",
                        List.of("layers.1.expert_counts[0] must be a non-negative integer", "got null")),
                Arguments.of("all-zero layer", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 0, 0, 0]},"
                        + " \"4\": {\"expert_counts\": [0, 0, 0, 0]}}}",
                        List.of("layers.4.expert_counts is all zeros")),
                Arguments.of("duplicate layer key", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 1, 1, 1]},"
                        + " \"0\": {\"expert_counts\": [2, 2, 2, 2]}}}", List.of("not valid JSON", "\"0\"")),
                Arguments.of("duplicate top-level key", "{" + HEAD + "\"num_experts\": 8, \"layers\": {}}",
                        List.of("not valid JSON", "num_experts")),
                Arguments.of("trailing garbage", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 1, 1, 1]}}}"
                        + " garbage", List.of("not valid JSON")),
                Arguments.of("second document", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 1, 1, 1]}}}"
                        + " {}", List.of("not valid JSON")));
    }

    @ParameterizedTest(name = "{0}")
    @MethodSource("invalidDocuments")
    void rejectsInvalidDocumentsNamingFileAndKey(String name, String text, List<String> messageParts)
            throws IOException {
        Path file = write("bad.json", text);
        assertThatThrownBy(() -> RoutingReference.read(file))
                .as(name)
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageStartingWith("routing reference " + file)
                .satisfies(e -> assertThat(e.getMessage()).contains(messageParts));
    }

    @Test
    void validHeadAndLayerIsAcceptedSoTheCasesAboveFailForTheirOwnReason() throws IOException {
        Path file = write("ok.json", "{" + HEAD + "\"layers\": {\"0\": {\"expert_counts\": [1, 1, 1, 1]}}}");
        assertThat(RoutingReference.read(file).expertCounts().get(0)).containsExactly(1, 1, 1, 1);
        Path empty = write("empty.json", "{" + HEAD + "\"layers\": {}}");
        assertThat(RoutingReference.read(empty).expertCounts()).isEmpty();
    }

    @Test
    void readReferenceDrivesDriftOfTheLayersItNames() throws IOException {
        // Reference of layer 0 has proportions 1:0:3:6; layer 1 is not in the file (warm-up).
        Path file = write("ref.json", """
                {"format": "moe-routing-reference/v1", "model_fingerprint": "x", "num_experts": 4,
                 "layers": {"0": {"assignments": 10, "expert_counts": [1, 0, 3, 6]}}}
                """);
        RoutingReference ref = RoutingReference.read(file);
        var m = new ExpertLoadMetrics(new SimpleMeterRegistry(), 4,
                List.of(0, 1), true, 80, ref.distributions());
        // 10 tokens top-1 with exactly the reference proportions.
        m.record(0, new RoutingDecision(10, 1, new int[] {0, 2, 2, 2, 3, 3, 3, 3, 3, 3},
                new float[10]), Map.of("s", 10));
        m.record(1, new RoutingDecision(10, 1, new int[] {0, 2, 2, 2, 3, 3, 3, 3, 3, 3},
                new float[10]), Map.of("s", 10));
        assertThat(m.drift(0)).isCloseTo(0.0, within(1e-12));
        assertThat(m.drift(1)).isNaN();
    }
}

package dev.moe.core.sparsity;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.sparsity.SparsityProfile.Calibration;
import dev.moe.core.sparsity.SparsityProfile.Expert;
import dev.moe.core.sparsity.SparsityProfile.Projection;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/** The thresholds file: its exact layout, a bit-exact round trip, and errors that name the key. */
class SparsityProfileTest {
    @TempDir
    Path dir;

    private static SparsityProfile sample() {
        // awkward floats on purpose: 0.1f, a value with 9 significant digits, a subnormal, a large one
        Expert e0 = new Expert(new Projection(0.1f, 0f, 130), new Projection(0.045678912f, -1.5e-3f, 130));
        Expert e1 = new Expert(new Projection(Float.MIN_VALUE, 0.33333334f, 7), new Projection(123456.79f, 0f, 7));
        Expert empty = new Expert(Projection.none(0), Projection.none(0));
        return new SparsityProfile("0123456789abcdef0123456789abcdef", "qwen3_moe", 0.5, true,
                new Calibration(Calibrator.SYNTHETIC_SOURCE, 4096, 1L),
                Map.of(0, Map.of(0, e0, 1, e1, 2, empty), 10, Map.of(2, e0)));
    }

    @Test
    void writesTheDocumentedLayoutAndReadsItBackBitExactly() throws Exception {
        SparsityProfile profile = sample();
        Path file = dir.resolve("sub/thresholds.json");
        profile.write(file);
        JsonNode json = JsonMapper.builder().build().readTree(Files.readString(file));
        assertThat(json.get("format").asString()).isEqualTo("moe-sparsity-thresholds/v1");
        assertThat(json.get("model_fingerprint").asString()).isEqualTo("0123456789abcdef0123456789abcdef");
        assertThat(json.get("model_type").asString()).isEqualTo("qwen3_moe");
        assertThat(json.get("target_sparsity").asDouble()).isEqualTo(0.5);
        assertThat(json.get("mode_centering").asBoolean()).isTrue();
        assertThat(json.get("calibration").get("source").asString()).isEqualTo(Calibrator.SYNTHETIC_SOURCE);
        assertThat(json.get("calibration").get("tokens").asLong()).isEqualTo(4096);
        assertThat(json.get("calibration").get("seed").asLong()).isEqualTo(1);
        JsonNode down = json.get("layers").get("0").get("0").get("down");
        // Float.toString of the float nearest 0.045678912
        assertThat(down.get("threshold").toString()).isEqualTo("0.045678914");
        assertThat(down.get("mode").toString()).isEqualTo("-0.0015");
        assertThat(down.get("tokens").asLong()).isEqualTo(130);
        assertThat(json.get("layers").get("0").get("0").get("gate_up").get("threshold").toString()).isEqualTo("0.1");
        assertThat(json.get("layers").properties().stream().map(Map.Entry::getKey)).containsExactly("0", "10");

        SparsityProfile read = SparsityProfile.read(file);
        assertThat(read.modelFingerprint()).isEqualTo(profile.modelFingerprint());
        assertThat(read.modelType()).isEqualTo("qwen3_moe");
        assertThat(read.targetSparsity()).isEqualTo(0.5);
        assertThat(read.modeCentering()).isTrue();
        assertThat(read.calibration()).isEqualTo(profile.calibration());
        assertThat(read.layers()).isEqualTo(profile.layers()); // records: float fields compared bit for bit
        assertThat(read.thresholds(0, 1))
                .isEqualTo(new SparsityThresholds(Float.MIN_VALUE, 0.33333334f, 123456.79f, 0f));
        assertThat(read.thresholds(0, 2)).isEqualTo(new SparsityThresholds(0f, 0f, 0f, 0f));
        assertThat(read.thresholds(0, 3)).isNull();
        assertThat(read.thresholds(5, 0)).isNull();
        assertThat(read.toJson()).isEqualTo(Files.readString(file));
        assertThat(Files.list(file.getParent())).containsExactly(file); // no .partial left behind
    }

    @Test
    void aFileSourceHasANullSeedAndCalibrationIsOptional() {
        SparsityProfile p = new SparsityProfile("f", "mixtral", 0.3, false, new Calibration("file acts.safetensors",
                12, null), Map.of());
        SparsityProfile read = SparsityProfile.parse(p.toJson(), "x.json");
        assertThat(read.calibration().seed()).isNull();
        assertThat(read.calibration().source()).isEqualTo("file acts.safetensors");
        SparsityProfile bare = SparsityProfile.parse("""
                {"format": "moe-sparsity-thresholds/v1", "model_fingerprint": "f", "model_type": "mixtral",
                 "target_sparsity": 0, "mode_centering": false, "layers": {"3": {"1": {
                   "gate_up": {"threshold": 1, "mode": 0, "tokens": 0},
                   "down": {"threshold": 2.5e-3, "mode": -0.25, "tokens": 4}}}}}""", "hand.json");
        assertThat(bare.calibration()).isNull();
        assertThat(bare.thresholds(3, 1)).isEqualTo(new SparsityThresholds(1f, 0f, 2.5e-3f, -0.25f));
    }

    @Test
    void theFingerprintCheckNamesBothModels() {
        SparsityProfile p = sample();
        p.requireFingerprint("0123456789abcdef0123456789abcdef");
        assertThatThrownBy(() -> p.requireFingerprint("ffff"))
                .isInstanceOf(SparsityProfileException.class)
                .hasMessageContaining("0123456789abcdef0123456789abcdef").hasMessageContaining("ffff");
    }

    private static String valid(String layers) {
        return """
                {"format": "moe-sparsity-thresholds/v1", "model_fingerprint": "f", "model_type": "qwen3_moe",
                 "target_sparsity": 0.5, "mode_centering": false,
                 "calibration": {"source": "s", "tokens": 8, "seed": 1},
                 "layers": %s}""".formatted(layers);
    }

    private static String expert(String gateUp) {
        return valid("{\"2\": {\"7\": {\"gate_up\": " + gateUp
                + ", \"down\": {\"threshold\": 0.1, \"mode\": 0, \"tokens\": 3}}}}");
    }

    private static void refused(String json, String message) {
        assertThatThrownBy(() -> SparsityProfile.parse(json, "t.json"))
                .isInstanceOf(SparsityProfileException.class).hasMessage("t.json: " + message);
    }

    @Test
    void invalidContentIsRefusedNamingTheKey() {
        SparsityProfile.parse(expert("{\"threshold\": 0.2, \"mode\": 0, \"tokens\": 3}"), "t.json"); // the baseline
        refused(valid("{}").replace("v1", "v2"),
                "format is 'moe-sparsity-thresholds/v2', expected 'moe-sparsity-thresholds/v1'");
        refused(expert("{\"threshold\": -0.2, \"mode\": 0, \"tokens\": 3}"),
                "layers.2.7.gate_up.threshold must be >= 0, got -0.2");
        refused(expert("{\"threshold\": 1e999, \"mode\": 0, \"tokens\": 3}"),
                "layers.2.7.gate_up.threshold must be a finite float32, got 1E+999");
        refused(expert("{\"threshold\": 0.2, \"mode\": -4e38, \"tokens\": 3}"),
                "layers.2.7.gate_up.mode must be a finite float32, got -4E+38");
        refused(expert("{\"threshold\": \"0.2\", \"mode\": 0, \"tokens\": 3}"),
                "layers.2.7.gate_up.threshold must be a number, got \"0.2\"");
        refused(expert("{\"mode\": 0, \"tokens\": 3}"), "layers.2.7.gate_up.threshold is missing");
        refused(expert("{\"threshold\": 0.2, \"mode\": 0, \"tokens\": 2.5}"),
                "layers.2.7.gate_up.tokens must be an integer, got 2.5");
        refused(expert("{\"threshold\": 0.2, \"mode\": 0, \"tokens\": -1}"),
                "layers.2.7.gate_up.tokens must be an integer >= 0, got -1");
        refused(valid("{\"2\": {\"7\": {\"gate_up\": {\"threshold\": 0.2, \"mode\": 0, \"tokens\": 3}}}}"),
                "layers.2.7.down is missing");
        refused(valid("{\"two\": {}}"), "layers.two is not a layer index (a non-negative integer)");
        refused(valid("{\"-1\": {}}"), "layers.-1 is not a layer index (a non-negative integer)");
        refused(valid("{\"2\": {\"x\": {}}}"), "layers.2.x is not an expert index (a non-negative integer)");
        refused(valid("[]"), "layers must be an object keyed by layer index, got ARRAY");
        refused(valid("{}").replace("\"target_sparsity\": 0.5", "\"target_sparsity\": 1.5"),
                "target_sparsity must be in [0, 1], got 1.5");
        refused(valid("{}").replace("\"mode_centering\": false", "\"mode_centering\": \"no\""),
                "mode_centering must be true or false, got \"no\"");
        refused(valid("{}").replace("\"model_fingerprint\": \"f\", ", ""), "model_fingerprint is missing");
        refused(valid("{}").replace("\"tokens\": 8", "\"tokens\": -8"),
                "calibration.tokens must be an integer >= 0, got -8");
        refused("[1]", "the file must hold a JSON object");
        assertThatThrownBy(() -> SparsityProfile.parse(valid("{\"1\": {}, \"1\": {}}"), "t.json"))
                .isInstanceOf(SparsityProfileException.class).hasMessageStartingWith("t.json is not valid JSON");
        assertThatThrownBy(() -> SparsityProfile.parse("{", "t.json"))
                .hasMessageStartingWith("t.json is not valid JSON");
        assertThatThrownBy(() -> SparsityProfile.read(dir.resolve("missing.json")))
                .isInstanceOf(SparsityProfileException.class)
                .hasMessageEndingWith("missing.json: no such thresholds file");
    }
    private static dev.moe.core.config.MoeConfig config(int numExperts, java.util.List<Integer> moeLayers) {
        return new dev.moe.core.config.MoeConfig(dev.moe.core.config.ModelFamily.QWEN3_MOE, 8, 11, numExperts, 1, 4, 0,
                true, dev.moe.core.config.MoeConfig.ScoringFunc.SOFTMAX, 1, 1, 1.0, moeLayers);
    }

    @Test
    void thresholdsForLayersOrExpertsTheModelLacksAreRefused() {
        SparsityProfile profile = sample(); // layer 0: experts 0-2; layer 10: expert 2
        java.util.List<Integer> all = java.util.stream.IntStream.range(0, 11).boxed().toList();
        profile.requireFits(config(3, all));
        assertThatThrownBy(() -> profile.requireFits(config(3, all.subList(0, 10))))
                .isInstanceOf(SparsityProfileException.class)
                .hasMessageContaining("thresholds for layer 10, which has no MoE block in this model");
        assertThatThrownBy(() -> profile.requireFits(config(2, all)))
                .isInstanceOf(SparsityProfileException.class)
                .hasMessageContaining("thresholds for expert 2 of layer 0, but the model has 2 experts");
    }

    @Test
    void nanIsNamedAsANonFiniteThresholdNotAJsonFeature() {
        String json = sample().toJson().replaceFirst("\"threshold\" ?: ?[0-9.eE+-]+", "\"threshold\" : NaN");
        assertThatThrownBy(() -> SparsityProfile.parse(json, "t.json"))
                .isInstanceOf(SparsityProfileException.class)
                .hasMessageContaining("t.json holds NaN or Infinity where a number belongs")
                .hasMessageNotContaining("JsonReadFeature");
    }
}

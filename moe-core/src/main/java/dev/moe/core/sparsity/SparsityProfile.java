package dev.moe.core.sparsity;

import java.io.IOException;
import java.math.BigDecimal;
import java.math.BigInteger;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.Collections;
import java.util.Map;
import java.util.Objects;
import java.util.SortedMap;
import java.util.TreeMap;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * The SCAP thresholds of a checkpoint: one {@link SparsityThresholds} per (MoE layer, routed expert), as written by
 * {@link Calibrator} and {@code bin/moe calibrate}. On disk (JSON):
 *
 * <pre>{@code
 * {
 *   "format": "moe-sparsity-thresholds/v1",
 *   "model_fingerprint": "<Checkpoint.fingerprint()>",
 *   "model_type": "qwen3_moe",
 *   "target_sparsity": 0.5,
 *   "mode_centering": false,
 *   "calibration": {"source": "synthetic gaussian hidden states (no activations file given)",
 *                   "tokens": 4096, "seed": 1},
 *   "layers": { "<layer>": { "<expert>": {
 *       "gate_up": {"threshold": 0.12, "mode": 0.0, "tokens": 130},
 *       "down":    {"threshold": 0.045, "mode": 0.0, "tokens": 130} } } }
 * }
 * }</pre>
 *
 * {@code calibration.source} is that sentence for synthetic inputs or {@code "file <name>"} for an activations file,
 * whose {@code seed} is then {@code null}; {@code calibration.tokens} is the number of hidden-state rows streamed
 * through each layer (the largest, when per-layer inputs differ). Each projection's {@code tokens} is the number of
 * calibration tokens that expert received; an expert that received none has threshold 0 (nothing pruned).
 * Thresholds are float32 values written in their shortest exact decimal form, so a round trip keeps every bit.
 *
 * <p>Reading validates the format string, the types, that every number is finite, that thresholds are {@code >= 0},
 * that token counts are non-negative integers and that layer and expert keys are non-negative integers; errors name
 * the file and the key (e.g. {@code layers.3.17.down.threshold}). Unknown keys are ignored.
 */
public final class SparsityProfile {
    public static final String FORMAT = "moe-sparsity-thresholds/v1";
    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.USE_BIG_DECIMAL_FOR_FLOATS) // exact decimals: floats round once
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /**
     * What was measured on one projection input of one expert.
     *
     * @param threshold  prune iff {@code |v − mode| <= threshold}; finite, {@code >= 0}
     * @param mode       centre of the pruning interval (0 without mode-centering); finite
     * @param tokens     calibration tokens the expert received
     */
    public record Projection(float threshold, float mode, long tokens) {
        public Projection {
            if (!Float.isFinite(threshold) || threshold < 0) {
                throw new IllegalArgumentException("threshold must be finite and >= 0, got " + threshold);
            }
            if (!Float.isFinite(mode)) {
                throw new IllegalArgumentException("mode must be finite, got " + mode);
            }
            if (tokens < 0) {
                throw new IllegalArgumentException("tokens must be >= 0, got " + tokens);
            }
        }

        /** Prunes nothing: threshold 0, mode 0 (continuous inputs are never exactly 0). */
        public static Projection none(long tokens) {
            return new Projection(0f, 0f, tokens);
        }
    }

    /** The two pruned inputs of one routed expert: x into gate_proj/up_proj, h into down_proj. */
    public record Expert(Projection gateUp, Projection down) {
        public Expert {
            Objects.requireNonNull(gateUp, "gateUp");
            Objects.requireNonNull(down, "down");
        }

        public SparsityThresholds thresholds() {
            return new SparsityThresholds(gateUp.threshold(), gateUp.mode(), down.threshold(), down.mode());
        }
    }

    /**
     * Where the calibration inputs came from.
     *
     * @param source  {@link Calibrator#SYNTHETIC_SOURCE} or {@code "file <name>"}
     * @param tokens  hidden-state rows streamed through each layer
     * @param seed    seed of the synthetic inputs, null for a file
     */
    public record Calibration(String source, long tokens, Long seed) {
        public Calibration {
            Objects.requireNonNull(source, "source");
        }
    }

    private final String modelFingerprint;
    private final String modelType;
    private final double targetSparsity;
    private final boolean modeCentering;
    private final Calibration calibration;
    private final SortedMap<Integer, SortedMap<Integer, Expert>> layers;

    /**
     * @param calibration  may be null (a hand-written file)
     * @param layers       layer → expert → thresholds; copied
     */
    public SparsityProfile(String modelFingerprint, String modelType, double targetSparsity, boolean modeCentering,
                           Calibration calibration, Map<Integer, ? extends Map<Integer, Expert>> layers) {
        this.modelFingerprint = Objects.requireNonNull(modelFingerprint, "modelFingerprint");
        this.modelType = Objects.requireNonNull(modelType, "modelType");
        if (!(targetSparsity >= 0 && targetSparsity <= 1)) {
            throw new IllegalArgumentException("target sparsity must be in [0, 1], got " + targetSparsity);
        }
        this.targetSparsity = targetSparsity;
        this.modeCentering = modeCentering;
        this.calibration = calibration;
        SortedMap<Integer, SortedMap<Integer, Expert>> copy = new TreeMap<>();
        layers.forEach((layer, experts) -> {
            if (layer < 0) {
                throw new IllegalArgumentException("layer " + layer + " must be >= 0");
            }
            SortedMap<Integer, Expert> e = new TreeMap<>();
            experts.forEach((expert, entry) -> {
                if (expert < 0) {
                    throw new IllegalArgumentException("expert " + expert + " of layer " + layer + " must be >= 0");
                }
                e.put(expert, Objects.requireNonNull(entry, "entry"));
            });
            copy.put(layer, Collections.unmodifiableSortedMap(e));
        });
        this.layers = Collections.unmodifiableSortedMap(copy);
    }

    /** The thresholds of one routed expert, or null when the file has none for it. */
    public SparsityThresholds thresholds(int layer, int expert) {
        Expert e = expert(layer, expert);
        return e == null ? null : e.thresholds();
    }

    /** Everything recorded for one routed expert, or null. */
    public Expert expert(int layer, int expert) {
        SortedMap<Integer, Expert> experts = layers.get(layer);
        return experts == null ? null : experts.get(expert);
    }

    /** Layer → expert → entry, ascending. */
    public SortedMap<Integer, SortedMap<Integer, Expert>> layers() {
        return layers;
    }

    public String modelFingerprint() {
        return modelFingerprint;
    }

    public String modelType() {
        return modelType;
    }

    public double targetSparsity() {
        return targetSparsity;
    }

    public boolean modeCentering() {
        return modeCentering;
    }

    /** May be null. */
    public Calibration calibration() {
        return calibration;
    }

    /** Refuses thresholds calibrated on another checkpoint. */
    public void requireFingerprint(String checkpointFingerprint) {
        if (!modelFingerprint.equals(checkpointFingerprint)) {
            throw new SparsityProfileException("thresholds were calibrated on model " + modelFingerprint
                    + " but the checkpoint is " + checkpointFingerprint + ": recalibrate with bin/moe calibrate");
        }
    }

    /**
     * Refuses thresholds for a layer without a MoE block or an expert the model does not have: such a file was not
     * written for this model (or was edited), and its entries would be silently ignored.
     */
    public void requireFits(dev.moe.core.config.MoeConfig config) {
        for (Map.Entry<Integer, SortedMap<Integer, Expert>> layer : layers.entrySet()) {
            if (!config.isMoeLayer(layer.getKey())) {
                throw new SparsityProfileException("thresholds for layer " + layer.getKey() + ", which has no MoE block"
                        + " in this model (MoE layers: " + config.moeLayers() + "): recalibrate with bin/moe calibrate");
            }
            int last = layer.getValue().isEmpty() ? -1 : layer.getValue().lastKey();
            if (last >= config.numExperts()) {
                throw new SparsityProfileException("thresholds for expert " + last + " of layer " + layer.getKey()
                        + ", but the model has " + config.numExperts() + " experts: recalibrate with bin/moe calibrate");
            }
        }
    }

    // ---------------------------------------------------------------- writing

    /** The JSON text (pretty-printed, layers and experts in ascending order). */
    public String toJson() {
        ObjectNode root = JSON.createObjectNode();
        root.put("format", FORMAT);
        root.put("model_fingerprint", modelFingerprint);
        root.put("model_type", modelType);
        root.put("target_sparsity", targetSparsity);
        root.put("mode_centering", modeCentering);
        if (calibration != null) {
            ObjectNode c = root.putObject("calibration");
            c.put("source", calibration.source());
            c.put("tokens", calibration.tokens());
            if (calibration.seed() == null) {
                c.putNull("seed");
            } else {
                c.put("seed", calibration.seed().longValue());
            }
        }
        ObjectNode layersNode = root.putObject("layers");
        layers.forEach((layer, experts) -> {
            ObjectNode layerNode = layersNode.putObject(Integer.toString(layer));
            experts.forEach((expert, entry) -> {
                ObjectNode expertNode = layerNode.putObject(Integer.toString(expert));
                putProjection(expertNode.putObject("gate_up"), entry.gateUp());
                putProjection(expertNode.putObject("down"), entry.down());
            });
        });
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(root) + "\n";
    }

    private static void putProjection(ObjectNode node, Projection p) {
        // Float.toString: the shortest decimal that reads back as the same float
        node.put("threshold", new BigDecimal(Float.toString(p.threshold())));
        node.put("mode", new BigDecimal(Float.toString(p.mode())));
        node.put("tokens", p.tokens());
    }

    /** Writes the file atomically (beside it, then moved), creating parent folders. */
    public void write(Path path) throws IOException {
        Path absolute = path.toAbsolutePath();
        Files.createDirectories(absolute.getParent());
        Path tmp = absolute.resolveSibling(absolute.getFileName() + ".partial");
        Files.writeString(tmp, toJson(), StandardCharsets.UTF_8);
        Files.move(tmp, absolute, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    // ---------------------------------------------------------------- reading

    /** Reads and validates a thresholds file. */
    public static SparsityProfile read(Path path) {
        String text;
        try {
            text = Files.readString(path, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new SparsityProfileException(path + ": no such thresholds file");
        } catch (IOException e) {
            throw new SparsityProfileException("cannot read " + path + ": " + e.getMessage(), e);
        }
        return parse(text, path.toString());
    }

    /**
     * Parses and validates thresholds JSON.
     *
     * @param origin  named in error messages (a path)
     */
    public static SparsityProfile parse(String json, String origin) {
        JsonNode root;
        try {
            root = JSON.readTree(json);
        } catch (RuntimeException e) {
            String message = firstLine(e.getMessage());
            if (message.contains("Non-standard token")) {
                // Jackson's advice (enable a read feature) is for developers; a thresholds file holds finite numbers.
                throw new SparsityProfileException(origin + " holds NaN or Infinity where a number belongs: every"
                        + " threshold and mode must be a finite number (recalibrate with bin/moe calibrate)", e);
            }
            throw new SparsityProfileException(origin + " is not valid JSON: " + message, e);
        }
        Reader r = new Reader(origin);
        if (root == null || !root.isObject()) {
            throw r.error("", "the file must hold a JSON object");
        }
        String format = r.string(root, "format");
        if (!format.equals(FORMAT)) {
            throw r.error("format", "is '" + format + "', expected '" + FORMAT + "'");
        }
        String fingerprint = r.string(root, "model_fingerprint");
        String modelType = r.string(root, "model_type");
        double target = r.number(root, "target_sparsity", "target_sparsity").doubleValue();
        if (target < 0 || target > 1) {
            throw r.error("target_sparsity", "must be in [0, 1], got " + target);
        }
        JsonNode centering = r.required(root, "mode_centering", "mode_centering");
        if (!centering.isBoolean()) {
            throw r.error("mode_centering", "must be true or false, got " + centering);
        }
        Calibration calibration = null;
        JsonNode c = root.get("calibration");
        if (c != null && !c.isNull()) {
            if (!c.isObject()) {
                throw r.error("calibration", "must be an object, got " + c);
            }
            JsonNode seed = c.get("seed");
            Long seedValue = null;
            if (seed != null && !seed.isNull()) {
                seedValue = r.integer(seed, "calibration.seed", Long.MIN_VALUE);
            }
            calibration = new Calibration(r.string(c, "source", "calibration.source"),
                    r.integer(r.required(c, "tokens", "calibration.tokens"), "calibration.tokens", 0), seedValue);
        }
        JsonNode layersNode = r.required(root, "layers", "layers");
        if (!layersNode.isObject()) {
            throw r.error("layers", "must be an object keyed by layer index, got " + layersNode.getNodeType());
        }
        Map<Integer, Map<Integer, Expert>> layers = new TreeMap<>();
        for (Map.Entry<String, JsonNode> layerEntry : layersNode.properties()) {
            String layerKey = "layers." + layerEntry.getKey();
            int layer = r.index(layerEntry.getKey(), layerKey, "a layer");
            JsonNode expertsNode = layerEntry.getValue();
            if (!expertsNode.isObject()) {
                throw r.error(layerKey, "must be an object keyed by expert index, got " + expertsNode.getNodeType());
            }
            Map<Integer, Expert> experts = new TreeMap<>();
            for (Map.Entry<String, JsonNode> expertEntry : expertsNode.properties()) {
                String expertKey = layerKey + "." + expertEntry.getKey();
                int expert = r.index(expertEntry.getKey(), expertKey, "an expert");
                JsonNode e = expertEntry.getValue();
                if (!e.isObject()) {
                    throw r.error(expertKey, "must be an object with gate_up and down, got " + e.getNodeType());
                }
                experts.put(expert, new Expert(r.projection(e, "gate_up", expertKey + ".gate_up"),
                        r.projection(e, "down", expertKey + ".down")));
            }
            layers.put(layer, experts);
        }
        return new SparsityProfile(fingerprint, modelType, target, centering.booleanValue(), calibration, layers);
    }

    private static String firstLine(String message) {
        if (message == null) {
            return "";
        }
        int newline = message.indexOf('\n');
        return newline < 0 ? message : message.substring(0, newline);
    }

    /** Typed access that names the file and the key in every error. */
    private record Reader(String origin) {
        SparsityProfileException error(String key, String problem) {
            return new SparsityProfileException(origin + ": " + (key.isEmpty() ? "" : key + " ") + problem);
        }

        JsonNode required(JsonNode parent, String field, String key) {
            JsonNode node = parent.get(field);
            if (node == null || node.isNull()) {
                throw error(key, "is missing");
            }
            return node;
        }

        String string(JsonNode parent, String field) {
            return string(parent, field, field);
        }

        String string(JsonNode parent, String field, String key) {
            JsonNode node = required(parent, field, key);
            if (!node.isString()) {
                throw error(key, "must be a string, got " + node);
            }
            return node.asString();
        }

        BigDecimal number(JsonNode parent, String field, String key) {
            JsonNode node = required(parent, field, key);
            if (!node.isNumber()) {
                throw error(key, "must be a number, got " + node);
            }
            return node.decimalValue();
        }

        /** A finite float32 (the decimal rounded once, to nearest). */
        float finiteFloat(JsonNode parent, String field, String key) {
            BigDecimal value = number(parent, field, key);
            float f = Float.parseFloat(value.toString());
            if (!Float.isFinite(f)) {
                throw error(key, "must be a finite float32, got " + value);
            }
            return f;
        }

        long integer(JsonNode node, String key, long min) {
            if (!node.isNumber()) {
                throw error(key, "must be an integer, got " + node);
            }
            BigDecimal value = node.decimalValue();
            BigInteger exact;
            try {
                exact = value.toBigIntegerExact();
            } catch (ArithmeticException e) {
                throw error(key, "must be an integer, got " + value);
            }
            if (exact.bitLength() > 63 || exact.longValue() < min) {
                throw error(key, "must be an integer" + (min == 0 ? " >= 0" : "") + ", got " + value);
            }
            return exact.longValue();
        }

        int index(String text, String key, String what) {
            if (!text.matches("0|[1-9][0-9]{0,8}")) {
                throw error(key, "is not " + what + " index (a non-negative integer)");
            }
            return Integer.parseInt(text);
        }

        Projection projection(JsonNode expert, String field, String key) {
            JsonNode node = required(expert, field, key);
            if (!node.isObject()) {
                throw error(key, "must be an object with threshold, mode and tokens, got " + node.getNodeType());
            }
            float threshold = finiteFloat(node, "threshold", key + ".threshold");
            if (threshold < 0) {
                throw error(key + ".threshold", "must be >= 0, got " + threshold);
            }
            float mode = finiteFloat(node, "mode", key + ".mode");
            long tokens = integer(required(node, "tokens", key + ".tokens"), key + ".tokens", 0);
            return new Projection(threshold, mode, tokens);
        }
    }
}

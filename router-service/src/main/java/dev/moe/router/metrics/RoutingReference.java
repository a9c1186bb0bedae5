package dev.moe.router.metrics;

import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.NoSuchFileException;
import java.nio.file.Path;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.SortedMap;
import java.util.TreeMap;
import tools.jackson.core.StreamReadFeature;
import tools.jackson.databind.DeserializationFeature;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ArrayNode;
import tools.jackson.databind.node.ObjectNode;

/**
 * The expert-selection distribution the router's drift gauge compares traffic against, per MoE layer. Taken from
 * known-good traffic ({@code GET /actuator/routing} on a router returns its current window in this format) and
 * given back to routers with {@code moe.router.metrics.drift-reference=FILE}:
 *
 * <pre>{@code
 * {
 *   "format": "moe-routing-reference/v1",
 *   "model_fingerprint": "<Checkpoint.fingerprint()>",
 *   "num_experts": 128,
 *   "layers": { "<layer>": {"assignments": 32768, "expert_counts": [31, 0, 77, ...]} }
 * }
 * }</pre>
 *
 * {@code expert_counts[e]} are token-to-expert assignments of expert {@code e} in the window (non-negative, at least
 * one positive per layer; {@code assignments} is their sum, informative only); only their proportions matter.
 * Layers missing from the file fall back to the warm-up window of their own traffic.
 *
 * @param modelFingerprint checkpoint the counts were taken on (a mismatch is reported, not refused: a reference from
 *                         the wrong checkpoint is exactly what drift should show)
 * @param numExperts       routed experts per layer
 * @param expertCounts     per MoE layer, {@code [numExperts]} counts
 */
public record RoutingReference(String modelFingerprint, int numExperts, SortedMap<Integer, long[]> expertCounts) {
    public static final String FORMAT = "moe-routing-reference/v1";
    private static final JsonMapper JSON = JsonMapper.builder()
            .enable(StreamReadFeature.STRICT_DUPLICATE_DETECTION)
            .enable(DeserializationFeature.FAIL_ON_TRAILING_TOKENS)
            .build();

    /** The counts as distributions for {@link ExpertLoadMetrics} (normalised there). */
    public Map<Integer, double[]> distributions() {
        Map<Integer, double[]> out = new LinkedHashMap<>();
        expertCounts.forEach((layer, counts) -> {
            double[] d = new double[counts.length];
            for (int e = 0; e < counts.length; e++) {
                d[e] = counts[e];
            }
            out.put(layer, d);
        });
        return out;
    }

    /** The JSON document of this reference. */
    public String toJson() {
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(toTree());
    }

    /** The document as a JSON tree. */
    public ObjectNode toTree() {
        ObjectNode root = JSON.createObjectNode();
        root.put("format", FORMAT);
        root.put("model_fingerprint", modelFingerprint);
        root.put("num_experts", numExperts);
        ObjectNode layers = root.putObject("layers");
        expertCounts.forEach((layer, counts) -> {
            ObjectNode l = layers.putObject(Integer.toString(layer));
            long tokens = 0;
            for (long c : counts) {
                tokens += c;
            }
            l.put("assignments", tokens);
            ArrayNode a = l.putArray("expert_counts");
            for (long c : counts) {
                a.add(c);
            }
        });
        return root;
    }

    /** Reads and validates a reference file; errors name the file and the key. */
    public static RoutingReference read(Path file) {
        String text;
        try {
            text = Files.readString(file, StandardCharsets.UTF_8);
        } catch (NoSuchFileException e) {
            throw new IllegalArgumentException("routing reference " + file + " does not exist: write one with"
                    + " `curl http://<router>:8080/actuator/routing > routing-reference.json` on known-good traffic");
        } catch (IOException e) {
            throw new IllegalArgumentException("cannot read routing reference " + file + ": " + e.getMessage(), e);
        }
        JsonNode root;
        try {
            root = JSON.readTree(text);
        } catch (RuntimeException e) {
            throw new IllegalArgumentException("routing reference " + file + " is not valid JSON: " + e.getMessage(), e);
        }
        String where = "routing reference " + file + ": ";
        if (root == null || !root.isObject()) {
            throw new IllegalArgumentException(where + "expected a JSON object");
        }
        if (!FORMAT.equals(root.path("format").asString(null))) {
            throw new IllegalArgumentException(where + "format must be \"" + FORMAT + "\", got " + root.get("format"));
        }
        JsonNode n = root.get("num_experts");
        if (n == null || !n.isIntegralNumber() || !n.canConvertToLong() || n.asLong() < 2 || n.asLong() > 1 << 20) {
            throw new IllegalArgumentException(where + "num_experts must be an integer in [2, " + (1 << 20) + "], got "
                    + n);
        }
        int numExperts = n.asInt();
        JsonNode layers = root.get("layers");
        if (layers == null || !layers.isObject()) {
            throw new IllegalArgumentException(where + "layers must be an object of layer -> {expert_counts}");
        }
        SortedMap<Integer, long[]> counts = new TreeMap<>();
        for (Map.Entry<String, JsonNode> entry : layers.properties()) {
            int layer;
            try {
                layer = Integer.parseInt(entry.getKey());
            } catch (NumberFormatException e) {
                layer = -1;
            }
            // Canonical decimal only: "01" and "+1" would silently name layer 1 a second time.
            if (layer < 0 || !Integer.toString(layer).equals(entry.getKey())) {
                throw new IllegalArgumentException(where + "layer key '" + entry.getKey()
                        + "' is not a non-negative integer in canonical form (e.g. \"3\")");
            }
            JsonNode array = entry.getValue().get("expert_counts");
            String key = "layers." + entry.getKey() + ".expert_counts";
            if (array == null || !array.isArray() || array.size() != numExperts) {
                throw new IllegalArgumentException(where + key + " must be an array of num_experts = " + numExperts
                        + " counts");
            }
            long[] c = new long[numExperts];
            boolean anyPositive = false;
            for (int e = 0; e < numExperts; e++) {
                JsonNode v = array.get(e);
                if (!v.isIntegralNumber() || !v.canConvertToLong() || v.asLong() < 0) {
                    throw new IllegalArgumentException(where + key + "[" + e + "] must be a non-negative integer"
                            + " below 2^63, got " + v);
                }
                c[e] = v.asLong();
                anyPositive |= c[e] > 0;
            }
            if (!anyPositive) {
                throw new IllegalArgumentException(where + key + " is all zeros: take the reference after traffic");
            }
            counts.put(layer, c);
        }
        return new RoutingReference(root.path("model_fingerprint").asString(""), numExperts, counts);
    }
}

package dev.moe.cli.bench;

import java.util.List;
import java.util.Locale;

/** Expert and MoE-layer shapes of real models, by name. */
final class Shapes {
    private Shapes() {
    }

    /** One routed expert: {@code hidden → intermediate → hidden} SwiGLU. */
    record Expert(String name, int hidden, int intermediate) {
    }

    /** One MoE layer: the router picks {@code topK} of {@code numExperts} experts of shape {@code expert}. */
    record Layer(String name, int numExperts, int topK, boolean normTopkProb, Expert expert) {
    }

    static final List<Layer> LAYERS = List.of(
            new Layer("qwen3-30b-a3b", 128, 8, true, new Expert("qwen3-30b-a3b", 2048, 768)),
            new Layer("olmoe", 64, 8, false, new Expert("olmoe", 2048, 1024)),
            new Layer("mixtral", 8, 2, true, new Expert("mixtral", 4096, 14336)));

    static List<String> names() {
        return LAYERS.stream().map(Layer::name).toList();
    }

    /** A named expert shape, or {@code HIDDENxINTERMEDIATE} (e.g. 64x96). */
    static Expert expert(String spec) {
        String s = spec.trim().toLowerCase(Locale.ROOT);
        for (Layer l : LAYERS) {
            if (l.name().equals(s)) {
                return l.expert();
            }
        }
        String[] parts = s.split("x");
        if (parts.length == 2) {
            int hidden = positive(parts[0], spec);
            int inter = positive(parts[1], spec);
            requireArraySized(hidden, inter, spec);
            return new Expert(hidden + "x" + inter, hidden, inter);
        }
        throw new IllegalArgumentException("unknown shape '" + spec + "': one of " + String.join(", ", names())
                + " or HIDDENxINTERMEDIATE");
    }

    /** A named layer shape, or {@code EXPERTSxTOPKxHIDDENxINTERMEDIATE} (e.g. 16x4x64x96, renormalised top-k). */
    static Layer layer(String spec) {
        String s = spec.trim().toLowerCase(Locale.ROOT);
        for (Layer l : LAYERS) {
            if (l.name().equals(s)) {
                return l;
            }
        }
        String[] parts = s.split("x");
        if (parts.length == 4) {
            int experts = positive(parts[0], spec);
            int topK = positive(parts[1], spec);
            if (topK > experts) {
                throw new IllegalArgumentException("shape '" + spec + "': top-k exceeds the number of experts");
            }
            int hidden = positive(parts[2], spec);
            int inter = positive(parts[3], spec);
            requireArraySized(hidden, inter, spec);
            return new Layer(s, experts, topK, true, new Expert(hidden + "x" + inter, hidden, inter));
        }
        throw new IllegalArgumentException("unknown layer shape '" + spec + "': one of " + String.join(", ", names())
                + " or EXPERTSxTOPKxHIDDENxINTERMEDIATE");
    }

    /** gate and up side by side, 2 · hidden · intermediate values, must fit one Java array. */
    private static void requireArraySized(int hidden, int inter, String spec) {
        if (2L * hidden * inter > Integer.MAX_VALUE - 64) {
            throw new IllegalArgumentException("shape '" + spec + "': 2 x " + hidden + " x " + inter
                    + " weights exceed one Java array (2^31 values)");
        }
    }

    private static int positive(String s, String spec) {
        try {
            int v = Integer.parseInt(s.trim());
            if (v > 0) {
                return v;
            }
        } catch (NumberFormatException e) {
            // fall through
        }
        throw new IllegalArgumentException("shape '" + spec + "': '" + s + "' is not a positive integer");
    }
}

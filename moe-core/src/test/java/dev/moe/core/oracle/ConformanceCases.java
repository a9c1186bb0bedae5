package dev.moe.core.oracle;

import dev.moe.core.checkpoint.SafetensorsFile;
import java.io.IOException;
import java.io.InputStream;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.TreeSet;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/**
 * The conformance checkpoints of {@code src/test/resources/conformance} (copied from shared/conformance): each a tiny
 * checkpoint in Hugging Face layout with the expected output of every MoE layer, computed in float64 by an
 * independent reference. Works from a directory or from inside the test-jar (extracted once to a temp folder).
 */
public final class ConformanceCases {
    public static final List<String> NAMES = List.of("mixtral-tiny", "qwen2-moe-tiny", "deepseek-v3-tiny",
            "deepseek-v3-fp8-tiny");
    private static final List<String> FILES = List.of("config.json", "model.safetensors", "model.safetensors.index.json",
            "model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors", "expected.safetensors");
    private static final Pattern INPUT = Pattern.compile("layer(\\d+)\\.input");
    private static Path extracted;

    private ConformanceCases() {
    }

    /** The case's checkpoint folder. */
    public static synchronized Path dir(String name) {
        URL url = ConformanceCases.class.getResource("/conformance/" + name + "/config.json");
        if (url == null) {
            throw new IllegalStateException("conformance case " + name + " is not on the test classpath");
        }
        try {
            if (url.getProtocol().equals("file")) {
                return Path.of(url.toURI()).getParent();
            }
            if (extracted == null) {
                extracted = Files.createTempDirectory("moe-conformance");
            }
            Path target = extracted.resolve(name);
            if (!Files.exists(target.resolve("config.json"))) {
                Files.createDirectories(target);
                for (String file : FILES) {
                    try (InputStream in = ConformanceCases.class.getResourceAsStream("/conformance/" + name + "/" + file)) {
                        if (in != null) {
                            Files.copy(in, target.resolve(file));
                        }
                    }
                }
            }
            return target;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        } catch (URISyntaxException e) {
            throw new IllegalStateException(e);
        }
    }

    /** Copies a case folder into {@code target} (created), so a test can damage the copy. */
    public static Path copyCase(String name, Path target) {
        try {
            Files.createDirectories(target);
            try (java.util.stream.Stream<Path> files = Files.list(dir(name))) {
                for (Path f : files.toList()) {
                    Files.copy(f, target.resolve(f.getFileName().toString()),
                            java.nio.file.StandardCopyOption.REPLACE_EXISTING);
                }
            }
            return target;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }

    /** One layer's expected values. */
    public record Expected(int layer, int numTokens, int hiddenSize, int k, float[] input, float[] output,
                           int[] topkIds, float[] topkWeights) {
    }

    /** Every MoE layer's expected values, by ascending layer. */
    public static List<Expected> expected(String name) {
        List<Expected> out = new ArrayList<>();
        try (SafetensorsFile file = SafetensorsFile.open(dir(name).resolve("expected.safetensors"))) {
            TreeSet<Integer> layers = new TreeSet<>();
            for (String tensor : file.tensors().keySet()) {
                Matcher m = INPUT.matcher(tensor);
                if (m.matches()) {
                    layers.add(Integer.parseInt(m.group(1)));
                }
            }
            for (int layer : layers) {
                var input = file.tensor("layer" + layer + ".input");
                var ids = file.tensor("layer" + layer + ".topk_ids");
                out.add(new Expected(layer, (int) input.shape()[0], (int) input.shape()[1], (int) ids.shape()[1],
                        file.readFloats(input), file.readFloats(file.tensor("layer" + layer + ".output")),
                        file.readInts(ids), file.readFloats(file.tensor("layer" + layer + ".topk_weights"))));
            }
        }
        return out;
    }

    /** The README's tolerance: {@code max|y - y_ref| <= 1e-4 * max(1, max|y_ref|)}. */
    public static double outputTolerance(float[] reference) {
        double max = 0;
        for (float v : reference) {
            max = Math.max(max, Math.abs(v));
        }
        return 1e-4 * Math.max(1.0, max);
    }
}

package dev.moe.core;

import java.io.IOException;
import java.io.UncheckedIOException;
import java.net.URISyntaxException;
import java.net.URL;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.util.List;
import java.util.stream.Stream;

/** Locates the conformance checkpoints of src/test/resources/conformance on the test classpath. */
public final class ConformanceResources {
    /** Every case folder. */
    public static final List<String> CASES =
            List.of("mixtral-tiny", "qwen2-moe-tiny", "deepseek-v3-tiny", "deepseek-v3-fp8-tiny");

    private ConformanceResources() {
    }

    /** The case folder as a file-system path (test resources are plain files under target/test-classes). */
    public static Path dir(String name) {
        URL url = ConformanceResources.class.getResource("/conformance/" + name + "/config.json");
        if (url == null) {
            throw new IllegalStateException("conformance case " + name + " is not on the test classpath");
        }
        try {
            return Path.of(url.toURI()).getParent();
        } catch (URISyntaxException | IllegalArgumentException e) {
            throw new IllegalStateException("conformance case " + name + " is not a plain file: " + url, e);
        }
    }

    public static Path expected(String name) {
        return dir(name).resolve("expected.safetensors");
    }

    /** Copies a case folder into {@code target} (created), so a test can damage the copy. */
    public static Path copyCase(String name, Path target) {
        try {
            Files.createDirectories(target);
            try (Stream<Path> files = Files.list(dir(name))) {
                for (Path f : files.toList()) {
                    Path dst = target.resolve(f.getFileName().toString());
                    Files.copy(f, dst, StandardCopyOption.REPLACE_EXISTING);
                    dst.toFile().setWritable(true);
                }
            }
            return target;
        } catch (IOException e) {
            throw new UncheckedIOException(e);
        }
    }
}

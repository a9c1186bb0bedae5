package dev.moe.helm;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import java.io.File;
import java.io.IOException;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;

/** Runs Prometheus' promtool (Debian package "prometheus") with a timeout; tests are skipped where it is missing. */
final class Promtool {
    private static final long TIMEOUT_SECONDS = 30;

    record Result(int exitCode, String output) {
    }

    private Promtool() {
    }

    static Optional<Path> find() {
        String override = System.getenv("PROMTOOL");
        if (override != null && !override.isBlank()) {
            return Optional.of(Path.of(override)).filter(Files::isExecutable);
        }
        String path = System.getenv().getOrDefault("PATH", "") + File.pathSeparator + "/usr/bin";
        return Stream.of(path.split(File.pathSeparator)).filter(d -> !d.isBlank())
                .map(d -> Path.of(d, "promtool")).filter(Files::isExecutable).findFirst();
    }

    /** promtool, or a skipped test when it is not installed. */
    static Path require() {
        Optional<Path> promtool = find();
        assumeTrue(promtool.isPresent(),
                "promtool not found on PATH (or $PROMTOOL): install Debian's prometheus package (apt-get install "
                        + "prometheus) to run the alerting-rule and dashboard-query tests");
        return promtool.get();
    }

    /** Runs promtool with the arguments in {@code dir}, output and error merged; fails after the timeout. */
    static Result run(Path dir, String... args) throws IOException, InterruptedException {
        List<String> command = new ArrayList<>();
        command.add(require().toString());
        command.addAll(List.of(args));
        Process process = new ProcessBuilder(command).directory(dir.toFile()).redirectErrorStream(true)
                .redirectOutput(dir.resolve("promtool.log").toFile()).start();
        boolean finished = process.waitFor(TIMEOUT_SECONDS, TimeUnit.SECONDS);
        if (!finished) {
            process.destroyForcibly().waitFor(5, TimeUnit.SECONDS);
        }
        assertThat(finished).as("promtool %s finished within %ds", String.join(" ", args), TIMEOUT_SECONDS).isTrue();
        return new Result(process.exitValue(), Files.readString(dir.resolve("promtool.log"), StandardCharsets.UTF_8));
    }
}

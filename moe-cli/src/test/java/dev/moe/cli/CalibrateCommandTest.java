package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.within;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SafetensorsWriter;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.sparsity.Calibrator;
import dev.moe.core.sparsity.SparsityProfile;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.SplittableRandom;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe calibrate} as a user runs it: exit codes, the file it writes, the summary, one-line errors. */
class CalibrateCommandTest {
    @TempDir
    static Path models;
    @TempDir
    Path dir;
    private static Path model;

    @BeforeAll
    static void writeModel() throws Exception {
        model = models.resolve("qwen3");
        SyntheticCheckpoint.write(model, new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, 64, 2, 8, 2, 48, 0, 1, 1,
                true, DType.BF16, 2, 3), SyntheticCheckpoint.SILENT);
    }

    @RegisterExtension
    final StandardStreams streams = new StandardStreams();

    private String stderr() {
        return streams.stderr();
    }

    private String stdout() {
        return streams.stdout();
    }

    @Test
    void writesThresholdsForTheCheckpointAndPrintsASummary() throws Exception {
        Path file = dir.resolve("thresholds.json");
        int code = MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                file.toString(), "--tokens", "1024", "--seed", "7");
        assertThat(code).as(stderr()).isZero();
        SparsityProfile profile = SparsityProfile.read(file);
        try (Checkpoint checkpoint = Checkpoint.open(model)) {
            assertThat(profile.modelFingerprint()).isEqualTo(checkpoint.fingerprint());
        }
        assertThat(profile.modelType()).isEqualTo("qwen3_moe");
        assertThat(profile.targetSparsity()).isEqualTo(0.5);
        assertThat(profile.modeCentering()).isFalse();
        assertThat(profile.calibration()).isEqualTo(new SparsityProfile.Calibration(Calibrator.SYNTHETIC_SOURCE,
                1024, 7L));
        assertThat(profile.layers().keySet()).containsExactly(0, 1);
        for (int layer = 0; layer < 2; layer++) {
            long pairs = 0;
            for (int e = 0; e < 8; e++) {
                pairs += profile.expert(layer, e).gateUp().tokens();
                assertThat(profile.thresholds(layer, e).gateUpMode()).isZero();
            }
            assertThat(pairs).isEqualTo(2 * 1024);
        }
        String printed = stdout();
        assertThat(printed)
                .contains("calibrated qwen3_moe " + profile.modelFingerprint() + ": 2 MoE layers x 8 experts,"
                        + " target sparsity 0.500, mode centering off")
                .contains("inputs: synthetic gaussian hidden states (no activations file given), 1024 tokens per layer,"
                        + " seed 7")
                .contains("experts that received tokens: 16 of 16")
                .contains("wrote " + file);
        // the counted calibration-set sparsity is printed and is near the target
        String line = printed.lines().filter(l -> l.startsWith("achieved sparsity on the calibration set (counted)"))
                .findFirst().orElseThrow();
        String[] parts = line.replaceAll(".*gate_up ([0-9.]+), down ([0-9.]+)$", "$1 $2").split(" ");
        assertThat(Double.parseDouble(parts[0])).isCloseTo(0.5, within(0.01));
        assertThat(Double.parseDouble(parts[1])).isCloseTo(0.5, within(0.01));
        assertThat(printed.lines().filter(l -> l.matches("^[01]\\s+1024\\s+8/8\\s.*"))).hasSize(2);
        assertThat(stderr()).contains("calibrating [").contains("100%")
                .contains("calibrating on synthetic Gaussian hidden states");
    }

    @Test
    void calibratesFromAnActivationsFileWithModeCentering() throws Exception {
        SplittableRandom r = new SplittableRandom(5);
        float[] rows = new float[300 * 64];
        for (int i = 0; i < rows.length; i++) {
            rows[i] = (float) r.nextGaussian();
        }
        Path acts = dir.resolve("acts.safetensors");
        new SafetensorsWriter().addF32("hidden_states", new long[] {300, 64}, rows).write(acts);
        Path file = dir.resolve("t.json");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.7", "--mode-centering",
                "--activations", acts.toString(), "--out", file.toString(), "--skip-measure")).as(stderr()).isZero();
        SparsityProfile profile = SparsityProfile.read(file);
        assertThat(profile.modeCentering()).isTrue();
        assertThat(profile.targetSparsity()).isEqualTo(0.7);
        assertThat(profile.calibration()).isEqualTo(new SparsityProfile.Calibration("file acts.safetensors", 300, null));
        assertThat(stdout()).contains("achieved sparsity on the calibration set (histogram estimate): gate_up 0.7000,"
                + " down 0.7000");
    }

    /**
     * Memory does not grow with the calibration set: 150,000 tokens of hidden size 64 are 38 MB of float32 inputs per
     * layer (and as much again of h), which a calibrator that kept its activations could not hold in a 24 MiB heap.
     * Only the routing (token ids per expert) grows with the tokens: 1.2 MB here.
     */
    @Test
    void calibrationRunsInBoundedMemoryWhateverTheNumberOfTokens() throws Exception {
        Path file = dir.resolve("bounded.json");
        Path log = dir.resolve("calibrate.log");
        String javaCommand = ProcessHandle.current().info().command().orElseThrow();
        Process process = new ProcessBuilder(javaCommand, "-Xmx24m", "--add-modules", "jdk.incubator.vector", "-cp",
                System.getProperty("java.class.path"), MoeCli.class.getName(), "calibrate", "--model", model.toString(),
                "--target-sparsity", "0.5", "--out", file.toString(), "--tokens", "150000", "--threads", "2")
                .redirectErrorStream(true).redirectOutput(log.toFile()).start();
        try {
            // A bound against a hang, not a speed check: the run takes a few seconds.
            assertThat(process.waitFor(5, java.util.concurrent.TimeUnit.MINUTES)).as("calibration finished").isTrue();
        } finally {
            process.destroyForcibly();
        }
        assertThat(process.exitValue()).as(Files.readString(log)).isZero();
        SparsityProfile profile = SparsityProfile.read(file);
        assertThat(profile.calibration().tokens()).isEqualTo(150_000L);
        for (int layer = 0; layer < 2; layer++) {
            long pairs = 0;
            for (int e = 0; e < 8; e++) {
                pairs += profile.expert(layer, e).gateUp().tokens();
            }
            assertThat(pairs).isEqualTo(2 * 150_000L);
        }
    }

    @Test
    void badUsageAndBadInputExitWithTwoAndOneLine() throws Exception {
        Path file = dir.resolve("x.json");
        assertThat(MoeCli.run("calibrate", "--target-sparsity", "0.5", "--out", file.toString())).isEqualTo(2);
        assertThat(stderr()).contains("Missing required option: '--model=<model>'");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "1.5", "--out",
                file.toString())).isEqualTo(2);
        assertThat(stderr()).contains("moe: --target-sparsity must be in [0, 1), got 1.5");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "-0.1", "--out",
                file.toString())).isEqualTo(2);
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "half", "--out",
                file.toString())).isEqualTo(2);
        assertThat(MoeCli.run("calibrate", "--model", dir.resolve("nope").toString(), "--target-sparsity", "0.5",
                "--out", file.toString())).isEqualTo(2);
        assertThat(stderr()).contains("is not a directory");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                file.toString(), "--tokens", "0")).isEqualTo(2);
        assertThat(stderr()).contains("moe: --tokens must be >= 1, got 0");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                file.toString(), "--activations", dir.resolve("missing.safetensors").toString())).isEqualTo(2);
        assertThat(stderr()).contains("missing.safetensors is not a file");
        Path wrongWidth = dir.resolve("w.safetensors");
        new SafetensorsWriter().addF32("hidden_states", new long[] {2, 32}, new float[64]).write(wrongWidth);
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                file.toString(), "--activations", wrongWidth.toString())).isEqualTo(2);
        assertThat(stderr()).contains("hidden_states must be [tokens >= 1, 64] (the model's hidden size), got [2, 32]");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                dir.toString())).isEqualTo(2);
        assertThat(stderr()).contains("is a directory");
        Path aFile = Files.writeString(dir.resolve("plain.txt"), "x");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.5", "--out",
                aFile.resolve("t.json").toString())).isEqualTo(2);
        assertThat(stderr()).contains("plain.txt is not a directory").doesNotContain("calibrating [");
        Path dense = dir.resolve("dense-model");
        Files.createDirectories(dense);
        try (var files = Files.list(model)) {
            for (Path f : files.toList()) {
                Files.copy(f, dense.resolve(f.getFileName()));
            }
        }
        Files.delete(dense.resolve("config.json"));
        Files.writeString(dense.resolve("config.json"), Files.readString(model.resolve("config.json"))
                .replaceFirst("\"num_hidden_layers\"\\s*:\\s*[0-9]+", "\"num_hidden_layers\": 0"));
        assertThat(MoeCli.run("calibrate", "--model", dense.toString(), "--target-sparsity", "0.5", "--out",
                file.toString())).isEqualTo(2);
        assertThat(stderr()).contains("the model has no MoE layers (num_hidden_layers 0)");
        assertThat(Files.exists(file)).isFalse();
        // every error is one line starting with "moe: " (picocli's own usage errors aside)
        assertThat(stderr().lines().filter(l -> l.startsWith("moe: ")).count()).isGreaterThanOrEqualTo(7);
    }
}

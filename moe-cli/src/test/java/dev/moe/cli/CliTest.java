package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.SafetensorsFile;
import dev.moe.core.checkpoint.SafetensorsWriter;
import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.oracle.ConformanceCases.Expected;
import java.nio.file.Files;
import java.nio.file.Path;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.extension.RegisterExtension;
import org.junit.jupiter.api.io.TempDir;

/** {@code moe forward} and {@code moe local} as a user runs them: exit codes, files, one-line errors. */
class CliTest {
    @TempDir
    Path dir;

    @RegisterExtension
    final StandardStreams streams = new StandardStreams();

    private String stderr() {
        return streams.stderr();
    }

    private Path input(Expected e, boolean bf16) throws Exception {
        Path file = dir.resolve("in-" + e.layer() + (bf16 ? "-bf16" : "") + ".safetensors");
        long[] shape = {e.numTokens(), e.hiddenSize()};
        SafetensorsWriter writer = new SafetensorsWriter();
        (bf16 ? writer.addBf16("hidden_states", shape, e.input()) : writer.addF32("hidden_states", shape, e.input()))
                .write(file);
        return file;
    }

    @Test
    void forwardWritesOutputIdsAndWeightsThroughAnEmbeddedCluster() throws Exception {
        Path model = ConformanceCases.dir("deepseek-v3-tiny");
        Expected e = ConformanceCases.expected("deepseek-v3-tiny").get(1);
        Path output = dir.resolve("out.safetensors");
        int code = MoeCli.run("forward", "--weights", "f32", "--model", model.toString(), "--layer",
                Integer.toString(e.layer()), "--input",
                input(e, false).toString(), "--output", output.toString());
        assertThat(code).as(stderr()).isZero();
        try (SafetensorsFile file = SafetensorsFile.open(output)) {
            assertThat(file.tensor("hidden_states").shape()).containsExactly(e.numTokens(), e.hiddenSize());
            assertThat(file.tensor("topk_ids").dtype().name()).isEqualTo("I32");
            assertThat(file.readInts(file.tensor("topk_ids"))).containsExactly(e.topkIds());
            assertThat(RouterCalls.maxAbsDiff(file.readFloats(file.tensor("topk_weights")), e.topkWeights()))
                    .isLessThanOrEqualTo(1e-5);
            assertThat(RouterCalls.maxAbsDiff(file.readFloats(file.tensor("hidden_states")), e.output()))
                    .isLessThanOrEqualTo(ConformanceCases.outputTolerance(e.output()));
        }
    }

    @Test
    void forwardAgainstARunningRouterAcceptsBf16Input() throws Exception {
        Path model = ConformanceCases.dir("mixtral-tiny");
        Expected e = ConformanceCases.expected("mixtral-tiny").getFirst();
        Path output = dir.resolve("out.safetensors");
        try (EmbeddedCluster cluster = EmbeddedCluster.start(EmbeddedCluster.Options.of(model, 2)
                .withProperties(RouterCalls.EXACT))) {
            assertThat(MoeCli.run("forward", "--target", cluster.routerAddress(), "--layer", "0", "--input",
                    input(e, true).toString(), "--output", output.toString())).as(stderr()).isZero();
            // Bad input against a running router: exit 2 with the router's message on one line.
            assertThat(MoeCli.run("forward", "--target", cluster.routerAddress(), "--layer", "5", "--input",
                    input(e, false).toString(), "--output", output.toString())).isEqualTo(2);
            assertThat(stderr()).contains("moe: router answered INVALID_ARGUMENT: layer 5 does not exist");
        }
        try (SafetensorsFile file = SafetensorsFile.open(output)) {
            assertThat(file.readInts(file.tensor("topk_ids"))).containsExactly(e.topkIds());
            assertThat(file.tensor("hidden_states").dtype().name()).isEqualTo("F32");
        }
    }

    @Test
    void badUsageAndBadInputExitWithTwoAndOneLine() throws Exception {
        Path model = ConformanceCases.dir("mixtral-tiny");
        Expected e = ConformanceCases.expected("mixtral-tiny").getFirst();
        Path in = input(e, false);
        Path out = dir.resolve("o.safetensors");
        assertThat(MoeCli.run("forward", "--layer", "0")).isEqualTo(2); // missing --input/--output
        assertThat(MoeCli.run("forward", "--layer", "0", "--input", in.toString(), "--output", out.toString()))
                .isEqualTo(2);
        assertThat(stderr()).contains("give exactly one of --model DIR (embedded cluster) or --target host:port");
        assertThat(MoeCli.run("forward", "--model", model.toString(), "--layer", "0", "--input",
                dir.resolve("missing.safetensors").toString(), "--output", out.toString())).isEqualTo(2);
        assertThat(stderr()).contains("is not a file");
        Path noHidden = dir.resolve("x.safetensors");
        new SafetensorsWriter().addF32("other", new long[] {1, 64}, new float[64]).write(noHidden);
        assertThat(MoeCli.run("forward", "--model", model.toString(), "--layer", "0", "--input", noHidden.toString(),
                "--output", out.toString())).isEqualTo(2);
        assertThat(stderr()).contains("has no tensor named hidden_states");
        Path notSafetensors = dir.resolve("garbage.safetensors");
        Files.writeString(notSafetensors, "hello");
        assertThat(MoeCli.run("forward", "--model", model.toString(), "--layer", "0", "--input",
                notSafetensors.toString(), "--output", out.toString())).isEqualTo(2);
        assertThat(stderr()).contains("not a safetensors file");
        Path unknownFamily = dir.resolve("gpt");
        Files.createDirectories(unknownFamily);
        Files.writeString(unknownFamily.resolve("config.json"), "{\"model_type\": \"gpt2\", \"hidden_size\": 64,"
                + " \"num_hidden_layers\": 1}");
        Files.copy(model.resolve("model.safetensors"), unknownFamily.resolve("model.safetensors"));
        assertThat(MoeCli.run("forward", "--model", unknownFamily.toString(), "--layer", "0", "--input", in.toString(),
                "--output", out.toString())).isEqualTo(2);
        assertThat(stderr()).contains("unsupported model_type 'gpt2' in config.json; supported: mixtral, qwen2_moe,"
                + " qwen3_moe, olmoe, deepseek_v3");
        assertThat(Files.exists(out)).isFalse();
    }

    @Test
    void localRunsTheDemoAndStopsByItself() {
        Path model = ConformanceCases.dir("qwen2-moe-tiny");
        int code = MoeCli.run("local", "--model", model.toString(), "--expert-servers", "3", "--port", "0",
                "--duration", "1s", "--demo-requests", "6", "--demo-tokens", "4");
        String printed = streams.stdout();
        assertThat(code).as(stderr() + printed).isZero();
        assertThat(printed).contains("model qwen2_moe: hidden 64, 16 experts, top-4, MoE layers [1, 2]")
                .contains("expert-2").contains("tokens/s").contains("stopping by itself after PT1S");
        // 6 calls x 4 tokens x top-4 = 96 routed (token, expert) pairs in the load table
        long routed = printed.lines().filter(l -> l.matches("^\\d+\\s+expert-\\d.*"))
                .mapToLong(l -> Long.parseLong(l.trim().split("\\s+")[4])).sum();
        assertThat(routed).isEqualTo(96);
    }

    @Test
    void localServesWithTheWeightsAndThresholdsItWasGiven() throws Exception {
        Path model = ConformanceCases.dir("qwen2-moe-tiny");
        Path thresholds = dir.resolve("qwen2-thresholds.json");
        assertThat(MoeCli.run("calibrate", "--model", model.toString(), "--target-sparsity", "0.7", "--out",
                thresholds.toString(), "--tokens", "256")).as(stderr()).isZero();
        int code = MoeCli.run("local", "--model", model.toString(), "--expert-servers", "2", "--port", "0",
                "--duration", "1s", "--demo-requests", "2", "--demo-tokens", "2", "--weights", "int8", "--sparsity",
                thresholds.toString());
        String printed = streams.stdout();
        assertThat(code).as(stderr() + printed).isZero();
        // int8 with a 0.7 thresholds file: whole rows (ROWS from 0.6 up), SCAP on, on both servers
        assertThat(printed.lines().filter(l -> l.matches("^expert-[01] .*, INT8 ROWS, [0-9.]+ MiB of weights,"
                + " SCAP thresholds loaded$"))).hasSize(2);
        assertThat(printed).contains("tokens/s");

        assertThat(MoeCli.run("local", "--model", model.toString(), "--expert-servers", "1", "--port", "0",
                "--duration", "1s", "--demo-requests", "0")).isZero();
        assertThat(streams.stdout()).containsPattern("expert-0 .*, BF16 PANELS, [0-9.]+ MiB of weights, dense");
        assertThat(MoeCli.run("local", "--model", model.toString(), "--weights", "int4")).isEqualTo(2);
        assertThat(stderr()).contains("--weights");
    }

    @Test
    void localRejectsABadDuration() {
        assertThat(MoeCli.run("local", "--duration", "soon")).isEqualTo(2);
        assertThat(stderr()).contains("--duration 'soon' is not a duration");
    }
}

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
            assertThat(stderr()).contains("moe: the router at " + cluster.routerAddress()
                    + " answered INVALID_ARGUMENT: layer 5 does not exist");
        }
        // A peer that accepts the connection but never answers: the deadline ends the wait.
        try (java.net.ServerSocket silent = new java.net.ServerSocket(0, 1,
                java.net.InetAddress.getLoopbackAddress())) {
            assertThat(MoeCli.run("forward", "--target", "127.0.0.1:" + silent.getLocalPort(), "--layer", "0",
                    "--input", input(e, false).toString(), "--output", output.toString(), "--timeout", "1s"))
                    .isEqualTo(1);
            assertThat(stderr()).contains("moe: no answer from the router at 127.0.0.1:" + silent.getLocalPort()
                    + " within 1 s (--timeout)");
        }
        for (String bad : new String[] {"a:b:c", "localhost", "host:0", ":9090", "host:99999"}) {
            assertThat(MoeCli.run("forward", "--target", bad, "--layer", "0", "--input", input(e, false).toString(),
                    "--output", output.toString())).as(bad).isEqualTo(2);
            assertThat(stderr()).contains("--target '" + bad + "' is not host:port");
        }
        assertThat(MoeCli.run("forward", "--target", "127.0.0.1:9", "--layer", "0", "--input",
                input(e, false).toString(), "--output", dir.toString())).isEqualTo(2);
        assertThat(stderr()).contains("--output " + dir + " is a directory");
        assertThat(MoeCli.run("forward", "--target", "127.0.0.1:9", "--layer", "0", "--input",
                input(e, false).toString(), "--output", output.toString(), "--timeout", "soon")).isEqualTo(2);
        assertThat(stderr()).contains("--timeout 'soon' is not a duration");
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

    /** What would fail inside a starting server is refused first, or reported in one line: never a stack trace. */
    @Test
    void localRefusesBadThresholdsPortsAndCheckpointsInOneLine() throws Exception {
        Path qwen2 = ConformanceCases.dir("qwen2-moe-tiny");
        Path mixtral = ConformanceCases.dir("mixtral-tiny");
        Path thresholds = dir.resolve("qwen2.json");
        assertThat(MoeCli.run("calibrate", "--model", qwen2.toString(), "--target-sparsity", "0.5", "--out",
                thresholds.toString(), "--tokens", "128")).as(stderr()).isZero();
        String[] local = {"local", "--port", "0", "--duration", "1s", "--demo-requests", "0", "--model"};

        assertThat(MoeCli.run(concat(local, mixtral.toString(), "--sparsity", thresholds.toString()))).isEqualTo(2);
        assertThat(stderr()).contains("moe: --sparsity: thresholds were calibrated on model");

        Path nan = dir.resolve("nan.json");
        Files.writeString(nan, Files.readString(thresholds).replaceFirst("\"threshold\" ?: ?[0-9.eE+-]+",
                "\"threshold\" : NaN"));
        assertThat(MoeCli.run(concat(local, qwen2.toString(), "--sparsity", nan.toString()))).isEqualTo(2);
        assertThat(stderr()).contains("holds NaN or Infinity where a number belongs");

        tools.jackson.databind.json.JsonMapper json = tools.jackson.databind.json.JsonMapper.builder().build();
        var root = (tools.jackson.databind.node.ObjectNode) json.readTree(thresholds.toFile());
        var layers = (tools.jackson.databind.node.ObjectNode) root.get("layers");
        layers.set("7", layers.get("1"));
        Path extraLayer = dir.resolve("layer7.json");
        json.writeValue(extraLayer.toFile(), root);
        assertThat(MoeCli.run(concat(local, qwen2.toString(), "--sparsity", extraLayer.toString()))).isEqualTo(2);
        assertThat(stderr()).contains("thresholds for layer 7, which has no MoE block in this model (MoE layers: [1, 2])");

        try (java.net.ServerSocket taken = new java.net.ServerSocket(0, 1, java.net.InetAddress.getByName("127.0.0.1"))) {
            assertThat(MoeCli.run("local", "--model", qwen2.toString(), "--port",
                    Integer.toString(taken.getLocalPort()), "--duration", "1s")).isEqualTo(2);
            assertThat(stderr()).contains("port " + taken.getLocalPort() + " on 127.0.0.1 is not free");
        }
        assertThat(MoeCli.run(concat(local, qwen2.toString(), "--expert-servers", "0"))).isEqualTo(2);
        assertThat(stderr()).contains("--expert-servers must be in [1, 16] for this model, got 0");
        assertThat(MoeCli.run("local", "--model", qwen2.toString(), "--port", "70000")).isEqualTo(2);
        assertThat(MoeCli.run("local", "--model", qwen2.toString(), "--duration", "-5s")).isEqualTo(2);
        assertThat(stderr()).contains("--duration must be positive");
        assertThat(MoeCli.run("local", "--model", qwen2.toString(), "--demo-tokens", "100000")).isEqualTo(2);
        assertThat(stderr()).contains("--demo-tokens 100000 exceeds the router's limit of 16384");

        // A checkpoint whose config promises a layer its weights lack: found while an expert server loads, reported
        // as the checkpoint's error in one line.
        Path missingLayer = dir.resolve("mixtral-3-layers");
        Files.createDirectories(missingLayer);
        try (var files = Files.list(mixtral)) {
            for (Path f : files.toList()) {
                Files.copy(f, missingLayer.resolve(f.getFileName()));
            }
        }
        Path config = missingLayer.resolve("config.json");
        Files.writeString(config, Files.readString(config).replace("\"num_hidden_layers\": 2", "\"num_hidden_layers\": 3"));
        int before = stderr().length();
        assertThat(MoeCli.run(concat(local, missingLayer.toString()))).isEqualTo(2);
        String report = stderr().substring(before);
        assertThat(report).startsWith("moe: ").contains("model.layers.2.").hasLineCount(1);
        assertThat(streams.stdout()).doesNotContain("\tat org.springframework");
    }

    private static String[] concat(String[] head, String... tail) {
        String[] all = java.util.Arrays.copyOf(head, head.length + tail.length);
        System.arraycopy(tail, 0, all, head.length, tail.length);
        return all;
    }

    @Test
    void localRejectsABadDuration() {
        assertThat(MoeCli.run("local", "--duration", "soon")).isEqualTo(2);
        assertThat(stderr()).contains("--duration 'soon' is not a duration");
    }
}

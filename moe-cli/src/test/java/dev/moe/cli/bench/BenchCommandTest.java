package dev.moe.cli.bench;

import dev.moe.cli.StandardStreams;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.cli.MoeCli;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.oracle.ConformanceCases;
import java.util.ArrayList;
import java.util.HashSet;
import java.util.List;
import java.util.Set;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.api.extension.RegisterExtension;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * {@code moe bench kernel|layer} on tiny shapes: the JSON lines parse, carry every documented key, and hold sane values.
 * Nothing here asserts a time: these check the harness, not the machine.
 */
class BenchCommandTest {
    private static final JsonMapper JSON = JsonMapper.builder().build();
    /** Short everything: the numbers of these runs mean nothing, only their shape is checked. */
    private static final String[] FAST = {"--quick", "--repeats", "2", "--min-time", "1ms", "--warmup", "5ms",
        "--jit-warmup", "100ms", "--bw-mib", "8", "--attempts", "1"};
    private static final List<String> KERNEL_KEYS = List.of("shape", "hidden", "intermediate", "dtype", "layout", "batch",
            "sparsity", "threads", "ms", "ms_min", "ms_max", "repeats", "pool_experts", "weight_gbps", "bw_gbps",
            "gflops", "gflops_executed", "peak_gflops", "speedup_vs_dense", "speedup_vs_panels_dense",
            "achieved_sparsity_x",
            "achieved_sparsity_h", "union_density_x", "union_density_h", "sparse_path", "overhead_ms", "mask_ms",
            "kernel_ms", "mask_fraction");
    private static final List<String> LAYER_KEYS = List.of("shape", "dtype", "layout", "sparsity", "batch", "threads", "ms",
            "tokens_per_s", "gate_ms", "dispatch_ms", "experts_ms", "combine_ms", "shared_ms", "experts_active",
            "tokens_per_expert", "weight_mib_per_call", "weight_gbps", "bw_gbps", "achieved_sparsity_x",
            "achieved_sparsity_h", "union_density_x", "union_density_h");


    @RegisterExtension
    final StandardStreams streams = new StandardStreams();

    private int run(String... args) {
        List<String> all = new ArrayList<>(List.of(args));
        if (args.length > 1) {
            all.addAll(List.of(FAST));
        }
        return MoeCli.run(all.toArray(String[]::new));
    }

    private List<JsonNode> jsonLines() {
        List<JsonNode> lines = new ArrayList<>();
        for (String line : streams.stdout().split("\n")) {
            if (!line.isBlank()) {
                lines.add(JSON.readTree(line));
            }
        }
        return lines;
    }

    @Test
    void kernelQuickOnATinyShapeWritesOneSaneJsonLinePerConfiguration() {
        int code = run("bench", "kernel", "--shape-override", "64x96", "--pool-mib", "1", "--dtypes", "f32,bf16,int8",
                "--batch", "1,3", "--sparsity", "0,0.5", "--threads", "1,2");
        String stderr = streams.stderr();
        assertThat(code).as(stderr).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(3 * 2 * 2 * 2);
        Set<String> configs = new HashSet<>();
        for (JsonNode row : lines) {
            for (String key : KERNEL_KEYS) {
                assertThat(row.has(key)).as("key %s in %s", key, row).isTrue();
            }
            configs.add(row.get("dtype").asString() + "/" + row.get("batch").asInt() + "/"
                    + row.get("sparsity").asDouble() + "/" + row.get("threads").asInt());
            assertThat(row.get("shape").asString()).isEqualTo("64x96");
            assertThat(row.get("ms").asDouble()).as("%s", row).isPositive();
            assertThat(row.get("ms_min").asDouble()).isLessThanOrEqualTo(row.get("ms").asDouble());
            assertThat(row.get("ms_max").asDouble()).isGreaterThanOrEqualTo(row.get("ms").asDouble());
            assertThat(row.get("weight_gbps").asDouble()).isPositive();
            assertThat(row.get("bw_gbps").asDouble()).isPositive();
            assertThat(row.get("gflops").asDouble()).isPositive();
            assertThat(row.get("peak_gflops").asDouble()).isPositive();
            assertThat(row.get("pool_experts").asInt()).isGreaterThan(1); // several experts rotated
            assertThat(row.get("overhead_ms").asDouble()).isGreaterThanOrEqualTo(0);
            assertThat(row.get("mask_ms").asDouble()).isGreaterThanOrEqualTo(0);
            double ux = row.get("union_density_x").asDouble();
            double uh = row.get("union_density_h").asDouble();
            if (row.get("sparsity").asDouble() == 0.0) {
                assertThat(row.get("speedup_vs_dense").asDouble()).isEqualTo(1.0);
                assertThat(row.get("sparse_path").asBoolean()).isFalse();
                assertThat(row.get("achieved_sparsity_x").asDouble()).isZero();
                assertThat(row.get("achieved_sparsity_h").asDouble()).isZero();
                assertThat(ux).isEqualTo(1.0);
                assertThat(uh).isEqualTo(1.0);
                assertThat(row.get("mask_ms").asDouble()).isZero();
            } else {
                assertThat(row.get("sparse_path").asBoolean()).isTrue();
                assertThat(row.get("speedup_vs_dense").asDouble()).isPositive();
                // x's threshold is the batch's own quantile: exactly half pruned.
                assertThat(row.get("achieved_sparsity_x").asDouble()).isCloseTo(0.5, org.assertj.core.data.Offset
                        .offset(0.02));
                // h's comes from float32 weights; the packed (bf16/int8) ones give a slightly different h.
                assertThat(row.get("achieved_sparsity_h").asDouble()).isBetween(0.3, 0.7);
                assertThat(ux).isBetween(0.0, 1.0);
                assertThat(uh).isBetween(0.0, 1.0);
                if (row.get("batch").asInt() == 1) {
                    assertThat(ux).isCloseTo(1 - row.get("achieved_sparsity_x").asDouble(),
                            org.assertj.core.data.Offset.offset(1e-3));
                } else {
                    // The union of the batch's active channels is at least as dense as one token's.
                    assertThat(ux).isGreaterThanOrEqualTo(0.5 - 1e-3);
                }
            }
        }
        assertThat(configs).hasSize(lines.size());
        assertThat(stderr).contains("GFLOP/s").contains("targets").contains("read bandwidth");
        assertDerivedFieldsFollowFromTheMeasuredOnes(lines);
    }

    /**
     * The figures derived from a row's time agree with their definitions, recomputed here from the row's own fields
     * (each rounded in the JSON, hence the tolerances): FLOPs of a SwiGLU expert, 2 · hidden · intermediate · batch per
     * projection, over the rows the pruning left (useful) or the union the kernel read (executed); the speedup against
     * the same dtype, layout, batch and threads at sparsity 0; the share of the read bandwidth.
     */
    private static void assertDerivedFieldsFollowFromTheMeasuredOnes(List<JsonNode> lines) {
        for (JsonNode row : lines) {
            double ms = row.get("ms").asDouble();
            double macs = (double) row.get("hidden").asInt() * row.get("intermediate").asInt() * row.get("batch").asInt();
            double px = row.get("achieved_sparsity_x").asDouble();
            double ph = row.get("achieved_sparsity_h").asDouble();
            double ux = row.get("union_density_x").asDouble();
            double uh = row.get("union_density_h").asDouble();
            double useful = 2 * macs * (2 * (1 - px) + (1 - ph)) / ms / 1e6;
            double executed = 2 * macs * (2 * ux + uh) / ms / 1e6;
            assertThat(row.get("gflops").asDouble()).as("gflops of %s", row)
                    .isCloseTo(useful, withinRounding(useful, ms));
            assertThat(row.get("gflops_executed").asDouble()).as("gflops_executed of %s", row)
                    .isCloseTo(executed, withinRounding(executed, ms));
            assertThat(row.get("bw_fraction").asDouble()).as("bw_fraction of %s", row).isCloseTo(
                    row.get("weight_gbps").asDouble() / row.get("bw_gbps").asDouble(),
                    org.assertj.core.data.Offset.offset(2e-3 + 0.01 * row.get("bw_fraction").asDouble()));
            JsonNode dense = lines.stream().filter(d -> d.get("sparsity").asDouble() == 0.0
                    && d.get("dtype").equals(row.get("dtype")) && d.get("layout").equals(row.get("layout"))
                    && d.get("batch").equals(row.get("batch")) && d.get("threads").equals(row.get("threads")))
                    .findFirst().orElseThrow();
            // Both times are printed with five decimals: each carries a relative error of up to 0.5e-5 / ms.
            double denseMs = dense.get("ms").asDouble();
            double ratio = denseMs / ms;
            assertThat(row.get("speedup_vs_dense").asDouble()).as("speedup_vs_dense of %s", row).isCloseTo(ratio,
                    org.assertj.core.data.Offset.offset(1e-3 + ratio * (0.5e-5 / denseMs + 0.5e-5 / ms) * 1.01));
        }
    }

    /**
     * Tolerance of a figure recomputed from a time printed with five decimals (relative error up to 0.5e-5 / ms) and
     * fractions printed with four, against the figure printed with two decimals.
     */
    private static org.assertj.core.data.Offset<Double> withinRounding(double expected, double ms) {
        return org.assertj.core.data.Offset.offset(0.006 + expected * (0.5e-5 / ms + 1e-3));
    }

    @Test
    void kernelLayoutsAreMeasuredSideBySide() {
        int code = run("bench", "kernel", "--shape-override", "64x96", "--pool-mib", "1", "--dtypes", "bf16,int8",
                "--batch", "1", "--sparsity", "0,0.5", "--threads", "2", "--layouts", "panels,rows");
        String stderr = streams.stderr();
        assertThat(code).as(stderr).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(2 * 2 * 2);
        Set<String> configs = new HashSet<>();
        for (JsonNode row : lines) {
            String layout = row.get("layout").asString();
            assertThat(layout).isIn("panels", "rows");
            configs.add(row.get("dtype").asString() + "/" + layout + "/" + row.get("sparsity").asDouble());
            double vsPanels = row.get("speedup_vs_panels_dense").asDouble();
            if (layout.equals("panels") && row.get("sparsity").asDouble() == 0.0) {
                assertThat(vsPanels).isEqualTo(1.0);
            } else {
                assertThat(vsPanels).isPositive();
            }
            assertThat(row.get("sparse_path").asBoolean()).isEqualTo(row.get("sparsity").asDouble() > 0);
        }
        assertThat(configs).hasSize(lines.size());
        assertThat(stderr).contains("x panels");
        assertThat(run("bench", "kernel", "--layouts", "diagonal")).isEqualTo(2);
    }

    @Test
    void layerRunsOnTheRowsLayoutAndSaysSo() {
        int code = run("bench", "layer", "--synthetic", "16x4x64x96", "--batch", "1", "--dtype", "int8",
                "--sparsity", "0,0.5", "--threads", "2", "--layout", "rows", "--crossover", "1");
        assertThat(code).as(streams.stderr()).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(2).allSatisfy(row -> {
            assertThat(row.get("layout").asString()).isEqualTo("rows");
            assertThat(row.get("ms").asDouble()).isPositive();
        });
        assertThat(lines.get(1).get("achieved_sparsity_x").asDouble()).isPositive(); // the 0.5 row really pruned
        assertThat(run("bench", "layer", "--synthetic", "16x4x64x96", "--layout", "diagonal")).isEqualTo(2);
    }

    @Test
    void layerQuickOnATinySyntheticShapeReportsThroughputAndPhases() {
        int code = run("bench", "layer", "--synthetic", "16x4x64x96", "--batch", "1,8", "--dtype", "bf16,int8",
                "--sparsity", "0,0.5", "--threads", "2", "--crossover", "1"); // 1: the sparse path whenever pruned
        String stderr = streams.stderr();
        assertThat(code).as(stderr).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(2 * 2 * 2);
        for (JsonNode row : lines) {
            for (String key : LAYER_KEYS) {
                assertThat(row.has(key)).as("key %s in %s", key, row).isTrue();
            }
            int batch = row.get("batch").asInt();
            double ms = row.get("ms").asDouble();
            assertThat(ms).isPositive();
            assertThat(row.get("tokens_per_s").asDouble()).isPositive();
            for (String phase : List.of("gate_ms", "dispatch_ms", "experts_ms", "combine_ms", "shared_ms")) {
                assertThat(row.get(phase).asDouble()).as(phase).isGreaterThanOrEqualTo(0);
            }
            assertThat(row.get("experts_ms").asDouble()).isPositive();
            assertThat(row.get("num_experts").asInt()).isEqualTo(16);
            assertThat(row.get("top_k").asInt()).isEqualTo(4);
            double active = row.get("experts_active").asDouble();
            if (batch == 1) {
                assertThat(active).isEqualTo(4.0); // top-4 distinct experts of one token
                assertThat(row.get("tokens_per_expert").asDouble()).isEqualTo(1.0);
            } else {
                assertThat(active).isBetween(4.0, 16.0);
                assertThat(row.get("tokens_per_expert").asDouble() * active).isCloseTo(batch * 4.0,
                        org.assertj.core.data.Offset.offset(1e-6 + 0.01 * batch * 4));
            }
            assertThat(row.get("weight_mib_per_call").asDouble()).isPositive();
            assertThat(row.get("crossover").asDouble()).isEqualTo(1.0);
            if (row.get("sparsity").asDouble() == 0.0) {
                assertThat(row.get("union_density_x").asDouble()).isEqualTo(1.0);
                assertThat(row.get("achieved_sparsity_x").asDouble()).isZero();
            } else if (batch == 1) {
                assertThat(row.get("achieved_sparsity_x").asDouble()).isBetween(0.3, 0.7);
                assertThat(row.get("union_density_x").asDouble()).isLessThan(1.0);
            }
        }
        assertThat(stderr).contains("tokens/s").contains("dispatch");
    }

    /** Without --crossover a layer runs as an expert server would: its default crossover for the dtype and layout. */
    @Test
    void layerUsesTheExpertServersCrossoverByDefault() {
        int code = run("bench", "layer", "--synthetic", "16x4x64x96", "--batch", "1", "--dtype", "bf16,int8",
                "--sparsity", "0.5", "--threads", "2", "--layout", "rows");
        assertThat(code).as(streams.stderr()).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(2);
        for (JsonNode row : lines) {
            WeightType type = WeightType.valueOf(row.get("dtype").asText().toUpperCase(java.util.Locale.ROOT));
            double expected = dev.moe.expert.ExpertServerProperties.defaultSparseCrossover(type,
                    dev.moe.core.kernels.PanelMatrix.Layout.ROWS);
            assertThat(row.get("crossover").asDouble()).as("%s", type).isEqualTo(expected);
        }
    }

    @Test
    void layerFromACheckpointUsesItsGateBiasAndSharedExpert() {
        String model = ConformanceCases.dir("deepseek-v3-tiny").toString();
        int code = run("bench", "layer", "--model", model, "--batch", "1,4", "--dtype", "bf16", "--sparsity", "0,0.5");
        String stderr = streams.stderr();
        assertThat(code).as(stderr).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(2 * 2);
        for (JsonNode row : lines) {
            for (String key : LAYER_KEYS) {
                assertThat(row.has(key)).as("key %s in %s", key, row).isTrue();
            }
            assertThat(row.get("shape").asString()).isEqualTo("deepseek_v3");
            assertThat(row.get("source").asString()).isEqualTo(model);
            assertThat(row.get("layer").asInt()).isEqualTo(1); // layer 0 is dense (first_k_dense_replace)
            assertThat(row.get("ms").asDouble()).isPositive();
            if (row.get("batch").asInt() == 1) {
                assertThat(row.get("experts_active").asDouble()).isEqualTo(4.0);
            }
        }
    }

    /** A real checkpoint with the thresholds bin/moe calibrate wrote for it: dense, then those thresholds. */
    @Test
    void layerFromACheckpointRunsWithItsCalibratedThresholds(@TempDir java.nio.file.Path dir) {
        String model = ConformanceCases.dir("deepseek-v3-tiny").toString();
        String thresholds = dir.resolve("t.json").toString();
        assertThat(MoeCli.run("calibrate", "--model", model, "--target-sparsity", "0.6", "--tokens", "512", "--out",
                thresholds)).isZero();
        streams.reset();
        int code = run("bench", "layer", "--model", model, "--thresholds", thresholds, "--batch", "1", "--dtype",
                "bf16", "--layout", "rows", "--crossover", "1");
        assertThat(code).as(streams.stderr()).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(2);
        assertThat(lines.get(0).get("sparsity").asDouble()).isZero();
        assertThat(lines.get(0).get("union_density_x").asDouble()).isEqualTo(1.0);
        assertThat(lines.get(1).get("sparsity").asDouble()).isEqualTo(0.6);
        // the file's thresholds prune about their target of these (Gaussian) inputs
        assertThat(lines.get(1).get("union_density_x").asDouble()).isBetween(0.3, 0.5);

        // thresholds of another checkpoint are refused, naming both
        String other = dir.resolve("other.json").toString();
        assertThat(MoeCli.run("calibrate", "--model", ConformanceCases.dir("qwen2-moe-tiny").toString(),
                "--target-sparsity", "0.5", "--tokens", "64", "--out", other)).isZero();
        streams.reset();
        assertThat(run("bench", "layer", "--model", model, "--thresholds", other, "--batch", "1")).isEqualTo(2);
        assertThat(streams.stderr()).contains("thresholds were calibrated on model", "recalibrate with bin/moe"
                + " calibrate");
        streams.reset();
        assertThat(run("bench", "layer", "--synthetic", "16x4x64x96", "--thresholds", other)).isEqualTo(2);
        assertThat(streams.stderr()).contains("--thresholds needs --model");
    }

    @Test
    void sharedMeasurementOptionsKeepEachCommandsHelp() {
        assertThat(MoeCli.run("bench", "kernel", "--help")).isZero();
        String kernel = streams.stdout().replaceAll("\\s+", " ");
        streams.reset();
        assertThat(MoeCli.run("bench", "layer", "--help")).isZero();
        String layer = streams.stdout().replaceAll("\\s+", " ");
        assertThat(kernel).contains(
                "--quick Fewer configurations, repeats and shorter measurements.",
                "--repeats=<repeats> Timed repeats per configuration; the median is reported (default: 7; --quick: 3).",
                "--min-time=DURATION Minimum duration of one repeat, e.g. 50ms (default: 50ms; --quick: 10ms).",
                "--warmup=DURATION Warm-up per configuration (default: 250ms; --quick: 100ms).");
        assertThat(layer).contains(
                "--quick Shorter measurements.",
                "--repeats=<repeats> Timed repeats; the median is reported (default: 7; --quick: 3).",
                "--min-time=DURATION Minimum duration of one repeat, long enough to include this path's garbage"
                        + " collections (default: 300ms; --quick: 10ms).",
                "--warmup=DURATION Warm-up per configuration (default: 1s; --quick: 300ms).");
        for (String help : List.of(kernel, layer)) {
            assertThat(help).contains(
                    "--table Print the table on stdout (after the JSON lines) instead of stderr.",
                    "--seed=<seed> Seed of weights and inputs (default: 42).");
            assertThat(help).doesNotContain("--bw-mib", "--jit-warmup", "--attempts");
        }
    }

    @Test
    void warmupTimesEachFirstCallAfterTheKernelWarmup() {
        int code = MoeCli.run("bench", "warmup", "--shape", "16x4x64x96", "--dtype", "int8", "--layout", "rows",
                "--budget", "50ms", "--calls", "7", "--threads", "2");
        assertThat(code).as(streams.stderr()).isZero();
        List<JsonNode> lines = jsonLines();
        assertThat(lines).hasSize(1);
        JsonNode row = lines.get(0);
        assertThat(row.get("bench").asString()).isEqualTo("warmup");
        assertThat(row.get("dtype").asString()).isEqualTo("int8");
        assertThat(row.get("layout").asString()).isEqualTo("rows");
        assertThat(row.get("experts").asInt()).isEqualTo(4); // the shape's top-k
        assertThat(row.get("warmup_calls").asLong()).isPositive(); // at least one round, however short the budget
        assertThat(row.get("call_ms")).hasSize(7).allSatisfy(ms -> assertThat(ms.asDouble()).isPositive());
        assertThat(streams.stderr()).contains("call    1:").contains("call    7:");

        assertThat(MoeCli.run("bench", "warmup", "--budget", "soon")).isEqualTo(2);
        assertThat(MoeCli.run("bench", "warmup", "--calls", "0")).isEqualTo(2);
        assertThat(MoeCli.run("bench", "warmup", "--dtype", "fp4")).isEqualTo(2);
    }

    @Test
    void badUsageIsExitCodeTwo() {
        assertThat(run("bench", "layer")).isEqualTo(2);
        assertThat(run("bench", "kernel", "--sparsity", "1.5")).isEqualTo(2);
        assertThat(run("bench", "kernel", "--shapes", "no-such-model")).isEqualTo(2);
        assertThat(run("bench", "layer", "--synthetic", "4x8x64x96")).isEqualTo(2); // top-8 of 4 experts
        assertThat(run("bench", "kernel", "--shape-override", "99999999x99999999")).isEqualTo(2);
        assertThat(streams.stderr()).contains("weights exceed one Java array");
        // Beyond the heap: refused before allocating, with what to do, not an OutOfMemoryError part-way.
        assertThat(run("bench", "kernel", "--shape-override", "23000x23000", "--dtypes", "f32", "--batch", "1",
                "--sparsity", "0", "--threads", "1")).isEqualTo(2);
        assertThat(streams.stderr()).contains("of heap, the JVM has").contains("MOE_JAVA_OPTS=-Xmx");
        assertThat(MoeCli.run("bench", "warmup", "--threads", "0")).isEqualTo(2);
        assertThat(streams.stderr()).contains("--threads must be at least 1, got 0");
        // Without FAST, which would set these options again.
        assertThat(MoeCli.run("bench", "kernel", "--repeats", "0")).isEqualTo(2);
        assertThat(MoeCli.run("bench", "layer", "--synthetic", "16x4x64x96", "--min-time", "soon")).isEqualTo(2);
        assertThat(streams.stdout()).isEmpty();
    }
}

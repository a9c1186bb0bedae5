package dev.moe.core.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

class SyntheticCheckpointTest {
    private static final int HIDDEN = 16;
    private static final int LAYERS = 3;
    private static final int EXPERTS = 8;
    private static final int TOP_K = 2;
    private static final int INTER = 8;
    private static final int SHARED = 16;

    @TempDir
    Path tmp;

    static Stream<Arguments> specs() {
        List<Arguments> out = new ArrayList<>();
        for (ModelFamily family : ModelFamily.values()) {
            for (DType dtype : List.of(DType.F32, DType.BF16)) {
                for (int shards : new int[] {1, 3}) {
                    out.add(Arguments.of(family, dtype, shards));
                }
            }
        }
        return out.stream();
    }

    private static SyntheticCheckpoint.Spec spec(ModelFamily family, DType dtype, int shards, long seed) {
        boolean deepseek = family == ModelFamily.DEEPSEEK_V3;
        return new SyntheticCheckpoint.Spec(family, HIDDEN, LAYERS, EXPERTS, TOP_K, INTER, SHARED,
                deepseek ? 4 : 1, deepseek ? 2 : 1, true, dtype, shards, seed);
    }

    @ParameterizedTest(name = "{0} {1} shards={2}")
    @MethodSource("specs")
    void writesAServableCheckpoint(ModelFamily family, DType dtype, int shards) throws IOException {
        Path dir = tmp.resolve("ckpt");
        List<long[]> progress = new ArrayList<>();
        SyntheticCheckpoint.write(dir, spec(family, dtype, shards, 11), (done, total) -> progress.add(new long[] {done, total}));
        assertThat(progress).isNotEmpty();
        long[] last = progress.getLast();
        assertThat(last[0]).isEqualTo(last[1]).isPositive();

        assertThat(Files.exists(dir.resolve(Checkpoint.INDEX_FILE))).isEqualTo(shards > 1);
        assertThat(Files.exists(dir.resolve(Checkpoint.SINGLE_FILE))).isEqualTo(shards == 1);

        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorsByShard()).hasSize(shards);
            if (shards == 3) {
                assertThat(c.tensorsByShard().keySet()).containsExactly("model-00001-of-00003.safetensors",
                        "model-00002-of-00003.safetensors", "model-00003-of-00003.safetensors");
            }
            MoeConfig config = MoeConfig.from(c.config()).validate();
            assertThat(config.family()).isEqualTo(family);
            assertThat(config.hiddenSize()).isEqualTo(HIDDEN);
            assertThat(config.numHiddenLayers()).isEqualTo(LAYERS);
            assertThat(config.numExperts()).isEqualTo(EXPERTS);
            assertThat(config.numExpertsPerToken()).isEqualTo(TOP_K);
            assertThat(config.moeIntermediateSize()).isEqualTo(INTER);
            List<Integer> expectedLayers = family == ModelFamily.DEEPSEEK_V3 ? List.of(1, 2) : List.of(0, 1, 2);
            assertThat(config.moeLayers()).isEqualTo(expectedLayers);
            boolean hasShared = family == ModelFamily.QWEN2_MOE || family == ModelFamily.DEEPSEEK_V3;
            assertThat(config.sharedExpertIntermediateSize()).isEqualTo(hasShared ? SHARED : 0);
            if (family == ModelFamily.DEEPSEEK_V3) {
                assertThat(config.scoringFunc()).isEqualTo(MoeConfig.ScoringFunc.SIGMOID);
                assertThat(config.nGroup()).isEqualTo(4);
                assertThat(config.topkGroup()).isEqualTo(2);
                assertThat(config.routedScalingFactor()).isEqualTo(2.5);
                // the dense layer 0 has an MLP but no router
                assertThat(c.hasTensor("model.layers.0.mlp.gate_proj.weight")).isTrue();
                assertThat(c.hasTensor(family.routerWeight(0))).isFalse();
            }

            for (int layer : config.moeLayers()) {
                assertShape(c, family.routerWeight(layer), dtype, EXPERTS, HIDDEN);
                float[] router = c.readMatrix(family.routerWeight(layer), EXPERTS, HIDDEN);
                double bound = 4 * Math.sqrt(3.0 / HIDDEN) + 1e-6;
                for (float v : router) {
                    assertThat(Math.abs(v)).isLessThanOrEqualTo((float) bound);
                }
                for (int e = 0; e < EXPERTS; e++) {
                    assertShape(c, family.expertGateProj(layer, e), dtype, INTER, HIDDEN);
                    assertShape(c, family.expertUpProj(layer, e), dtype, INTER, HIDDEN);
                    assertShape(c, family.expertDownProj(layer, e), dtype, HIDDEN, INTER);
                    assertThat(c.readMatrix(family.expertDownProj(layer, e), HIDDEN, INTER)).hasSize(HIDDEN * INTER);
                }
                assertThat(c.hasTensor(family.expertGateProj(layer, EXPERTS))).isFalse();
                if (family == ModelFamily.DEEPSEEK_V3) {
                    TensorInfo bias = c.tensor(family.correctionBias(layer));
                    assertThat(bias.dtype()).isEqualTo(DType.F32); // always F32, as published
                    assertThat(bias.shape()).containsExactly(EXPERTS);
                } else {
                    assertThat(c.hasTensor(family.correctionBias(layer))).isFalse();
                }
                if (hasShared) {
                    int shared = config.sharedExpertIntermediateSize();
                    assertShape(c, family.sharedExpertProj(layer, "gate_proj"), dtype, shared, HIDDEN);
                    assertShape(c, family.sharedExpertProj(layer, "up_proj"), dtype, shared, HIDDEN);
                    assertShape(c, family.sharedExpertProj(layer, "down_proj"), dtype, HIDDEN, shared);
                }
                if (family == ModelFamily.QWEN2_MOE) {
                    assertShape(c, family.sharedExpertGate(layer), dtype, 1, HIDDEN);
                }
            }
            assertThat(c.tensor("model.embed_tokens.weight").shape()).containsExactly(64, HIDDEN);
        }
    }

    private static void assertShape(Checkpoint c, String name, DType dtype, int rows, int cols) {
        TensorInfo info = c.tensor(name);
        assertThat(info.shape()).as(name).containsExactly(rows, cols);
        assertThat(info.dtype()).as(name).isEqualTo(dtype);
        float[] values = c.readMatrix(name, rows, cols);
        if (dtype == DType.BF16) {
            for (float v : values) {
                assertThat(Float.floatToRawIntBits(v) & 0xFFFF).isZero();
            }
        }
        // uniform random weights: not all equal
        assertThat(java.util.Arrays.stream(toDoubles(values)).distinct().count()).isGreaterThan(1);
    }

    private static double[] toDoubles(float[] f) {
        double[] d = new double[f.length];
        for (int i = 0; i < f.length; i++) {
            d[i] = f[i];
        }
        return d;
    }

    @ParameterizedTest(name = "{0} {1} shards={2}")
    @MethodSource("specs")
    void sameSeedGivesByteIdenticalFiles(ModelFamily family, DType dtype, int shards) throws IOException {
        Path a = tmp.resolve("a");
        Path b = tmp.resolve("b");
        SyntheticCheckpoint.write(a, spec(family, dtype, shards, 99), SyntheticCheckpoint.SILENT);
        SyntheticCheckpoint.write(b, spec(family, dtype, shards, 99), SyntheticCheckpoint.SILENT);
        List<String> filesA = listFiles(a);
        assertThat(filesA).isEqualTo(listFiles(b));
        assertThat(filesA).contains("config.json");
        for (String f : filesA) {
            assertThat(Files.readAllBytes(b.resolve(f))).as(f).isEqualTo(Files.readAllBytes(a.resolve(f)));
        }
    }

    @Test
    void differentSeedGivesDifferentWeightsButSameLayout() throws IOException {
        Path a = tmp.resolve("a");
        Path b = tmp.resolve("b");
        SyntheticCheckpoint.write(a, spec(ModelFamily.MIXTRAL, DType.F32, 1, 1), SyntheticCheckpoint.SILENT);
        SyntheticCheckpoint.write(b, spec(ModelFamily.MIXTRAL, DType.F32, 1, 1).withSeed(2), SyntheticCheckpoint.SILENT);
        try (Checkpoint ca = Checkpoint.open(a); Checkpoint cb = Checkpoint.open(b)) {
            String w1 = ModelFamily.MIXTRAL.expertGateProj(0, 0);
            assertThat(ca.tensor(w1)).isEqualTo(cb.tensor(w1));
            assertThat(ca.readFloats(w1)).isNotEqualTo(cb.readFloats(w1));
        }
        assertThat(Files.readAllBytes(a.resolve("model.safetensors")))
                .isNotEqualTo(Files.readAllBytes(b.resolve("model.safetensors")));
    }

    @Test
    void rejectsNonFloatWeightTypes() {
        SyntheticCheckpoint.Spec spec = spec(ModelFamily.OLMOE, DType.F16, 1, 1);
        assertThatThrownBy(() -> SyntheticCheckpoint.write(tmp.resolve("x"), spec, SyntheticCheckpoint.SILENT))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("F16");
        assertThat(Files.exists(tmp.resolve("x").resolve("config.json"))).isFalse();
    }

    @Test
    void cacheKeyAndLocalDefault() {
        SyntheticCheckpoint.Spec d = SyntheticCheckpoint.Spec.localDefault();
        assertThat(d.family()).isEqualTo(ModelFamily.QWEN3_MOE);
        assertThat(d.cacheKey()).isEqualTo("qwen3_moe-h1024-l4-e32-k4-i512-s0-g1x1-norm-bf16-x2-seed42");
        assertThat(d.withSeed(7).cacheKey()).endsWith("-seed7");
        assertThat(d.withSeed(7).hiddenSize()).isEqualTo(1024);
        MoeConfig config = MoeConfig.from(tools.jackson.databind.json.JsonMapper.builder().build()
                .readTree(SyntheticCheckpoint.config(d))).validate();
        assertThat(config.numExperts()).isEqualTo(32);
        assertThat(config.numExpertsPerToken()).isEqualTo(4);
        assertThat(config.normTopkProb()).isTrue();
        assertThat(config.moeLayers()).containsExactly(0, 1, 2, 3);
    }

    @Test
    void moreShardsThanTensorsIsCapped() throws IOException {
        // OLMoE with 1 layer, 1 expert: embed + norm + router + 3 expert projections = 6 tensors
        SyntheticCheckpoint.Spec spec = new SyntheticCheckpoint.Spec(ModelFamily.OLMOE, 8, 1, 1, 1, 4, 0, 1, 1, false,
                DType.F32, 50, 3);
        Path dir = tmp.resolve("capped");
        SyntheticCheckpoint.write(dir, spec, SyntheticCheckpoint.SILENT);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorsByShard()).hasSize(6);
            assertThat(c.tensorsByShard().values()).allMatch(list -> list.size() == 1);
        }
    }

    @Test
    void deepseekSharedSizeNotAMultipleOfExpertSizeIsRefused() {
        // config.json can only express n_shared_experts × moe_intermediate_size: 48 over 32 has no such form
        SyntheticCheckpoint.Spec spec = new SyntheticCheckpoint.Spec(ModelFamily.DEEPSEEK_V3, 16, 2, 8, 2, 32, 48, 4, 2,
                true, DType.F32, 1, 1);
        org.assertj.core.api.Assertions.assertThatThrownBy(
                        () -> SyntheticCheckpoint.write(tmp.resolve("shared"), spec, SyntheticCheckpoint.SILENT))
                .isInstanceOf(IllegalArgumentException.class)
                .hasMessageContaining("must be a multiple of moe_intermediate_size 32");
    }

    @Test
    void deepseekSharedWidthMatchesItsConfig() throws IOException {
        SyntheticCheckpoint.Spec spec = new SyntheticCheckpoint.Spec(ModelFamily.DEEPSEEK_V3, 16, 2, 8, 2, 32, 64, 4, 2,
                true, DType.F32, 1, 1);
        Path dir = tmp.resolve("shared64");
        SyntheticCheckpoint.write(dir, spec, SyntheticCheckpoint.SILENT);
        try (Checkpoint c = Checkpoint.open(dir)) {
            MoeConfig config = MoeConfig.from(c.config()).validate();
            assertThat(config.sharedExpertIntermediateSize()).isEqualTo(64);
            assertThat(c.tensor(ModelFamily.DEEPSEEK_V3.sharedExpertProj(1, "gate_proj")).shape()).containsExactly(64, 16);
        }
    }

    private static List<String> listFiles(Path dir) throws IOException {
        try (Stream<Path> s = Files.list(dir)) {
            return s.map(p -> p.getFileName().toString()).sorted().toList();
        }
    }
}

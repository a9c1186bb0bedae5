package dev.moe.core.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.config.ModelFamily;
import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.stream.StreamSupport;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class CheckpointTest {

    @TempDir
    Path tmp;

    private static List<String> names(Checkpoint c) {
        return StreamSupport.stream(c.tensorNames().spliterator(), false).toList();
    }

    @Test
    void opensShardedQwen2MoeCheckpoint() {
        Path dir = ConformanceCases.dir("qwen2-moe-tiny");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.directory()).isEqualTo(dir);
            assertThat(c.config().path("model_type").asString()).isEqualTo("qwen2_moe");
            Map<String, List<String>> byShard = c.tensorsByShard();
            assertThat(byShard.keySet())
                    .containsExactly("model-00001-of-00002.safetensors", "model-00002-of-00002.safetensors");
            assertThat(byShard.get("model-00002-of-00002.safetensors"))
                    .contains("model.layers.2.mlp.gate.weight", "model.layers.1.mlp.shared_expert_gate.weight");
            List<String> names = names(c);
            assertThat(names).contains("model.embed_tokens.weight", "model.layers.1.mlp.gate.weight",
                    "model.layers.2.mlp.experts.15.down_proj.weight");
            assertThat(names).doesNotContain("layer1.input"); // expected.safetensors is not part of the model
            assertThat(c.hasTensor("model.layers.1.mlp.gate.weight")).isTrue();
            assertThat(c.hasTensor("model.layers.0.mlp.gate.weight")).isFalse(); // layer 0 is dense

            // a tensor of each shard, compared with reading the shard file directly
            assertSameAsShard(c, dir.resolve("model-00001-of-00002.safetensors"), "model.layers.1.mlp.gate.weight");
            assertSameAsShard(c, dir.resolve("model-00002-of-00002.safetensors"), "model.layers.2.mlp.gate.weight");

            TensorInfo gate = c.tensor("model.layers.2.mlp.gate.weight");
            assertThat(gate.dtype()).isEqualTo(DType.BF16);
            assertThat(gate.shape()).containsExactly(16, 64);
            float[] m = c.readMatrix("model.layers.2.mlp.gate.weight", 16, 64);
            assertThat(m).hasSize(16 * 64);
            for (float v : m) { // widened from BF16: the low 16 bits are zero
                assertThat(Float.floatToRawIntBits(v) & 0xFFFF).isZero();
            }
            assertThat(c.readMatrix("model.layers.1.mlp.shared_expert_gate.weight", 1, 64)).hasSize(64);
        }
    }

    private static void assertSameAsShard(Checkpoint c, Path shard, String name) {
        try (SafetensorsFile file = SafetensorsFile.open(shard)) {
            assertThat(file.tensors()).containsKey(name);
            assertThat(c.readFloats(name)).containsExactly(file.readFloats(file.tensor(name)));
            assertThat(c.tensor(name)).isEqualTo(file.tensor(name));
        }
    }

    @Test
    void opensSingleFileMixtralCheckpointIgnoringOtherSafetensors() {
        Path dir = ConformanceCases.dir("mixtral-tiny");
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.tensorsByShard().keySet()).containsExactly("model.safetensors");
            List<String> names = names(c);
            assertThat(names).contains("model.layers.0.block_sparse_moe.gate.weight",
                    "model.layers.1.block_sparse_moe.experts.7.w2.weight");
            assertThat(names).noneMatch(n -> n.startsWith("layer"));
            String w2 = ModelFamily.MIXTRAL.expertDownProj(1, 7);
            float[] m = c.readMatrix(w2, 64, 96);
            try (SafetensorsFile file = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
                assertThat(m).containsExactly(file.readFloats(file.tensor(w2)));
            }
            assertThat(c.config().path("num_local_experts").asInt()).isEqualTo(8);
        }
    }

    @Test
    void readMatrixChecksShapeAndType() {
        try (Checkpoint c = Checkpoint.open(ConformanceCases.dir("mixtral-tiny"))) {
            String gate = "model.layers.0.block_sparse_moe.gate.weight";
            assertThatThrownBy(() -> c.readMatrix(gate, 64, 8))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("tensor '" + gate + "' has shape [8, 64], expected [64, 8] from config.json");
            assertThatThrownBy(() -> c.readMatrix("model.layers.0.input_layernorm.weight", 1, 64))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("has shape [64], expected [1, 64]");
            assertThatThrownBy(() -> c.readMatrix("model.layers.9.block_sparse_moe.gate.weight", 8, 64))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("checkpoint has no tensor 'model.layers.9.block_sparse_moe.gate.weight'");
        }
    }

    @Test
    void readMatrixRefusesIntegerTensors() throws IOException {
        Path dir = tmp.resolve("ints");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"mixtral\"}");
        new SafetensorsWriter().addI32("ids", new long[] {2, 2}, new int[] {1, 2, 3, 4})
                .write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.readInts("ids")).containsExactly(1, 2, 3, 4);
            assertThatThrownBy(() -> c.readMatrix("ids", 2, 2))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("I32");
        }
    }

    @Test
    void missingConfigJson() throws IOException {
        Path dir = tmp.resolve("noconfig");
        Files.createDirectories(dir);
        new SafetensorsWriter().addF32("w", new long[] {1}, new float[] {1}).write(dir.resolve("model.safetensors"));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining(dir.toString())
                .hasMessageContaining("has no config.json");
    }

    @Test
    void notADirectoryAndInvalidConfig() throws IOException {
        Path file = tmp.resolve("file.txt");
        Files.writeString(file, "x");
        assertThatThrownBy(() -> Checkpoint.open(file))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("is not a directory");
        Path dir = tmp.resolve("badconfig");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\": ");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("config.json is not valid JSON");
    }

    @Test
    void indexNamingAMissingShard() throws IOException {
        Path dir = ConformanceCases.copyCase("qwen2-moe-tiny", tmp.resolve("qwen2"));
        Files.delete(dir.resolve("model-00002-of-00002.safetensors"));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("model.safetensors.index.json names shard 'model-00002-of-00002.safetensors'")
                .hasMessageContaining("for tensor 'model.layers.1.mlp.shared_expert_gate.weight'")
                .hasMessageContaining("the download is incomplete");
    }

    @Test
    void indexWithoutWeightMapOrWithPathShard() throws IOException {
        Path dir = ConformanceCases.copyCase("qwen2-moe-tiny", tmp.resolve("qwen2"));
        Files.writeString(dir.resolve("model.safetensors.index.json"), "{\"metadata\":{}}");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("has no \"weight_map\" object");
        Files.writeString(dir.resolve("model.safetensors.index.json"),
                "{\"weight_map\":{\"w\":\"../model-00001-of-00002.safetensors\"}}");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("must be a plain file name");
    }

    @Test
    void severalSafetensorsWithoutIndex() throws IOException {
        Path dir = tmp.resolve("unindexed");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"mixtral\"}");
        new SafetensorsWriter().addF32("a", new long[] {1}, new float[] {1})
                .write(dir.resolve("model-00001-of-00002.safetensors"));
        new SafetensorsWriter().addF32("b", new long[] {1}, new float[] {2})
                .write(dir.resolve("model-00002-of-00002.safetensors"));
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("holds 2 safetensors files but no model.safetensors.index.json");
    }

    @Test
    void singleNonStandardSafetensorsFileIsUsed() throws IOException {
        Path dir = tmp.resolve("single");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"mixtral\"}");
        new SafetensorsWriter().addF32("a", new long[] {2}, new float[] {1, 2}).write(dir.resolve("weights.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(names(c)).containsExactly("a");
            assertThat(c.readFloats("a")).containsExactly(1f, 2f);
        }
    }

    @Test
    void noSafetensorsAtAll() throws IOException {
        Path dir = tmp.resolve("empty");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"mixtral\"}");
        Files.writeString(dir.resolve("pytorch_model.bin"), "x");
        assertThatThrownBy(() -> Checkpoint.open(dir))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("holds no *.safetensors file");
    }

    @Test
    void fingerprintIsStableAndDistinguishesCheckpoints() throws IOException {
        String first;
        try (Checkpoint c = Checkpoint.open(ConformanceCases.dir("qwen2-moe-tiny"))) {
            first = c.fingerprint();
            assertThat(c.fingerprint()).isEqualTo(first);
        }
        try (Checkpoint c = Checkpoint.open(ConformanceCases.dir("qwen2-moe-tiny"))) {
            assertThat(c.fingerprint()).isEqualTo(first);
        }
        assertThat(first).matches("[0-9a-f]{32}");
        // a copy elsewhere is the same checkpoint
        try (Checkpoint c = Checkpoint.open(ConformanceCases.copyCase("qwen2-moe-tiny", tmp.resolve("copy")))) {
            assertThat(c.fingerprint()).isEqualTo(first);
        }
        try (Checkpoint c = Checkpoint.open(ConformanceCases.dir("mixtral-tiny"))) {
            assertThat(c.fingerprint()).isNotEqualTo(first);
        }

        SyntheticCheckpoint.Spec a = new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, 16, 2, 8, 2, 8, 0, 1, 1, true,
                DType.F32, 1, 5);
        SyntheticCheckpoint.Spec b = new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, 16, 2, 8, 2, 12, 0, 1, 1, true,
                DType.F32, 1, 5);
        SyntheticCheckpoint.write(tmp.resolve("a1"), a, SyntheticCheckpoint.SILENT);
        SyntheticCheckpoint.write(tmp.resolve("a2"), a, SyntheticCheckpoint.SILENT);
        SyntheticCheckpoint.write(tmp.resolve("b"), b, SyntheticCheckpoint.SILENT);
        String fa1;
        String fa2;
        String fb;
        try (Checkpoint c1 = Checkpoint.open(tmp.resolve("a1"));
             Checkpoint c2 = Checkpoint.open(tmp.resolve("a2"));
             Checkpoint c3 = Checkpoint.open(tmp.resolve("b"))) {
            fa1 = c1.fingerprint();
            fa2 = c2.fingerprint();
            fb = c3.fingerprint();
        }
        assertThat(fa1).isEqualTo(fa2);
        assertThat(fb).isNotEqualTo(fa1);
        assertThat(fa1).isNotEqualTo(first);
    }

    @Test
    void fingerprintDiffersForSyntheticCheckpointsWithDifferentSeeds() throws IOException {
        SyntheticCheckpoint.Spec spec = new SyntheticCheckpoint.Spec(ModelFamily.QWEN3_MOE, 16, 2, 8, 2, 8, 0, 1, 1,
                true, DType.F32, 1, 1);
        SyntheticCheckpoint.write(tmp.resolve("s1"), spec, SyntheticCheckpoint.SILENT);
        SyntheticCheckpoint.write(tmp.resolve("s2"), spec.withSeed(2), SyntheticCheckpoint.SILENT);
        try (Checkpoint a = Checkpoint.open(tmp.resolve("s1")); Checkpoint b = Checkpoint.open(tmp.resolve("s2"))) {
            String w = ModelFamily.QWEN3_MOE.expertGateProj(0, 0);
            assertThat(a.readFloats(w)).isNotEqualTo(b.readFloats(w)); // really different weights
            assertThat(a.fingerprint()).isNotEqualTo(b.fingerprint());
        }
    }

    @Test
    void fingerprintChangesWithConfig() throws IOException {
        Path dir = ConformanceCases.copyCase("mixtral-tiny", tmp.resolve("mix"));
        String before;
        try (Checkpoint c = Checkpoint.open(dir)) {
            before = c.fingerprint();
        }
        String config = Files.readString(dir.resolve("config.json"));
        String changed = config.replace("\"num_experts_per_tok\": 2", "\"num_experts_per_tok\": 1");
        assertThat(changed).isNotEqualTo(config);
        Files.writeString(dir.resolve("config.json"), changed);
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.fingerprint()).isNotEqualTo(before);
        }
    }

    @Test
    void closedCheckpointReopensShardsLazily() {
        try (Checkpoint c = Checkpoint.open(ConformanceCases.dir("qwen2-moe-tiny"))) {
            float[] before = c.readFloats("model.layers.2.mlp.gate.weight");
            c.close();
            assertThat(c.readFloats("model.layers.2.mlp.gate.weight")).containsExactly(before);
        }
    }

    // ---- FP8 (DeepSeek-V3 block-scaled e4m3) ----

    private static final String FP8_CASE = "deepseek-v3-fp8-tiny";

    /** Independent e4m3fn decoding (bias 7, no infinities). */
    private static double e4m3(int code) {
        int e = (code >> 3) & 0xF;
        int m = code & 7;
        assertThat(e == 15 && m == 7).as("NaN code in a weight").isFalse();
        double mag = e == 0 ? m / 8.0 * Math.pow(2, -6) : (1 + m / 8.0) * Math.pow(2, e - 7);
        return (code & 0x80) != 0 ? -mag : mag;
    }

    /** Dequantises one element by hand from the raw codes and the raw scale_inv tensor. */
    private static float manualDequant(SafetensorsFile file, String name, int cols, int r, int c) {
        TensorInfo info = file.tensor(name);
        assertThat(info.dtype()).isEqualTo(DType.F8_E4M3);
        MemorySegment codes = file.segment(info);
        int code = codes.get(ValueLayout.JAVA_BYTE, (long) r * cols + c) & 0xFF;
        TensorInfo scaleInfo = file.tensor(name + "_scale_inv");
        assertThat(scaleInfo.dtype()).isEqualTo(DType.F32);
        int scaleCols = (int) scaleInfo.shape()[1];
        assertThat(scaleCols).isEqualTo((cols + 127) / 128); // ceil at the edge
        float[] scales = file.readFloats(scaleInfo);
        float scale = scales[(r / 128) * scaleCols + c / 128];
        return (float) e4m3(code) * scale;
    }

    @Test
    void fp8ExpertWeightIsDequantisedWithBlockScales() {
        Path dir = ConformanceCases.dir(FP8_CASE);
        try (Checkpoint c = Checkpoint.open(dir);
             SafetensorsFile file = SafetensorsFile.open(dir.resolve("model.safetensors"))) {
            // gate_proj [192, 256]: the edge is along rows (rows 128..191 form a half block)
            String gate = ModelFamily.DEEPSEEK_V3.expertGateProj(1, 3);
            float[] g = c.readMatrix(gate, 192, 256);
            int[][] samples = {{0, 0}, {5, 200}, {127, 127}, {127, 128}, {128, 127}, {128, 128}, {150, 3}, {191, 255},
                    {191, 0}, {64, 130}};
            for (int[] s : samples) {
                assertThat(g[s[0] * 256 + s[1]]).as("gate %s", java.util.Arrays.toString(s))
                        .isEqualTo(manualDequant(file, gate, 256, s[0], s[1]));
            }
            // down_proj [256, 192]: the edge is along columns
            String down = ModelFamily.DEEPSEEK_V3.expertDownProj(1, 5);
            float[] d = c.readMatrix(down, 256, 192);
            int[][] downSamples = {{0, 0}, {0, 191}, {255, 191}, {128, 128}, {127, 190}, {200, 100}};
            for (int[] s : downSamples) {
                assertThat(d[s[0] * 192 + s[1]]).as("down %s", java.util.Arrays.toString(s))
                        .isEqualTo(manualDequant(file, down, 192, s[0], s[1]));
            }
            // every element of one matrix, and the scales really differ between blocks
            for (int r = 0; r < 192; r++) {
                for (int col = 0; col < 256; col++) {
                    if (g[r * 256 + col] != manualDequant(file, gate, 256, r, col)) {
                        throw new AssertionError("gate[" + r + "," + col + "] = " + g[r * 256 + col]);
                    }
                }
            }
            float[] scales = file.readFloats(file.tensor(gate + "_scale_inv"));
            assertThat(scales).hasSize(4).doesNotHaveDuplicates();
            // readFloats (no scales) is the raw code values: dequantisation changed them
            float[] raw = c.readFloats(gate);
            assertThat(raw[191 * 256 + 255] * scales[3]).isEqualTo(g[191 * 256 + 255]);
            assertThat(g).isNotEqualTo(raw);
            // the gate (BF16) and correction bias (F32) read unscaled
            assertThat(c.readMatrix("model.layers.1.mlp.gate.weight", 8, 256)).hasSize(2048);
            assertThat(c.readFloats("model.layers.1.mlp.gate.e_score_correction_bias")).hasSize(8);
        }
    }

    @Test
    void f16WeightsAreWidenedExactly() throws IOException {
        Path dir = tmp.resolve("f16");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"mixtral\"}");
        // [3, 5] of F16 codes: normal, negative, subnormal, ±0, the largest finite half (65504), and a rounding case.
        float[] values = {1f, -2.5f, 0.1f, 6.1e-5f, 5.96e-8f, -0f, 0f, 65504f, -65504f, 3.14159f, 1e-3f, -7.75f,
                1024.5f, 0.33333f, 2e-6f};
        short[] codes = new short[values.length];
        for (int i = 0; i < values.length; i++) {
            codes[i] = Float.floatToFloat16(values[i]);
        }
        new SafetensorsWriter().add("w", DType.F16, new long[] {3, 5}, sink -> {
            java.nio.ByteBuffer b = java.nio.ByteBuffer.allocate(2 * codes.length).order(java.nio.ByteOrder.LITTLE_ENDIAN);
            for (short c : codes) {
                b.putShort(c);
            }
            sink.put(b.flip());
        }).write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            float[] read = c.readMatrix("w", 3, 5);
            for (int i = 0; i < codes.length; i++) {
                assertThat(Float.floatToRawIntBits(read[i])).as("element %d", i)
                        .isEqualTo(Float.floatToRawIntBits(Float.float16ToFloat(codes[i])));
            }
            assertThat(read[4]).as("subnormal half").isPositive().isLessThan(1e-7f);
            assertThat(read[7]).isEqualTo(65504f);
            assertThatThrownBy(() -> c.readMatrix("w", 5, 3)).isInstanceOf(CheckpointException.class);
        }
    }

    @Test
    void fp8WithoutScalesIsRefused() throws IOException {
        Path dir = tmp.resolve("fp8noscale");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"), "{\"model_type\":\"deepseek_v3\"}");
        new SafetensorsWriter().add("w", DType.F8_E4M3, new long[] {2, 2},
                sink -> sink.put(java.nio.ByteBuffer.wrap(new byte[] {0x38, 0x40, 0x00, (byte) 0xB8})))
                .write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.readFloats("w")).containsExactly(1f, 2f, 0f, -1f);
            assertThatThrownBy(() -> c.readMatrix("w", 2, 2))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("FP8 tensor 'w' has no 'w_scale_inv' block scales");
        }
    }

    @Test
    void fp8ScalesThatDoNotTileAreRefused() throws IOException {
        Path dir = tmp.resolve("fp8tile");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"),
                "{\"model_type\":\"deepseek_v3\",\"quantization_config\":{\"weight_block_size\":[128,128]}}");
        new SafetensorsWriter()
                .add("w", DType.F8_E4M3, new long[] {200, 4}, sink -> sink.put(java.nio.ByteBuffer.wrap(new byte[800])))
                .addF32("w_scale_inv", new long[] {1, 1}, new float[] {2f})
                .write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThatThrownBy(() -> c.readMatrix("w", 200, 4))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("'w_scale_inv' [1, 1] does not tile [200, 4] in 128x128 blocks");
        }
    }

    @Test
    void fp8NonSquareBlocksFromConfig() throws IOException {
        // 5x4 weight in 2x3 blocks (rows x cols) → 3x2 scales, ceil at both edges
        Path dir = tmp.resolve("fp8small");
        Files.createDirectories(dir);
        Files.writeString(dir.resolve("config.json"),
                "{\"model_type\":\"deepseek_v3\",\"quantization_config\":{\"weight_block_size\":[2,3]}}");
        byte[] codes = new byte[20];
        java.util.Arrays.fill(codes, (byte) 0x38); // all 1.0
        codes[19] = 0x40; // last element 2.0
        float[] scales = {1f, 2f, 3f, 4f, 5f, 6f};
        new SafetensorsWriter()
                .add("w", DType.F8_E4M3, new long[] {5, 4}, sink -> sink.put(java.nio.ByteBuffer.wrap(codes)))
                .addF32("w_scale_inv", new long[] {3, 2}, scales)
                .write(dir.resolve("model.safetensors"));
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.readMatrix("w", 5, 4)).containsExactly(
                    1f, 1f, 1f, 2f,
                    1f, 1f, 1f, 2f,
                    3f, 3f, 3f, 4f,
                    3f, 3f, 3f, 4f,
                    5f, 5f, 5f, 12f);
        }
    }

    @Test
    void fp8WithoutWeightBlockSizeStillUses128Blocks() throws IOException {
        Path dir = ConformanceCases.copyCase(FP8_CASE, tmp.resolve("fp8"));
        String config = Files.readString(dir.resolve("config.json"));
        int q = config.indexOf(",\n  \"quantization_config\"");
        assertThat(q).isPositive();
        Files.writeString(dir.resolve("config.json"), config.substring(0, q) + "\n}");
        String gate = ModelFamily.DEEPSEEK_V3.expertGateProj(1, 0);
        float[] expected;
        try (Checkpoint c = Checkpoint.open(ConformanceCases.dir(FP8_CASE))) {
            expected = c.readMatrix(gate, 192, 256);
        }
        try (Checkpoint c = Checkpoint.open(dir)) {
            assertThat(c.config().has("quantization_config")).isFalse();
            // either the DeepSeek default 128x128 blocks, or a refusal; never silently different weights
            float[] actual = c.readMatrix(gate, 192, 256);
            List<Integer> wrongRows = new ArrayList<>();
            for (int r = 0; r < 192; r++) {
                for (int col = 0; col < 256; col++) {
                    if (actual[r * 256 + col] != expected[r * 256 + col]) {
                        wrongRows.add(r);
                        break;
                    }
                }
            }
            assertThat(wrongRows).isEmpty();
            assertThat(actual).containsExactly(expected);
        }
    }
}

package dev.moe.core.checkpoint;

import dev.moe.core.config.ModelFamily;
import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.SplittableRandom;
import java.util.TreeMap;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * Writes a deterministic synthetic MoE checkpoint in real Hugging Face layout ({@code config.json}, safetensors,
 * optionally sharded with {@code model.safetensors.index.json}) for any supported family. Every tensor's values
 * depend only on the seed and the tensor's name, so the same spec always gives the same bytes.
 *
 * <p>Besides the MoE tensors it writes an embedding and per-layer norms, which servers must ignore, and for
 * DeepSeek-V3 the dense MLP of the layers below {@code first_k_dense_replace}.
 */
public final class SyntheticCheckpoint {
    private static final JsonMapper JSON = JsonMapper.builder().build();

    /**
     * Shape of a synthetic model.
     *
     * @param family                        model family
     * @param hiddenSize                    hidden_size
     * @param numLayers                     num_hidden_layers
     * @param numExperts                    routed experts
     * @param numExpertsPerToken            top-k
     * @param moeIntermediateSize           routed expert intermediate size
     * @param sharedExpertIntermediateSize  Qwen2-MoE shared expert / DeepSeek shared experts width (0 = none)
     * @param nGroup                        DeepSeek-V3 groups
     * @param topkGroup                     DeepSeek-V3 groups kept
     * @param normTopkProb                  renormalise (ignored by Mixtral, which always does)
     * @param dtype                         F32 or BF16 weights
     * @param shards                        1 = model.safetensors; more = sharded with index
     * @param seed                          deterministic seed
     */
    public record Spec(ModelFamily family, int hiddenSize, int numLayers, int numExperts, int numExpertsPerToken,
                       int moeIntermediateSize, int sharedExpertIntermediateSize, int nGroup, int topkGroup,
                       boolean normTopkProb, DType dtype, int shards, long seed) {

        /** The {@code bin/moe local} default: a Qwen3-MoE-shaped model, 4 layers of 32 experts, top-4, BF16. */
        public static Spec localDefault() {
            return new Spec(ModelFamily.QWEN3_MOE, 1024, 4, 32, 4, 512, 0, 1, 1, true, DType.BF16, 2, 42);
        }

        public Spec withSeed(long newSeed) {
            return new Spec(family, hiddenSize, numLayers, numExperts, numExpertsPerToken, moeIntermediateSize,
                    sharedExpertIntermediateSize, nGroup, topkGroup, normTopkProb, dtype, shards, newSeed);
        }

        /** A short stable name, used for the cache folder. */
        public String cacheKey() {
            return family.modelType + "-h" + hiddenSize + "-l" + numLayers + "-e" + numExperts + "-k" + numExpertsPerToken
                    + "-i" + moeIntermediateSize + "-s" + sharedExpertIntermediateSize + "-g" + nGroup + "x" + topkGroup
                    + (normTopkProb ? "-norm" : "") + "-" + dtype.name().toLowerCase() + "-x" + shards + "-seed" + seed;
        }

        /** DeepSeek-V3's first layer is dense; every other family here is MoE in every layer. */
        int firstMoeLayer() {
            return family == ModelFamily.DEEPSEEK_V3 ? 1 : 0;
        }
    }

    private SyntheticCheckpoint() {
    }

    /** Writes the checkpoint into {@code directory} (created); {@code progress} receives (bytesWritten, totalBytes). */
    public static void write(Path directory, Spec spec, ProgressListener progress) throws IOException {
        if (spec.dtype() != DType.F32 && spec.dtype() != DType.BF16) {
            throw new IllegalArgumentException("synthetic checkpoints are F32 or BF16, not " + spec.dtype());
        }
        if (spec.family() == ModelFamily.DEEPSEEK_V3 && spec.sharedExpertIntermediateSize() % spec.moeIntermediateSize() != 0) {
            // config.json can only say n_shared_experts × moe_intermediate_size
            throw new IllegalArgumentException("DeepSeek-V3 shared expert width " + spec.sharedExpertIntermediateSize()
                    + " must be a multiple of moe_intermediate_size " + spec.moeIntermediateSize());
        }
        Files.createDirectories(directory);
        List<Tensor> tensors = tensors(spec);
        int shards = Math.max(1, Math.min(spec.shards(), tensors.size()));
        List<SafetensorsWriter> writers = new ArrayList<>();
        for (int s = 0; s < shards; s++) {
            writers.add(new SafetensorsWriter().metadata("format", "pt"));
        }
        Map<String, String> weightMap = new TreeMap<>();
        long totalBytes = 0;
        for (int i = 0; i < tensors.size(); i++) {
            Tensor t = tensors.get(i);
            int shard = (int) ((long) i * shards / tensors.size());
            String fileName = shards == 1 ? Checkpoint.SINGLE_FILE
                    : String.format("model-%05d-of-%05d.safetensors", shard + 1, shards);
            weightMap.put(t.name, fileName);
            DType dtype = t.forceF32 ? DType.F32 : spec.dtype();
            writers.get(shard).add(t.name, dtype, t.shape, sink -> writeValues(sink, dtype, spec.seed(), t));
            totalBytes += t.numElements() * dtype.byteSize;
        }
        long[] done = {0};
        long total = totalBytes;
        for (int s = 0; s < shards; s++) {
            String fileName = shards == 1 ? Checkpoint.SINGLE_FILE
                    : String.format("model-%05d-of-%05d.safetensors", s + 1, shards);
            long base = done[0];
            writers.get(s).write(directory.resolve(fileName), written -> progress.onProgress(base + written, total));
            done[0] += writers.get(s).dataBytes();
        }
        if (shards > 1) {
            ObjectNode index = JSON.createObjectNode();
            index.putObject("metadata").put("total_size", totalBytes);
            ObjectNode map = index.putObject("weight_map");
            weightMap.forEach(map::put);
            Files.writeString(directory.resolve(Checkpoint.INDEX_FILE), JSON.writerWithDefaultPrettyPrinter()
                    .writeValueAsString(index));
        }
        // config.json last: a folder with a config is a complete checkpoint.
        Files.writeString(directory.resolve(Checkpoint.CONFIG_FILE), config(spec));
    }

    /** Progress of a long write. */
    @FunctionalInterface
    public interface ProgressListener {
        void onProgress(long bytesDone, long bytesTotal);
    }

    static String config(Spec spec) {
        ObjectNode c = JSON.createObjectNode();
        c.put("model_type", spec.family().modelType);
        c.put("hidden_size", spec.hiddenSize());
        c.put("num_hidden_layers", spec.numLayers());
        c.put("num_experts_per_tok", spec.numExpertsPerToken());
        c.put("hidden_act", "silu");
        c.put("vocab_size", 64);
        c.put("torch_dtype", spec.dtype() == DType.BF16 ? "bfloat16" : "float32");
        switch (spec.family()) {
            case MIXTRAL -> {
                c.put("num_local_experts", spec.numExperts());
                c.put("intermediate_size", spec.moeIntermediateSize());
            }
            case QWEN2_MOE, QWEN3_MOE -> {
                c.put("num_experts", spec.numExperts());
                c.put("moe_intermediate_size", spec.moeIntermediateSize());
                c.put("intermediate_size", spec.moeIntermediateSize() * 4);
                c.put("norm_topk_prob", spec.normTopkProb());
                c.put("decoder_sparse_step", 1);
                c.putArray("mlp_only_layers");
                if (spec.family() == ModelFamily.QWEN2_MOE) {
                    c.put("shared_expert_intermediate_size", spec.sharedExpertIntermediateSize());
                }
            }
            case OLMOE -> {
                c.put("num_experts", spec.numExperts());
                c.put("intermediate_size", spec.moeIntermediateSize());
                c.put("norm_topk_prob", spec.normTopkProb());
            }
            case DEEPSEEK_V3 -> {
                c.put("n_routed_experts", spec.numExperts());
                c.put("n_shared_experts", spec.sharedExpertIntermediateSize() / spec.moeIntermediateSize());
                c.put("moe_intermediate_size", spec.moeIntermediateSize());
                c.put("intermediate_size", spec.moeIntermediateSize() * 4);
                c.put("n_group", spec.nGroup());
                c.put("topk_group", spec.topkGroup());
                c.put("routed_scaling_factor", 2.5);
                c.put("norm_topk_prob", spec.normTopkProb());
                c.put("scoring_func", "sigmoid");
                c.put("topk_method", "noaux_tc");
                c.put("first_k_dense_replace", spec.firstMoeLayer());
            }
        }
        return JSON.writerWithDefaultPrettyPrinter().writeValueAsString(c);
    }

    private record Tensor(String name, long[] shape, double scale, double offset, boolean forceF32) {
        long numElements() {
            long n = 1;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    private static List<Tensor> tensors(Spec spec) {
        ModelFamily f = spec.family();
        int h = spec.hiddenSize();
        int inter = spec.moeIntermediateSize();
        double inScale = 1.0 / Math.sqrt(h);
        List<Tensor> out = new ArrayList<>();
        out.add(new Tensor("model.embed_tokens.weight", new long[] {64, h}, 1.0, 0, false));
        for (int layer = 0; layer < spec.numLayers(); layer++) {
            out.add(new Tensor("model.layers." + layer + ".input_layernorm.weight", new long[] {h}, 0.1, 1.0, false));
            if (layer < spec.firstMoeLayer()) {
                String p = "model.layers." + layer + ".mlp.";
                out.add(new Tensor(p + "gate_proj.weight", new long[] {inter, h}, inScale, 0, false));
                out.add(new Tensor(p + "up_proj.weight", new long[] {inter, h}, inScale, 0, false));
                out.add(new Tensor(p + "down_proj.weight", new long[] {h, inter}, 1.0 / Math.sqrt(inter), 0, false));
                continue;
            }
            // A larger gate scale spreads the router scores, so routing decisions are rarely near-ties.
            out.add(new Tensor(f.routerWeight(layer), new long[] {spec.numExperts(), h}, 4 * inScale, 0, false));
            if (f == ModelFamily.DEEPSEEK_V3) {
                out.add(new Tensor(f.correctionBias(layer), new long[] {spec.numExperts()}, 0.05, 0, true));
            }
            for (int e = 0; e < spec.numExperts(); e++) {
                out.add(new Tensor(f.expertGateProj(layer, e), new long[] {inter, h}, inScale, 0, false));
                out.add(new Tensor(f.expertUpProj(layer, e), new long[] {inter, h}, inScale, 0, false));
                out.add(new Tensor(f.expertDownProj(layer, e), new long[] {h, inter}, 1.0 / Math.sqrt(inter), 0, false));
            }
            int shared = spec.sharedExpertIntermediateSize();
            if (shared > 0 && (f == ModelFamily.QWEN2_MOE || f == ModelFamily.DEEPSEEK_V3)) {
                out.add(new Tensor(f.sharedExpertProj(layer, "gate_proj"), new long[] {shared, h}, inScale, 0, false));
                out.add(new Tensor(f.sharedExpertProj(layer, "up_proj"), new long[] {shared, h}, inScale, 0, false));
                out.add(new Tensor(f.sharedExpertProj(layer, "down_proj"), new long[] {h, shared},
                        1.0 / Math.sqrt(shared), 0, false));
                if (f == ModelFamily.QWEN2_MOE) {
                    out.add(new Tensor(f.sharedExpertGate(layer), new long[] {1, h}, inScale, 0, false));
                }
            }
        }
        return out;
    }

    /** Streams uniform values in [offset - scale·√3, offset + scale·√3) (std = scale), 64 Ki elements at a time. */
    private static void writeValues(SafetensorsWriter.ByteSink sink, DType dtype, long seed, Tensor t) throws IOException {
        SplittableRandom random = new SplittableRandom(seed * 0x9E3779B97F4A7C15L ^ t.name.hashCode());
        double halfWidth = t.scale * Math.sqrt(3.0);
        long remaining = t.numElements();
        int chunk = 1 << 16;
        ByteBuffer buffer = ByteBuffer.allocate(chunk * dtype.byteSize).order(ByteOrder.LITTLE_ENDIAN);
        while (remaining > 0) {
            int n = (int) Math.min(chunk, remaining);
            buffer.clear();
            for (int i = 0; i < n; i++) {
                float v = (float) (t.offset + (random.nextDouble() * 2 - 1) * halfWidth);
                if (dtype == DType.BF16) {
                    buffer.putShort(DType.floatToBf16(v));
                } else {
                    buffer.putFloat(v);
                }
            }
            buffer.flip();
            sink.put(buffer);
            remaining -= n;
        }
    }

    /** A listener that ignores progress. */
    public static final ProgressListener SILENT = (done, total) -> { };
}

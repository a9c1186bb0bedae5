package dev.moe.core.sparsity;

import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SafetensorsFile;
import dev.moe.core.checkpoint.TensorInfo;
import java.lang.foreign.MemorySegment;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Collection;
import java.util.HashMap;
import java.util.Map;

/**
 * Recorded MoE-block inputs in a safetensors file (memory-mapped: rows are read when routed, never the whole file):
 * a tensor {@code layerL.input} {@code [T, hidden]} is the input of layer L; {@code hidden_states} {@code [T, hidden]}
 * (the layout {@code bin/moe forward --input} takes) serves every layer without its own tensor. F32, BF16 or F16.
 */
public final class ActivationsFile implements CalibrationSource {
    public static final String SHARED_TENSOR = "hidden_states";

    private final Path path;
    private final SafetensorsFile file;
    private final int hiddenSize;
    private final Map<Integer, Input> inputs;

    private record Input(TensorInfo info, MemorySegment data, int rows) {
    }

    private ActivationsFile(Path path, SafetensorsFile file, int hiddenSize, Map<Integer, Input> inputs) {
        this.path = path;
        this.file = file;
        this.hiddenSize = hiddenSize;
        this.inputs = inputs;
    }

    /** The tensor name of layer L's own input. */
    public static String layerTensor(int layer) {
        return "layer" + layer + ".input";
    }

    /**
     * Opens the file and checks it has an input for every layer of {@code layers}.
     *
     * @param maxTokens  use at most this many rows of each tensor (Integer.MAX_VALUE: all)
     * @throws IllegalArgumentException for a missing file or tensor, a wrong shape or dtype (message names them)
     */
    public static ActivationsFile open(Path path, int hiddenSize, Collection<Integer> layers, int maxTokens) {
        if (!Files.isRegularFile(path)) {
            throw new IllegalArgumentException("activations file " + path + " is not a file");
        }
        if (maxTokens < 1) {
            throw new IllegalArgumentException("tokens must be >= 1, got " + maxTokens);
        }
        SafetensorsFile file;
        try {
            file = SafetensorsFile.open(path);
        } catch (CheckpointException e) {
            throw new IllegalArgumentException(e.getMessage(), e);
        }
        try {
            Map<Integer, Input> inputs = new HashMap<>();
            for (int layer : layers) {
                String name = file.tensors().containsKey(layerTensor(layer)) ? layerTensor(layer) : SHARED_TENSOR;
                TensorInfo info = file.tensors().get(name);
                if (info == null) {
                    throw new IllegalArgumentException(path + " has neither " + layerTensor(layer) + " nor "
                            + SHARED_TENSOR + " for MoE layer " + layer + " (found " + file.tensors().keySet() + ")");
                }
                long[] shape = info.shape();
                if (shape.length != 2 || shape[0] < 1 || shape[1] != hiddenSize) {
                    throw new IllegalArgumentException(path + ": " + name + " must be [tokens >= 1, " + hiddenSize
                            + "] (the model's hidden size), got " + info.shapeString());
                }
                if (info.dtype() != DType.F32 && info.dtype() != DType.BF16 && info.dtype() != DType.F16) {
                    throw new IllegalArgumentException(path + ": " + name + " is " + info.dtype()
                            + "; use F32, BF16 or F16");
                }
                int rows = (int) Math.min(shape[0], maxTokens);
                inputs.put(layer, new Input(info, file.segment(info), rows));
            }
            return new ActivationsFile(path, file, hiddenSize, Map.copyOf(inputs));
        } catch (RuntimeException e) {
            file.close();
            throw e;
        }
    }

    /** The tensor that is layer L's input. */
    public String tensorOf(int layer) {
        return input(layer).info().name();
    }

    @Override
    public String description() {
        return "file " + path.getFileName();
    }

    @Override
    public Long seed() {
        return null;
    }

    @Override
    public int hiddenSize() {
        return hiddenSize;
    }

    @Override
    public int numTokens(int layer) {
        return input(layer).rows();
    }

    @Override
    public void read(int layer, int[] tokens, int from, int count, float[] dst) {
        Input input = input(layer);
        DType dtype = input.info().dtype();
        long rowBytes = (long) hiddenSize * dtype.byteSize;
        for (int i = 0; i < count; i++) {
            int token = tokens[from + i];
            if (token < 0 || token >= input.rows()) {
                throw new IndexOutOfBoundsException("token " + token + " not in [0, " + input.rows() + ")");
            }
            dtype.toFloats(input.data(), token * rowBytes, dst, i * hiddenSize, hiddenSize);
        }
    }

    private Input input(int layer) {
        Input input = inputs.get(layer);
        if (input == null) {
            throw new IllegalArgumentException("no input for layer " + layer + " in " + path);
        }
        return input;
    }

    @Override
    public void close() {
        file.close();
    }
}

package dev.moe.core.checkpoint;

import java.io.IOException;
import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Path;
import java.nio.file.StandardOpenOption;
import java.util.Collections;
import java.util.LinkedHashMap;
import java.util.Map;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * A memory-mapped {@code .safetensors} file: 8-byte little-endian header length, a JSON header, then the raw data.
 *
 * <p>Mapping costs no reads: only the pages of tensors actually converted are faulted in, so a process that
 * needs a few tensors of a multi-GB shard touches only those bytes.
 */
public final class SafetensorsFile implements AutoCloseable {
    /** Headers larger than this are refused (the format's reference implementation caps them at 100 MB). */
    private static final long MAX_HEADER_BYTES = 100L << 20;
    private static final JsonMapper JSON = JsonMapper.builder().build();

    private final Path path;
    private final Arena arena;
    private final MemorySegment data;
    private final byte[] headerBytes;
    private final Map<String, TensorInfo> tensors;
    private final Map<String, String> metadata;

    private SafetensorsFile(Path path, Arena arena, MemorySegment data, byte[] headerBytes,
                            Map<String, TensorInfo> tensors, Map<String, String> metadata) {
        this.path = path;
        this.arena = arena;
        this.data = data;
        this.headerBytes = headerBytes;
        this.tensors = tensors;
        this.metadata = metadata;
    }

    public static SafetensorsFile open(Path path) {
        try (FileChannel channel = FileChannel.open(path, StandardOpenOption.READ)) {
            long fileSize = channel.size();
            if (fileSize < 8) {
                throw new CheckpointException(path + ": not a safetensors file (" + fileSize + " bytes, need at least 8)");
            }
            ByteBuffer lengthBuffer = ByteBuffer.allocate(8).order(ByteOrder.LITTLE_ENDIAN);
            channel.read(lengthBuffer, 0);
            long headerLength = lengthBuffer.getLong(0);
            if (headerLength <= 0 || headerLength > MAX_HEADER_BYTES || 8 + headerLength > fileSize) {
                throw new CheckpointException(path + ": invalid safetensors header length " + headerLength
                        + " (file is " + fileSize + " bytes); the file is truncated or not safetensors");
            }
            ByteBuffer headerBuffer = ByteBuffer.allocate((int) headerLength);
            while (headerBuffer.hasRemaining()) {
                if (channel.read(headerBuffer, 8 + headerBuffer.position()) < 0) {
                    throw new CheckpointException(path + ": truncated safetensors header");
                }
            }
            byte[] headerBytes = headerBuffer.array();
            long dataStart = 8 + headerLength;
            long dataSize = fileSize - dataStart;
            Map<String, String> metadata = new LinkedHashMap<>();
            Map<String, TensorInfo> tensors = parseHeader(path, headerBytes, dataSize, metadata);
            Arena arena = Arena.ofShared();
            MemorySegment data;
            try {
                data = dataSize == 0 ? MemorySegment.NULL
                        : channel.map(FileChannel.MapMode.READ_ONLY, dataStart, dataSize, arena);
            } catch (IOException | RuntimeException e) {
                arena.close();
                throw e;
            }
            return new SafetensorsFile(path, arena, data, headerBytes, Collections.unmodifiableMap(tensors),
                    Collections.unmodifiableMap(metadata));
        } catch (IOException e) {
            throw new CheckpointException("cannot read " + path + ": " + e.getMessage(), e);
        }
    }

    private static Map<String, TensorInfo> parseHeader(Path path, byte[] headerBytes, long dataSize,
                                                       Map<String, String> metadata) {
        JsonNode root;
        try {
            root = JSON.readTree(headerBytes);
        } catch (RuntimeException e) {
            throw new CheckpointException(path + ": safetensors header is not valid JSON: " + e.getMessage(), e);
        }
        if (root == null || !root.isObject()) {
            throw new CheckpointException(path + ": safetensors header is not a JSON object");
        }
        Map<String, TensorInfo> tensors = new LinkedHashMap<>();
        for (Map.Entry<String, JsonNode> entry : root.properties()) {
            String name = entry.getKey();
            JsonNode node = entry.getValue();
            if (name.equals("__metadata__")) {
                if (!node.isObject()) {
                    throw new CheckpointException(path + ": __metadata__ must be an object of strings, got " + node);
                }
                for (Map.Entry<String, JsonNode> m : node.properties()) {
                    if (!m.getValue().isString()) {
                        throw new CheckpointException(path + ": __metadata__ entry '" + m.getKey()
                                + "' must be a string, got " + m.getValue());
                    }
                    metadata.put(m.getKey(), m.getValue().asString());
                }
                continue;
            }
            if (!node.isObject()) {
                throw new CheckpointException(path + ": tensor '" + name + "' must be an object with dtype, shape and"
                        + " data_offsets, got " + node);
            }
            JsonNode dtypeNode = node.get("dtype");
            JsonNode shapeNode = node.get("shape");
            JsonNode offsets = node.get("data_offsets");
            if (dtypeNode == null || shapeNode == null || offsets == null) {
                throw new CheckpointException(path + ": tensor '" + name + "' lacks dtype, shape or data_offsets");
            }
            if (!dtypeNode.isString() || !shapeNode.isArray() || !offsets.isArray() || offsets.size() != 2
                    || !isLong(offsets.get(0)) || !isLong(offsets.get(1))) {
                throw new CheckpointException(path + ": tensor '" + name + "' needs a dtype string, a shape array and"
                        + " data_offsets of two integers, got dtype " + dtypeNode + ", shape " + shapeNode
                        + ", data_offsets " + offsets);
            }
            DType dtype;
            try {
                dtype = DType.parse(dtypeNode.asString());
            } catch (CheckpointException e) {
                throw new CheckpointException(path + ": tensor '" + name + "': " + e.getMessage());
            }
            long[] shape = new long[shapeNode.size()];
            for (int i = 0; i < shape.length; i++) {
                JsonNode dim = shapeNode.get(i);
                if (!isLong(dim) || dim.asLong() < 0) {
                    throw new CheckpointException(path + ": tensor '" + name + "' has an invalid dimension " + dim
                            + " in shape " + shapeNode);
                }
                shape[i] = dim.asLong();
            }
            TensorInfo info = new TensorInfo(name, dtype, shape, offsets.get(0).asLong(), offsets.get(1).asLong());
            long elements;
            try {
                elements = info.numElements();
                Math.multiplyExact(elements, (long) dtype.byteSize);
            } catch (ArithmeticException e) {
                throw new CheckpointException(path + ": tensor '" + name + "' shape " + shapeNode
                        + " has more elements than a 64-bit count holds");
            }
            if (info.dataBegin() < 0 || info.dataEnd() < info.dataBegin() || info.dataEnd() > dataSize) {
                throw new CheckpointException(path + ": tensor '" + name + "' data_offsets [" + info.dataBegin() + ", "
                        + info.dataEnd() + ") fall outside the " + dataSize + "-byte data section (truncated file?)");
            }
            if (elements * dtype.byteSize != info.byteSize()) {
                throw new CheckpointException(path + ": tensor '" + name + "' " + dtype + info.shapeString()
                        + " needs " + info.numElements() * dtype.byteSize + " bytes but data_offsets span "
                        + info.byteSize());
            }
            tensors.put(name, info);
        }
        return tensors;
    }

    /** An integer JSON number that fits a long (a byte offset or a dimension). */
    private static boolean isLong(JsonNode n) {
        return n.isIntegralNumber() && n.canConvertToLong();
    }

    public Path path() {
        return path;
    }

    public Map<String, TensorInfo> tensors() {
        return tensors;
    }

    public Map<String, String> metadata() {
        return metadata;
    }

    /** The raw JSON header, used to fingerprint a checkpoint without reading its weights. */
    public byte[] headerBytes() {
        return headerBytes.clone();
    }

    /** Hands the first and the last {@code bytes} of the data section (fewer when it is smaller) to {@code sink}. */
    public void sampleData(int bytes, java.util.function.Consumer<byte[]> sink) {
        long size = data.byteSize();
        long head = Math.min(bytes, size);
        sink.accept(data.asSlice(0, head).toArray(ValueLayout.JAVA_BYTE));
        if (size > head) {
            long tail = Math.min(bytes, size - head);
            sink.accept(data.asSlice(size - tail, tail).toArray(ValueLayout.JAVA_BYTE));
        }
    }

    public String headerText() {
        return new String(headerBytes, StandardCharsets.UTF_8);
    }

    public TensorInfo tensor(String name) {
        TensorInfo info = tensors.get(name);
        if (info == null) {
            throw new CheckpointException(path + ": no tensor named '" + name + "'");
        }
        return info;
    }

    /** The tensor's bytes as a read-only slice of the mapping (no copy). */
    public MemorySegment segment(TensorInfo info) {
        return data.asSlice(info.dataBegin(), info.byteSize());
    }

    /** Widens the whole tensor to float32, exactly. */
    public float[] readFloats(TensorInfo info) {
        if (!info.dtype().isFloatingWeight()) {
            throw new CheckpointException(path + ": tensor '" + info.name() + "' is " + info.dtype()
                    + ", not a floating-point tensor (F32, BF16, F16 or F8_E4M3)");
        }
        long n = info.numElements();
        if (n > Integer.MAX_VALUE - 16) {
            throw new CheckpointException(path + ": tensor '" + info.name() + "' has " + n
                    + " elements, more than one Java array holds");
        }
        float[] out = new float[(int) n];
        info.dtype().toFloats(data, info.dataBegin(), out, 0, (int) n);
        return out;
    }

    /** Reads an I32 tensor (used for expected outputs such as topk_ids). */
    public int[] readInts(TensorInfo info) {
        if (info.dtype() != DType.I32) {
            throw new CheckpointException(path + ": tensor '" + info.name() + "' is " + info.dtype() + ", expected I32");
        }
        int[] out = new int[(int) info.numElements()];
        MemorySegment.copy(data, ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), info.dataBegin(),
                out, 0, out.length);
        return out;
    }

    @Override
    public void close() {
        arena.close();
    }
}

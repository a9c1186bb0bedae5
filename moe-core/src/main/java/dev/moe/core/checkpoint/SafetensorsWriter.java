package dev.moe.core.checkpoint;

import java.io.IOException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.channels.FileChannel;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.nio.file.StandardCopyOption;
import java.nio.file.StandardOpenOption;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.function.Consumer;
import tools.jackson.databind.json.JsonMapper;
import tools.jackson.databind.node.ObjectNode;

/**
 * Writes a {@code .safetensors} file. Tensors are declared first (name, dtype, shape, a writer of their bytes);
 * {@link #write} lays out the header and streams every tensor's data in order, so tensors larger than memory
 * can be produced chunk by chunk. The file appears atomically (written beside, then moved).
 */
public final class SafetensorsWriter {
    private static final JsonMapper JSON = JsonMapper.builder().build();

    /** Produces the little-endian bytes of one tensor into the given sink. */
    @FunctionalInterface
    public interface TensorData {
        void writeTo(ByteSink sink) throws IOException;
    }

    /** A sink of little-endian bytes. */
    public interface ByteSink {
        void put(ByteBuffer littleEndianBytes) throws IOException;
    }

    private record Entry(String name, DType dtype, long[] shape, TensorData data) {
        long byteSize() {
            long n = dtype.byteSize;
            for (long d : shape) {
                n *= d;
            }
            return n;
        }
    }

    private final List<Entry> entries = new ArrayList<>();
    private final Map<String, String> metadata = new LinkedHashMap<>();

    public SafetensorsWriter metadata(String key, String value) {
        metadata.put(key, value);
        return this;
    }

    public SafetensorsWriter add(String name, DType dtype, long[] shape, TensorData data) {
        entries.add(new Entry(name, dtype, shape.clone(), data));
        return this;
    }

    public SafetensorsWriter addF32(String name, long[] shape, float[] values) {
        return add(name, DType.F32, shape, sink -> {
            ByteBuffer buffer = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            buffer.asFloatBuffer().put(values);
            sink.put(buffer);
        });
    }

    public SafetensorsWriter addBf16(String name, long[] shape, float[] values) {
        return add(name, DType.BF16, shape, sink -> {
            ByteBuffer buffer = ByteBuffer.allocate(values.length * 2).order(ByteOrder.LITTLE_ENDIAN);
            for (float v : values) {
                buffer.putShort(DType.floatToBf16(v));
            }
            sink.put(buffer.flip());
        });
    }

    public SafetensorsWriter addI32(String name, long[] shape, int[] values) {
        return add(name, DType.I32, shape, sink -> {
            ByteBuffer buffer = ByteBuffer.allocate(values.length * 4).order(ByteOrder.LITTLE_ENDIAN);
            buffer.asIntBuffer().put(values);
            sink.put(buffer);
        });
    }

    /** Total bytes of tensor data (what progress is measured against). */
    public long dataBytes() {
        return entries.stream().mapToLong(Entry::byteSize).sum();
    }

    public void write(Path path) throws IOException {
        write(path, bytes -> { });
    }

    /** Writes the file; {@code progress} receives the number of data bytes written after each chunk. */
    public void write(Path path, Consumer<Long> progress) throws IOException {
        ObjectNode header = JSON.createObjectNode();
        if (!metadata.isEmpty()) {
            ObjectNode meta = header.putObject("__metadata__");
            metadata.forEach(meta::put);
        }
        long offset = 0;
        for (Entry e : entries) {
            ObjectNode node = header.putObject(e.name());
            node.put("dtype", e.dtype().name());
            var shape = node.putArray("shape");
            for (long d : e.shape()) {
                shape.add(d);
            }
            var offsets = node.putArray("data_offsets");
            offsets.add(offset);
            offsets.add(offset + e.byteSize());
            offset += e.byteSize();
        }
        byte[] json = JSON.writeValueAsString(header).getBytes(StandardCharsets.UTF_8);
        int padded = (json.length + 7) & ~7; // keep the data section 8-byte aligned, as the reference writer does
        ByteBuffer prefix = ByteBuffer.allocate(8 + padded).order(ByteOrder.LITTLE_ENDIAN);
        prefix.putLong(padded).put(json);
        while (prefix.hasRemaining()) {
            prefix.put((byte) ' ');
        }
        prefix.flip();
        Path tmp = path.resolveSibling(path.getFileName() + ".partial");
        Files.createDirectories(path.toAbsolutePath().getParent());
        try (FileChannel channel = FileChannel.open(tmp, StandardOpenOption.CREATE, StandardOpenOption.WRITE,
                StandardOpenOption.TRUNCATE_EXISTING)) {
            writeFully(channel, prefix);
            long[] written = {0};
            for (Entry e : entries) {
                long before = written[0];
                e.data().writeTo(bytes -> {
                    written[0] += bytes.remaining();
                    writeFully(channel, bytes);
                    progress.accept(written[0]);
                });
                if (written[0] - before != e.byteSize()) {
                    throw new IOException("tensor '" + e.name() + "' wrote " + (written[0] - before) + " bytes, expected "
                            + e.byteSize());
                }
            }
        }
        Files.move(tmp, path, StandardCopyOption.REPLACE_EXISTING, StandardCopyOption.ATOMIC_MOVE);
    }

    private static void writeFully(FileChannel channel, ByteBuffer buffer) throws IOException {
        while (buffer.hasRemaining()) {
            channel.write(buffer);
        }
    }
}

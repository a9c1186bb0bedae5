package dev.moe.core.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.io.IOException;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

class SafetensorsFileTest {

    @TempDir
    Path dir;

    private static final float[] F32_VALUES = {1.5f, -0.0f, Float.MIN_VALUE, Float.MAX_VALUE, -3.25e-7f,
            Float.NEGATIVE_INFINITY};
    private static final int[] I32_VALUES = {0, -1, Integer.MIN_VALUE, Integer.MAX_VALUE, 123456789, 42};

    private Path writeSample() throws IOException {
        Path path = dir.resolve("sample.safetensors");
        new SafetensorsWriter()
                .metadata("format", "pt")
                .metadata("note", "unit")
                .addF32("a.f32", new long[] {2, 3}, F32_VALUES)
                .addBf16("b.bf16", new long[] {5}, new float[] {1.0f, -2.5f, 1.00390625f, 1.01171875f, 1f / 3f})
                .addI32("c.i32", new long[] {3, 2}, I32_VALUES)
                .addF32("d.odd", new long[] {1}, new float[] {7f}) // 4 bytes: following offsets not 8-aligned
                .addI32("e.ids", new long[] {2}, new int[] {5, -5})
                .write(path);
        return path;
    }

    @Test
    void roundTripsF32Bf16AndI32Exactly() throws IOException {
        Path path = writeSample();
        try (SafetensorsFile file = SafetensorsFile.open(path)) {
            assertThat(file.path()).isEqualTo(path);
            assertThat(file.tensors().keySet()).containsExactly("a.f32", "b.bf16", "c.i32", "d.odd", "e.ids");
            assertThat(file.metadata()).containsEntry("format", "pt").containsEntry("note", "unit").hasSize(2);

            TensorInfo a = file.tensor("a.f32");
            assertThat(a.dtype()).isEqualTo(DType.F32);
            assertThat(a.shape()).containsExactly(2, 3);
            assertThat(a.numElements()).isEqualTo(6);
            assertThat(a.dataBegin()).isZero();
            assertThat(a.dataEnd()).isEqualTo(24);
            float[] f = file.readFloats(a);
            assertThat(f).hasSize(6);
            for (int i = 0; i < f.length; i++) {
                assertThat(Float.floatToRawIntBits(f[i])).isEqualTo(Float.floatToRawIntBits(F32_VALUES[i]));
            }

            TensorInfo b = file.tensor("b.bf16");
            assertThat(b.dtype()).isEqualTo(DType.BF16);
            assertThat(b.dataBegin()).isEqualTo(24);
            assertThat(b.byteSize()).isEqualTo(10);
            // exactly representable values survive, the others are rounded to nearest even
            assertThat(file.readFloats(b)).containsExactly(1.0f, -2.5f, 1.0f, 1.015625f,
                    Float.intBitsToFloat(0x3EAB0000));

            TensorInfo c = file.tensor("c.i32");
            assertThat(c.dtype()).isEqualTo(DType.I32);
            assertThat(c.dataBegin()).isEqualTo(34);
            assertThat(file.readInts(c)).containsExactly(I32_VALUES);

            assertThat(file.readFloats(file.tensor("d.odd"))).containsExactly(7f);
            TensorInfo e = file.tensor("e.ids");
            assertThat(e.dataBegin()).isEqualTo(62);
            assertThat(file.readInts(e)).containsExactly(5, -5);

            // segment() is the raw little-endian bytes of exactly one tensor
            MemorySegment seg = file.segment(c);
            assertThat(seg.byteSize()).isEqualTo(24);
            assertThat(seg.get(ValueLayout.JAVA_INT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN), 8))
                    .isEqualTo(Integer.MIN_VALUE);
        }
    }

    @Test
    void headerIsPaddedTo8BytesAndDataFollowsIt() throws IOException {
        Path path = writeSample();
        byte[] bytes = Files.readAllBytes(path);
        long headerLength = ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
        assertThat(headerLength % 8).isZero();
        // 24 + 10 + 24 + 4 + 8 data bytes after the header
        assertThat(bytes.length).isEqualTo(8 + headerLength + 70);
        String header = new String(bytes, 8, (int) headerLength, StandardCharsets.UTF_8);
        assertThat(header.strip()).startsWith("{").endsWith("}");
        assertThat(header).contains("\"__metadata__\"").contains("\"data_offsets\":[0,24]");
        // the first F32 value sits right after the padded header
        float first = ByteBuffer.wrap(bytes, (int) (8 + headerLength), 4).order(ByteOrder.LITTLE_ENDIAN).getFloat();
        assertThat(first).isEqualTo(1.5f);
        try (SafetensorsFile file = SafetensorsFile.open(path)) {
            assertThat(file.headerText()).isEqualTo(header);
            assertThat(file.headerBytes()).hasSize((int) headerLength);
        }
    }

    @Test
    void paddingHoldsForEveryHeaderLength() throws IOException {
        // grow the name one character at a time so the JSON length takes every residue mod 8
        for (int extra = 0; extra < 8; extra++) {
            Path path = dir.resolve("pad" + extra + ".safetensors");
            new SafetensorsWriter().addF32("t" + "x".repeat(extra), new long[] {1}, new float[] {extra}).write(path);
            byte[] bytes = Files.readAllBytes(path);
            long headerLength = ByteBuffer.wrap(bytes, 0, 8).order(ByteOrder.LITTLE_ENDIAN).getLong();
            assertThat(headerLength % 8).as("extra %d", extra).isZero();
            try (SafetensorsFile file = SafetensorsFile.open(path)) {
                assertThat(file.readFloats(file.tensor("t" + "x".repeat(extra)))).containsExactly((float) extra);
            }
        }
    }

    @Test
    void writerStreamsChunksAndReportsProgress() throws IOException {
        Path path = dir.resolve("chunks.safetensors");
        List<Long> progress = new ArrayList<>();
        SafetensorsWriter writer = new SafetensorsWriter().add("big", DType.F32, new long[] {4, 4}, sink -> {
            for (int chunk = 0; chunk < 4; chunk++) {
                ByteBuffer buf = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
                for (int i = 0; i < 4; i++) {
                    buf.putFloat(chunk * 4 + i);
                }
                sink.put(buf.flip());
            }
        });
        assertThat(writer.dataBytes()).isEqualTo(64);
        writer.write(path, progress::add);
        assertThat(progress).containsExactly(16L, 32L, 48L, 64L);
        assertThat(Files.exists(dir.resolve("chunks.safetensors.partial"))).isFalse();
        try (SafetensorsFile file = SafetensorsFile.open(path)) {
            float[] v = file.readFloats(file.tensor("big"));
            for (int i = 0; i < 16; i++) {
                assertThat(v[i]).isEqualTo(i);
            }
        }
    }

    @Test
    void writerRefusesTensorDataOfTheWrongLength() {
        Path path = dir.resolve("short.safetensors");
        SafetensorsWriter writer = new SafetensorsWriter().addF32("w", new long[] {2, 2}, new float[] {1, 2, 3});
        assertThatThrownBy(() -> writer.write(path))
                .isInstanceOf(IOException.class)
                .hasMessageContaining("'w'")
                .hasMessageContaining("wrote 12 bytes, expected 16");
        assertThat(Files.exists(path)).isFalse();
    }

    @Test
    void emptyFileWithoutTensorsOpens() throws IOException {
        Path path = dir.resolve("empty.safetensors");
        new SafetensorsWriter().metadata("format", "pt").write(path);
        try (SafetensorsFile file = SafetensorsFile.open(path)) {
            assertThat(file.tensors()).isEmpty();
            assertThat(file.metadata()).containsEntry("format", "pt");
        }
    }

    @Test
    void readIntsRefusesNonI32AndUnknownNamesAreReported() throws IOException {
        Path path = writeSample();
        try (SafetensorsFile file = SafetensorsFile.open(path)) {
            assertThatThrownBy(() -> file.readInts(file.tensor("a.f32")))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("'a.f32' is F32, expected I32");
            assertThatThrownBy(() -> file.tensor("nope"))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("no tensor named 'nope'")
                    .hasMessageContaining(path.toString());
            assertThatThrownBy(() -> file.readFloats(file.tensor("c.i32")))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("I32");
        }
    }

    @Test
    void sampleDataHandsOverHeadAndTailOfTheDataSection() throws IOException {
        float[] values = new float[50]; // 200 data bytes
        for (int i = 0; i < values.length; i++) {
            values[i] = i;
        }
        Path path = dir.resolve("sample-data.safetensors");
        new SafetensorsWriter().addF32("v", new long[] {50}, values).write(path);
        byte[] all = Files.readAllBytes(path);
        int dataStart = all.length - 200;
        try (SafetensorsFile file = SafetensorsFile.open(path)) {
            List<byte[]> chunks = new ArrayList<>();
            file.sampleData(64, chunks::add);
            assertThat(chunks).hasSize(2);
            assertThat(chunks.get(0)).containsExactly(java.util.Arrays.copyOfRange(all, dataStart, dataStart + 64));
            assertThat(chunks.get(1)).containsExactly(java.util.Arrays.copyOfRange(all, all.length - 64, all.length));

            // head and tail never overlap: 150 + 50 bytes
            chunks.clear();
            file.sampleData(150, chunks::add);
            assertThat(chunks).hasSize(2);
            assertThat(chunks.get(0)).hasSize(150);
            assertThat(chunks.get(1)).containsExactly(java.util.Arrays.copyOfRange(all, dataStart + 150, all.length));

            // larger than the data: everything, once
            chunks.clear();
            file.sampleData(1 << 16, chunks::add);
            assertThat(chunks).hasSize(1);
            assertThat(chunks.get(0)).containsExactly(java.util.Arrays.copyOfRange(all, dataStart, all.length));
        }
        Path empty = dir.resolve("no-data.safetensors");
        new SafetensorsWriter().write(empty);
        try (SafetensorsFile file = SafetensorsFile.open(empty)) {
            List<byte[]> chunks = new ArrayList<>();
            file.sampleData(64, chunks::add);
            assertThat(chunks).hasSize(1);
            assertThat(chunks.get(0)).isEmpty();
        }
    }

    // ---- malformed files ----

    private Path raw(String name, byte[] bytes) throws IOException {
        Path path = dir.resolve(name);
        Files.write(path, bytes);
        return path;
    }

    /** 8-byte little-endian length, the header (unpadded), then {@code dataBytes} zero bytes. */
    private Path rawWithHeader(String name, String header, int dataBytes) throws IOException {
        byte[] json = header.getBytes(StandardCharsets.UTF_8);
        ByteBuffer buf = ByteBuffer.allocate(8 + json.length + dataBytes).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(json.length).put(json);
        return raw(name, buf.array());
    }

    @Test
    void fileShorterThan8Bytes() throws IOException {
        Path path = raw("tiny.safetensors", new byte[] {1, 2, 3, 4, 5});
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining(path.toString())
                .hasMessageContaining("not a safetensors file (5 bytes, need at least 8)");
    }

    @Test
    void headerLengthLargerThanFile() throws IOException {
        ByteBuffer buf = ByteBuffer.allocate(50).order(ByteOrder.LITTLE_ENDIAN);
        buf.putLong(1000).put("{}".getBytes(StandardCharsets.UTF_8));
        Path path = raw("truncated.safetensors", buf.array());
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining(path.toString())
                .hasMessageContaining("invalid safetensors header length 1000 (file is 50 bytes)")
                .hasMessageContaining("truncated or not safetensors");
    }

    @Test
    void headerLengthZeroNegativeOrHuge() throws IOException {
        for (long length : new long[] {0, -8, 200L << 20}) {
            ByteBuffer buf = ByteBuffer.allocate(16).order(ByteOrder.LITTLE_ENDIAN);
            buf.putLong(length);
            Path path = raw("len" + (length & 0xFFFF) + ".safetensors", buf.array());
            assertThatThrownBy(() -> SafetensorsFile.open(path))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("invalid safetensors header length " + length);
        }
    }

    @Test
    void headerNotJson() throws IOException {
        Path path = rawWithHeader("garbage.safetensors", "{this is not json", 0);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining(path.toString())
                .hasMessageContaining("safetensors header is not valid JSON");
    }

    @Test
    void headerNotAnObject() throws IOException {
        Path path = rawWithHeader("array.safetensors", "[1, 2, 3]", 0);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("safetensors header is not a JSON object");
    }

    @Test
    void malformedTensorEntriesNameTheFileAndTheTensor() throws IOException {
        String[][] cases = {
            {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[\"a\",\"b\"]}}", "tensor 'w' needs"},
            {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,1e30]}}", "tensor 'w' needs"},
            {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,99999999999999999999999]}}",
                "tensor 'w' needs"},
            {"{\"w\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":{\"a\":1,\"b\":2}}}", "tensor 'w' needs"},
            {"{\"w\":{\"dtype\":7,\"shape\":[2],\"data_offsets\":[0,8]}}", "tensor 'w' needs"},
            {"{\"w\":{\"dtype\":\"F32\",\"shape\":2,\"data_offsets\":[0,8]}}", "tensor 'w' needs"},
            {"{\"w\":[1,2]}", "tensor 'w' must be an object"},
            {"{\"__metadata__\":{\"a\":{\"b\":1}}}", "__metadata__ entry 'a' must be a string"},
            {"{\"__metadata__\":[1]}", "__metadata__ must be an object of strings"},
        };
        for (int i = 0; i < cases.length; i++) {
            Path path = rawWithHeader("malformed" + i + ".safetensors", cases[i][0], 8);
            assertThatThrownBy(() -> SafetensorsFile.open(path)).as(cases[i][0])
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining(path.toString())
                    .hasMessageContaining(cases[i][1]);
        }
    }

    @Test
    void dataOffsetsBeyondTheDataSection() throws IOException {
        Path path = rawWithHeader("outside.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining(path.toString())
                .hasMessageContaining("tensor 'w' data_offsets [0, 16) fall outside the 8-byte data section");
    }

    @Test
    void dataOffsetsReversedOrNegative() throws IOException {
        Path reversed = rawWithHeader("reversed.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[8,4]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(reversed))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("data_offsets [8, 4)");
        Path negative = rawWithHeader("negative.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[-4,0]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(negative))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("data_offsets [-4, 0)");
    }

    @Test
    void dtypeAndShapeDisagreeWithByteLength() throws IOException {
        Path path = rawWithHeader("mismatch.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,16]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("tensor 'w' F32[3] needs 12 bytes but data_offsets span 16");
        Path bf16 = rawWithHeader("mismatch16.safetensors",
                "{\"w\":{\"dtype\":\"BF16\",\"shape\":[2,2],\"data_offsets\":[0,16]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(bf16))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("BF16[2, 2] needs 8 bytes but data_offsets span 16");
    }

    @Test
    void unknownDtype() throws IOException {
        Path path = rawWithHeader("dtype.safetensors",
                "{\"w\":{\"dtype\":\"F4\",\"shape\":[2],\"data_offsets\":[0,1]}}", 8);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("unsupported safetensors dtype 'F4'");
    }

    @Test
    void missingFields() throws IOException {
        Path path = rawWithHeader("fields.safetensors", "{\"w\":{\"dtype\":\"F32\",\"shape\":[2]}}", 8);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("tensor 'w' lacks dtype, shape or data_offsets");
    }

    @Test
    void negativeDimensionsAreRefused() throws IOException {
        Path path = rawWithHeader("negdims.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[-2,-2],\"data_offsets\":[0,16]}}", 16);
        assertThatThrownBy(() -> SafetensorsFile.open(path)).isInstanceOf(CheckpointException.class);
    }

    @Test
    void overflowingShapeIsACheckpointException() throws IOException {
        Path path = rawWithHeader("overflow.safetensors",
                "{\"w\":{\"dtype\":\"F32\",\"shape\":[4294967296,4294967296],\"data_offsets\":[0,0]}}", 8);
        assertThatThrownBy(() -> SafetensorsFile.open(path))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("'w'");
    }
}

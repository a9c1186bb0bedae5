package dev.moe.core.tensor;

import dev.moe.core.checkpoint.DType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;

/** Raw little-endian row-major payloads ⇄ float32 arrays, for the element types of the wire. */
public final class HiddenStatesCodec {
    private HiddenStatesCodec() {
    }

    public enum WireType {
        FLOAT32(4), BFLOAT16(2);

        public final int bytesPerElement;

        WireType(int bytesPerElement) {
            this.bytesPerElement = bytesPerElement;
        }
    }

    public static float[] decode(ByteBuffer littleEndian, WireType type, int numElements) {
        ByteBuffer in = littleEndian.slice().order(ByteOrder.LITTLE_ENDIAN);
        float[] out = new float[numElements];
        if (type == WireType.FLOAT32) {
            in.asFloatBuffer().get(out);
        } else {
            for (int i = 0; i < numElements; i++) {
                out[i] = DType.bf16ToFloat(in.getShort(2 * i));
            }
        }
        return out;
    }

    public static byte[] encode(float[] values, int offset, int count, WireType type) {
        ByteBuffer out = ByteBuffer.allocate(count * type.bytesPerElement).order(ByteOrder.LITTLE_ENDIAN);
        if (type == WireType.FLOAT32) {
            out.asFloatBuffer().put(values, offset, count);
        } else {
            for (int i = 0; i < count; i++) {
                out.putShort(2 * i, DType.floatToBf16(values[offset + i]));
            }
        }
        return out.array();
    }

    /** The smallest float32 magnitude that rounds to infinity in bfloat16 (round to nearest even: above 0x7F7F). */
    private static final float BF16_OVERFLOW = Float.intBitsToFloat(0x7F7F8000);

    /**
     * Index of the first value {@code type} cannot carry, or -1: NaN and ±Inf, and for BFLOAT16 also finite values
     * that round to infinity (|v| ≥ 3.3961776e38).
     */
    public static int firstUnrepresentable(float[] values, WireType type) {
        float limit = type == WireType.BFLOAT16 ? BF16_OVERFLOW : Float.POSITIVE_INFINITY;
        for (int i = 0; i < values.length; i++) {
            // NaN fails the comparison too
            if (!(Math.abs(values[i]) < limit)) {
                return i;
            }
        }
        return -1;
    }

    /** Index of the first NaN or infinite value, or -1. */
    public static int firstNonFinite(float[] values) {
        return firstUnrepresentable(values, WireType.FLOAT32);
    }
}

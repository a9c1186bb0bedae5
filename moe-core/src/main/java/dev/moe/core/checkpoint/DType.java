package dev.moe.core.checkpoint;

import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;

/** Element types of the safetensors format that a MoE checkpoint may use for its weights. */
public enum DType {
    F32(4), BF16(2), F16(2), F8_E4M3(1), I32(4), I64(8), F64(8), I8(1), U8(1), I16(2), BOOL(1), F8_E5M2(1);

    private static final ValueLayout.OfFloat F32_LE = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
    private static final ValueLayout.OfShort I16_LE = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);

    /** Lookup table of every FP8 e4m3fn code (bias 7, no infinities, 0x7F/0xFF are NaN, max 448). */
    private static final float[] E4M3_VALUES = new float[256];

    static {
        for (int code = 0; code < 256; code++) {
            E4M3_VALUES[code] = decodeE4m3(code);
        }
    }

    public final int byteSize;

    DType(int byteSize) {
        this.byteSize = byteSize;
    }

    /** True for the types weights can be widened from to float32. */
    public boolean isFloatingWeight() {
        return this == F32 || this == BF16 || this == F16 || this == F8_E4M3;
    }

    public static DType parse(String name) {
        try {
            return DType.valueOf(name);
        } catch (IllegalArgumentException e) {
            throw new CheckpointException("unsupported safetensors dtype '" + name + "'");
        }
    }

    /**
     * Widens {@code count} elements starting at byte {@code offset} of {@code data} into {@code dst[dstOff..]}.
     * The conversions are exact (every BF16/F16/FP8 value is representable in float32).
     */
    public void toFloats(MemorySegment data, long offset, float[] dst, int dstOff, int count) {
        switch (this) {
            case F32 -> MemorySegment.copy(data, F32_LE, offset, dst, dstOff, count);
            case BF16 -> {
                for (int i = 0; i < count; i++) {
                    dst[dstOff + i] = bf16ToFloat(data.get(I16_LE, offset + 2L * i));
                }
            }
            case F16 -> {
                for (int i = 0; i < count; i++) {
                    dst[dstOff + i] = Float.float16ToFloat(data.get(I16_LE, offset + 2L * i));
                }
            }
            case F8_E4M3 -> {
                for (int i = 0; i < count; i++) {
                    dst[dstOff + i] = E4M3_VALUES[data.get(ValueLayout.JAVA_BYTE, offset + i) & 0xFF];
                }
            }
            default -> throw new CheckpointException("cannot read " + this + " tensor as floating-point weights");
        }
    }

    public static float bf16ToFloat(short bits) {
        return Float.intBitsToFloat((bits & 0xFFFF) << 16);
    }

    /** Round-to-nearest-even float32 → bfloat16, as torch does; NaN stays NaN. */
    public static short floatToBf16(float value) {
        int bits = Float.floatToRawIntBits(value);
        if (Float.isNaN(value)) {
            return (short) ((bits >>> 16) | 0x40);
        }
        int roundingBias = 0x7FFF + ((bits >>> 16) & 1);
        return (short) ((bits + roundingBias) >>> 16);
    }

    /** Value of one FP8 e4m3fn code. */
    public static float e4m3ToFloat(int code) {
        return E4M3_VALUES[code & 0xFF];
    }

    private static float decodeE4m3(int code) {
        int sign = (code >>> 7) & 1;
        int exponent = (code >>> 3) & 0xF;
        int mantissa = code & 0x7;
        float magnitude;
        if (exponent == 0xF && mantissa == 0x7) {
            magnitude = Float.NaN; // e4m3fn: only S.1111.111 is NaN, there are no infinities
        } else if (exponent == 0) {
            magnitude = mantissa / 8f * 0x1p-6f; // subnormal: 2^(1-7) * m/8
        } else {
            magnitude = (1f + mantissa / 8f) * (float) Math.scalb(1.0, exponent - 7);
        }
        return sign == 1 ? -magnitude : magnitude;
    }
}

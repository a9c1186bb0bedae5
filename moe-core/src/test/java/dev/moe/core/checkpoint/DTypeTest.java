package dev.moe.core.checkpoint;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.lang.foreign.Arena;
import java.lang.foreign.MemorySegment;
import java.lang.foreign.ValueLayout;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class DTypeTest {

    private static int bf16(float v) {
        return DType.floatToBf16(v) & 0xFFFF;
    }

    private static int bf16OfBits(int floatBits) {
        return DType.floatToBf16(Float.intBitsToFloat(floatBits)) & 0xFFFF;
    }

    @Test
    void byteSizes() {
        assertThat(DType.F32.byteSize).isEqualTo(4);
        assertThat(DType.BF16.byteSize).isEqualTo(2);
        assertThat(DType.F16.byteSize).isEqualTo(2);
        assertThat(DType.F8_E4M3.byteSize).isEqualTo(1);
        assertThat(DType.I32.byteSize).isEqualTo(4);
        assertThat(DType.I64.byteSize).isEqualTo(8);
    }

    @Test
    void floatToBf16ExactValuesAreKept() {
        assertThat(bf16(1.0f)).isEqualTo(0x3F80);
        assertThat(bf16(-2.0f)).isEqualTo(0xC000);
        assertThat(bf16(0.0f)).isEqualTo(0x0000);
        assertThat(bf16(-0.0f)).isEqualTo(0x8000);
        assertThat(bf16(Float.POSITIVE_INFINITY)).isEqualTo(0x7F80);
        assertThat(bf16(Float.NEGATIVE_INFINITY)).isEqualTo(0xFF80);
    }

    @Test
    void floatToBf16RoundsToNearest() {
        // 1.0 + tiny: below half an ulp of bf16 → down
        assertThat(bf16OfBits(0x3F800001)).isEqualTo(0x3F80);
        assertThat(bf16OfBits(0x3F807FFF)).isEqualTo(0x3F80);
        // just above half → up
        assertThat(bf16OfBits(0x3F808001)).isEqualTo(0x3F81);
        assertThat(bf16OfBits(0x3F80C000)).isEqualTo(0x3F81);
        // negative values round by magnitude
        assertThat(bf16OfBits(0xBF808001)).isEqualTo(0xBF81);
        assertThat(bf16OfBits(0xBF807FFF)).isEqualTo(0xBF80);
        // 1/3 = 0x3EAAAAAB → 0x3EAB (the dropped half 0xAAAB > 0x8000)
        assertThat(bf16(1f / 3f)).isEqualTo(0x3EAB);
    }

    @Test
    void floatToBf16TiesGoToEven() {
        // exactly half-way: even lsb stays, odd lsb rounds up to the even neighbour
        assertThat(bf16OfBits(0x3F808000)).isEqualTo(0x3F80);
        assertThat(bf16OfBits(0x3F818000)).isEqualTo(0x3F82);
        assertThat(bf16OfBits(0xBF808000)).isEqualTo(0xBF80);
        assertThat(bf16OfBits(0xBF818000)).isEqualTo(0xBF82);
        // 1 + 2^-8 is the tie between 1.0 and 1 + 2^-7
        assertThat(bf16(1.00390625f)).isEqualTo(0x3F80);
        // 1 + 3·2^-8 is the tie between 1 + 2^-7 (odd) and 1 + 2^-6 (even)
        assertThat(bf16(1.01171875f)).isEqualTo(0x3F82);
        // ties among subnormals
        assertThat(bf16OfBits(0x00008000)).isEqualTo(0x0000);
        assertThat(bf16OfBits(0x00018000)).isEqualTo(0x0002);
        // mantissa carry into the exponent
        assertThat(bf16OfBits(0x3FFFFFFF)).isEqualTo(0x4000);
    }

    @Test
    void floatToBf16OverflowsToInfinityLikeTorch() {
        assertThat(bf16(Float.MAX_VALUE)).isEqualTo(0x7F80);
        assertThat(bf16(-Float.MAX_VALUE)).isEqualTo(0xFF80);
        // the largest finite bf16 stays finite
        assertThat(bf16OfBits(0x7F7F0000)).isEqualTo(0x7F7F);
    }

    @Test
    void floatToBf16NaNStaysNaN() {
        // payloads that plain rounding would turn into infinity or wrap into -0
        int[] nanBits = {0x7FC00000, 0x7F800001, 0x7F807FFF, 0x7FFFFFFF, 0xFF800001, 0xFFFFFFFF, 0xFFC00000};
        for (int bits : nanBits) {
            float nan = Float.intBitsToFloat(bits);
            assertThat(Float.isNaN(nan)).isTrue();
            short b = DType.floatToBf16(nan);
            assertThat(DType.bf16ToFloat(b)).as("NaN 0x%08X", bits).isNaN();
            // the sign of a NaN survives
            assertThat((b & 0x8000) != 0).as("sign of 0x%08X", bits).isEqualTo(bits < 0);
        }
    }

    @Test
    void bf16ToFloatIsExactForEveryCode() {
        for (int code = 0; code < 0x10000; code++) {
            float f = DType.bf16ToFloat((short) code);
            assertThat(Float.floatToRawIntBits(f)).isEqualTo(code << 16);
            if (!Float.isNaN(f)) {
                // every bf16 value is representable, so converting back is the identity
                assertThat(bf16(f)).as("code 0x%04X", code).isEqualTo(code);
            }
        }
        assertThat(DType.bf16ToFloat((short) 0x3F80)).isEqualTo(1.0f);
        assertThat(DType.bf16ToFloat((short) 0xC040)).isEqualTo(-3.0f);
        assertThat(DType.bf16ToFloat((short) 0x0001)).isEqualTo(0x1p-133f);
    }

    @Test
    void floatToBf16MatchesNearestNeighbourReference() {
        SplittableRandom random = new SplittableRandom(7);
        for (int i = 0; i < 200_000; i++) {
            int bits = random.nextInt();
            float v = Float.intBitsToFloat(bits);
            if (!Float.isFinite(v)) {
                continue;
            }
            assertThat(bf16(v)).as("0x%08X", bits).isEqualTo(referenceBf16(v));
        }
    }

    /** Chooses between the two bf16 neighbours of v by distance in double, ties to even. */
    private static int referenceBf16(float v) {
        int bits = Float.floatToRawIntBits(v);
        int truncated = bits & 0xFFFF0000; // toward zero
        int away = truncated + 0x10000;    // away from zero (may become infinity)
        double dLow = Math.abs((double) v - Float.intBitsToFloat(truncated));
        // IEEE: beyond the largest finite bf16 the next neighbour counts as 2^128 (then becomes infinity)
        double highValue = (away & 0x7FFFFFFF) == 0x7F800000 ? Math.copySign(0x1p128, v) : Float.intBitsToFloat(away);
        double dHigh = Math.abs(highValue - v);
        int chosen;
        if (dLow < dHigh) {
            chosen = truncated;
        } else if (dHigh < dLow) {
            chosen = away;
        } else {
            chosen = ((truncated >>> 16) & 1) == 0 ? truncated : away;
        }
        return chosen >>> 16;
    }

    @Test
    void e4m3KnownCodes() {
        assertThat(DType.e4m3ToFloat(0x00)).isEqualTo(0.0f);
        assertThat(Float.floatToRawIntBits(DType.e4m3ToFloat(0x80))).isEqualTo(Float.floatToRawIntBits(-0.0f));
        assertThat(DType.e4m3ToFloat(0x38)).isEqualTo(1.0f);
        assertThat(DType.e4m3ToFloat(0xB8)).isEqualTo(-1.0f);
        assertThat(DType.e4m3ToFloat(0x40)).isEqualTo(2.0f);
        assertThat(DType.e4m3ToFloat(0x3C)).isEqualTo(1.5f);
        assertThat(DType.e4m3ToFloat(0x7E)).isEqualTo(448f);
        assertThat(DType.e4m3ToFloat(0xFE)).isEqualTo(-448f);
        assertThat(DType.e4m3ToFloat(0x01)).isEqualTo(0x1p-9f);      // smallest subnormal
        assertThat(DType.e4m3ToFloat(0x07)).isEqualTo(7 * 0x1p-9f);  // largest subnormal
        assertThat(DType.e4m3ToFloat(0x08)).isEqualTo(0x1p-6f);      // smallest normal
        assertThat(DType.e4m3ToFloat(0x78)).isEqualTo(256f);          // 0.1111.000: exponent 15 is a normal binade
        assertThat(DType.e4m3ToFloat(0x7F)).isNaN();
        assertThat(DType.e4m3ToFloat(0xFF)).isNaN();
        // only the low 8 bits count
        assertThat(DType.e4m3ToFloat(0x138)).isEqualTo(1.0f);
    }

    @Test
    void e4m3EveryCodeMatchesFormula() {
        int nans = 0;
        for (int code = 0; code < 256; code++) {
            float v = DType.e4m3ToFloat(code);
            int e = (code >> 3) & 0xF;
            int m = code & 7;
            if (e == 15 && m == 7) {
                assertThat(v).isNaN();
                nans++;
                continue;
            }
            double magnitude = e == 0 ? m * Math.pow(2, -9) : (8 + m) * Math.pow(2, e - 10);
            double expected = (code & 0x80) != 0 ? -magnitude : magnitude;
            assertThat((double) v).as("code 0x%02X", code).isEqualTo(expected);
            assertThat(Float.isInfinite(v)).isFalse();
        }
        assertThat(nans).isEqualTo(2);
        // positive codes are strictly increasing up to 448
        for (int code = 1; code <= 0x7E; code++) {
            assertThat(DType.e4m3ToFloat(code)).isGreaterThan(DType.e4m3ToFloat(code - 1));
        }
    }

    @Test
    void f16Widening() {
        float[] out = widen(DType.F16, new short[] {0x3C00, (short) 0xC000, 0x7BFF, 0x0001, 0x0400, 0x7C00,
                (short) 0xFC00, 0x7E00, (short) 0x8000, 0x3555});
        assertThat(out[0]).isEqualTo(1.0f);
        assertThat(out[1]).isEqualTo(-2.0f);
        assertThat(out[2]).isEqualTo(65504f);
        assertThat(out[3]).isEqualTo(0x1p-24f);
        assertThat(out[4]).isEqualTo(0x1p-14f);
        assertThat(out[5]).isEqualTo(Float.POSITIVE_INFINITY);
        assertThat(out[6]).isEqualTo(Float.NEGATIVE_INFINITY);
        assertThat(out[7]).isNaN();
        assertThat(Float.floatToRawIntBits(out[8])).isEqualTo(Float.floatToRawIntBits(-0.0f));
        assertThat((double) out[9]).isEqualTo(0x1.554p-2); // 0.333251953125
    }

    @Test
    void bf16WideningThroughSegment() {
        float[] out = widen(DType.BF16, new short[] {0x3F80, (short) 0xC040, 0x3EAB, (short) 0xFF80});
        assertThat(out).containsExactly(1.0f, -3.0f, Float.intBitsToFloat(0x3EAB0000), Float.NEGATIVE_INFINITY);
    }

    @Test
    void e4m3AndF32WideningThroughSegmentWithOffsets() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(16);
            byte[] codes = {0x11, 0x38, (byte) 0xFE, 0x01, 0x7E};
            for (int i = 0; i < codes.length; i++) {
                seg.set(ValueLayout.JAVA_BYTE, 3 + i, codes[i]);
            }
            float[] dst = new float[7];
            dst[0] = 99f;
            dst[6] = 77f;
            DType.F8_E4M3.toFloats(seg, 4, dst, 1, 4); // skips the first code
            assertThat(dst).containsExactly(99f, 1.0f, -448f, 0x1p-9f, 448f, 0f, 77f);

            MemorySegment f = arena.allocate(20);
            ValueLayout.OfFloat le = ValueLayout.JAVA_FLOAT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
            f.set(le, 2, 1.5f);
            f.set(le, 6, -7.25f);
            f.set(le, 10, Float.MIN_VALUE);
            float[] out = new float[3];
            DType.F32.toFloats(f, 2, out, 0, 3);
            assertThat(out).containsExactly(1.5f, -7.25f, Float.MIN_VALUE);
        }
    }

    @Test
    void nonFloatTypesAreRefused() {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(8);
            assertThatThrownBy(() -> DType.I32.toFloats(seg, 0, new float[2], 0, 2))
                    .isInstanceOf(CheckpointException.class)
                    .hasMessageContaining("I32");
        }
        assertThat(DType.F32.isFloatingWeight()).isTrue();
        assertThat(DType.BF16.isFloatingWeight()).isTrue();
        assertThat(DType.F16.isFloatingWeight()).isTrue();
        assertThat(DType.F8_E4M3.isFloatingWeight()).isTrue();
        assertThat(DType.I32.isFloatingWeight()).isFalse();
        assertThat(DType.F8_E5M2.isFloatingWeight()).isFalse();
    }

    @Test
    void parse() {
        assertThat(DType.parse("BF16")).isEqualTo(DType.BF16);
        assertThat(DType.parse("F8_E4M3")).isEqualTo(DType.F8_E4M3);
        assertThatThrownBy(() -> DType.parse("F4"))
                .isInstanceOf(CheckpointException.class)
                .hasMessageContaining("unsupported safetensors dtype 'F4'");
        assertThatThrownBy(() -> DType.parse("bf16")).isInstanceOf(CheckpointException.class);
    }

    private static float[] widen(DType type, short[] codes) {
        try (Arena arena = Arena.ofConfined()) {
            MemorySegment seg = arena.allocate(2L * codes.length + 2);
            ValueLayout.OfShort le = ValueLayout.JAVA_SHORT_UNALIGNED.withOrder(ByteOrder.LITTLE_ENDIAN);
            for (int i = 0; i < codes.length; i++) {
                seg.set(le, 2 + 2L * i, codes[i]); // odd start: offset 2
            }
            float[] out = new float[codes.length];
            type.toFloats(seg, 2, out, 0, codes.length);
            return out;
        }
    }
}

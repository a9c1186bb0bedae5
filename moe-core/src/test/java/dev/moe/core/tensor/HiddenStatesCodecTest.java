package dev.moe.core.tensor;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.DType;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.SplittableRandom;
import org.junit.jupiter.api.Test;

class HiddenStatesCodecTest {

    private static final float[] SPECIAL = {0f, -0f, 1f, -1.5f, Float.MIN_VALUE, -Float.MIN_NORMAL, Float.MAX_VALUE,
            Float.POSITIVE_INFINITY, Float.NEGATIVE_INFINITY, 1f / 3f, 123456.789f, -7.0e-20f};

    @Test
    void float32RoundTripIsBitExact() {
        SplittableRandom r = new SplittableRandom(5);
        float[] values = new float[SPECIAL.length + 1000];
        System.arraycopy(SPECIAL, 0, values, 0, SPECIAL.length);
        for (int i = SPECIAL.length; i < values.length; i++) {
            values[i] = Float.intBitsToFloat(r.nextInt());
            if (Float.isNaN(values[i])) {
                values[i] = i;
            }
        }
        byte[] bytes = HiddenStatesCodec.encode(values, 0, values.length, WireType.FLOAT32);
        assertThat(bytes).hasSize(4 * values.length);
        float[] back = HiddenStatesCodec.decode(ByteBuffer.wrap(bytes), WireType.FLOAT32, values.length);
        for (int i = 0; i < values.length; i++) {
            assertThat(Float.floatToRawIntBits(back[i])).as("element %d", i)
                    .isEqualTo(Float.floatToRawIntBits(values[i]));
        }
    }

    @Test
    void float32IsLittleEndian() {
        byte[] bytes = HiddenStatesCodec.encode(new float[] {1.0f, -2.0f}, 0, 2, WireType.FLOAT32);
        assertThat(bytes).containsExactly(0, 0, (byte) 0x80, 0x3F, 0, 0, 0, (byte) 0xC0);
        // decode ignores the buffer's own byte order
        ByteBuffer bigEndian = ByteBuffer.wrap(bytes).order(ByteOrder.BIG_ENDIAN);
        assertThat(HiddenStatesCodec.decode(bigEndian, WireType.FLOAT32, 2)).containsExactly(1.0f, -2.0f);
    }

    @Test
    void bfloat16RoundsToNearestEven() {
        float[] values = {1.0f, 1.00390625f, 1.01171875f, Float.intBitsToFloat(0x3F808001), 1f / 3f, -2.5f,
                Float.intBitsToFloat(0x3F7FFFFF)};
        byte[] bytes = HiddenStatesCodec.encode(values, 0, values.length, WireType.BFLOAT16);
        assertThat(bytes).hasSize(2 * values.length);
        assertThat(bytes[0]).isEqualTo((byte) 0x80); // 1.0 = 0x3F80, little-endian
        assertThat(bytes[1]).isEqualTo((byte) 0x3F);
        float[] back = HiddenStatesCodec.decode(ByteBuffer.wrap(bytes), WireType.BFLOAT16, values.length);
        assertThat(back).containsExactly(
                1.0f,                              // exact
                1.0f,                              // tie, even stays
                1.015625f,                         // tie, odd rounds up to even
                1.0078125f,                        // just above half → up
                Float.intBitsToFloat(0x3EAB0000),  // 1/3
                -2.5f,
                1.0f);                             // largest float below 1 rounds up to 1
    }

    @Test
    void bfloat16RoundTripOfRandomValuesIsWithinHalfAnUlp() {
        SplittableRandom r = new SplittableRandom(6);
        float[] values = new float[2000];
        for (int i = 0; i < values.length; i++) {
            values[i] = (float) ((r.nextDouble() * 2 - 1) * Math.pow(10, r.nextInt(-10, 10)));
        }
        byte[] bytes = HiddenStatesCodec.encode(values, 0, values.length, WireType.BFLOAT16);
        float[] back = HiddenStatesCodec.decode(ByteBuffer.wrap(bytes), WireType.BFLOAT16, values.length);
        for (int i = 0; i < values.length; i++) {
            assertThat(back[i]).isEqualTo(DType.bf16ToFloat(DType.floatToBf16(values[i])));
            // nearest: at most half a bf16 ulp, which is 2^16 float32 ulps
            double halfUlp = Math.ulp(values[i]) * 0x1p15;
            assertThat(Math.abs((double) back[i] - values[i])).isLessThanOrEqualTo(halfUlp);
            assertThat(Float.floatToRawIntBits(back[i]) & 0xFFFF).isZero();
        }
    }

    @Test
    void encodeRespectsOffsetAndCount() {
        float[] values = {9f, 1f, 2f, 3f, 9f};
        byte[] f32 = HiddenStatesCodec.encode(values, 1, 3, WireType.FLOAT32);
        assertThat(f32).hasSize(12);
        assertThat(HiddenStatesCodec.decode(ByteBuffer.wrap(f32), WireType.FLOAT32, 3)).containsExactly(1f, 2f, 3f);
        byte[] bf16 = HiddenStatesCodec.encode(values, 1, 3, WireType.BFLOAT16);
        assertThat(bf16).hasSize(6);
        assertThat(HiddenStatesCodec.decode(ByteBuffer.wrap(bf16), WireType.BFLOAT16, 3)).containsExactly(1f, 2f, 3f);
        assertThat(HiddenStatesCodec.encode(values, 2, 0, WireType.FLOAT32)).isEmpty();
    }

    @Test
    void decodeStartsAtTheBufferPosition() {
        ByteBuffer buf = ByteBuffer.allocate(3 + 8).order(ByteOrder.LITTLE_ENDIAN);
        buf.put(new byte[] {1, 2, 3}).putFloat(4.5f).putFloat(-0.25f);
        buf.position(3);
        assertThat(HiddenStatesCodec.decode(buf, WireType.FLOAT32, 2)).containsExactly(4.5f, -0.25f);
        assertThat(buf.position()).isEqualTo(3); // the caller's buffer is not consumed

        ByteBuffer b16 = ByteBuffer.allocate(1 + 4).order(ByteOrder.LITTLE_ENDIAN);
        b16.put((byte) 7).putShort((short) 0x4040).putShort((short) 0xBF80);
        b16.position(1);
        assertThat(HiddenStatesCodec.decode(b16, WireType.BFLOAT16, 2)).containsExactly(3.0f, -1.0f);
    }

    @Test
    void wireTypeSizes() {
        assertThat(WireType.FLOAT32.bytesPerElement).isEqualTo(4);
        assertThat(WireType.BFLOAT16.bytesPerElement).isEqualTo(2);
    }

    @Test
    void firstNonFinite() {
        assertThat(HiddenStatesCodec.firstNonFinite(new float[] {1f, 2f, -3f})).isEqualTo(-1);
        assertThat(HiddenStatesCodec.firstNonFinite(new float[0])).isEqualTo(-1);
        assertThat(HiddenStatesCodec.firstNonFinite(new float[] {1f, Float.NaN, Float.POSITIVE_INFINITY})).isEqualTo(1);
        assertThat(HiddenStatesCodec.firstNonFinite(new float[] {Float.NEGATIVE_INFINITY, 0f})).isZero();
        assertThat(HiddenStatesCodec.firstNonFinite(new float[] {0f, Float.MAX_VALUE, -Float.MAX_VALUE, 5f,
                Float.POSITIVE_INFINITY})).isEqualTo(4);
        // bf16 overflow of a finite float32 produces infinity, which the check then finds
        float[] decoded = HiddenStatesCodec.decode(ByteBuffer.wrap(HiddenStatesCodec.encode(
                new float[] {1f, Float.MAX_VALUE}, 0, 2, WireType.BFLOAT16)), WireType.BFLOAT16, 2);
        assertThat(HiddenStatesCodec.firstNonFinite(decoded)).isEqualTo(1);
    }
    @Test
    void firstUnrepresentable() {
        // The largest float32 that still rounds to a finite bfloat16 (0x7F7F, 3.3895314e38) and the next one up.
        float lastFinite = Float.intBitsToFloat(0x7F7F7FFF);
        float firstOverflow = Float.intBitsToFloat(0x7F7F8000);
        assertThat(HiddenStatesCodec.firstUnrepresentable(new float[] {1f, lastFinite, -lastFinite},
                WireType.BFLOAT16)).isEqualTo(-1);
        assertThat(HiddenStatesCodec.firstUnrepresentable(new float[] {1f, -firstOverflow}, WireType.BFLOAT16))
                .isEqualTo(1);
        assertThat(HiddenStatesCodec.firstUnrepresentable(new float[] {Float.MAX_VALUE, firstOverflow},
                WireType.FLOAT32)).isEqualTo(-1);
        assertThat(HiddenStatesCodec.firstUnrepresentable(new float[] {0f, 2f, Float.NaN}, WireType.FLOAT32))
                .isEqualTo(2);
        assertThat(HiddenStatesCodec.firstUnrepresentable(new float[] {Float.NEGATIVE_INFINITY}, WireType.BFLOAT16))
                .isZero();
        // Agrees with what the encoding really produces.
        float[] decoded = HiddenStatesCodec.decode(ByteBuffer.wrap(HiddenStatesCodec.encode(
                new float[] {lastFinite, firstOverflow}, 0, 2, WireType.BFLOAT16)), WireType.BFLOAT16, 2);
        assertThat(Float.isFinite(decoded[0])).isTrue();
        assertThat(decoded[1]).isEqualTo(Float.POSITIVE_INFINITY);
    }
}

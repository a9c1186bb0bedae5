package dev.moe.core.kernels;

/** How an expert server stores expert weights in memory; all compute accumulates in float32. */
public enum WeightType {
    /** 4 bytes per weight. */
    F32(4.0),
    /** bfloat16, 2 bytes per weight: the upper half of the float32 bits (exact for BF16 checkpoints). */
    BF16(2.0),
    /** int8 in blocks of 32 weights with one float32 scale each (Q8_0-like, scales in a separate array): 9 bits/weight. */
    INT8(1.125);

    /** Bytes read per weight, scales included. */
    public final double bytesPerWeight;

    WeightType(double bytesPerWeight) {
        this.bytesPerWeight = bytesPerWeight;
    }

    public static WeightType parse(String name) {
        try {
            return valueOf(name.trim().toUpperCase(java.util.Locale.ROOT));
        } catch (IllegalArgumentException e) {
            throw new IllegalArgumentException("weight type '" + name + "' is not one of f32, bf16, int8");
        }
    }
}

package dev.moe.core.kernels;

import dev.moe.core.checkpoint.DType;

/**
 * A linear layer {@code y = W·a} ({@code W} is {@code [outputs, inputs]}, a PyTorch Linear weight) stored input-major
 * in panels of {@link #WIDTH} outputs: panel p holds, for every input channel r, the {@code WIDTH} weights
 * {@code W[p·WIDTH .. p·WIDTH+WIDTH, r]} contiguously. Skipping a pruned input channel therefore skips
 * {@code WIDTH} contiguous weights (one 64-byte line in int8, two in bf16) and every panel is one forward stream.
 *
 * <p>Element {@code (panel, row, col)} lives at {@code (panel · rows + row) · WIDTH + col}. Outputs past the last real
 * one are zero padding. In int8 each run of 32 consecutive elements has its own scale: {@code scales[index / 32]}.
 */
public final class PanelMatrix {
    /** Outputs per panel. */
    public static final int WIDTH = 64;
    /** int8 block: weights per scale. */
    public static final int BLOCK = 32;

    final WeightType type;
    final int rows;      // input channels
    final int outputs;   // real outputs (numPanels · WIDTH with padding)
    final int numPanels;
    final float[] f32;   // F32 storage, else null
    final short[] bf16;  // BF16 storage, else null
    final byte[] i8;     // INT8 codes, else null
    final float[] scales; // INT8 block scales, else null

    private PanelMatrix(WeightType type, int rows, int outputs, float[] f32, short[] bf16, byte[] i8, float[] scales) {
        this.type = type;
        this.rows = rows;
        this.outputs = outputs;
        this.numPanels = (outputs + WIDTH - 1) / WIDTH;
        this.f32 = f32;
        this.bf16 = bf16;
        this.i8 = i8;
        this.scales = scales;
    }

    /**
     * Packs panels from a row-major weight. {@code panelColumn.apply(panel, col)} names the row of {@code w} (an output
     * index) that lands in column {@code col} of {@code panel}, or -1 for padding; this lets gate and up share panels.
     */
    static PanelMatrix pack(WeightType type, float[] w, int inputs, int outputs, int numPanels, ColumnMap columns) {
        long size = (long) numPanels * inputs * WIDTH;
        if (size > Integer.MAX_VALUE - 64) {
            throw new IllegalArgumentException("weight of " + size + " packed elements exceeds one Java array");
        }
        float[] f32 = new float[(int) size];
        for (int p = 0; p < numPanels; p++) {
            for (int c = 0; c < WIDTH; c++) {
                int out = columns.outputRow(p, c);
                if (out < 0) {
                    continue;
                }
                for (int r = 0; r < inputs; r++) {
                    f32[(p * inputs + r) * WIDTH + c] = w[out * inputs + r];
                }
            }
        }
        return switch (type) {
            case F32 -> new PanelMatrix(type, inputs, numPanels * WIDTH, f32, null, null, null);
            case BF16 -> {
                short[] bf16 = new short[f32.length];
                for (int i = 0; i < f32.length; i++) {
                    bf16[i] = DType.floatToBf16(f32[i]);
                }
                yield new PanelMatrix(type, inputs, numPanels * WIDTH, null, bf16, null, null);
            }
            case INT8 -> {
                byte[] codes = new byte[f32.length];
                float[] scales = new float[f32.length / BLOCK];
                for (int b = 0; b < scales.length; b++) {
                    float max = 0f;
                    for (int i = b * BLOCK; i < (b + 1) * BLOCK; i++) {
                        max = Math.max(max, Math.abs(f32[i]));
                    }
                    float scale = max / 127f;
                    scales[b] = scale;
                    float inverse = scale == 0f ? 0f : 1f / scale;
                    for (int i = b * BLOCK; i < (b + 1) * BLOCK; i++) {
                        codes[i] = (byte) Math.max(-127, Math.min(127, Math.round(f32[i] * inverse)));
                    }
                }
                yield new PanelMatrix(type, inputs, numPanels * WIDTH, null, null, codes, scales);
            }
        };
    }

    /** Where each panel column comes from. */
    @FunctionalInterface
    interface ColumnMap {
        int outputRow(int panel, int column);
    }

    public WeightType type() {
        return type;
    }

    public int rows() {
        return rows;
    }

    public int numPanels() {
        return numPanels;
    }

    /** The weight at {@code (panel, row, col)}, dequantised: what every kernel multiplies by. */
    public float weight(int panel, int row, int col) {
        int index = (panel * rows + row) * WIDTH + col;
        return switch (type) {
            case F32 -> f32[index];
            case BF16 -> DType.bf16ToFloat(bf16[index]);
            case INT8 -> i8[index] * scales[index / BLOCK];
        };
    }

    /** Bytes a full pass over the matrix reads (scales included). */
    public long bytes() {
        long elements = (long) numPanels * rows * WIDTH;
        return switch (type) {
            case F32 -> elements * 4;
            case BF16 -> elements * 2;
            case INT8 -> elements + elements / BLOCK * 4;
        };
    }

    /** Bytes one row of one panel reads. */
    public double bytesPerRow() {
        return bytes() / ((double) numPanels * rows);
    }
}

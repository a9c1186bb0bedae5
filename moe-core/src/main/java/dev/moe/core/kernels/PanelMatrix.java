package dev.moe.core.kernels;

import dev.moe.core.checkpoint.DType;

/**
 * A linear layer {@code y = W·a} ({@code W} is {@code [outputs, inputs]}, a PyTorch Linear weight) stored input-major
 * in chunks of {@link #WIDTH} outputs: chunk {@code (p, r)} holds the {@code WIDTH} weights
 * {@code W[p·WIDTH .. p·WIDTH+WIDTH, r]} of panel p and input channel (row) r contiguously, so skipping a pruned input
 * channel skips whole chunks. Where the chunks go is the {@link Layout}:
 * <ul>
 *   <li>{@link Layout#PANELS}: chunk {@code (p, r)} at {@code (p · rows + r) · WIDTH}; every panel is one forward
 *       stream (the best dense layout), but an active row of a sparse input is a 64-weight run scattered in it;</li>
 *   <li>{@link Layout#ROWS}: chunk {@code (p, r)} at {@code (r · numPanels + p) · WIDTH}; every input row is one
 *       contiguous run over all outputs (padded to {@code numPanels · WIDTH}), which the hardware prefetcher follows
 *       when a sparse input skips rows.</li>
 * </ul>
 * Element {@code (panel, row, col)} lives at {@link #chunkOffset chunkOffset(panel, row)}{@code + col} in both. Outputs
 * past the last real one are zero padding. In int8 each run of 32 consecutive elements (codes in element order) has its
 * own scale: {@code scales[index / 32]}. The chunk-internal format (see {@link #bf16Slot}) is the same in both
 * layouts, so a kernel that addresses chunks through {@link #chunkOffset} (or a panel base plus {@link #rowStride})
 * works on either.
 */
public final class PanelMatrix {
    /** Outputs per panel. */
    public static final int WIDTH = 64;
    /** int8 block: weights per scale. */
    public static final int BLOCK = 32;

    /** Where chunk {@code (panel, row)} is stored. */
    public enum Layout {
        /** Panel-major: each panel's rows are contiguous. */
        PANELS,
        /** Row-major: each input row's chunks (its whole output row) are contiguous. */
        ROWS;

        public static Layout parse(String name) {
            try {
                return valueOf(name.trim().toUpperCase(java.util.Locale.ROOT));
            } catch (IllegalArgumentException e) {
                throw new IllegalArgumentException("layout '" + name + "' is not one of panels, rows");
            }
        }
    }

    final WeightType type;
    final Layout layout;
    final int rows;      // input channels
    final int outputs;   // real outputs (numPanels · WIDTH with padding)
    final int numPanels;
    final float[] f32;   // F32 storage, else null
    final int[] bf16;    // BF16 storage, two per int, interleaved per 16 (see bf16Slot), else null
    final byte[] i8;     // INT8 codes in element order (no interleave: the kernels widen bytes with one cast), else null
    final float[] scales; // INT8 block scales, else null

    private PanelMatrix(WeightType type, Layout layout, int rows, int outputs, float[] f32, int[] bf16, byte[] i8,
                        float[] scales) {
        this.type = type;
        this.layout = layout;
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
        return pack(type, Layout.PANELS, w, inputs, outputs, numPanels, columns);
    }

    /** {@link #pack(WeightType, float[], int, int, int, ColumnMap)} in the given layout. */
    static PanelMatrix pack(WeightType type, Layout layout, float[] w, int inputs, int outputs, int numPanels,
                            ColumnMap columns) {
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
                    f32[chunkOffset(layout, inputs, numPanels, p, r) + c] = w[out * inputs + r];
                }
            }
        }
        return switch (type) {
            case F32 -> new PanelMatrix(type, layout, inputs, numPanels * WIDTH, f32, null, null, null);
            case BF16 -> {
                int[] bf16 = new int[f32.length / 2];
                for (int i = 0; i < f32.length; i++) {
                    int slot = bf16Slot(i);
                    int bits = DType.floatToBf16(f32[i]) & 0xFFFF;
                    bf16[slot >>> 1] |= (slot & 1) == 0 ? bits : bits << 16;
                }
                yield new PanelMatrix(type, layout, inputs, numPanels * WIDTH, null, bf16, null, null);
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
                yield new PanelMatrix(type, layout, inputs, numPanels * WIDTH, null, null, codes, scales);
            }
        };
    }

    /**
     * Storage slot of logical element {@code index} in BF16: within each run of 16, column k (k < 8) goes to the low
     * half of int k and column 8 + k to its high half, so one 8-int load yields columns 0..7 by a shift and 8..15 by
     * a mask, with no widening shuffle.
     */
    static int bf16Slot(int index) {
        int base = index & ~15;
        int k = index & 15;
        return base + (k < 8 ? 2 * k : 2 * (k - 8) + 1);
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

    public Layout layout() {
        return layout;
    }

    /** Element index of chunk {@code (panel, row)}: its column c is at {@code chunkOffset(panel, row) + c}. */
    public int chunkOffset(int panel, int row) {
        return chunkOffset(layout, rows, numPanels, panel, row);
    }

    /** Elements between chunk {@code (p, r)} and chunk {@code (p, r + 1)}: WIDTH in PANELS, a full row in ROWS. */
    public int rowStride() {
        return layout == Layout.PANELS ? WIDTH : numPanels * WIDTH;
    }

    /** Elements between chunk {@code (p, r)} and chunk {@code (p + 1, r)}: a whole panel in PANELS, WIDTH in ROWS. */
    public int panelStride() {
        return layout == Layout.PANELS ? rows * WIDTH : WIDTH;
    }

    private static int chunkOffset(Layout layout, int rows, int numPanels, int panel, int row) {
        return (layout == Layout.PANELS ? panel * rows + row : row * numPanels + panel) * WIDTH;
    }

    /** The weight at {@code (panel, row, col)}, dequantised: what every kernel multiplies by. */
    public float weight(int panel, int row, int col) {
        return element(chunkOffset(panel, row) + col);
    }

    /** The weight stored at element {@code index} (a chunk's offset plus its column), dequantised. */
    float element(int index) {
        return switch (type) {
            case F32 -> f32[index];
            case BF16 -> {
                int slot = bf16Slot(index);
                int word = bf16[slot >>> 1];
                yield Float.intBitsToFloat((slot & 1) == 0 ? word << 16 : word & 0xFFFF0000);
            }
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

    /** Bytes one chunk (one row of one panel) reads. */
    public double bytesPerRow() {
        return bytes() / ((double) numPanels * rows);
    }
}

package dev.moe.core.kernels;

/**
 * A SwiGLU expert laid out for the sparse FFN kernels: {@code down(silu(gate·x) ⊙ up·x)} with input-major panels.
 * Gate and up share panels (32 outputs of each, side by side), so a pruned input channel of x skips one contiguous
 * 64-weight run that serves both; down is packed the same way over its own input, h.
 */
public final class PackedExpert {
    /** Intermediate channels of gate (and of up) per gate/up panel. */
    static final int HALF = PanelMatrix.WIDTH / 2;

    final int hiddenSize;
    final int intermediateSize;
    final PanelMatrix gateUp;  // rows: hiddenSize input channels; panel p: gate[32p..32p+32) ‖ up[32p..32p+32)
    final PanelMatrix down;    // rows: intermediateSize input channels; panel q: down[64q..64q+64)
    final float[] gateRowSums; // [intermediateSize] Σ_j gate[i, j] of the stored weights, for mode-centering biases
    final float[] upRowSums;   // [intermediateSize]
    final float[] downRowSums; // [hiddenSize]

    private PackedExpert(int hiddenSize, int intermediateSize, PanelMatrix gateUp, PanelMatrix down) {
        this.hiddenSize = hiddenSize;
        this.intermediateSize = intermediateSize;
        this.gateUp = gateUp;
        this.down = down;
        this.gateRowSums = new float[intermediateSize];
        this.upRowSums = new float[intermediateSize];
        for (int i = 0; i < intermediateSize; i++) {
            double g = 0;
            double u = 0;
            for (int j = 0; j < hiddenSize; j++) {
                g += gateUp.weight(i / HALF, j, i % HALF);
                u += gateUp.weight(i / HALF, j, HALF + i % HALF);
            }
            gateRowSums[i] = (float) g;
            upRowSums[i] = (float) u;
        }
        this.downRowSums = new float[hiddenSize];
        for (int h = 0; h < hiddenSize; h++) {
            double d = 0;
            for (int i = 0; i < intermediateSize; i++) {
                d += down.weight(h / PanelMatrix.WIDTH, i, h % PanelMatrix.WIDTH);
            }
            downRowSums[h] = (float) d;
        }
    }

    /**
     * Packs row-major PyTorch weights.
     *
     * @param gateProj {@code [intermediateSize, hiddenSize]}
     * @param upProj   {@code [intermediateSize, hiddenSize]}
     * @param downProj {@code [hiddenSize, intermediateSize]}
     */
    public static PackedExpert pack(int hiddenSize, int intermediateSize, float[] gateProj, float[] upProj,
                                    float[] downProj, WeightType type) {
        return pack(hiddenSize, intermediateSize, gateProj, upProj, downProj, type, PanelMatrix.Layout.PANELS);
    }

    /**
     * Packs row-major PyTorch weights in the given layout ({@link PanelMatrix.Layout#ROWS} for sparse single-token
     * serving, {@link PanelMatrix.Layout#PANELS} for dense and batches).
     */
    public static PackedExpert pack(int hiddenSize, int intermediateSize, float[] gateProj, float[] upProj,
                                    float[] downProj, WeightType type, PanelMatrix.Layout layout) {
        long inner = (long) hiddenSize * intermediateSize;
        if (gateProj.length != inner || upProj.length != inner || downProj.length != inner) {
            throw new IllegalArgumentException("SwiGLU weights do not match [" + intermediateSize + ", " + hiddenSize + "]");
        }
        int guPanels = (intermediateSize + HALF - 1) / HALF;
        // Gate/up: column c < 32 of panel p is gate row 32p + c, column c >= 32 is up row 32p + c - 32.
        if (2 * inner > Integer.MAX_VALUE - 64) {
            throw new IllegalArgumentException("expert of [" + intermediateSize + ", " + hiddenSize + "] exceeds one Java"
                    + " array when gate and up are packed together");
        }
        float[] stacked = new float[(int) (2 * inner)];
        System.arraycopy(gateProj, 0, stacked, 0, gateProj.length);
        System.arraycopy(upProj, 0, stacked, gateProj.length, upProj.length);
        PanelMatrix.ColumnMap gateUpColumns = (p, c) -> {
            int i = p * HALF + c % HALF;
            return i >= intermediateSize ? -1 : (c < HALF ? i : intermediateSize + i);
        };
        PanelMatrix gateUp = PanelMatrix.pack(type, layout, stacked, hiddenSize, 2 * intermediateSize, guPanels,
                gateUpColumns);
        int downPanels = (hiddenSize + PanelMatrix.WIDTH - 1) / PanelMatrix.WIDTH;
        PanelMatrix.ColumnMap downColumns = (p, c) -> {
            int h = p * PanelMatrix.WIDTH + c;
            return h >= hiddenSize ? -1 : h;
        };
        PanelMatrix down = PanelMatrix.pack(type, layout, downProj, intermediateSize, hiddenSize, downPanels,
                downColumns);
        return new PackedExpert(hiddenSize, intermediateSize, gateUp, down);
    }

    public int hiddenSize() {
        return hiddenSize;
    }

    public int intermediateSize() {
        return intermediateSize;
    }

    public WeightType type() {
        return gateUp.type;
    }

    public PanelMatrix.Layout layout() {
        return gateUp.layout;
    }

    /** Bytes of weights (and int8 scales) a dense pass reads. */
    public long weightBytes() {
        return gateUp.bytes() + down.bytes();
    }
}

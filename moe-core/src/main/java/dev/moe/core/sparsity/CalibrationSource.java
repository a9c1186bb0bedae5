package dev.moe.core.sparsity;

/**
 * Hidden states entering the MoE blocks (after the post-attention RMSNorm), read by token index so the
 * {@link Calibrator} can stream them in batches and gather the rows routed to one expert without holding a layer's
 * activations in memory. Implementations must be safe to read from several threads.
 */
public interface CalibrationSource extends AutoCloseable {

    /** What {@code calibration.source} of the thresholds file says. */
    String description();

    /** The seed of synthetic inputs, null for recorded ones. */
    Long seed();

    int hiddenSize();

    /** Rows available as the input of MoE layer {@code layer}. */
    int numTokens(int layer);

    /**
     * Copies the rows {@code tokens[from, from + count)} of layer {@code layer}'s input into {@code dst}
     * ({@code [count, hiddenSize]} row-major).
     */
    void read(int layer, int[] tokens, int from, int count, float[] dst);

    /** Releases a file or mapping; nothing by default. */
    @Override
    default void close() {
    }
}

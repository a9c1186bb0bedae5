package dev.moe.core.kernels;

/**
 * The inner kernel of the expert FFN: a panel of a {@link PanelMatrix} times the active input channels of a batch.
 * {@link VectorPanelKernels} is the fast path, {@link ScalarPanelKernels} its oracle.
 */
public interface PanelKernels {

    /**
     * {@code out[t, c] = Σ_k a[t·aStride + rows[k]] · W[panel][rows[k]][c]} for t in [0, numTokens), c in
     * [0, {@link PanelMatrix#WIDTH}): an AXPY over the active rows (input channels) only.
     *
     * @param rows     active input channels, ascending; the others are skipped (their weights never read)
     * @param a        activations, token t's channel r at {@code t·aStride + r}; zero for pruned entries of a token
     * @param out      {@code [numTokens, WIDTH]}, overwritten
     */
    void accumulate(PanelMatrix m, int panel, int[] rows, int numRows, float[] a, int aStride, int numTokens,
                    float[] out);

    /**
     * SCAP pruning of one token's input: {@code out[i] = |v[i] − mode| <= threshold ? 0 : v[i] − mode} for i in
     * [0, n), and {@code active[i] = 1} where the value was kept (left as it was elsewhere), so that after every token
     * of a batch the channels with {@code active[i] != 0} are the union to read. A NaN is kept, not pruned.
     *
     * @return how many of the n values were pruned
     */
    default int prune(float[] v, int vOff, int n, float mode, float threshold, float[] out, int outOff,
                      float[] active) {
        return pruneRange(v, vOff, 0, n, mode, threshold, out, outOff, active);
    }

    /** {@link #prune} of channels [from, to), one by one: the oracle, and the tail of a vector kernel. */
    static int pruneRange(float[] v, int vOff, int from, int to, float mode, float threshold, float[] out, int outOff,
                          float[] active) {
        int pruned = 0;
        for (int i = from; i < to; i++) {
            float c = v[vOff + i] - mode;
            if (Math.abs(c) <= threshold) {
                out[outOff + i] = 0f;
                pruned++;
            } else {
                out[outOff + i] = c;
                active[i] = 1f;
            }
        }
        return pruned;
    }

    /**
     * The active list: writes the channels i in [0, n) with {@code active[i] != 0}, ascending, to {@code rows} and
     * returns how many there are.
     */
    default int activeRows(float[] active, int n, int[] rows) {
        return activeRowsRange(active, 0, n, rows, 0);
    }

    /** {@link #activeRows} of channels [from, to), appended at {@code rows[count..]}: the oracle and a vector tail. */
    static int activeRowsRange(float[] active, int from, int to, int[] rows, int count) {
        for (int i = from; i < to; i++) {
            if (active[i] != 0f) {
                rows[count++] = i;
            }
        }
        return count;
    }

    /** Most panels one {@link #accumulatePanels} call streams side by side. */
    int PANEL_GROUP = 4;

    /**
     * Decode: {@code out[j·WIDTH + c] = Σ_k a[rows[k]] · W[first + j·step][rows[k]][c]} for j in [0, count), count
     * at most {@link #PANEL_GROUP}: {@link #accumulate} of one token on several panels at once. A thread that streams
     * several panels side by side keeps more weight lines in flight than one that reads them one after another
     * (measured on int8 from DRAM, one thread: one stream 17-21 GB/s, four streams 30-33 GB/s, a plain read-sum 32-35).
     *
     * @param a   the token's activations, channel r at {@code a[r]}
     * @param out {@code [count, WIDTH]}, overwritten
     */
    default void accumulatePanels(PanelMatrix m, int first, int step, int count, int[] rows, int numRows, float[] a,
                                  float[] out) {
        float[] one = new float[PanelMatrix.WIDTH];
        for (int j = 0; j < count; j++) {
            accumulate(m, first + j * step, rows, numRows, a, 0, 1, one);
            System.arraycopy(one, 0, out, j * PanelMatrix.WIDTH, PanelMatrix.WIDTH);
        }
    }

    /**
     * {@code acc[c] += Σ_{k in [from, to)} a[rows[k]] · W[c][rows[k]]} for every column c in
     * [0, {@code numPanels · WIDTH}): one token, whole output rows of the active input channels (the sparse batch-1
     * kernel for {@link PanelMatrix.Layout#ROWS}, where each such row is one contiguous run; correct on either layout).
     * Callers split the active rows over threads, each with its own accumulator, and sum the accumulators.
     *
     * @param rows active input channels, ascending; only {@code rows[from..to)} are read
     * @param a    the token's activations, channel r at {@code a[r]}
     * @param acc  {@code [numPanels · WIDTH]} in column order, accumulated into
     */
    void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, float[] acc);

    /**
     * {@code acc[t·width + c] += Σ_{k in [from, to)} a[t·aStride + rows[k]] · W[c][rows[k]]} for t in
     * [0, numTokens), c in [0, width = numPanels · WIDTH): {@link #accumulateRows(PanelMatrix, int[], int, int,
     * float[], float[])} for a small batch, each weight row read once for all the tokens. Callers keep numTokens
     * small (the accumulators are {@code numTokens · width} floats; {@link ExpertFfn} sends at most 16 tokens).
     *
     * @param a   activations, token t's channel r at {@code t·aStride + r}
     * @param acc {@code [numTokens, numPanels · WIDTH]} in column order, accumulated into
     */
    void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, int aStride, int numTokens,
                        float[] acc);
}

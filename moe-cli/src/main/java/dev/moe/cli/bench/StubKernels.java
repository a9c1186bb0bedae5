package dev.moe.cli.bench;

import dev.moe.core.kernels.PanelKernels;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.VectorPanelKernels;
import java.util.Arrays;

/**
 * Panel "kernels" that read no weights: gate/up panels return the expert's precomputed gate·x and up·x (so the h that
 * {@link dev.moe.core.kernels.ExpertFfn} thresholds for down has its real distribution), down panels return zeros.
 * An {@code ExpertFfn} run on these costs everything except the weight streaming and FMAs: input preparation
 * (thresholds, pruned copies, active-row lists), the SiLU epilogue, allocation and pool scheduling.
 */
final class StubKernels implements PanelKernels {
    private static final int W = PanelMatrix.WIDTH;
    private static final int HALF = W / 2;
    private final int hidden;
    private final int inter;
    private final int gateUpPanels;
    private volatile float[] gate; // [tokens, inter] of the expert of the current run
    private volatile float[] up;

    StubKernels(int hidden, int inter) {
        this.hidden = hidden;
        this.inter = inter;
        this.gateUpPanels = (inter + HALF - 1) / HALF;
    }

    /** The pre-activations the next run's gate/up panels return (token t's row at {@code t·inter}). */
    void use(float[] gateX, float[] upX) {
        this.gate = gateX;
        this.up = upX;
    }

    /** The real pruning kernel: its cost is part of what the stub run measures. */
    @Override
    public int prune(float[] v, int vOff, int n, float mode, float threshold, float[] out, int outOff,
                     float[] active) {
        return VectorPanelKernels.INSTANCE.prune(v, vOff, n, mode, threshold, out, outOff, active);
    }

    /** The real active-list kernel, likewise. */
    @Override
    public int activeRows(float[] active, int n, int[] rows) {
        return VectorPanelKernels.INSTANCE.activeRows(active, n, rows);
    }

    @Override
    public void accumulate(PanelMatrix m, int panel, int[] rows, int numRows, float[] a, int aStride, int numTokens,
                           float[] out) {
        boolean isGateUp = m.rows() == hidden && m.numPanels() == gateUpPanels;
        if (!isGateUp) {
            Arrays.fill(out, 0, numTokens * W, 0f);
            return;
        }
        float[] g = gate;
        float[] u = up;
        for (int t = 0; t < numTokens; t++) {
            for (int c = 0; c < HALF; c++) {
                int i = panel * HALF + c;
                boolean real = i < inter;
                out[t * W + c] = real ? g[t * inter + i] : 0f;
                out[t * W + HALF + c] = real ? u[t * inter + i] : 0f;
            }
        }
    }

    /**
     * Gate/up: the split that starts at the first active row adds the whole gate·x and up·x (the other splits add
     * nothing, so the sum over splits is right); down: nothing.
     */
    @Override
    public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, float[] acc) {
        boolean isGateUp = m.rows() == hidden && m.numPanels() == gateUpPanels;
        if (!isGateUp || from != 0) {
            return;
        }
        float[] g = gate;
        float[] u = up;
        for (int i = 0; i < inter; i++) {
            acc[i / HALF * W + i % HALF] += g[i];
            acc[i / HALF * W + HALF + i % HALF] += u[i];
        }
    }

    /** As {@link #accumulateRows(PanelMatrix, int[], int, int, float[], float[])}, token t's row at t·width. */
    @Override
    public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, int aStride, int numTokens,
                               float[] acc) {
        boolean isGateUp = m.rows() == hidden && m.numPanels() == gateUpPanels;
        if (!isGateUp || from != 0) {
            return;
        }
        float[] g = gate;
        float[] u = up;
        int width = m.numPanels() * W;
        for (int t = 0; t < numTokens; t++) {
            for (int i = 0; i < inter; i++) {
                acc[t * width + i / HALF * W + i % HALF] += g[t * inter + i];
                acc[t * width + i / HALF * W + HALF + i % HALF] += u[t * inter + i];
            }
        }
    }
}

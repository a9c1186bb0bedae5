package dev.moe.core.kernels;

/** Plain loops over dequantised weights: the oracle of {@link VectorPanelKernels}. */
public final class ScalarPanelKernels implements PanelKernels {
    public static final ScalarPanelKernels INSTANCE = new ScalarPanelKernels();

    @Override
    public void accumulate(PanelMatrix m, int panel, int[] rows, int numRows, float[] a, int aStride, int numTokens,
                           float[] out) {
        for (int t = 0; t < numTokens; t++) {
            for (int c = 0; c < PanelMatrix.WIDTH; c++) {
                float sum = 0f;
                for (int k = 0; k < numRows; k++) {
                    sum += a[t * aStride + rows[k]] * m.weight(panel, rows[k], c);
                }
                out[t * PanelMatrix.WIDTH + c] = sum;
            }
        }
    }

    @Override
    public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, float[] acc) {
        for (int p = 0; p < m.numPanels(); p++) {
            for (int c = 0; c < PanelMatrix.WIDTH; c++) {
                float sum = acc[p * PanelMatrix.WIDTH + c];
                for (int k = from; k < to; k++) {
                    sum += a[rows[k]] * m.weight(p, rows[k], c);
                }
                acc[p * PanelMatrix.WIDTH + c] = sum;
            }
        }
    }

    @Override
    public void accumulateRows(PanelMatrix m, int[] rows, int from, int to, float[] a, int aStride, int numTokens,
                               float[] acc) {
        int width = m.numPanels() * PanelMatrix.WIDTH;
        for (int t = 0; t < numTokens; t++) {
            for (int p = 0; p < m.numPanels(); p++) {
                for (int c = 0; c < PanelMatrix.WIDTH; c++) {
                    int o = t * width + p * PanelMatrix.WIDTH + c;
                    float sum = acc[o];
                    for (int k = from; k < to; k++) {
                        sum += a[t * aStride + rows[k]] * m.weight(p, rows[k], c);
                    }
                    acc[o] = sum;
                }
            }
        }
    }
}

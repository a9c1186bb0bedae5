package dev.moe.core.kernels;

/** Plain loops: the test oracle of {@link VectorKernels}. */
public final class ScalarKernels implements Kernels {
    public static final ScalarKernels INSTANCE = new ScalarKernels();

    @Override
    public float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        float sum = 0f;
        for (int i = 0; i < n; i++) {
            sum += a[aOff + i] * b[bOff + i];
        }
        return sum;
    }

    @Override
    public void linear(float[] w, int rows, int cols, float[] x, int numTokens, float[] y) {
        for (int t = 0; t < numTokens; t++) {
            for (int r = 0; r < rows; r++) {
                y[t * rows + r] = dot(w, r * cols, x, t * cols, cols);
            }
        }
    }
}

package dev.moe.core.kernels;

/**
 * The float32 math of routers and experts. {@link VectorKernels} is the fast path, {@link ScalarKernels} the
 * obviously-correct oracle every fast kernel is tested against.
 */
public interface Kernels {

    /** {@code Σ_i a[aOff+i] · b[bOff+i]} for i in [0, n). */
    float dot(float[] a, int aOff, float[] b, int bOff, int n);

    /**
     * {@code y[t, r] = Σ_c w[r, c] · x[t, c]}: {@code y = x · wᵀ}, the {@code F.linear} of a batch.
     *
     * @param w          {@code [rows, cols]} row-major (a PyTorch Linear weight)
     * @param x          {@code [numTokens, cols]}
     * @param y          {@code [numTokens, rows]}, overwritten
     */
    void linear(float[] w, int rows, int cols, float[] x, int numTokens, float[] y);

    /** {@code silu(v) = v · sigmoid(v)}. */
    static float silu(float v) {
        return v / (1f + (float) Math.exp(-v));
    }
}

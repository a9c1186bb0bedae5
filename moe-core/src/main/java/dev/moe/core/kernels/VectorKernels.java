package dev.moe.core.kernels;

import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/** Vector API kernels; one species for the whole class, each loop a main part and a scalar tail. */
public final class VectorKernels implements Kernels {
    public static final VectorKernels INSTANCE = new VectorKernels();
    static final VectorSpecies<Float> F = FloatVector.SPECIES_PREFERRED;

    @Override
    public float dot(float[] a, int aOff, float[] b, int bOff, int n) {
        // Two accumulators hide the FMA latency.
        FloatVector acc0 = FloatVector.zero(F);
        FloatVector acc1 = FloatVector.zero(F);
        int step = F.length();
        int i = 0;
        for (int bound = n - 2 * step; i <= bound; i += 2 * step) {
            acc0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), acc0);
            acc1 = FloatVector.fromArray(F, a, aOff + i + step).fma(FloatVector.fromArray(F, b, bOff + i + step), acc1);
        }
        for (int bound = F.loopBound(n); i < bound; i += step) {
            acc0 = FloatVector.fromArray(F, a, aOff + i).fma(FloatVector.fromArray(F, b, bOff + i), acc0);
        }
        float sum = acc0.add(acc1).reduceLanes(VectorOperators.ADD);
        for (; i < n; i++) { // tail
            sum += a[aOff + i] * b[bOff + i];
        }
        return sum;
    }

    @Override
    public void linear(float[] w, int rows, int cols, float[] x, int numTokens, float[] y) {
        // Row-outer: each weight row is read from memory once for all tokens of the batch.
        for (int r = 0; r < rows; r++) {
            int wOff = r * cols;
            for (int t = 0; t < numTokens; t++) {
                y[t * rows + r] = dot(w, wOff, x, t * cols, cols);
            }
        }
    }
}

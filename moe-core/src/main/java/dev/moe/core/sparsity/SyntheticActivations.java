package dev.moe.core.sparsity;

import java.util.SplittableRandom;

/**
 * Hidden states drawn by the project, not by a model: every element standard normal, the same rows for every layer.
 * Row t depends only on (seed, t), so any row can be regenerated on demand and two seeds give independent sets.
 * Thresholds calibrated on these fit synthetic checkpoints and tests; a real model needs its own recorded activations.
 */
public final class SyntheticActivations implements CalibrationSource {
    private final int hiddenSize;
    private final int numTokens;
    private final long seed;

    public SyntheticActivations(int hiddenSize, int numTokens, long seed) {
        if (hiddenSize < 1 || numTokens < 1) {
            throw new IllegalArgumentException("synthetic activations need hidden size and tokens >= 1, got "
                    + hiddenSize + " and " + numTokens);
        }
        this.hiddenSize = hiddenSize;
        this.numTokens = numTokens;
        this.seed = seed;
    }

    @Override
    public String description() {
        return Calibrator.SYNTHETIC_SOURCE;
    }

    @Override
    public Long seed() {
        return seed;
    }

    @Override
    public int hiddenSize() {
        return hiddenSize;
    }

    @Override
    public int numTokens(int layer) {
        return numTokens;
    }

    @Override
    public void read(int layer, int[] tokens, int from, int count, float[] dst) {
        for (int i = 0; i < count; i++) {
            int token = tokens[from + i];
            if (token < 0 || token >= numTokens) {
                throw new IndexOutOfBoundsException("token " + token + " not in [0, " + numTokens + ")");
            }
            SplittableRandom random = new SplittableRandom(mix(mix(seed) + token * 0xD1B54A32D192ED03L));
            int row = i * hiddenSize;
            for (int c = 0; c < hiddenSize; c++) {
                dst[row + c] = (float) random.nextGaussian();
            }
        }
    }

    /** A 64-bit finaliser (murmur3 fmix64): per-token seeds that share no arithmetic structure. */
    private static long mix(long z) {
        z = (z ^ (z >>> 33)) * 0xFF51AFD7ED558CCDL;
        z = (z ^ (z >>> 33)) * 0xC4CEB9FE1A85EC53L;
        return z ^ (z >>> 33);
    }
}

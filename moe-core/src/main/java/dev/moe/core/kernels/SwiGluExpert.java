package dev.moe.core.kernels;

/**
 * One SwiGLU expert (also the shared-expert MLP): {@code down(silu(gate · x) ⊙ (up · x))}.
 *
 * <pre>{@code
 * # transformers, e.g. Qwen2MoeMLP.forward
 * down_proj(act_fn(gate_proj(x)) * up_proj(x))
 * }</pre>
 */
public final class SwiGluExpert {
    private final int hiddenSize;
    private final int intermediateSize;
    private final float[] gateProj; // [intermediateSize, hiddenSize]
    private final float[] upProj;   // [intermediateSize, hiddenSize]
    private final float[] downProj; // [hiddenSize, intermediateSize]

    public SwiGluExpert(int hiddenSize, int intermediateSize, float[] gateProj, float[] upProj, float[] downProj) {
        long inner = (long) hiddenSize * intermediateSize;
        if (gateProj.length != inner || upProj.length != inner || downProj.length != inner) {
            throw new IllegalArgumentException("SwiGLU weights do not match [" + intermediateSize + ", " + hiddenSize + "]");
        }
        this.hiddenSize = hiddenSize;
        this.intermediateSize = intermediateSize;
        this.gateProj = gateProj;
        this.upProj = upProj;
        this.downProj = downProj;
    }

    public int hiddenSize() {
        return hiddenSize;
    }

    public int intermediateSize() {
        return intermediateSize;
    }

    /** Bytes of weights held (float32). */
    public long weightBytes() {
        return 3L * hiddenSize * intermediateSize * Float.BYTES;
    }

    /**
     * Runs the expert on a batch.
     *
     * @param x  {@code [numTokens, hiddenSize]}
     * @param y  {@code [numTokens, hiddenSize]}, overwritten
     */
    public void forward(Kernels kernels, float[] x, int numTokens, float[] y) {
        float[] h = new float[numTokens * intermediateSize];
        intermediate(kernels, x, numTokens, h);
        kernels.linear(downProj, hiddenSize, intermediateSize, h, numTokens, y);
    }

    /**
     * The input of down_proj: {@code h = silu(gate · x) ⊙ (up · x)}.
     *
     * @param x  {@code [numTokens, hiddenSize]}
     * @param h  at least {@code [numTokens, intermediateSize]}; the first {@code numTokens} rows are overwritten
     */
    public void intermediate(Kernels kernels, float[] x, int numTokens, float[] h) {
        float[] up = new float[numTokens * intermediateSize];
        kernels.linear(gateProj, intermediateSize, hiddenSize, x, numTokens, h);
        kernels.linear(upProj, intermediateSize, hiddenSize, x, numTokens, up);
        for (int i = 0; i < up.length; i++) {
            h[i] = Kernels.silu(h[i]) * up[i]; // h = silu(gate·x) ⊙ up·x
        }
    }
}

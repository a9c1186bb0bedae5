package dev.moe.cli.bench;

import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.VectorPanelKernels;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.sparsity.SparsityThresholds;
import java.io.PrintStream;
import java.util.ArrayList;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * Gets the Vector API kernels compiled by C2 before anything is timed: interpreted or C1-compiled Vector API code is
 * orders of magnitude slower, and a background compilation steals a core from a 2-core measurement. Runs a small
 * expert of every weight type (and layout) through the dense and the sparse path, odd and even batches, on every pool.
 */
final class JitWarmup {
    private JitWarmup() {
    }

    /**
     * Batches that reach every kernel: one token, and groups of four tokens, full and partial. A kernel first reached
     * after its caller was compiled costs a deoptimization in the middle of a measurement.
     */
    private static final int[] BATCHES = {1, 2, 3, 4, 5, 8};

    static void run(List<WeightType> types, List<PanelMatrix.Layout> layouts, Collection<KernelPool> pools,
                    double seconds, PrintStream err) {
        long start = System.nanoTime();
        int hidden = 256;
        int inter = 192;
        float[] x = Synth.gaussian(BATCHES[BATCHES.length - 1] * hidden, 99);
        float tx = Synth.thresholdForFraction(x, 0, x.length, 0.5);
        SparsityThresholds th = new SparsityThresholds(tx, 0f, 0.05f, 0f);
        long perPart = (long) (seconds * 1e9 / Math.max(1, types.size() * layouts.size() * pools.size()));
        long calls = 0;
        for (WeightType type : types) {
            for (PanelMatrix.Layout layout : layouts) {
                PackedExpert[] experts = new PackedExpert[4];
                for (int i = 0; i < experts.length; i++) {
                    experts[i] = Synth.rawExpert(hidden, inter, 7 + i).pack(type, layout);
                }
                for (KernelPool pool : pools) {
                    ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, pool, 1.0);
                    long partStart = System.nanoTime();
                    while (System.nanoTime() - partStart < perPart) {
                        for (int b : BATCHES) {
                            float[] y = new float[b * hidden];
                            ffn.run(List.of(new ExpertFfn.Work(experts[0], x, b, null, y)));
                            ffn.run(List.of(new ExpertFfn.Work(experts[0], x, b, th, y)));
                            calls += 2;
                        }
                        // Several experts per run, as a layer's call has.
                        for (SparsityThresholds t : new SparsityThresholds[] {null, th}) {
                            List<ExpertFfn.Work> work = new ArrayList<>();
                            for (int i = 0; i < experts.length; i++) {
                                int b = 1 + i % 3;
                                work.add(new ExpertFfn.Work(experts[i], x, b, t, new float[b * hidden]));
                            }
                            ffn.run(work);
                            calls++;
                        }
                    }
                }
            }
        }
        err.printf(Locale.ROOT, "bench: JIT warm-up: %d small FFN calls in %.1f s%n", calls,
                (System.nanoTime() - start) / 1e9);
    }
}

package dev.moe.cli.bench;

import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.KernelWarmup;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.WeightType;
import java.io.PrintStream;
import java.time.Duration;
import java.util.Collection;
import java.util.List;
import java.util.Locale;

/**
 * Gets the Vector API kernels compiled by C2 before anything is timed ({@link KernelWarmup}, dense and sparse, on
 * every weight type, layout and pool of the run): a background compilation would also steal a core from a 2-core
 * measurement.
 */
final class JitWarmup {
    private JitWarmup() {
    }

    static void run(List<WeightType> types, List<PanelMatrix.Layout> layouts, Collection<KernelPool> pools,
                    double seconds, PrintStream err) {
        long start = System.nanoTime();
        Duration perPart = Duration.ofNanos((long) (seconds * 1e9 / Math.max(1, types.size() * layouts.size()
                * pools.size())));
        long calls = 0;
        for (WeightType type : types) {
            for (PanelMatrix.Layout layout : layouts) {
                for (KernelPool pool : pools) {
                    calls += KernelWarmup.run(type, layout, true, pool, perPart, Long.MAX_VALUE).calls();
                }
            }
        }
        err.printf(Locale.ROOT, "bench: JIT warm-up: %d small FFN calls in %.1f s%n", calls,
                (System.nanoTime() - start) / 1e9);
    }
}

package dev.moe.cli.bench;

import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.KernelWarmup;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.VectorPanelKernels;
import dev.moe.core.kernels.WeightType;
import dev.moe.expert.ExpertServerProperties;
import java.io.PrintStream;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * {@code moe bench warmup}: the first calls of a fresh JVM, as a new expert server sees them, after an optional
 * {@link KernelWarmup} of the length an expert server uses ({@code moe.expert.warmup}). Run it once per budget: the
 * JIT's state is the JVM's, so only the first run in a process is cold.
 */
@Command(name = "warmup", mixinStandardHelpOptions = true, sortOptions = false,
        description = {"Times the first FFN calls of this (fresh) JVM: the top-k experts of one layer, one token per call,"
                + " after a kernel warm-up of --budget (0 = none), as an expert server's first requests after start.",
                "Prints one line per reported call and a JSON line with all of them."})
public final class WarmupBench implements Callable<Integer> {

    @Option(names = "--shape", defaultValue = "qwen3-30b-a3b", paramLabel = "SHAPE",
            description = "Layer shape (its expert shape and top-k): ${COMPLETION-CANDIDATES}, default ${DEFAULT-VALUE}.",
            completionCandidates = LayerNames.class)
    String shape;

    @Option(names = "--dtype", defaultValue = "bf16", paramLabel = "TYPE", description = "f32, bf16 or int8.")
    String dtype;

    @Option(names = "--layout", defaultValue = "panels", paramLabel = "LAYOUT", description = "panels or rows.")
    String layout;

    @Option(names = "--budget", defaultValue = "2s", paramLabel = "TIME",
            description = "Kernel warm-up before the first call (as moe.expert.warmup; 0 = a cold start).")
    String budget;

    @Option(names = "--calls", defaultValue = "300", paramLabel = "N", description = "Calls to time (default 300).")
    int calls;

    @Option(names = "--threads", description = "Kernel pool size (default: all processors).")
    Integer threads;

    @picocli.CommandLine.Spec
    CommandSpec spec;

    static final class LayerNames extends ArrayList<String> {
        LayerNames() {
            super(Shapes.names());
        }
    }

    @Override
    public Integer call() {
        PrintStream out = System.out;
        PrintStream err = System.err;
        Shapes.Layer layer;
        WeightType type;
        PanelMatrix.Layout panelLayout;
        Duration warmup;
        try {
            layer = Shapes.layer(shape);
            type = WeightType.parse(dtype);
            panelLayout = PanelMatrix.Layout.parse(layout);
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        warmup = Duration.ofNanos((long) (Opts.seconds(spec, "--budget", budget) * 1e9));
        if (calls < 1) {
            throw Opts.usage(spec, "--calls must be at least 1, got " + calls);
        }
        if (threads != null && threads < 1) {
            throw Opts.usage(spec, "--threads must be at least 1, got " + threads);
        }
        int hidden = layer.expert().hidden();
        int inter = layer.expert().intermediate();
        err.printf(Locale.ROOT, "bench warmup: packing %d %s experts %dx%d (%s)...%n", layer.topK(), type, hidden,
                inter, panelLayout);
        PackedExpert[] experts = new PackedExpert[layer.topK()];
        for (int e = 0; e < experts.length; e++) {
            experts[e] = Synth.rawExpert(hidden, inter, 1000 + e).pack(type, panelLayout);
        }
        float[] x = Synth.gaussian(hidden, 7);
        double[] ms = new double[calls];
        KernelWarmup.Result result;
        try (KernelPool pool = new KernelPool(threads == null ? Runtime.getRuntime().availableProcessors() : threads)) {
            err.printf(Locale.ROOT, "bench warmup: kernel warm-up of %s...%n", warmup);
            result = KernelWarmup.run(type, panelLayout, false, pool, warmup, Long.MAX_VALUE);
            ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, pool,
                    ExpertServerProperties.defaultSparseCrossover(type, panelLayout));
            for (int c = 0; c < calls; c++) {
                List<ExpertFfn.Work> work = new ArrayList<>();
                for (PackedExpert expert : experts) {
                    work.add(new ExpertFfn.Work(expert, x, 1, null, new float[hidden]));
                }
                long t0 = System.nanoTime();
                ffn.run(work);
                ms[c] = (System.nanoTime() - t0) / 1e6;
            }
        }
        err.printf(Locale.ROOT, "bench warmup: warm-up made %d small FFN calls in %.2f s%n", result.calls(),
                result.seconds());
        for (int c = 1; c <= calls; c = c < 5 ? c + 1 : c * 3 / 2 + 1) {
            err.printf(Locale.ROOT, "  call %4d: %8.2f ms%n", c, ms[c - 1]);
        }
        err.printf(Locale.ROOT, "  call %4d: %8.2f ms (last)%n", calls, ms[calls - 1]);
        StringBuilder json = new StringBuilder();
        json.append(String.format(Locale.ROOT, "{\"bench\":\"warmup\",\"shape\":\"%s\",\"dtype\":\"%s\","
                        + "\"layout\":\"%s\",\"experts\":%d,\"warmup_s\":%.3f,\"warmup_calls\":%d,\"call_ms\":[",
                layer.name(), type.name().toLowerCase(Locale.ROOT), panelLayout.name().toLowerCase(Locale.ROOT),
                experts.length, result.seconds(), result.calls()));
        for (int c = 0; c < calls; c++) {
            json.append(c == 0 ? "" : ",").append(String.format(Locale.ROOT, "%.3f", ms[c]));
        }
        out.println(json.append("]}"));
        return 0;
    }
}

package dev.moe.cli.bench;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.gating.RouterSpec;
import dev.moe.core.gating.RoutingDecision;
import dev.moe.core.gating.TopKRouter;
import dev.moe.core.kernels.ExpertFfn;
import dev.moe.core.kernels.KernelPool;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.SwiGluExpert;
import dev.moe.core.kernels.VectorKernels;
import dev.moe.core.kernels.VectorPanelKernels;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.moe.MoeWeights;
import dev.moe.core.moe.RouterLayer;
import dev.moe.core.sparsity.SparsityThresholds;
import dev.moe.expert.ExpertServerProperties;
import java.io.PrintStream;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.Locale;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Option;

/**
 * {@code moe bench layer}: one MoE layer in process, as the router and an expert server holding every expert would
 * run it: the real gate ({@link RouterLayer#routerLogits} + {@link TopKRouter}), the chosen experts grouped and run in
 * one {@link ExpertFfn} call on the kernel pool, and the weighted combine; tokens/s and where the time goes.
 */
@Command(name = "layer", mixinStandardHelpOptions = true, sortOptions = false,
        resourceBundle = "dev.moe.cli.bench.LayerBench$Help",
        description = {
            "Benchmark one MoE layer in process: gate (router logits + top-k), dispatch (group tokens by expert),"
                    + " experts (one ExpertFfn run over every chosen expert), combine (weighted sum), shared expert.",
            "stdout: one JSON object per configuration; stderr: progress, then a table (--table: on stdout)."})
public final class LayerBench implements Callable<Integer> {

    @Option(names = "--synthetic", paramLabel = "SHAPE",
            description = "Random weights of a real layer shape: qwen3-30b-a3b (128 experts, top-8, 2048x768), olmoe"
                    + " (64, top-8, 2048x1024), mixtral (8, top-2, 4096x14336), or EXPERTSxTOPKxHIDDENxINTERMEDIATE.")
    String synthetic;

    @Option(names = "--model", paramLabel = "DIR", description = "A checkpoint folder (config.json + safetensors).")
    Path model;

    @Option(names = "--layer", description = "With --model: the decoder layer (default: the first MoE layer).")
    Integer layer;

    @Option(names = {"--dtype", "--dtypes"}, split = ",", paramLabel = "TYPE",
            description = "Expert weight types: f32, bf16, int8 (default: bf16,int8).")
    List<String> dtypes;

    @Option(names = "--sparsity", split = ",", paramLabel = "S",
            description = "SCAP sparsities of x and h, thresholds calibrated per expert (default: 0,0.5).")
    List<Double> sparsities;

    @Option(names = "--thresholds", paramLabel = "FILE",
            description = "With --model: the SCAP thresholds file bin/moe calibrate wrote for this checkpoint; the layer"
                    + " runs dense and with them (instead of --sparsity).")
    Path thresholdsFile;
    /** The thresholds file's profile, when given. */
    private dev.moe.core.sparsity.SparsityProfile profile;

    @Option(names = "--batch", split = ",", paramLabel = "N", description = "Tokens per forward (default: 1,8,64).")
    List<Integer> batches;

    @Option(names = "--threads", description = "Kernel pool size (default: all processors).")
    Integer threads;

    @Option(names = "--layout", defaultValue = "panels", paramLabel = "LAYOUT",
            description = "Weight layout of the experts: panels (64-output panels; an expert server's default without a"
                    + " sparsity file) or rows (whole input rows; its default with one of enough target sparsity)"
                    + " (default: ${DEFAULT-VALUE}).")
    String layoutName;
    private dev.moe.core.kernels.PanelMatrix.Layout layout;

    @Option(names = "--crossover",
            description = "Union density above which a projection runs dense, as the expert server's"
                    + " sparse-crossover (default: the expert server's default for the dtype and layout).")
    Double crossover;
    /** The crossover of each dtype of the run: --crossover, or the expert server's default. */
    private double[] crossovers;

    @Mixin
    MeasureOptions measureOptions;

    @Option(names = "--inputs", defaultValue = "16", hidden = true,
            description = "Distinct random token batches rotated per batch size (so routing, and the weights read, vary).")
    int inputs;

    /** The help of the measurement options, with this command's defaults. */
    public static final class Help extends MeasureOptions.Help {
        public Help() {
            super("Shorter measurements.",
                    "Timed repeats; the median is reported (default: 7; --quick: 3).",
                    "Minimum duration of one repeat, long enough to include this path's garbage collections"
                            + " (default: 300ms; --quick: 10ms).",
                    "Warm-up per configuration (default: 1s; --quick: 300ms).");
        }
    }

    /** Calibration tokens for the per-expert thresholds of h. */
    private static final int CALIBRATION_TOKENS = 32;

    /** A loaded layer: router, packed experts per weight type, thresholds per sparsity. */
    private record Layer(String shapeName, String source, int layerIndex, int numExperts, int topK, int hidden,
                         int inter, RouterLayer router, RouterSpec routerSpec, List<WeightType> types,
                         PackedExpert[][] experts, double[] sparsities, SparsityThresholds[][] thresholds) {
    }

    /** One measured configuration. */
    record Row(String shape, String source, int layer, int numExperts, int topK, int hidden, int inter,
               WeightType type, String layout, double sparsity, int batch, int threads, double crossover,
               Measure.Result time,
               double gateMs, double dispatchMs, double expertsMs, double combineMs, double sharedMs,
               double expertsActive, double tokensPerExpert, double weightBytesPerCall, double bwGbps, double prunedX,
               double prunedH, double unionX, double unionH, double sparseShare, double otherLoad, int attempts) {

        Row withLoad(double load, int attempt) {
            return new Row(shape, source, layer, numExperts, topK, hidden, inter, type, layout, sparsity, batch, threads,
                    crossover, time, gateMs, dispatchMs, expertsMs, combineMs, sharedMs, expertsActive, tokensPerExpert,
                    weightBytesPerCall, bwGbps, prunedX, prunedH, unionX, unionH, sparseShare, load, attempt);
        }

        double tokensPerSecond() {
            return batch / (time.medianMs() / 1e3);
        }

        double weightGbps() {
            return weightBytesPerCall / (expertsMs / 1e3) / 1e9;
        }

        String json() {
            return new JsonLine()
                    .put("bench", "layer")
                    .put("shape", shape)
                    .put("source", source)
                    .put("layer", layer)
                    .put("num_experts", numExperts)
                    .put("top_k", topK)
                    .put("hidden", hidden)
                    .put("intermediate", inter)
                    .put("dtype", type.name().toLowerCase(Locale.ROOT))
                    .put("layout", layout)
                    .put("sparsity", sparsity, 3)
                    .put("batch", batch)
                    .put("threads", threads)
                    .put("crossover", crossover, 3)
                    .putTime(time)
                    .put("tokens_per_s", tokensPerSecond(), 1)
                    .put("gate_ms", gateMs, 5)
                    .put("dispatch_ms", dispatchMs, 5)
                    .put("experts_ms", expertsMs, 5)
                    .put("combine_ms", combineMs, 5)
                    .put("shared_ms", sharedMs, 5)
                    .put("experts_active", expertsActive, 2)
                    .put("tokens_per_expert", tokensPerExpert, 3)
                    .put("weight_mib_per_call", weightBytesPerCall / 1048576.0, 2)
                    .put("weight_gbps", weightGbps(), 2)
                    .put("bw_gbps", bwGbps, 2)
                    .putSparsity(prunedX, prunedH, unionX, unionH)
                    .put("sparse_share", sparseShare, 4)
                    .put("other_load", otherLoad, 3)
                    .put("attempts", attempts)
                    .toString();
        }
    }

    @Override
    public Integer call() {
        PrintStream out = System.out;
        PrintStream err = System.err;
        CommandSpec spec = measureOptions.spec;
        if ((synthetic == null) == (model == null)) {
            throw Opts.usage(spec, "give exactly one of --synthetic SHAPE or --model DIR");
        }
        List<WeightType> types = new ArrayList<>();
        try {
            for (String d : dtypes != null ? dtypes : List.of("bf16", "int8")) {
                WeightType t = WeightType.parse(d);
                if (!types.contains(t)) {
                    types.add(t);
                }
            }
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        if (thresholdsFile != null) {
            if (model == null || sparsities != null) {
                throw Opts.usage(spec, "--thresholds needs --model (the checkpoint it was calibrated on) and replaces"
                        + " --sparsity");
            }
            try {
                profile = dev.moe.core.sparsity.SparsityProfile.read(thresholdsFile);
            } catch (RuntimeException e) {
                throw Opts.usage(spec, "--thresholds " + thresholdsFile + ": " + e.getMessage());
            }
        }
        double[] sparsityList = profile != null ? new double[] {0.0, profile.targetSparsity()}
                : Opts.fractions(spec, "--sparsity", sparsities != null ? sparsities : List.of(0.0, 0.5));
        int[] batchList = Opts.positiveInts(spec, "--batch", batches != null ? batches : List.of(1, 8, 64));
        int threadCount = threads != null ? threads : Runtime.getRuntime().availableProcessors();
        if (threadCount < 1) {
            throw Opts.usage(spec, "--threads must be >= 1");
        }
        if (crossover != null && !(crossover >= 0 && crossover <= 1)) {
            throw Opts.usage(spec, "--crossover must be in [0, 1]");
        }
        try {
            layout = dev.moe.core.kernels.PanelMatrix.Layout.parse(layoutName);
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, "--layout: " + e.getMessage());
        }
        if (inputs < 1) {
            throw Opts.usage(spec, "--inputs must be >= 1");
        }
        // --min-time 300ms (--quick: 10ms), --warmup 1s (--quick: 300ms)
        Measure.Settings settings = measureOptions.settings(0.3, 0.01, 1.0, 0.3);
        long bwBytes = measureOptions.bwBytes();

        Shapes.Layer shape;
        try {
            shape = synthetic != null ? Shapes.layer(synthetic) : null;
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        float[] bwBuffer = MachineLimits.buffer(bwBytes);
        MachineLimits.Limits limits = measureOptions.machineLimits(new int[] {threadCount}, bwBuffer, err)[0];
        Layer l;
        try {
            l = shape != null ? synthetic(shape, types, sparsityList, err)
                    : fromCheckpoint(model, types, sparsityList, err);
        } catch (IllegalArgumentException | CheckpointException | dev.moe.core.sparsity.SparsityProfileException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        List<Row> rows = new ArrayList<>();
        long started = System.nanoTime();
        crossovers = new double[types.size()];
        try (KernelPool pool = new KernelPool(threadCount)) {
            ExpertFfn[] ffns = new ExpertFfn[types.size()];
            for (int ti = 0; ti < types.size(); ti++) {
                crossovers[ti] = crossover != null ? crossover
                        : ExpertServerProperties.defaultSparseCrossover(types.get(ti), layout);
                ffns[ti] = new ExpertFfn(VectorPanelKernels.INSTANCE, pool, crossovers[ti]);
            }
            JitWarmup.run(types, List.of(layout), List.of(pool),
                    measureOptions.jitWarmupSeconds(2.0, 1.0), err);
            for (int ti = 0; ti < types.size(); ti++) {
                for (int si = 0; si < sparsityList.length; si++) {
                    int typeIndex = ti;
                    int sparsityIndex = si;
                    for (int b : batchList) {
                        Row row = measureOptions.untilQuiet("during this measurement", err, () -> {
                            // The DRAM bandwidth of a shared VM drifts: measure it right before each row.
                            MachineLimits.Limits now = MachineLimits.remeasureBandwidth(limits, bwBuffer, 3);
                            return measure(l, ffns[typeIndex], typeIndex, sparsityIndex, b, threadCount, settings, now)::withLoad;
                        });
                        rows.add(row);
                        out.println(row.json());
                        out.flush();
                        err.printf(Locale.ROOT, "[%d/%d %.0f s] %s %s sparsity %.2f batch %d: %.3f ms/layer, %.0f"
                                        + " tokens/s%n", rows.size(), types.size() * sparsityList.length * batchList.length,
                                (System.nanoTime() - started) / 1e9, l.shapeName(),
                                row.type().name().toLowerCase(Locale.ROOT), row.sparsity(), b, row.time().medianMs(),
                                row.tokensPerSecond());
                    }
                }
            }
        }
        printTable(measureOptions.table ? out : err, l, rows, limits);
        return 0;
    }

    // ---- loading ----

    private Layer synthetic(Shapes.Layer shape, List<WeightType> types, double[] sparsityList, PrintStream err) {
        int e = shape.numExperts();
        int hidden = shape.expert().hidden();
        int inter = shape.expert().intermediate();
        float[] routerWeight = Synth.gaussian(e * hidden, measureOptions.seed * 31 + 1);
        float scale = (float) (1 / Math.sqrt(hidden)); // logits ~ N(0, 1) for x ~ N(0, 1)
        for (int i = 0; i < routerWeight.length; i++) {
            routerWeight[i] *= scale;
        }
        RouterLayer router = new RouterLayer(0, e, hidden, routerWeight, null, null, null);
        RouterSpec routerSpec = new RouterSpec(MoeConfig.ScoringFunc.SOFTMAX, e, shape.topK(), shape.normTopkProb(),
                1, 1, 1.0);
        long rawBytes = 3L * hidden * inter * Float.BYTES;
        long packedBytes = 0;
        for (WeightType t : types) {
            packedBytes += Synth.gateUpBytes(t, hidden, inter) + Synth.downBytes(t, hidden, inter);
        }
        long need = e * packedBytes + 2 * rawBytes;
        if (need > Runtime.getRuntime().maxMemory()) {
            // Refused before allocating: it would end in an OutOfMemoryError part-way through.
            throw new dev.moe.cli.MoeCli.UserError(String.format(Locale.ROOT, "%d experts in %s need about %.1f GiB"
                            + " of heap, the JVM has %.1f GiB: set MOE_JAVA_OPTS=-Xmx<size>, or fewer --dtype", e, types,
                    need / 1073741824.0, Runtime.getRuntime().maxMemory() / 1073741824.0));
        }
        boolean sparse = Arrays.stream(sparsityList).anyMatch(s -> s > 0);
        Calibration calibration = new Calibration(Synth.gaussian(CALIBRATION_TOKENS * hidden,
                measureOptions.seed * 31 + 2), sparsityList);
        PackedExpert[][] experts = new PackedExpert[types.size()][e];
        SparsityThresholds[][] thresholds = new SparsityThresholds[sparsityList.length][e];
        Ticker ticker = new Ticker(String.format(Locale.ROOT, "bench: %s: %d random experts %dx%d packed as %s%s",
                shape.name(), e, hidden, inter, types, sparse ? " + calibration" : ""), e, err);
        IntStream indices = IntStream.range(0, e);
        (rawBytes < (256L << 20) ? indices.parallel() : indices).forEach(i -> {
            Synth.RawExpert raw = Synth.rawExpert(hidden, inter, measureOptions.seed * 1_000_033L + i);
            calibration.thresholds(i, thresholds, x -> {
                float[][] gu = Synth.gateUp(raw, x, CALIBRATION_TOKENS);
                return Synth.hidden(gu[0], gu[1]);
            });
            for (int t = 0; t < types.size(); t++) {
                experts[t][i] = raw.pack(types.get(t), layout);
            }
            ticker.step();
        });
        return new Layer(shape.name(), "synthetic", 0, e, shape.topK(), hidden, inter, router, routerSpec, types,
                experts, sparsityList, thresholds);
    }

    private Layer fromCheckpoint(Path dir, List<WeightType> types, double[] sparsityList, PrintStream err) {
        try (Checkpoint c = Checkpoint.open(dir)) {
            MoeConfig config = MoeConfig.from(c.config()).validate();
            if (profile != null) {
                profile.requireFingerprint(c.fingerprint());
            }
            int index = layer != null ? layer : config.moeLayers().getFirst();
            if (!config.isMoeLayer(index)) {
                throw new IllegalArgumentException("layer " + index + " has no MoE block; MoE layers: "
                        + config.moeLayers());
            }
            int e = config.numExperts();
            int hidden = config.hiddenSize();
            int inter = config.moeIntermediateSize();
            RouterLayer router = MoeWeights.loadRouterLayer(c, config, index);
            boolean sparse = Arrays.stream(sparsityList).anyMatch(s -> s > 0);
            Calibration calibration = new Calibration(Synth.gaussian(CALIBRATION_TOKENS * hidden,
                    measureOptions.seed * 31 + 2), sparsityList);
            PackedExpert[][] experts = new PackedExpert[types.size()][e];
            SparsityThresholds[][] thresholds = new SparsityThresholds[sparsityList.length][e];
            Ticker ticker = new Ticker(String.format(Locale.ROOT, "bench: %s layer %d: loading %d experts %dx%d as %s%s",
                    dir.getFileName(), index, e, hidden, inter, types, sparse ? " + calibration" : ""), e, err);
            for (int i = 0; i < e; i++) {
                for (int t = 0; t < types.size(); t++) {
                    experts[t][i] = MoeWeights.loadPackedExpert(c, config, index, i, types.get(t), layout);
                }
                if (profile != null) {
                    thresholds[1][i] = profile.thresholds(index, i); // [0]: dense
                } else if (sparse) {
                    SwiGluExpert f32 = MoeWeights.loadExpert(c, config, index, i);
                    calibration.thresholds(i, thresholds, x -> {
                        float[] h = new float[CALIBRATION_TOKENS * inter];
                        f32.intermediate(VectorKernels.INSTANCE, x, CALIBRATION_TOKENS, h);
                        return h;
                    });
                }
                ticker.step();
            }
            return new Layer(config.family().modelType, dir.toString(), index, e, config.numExpertsPerToken(), hidden,
                    inter, router, RouterSpec.of(config), types, experts, sparsityList, thresholds);
        }
    }

    /**
     * The calibration tokens and, per sparsity, x's threshold on them (shared: every expert sees the same x
     * distribution) and x pruned with it. An expert's h threshold comes from the h of that pruned x, as the server
     * computes h (from the dense x it pruned 0.52 and 0.76 at 0.5 and 0.7).
     */
    private static final class Calibration {
        final double[] sparsities;
        final float[] xThresholds;
        final float[][] prunedX;

        Calibration(float[] x, double[] sparsities) {
            this.sparsities = sparsities;
            this.xThresholds = new float[sparsities.length];
            this.prunedX = new float[sparsities.length][];
            for (int s = 0; s < sparsities.length; s++) {
                if (sparsities[s] == 0) {
                    continue;
                }
                float tx = Synth.thresholdForFraction(x, 0, x.length, sparsities[s]);
                xThresholds[s] = tx;
                prunedX[s] = Synth.pruned(x, x.length, tx);
            }
        }

        /** Fills {@code into[s][expert]} for every sparsity s > 0; {@code hOf} maps an x to the expert's h. */
        void thresholds(int expert, SparsityThresholds[][] into, java.util.function.Function<float[], float[]> hOf) {
            for (int s = 0; s < sparsities.length; s++) {
                if (prunedX[s] != null) {
                    float[] h = hOf.apply(prunedX[s]);
                    into[s][expert] = new SparsityThresholds(xThresholds[s], 0f,
                            Synth.thresholdForFraction(h, 0, h.length, sparsities[s]), 0f);
                }
            }
        }
    }

    // ---- one forward ----

    /** Phase times and statistics accumulated over the calls of one repeat. */
    private static final class Accumulator {
        final long[][] phaseNanos; // [repeat][phase]
        int repeat = -1;
        long calls;
        long expertsActive;
        long assignments;
        double weightBytes;
        double prunedX;
        double prunedH;
        double unionX;
        double unionH;
        long sparseProjections;
        long projections;

        Accumulator(int repeats) {
            phaseNanos = new long[repeats][5];
        }
    }

    private Row measure(Layer l, ExpertFfn ffn, int typeIndex, int sparsityIndex, int batch, int threadCount,
                        Measure.Settings settings, MachineLimits.Limits limits) {
        int hidden = l.hidden();
        PackedExpert[] experts = l.experts()[typeIndex];
        SparsityThresholds[] th = l.thresholds()[sparsityIndex];
        long[] projectionBytes = Synth.projectionBytes(experts[0]);
        float[][] xs = new float[inputs][];
        for (int i = 0; i < inputs; i++) {
            xs[i] = Synth.gaussian(batch * hidden, measureOptions.seed * 1_000_003L + batch * 131L + i);
        }
        Accumulator acc = new Accumulator(settings.repeats());
        int[] next = {0};
        Runnable forward = () -> {
            float[] x = xs[next[0]];
            next[0] = (next[0] + 1) % xs.length;
            forward(l, ffn, experts, th, projectionBytes, x, batch, acc);
        };
        Measure.Result time = Measure.run(settings, forward, new Measure.Listener() {
            @Override
            public void repeatStarts(int repeat) {
                Arrays.fill(acc.phaseNanos[repeat], 0); // a repeated measurement starts over
                acc.repeat = repeat;
            }

            @Override
            public void repeatEnds(int repeat, int calls) {
                acc.repeat = -1;
            }
        });
        long[] phases = acc.phaseNanos[time.medianRepeat()];
        double perCall = 1e6 * time.callsPerRepeat();
        double calls = Math.max(1, acc.calls);
        double projections = Math.max(1, acc.projections);
        return new Row(l.shapeName(), l.source(), l.layerIndex(), l.numExperts(), l.topK(), hidden, l.inter(),
                l.types().get(typeIndex), layout.name().toLowerCase(Locale.ROOT), l.sparsities()[sparsityIndex], batch,
                threadCount, crossovers[typeIndex], time,
                phases[0] / perCall, phases[1] / perCall, phases[2] / perCall, phases[3] / perCall,
                phases[4] / perCall, acc.expertsActive / calls, (double) acc.assignments / Math.max(1, acc.expertsActive),
                acc.weightBytes / calls, limits.bwGbps(), acc.prunedX / projections, acc.prunedH / projections,
                acc.unionX / projections, acc.unionH / projections, acc.sparseProjections / (2 * projections),
                Double.NaN, 1);
    }

    private static void forward(Layer l, ExpertFfn ffn, PackedExpert[] experts, SparsityThresholds[] th,
                                long[] projectionBytes, float[] x, int numTokens, Accumulator acc) {
        int hidden = l.hidden();
        int numExperts = l.numExperts();
        long t0 = System.nanoTime();
        // Gate: router_logits = x · W_gateᵀ, then the family's top-k.
        float[] logits = l.router().routerLogits(VectorKernels.INSTANCE, x, numTokens);
        RoutingDecision routing = TopKRouter.route(l.routerSpec(), logits, numTokens, l.router().correctionBias());
        long t1 = System.nanoTime();
        // Dispatch: group the (token, slot) assignments by expert and gather each expert's rows.
        int k = routing.topK();
        int[] ids = routing.expertIds();
        int[] start = new int[numExperts + 1];
        for (int id : ids) {
            start[id + 1]++;
        }
        for (int e = 0; e < numExperts; e++) {
            start[e + 1] += start[e];
        }
        int[] slots = new int[ids.length]; // assignment index (token·k + slot), grouped by expert
        int[] fill = Arrays.copyOf(start, numExperts);
        for (int a = 0; a < ids.length; a++) {
            slots[fill[ids[a]]++] = a;
        }
        List<ExpertFfn.Work> work = new ArrayList<>();
        int[] workStart = new int[numExperts];
        for (int e = 0; e < numExperts; e++) {
            int n = start[e + 1] - start[e];
            if (n == 0) {
                continue;
            }
            float[] rows = new float[n * hidden];
            for (int i = 0; i < n; i++) {
                System.arraycopy(x, slots[start[e] + i] / k * hidden, rows, i * hidden, hidden);
            }
            workStart[work.size()] = start[e];
            work.add(new ExpertFfn.Work(experts[e], rows, n, th[e], new float[n * hidden]));
        }
        long t2 = System.nanoTime();
        // Experts: one FFN run over every chosen expert, both loops spread over the kernel pool.
        ExpertFfn.Stats[] stats = ffn.run(work);
        long t3 = System.nanoTime();
        // Combine: out[t] += w · expert(x_t).
        float[] out = new float[numTokens * hidden];
        float[] weights = routing.routingWeights();
        for (int w = 0; w < work.size(); w++) {
            ExpertFfn.Work item = work.get(w);
            float[] y = item.y();
            for (int i = 0; i < item.numTokens(); i++) {
                int a = slots[workStart[w] + i];
                float weight = weights[a];
                int row = a / k * hidden;
                int yRow = i * hidden;
                for (int h = 0; h < hidden; h++) {
                    out[row + h] += weight * y[yRow + h];
                }
            }
        }
        long t4 = System.nanoTime();
        l.router().addSharedExpert(VectorKernels.INSTANCE, x, numTokens, out);
        long t5 = System.nanoTime();
        acc.calls++;
        acc.expertsActive += work.size();
        acc.assignments += ids.length;
        for (ExpertFfn.Stats s : stats) {
            acc.weightBytes += projectionBytes[0] * s.gateUp().unionDensity() + projectionBytes[1] * s.down().unionDensity();
            acc.prunedX += s.gateUp().prunedFraction();
            acc.prunedH += s.down().prunedFraction();
            acc.unionX += s.gateUp().unionDensity();
            acc.unionH += s.down().unionDensity();
            acc.sparseProjections += (s.gateUp().sparse() ? 1 : 0) + (s.down().sparse() ? 1 : 0);
            acc.projections++;
        }
        if (acc.repeat >= 0) {
            long[] p = acc.phaseNanos[acc.repeat];
            p[0] += t1 - t0;
            p[1] += t2 - t1;
            p[2] += t3 - t2;
            p[3] += t4 - t3;
            p[4] += t5 - t4;
        }
    }

    // ---- output ----

    private static void printTable(PrintStream p, Layer l, List<Row> rows, MachineLimits.Limits limits) {
        p.println();
        p.printf(Locale.ROOT, "bench layer: %s (%s), layer %d: %d experts, top-%d, hidden %d, expert intermediate %d;"
                        + " %d kernel threads; read bandwidth %.1f GB/s at start (re-measured before each row for %%bw), FMA peak"
                        + " %.1f GFLOP/s%n", l.shapeName(),
                l.source(), l.layerIndex(), l.numExperts(), l.topK(), l.hidden(), l.inter(), limits.threads(),
                limits.bwGbps(), limits.peakGflops());
        p.println("  ms = one layer forward (median of repeats); phases from the median repeat: gate = router logits +"
                + " top-k, dispatch = group tokens by expert + gather rows,");
        p.println("  experts = one ExpertFfn run over all chosen experts, combine = weighted sum; GB/s = expert weight"
                + " bytes read (union rows) / experts time");
        p.println("  pruned/union are means over the experts' projections (0 pruned, 1 union for those that ran dense above"
                + " the crossover); other = cores used by other processes meanwhile");
        p.println();
        String header = String.format(Locale.ROOT,
                "%-5s %-6s %4s %5s %9s %9s %8s %8s %9s %8s %8s %7s %7s %6s %5s %11s %11s %5s",
                "dtype", "layout", "spar", "batch", "ms", "tokens/s", "gate", "dispatch", "experts", "combine", "shared",
                "experts", "tok/exp", "GB/s", "%bw", "pruned x/h", "union x/h", "other");
        p.println(header);
        p.println("-".repeat(header.length()));
        for (Row r : rows) {
            p.printf(Locale.ROOT, "%-5s %-6s %4.2f %5d %9.3f %9.0f %8.3f %8.3f %9.3f %8.3f %8.3f %7.1f %7.2f %6.1f %4.0f%%"
                            + " %5.2f/%5.2f %5.2f/%5.2f %5.2f%n",
                    r.type().name().toLowerCase(Locale.ROOT), r.layout(), r.sparsity(), r.batch(), r.time().medianMs(),
                    r.tokensPerSecond(), r.gateMs(), r.dispatchMs(), r.expertsMs(), r.combineMs(), r.sharedMs(),
                    r.expertsActive(), r.tokensPerExpert(), r.weightGbps(), 100 * r.weightGbps() / r.bwGbps(),
                    r.prunedX(), r.prunedH(), r.unionX(), r.unionH(), r.otherLoad());
        }
        boolean qwen3 = l.numExperts() == 128 && l.topK() == 8 && l.hidden() == 2048 && l.inter() == 768;
        if (qwen3) {
            p.println();
            // llama.cpp's MUL_MAT_ID numbers the targets come from time the experts' gate, up and down only: compare
            // the experts column, and show the whole layer beside it.
            p.println("targets (qwen3-30b-a3b layer, rows present in this run; experts' gate+up+down as the llama.cpp"
                    + " reference, whole layer in parentheses):");
            for (Row r : rows) {
                double target = Double.NaN;
                String what = null;
                if (r.batch() == 1 && r.sparsity() == 0 && r.type() == WeightType.BF16) {
                    target = 2.4;
                    what = "batch 1 bf16";
                } else if (r.batch() == 1 && r.sparsity() == 0 && r.type() == WeightType.INT8) {
                    target = 1.4;
                    what = "batch 1 int8";
                } else if (r.batch() == 1 && r.sparsity() == 0.5 && r.type() == WeightType.INT8) {
                    target = 0.8;
                    what = "batch 1 int8 sparsity 0.5";
                } else if (r.batch() == 64 && r.sparsity() == 0 && r.type() == WeightType.BF16) {
                    target = 45;
                    what = "batch 64 bf16";
                }
                if (what != null) {
                    p.printf(Locale.ROOT, "  %-28s <= %5.1f ms: %8.3f ms (%.3f)  %s%n", what, target, r.expertsMs(),
                            r.time().medianMs(), r.expertsMs() <= target ? "ok" : "MISS");
                }
            }
        }
    }
}

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
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Locale;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.stream.IntStream;
import picocli.CommandLine.Command;
import picocli.CommandLine.Model.CommandSpec;
import picocli.CommandLine.Mixin;
import picocli.CommandLine.Option;

/**
 * {@code moe bench kernel}: one expert's SwiGLU FFN ({@link ExpertFfn} on {@link VectorPanelKernels}) over real expert
 * shapes, weight types, SCAP sparsities, batch sizes and thread counts, with weights streamed from DRAM, next to the
 * machine's measured read bandwidth and FMA peak.
 */
@Command(name = "kernel", mixinStandardHelpOptions = true, sortOptions = false,
        resourceBundle = "dev.moe.cli.bench.KernelBench$Help",
        description = {
            "Benchmark one expert's FFN (ExpertFfn + VectorPanelKernels) against the machine's measured limits.",
            "Weights: enough distinct random experts that they exceed 4x the last-level cache (>= 128 MiB), rotated"
                    + " call after call, so every call streams its weights from DRAM.",
            "Sparsity s: SCAP thresholds pruning a fraction s of the batch's x (gate/up input) and of its h (down"
                    + " input), sparse path forced (crossover 1.0).",
            "Layouts: panels (64-output panels) or rows (each input channel's output row contiguous: a sparse single"
                    + " token runs as whole rows split over the threads); with both, one group measures both, and"
                    + " 'x panels' compares every row with the panels dense time of the same group.",
            "stdout: one JSON object per configuration; stderr: progress, then a table (--table: on stdout)."})
public final class KernelBench implements Callable<Integer> {
    private static final String[] DEFAULT_SHAPES = {"qwen3-30b-a3b", "olmoe", "mixtral"};

    @Option(names = "--shapes", split = ",", paramLabel = "SHAPE",
            description = "Expert shapes: qwen3-30b-a3b (2048x768), olmoe (2048x1024), mixtral (4096x14336), or"
                    + " HIDDENxINTERMEDIATE (default: all three; --quick: qwen3-30b-a3b).")
    List<String> shapes;

    @Option(names = "--dtypes", split = ",", paramLabel = "TYPE",
            description = "Weight types: f32, bf16, int8 (default: all; --quick: bf16,int8).")
    List<String> dtypes;

    @Option(names = "--sparsity", split = ",", paramLabel = "S",
            description = "Fractions of x and h pruned, in [0, 1); 0 = dense (default: 0,0.5,0.7; --quick: 0,0.5).")
    List<Double> sparsities;

    @Option(names = "--batch", split = ",", paramLabel = "N",
            description = "Tokens per call (default: 1,4,16,64; --quick: 1,16).")
    List<Integer> batches;

    @Option(names = "--threads", split = ",", paramLabel = "T",
            description = "Kernel pool sizes (default: 1,2; --quick: all processors).")
    List<Integer> threads;

    @Option(names = "--layouts", split = ",", paramLabel = "LAYOUT",
            description = "Weight layouts: panels, rows (default: panels).")
    List<String> layouts;

    @Mixin
    MeasureOptions measureOptions;

    @Option(names = "--shape-override", hidden = true, description = "One HIDDENxINTERMEDIATE shape instead of --shapes.")
    String shapeOverride;

    @Option(names = "--pool-mib", hidden = true, description = "Weight bytes to rotate through per (shape, dtype).")
    Integer poolMib;

    /** The help of the measurement options, with this command's defaults. */
    public static final class Help extends MeasureOptions.Help {
        public Help() {
            super("Fewer configurations, repeats and shorter measurements.",
                    "Timed repeats per configuration; the median is reported (default: 7; --quick: 3).",
                    "Minimum duration of one repeat, e.g. 50ms (default: 50ms; --quick: 10ms).",
                    "Warm-up per configuration (default: 250ms; --quick: 100ms).");
        }
    }

    /** One measured configuration. */
    record Row(Shapes.Expert shape, WeightType type, PanelMatrix.Layout layout, int batch, double sparsity, int threads,
               Measure.Result time, int poolExperts, long poolBytes, long expertBytes, double weightGbps, double bwGbps,
               double gflops, double gflopsExecuted, double peakGflops, double speedup, double speedupVsPanels,
               double prunedX, double prunedH,
               double unionX, double unionH, boolean sparsePath, double overheadMs, double maskMs, double otherLoad,
               int attempts) {

        double kernelMs() {
            return time.medianMs() - overheadMs;
        }

        double maskFraction() {
            double k = kernelMs();
            return k > 0 ? maskMs / k : Double.NaN;
        }

        String json() {
            return new JsonLine()
                    .put("bench", "kernel")
                    .put("shape", shape.name())
                    .put("hidden", shape.hidden())
                    .put("intermediate", shape.intermediate())
                    .put("dtype", type.name().toLowerCase(Locale.ROOT))
                    .put("layout", layout.name().toLowerCase(Locale.ROOT))
                    .put("batch", batch)
                    .put("sparsity", sparsity, 3)
                    .put("threads", threads)
                    .putTime(time)
                    .put("pool_experts", poolExperts)
                    .put("pool_mib", poolBytes / 1048576.0, 1)
                    .put("expert_mib", expertBytes / 1048576.0, 2)
                    .put("weight_gbps", weightGbps, 2)
                    .put("bw_gbps", bwGbps, 2)
                    .put("bw_fraction", weightGbps / bwGbps, 3)
                    .put("gflops", gflops, 2)
                    .put("gflops_executed", gflopsExecuted, 2)
                    .put("peak_gflops", peakGflops, 1)
                    .put("peak_fraction", gflopsExecuted / peakGflops, 3)
                    .put("speedup_vs_dense", speedup, 3)
                    .put("speedup_vs_panels_dense", speedupVsPanels, 3)
                    .putSparsity(prunedX, prunedH, unionX, unionH)
                    .put("sparse_path", sparsePath)
                    .put("overhead_ms", overheadMs, 5)
                    .put("mask_ms", maskMs, 5)
                    .put("kernel_ms", kernelMs(), 5)
                    .put("mask_fraction", maskFraction(), 4)
                    .put("other_load", otherLoad, 3)
                    .put("attempts", attempts)
                    .toString();
        }
    }

    /** Averages of ExpertFfn.Stats over the calls of a configuration. */
    private static final class StatsSum {
        long calls;
        long sparseCalls;
        double prunedX;
        double prunedH;
        double unionX;
        double unionH;

        void add(ExpertFfn.Stats s) {
            calls++;
            if (s.gateUp().sparse() && s.down().sparse()) {
                sparseCalls++;
            }
            prunedX += s.gateUp().prunedFraction();
            prunedH += s.down().prunedFraction();
            unionX += s.gateUp().unionDensity();
            unionH += s.down().unionDensity();
        }
    }

    @Override
    public Integer call() {
        PrintStream out = System.out;
        PrintStream err = System.err;
        boolean quick = measureOptions.quick;
        CommandSpec spec = measureOptions.spec;
        List<Shapes.Expert> shapeList = new ArrayList<>();
        try {
            if (shapeOverride != null) {
                shapeList.add(Shapes.expert(shapeOverride));
            } else {
                for (String s : shapes != null ? shapes : List.of(quick ? new String[] {"qwen3-30b-a3b"} : DEFAULT_SHAPES)) {
                    shapeList.add(Shapes.expert(s));
                }
            }
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        List<WeightType> types = new ArrayList<>();
        try {
            for (String d : dtypes != null ? dtypes : quick ? List.of("bf16", "int8") : List.of("f32", "bf16", "int8")) {
                types.add(WeightType.parse(d));
            }
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        List<PanelMatrix.Layout> layoutList = new ArrayList<>();
        try {
            for (String l : layouts != null ? layouts : List.of("panels")) {
                PanelMatrix.Layout layout = PanelMatrix.Layout.parse(l);
                if (!layoutList.contains(layout)) {
                    layoutList.add(layout);
                }
            }
        } catch (IllegalArgumentException e) {
            throw Opts.usage(spec, e.getMessage());
        }
        double[] sparsityList = Opts.fractions(spec, "--sparsity",
                sparsities != null ? sparsities : quick ? List.of(0.0, 0.5) : List.of(0.0, 0.5, 0.7));
        int[] batchList = Opts.positiveInts(spec, "--batch",
                batches != null ? batches : quick ? List.of(1, 16) : List.of(1, 4, 16, 64));
        int[] threadList = Opts.positiveInts(spec, "--threads", threads != null ? threads
                : quick ? List.of(Runtime.getRuntime().availableProcessors()) : List.of(1, 2));
        // --min-time 50ms (--quick: 10ms), --warmup 250ms (--quick: 100ms)
        Measure.Settings settings = measureOptions.settings(0.05, 0.01, 0.25, 0.1);
        Measure.Settings stubSettings = settings.scaled(0.5);
        long llc = MachineLimits.llcBytes();
        long poolBytes = poolMib != null ? Math.max(1, poolMib) * 1048576L
                : Math.max(128L << 20, 4 * (llc > 0 ? llc : 32L << 20));
        long bwBytes = measureOptions.bwBytes();

        int maxBatch = Arrays.stream(batchList).max().orElseThrow();
        long configs = (long) shapeList.size() * types.size() * layoutList.size() * batchList.length
                * threadList.length * sparsityList.length;
        err.printf(Locale.ROOT, "bench kernel: %d configurations (%d shapes x %d dtypes x %d layouts x %d batches x %d"
                        + " thread counts x %d sparsities); %d repeats >= %.0f ms each, median reported; weights"
                        + " rotated over >= %s%n",
                configs, shapeList.size(), types.size(), layoutList.size(), batchList.length, threadList.length,
                sparsityList.length, settings.repeats(), settings.minSeconds() * 1e3, MachineLimits.mib(poolBytes));

        int[] distinctThreads = Arrays.stream(threadList).distinct().toArray();
        float[] bwBuffer = MachineLimits.buffer(bwBytes);
        MachineLimits.Limits[] limits = measureOptions.machineLimits(distinctThreads, bwBuffer, err);
        Map<Integer, MachineLimits.Limits> limitsByThreads = new LinkedHashMap<>();
        for (MachineLimits.Limits l : limits) {
            limitsByThreads.put(l.threads(), l);
        }

        Map<Integer, KernelPool> pools = new LinkedHashMap<>();
        List<Row> rows = new ArrayList<>();
        long started = System.nanoTime();
        try {
            for (int t : distinctThreads) {
                pools.put(t, new KernelPool(t));
            }
            JitWarmup.run(types, layoutList, pools.values(), measureOptions.jitWarmupSeconds(3.0, 1.0), err);
            long done = 0;
            for (int si = 0; si < shapeList.size(); si++) {
                Shapes.Expert shape = shapeList.get(si);
                long shapeSeed = measureOptions.seed * 7919 + si;
                float[] x = Synth.gaussian(maxBatch * shape.hidden(), shapeSeed);
                Reference reference = new Reference(shape, x, batchList, sparsityList);
                for (WeightType type : types) {
                    List<Pool> layoutPools = new ArrayList<>();
                    for (PanelMatrix.Layout layout : layoutList) {
                        layoutPools.add(buildPool(shape, type, layout, poolBytes, shapeSeed, x, maxBatch, reference,
                                err));
                    }
                    for (int b : batchList) {
                        for (int t : threadList) {
                            KernelPool kp = pools.get(t);
                            String during = String.format(Locale.ROOT, "while %s %s batch %d threads %d ran",
                                    shape.name(), type.name().toLowerCase(Locale.ROOT), b, t);
                            List<Row> group = measureOptions.untilQuiet(during, err, () -> {
                                // DRAM bandwidth of a shared VM drifts (+-20% within minutes): measure it again
                                // right before these rows, so each row's bw_gbps is from the same minute as its ms.
                                MachineLimits.Limits lim = MachineLimits.remeasureBandwidth(limitsByThreads.get(t),
                                        bwBuffer, 3);
                                // Every layout in one group: their ratios come from the same minutes.
                                List<Measured> dense = new ArrayList<>();
                                List<List<Measured>> measured = new ArrayList<>();
                                for (Pool pool : layoutPools) {
                                    Measured d = measure(shape, pool, reference, x, b, 0.0, kp, settings, stubSettings);
                                    List<Measured> m = new ArrayList<>();
                                    for (double s : sparsityList) {
                                        m.add(s == 0.0 ? d
                                                : measure(shape, pool, reference, x, b, s, kp, settings, stubSettings));
                                    }
                                    dense.add(d);
                                    measured.add(m);
                                }
                                int panels = layoutList.indexOf(PanelMatrix.Layout.PANELS);
                                Measured panelsDense = panels >= 0 ? dense.get(panels) : null;
                                return (other, attempt) -> {
                                    List<Row> made = new ArrayList<>();
                                    for (int l = 0; l < layoutPools.size(); l++) {
                                        for (int i = 0; i < sparsityList.length; i++) {
                                            made.add(row(shape, type, layoutPools.get(l), b, sparsityList[i], t,
                                                    measured.get(l).get(i), dense.get(l), panelsDense, lim, other,
                                                    attempt));
                                        }
                                    }
                                    return made;
                                };
                            });
                            for (Row row : group) {
                                rows.add(row);
                                out.println(row.json());
                                out.flush();
                                done++;
                                err.printf(Locale.ROOT, "[%d/%d %.0f s] %s %s %s batch %d sparsity %.2f threads %d:"
                                                + " %.4f ms, %.1f GB/s, %.2fx dense, %.2fx panels dense%n",
                                        done, configs, (System.nanoTime() - started) / 1e9, shape.name(),
                                        row.type().name().toLowerCase(Locale.ROOT),
                                        row.layout().name().toLowerCase(Locale.ROOT), b, row.sparsity(), t,
                                        row.time().medianMs(), row.weightGbps(), row.speedup(),
                                        row.speedupVsPanels());
                            }
                        }
                    }
                }
            }
        } finally {
            pools.values().forEach(KernelPool::close);
        }
        PrintStream tableOut = measureOptions.table ? out : err;
        printTable(tableOut, rows, limits, (System.nanoTime() - started) / 1e9);
        return 0;
    }

    /**
     * Per expert of a shape (shared by its dtypes and layouts): gate·x and up·x of the dense float32 expert (what the
     * stub kernels return) and the h threshold of every (batch, sparsity): the one that prunes a fraction s of the h
     * of the first b tokens, h computed from x pruned as the server prunes it (with h of the dense x, a threshold
     * pruned 0.52 and 0.76 at 0.5 and 0.7, since pruning x shrinks h).
     */
    private static final class Reference {
        final Map<Integer, float[][]> byIndex = new java.util.concurrent.ConcurrentHashMap<>();
        final Shapes.Expert shape;
        final float[] x;
        final int[] batches;
        final double[] sparsities;

        Reference(Shapes.Expert shape, float[] x, int[] batches, double[] sparsities) {
            this.shape = shape;
            this.x = x;
            this.batches = batches;
            this.sparsities = sparsities;
        }

        float[][] of(int index, Synth.RawExpert raw) {
            return byIndex.computeIfAbsent(index, i -> compute(raw));
        }

        private float[][] compute(Synth.RawExpert raw) {
            int hidden = shape.hidden();
            int maxBatch = Arrays.stream(batches).max().orElseThrow();
            float[][] gu = Synth.gateUp(raw, x, maxBatch);
            float[] hThresholds = new float[batches.length * sparsities.length];
            for (int bi = 0; bi < batches.length; bi++) {
                int b = batches[bi];
                for (int si = 0; si < sparsities.length; si++) {
                    double s = sparsities[si];
                    if (s == 0.0) {
                        continue;
                    }
                    float[] pruned = Synth.pruned(x, b * hidden, xThreshold(x, hidden, b, s));
                    float[][] g = Synth.gateUp(raw, pruned, b);
                    float[] h = Synth.hidden(g[0], g[1]);
                    hThresholds[bi * sparsities.length + si] = Synth.thresholdForFraction(h, 0, h.length, s);
                }
            }
            return new float[][] {gu[0], gu[1], hThresholds};
        }

        float hThreshold(float[][] ref, int b, double s) {
            int bi = 0;
            while (batches[bi] != b) {
                bi++;
            }
            int si = 0;
            while (sparsities[si] != s) {
                si++;
            }
            return ref[2][bi * sparsities.length + si];
        }
    }

    /** The x threshold that prunes a fraction s of the first b tokens' x. */
    private static float xThreshold(float[] x, int hidden, int b, double s) {
        return Synth.thresholdForFraction(x, 0, b * hidden, s);
    }

    /** The experts of one (shape, dtype), rotated call after call. */
    private record Pool(WeightType type, PanelMatrix.Layout layout, PackedExpert[] experts, float[][][] reference, long[] projectionBytes,
                        long expertBytes) {
        int size() {
            return experts.length;
        }
    }

    private Pool buildPool(Shapes.Expert shape, WeightType type, PanelMatrix.Layout layout, long poolBytes,
                           long shapeSeed, float[] x, int maxBatch, Reference reference, PrintStream err) {
        long expertBytes = Synth.gateUpBytes(type, shape.hidden(), shape.intermediate())
                + Synth.downBytes(type, shape.hidden(), shape.intermediate());
        int count = (int) Math.max(1, (poolBytes + expertBytes - 1) / expertBytes);
        long rawBytes = 3L * shape.hidden() * shape.intermediate() * Float.BYTES;
        String label = String.format(Locale.ROOT, "bench: %s %s %s: %d random expert%s x %.1f MiB = %.0f MiB",
                shape.name(), type.name().toLowerCase(Locale.ROOT), layout.name().toLowerCase(Locale.ROOT), count, count == 1 ? "" : "s",
                expertBytes / 1048576.0, count * expertBytes / 1048576.0);
        long need = 2 * rawBytes + count * expertBytes;
        if (need > Runtime.getRuntime().maxMemory()) {
            // Refused before allocating: it would end in an OutOfMemoryError part-way through.
            throw new dev.moe.cli.MoeCli.UserError(String.format(Locale.ROOT, "%s needs about %.1f GiB of heap, the"
                            + " JVM has %.1f GiB: set MOE_JAVA_OPTS=-Xmx<size>, or lower --pool-mib or the shapes",
                    label.substring("bench: ".length()), need / 1073741824.0,
                    Runtime.getRuntime().maxMemory() / 1073741824.0));
        }
        PackedExpert[] experts = new PackedExpert[count];
        float[][][] ref = new float[count][][];
        long t0 = System.nanoTime();
        if (count == 1 && rawBytes > (64L << 20)) {
            // One big expert: say what the slow steps are.
            err.printf(Locale.ROOT, "%s: generating %.0f MiB of float32 weights...%n", label, rawBytes / 1048576.0);
            Synth.RawExpert raw = Synth.rawExpert(shape.hidden(), shape.intermediate(), shapeSeed * 100_003L);
            err.printf(Locale.ROOT, "%s: reference activations (float32, %d tokens, and the pruned inputs' h)..."
                    + " (%.1f s)%n", label, maxBatch, (System.nanoTime() - t0) / 1e9);
            ref[0] = reference.of(0, raw);
            err.printf(Locale.ROOT, "%s: packing... (%.1f s)%n", label, (System.nanoTime() - t0) / 1e9);
            experts[0] = raw.pack(type, layout);
        } else {
            Ticker ticker = new Ticker(label + ": packing", count, err);
            boolean parallel = rawBytes < (256L << 20);
            IntStream indices = IntStream.range(0, count);
            (parallel ? indices.parallel() : indices).forEach(i -> {
                Synth.RawExpert raw = Synth.rawExpert(shape.hidden(), shape.intermediate(), shapeSeed * 100_003L + i);
                ref[i] = reference.of(i, raw);
                experts[i] = raw.pack(type, layout);
                ticker.step();
            });
        }
        err.printf(Locale.ROOT, "%s: ready in %.1f s%n", label, (System.nanoTime() - t0) / 1e9);
        return new Pool(type, layout, experts, ref, Synth.projectionBytes(experts[0]), experts[0].weightBytes());
    }

    /** Times of one (pool, batch, sparsity, threads) and the stats of its calls. */
    private record Measured(Measure.Result time, Measure.Result stub, StatsSum stats) {
    }

    private Measured measure(Shapes.Expert shape, Pool pool, Reference reference, float[] x, int b, double s,
                             KernelPool kp, Measure.Settings settings, Measure.Settings stubSettings) {
        int hidden = shape.hidden();
        int inter = shape.intermediate();
        int n = pool.size();
        float[] xb = Arrays.copyOf(x, b * hidden);
        float[] y = new float[b * hidden];
        float thresholdX = s > 0 ? xThreshold(x, hidden, b, s) : Float.NaN;
        @SuppressWarnings("unchecked")
        List<ExpertFfn.Work>[] work = new List[n];
        for (int i = 0; i < n; i++) {
            SparsityThresholds th = s > 0
                    ? new SparsityThresholds(thresholdX, 0f, reference.hThreshold(pool.reference()[i], b, s), 0f)
                    : null;
            work[i] = List.of(new ExpertFfn.Work(pool.experts()[i], xb, b, th, y));
        }
        ExpertFfn ffn = new ExpertFfn(VectorPanelKernels.INSTANCE, kp, 1.0);
        StatsSum stats = new StatsSum();
        int[] next = {0};
        Measure.Result time = Measure.run(settings, () -> {
            int i = next[0];
            next[0] = i + 1 == n ? 0 : i + 1;
            stats.add(ffn.run(work[i])[0]);
        });
        StubKernels stubKernels = new StubKernels(hidden, inter);
        ExpertFfn stubFfn = new ExpertFfn(stubKernels, kp, 1.0);
        Measure.Result stub = Measure.run(stubSettings, () -> {
            int i = next[0];
            next[0] = i + 1 == n ? 0 : i + 1;
            stubKernels.use(pool.reference()[i][0], pool.reference()[i][1]);
            stubFfn.run(work[i]);
        });
        return new Measured(time, stub, stats);
    }

    private Row row(Shapes.Expert shape, WeightType type, Pool pool, int b, double s, int t, Measured m,
                    Measured dense, Measured panelsDense, MachineLimits.Limits lim, double otherLoad, int attempts) {
        StatsSum st = m.stats();
        double calls = Math.max(1, st.calls);
        double px = st.prunedX / calls;
        double ph = st.prunedH / calls;
        double ux = st.unionX / calls;
        double uh = st.unionH / calls;
        double seconds = m.time().medianMs() / 1e3;
        long[] pb = pool.projectionBytes();
        double bytes = pb[0] * ux + pb[1] * uh;
        double macs = (double) shape.hidden() * shape.intermediate() * b;
        double usefulFlops = 2 * macs * (2 * (1 - px) + (1 - ph));
        double executedFlops = 2 * macs * (2 * ux + uh);
        double speedup = s == 0.0 ? 1.0 : dense.time().medianMs() / m.time().medianMs();
        double speedupVsPanels = panelsDense == null ? Double.NaN
                : panelsDense == m ? 1.0 : panelsDense.time().medianMs() / m.time().medianMs();
        // Fixed CPU costs: best of repeats (their noise is only ever upward).
        double overhead = m.stub().minMs();
        double mask = s == 0.0 ? 0.0 : Math.max(0.0, m.stub().minMs() - dense.stub().minMs());
        return new Row(shape, type, pool.layout(), b, s, t, m.time(), pool.size(), pool.size() * pool.expertBytes(),
                pool.expertBytes(), bytes / seconds / 1e9, lim.bwGbps(), usefulFlops / seconds / 1e9,
                executedFlops / seconds / 1e9, lim.peakGflops(), speedup, speedupVsPanels, px, ph, ux, uh,
                st.calls > 0 && st.sparseCalls == st.calls, overhead, mask, otherLoad, attempts);
    }

    void printTable(PrintStream p, List<Row> rows, MachineLimits.Limits[] limits, double seconds) {
        p.println();
        p.println("bench kernel: one expert's FFN per call, median of repeats, weights streamed from DRAM");
        for (MachineLimits.Limits l : limits) {
            double lo = rows.stream().filter(r -> r.threads() == l.threads()).mapToDouble(Row::bwGbps).min()
                    .orElse(l.bwGbps());
            double hi = rows.stream().filter(r -> r.threads() == l.threads()).mapToDouble(Row::bwGbps).max()
                    .orElse(l.bwGbps());
            p.printf(Locale.ROOT, "  %d thread%s: read bandwidth %.1f GB/s at start (re-measured before each batch:"
                            + " %.1f-%.1f GB/s; each row uses its own), FMA peak %.1f GFLOP/s%n",
                    l.threads(), l.threads() == 1 ? " " : "s", l.bwGbps(), lo, hi, l.peakGflops());
        }
        p.println("  GB/s = weight bytes actually needed (dense bytes x union density per projection) / time;"
                + " %bw of measured read bandwidth");
        p.println("  GFLOP/s = 2*hidden*inter*batch*(2*(1-pruned_x)+(1-pruned_h)) / time (useful work);"
                + " %peak = executed (union rows x all tokens) / FMA peak");
        p.println("  mask% = mask ms / kernel ms; mask ms = ExpertFfn time with weight-free stub kernels, sparse minus dense"
                + " (thresholding, pruned copies, active lists); kernel ms = ms - stub time (best of repeats)");
        p.println("  other = cores used by other processes while the row was measured (groups above " + LoadMonitor.BUSY
                + " are measured again after a quiet second, up to " + measureOptions.attempts
                + " attempts in all)");
        p.println();
        p.println("  x dense = this layout's dense ms / ms; x panels = the panels layout's dense ms (same group) / ms");
        p.println();
        String header = String.format(Locale.ROOT,
                "%-14s %-5s %-6s %5s %4s %3s %9s %7s %5s %8s %6s %7s %8s %11s %11s %8s %6s %5s",
                "shape", "dtype", "layout", "batch", "spar", "thr", "ms", "GB/s", "%bw", "GFLOP/s", "%peak", "x dense",
                "x panels", "pruned x/h", "union x/h", "mask ms", "mask%", "other");
        p.println(header);
        p.println("-".repeat(header.length()));
        for (Row r : rows) {
            String vsPanels = Double.isNaN(r.speedupVsPanels()) ? "-"
                    : String.format(Locale.ROOT, "%.2fx", r.speedupVsPanels());
            p.printf(Locale.ROOT, "%-14s %-5s %-6s %5d %4.2f %3d %9.4f %7.1f %4.0f%% %8.1f %5.0f%% %6.2fx %8s"
                            + " %5.2f/%5.2f %5.2f/%5.2f %8.4f %5.1f%% %5.2f%n",
                    r.shape().name(), r.type().name().toLowerCase(Locale.ROOT),
                    r.layout().name().toLowerCase(Locale.ROOT), r.batch(), r.sparsity(), r.threads(),
                    r.time().medianMs(), r.weightGbps(), 100 * r.weightGbps() / r.bwGbps(), r.gflops(),
                    100 * r.gflopsExecuted() / r.peakGflops(), r.speedup(), vsPanels, r.prunedX(), r.prunedH(), r.unionX(),
                    r.unionH(), r.maskMs(), 100 * r.maskFraction(), r.otherLoad());
        }
        printTargets(p, rows);
        p.printf(Locale.ROOT, "%n%d configurations in %.0f s%n", rows.size(), seconds);
    }

    /** The project's kernel targets, checked on whatever rows were measured. */
    static void printTargets(PrintStream p, List<Row> rows) {
        p.println();
        p.println("targets (rows present in this run):");
        for (Row r : rows) {
            String id = String.format(Locale.ROOT, "%s %s %s batch %d threads %d", r.shape().name(),
                    r.type().name().toLowerCase(Locale.ROOT), r.layout().name().toLowerCase(Locale.ROOT), r.batch(),
                    r.threads());
            double bwFraction = r.weightGbps() / r.bwGbps();
            double peakFraction = r.gflopsExecuted() / r.peakGflops();
            if (r.sparsity() == 0 && r.batch() == 1 && r.type() != WeightType.F32) {
                p.printf(Locale.ROOT, "  dense batch 1 >= 80%% of read bandwidth   %-40s %5.1f%%  %s%n", id,
                        100 * bwFraction, bwFraction >= 0.8 ? "ok" : "MISS");
            }
            if (r.batch() == 1 && (r.sparsity() == 0.5 || r.sparsity() == 0.7)) {
                // Against the fastest dense there is: the panels layout's when it was measured in the same group.
                double x = Double.isNaN(r.speedupVsPanels()) ? r.speedup() : r.speedupVsPanels();
                double target = r.sparsity() == 0.5 ? 1.7 : 2.4;
                p.printf(Locale.ROOT, "  sparsity %.1f batch 1 >= %.1fx dense        %-40s %5.2fx  %s%n", r.sparsity(),
                        target, id, x, x >= target ? "ok" : "MISS");
            }
            if (r.sparsity() == 0 && r.batch() == 16) {
                boolean ok = peakFraction >= 0.5 || bwFraction >= 0.8;
                p.printf(Locale.ROOT, "  dense batch 16 >= 50%% peak or at bw      %-40s %4.0f%% peak %4.0f%% bw  %s%n",
                        id, 100 * peakFraction, 100 * bwFraction, ok ? "ok" : "MISS");
            }
        }
        List<Row> sparse = rows.stream().filter(r -> r.sparsity() > 0).toList();
        if (!sparse.isEmpty()) {
            Row worst = sparse.get(0);
            int ok = 0;
            for (Row r : sparse) {
                double f = r.maskFraction();
                if (Double.isFinite(f) && f <= 0.05) {
                    ok++;
                }
                if (!(worst.maskFraction() >= f)) {
                    worst = r;
                }
            }
            p.printf(Locale.ROOT, "  mask building <= 5%% of kernel time      %d of %d sparse rows ok; worst %.1f%% (%s %s"
                            + " batch %d sparsity %.1f threads %d)%n", ok, sparse.size(), 100 * worst.maskFraction(),
                    worst.shape().name(), worst.type().name().toLowerCase(Locale.ROOT), worst.batch(),
                    worst.sparsity(), worst.threads());
        }
    }
}

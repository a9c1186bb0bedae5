package dev.moe.core.kernels;

import dev.moe.core.sparsity.SparsityThresholds;
import java.util.List;
import java.util.concurrent.ConcurrentHashMap;
import jdk.incubator.vector.FloatVector;
import jdk.incubator.vector.VectorOperators;
import jdk.incubator.vector.VectorSpecies;

/**
 * The FFN of the experts of one call, on the kernel pool: {@code y = down(silu(gate·x) ⊙ up·x)} for every (expert,
 * batch of its tokens), each expert's weights read once for all its tokens.
 *
 * <p>Two parallel loops: gate/up over every (expert, gate/up panel), then down over every (expert, down panel); even a
 * call with a single expert keeps every core busy. What lies between and after them per expert (summing whole-row
 * accumulators, SwiGLU, pruning h) runs in parallel over the experts too. A single token's panels go in groups of
 * {@link PanelKernels#PANEL_GROUP} far-apart panels per unit, streamed side by side
 * ({@link PanelKernels#accumulatePanels}). With thresholds (SCAP), inputs are pruned per token
 * ({@code |v − mode| <= threshold} → 0) and only the union of the batch's active channels is read; when that union is
 * denser than {@code sparseCrossover} the projection runs dense and exact instead, since skipping would save little.
 *
 * <p>A projection of up to {@link #MAX_ROW_TOKENS} tokens whose matrix is in {@link PanelMatrix.Layout#ROWS} runs as
 * whole rows instead ({@link PanelKernels#accumulateRows}): the active rows (all of them when dense) are split over the
 * pool's threads, each summing its share of full output rows into its own accumulator (one row of it per token), and
 * the accumulators are added up at the end.
 * Every active row is then one contiguous run the prefetcher follows, not 64-weight runs scattered over the panels.
 */
public final class ExpertFfn {
    private static final int W = PanelMatrix.WIDTH;
    private static final int HALF = PackedExpert.HALF;
    private static final ConcurrentHashMap<Integer, int[]> ALL_ROWS = new ConcurrentHashMap<>();
    /** Per-thread panel outputs, reused across calls: big batches would otherwise churn the young generation. */
    private static final ThreadLocal<float[]> PANEL_OUT = ThreadLocal.withInitial(() -> new float[0]);
    /** The calling thread's whole-row accumulators and pruning buffers, reused across calls. */
    private static final ThreadLocal<CallScratch> CALL_SCRATCH = ThreadLocal.withInitial(CallScratch::new);

    private final PanelKernels kernels;
    private final KernelPool pool;
    private final double sparseCrossover;

    /**
     * @param sparseCrossover union density above which a projection runs dense (e.g. 0.75; 1.0 = always sparse
     *                        when thresholds are given, 0.0 = never)
     */
    public ExpertFfn(PanelKernels kernels, KernelPool pool, double sparseCrossover) {
        this.kernels = kernels;
        this.pool = pool;
        this.sparseCrossover = sparseCrossover;
    }

    /**
     * One expert's batch.
     *
     * @param expert      the expert
     * @param x           {@code [numTokens, hiddenSize]}
     * @param thresholds  SCAP thresholds, or null for the dense exact path
     * @param y           {@code [numTokens, hiddenSize]}, overwritten
     */
    public record Work(PackedExpert expert, float[] x, int numTokens, SparsityThresholds thresholds, float[] y) {
    }

    /**
     * What a projection did in one call.
     *
     * @param sparse        true when the pruned (sparse) path ran
     * @param unionDensity  fraction of input channels read (active in at least one token)
     * @param prunedFraction fraction of the batch's input values pruned (0 on the dense path)
     */
    public record ProjectionStats(boolean sparse, double unionDensity, double prunedFraction) {
    }

    /** Per work item: gate/up and down statistics. */
    public record Stats(ProjectionStats gateUp, ProjectionStats down) {
    }

    /** Prepared inputs of one projection of one work item. */
    private record Input(float[] activations, int stride, int[] rows, int numRows, float mode, ProjectionStats stats) {
    }

    public Stats[] run(List<Work> work) {
        int n = work.size();
        int splits = pool.threads();
        CallScratch scratch = CALL_SCRATCH.get();
        if (n > 0) {
            // Every projection's pruning buffers, grown here: the pool's threads (h is pruned there) only index them
            scratch.scratch(2 * n - 1);
        }
        Input[] gateUpInputs = new Input[n];
        float[][] hidden = new float[n][];
        int[] guStart = new int[n + 1];
        int[] guSlot = new int[n]; // first accumulator of a whole-row item, else -1
        int slots = 0;
        for (int w = 0; w < n; w++) {
            Work item = work.get(w);
            PackedExpert e = item.expert();
            gateUpInputs[w] = prepare(scratch.scratch(2 * w), item.x(), item.numTokens(), e.hiddenSize,
                    item.thresholds() == null ? Float.NaN : item.thresholds().gateUpThreshold(),
                    item.thresholds() == null ? 0f : item.thresholds().gateUpMode());
            hidden[w] = new float[item.numTokens() * e.intermediateSize];
            guSlot[w] = wholeRows(e.gateUp, item.numTokens()) ? slots : -1;
            if (guSlot[w] >= 0) {
                scratch.reserve(slots, splits, item.numTokens() * e.gateUp.numPanels * W);
                slots += splits;
            }
            guStart[w + 1] = guStart[w] + (guSlot[w] >= 0 ? splits : panelUnits(e.gateUp, item.numTokens()));
        }
        // Loop 1: gate/up panels (or row splits) → h = silu(gate·x) ⊙ up·x
        pool.parallelFor(guStart[n], unit -> {
            int w = find(guStart, unit);
            if (guSlot[w] >= 0) {
                rowSplit(work.get(w).expert().gateUp, gateUpInputs[w], work.get(w).numTokens(), unit - guStart[w],
                        splits, scratch, guSlot[w]);
            } else if (work.get(w).numTokens() == 1) {
                gateUpGroup(work.get(w), gateUpInputs[w], unit - guStart[w], hidden[w]);
            } else {
                gateUpPanel(work.get(w), gateUpInputs[w], unit - guStart[w], hidden[w]);
            }
        });
        // Between the loops, per item and in parallel (with several experts this was the calling thread's work while
        // the others waited): sum the whole-row accumulators into h, then prune h
        Input[] downInputs = new Input[n];
        pool.parallelFor(n, w -> {
            Work item = work.get(w);
            PackedExpert e = item.expert();
            if (guSlot[w] >= 0) {
                int tokens = item.numTokens();
                int width = e.gateUp.numPanels * W;
                float[] sum = scratch.sum(guSlot[w], splits, tokens * width);
                for (int p = 0; p < e.gateUp.numPanels; p++) {
                    gateUpFinish(e, gateUpInputs[w].mode(), p, sum, p * W, width, tokens, hidden[w]);
                }
            }
            downInputs[w] = prepare(scratch.scratch(2 * w + 1), hidden[w], item.numTokens(), e.intermediateSize,
                    item.thresholds() == null ? Float.NaN : item.thresholds().downThreshold(),
                    item.thresholds() == null ? 0f : item.thresholds().downMode());
        });
        int[] downStart = new int[n + 1];
        int[] downSlot = new int[n];
        slots = 0;
        for (int w = 0; w < n; w++) {
            Work item = work.get(w);
            PackedExpert e = item.expert();
            downSlot[w] = wholeRows(e.down, item.numTokens()) ? slots : -1;
            if (downSlot[w] >= 0) {
                scratch.reserve(slots, splits, item.numTokens() * e.down.numPanels * W);
                slots += splits;
            }
            downStart[w + 1] = downStart[w] + (downSlot[w] >= 0 ? splits : panelUnits(e.down, item.numTokens()));
        }
        // Loop 2: down panels (or row splits) → y
        pool.parallelFor(downStart[n], unit -> {
            int w = find(downStart, unit);
            if (downSlot[w] >= 0) {
                rowSplit(work.get(w).expert().down, downInputs[w], work.get(w).numTokens(), unit - downStart[w],
                        splits, scratch, downSlot[w]);
            } else if (work.get(w).numTokens() == 1) {
                downGroup(work.get(w), downInputs[w], unit - downStart[w]);
            } else {
                downPanel(work.get(w), downInputs[w], unit - downStart[w]);
            }
        });
        pool.parallelFor(slots > 0 ? n : 0, w -> { // the whole-row accumulators → y, per item in parallel
            if (downSlot[w] >= 0) {
                Work item = work.get(w);
                PackedExpert e = item.expert();
                int tokens = item.numTokens();
                int width = e.down.numPanels * W;
                float[] sum = scratch.sum(downSlot[w], splits, tokens * width);
                for (int p = 0; p < e.down.numPanels; p++) {
                    downFinish(e, downInputs[w].mode(), p, sum, p * W, width, tokens, item.y());
                }
            }
        });
        Stats[] stats = new Stats[n];
        for (int w = 0; w < n; w++) {
            stats[w] = new Stats(gateUpInputs[w].stats(), downInputs[w].stats());
        }
        scratch.trim();
        return stats;
    }

    /** Floats of scratch the calling thread keeps between calls (at most about {@link CallScratch#RETAINED_FLOATS}). */
    static long retainedScratchFloats() {
        return CALL_SCRATCH.get().retainedFloats();
    }

    /**
     * Applies the thresholds: each token's values with {@code |v − mode| <= threshold} become 0, the others v − mode;
     * the rows to read are the union over tokens. Falls back to all rows and raw values (dense, exact) without
     * thresholds or when the union is denser than the crossover.
     */
    private Input prepare(PruneScratch scratch, float[] values, int numTokens, int channels, float threshold,
                          float mode) {
        int[] all = ALL_ROWS.computeIfAbsent(channels, ExpertFfn::identity);
        if (Float.isNaN(threshold)) {
            return dense(values, channels, all);
        }
        scratch.reserve(channels);
        // Room for two tokens at first, doubled at each check below: a batch that stops after a token or two never
        // allocates (and zeroes) numTokens × channels values it will not use
        int capacity = Math.min(numTokens, 2);
        float[] pruned = scratch.pruned.length >= capacity * channels ? scratch.pruned : new float[capacity * channels];
        capacity = Math.min(numTokens, pruned.length / channels);
        float[] active = scratch.active; // 1 where some token keeps the channel
        java.util.Arrays.fill(active, 0, channels, 0f);
        long prunedCount = 0;
        for (int t = 0; t < numTokens; t++) {
            if (t == capacity) {
                capacity = Math.min(numTokens, 2 * capacity);
                pruned = java.util.Arrays.copyOf(pruned, capacity * channels);
            }
            prunedCount += kernels.prune(values, t * channels, channels, mode, threshold, pruned, t * channels, active);
            // The union only grows: once it is over the crossover the projection runs dense whatever the other tokens
            // keep, so stop pruning (checked after 1, 2, 4, ... tokens; at sparsity 0.5 a batch stops after one or two)
            int done = t + 1;
            if (done < numTokens && (done & (done - 1)) == 0
                    && kernels.activeRows(active, channels, scratch.rows) > sparseCrossover * channels) {
                return dense(values, channels, all);
            }
        }
        scratch.pruned = pruned; // kept for the next call (run() trims what a thread keeps)
        int[] rows = scratch.rows;
        int numRows = kernels.activeRows(active, channels, rows);
        double density = (double) numRows / channels;
        if (density > sparseCrossover) {
            return dense(values, channels, all);
        }
        return new Input(pruned, channels, rows, numRows, mode,
                new ProjectionStats(true, density, (double) prunedCount / ((long) numTokens * channels)));
    }

    /**
     * Most tokens of a projection that runs as whole rows on a ROWS matrix (one weight pass for all of them, the
     * accumulators {@code numTokens × width} per thread); above it the panel loop, whose 64-column chunks are a full
     * row apart on ROWS. Measured on the Qwen3 expert, 2 threads, whole rows against the panel loop on ROWS: bf16 batch
     * 2-8 2-3.5x faster, 12 and 16 1.2-1.6x, 64 even; int8 batch 16 even, 64 1.5x slower. Accumulators at the cap:
     * 16 × 2048 floats = 128 KiB per thread.
     */
    static final int MAX_ROW_TOKENS = 16;

    /**
     * Whole rows: a projection of at most {@link #MAX_ROW_TOKENS} tokens on a ROWS matrix, sparse or dense (on ROWS,
     * whole rows beat the panel loop for a small batch, whose 64-weight chunks are a full row apart there).
     */
    private static boolean wholeRows(PanelMatrix m, int numTokens) {
        return m.layout == PanelMatrix.Layout.ROWS && numTokens <= MAX_ROW_TOKENS;
    }

    /** The projection's raw inputs, all rows: dense and exact. */
    private static Input dense(float[] values, int channels, int[] all) {
        return new Input(values, channels, all, channels, 0f, new ProjectionStats(false, 1.0, 0.0));
    }

    /**
     * Split {@code split} of {@code splits}: its share of the active rows, for every token, into accumulator
     * {@code first + split} ({@code [numTokens, width]}).
     */
    private void rowSplit(PanelMatrix m, Input in, int numTokens, int split, int splits, CallScratch scratch,
                          int first) {
        float[] out = scratch.zeroed(first + split, numTokens * m.numPanels * W);
        int from = (int) ((long) in.numRows() * split / splits);
        int to = (int) ((long) in.numRows() * (split + 1) / splits);
        kernels.accumulateRows(m, in.rows(), from, to, in.activations(), in.stride(), numTokens, out);
    }

    /**
     * Pool units of a panel loop: one per panel for a batch; for one token, one per group of up to
     * {@link PanelKernels#PANEL_GROUP} panels {@code g, g + groups, g + 2·groups, ...} (far apart: each its own stream).
     */
    private static int panelUnits(PanelMatrix m, int numTokens) {
        return numTokens == 1 ? groups(m) : m.numPanels;
    }

    private static int groups(PanelMatrix m) {
        return (m.numPanels + PanelKernels.PANEL_GROUP - 1) / PanelKernels.PANEL_GROUP;
    }

    /** Panels {@code group + j·groups} that exist. */
    private static int groupSize(PanelMatrix m, int group) {
        int groups = groups(m);
        return Math.min(PanelKernels.PANEL_GROUP, (m.numPanels - group + groups - 1) / groups);
    }

    private void gateUpGroup(Work item, Input in, int group, float[] hidden) {
        PackedExpert e = item.expert();
        int groups = groups(e.gateUp);
        int count = groupSize(e.gateUp, group);
        float[] out = panelOut(PanelKernels.PANEL_GROUP);
        kernels.accumulatePanels(e.gateUp, group, groups, count, in.rows(), in.numRows(), in.activations(), out);
        for (int j = 0; j < count; j++) {
            gateUpFinish(e, in.mode(), group + j * groups, out, j * W, W, 1, hidden);
        }
    }

    private void downGroup(Work item, Input in, int group) {
        PackedExpert e = item.expert();
        int groups = groups(e.down);
        int count = groupSize(e.down, group);
        float[] out = panelOut(PanelKernels.PANEL_GROUP);
        kernels.accumulatePanels(e.down, group, groups, count, in.rows(), in.numRows(), in.activations(), out);
        for (int j = 0; j < count; j++) {
            downFinish(e, in.mode(), group + j * groups, out, j * W, W, 1, item.y());
        }
    }

    private void gateUpPanel(Work item, Input in, int panel, float[] hidden) {
        PackedExpert e = item.expert();
        int n = item.numTokens();
        float[] out = panelOut(n);
        kernels.accumulate(e.gateUp, panel, in.rows(), in.numRows(), in.activations(), in.stride(), n, out);
        gateUpFinish(e, in.mode(), panel, out, 0, W, n, hidden);
    }

    /** Gate/up panel outputs ({@code out[outOff + t·outStride + c]}) → {@code hidden}. */
    private static void gateUpFinish(PackedExpert e, float mode, int panel, float[] out, int outOff, int outStride,
                                     int n, float[] hidden) {
        int inter = e.intermediateSize;
        int first = panel * HALF;
        int columns = Math.min(HALF, inter - first);
        for (int t = 0; t < n; t++) {
            int o = outOff + t * outStride;
            int h = t * inter + first;
            int c = 0;
            // Vectorized: the scalar Math.exp of every hidden value was about a tenth of a batch-16 int8 call
            for (int bound = SILU.loopBound(columns); c < bound; c += SILU.length()) {
                // Mode-centering: W·x = W·(x − m) + m·Σ_j W[:, j]
                FloatVector gate = FloatVector.fromArray(SILU, e.gateRowSums, first + c).mul(mode)
                        .add(FloatVector.fromArray(SILU, out, o + c));
                FloatVector up = FloatVector.fromArray(SILU, e.upRowSums, first + c).mul(mode)
                        .add(FloatVector.fromArray(SILU, out, o + HALF + c));
                // act_fn(gate_proj(x)) * up_proj(x), silu(v) = v / (1 + e^−v)
                gate.div(gate.neg().lanewise(VectorOperators.EXP).add(1f)).mul(up).intoArray(hidden, h + c);
            }
            for (; c < columns; c++) {
                float gate = out[o + c] + mode * e.gateRowSums[first + c];
                float up = out[o + HALF + c] + mode * e.upRowSums[first + c];
                hidden[h + c] = Kernels.silu(gate) * up;
            }
        }
    }

    private static final VectorSpecies<Float> SILU = FloatVector.SPECIES_PREFERRED;

    private void downPanel(Work item, Input in, int panel) {
        PackedExpert e = item.expert();
        int n = item.numTokens();
        float[] out = panelOut(n);
        kernels.accumulate(e.down, panel, in.rows(), in.numRows(), in.activations(), in.stride(), n, out);
        downFinish(e, in.mode(), panel, out, 0, W, n, item.y());
    }

    /** Down panel outputs ({@code out[outOff + t·outStride + c]}) → {@code y}. */
    private static void downFinish(PackedExpert e, float mode, int panel, float[] out, int outOff, int outStride, int n,
                                   float[] y) {
        int hiddenSize = e.hiddenSize;
        int columns = Math.min(W, hiddenSize - panel * W);
        for (int t = 0; t < n; t++) {
            int row = t * hiddenSize + panel * W;
            for (int c = 0; c < columns; c++) {
                y[row + c] = out[outOff + t * outStride + c] + mode * e.downRowSums[panel * W + c];
            }
        }
    }

    /**
     * One projection's pruned inputs, active flags and active rows, reused by its calling thread from call to call (at
     * batch 64 they were 0.7 MB of garbage per call, and the allocation showed in the mask time).
     */
    private static final class PruneScratch {
        float[] pruned = new float[0];
        float[] active = new float[0];
        int[] rows = new int[0];

        void reserve(int channels) {
            if (active.length < channels) {
                active = new float[channels];
                rows = new int[channels];
            }
        }
    }

    /**
     * A calling thread's scratch: whole-row accumulators (slot s is written by the one pool unit that owns it during a
     * loop, then summed by the caller) and pruning buffers (one per projection of each work item). Grown on demand;
     * after each call {@link #trim} keeps at most {@link #RETAINED_FLOATS} of it, so a thread that once served a
     * big batch (16384 tokens × 8 experts of 2048 + 768 channels would be 1.5 GB) does not hold it for good.
     */
    private static final class CallScratch {
        /** Floats a calling thread keeps between calls: 16 MiB (the buffers of 64 experts × 16 tokens × 2048 + 768). */
        static final long RETAINED_FLOATS = 4L << 20;

        private float[][] slots = new float[0][];
        private PruneScratch[] prune = new PruneScratch[0];

        /** Drops buffers, last first, until what is kept fits in {@link #RETAINED_FLOATS}. */
        void trim() {
            long kept = retainedFloats();
            for (int i = prune.length - 1; i >= 0 && kept > RETAINED_FLOATS; i--) {
                kept -= prune[i].pruned.length;
                prune[i].pruned = new float[0];
            }
            for (int s = slots.length - 1; s >= 0 && kept > RETAINED_FLOATS; s--) {
                if (slots[s] != null) {
                    kept -= slots[s].length;
                    slots[s] = null;
                }
            }
        }

        long retainedFloats() {
            long floats = 0;
            for (PruneScratch p : prune) {
                floats += p.pruned.length + p.active.length + p.rows.length;
            }
            for (float[] slot : slots) {
                floats += slot == null ? 0 : slot.length;
            }
            return floats;
        }

        /** The pruning buffers of projection {@code index} (gate/up of item w at 2w, its down at 2w + 1). */
        PruneScratch scratch(int index) {
            if (prune.length <= index) {
                int old = prune.length;
                prune = java.util.Arrays.copyOf(prune, Math.max(index + 1, 2 * old));
                for (int i = old; i < prune.length; i++) {
                    prune[i] = new PruneScratch();
                }
            }
            return prune[index];
        }

        /** Makes slots [first, first + count) at least {@code width} long (before the loop that uses them). */
        void reserve(int first, int count, int width) {
            if (slots.length < first + count) {
                slots = java.util.Arrays.copyOf(slots, first + count);
            }
            for (int s = first; s < first + count; s++) {
                if (slots[s] == null || slots[s].length < width) {
                    slots[s] = new float[width];
                }
            }
        }

        float[] zeroed(int slot, int width) {
            float[] a = slots[slot];
            java.util.Arrays.fill(a, 0, width, 0f);
            return a;
        }

        /** Adds slots (first, first + count) into slot first and returns it. */
        float[] sum(int first, int count, int width) {
            float[] total = slots[first];
            for (int s = first + 1; s < first + count; s++) {
                float[] part = slots[s];
                for (int c = 0; c < width; c++) {
                    total[c] += part[c];
                }
            }
            return total;
        }
    }

    private static float[] panelOut(int numTokens) {
        float[] out = PANEL_OUT.get();
        if (out.length < numTokens * W) {
            out = new float[numTokens * W];
            PANEL_OUT.set(out);
        }
        return out;
    }

    private static int find(int[] starts, int unit) {
        int lo = 0;
        int hi = starts.length - 2;
        while (lo < hi) {
            int mid = (lo + hi + 1) >>> 1;
            if (starts[mid] <= unit) {
                lo = mid;
            } else {
                hi = mid - 1;
            }
        }
        return lo;
    }

    private static int[] identity(int n) {
        int[] rows = new int[n];
        for (int i = 0; i < n; i++) {
            rows[i] = i;
        }
        return rows;
    }
}

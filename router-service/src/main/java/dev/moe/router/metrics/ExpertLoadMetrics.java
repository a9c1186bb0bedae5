package dev.moe.router.metrics;

import dev.moe.core.gating.RoutingDecision;
import io.micrometer.core.instrument.Counter;
import io.micrometer.core.instrument.Gauge;
import io.micrometer.core.instrument.MeterRegistry;
import java.util.Arrays;
import java.util.List;
import java.util.Map;
import java.util.Objects;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.ConcurrentMap;
import java.util.concurrent.atomic.AtomicInteger;

/**
 * Expert-load metrics of the router, fed once per MoE layer forward by {@link #record}.
 *
 * <p>Meters (Micrometer names; Prometheus names after its naming convention):
 * <ul>
 *   <li>{@value #ROUTED} counter, base unit tokens, tag {@code expert} → {@code moe_router_routed_tokens_total}:
 *       token-to-expert assignments (a token counts once for each of its top-k experts);</li>
 *   <li>{@value #DISPATCHED} counter, base unit tokens, tag {@code server} → {@code moe_router_dispatched_tokens_total}:
 *       tokens sent to each expert server (a token counts once per server it is sent to);</li>
 *   <li>{@value #BALANCEDNESS} gauge → {@code moe_router_balancedness}: mean / max of tokens per expert server over
 *       the sliding window, as vLLM and SGLang define it (1.0 = perfectly balanced, 1/servers = one server takes all);
 *       </li>
 *   <li>{@value #ENTROPY} gauge → {@code moe_router_routing_entropy}: Shannon entropy of the expert-selection
 *       distribution over the window divided by log(numExperts) (1 = uniform, 0 = a single expert);</li>
 *   <li>{@value #DRIFT} gauge → {@code moe_router_routing_drift}: Jensen–Shannon divergence, base 2 (0..1), of the
 *       window's expert-selection distribution against a reference: the one given, else the first full window of
 *       traffic of each layer (warm-up; the gauge is NaN until then).</li>
 * </ul>
 * With {@code perLayerTags} every meter also carries a {@code layer} tag (counters: layers × experts series). Without
 * it there is one series per expert / server and one gauge per name for the group of all MoE layers, aggregated like
 * vLLM aggregates layers: balancedness = Σ<sub>layers</sub> mean / Σ<sub>layers</sub> max; entropy and drift are the
 * mean over the layers that have data (expert ids of different layers are different experts, so their counts are
 * never pooled). Gauges read NaN while they have no data.
 *
 * <p>Sliding window: per layer, the last ≈ {@code windowTokens} tokens, kept in {@value #BUCKETS} buckets of
 * ⌈windowTokens / {@value #BUCKETS}⌉ tokens. A forward goes whole into the current bucket; the next forward after a
 * bucket is full opens the next bucket and drops the oldest. No wall clock is involved.
 *
 * <p>Thread-safe: counters are Micrometer's; each layer's window has its own lock, held only to add one forward's
 * per-expert and per-server sums (gauges are computed at scrape time). Memory is bounded by layers × buckets ×
 * (experts + servers) longs; at most {@value #MAX_SERVERS} distinct server names are tracked, further ones are
 * counted under {@code server="}{@value #OVERFLOW_SERVER}{@code "}.
 */
public final class ExpertLoadMetrics {

    public static final String ROUTED = "moe.router.routed";
    public static final String DISPATCHED = "moe.router.dispatched";
    public static final String BALANCEDNESS = "moe.router.balancedness";
    public static final String ENTROPY = "moe.router.routing.entropy";
    public static final String DRIFT = "moe.router.routing.drift";
    public static final String TOKENS = "tokens";

    static final int BUCKETS = 8;
    public static final int MAX_SERVERS = 1024;
    public static final String OVERFLOW_SERVER = "other";

    private static final double LN2 = Math.log(2);

    private final int numExperts;
    private final int[] layers;
    private final Map<Integer, Integer> layerIndex;
    private final boolean perLayerTags;
    private final int windowTokens;
    private final double[][] references;       // [layer index] normalised, or null → warm-up of that layer
    private final LayerWindow[] windows;       // [layer index]
    private final Counter[] routed;            // [group * numExperts + expert], group = layer index or 0
    private final ConcurrentMap<String, Counter>[] dispatched; // [group]
    private final ConcurrentMap<String, Integer> serverSlots = new ConcurrentHashMap<>();
    private final AtomicInteger nextServerSlot = new AtomicInteger();
    private final MeterRegistry registry;

    public ExpertLoadMetrics(MeterRegistry registry, int numExperts, List<Integer> moeLayers, boolean perLayerTags,
                             int windowTokens) {
        this(registry, numExperts, moeLayers, perLayerTags, windowTokens, (Map<Integer, double[]>) null);
    }

    /** One reference distribution for every MoE layer (see the full constructor). */
    public ExpertLoadMetrics(MeterRegistry registry, int numExperts, List<Integer> moeLayers, boolean perLayerTags,
                             int windowTokens, double[] referenceDistribution) {
        this(registry, numExperts, moeLayers, perLayerTags, windowTokens, sameForEvery(moeLayers, referenceDistribution));
    }

    private static Map<Integer, double[]> sameForEvery(List<Integer> moeLayers, double[] reference) {
        if (reference == null || moeLayers == null) {
            return null;
        }
        Map<Integer, double[]> byLayer = new java.util.HashMap<>();
        moeLayers.forEach(layer -> byLayer.put(layer, reference)); // duplicates are reported by the constructor
        return byLayer;
    }

    /**
     * @param numExperts       routed experts per layer (≥ 2)
     * @param moeLayers        the MoE layer numbers {@link #record} is called with
     * @param perLayerTags     add a {@code layer} tag to every meter (cardinality × layers)
     * @param windowTokens     sliding-window length in tokens, per layer
     * @param referenceByLayer expert-selection reference for drift per MoE layer, {@code [numExperts]} each,
     *                         non-negative, any positive sum (normalised here); a layer without one (or a null map)
     *                         takes the first full window of its own traffic (warm-up)
     */
    @SuppressWarnings("unchecked")
    public ExpertLoadMetrics(MeterRegistry registry, int numExperts, List<Integer> moeLayers, boolean perLayerTags,
                             int windowTokens, Map<Integer, double[]> referenceByLayer) {
        this.registry = Objects.requireNonNull(registry, "registry");
        if (numExperts < 2) {
            throw new IllegalArgumentException("numExperts must be >= 2, got " + numExperts);
        }
        if (moeLayers == null || moeLayers.isEmpty()) {
            throw new IllegalArgumentException("moeLayers must not be empty");
        }
        if (windowTokens < 1) {
            throw new IllegalArgumentException("windowTokens must be >= 1, got " + windowTokens);
        }
        this.numExperts = numExperts;
        this.perLayerTags = perLayerTags;
        this.windowTokens = windowTokens;
        this.layers = moeLayers.stream().mapToInt(Integer::intValue).toArray();
        this.layerIndex = new java.util.HashMap<>();
        for (int i = 0; i < layers.length; i++) {
            if (layerIndex.put(layers[i], i) != null) {
                throw new IllegalArgumentException("duplicate MoE layer " + layers[i]);
            }
        }
        this.references = new double[layers.length][];
        if (referenceByLayer != null) {
            for (Map.Entry<Integer, double[]> entry : referenceByLayer.entrySet()) {
                Integer li = layerIndex.get(entry.getKey());
                if (li == null) {
                    throw new IllegalArgumentException("reference for layer " + entry.getKey()
                            + ", which is not an MoE layer " + Arrays.toString(layers));
                }
                try {
                    references[li] = normalise(entry.getValue(), numExperts);
                } catch (IllegalArgumentException e) {
                    throw new IllegalArgumentException("reference of layer " + entry.getKey() + ": " + e.getMessage(), e);
                }
            }
        }
        int bucketCapacity = (windowTokens + BUCKETS - 1) / BUCKETS;
        this.windows = new LayerWindow[layers.length];
        for (int i = 0; i < layers.length; i++) {
            windows[i] = new LayerWindow(numExperts, bucketCapacity);
        }

        int groups = perLayerTags ? layers.length : 1;
        this.routed = new Counter[groups * numExperts];
        this.dispatched = new ConcurrentMap[groups];
        for (int g = 0; g < groups; g++) {
            dispatched[g] = new ConcurrentHashMap<>();
            for (int e = 0; e < numExperts; e++) {
                Counter.Builder b = Counter.builder(ROUTED).baseUnit(TOKENS)
                        .description("Token-to-expert assignments chosen by the router (one per token and top-k slot)")
                        .tag("expert", Integer.toString(e));
                if (perLayerTags) {
                    b.tag("layer", Integer.toString(layers[g]));
                }
                routed[g * numExperts + e] = b.register(registry);
            }
        }
        if (perLayerTags) {
            for (int i = 0; i < layers.length; i++) {
                int li = i;
                String layer = Integer.toString(layers[i]);
                gauge(BALANCEDNESS, "Mean / max tokens per expert server over the sliding window",
                        m -> m.balancednessAt(li), layer);
                gauge(ENTROPY, "Normalised Shannon entropy of expert selection over the sliding window",
                        m -> m.entropyAt(li), layer);
                gauge(DRIFT, "Jensen-Shannon divergence (base 2) of expert selection, window vs reference",
                        m -> m.driftAt(li), layer);
            }
        } else {
            gauge(BALANCEDNESS, "Mean / max tokens per expert server over the sliding window, all MoE layers",
                    ExpertLoadMetrics::balancedness, null);
            gauge(ENTROPY, "Normalised Shannon entropy of expert selection over the sliding window, mean of MoE layers",
                    ExpertLoadMetrics::entropy, null);
            gauge(DRIFT, "Jensen-Shannon divergence (base 2) of expert selection, window vs reference, mean of layers",
                    ExpertLoadMetrics::drift, null);
        }
    }

    private void gauge(String name, String description, java.util.function.ToDoubleFunction<ExpertLoadMetrics> f,
                       String layer) {
        Gauge.Builder<ExpertLoadMetrics> b = Gauge.builder(name, this, f).description(description).strongReference(true);
        if (layer != null) {
            b.tag("layer", layer);
        }
        b.register(registry);
    }

    /**
     * Records one forward of one MoE layer.
     *
     * @param layer           an MoE layer number given at construction
     * @param routing         the routing of the forward's tokens
     * @param tokensPerServer tokens sent to each expert server in this forward (include servers that got 0 so they
     *                        count in balancedness); null = none
     */
    public void record(int layer, RoutingDecision routing, Map<String, Integer> tokensPerServer) {
        Integer li = layerIndex.get(layer);
        if (li == null) {
            throw new IllegalArgumentException("layer " + layer + " is not an MoE layer " + Arrays.toString(layers));
        }
        int assignments = routing.numTokens() * routing.topK();
        int[] ids = routing.expertIds();
        if (routing.numTokens() < 0 || routing.topK() < 0 || ids.length < assignments) {
            throw new IllegalArgumentException("routing has " + ids.length + " expert ids for "
                    + routing.numTokens() + " tokens x top-" + routing.topK());
        }
        int[] perExpert = new int[numExperts];
        for (int i = 0; i < assignments; i++) {
            int e = ids[i];
            if (e < 0 || e >= numExperts) {
                throw new IllegalArgumentException("expert id " + e + " outside [0, " + numExperts + ")");
            }
            perExpert[e]++;
        }
        int ns = tokensPerServer == null ? 0 : tokensPerServer.size();
        String[] names = new String[ns];
        int[] slots = new int[ns];
        long[] tokens = new long[ns];
        if (ns > 0) {
            int j = 0;
            for (Map.Entry<String, Integer> entry : tokensPerServer.entrySet()) {
                Integer v = entry.getValue();
                if (entry.getKey() == null || v == null || v < 0) {
                    throw new IllegalArgumentException("bad tokensPerServer entry " + entry);
                }
                names[j] = entry.getKey();
                tokens[j++] = v;
            }
            for (j = 0; j < ns; j++) {
                Integer slot = serverSlots.get(names[j]);
                if (slot == null) {
                    if (nextServerSlot.get() >= MAX_SERVERS - 1) {
                        names[j] = OVERFLOW_SERVER;
                    }
                    slot = serverSlots.computeIfAbsent(names[j], n -> nextServerSlot.getAndIncrement());
                }
                slots[j] = slot;
            }
        }

        windows[li].add(routing.numTokens(), perExpert, slots, tokens, references[li] == null ? windowTokens : -1);

        int g = perLayerTags ? li : 0;
        for (int e = 0; e < numExperts; e++) {
            if (perExpert[e] != 0) {
                routed[g * numExperts + e].increment(perExpert[e]);
            }
        }
        for (int j = 0; j < ns; j++) {
            Counter c = dispatched[g].computeIfAbsent(names[j], n -> dispatchedCounter(g, n));
            if (tokens[j] != 0) {
                c.increment(tokens[j]);
            }
        }
    }

    private Counter dispatchedCounter(int group, String server) {
        Counter.Builder b = Counter.builder(DISPATCHED).baseUnit(TOKENS)
                .description("Tokens sent to each expert server (one per token and server)")
                .tag("server", server);
        if (perLayerTags) {
            b.tag("layer", Integer.toString(layers[group]));
        }
        return b.register(registry);
    }

    // ---- gauges (computed on read) ----

    /** Σ mean / Σ max of tokens per server over all MoE layers' windows; NaN without data. */
    public double balancedness() {
        double sumMean = 0;
        double sumMax = 0;
        for (LayerWindow w : windows) {
            double[] meanMax = w.serverMeanMax();
            if (meanMax != null) {
                sumMean += meanMax[0];
                sumMax += meanMax[1];
            }
        }
        return sumMax > 0 ? sumMean / sumMax : Double.NaN;
    }

    /** Mean / max tokens per server over the layer's window; NaN without data. */
    public double balancedness(int layer) {
        return balancednessAt(indexOf(layer));
    }

    /** Mean over the layers with data of {@link #entropy(int)}; NaN without data. */
    public double entropy() {
        return meanOverLayers(this::entropyAt);
    }

    /** Normalised entropy of the layer's window expert selection, 0..1; NaN without data. */
    public double entropy(int layer) {
        return entropyAt(indexOf(layer));
    }

    /** Mean over the layers with a reference and data of {@link #drift(int)}; NaN when there is none. */
    public double drift() {
        return meanOverLayers(this::driftAt);
    }

    /** JS divergence (base 2) of the layer's window against the reference, 0..1; NaN without data or reference. */
    public double drift(int layer) {
        return driftAt(indexOf(layer));
    }

    /** The MoE layer numbers, in the order given at construction. */
    public List<Integer> moeLayers() {
        return Arrays.stream(layers).boxed().toList();
    }

    /** Expert-selection counts of the layer's current window, {@code [numExperts]} (a copy). */
    public long[] windowCounts(int layer) {
        return windows[indexOf(layer)].expertCounts();
    }

    private double balancednessAt(int li) {
        double[] meanMax = windows[li].serverMeanMax();
        return meanMax == null || meanMax[1] == 0 ? Double.NaN : meanMax[0] / meanMax[1];
    }

    private double entropyAt(int li) {
        long[] counts = windows[li].expertCounts();
        long total = 0;
        for (long c : counts) {
            total += c;
        }
        if (total == 0) {
            return Double.NaN;
        }
        return entropyNats(counts, total) / Math.log(numExperts);
    }

    private double driftAt(int li) {
        LayerWindow w = windows[li];
        double[] ref = references[li] != null ? references[li] : w.warmupReference();
        long[] counts = w.expertCounts();
        long total = 0;
        for (long c : counts) {
            total += c;
        }
        if (ref == null || total == 0) {
            return Double.NaN;
        }
        // JSD(P, Q) = H(M) - (H(P) + H(Q)) / 2, M = (P + Q) / 2, in bits.
        double hp = 0;
        double hq = 0;
        double hm = 0;
        for (int e = 0; e < numExperts; e++) {
            double p = (double) counts[e] / total;
            double q = ref[e];
            double m = 0.5 * (p + q);
            hp -= xlogx(p);
            hq -= xlogx(q);
            hm -= xlogx(m);
        }
        double jsd = (hm - 0.5 * (hp + hq)) / LN2;
        return Math.min(1.0, Math.max(0.0, jsd));
    }

    private double meanOverLayers(java.util.function.IntToDoubleFunction f) {
        double sum = 0;
        int n = 0;
        for (int i = 0; i < windows.length; i++) {
            double v = f.applyAsDouble(i);
            if (!Double.isNaN(v)) {
                sum += v;
                n++;
            }
        }
        return n == 0 ? Double.NaN : sum / n;
    }

    private int indexOf(int layer) {
        Integer li = layerIndex.get(layer);
        if (li == null) {
            throw new IllegalArgumentException("layer " + layer + " is not an MoE layer " + Arrays.toString(layers));
        }
        return li;
    }

    private static double xlogx(double x) {
        return x > 0 ? x * Math.log(x) : 0;
    }

    private static double entropyNats(long[] counts, long total) {
        double h = 0;
        for (long c : counts) {
            h -= xlogx((double) c / total);
        }
        return h;
    }

    private static double[] normalise(double[] dist, int numExperts) {
        if (dist.length != numExperts) {
            throw new IllegalArgumentException("reference distribution has " + dist.length + " entries, expected "
                    + numExperts);
        }
        double sum = 0;
        for (double v : dist) {
            if (!(v >= 0) || Double.isInfinite(v)) {
                throw new IllegalArgumentException("reference distribution entries must be finite and >= 0");
            }
            sum += v;
        }
        if (sum <= 0) {
            throw new IllegalArgumentException("reference distribution sums to 0");
        }
        double[] out = new double[numExperts];
        for (int e = 0; e < numExperts; e++) {
            out[e] = dist[e] / sum;
        }
        return out;
    }

    /** One layer's sliding window: {@value #BUCKETS} buckets of per-expert and per-server token counts. */
    private static final class LayerWindow {
        private final int bucketCapacity;
        private final long[][] experts;     // [bucket][expert]
        private long[][] servers;           // [bucket][server slot], -1 = server absent from that bucket
        private final long[] bucketTokens = new long[BUCKETS];
        private int current;
        private long totalTokens;
        private double[] warmup;            // first full window's distribution, when no reference was given

        LayerWindow(int numExperts, int bucketCapacity) {
            this.bucketCapacity = bucketCapacity;
            this.experts = new long[BUCKETS][numExperts];
            this.servers = new long[BUCKETS][0];
        }

        /** @param warmupTokens tokens after which to take the warm-up reference, or -1 for never */
        synchronized void add(int tokens, int[] perExpert, int[] slots, long[] serverTokens, int warmupTokens) {
            if (bucketTokens[current] >= bucketCapacity) {
                current = (current + 1) % BUCKETS;
                Arrays.fill(experts[current], 0);
                Arrays.fill(servers[current], -1);
                bucketTokens[current] = 0;
            }
            bucketTokens[current] += tokens;
            totalTokens += tokens;
            long[] ex = experts[current];
            for (int e = 0; e < perExpert.length; e++) {
                ex[e] += perExpert[e];
            }
            int needed = 0;
            for (int s : slots) {
                needed = Math.max(needed, s + 1);
            }
            if (needed > servers[0].length) {
                int size = Math.max(needed, servers[0].length * 2);
                for (int b = 0; b < BUCKETS; b++) {
                    int old = servers[b].length;
                    servers[b] = Arrays.copyOf(servers[b], size);
                    Arrays.fill(servers[b], old, size, -1);
                }
            }
            long[] sv = servers[current];
            for (int j = 0; j < slots.length; j++) {
                if (sv[slots[j]] < 0) {
                    sv[slots[j]] = 0;
                }
                sv[slots[j]] += serverTokens[j];
            }
            if (warmupTokens > 0 && warmup == null && totalTokens >= warmupTokens) {
                long[] counts = sumExperts();
                long total = 0;
                for (long c : counts) {
                    total += c;
                }
                if (total > 0) {
                    warmup = new double[counts.length];
                    for (int e = 0; e < counts.length; e++) {
                        warmup[e] = (double) counts[e] / total;
                    }
                }
            }
        }

        synchronized long[] expertCounts() {
            return sumExperts();
        }

        synchronized double[] warmupReference() {
            return warmup;
        }

        /** {mean, max} of tokens over the servers present in the window, or null when none is. */
        synchronized double[] serverMeanMax() {
            int n = servers[0].length;
            long sum = 0;
            long max = 0;
            int present = 0;
            for (int s = 0; s < n; s++) {
                long tokens = 0;
                boolean seen = false;
                for (int b = 0; b < BUCKETS; b++) {
                    long v = servers[b][s];
                    if (v >= 0) {
                        seen = true;
                        tokens += v;
                    }
                }
                if (seen) {
                    present++;
                    sum += tokens;
                    max = Math.max(max, tokens);
                }
            }
            return present == 0 ? null : new double[] {(double) sum / present, max};
        }

        private long[] sumExperts() {
            long[] out = new long[experts[0].length];
            for (long[] bucket : experts) {
                for (int e = 0; e < out.length; e++) {
                    out[e] += bucket[e];
                }
            }
            return out;
        }
    }
}

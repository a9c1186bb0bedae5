package dev.moe.expert.shard;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.kernels.PackedExpert;
import dev.moe.core.kernels.PanelMatrix;
import dev.moe.core.kernels.WeightType;
import dev.moe.core.moe.MoeWeights;
import dev.moe.core.sparsity.SparsityThresholds;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The experts one server hosts: the same expert ids in every MoE layer, loaded from the checkpoint (and nothing
 * else of it), packed for the FFN kernels in the configured weight type, with their SCAP thresholds when given.
 */
public final class ExpertShard {
    private final MoeConfig config;
    private final String fingerprint;
    private final int[] hostedExperts;
    private final WeightType weightType;
    private final PanelMatrix.Layout layout;
    private final long weightBytes;
    private final boolean sparsityEnabled;
    /** layer → experts indexed by global expert id (null where not hosted). */
    private final Map<Integer, PackedExpert[]> experts;
    /** layer → thresholds indexed by global expert id (null: dense). */
    private final Map<Integer, SparsityThresholds[]> thresholds;

    private ExpertShard(MoeConfig config, String fingerprint, int[] hostedExperts, WeightType weightType,
                        PanelMatrix.Layout layout, long weightBytes, Map<Integer, PackedExpert[]> experts,
                        Map<Integer, SparsityThresholds[]> thresholds, boolean sparsityEnabled) {
        this.config = config;
        this.fingerprint = fingerprint;
        this.hostedExperts = hostedExperts;
        this.weightType = weightType;
        this.layout = layout;
        this.weightBytes = weightBytes;
        this.experts = experts;
        this.thresholds = thresholds;
        this.sparsityEnabled = sparsityEnabled;
    }

    /** Where a (layer, expert)'s thresholds come from; returns null for the dense path. */
    @FunctionalInterface
    public interface ThresholdSource {
        SparsityThresholds thresholds(int layer, int expert);

        ThresholdSource DENSE = (layer, expert) -> null;
    }

    /** Loads {@code hostedExperts} of every MoE layer; {@code progress} receives one line per layer. */
    public static ExpertShard load(Checkpoint checkpoint, MoeConfig config, int[] hostedExperts, WeightType weightType,
                                   ThresholdSource thresholdSource, Consumer<String> progress) {
        return load(checkpoint, config, hostedExperts, weightType, PanelMatrix.Layout.PANELS, thresholdSource,
                progress);
    }

    /** Loads {@code hostedExperts} of every MoE layer, packed in {@code layout}. */
    public static ExpertShard load(Checkpoint checkpoint, MoeConfig config, int[] hostedExperts, WeightType weightType,
                                   PanelMatrix.Layout layout, ThresholdSource thresholdSource,
                                   Consumer<String> progress) {
        Map<Integer, PackedExpert[]> experts = new HashMap<>();
        Map<Integer, SparsityThresholds[]> thresholds = new HashMap<>();
        int layersDone = 0;
        long bytes = 0;
        boolean anyThresholds = false;
        for (int layer : config.moeLayers()) {
            PackedExpert[] byId = new PackedExpert[config.numExperts()];
            SparsityThresholds[] thresholdsById = new SparsityThresholds[config.numExperts()];
            for (int e : hostedExperts) {
                byId[e] = MoeWeights.loadPackedExpert(checkpoint, config, layer, e, weightType, layout);
                bytes += byId[e].weightBytes();
                thresholdsById[e] = thresholdSource.thresholds(layer, e);
                anyThresholds |= thresholdsById[e] != null;
            }
            experts.put(layer, byId);
            thresholds.put(layer, thresholdsById);
            layersDone++;
            progress.accept(String.format("loaded layer %d (%d/%d MoE layers, %d experts, %s %s, %.1f MiB resident)",
                    layer, layersDone, config.moeLayers().size(), hostedExperts.length, weightType, layout,
                    bytes / 1048576.0));
        }
        return new ExpertShard(config, checkpoint.fingerprint(), hostedExperts.clone(), weightType, layout, bytes,
                experts, thresholds, anyThresholds);
    }

    public MoeConfig config() {
        return config;
    }

    public String fingerprint() {
        return fingerprint;
    }

    public int[] hostedExperts() {
        return hostedExperts.clone();
    }

    public WeightType weightType() {
        return weightType;
    }

    /** How the experts' weights are laid out. */
    public PanelMatrix.Layout layout() {
        return layout;
    }

    public long weightBytes() {
        return weightBytes;
    }

    public boolean sparsityEnabled() {
        return sparsityEnabled;
    }

    /** The expert, or null when this server does not host it or the layer has no MoE block. */
    public PackedExpert expert(int layer, int expertId) {
        PackedExpert[] byId = experts.get(layer);
        return byId == null || expertId < 0 || expertId >= byId.length ? null : byId[expertId];
    }

    /** The expert's thresholds, or null for the dense path. */
    public SparsityThresholds thresholds(int layer, int expertId) {
        SparsityThresholds[] byId = thresholds.get(layer);
        return byId == null || expertId < 0 || expertId >= byId.length ? null : byId[expertId];
    }
}

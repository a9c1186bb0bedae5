package dev.moe.expert.shard;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.kernels.SwiGluExpert;
import dev.moe.core.moe.MoeWeights;
import java.util.Arrays;
import java.util.HashMap;
import java.util.Map;
import java.util.function.Consumer;

/**
 * The experts one server hosts: the same expert ids in every MoE layer, loaded from the checkpoint (and nothing
 * else of it).
 */
public final class ExpertShard {
    private final MoeConfig config;
    private final String fingerprint;
    private final int[] hostedExperts;
    /** layer → experts indexed by global expert id (null where not hosted). */
    private final Map<Integer, SwiGluExpert[]> experts;

    private ExpertShard(MoeConfig config, String fingerprint, int[] hostedExperts, Map<Integer, SwiGluExpert[]> experts) {
        this.config = config;
        this.fingerprint = fingerprint;
        this.hostedExperts = hostedExperts;
        this.experts = experts;
    }

    /** Loads {@code hostedExperts} of every MoE layer; {@code progress} receives one line per layer. */
    public static ExpertShard load(Checkpoint checkpoint, MoeConfig config, int[] hostedExperts, Consumer<String> progress) {
        Map<Integer, SwiGluExpert[]> experts = new HashMap<>();
        int layersDone = 0;
        long bytes = 0;
        for (int layer : config.moeLayers()) {
            SwiGluExpert[] byId = new SwiGluExpert[config.numExperts()];
            for (int e : hostedExperts) {
                byId[e] = MoeWeights.loadExpert(checkpoint, config, layer, e);
                bytes += byId[e].weightBytes();
            }
            experts.put(layer, byId);
            layersDone++;
            progress.accept(String.format("loaded layer %d (%d/%d MoE layers, %d experts, %.1f MiB resident)", layer,
                    layersDone, config.moeLayers().size(), hostedExperts.length, bytes / 1048576.0));
        }
        return new ExpertShard(config, checkpoint.fingerprint(), hostedExperts.clone(), experts);
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

    public boolean hosts(int expertId) {
        return Arrays.binarySearch(hostedExperts, expertId) >= 0;
    }

    /** The expert, or null when this server does not host it or the layer has no MoE block. */
    public SwiGluExpert expert(int layer, int expertId) {
        SwiGluExpert[] byId = experts.get(layer);
        return byId == null || expertId < 0 || expertId >= byId.length ? null : byId[expertId];
    }
}

package dev.moe.router.gating;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.gating.RouterSpec;
import dev.moe.core.gating.RoutingDecision;
import dev.moe.core.gating.TopKRouter;
import dev.moe.core.kernels.Kernels;
import dev.moe.core.moe.MoeWeights;
import dev.moe.core.moe.RouterLayer;
import java.util.Map;
import java.util.TreeMap;
import java.util.function.Consumer;

/** The gating networks (and shared experts) of every MoE layer of the served model. Immutable once loaded. */
public final class RouterModel {
    private final MoeConfig config;
    private final RouterSpec routerSpec;
    private final String fingerprint;
    private final Map<Integer, RouterLayer> layers;
    private final Kernels kernels;

    public RouterModel(MoeConfig config, String fingerprint, Map<Integer, RouterLayer> layers, Kernels kernels) {
        this.config = config;
        this.routerSpec = RouterSpec.of(config);
        this.fingerprint = fingerprint;
        this.layers = Map.copyOf(layers);
        this.kernels = kernels;
    }

    public static RouterModel load(Checkpoint checkpoint, Kernels kernels, Consumer<String> progress) {
        MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
        Map<Integer, RouterLayer> layers = new TreeMap<>();
        for (int layer : config.moeLayers()) {
            layers.put(layer, MoeWeights.loadRouterLayer(checkpoint, config, layer));
            progress.accept("loaded gate of layer " + layer + " (" + layers.size() + "/" + config.moeLayers().size() + ")");
        }
        return new RouterModel(config, checkpoint.fingerprint(), layers, kernels);
    }

    public MoeConfig config() {
        return config;
    }

    public String fingerprint() {
        return fingerprint;
    }

    /** The layer's gate, or null when the layer has no MoE block. */
    public RouterLayer layer(int layer) {
        return layers.get(layer);
    }

    /** Gate → top-k for a batch {@code x} {@code [numTokens, hiddenSize]}. */
    public RoutingDecision route(RouterLayer layer, float[] x, int numTokens) {
        float[] routerLogits = layer.routerLogits(kernels, x, numTokens);
        return TopKRouter.route(routerSpec, routerLogits, numTokens, layer.correctionBias());
    }

    /** Adds the layer's shared-expert term (if any) to {@code out}. */
    public void addSharedExpert(RouterLayer layer, float[] x, int numTokens, float[] out) {
        layer.addSharedExpert(kernels, x, numTokens, out);
    }
}

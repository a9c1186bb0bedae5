package dev.moe.router;

import java.nio.file.Path;
import java.time.Duration;
import java.util.List;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * Settings of the router ({@code moe.router.*}).
 *
 * @param model                checkpoint directory (config.json + safetensors); the router reads only gates,
 *                             correction biases and shared experts
 * @param expertEndpoints      static expert servers, {@code host:port} each
 * @param maxTokensPerRequest  largest num_tokens of one ForwardRequest (RESOURCE_EXHAUSTED above)
 * @param dispatchTimeout      deadline of the expert calls of one forward
 * @param kubernetes           discovery of expert pods through the Kubernetes API (instead of expertEndpoints)
 * @param metrics              expert-load metrics
 */
@ConfigurationProperties("moe.router")
public record RouterProperties(Path model, List<String> expertEndpoints, Integer maxTokensPerRequest,
                               Duration dispatchTimeout, Kubernetes kubernetes, Metrics metrics) {

    /**
     * Expert-load metrics ({@code moe.router.metrics.*}).
     *
     * @param layerTag       tag expert-load meters with the MoE layer (series × layers: 48 layers × 128 experts
     *                       is 6144 series per meter, so off by default)
     * @param windowTokens   tokens per layer in the sliding window of balancedness, entropy and drift
     * @param driftReference routing-reference JSON file (from {@code GET /actuator/routing}) drift is measured
     *                       against; none: each layer's first full window of traffic
     */
    public record Metrics(boolean layerTag, Integer windowTokens, Path driftReference) {
        public Metrics {
            windowTokens = windowTokens == null ? 4096 : windowTokens;
            if (windowTokens < 1) {
                throw new IllegalArgumentException("moe.router.metrics.window-tokens must be >= 1, got " + windowTokens);
            }
        }
    }

    /**
     * Kubernetes discovery ({@code moe.router.kubernetes.*}).
     *
     * @param enabled        watch expert pods instead of using expertEndpoints
     * @param namespace      namespace of the expert pods (default: the client's, i.e. the router's own)
     * @param labelSelector  selector of this release's expert pods, e.g.
     *                       {@code app.kubernetes.io/instance=moe,app.kubernetes.io/component=expert}
     * @param port           gRPC port of expert pods when no container port is named {@code grpc}
     * @param masterUrl      API server URL; default: in-cluster service account or kubeconfig
     */
    public record Kubernetes(boolean enabled, String namespace, String labelSelector, Integer port, String masterUrl) {
        public Kubernetes {
            port = port == null ? 9091 : port;
            labelSelector = labelSelector == null ? "app.kubernetes.io/component=expert" : labelSelector;
        }
    }

    /** Tokens one Forward may carry unless {@code moe.router.max-tokens-per-request} says otherwise. */
    public static final int DEFAULT_MAX_TOKENS_PER_REQUEST = 16384;

    public RouterProperties {
        expertEndpoints = expertEndpoints == null ? List.of() : List.copyOf(expertEndpoints);
        maxTokensPerRequest = maxTokensPerRequest == null ? DEFAULT_MAX_TOKENS_PER_REQUEST : maxTokensPerRequest;
        dispatchTimeout = dispatchTimeout == null ? Duration.ofSeconds(30) : dispatchTimeout;
        kubernetes = kubernetes == null ? new Kubernetes(false, null, null, null, null) : kubernetes;
        metrics = metrics == null ? new Metrics(false, null, null) : metrics;
    }
}

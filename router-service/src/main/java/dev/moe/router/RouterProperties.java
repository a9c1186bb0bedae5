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
 * @param discoveryTimeout     how long start-up waits for every static expert server to answer DescribeShard
 */
@ConfigurationProperties("moe.router")
public record RouterProperties(Path model, List<String> expertEndpoints, Integer maxTokensPerRequest,
                               Duration dispatchTimeout, Duration discoveryTimeout) {

    public RouterProperties {
        expertEndpoints = expertEndpoints == null ? List.of() : List.copyOf(expertEndpoints);
        maxTokensPerRequest = maxTokensPerRequest == null ? 16384 : maxTokensPerRequest;
        dispatchTimeout = dispatchTimeout == null ? Duration.ofSeconds(30) : dispatchTimeout;
        discoveryTimeout = discoveryTimeout == null ? Duration.ofSeconds(60) : discoveryTimeout;
    }
}

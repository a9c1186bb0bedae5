package dev.moe.expert;

import dev.moe.core.placement.ExpertPlacement;
import java.nio.file.Path;
import org.springframework.boot.context.properties.ConfigurationProperties;

/**
 * Settings of an expert server ({@code moe.expert.*}).
 *
 * @param model       checkpoint directory (config.json + safetensors)
 * @param serverId    id reported to the router; defaults to {@code expert-<serverIndex>}
 * @param serverIndex this server's index among {@code numServers} (a StatefulSet ordinal)
 * @param numServers  how many servers share the experts
 * @param placement   how experts are split: contiguous ranges or strided
 * @param experts     explicit expert list such as {@code 0-7,12}; overrides serverIndex/numServers
 * @param maxTokensPerCall largest num_tokens one ComputeExperts call may carry
 */
@ConfigurationProperties("moe.expert")
public record ExpertServerProperties(Path model, String serverId, Integer serverIndex, Integer numServers,
                                     ExpertPlacement.Strategy placement, String experts, Integer maxTokensPerCall) {

    public ExpertServerProperties {
        serverIndex = serverIndex == null ? 0 : serverIndex;
        numServers = numServers == null ? 1 : numServers;
        placement = placement == null ? ExpertPlacement.Strategy.CONTIGUOUS : placement;
        serverId = serverId == null || serverId.isBlank() ? "expert-" + serverIndex : serverId;
        maxTokensPerCall = maxTokensPerCall == null ? 65536 : maxTokensPerCall;
    }

    /** The experts this server hosts, ascending. */
    public int[] hostedExperts(int numExperts) {
        if (experts != null && !experts.isBlank()) {
            return ExpertPlacement.parse(experts, numExperts);
        }
        return ExpertPlacement.experts(placement, numExperts, serverIndex, numServers);
    }
}

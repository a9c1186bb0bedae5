package dev.moe.router;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.kernels.VectorKernels;
import dev.moe.router.api.RouterErrors;
import dev.moe.router.discovery.ExpertDirectory;
import dev.moe.router.discovery.ExpertServerProbe;
import dev.moe.router.discovery.KubernetesExpertDiscovery;
import dev.moe.router.discovery.StaticExpertDiscovery;
import dev.moe.router.dispatch.ExpertChannels;
import dev.moe.router.dispatch.ExpertDispatcher;
import dev.moe.router.gating.RouterModel;
import dev.moe.router.metrics.ExpertLoadMetrics;
import dev.moe.router.metrics.RouterMetrics;
import dev.moe.router.metrics.RoutingEndpoint;
import dev.moe.router.metrics.RoutingReference;
import io.micrometer.core.instrument.Meter;
import io.micrometer.core.instrument.MeterRegistry;
import io.micrometer.core.instrument.config.MeterFilter;
import java.util.Map;
import io.grpc.protobuf.services.HealthStatusManager;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.beans.factory.ObjectProvider;
import io.fabric8.kubernetes.client.ConfigBuilder;
import io.fabric8.kubernetes.client.KubernetesClient;
import io.fabric8.kubernetes.client.KubernetesClientBuilder;
import org.springframework.boot.autoconfigure.condition.ConditionalOnProperty;
import org.springframework.context.annotation.Bean;
import org.springframework.context.annotation.Configuration;
import org.springframework.grpc.client.GrpcChannelFactory;
import org.springframework.grpc.server.exception.GrpcExceptionHandler;

/** Loads the gates, wires dispatch to the expert servers and starts discovery. */
@Configuration(proxyBeanMethods = false)
public class RouterConfiguration {
    private static final Logger log = LoggerFactory.getLogger(RouterConfiguration.class);

    @Bean
    RouterModel routerModel(RouterProperties properties) {
        if (properties.model() == null) {
            throw new CheckpointException("moe.router.model is not set: pass --moe.router.model=/path/to/checkpoint");
        }
        // Only gates, biases and shared experts are read; the mapping is released once they are on the heap.
        Checkpoint opened;
        try {
            opened = Checkpoint.open(properties.model());
        } catch (CheckpointException e) { // name the setting: the message is shared with bin/moe's --model
            throw new CheckpointException("moe.router.model: " + e.getMessage(), e);
        }
        try (Checkpoint checkpoint = opened) {
            RouterModel model = RouterModel.load(checkpoint, VectorKernels.INSTANCE, line -> log.info("router: {}", line));
            log.info("router: serving {} ({} MoE layers, {} experts, top-{}), fingerprint {}",
                    model.config().family().modelType, model.config().moeLayers().size(), model.config().numExperts(),
                    model.config().numExpertsPerToken(), model.fingerprint());
            return model;
        }
    }

    @Bean(destroyMethod = "close")
    ExpertChannels expertChannels(GrpcChannelFactory channelFactory) {
        return new ExpertChannels(channelFactory);
    }

    @Bean
    ExpertDirectory expertDirectory(RouterModel model, ObjectProvider<HealthStatusManager> health) {
        return new ExpertDirectory(model.config().numExperts(), health.getIfAvailable());
    }

    @Bean
    ExpertServerProbe expertServerProbe(RouterModel model, ExpertChannels channels) {
        return new ExpertServerProbe(model, channels);
    }

    @Bean
    @ConditionalOnProperty(name = "moe.router.kubernetes.enabled", havingValue = "false", matchIfMissing = true)
    StaticExpertDiscovery staticExpertDiscovery(RouterProperties properties, ExpertServerProbe probe,
                                                ExpertDirectory directory) {
        if (properties.expertEndpoints().isEmpty()) {
            log.warn("moe.router.expert-endpoints is empty: no expert server will be known until one is configured");
        }
        return new StaticExpertDiscovery(properties.expertEndpoints(), probe, directory);
    }

    @Bean(destroyMethod = "close")
    @ConditionalOnProperty(name = "moe.router.kubernetes.enabled", havingValue = "true")
    KubernetesClient kubernetesClient(RouterProperties properties) {
        KubernetesClientBuilder builder = new KubernetesClientBuilder();
        String masterUrl = properties.kubernetes().masterUrl();
        if (masterUrl != null && !masterUrl.isBlank()) {
            builder.withConfig(new ConfigBuilder().withMasterUrl(masterUrl).withTrustCerts(true).build());
        }
        return builder.build();
    }

    @Bean
    @ConditionalOnProperty(name = "moe.router.kubernetes.enabled", havingValue = "true")
    KubernetesExpertDiscovery kubernetesExpertDiscovery(KubernetesClient client, RouterProperties properties,
                                                        ExpertServerProbe probe, ExpertDirectory directory,
                                                        ExpertChannels channels) {
        RouterProperties.Kubernetes k = properties.kubernetes();
        return new KubernetesExpertDiscovery(client, k.namespace(), k.labelSelector(), k.port(), probe, directory,
                channels);
    }

    @Bean
    RouterMetrics routerMetrics(MeterRegistry registry, RouterModel model, ExpertDirectory directory,
                                RouterProperties properties) {
        RouterProperties.Metrics m = properties.metrics();
        Map<Integer, double[]> reference = null;
        if (m.driftReference() != null) {
            RoutingReference file = RoutingReference.read(m.driftReference());
            if (file.numExperts() != model.config().numExperts()) {
                throw new CheckpointException("routing reference " + m.driftReference() + " has num_experts "
                        + file.numExperts() + ", the model has " + model.config().numExperts());
            }
            if (!file.modelFingerprint().equals(model.fingerprint())) {
                log.warn("routing reference {} was taken on checkpoint {}, this router serves {}: drift compares"
                        + " against another model's routing", m.driftReference(), file.modelFingerprint(),
                        model.fingerprint());
            }
            reference = file.distributions();
            log.info("router: drift measured against {} ({} layers)", m.driftReference(), reference.size());
        }
        ExpertLoadMetrics load = new ExpertLoadMetrics(registry, model.config().numExperts(),
                model.config().moeLayers(), m.layerTag(), m.windowTokens(), reference);
        return new RouterMetrics(registry, load, model.config().numExperts(), directory::table);
    }

    /**
     * The gRPC client observation tags its meters with the peer's address and port: one new series set for every
     * expert pod IP ever seen, never removed. Per-server numbers are moe.router.dispatch's, tagged by server id.
     */
    @Bean
    MeterFilter grpcClientWithoutPeerTags() {
        return new MeterFilter() {
            @Override
            public Meter.Id map(Meter.Id id) {
                if (!id.getName().startsWith("grpc.client")) {
                    return id;
                }
                return id.replaceTags(id.getTags().stream().filter(t -> !t.getKey().startsWith("net.peer.")).toList());
            }
        };
    }

    @Bean
    RoutingEndpoint routingEndpoint(RouterMetrics metrics, RouterModel model) {
        return new RoutingEndpoint(metrics.load(), model.fingerprint(), model.config().numExperts());
    }

    @Bean
    ForwardPipeline forwardPipeline(RouterModel model, ExpertDirectory directory, RouterProperties properties,
                                    RouterMetrics metrics) {
        return new ForwardPipeline(model, directory, new ExpertDispatcher(metrics), properties.maxTokensPerRequest(),
                properties.dispatchTimeout(), metrics);
    }

    @Bean
    GrpcExceptionHandler routerExceptionHandler() {
        return exception -> RouterErrors.toStatus(exception).asException();
    }
}

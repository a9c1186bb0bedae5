package dev.moe.cli;

import dev.moe.core.placement.ExpertPlacement;
import dev.moe.expert.ExpertServiceApplication;
import dev.moe.router.RouterServiceApplication;
import dev.moe.router.discovery.ExpertDirectory;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.springframework.boot.WebApplicationType;
import org.springframework.boot.builder.SpringApplicationBuilder;
import org.springframework.context.ApplicationListener;
import org.springframework.context.ConfigurableApplicationContext;
import org.springframework.grpc.server.lifecycle.GrpcServerStartedEvent;

/**
 * A router and N expert servers, each a real Spring Boot application with its own gRPC server on a loopback port,
 * in this JVM. Experts are split across the servers by a placement; the router finds them through its static
 * endpoint list, exactly as a deployed router would.
 */
public final class EmbeddedCluster implements AutoCloseable {
    private final List<ConfigurableApplicationContext> experts;
    private final List<String> expertAddresses;
    private final ConfigurableApplicationContext router;
    private final String routerAddress;

    private EmbeddedCluster(List<ConfigurableApplicationContext> experts, List<String> expertAddresses,
                            ConfigurableApplicationContext router, String routerAddress) {
        this.experts = experts;
        this.expertAddresses = expertAddresses;
        this.router = router;
        this.routerAddress = routerAddress;
    }

    /** Settings of a cluster. */
    public record Options(Path model, int numExpertServers, ExpertPlacement.Strategy placement, String host,
                          int routerPort, Map<String, String> extraProperties) {

        public static Options of(Path model, int numExpertServers) {
            return new Options(model, numExpertServers, ExpertPlacement.Strategy.CONTIGUOUS, "127.0.0.1", 0, Map.of());
        }

        public Options withPlacement(ExpertPlacement.Strategy strategy) {
            return new Options(model, numExpertServers, strategy, host, routerPort, extraProperties);
        }

        public Options withRouterPort(int port) {
            return new Options(model, numExpertServers, placement, host, port, extraProperties);
        }

        public Options withProperties(Map<String, String> properties) {
            Map<String, String> merged = new LinkedHashMap<>(extraProperties);
            merged.putAll(properties);
            return new Options(model, numExpertServers, placement, host, routerPort, merged);
        }
    }

    public static EmbeddedCluster start(Options options) {
        List<ConfigurableApplicationContext> experts = new ArrayList<>();
        List<String> addresses = new ArrayList<>();
        try {
            for (int i = 0; i < options.numExpertServers(); i++) {
                Map<String, Object> props = new LinkedHashMap<>();
                props.put("moe.expert.model", options.model().toString());
                props.put("moe.expert.server-index", i);
                props.put("moe.expert.num-servers", options.numExpertServers());
                props.put("moe.expert.placement", options.placement().name());
                props.put("moe.expert.server-id", "expert-" + i);
                props.put("spring.grpc.server.host", options.host());
                props.put("spring.grpc.server.port", 0);
                props.putAll(options.extraProperties());
                CompletableFuture<Integer> port = new CompletableFuture<>();
                experts.add(application(ExpertServiceApplication.class, port).run(args(props)));
                addresses.add(options.host() + ":" + port.get(30, TimeUnit.SECONDS));
            }
            Map<String, Object> props = new LinkedHashMap<>();
            props.put("moe.router.model", options.model().toString());
            props.put("moe.router.expert-endpoints", String.join(",", addresses));
            props.put("spring.grpc.server.host", options.host());
            props.put("spring.grpc.server.port", options.routerPort());
            props.putAll(options.extraProperties());
            CompletableFuture<Integer> port = new CompletableFuture<>();
            ConfigurableApplicationContext router = application(RouterServiceApplication.class, port).run(args(props));
            EmbeddedCluster cluster = new EmbeddedCluster(experts, addresses, router,
                    options.host() + ":" + port.get(30, TimeUnit.SECONDS));
            if (!router.getBean(ExpertDirectory.class).awaitCoverage(Duration.ofSeconds(60))) {
                cluster.close();
                throw new IllegalStateException("the router did not find a server for every expert within 60 s");
            }
            return cluster;
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            experts.forEach(ConfigurableApplicationContext::close);
            throw new IllegalStateException("interrupted while starting the cluster", e);
        } catch (Exception e) {
            experts.forEach(ConfigurableApplicationContext::close);
            if (e instanceof RuntimeException r) {
                throw r;
            }
            throw new IllegalStateException("cannot start the cluster: " + e.getMessage(), e);
        }
    }

    /** Settings go in as command-line arguments: they must win over each service's bundled defaults. */
    private static String[] args(Map<String, Object> properties) {
        return properties.entrySet().stream().map(e -> "--" + e.getKey() + "=" + e.getValue()).toArray(String[]::new);
    }

    private static SpringApplicationBuilder application(Class<?> main, CompletableFuture<Integer> port) {
        return new SpringApplicationBuilder(main)
                .web(WebApplicationType.NONE)
                .registerShutdownHook(false)
                .listeners((ApplicationListener<GrpcServerStartedEvent>) event -> port.complete(event.getPort()));
    }

    /** {@code host:port} of the router's public gRPC API. */
    public String routerAddress() {
        return routerAddress;
    }

    public List<String> expertAddresses() {
        return expertAddresses;
    }

    public ConfigurableApplicationContext routerContext() {
        return router;
    }

    public List<ConfigurableApplicationContext> expertContexts() {
        return experts;
    }

    @Override
    public void close() {
        router.close();
        experts.forEach(ConfigurableApplicationContext::close);
    }
}

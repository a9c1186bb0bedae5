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
import java.util.concurrent.ExecutionException;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
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
    private final List<Service> experts;
    private final Service router;

    private EmbeddedCluster(List<Service> experts, Service router) {
        this.experts = experts;
        this.router = router;
    }

    /**
     * One running service: its Spring context, the {@code host:port} its gRPC server listens on and the base URL of
     * its HTTP management port ({@code /actuator/prometheus}, {@code /actuator/health}), null when HTTP is off
     * ({@code server.port=-1}).
     */
    public record Service(ConfigurableApplicationContext context, String address, String managementUrl)
            implements AutoCloseable {
        @Override
        public void close() {
            context.close();
        }
    }

    /** Settings of a cluster; {@code properties} go to every service (e.g. logging levels, limits). */
    public record Options(Path model, int numExpertServers, ExpertPlacement.Strategy placement, String host,
                          int routerPort, Map<String, String> properties) {

        public static Options of(Path model, int numExpertServers) {
            return new Options(model, numExpertServers, ExpertPlacement.Strategy.CONTIGUOUS, "127.0.0.1", 0, Map.of());
        }

        public Options withPlacement(ExpertPlacement.Strategy strategy) {
            return new Options(model, numExpertServers, strategy, host, routerPort, properties);
        }

        public Options withRouterPort(int port) {
            return new Options(model, numExpertServers, placement, host, port, properties);
        }

        public Options withProperties(Map<String, String> more) {
            Map<String, String> merged = new LinkedHashMap<>(properties);
            merged.putAll(more);
            return new Options(model, numExpertServers, placement, host, routerPort, merged);
        }
    }

    public static EmbeddedCluster start(Options options) {
        List<Service> experts = new ArrayList<>();
        try {
            for (int i = 0; i < options.numExpertServers(); i++) {
                Map<String, Object> props = new LinkedHashMap<>();
                props.put("moe.expert.server-index", i);
                props.put("moe.expert.num-servers", options.numExpertServers());
                props.put("moe.expert.placement", options.placement().name());
                // The servers of one JVM share its cores: together, not each, they use every core.
                props.put("moe.expert.kernel-threads",
                        Math.max(1, Runtime.getRuntime().availableProcessors() / options.numExpertServers()));
                props.putAll(options.properties());
                experts.add(startExpert(options.model(), options.host(), props));
            }
            List<String> addresses = experts.stream().map(Service::address).toList();
            Map<String, Object> props = new LinkedHashMap<>(options.properties());
            props.put("spring.grpc.server.port", options.routerPort());
            Service router = startRouter(options.model(), options.host(), addresses, props);
            EmbeddedCluster cluster = new EmbeddedCluster(experts, router);
            boolean covered;
            try {
                covered = router.context().getBean(ExpertDirectory.class).awaitCoverage(Duration.ofSeconds(60));
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                cluster.close();
                throw new IllegalStateException("interrupted while starting the cluster", e);
            }
            if (!covered) {
                cluster.close();
                throw new IllegalStateException("the router did not find a server for every expert within 60 s");
            }
            return cluster;
        } catch (RuntimeException e) {
            experts.forEach(Service::close);
            throw e;
        }
    }

    /** Starts one expert server on {@code host}, any free port; {@code properties} are {@code moe.expert.*} etc. */
    public static Service startExpert(Path model, String host, Map<String, Object> properties) {
        Map<String, Object> props = new LinkedHashMap<>();
        props.put("moe.expert.model", model.toString());
        props.put("spring.grpc.server.host", host);
        props.put("spring.grpc.server.port", 0);
        props.put("server.address", host);
        props.put("server.port", 0);
        props.putAll(properties);
        return run(ExpertServiceApplication.class, host, props);
    }

    /** Starts a router on {@code host} that knows the given expert servers; does not wait for them. */
    public static Service startRouter(Path model, String host, List<String> expertAddresses,
                                      Map<String, Object> properties) {
        Map<String, Object> props = new LinkedHashMap<>();
        props.put("moe.router.model", model.toString());
        props.put("moe.router.expert-endpoints", String.join(",", expertAddresses));
        props.put("spring.grpc.server.host", host);
        props.put("spring.grpc.server.port", 0);
        props.put("server.address", host);
        props.put("server.port", 0);
        props.putAll(properties);
        return run(RouterServiceApplication.class, host, props);
    }

    private static Service run(Class<?> main, String host, Map<String, Object> properties) {
        CompletableFuture<Integer> port = new CompletableFuture<>();
        Map<String, Object> all = new LinkedHashMap<>();
        all.put("spring.main.banner-mode", "off"); // several services share one console
        all.put("spring.main.log-startup-info", false);
        all.putAll(properties);
        // Settings go in as command-line arguments: they must win over each service's bundled defaults.
        String[] args = all.entrySet().stream().map(e -> "--" + e.getKey() + "=" + e.getValue())
                .toArray(String[]::new);
        ConfigurableApplicationContext context = new SpringApplicationBuilder(main)
                .web(WebApplicationType.SERVLET)
                .registerShutdownHook(false)
                .listeners((ApplicationListener<GrpcServerStartedEvent>) event -> port.complete(event.getPort()))
                .run(args);
        // Boot publishes the port the management HTTP server bound (server.port=0: any free one); -1 when it is off.
        Integer httpPort = context.getEnvironment().getProperty("local.server.port", Integer.class);
        String managementUrl = httpPort == null || httpPort < 1 ? null : "http://" + host + ":" + httpPort;
        try {
            return new Service(context, host + ":" + port.get(30, TimeUnit.SECONDS), managementUrl);
        } catch (InterruptedException | ExecutionException | TimeoutException e) {
            context.close();
            throw new IllegalStateException(main.getSimpleName() + " started but its gRPC server did not report a port", e);
        }
    }

    /** {@code host:port} of the router's public gRPC API. */
    public String routerAddress() {
        return router.address();
    }

    public Service router() {
        return router;
    }

    public List<Service> experts() {
        return experts;
    }

    @Override
    public void close() {
        router.close();
        experts.forEach(Service::close);
    }
}

package dev.moe.cli;

import dev.moe.cli.MoeCli.UserError;
import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.placement.ExpertPlacement;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.core.sparsity.SparsityProfile;
import dev.moe.core.sparsity.SparsityProfileException;
import dev.moe.expert.shard.ExpertShard;
import dev.moe.router.RouterProperties;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.router.v1.DescribeModelRequest;
import dev.moe.proto.router.v1.DescribeModelResponse;
import dev.moe.proto.router.v1.ExpertServerInfo;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardResponse;
import java.io.IOException;
import java.io.PrintStream;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.format.DateTimeParseException;
import java.util.List;
import java.util.Locale;
import java.util.SplittableRandom;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moe local}: a router and expert servers on loopback, a short demo workload through the router's public API,
 * a per-expert load table, then serving until interrupted (or for {@code --duration}).
 */
@Command(name = "local", mixinStandardHelpOptions = true,
        description = "Start a router and expert servers on loopback, run a demo workload, keep serving.")
final class LocalCommand implements java.util.concurrent.Callable<Integer> {

    @Option(names = "--model", description = "Checkpoint folder to serve (default: a synthetic Qwen3-MoE-shaped model,"
            + " generated once into the cache).")
    Path model;

    @Option(names = "--expert-servers", defaultValue = "4", description = "Expert servers (default: ${DEFAULT-VALUE}).")
    int expertServers;

    @Option(names = "--placement", defaultValue = "CONTIGUOUS",
            description = "How experts are split: ${COMPLETION-CANDIDATES} (default: ${DEFAULT-VALUE}).")
    ExpertPlacement.Strategy placement;

    @Option(names = "--port", defaultValue = "9090", description = "Router gRPC port on 127.0.0.1 (0 = any free port;"
            + " default: ${DEFAULT-VALUE}).")
    int port;

    @Option(names = "--duration", description = "Stop by itself after this long (e.g. 30s, 5m, PT1M); default: serve"
            + " until interrupted.")
    String duration;

    @Option(names = "--demo-requests", defaultValue = "64", description = "Forward calls of the demo (default: ${DEFAULT-VALUE}).")
    int demoRequests;

    @Option(names = "--demo-tokens", defaultValue = "32", description = "Tokens per demo call (default: ${DEFAULT-VALUE}).")
    int demoTokens;

    @Option(names = "--weights", defaultValue = "bf16", description = "How expert servers store weights: f32, bf16 or"
            + " int8 (blocks of 32 with a scale each); default: ${DEFAULT-VALUE}.")
    String weights;

    @Option(names = "--sparsity", description = "SCAP thresholds file from 'moe calibrate': experts skip the weights of"
            + " near-zero input activations. Default: dense and exact.")
    Path sparsity;

    @Option(names = "--cache-dir", description = "Where the synthetic checkpoint is kept (default: $MOE_CACHE_DIR,"
            + " else $XDG_CACHE_HOME/moe-serving, else ~/.cache/moe-serving).")
    Path cacheDir;

    /** Progress of loading and discovery stays visible; framework start-up chatter does not. */
    static final java.util.Map<String, String> QUIET_LOGGING = java.util.Map.of(
            "logging.level.root", "WARN", "logging.level.dev.moe", "INFO",
            "logging.pattern.console", "%d{HH:mm:ss.SSS} %-5level %logger{0}: %msg%n");

    /**
     * A service that fails to start is reported by the command, in one line naming the cause ({@link MoeCli#describe});
     * Spring's own report of it, a stack trace of framework layers, is left out.
     */
    static final java.util.Map<String, String> NO_STARTUP_FAILURE_TRACES = java.util.Map.of(
            "logging.level.org.springframework.boot.SpringApplication", "OFF",
            "logging.level.org.springframework.context", "ERROR");

    @Override
    public Integer call() throws Exception {
        PrintStream out = System.out;
        Duration stopAfter = parseDuration("--duration", duration);
        if (stopAfter != null && (stopAfter.isNegative() || stopAfter.isZero())) {
            throw new UserError("--duration must be positive, got " + duration);
        }
        if (demoRequests < 0 || demoTokens < 1) {
            throw new UserError("--demo-requests must be >= 0 and --demo-tokens >= 1");
        }
        if (demoTokens > RouterProperties.DEFAULT_MAX_TOKENS_PER_REQUEST) {
            throw new UserError("--demo-tokens " + demoTokens + " exceeds the router's limit of "
                    + RouterProperties.DEFAULT_MAX_TOKENS_PER_REQUEST + " tokens per request");
        }
        requireFreePort(port);
        java.util.Map<String, String> expertSettings = expertSettings(weights, sparsity);
        Path checkpoint = model != null ? model : syntheticCheckpoint();
        checkServable(checkpoint, expertServers, sparsity);
        out.printf("starting router and %d expert servers on 127.0.0.1 (model %s)%n", expertServers, checkpoint);
        long startNanos = System.nanoTime();
        EmbeddedCluster.Options options = EmbeddedCluster.Options.of(checkpoint, expertServers)
                .withPlacement(placement).withRouterPort(port).withProperties(QUIET_LOGGING)
                .withProperties(NO_STARTUP_FAILURE_TRACES)
                .withProperties(expertSettings);
        CountDownLatch stopped = new CountDownLatch(1);
        try (EmbeddedCluster cluster = EmbeddedCluster.start(options);
             RouterClient client = new RouterClient(cluster.routerAddress())) {
            Thread hook = new Thread(() -> {
                out.println("stopping");
                stopped.countDown();
            });
            Runtime.getRuntime().addShutdownHook(hook);
            out.printf("cluster up in %.1f s%n", (System.nanoTime() - startNanos) / 1e9);
            DescribeModelResponse description = client.blocking().describeModel(DescribeModelRequest.getDefaultInstance());
            printDescription(out, cluster, description);
            if (demoRequests > 0) {
                runDemo(out, client, description);
            }
            out.printf("%nserving: router at %s (grpc.health.v1 and reflection enabled)%n", cluster.routerAddress());
            out.println(stopAfter == null ? "press Ctrl-C to stop" : "stopping by itself after " + stopAfter);
            if (stopAfter == null) {
                stopped.await();
            } else {
                stopped.await(stopAfter.toMillis(), TimeUnit.MILLISECONDS);
                Runtime.getRuntime().removeShutdownHook(hook);
            }
        }
        return 0;
    }

    /** Expert server settings from the CLI's --weights and --sparsity, checked before anything starts. */
    static java.util.Map<String, String> expertSettings(String weights, Path sparsity) {
        java.util.Map<String, String> settings = new java.util.LinkedHashMap<>();
        try {
            settings.put("moe.expert.weights", dev.moe.core.kernels.WeightType.parse(weights).name());
        } catch (IllegalArgumentException e) {
            throw new UserError("--weights: " + e.getMessage());
        }
        if (sparsity != null) {
            if (!Files.isRegularFile(sparsity)) {
                throw new UserError("--sparsity " + sparsity + " is not a file (write one with 'moe calibrate')");
            }
            settings.put("moe.expert.sparsity", sparsity.toAbsolutePath().toString());
        }
        return settings;
    }

    /**
     * Checks, before any server starts, what would otherwise fail inside one: the model's config, the number of
     * expert servers, and a thresholds file calibrated on this checkpoint for its layers and experts.
     */
    static void checkServable(Path checkpoint, int expertServers, Path sparsity) {
        try (Checkpoint c = Checkpoint.open(checkpoint)) {
            dev.moe.core.config.MoeConfig config = dev.moe.core.config.MoeConfig.from(c.config()).validate();
            if (expertServers < 1 || expertServers > config.numExperts()) {
                throw new UserError("--expert-servers must be in [1, " + config.numExperts() + "] for this model, got "
                        + expertServers);
            }
            if (sparsity != null) {
                SparsityProfile profile = SparsityProfile.read(sparsity);
                profile.requireFingerprint(c.fingerprint());
                profile.requireFits(config);
            }
        } catch (CheckpointException | SparsityProfileException e) {
            throw new UserError((e instanceof SparsityProfileException ? "--sparsity: " : "") + e.getMessage());
        }
    }

    /** A router port that is taken fails deep inside the server's start: say so first. */
    static void requireFreePort(int port) {
        if (port < 0 || port > 65535) {
            throw new UserError("--port must be in [0, 65535] (0 = any free port), got " + port);
        }
        if (port == 0) {
            return;
        }
        try (java.net.ServerSocket probe = new java.net.ServerSocket()) {
            probe.bind(new java.net.InetSocketAddress("127.0.0.1", port));
        } catch (IOException e) {
            throw new UserError("port " + port + " on 127.0.0.1 is not free (" + e.getMessage() + "): choose another"
                    + " with --port, or --port 0 for any free one");
        }
    }

    private Path syntheticCheckpoint() {
        SyntheticCheckpoint.Spec spec = SyntheticCheckpoint.Spec.localDefault();
        Path dir = (cacheDir != null ? cacheDir : defaultCacheDir()).resolve("synthetic").resolve(spec.cacheKey());
        if (Files.isRegularFile(dir.resolve(Checkpoint.CONFIG_FILE))) {
            return dir;
        }
        System.err.println("generating synthetic checkpoint " + spec.cacheKey() + " into " + dir + " (once)");
        Progress progress = new Progress("generating", System.err);
        try {
            SyntheticCheckpoint.write(dir, spec, progress::update);
        } catch (IOException e) {
            throw new UserError("cannot write the synthetic checkpoint into " + dir + " (" + e + "): point --cache-dir"
                    + " or MOE_CACHE_DIR at a writable folder, or serve a checkpoint with --model");
        }
        return dir;
    }

    static Path defaultCacheDir() {
        String explicit = System.getenv("MOE_CACHE_DIR");
        if (explicit != null && !explicit.isBlank()) {
            return Path.of(explicit);
        }
        String xdg = System.getenv("XDG_CACHE_HOME");
        return (xdg != null && !xdg.isBlank() ? Path.of(xdg) : Path.of(System.getProperty("user.home"), ".cache"))
                .resolve("moe-serving");
    }

    static Duration parseDuration(String option, String text) {
        if (text == null) {
            return null;
        }
        String t = text.trim().toLowerCase(Locale.ROOT);
        try {
            if (t.startsWith("p")) {
                return Duration.parse(t.toUpperCase(Locale.ROOT));
            }
            if (t.endsWith("ms")) {
                return Duration.ofMillis(Long.parseLong(t.substring(0, t.length() - 2)));
            }
            long value = Long.parseLong(t.substring(0, t.length() - 1));
            return switch (t.charAt(t.length() - 1)) {
                case 's' -> Duration.ofSeconds(value);
                case 'm' -> Duration.ofMinutes(value);
                case 'h' -> Duration.ofHours(value);
                default -> throw new NumberFormatException();
            };
        } catch (NumberFormatException | DateTimeParseException | StringIndexOutOfBoundsException e) {
            throw new UserError(option + " '" + text + "' is not a duration such as 30s, 5m, 1h or PT1M");
        }
    }

    private static void printDescription(PrintStream out, EmbeddedCluster cluster, DescribeModelResponse d) {
        out.printf("model %s: hidden %d, %d experts, top-%d, MoE layers %s, fingerprint %s%n", d.getModelType(),
                d.getHiddenSize(), d.getNumExperts(), d.getNumExpertsPerToken(), d.getMoeLayersList(),
                d.getModelFingerprint());
        out.printf("router     %s%n", cluster.routerAddress());
        java.util.Map<String, ExpertShard> shards = new java.util.HashMap<>();
        for (EmbeddedCluster.Service expert : cluster.experts()) {
            shards.put(expert.address(), expert.context().getBean(ExpertShard.class));
        }
        for (ExpertServerInfo server : d.getExpertServersList()) {
            ExpertShard shard = shards.get(server.getAddress());
            // What --weights and --sparsity became on the server: storage, layout, SCAP on or off.
            String storage = shard == null ? "" : String.format(Locale.ROOT, ", %s %s, %.1f MiB of weights, %s",
                    shard.weightType(), shard.layout(), shard.weightBytes() / 1048576.0,
                    shard.sparsityEnabled() ? "SCAP thresholds loaded" : "dense");
            out.printf("%-10s %s experts %s%s%n", server.getServerId(), server.getAddress(),
                    ranges(server.getExpertIdsList()), storage);
        }
        if (cluster.router().managementUrl() != null) {
            out.printf("metrics    %s/actuator/prometheus (router; /actuator/routing: its routing window)%n",
                    cluster.router().managementUrl());
        }
        for (EmbeddedCluster.Service expert : cluster.experts()) {
            if (expert.managementUrl() != null) {
                out.printf("           %s/actuator/prometheus (expert server %s)%n", expert.managementUrl(),
                        expert.address());
            }
        }
    }

    private void runDemo(PrintStream out, RouterClient client, DescribeModelResponse d) {
        int hidden = d.getHiddenSize();
        List<Integer> layers = d.getMoeLayersList();
        long[][] load = new long[layers.size()][d.getNumExperts()];
        SplittableRandom random = new SplittableRandom(7);
        float[] x = new float[demoTokens * hidden];
        // Warm-up (JIT compilation, connections), not counted: for a second, at least 10 calls.
        long warmUntil = System.nanoTime() + 1_000_000_000L;
        for (int w = 0; w < 10 || System.nanoTime() < warmUntil; w++) {
            client.blocking().forward(request(layers.get(w % layers.size()), x, hidden, random));
        }
        long tokens = 0;
        long start = System.nanoTime();
        for (int r = 0; r < demoRequests; r++) {
            int li = r % layers.size();
            ForwardResponse response = client.blocking().forward(request(layers.get(li), x, hidden, random));
            for (int id : response.getRouting().getExpertIdsList()) {
                load[li][id]++;
            }
            tokens += demoTokens;
        }
        double seconds = (System.nanoTime() - start) / 1e9;
        out.printf("%ndemo: %d Forward calls x %d tokens (F32, random hidden states) in %.2f s: %.0f tokens/s"
                + " (%.2f ms per call)%n", demoRequests, demoTokens, seconds, tokens / seconds, seconds * 1000 / demoRequests);
        printLoadTable(out, d, layers, load);
    }

    private ForwardRequest request(int layer, float[] x, int hidden, SplittableRandom random) {
        for (int i = 0; i < x.length; i++) {
            x[i] = (float) random.nextGaussian();
        }
        return ForwardRequest.newBuilder().setLayer(layer).setReturnRouting(true)
                .setHiddenStates(HiddenStatesPayloads.encode(x, 0, demoTokens, hidden, WireType.FLOAT32)).build();
    }

    private static void printLoadTable(PrintStream out, DescribeModelResponse d, List<Integer> layers, long[][] load) {
        String[] serverOf = new String[d.getNumExperts()];
        for (ExpertServerInfo s : d.getExpertServersList()) {
            s.getExpertIdsList().forEach(e -> serverOf[e] = s.getServerId());
        }
        StringBuilder header = new StringBuilder(String.format("%n%-7s %-10s", "expert", "server"));
        layers.forEach(l -> header.append(String.format(" %8s", "layer " + l)));
        header.append(String.format(" %8s %7s", "total", "share"));
        out.println(header);
        long grand = 0;
        for (long[] perLayer : load) {
            for (long v : perLayer) {
                grand += v;
            }
        }
        for (int e = 0; e < d.getNumExperts(); e++) {
            StringBuilder row = new StringBuilder(String.format("%-7d %-10s", e, serverOf[e]));
            long total = 0;
            for (int li = 0; li < layers.size(); li++) {
                row.append(String.format(" %8d", load[li][e]));
                total += load[li][e];
            }
            row.append(String.format(" %8d %6.1f%%", total, grand == 0 ? 0.0 : 100.0 * total / grand));
            out.println(row);
        }
        out.printf("(tokens routed to each expert; every token goes to %d experts)%n", d.getNumExpertsPerToken());
    }

    private static String ranges(List<Integer> ids) {
        StringBuilder sb = new StringBuilder();
        for (int i = 0; i < ids.size(); ) {
            int j = i;
            while (j + 1 < ids.size() && ids.get(j + 1) == ids.get(j) + 1) {
                j++;
            }
            sb.append(sb.isEmpty() ? "" : ",").append(ids.get(i)).append(j > i ? "-" + ids.get(j) : "");
            i = j + 1;
        }
        return sb.toString();
    }
}

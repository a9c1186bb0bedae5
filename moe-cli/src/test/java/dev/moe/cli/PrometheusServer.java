package dev.moe.cli;

import java.io.IOException;
import java.net.ServerSocket;
import java.net.URLEncoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.util.ArrayList;
import java.util.List;
import java.util.Optional;
import java.util.concurrent.TimeUnit;
import java.util.stream.Stream;
import tools.jackson.databind.JsonNode;
import tools.jackson.databind.json.JsonMapper;

/**
 * A real Prometheus server (Debian's {@code prometheus} package) on loopback for tests: scrapes the given targets,
 * answers PromQL through its HTTP API, and is stopped (process killed, waited for) on close.
 */
final class PrometheusServer implements AutoCloseable {
    private static final JsonMapper JSON = JsonMapper.builder().build();

    private final Process process;
    private final String url;
    private final Path log;

    /** Kills Prometheus if the test JVM exits without closing it (e.g. a surefire timeout). */
    private final Thread killer;

    private PrometheusServer(Process process, String url, Path log) {
        this.process = process;
        this.url = url;
        this.log = log;
        this.killer = new Thread(process::destroyForcibly, "prometheus-killer");
    }

    /** The prometheus binary on PATH or in /usr/bin, if installed. */
    static Optional<Path> binary() {
        return Stream.concat(Stream.of(System.getenv().getOrDefault("PATH", "").split(":")), Stream.of("/usr/bin"))
                .filter(dir -> !dir.isBlank())
                .map(dir -> Path.of(dir, "prometheus"))
                .filter(Files::isExecutable)
                .findFirst();
    }

    /** A scrape job: its name, targets ({@code host:port}) and the labels every target gets. */
    record Job(String name, String metricsPath, List<Target> targets) {
    }

    /** One target and labels of its own (e.g. {@code pod}). */
    record Target(String address, String labels) {
    }

    /**
     * Starts Prometheus scraping {@code jobs} every {@code scrapeInterval} and waits until it is ready and every
     * target has been scraped successfully once.
     */
    static PrometheusServer start(Path binary, Path dir, Duration scrapeInterval, String commonLabels, List<Job> jobs)
            throws IOException, InterruptedException {
        StringBuilder config = new StringBuilder();
        String interval = scrapeInterval.toMillis() + "ms";
        config.append("global:\n  scrape_interval: ").append(interval).append("\n  evaluation_interval: ")
                .append(interval).append("\nscrape_configs:\n");
        for (Job job : jobs) {
            config.append("  - job_name: ").append(job.name()).append('\n')
                    .append("    metrics_path: ").append(job.metricsPath()).append('\n')
                    .append("    static_configs:\n");
            for (Target target : job.targets()) {
                config.append("      - targets: ['").append(target.address()).append("']\n")
                        .append("        labels: {").append(commonLabels)
                        .append(target.labels().isEmpty() ? "" : ", " + target.labels()).append("}\n");
            }
        }
        Path configFile = dir.resolve("prometheus.yml");
        Files.writeString(configFile, config);
        Path log = dir.resolve("prometheus.log");
        int targets = jobs.stream().mapToInt(j -> j.targets().size()).sum();
        for (int attempt = 1; ; attempt++) {
            // A free port is only free until someone else takes it: try another one if Prometheus cannot bind.
            int port;
            try (ServerSocket socket = new ServerSocket(0, 1, java.net.InetAddress.getLoopbackAddress())) {
                port = socket.getLocalPort();
            }
            Process process = new ProcessBuilder(binary.toString(),
                    "--config.file=" + configFile,
                    "--storage.tsdb.path=" + dir.resolve("data"),
                    "--web.listen-address=127.0.0.1:" + port,
                    "--storage.tsdb.retention.time=1h",
                    "--log.level=warn")
                    .redirectErrorStream(true).redirectOutput(log.toFile()).start();
            PrometheusServer server = new PrometheusServer(process, "http://127.0.0.1:" + port, log);
            Runtime.getRuntime().addShutdownHook(server.killer);
            try {
                server.awaitTargetsUp(targets, Duration.ofSeconds(60));
                return server;
            } catch (IOException | InterruptedException | RuntimeException | AssertionError e) {
                server.close();
                boolean portTaken = Files.readString(log).contains("address already in use");
                if (!portTaken || attempt == 3) {
                    throw e;
                }
            }
        }
    }

    private void awaitTargetsUp(int targets, Duration timeout) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        String last = "not ready";
        while (System.nanoTime() < deadline) {
            if (!process.isAlive()) {
                throw new AssertionError("prometheus exited with " + process.exitValue() + ": " + Files.readString(log));
            }
            try {
                JsonNode active = api("/api/v1/targets?state=active").path("data").path("activeTargets");
                long up = 0;
                for (JsonNode t : active) {
                    up += "up".equals(t.path("health").asString()) ? 1 : 0;
                }
                last = up + " of " + targets + " targets up: " + active;
                if (up == targets) {
                    return;
                }
            } catch (IOException e) {
                last = e.toString(); // not listening yet
            }
            Thread.sleep(200);
        }
        throw new AssertionError("prometheus did not scrape every target within " + timeout + ": " + last + "\n"
                + Files.readString(log));
    }

    private JsonNode api(String pathAndQuery) throws IOException, InterruptedException {
        return JSON.readTree(Scrape.get(url + pathAndQuery));
    }

    /** Instant query at {@code time} (Unix seconds); the result vector (fails on an API error). */
    List<JsonNode> query(String promql, double time) throws IOException, InterruptedException {
        JsonNode response = api("/api/v1/query?query=" + URLEncoder.encode(promql, StandardCharsets.UTF_8)
                + "&time=" + time);
        if (!"success".equals(response.path("status").asString())) {
            throw new AssertionError("query failed: " + promql + " → " + response);
        }
        List<JsonNode> out = new ArrayList<>();
        JsonNode result = response.path("data").path("result");
        if ("scalar".equals(response.path("data").path("resultType").asString())) {
            out.add(result);
        } else {
            result.forEach(out::add);
        }
        return out;
    }

    /** The single value of an instant query that must return exactly one series. */
    double value(String promql, double time) throws IOException, InterruptedException {
        List<JsonNode> result = query(promql, time);
        if (result.size() != 1) {
            throw new AssertionError(promql + " returned " + result.size() + " series: " + result);
        }
        JsonNode v = result.getFirst().has("value") ? result.getFirst().get("value") : result.getFirst();
        return Double.parseDouble(v.get(1).asString());
    }

    /** Values of {@code label} among series matching {@code selector} (Grafana's {@code label_values}). */
    List<String> labelValues(String label, String selector) throws IOException, InterruptedException {
        JsonNode response = api("/api/v1/label/" + label + "/values?match[]="
                + URLEncoder.encode(selector, StandardCharsets.UTF_8));
        List<String> out = new ArrayList<>();
        response.path("data").forEach(v -> out.add(v.asString()));
        return out;
    }

    /**
     * Waits until Prometheus holds a sample taken after {@code unixSeconds} from every target that is up, so
     * queries at that time see the traffic before it; returns that time.
     */
    double awaitSamplesAfter(double unixSeconds, Duration timeout) throws IOException, InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        while (true) {
            List<JsonNode> oldest = query("min(timestamp(up == 1))", System.currentTimeMillis() / 1000.0);
            if (!oldest.isEmpty() && Double.parseDouble(oldest.getFirst().get("value").get(1).asString()) > unixSeconds) {
                return unixSeconds;
            }
            if (System.nanoTime() > deadline) {
                throw new AssertionError("no scrape of every target after " + unixSeconds + " within " + timeout
                        + ": " + oldest);
            }
            Thread.sleep(100);
        }
    }

    @Override
    public void close() {
        try {
            Runtime.getRuntime().removeShutdownHook(killer);
        } catch (IllegalStateException shuttingDown) {
            // the hook runs anyway
        }
        process.destroy();
        try {
            if (!process.waitFor(10, TimeUnit.SECONDS)) {
                process.destroyForcibly().waitFor(10, TimeUnit.SECONDS);
            }
        } catch (InterruptedException e) {
            process.destroyForcibly();
            Thread.currentThread().interrupt();
        }
    }
}

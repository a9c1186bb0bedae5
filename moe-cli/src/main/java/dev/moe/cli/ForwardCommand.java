package dev.moe.cli;

import dev.moe.cli.MoeCli.UserError;
import dev.moe.core.checkpoint.CheckpointException;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SafetensorsFile;
import dev.moe.core.checkpoint.SafetensorsWriter;
import dev.moe.core.checkpoint.TensorInfo;
import dev.moe.core.tensor.HiddenStatesCodec;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardResponse;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.concurrent.Callable;
import picocli.CommandLine.Command;
import picocli.CommandLine.Option;

/**
 * {@code moe forward}: one MoE layer on the tensor {@code hidden_states} of a safetensors file, through the router's
 * public gRPC API; writes the output, the chosen experts and their weights.
 */
@Command(name = "forward", mixinStandardHelpOptions = true,
        description = "Run one MoE layer on hidden states from a safetensors file, through a router.")
final class ForwardCommand implements Callable<Integer> {

    @Option(names = "--model", description = "Checkpoint folder; starts an embedded router and expert servers on it.")
    Path model;

    @Option(names = "--target", description = "host:port of a running router (then --model is not needed).")
    String target;

    @Option(names = "--layer", required = true, description = "Decoder layer index (a MoE layer).")
    int layer;

    @Option(names = "--input", required = true,
            description = "safetensors file with hidden_states [tokens, hidden] (F32, BF16 or F16).")
    Path input;

    @Option(names = "--output", required = true,
            description = "safetensors file to write: hidden_states F32, topk_ids I32, topk_weights F32.")
    Path output;

    @Option(names = "--expert-servers", defaultValue = "2",
            description = "Expert servers of the embedded cluster (default: ${DEFAULT-VALUE}).")
    int expertServers;

    @Option(names = "--weights", defaultValue = "bf16",
            description = "How the embedded expert servers store weights: f32, bf16 or int8 (default: ${DEFAULT-VALUE}).")
    String weights;

    @Option(names = "--sparsity", description = "SCAP thresholds file for the embedded expert servers.")
    Path sparsity;

    @Option(names = "--timeout", defaultValue = "60s",
            description = "How long to wait for the router's answer (e.g. 30s, 2m; default: ${DEFAULT-VALUE}).")
    String timeout;

    /** gRPC logs a failed name resolution with its stack trace; the command reports it in one line instead. */
    private static final java.util.logging.Logger GRPC_LOG = java.util.logging.Logger.getLogger("io.grpc");

    @Override
    public Integer call() throws Exception {
        if ((model == null) == (target == null)) {
            throw new UserError("give exactly one of --model DIR (embedded cluster) or --target host:port");
        }
        java.util.Map<String, String> expertSettings = LocalCommand.expertSettings(weights, sparsity);
        if (layer < 0) {
            throw new UserError("--layer must be >= 0, got " + layer);
        }
        java.time.Duration deadline = LocalCommand.parseDuration("--timeout", timeout);
        if (deadline.isNegative() || deadline.isZero()) {
            throw new UserError("--timeout must be positive, got " + timeout);
        }
        if (target != null) {
            requireHostPort(target);
        }
        if (Files.isDirectory(output)) {
            throw new UserError("--output " + output + " is a directory; give a file name");
        }
        Path parent = output.toAbsolutePath().getParent();
        if (parent != null && !Files.isDirectory(parent)) {
            throw new UserError("--output " + output + ": " + parent + " is not a directory");
        }
        if (model != null) {
            LocalCommand.checkServable(model, expertServers, sparsity);
        }
        float[] hiddenStates;
        int numTokens;
        int hiddenSize;
        if (!Files.isRegularFile(input)) {
            throw new UserError("--input " + input + " is not a file");
        }
        try (SafetensorsFile file = SafetensorsFile.open(input)) {
            TensorInfo info = file.tensors().get("hidden_states");
            if (info == null) {
                throw new UserError(input + " has no tensor named hidden_states (found " + file.tensors().keySet() + ")");
            }
            if (info.shape().length != 2 || info.shape()[0] < 1) {
                throw new UserError("hidden_states must be [tokens, hidden] with tokens >= 1, got " + info.shapeString());
            }
            if (info.dtype() != DType.F32 && info.dtype() != DType.BF16 && info.dtype() != DType.F16) {
                throw new UserError("hidden_states is " + info.dtype() + "; use F32, BF16 or F16");
            }
            numTokens = (int) info.shape()[0];
            hiddenSize = (int) info.shape()[1];
            hiddenStates = file.readFloats(info);
        } catch (CheckpointException e) {
            throw new UserError(e.getMessage());
        }
        // Sent as F32 whatever the file holds: BF16/F16 widen exactly, and the output keeps full precision.
        ForwardRequest request = ForwardRequest.newBuilder()
                .setLayer(layer)
                .setHiddenStates(HiddenStatesPayloads.encode(hiddenStates, 0, numTokens, hiddenSize, WireType.FLOAT32))
                .setReturnRouting(true)
                .build();
        ForwardResponse response;
        if (target != null) {
            response = send(target, request, deadline);
        } else {
            try (EmbeddedCluster cluster = EmbeddedCluster.start(EmbeddedCluster.Options.of(model, expertServers)
                    .withProperties(java.util.Map.of("logging.level.root", "WARN"))
                    .withProperties(LocalCommand.NO_STARTUP_FAILURE_TRACES).withProperties(expertSettings))) {
                response = send(cluster.routerAddress(), request, deadline);
            }
        }
        write(response, numTokens, hiddenSize);
        System.err.printf("moe: layer %d, %d tokens -> %s%n", layer, numTokens, output);
        return 0;
    }

    /** {@code host:port} with a port in [1, 65535]; IPv6 hosts in brackets ({@code [::1]:9090}). */
    static void requireHostPort(String target) {
        int colon = target.lastIndexOf(':');
        String host = colon < 0 ? "" : target.substring(0, colon);
        boolean hostOk = !host.isEmpty() && (host.startsWith("[") ? host.endsWith("]") : !host.contains(":"));
        int port = -1;
        try {
            port = Integer.parseInt(target.substring(colon + 1));
        } catch (NumberFormatException e) {
            // reported below
        }
        if (!hostOk || port < 1 || port > 65535) {
            throw new UserError("--target '" + target + "' is not host:port (e.g. 127.0.0.1:9090)");
        }
    }

    private static ForwardResponse send(String target, ForwardRequest request, java.time.Duration deadline) {
        GRPC_LOG.setLevel(java.util.logging.Level.OFF);
        try (RouterClient client = new RouterClient(target)) {
            return client.blocking().withDeadlineAfter(deadline.toMillis(), java.util.concurrent.TimeUnit.MILLISECONDS)
                    .forward(request);
        } catch (StatusRuntimeException e) {
            Status status = e.getStatus();
            String message = switch (status.getCode()) {
                case DEADLINE_EXCEEDED -> "no answer from the router at " + target + " within " + deadline.toSeconds()
                        + " s (--timeout)";
                case UNAVAILABLE -> "cannot reach a router at " + target + ": " + status.getDescription()
                        + (status.getCause() == null ? "" : " (" + status.getCause().getMessage() + ")");
                default -> "the router at " + target + " answered " + status.getCode() + ": " + status.getDescription();
            };
            if (status.getCode() == Status.Code.INVALID_ARGUMENT || status.getCode() == Status.Code.RESOURCE_EXHAUSTED) {
                throw new UserError(message);
            }
            throw new IllegalStateException(message); // complete as it is: the cause's message is in it
        }
    }

    private void write(ForwardResponse response, int numTokens, int hiddenSize) throws IOException {
        float[] out = HiddenStatesCodec.decode(response.getHiddenStates().getData().asReadOnlyByteBuffer(),
                WireType.FLOAT32, numTokens * hiddenSize);
        int k = response.getRouting().getNumExpertsPerToken();
        int[] ids = response.getRouting().getExpertIdsList().stream().mapToInt(Integer::intValue).toArray();
        float[] weights = new float[ids.length];
        for (int i = 0; i < weights.length; i++) {
            weights[i] = response.getRouting().getRoutingWeights(i);
        }
        new SafetensorsWriter()
                .metadata("layer", Integer.toString(layer))
                .addF32("hidden_states", new long[] {numTokens, hiddenSize}, out)
                .addI32("topk_ids", new long[] {numTokens, k}, ids)
                .addF32("topk_weights", new long[] {numTokens, k}, weights)
                .write(output);
    }
}

package dev.moe.router.dispatch;

import dev.moe.core.gating.RoutingDecision;
import io.grpc.Status;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;

/**
 * Which tokens go to which expert server: one {@link ServerBatch} per server that hosts at least one chosen expert.
 * A token appears in a server's batch once, however many of its experts live there, and never in the batch of a
 * server that hosts none of them.
 */
public final class DispatchPlan {
    private DispatchPlan() {
    }

    /**
     * The work of one server.
     *
     * @param endpoint         the server
     * @param tokens           batch-row indices of the tokens sent, ascending
     * @param expertsPerToken  for each sent token, how many of its experts this server applies
     * @param expertIds        those experts, grouped by token
     * @param routingWeights   their combine weights
     */
    public record ServerBatch(ExpertEndpoint endpoint, int[] tokens, int[] expertsPerToken, int[] expertIds,
                              float[] routingWeights) {
    }

    public static List<ServerBatch> plan(RoutingDecision routing, ExpertRoutingTable table, int layer) {
        Map<ExpertEndpoint, Builder> builders = new LinkedHashMap<>();
        for (int t = 0; t < routing.numTokens(); t++) {
            for (int j = 0; j < routing.topK(); j++) {
                int expert = routing.expertId(t, j);
                ExpertEndpoint endpoint = table.select(expert);
                if (endpoint == null) {
                    throw Status.UNAVAILABLE.withDescription("expert " + expert + " of layer " + layer
                            + " has no ready expert server").asRuntimeException();
                }
                builders.computeIfAbsent(endpoint, Builder::new).add(t, expert, routing.weight(t, j));
            }
        }
        List<ServerBatch> batches = new ArrayList<>(builders.size());
        builders.values().forEach(b -> batches.add(b.build()));
        return batches;
    }

    private static final class Builder {
        private final ExpertEndpoint endpoint;
        private int[] tokens = new int[16];
        private int[] counts = new int[16];
        private int numTokens;
        private int[] ids = new int[16];
        private float[] weights = new float[16];
        private int numAssignments;

        Builder(ExpertEndpoint endpoint) {
            this.endpoint = endpoint;
        }

        void add(int token, int expert, float weight) {
            if (numTokens == 0 || tokens[numTokens - 1] != token) {
                if (numTokens == tokens.length) {
                    tokens = Arrays.copyOf(tokens, numTokens * 2);
                    counts = Arrays.copyOf(counts, numTokens * 2);
                }
                tokens[numTokens] = token;
                counts[numTokens++] = 0;
            }
            counts[numTokens - 1]++;
            if (numAssignments == ids.length) {
                ids = Arrays.copyOf(ids, numAssignments * 2);
                weights = Arrays.copyOf(weights, numAssignments * 2);
            }
            ids[numAssignments] = expert;
            weights[numAssignments++] = weight;
        }

        ServerBatch build() {
            return new ServerBatch(endpoint, Arrays.copyOf(tokens, numTokens), Arrays.copyOf(counts, numTokens),
                    Arrays.copyOf(ids, numAssignments), Arrays.copyOf(weights, numAssignments));
        }
    }
}

package dev.moe.router.dispatch;

import java.util.ArrayList;
import java.util.List;

/**
 * Immutable expert → server table. Each expert maps to the list of servers hosting it (its replicas), so replicated
 * hot experts and servers that come and go only change how a new table is built: the dispatcher swaps whole tables.
 */
public final class ExpertRoutingTable {
    private final int numExperts;
    private final List<ExpertEndpoint> endpoints;
    private final ExpertEndpoint[][] replicasByExpert;

    private ExpertRoutingTable(int numExperts, List<ExpertEndpoint> endpoints, ExpertEndpoint[][] replicasByExpert) {
        this.numExperts = numExperts;
        this.endpoints = endpoints;
        this.replicasByExpert = replicasByExpert;
    }

    public static ExpertRoutingTable empty(int numExperts) {
        return of(numExperts, List.of());
    }

    public static ExpertRoutingTable of(int numExperts, List<ExpertEndpoint> endpoints) {
        List<List<ExpertEndpoint>> replicas = new ArrayList<>();
        for (int e = 0; e < numExperts; e++) {
            replicas.add(new ArrayList<>());
        }
        for (ExpertEndpoint endpoint : endpoints) {
            for (int e : endpoint.expertIds()) {
                if (e < 0 || e >= numExperts) {
                    throw new IllegalArgumentException(endpoint + " reports expert " + e + " outside [0, " + numExperts + ")");
                }
                replicas.get(e).add(endpoint);
            }
        }
        ExpertEndpoint[][] byExpert = new ExpertEndpoint[numExperts][];
        for (int e = 0; e < numExperts; e++) {
            byExpert[e] = replicas.get(e).toArray(ExpertEndpoint[]::new);
        }
        return new ExpertRoutingTable(numExperts, List.copyOf(endpoints), byExpert);
    }

    public int numExperts() {
        return numExperts;
    }

    public List<ExpertEndpoint> endpoints() {
        return endpoints;
    }

    /** Servers hosting the expert (possibly none). */
    public List<ExpertEndpoint> replicas(int expertId) {
        return List.of(replicasByExpert[expertId]);
    }

    /** The server a token's assignment to {@code expertId} goes to, or null when no server hosts it. */
    public ExpertEndpoint select(int expertId) {
        ExpertEndpoint[] replicas = replicasByExpert[expertId];
        // One replica per expert for now; load balancing across replicas plugs in here.
        return replicas.length == 0 ? null : replicas[0];
    }

    /** Experts no server hosts, ascending. */
    public List<Integer> uncoveredExperts() {
        List<Integer> missing = new ArrayList<>();
        for (int e = 0; e < numExperts; e++) {
            if (replicasByExpert[e].length == 0) {
                missing.add(e);
            }
        }
        return missing;
    }
}

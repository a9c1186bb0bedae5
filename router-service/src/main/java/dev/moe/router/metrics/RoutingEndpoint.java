package dev.moe.router.metrics;

import java.util.TreeMap;
import org.springframework.boot.actuate.endpoint.annotation.Endpoint;
import org.springframework.boot.actuate.endpoint.annotation.ReadOperation;

/**
 * {@code GET /actuator/routing}: the expert selection of the current sliding window of every MoE layer, as a
 * {@link RoutingReference} document. Save it on known-good traffic and give it back as
 * {@code moe.router.metrics.drift-reference} so drift is measured against it.
 */
@Endpoint(id = "routing")
public class RoutingEndpoint {
    private final ExpertLoadMetrics load;
    private final String fingerprint;
    private final int numExperts;

    public RoutingEndpoint(ExpertLoadMetrics load, String fingerprint, int numExperts) {
        this.load = load;
        this.fingerprint = fingerprint;
        this.numExperts = numExperts;
    }

    @ReadOperation
    public String routing() {
        return current().toJson();
    }

    /** Layers without traffic in the window are left out (their counts would be all zeros). */
    public RoutingReference current() {
        TreeMap<Integer, long[]> counts = new TreeMap<>();
        for (int layer : load.moeLayers()) {
            long[] c = load.windowCounts(layer);
            long sum = 0;
            for (long v : c) {
                sum += v;
            }
            if (sum > 0) {
                counts.put(layer, c);
            }
        }
        return new RoutingReference(fingerprint, numExperts, counts);
    }
}

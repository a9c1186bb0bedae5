package dev.moe.router.discovery;

import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.router.dispatch.ExpertEndpoint;
import dev.moe.router.dispatch.ExpertRoutingTable;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.protobuf.services.HealthStatusManager;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.atomic.AtomicReference;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * The router's current expert → server table. Discovery (static endpoints now, Kubernetes later) reports servers
 * joining and leaving; each change builds a new immutable {@link ExpertRoutingTable} and swaps it in atomically, so
 * a forward sees one consistent table from start to end. The router reports SERVING on gRPC health only while every
 * expert has at least one server.
 */
public final class ExpertDirectory {
    private static final Logger log = LoggerFactory.getLogger(ExpertDirectory.class);

    private final int numExperts;
    private final HealthStatusManager health;
    private final Map<String, ExpertEndpoint> byAddress = new LinkedHashMap<>();
    private final AtomicReference<ExpertRoutingTable> table;
    private final Object coverageMonitor = new Object();

    public ExpertDirectory(int numExperts, HealthStatusManager health) {
        this.numExperts = numExperts;
        this.health = health;
        this.table = new AtomicReference<>(ExpertRoutingTable.empty(numExperts));
        updateHealth(table.get());
    }

    public ExpertRoutingTable table() {
        return table.get();
    }

    public synchronized void put(ExpertEndpoint endpoint) {
        byAddress.put(endpoint.address(), endpoint);
        publish();
    }

    public synchronized void remove(String address) {
        if (byAddress.remove(address) != null) {
            publish();
        }
    }

    /** Blocks until every expert has a server or the timeout passes; true when covered. */
    public boolean awaitCoverage(Duration timeout) throws InterruptedException {
        long deadline = System.nanoTime() + timeout.toNanos();
        synchronized (coverageMonitor) {
            while (!table.get().uncoveredExperts().isEmpty()) {
                long left = deadline - System.nanoTime();
                if (left <= 0) {
                    return false;
                }
                coverageMonitor.wait(Math.max(1, left / 1_000_000));
            }
        }
        return true;
    }

    private void publish() {
        ExpertRoutingTable next = ExpertRoutingTable.of(numExperts, new ArrayList<>(byAddress.values()));
        table.set(next);
        updateHealth(next);
        synchronized (coverageMonitor) {
            coverageMonitor.notifyAll();
        }
    }

    private void updateHealth(ExpertRoutingTable current) {
        List<Integer> missing = current.uncoveredExperts();
        ServingStatus status = missing.isEmpty() ? ServingStatus.SERVING : ServingStatus.NOT_SERVING;
        if (health != null) {
            health.setStatus(RouterServiceGrpc.SERVICE_NAME, status);
            health.setStatus(HealthStatusManager.SERVICE_NAME_ALL_SERVICES, status);
        }
        if (missing.isEmpty()) {
            log.info("every expert has a server ({} servers)", current.endpoints().size());
        } else if (!current.endpoints().isEmpty()) {
            log.info("{} of {} experts have no server yet", missing.size(), numExperts);
        }
    }
}

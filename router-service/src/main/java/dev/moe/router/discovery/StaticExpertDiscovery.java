package dev.moe.router.discovery;

import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.SmartLifecycle;

/**
 * Discovery from a fixed list of {@code host:port} endpoints: probes each server, retrying the ones not yet up once
 * a second, and adds every server that serves the router's checkpoint to the {@link ExpertDirectory}. A server
 * reporting another model fingerprint, hidden size or expert count is refused, with an error log.
 */
public final class StaticExpertDiscovery implements SmartLifecycle {
    private static final Logger log = LoggerFactory.getLogger(StaticExpertDiscovery.class);
    private static final Duration RETRY_INTERVAL = Duration.ofSeconds(1);

    private final List<String> addresses;
    private final ExpertServerProbe probe;
    private final ExpertDirectory directory;
    private volatile Thread worker;
    private volatile boolean running;

    public StaticExpertDiscovery(List<String> addresses, ExpertServerProbe probe, ExpertDirectory directory) {
        this.addresses = List.copyOf(addresses);
        this.probe = probe;
        this.directory = directory;
    }

    @Override
    public void start() {
        running = true;
        worker = Thread.ofVirtual().name("static-expert-discovery").start(this::describeUntilAllKnown);
    }

    private void describeUntilAllKnown() {
        Set<String> pending = new LinkedHashSet<>(addresses);
        while (running && !pending.isEmpty()) {
            for (String address : new ArrayList<>(pending)) {
                switch (probe.probe(address)) {
                    case ExpertServerProbe.Outcome.Accepted accepted -> {
                        directory.put(accepted.endpoint());
                        pending.remove(address);
                    }
                    case ExpertServerProbe.Outcome.Refused refused -> pending.remove(address);
                    case ExpertServerProbe.Outcome.Unreachable unreachable ->
                            log.debug("expert server {} not reachable yet: {}", address, unreachable.status());
                }
            }
            if (!pending.isEmpty()) {
                try {
                    Thread.sleep(RETRY_INTERVAL);
                } catch (InterruptedException e) {
                    return;
                }
            }
        }
    }

    @Override
    public void stop() {
        running = false;
        Thread t = worker;
        if (t != null) {
            t.interrupt();
        }
    }

    @Override
    public boolean isRunning() {
        return running;
    }
}

package dev.moe.router.discovery;

import dev.moe.proto.expert.v1.DescribeShardRequest;
import dev.moe.proto.expert.v1.DescribeShardResponse;
import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import dev.moe.router.dispatch.ExpertChannels;
import dev.moe.router.dispatch.ExpertEndpoint;
import dev.moe.router.gating.RouterModel;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.time.Duration;
import java.util.ArrayList;
import java.util.LinkedHashSet;
import java.util.List;
import java.util.Set;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.context.SmartLifecycle;

/**
 * Discovery from a fixed list of {@code host:port} endpoints: asks each server DescribeShard, retrying the ones not
 * yet up once a second, and adds every server that serves the router's checkpoint to the {@link ExpertDirectory}.
 * A server reporting another model fingerprint, hidden size or expert count is refused, with an error log.
 */
public final class StaticExpertDiscovery implements SmartLifecycle {
    private static final Logger log = LoggerFactory.getLogger(StaticExpertDiscovery.class);
    private static final Duration RETRY_INTERVAL = Duration.ofSeconds(1);

    private final List<String> addresses;
    private final RouterModel model;
    private final ExpertChannels channels;
    private final ExpertDirectory directory;
    private volatile Thread worker;
    private volatile boolean running;

    public StaticExpertDiscovery(List<String> addresses, RouterModel model, ExpertChannels channels,
                                 ExpertDirectory directory) {
        this.addresses = List.copyOf(addresses);
        this.model = model;
        this.channels = channels;
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
                Outcome outcome = describe(address);
                if (outcome != Outcome.RETRY) {
                    pending.remove(address);
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

    private enum Outcome { ADDED, REFUSED, RETRY }

    private Outcome describe(String address) {
        ManagedChannel channel = channels.channel(address);
        DescribeShardResponse shard;
        try {
            shard = ExpertServiceGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .describeShard(DescribeShardRequest.getDefaultInstance());
        } catch (StatusRuntimeException e) {
            log.debug("expert server {} not reachable yet: {}", address, e.getStatus());
            return Outcome.RETRY;
        }
        String mismatch = mismatch(shard);
        if (mismatch != null) {
            log.error("refusing expert server {} at {}: {}", shard.getServerId(), address, mismatch);
            return Outcome.REFUSED;
        }
        int[] experts = shard.getExpertIdsList().stream().mapToInt(Integer::intValue).toArray();
        directory.put(new ExpertEndpoint(shard.getServerId(), address, experts, ExpertServiceGrpc.newFutureStub(channel)));
        log.info("expert server {} at {} hosts {} experts", shard.getServerId(), address, experts.length);
        return Outcome.ADDED;
    }

    /** Why a server cannot serve this router, or null. */
    String mismatch(DescribeShardResponse shard) {
        if (!shard.getModelFingerprint().equals(model.fingerprint())) {
            return "model fingerprint " + shard.getModelFingerprint() + " differs from the router's "
                    + model.fingerprint() + " (different checkpoint?)";
        }
        if (shard.getHiddenSize() != model.config().hiddenSize() || shard.getNumExperts() != model.config().numExperts()) {
            return "hidden size/experts " + shard.getHiddenSize() + "/" + shard.getNumExperts() + " differ from "
                    + model.config().hiddenSize() + "/" + model.config().numExperts();
        }
        return null;
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

package dev.moe.router.discovery;

import dev.moe.proto.expert.v1.DescribeShardRequest;
import dev.moe.proto.expert.v1.DescribeShardResponse;
import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import dev.moe.router.dispatch.ExpertChannels;
import dev.moe.router.dispatch.ExpertEndpoint;
import dev.moe.router.gating.RouterModel;
import io.grpc.ManagedChannel;
import io.grpc.StatusRuntimeException;
import java.util.concurrent.TimeUnit;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Asks one expert server what it hosts (DescribeShard) and checks it serves the router's checkpoint: the step every
 * discovery mechanism shares between "a server is there" and "its experts are in the table".
 */
public final class ExpertServerProbe {
    private static final Logger log = LoggerFactory.getLogger(ExpertServerProbe.class);

    private final RouterModel model;
    private final ExpertChannels channels;

    public ExpertServerProbe(RouterModel model, ExpertChannels channels) {
        this.model = model;
        this.channels = channels;
    }

    /** What a probe found. */
    public sealed interface Outcome {
        /** The server serves this model: its endpoint. */
        record Accepted(ExpertEndpoint endpoint) implements Outcome {
        }

        /** The server answered but serves something else; retrying will not help. */
        record Refused(String reason) implements Outcome {
        }

        /** The server did not answer (yet). */
        record Unreachable(String status) implements Outcome {
        }
    }

    public Outcome probe(String address) {
        ManagedChannel channel = channels.channel(address);
        DescribeShardResponse shard;
        try {
            shard = ExpertServiceGrpc.newBlockingStub(channel).withDeadlineAfter(5, TimeUnit.SECONDS)
                    .describeShard(DescribeShardRequest.getDefaultInstance());
        } catch (StatusRuntimeException e) {
            return new Outcome.Unreachable(e.getStatus().toString());
        }
        String mismatch = mismatch(shard);
        if (mismatch != null) {
            log.error("refusing expert server {} at {}: {}", shard.getServerId(), address, mismatch);
            channels.release(address, java.time.Duration.ZERO);
            return new Outcome.Refused(mismatch);
        }
        int[] experts = shard.getExpertIdsList().stream().mapToInt(Integer::intValue).toArray();
        log.info("expert server {} at {} hosts {} experts", shard.getServerId(), address, experts.length);
        return new Outcome.Accepted(new ExpertEndpoint(shard.getServerId(), address, experts,
                ExpertServiceGrpc.newFutureStub(channel)));
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
}

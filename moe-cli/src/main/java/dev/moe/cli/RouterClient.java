package dev.moe.cli;

import dev.moe.proto.router.v1.RouterServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.util.concurrent.TimeUnit;

/** A plaintext channel to a router's public API, sized for large batches. */
final class RouterClient implements AutoCloseable {
    private final ManagedChannel channel;

    RouterClient(String target) {
        this.channel = ManagedChannelBuilder.forTarget(target).usePlaintext().maxInboundMessageSize(512 << 20).build();
    }

    RouterServiceGrpc.RouterServiceBlockingStub blocking() {
        return RouterServiceGrpc.newBlockingStub(channel);
    }

    RouterServiceGrpc.RouterServiceStub async() {
        return RouterServiceGrpc.newStub(channel);
    }

    @Override
    public void close() {
        channel.shutdown();
        try {
            if (!channel.awaitTermination(5, TimeUnit.SECONDS)) {
                channel.shutdownNow();
            }
        } catch (InterruptedException e) {
            channel.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }
}

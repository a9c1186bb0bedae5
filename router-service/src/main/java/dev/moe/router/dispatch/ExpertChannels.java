package dev.moe.router.dispatch;

import io.grpc.ManagedChannel;
import java.time.Duration;
import java.util.Map;
import java.util.concurrent.ConcurrentHashMap;
import java.util.concurrent.TimeUnit;
import org.springframework.grpc.client.GrpcChannelFactory;

/** One channel per expert server address, created through Spring gRPC's channel factory and shut down here. */
public final class ExpertChannels implements AutoCloseable {
    private final GrpcChannelFactory channelFactory;
    private final Map<String, ManagedChannel> channels = new ConcurrentHashMap<>();

    public ExpertChannels(GrpcChannelFactory channelFactory) {
        this.channelFactory = channelFactory;
    }

    public ManagedChannel channel(String address) {
        return channels.computeIfAbsent(address, channelFactory::createChannel);
    }

    /**
     * Closes the channel of a server that left. The address is free at once (a server coming back under it gets a
     * new channel); calls already in flight may finish within {@code grace}, then the channel is forced shut.
     */
    public void release(String address, Duration grace) {
        ManagedChannel channel = channels.remove(address);
        if (channel != null) {
            channel.shutdown(); // new calls fail with UNAVAILABLE, calls in flight go on
            Thread.ofVirtual().name("release-" + address).start(() -> shutdown(channel, grace));
        }
    }

    public int size() {
        return channels.size();
    }

    @Override
    public void close() {
        channels.values().forEach(c -> shutdown(c, Duration.ofSeconds(2)));
        channels.clear();
    }

    private static void shutdown(ManagedChannel channel, Duration grace) {
        channel.shutdown();
        try {
            if (!channel.awaitTermination(grace.toMillis(), TimeUnit.MILLISECONDS)) {
                channel.shutdownNow();
            }
        } catch (InterruptedException e) {
            channel.shutdownNow();
            Thread.currentThread().interrupt();
        }
    }
}

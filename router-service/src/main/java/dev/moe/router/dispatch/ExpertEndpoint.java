package dev.moe.router.dispatch;

import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import java.util.Arrays;

/**
 * One expert server as the router sees it: what it reported through DescribeShard and a stub on its channel.
 * Identity is the address, so a re-described server maps to the same endpoint.
 *
 * @param serverId   the server's self-reported id
 * @param address    {@code host:port}
 * @param expertIds  routed experts it hosts (every MoE layer), ascending
 * @param stub       future stub on the server's channel (owned by {@link ExpertChannels})
 */
public record ExpertEndpoint(String serverId, String address, int[] expertIds,
                             ExpertServiceGrpc.ExpertServiceFutureStub stub) {

    @Override
    public boolean equals(Object o) {
        return o instanceof ExpertEndpoint e && address.equals(e.address);
    }

    @Override
    public int hashCode() {
        return address.hashCode();
    }

    @Override
    public String toString() {
        return serverId + "@" + address + Arrays.toString(expertIds);
    }
}

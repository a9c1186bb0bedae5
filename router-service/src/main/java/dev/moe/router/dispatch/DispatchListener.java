package dev.moe.router.dispatch;

import io.grpc.Status;

/**
 * Told about every ComputeExperts call when it ends (metrics); called on a gRPC thread, so it must be quick and must
 * not throw.
 */
@FunctionalInterface
public interface DispatchListener {
    DispatchListener NONE = (endpoint, code, nanos, requestBytes, responseBytes) -> { };

    /**
     * @param endpoint      the expert server called
     * @param code          how the call ended (OK, UNAVAILABLE, DEADLINE_EXCEEDED, ...)
     * @param nanos         time from sending the request to the end of the call
     * @param requestBytes  serialized size of the request
     * @param responseBytes serialized size of the response, 0 when the call failed
     */
    void callCompleted(ExpertEndpoint endpoint, Status.Code code, long nanos, long requestBytes, long responseBytes);

    /**
     * The router cancelled the call itself because the forward had already failed (another server of the same
     * forward failed first): not the server's fault, so not counted as one of its completed calls.
     */
    default void callAbandoned(ExpertEndpoint endpoint, long requestBytes) {
    }
}

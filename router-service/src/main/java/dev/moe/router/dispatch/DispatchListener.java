package dev.moe.router.dispatch;

import io.grpc.Status;

/** Told about every ComputeExperts call when it ends (metrics); called on a gRPC thread, so it must be quick. */
@FunctionalInterface
public interface DispatchListener {
    DispatchListener NONE = (endpoint, code, nanos, requestBytes, responseBytes) -> { };

    /**
     * @param endpoint      the expert server called
     * @param code          how the call ended (OK, DEADLINE_EXCEEDED, CANCELLED when the forward gave up, ...)
     * @param nanos         time from sending the request to the end of the call
     * @param requestBytes  serialized size of the request
     * @param responseBytes serialized size of the response, 0 when the call failed
     */
    void callCompleted(ExpertEndpoint endpoint, Status.Code code, long nanos, long requestBytes, long responseBytes);
}

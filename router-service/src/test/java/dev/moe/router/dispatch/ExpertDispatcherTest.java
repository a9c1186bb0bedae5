package dev.moe.router.dispatch;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.expert.v1.ComputeExpertsRequest;
import dev.moe.proto.expert.v1.ComputeExpertsResponse;
import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import io.grpc.Deadline;
import io.grpc.ManagedChannel;
import io.grpc.Metadata;
import io.grpc.Server;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.netty.NettyChannelBuilder;
import io.grpc.netty.NettyServerBuilder;
import io.grpc.stub.StreamObserver;
import java.net.InetSocketAddress;
import java.util.List;
import java.util.concurrent.CopyOnWriteArrayList;
import java.util.concurrent.CountDownLatch;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.Test;

/**
 * The dispatcher over real gRPC on loopback: one expert server fails at once, another never answers. The forward
 * fails with the first server's status; the call the router then cancels on the second server is reported as
 * abandoned, not as a failure of that server.
 */
class ExpertDispatcherTest {
    private Server failing;
    private Server hanging;
    private final List<ManagedChannel> channels = new CopyOnWriteArrayList<>();
    private final CountDownLatch hangingCalled = new CountDownLatch(1);

    private record Event(String kind, String server, Status.Code code, long requestBytes, long responseBytes) {
    }

    @AfterEach
    void stop() throws InterruptedException {
        channels.forEach(ManagedChannel::shutdownNow);
        for (Server s : new Server[] {failing, hanging}) {
            if (s != null) {
                s.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
            }
        }
    }

    private static Server serve(ExpertServiceGrpc.ExpertServiceImplBase service) throws Exception {
        return NettyServerBuilder.forAddress(new InetSocketAddress("127.0.0.1", 0)).addService(service).build().start();
    }

    private ExpertEndpoint endpoint(String id, Server server, int... experts) {
        ManagedChannel channel = NettyChannelBuilder.forAddress("127.0.0.1", server.getPort()).usePlaintext().build();
        channels.add(channel);
        return new ExpertEndpoint(id, "127.0.0.1:" + server.getPort(), experts, ExpertServiceGrpc.newFutureStub(channel));
    }

    @Test
    void theCallCancelledAfterAnotherServerFailedIsAbandonedNotFailed() throws Exception {
        failing = serve(new ExpertServiceGrpc.ExpertServiceImplBase() {
            @Override
            public void computeExperts(ComputeExpertsRequest request, StreamObserver<ComputeExpertsResponse> out) {
                out.onError(Status.UNAVAILABLE.withDescription("shutting down").asRuntimeException());
            }
        });
        hanging = serve(new ExpertServiceGrpc.ExpertServiceImplBase() {
            @Override
            public void computeExperts(ComputeExpertsRequest request, StreamObserver<ComputeExpertsResponse> out) {
                hangingCalled.countDown(); // and never answer
            }
        });
        List<Event> events = new CopyOnWriteArrayList<>();
        CountDownLatch reported = new CountDownLatch(2);
        ExpertDispatcher dispatcher = new ExpertDispatcher(new DispatchListener() {
            @Override
            public void callCompleted(ExpertEndpoint e, Status.Code code, long nanos, long requestBytes,
                                      long responseBytes) {
                events.add(new Event("completed", e.serverId(), code, requestBytes, responseBytes));
                reported.countDown();
            }

            @Override
            public void callAbandoned(ExpertEndpoint e, long requestBytes) {
                events.add(new Event("abandoned", e.serverId(), null, requestBytes, 0));
                reported.countDown();
            }
        });
        ExpertEndpoint a = endpoint("a", failing, 0);
        ExpertEndpoint b = endpoint("b", hanging, 1);
        float[] x = {1, 2, 3, 4, 5, 6, 7, 8};
        List<DispatchPlan.ServerBatch> batches = List.of(
                new DispatchPlan.ServerBatch(a, new int[] {0}, new int[] {1}, new int[] {0}, new float[] {1f}),
                new DispatchPlan.ServerBatch(b, new int[] {1}, new int[] {1}, new int[] {1}, new float[] {1f}));
        List<ExpertDispatcher.PendingCall> calls = dispatcher.dispatch(3, "fp", x, 4, WireType.FLOAT32, batches,
                Deadline.after(30, TimeUnit.SECONDS));
        assertThat(hangingCalled.await(10, TimeUnit.SECONDS)).isTrue();

        // What ForwardPipeline does: await in order, cancel the rest on the first failure.
        assertThatThrownBy(() -> ExpertDispatcher.await(calls.get(0), 3))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.UNAVAILABLE);
                    assertThat(e.getStatus().getDescription()).contains("expert server a", "layer 3", "shutting down");
                });
        calls.forEach(c -> c.response().cancel(true));

        assertThat(reported.await(10, TimeUnit.SECONDS)).isTrue();
        assertThat(events).extracting(Event::kind, Event::server, Event::code).containsExactlyInAnyOrder(
                org.assertj.core.groups.Tuple.tuple("completed", "a", Status.Code.UNAVAILABLE),
                org.assertj.core.groups.Tuple.tuple("abandoned", "b", null));
        // Both requests went out: one token of 4 float32 values each, plus routing and framing.
        assertThat(events).allSatisfy(e -> assertThat(e.requestBytes()).isGreaterThan(16));
        assertThat(events).allSatisfy(e -> assertThat(e.responseBytes()).isZero());
    }
    /** An expert server answering every call with {@code status} and {@code trailers}. */
    private static ExpertServiceGrpc.ExpertServiceImplBase refusing(Status status, Metadata trailers) {
        return new ExpertServiceGrpc.ExpertServiceImplBase() {
            @Override
            public void computeExperts(ComputeExpertsRequest request, StreamObserver<ComputeExpertsResponse> out) {
                out.onError(status.asRuntimeException(trailers));
            }
        };
    }

    private StatusRuntimeException awaitFailure(Status status, Metadata trailers) throws Exception {
        failing = serve(refusing(status, trailers));
        ExpertDispatcher dispatcher = new ExpertDispatcher(new DispatchListener() {
            @Override
            public void callCompleted(ExpertEndpoint e, Status.Code code, long nanos, long requestBytes,
                                      long responseBytes) {
            }

            @Override
            public void callAbandoned(ExpertEndpoint e, long requestBytes) {
            }
        });
        // The server's call holds the request's tokens 4 and 7.
        List<DispatchPlan.ServerBatch> batches = List.of(new DispatchPlan.ServerBatch(endpoint("a", failing, 0),
                new int[] {4, 7}, new int[] {1, 1}, new int[] {0, 0}, new float[] {1f, 1f}));
        float[] x = new float[8 * 2];
        List<ExpertDispatcher.PendingCall> calls = dispatcher.dispatch(3, "fp", x, 2, WireType.FLOAT32, batches,
                Deadline.after(30, TimeUnit.SECONDS));
        try {
            ExpertDispatcher.await(calls.getFirst(), 3);
        } catch (StatusRuntimeException e) {
            return e;
        }
        throw new AssertionError("the call did not fail");
    }

    @Test
    void anOverflowTheServerNamesIsTheClientsErrorAtItsOwnTokenIndex() throws Exception {
        Metadata trailers = new Metadata();
        trailers.put(HiddenStatesPayloads.OVERFLOW_TOKEN, "1");
        StatusRuntimeException e = awaitFailure(Status.INVALID_ARGUMENT.withDescription("hidden_states of token 1"
                + " overflow the experts [0] of layer 3 on a: the output is not finite"), trailers);

        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(e.getStatus().getDescription()).startsWith("hidden_states of token 7 overflow the experts on expert"
                + " server a").contains("layer 3", "the output is not finite");
    }

    @Test
    void anyOtherInvalidArgumentFromAServerIsInternal() throws Exception {
        StatusRuntimeException e = awaitFailure(Status.INVALID_ARGUMENT.withDescription("expert 0 is listed twice"),
                new Metadata());

        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
        assertThat(e.getStatus().getDescription()).contains("expert server a", "INVALID_ARGUMENT",
                "expert 0 is listed twice");
    }

    @Test
    void anOverflowTrailerOutsideTheCallIsIgnored() throws Exception {
        Metadata trailers = new Metadata();
        trailers.put(HiddenStatesPayloads.OVERFLOW_TOKEN, "2"); // the call has tokens 0 and 1 only
        StatusRuntimeException e = awaitFailure(Status.INVALID_ARGUMENT.withDescription("overflow"), trailers);

        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
    }
}

package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.oracle.ConformanceCases.Expected;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.expert.v1.ComputeExpertsRequest;
import dev.moe.proto.expert.v1.DescribeShardRequest;
import dev.moe.proto.expert.v1.DescribeShardResponse;
import dev.moe.proto.expert.v1.ExpertServiceGrpc;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardStreamResponse;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import io.grpc.health.v1.HealthCheckRequest;
import io.grpc.health.v1.HealthCheckResponse.ServingStatus;
import io.grpc.health.v1.HealthGrpc;
import io.grpc.reflection.v1.ServerReflectionGrpc;
import io.grpc.reflection.v1.ServerReflectionRequest;
import io.grpc.reflection.v1.ServerReflectionResponse;
import io.grpc.reflection.v1.ServiceResponse;
import io.grpc.stub.ClientCallStreamObserver;
import io.grpc.stub.ClientResponseObserver;
import io.grpc.stub.StreamObserver;
import java.util.ArrayList;
import java.util.Arrays;
import java.util.List;
import java.util.concurrent.CompletableFuture;
import java.util.concurrent.TimeUnit;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/** Streams, health, reflection and the expert servers' own API, on one conformance cluster. */
class ServicesTest {
    private static final String CASE = "mixtral-tiny"; // hidden 64, 8 experts, top-2, layers 0 and 1
    private static EmbeddedCluster cluster;
    private static ManagedChannel routerChannel;
    private static ManagedChannel expertChannel;
    private static List<Expected> expected;

    @BeforeAll
    static void start() {
        cluster = EmbeddedCluster.start(EmbeddedCluster.Options.of(ConformanceCases.dir(CASE), 2)
                .withProperties(RouterCalls.EXACT));
        routerChannel = RouterCalls.channel(cluster.routerAddress());
        expertChannel = RouterCalls.channel(cluster.experts().getFirst().address());
        expected = ConformanceCases.expected(CASE);
    }

    @AfterAll
    static void stop() throws InterruptedException {
        RouterCalls.close(routerChannel);
        RouterCalls.close(expertChannel);
        cluster.close();
    }

    private static ForwardRequest layerRequest(Expected e, String id) {
        return RouterCalls.request(e.layer(), e.input(), e.numTokens(), e.hiddenSize(), WireType.FLOAT32).toBuilder()
                .setRequestId(id).build();
    }

    @Test
    void streamAnswersEveryRequestInOrderWithErrorsInBand() throws Exception {
        List<ForwardRequest> requests = new ArrayList<>();
        for (int i = 0; i < 40; i++) {
            Expected e = expected.get(i % expected.size());
            if (i % 7 == 3) {
                requests.add(layerRequest(e, "bad-" + i).toBuilder().setLayer(9).build());
            } else {
                requests.add(layerRequest(e, "req-" + i));
            }
        }
        List<ForwardStreamResponse> responses = new ArrayList<>();
        CompletableFuture<Void> done = new CompletableFuture<>();
        StreamObserver<ForwardRequest> sender = RouterServiceGrpc.newStub(routerChannel).forwardStream(
                recorder(responses, done));
        requests.forEach(sender::onNext);
        sender.onCompleted();
        done.get(60, TimeUnit.SECONDS);
        assertThat(responses).hasSize(requests.size());
        for (int i = 0; i < requests.size(); i++) {
            ForwardStreamResponse r = responses.get(i);
            if (i % 7 == 3) {
                assertThat(r.hasError()).as("response %d", i).isTrue();
                assertThat(r.getError().getRequestId()).isEqualTo("bad-" + i);
                assertThat(r.getError().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT.value());
                assertThat(r.getError().getMessage()).contains("layer 9 does not exist");
            } else {
                Expected e = expected.get(i % expected.size());
                assertThat(r.getResponse().getRequestId()).isEqualTo("req-" + i);
                assertThat(RouterCalls.ids(r.getResponse())).containsExactly(e.topkIds());
                assertThat(RouterCalls.maxAbsDiff(RouterCalls.output(r.getResponse()), e.output()))
                        .isLessThanOrEqualTo(ConformanceCases.outputTolerance(e.output()));
            }
        }
    }

    /** A stream closed before any request completes with no responses; a cancelled one leaves the router serving. */
    @Test
    void emptyAndCancelledStreamsEndCleanly() throws Exception {
        List<ForwardStreamResponse> responses = new ArrayList<>();
        CompletableFuture<Void> emptyDone = new CompletableFuture<>();
        StreamObserver<ForwardRequest> empty = RouterServiceGrpc.newStub(routerChannel).forwardStream(
                recorder(responses, emptyDone));
        empty.onCompleted();
        emptyDone.get(30, TimeUnit.SECONDS);
        assertThat(responses).isEmpty();

        CompletableFuture<Void> cancelledDone = new CompletableFuture<>();
        var call = (ClientCallStreamObserver<ForwardRequest>) RouterServiceGrpc.newStub(routerChannel).forwardStream(
                recorder(responses, cancelledDone));
        call.onNext(layerRequest(expected.getFirst(), "before-cancel"));
        call.cancel("client gave up", null);
        assertThatThrownBy(() -> cancelledDone.get(30, TimeUnit.SECONDS)).hasCauseInstanceOf(
                StatusRuntimeException.class).satisfies(e -> assertThat(Status.fromThrowable(e.getCause()).getCode())
                .isEqualTo(Status.Code.CANCELLED));

        Expected e = expected.getFirst();
        var after = RouterServiceGrpc.newBlockingStub(routerChannel).forward(layerRequest(e, "after-cancel"));
        assertThat(RouterCalls.maxAbsDiff(RouterCalls.output(after), e.output()))
                .isLessThanOrEqualTo(ConformanceCases.outputTolerance(e.output()));
    }

    private static StreamObserver<ForwardStreamResponse> recorder(List<ForwardStreamResponse> responses,
                                                                  CompletableFuture<Void> done) {
        return new StreamObserver<>() {
            @Override
            public void onNext(ForwardStreamResponse value) {
                synchronized (responses) {
                    responses.add(value);
                }
            }

            @Override
            public void onError(Throwable t) {
                done.completeExceptionally(t);
            }

            @Override
            public void onCompleted() {
                done.complete(null);
            }
        };
    }

    /** A client that reads one response at a time still gets every response, in order: the router waits for it. */
    @Test
    void streamHonoursClientFlowControl() throws Exception {
        int count = 12;
        List<String> ids = new ArrayList<>();
        CompletableFuture<Void> done = new CompletableFuture<>();
        Expected e = expected.getFirst();
        RouterServiceGrpc.newStub(routerChannel).forwardStream(new ClientResponseObserver<ForwardRequest, ForwardStreamResponse>() {
            private ClientCallStreamObserver<ForwardRequest> call;
            private int sent;

            @Override
            public void beforeStart(ClientCallStreamObserver<ForwardRequest> requestStream) {
                call = requestStream;
                requestStream.disableAutoRequestWithInitial(1);
                requestStream.setOnReadyHandler(() -> {
                    while (call.isReady() && sent < count) {
                        call.onNext(layerRequest(e, "r" + sent++));
                    }
                    if (sent == count) {
                        sent++;
                        call.onCompleted();
                    }
                });
            }

            @Override
            public void onNext(ForwardStreamResponse value) {
                ids.add(value.getResponse().getRequestId());
                call.request(1); // one at a time
            }

            @Override
            public void onError(Throwable t) {
                done.completeExceptionally(t);
            }

            @Override
            public void onCompleted() {
                done.complete(null);
            }
        });
        done.get(60, TimeUnit.SECONDS);
        List<String> want = new ArrayList<>();
        for (int i = 0; i < count; i++) {
            want.add("r" + i);
        }
        assertThat(ids).containsExactlyElementsOf(want);
    }

    /** 16384 tokens of hidden 64 in F32 are a 4 MiB payload: above gRPC's default message limit on every hop. */
    @Test
    void batchesLargerThanTheGrpcDefaultMessageSizePass() {
        Expected e = expected.getFirst();
        int tokens = 16384;
        float[] x = new float[tokens * 64];
        for (int t = 0; t < tokens; t++) {
            System.arraycopy(e.input(), (t % e.numTokens()) * 64, x, t * 64, 64);
        }
        var response = RouterServiceGrpc.newBlockingStub(routerChannel)
                .forward(RouterCalls.request(e.layer(), x, tokens, 64, WireType.FLOAT32));
        float[] out = RouterCalls.output(response);
        assertThat(response.getHiddenStates().getData().size()).isEqualTo(tokens * 64 * 4);
        float[] lastRow = Arrays.copyOfRange(out, (tokens - 1) * 64, tokens * 64);
        int source = (tokens - 1) % e.numTokens();
        float[] expectedRow = Arrays.copyOfRange(e.output(), source * 64, source * 64 + 64);
        assertThat(RouterCalls.maxAbsDiff(lastRow, expectedRow)).isLessThanOrEqualTo(
                ConformanceCases.outputTolerance(e.output()));
    }

    @Test
    void healthReportsServingOnRouterAndExperts() {
        var routerHealth = HealthGrpc.newBlockingStub(routerChannel);
        assertThat(routerHealth.check(HealthCheckRequest.newBuilder().setService(RouterServiceGrpc.SERVICE_NAME).build())
                .getStatus()).isEqualTo(ServingStatus.SERVING);
        assertThat(routerHealth.check(HealthCheckRequest.getDefaultInstance()).getStatus())
                .isEqualTo(ServingStatus.SERVING);
        assertThat(HealthGrpc.newBlockingStub(expertChannel).check(HealthCheckRequest.getDefaultInstance()).getStatus())
                .isEqualTo(ServingStatus.SERVING);
    }

    @Test
    void reflectionListsTheServices() throws Exception {
        assertThat(listServices(routerChannel)).contains("moe.router.v1.RouterService", "grpc.health.v1.Health");
        assertThat(listServices(expertChannel)).contains("moe.expert.v1.ExpertService", "grpc.health.v1.Health");
    }

    private static List<String> listServices(ManagedChannel channel) throws Exception {
        CompletableFuture<List<String>> names = new CompletableFuture<>();
        StreamObserver<ServerReflectionRequest> requests = ServerReflectionGrpc.newStub(channel).serverReflectionInfo(
                new StreamObserver<>() {
                    @Override
                    public void onNext(ServerReflectionResponse value) {
                        names.complete(value.getListServicesResponse().getServiceList().stream()
                                .map(ServiceResponse::getName).toList());
                    }

                    @Override
                    public void onError(Throwable t) {
                        names.completeExceptionally(t);
                    }

                    @Override
                    public void onCompleted() {
                    }
                });
        requests.onNext(ServerReflectionRequest.newBuilder().setListServices("").build());
        requests.onCompleted();
        return names.get(10, TimeUnit.SECONDS);
    }

    @Test
    void expertServerRefusesBadCallsAndKeepsServing() {
        var expert = ExpertServiceGrpc.newBlockingStub(expertChannel);
        DescribeShardResponse shard = expert.describeShard(DescribeShardRequest.getDefaultInstance());
        assertThat(shard.getServerId()).isEqualTo("expert-0");
        assertThat(shard.getExpertIdsList()).containsExactly(0, 1, 2, 3);
        assertThat(shard.getMoeLayersList()).containsExactly(0, 1);
        float[] x = Arrays.copyOf(expected.getFirst().input(), 2 * 64);
        ComputeExpertsRequest good = ComputeExpertsRequest.newBuilder()
                .setLayer(0).setModelFingerprint(shard.getModelFingerprint())
                .setHiddenStates(HiddenStatesPayloads.encode(x, 0, 2, 64, WireType.FLOAT32))
                .addExpertsPerToken(2).addExpertsPerToken(1)
                .addExpertIds(0).addExpertIds(3).addExpertIds(1)
                .addRoutingWeights(0.5f).addRoutingWeights(0.25f).addRoutingWeights(1f)
                .build();
        assertCode(() -> expert.computeExperts(good.toBuilder().setModelFingerprint("other").build()),
                Status.Code.FAILED_PRECONDITION, "different checkpoints");
        assertCode(() -> expert.computeExperts(good.toBuilder().setExpertIds(2, 5).build()),
                Status.Code.INVALID_ARGUMENT, "expert 5 (token 1, layer 0) is not hosted by expert-0 (hosts 0,1,2,3)");
        assertCode(() -> expert.computeExperts(good.toBuilder().setExpertIds(1, 0).build()),
                Status.Code.INVALID_ARGUMENT, "expert 0 is listed twice for token 0");
        assertCode(() -> expert.computeExperts(good.toBuilder().addExpertsPerToken(1).build()),
                Status.Code.INVALID_ARGUMENT, "experts_per_token has 3 entries for 2 tokens");
        assertCode(() -> expert.computeExperts(good.toBuilder().setExpertsPerToken(1, 0).build()),
                Status.Code.INVALID_ARGUMENT, "experts_per_token[1] = 0 is not in [1, 8]");
        assertCode(() -> expert.computeExperts(good.toBuilder().setRoutingWeights(0, Float.NaN).build()),
                Status.Code.INVALID_ARGUMENT, "routing_weights[0] is NaN");
        assertCode(() -> expert.computeExperts(good.toBuilder().setLayer(2).build()),
                Status.Code.INVALID_ARGUMENT, "layer 2 has no MoE block");
        assertCode(() -> expert.computeExperts(good.toBuilder().setLayer(-1).build()),
                Status.Code.INVALID_ARGUMENT, "layer 4294967295 has no MoE block");
        assertCode(() -> expert.computeExperts(good.toBuilder().clearHiddenStates().build()),
                Status.Code.INVALID_ARGUMENT, "hidden_states is not set");
        assertCode(() -> expert.computeExperts(good.toBuilder().setHiddenStates(
                        good.getHiddenStates().toBuilder().setElementTypeValue(7)).build()),
                Status.Code.INVALID_ARGUMENT, "element_type must be ELEMENT_TYPE_FLOAT32 (1) or ELEMENT_TYPE_BFLOAT16 (2),"
                        + " got the unknown value 7");
        // Finite inputs that overflow the experts: refused, naming the token and its experts, never OK with NaN.
        float[] huge = x.clone();
        for (int i = 64; i < 128; i++) {
            huge[i] *= 1e20f;
        }
        assertThatThrownBy(() -> expert.computeExperts(good.toBuilder()
                .setHiddenStates(HiddenStatesPayloads.encode(huge, 0, 2, 64, WireType.FLOAT32)).build()))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
                    assertThat(e.getStatus().getDescription()).contains("hidden_states of token 1 overflow the experts"
                            + " [1] of layer 0 on expert-0: the output is not finite");
                    assertThat(e.getTrailers().get(HiddenStatesPayloads.OVERFLOW_TOKEN)).isEqualTo("1");
                });
        var response = expert.computeExperts(good);
        assertThat(response.getNumTokens()).isEqualTo(2);
        assertThat(response.getPartialOutput().size()).isEqualTo(2 * 64 * 4);
    }

    private static void assertCode(Runnable call, Status.Code code, String message) {
        assertThatThrownBy(call::run).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(code);
            assertThat(e.getStatus().getDescription()).contains(message);
        });
    }
}

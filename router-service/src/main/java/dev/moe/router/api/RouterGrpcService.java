package dev.moe.router.api;

import dev.moe.core.config.MoeConfig;
import dev.moe.proto.router.v1.DescribeModelRequest;
import dev.moe.proto.router.v1.DescribeModelResponse;
import dev.moe.proto.router.v1.ExpertServerInfo;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardResponse;
import dev.moe.proto.router.v1.ForwardStreamResponse;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import dev.moe.proto.router.v1.StreamError;
import dev.moe.router.ForwardPipeline;
import dev.moe.router.discovery.ExpertDirectory;
import dev.moe.router.dispatch.ExpertEndpoint;
import dev.moe.router.gating.RouterModel;
import dev.moe.router.metrics.RouterMetrics;
import io.grpc.Status;
import io.grpc.stub.ServerCallStreamObserver;
import io.grpc.stub.StreamObserver;
import java.util.Arrays;
import java.util.function.Supplier;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;
import org.springframework.stereotype.Service;

/** The client-facing gRPC API of the router. */
@Service
public class RouterGrpcService extends RouterServiceGrpc.RouterServiceImplBase {
    private static final Logger log = LoggerFactory.getLogger(RouterGrpcService.class);

    private final ForwardPipeline pipeline;
    private final RouterModel model;
    private final Supplier<Iterable<ExpertEndpoint>> endpoints;
    private final RouterMetrics metrics;

    public RouterGrpcService(ForwardPipeline pipeline, RouterModel model, ExpertDirectory directory,
                             RouterMetrics metrics) {
        this.pipeline = pipeline;
        this.model = model;
        this.endpoints = () -> directory.table().endpoints();
        this.metrics = metrics;
    }

    @Override
    public void forward(ForwardRequest request, StreamObserver<ForwardResponse> responseObserver) {
        long start = System.nanoTime();
        ForwardResponse response;
        try {
            response = pipeline.forward(request);
        } catch (RuntimeException e) {
            Status status = RouterErrors.toStatus(e);
            measure("Forward", request, status.getCode(), start);
            responseObserver.onError(status.asRuntimeException());
            return;
        }
        measure("Forward", request, Status.Code.OK, start);
        responseObserver.onNext(response);
        responseObserver.onCompleted();
    }

    /** Tokens count as the request declared them, unless more than the router accepts (then 0: never decoded). */
    private void measure(String rpc, ForwardRequest request, Status.Code code, long start) {
        int declared = request.getHiddenStates().getNumTokens();
        int tokens = declared > 0 && declared <= pipeline.maxTokensPerRequest() ? declared : 0;
        metrics.forwardCompleted(rpc, code, tokens, System.nanoTime() - start);
    }

    /**
     * One response per request, in order. Manual inbound flow control: the next request is read only after the
     * previous response was queued on a ready transport, so a slow reader throttles its own writer.
     */
    @Override
    public StreamObserver<ForwardRequest> forwardStream(StreamObserver<ForwardStreamResponse> responseObserver) {
        ServerCallStreamObserver<ForwardStreamResponse> out =
                (ServerCallStreamObserver<ForwardStreamResponse>) responseObserver;
        out.disableAutoRequest();
        out.setOnCancelHandler(() -> log.debug("ForwardStream cancelled by the client"));
        Object lock = new Object();
        boolean[] wantsNext = {false};
        out.setOnReadyHandler(() -> {
            synchronized (lock) {
                if (wantsNext[0] && out.isReady()) {
                    wantsNext[0] = false;
                    out.request(1);
                }
            }
        });
        out.request(1);
        return new StreamObserver<>() {
            @Override
            public void onNext(ForwardRequest request) {
                long start = System.nanoTime();
                ForwardStreamResponse result;
                Status.Code code = Status.Code.OK;
                try {
                    result = ForwardStreamResponse.newBuilder().setResponse(pipeline.forward(request)).build();
                } catch (RuntimeException e) {
                    Status status = RouterErrors.toStatus(e);
                    code = status.getCode();
                    result = ForwardStreamResponse.newBuilder().setError(StreamError.newBuilder()
                            .setCode(status.getCode().value())
                            .setMessage(String.valueOf(status.getDescription()))
                            .setRequestId(request.getRequestId())).build();
                }
                measure("ForwardStream", request, code, start);
                synchronized (lock) {
                    if (out.isCancelled()) {
                        return; // the client is gone: nobody to answer
                    }
                    out.onNext(result);
                    if (out.isReady()) {
                        out.request(1);
                    } else {
                        wantsNext[0] = true;
                    }
                }
            }

            @Override
            public void onError(Throwable t) {
                log.debug("ForwardStream cancelled by client: {}", Status.fromThrowable(t));
            }

            @Override
            public void onCompleted() {
                synchronized (lock) {
                    out.onCompleted();
                }
            }
        };
    }

    @Override
    public void describeModel(DescribeModelRequest request, StreamObserver<DescribeModelResponse> responseObserver) {
        MoeConfig config = model.config();
        DescribeModelResponse.Builder d = DescribeModelResponse.newBuilder()
                .setModelType(config.family().modelType)
                .setModelFingerprint(model.fingerprint())
                .setNumHiddenLayers(config.numHiddenLayers())
                .addAllMoeLayers(config.moeLayers())
                .setHiddenSize(config.hiddenSize())
                .setNumExperts(config.numExperts())
                .setNumExpertsPerToken(config.numExpertsPerToken())
                .setMoeIntermediateSize(config.moeIntermediateSize())
                .setSharedExpertIntermediateSize(config.sharedExpertIntermediateSize())
                .setMaxTokensPerRequest(pipeline.maxTokensPerRequest());
        for (ExpertEndpoint endpoint : endpoints.get()) {
            d.addExpertServers(ExpertServerInfo.newBuilder()
                    .setServerId(endpoint.serverId())
                    .setAddress(endpoint.address())
                    .addAllExpertIds(Arrays.stream(endpoint.expertIds()).boxed().toList()));
        }
        responseObserver.onNext(d.build());
        responseObserver.onCompleted();
    }
}

package dev.moe.router.dispatch;

import com.google.common.util.concurrent.Futures;
import com.google.common.util.concurrent.ListenableFuture;
import com.google.common.util.concurrent.MoreExecutors;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.expert.v1.ComputeExpertsRequest;
import dev.moe.proto.expert.v1.ComputeExpertsResponse;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import io.grpc.Deadline;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.ArrayList;
import java.util.List;
import java.util.concurrent.ExecutionException;

/**
 * Sends each server its batch, all calls in flight at once, one call per server per forward. Each token's hidden
 * state goes once per server, in the client's element type (BF16 stays BF16: half the bytes, no rounding).
 */
public final class ExpertDispatcher {
    private final DispatchListener listener;

    public ExpertDispatcher(DispatchListener listener) {
        this.listener = listener;
    }

    /** A call in flight. */
    public record PendingCall(ServerBatch batch, ListenableFuture<ComputeExpertsResponse> response) {
    }

    public List<PendingCall> dispatch(int layer, String fingerprint, float[] x, int hiddenSize, WireType wireType,
                                      List<ServerBatch> batches, Deadline deadline) {
        List<PendingCall> calls = new ArrayList<>(batches.size());
        for (ServerBatch batch : batches) {
            ComputeExpertsRequest.Builder request = ComputeExpertsRequest.newBuilder()
                    .setLayer(layer)
                    .setModelFingerprint(fingerprint)
                    .setHiddenStates(HiddenStatesPayloads.encode(gatherRows(x, hiddenSize, batch.tokens()), 0,
                            batch.tokens().length, hiddenSize, wireType));
            for (int count : batch.expertsPerToken()) {
                request.addExpertsPerToken(count);
            }
            for (int id : batch.expertIds()) {
                request.addExpertIds(id);
            }
            for (float w : batch.routingWeights()) {
                request.addRoutingWeights(w);
            }
            ComputeExpertsRequest built = request.build();
            long requestBytes = built.getSerializedSize();
            long start = System.nanoTime();
            ListenableFuture<ComputeExpertsResponse> response = batch.endpoint().stub().withDeadline(deadline)
                    .computeExperts(built);
            response.addListener(() -> {
                if (response.isCancelled()) {
                    listener.callAbandoned(batch.endpoint(), requestBytes); // only this class's callers cancel
                } else {
                    listener.callCompleted(batch.endpoint(), outcome(response), System.nanoTime() - start,
                            requestBytes, responseBytes(response));
                }
            }, MoreExecutors.directExecutor());
            calls.add(new PendingCall(batch, response));
        }
        return calls;
    }

    private static Status.Code outcome(ListenableFuture<?> done) {
        try {
            Futures.getDone(done);
            return Status.Code.OK;
        } catch (ExecutionException e) {
            return Status.fromThrowable(e.getCause()).getCode();
        }
    }

    private static long responseBytes(ListenableFuture<ComputeExpertsResponse> done) {
        try {
            return Futures.getDone(done).getSerializedSize();
        } catch (ExecutionException e) {
            return 0;
        }
    }

    /** Waits for one call; failures become a status naming the server and the layer. */
    public static ComputeExpertsResponse await(PendingCall call, int layer) {
        try {
            return call.response().get();
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
            call.response().cancel(true);
            throw Status.CANCELLED.withDescription("interrupted while waiting for expert servers").asRuntimeException();
        } catch (ExecutionException e) {
            Status status = Status.fromThrowable(e.getCause());
            ExpertEndpoint endpoint = call.batch().endpoint();
            String where = "expert server " + endpoint.serverId() + " (" + endpoint.address() + ") for layer " + layer;
            Integer overflowToken = overflowToken(e.getCause(), call.batch().tokens().length);
            if (status.getCode() == Status.Code.INVALID_ARGUMENT && overflowToken != null) {
                // The client's finite values overflowed the experts: its error, named by its own token index.
                throw Status.INVALID_ARGUMENT.withDescription("hidden_states of token "
                                + call.batch().tokens()[overflowToken] + " overflow the experts on " + where
                                + " (the server, counting the tokens of its call: " + status.getDescription() + ")")
                        .withCause(e.getCause()).asRuntimeException();
            }
            Status.Code code = switch (status.getCode()) {
                case UNAVAILABLE, DEADLINE_EXCEEDED, CANCELLED, RESOURCE_EXHAUSTED -> status.getCode();
                // Anything else means router and server disagree: the client's request was valid here.
                default -> Status.Code.INTERNAL;
            };
            throw new StatusRuntimeException(Status.fromCode(code).withDescription(where + " failed: "
                    + status.getCode() + ": " + status.getDescription()).withCause(e.getCause()));
        }
    }

    /** The call's token index an expert server named as overflowing, or null. */
    private static Integer overflowToken(Throwable failure, int numTokens) {
        Metadata trailers = Status.trailersFromThrowable(failure);
        String value = trailers == null ? null : trailers.get(HiddenStatesPayloads.OVERFLOW_TOKEN);
        if (value == null) {
            return null;
        }
        try {
            int token = Integer.parseInt(value);
            return token >= 0 && token < numTokens ? token : null;
        } catch (NumberFormatException e) {
            return null;
        }
    }

    private static float[] gatherRows(float[] x, int hiddenSize, int[] tokens) {
        float[] rows = new float[tokens.length * hiddenSize];
        for (int i = 0; i < tokens.length; i++) {
            System.arraycopy(x, tokens[i] * hiddenSize, rows, i * hiddenSize, hiddenSize);
        }
        return rows;
    }
}

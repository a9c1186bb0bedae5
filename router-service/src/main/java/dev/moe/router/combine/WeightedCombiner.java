package dev.moe.router.combine;

import dev.moe.proto.expert.v1.ComputeExpertsResponse;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import io.grpc.Status;
import java.nio.ByteOrder;
import java.nio.FloatBuffer;

/**
 * Combine: {@code y[t] = Σ_servers partial_s[t] (+ shared expert)}. Each server's partial is already
 * {@code Σ_j routing_weight_j · expert_j(x_t)} over the token's experts it hosts, so the sum over the servers is the
 * full weighted sum over the token's top-k.
 */
public final class WeightedCombiner {
    private WeightedCombiner() {
    }

    /** Adds a server's partial sums into the rows of {@code out} its batch covers. */
    public static void addPartial(float[] out, int hiddenSize, ServerBatch batch, ComputeExpertsResponse response) {
        int n = batch.tokens().length;
        if (response.getNumTokens() != n || response.getHiddenSize() != hiddenSize
                || response.getPartialOutput().size() != (long) n * hiddenSize * Float.BYTES) {
            throw Status.INTERNAL.withDescription("expert server " + batch.endpoint().serverId() + " returned ["
                    + response.getNumTokens() + ", " + response.getHiddenSize() + "] (" + response.getPartialOutput().size()
                    + " bytes) for a [" + n + ", " + hiddenSize + "] batch").asRuntimeException();
        }
        FloatBuffer partial = response.getPartialOutput().asReadOnlyByteBuffer().order(ByteOrder.LITTLE_ENDIAN)
                .asFloatBuffer();
        for (int i = 0; i < n; i++) {
            int row = batch.tokens()[i] * hiddenSize;
            int src = i * hiddenSize;
            for (int h = 0; h < hiddenSize; h++) {
                out[row + h] += partial.get(src + h);
            }
        }
    }
}

package dev.moe.cli;

import dev.moe.core.tensor.HiddenStatesCodec;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.ForwardResponse;
import io.grpc.ManagedChannel;
import io.grpc.ManagedChannelBuilder;
import java.util.Map;
import java.util.concurrent.TimeUnit;

/** Test helpers: a client channel to a router and request/response conversions. */
final class RouterCalls {
    /**
     * Test clusters log warnings only, and their expert servers keep float32 weights: float32 end to end is what the
     * references' tolerance is for (BF16 and INT8 storage are tested on their own).
     */
    static final Map<String, String> EXACT = Map.of("logging.level.root", "WARN", "moe.expert.weights", "F32");

    private RouterCalls() {
    }

    static ManagedChannel channel(String address) {
        return ManagedChannelBuilder.forTarget(address).usePlaintext().maxInboundMessageSize(64 << 20).build();
    }

    static void close(ManagedChannel channel) throws InterruptedException {
        channel.shutdownNow().awaitTermination(5, TimeUnit.SECONDS);
    }

    static ForwardRequest request(int layer, float[] x, int numTokens, int hiddenSize, WireType type) {
        return ForwardRequest.newBuilder()
                .setLayer(layer)
                .setReturnRouting(true)
                .setHiddenStates(HiddenStatesPayloads.encode(x, 0, numTokens, hiddenSize, type))
                .build();
    }

    static float[] output(ForwardResponse response) {
        var hs = response.getHiddenStates();
        return HiddenStatesCodec.decode(hs.getData().asReadOnlyByteBuffer(), HiddenStatesPayloads.wireType(
                hs.getElementType()), hs.getNumTokens() * hs.getHiddenSize());
    }

    static int[] ids(ForwardResponse response) {
        return response.getRouting().getExpertIdsList().stream().mapToInt(Integer::intValue).toArray();
    }

    static float[] weights(ForwardResponse response) {
        float[] w = new float[response.getRouting().getRoutingWeightsCount()];
        for (int i = 0; i < w.length; i++) {
            w[i] = response.getRouting().getRoutingWeights(i);
        }
        return w;
    }

    static double maxAbsDiff(float[] actual, float[] expected) {
        double max = 0;
        for (int i = 0; i < expected.length; i++) {
            max = Math.max(max, Math.abs(actual[i] - expected[i]));
        }
        return max;
    }
}

package dev.moe.router.combine;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import dev.moe.proto.expert.v1.ComputeExpertsResponse;
import dev.moe.router.dispatch.DispatchPlan.ServerBatch;
import dev.moe.router.dispatch.ExpertEndpoint;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.nio.ByteBuffer;
import java.nio.ByteOrder;
import java.util.Arrays;
import java.util.Random;
import org.junit.jupiter.api.Test;

class WeightedCombinerTest {

    private static final ExpertEndpoint SERVER = new ExpertEndpoint("expert-7", "10.1.2.3:50051", new int[] {0, 1}, null);

    private static ServerBatch batch(ExpertEndpoint endpoint, int... tokens) {
        int[] counts = new int[tokens.length];
        Arrays.fill(counts, 1);
        int[] ids = new int[tokens.length];
        float[] w = new float[tokens.length];
        Arrays.fill(w, 1f);
        return new ServerBatch(endpoint, tokens, counts, ids, w);
    }

    private static byte[] f32le(float... values) {
        ByteBuffer buf = ByteBuffer.allocate(values.length * Float.BYTES).order(ByteOrder.LITTLE_ENDIAN);
        for (float v : values) {
            buf.putFloat(v);
        }
        return buf.array();
    }

    private static ComputeExpertsResponse response(int numTokens, int hidden, ByteString data) {
        return ComputeExpertsResponse.newBuilder().setNumTokens(numTokens).setHiddenSize(hidden).setPartialOutput(data)
                .build();
    }

    private static ComputeExpertsResponse response(int numTokens, int hidden, float... values) {
        return response(numTokens, hidden, ByteString.copyFrom(f32le(values)));
    }

    @Test
    void partialIsScatterAddedIntoTheBatchRows() {
        int hidden = 3;
        float[] out = {
                1f, 1f, 1f,      // row 0: not in batch
                10f, 20f, 30f,   // row 1
                -1f, -1f, -1f,   // row 2: not in batch
                0.5f, 0f, 2f};   // row 3
        ServerBatch b = batch(SERVER, 1, 3);
        // partial rows: batch row 0 → token 1, batch row 1 → token 3
        ComputeExpertsResponse r = response(2, hidden, 1.25f, -2f, 3.5f, 100f, 0.25f, -8f);

        WeightedCombiner.addPartial(out, hidden, b, r);

        assertThat(out).containsExactly(
                1f, 1f, 1f,
                11.25f, 18f, 33.5f,
                -1f, -1f, -1f,
                100.5f, 0.25f, -6f);
    }

    @Test
    void bytesAreReadLittleEndian() {
        // 1.0f is 0x3F800000; read big-endian the same bytes would be 0x0000803F ≈ 4.6e-41
        float[] out = new float[2];
        WeightedCombiner.addPartial(out, 2, batch(SERVER, 0), response(1, 2, 1.0f, -3.0f));
        assertThat(out).containsExactly(1.0f, -3.0f);
    }

    @Test
    void partialsOfSeveralServersSum() {
        int hidden = 4;
        int numTokens = 5;
        Random rnd = new Random(11);
        float[] out = new float[numTokens * hidden];
        double[] expected = new double[numTokens * hidden];
        ExpertEndpoint other = new ExpertEndpoint("expert-8", "10.1.2.4:50051", new int[] {2}, null);
        int[][] tokenSets = {{0, 2, 4}, {1, 2, 3, 4}};
        ExpertEndpoint[] servers = {SERVER, other};
        for (int s = 0; s < 2; s++) {
            int[] tokens = tokenSets[s];
            float[] partial = new float[tokens.length * hidden];
            for (int i = 0; i < partial.length; i++) {
                partial[i] = (rnd.nextInt(64) - 32) / 8f; // exactly representable; sums exact
            }
            for (int i = 0; i < tokens.length; i++) {
                for (int h = 0; h < hidden; h++) {
                    expected[tokens[i] * hidden + h] += partial[i * hidden + h];
                }
            }
            WeightedCombiner.addPartial(out, hidden, batch(servers[s], tokens), response(tokens.length, hidden, partial));
        }
        for (int i = 0; i < out.length; i++) {
            assertThat((double) out[i]).as("element %d", i).isEqualTo(expected[i]);
        }
    }

    @Test
    void payloadAtANonZeroOffsetOfItsBackingArray() {
        // substring → a ByteString whose bytes start at offset 4 of the backing array
        byte[] padded = f32le(999f, 2f, 4f, 6f, 8f);
        ByteString sliced = ByteString.copyFrom(padded).substring(Float.BYTES);
        float[] out = new float[6];
        WeightedCombiner.addPartial(out, 2, batch(SERVER, 0, 2), response(2, 2, sliced));
        assertThat(out).containsExactly(2f, 4f, 0f, 0f, 6f, 8f);
    }

    @Test
    void payloadMadeOfConcatenatedChunks() {
        ByteString rope = ByteString.copyFrom(f32le(1f, 2f, 3f)).concat(ByteString.copyFrom(f32le(4f, 5f, 6f)));
        float[] out = new float[9];
        WeightedCombiner.addPartial(out, 3, batch(SERVER, 2, 0), response(2, 3, rope));
        assertThat(out).containsExactly(4f, 5f, 6f, 0f, 0f, 0f, 1f, 2f, 3f);
    }

    @Test
    void wrongNumTokensIsInternalNamingTheServer() {
        float[] out = new float[8];
        ServerBatch b = batch(SERVER, 0, 1);
        // 3 tokens claimed for a 2-token batch (bytes match the claim)
        ComputeExpertsResponse r = response(3, 2, 1f, 1f, 1f, 1f, 1f, 1f);

        assertInternal(() -> WeightedCombiner.addPartial(out, 2, b, r));
        assertThat(out).containsOnly(0f);
    }

    @Test
    void wrongHiddenSizeIsInternalNamingTheServer() {
        float[] out = new float[8];
        ServerBatch b = batch(SERVER, 0, 1);
        ComputeExpertsResponse r = response(2, 4, 1f, 1f, 1f, 1f, 1f, 1f, 1f, 1f);

        assertInternal(() -> WeightedCombiner.addPartial(out, 2, b, r));
        assertThat(out).containsOnly(0f);
    }

    @Test
    void wrongByteLengthIsInternalNamingTheServer() {
        float[] out = new float[4];
        ServerBatch b = batch(SERVER, 0, 1);
        ComputeExpertsResponse shortPayload = response(2, 2, 1f, 1f, 1f);
        ComputeExpertsResponse oddBytes = response(2, 2, ByteString.copyFrom(new byte[15]));
        ComputeExpertsResponse longPayload = response(2, 2, 1f, 1f, 1f, 1f, 1f);

        assertInternal(() -> WeightedCombiner.addPartial(out, 2, b, shortPayload));
        assertInternal(() -> WeightedCombiner.addPartial(out, 2, b, oddBytes));
        assertInternal(() -> WeightedCombiner.addPartial(out, 2, b, longPayload));
        assertThat(out).containsOnly(0f);
    }

    @Test
    void emptyResponseIsInternal() {
        float[] out = new float[4];
        assertInternal(() -> WeightedCombiner.addPartial(out, 2, batch(SERVER, 1),
                ComputeExpertsResponse.getDefaultInstance()));
    }

    private static void assertInternal(org.assertj.core.api.ThrowableAssert.ThrowingCallable call) {
        assertThatThrownBy(call).isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
            assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
            assertThat(e.getStatus().getDescription()).contains("expert-7");
        });
    }
}

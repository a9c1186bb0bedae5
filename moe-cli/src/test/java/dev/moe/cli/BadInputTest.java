package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import com.google.protobuf.ByteString;
import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.oracle.ConformanceCases.Expected;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.HiddenStatesPayloads;
import dev.moe.proto.common.v1.ElementType;
import dev.moe.proto.common.v1.HiddenStates;
import dev.moe.proto.router.v1.ForwardRequest;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import io.grpc.ManagedChannel;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import java.util.Arrays;
import java.util.Map;
import org.assertj.core.api.AbstractThrowableAssert;
import org.junit.jupiter.api.AfterAll;
import org.junit.jupiter.api.AfterEach;
import org.junit.jupiter.api.BeforeAll;
import org.junit.jupiter.api.Test;

/**
 * Every kind of bad request gets the right status and a message naming the problem, and the next good request still
 * succeeds (checked after each test against the conformance reference). The router's token limit is set to 8 here.
 */
class BadInputTest {
    private static final String CASE = "qwen2-moe-tiny"; // layer 0 is dense, layers 1 and 2 are MoE; hidden 64
    private static EmbeddedCluster cluster;
    private static ManagedChannel channel;
    private static RouterServiceGrpc.RouterServiceBlockingStub router;
    private static Expected layer1;

    @BeforeAll
    static void start() {
        cluster = EmbeddedCluster.start(EmbeddedCluster.Options.of(ConformanceCases.dir(CASE), 2)
                .withProperties(RouterCalls.EXACT).withProperties(Map.of("moe.router.max-tokens-per-request", "8")));
        channel = RouterCalls.channel(cluster.routerAddress());
        router = RouterServiceGrpc.newBlockingStub(channel);
        layer1 = ConformanceCases.expected(CASE).getFirst();
        assertThat(layer1.layer()).isEqualTo(1);
    }

    @AfterAll
    static void stop() throws InterruptedException {
        RouterCalls.close(channel);
        cluster.close();
    }

    /** The servers keep serving: a good request after each bad one returns the reference output. */
    @AfterEach
    void goodRequestStillSucceeds() {
        float[] x = Arrays.copyOf(layer1.input(), 8 * 64);
        var response = router.forward(RouterCalls.request(1, x, 8, 64, WireType.FLOAT32));
        float[] expected = Arrays.copyOf(layer1.output(), 8 * 64);
        assertThat(RouterCalls.maxAbsDiff(RouterCalls.output(response), expected))
                .isLessThanOrEqualTo(ConformanceCases.outputTolerance(expected));
    }

    private static ForwardRequest good(int layer, int tokens) {
        return RouterCalls.request(layer, Arrays.copyOf(layer1.input(), tokens * 64), tokens, 64, WireType.FLOAT32);
    }

    private static AbstractThrowableAssert<?, ?> assertStatus(ForwardRequest request, Status.Code code) {
        return assertThatThrownBy(() -> router.forward(request))
                .isInstanceOfSatisfying(StatusRuntimeException.class,
                        e -> assertThat(e.getStatus().getCode()).isEqualTo(code));
    }

    @Test
    void denseLayerIsRefused() {
        assertStatus(good(0, 2), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("layer 0 has no MoE block").hasMessageContaining("MoE layers: [1, 2]");
    }

    @Test
    void missingLayerIsRefused() {
        assertStatus(good(7, 2), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("layer 7 does not exist (the model has 3 layers)");
    }

    @Test
    void wrongHiddenSizeIsRefused() {
        float[] x = new float[2 * 63];
        assertStatus(RouterCalls.request(1, x, 2, 63, WireType.FLOAT32), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("hidden_size 63 does not match the model's hidden_size 64");
    }

    @Test
    void byteLengthMismatchIsRefused() {
        ForwardRequest request = good(1, 2);
        HiddenStates hs = request.getHiddenStates().toBuilder()
                .setData(request.getHiddenStates().getData().substring(0, 2 * 64 * 4 - 4)).build();
        assertStatus(request.toBuilder().setHiddenStates(hs).build(), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("hidden_states.data has 508 bytes but [2, 64] ELEMENT_TYPE_FLOAT32 needs 512");
    }

    @Test
    void bf16ByteLengthIsCheckedForTwoBytesPerElement() {
        ForwardRequest request = good(1, 2); // FLOAT32 bytes declared as BFLOAT16: twice too long
        HiddenStates hs = request.getHiddenStates().toBuilder().setElementType(ElementType.ELEMENT_TYPE_BFLOAT16).build();
        assertStatus(request.toBuilder().setHiddenStates(hs).build(), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("needs 256");
    }

    @Test
    void nanIsRefused() {
        float[] x = Arrays.copyOf(layer1.input(), 3 * 64);
        x[2 * 64 + 5] = Float.NaN;
        assertStatus(RouterCalls.request(1, x, 3, 64, WireType.FLOAT32), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("non-finite value (NaN) at token 2, element 5");
    }

    @Test
    void infinityIsRefused() {
        float[] x = Arrays.copyOf(layer1.input(), 2 * 64);
        x[3] = Float.NEGATIVE_INFINITY;
        assertStatus(RouterCalls.request(1, x, 2, 64, WireType.BFLOAT16), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("non-finite value (-Infinity) at token 0, element 3");
    }

    @Test
    void finiteButOverflowingValuesAreRefused() {
        float[] x = Arrays.copyOf(layer1.input(), 2 * 64);
        Arrays.fill(x, 64, 128, 3e38f); // finite, but the gate's dot product overflows
        assertStatus(RouterCalls.request(1, x, 2, 64, WireType.FLOAT32), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("hidden_states of token 1 overflow the router");
    }

    @Test
    void finiteValuesThatOverflowTheExpertsAreRefusedWithTheRequestsTokenIndex() {
        // The gate's logits stay finite (about 1e20), its softmax too; the experts' gate·x ⊙ up·x does not.
        float[] x = Arrays.copyOf(layer1.input(), 3 * 64);
        System.arraycopy(layer1.input(), 0, x, 2 * 64, 64);
        for (int i = 2 * 64; i < 3 * 64; i++) {
            x[i] *= 1e20f;
        }
        assertStatus(RouterCalls.request(1, x, 3, 64, WireType.FLOAT32), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("hidden_states of token 2 overflow the experts on expert server")
                .hasMessageContaining("the output is not finite");
    }

    @Test
    void unknownElementTypeIsNamedByItsNumber() {
        ForwardRequest request = good(1, 1);
        HiddenStates hs = request.getHiddenStates().toBuilder().setElementTypeValue(7).build();
        assertStatus(request.toBuilder().setHiddenStates(hs).build(), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("got the unknown value 7");
    }

    @Test
    void zeroTokensAreRefused() {
        ForwardRequest request = ForwardRequest.newBuilder().setLayer(1).setHiddenStates(HiddenStates.newBuilder()
                .setElementType(ElementType.ELEMENT_TYPE_FLOAT32).setHiddenSize(64).setNumTokens(0)
                .setData(ByteString.EMPTY)).build();
        assertStatus(request, Status.Code.INVALID_ARGUMENT).hasMessageContaining("num_tokens is 0");
    }

    @Test
    void unsetElementTypeIsRefused() {
        ForwardRequest request = good(1, 1);
        HiddenStates hs = request.getHiddenStates().toBuilder().setElementType(ElementType.ELEMENT_TYPE_UNSPECIFIED)
                .build();
        assertStatus(request.toBuilder().setHiddenStates(hs).build(), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("element_type must be ELEMENT_TYPE_FLOAT32 or ELEMENT_TYPE_BFLOAT16");
    }

    @Test
    void missingHiddenStatesAreRefused() {
        assertStatus(ForwardRequest.newBuilder().setLayer(1).build(), Status.Code.INVALID_ARGUMENT)
                .hasMessageContaining("hidden_states is not set");
    }

    @Test
    void moreTokensThanTheLimitAreResourceExhausted() {
        float[] x = new float[9 * 64];
        Arrays.fill(x, 0.5f);
        assertStatus(RouterCalls.request(1, x, 9, 64, WireType.FLOAT32), Status.Code.RESOURCE_EXHAUSTED)
                .hasMessageContaining("num_tokens 9 exceeds the limit of 8 tokens per request of the router");
    }

    @Test
    void describeModelReportsTheLimitAndPlacement() {
        var d = router.describeModel(dev.moe.proto.router.v1.DescribeModelRequest.getDefaultInstance());
        assertThat(d.getModelType()).isEqualTo("qwen2_moe");
        assertThat(d.getMoeLayersList()).containsExactly(1, 2);
        assertThat(d.getMaxTokensPerRequest()).isEqualTo(8);
        assertThat(d.getSharedExpertIntermediateSize()).isEqualTo(64);
        assertThat(d.getExpertServersList()).hasSize(2);
        assertThat(d.getExpertServersList().stream().flatMap(s -> s.getExpertIdsList().stream()).sorted())
                .containsExactlyElementsOf(java.util.stream.IntStream.range(0, 16).boxed().toList());
    }

    @Test
    void payloadHelperRoundTripsBf16() {
        float[] x = {1.0f, -2.5f, 3.0e-3f};
        HiddenStates hs = HiddenStatesPayloads.encode(x, 0, 1, 3, WireType.BFLOAT16);
        assertThat(hs.getData().size()).isEqualTo(6);
        assertThat(HiddenStatesPayloads.decode(hs, 3, 8, "test")).containsExactly(1.0f, -2.5f, 0.0030059814f); // 0x3B449BA6 rounds up to 0x3B45
    }
}

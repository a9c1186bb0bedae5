package dev.moe.proto;

import static org.assertj.core.api.Assertions.assertThat;
import static org.assertj.core.api.Assertions.assertThatThrownBy;

import dev.moe.proto.common.v1.ElementType;
import dev.moe.proto.common.v1.HiddenStates;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import org.junit.jupiter.api.Test;

/** The payload checks' statuses: who is at fault decides the code, and the message names what the client sent. */
class HiddenStatesPayloadsTest {

    @Test
    void anOverflowFromHugeValuesIsTheClientsAndNamesTheToken() {
        float[] x = {1f, -2f, 0.5f, 3e20f, -1f, 0f}; // two tokens of 3; token 1 holds 3e20
        StatusRuntimeException e = HiddenStatesPayloads.overflow(x, 3, 1, "the experts [4] of layer 2");

        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(e.getStatus().getDescription()).isEqualTo("hidden_states of token 1 overflow the experts [4] of"
                + " layer 2: the output is not finite (the token's largest |value| is 3.0E20, far outside the range of"
                + " hidden states)");
        assertThat(e.getTrailers().get(HiddenStatesPayloads.OVERFLOW_TOKEN)).isEqualTo("1");
    }

    @Test
    void aNonFiniteOutputFromOrdinaryValuesIsTheServersNotTheClients() {
        float[] x = {1f, -2.5f, 0.5f};
        StatusRuntimeException e = HiddenStatesPayloads.overflow(x, 3, 0, "the experts [4] of layer 2");

        assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
        assertThat(e.getStatus().getDescription()).contains("token 0", "largest |value| 2.5",
                "weights may hold NaN or Inf");
        assertThat(e.getTrailers() == null ? null : e.getTrailers().get(HiddenStatesPayloads.OVERFLOW_TOKEN)).isNull();
    }

    @Test
    void anUnknownElementTypeIsNamedByItsNumber() {
        HiddenStates hs = HiddenStates.newBuilder().setElementTypeValue(7).setNumTokens(1).setHiddenSize(1).build();
        assertThatThrownBy(() -> HiddenStatesPayloads.wireType(hs))
                .isInstanceOfSatisfying(StatusRuntimeException.class, e -> {
                    assertThat(e.getStatus().getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
                    assertThat(e.getStatus().getDescription()).endsWith("got the unknown value 7");
                });
        assertThat(HiddenStatesPayloads.wireType(hs.toBuilder().setElementType(ElementType.ELEMENT_TYPE_BFLOAT16)
                .build()).name()).isEqualTo("BFLOAT16");
    }
}

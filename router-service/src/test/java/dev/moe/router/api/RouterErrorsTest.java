package dev.moe.router.api;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.CheckpointException;
import io.grpc.Status;
import org.junit.jupiter.api.Test;

class RouterErrorsTest {

    @Test
    void aStatusFromValidationIsKept() {
        Status status = RouterErrors.toStatus(Status.INVALID_ARGUMENT
                .withDescription("hidden_states.num_tokens is 0: send at least one token").asRuntimeException());

        assertThat(status.getCode()).isEqualTo(Status.Code.INVALID_ARGUMENT);
        assertThat(status.getDescription()).isEqualTo("hidden_states.num_tokens is 0: send at least one token");
    }

    @Test
    void anIllegalArgumentFromInsideIsInternalNotTheClientsFault() {
        Status status = RouterErrors.toStatus(new IllegalArgumentException("expert id 9 outside [0, 8)"));

        assertThat(status.getCode()).isEqualTo(Status.Code.INTERNAL);
        assertThat(status.getDescription()).contains("router failure").contains("expert id 9 outside [0, 8)");
    }

    @Test
    void aCheckpointProblemIsAFailedPrecondition() {
        Status status = RouterErrors.toStatus(new CheckpointException("tensor missing"));

        assertThat(status.getCode()).isEqualTo(Status.Code.FAILED_PRECONDITION);
    }
}

package dev.moe.expert;

import static org.assertj.core.api.Assertions.assertThat;

import io.grpc.Status;
import io.grpc.StatusException;
import org.junit.jupiter.api.Test;

class ExpertExceptionHandlerTest {

    @Test
    void anythingUnmappedIsInternalAnIllegalArgumentIncluded() {
        var handler = new ExpertConfiguration().expertExceptionHandler();

        StatusException illegal = handler.handleException(new IllegalArgumentException("bad panel index 7"));
        StatusException other = handler.handleException(new IllegalStateException("pool closed"));

        assertThat(illegal.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
        assertThat(illegal.getStatus().getDescription()).contains("expert server failure").contains("bad panel index 7");
        assertThat(other.getStatus().getCode()).isEqualTo(Status.Code.INTERNAL);
    }
}

package dev.moe.router.api;

import dev.moe.core.checkpoint.CheckpointException;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;
import org.slf4j.Logger;
import org.slf4j.LoggerFactory;

/**
 * Maps failures of a forward to the status a client gets; unexpected ones are logged and become INTERNAL. Bad input is
 * rejected where it is read, as a {@link StatusRuntimeException} naming the field; an {@link IllegalArgumentException}
 * reaching here is a bug on this side, not the client's.
 */
public final class RouterErrors {
    private static final Logger log = LoggerFactory.getLogger(RouterErrors.class);

    private RouterErrors() {
    }

    public static Status toStatus(Throwable e) {
        if (e instanceof StatusRuntimeException s) {
            return s.getStatus();
        }
        if (e instanceof CheckpointException) {
            return Status.FAILED_PRECONDITION.withDescription(e.getMessage());
        }
        log.error("unexpected failure in a forward", e);
        return Status.INTERNAL.withDescription("router failure: " + e);
    }
}

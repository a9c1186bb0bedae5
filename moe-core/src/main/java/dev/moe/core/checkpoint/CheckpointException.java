package dev.moe.core.checkpoint;

/** A checkpoint that cannot be served as it is: the message names the file, tensor or key and what to do. */
public class CheckpointException extends RuntimeException {
    public CheckpointException(String message) {
        super(message);
    }

    public CheckpointException(String message, Throwable cause) {
        super(message, cause);
    }
}

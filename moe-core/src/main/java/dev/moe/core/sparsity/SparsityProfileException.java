package dev.moe.core.sparsity;

/** A thresholds file that cannot be read, or whose content is invalid; the message names the file and the key. */
public final class SparsityProfileException extends RuntimeException {
    public SparsityProfileException(String message) {
        super(message);
    }

    public SparsityProfileException(String message, Throwable cause) {
        super(message, cause);
    }
}

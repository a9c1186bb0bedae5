package dev.moe.proto;

import com.google.protobuf.ByteString;
import com.google.protobuf.UnsafeByteOperations;
import dev.moe.core.tensor.HiddenStatesCodec;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.common.v1.ElementType;
import dev.moe.proto.common.v1.HiddenStates;
import io.grpc.Metadata;
import io.grpc.Status;
import io.grpc.StatusRuntimeException;

/** Checks and converts {@link HiddenStates} payloads; every rejection is a status naming the offending field. */
public final class HiddenStatesPayloads {
    private HiddenStatesPayloads() {
    }

    /**
     * Trailer of an INVALID_ARGUMENT that finite hidden states caused by overflowing the computation: the index of the
     * overflowing token within that call. The router uses it to name the token of its own request.
     */
    public static final Metadata.Key<String> OVERFLOW_TOKEN =
            Metadata.Key.of("moe-overflow-token", Metadata.ASCII_STRING_MARSHALLER);

    public static WireType wireType(ElementType type) {
        return switch (type) {
            case ELEMENT_TYPE_FLOAT32 -> WireType.FLOAT32;
            case ELEMENT_TYPE_BFLOAT16 -> WireType.BFLOAT16;
            default -> throw invalid("hidden_states.element_type must be ELEMENT_TYPE_FLOAT32 or ELEMENT_TYPE_BFLOAT16,"
                    + " got " + type);
        };
    }

    /** The element type of {@code hs}; an unknown value is named by its number. */
    public static WireType wireType(HiddenStates hs) {
        if (hs.getElementType() == ElementType.UNRECOGNIZED) {
            throw invalid("hidden_states.element_type must be ELEMENT_TYPE_FLOAT32 (1) or ELEMENT_TYPE_BFLOAT16 (2),"
                    + " got the unknown value " + hs.getElementTypeValue());
        }
        return wireType(hs.getElementType());
    }

    /**
     * Below this largest |value| a token cannot overflow float32 through sane weights (an FFN of 2048 channels with
     * weights near 1 stays below 1e38 up to |x| of about 1e17): a non-finite output is then the weights' doing.
     */
    static final float ORDINARY_MAGNITUDE = 1e15f;

    /**
     * The status for output values of {@code token} that {@code type} cannot carry (NaN, ±Inf, or beyond the largest
     * bfloat16). When the token holds values far outside the range of hidden states, they overflowed the computation:
     * INVALID_ARGUMENT naming the token and its largest value, with {@link #OVERFLOW_TOKEN}. When its values are
     * ordinary, the weights must hold NaN or Inf: INTERNAL, the server's problem, not the client's.
     *
     * @param what what overflowed, for the message (e.g. "the experts of layer 3 hosted here")
     */
    public static StatusRuntimeException overflow(float[] x, int hiddenSize, int token, String what) {
        float largest = 0;
        for (int h = 0; h < hiddenSize; h++) {
            largest = Math.max(largest, Math.abs(x[token * hiddenSize + h]));
        }
        if (largest < ORDINARY_MAGNITUDE) {
            return Status.INTERNAL.withDescription("the output of " + what + " for token " + token + " is not finite"
                    + " although the token's values are ordinary (largest |value| " + largest + "): the checkpoint's"
                    + " weights may hold NaN or Inf").asRuntimeException();
        }
        Metadata trailers = new Metadata();
        trailers.put(OVERFLOW_TOKEN, Integer.toString(token));
        return Status.INVALID_ARGUMENT.withDescription("hidden_states of token " + token + " overflow " + what
                + ": the output is not finite (the token's largest |value| is " + largest
                + ", far outside the range of hidden states)").asRuntimeException(trailers);
    }

    public static ElementType elementType(WireType type) {
        return type == WireType.FLOAT32 ? ElementType.ELEMENT_TYPE_FLOAT32 : ElementType.ELEMENT_TYPE_BFLOAT16;
    }

    /**
     * Validates element type, token count (1..maxTokens, else RESOURCE_EXHAUSTED), hidden size, byte length and
     * finiteness, then widens the payload to float32 {@code [num_tokens, hidden_size]}.
     *
     * @param limitOwner who imposes maxTokens, for the message (e.g. "the router")
     */
    public static float[] decode(HiddenStates hs, int hiddenSize, int maxTokens, String limitOwner) {
        WireType type = wireType(hs);
        long numTokens = Integer.toUnsignedLong(hs.getNumTokens());
        if (numTokens == 0) {
            throw invalid("hidden_states.num_tokens is 0: send at least one token");
        }
        if (numTokens > maxTokens) {
            throw Status.RESOURCE_EXHAUSTED.withDescription("hidden_states.num_tokens " + numTokens + " exceeds the limit"
                    + " of " + maxTokens + " tokens per request of " + limitOwner + ": split the batch")
                    .asRuntimeException();
        }
        if (Integer.toUnsignedLong(hs.getHiddenSize()) != hiddenSize) {
            throw invalid("hidden_states.hidden_size " + Integer.toUnsignedString(hs.getHiddenSize())
                    + " does not match the model's hidden_size " + hiddenSize);
        }
        long expected = numTokens * hiddenSize * type.bytesPerElement;
        ByteString data = hs.getData();
        if (data.size() != expected) {
            throw invalid("hidden_states.data has " + data.size() + " bytes but [" + numTokens + ", " + hiddenSize
                    + "] " + hs.getElementType() + " needs " + expected);
        }
        float[] x = HiddenStatesCodec.decode(data.asReadOnlyByteBuffer(), type, (int) (numTokens * hiddenSize));
        int bad = HiddenStatesCodec.firstNonFinite(x);
        if (bad >= 0) {
            throw invalid("hidden_states holds a non-finite value (" + x[bad] + ") at token " + bad / hiddenSize
                    + ", element " + bad % hiddenSize);
        }
        return x;
    }

    /** Rows {@code [fromToken, fromToken + numTokens)} of {@code values} as a payload. */
    public static HiddenStates encode(float[] values, int fromToken, int numTokens, int hiddenSize, WireType type) {
        return HiddenStates.newBuilder()
                .setElementType(elementType(type))
                .setNumTokens(numTokens)
                .setHiddenSize(hiddenSize)
                .setData(UnsafeByteOperations.unsafeWrap(
                        HiddenStatesCodec.encode(values, fromToken * hiddenSize, numTokens * hiddenSize, type)))
                .build();
    }

    private static StatusRuntimeException invalid(String message) {
        return Status.INVALID_ARGUMENT.withDescription(message).asRuntimeException();
    }
}

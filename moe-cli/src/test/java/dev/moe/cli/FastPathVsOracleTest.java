package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.checkpoint.DType;
import dev.moe.core.checkpoint.SyntheticCheckpoint;
import dev.moe.core.checkpoint.SyntheticCheckpoint.Spec;
import dev.moe.core.config.ModelFamily;
import dev.moe.core.config.MoeConfig;
import dev.moe.core.oracle.ReferenceMoeBlock;
import dev.moe.core.placement.ExpertPlacement;
import dev.moe.core.placement.ExpertPlacement.Strategy;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.expert.shard.ExpertCallStats;
import dev.moe.proto.router.v1.ForwardResponse;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import io.grpc.ManagedChannel;
import java.nio.file.Path;
import java.util.HashSet;
import java.util.Set;
import java.util.SplittableRandom;
import java.util.stream.Stream;
import org.junit.jupiter.api.io.TempDir;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * The distributed fast path (router → expert servers over gRPC → combine) against the scalar double-precision oracle,
 * on synthetic checkpoints of every family with odd shapes, k = 1 and k = E, one and many tokens, every expert on one
 * server and one expert per server. Also counts what the expert servers received: each token exactly once per server
 * that hosts at least one of its experts, and nowhere else.
 */
class FastPathVsOracleTest {
    /** Tokens whose k-th and (k+1)-th selection scores are closer than this are near-ties: float32 may flip them. */
    private static final double NEAR_TIE = 1e-5;

    @TempDir
    static Path tempDir;

    static Stream<Arguments> shapes() {
        return Stream.of(
                // family, hidden, experts, k, intermediate, shared, groups, topkGroup, norm, dtype, shards, servers, placement, wire
                Arguments.of(ModelFamily.QWEN3_MOE, 37, 8, 3, 19, 0, 1, 1, true, DType.F32, 1, 1, Strategy.CONTIGUOUS,
                        WireType.FLOAT32),
                Arguments.of(ModelFamily.OLMOE, 50, 6, 6, 33, 0, 1, 1, false, DType.F32, 2, 6, Strategy.CONTIGUOUS,
                        WireType.FLOAT32),
                Arguments.of(ModelFamily.MIXTRAL, 33, 5, 1, 17, 0, 1, 1, true, DType.BF16, 1, 2, Strategy.STRIDED,
                        WireType.FLOAT32),
                Arguments.of(ModelFamily.QWEN2_MOE, 24, 12, 4, 15, 40, 1, 1, false, DType.BF16, 3, 4, Strategy.STRIDED,
                        WireType.FLOAT32),
                Arguments.of(ModelFamily.DEEPSEEK_V3, 48, 16, 4, 21, 42, 4, 2, true, DType.F32, 2, 3,
                        Strategy.CONTIGUOUS, WireType.FLOAT32),
                Arguments.of(ModelFamily.QWEN3_MOE, 64, 10, 2, 32, 0, 1, 1, false, DType.BF16, 1, 3, Strategy.STRIDED,
                        WireType.BFLOAT16));
    }

    @ParameterizedTest(name = "{0} h{1} e{2} k{3} on {11} servers, {13} wire")
    @MethodSource("shapes")
    void distributedPathMatchesOracle(ModelFamily family, int hidden, int experts, int k, int intermediate, int shared,
                                      int groups, int topkGroup, boolean norm, DType dtype, int shards, int servers,
                                      Strategy placement, WireType wire) throws Exception {
        Spec spec = new Spec(family, hidden, 3, experts, k, intermediate, shared, groups, topkGroup, norm, dtype, shards,
                hidden * 31L + experts);
        Path dir = tempDir.resolve(spec.cacheKey());
        SyntheticCheckpoint.write(dir, spec, SyntheticCheckpoint.SILENT);
        SplittableRandom random = new SplittableRandom(spec.seed());
        EmbeddedCluster.Options options = EmbeddedCluster.Options.of(dir, servers).withPlacement(placement)
                .withProperties(RouterCalls.EXACT);
        try (Checkpoint checkpoint = Checkpoint.open(dir); EmbeddedCluster cluster = EmbeddedCluster.start(options)) {
            MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
            int[] serverOf = new int[experts];
            for (int s = 0; s < servers; s++) {
                for (int e : ExpertPlacement.experts(placement, experts, s, servers)) {
                    serverOf[e] = s;
                }
            }
            long expectedRowsSent = 0;
            ManagedChannel channel = RouterCalls.channel(cluster.routerAddress());
            try {
                var router = RouterServiceGrpc.newBlockingStub(channel);
                int comparedTokens = 0;
                int totalTokens = 0;
                for (int layer : config.moeLayers()) {
                    for (int numTokens : new int[] {1, 29}) {
                        float[] x = new float[numTokens * hidden];
                        for (int i = 0; i < x.length; i++) {
                            x[i] = (float) random.nextGaussian();
                            if (wire == WireType.BFLOAT16) {
                                x[i] = DType.bf16ToFloat(DType.floatToBf16(x[i])); // what the wire carries
                            }
                        }
                        ForwardResponse response = router.forward(RouterCalls.request(layer, x, numTokens, hidden, wire));
                        ReferenceMoeBlock.Result oracle = ReferenceMoeBlock.forward(checkpoint, config, layer, x, numTokens);
                        int[] ids = RouterCalls.ids(response);
                        float[] weights = RouterCalls.weights(response);
                        float[] out = RouterCalls.output(response);
                        double tolerance = tolerance(oracle.output(), wire);
                        for (int t = 0; t < numTokens; t++) {
                            Set<Integer> serversOfToken = new HashSet<>();
                            for (int j = 0; j < k; j++) {
                                serversOfToken.add(serverOf[ids[t * k + j]]);
                            }
                            expectedRowsSent += serversOfToken.size();
                            totalTokens++;
                            if (oracle.selectionMargins()[t] < NEAR_TIE) {
                                continue;
                            }
                            comparedTokens++;
                            for (int j = 0; j < k; j++) {
                                assertThat(ids[t * k + j]).as("layer %d token %d slot %d id", layer, t, j)
                                        .isEqualTo(oracle.topkIds()[t * k + j]);
                                assertThat((double) weights[t * k + j]).as("layer %d token %d slot %d weight", layer, t, j)
                                        .isCloseTo(oracle.topkWeights()[t * k + j], org.assertj.core.data.Offset.offset(1e-5));
                            }
                            for (int h = 0; h < hidden; h++) {
                                assertThat((double) out[t * hidden + h]).as("layer %d token %d output %d", layer, t, h)
                                        .isCloseTo(oracle.output()[t * hidden + h],
                                                org.assertj.core.data.Offset.offset(tolerance));
                            }
                        }
                    }
                }
                assertThat(comparedTokens).as("tokens compared (near-ties skipped) of %d", totalTokens)
                        .isGreaterThanOrEqualTo(totalTokens * 9 / 10);
            } finally {
                RouterCalls.close(channel);
            }
            long rowsReceived = cluster.experts().stream()
                    .mapToLong(s -> s.context().getBean(ExpertCallStats.class).tokens()).sum();
            assertThat(rowsReceived).as("token rows received by expert servers").isEqualTo(expectedRowsSent);
        }
    }

    private static double tolerance(double[] reference, WireType wire) {
        double max = 0;
        for (double v : reference) {
            max = Math.max(max, Math.abs(v));
        }
        // float32 end to end: the conformance tolerance; a BF16 response is rounded to 8 significant bits.
        return (wire == WireType.FLOAT32 ? 1e-4 : 1e-2) * Math.max(1.0, max);
    }
}

package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.oracle.ConformanceCases;
import dev.moe.core.oracle.ConformanceCases.Expected;
import dev.moe.core.placement.ExpertPlacement;
import dev.moe.core.tensor.HiddenStatesCodec.WireType;
import dev.moe.proto.router.v1.ForwardResponse;
import dev.moe.proto.router.v1.RouterServiceGrpc;
import io.grpc.ManagedChannel;
import java.util.List;
import java.util.stream.Stream;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.Arguments;
import org.junit.jupiter.params.provider.CsvSource;
import org.junit.jupiter.params.provider.MethodSource;

/**
 * Every conformance case through the real router and expert servers over gRPC on loopback, float32 end to end:
 * expert ids exact, weights within 1e-5, outputs within the README's tolerance.
 */
class ConformanceTest {

    static Stream<Arguments> cases() {
        return Stream.of(
                Arguments.of("mixtral-tiny", 2, ExpertPlacement.Strategy.CONTIGUOUS),
                Arguments.of("qwen2-moe-tiny", 3, ExpertPlacement.Strategy.STRIDED),
                Arguments.of("deepseek-v3-tiny", 2, ExpertPlacement.Strategy.CONTIGUOUS),
                Arguments.of("deepseek-v3-fp8-tiny", 2, ExpertPlacement.Strategy.STRIDED));
    }

    @ParameterizedTest(name = "{0} on {1} expert servers ({2})")
    @MethodSource("cases")
    void matchesReferenceThroughRouterAndExpertServers(String name, int servers, ExpertPlacement.Strategy placement)
            throws Exception {
        check(name, servers, placement, "F32", 1.0);
    }

    /**
     * Narrow weight storage on the expert servers: routing stays exact (the router's gate is float32), outputs move
     * by the storage's rounding. A BF16 checkpoint stored as BF16 is exact. The FP8 checkpoint, dequantised with its
     * block scales, then rounded to BF16 or int8, measured 1.4e-3 and 5.5e-3 (tolerance unit 1e-4).
     */
    @ParameterizedTest(name = "{0} with {1} weights")
    @CsvSource({"qwen2-moe-tiny,BF16,1", "mixtral-tiny,BF16,100", "mixtral-tiny,INT8,300", "deepseek-v3-tiny,INT8,300",
            "deepseek-v3-fp8-tiny,BF16,30", "deepseek-v3-fp8-tiny,INT8,100"})
    void narrowWeightStorageKeepsRoutingAndStaysClose(String name, String weights, double toleranceFactor)
            throws Exception {
        check(name, 2, ExpertPlacement.Strategy.CONTIGUOUS, weights, toleranceFactor);
    }

    private static void check(String name, int servers, ExpertPlacement.Strategy placement, String storage,
                              double toleranceFactor) throws Exception {
        List<Expected> layers = ConformanceCases.expected(name);
        assertThat(layers).isNotEmpty();
        EmbeddedCluster.Options options = EmbeddedCluster.Options.of(ConformanceCases.dir(name), servers)
                .withPlacement(placement).withProperties(RouterCalls.EXACT)
                .withProperties(java.util.Map.of("moe.expert.weights", storage));
        try (EmbeddedCluster cluster = EmbeddedCluster.start(options)) {
            ManagedChannel channel = RouterCalls.channel(cluster.routerAddress());
            try {
                var router = RouterServiceGrpc.newBlockingStub(channel);
                for (Expected e : layers) {
                    ForwardResponse response = router.forward(RouterCalls.request(e.layer(), e.input(), e.numTokens(),
                            e.hiddenSize(), WireType.FLOAT32));
                    assertThat(response.getRouting().getNumExpertsPerToken()).isEqualTo(e.k());
                    assertThat(RouterCalls.ids(response)).as("%s layer %d topk_ids", name, e.layer())
                            .containsExactly(e.topkIds());
                    float[] weights = RouterCalls.weights(response);
                    assertThat(RouterCalls.maxAbsDiff(weights, e.topkWeights())).as("%s layer %d topk_weights", name,
                            e.layer()).isLessThanOrEqualTo(1e-5);
                    float[] output = RouterCalls.output(response);
                    assertThat(output).hasSize(e.output().length);
                    assertThat(RouterCalls.maxAbsDiff(output, e.output())).as("%s layer %d output", name, e.layer())
                            .isLessThanOrEqualTo(toleranceFactor * ConformanceCases.outputTolerance(e.output()));
                }
            } finally {
                RouterCalls.close(channel);
            }
        }
    }
}

package dev.moe.core.oracle;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.checkpoint.Checkpoint;
import dev.moe.core.config.MoeConfig;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.FieldSource;

/** The oracle itself must reproduce the independent float64 reference of every conformance case. */
class ReferenceMoeBlockTest {
    static final java.util.List<String> CASES = ConformanceCases.NAMES;

    @ParameterizedTest
    @FieldSource("CASES")
    void oracleMatchesIndependentReference(String name) {
        try (Checkpoint checkpoint = Checkpoint.open(ConformanceCases.dir(name))) {
            MoeConfig config = MoeConfig.from(checkpoint.config()).validate();
            for (ConformanceCases.Expected e : ConformanceCases.expected(name)) {
                ReferenceMoeBlock.Result result = ReferenceMoeBlock.forward(checkpoint, config, e.layer(), e.input(),
                        e.numTokens());
                assertThat(result.topkIds()).as("%s layer %d ids", name, e.layer()).containsExactly(e.topkIds());
                for (int i = 0; i < e.topkWeights().length; i++) {
                    assertThat(result.topkWeights()[i]).as("%s layer %d weight %d", name, e.layer(), i)
                            .isCloseTo(e.topkWeights()[i], org.assertj.core.data.Offset.offset(1e-6));
                }
                // float64 against float64: far tighter than the float32 tolerance of the README
                double tolerance = ConformanceCases.outputTolerance(e.output()) / 100;
                for (int i = 0; i < e.output().length; i++) {
                    assertThat(result.output()[i]).as("%s layer %d output %d", name, e.layer(), i)
                            .isCloseTo(e.output()[i], org.assertj.core.data.Offset.offset(tolerance));
                }
            }
        }
    }
}

package dev.moe.core.kernels;

import static org.assertj.core.api.Assertions.assertThat;
import static org.junit.jupiter.api.Assumptions.assumeTrue;

import org.junit.jupiter.api.Test;

/**
 * The build runs the kernel tests a second time with {@code -XX:MaxVectorSize=32} (see moe-core/pom.xml) so the
 * 256-bit paths are checked against the oracles on AVX-512 machines too; this makes sure that run really got them.
 */
class VectorWidthTest {

    @Test
    void kernelsUseTheExpectedVectorWidth() {
        String expected = System.getProperty("moe.test.expect-float-lanes");
        assumeTrue(expected != null, "only the 256-bit run names a width");
        assertThat(VectorPanelKernels.R.length()).isEqualTo(Integer.parseInt(expected));
        assertThat(VectorPanelKernels.F.length()).isEqualTo(8);
    }
}

package dev.moe.core.config;

import static org.assertj.core.api.Assertions.assertThat;

import org.junit.jupiter.api.Test;

class ServerArgumentsTest {
    /** A service's settings as Spring binds them: a record, nested records for groups. */
    record Settings(String model, Integer kernelThreads, Metrics metrics, java.util.List<String> expertEndpoints) {
        record Metrics(boolean layerTag) {
        }
    }

    private static String problem(String... args) {
        return ServerArguments.problem(args, "moe.expert", Settings.class);
    }

    @Test
    void acceptsTheServicesSettingsInEverySpellingSpringBinds() {
        assertThat(problem()).isNull();
        assertThat(problem("--moe.expert.model=/m", "--moe.expert.kernel-threads=2", "--moe.expert.kernelThreads=2",
                "--moe.expert.kernel_threads=2", "--moe.expert.metrics.layer-tag=true",
                "--moe.expert.expert-endpoints[0]=a:1")).isNull();
    }

    @Test
    void passesSpringsOwnSettingsThrough() {
        assertThat(problem("--spring.grpc.server.port=0", "--server.port=8081", "--management.endpoints.web"
                + ".exposure.include=health", "--logging.level.root=warn", "--debug")).isNull();
    }

    @Test
    void namesAMisspeltSettingAndListsTheRealOnes() {
        assertThat(problem("--moe.expert.model=/m", "--moe.expert.weigths=int8"))
                .isEqualTo("unknown setting --moe.expert.weigths; the moe.expert settings are "
                        + "moe.expert.expert-endpoints, moe.expert.kernel-threads, moe.expert.metrics.layer-tag,"
                        + " moe.expert.model");
        assertThat(problem("--moe.expert.metrics.layertags=true")).startsWith("unknown setting --moe.expert.metrics"
                + ".layertags;");
    }

    @Test
    void suggestsTheSettingABareOptionMeant() {
        assertThat(problem("--kernel-threads=2")).isEqualTo("unknown option --kernel-threads: did you mean"
                + " --moe.expert.kernel-threads?");
        assertThat(problem("--weights=int8")).isEqualTo("unknown option --weights; settings are Spring properties"
                + " such as --moe.expert.model=... (see the README's table)");
        assertThat(problem("--port=9000")).contains("--spring.grpc.server.port");
    }

    @Test
    void rejectsOtherServicesSettingsAndPositionalArguments() {
        assertThat(problem("--moe.router.model=/m")).isEqualTo("--moe.router.model is not a setting of this"
                + " service (its settings are moe.expert.*)");
        assertThat(problem("/models/m")).isEqualTo("unexpected argument '/models/m': settings are --name=value,"
                + " e.g. --moe.expert.model=/models/m");
        assertThat(problem("--")).startsWith("unexpected argument '--'");
    }
}

package dev.moe.router;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.config.ServerArguments;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.List;
import java.util.regex.Pattern;
import org.junit.jupiter.api.Test;

/** The router's command-line check against its real settings and the README's table of them. */
class RouterArgumentsTest {
    private static String problem(String... args) {
        return ServerArguments.problem(args, "moe.router", RouterProperties.class);
    }

    @Test
    void everySettingTheReadmeDocumentsIsAccepted() throws IOException {
        String readme = Files.readString(Path.of("..", "README.md"));
        List<String> documented = Pattern.compile("`(moe\\.router\\.[a-z.-]+)[`=]").matcher(readme).results()
                .map(r -> r.group(1)).distinct().toList();
        assertThat(documented).contains("moe.router.model", "moe.router.expert-endpoints",
                "moe.router.kubernetes.enabled", "moe.router.metrics.drift-reference");
        for (String setting : documented) {
            assertThat(problem("--" + setting + "=x")).as(setting).isNull();
        }
    }

    @Test
    void catchesWhatSpringWouldIgnore() {
        assertThat(problem("--moe.router.model=/models/m", "--moe.router.expert-endpoints=host1:9101,host2:9102",
                "--spring.grpc.server.port=9090")).isNull();
        assertThat(problem("--expert-endpoints=a:1")).isEqualTo("unknown option --expert-endpoints: did you mean"
                + " --moe.router.expert-endpoints?");
        assertThat(problem("--moe.router.kubernetes.enable=true")).startsWith("unknown setting"
                + " --moe.router.kubernetes.enable; the moe.router settings are ")
                .contains("moe.router.kubernetes.enabled");
        assertThat(problem("--moe.expert.weights=int8")).isEqualTo("--moe.expert.weights is not a setting of this"
                + " service (its settings are moe.router.*)");
    }
}

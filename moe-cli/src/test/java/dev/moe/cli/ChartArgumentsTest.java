package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThat;

import dev.moe.core.config.ServerArguments;
import dev.moe.expert.ExpertServerProperties;
import dev.moe.router.RouterProperties;
import java.io.IOException;
import java.nio.file.Files;
import java.nio.file.Path;
import java.util.Set;
import java.util.TreeSet;
import java.util.regex.Pattern;
import org.junit.jupiter.params.ParameterizedTest;
import org.junit.jupiter.params.provider.CsvSource;

/** Every --moe.* argument the Helm chart renders passes the command-line check of the service it is for. */
class ChartArgumentsTest {

    @ParameterizedTest(name = "{0}")
    @CsvSource({"moe.expert", "moe.router"})
    void everyArgumentTheChartPassesIsAccepted(String prefix) throws IOException {
        Class<? extends Record> properties = prefix.equals("moe.expert") ? ExpertServerProperties.class
                : RouterProperties.class;
        Pattern argument = Pattern.compile("--(" + Pattern.quote(prefix) + "\\.[a-z.-]+)=");
        Set<String> settings = new TreeSet<>();
        try (var templates = Files.list(Path.of("..", "helm", "moe-serving", "templates"))) {
            for (Path t : templates.toList()) {
                argument.matcher(Files.readString(t)).results().forEach(r -> settings.add(r.group(1)));
            }
        }
        assertThat(settings).hasSizeGreaterThan(8);
        for (String setting : settings) {
            assertThat(ServerArguments.problem(new String[] {"--" + setting + "=x"}, prefix, properties)).as(setting)
                    .isNull();
        }
    }
}

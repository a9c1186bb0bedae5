package dev.moe.cli;

import static org.assertj.core.api.Assertions.assertThatThrownBy;

import java.nio.file.Path;
import java.util.List;
import java.util.Map;
import org.junit.jupiter.api.Test;
import org.junit.jupiter.api.io.TempDir;

/** A server whose model folder is wrong does not start, and says which setting to fix. */
class ServerStartupErrorsTest {
    private static final Map<String, Object> QUIET = Map.of("logging.level.root", "OFF");

    @Test
    void aMissingModelFolderNamesTheServersSetting(@TempDir Path dir) {
        Path missing = dir.resolve("no-such-model");
        assertThatThrownBy(() -> EmbeddedCluster.startExpert(missing, "127.0.0.1", QUIET))
                .hasStackTraceContaining("moe.expert.model: " + missing + " is not a directory: the model must be a"
                        + " checkpoint folder holding config.json and *.safetensors");
        assertThatThrownBy(() -> EmbeddedCluster.startRouter(missing, "127.0.0.1", List.of("127.0.0.1:1"), QUIET))
                .hasStackTraceContaining("moe.router.model: " + missing + " is not a directory");
    }
}

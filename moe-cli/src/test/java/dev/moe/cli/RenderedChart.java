package dev.moe.cli;

import com.marcnuri.helm.Helm;
import com.marcnuri.helm.TemplateCommand;
import io.fabric8.kubernetes.api.model.HasMetadata;
import io.fabric8.kubernetes.api.model.KubernetesList;
import io.fabric8.kubernetes.client.utils.Serialization;
import java.nio.file.Path;
import java.util.ArrayList;
import java.util.List;
import java.util.Map;

/** Test helper: helm/moe-serving rendered with the bundled Helm (helm-java) and parsed with fabric8. */
final class RenderedChart {
    static final Path CHART = Path.of("..", "helm", "moe-serving");

    private RenderedChart() {
    }

    /** Release "moe" in {@code namespace} with {@code --set} values; every manifest as a fabric8 object. */
    static List<HasMetadata> render(String namespace, Map<String, Object> sets) {
        // The chart needs Kubernetes >= 1.28 (pod-index label); helm's default is older.
        TemplateCommand command = new Helm(CHART).template().withName("moe").withNamespace(namespace)
                .withKubeVersion("1.31.0");
        for (Map.Entry<String, Object> set : sets.entrySet()) {
            command = command.set(set.getKey(), set.getValue());
        }
        List<HasMetadata> objects = new ArrayList<>();
        for (String document : command.call().split("(?m)^---\\s*$")) {
            if (document.lines().allMatch(l -> l.isBlank() || l.startsWith("#"))) {
                continue;
            }
            Object parsed = Serialization.unmarshal(document);
            if (parsed instanceof KubernetesList list) {
                objects.addAll(list.getItems());
            } else if (parsed instanceof HasMetadata object) {
                objects.add(object);
            }
        }
        return objects;
    }
}

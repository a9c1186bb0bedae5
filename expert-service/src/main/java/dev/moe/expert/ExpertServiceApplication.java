package dev.moe.expert;

import dev.moe.core.config.ServerArguments;
import org.springframework.boot.SpringApplication;
import org.springframework.boot.autoconfigure.SpringBootApplication;
import org.springframework.boot.context.properties.EnableConfigurationProperties;
import org.springframework.context.annotation.PropertySource;

/** An expert server: hosts a shard of the routed experts of every MoE layer and runs them for the router. */
@SpringBootApplication
@EnableConfigurationProperties(ExpertServerProperties.class)
// Defaults under a module-specific name: the CLI puts both services on one classpath.
@PropertySource("classpath:expert-service-defaults.properties")
public class ExpertServiceApplication {
    public static void main(String[] args) {
        String problem = ServerArguments.problem(args, "moe.expert", ExpertServerProperties.class);
        if (problem != null) { // Spring would ignore it and start with the defaults
            System.err.println("expert-service: " + problem);
            System.exit(2);
        }
        SpringApplication.run(ExpertServiceApplication.class, args);
    }
}

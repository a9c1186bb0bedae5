# syntax=docker/dockerfile:1
# The expert server image. Build from the repository root:
#   docker build -f helm/docker/expert.Dockerfile -t moe-serving/expert:0.1.0 .
# (no .dockerignore is shipped: keep target/ folders out of the context with one if they are large.)

# ---- build: the Maven wrapper on a Temurin 25 JDK ----
FROM eclipse-temurin:25-jdk AS build
WORKDIR /src
# Poms and the wrapper first, so the dependency download is cached while only sources change.
COPY mvnw pom.xml ./
COPY .mvn .mvn
COPY moe-core/pom.xml moe-core/
COPY proto/pom.xml proto/
COPY expert-service/pom.xml expert-service/
COPY router-service/pom.xml router-service/
COPY moe-cli/pom.xml moe-cli/
COPY helm/pom.xml helm/
RUN --mount=type=cache,target=/root/.m2 ./mvnw -B -q -pl expert-service -am dependency:go-offline || true
COPY . .
RUN --mount=type=cache,target=/root/.m2 ./mvnw -B -pl expert-service -am package -DskipTests \
 && cp expert-service/target/expert-service-0.1.0-SNAPSHOT-exec.jar /app.jar

# ---- run: a Temurin 25 JRE, non-root, nothing written outside /tmp ----
FROM eclipse-temurin:25-jre
RUN groupadd --system --gid 10001 moe && useradd --system --uid 10001 --gid moe --no-create-home --home-dir /nonexistent moe
COPY --from=build --chown=root:root --chmod=0444 /app.jar /app/expert.jar
USER 10001:10001
WORKDIR /tmp
# The Vector API module and memory limits come from JAVA_TOOL_OPTIONS (the chart sets -Xmx and
# -XX:MaxDirectMemorySize); -XX:-UsePerfData keeps the JVM from writing hsperfdata, so the root filesystem may be
# read-only with only /tmp writable.
ENV JAVA_TOOL_OPTIONS="--add-modules=jdk.incubator.vector -XX:-UsePerfData"
# gRPC, and the actuator (metrics, health) HTTP port
EXPOSE 9091 8081
ENTRYPOINT ["java", "-XX:+ExitOnOutOfMemoryError", "-jar", "/app/expert.jar"]

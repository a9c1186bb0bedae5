# Sourced by bin/moe and bin/test: exports JAVA_HOME pointing at a JDK 25 or newer, or exits 2 saying what to do.
java_major() { "$1/bin/java" -XshowSettings:properties -version 2>&1 | sed -n 's/^ *java.specification.version = //p' | cut -d. -f1; }

find_jdk() {
  local candidate major
  for candidate in "${JAVA_HOME:-}" /usr/lib/jvm/temurin-25-jdk-* /usr/lib/jvm/*-25-* /usr/lib/jvm/*25* /usr/lib/jvm/*; do
    [ -n "$candidate" ] && [ -x "$candidate/bin/java" ] && [ -x "$candidate/bin/javac" ] || continue
    major="$(java_major "$candidate")"
    if [ -n "$major" ] && [ "$major" -ge 25 ]; then echo "$candidate"; return 0; fi
  done
  return 1
}

if ! JAVA_HOME="$(find_jdk)"; then
  echo "moe: no JDK 25 or newer found (JAVA_HOME=${JAVA_HOME:-unset}, /usr/lib/jvm/*). Install one (e.g. Temurin 25)" \
       "and set JAVA_HOME to it." >&2
  exit 2
fi
export JAVA_HOME

# Stand-in for eclipse-temurin:17.0.13_11-jre-jammy: Debian bookworm's OpenJDK 17 JRE as a self-contained directory
# at /opt/java/openjdk (symlinks into /etc resolved), which is what the processor's Dockerfile copies. Never pushed.
FROM streamwreck-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y openjdk-17-jre-headless \
    && mkdir -p /opt/java \
    && cp -rL /usr/lib/jvm/java-17-openjdk-amd64 /opt/java/openjdk \
    && apt-get purge -y --auto-remove openjdk-17-jre-headless \
    && rm -rf /var/lib/apt/lists/*
ENV JAVA_HOME=/opt/java/openjdk PATH=/opt/java/openjdk/bin:$PATH
CMD ["jshell"]

# Stand-in for maven:3.9.9-eclipse-temurin-17: Debian bookworm's Maven (3.8.7) and OpenJDK 17, JAVA_HOME at
# /opt/java/openjdk as in the real image. The host's CA bundle goes into the system and Java trust stores AFTER
# apt-get, so that Maven reaches Maven Central through this machine's TLS. Never pushed.
FROM streamwreck-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y openjdk-17-jdk-headless maven ca-certificates ca-certificates-java \
    && mkdir -p /opt/java && ln -s /usr/lib/jvm/java-17-openjdk-amd64 /opt/java/openjdk \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /tmp/host-ca.crt
# One certificate per file for update-ca-certificates, whose hook adds them to Java's cacerts.
RUN mkdir -p /usr/local/share/ca-certificates/host \
    && awk '/BEGIN CERTIFICATE/{n++} {print > ("/usr/local/share/ca-certificates/host/" n ".crt")}' /tmp/host-ca.crt \
    && update-ca-certificates >/dev/null && rm /tmp/host-ca.crt
ENV JAVA_HOME=/opt/java/openjdk \
    MAVEN_HOME=/usr/share/maven \
    PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["mvn", "--version"]

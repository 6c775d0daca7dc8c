# Stand-in for python:3.11.13-slim-bookworm: Debian bookworm's python3 (3.11.2) with `python` on PATH, venv, pip
# (in venvs), useradd. The host's CA bundle is copied in AFTER apt-get (installing ca-certificates rewrites it), so
# that pip reaches PyPI through this machine's TLS. Never pushed.
FROM streamwreck-standin/debian:bookworm
RUN apt-get update \
    && apt-get install -y python3 python3-venv python-is-python3 passwd ca-certificates \
    && rm -rf /var/lib/apt/lists/*
COPY ca-certificates.crt /etc/ssl/certs/ca-certificates.crt
ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt \
    REQUESTS_CA_BUNDLE=/etc/ssl/certs/ca-certificates.crt \
    SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt
CMD ["python3"]

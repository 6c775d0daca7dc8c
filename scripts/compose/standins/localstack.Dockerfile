# Stand-in for localstack/localstack:4.0.3, made only where that image cannot be pulled: not LocalStack, but the
# emulators streamwreck's own tests use, behind one gateway on LocalStack's port 4566 (localstack/gateway.py):
# kinesis-local (npm, the Kinesis engine LocalStack runs) and moto in server mode (SNS, SQS, DynamoDB, CloudWatch).
# docs/deploy.md says which parts of LocalStack cannot run here and why. Never pushed.
FROM python:3.11.13-slim-bookworm AS build
# kinesis-local has no dependencies: its npm tarball, checked against package-lock.json's integrity (no npm needed).
COPY package-lock.json fetch_npm.py /tmp/
RUN python /tmp/fetch_npm.py /tmp/package-lock.json kinesis-local /opt/kinesis-local/node_modules/kinesis-local \
    && python -m venv /opt/venv \
    && /opt/venv/bin/pip install --no-cache-dir 'moto[server]==5.2.5' 'hypercorn==0.18.0' 'httpx==0.28.1'

FROM python:3.11.13-slim-bookworm
RUN apt-get update && apt-get install -y nodejs curl && rm -rf /var/lib/apt/lists/*
COPY --from=build /opt/kinesis-local /opt/kinesis-local
COPY --from=build /opt/venv /opt/venv
COPY localstack/gateway.py localstack/loopback.cjs /opt/standin/
ENV PATH=/opt/venv/bin:$PATH PYTHONUNBUFFERED=1 GATEWAY_LISTEN=0.0.0.0:4566
EXPOSE 4566
ENTRYPOINT ["python", "/opt/standin/gateway.py"]

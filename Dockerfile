# audit-forwarder: multi-stage, slim, non-root.
#   docker build -t audit-forwarder .
#   docker run -v $PWD/config.yaml:/etc/audit-forwarder/config.yaml:ro -v af-state:/var/lib/audit-forwarder \
#              -e CODACY_API_TOKEN=... -p 127.0.0.1:9464:9464 audit-forwarder
# The build stage installs the package and its dependencies into a virtualenv; the runtime
# stage copies only that virtualenv (no compiler, no pip cache, no source tree).
FROM python:3.11-slim AS build
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1
WORKDIR /src
COPY pyproject.toml README.md ./
COPY forwarder ./forwarder
COPY sinks ./sinks
RUN python -m venv /opt/venv && /opt/venv/bin/pip install .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --user-group --home-dir /var/lib/audit-forwarder --shell /usr/sbin/nologin forwarder \
 && install -d -o forwarder -g forwarder -m 0700 /var/lib/audit-forwarder \
 && install -d -m 0755 /etc/audit-forwarder
COPY --from=build /opt/venv /opt/venv
COPY config/example.yaml /etc/audit-forwarder/example.yaml
# Mount the configuration at AUDIT_FORWARDER_CONFIG; secrets via ${VAR} from -e/--env-file, or
# `<field>_file: /run/secrets/NAME`. The metrics endpoint listens on every interface inside the
# container so it can be published; /healthz is what HEALTHCHECK asks.
ENV PATH=/opt/venv/bin:$PATH \
    AUDIT_FORWARDER_CONFIG=/etc/audit-forwarder/config.yaml \
    AUDIT_FORWARDER_STATE_DIR=/var/lib/audit-forwarder \
    AUDIT_FORWARDER_METRICS__LISTEN=0.0.0.0:9464 \
    AUDIT_FORWARDER_LOG__FORMAT=json \
    PYTHONUNBUFFERED=1 \
    PYTHONDONTWRITEBYTECODE=1
USER 10001:10001
VOLUME ["/var/lib/audit-forwarder"]
EXPOSE 9464
STOPSIGNAL SIGTERM
HEALTHCHECK --interval=30s --timeout=5s --start-period=30s --retries=3 \
  CMD ["python", "-c", "import os, urllib.request as u; p = os.environ.get('AUDIT_FORWARDER_METRICS__LISTEN', ':9464').rpartition(':')[2]; u.urlopen(f'http://127.0.0.1:{p}/healthz', timeout=4)"]
ENTRYPOINT ["audit-forwarder"]
CMD ["run"]

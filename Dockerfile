# Multi-stage: build a wheel with its dependencies, then copy only the virtualenv.
FROM python:3.11-slim AS build
WORKDIR /src
COPY pyproject.toml README.md ./
COPY forwarder ./forwarder
COPY sinks ./sinks
RUN python -m venv /opt/venv && /opt/venv/bin/pip install --no-cache-dir .

FROM python:3.11-slim
RUN useradd --system --uid 10001 --home-dir /var/lib/audit-forwarder --shell /usr/sbin/nologin forwarder \
 && mkdir -p /var/lib/audit-forwarder /etc/audit-forwarder \
 && chown forwarder /var/lib/audit-forwarder
COPY --from=build /opt/venv /opt/venv
COPY config/example.yaml /etc/audit-forwarder/example.yaml
ENV PATH=/opt/venv/bin:$PATH \
    AUDIT_FORWARDER_CONFIG=/etc/audit-forwarder/config.yaml \
    AUDIT_FORWARDER_STATE_DIR=/var/lib/audit-forwarder \
    PYTHONUNBUFFERED=1
USER forwarder
VOLUME ["/var/lib/audit-forwarder"]
ENTRYPOINT ["audit-forwarder"]
CMD ["run"]

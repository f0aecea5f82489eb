# audit-forwarder: multi-stage, slim, non-root.
#   docker build -t audit-forwarder .        (or: podman build)
#   docker run -v $PWD/config.yaml:/etc/audit-forwarder/config.yaml:ro -v af-state:/var/lib/audit-forwarder \
#              -e CODACY_API_TOKEN=... -p 127.0.0.1:9464:9464 audit-forwarder
# The build stage installs the package and its dependencies into a virtualenv; the runtime
# stage copies only that virtualenv (no compiler, no pip cache, no source tree).
#
# Reproducible: the base is pinned by digest and every dependency (and the build backend) by
# constraints.txt. BASE may be any Debian bookworm image with python3 (3.11) and its venv module,
# e.g. one made without a registry (what tests/ops/test_container_image.py builds on):
#   debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm rootfs
#   tar -C rootfs -c . | podman import - localhost/debian-python:bookworm
#   podman build --build-arg BASE=localhost/debian-python:bookworm -t audit-forwarder .
# To move the pin: take the digest of the new tag from your registry (`docker buildx imagetools
# inspect python:3.11-slim-bookworm`, `skopeo inspect`) and write tag@digest below.
ARG BASE=python:3.11.13-slim-bookworm@sha256:86adf8dbadc3d6e82ee5dd2c74bec2e1c2467cdad47886280501df722372d2e1

FROM ${BASE} AS build
# Behind a TLS-inspecting proxy or with a private index: --build-arg PIP_CERT=/path (bind-mount the
# bundle into the build) and --build-arg PIP_INDEX_URL=...; they reach the build stage only.
ARG PIP_CERT
ARG PIP_INDEX_URL
ENV PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_CACHE_DIR=1 PIP_CONSTRAINT=/src/constraints.txt
WORKDIR /src
COPY pyproject.toml README.md constraints.txt ./
COPY forwarder ./forwarder
COPY sinks ./sinks
# PIP_CONSTRAINT reaches pip's isolated build environment too, so setuptools is pinned as well
RUN python3 -m venv /opt/venv && /opt/venv/bin/pip install .

FROM ${BASE}
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

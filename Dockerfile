# The course image: each learner's server on a Kubernetes hub (hub/kubernetes/values.yaml), a learner's own
# `docker run` on a laptop, and the dev container (.devcontainer/). Everything is installed and every Wasm
# filter is built here, so no lab reaches a registry while it runs. It runs as the non-root user `learner`;
# the course lives read-only in /opt/meshlab and each learner works on a copy in ~/meshlab (made on start).
#
#   docker build -t meshlab .
#   docker run --rm -it -p 8888:8888 --cap-add SYS_ADMIN --cap-add NET_ADMIN \
#     --security-opt seccomp=unconfined --security-opt apparmor=unconfined -v meshlab-home:/home/learner meshlab
#
# (docs/hosting.md explains each flag; without them the labs still run, in the loopback network mode.)
FROM debian:bookworm-slim

SHELL ["/bin/bash", "-o", "pipefail", "-c"]

# the system's Python 3.11 (what .venv is built from: readable by every user), make, tini as PID 1
# hadolint ignore=DL3008
RUN apt-get update \
 && apt-get install -y --no-install-recommends python3 python3-venv make ca-certificates tini \
 && rm -rf /var/lib/apt/lists/*

# the Debian packages of the one list (ip, wrk, prometheus, docker-registry), installed by that list's own step
COPY lib/meshlab/system_packages.py /tmp/system_packages.py
RUN python3 /tmp/system_packages.py local && rm -rf /var/lib/apt/lists/* /tmp/system_packages.py

# the course, set up as `make setup` does on a machine: .venv, the labs' and the hub's Python packages,
# npm dependencies, every Wasm filter built
COPY . /opt/meshlab
WORKDIR /opt/meshlab
RUN make setup BACKEND=local EXTRAS=lab,hub \
 && rm -rf /root/.cache /root/.npm \
 && chmod -R a+rX /opt/meshlab

ARG NB_USER=learner
ARG NB_UID=1000
RUN useradd --create-home --uid "${NB_UID}" --shell /bin/bash "${NB_USER}"
USER ${NB_UID}
WORKDIR /home/${NB_USER}
ENV PATH=/opt/meshlab/.venv/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin

EXPOSE 8888
ENTRYPOINT ["tini", "--"]
CMD ["python", "-m", "meshlab.room.singleuser", "--lab", "--ip=0.0.0.0", "--port=8888", "--no-browser"]

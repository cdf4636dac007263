"""The Debian packages meshlab uses — the one list — and the step of ``make setup`` that installs them.

``make setup`` runs this file with the system Python before ``.venv`` exists (so: standard library
only, no imports from meshlab); ``meshlab doctor`` imports :data:`PACKAGES` and checks each command.
To add a package, add one line to :data:`PACKAGES`: setup installs it and doctor checks it.

How it installs: ``apt-get`` directly when running as root; otherwise ``sudo -n`` (never a password
prompt); otherwise it prints the exact command to run and stops. On a system without ``apt-get`` it
says what is missing and goes on: a kind bring-up needs none of these packages.
"""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass

SBIN = ("/usr/sbin", "/sbin")  # `ip` lives here, often outside a normal user's PATH


@dataclass(frozen=True)
class Package:
    name: str  # the Debian package
    command: str  # the program it provides (what doctor and setup look for)
    backends: tuple[str, ...]  # which backends need it ("local", "kind")
    why: str


PACKAGES: tuple[Package, ...] = (
    Package("iproute2", "ip", ("local",), "network namespaces, veth pairs and routes of the local backend"),
    Package("docker-registry", "docker-registry", ("local",),
            "lab 08's wasm module hub, which runs next to the notebook (with either backend); "
            "a kind bring-up never needs it: the clusters pull from a registry:2 container"),
    Package("wrk", "wrk", ("local",), "HTTP load generator (labs 01 and 01b, meshlab bench)"),
    Package("prometheus", "prometheus", ("local",), "a Prometheus per cluster for federated telemetry (lab 05)"),
)


# Not for the labs: `meshlab export` draws the handout's Mermaid diagrams in headless Chromium (`make handout-deps`,
# which `make test` runs too). A learner's `make setup` does not install it.
HANDOUT_PACKAGES: tuple[Package, ...] = (
    Package("chromium", "chromium", ("handout",), "draws the handout's Mermaid diagrams offline (meshlab export)"),
)


def find_command(command: str) -> str | None:
    """The program's path: on PATH, or in /usr/sbin and /sbin."""
    return shutil.which(command) or shutil.which(command, path=os.pathsep.join(SBIN))


def needed(backend: str = "all") -> list[Package]:
    """The packages ``backend`` needs (``all``: every backend; ``handout``: what `meshlab export` needs)."""
    if backend == "handout":
        return list(HANDOUT_PACKAGES)
    return [p for p in PACKAGES if backend == "all" or backend in p.backends]


def missing(backend: str = "all") -> list[Package]:
    return [p for p in needed(backend) if find_command(p.command) is None]


def install_argv(names: list[str]) -> list[list[str]]:
    """The apt-get commands (without sudo) that install ``names``."""
    return [["apt-get", "update", "-qq"],
            ["apt-get", "install", "-y", "-qq", "--no-install-recommends", *names]]


def manual_command(names: list[str]) -> str:
    return " && ".join("sudo " + shlex.join(a) for a in install_argv(names))


def _run(argv: list[str]) -> int:
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    return subprocess.run(argv, env=env, stdout=subprocess.DEVNULL).returncode


def ensure(backend: str = "all") -> int:
    """Install what ``backend`` needs and is missing; 0 when done (or nothing is needed), 2 to stop."""
    todo = missing(backend)
    if not todo:
        return 0
    names = [p.name for p in todo]
    what = ", ".join(f"{p.command} ({p.name})" for p in todo)
    if not sys.platform.startswith("linux") or shutil.which("apt-get") is None:
        print(f"meshlab: no apt-get here (not Debian/Ubuntu): install {what} with your system's package manager "
              "for the local backend and lab 08; a kind bring-up needs none of them. Going on.")
        return 0
    if os.geteuid() == 0:
        prefix: list[str] = []
    elif shutil.which("sudo") and subprocess.run(["sudo", "-n", "true"], capture_output=True).returncode == 0:
        prefix = ["sudo", "-n"]
    else:
        print(f"meshlab: missing Debian packages {' '.join(names)}: run `{manual_command(names)}`, then `make setup` "
              "again (or `make setup BACKEND=kind`: a kind bring-up needs none of them).")
        return 2
    print(f"installing Debian packages {' '.join(names)}" + (" (with sudo)" if prefix else ""), flush=True)
    for argv in install_argv(names):
        if _run(prefix + argv) != 0:
            print(f"meshlab: `{shlex.join(prefix + argv)}` failed; run it by hand to see why, then `make setup` again.")
            return 2
    still = [p.name for p in missing(backend)]
    if still:
        print(f"meshlab: installed, but still not found: {' '.join(still)}; check `dpkg -L {still[0]}`.")
        return 2
    return 0


def main(argv: list[str]) -> int:
    if len(argv) > 1 or (argv and argv[0] not in ("all", "local", "kind", "handout")):
        print(f"usage: python3 {os.path.basename(__file__)} [all|local|kind|handout]", file=sys.stderr)
        return 2
    return ensure(argv[0] if argv else "all")


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

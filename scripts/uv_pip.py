"""Run ``uv pip ...`` with pip's settings, which uv does not read.

    python scripts/uv_pip.py UV_EXECUTABLE install --python .venv/bin/python torch==2.14.1 -e .

pip's effective settings (``pip config list`` of this interpreter's pip: the ``PIP_*`` variables over
the ``install`` section over the ``global`` one, across every pip config file) become the uv options
that decide where packages come from and which versions are allowed: indexes, find-links, constraints,
trusted hosts, binary/source choices, the certificate, the proxy and the timeout. Indexes are searched
the way pip does (the best version over all of them). Settings without a uv counterpart that changes
the result (progress bars, version checks) are dropped; unknown ones are named on stderr.
Standard library only: it runs before anything is installed.
"""

from __future__ import annotations

import ast
import os
import subprocess
import sys

PRECEDENCE = {"global": 0, "install": 1, ":env:": 2}  # later wins, as in pip
LISTS = {  # pip option -> uv option, once per whitespace-separated value
    "index-url": "--index-url",
    "extra-index-url": "--extra-index-url",
    "find-links": "--find-links",
    "constraint": "--constraints",
    "trusted-host": "--allow-insecure-host",
    "only-binary": "--only-binary",
    "no-binary": "--no-binary",
}
SWITCHES = {"no-index": ["--no-index"], "pre": ["--prerelease", "allow"], "no-cache-dir": ["--no-cache"],
            "no-build-isolation": ["--no-build-isolation"]}
ENVIRONMENT = {"cert": ("SSL_CERT_FILE",), "client-cert": ("SSL_CLIENT_CERT",),
               "proxy": ("HTTPS_PROXY", "HTTP_PROXY"), "timeout": ("UV_HTTP_TIMEOUT",),
               "default-timeout": ("UV_HTTP_TIMEOUT",)}
IRRELEVANT = {"disable-pip-version-check", "progress-bar", "no-color", "quiet", "verbose", "retries",
              "cache-dir", "no-input", "root-user-action", "break-system-packages"}


def pip_settings(python: str = sys.executable) -> dict[str, str]:
    """pip's effective option values for ``pip install``, by option name."""
    listed = subprocess.run([python, "-m", "pip", "config", "list"], capture_output=True, text=True, check=True)
    chosen: dict[str, tuple[int, str]] = {}
    for line in listed.stdout.splitlines():
        key, sep, value = line.partition("=")
        section, _, name = key.rpartition(".")
        if not sep or section not in PRECEDENCE:
            continue
        rank = PRECEDENCE[section]
        if name not in chosen or rank >= chosen[name][0]:
            chosen[name] = (rank, ast.literal_eval(value))
    return {name: value for name, (_, value) in chosen.items()}


def truthy(value: str) -> bool:
    return value.strip().lower() in {"1", "true", "yes", "on"}


def uv_options(settings: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    """The uv command-line options and environment variables equivalent to pip's ``settings``."""
    options, environment = ["--index-strategy", "unsafe-best-match"], {}
    for name, value in settings.items():
        if name in LISTS:
            for item in value.split():
                options += [LISTS[name], item]
        elif name in SWITCHES:
            options += SWITCHES[name] if truthy(value) else []
        elif name in ENVIRONMENT:
            environment.update({variable: value for variable in ENVIRONMENT[name]})
        elif name not in IRRELEVANT:
            print(f"uv_pip.py: pip setting {name}={value!r} has no uv counterpart here; ignored", file=sys.stderr)
    return options, environment


def main(argv: list[str]) -> int:
    if len(argv) < 2:
        print("usage: python scripts/uv_pip.py UV_EXECUTABLE PIP_SUBCOMMAND [ARGS...]", file=sys.stderr)
        return 2
    uv, subcommand, *rest = argv
    options, environment = uv_options(pip_settings())
    # variables set by the caller win over pip's settings
    env = {**environment, **os.environ}
    return subprocess.run([uv, "pip", subcommand, *options, *rest], env=env).returncode


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))

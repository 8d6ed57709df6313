"""Preparing a project-local SoftHSMv2 token (what `make run` and the tests use).

Creates, only where missing: SoftHSM's config file pointing at a token
directory beside it, a user PIN and an SO PIN (random, files created 0600
with O_EXCL so an existing PIN is never overwritten), and the token itself
through ``softhsm2-util``. Running it again changes nothing. A production
deployment with a real HSM never calls this.

The PINs reach ``softhsm2-util`` as arguments, so they are visible to local
users in the process table for the moment it runs: fine for a laptop token,
and the reason production HSMs are provisioned with their vendor's tools.
"""

from __future__ import annotations

import os
import re
import secrets
import shutil
import subprocess
from pathlib import Path

from trustchain.actors.hsm.errors import HsmError, HsmModuleNotFound

INSTALL_HINT = (
    "install SoftHSMv2: `sudo apt-get install softhsm2` (Debian/Ubuntu) "
    "or `brew install softhsm` (macOS)"
)


def _write_secret(path: Path) -> str:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    value = secrets.token_hex(16)
    with os.fdopen(fd, "w") as fh:
        fh.write(value + "\n")
    return value


def _run(args: list[str], conf: Path) -> str:
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    done = subprocess.run(args, env=env, capture_output=True, text=True, check=False)
    if done.returncode != 0:
        raise HsmError(f"{args[0]} {args[1]} failed: {(done.stderr or done.stdout).strip()}")
    return done.stdout


def prepare_softhsm_token(conf: Path, token_label: str, pin_file: Path) -> bool:
    """Make sure a SoftHSM token ``token_label`` exists under ``conf``'s folder.

    Returns True when this call created the token.
    """
    util = shutil.which("softhsm2-util")
    if util is None:
        raise HsmModuleNotFound(f"softhsm2-util not found; {INSTALL_HINT}")
    conf = conf.resolve()
    conf.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    tokens = conf.parent / "tokens"
    tokens.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not conf.exists():
        conf.write_text(
            f"directories.tokendir = {tokens}\n"
            "objectstore.backend = file\n"
            "log.level = ERROR\n"
            "slots.removable = false\n"
        )
    pin = _write_secret(pin_file)
    so_pin = _write_secret(pin_file.with_name("so.pin"))
    slots = _run([util, "--show-slots"], conf)
    labels = re.findall(r"^\s*Label:\s*(.*?)\s*$", slots, flags=re.MULTILINE)
    if token_label in labels:
        return False
    _run(
        [util, "--init-token", "--free", "--label", token_label, "--pin", pin, "--so-pin", so_pin],
        conf,
    )
    return True

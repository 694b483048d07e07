"""`tribe-stream keys OUT_DIR`: make CURVE key pairs for encrypted, access-controlled publishing."""

from __future__ import annotations

import argparse
import os
import re
from pathlib import Path

from tribe_stream.errors import InputError

NAME = "keys"
HELP = "make ZeroMQ CURVE key pairs (NAME.key public, NAME.key_secret private) for encrypted publishing"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("out_dir", help="folder for the key files (created if missing)")
    parser.add_argument(
        "--name",
        action="append",
        help="name of a key pair; repeat for several (default: server and client)",
    )
    parser.add_argument("--overwrite", action="store_true", help="replace existing key files")


def run(args: argparse.Namespace) -> int:
    import zmq.auth  # binds zmq too

    if not zmq.has("curve"):
        raise InputError("this libzmq was built without CURVE; install pyzmq from its wheels")
    out = Path(args.out_dir)
    names = args.name or ["server", "client"]
    for name in names:
        if not re.fullmatch(r"[A-Za-z0-9_.-]+", name) or name.startswith("."):
            raise InputError(f"key name {name!r}: use letters, digits, '.', '_' or '-'")
        for suffix in (".key", ".key_secret"):
            if (out / f"{name}{suffix}").exists() and not args.overwrite:
                raise InputError(f"{out / (name + suffix)} exists; pass --overwrite to replace it")
    out.mkdir(parents=True, exist_ok=True)
    for name in names:
        secret = out / f"{name}.key_secret"  # private from its first byte: made 0600 here,
        secret.unlink(missing_ok=True)  # new (not an old file's mode), then filled by zmq
        os.close(os.open(secret, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
        public_file, secret_file = zmq.auth.create_certificates(str(out), name)
        public, _ = zmq.auth.load_certificate(public_file)
        print(f"{name}: public key {public.decode()}")
        print(f"  {public_file} (share it)  {secret_file} (keep it private)")
    if "server" in names:
        client = next((n for n in names if n != "server"), "CLIENT")
        print(
            f"publisher:  --curve-secret {out / 'server.key_secret'} --allow-client "
            f"{out / (client + '.key')}\n"
            f"subscriber: --curve-server-key {out / 'server.key'} --curve-keypair "
            f"{out / (client + '.key_secret')}"
        )
    return 0

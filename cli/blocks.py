"""`salvo blocks register|create|show`: storage blocks, saved by name (running twice is harmless)."""

from __future__ import annotations

import argparse
import os
from typing import Any

from salvo import validate
from salvo.errors import UsageError
from salvo.storage import check_no_credentials, parse_location


def register(subparsers: Any) -> None:
    """Add `salvo blocks`."""
    top = subparsers.add_parser(
        "blocks",
        help="storage blocks: a local folder or an S3 prefix",
        description="Register Salvo's block types and save storage blocks by name.",
    )
    sub = top.add_subparsers(dest="blocks_command", metavar="ACTION", required=True)
    reg = sub.add_parser("register", help="register the block types with the Prefect API (idempotent)")
    reg.set_defaults(func=register_main)

    create = sub.add_parser("create", help="create or replace a storage block")
    kinds = create.add_subparsers(dest="kind", metavar="KIND", required=True)
    local = kinds.add_parser("local", help="a local folder")
    local.add_argument("name", metavar="NAME")
    local.add_argument("path", metavar="PATH")
    local.set_defaults(func=create_main)
    s3 = kinds.add_parser("s3", help="an S3 prefix (AWS or any S3-compatible server)")
    s3.add_argument("name", metavar="NAME")
    s3.add_argument("url", metavar="s3://bucket/prefix")
    s3.add_argument("--endpoint-url", help="endpoint of an S3-compatible server, e.g. http://minio:9000")
    creds = s3.add_mutually_exclusive_group()
    creds.add_argument(
        "--credentials-from-env",
        action="store_true",
        help="store AWS_ACCESS_KEY_ID / AWS_SECRET_ACCESS_KEY from the environment in the block (masked)",
    )
    creds.add_argument(
        "--credentials-secret",
        metavar="SECRET_BLOCK",
        help="name of a Prefect Secret block holding aws_access_key_id and aws_secret_access_key",
    )
    s3.set_defaults(func=create_main)

    show = sub.add_parser("show", help="show a storage block (credentials masked)")
    show.add_argument("name", metavar="NAME")
    show.set_defaults(func=show_main)


def register_main(args: argparse.Namespace) -> int:
    """Register the block types; harmless to repeat."""
    from blocks.storage import register_blocks

    for slug in register_blocks():
        print(f"Registered block type {slug}")
    return 0


def create_main(args: argparse.Namespace) -> int:
    """Save (or replace) a storage block by name."""
    validate.safe_name(args.name, "block name")  # checked before the Prefect API is asked anything
    if args.kind == "local":
        local = parse_location(args.path, "PATH", block_names=False)
        if local.kind != "local":
            raise UsageError(
                f"PATH must be a folder for a local block (use `blocks create s3` for S3), "
                f"got {validate.redact(args.path)!r}"
            )
        validate.output_dir(local.path, "PATH")
    else:
        if parse_location(args.url, "s3 block URL", block_names=False).kind != "s3":
            raise UsageError(f"s3 block URL must look like s3://bucket/prefix, got {validate.redact(args.url)!r}")
        if args.endpoint_url:
            check_no_credentials(args.endpoint_url, "--endpoint-url")
            if not args.endpoint_url.startswith(("http://", "https://")):
                raise UsageError(f"--endpoint-url must look like http://HOST:PORT, got {args.endpoint_url!r}")
        if args.credentials_secret:
            validate.safe_name(args.credentials_secret, "--credentials-secret")
    from blocks.storage import save_storage_block

    if args.kind == "local":
        block = save_storage_block(args.name, local.path)
    else:
        key = secret = None
        if args.credentials_from_env:
            key, secret = os.environ.get("AWS_ACCESS_KEY_ID"), os.environ.get("AWS_SECRET_ACCESS_KEY")
            if not (key and secret):
                raise UsageError("--credentials-from-env needs AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY set")
        block = save_storage_block(
            args.name,
            args.url,
            endpoint_url=args.endpoint_url,
            aws_access_key_id=key,
            aws_secret_access_key=secret,
            credentials_secret=args.credentials_secret,
        )
    print(
        f"Saved storage block {args.name!r}: {block.url}"
        + (f" (endpoint {block.endpoint_url})" if block.endpoint_url else "")
    )
    return 0


def show_main(args: argparse.Namespace) -> int:
    """Print a block's settings; credentials only as set or not set."""
    from blocks.storage import resolve_storage

    validate.safe_name(args.name, "block name")
    block = resolve_storage(args.name)
    print(f"name:         {args.name}")
    print(f"url:          {block.url}")
    print(f"endpoint_url: {block.endpoint_url or '-'}")
    given = (
        "stored (masked)"
        if block.aws_secret_access_key
        else (f"from Secret block {block.credentials_secret!r}" if block.credentials_secret else "standard AWS chain")
    )
    print(f"credentials:  {given}")
    return 0

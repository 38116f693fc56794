"""Commands that talk to registries: pull, push, login, logout, manifest inspect.

Like Docker's CLI, their failures exit 1 (not 125): the error is the
registry's, not a misuse of the command line.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import TYPE_CHECKING

from dockyard.errors import DockyardError

if TYPE_CHECKING:
    from dockyard.cli.context import Context


def configure(command: str, p: argparse.ArgumentParser) -> None:
    if command == "pull":
        p.add_argument("-a", "--all-tags", action="store_true")
        p.add_argument("--platform")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--disable-content-trust", action="store_true")
        p.add_argument("name", metavar="NAME[:TAG|@DIGEST]")
    elif command == "push":
        p.add_argument("-a", "--all-tags", action="store_true")
        p.add_argument("-q", "--quiet", action="store_true")
        p.add_argument("--disable-content-trust", action="store_true")
        p.add_argument("name", metavar="NAME[:TAG]")
    elif command == "login":
        p.add_argument("-u", "--username")
        p.add_argument("-p", "--password")
        p.add_argument("--password-stdin", action="store_true")
        p.add_argument("server", nargs="?", metavar="SERVER")
    elif command == "logout":
        p.add_argument("server", nargs="?", metavar="SERVER")
    elif command == "manifest inspect":
        p.add_argument("--insecure", action="store_true")
        p.add_argument("-v", "--verbose", action="store_true")
        p.add_argument("refs", nargs="+", metavar="[MANIFEST_LIST] MANIFEST")


def execute(command: str, ctx: Context, args: argparse.Namespace) -> int:
    try:
        if command == "pull":
            return _pull(ctx, args)
        if command == "push":
            return _push(ctx, args)
        if command == "login":
            return _login(args)
        if command == "logout":
            return _logout(args)
        if command == "manifest inspect":
            return _manifest_inspect(args)
    except DockyardError as err:
        if err.exit_code == 125 and command != "manifest inspect":
            err.exit_code = 1
        raise
    raise DockyardError(f"unknown command: {command}")


def _pull(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.images.reference import parse
    from dockyard.registry.progress import Progress
    from dockyard.registry.pull import pull, pull_all_tags

    ref = parse(args.name)
    progress = Progress(sys.stdout, quiet=args.quiet)
    if args.all_tags:
        if not ref.is_name_only:
            raise DockyardError("tag can't be used with --all-tags/-a")
        pull_all_tags(ctx.images, ref, platform=args.platform, progress=progress)
        print(ref.name)
        return 0
    if ref.is_name_only:
        progress.line("Using default tag: latest")
        ref = ref.with_default_tag()
    pull(ctx.images, ref, platform=args.platform, progress=progress)
    print(ref.string())
    return 0


def _push(ctx: Context, args: argparse.Namespace) -> int:
    from dockyard.images.reference import parse
    from dockyard.registry.progress import Progress
    from dockyard.registry.push import push

    ref = parse(args.name)
    if args.all_tags and not ref.is_name_only:
        raise DockyardError("tag can't be used with --all-tags/-a")
    if not args.all_tags and ref.is_name_only:
        progress_line = "Using default tag: latest"
        if not args.quiet:
            print(progress_line)
        ref = ref.with_default_tag()
    progress = Progress(sys.stdout, quiet=args.quiet)
    results = push(ctx.images, ref, all_tags=args.all_tags, progress=progress)
    if args.quiet:
        for tagged, _digest in results:
            print(tagged)
    return 0


def _read_password_stdin() -> str:
    data = sys.stdin.read()
    return data.rstrip("\n").rstrip("\r")


def _login(args: argparse.Namespace) -> int:
    from dockyard.registry import auth
    from dockyard.registry.client import RegistryClient

    if args.password and args.password_stdin:
        raise DockyardError("--password and --password-stdin are mutually exclusive")
    password = args.password or ""
    if args.password_stdin:
        if not args.username:
            raise DockyardError("Must provide --username with --password-stdin")
        password = _read_password_stdin()
    elif args.password:
        print(
            "WARNING! Using --password via the CLI is insecure. Use --password-stdin.",
            file=sys.stderr,
        )
    key = auth.normalize_server(args.server)
    domain = "docker.io" if key == auth.INDEX_SERVER else key
    username = args.username or ""
    if not username and not password:
        existing = auth.get_credentials(domain)
        if existing is not None:
            print("Authenticating with existing credentials...", file=sys.stderr)
            try:
                client = RegistryClient(domain, existing, lookup=False)
                client.check_login()
                client.close()
                print("Login Succeeded")
                return 0
            except auth.Unauthorized:
                print(f"Login did not succeed, error: unauthorized for {key}", file=sys.stderr)
        username, password = _prompt(existing.username if existing else "")
    elif not password:
        username, password = _prompt(username, ask_user=False)
    if not username:
        raise DockyardError("Error: Non-null Username Required")
    creds = auth.Credentials(username, password)
    client = RegistryClient(domain, creds, lookup=False)
    try:
        client.check_login()
    except auth.Unauthorized as err:
        raise auth.Unauthorized(f"login to {key} failed: {err}") from err
    finally:
        client.close()
    if client.identity_token:  # kept instead of the password, as Docker does
        creds = auth.Credentials(username, "", client.identity_token)
    if not auth.store_credentials(key, creds):
        print(
            f"WARNING! Your credentials are stored unencrypted in '{auth.config_path()}'.\n"
            "Configure a credential helper to remove this warning. See\n"
            "https://docs.docker.com/go/credential-store/\n",
            file=sys.stderr,
        )
    print("Login Succeeded")
    return 0


def _prompt(default_user: str, ask_user: bool = True) -> tuple[str, str]:
    import getpass

    if not sys.stdin.isatty():
        raise DockyardError("Cannot perform an interactive login from a non TTY device")
    user = default_user
    if ask_user:
        shown = f" ({default_user})" if default_user else ""
        typed = input(f"Username{shown}: ").strip()
        user = typed or default_user
    password = getpass.getpass("Password: ")
    return user, password


def _logout(args: argparse.Namespace) -> int:
    from dockyard.registry import auth

    key = auth.normalize_server(args.server)
    if not auth.erase_credentials(key):
        print(f"Not logged in to {key}")
        return 0
    print(f"Removing login credentials for {key}")
    return 0


def _manifest_inspect(args: argparse.Namespace) -> int:
    from dockyard.images.reference import parse
    from dockyard.registry.pull import fetch_manifest_for

    if len(args.refs) > 2:
        raise DockyardError('"manifest inspect" requires at most 2 arguments')
    ref = parse(args.refs[-1]).with_default_tag()
    manifest, digest = fetch_manifest_for(ref)
    if args.verbose:
        out = {
            "Ref": ref.string(),
            "Descriptor": {
                "mediaType": manifest.media_type,
                "digest": digest,
                "size": len(manifest.raw),
            },
            "Raw": manifest.data,
        }
        print(json.dumps(out, indent=8))
        return 0
    print(json.dumps(manifest.data, indent="\t"))
    return 0

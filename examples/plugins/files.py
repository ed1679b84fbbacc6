#!/usr/bin/env python3
"""A hushbox plugin serving secrets from files under one directory.

It speaks both protocols of hushbox's `command` backend (see
backends/command/README.md), and is small on purpose: copy it and replace
`read_secret` with a call to your own store.

    files.py get PATH   one-shot: the value on stdout, exit 3 if missing
    files.py json       batch: JSON lines in, JSON lines out, in order

The directory is taken from FILES_PLUGIN_ROOT (pass it with
`env = ["FILES_PLUGIN_ROOT"]`). When FILES_PLUGIN_LOG names a file, one
line is appended to it per process start (never a value), so that tests
can count processes.

    [backends.files]
    kind = "command"
    protocol = "json"
    command = ["python3", "examples/plugins/files.py", "json"]
    env = ["FILES_PLUGIN_ROOT"]
"""

import base64
import json
import os
import sys

NOT_FOUND_EXIT = 3
INVALID_EXIT = 2


class NotFound(Exception):
    pass


class Invalid(Exception):
    pass


def read_secret(path):
    """The bytes stored at `path`, a relative path below the root."""
    root = os.environ.get("FILES_PLUGIN_ROOT")
    if not root:
        raise Invalid("FILES_PLUGIN_ROOT is not set")
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts:
        raise Invalid("the path must be relative, without '..' or empty parts")
    try:
        with open(os.path.join(root, *parts), "rb") as secret:
            return secret.read()
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError):
        raise NotFound(path) from None


def reply(value):
    """A reply line for bytes: text when they are UTF-8, else base64."""
    try:
        return {"value": value.decode("utf-8")}
    except UnicodeDecodeError:
        return {"value_base64": base64.b64encode(value).decode("ascii")}


def serve_json():
    for line in sys.stdin.buffer:
        try:
            request = json.loads(line)
            if request.get("params"):
                raise Invalid("this plugin takes no parameters")
            answer = reply(read_secret(request["path"]))
        except NotFound:
            answer = {"error": "not_found", "message": "no such secret"}
        except (Invalid, KeyError, ValueError) as error:
            answer = {"error": "invalid", "message": str(error)}
        except OSError as error:
            answer = {"error": "unavailable", "message": error.strerror or "I/O error"}
        sys.stdout.write(json.dumps(answer) + "\n")
        # One reply per request as soon as it is known: a plugin may stream.
        sys.stdout.flush()
    return 0


def serve_one(path):
    try:
        value = read_secret(path)
    except NotFound:
        print("files.py: no such secret", file=sys.stderr)
        return NOT_FOUND_EXIT
    except Invalid as error:
        print(f"files.py: {error}", file=sys.stderr)
        return INVALID_EXIT
    sys.stdout.buffer.write(value)
    return 0


def main(argv):
    log = os.environ.get("FILES_PLUGIN_LOG")
    if log:
        with open(log, "a") as out:
            out.write(f"start {argv[1] if len(argv) > 1 else '?'}\n")
    if len(argv) == 2 and argv[1] == "json":
        return serve_json()
    if len(argv) == 3 and argv[1] == "get":
        return serve_one(argv[2])
    print("usage: files.py get PATH | files.py json", file=sys.stderr)
    return INVALID_EXIT


if __name__ == "__main__":
    sys.exit(main(sys.argv))

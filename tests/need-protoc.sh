#!/usr/bin/env bash
# Sourced by the scripts that build the workspace, and run by the README's first command:
# meshgate accepts Substrait plans, and the Substrait crate's build script generates code
# with protoc. Installs Debian's protobuf-compiler when it is missing, or says why it cannot.
if ! command -v protoc >/dev/null 2>&1; then
    echo "installing protoc (Debian package protobuf-compiler), needed to build Substrait" >&2
    sudo_if_needed=""
    if [ "$(id -u)" != 0 ]; then sudo_if_needed=sudo; fi
    $sudo_if_needed apt-get install -y -q protobuf-compiler >/dev/null ||
        { $sudo_if_needed apt-get update -q >/dev/null && $sudo_if_needed apt-get install -y -q protobuf-compiler >/dev/null; } ||
        { echo "cannot install protobuf-compiler: install protoc and run again" >&2; exit 1; }
fi

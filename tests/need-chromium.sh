#!/usr/bin/env bash
# Sourced by tests/run-all.sh: the console's browser tests drive Debian's Chromium (headless,
# through Playwright pointed at it; no browser is downloaded from elsewhere). Installs the
# `chromium` package when it is missing, or says why it cannot; never skips those tests.
chromium_bin() {
    command -v chromium 2>/dev/null || command -v chromium-browser 2>/dev/null
}
if [ -z "${MESHGATE_CHROMIUM:-}" ] && [ -z "$(chromium_bin)" ]; then
    echo "installing Chromium (Debian package chromium) for the console's browser tests" >&2
    sudo_if_needed=""
    if [ "$(id -u)" != 0 ]; then sudo_if_needed=sudo; fi
    $sudo_if_needed apt-get install -y -q chromium >/dev/null ||
        { $sudo_if_needed apt-get update -q >/dev/null && $sudo_if_needed apt-get install -y -q chromium >/dev/null; } ||
        { echo "cannot install chromium: install Chromium or set MESHGATE_CHROMIUM to its binary, and run again" >&2; exit 1; }
fi
if [ -z "${MESHGATE_CHROMIUM:-}" ]; then
    MESHGATE_CHROMIUM="$(chromium_bin)"
    export MESHGATE_CHROMIUM
fi

#!/usr/bin/env bash
# Sourced by tests/run-all.sh: the JDBC tests (tests/jdbc) run the Arrow Flight SQL JDBC driver
# under Maven on Java 17+. Installs Debian's `maven` (which brings a JDK) when Maven or Java is
# missing, or says why it cannot; never skips those tests. Maven itself fetches the driver.
if ! command -v mvn >/dev/null 2>&1 || ! command -v java >/dev/null 2>&1; then
    echo "installing Maven and a JDK (Debian packages maven, openjdk-17-jdk-headless) for the JDBC tests" >&2
    sudo_if_needed=""
    if [ "$(id -u)" != 0 ]; then sudo_if_needed=sudo; fi
    $sudo_if_needed apt-get install -y -q maven openjdk-17-jdk-headless >/dev/null ||
        { $sudo_if_needed apt-get update -q >/dev/null && $sudo_if_needed apt-get install -y -q maven openjdk-17-jdk-headless >/dev/null; } ||
        { echo "cannot install Maven and Java 17: install them and run again" >&2; exit 1; }
fi

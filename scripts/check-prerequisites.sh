#!/usr/bin/env bash
# Says exactly what to install when Python 3.11+, Java 17+ or Maven is missing.
set -u
missing=0
py=${PYTHON:-python3}
if ! command -v "$py" >/dev/null 2>&1 || ! "$py" -c 'import sys; sys.exit(sys.version_info < (3, 11))'; then
  echo "keywarden needs Python 3.11 or newer as '$py' (Debian: apt-get install python3 python3-venv)" >&2
  missing=1
fi
if ! "$py" -c 'import venv, ensurepip' >/dev/null 2>&1; then
  echo "Python's venv module is missing (Debian: apt-get install python3-venv)" >&2
  missing=1
fi
if ! command -v java >/dev/null 2>&1; then
  echo "Java 17 or newer is required for the local Kafka broker (Debian: apt-get install openjdk-17-jre-headless)" >&2
  missing=1
else
  major=$(java -version 2>&1 | sed -n 's/.*version "\([0-9]*\).*/\1/p' | head -n1)
  if [ -n "$major" ] && [ "$major" -lt 17 ]; then
    echo "Java $major found; Kafka 4 needs Java 17 or newer (Debian: apt-get install openjdk-17-jre-headless)" >&2
    missing=1
  fi
fi
if ! command -v mvn >/dev/null 2>&1; then
  echo "Maven is required to fetch Apache Kafka from Maven Central (Debian: apt-get install maven)" >&2
  missing=1
fi
exit $missing

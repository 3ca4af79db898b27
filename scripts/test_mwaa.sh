#!/usr/bin/env bash
# Run the test suite on one Amazon MWAA image's pins: scripts/test_mwaa.sh <version> <wheel dir>
#
# The venv .venv-mwaa-<version> gets the image's Python and, under the image's constraints
# (requirements/mwaa-<version>.txt), Airflow, the Amazon provider and the built wheel of
# handoff-provider with its test extra - the way a user's requirements.txt is installed on
# MWAA. The tests then run against that installed wheel, never the source tree.
#
# Environment: UV (the uv binary), PYTHON_<major>_<minor> (an interpreter to use instead of
# pyenv's), PYTEST_ARGS (extra pytest arguments, e.g. "-x -k dag_runs").
set -euo pipefail

usage="usage: test_mwaa.sh <mwaa version> <directory holding the handoff-provider wheel>"
version=${1:?$usage}
wheels=("${2:?$usage}"/handoff_provider-*.whl)
wheel=${wheels[0]}
uv=${UV:-uv}
requirements=requirements/mwaa-$version.txt
venv=.venv-mwaa-$version

[[ -f $requirements ]] || { echo "test_mwaa: no $requirements (unknown MWAA image $version)" >&2; exit 2; }
[[ ${#wheels[@]} -eq 1 && -f $wheel ]] || { echo "test_mwaa: expected one wheel in $2" >&2; exit 2; }

# MWAA 2.10 images run Python 3.11; the later ones 3.12.
case $version in
    2.10.*) minor=3.11 ;;
    *) minor=3.12 ;;
esac
override_var=PYTHON_${minor//./_}
python=${!override_var:-}
if [[ -z $python ]] && command -v pyenv >/dev/null 2>&1 && latest=$(pyenv latest "$minor" 2>/dev/null); then
    python=$(pyenv root)/versions/$latest/bin/python$minor
fi
python=${python:-$minor}  # else whatever uv finds for that version

started=$SECONDS
if [[ ! -x $venv/bin/python ]] || [[ $($venv/bin/python -c 'import sys; print("%d.%d" % sys.version_info[:2])') != "$minor" ]]; then
    rm -rf "$venv"
    "$uv" venv -q -p "$python" "$venv"
fi
# apache-airflow is pinned by the image's essential constraints, the rest by its
# Airflow constraints; the wheel is reinstalled on every run (the source may have changed).
# uv (pinned by the image too) is what project venvs are built with when it is installed;
# the OpenLineage provider (every image's constraints pin one: what a user who wants lineage
# gets) is installed so that the lineage tests run on that version of it.
# requirements/mwaa-<version>.overrides.txt, where there is one, replaces some of the
# image's pins with a test tool's versions (that file says why): those packages' lines are
# left out of the constraints, and the file's pins are constraints instead.
overrides=requirements/mwaa-$version.overrides.txt
constraint_args=(-c "$requirements")
if [[ -f $overrides ]]; then
    # package names, with - _ . matched alike (PEP 503)
    names=$(sed -nE 's/^([A-Za-z0-9][A-Za-z0-9._-]*)==.*/\1/p' "$overrides" | sed -E 's/[-_.]+/[-_.]+/g' | paste -sd'|')
    mkdir -p build
    kept=build/mwaa-$version-constraints.txt
    grep -viE "^($names)==" "$requirements" > "$kept"
    constraint_args=(-c "$kept" -c "$overrides")
fi
"$uv" pip install -q -p "$venv/bin/python" "${constraint_args[@]}" \
    --reinstall-package handoff-provider \
    apache-airflow apache-airflow-providers-amazon apache-airflow-providers-openlineage uv \
    "handoff-provider[airflow,test] @ $(realpath "$wheel")"
# The tests import their helpers as `tests.aws.conftest`: the project root goes on sys.path
# through a .pth file, i.e. AFTER site-packages, so `handoff_provider` is still the wheel.
site_packages=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')
pwd > "$site_packages/handoff_provider_tests.pth"
versions=$("$venv/bin/python" - <<'EOF'
import sys
from importlib.metadata import version

names = ("apache-airflow", "apache-airflow-providers-amazon", "apache-airflow-providers-openlineage",
         "boto3", "s3transfer", "moto", "uv")
print(f"Python {sys.version.split()[0]}, " + ", ".join(f"{n} {version(n)}" for n in names))
EOF
)
echo "== MWAA $version: $versions (venv ready in $((SECONDS - started))s)"

# -P: no current directory at the front of sys.path, so `import handoff_provider` finds the
# wheel; tests/conftest.py checks that it did (HANDOFF_TEST_INSTALLED).
# shellcheck disable=SC2086
HANDOFF_TEST_INSTALLED=1 "$venv/bin/python" -P -m pytest -q -rs -p no:cacheprovider --disable-warnings ${PYTEST_ARGS:-}
echo "== MWAA $version: done in $((SECONDS - started))s"

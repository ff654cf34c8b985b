#!/usr/bin/env bash
# Written once by the gitops-stages platform stack: the starter of this app's build, which the
# gitops-stages workflow runs as `bash ci/build.sh release` (push to main) or
# `bash ci/build.sh mr-<n>` (merge request). It is yours: put the app's own build here.
#
# What the workflow reads afterwards, and what must stay:
#   build/bundle/chart/             the app's Helm chart (copied from deploy/chart/)
#   build/bundle/values/<stage>.yaml  its non-sensitive values per stage (from deploy/values/)
#   build/image                     the image reference the release runs (a digest is best)
#   build/version                   the release's version (semver), from deploy/chart/Chart.yaml's appVersion
#
# The starter builds no image: it names the one in $IMAGE, or else
# ghcr.io/<owner>/<repo>:<version> (push it there with your own build step, e.g. docker/build-push-action).
set -euo pipefail

kind="${1:-}"
case "$kind" in
  release | mr-[0-9]*) ;;
  *) echo "usage: ci/build.sh release|mr-<n>" >&2; exit 2 ;;
esac

chart_dir="${CHART_DIR:-deploy/chart}"
values_dir="${VALUES_DIR:-deploy/values}"
[ -f "$chart_dir/Chart.yaml" ] || { echo "ci/build.sh: no Helm chart at $chart_dir/Chart.yaml (set CHART_DIR or add the chart)" >&2; exit 1; }
[ -d "$values_dir" ] || { echo "ci/build.sh: no values folder at $values_dir (one <stage>.yaml per stage; set VALUES_DIR)" >&2; exit 1; }

# appVersion: "1.2.3" # a comment  ->  1.2.3 (quotes, a trailing comment and a leading v dropped)
app_version="$(sed -n 's/^appVersion:[[:space:]]*//p' "$chart_dir/Chart.yaml" | head -n 1 | sed 's/[[:space:]]#.*$//' | tr -d "\"'[:space:]")"
app_version="${app_version#v}"
[ -n "$app_version" ] || { echo "ci/build.sh: $chart_dir/Chart.yaml has no appVersion: the release version comes from it" >&2; exit 1; }
if [ "$kind" = release ]; then
  version="$app_version"
else
  # A merge request's build is not a release: a prerelease of the version's core (without its own
  # prerelease or build metadata), unique per commit. "g" keeps the identifier alphanumeric (an
  # all-digit one with a leading zero is not semver).
  core="${app_version%%+*}"
  version="${core%%-*}-${kind}.g$(git rev-parse --short=12 HEAD)"
fi

repository="${GITHUB_REPOSITORY:-$(basename "$PWD")}"
# An image tag may not hold "+": build metadata becomes "_" (Helm's convention).
image="${IMAGE:-ghcr.io/${repository,,}:${version//+/_}}"

rm -rf build
mkdir -p build/bundle
cp -R "$chart_dir" build/bundle/chart
cp -R "$values_dir" build/bundle/values
printf '%s\n' "$image" > build/image
printf '%s\n' "$version" > build/version
echo "ci/build.sh: ${kind} ${version}, image ${image}, bundle build/bundle ($(find build/bundle -type f | wc -l) files)"

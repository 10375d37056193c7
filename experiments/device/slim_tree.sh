#!/usr/bin/env bash
# The checkout that travels to a lent GPU machine, without the committed results (experiments/<topic>/<run>/):
# the device tool copies tracked files by their disk use, and by 2026-12-07 those results took 38 of the
# checkout's 40.8 MiB, so the checkout and the wheels (27.8 MiB slimmed, torchao's aside) no longer fitted its
# 64 MiB. A GPU run needs ecosweep/, conf/ and the experiments' scripts, not their earlier results.
#
#   experiments/device/slim_tree.sh on    git sparse-checkout: every experiments/*/*/ folder leaves the working
#                                         tree (still tracked, unchanged in git; 2.3 MiB travel)
#   experiments/device/slim_tree.sh off   every file back (run before the local tests, commits of results, reports)
#   experiments/device/slim_tree.sh       says which it is and what would travel
#
# Results the device brings back go under outputs/ (git-ignored) and are copied into experiments/ after `off`.
# 2026-12-07: with `on`, the tool's size check passed and an H100 ran experiments/harness_efficiency from the sparse
# copy (experiments/harness_efficiency/h100_2026-12-07c/).
set -eu
cd "$(dirname "$0")/../.."
travel() {
  git ls-files -z | xargs -0 du -k 2>/dev/null | awk '{s += $1} END {printf "tracked files on disk: %.1f MiB\n", s / 1024}'
  [ -d .whl ] && du -sk .whl | awk '{printf ".whl: %.1f MiB\n", $1 / 1024}'
  return 0
}
case ${1:-} in
  on)
    git sparse-checkout set --no-cone '/*' '!/experiments/*/*/'
    echo "committed results out of the working tree"; travel ;;
  off)
    git sparse-checkout disable
    echo "every file back"; travel ;;
  "")
    if [ "$(git config --get core.sparseCheckout || echo false)" = true ]; then echo "on"; else echo "off"; fi
    travel ;;
  *) echo "usage: $0 [on|off]"; exit 2 ;;
esac
